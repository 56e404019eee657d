/*
 * handlers_bulk_get.c — POST /{db}/_bulk_get (CouchDB 3's chttpd_db
 * bulk_get_*): the request iterator of bulk_get.h and the JSON answer
 * {"results":[{"id":…,"docs":[{"ok":doc}|{"error":{…}}, …]}, …]}; the
 * multipart answers over the same iterator are in bulk_get_mp.c.
 *
 * The JSON answer streams: each fill reports requested items until ~32 KiB
 * are written, so an answer with many (or big) documents never sits whole
 * in memory; the snapshot taken at open serves every item.
 *
 * What CouchDB does, kept here: an item without "rev" answers every leaf
 * (deleted ones too: open_revs=all); with "rev" that revision, or with
 * latest=true the leaves below it; "atts_since" on an item inlines the
 * data of attachments newer than the newest of those revs found on the
 * revision's path; query options (revs, attachments, att_encoding_info,
 * conflicts, …) apply to every item.  Item errors are per item; request
 * errors (no "docs", a forbidden query parameter) fail the request.
 */
#include "base/log.h"
#include "base/status.h"
#include "http/bulk_get.h"
#include "http/doc_util.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILL_BYTES (32 * 1024)

struct http_bulk_get {
    db_t *db;
    store_snap *snap;
    buf_t body;             /* our copy of the request body (the DOM points into it) */
    json_doc jd;
    json_iter items;        /* over "docs" */
    db_render_opts opts;    /* from the query string */
    int latest;
    store_docinfo di;
    uint32_t *idx;          /* scratch: leaf indices */
    store_rev *since;       /* scratch: an item's atts_since */
    int disowned;           /* db and snap belong to someone else now */
};

void http_bulk_get_free(http_bulk_get *g)
{
    if (!g)
        return;
    json_doc_free(&g->jd);
    buf_free(&g->body);
    store_docinfo_free(&g->di);
    free(g->idx);
    free(g->since);
    if (g->snap && !g->disowned)
        store_snap_release(g->snap);
    if (g->db && !g->disowned)
        db_release(g->db);
    free(g);
}

db_t *http_bulk_get_db(http_bulk_get *g) { return g->db; }
store_snap *http_bulk_get_snap(http_bulk_get *g) { return g->snap; }
void http_bulk_get_disown(http_bulk_get *g) { g->disowned = 1; }

/* ---- request ------------------------------------------------------------ */

/* CouchDB rejects the parameters that only make sense for one document. */
static int check_query(http_req_t *r)
{
    static const char *const refused[] = {"open_revs", "new_edits", "w", "rev", "atts_since"};
    for (size_t i = 0; i < r->target.nparam; i++) {
        const http_str_t *k = &r->target.param[i].key;
        for (size_t j = 0; j < sizeof refused / sizeof refused[0]; j++) {
            if (k->n == strlen(refused[j]) && !memcmp(k->p, refused[j], k->n)) {
                char reason[64];
                snprintf(reason, sizeof reason, "\"%s\" query parameter is not acceptable", refused[j]);
                http_send_error(r, 400, "bad_request", reason);
                return DV_ERR_INVALID;
            }
        }
    }
    return DV_OK;
}

http_bulk_get *http_bulk_get_open(http_req_t *r, db_t *db)
{
    http_bulk_get *g = calloc(1, sizeof *g);
    size_t n;
    const uint8_t *p = http_req_body(r, &n);
    const json_val *root, *docs;
    if (!g) {
        db_release(db);
        http_send_internal(r, DV_ERR_NOMEM);
        return NULL;
    }
    g->db = db;
    json_doc_init(&g->jd);
    store_docinfo_init(&g->di);
    if (http_require_ctype(r, "application/json") != DV_OK)
        goto fail;
    if (n && buf_append(&g->body, p, n) != DV_OK) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    if (http_json_parse_obj(r, g->body.data, g->body.len, &g->jd, &root) != DV_OK)
        goto fail;
    docs = json_object_get_cstr(root, "docs");
    if (!docs || !json_is_array(docs)) {
        http_send_error(r, 400, "bad_request", "Missing JSON list of 'docs'.");
        goto fail;
    }
    if (check_query(r) != DV_OK)
        goto fail;
    http_parse_doc_opts(r, &g->opts, &g->latest);
    g->items = json_iter_begin(docs);
    int rc = db_snapshot(db, &g->snap);
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        goto fail;
    }
    return g;
fail:
    http_bulk_get_free(g);
    return NULL;
}

/* ---- items --------------------------------------------------------------- */

static int item_error(const http_bulk_get_cb *cb, void *ctx, const json_val *id, const json_val *rev,
                      const char *rev_text, const char *error, const char *reason)
{
    http_bulk_get_error e = {id, rev, rev_text, error, reason, 0};
    return cb->rev_error(ctx, &e);
}

/* Revision `rs` of document id is not there (CouchDB's {{not_found,
 * missing}, Rev} from open_revs). */
static int missing_rev(const http_bulk_get_cb *cb, void *ctx, const json_val *id, const char *rs)
{
    http_bulk_get_error e = {id, NULL, rs, "not_found", "missing", 1};
    return cb->rev_error(ctx, &e);
}

/* Parses "atts_since" into g->since; *bad names the offending value. */
static int parse_since(http_bulk_get *g, const json_val *v, size_t *n, const json_val **bad, const char **reason)
{
    *n = 0;
    if (!v)
        return DV_OK;
    if (!json_is_array(v)) {
        *bad = v;
        *reason = "att_since value must be array of revs.";
        return DV_ERR_INVALID;
    }
    free(g->since);
    g->since = malloc(sizeof *g->since * (json_len(v) + 1));
    if (!g->since)
        return DV_ERR_NOMEM;
    json_iter it = json_iter_begin(v);
    const json_val *x;
    while (json_iter_elem(&it, &x)) {
        size_t len;
        const char *s = json_str(x, &len);
        if (!json_is_string(x) || store_rev_parse(s, len, &g->since[*n]) != DV_OK) {
            *bad = x;
            *reason = "Invalid rev format";
            return DV_ERR_INVALID;
        }
        (*n)++;
    }
    return DV_OK;
}

/* Node k of the doc, or its missing-rev error. */
static int report_rev(http_bulk_get *g, const http_bulk_get_cb *cb, void *ctx, const json_val *id, uint32_t k,
                      const store_rev *asked, const db_render_opts *o)
{
    if (k != REVTREE_NONE && g->di.tree.nodes[k].has_body) {
        http_stat_inc(STAT_DB_READS);
        return cb->rev_ok(ctx, g->snap, &g->di, k, o);
    }
    char rs[STORE_REV_ID_MAX + 24];
    http_rev_str(k != REVTREE_NONE ? &g->di.tree.nodes[k].rev : asked, rs, sizeof rs);
    return missing_rev(cb, ctx, id, rs);
}

/* One item whose id and revs parsed: its revisions or not_found. */
static int report_doc(http_bulk_get *g, const http_bulk_get_cb *cb, void *ctx, const json_val *id,
                      const store_rev *rev, const db_render_opts *o)
{
    size_t n;
    const char *s = json_str(id, &n);
    int rc = store_snap_get_doc(g->snap, (const uint8_t *)s, n, &g->di);
    if (rc == DV_ERR_NOTFOUND || (rc == DV_OK && g->di.tree.n == 0)) {
        /* CouchDB: no document and no rev is the item's error (open_revs
         * found nothing); with a rev, that revision is missing. */
        char rs[STORE_REV_ID_MAX + 24];
        if (!rev)
            return item_error(cb, ctx, id, NULL, "undefined", "not_found", "missing");
        http_rev_str(rev, rs, sizeof rs);
        return missing_rev(cb, ctx, id, rs);
    }
    if (rc != DV_OK)
        return rc;
    uint32_t *idx = realloc(g->idx, sizeof *idx * g->di.tree.n);
    if (!idx)
        return DV_ERR_NOMEM;
    g->idx = idx;
    uint32_t k = rev ? revtree_find(&g->di.tree, rev) : REVTREE_NONE, nl = 0;
    if (!rev)
        revtree_leaves(&g->di.tree, idx, &nl);
    else if (k != REVTREE_NONE && g->latest)
        nl = revtree_leaves_under(&g->di.tree, k, idx);
    else
        return report_rev(g, cb, ctx, id, k, rev, o);
    for (uint32_t i = 0; i < nl && rc == DV_OK; i++)
        rc = report_rev(g, cb, ctx, id, idx[i], NULL, o);
    return rc;
}

/* One requested item (bulk_get_parse_arg, then the open). */
static int report_item(http_bulk_get *g, const http_bulk_get_cb *cb, void *ctx, const json_val *item)
{
    const json_val *id = json_is_object(item) ? json_object_get_cstr(item, "id") : NULL;
    if (!json_is_object(item) || json_len(item) == 0)
        return item_error(cb, ctx, NULL, NULL, NULL, "bad_request", "document must be a JSON object");
    if (!id)
        return item_error(cb, ctx, NULL, NULL, NULL, "bad_request", "document id missed");
    size_t n;
    const char *s = json_str(id, &n);
    db_err e;
    if (!json_is_string(id))
        return item_error(cb, ctx, id, NULL, NULL, "illegal_docid", "Document id must be a string");
    if (db_docid_check((const uint8_t *)s, n, 1, &e) != DV_OK)
        return item_error(cb, ctx, id, NULL, NULL, e.error, e.reason);
    const json_val *rv = json_object_get_cstr(item, "rev");
    store_rev rev;
    if (rv) {
        const char *rs = json_str(rv, &n);
        if (!json_is_string(rv) || store_rev_parse(rs, n, &rev) != DV_OK)
            return item_error(cb, ctx, id, rv, NULL, "bad_request", "Invalid rev format");
    }
    const json_val *bad = NULL;
    const char *reason = NULL;
    size_t nsince;
    int rc = parse_since(g, json_object_get_cstr(item, "atts_since"), &nsince, &bad, &reason);
    if (rc == DV_ERR_INVALID)
        return item_error(cb, ctx, id, bad, NULL, "bad_request", reason);
    if (rc != DV_OK)
        return rc;
    db_render_opts o = g->opts;
    if (nsince) {
        o.attachments = 1;
        o.atts_since = g->since;
        o.natts_since = nsince;
    }
    return report_doc(g, cb, ctx, id, rv ? &rev : NULL, &o);
}

int http_bulk_get_next(http_bulk_get *g, const http_bulk_get_cb *cb, void *ctx)
{
    const json_val *item;
    if (!json_iter_elem(&g->items, &item))
        return 0;
    const json_val *id = json_is_object(item) ? json_object_get_cstr(item, "id") : NULL;
    int rc = cb->doc_begin(ctx, id);
    if (rc == DV_OK)
        rc = report_item(g, cb, ctx, item);
    if (rc == DV_OK)
        rc = cb->doc_end(ctx);
    return rc == DV_OK ? 1 : rc;
}

int http_bulk_get_write_error(json_writer *w, const http_bulk_get_error *e)
{
    json_write_begin_object(w);
    json_write_key_cstr(w, "id");
    if (e->id)
        json_write_value(w, e->id);
    else
        json_write_null(w);
    json_write_key_cstr(w, "rev");
    if (e->rev)
        json_write_value(w, e->rev);
    else if (e->rev_text)
        json_write_cstr(w, e->rev_text);
    else
        json_write_null(w);
    json_write_key_cstr(w, "error");
    json_write_cstr(w, e->error);
    json_write_key_cstr(w, "reason");
    json_write_cstr(w, e->reason);
    json_write_end_object(w);
    return w->err;
}

/* ---- the JSON answer --------------------------------------------------------- */

typedef struct json_answer {
    http_bulk_get *g;
    buf_t *out;        /* the part being filled */
    json_writer w;
    int started;       /* "{"results":[" written */
    int items;         /* items written */
    int revs;          /* entries in the current item's "docs" */
} json_answer;

static int ja_doc_begin(void *ctx, const json_val *id)
{
    json_answer *a = ctx;
    if (a->items++ && buf_append_str(a->out, ",") != DV_OK)
        return DV_ERR_NOMEM;
    a->revs = 0;
    json_writer_init(&a->w, a->out);
    json_write_begin_object(&a->w);
    json_write_key_cstr(&a->w, "id");
    if (id)
        json_write_value(&a->w, id);
    else
        json_write_null(&a->w);
    json_write_key_cstr(&a->w, "docs");
    json_write_begin_array(&a->w);
    return a->w.err;
}

static int ja_rev_ok(void *ctx, const store_snap *snap, const store_docinfo *di, uint32_t idx,
                     const db_render_opts *o)
{
    json_answer *a = ctx;
    a->revs++;
    json_write_begin_object(&a->w);
    json_write_key_cstr(&a->w, "ok");
    int rc = db_render_doc(snap, di, idx, o, &a->w, NULL);
    json_write_end_object(&a->w);
    return rc ? rc : a->w.err;
}

static int ja_rev_error(void *ctx, const http_bulk_get_error *e)
{
    json_answer *a = ctx;
    a->revs++;
    json_write_begin_object(&a->w);
    json_write_key_cstr(&a->w, "error");
    int rc = http_bulk_get_write_error(&a->w, e);
    json_write_end_object(&a->w);
    return rc ? rc : a->w.err;
}

static int ja_doc_end(void *ctx)
{
    json_answer *a = ctx;
    json_write_end_array(&a->w);
    json_write_end_object(&a->w);
    return a->w.err;
}

static const http_bulk_get_cb json_cb = {ja_doc_begin, ja_rev_ok, ja_rev_error, ja_doc_end};

static int ja_fill(http_req_t *r, void *ctx, buf_t *out)
{
    json_answer *a = ctx;
    int rc = DV_OK;
    (void)r;
    a->out = out;
    if (!a->started) {
        a->started = 1;
        if ((rc = buf_append_str(out, "{\"results\":[")) != DV_OK)
            return rc;
    }
    while (out->len < FILL_BYTES) {
        rc = http_bulk_get_next(a->g, &json_cb, a);
        if (rc < 0) {
            log_error("http: _bulk_get of %s failed while streaming: %s", db_name(a->g->db), dv_strerror(rc));
            return rc;
        }
        if (rc == 0)
            return buf_append_str(out, "]}\n") == DV_OK ? HTTP_STREAM_DONE : DV_ERR_NOMEM;
    }
    return HTTP_STREAM_MORE;
}

static void ja_free(void *ctx)
{
    json_answer *a = ctx;
    http_bulk_get_free(a->g);
    free(a);
}

void http_handle_bulk_get(http_req_t *r)
{
    db_t *db = http_open_db(r);
    if (!db)
        return;
    http_stat_inc(STAT_BULK_REQUESTS);
    http_bulk_get *g = http_bulk_get_open(r, db);
    if (!g)
        return;
    const char *mp = http_bulk_get_multipart_type(r);
    if (mp) {
        http_send_bulk_get_multipart(r, g, mp);
        return;
    }
    json_answer *a = calloc(1, sizeof *a);
    if (!a) {
        http_bulk_get_free(g);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    a->g = g;
    http_stream_start(r, 200, ja_fill, ja_free, a);
}
