/*
 * handlers_purge.c — POST /{db}/_purge (CouchDB 3's chttpd_db): removes
 * leaf revisions, and every ancestor no other leaf keeps, as if they had
 * never been written; a document losing its last leaf disappears.
 *
 * Body {"id": ["N-x", ...], ...}; answer 201
 * {"purge_seq":null,"purged":{"id":[revisions removed], ...}} once the
 * commit holding the purge is durable, one entry per requested id (an
 * unknown id or a revision that is not a leaf purges nothing: []).  More
 * than [purge] max_document_id_number ids (100) or max_revisions_number
 * revisions in all (1000) is 400, checked after the revisions parsed, as
 * CouchDB.  The whole request is one store_write: one commit, and each
 * document that lost leaves takes one purge_seq.
 *
 * The context owns a copy of the body (the store_purge items point into
 * its parse), since the writer may still read them after the client left.
 */
#include "base/log.h"
#include "base/status.h"
#include "http/doc_util.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/stats.h"

#include <stdlib.h>
#include <string.h>

#define PURGE_MAX_IDS 100    /* CouchDB's defaults, when the options leave them 0 */
#define PURGE_MAX_REVS 1000

typedef struct purge_ctx {
    db_t *db;
    buf_t body;
    json_doc jd;
    size_t n;
    store_purge *p;
    store_rev **revs;  /* revs[i]: the parsed revisions of item i */
    uint8_t *flags;    /* purged flags, items back to back */
    store_write w;
} purge_ctx;

static void purge_free(purge_ctx *c)
{
    for (size_t i = 0; c->revs && i < c->n; i++)
        free(c->revs[i]);
    free(c->revs);
    free(c->p);
    free(c->flags);
    json_doc_free(&c->jd);
    buf_free(&c->body);
    db_release(c->db);
    free(c);
}

/* {"purge_seq":null,"purged":{...}}: each item's purged revisions in
 * request order, a revision named twice listed once. */
static int purge_answer(purge_ctx *c, buf_t *out)
{
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "purge_seq");
    json_write_null(&w);
    json_write_key_cstr(&w, "purged");
    json_write_begin_object(&w);
    for (size_t i = 0; i < c->n; i++) {
        const store_purge *p = &c->p[i];
        json_write_key(&w, (const char *)p->id, p->idlen);
        json_write_begin_array(&w);
        for (size_t j = 0; j < p->nrevs; j++) {
            int dup = 0;
            for (size_t k = 0; k < j && !dup; k++)
                dup = p->purged[k] && store_rev_equal(&p->revs[k], &p->revs[j]);
            if (p->purged[j] && !dup)
                http_write_rev(&w, &p->revs[j]);
        }
        json_write_end_array(&w);
    }
    json_write_end_object(&w);
    json_write_end_object(&w);
    return w.err;
}

static void purge_done(http_req_t *r, void *arg, int status)
{
    purge_ctx *c = arg;
    buf_t out = BUF_INIT;
    if (status != DV_OK)
        log_notice("http: _purge on %s failed: %s", db_name(c->db), dv_strerror(status));
    else
        http_stat_add(STAT_DB_WRITES, (long long)c->n);
    if (r && status == DV_OK && (status = purge_answer(c, &out)) == DV_OK)
        http_send_json(r, 201, &out);
    else if (r)
        http_send_internal(r, status);
    buf_free(&out);
    purge_free(c);
}

/* Parses the body into c: every item's revisions, then CouchDB's limits. */
static int purge_parse(http_req_t *r, purge_ctx *c)
{
    const json_val *root, *k, *v;
    long long max_ids, max_revs;
    http_server_purge_limits(r->server, &max_ids, &max_revs);
    if (max_ids <= 0)
        max_ids = PURGE_MAX_IDS;
    if (max_revs <= 0)
        max_revs = PURGE_MAX_REVS;
    size_t n, total = 0;
    const uint8_t *p = http_req_body(r, &n);
    if (n && buf_append(&c->body, p, n) != DV_OK) {
        http_send_internal(r, DV_ERR_NOMEM);
        return DV_ERR_NOMEM;
    }
    int rc = http_json_parse_obj(r, c->body.data, c->body.len, &c->jd, &root);
    if (rc != DV_OK)
        return rc;
    c->n = json_len(root);
    c->p = calloc(c->n + 1, sizeof *c->p);
    c->revs = calloc(c->n + 1, sizeof *c->revs);
    if (!c->p || !c->revs) {
        http_send_internal(r, DV_ERR_NOMEM);
        return DV_ERR_NOMEM;
    }
    json_iter it = json_iter_begin(root);
    for (size_t i = 0; json_iter_member(&it, &k, &v); i++) {
        size_t idlen;
        c->p[i].id = (const uint8_t *)json_str(k, &idlen);
        c->p[i].idlen = idlen;
        if ((rc = http_parse_rev_array(r, v, &c->revs[i], &c->p[i].nrevs)) != DV_OK)
            return rc;
        c->p[i].revs = c->revs[i];
        total += c->p[i].nrevs;
    }
    if ((long long)c->n > max_ids) {
        http_send_error(r, 400, "bad_request", "Exceeded maximum number of documents.");
        return DV_ERR_INVALID;
    }
    if ((long long)total > max_revs) {
        http_send_error(r, 400, "bad_request", "Exceeded maximum number of revisions.");
        return DV_ERR_INVALID;
    }
    c->flags = calloc(total + 1, 1);
    if (!c->flags) {
        http_send_internal(r, DV_ERR_NOMEM);
        return DV_ERR_NOMEM;
    }
    for (size_t i = 0, off = 0; i < c->n; off += c->p[i].nrevs, i++)
        c->p[i].purged = c->flags + off;
    return DV_OK;
}

void http_handle_purge(http_req_t *r)
{
    db_t *db = http_open_db(r);
    if (!db)
        return;
    purge_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        db_release(db);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    c->db = db;
    json_doc_init(&c->jd);
    if (http_require_ctype(r, "application/json") != DV_OK || purge_parse(r, c) != DV_OK) {
        purge_free(c);
        return;
    }
    c->w.purges = c->p;
    c->w.npurges = c->n;
    http_db_write(r, c->db, &c->w, purge_done, c);
}
