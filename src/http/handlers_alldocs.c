/*
 * handlers_alldocs.c — GET/POST /{db}/_all_docs, _design_docs, _local_docs
 * and POST /{db}/{those}/queries (CouchDB 3's chttpd_db all_docs_view and
 * multi_all_docs_view over fabric_view_all_docs and couch_mrview).
 *
 * Every answer streams (http_stream_start) from one snapshot taken before
 * the first byte: each fill appends at most ~32 KiB of rows (or one row,
 * when a single document is bigger) and visits at most FILL_STEPS index
 * entries (a few ms of work), so memory stays bounded and the loop thread
 * is never held long whatever the database size; a fill that only skipped
 * (deleted docs, skip=) yields to the event loop (a 1 ms timer, the
 * shortest wait streams have) before going on.  The snapshot and the
 * database reference live until the stream is disposed.
 *
 * CouchDB's semantics, kept here:
 *   - _all_docs is ordered by raw id bytes (Erlang binary order, which is
 *     memcmp with a shorter prefix first: the store's order).  startkey /
 *     endkey count only when they are JSON strings; otherwise the
 *     startkey_docid / endkey_docid bounds apply (couch_mrview_util's
 *     ad_skey_opts / ad_ekey_opts), so key=123 is no bound at all.
 *   - Deleted documents are not rows.  total_rows is the live doc count
 *     (_design_docs: the live design docs).  offset is the number of live
 *     docs before the first key of the range in iteration order, over the
 *     whole id tree (also for _design_docs), plus skip, capped at
 *     total_rows (fabric's min(Total, Offset + Skip)).  Both cost O(log n)
 *     from the by-id reductions.  _local_docs answers null for total_rows,
 *     offset and update_seq (CouchDB's fabric_view_local_docs).
 *   - With keys, each key is looked up (in any namespace: a "_local/" key
 *     finds a local doc, as fabric:open_doc does): a deleted doc is
 *     {"id","key","value":{"rev","deleted":true}} (+ "doc":null), an absent
 *     one or a non-string key {"key","error":"not_found"}; skip and limit
 *     apply to the key list (reversed by descending); offset and
 *     update_seq are null, total_rows the doc count (null for _local).
 *   - The text layout is CouchDB's: "{meta,"rows":[\r\n", rows joined by
 *     ",\r\n", "\r\n]}" (then "\n"), and for /queries
 *     {"results":[\r\n ... ,\r\n ... \r\n]}.
 */
#include "base/log.h"
#include "base/status.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/users.h"
#include "http/auth.h"
#include "http/query_args.h"
#include "http/stats.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NS_ALL = 0, NS_DESIGN = 1, NS_LOCAL = 2 };

#define FILL_BYTES (32 * 1024) /* a part stops growing past this */
#define FILL_STEPS 16384       /* index entries (or keys) visited per fill: a few ms */

static const char DESIGN_FIRST[] = "_design/", DESIGN_LAST[] = "_design0";

enum { PH_START = 0, PH_OPEN, PH_ROWS };

typedef struct ad_ctx {
    db_t *db;
    store_snap *snap;
    int ns;
    int multi;              /* /queries: {"results":[...]} around the answers */
    query_args *q;          /* the queries (one unless multi) */
    size_t nq, qi;
    db_render_opts ro;      /* of the current query's included docs */
    int phase;
    uint64_t skip, left;    /* still to skip / still allowed by limit */
    uint64_t nrows;         /* rows written by the current query */
    uint64_t reads;         /* docs included (database_reads) */
    const struct http_auth *public_only; /* non-NULL: _users listed to a non-admin, docs stripped (users.h) */
    /* range mode */
    store_id_cursor *ids;
    store_local_cursor *locals;
    store_btree_range range;
    buf_t lo, hi;           /* bytes behind range.start / range.end */
    /* keys mode */
    int by_keys;
    json_doc keys;
    const json_val **keyv;
    size_t nkeys, ki;
    /* scratch */
    store_docinfo di;
    buf_t lid, lbody;
} ad_ctx;

static void close_cursors(ad_ctx *c)
{
    store_id_cursor_close(c->ids);
    store_local_cursor_close(c->locals);
    c->ids = NULL;
    c->locals = NULL;
    free(c->keyv);
    c->keyv = NULL;
    json_doc_free(&c->keys);
}

static void ad_free(void *p)
{
    ad_ctx *c = p;
    if (!c)
        return;
    close_cursors(c);
    for (size_t i = 0; i < c->nq; i++)
        query_args_free(&c->q[i]);
    free(c->q);
    if (c->reads)
        http_stat_add(STAT_DB_READS, (long long)c->reads);
    buf_free(&c->lo);
    buf_free(&c->hi);
    buf_free(&c->lid);
    buf_free(&c->lbody);
    store_docinfo_free(&c->di);
    if (c->snap)
        store_snap_release(c->snap);
    if (c->db)
        db_release(c->db);
    free(c);
}

/* ---- bounds --------------------------------------------------------------- */

static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

/* One end of the id range: the JSON key when it is a string, else the
 * docid parameter, else none (CouchDB's <<>> / <<255>> defaults bound
 * nothing a valid UTF-8 id can pass). */
static int pick_bound(const query_key *k, int has_docid, const buf_t *docid, buf_t *out, int *has)
{
    buf_reset(out);
    *has = 1;
    if (k->set && k->is_string)
        return k->str.len ? buf_append(out, k->str.data, k->str.len) : DV_OK;
    if (has_docid)
        return docid->len ? buf_append(out, docid->data, docid->len) : DV_OK;
    *has = 0;
    return DV_OK;
}

/* Moves b toward lim: to lim when b is absent or beyond it (want_max: the
 * larger of the two wins, else the smaller). */
static int clamp(buf_t *b, int *has, const char *lim, int want_max)
{
    size_t n = strlen(lim);
    if (*has) {
        int cmp = key_cmp(b->data ? b->data : (const uint8_t *)"", b->len, (const uint8_t *)lim, n);
        if (want_max ? cmp >= 0 : cmp <= 0)
            return DV_OK;
    }
    buf_reset(b);
    *has = 1;
    return buf_append(b, lim, n);
}

/* The store range of a range query (couch_db's set_design_doc_keys for
 * _design_docs). */
static int set_range(ad_ctx *c, const query_args *a)
{
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    int has_lo = 0, has_hi = 0;
    int rc = pick_bound(&a->start_key, a->has_start_docid, &a->start_docid, &c->lo, &has_lo);
    if (rc == DV_OK)
        rc = pick_bound(&a->end_key, a->has_end_docid, &a->end_docid, &c->hi, &has_hi);
    if (rc == DV_OK && c->ns == NS_DESIGN) {
        int fwd = !a->descending;
        rc = clamp(&c->lo, &has_lo, fwd ? DESIGN_FIRST : DESIGN_LAST, fwd);
        if (rc == DV_OK)
            rc = clamp(&c->hi, &has_hi, fwd ? DESIGN_LAST : DESIGN_FIRST, !fwd);
    }
    c->range = all;
    c->range.descending = a->descending;
    c->range.has_start = has_lo;
    /* An empty bound ("") is a bound too: never hand memcmp a NULL. */
    c->range.start = (store_slice){c->lo.data ? c->lo.data : (const uint8_t *)"", c->lo.len};
    c->range.has_end = has_hi;
    c->range.end_inclusive = a->inclusive_end;
    c->range.end = (store_slice){c->hi.data ? c->hi.data : (const uint8_t *)"", c->hi.len};
    return rc;
}

/* Live docs before the range's start in iteration order. */
static int live_before(ad_ctx *c, uint64_t *out)
{
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    *out = 0;
    if (!c->range.has_start)
        return DV_OK;
    if (c->range.descending) {
        r.has_start = 1;
        r.start_inclusive = 0;
        r.start = c->range.start;
    } else {
        r.has_end = 1;
        r.end_inclusive = 0;
        r.end = c->range.start;
    }
    return store_snap_count_docs(c->snap, &r, out, NULL);
}

static int design_count(const store_snap *s, uint64_t *out)
{
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    r.has_start = 1;
    r.start = (store_slice){(const uint8_t *)DESIGN_FIRST, sizeof DESIGN_FIRST - 1};
    r.has_end = 1;
    r.end_inclusive = 0;
    r.end = (store_slice){(const uint8_t *)DESIGN_LAST, sizeof DESIGN_LAST - 1};
    return store_snap_count_docs(s, &r, out, NULL);
}

/* ---- opening a query -------------------------------------------------------- */

static int open_keys(ad_ctx *c, const query_args *a)
{
    int rc = json_doc_parse(&c->keys, a->keys.data, a->keys.len, 0, NULL);
    const json_val *arr = rc == DV_OK ? json_doc_root(&c->keys) : NULL;
    if (rc != DV_OK || !json_is_array(arr))
        return rc ? rc : DV_ERR_INVALID; /* validated before: cannot happen */
    c->nkeys = json_len(arr);
    c->keyv = malloc(sizeof *c->keyv * (c->nkeys ? c->nkeys : 1));
    if (!c->keyv)
        return DV_ERR_NOMEM;
    json_iter it = json_iter_begin(arr);
    const json_val *v;
    size_t k = 0;
    while (json_iter_elem(&it, &v))
        c->keyv[a->descending ? c->nkeys - 1 - k++ : k++] = v;
    c->by_keys = 1;
    c->ki = a->skip < c->nkeys ? (size_t)a->skip : c->nkeys;
    return DV_OK;
}

/* Starts query c->qi: its cursor or key list, and the meta text. */
static int open_query(ad_ctx *c, buf_t *out)
{
    const query_args *a = &c->q[c->qi];
    store_dbinfo info;
    store_snap_info(c->snap, &info);
    memset(&c->ro, 0, sizeof c->ro);
    c->ro.conflicts = a->conflicts == 1;
    c->ro.attachments = a->attachments;
    c->ro.att_encoding_info = a->att_encoding_info;
    c->skip = a->skip;
    c->left = a->limit;
    c->nrows = 0;
    c->by_keys = 0;
    int rc = buf_append_str(out, c->multi ? (c->qi ? ",\r\n{" : "\r\n{") : "{");
    if (rc != DV_OK)
        return rc;
    if (a->has_keys) {
        if ((rc = open_keys(c, a)) != DV_OK)
            return rc;
        if (c->ns == NS_LOCAL)
            rc = buf_append_str(out, "\"total_rows\":null,\"offset\":null");
        else
            rc = buf_printf(out, "\"total_rows\":%" PRIu64 ",\"offset\":null", info.doc_count);
        if (rc == DV_OK && a->update_seq)
            rc = buf_append_str(out, ",\"update_seq\":null");
    } else {
        uint64_t total = info.doc_count, before = 0;
        if ((rc = set_range(c, a)) != DV_OK)
            return rc;
        if (c->ns == NS_LOCAL)
            rc = store_snap_iter_local(c->snap, &c->range, &c->locals);
        else
            rc = store_snap_iter_ids(c->snap, &c->range, &c->ids);
        if (rc == DV_OK && c->ns == NS_DESIGN)
            rc = design_count(c->snap, &total);
        if (rc == DV_OK && c->ns != NS_LOCAL)
            rc = live_before(c, &before);
        if (rc != DV_OK)
            return rc;
        if (c->ns == NS_LOCAL) {
            rc = buf_append_str(out, "\"total_rows\":null,\"offset\":null");
        } else {
            uint64_t off = before + a->skip < before ? UINT64_MAX : before + a->skip;
            rc = buf_printf(out, "\"total_rows\":%" PRIu64 ",\"offset\":%" PRIu64, total, off < total ? off : total);
        }
        if (rc == DV_OK && a->update_seq && c->ns == NS_LOCAL)
            rc = buf_append_str(out, ",\"update_seq\":null");
        else if (rc == DV_OK && a->update_seq)
            rc = buf_printf(out, ",\"update_seq\":\"%" PRIu64 "\"", info.update_seq);
    }
    if (rc == DV_OK)
        rc = buf_append_str(out, ",\"rows\":[\r\n");
    c->phase = PH_ROWS;
    return rc;
}

/* ---- rows --------------------------------------------------------------------- */

static void write_local_doc(json_writer *w, const uint8_t *id, size_t idlen, uint64_t rev, const buf_t *body)
{
    char rs[32];
    snprintf(rs, sizeof rs, "0-%" PRIu64, rev);
    json_write_begin_object(w);
    json_write_key_cstr(w, "_id");
    json_write_string(w, (const char *)id, idlen);
    json_write_key_cstr(w, "_rev");
    json_write_cstr(w, rs);
    if (body->len >= 2)
        json_write_members_raw(w, (const char *)body->data, body->len);
    json_write_end_object(w);
}

/* Starts a row: separator, {"id":id,"key":key (the JSON key of a keys
 * query, else the id),"value":{"rev":rev — the caller closes both. */
static int row_begin(ad_ctx *c, json_writer *w, buf_t *out, const uint8_t *id, size_t idlen, const char *rev,
                     const json_val *key)
{
    if (c->nrows++ && buf_append_str(out, ",\r\n") != DV_OK)
        return DV_ERR_NOMEM;
    json_writer_init(w, out);
    json_write_begin_object(w);
    json_write_key_cstr(w, "id");
    json_write_string(w, (const char *)id, idlen);
    json_write_key_cstr(w, "key");
    if (key)
        json_write_value(w, key);
    else
        json_write_string(w, (const char *)id, idlen);
    json_write_key_cstr(w, "value");
    json_write_begin_object(w);
    json_write_key_cstr(w, "rev");
    json_write_cstr(w, rev);
    return w->err;
}

/* The row of document di's winning revision. */
static int doc_row(ad_ctx *c, buf_t *out, const store_docinfo *di, const json_val *key)
{
    uint32_t win = revtree_winner(&di->tree);
    int deleted = di->tree.nodes[win].deleted;
    char rev[STORE_REV_ID_MAX + 24];
    json_writer w;
    http_rev_str(&di->tree.nodes[win].rev, rev, sizeof rev);
    int rc = row_begin(c, &w, out, di->id.data, di->id.len, rev, key);
    if (rc != DV_OK)
        return rc;
    if (deleted) {
        json_write_key_cstr(&w, "deleted");
        json_write_bool(&w, true);
    }
    json_write_end_object(&w);
    if (c->q[c->qi].include_docs) {
        json_write_key_cstr(&w, "doc");
        if (deleted) {
            json_write_null(&w);
        } else {
            c->reads++;
            size_t npublic;
            /* CouchDB's filtered_view_cb strips every member, _id and _rev
             * included, that public_fields does not name. */
            rc = c->public_only ? http_users_render_public(c->public_only, c->snap, di, win, &c->ro, 0, &w, &npublic)
                                : db_render_doc(c->snap, di, win, &c->ro, &w, NULL);
        }
    }
    json_write_end_object(&w);
    return rc ? rc : w.err;
}

/* The row of a local document (rev "0-N"). */
static int local_row(ad_ctx *c, buf_t *out, const uint8_t *id, size_t idlen, uint64_t lrev, const json_val *key)
{
    char rev[32];
    json_writer w;
    snprintf(rev, sizeof rev, "0-%" PRIu64, lrev);
    int rc = row_begin(c, &w, out, id, idlen, rev, key);
    if (rc != DV_OK)
        return rc;
    json_write_end_object(&w);
    if (c->q[c->qi].include_docs) {
        c->reads++;
        json_write_key_cstr(&w, "doc");
        write_local_doc(&w, id, idlen, lrev, &c->lbody);
    }
    json_write_end_object(&w);
    return w.err;
}

static int missing_row(ad_ctx *c, buf_t *out, const json_val *key)
{
    json_writer w;
    if (c->nrows++ && buf_append_str(out, ",\r\n") != DV_OK)
        return DV_ERR_NOMEM;
    json_writer_init(&w, out);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "key");
    json_write_value(&w, key);
    json_write_key_cstr(&w, "error");
    json_write_cstr(&w, "not_found");
    json_write_end_object(&w);
    return w.err;
}

/* One key of a keys query: a doc, a local doc, or not_found. */
static int key_row(ad_ctx *c, buf_t *out, const json_val *key)
{
    size_t n;
    const char *s = json_str(key, &n);
    uint64_t lrev;
    int rc;
    if (!json_is_string(key) || n == 0)
        return missing_row(c, out, key);
    if (n >= 7 && !memcmp(s, "_local/", 7)) {
        rc = store_snap_get_local(c->snap, (const uint8_t *)s, n, &lrev, &c->lbody);
        if (rc == DV_OK)
            rc = local_row(c, out, (const uint8_t *)s, n, lrev, key);
    } else {
        rc = store_snap_get_doc(c->snap, (const uint8_t *)s, n, &c->di);
        if (rc == DV_OK)
            rc = doc_row(c, out, &c->di, key);
    }
    return rc == DV_ERR_NOTFOUND ? missing_row(c, out, key) : rc;
}

/* Rows of the current query until the part is full or the step budget
 * spent: 1 = the query has no more rows, 0 = budget spent, <0 error. */
static int fill_rows(ad_ctx *c, buf_t *out, int *steps)
{
    int include_docs = c->q[c->qi].include_docs;
    while (out->len < FILL_BYTES && *steps < FILL_STEPS) {
        int rc;
        uint64_t lrev;
        if (c->left == 0 || (c->by_keys && c->ki >= c->nkeys))
            return 1;
        (*steps)++;
        if (c->by_keys) {
            rc = key_row(c, out, c->keyv[c->ki++]);
        } else if (c->ns == NS_LOCAL) {
            rc = store_local_cursor_next(c->locals, &c->lid, &lrev, include_docs ? &c->lbody : NULL);
            if (rc <= 0)
                return rc < 0 ? rc : 1;
            if (c->skip) {
                c->skip--;
                continue;
            }
            rc = local_row(c, out, c->lid.data, c->lid.len, lrev, NULL);
        } else {
            rc = store_id_cursor_next(c->ids, &c->di);
            if (rc <= 0)
                return rc < 0 ? rc : 1;
            if (c->di.deleted)
                continue;
            if (c->skip) {
                c->skip--;
                continue;
            }
            rc = doc_row(c, out, &c->di, NULL);
        }
        if (rc != DV_OK)
            return rc;
        c->left--;
    }
    return 0;
}

static int ad_fill(http_req_t *r, void *p, buf_t *out)
{
    ad_ctx *c = p;
    int steps = 0, rc = DV_OK;
    if (c->phase == PH_START) {
        c->phase = PH_OPEN;
        if (c->multi && (rc = buf_append_str(out, "{\"results\":[")) != DV_OK)
            goto fail;
    }
    while (out->len < FILL_BYTES && steps < FILL_STEPS) {
        if (c->phase == PH_OPEN && c->qi < c->nq) {
            if ((rc = open_query(c, out)) != DV_OK)
                goto fail;
        } else if (c->phase == PH_ROWS) {
            if ((rc = fill_rows(c, out, &steps)) < 0)
                goto fail;
            if (rc == 0)
                break;
            close_cursors(c);
            c->phase = PH_OPEN;
            c->qi++;
            if ((rc = buf_append_str(out, "\r\n]}")) != DV_OK)
                goto fail;
        } else {
            rc = buf_append_str(out, c->multi ? "\r\n]}\n" : "\n");
            if (rc != DV_OK)
                goto fail;
            return HTTP_STREAM_DONE;
        }
    }
    if (out->len == 0) {
        /* Only skipped entries so far: let the loop serve others first. */
        http_stream_wake_after(r, 0);
        return HTTP_STREAM_WAIT;
    }
    return HTTP_STREAM_MORE;
fail:
    log_error("http: %s of %s failed while streaming: %s", c->ns == NS_LOCAL ? "_local_docs" : "_all_docs",
              db_name(c->db), dv_strerror(rc));
    return rc;
}

/* ---- requests ------------------------------------------------------------------- */

static int ns_of(http_req_t *r)
{
    const http_str_t *op = r->target.nseg > 1 ? &r->target.seg[1] : NULL;
    if (op && op->n == 12 && !memcmp(op->p, "_design_docs", 12))
        return NS_DESIGN;
    if (op && op->n == 11 && !memcmp(op->p, "_local_docs", 11))
        return NS_LOCAL;
    return NS_ALL;
}

static ad_ctx *ad_new(http_req_t *r, size_t nq)
{
    ad_ctx *c = calloc(1, sizeof *c);
    if (c)
        c->q = calloc(nq ? nq : 1, sizeof *c->q);
    if (!c || !c->q) {
        free(c);
        http_send_internal(r, DV_ERR_NOMEM);
        return NULL;
    }
    json_doc_init(&c->keys);
    store_docinfo_init(&c->di);
    c->ns = ns_of(r);
    c->nq = nq;
    for (size_t i = 0; i < nq; i++)
        query_args_init(&c->q[i]);
    return c;
}

static int send_args_err(http_req_t *r, int rc, const db_err *e)
{
    if (rc == DV_ERR_INVALID)
        http_send_db_err(r, e);
    else
        http_send_internal(r, rc);
    return rc;
}

/* GET: the first keys= must be a JSON array (chttpd_db's own check, before
 * the view parameters are read). */
static int check_keys_param(http_req_t *r)
{
    const http_str_t *v = http_qs(r, "keys");
    if (!v)
        return DV_OK;
    json_doc jd = JSON_DOC_INIT;
    int rc = json_doc_parse(&jd, v->p, v->n, http_server_max_json_depth(r->server), NULL);
    int array = rc == DV_OK && json_is_array(json_doc_root(&jd));
    json_doc_free(&jd);
    if (rc == DV_ERR_NOMEM) {
        http_send_internal(r, rc);
        return rc;
    }
    if (rc != DV_OK)
        http_send_error(r, 400, "bad_request", "invalid UTF-8 JSON");
    else if (!array)
        http_send_error(r, 400, "bad_request", "`keys` parameter must be an array.");
    return rc != DV_OK || !array ? DV_ERR_INVALID : DV_OK;
}

/* POST: the body's members are parameters too (decoded), read before the
 * URL's; "keys", when present, must be an array. */
static int body_args(http_req_t *r, query_args *a)
{
    json_doc jd = JSON_DOC_INIT;
    const json_val *root, *keys;
    db_err e;
    int rc = http_require_ctype(r, "application/json");
    if (rc != DV_OK || (rc = http_json_body_obj(r, &jd, &root)) != DV_OK)
        goto done;
    if ((keys = json_object_get_cstr(root, "keys")) && !json_is_array(keys)) {
        http_send_error(r, 400, "bad_request", "`keys` body member must be an array.");
        rc = DV_ERR_INVALID;
    } else if ((rc = query_args_from_object(a, root, &e)) != DV_OK) {
        send_args_err(r, rc, &e);
    }
done:
    json_doc_free(&jd);
    return rc;
}

static void start(http_req_t *r, ad_ctx *c)
{
    /* authz.c lets a non-admin list _users only with users_db_public. */
    if (!strcmp(db_name(c->db), HTTP_AUTH_USERS_DB) && !http_users_is_admin(r, c->db))
        c->public_only = http_server_opts(r->server)->auth;
    int rc = db_snapshot(c->db, &c->snap);
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        ad_free(c);
        return;
    }
    http_stream_start(r, 200, ad_fill, ad_free, c);
}

void http_handle_all_docs(http_req_t *r)
{
    db_t *db = http_open_db(r);
    if (!db)
        return;
    ad_ctx *c = ad_new(r, 1);
    db_err e;
    if (!c) {
        db_release(db);
        return;
    }
    c->db = db;
    unsigned depth = http_server_max_json_depth(r->server);
    int rc = r->method == HTTP_POST ? body_args(r, &c->q[0]) : check_keys_param(r);
    if (rc != DV_OK)
        goto fail;
    if ((rc = query_args_from_target(&c->q[0], &r->target, depth, &e)) != DV_OK ||
        (rc = query_args_validate(&c->q[0], QUERY_VIEW_MAP, &e)) != DV_OK) {
        send_args_err(r, rc, &e);
        goto fail;
    }
    start(r, c);
    return;
fail:
    ad_free(c);
}

/* POST /{db}/_all_docs/queries: {"queries":[{params}, ...]}, each query
 * starting from the URL's parameters.  Every query is checked before the
 * answer starts. */
void http_handle_all_docs_queries(http_req_t *r)
{
    json_doc jd = JSON_DOC_INIT;
    const json_val *root, *queries = NULL;
    ad_ctx *c = NULL;
    query_args base;
    db_err e;
    query_args_init(&base);
    db_t *db = http_open_db(r);
    if (!db)
        return;
    int rc = http_json_body_obj(r, &jd, &root);
    if (rc != DV_OK)
        goto fail;
    if (!(queries = json_object_get_cstr(root, "queries"))) {
        http_send_error(r, 400, "bad_request", "POST body must include `queries` parameter.");
        goto fail;
    }
    if (!json_is_array(queries)) {
        http_send_error(r, 400, "bad_request", "`queries` member must be an array.");
        goto fail;
    }
    if (!(c = ad_new(r, json_len(queries))))
        goto fail;
    c->db = db;
    db = NULL;
    c->multi = 1;
    if ((rc = query_args_from_target(&base, &r->target, http_server_max_json_depth(r->server), &e)) != DV_OK) {
        send_args_err(r, rc, &e);
        goto fail;
    }
    json_iter it = json_iter_begin(queries);
    const json_val *q;
    for (size_t i = 0; json_iter_elem(&it, &q); i++) {
        if (!json_is_object(q)) {
            http_send_error(r, 400, "bad_request", "Every member of `queries` must be a JSON object.");
            goto fail;
        }
        query_args_free(&c->q[i]);
        if ((rc = query_args_copy(&c->q[i], &base)) != DV_OK) {
            http_send_internal(r, rc);
            goto fail;
        }
        query_args_new_query(&c->q[i]);
        if ((rc = query_args_from_object(&c->q[i], q, &e)) != DV_OK ||
            (rc = query_args_validate(&c->q[i], QUERY_VIEW_MAP, &e)) != DV_OK) {
            send_args_err(r, rc, &e);
            goto fail;
        }
    }
    json_doc_free(&jd);
    query_args_free(&base);
    start(r, c);
    return;
fail:
    json_doc_free(&jd);
    query_args_free(&base);
    if (c)
        ad_free(c);
    if (db)
        db_release(db);
}
