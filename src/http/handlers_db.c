/*
 * handlers_db.c — database-level endpoints (CouchDB 3's chttpd_db and
 * chttpd_misc): PUT/GET/HEAD/DELETE /{db}, POST /{db} (new document),
 * _compact, _ensure_full_commit, _revs_limit, _security, and the
 * server-level lists /_all_dbs, /_dbs_info, /_active_tasks.
 *
 * Database info costs O(1): the by-id tree's root carries the document
 * counts and sizes (store/dbfile.h), so GET /{db} and every row of
 * /_dbs_info read one header and nothing else.
 */
#include "base/log.h"
#include "base/status.h"
#include "http/doc_util.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/stats.h"

#include <h2o.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- database info --------------------------------------------------------- */

int http_db_info_json(db_t *db, json_writer *w)
{
    store_snap *snap;
    int rc = db_snapshot(db, &snap);
    if (rc != DV_OK)
        return rc;
    store_dbinfo in;
    store_snap_info(snap, &in);
    store_snap_release(snap);
    json_write_begin_object(w);
    json_write_key_cstr(w, "db_name");
    json_write_cstr(w, db_name(db));
    json_write_key_cstr(w, "purge_seq");
    http_write_seq(w, in.purge_seq);
    json_write_key_cstr(w, "update_seq");
    http_write_seq(w, in.update_seq);
    json_write_key_cstr(w, "sizes");
    json_write_begin_object(w);
    json_write_key_cstr(w, "file");
    json_write_u64(w, in.file_size);
    json_write_key_cstr(w, "external");
    json_write_u64(w, in.external_size);
    json_write_key_cstr(w, "active");
    json_write_u64(w, in.active_size);
    json_write_end_object(w);
    json_write_key_cstr(w, "props");
    json_write_begin_object(w);
    json_write_end_object(w);
    json_write_key_cstr(w, "doc_del_count");
    json_write_u64(w, in.del_count);
    json_write_key_cstr(w, "doc_count");
    json_write_u64(w, in.doc_count);
    json_write_key_cstr(w, "disk_format_version");
    json_write_u64(w, 8);
    json_write_key_cstr(w, "compact_running");
    json_write_bool(w, in.compact_running);
    json_write_key_cstr(w, "cluster");
    json_write_begin_object(w);
    json_write_key_cstr(w, "q");
    json_write_u64(w, 1);
    json_write_key_cstr(w, "n");
    json_write_u64(w, 1);
    json_write_key_cstr(w, "w");
    json_write_u64(w, 1);
    json_write_key_cstr(w, "r");
    json_write_u64(w, 1);
    json_write_end_object(w);
    json_write_key_cstr(w, "instance_start_time");
    json_write_cstr(w, "0");
    json_write_end_object(w);
    return w->err;
}

/* Copies the route's {db} into a NUL-terminated buffer; 0 when too long. */
static int route_db_name(http_req_t *r, char *out, size_t cap)
{
    const http_str_t *n = &r->match.db;
    if (n->n >= cap)
        return 0;
    memcpy(out, n->p, n->n);
    out[n->n] = 0;
    return 1;
}

static void send_illegal_name(http_req_t *r, const char *name)
{
    char reason[400];
    snprintf(reason, sizeof reason,
             "Name: '%.240s'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), "
             "+, -, and / are allowed. Must begin with a letter.",
             name);
    http_send_error(r, 400, "illegal_database_name", reason);
}

static void db_put(http_req_t *r)
{
    char name[256];
    if (!route_db_name(r, name, sizeof name) || !db_name_valid(name, strlen(name))) {
        if (!route_db_name(r, name, sizeof name))
            snprintf(name, sizeof name, "%.*s", (int)(r->match.db.n > 240 ? 240 : r->match.db.n), r->match.db.p);
        send_illegal_name(r, name);
        return;
    }
    int rc = db_create(http_dbs(r), name, NULL);
    if (rc == DV_ERR_EXISTS) {
        http_send_error(r, 412, "file_exists", "The database could not be created, the file already exists.");
        return;
    }
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        return;
    }
    http_add_header(r, "Location", http_location(r, name, NULL, 0, NULL));
    http_send_ok(r, 201);
}

static void db_delete_req(http_req_t *r)
{
    char name[256];
    if (http_qs(r, "rev")) {
        http_send_error(r, 400, "bad_request",
                        "You tried to DELETE a database with a ?=rev parameter. Did you mean to DELETE a document "
                        "instead?");
        return;
    }
    if (!route_db_name(r, name, sizeof name) || !db_name_valid(name, strlen(name))) {
        http_send_error(r, 404, "not_found", "Database does not exist.");
        return;
    }
    int rc = db_delete(http_dbs(r), name);
    if (rc == DV_ERR_NOTFOUND)
        http_send_error(r, 404, "not_found", "Database does not exist.");
    else if (rc != DV_OK)
        http_send_internal(r, rc);
    else
        http_send_ok(r, 200);
}

static void db_get(http_req_t *r)
{
    db_t *db = http_open_db(r);
    if (!db)
        return;
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    int rc = http_db_info_json(db, &w);
    db_release(db);
    if (rc == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, rc);
    buf_free(&b);
}

/* ---- POST /{db}: a new document ------------------------------------------------ */

static void db_post(http_req_t *r)
{
    if (http_require_ctype(r, "application/json") != DV_OK)
        return;
    json_doc jd = JSON_DOC_INIT;
    const json_val *root;
    db_err e;
    db_t *db = http_open_db(r);
    if (!db)
        return;
    http_doc_ctx *c = http_doc_ctx_new(r, db);
    if (!c) {
        db_release(db);
        return;
    }
    if (http_json_body(r, &jd, &root) != DV_OK)
        goto fail;
    if (db_doc_from_json(root, NULL, 0, DB_DOC_NEW_EDITS | DB_DOC_LOCAL_OK, &c->doc, &e) != DV_OK) {
        http_send_db_err(r, &e);
        goto fail;
    }
    if (c->doc.id.len == 0) {
        /* CouchDB: a new id has no history, whatever _rev says. */
        c->doc.has_rev = 0;
        c->doc.path_len = 0;
        if (http_doc_assign_id(r, &c->doc) != DV_OK)
            goto fail;
    }
    if (!http_doc_size_ok(r, &c->doc))
        goto fail;
    json_doc_free(&jd);
    c->local = db_docid_is_local(c->doc.id.data, c->doc.id.len);
    http_doc_submit(r, c, 1);
    return;
fail:
    json_doc_free(&jd);
    http_doc_ctx_free(c);
}

void http_handle_db(http_req_t *r)
{
    switch (r->method) {
    case HTTP_PUT:
        db_put(r);
        break;
    case HTTP_DELETE:
        db_delete_req(r);
        break;
    case HTTP_GET:
    case HTTP_HEAD:
        db_get(r);
        break;
    case HTTP_POST:
        db_post(r);
        break;
    default:
        http_send_method_not_allowed(r, "DELETE,GET,HEAD,POST,PUT");
    }
}

/* ---- maintenance ------------------------------------------------------------ */

void http_handle_compact(http_req_t *r)
{
    if (http_require_ctype(r, "application/json") != DV_OK)
        return;
    db_t *db = http_open_db(r);
    if (!db)
        return;
    int rc = db_compact_start(db);
    db_release(db);
    if (rc == DV_OK || rc == DV_ERR_BUSY)
        http_send_ok(r, 202); /* already running: CouchDB answers the same */
    else
        http_send_internal(r, rc);
}

void http_handle_ensure_full_commit(http_req_t *r)
{
    if (http_require_ctype(r, "application/json") != DV_OK)
        return;
    db_t *db = http_open_db(r);
    if (!db)
        return;
    db_release(db);
    /* Every acknowledged write is already durable (durability always), or
     * within the configured window: there is nothing to flush. */
    static const char text[] = "{\"ok\":true,\"instance_start_time\":\"0\"}";
    static const buf_t body = {(uint8_t *)text, sizeof text - 1, sizeof text - 1};
    http_send_json(r, 201, &body);
}

typedef struct meta_ctx {
    db_t *db;
    store_write w;
    buf_t sec;
} meta_ctx;

static void meta_done(http_req_t *r, void *arg, int status)
{
    meta_ctx *c = arg;
    if (r) {
        if (status == DV_OK)
            http_send_ok(r, 200);
        else
            http_send_internal(r, status);
    }
    buf_free(&c->sec);
    db_release(c->db);
    free(c);
}

void http_handle_revs_limit(http_req_t *r)
{
    db_t *db = http_open_db(r);
    if (!db)
        return;
    if (r->method == HTTP_GET || r->method == HTTP_HEAD) {
        store_snap *snap;
        int rc = db_snapshot(db, &snap);
        db_release(db);
        if (rc != DV_OK) {
            http_send_internal(r, rc);
            return;
        }
        store_dbinfo in;
        store_snap_info(snap, &in);
        store_snap_release(snap);
        buf_t b = BUF_INIT;
        buf_printf(&b, "%llu", (unsigned long long)in.revs_limit);
        http_send_json(r, 200, &b);
        buf_free(&b);
        return;
    }
    json_doc jd = JSON_DOC_INIT;
    const json_val *root;
    int64_t limit;
    if (http_json_body(r, &jd, &root) != DV_OK)
        goto fail;
    if (json_get_i64(root, &limit) != DV_OK || limit <= 0) {
        http_send_error(r, 400, "bad_request", "`revs_limit` must be a positive integer");
        goto fail;
    }
    meta_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    json_doc_free(&jd);
    c->db = db;
    c->w.set_revs_limit = 1;
    c->w.revs_limit = (uint64_t)limit;
    http_db_write(r, db, &c->w, meta_done, c);
    return;
fail:
    json_doc_free(&jd);
    db_release(db);
}

/* A _security names/roles list: an array of strings (CouchDB rejects any
 * other shape). */
static int sec_list_ok(const json_val *v)
{
    if (!v)
        return 1;
    if (!json_is_array(v))
        return 0;
    json_iter it = json_iter_begin(v);
    const json_val *x;
    while (json_iter_elem(&it, &x))
        if (!json_is_string(x))
            return 0;
    return 1;
}

static const char *sec_check(const json_val *root)
{
    if (!json_is_object(root))
        return "Security object must be a JSON object";
    static const char *const sect[] = {"admins", "members"};
    for (int i = 0; i < 2; i++) {
        const json_val *s = json_object_get_cstr(root, sect[i]);
        if (!s)
            continue;
        if (!json_is_object(s))
            return "Security object admins and members must be objects";
        if (!sec_list_ok(json_object_get_cstr(s, "names")))
            return "names must be a JSON list of strings";
        if (!sec_list_ok(json_object_get_cstr(s, "roles")))
            return "roles must be a JSON list of strings";
    }
    return NULL;
}

void http_handle_security(http_req_t *r)
{
    db_t *db = http_open_db(r);
    if (!db)
        return;
    if (r->method == HTTP_GET || r->method == HTTP_HEAD) {
        store_snap *snap;
        buf_t b = BUF_INIT;
        int rc = db_snapshot(db, &snap);
        db_release(db);
        if (rc == DV_OK) {
            rc = store_snap_security(snap, &b);
            store_snap_release(snap);
        }
        if (rc == DV_OK)
            http_send_json(r, 200, &b);
        else
            http_send_internal(r, rc);
        buf_free(&b);
        return;
    }
    json_doc jd = JSON_DOC_INIT;
    const json_val *root;
    meta_ctx *c = NULL;
    if (http_json_body(r, &jd, &root) != DV_OK)
        goto fail;
    if (!strcmp(db_name(db), "_users")) {
        http_send_error(r, 403, "forbidden", "You can't edit the security object of the user database.");
        goto fail;
    }
    const char *bad = sec_check(root);
    if (bad) {
        http_send_error(r, 400, "bad_request", bad);
        goto fail;
    }
    if (!(c = calloc(1, sizeof *c)) || json_serialize(root, &c->sec) != DV_OK) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    json_doc_free(&jd);
    c->db = db;
    c->w.set_security = 1;
    c->w.security = c->sec.data;
    c->w.security_len = c->sec.len;
    http_db_write(r, db, &c->w, meta_done, c);
    return;
fail:
    if (c)
        buf_free(&c->sec);
    free(c);
    json_doc_free(&jd);
    db_release(db);
}

/* ---- /_all_dbs, /_dbs_info ------------------------------------------------------- */

typedef struct name_range {
    char *start, *end;
    int descending, inclusive_end;
    long long limit, skip;
} name_range;

/* A startkey/endkey value: a JSON string. */
static int range_key(http_req_t *r, const char *a, const char *b, char **out)
{
    const char *name = http_qs(r, a) ? a : b;
    json_doc jd = JSON_DOC_INIT;
    const json_val *v;
    int rc = http_qs_json(r, name, &jd, &v);
    if (rc == DV_OK && v) {
        size_t n;
        const char *s = json_str(v, &n);
        if (!json_is_string(v)) {
            http_send_error(r, 400, "query_parse_error", "Keys of /_all_dbs must be strings");
            rc = DV_ERR_INVALID;
        } else if (!(*out = strndup(s, n))) {
            http_send_internal(r, DV_ERR_NOMEM);
            rc = DV_ERR_NOMEM;
        }
    }
    json_doc_free(&jd);
    return rc;
}

static int parse_name_range(http_req_t *r, name_range *nr)
{
    memset(nr, 0, sizeof *nr);
    nr->limit = INT64_MAX;
    nr->inclusive_end = 1;
    if (http_qs_bool(r, "descending", &nr->descending) != DV_OK ||
        http_qs_bool(r, "inclusive_end", &nr->inclusive_end) != DV_OK ||
        http_qs_int(r, "limit", 0, INT64_MAX, &nr->limit) != DV_OK ||
        http_qs_int(r, "skip", 0, INT64_MAX, &nr->skip) != DV_OK ||
        range_key(r, "startkey", "start_key", &nr->start) != DV_OK ||
        range_key(r, "endkey", "end_key", &nr->end) != DV_OK) {
        free(nr->start);
        free(nr->end);
        return DV_ERR_INVALID;
    }
    return DV_OK;
}

/* Applies the range to the sorted name list: out[] gets the selected
 * names in answer order. */
static size_t select_names(char **names, size_t n, const name_range *nr, char **out)
{
    size_t k = 0;
    long long skipped = 0;
    for (size_t j = 0; j < n && (long long)k < nr->limit; j++) {
        const char *nm = names[nr->descending ? n - 1 - j : j];
        int c1 = nr->start ? strcmp(nm, nr->start) : 0;
        int c2 = nr->end ? strcmp(nm, nr->end) : 0;
        if (nr->descending ? c1 > 0 : c1 < 0)
            continue;
        if (nr->end && (nr->descending ? (c2 < 0 || (c2 == 0 && !nr->inclusive_end))
                                       : (c2 > 0 || (c2 == 0 && !nr->inclusive_end))))
            break;
        if (skipped < nr->skip) {
            skipped++;
            continue;
        }
        out[k++] = (char *)nm;
    }
    return k;
}

void http_handle_all_dbs(http_req_t *r)
{
    name_range nr;
    if (parse_name_range(r, &nr) != DV_OK)
        return;
    char **names = NULL, **sel = NULL;
    size_t n = 0;
    buf_t b = BUF_INIT;
    int rc = db_list(http_dbs(r), &names, &n);
    if (rc == DV_OK && !(sel = calloc(n ? n : 1, sizeof *sel)))
        rc = DV_ERR_NOMEM;
    if (rc == DV_OK) {
        size_t k = select_names(names, n, &nr, sel);
        json_writer w;
        json_writer_init(&w, &b);
        json_write_begin_array(&w);
        for (size_t i = 0; i < k; i++)
            json_write_cstr(&w, sel[i]);
        json_write_end_array(&w);
        rc = w.err;
    }
    if (rc == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, rc);
    buf_free(&b);
    free(sel);
    db_names_free(names, n);
    free(nr.start);
    free(nr.end);
}

/* One row of /_dbs_info: {"key": name, "info": {...}} or the error. */
static int dbs_info_row(http_req_t *r, const char *name, size_t n, json_writer *w)
{
    char nm[256];
    db_t *db = NULL;
    int rc = DV_ERR_NOTFOUND;
    if (n < sizeof nm && db_name_valid(name, n)) {
        memcpy(nm, name, n);
        nm[n] = 0;
        rc = db_open(http_dbs(r), nm, &db);
    }
    json_write_begin_object(w);
    json_write_key_cstr(w, "key");
    json_write_string(w, name, n);
    if (rc == DV_OK) {
        json_write_key_cstr(w, "info");
        rc = http_db_info_json(db, w);
        db_release(db);
    } else if (rc == DV_ERR_NOTFOUND) {
        json_write_key_cstr(w, "error");
        json_write_cstr(w, "not_found");
        rc = DV_OK;
    }
    json_write_end_object(w);
    return rc ? rc : w->err;
}

void http_handle_dbs_info(http_req_t *r)
{
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    int rc = DV_OK;
    if (r->method == HTTP_POST) {
        json_doc jd = JSON_DOC_INIT;
        const json_val *root, *keys;
        if (http_require_ctype(r, "application/json") != DV_OK || http_json_body(r, &jd, &root) != DV_OK) {
            json_doc_free(&jd);
            return;
        }
        keys = json_is_object(root) ? json_object_get_cstr(root, "keys") : NULL;
        if (!keys || !json_is_array(keys)) {
            json_doc_free(&jd);
            http_send_error(r, 400, "bad_request", "`keys` member must exist.");
            return;
        }
        json_write_begin_array(&w);
        json_iter it = json_iter_begin(keys);
        const json_val *k;
        while (rc == DV_OK && json_iter_elem(&it, &k)) {
            size_t n;
            const char *s = json_str(k, &n);
            if (!json_is_string(k))
                continue;
            rc = dbs_info_row(r, s, n, &w);
        }
        json_write_end_array(&w);
        json_doc_free(&jd);
    } else {
        name_range nr;
        char **names = NULL, **sel = NULL;
        size_t n = 0;
        if (parse_name_range(r, &nr) != DV_OK)
            return;
        rc = db_list(http_dbs(r), &names, &n);
        if (rc == DV_OK && !(sel = calloc(n ? n : 1, sizeof *sel)))
            rc = DV_ERR_NOMEM;
        if (rc == DV_OK) {
            size_t k = select_names(names, n, &nr, sel);
            json_write_begin_array(&w);
            for (size_t i = 0; rc == DV_OK && i < k; i++)
                rc = dbs_info_row(r, sel[i], strlen(sel[i]), &w);
            json_write_end_array(&w);
        }
        free(sel);
        db_names_free(names, n);
        free(nr.start);
        free(nr.end);
    }
    if (rc == DV_OK)
        rc = w.err;
    if (rc == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, rc);
    buf_free(&b);
}

void http_handle_active_tasks(http_req_t *r)
{
    buf_t b = BUF_INIT;
    int rc = db_tasks_json(&b);
    if (rc == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, rc);
    buf_free(&b);
}
