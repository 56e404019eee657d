/*
 * handlers_bulk_docs.c — POST /{db}/_bulk_docs (CouchDB 3's chttpd_db).
 *
 * The whole request is one store_write: every document of the batch goes
 * to the writer together and commits in one group commit, so a batch of
 * 1,000 documents costs one sync.  Items keep their own status (a conflict
 * on one document does not fail the others), and the answer lists one
 * result per input document, in input order.
 *
 * As in CouchDB, a document that is malformed (bad JSON shape, bad id, bad
 * rev, too large) fails the whole request with its 4xx before anything is
 * written; conflicts and missing stubs are per-document results.  With
 * new_edits=false only failures are listed (CouchDB answers [] when all
 * went in).
 *
 * Validation functions (doc_validate.h) run on a worker before the write
 * is queued, one document after the other; a refused document gets its
 * {"id","error","reason"} row (with "rev" under new_edits=false, as
 * CouchDB's replicated_changes errors) and is left out of the write, the
 * others go in.
 *
 * Memory: the parsed request plus one copy of each body (O(request size)).
 */
#include "base/log.h"
#include "base/status.h"
#include "http/auth.h"
#include "http/authz.h"
#include "http/doc_util.h"
#include "http/doc_validate.h"
#include "http/users.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/stats.h"
#include "base/workers.h"
#include "views/views.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bulk_ctx {
    db_t *db;
    size_t n;
    db_doc *docs;
    int *local;              /* docs[i] is a _local doc */
    size_t *slot;            /* index into ups or lus */
    store_doc_update *ups;
    store_local_update *lus;
    store_write w;
    int new_edits;
    db_err *pre;             /* per doc: a design document that failed its check */
    int *prefailed;          /* 1: pre[i] says why; 2: vres[i] (a validation function) */
    vdu_result *vres;
    http_vdu vdu;            /* validation functions of the database (set NULL: none) */
    views *views;
    http_async_t *async;
    char **pw;               /* _users: clear passwords to hash (cleansed on free) */
    size_t *pw_len;
    const char *prf;         /* [chttpd_auth] pbkdf2_prf, iterations */
    long iterations;
} bulk_ctx;

static void bulk_free(bulk_ctx *c)
{
    for (size_t i = 0; c->docs && i < c->n; i++)
        db_doc_free(&c->docs[i]);
    free(c->docs);
    free(c->local);
    free(c->slot);
    free(c->ups);
    free(c->lus);
    free(c->pre);
    free(c->prefailed);
    for (size_t i = 0; c->vres && i < c->n; i++)
        vdu_result_free(&c->vres[i]);
    free(c->vres);
    http_vdu_end(&c->vdu);
    for (size_t i = 0; c->pw && i < c->n; i++) {
        if (c->pw[i]) {
            OPENSSL_cleanse(c->pw[i], c->pw_len[i]);
            free(c->pw[i]);
        }
    }
    free(c->pw);
    free(c->pw_len);
    db_release(c->db);
    free(c);
}

/* {"ok":true,"id":ID,"rev":REV}, built in a scratch buffer and appended as
 * one raw value: through the generic writer each constant key was checked
 * as UTF-8 and scanned for escapes (~2,000 instructions a row).  The id is
 * escaped as before; a rev is digits, '-' and rev id characters, which
 * exclude '"', '\\' and controls (store_rev_id_valid), so it needs none. */
static void write_ok_row(json_writer *w, buf_t *row, const db_doc *d, const char *rev)
{
    json_writer rw;
    buf_reset(row);
    json_writer_init(&rw, row);
    int rc = buf_append(row, "{\"ok\":true,\"id\":", 16);
    if (!rc)
        rc = json_write_string(&rw, (const char *)d->id.data, d->id.len);
    if (!rc)
        rc = buf_append(row, ",\"rev\":\"", 8);
    if (!rc)
        rc = buf_append(row, rev, strlen(rev));
    if (!rc)
        rc = buf_append(row, "\"}", 2);
    if (rc) {
        if (!w->err)
            w->err = rc;
        return;
    }
    json_write_raw(w, (const char *)row->data, row->len);
}

static void write_result(json_writer *w, buf_t *row, bulk_ctx *c, size_t i)
{
    db_doc *d = &c->docs[i];
    if (c->prefailed && c->prefailed[i]) {
        json_write_begin_object(w);
        json_write_key_cstr(w, "id");
        json_write_string(w, (const char *)d->id.data, d->id.len);
        const store_rev *rev = d->path_len ? d->path : d->has_rev ? &d->rev : NULL;
        if (!c->new_edits && rev) {
            char rs[STORE_REV_ID_MAX + 24];
            http_rev_str(rev, rs, sizeof rs);
            json_write_key_cstr(w, "rev");
            json_write_cstr(w, rs);
        }
        json_write_key_cstr(w, "error");
        if (c->prefailed[i] == 2) {
            const vdu_result *v = &c->vres[i];
            json_write_cstr(w, v->error);
            json_write_key_cstr(w, "reason");
            if (v->reason.len)
                json_write_raw(w, (const char *)v->reason.data, v->reason.len);
            else
                json_write_null(w);
        } else {
            json_write_cstr(w, c->pre[i].error);
            json_write_key_cstr(w, "reason");
            json_write_cstr(w, c->pre[i].reason);
        }
        json_write_end_object(w);
        return;
    }
    int status;
    char rev[STORE_REV_ID_MAX + 24];
    if (c->local[i]) {
        store_local_update *u = &c->lus[c->slot[i]];
        status = u->status;
        snprintf(rev, sizeof rev, "0-%llu", (unsigned long long)u->new_rev);
    } else {
        store_doc_update *u = &c->ups[c->slot[i]];
        status = u->status;
        http_rev_str(&u->rev, rev, sizeof rev);
    }
    if (status == DV_OK && !c->new_edits)
        return;
    if (status == DV_OK) {
        write_ok_row(w, row, d, rev);
        return;
    }
    db_err e;
    if (c->local[i] && status == DV_ERR_NOTFOUND)
        status = DV_ERR_CONFLICT; /* deleting an absent local doc */
    db_err_from_status(&e, status, d->id.data, d->id.len);
    json_write_begin_object(w);
    json_write_key_cstr(w, "id");
    json_write_string(w, (const char *)d->id.data, d->id.len);
    if (!c->new_edits && !c->local[i]) {
        json_write_key_cstr(w, "rev");
        json_write_cstr(w, rev);
    }
    json_write_key_cstr(w, "error");
    json_write_cstr(w, e.error);
    json_write_key_cstr(w, "reason");
    json_write_cstr(w, e.reason);
    json_write_end_object(w);
}

static void bulk_done(http_req_t *r, void *arg, int status)
{
    bulk_ctx *c = arg;
    if (status == DV_OK) {
        size_t ok = 0;
        for (size_t i = 0; i < c->n; i++)
            ok += !(c->prefailed && c->prefailed[i]) &&
                  (c->local[i] ? c->lus[c->slot[i]].status : c->ups[c->slot[i]].status) == DV_OK;
        http_stat_add(STAT_DB_WRITES, (long long)ok);
    }
    if (r) {
        if (status != DV_OK) {
            http_send_internal(r, status);
        } else {
            buf_t b = BUF_INIT, row = BUF_INIT;
            json_writer w;
            json_writer_init(&w, &b);
            /* ~100 bytes a row: one allocation for a typical answer (a
             * hint: if it fails, the writer grows the buffer as it goes) */
            (void)buf_reserve(&b, c->n < 10000 ? 2 + c->n * 100 : 1000002);
            json_write_begin_array(&w);
            for (size_t i = 0; i < c->n; i++)
                write_result(&w, &row, c, i);
            json_write_end_array(&w);
            buf_free(&row);
            if (w.err)
                http_send_internal(r, w.err);
            else
                http_send_json(r, 201, &b);
            buf_free(&b);
        }
    }
    bulk_free(c);
}

/* Parses one element of "docs" into c->docs[i]. */
static int parse_one(http_req_t *r, bulk_ctx *c, size_t i, const json_val *jd)
{
    db_doc *d = &c->docs[i];
    db_err e;
    int rc = db_doc_from_json(jd, NULL, 0, DB_DOC_LOCAL_OK | (c->new_edits ? DB_DOC_NEW_EDITS : 0), d, &e);
    int local = db_docid_is_local(d->id.data, d->id.len);
    if (rc == DV_ERR_INVALID) {
        http_send_db_err(r, &e);
        return rc;
    }
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        return rc;
    }
    for (size_t k = 0; k < d->natts; k++) {
        if (d->att_follows[k]) {
            http_send_error(r, 400, "bad_request", "Attachments with \"follows\" need a multipart request");
            return DV_ERR_INVALID;
        }
    }
    if ((rc = http_doc_assign_id(r, d)) != DV_OK)
        return rc;
    if (!http_doc_size_ok(r, d))
        return DV_ERR_TOO_LARGE;
    if (!local && (rc = http_doc_finish_atts(r, d)) != DV_OK)
        return rc;
    c->local[i] = local;
    return DV_OK;
}

/* Builds the store_write from every document that passed, and queues it. */
static void bulk_write(http_req_t *r, bulk_ctx *c)
{
    size_t nd = 0, nl = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->prefailed && c->prefailed[i])
            continue;
        if (c->local[i]) {
            c->slot[i] = nl;
            db_doc_to_local_update(&c->docs[i], &c->lus[nl++]);
        } else {
            c->slot[i] = nd;
            db_doc_to_update(&c->docs[i], c->new_edits, &c->ups[nd++]);
        }
    }
    c->w.docs = c->ups;
    c->w.ndocs = nd;
    c->w.locals = c->lus;
    c->w.nlocals = nl;
    http_db_write(r, c->db, &c->w, bulk_done, c);
}

/* Worker: design documents are compiled, the others go through the
 * database's validation functions (doc_validate.h, in batches); a failing
 * document gets its error row and is not written. */
static void bulk_check_job(void *arg)
{
    bulk_ctx *c = arg;
    for (size_t i = 0; i < c->n; i++) {
        db_doc *d = &c->docs[i];
        if (c->prefailed[i])
            continue;
        if (c->pw && c->pw[i]) {
            /* _users: PBKDF2 of the new password (tens of ms each). */
            int rc = http_users_hash(d, c->pw[i], c->prf, c->iterations);
            OPENSSL_cleanse(c->pw[i], c->pw_len[i]);
            free(c->pw[i]);
            c->pw[i] = NULL;
            if (rc != DV_OK) {
                c->prefailed[i] = 1;
                db_err_set(&c->pre[i], 500, "unknown_error", "%s", dv_strerror(rc));
            }
            continue;
        }
        if (c->local[i] || d->deleted || !http_doc_is_design(d) || !c->views)
            continue;
        if (views_check_ddoc(c->views, d->body.data, d->body.len, &c->pre[i]) != DV_OK)
            c->prefailed[i] = 1;
    }
    if (c->vdu.set) {
        int *exempt = calloc(c->n + 1, sizeof *exempt), *refused = calloc(c->n + 1, sizeof *refused);
        int rc = exempt && refused ? DV_OK : DV_ERR_NOMEM;
        for (size_t i = 0; rc == DV_OK && i < c->n; i++)
            exempt[i] = c->local[i] || http_doc_is_design(&c->docs[i]) || c->prefailed[i];
        if (rc == DV_OK)
            rc = http_vdu_check_all(&c->vdu, c->docs, c->n, c->new_edits, exempt, c->vres, refused);
        for (size_t i = 0; i < c->n; i++) {
            if (rc == DV_OK ? refused[i] : !(exempt && exempt[i])) {
                if (rc != DV_OK)
                    db_err_set(&c->pre[i], 500, "unknown_error", "%s", dv_strerror(rc));
                c->prefailed[i] = rc == DV_OK ? 2 : 1;
            }
        }
        free(exempt);
        free(refused);
    }
    http_async_post(c->async);
}

static void bulk_checked(http_req_t *r, void *arg)
{
    bulk_ctx *c = arg;
    if (!r) {
        bulk_free(c);
        return;
    }
    http_vdu_end(&c->vdu); /* the snapshot is not needed any more */
    bulk_write(r, c);
}

void http_handle_bulk_docs(http_req_t *r)
{
    http_stat_inc(STAT_BULK_REQUESTS);
    if (http_require_ctype(r, "application/json") != DV_OK)
        return;
    db_t *db = http_open_db(r);
    if (!db)
        return;
    json_doc jd = JSON_DOC_INIT;
    const json_val *root, *docs, *ne;
    bulk_ctx *c = NULL;
    if (http_json_body(r, &jd, &root) != DV_OK)
        goto fail;
    docs = json_is_object(root) ? json_object_get_cstr(root, "docs") : NULL;
    if (!json_is_object(root)) {
        http_send_error(r, 400, "bad_request", "Request body must be a JSON object");
        goto fail;
    }
    if (!docs) {
        http_send_error(r, 400, "bad_request", "POST body must include `docs` parameter.");
        goto fail;
    }
    if (!json_is_array(docs)) {
        http_send_error(r, 400, "bad_request", "`docs` parameter must be an array.");
        goto fail;
    }
    ne = json_object_get_cstr(root, "new_edits");
    if (ne && !json_is_bool(ne)) {
        http_send_error(r, 400, "bad_request", "`new_edits` parameter must be a boolean.");
        goto fail;
    }
    size_t n = json_len(docs);
    if (!(c = calloc(1, sizeof *c))) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    c->db = db;
    db = NULL;
    if (!(c->docs = calloc(n + 1, sizeof *c->docs)) || !(c->local = calloc(n + 1, sizeof *c->local)) ||
        !(c->slot = calloc(n + 1, sizeof *c->slot)) || !(c->ups = calloc(n + 1, sizeof *c->ups)) ||
        !(c->lus = calloc(n + 1, sizeof *c->lus))) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    c->n = n;
    c->new_edits = !ne || json_is_true(ne);
    json_iter it = json_iter_begin(docs);
    const json_val *x;
    for (size_t i = 0; json_iter_elem(&it, &x); i++) {
        db_doc_init(&c->docs[i]);
        if (parse_one(r, c, i, x) != DV_OK)
            goto fail;
    }
    json_doc_free(&jd);
    c->views = http_server_opts(r->server)->views;
    int is_users = !strcmp(db_name(c->db), HTTP_AUTH_USERS_DB);
    if (!(c->prefailed = calloc(n + 1, sizeof *c->prefailed))) {
        http_send_internal(r, DV_ERR_NOMEM);
        bulk_free(c);
        return;
    }
    if (c->views && http_vdu_begin(r, c->db, &c->vdu) != DV_OK) {
        bulk_free(c);
        return;
    }
    /* Per-document errors and validation results exist only when something
     * checks documents (_users, a design document, validation functions):
     * otherwise they were 320 bytes per document allocated and zeroed for
     * nothing (320 KiB for a batch of 1,000). */
    int checks = is_users || c->vdu.set;
    for (size_t i = 0; !checks && i < n; i++)
        checks = !c->local[i] && http_doc_is_design(&c->docs[i]);
    if (checks && (!(c->pre = calloc(n + 1, sizeof *c->pre)) || !(c->vres = calloc(n + 1, sizeof *c->vres)))) {
        http_send_internal(r, DV_ERR_NOMEM);
        bulk_free(c);
        return;
    }
    for (size_t i = 0; c->vres && i < n; i++)
        vdu_result_init(&c->vres[i]);
    /* Who may write what, per document as CouchDB reports it: design
     * documents need a db admin; _users documents follow users.c. */
    int dbadmin = -1, users_admin = is_users ? http_users_is_admin(r, c->db) : 0;
    size_t nwork = 0;
    if (is_users) {
        const http_auth_t *a = http_server_opts(r->server)->auth;
        c->prf = "sha256";
        c->iterations = 50000;
        if (a)
            http_auth_users_hash(a, &c->prf, &c->iterations);
        if (!(c->pw = calloc(n + 1, sizeof *c->pw)) || !(c->pw_len = calloc(n + 1, sizeof *c->pw_len))) {
            http_send_internal(r, DV_ERR_NOMEM);
            bulk_free(c);
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        db_doc *d = &c->docs[i];
        if (!c->local[i] && http_doc_is_design(d)) {
            if (dbadmin < 0)
                dbadmin = http_authz_is_route_db_admin(r);
            if (!dbadmin) {
                int anon = !r->user || !r->user->name;
                c->prefailed[i] = 1;
                db_err_set(&c->pre[i], anon ? 401 : 403, anon ? "unauthorized" : "forbidden",
                           "You are not a db or server admin.");
                continue;
            }
            nwork += !d->deleted;
        }
        if (is_users) {
            int rc = http_users_check(r, c->db, d, users_admin, &c->pre[i], &c->pw[i], &c->pw_len[i]);
            if (rc == DV_ERR_NOMEM) {
                http_send_internal(r, rc);
                bulk_free(c);
                return;
            }
            if (rc != DV_OK)
                c->prefailed[i] = 1;
            nwork += c->pw[i] != NULL;
        }
    }
    if (!nwork && !c->vdu.set) {
        bulk_write(r, c);
        return;
    }
    /* design documents are checked (functions compiled), passwords hashed
     * and the other documents validated on a worker first */
    if (!(c->async = http_async_new(r, bulk_checked, c))) {
        http_send_internal(r, DV_ERR_NOMEM);
        bulk_free(c);
        return;
    }
    if (workers_submit(http_server_workers(r->server), bulk_check_job, c) != DV_OK) {
        for (size_t i = 0; i < n; i++) {
            c->prefailed[i] = 1;
            db_err_set(&c->pre[i], 503, "service_unavailable", "The server is stopping.");
        }
        http_async_post(c->async);
    }
    return;
fail:
    json_doc_free(&jd);
    if (c)
        bulk_free(c);
    else
        db_release(db);
}
