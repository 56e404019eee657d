/*
 * doc_util.c — shared pieces of the document handlers (see doc_util.h).
 */
#include "http/doc_util.h"
#include "http/doc_validate.h"
#include "http/auth.h"
#include "http/authz.h"
#include "http/users.h"

#include "base/log.h"
#include "base/status.h"
#include "db/att_codec.h"
#include "http/hutil.h"
#include "http/stats.h"
#include "base/workers.h"
#include "views/views.h"
#include "http/uuids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- write contexts ------------------------------------------------------------ */

http_doc_ctx *http_doc_ctx_new(http_req_t *r, db_t *db)
{
    http_doc_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        http_send_internal(r, DV_ERR_NOMEM);
        return NULL;
    }
    db_doc_init(&c->doc);
    c->db = db;
    c->status_ok = 201;
    const http_str_t *batch = http_qs(r, "batch");
    c->batch = batch && batch->n == 2 && !memcmp(batch->p, "ok", 2);
    return c;
}

void http_doc_ctx_free(http_doc_ctx *c)
{
    db_doc_free(&c->doc);
    free(c->att_name);
    db_release(c->db);
    free(c);
}

static void send_write_ok(http_req_t *r, http_doc_ctx *c, const char *rev)
{
    buf_t b = BUF_INIT;
    json_writer w;
    char etag[STORE_REV_ID_MAX + 28];
    snprintf(etag, sizeof etag, "\"%s\"", rev);
    json_writer_init(&w, &b);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "ok");
    json_write_bool(&w, true);
    json_write_key_cstr(&w, "id");
    json_write_string(&w, (const char *)c->doc.id.data, c->doc.id.len);
    json_write_key_cstr(&w, "rev");
    json_write_cstr(&w, rev);
    json_write_end_object(&w);
    if (!c->local)
        http_add_header(r, "ETag", etag);
    if (c->status_ok == 201)
        http_add_header(r, "Location", http_location(r, db_name(c->db), c->doc.id.data, c->doc.id.len, c->att_name));
    http_send_json(r, c->status_ok, &b);
    buf_free(&b);
}

static void doc_written(http_req_t *r, void *arg, int status)
{
    http_doc_ctx *c = arg;
    int item = status == DV_OK ? (c->local ? c->lu.status : c->u.status) : status;
    if (item == DV_OK)
        http_stat_inc(STAT_DB_WRITES);
    if (r && !c->batch) {
        if (item == DV_OK) {
            char rev[STORE_REV_ID_MAX + 24];
            if (c->local)
                snprintf(rev, sizeof rev, "0-%llu", (unsigned long long)c->lu.new_rev);
            else
                http_rev_str(&c->u.rev, rev, sizeof rev);
            send_write_ok(r, c, rev);
        } else if (c->local && item == DV_ERR_NOTFOUND) {
            http_send_error(r, 404, "not_found", "missing");
        } else {
            db_err e;
            db_err_from_status(&e, item, c->doc.id.data, c->doc.id.len);
            http_send_db_err(r, &e);
        }
    } else if (item != DV_OK) {
        log_notice("http: write of %.*s failed: %s", (int)c->doc.id.len, (const char *)c->doc.id.data,
                   dv_strerror(item));
    }
    http_doc_ctx_free(c);
}

int http_doc_finish_atts(http_req_t *r, db_doc *d)
{
    const http_att_conf_t *ac = http_server_att_conf(r->server);
    db_att_gzip_opts o = {ac->types, ac->level};
    db_err e;
    int rc = db_doc_finish_atts(d, &o, &e);
    if (rc == DV_ERR_INVALID)
        http_send_db_err(r, &e);
    else if (rc != DV_OK)
        http_send_internal(r, rc);
    return rc;
}

/* ---- checked on a worker before they are written: design documents
 * (their functions compile) and ordinary documents of a database with
 * validate_doc_update functions (doc_validate.h) ---- */

typedef struct ddoc_check {
    http_async_t *async;
    views *views;
    http_doc_ctx *c;
    int new_edits;
    int rc;
    db_err e;
    http_vdu vdu;       /* an ordinary document: its validation functions */
    int vdu_refused;    /* rc is a refusal described by res */
    vdu_result res;
} ddoc_check;

static void submit_checked(http_req_t *r, http_doc_ctx *c, int new_edits);

static void ddoc_checked(http_req_t *r, void *arg)
{
    ddoc_check *k = arg;
    http_doc_ctx *c = k->c;
    if (r && k->rc == DV_OK) {
        submit_checked(r, c, k->new_edits);
    } else {
        if (r && k->vdu_refused)
            http_send_vdu_error(r, &k->res);
        else if (r)
            http_send_db_err(r, &k->e);
        http_doc_ctx_free(c);
    }
    http_vdu_end(&k->vdu);
    vdu_result_free(&k->res);
    free(k);
}

static void ddoc_check_job(void *arg)
{
    ddoc_check *k = arg;
    memset(&k->e, 0, sizeof k->e);
    k->rc = views_check_ddoc(k->views, k->c->doc.body.data, k->c->doc.body.len, &k->e);
    http_async_post(k->async);
}

static void vdu_check_job(void *arg)
{
    ddoc_check *k = arg;
    k->rc = http_vdu_check(&k->vdu, &k->c->doc, k->new_edits, &k->res);
    k->vdu_refused = k->rc != DV_OK;
    http_async_post(k->async);
}

int http_doc_is_design(const db_doc *d)
{
    return d->id.len > 8 && !memcmp(d->id.data, "_design/", 8);
}

static void submit_authorized(http_req_t *r, http_doc_ctx *c, int new_edits);

/* Who may write: design documents need a db admin (couch_db's
 * validate_doc_update checks is_admin first); the _users database has its
 * own rules and password hashing (users.c). */
void http_doc_submit(http_req_t *r, http_doc_ctx *c, int new_edits)
{
    if (http_doc_is_design(&c->doc) && !http_authz_db_admin(r)) {
        http_doc_ctx_free(c);
        return;
    }
    if (!strcmp(db_name(c->db), HTTP_AUTH_USERS_DB)) {
        http_users_submit(r, c, new_edits, submit_authorized);
        return;
    }
    submit_authorized(r, c, new_edits);
}

static void submit_authorized(http_req_t *r, http_doc_ctx *c, int new_edits)
{
    views *v = http_server_opts(r->server)->views;
    int design = http_doc_is_design(&c->doc);
    if (c->local || db_docid_is_local(c->doc.id.data, c->doc.id.len) || !v || (design && c->doc.deleted)) {
        submit_checked(r, c, new_edits);
        return;
    }
    /* A design document's functions must compile; an ordinary document
     * goes through the database's validation functions, if any.  Both are
     * query-server calls: off the loop. */
    ddoc_check *k = calloc(1, sizeof *k);
    if (!k) {
        http_send_internal(r, DV_ERR_NOMEM);
        http_doc_ctx_free(c);
        return;
    }
    vdu_result_init(&k->res);
    if (!design) {
        if (http_vdu_begin(r, c->db, &k->vdu) != DV_OK) {
            free(k);
            http_doc_ctx_free(c);
            return;
        }
        if (!k->vdu.set) { /* no validation function: the common case */
            http_vdu_end(&k->vdu);
            free(k);
            submit_checked(r, c, new_edits);
            return;
        }
    }
    if (!(k->async = http_async_new(r, ddoc_checked, k))) {
        http_vdu_end(&k->vdu);
        free(k);
        http_send_internal(r, DV_ERR_NOMEM);
        http_doc_ctx_free(c);
        return;
    }
    k->views = v;
    k->c = c;
    k->new_edits = new_edits;
    if (workers_submit(http_server_workers(r->server), design ? ddoc_check_job : vdu_check_job, k) != DV_OK) {
        k->rc = DV_ERR_CLOSED;
        db_err_set(&k->e, 503, "service_unavailable", "The server is stopping.");
        http_async_post(k->async);
    }
}

static void submit_checked(http_req_t *r, http_doc_ctx *c, int new_edits)
{
    if (!c->local && http_doc_finish_atts(r, &c->doc) != DV_OK) {
        http_doc_ctx_free(c);
        return;
    }
    if (c->local) {
        db_doc_to_local_update(&c->doc, &c->lu);
        c->w.locals = &c->lu;
        c->w.nlocals = 1;
    } else {
        db_doc_to_update(&c->doc, new_edits, &c->u);
        c->w.docs = &c->u;
        c->w.ndocs = 1;
    }
    if (!c->batch) {
        http_db_write(r, c->db, &c->w, doc_written, c);
        return;
    }
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "ok");
    json_write_bool(&w, true);
    json_write_key_cstr(&w, "id");
    json_write_string(&w, (const char *)c->doc.id.data, c->doc.id.len);
    json_write_end_object(&w);
    http_db_write(r, c->db, &c->w, doc_written, c); /* answered now, before the commit */
    http_send_json(r, 202, &b);
    buf_free(&b);
}

int http_doc_assign_id(http_req_t *r, db_doc *d)
{
    if (d->id.len)
        return DV_OK;
    char id[128];
    int n = http_uuids_next(http_server_uuids(r->server), id, sizeof id);
    int rc = n < 0 ? n : buf_append(&d->id, id, (size_t)n);
    if (rc != DV_OK)
        http_send_internal(r, rc);
    return rc;
}

int http_doc_size_ok(http_req_t *r, const db_doc *d)
{
    if ((long long)d->body.len <= http_server_max_document_size(r->server))
        return 1;
    db_err e;
    db_err_from_status(&e, DV_ERR_TOO_LARGE, d->id.data, d->id.len);
    http_send_db_err(r, &e);
    return 0;
}

/* ---- parameters ------------------------------------------------------------------ */

void http_qs_true(http_req_t *r, const char *name, int *out)
{
    const http_str_t *v = http_qs(r, name);
    if (v && v->n == 4 && !memcmp(v->p, "true", 4))
        *out = 1;
}

int http_parse_doc_opts(http_req_t *r, db_render_opts *o, int *latest)
{
    memset(o, 0, sizeof *o);
    *latest = 0;
    int meta = 0;
    http_qs_true(r, "revs", &o->revs);
    http_qs_true(r, "revs_info", &o->revs_info);
    http_qs_true(r, "conflicts", &o->conflicts);
    http_qs_true(r, "deleted_conflicts", &o->deleted_conflicts);
    http_qs_true(r, "local_seq", &o->local_seq);
    http_qs_true(r, "attachments", &o->attachments);
    http_qs_true(r, "att_encoding_info", &o->att_encoding_info);
    http_qs_true(r, "latest", latest);
    http_qs_true(r, "meta", &meta);
    if (meta)
        o->revs_info = o->conflicts = o->deleted_conflicts = 1;
    return DV_OK;
}

static int bad_rev(http_req_t *r)
{
    http_send_error(r, 400, "bad_request", "Invalid rev format");
    return DV_ERR_INVALID;
}

int http_parse_rev_param(http_req_t *r, const char *name, store_rev *rev, int *has)
{
    const http_str_t *v = http_qs(r, name);
    if (!v)
        return DV_OK;
    if (store_rev_parse(v->p, v->n, rev) != DV_OK)
        return bad_rev(r);
    *has = 1;
    return DV_OK;
}

int http_parse_rev_array(http_req_t *r, const json_val *arr, store_rev **revs, size_t *n)
{
    *revs = NULL;
    *n = 0;
    if (!arr || !json_is_array(arr)) {
        http_send_error(r, 400, "bad_request", "Invalid list of revisions");
        return DV_ERR_INVALID;
    }
    store_rev *v = calloc(json_len(arr) + 1, sizeof *v);
    if (!v) {
        http_send_internal(r, DV_ERR_NOMEM);
        return DV_ERR_NOMEM;
    }
    json_iter it = json_iter_begin(arr);
    const json_val *x;
    size_t k = 0;
    while (json_iter_elem(&it, &x)) {
        size_t len;
        const char *s = json_str(x, &len);
        if (!json_is_string(x) || store_rev_parse(s, len, &v[k]) != DV_OK) {
            free(v);
            return bad_rev(r);
        }
        k++;
    }
    *revs = v;
    *n = k;
    return DV_OK;
}

int http_parse_atts_since(http_req_t *r, store_rev **revs, size_t *n)
{
    json_doc jd = JSON_DOC_INIT;
    const json_val *v;
    *revs = NULL;
    *n = 0;
    int rc = http_qs_json(r, "atts_since", &jd, &v);
    if (rc == DV_OK && v)
        rc = http_parse_rev_array(r, v, revs, n);
    json_doc_free(&jd);
    return rc;
}

/* "0-N" for local documents, "N-id" otherwise. */
static int parse_any_rev(const char *s, size_t n, int local, store_rev *out)
{
    return local ? db_local_rev_parse(s, n, out) : store_rev_parse(s, n, out);
}

int http_reconcile_rev(http_req_t *r, db_doc *d, int local)
{
    const http_str_t *q = http_qs(r, "rev");
    store_rev qrev, hrev;
    int has_q = 0, has_h = 0;
    if (q) {
        if (parse_any_rev(q->p, q->n, local, &qrev) != DV_OK)
            return bad_rev(r);
        has_q = 1;
        if (d->has_rev && !store_rev_equal(&d->rev, &qrev)) {
            http_send_error(r, 400, "bad_request",
                            "Document rev from request body and query string have different values");
            return DV_ERR_INVALID;
        }
    }
    const char *im = http_req_header(r, "if-match");
    if (im) {
        size_t n = strlen(im);
        while (n && (*im == '"' || *im == ' ')) {
            im++;
            n--;
        }
        while (n && (im[n - 1] == '"' || im[n - 1] == ' '))
            n--;
        if (parse_any_rev(im, n, local, &hrev) != DV_OK)
            return bad_rev(r);
        has_h = 1;
    }
    const store_rev *explicit = d->has_rev ? &d->rev : has_q ? &qrev : NULL;
    if (has_h && explicit && !store_rev_equal(explicit, &hrev)) {
        http_send_error(r, 400, "bad_request", "Document rev and etag have different values");
        return DV_ERR_INVALID;
    }
    if (!d->has_rev && (has_q || has_h)) {
        d->rev = has_q ? qrev : hrev;
        d->has_rev = 1;
    }
    return DV_OK;
}

int http_parse_destination(http_req_t *r, const char *dest, db_doc *d)
{
    const char *q = strchr(dest, '?');
    size_t idn = q ? (size_t)(q - dest) : strlen(dest);
    char *id = malloc(idn + 1);
    if (!id) {
        http_send_internal(r, DV_ERR_NOMEM);
        return DV_ERR_NOMEM;
    }
    size_t n = http_unquote(dest, idn, id);
    int rc = buf_append(&d->id, id, n);
    free(id);
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        return rc;
    }
    if (q) {
        if (strncmp(q + 1, "rev=", 4) != 0 || store_rev_parse(q + 5, strlen(q + 5), &d->rev) != DV_OK) {
            http_send_error(r, 400, "bad_request", "Invalid rev in Destination header");
            return DV_ERR_INVALID;
        }
        d->has_rev = 1;
    }
    return DV_OK;
}

int http_doc_copy_atts(const store_snap *snap, const store_docbody *body, db_doc *d)
{
    if (!body->natts)
        return DV_OK;
    d->atts = calloc(body->natts, sizeof *d->atts);
    d->att_off = calloc(body->natts, sizeof *d->att_off);
    d->att_follows = calloc(body->natts, sizeof *d->att_follows);
    if (!d->atts || !d->att_off || !d->att_follows)
        return DV_ERR_NOMEM;
    for (size_t i = 0; i < body->natts; i++) {
        const store_att *a = &body->atts[i];
        store_att_in *in = &d->atts[d->natts++];
        in->name = strdup(a->name);
        in->type = strdup(a->type);
        in->encoding = a->encoding ? strdup(a->encoding) : NULL;
        if (!in->name || !in->type || (a->encoding && !in->encoding))
            return DV_ERR_NOMEM;
        in->decoded_length = a->decoded_length;
        d->att_off[i] = d->attdata.len;
        int rc = db_att_read_all(snap, a, 0, &d->attdata);
        if (rc != DV_OK)
            return rc;
        in->len = d->attdata.len - d->att_off[i];
    }
    for (size_t i = 0; i < d->natts; i++)
        d->atts[i].data = d->attdata.data ? d->attdata.data + d->att_off[i] : (const uint8_t *)"";
    return DV_OK;
}

/* ---- answers ------------------------------------------------------------------------ */

/* Indices of the leaves that descend from node idx (idx itself when it
 * is a leaf), winner order.  O(n log n), allocates nothing. */
uint32_t http_leaves_below(const revtree *t, uint32_t idx, uint32_t *out)
{
    return revtree_leaves_under(t, idx, out);
}

int http_write_open_rev(const store_snap *snap, const store_docinfo *di, uint32_t idx, const store_rev *rev,
                        const db_render_opts *o, json_writer *w)
{
    json_write_begin_object(w);
    if (idx == REVTREE_NONE || !di->tree.nodes[idx].has_body) {
        json_write_key_cstr(w, "missing");
        http_write_rev(w, idx == REVTREE_NONE ? rev : &di->tree.nodes[idx].rev);
        json_write_end_object(w);
        return w->err;
    }
    json_write_key_cstr(w, "ok");
    int rc = db_render_doc(snap, di, idx, o, w, NULL);
    json_write_end_object(w);
    return rc ? rc : w->err;
}
