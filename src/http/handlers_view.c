/*
 * handlers_view.c — view endpoints (CouchDB 3's couch_mrview_http and
 * chttpd_db): GET/POST /{db}/_design/{ddoc}/_view/{view} (and /queries),
 * GET /{db}/_design/{ddoc}/_info, POST /{db}/_view_cleanup,
 * POST /{db}/_compact/{ddoc}.
 *
 * The loop thread only parses the request (query parameters, body); the
 * rest runs on a worker (http/wstream.h) because it may wait: for the
 * design document's index to be opened, for an index update (a build can
 * take minutes), for the query server to combine JavaScript reductions.
 * Rows stream to the client as they are read, in bounded memory.
 *
 * update=true (default) brings the view up to the database's current seq
 * before answering; update=false / stale=ok answers from the last committed
 * index; update=lazy / stale=update_after answers at once and updates
 * afterwards.  The ETag is the view's signature and indexed seq, so an
 * unchanged view answers If-None-Match with 304.
 */
#include "base/digest.h"
#include "base/log.h"
#include "base/status.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/query_args.h"
#include "http/wstream.h"
#include "views/views.h"
#include "views/vquery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct view_job {
    db_t *db;
    views *views;
    char *ddoc_id;
    char *view;        /* NULL for _info / _compact */
    query_args args;   /* one query */
    query_args *multi; /* /queries: each query's arguments */
    size_t nmulti;
    char *if_none_match;
} view_job;

static void job_free(view_job *j)
{
    if (!j)
        return;
    db_release(j->db);
    free(j->ddoc_id);
    free(j->view);
    query_args_free(&j->args);
    for (size_t i = 0; i < j->nmulti; i++)
        query_args_free(&j->multi[i]);
    free(j->multi);
    free(j->if_none_match);
    free(j);
}

/* A job on db (owned by the job once this succeeds). */
static view_job *job_alloc(http_req_t *r, db_t *db)
{
    view_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->db = db;
    j->views = http_server_opts(r->server)->views;
    query_args_init(&j->args);
    return j;
}

/* A job on the request's database, for the maintenance endpoints; NULL
 * when an answer was sent (no such database, out of memory). */
static view_job *job_open(http_req_t *r)
{
    db_t *db = http_open_db(r);
    if (!db)
        return NULL;
    view_job *j = job_alloc(r, db);
    if (!j) {
        db_release(db);
        http_send_internal(r, DV_ERR_NOMEM);
    }
    return j;
}

static view_job *job_new(http_req_t *r, db_t *db)
{
    view_job *j = job_alloc(r, db);
    if (!j)
        return NULL;
    const http_str_t *id = &r->match.docid;
    if (!(j->ddoc_id = strndup(id->p, id->n))) {
        j->db = NULL;
        job_free(j);
        return NULL;
    }
    const char *inm = http_req_header(r, "if-none-match");
    if (inm && !(j->if_none_match = strdup(inm))) {
        j->db = NULL;
        job_free(j);
        return NULL;
    }
    return j;
}

static int is_design(const http_str_t *id)
{
    return id->n > 8 && !memcmp(id->p, "_design/", 8);
}

/* ---- the worker's side ---------------------------------------------------------- */

static int ws_sink(void *ctx, const void *p, size_t n) { return http_ws_write(ctx, p, n); }

static void send_db_err(http_wstream_t *ws, const db_err *e)
{
    http_ws_send_error(ws, e->status, e->error ? e->error : "unknown_error", e->reason ? e->reason : "");
}

/* The view's ETag: its signature and the seq it is indexed up to. */
static void view_etag(const view_def *d, uint64_t seq, int raw, char out[40])
{
    char in[80];
    int n = snprintf(in, sizeof in, "%s:%llu:%d", d->sig, (unsigned long long)seq, raw);
    out[0] = '"';
    (void)dv_md5_hex(in, (size_t)n, out + 1); /* zeros if it failed: an ETag that never matches twice is fine */
    out[33] = '"';
    out[34] = 0;
}

/* query_args (validated) → the view engine's arguments.  Range keys point
 * into a; the keys of a keys= query are re-serialised into *texts (the
 * caller frees it and *keys). */
static int to_qargs(const query_args *a, int has_reduce, view_qargs *q, buf_t *texts, store_slice **keys)
{
    memset(q, 0, sizeof *q);
    *keys = NULL;
    if (a->start_key.set) {
        q->has_start = 1;
        q->start_key = (store_slice){a->start_key.json.data, a->start_key.json.len};
    }
    if (a->end_key.set) {
        q->has_end = 1;
        q->end_key = (store_slice){a->end_key.json.data, a->end_key.json.len};
    }
    if (a->has_start_docid) {
        q->has_start_docid = 1;
        q->start_docid = (store_slice){a->start_docid.data, a->start_docid.len};
    }
    if (a->has_end_docid) {
        q->has_end_docid = 1;
        q->end_docid = (store_slice){a->end_docid.data, a->end_docid.len};
    }
    q->inclusive_end = a->inclusive_end;
    q->descending = a->descending;
    q->skip = a->skip;
    q->limit = a->limit;
    q->reduce = has_reduce && a->reduce != 0;
    q->group_level = a->group_level == QUERY_GROUP_EXACT ? VIEW_GROUP_EXACT
                     : a->group_level <= 0               ? VIEW_GROUP_NONE
                                                         : a->group_level;
    q->include_docs = a->include_docs;
    q->conflicts = a->conflicts == 1;
    q->attachments = a->attachments;
    q->att_encoding_info = a->att_encoding_info;
    q->update_seq = a->update_seq;
    if (!a->has_keys)
        return DV_OK;
    json_doc kd = JSON_DOC_INIT;
    int rc = json_doc_parse(&kd, a->keys.data, a->keys.len, 0, NULL);
    const json_val *arr = rc == DV_OK ? json_doc_root(&kd) : NULL;
    size_t n = arr && json_is_array(arr) ? json_len(arr) : 0;
    size_t *offs = calloc(n + 1, sizeof *offs);
    store_slice *ks = calloc(n + 1, sizeof *ks);
    if (rc == DV_OK && (!arr || !json_is_array(arr)))
        rc = DV_ERR_INVALID;
    if (rc == DV_OK && (!offs || !ks))
        rc = DV_ERR_NOMEM;
    json_iter it = json_iter_begin(arr ? arr : json_doc_root(&kd));
    const json_val *x;
    for (size_t i = 0; rc == DV_OK && i < n && json_iter_elem(&it, &x); i++) {
        offs[i] = texts->len;
        rc = json_serialize(x, texts);
    }
    offs[n] = texts ? texts->len : 0;
    for (size_t k = 0; rc == DV_OK && k < n; k++)
        ks[k] = (store_slice){texts->data + offs[k], offs[k + 1] - offs[k]};
    free(offs);
    json_doc_free(&kd);
    if (rc != DV_OK) {
        free(ks);
        return rc;
    }
    q->has_keys = 1;
    q->keys = ks;
    q->nkeys = n;
    *keys = ks;
    return DV_OK;
}

/* Runs one query of a view (already validated) into ws: either the whole
 * answer (single) or one element of a /queries answer. */
static int run_query(http_wstream_t *ws, view_index *ix, const view_def *def, view_snap *vs, store_snap *dbsnap,
                     const query_args *a)
{
    view_qargs q;
    store_slice *keys = NULL;
    buf_t texts = BUF_INIT;
    int rc = to_qargs(a, def->rkind != VIEW_REDUCE_NONE, &q, &texts, &keys);
    if (rc == DV_OK)
        rc = view_query_run(ix, def, vs, dbsnap, &q, ws_sink, ws);
    free(keys);
    buf_free(&texts);
    return rc;
}

static void view_job_run(http_wstream_t *ws, void *arg)
{
    view_job *j = arg;
    view_index *ix = NULL;
    view_snap *vs = NULL;
    store_snap *dbsnap = NULL;
    view_def def;
    memset(&def, 0, sizeof def);
    db_err e;
    memset(&e, 0, sizeof e);
    int rc = db_snapshot(j->db, &dbsnap);
    if (rc == DV_OK && (rc = views_get(j->views, j->db, dbsnap, j->ddoc_id, strlen(j->ddoc_id), &ix, &e)) != DV_OK) {
        send_db_err(ws, &e);
        goto done;
    }
    if (rc != DV_OK) {
        http_ws_send_error(ws, 500, "unknown_error", dv_strerror(rc));
        goto done;
    }
    rc = view_index_snapshot(ix, j->view, strlen(j->view), &vs, &def);
    if (rc == DV_ERR_NOTFOUND) {
        http_ws_send_error(ws, 404, "not_found", "missing_named_view");
        goto done;
    }
    query_args *qs = j->multi ? j->multi : &j->args;
    size_t nq = j->multi ? j->nmulti : 1;
    for (size_t i = 0; i < nq; i++) {
        /* CouchDB's view type: red when the view reduces and reduce is not false */
        int vtype = def.rkind != VIEW_REDUCE_NONE && qs[i].reduce != 0 ? QUERY_VIEW_REDUCE : QUERY_VIEW_MAP;
        if (query_args_validate(&qs[i], vtype, &e) != DV_OK) {
            send_db_err(ws, &e);
            goto done;
        }
    }
    int update = qs[0].update;
    if (update == QUERY_UPDATE_TRUE) {
        view_snap_release(vs);
        vs = NULL;
        view_def_free(&def);
        if ((rc = view_index_update(ix, j->db, &e)) != DV_OK) {
            send_db_err(ws, &e);
            goto done;
        }
        if ((rc = view_index_snapshot(ix, j->view, strlen(j->view), &vs, &def)) != DV_OK) {
            http_ws_send_error(ws, 404, "not_found", "missing_named_view");
            goto done;
        }
        /* rows' documents (include_docs) from the state the index reached */
        store_snap_release(dbsnap);
        if ((rc = db_snapshot(j->db, &dbsnap)) != DV_OK) {
            http_ws_send_error(ws, 500, "unknown_error", dv_strerror(rc));
            goto done;
        }
    }
    char etag[40];
    view_etag(&def, view_snap_seq(vs), view_snap_raw(vs), etag);
    http_ws_add_header(ws, "ETag", etag);
    if (j->if_none_match && !strcmp(j->if_none_match, etag) && !j->multi) {
        http_ws_not_modified(ws);
        goto lazy;
    }
    if ((rc = http_ws_start(ws, 200)) != DV_OK)
        goto done;
    if (!j->multi) {
        rc = run_query(ws, ix, &def, vs, dbsnap, &j->args);
    } else {
        rc = http_ws_write(ws, "{\"results\":[", 12);
        for (size_t i = 0; rc == DV_OK && i < nq; i++) {
            if (i && (rc = http_ws_write(ws, ",", 1)) != DV_OK)
                break;
            rc = run_query(ws, ix, &def, vs, dbsnap, &qs[i]);
        }
        if (rc == DV_OK)
            rc = http_ws_write(ws, "]}\n", 3);
    }
    if (rc != DV_OK && rc != DV_ERR_CLOSED)
        log_error("views: query of %s/%s failed: %s", j->ddoc_id, j->view, dv_strerror(rc));
lazy:
    http_ws_end(ws);
    ws = NULL;
    if (update == QUERY_UPDATE_LAZY && view_index_update(ix, j->db, &e) != DV_OK)
        log_error("views: update after the query of %s failed: %s", j->ddoc_id, e.reason ? e.reason : "");
done:
    if (ws)
        http_ws_end(ws);
    view_def_free(&def);
    if (vs)
        view_snap_release(vs);
    view_index_release(ix);
    if (dbsnap)
        store_snap_release(dbsnap);
    job_free(j);
}

/* ---- the loop's side ------------------------------------------------------------- */

/* The view name from {rest} ("_view/name" was the route; rest is "name" or
 * "name/queries"). */
void http_handle_view(http_req_t *r)
{
    const http_str_t *rest = &r->match.rest;
    int queries = 0;
    size_t vn = rest->n;
    if (vn > 8 && !memcmp(rest->p + vn - 8, "/queries", 8)) {
        queries = 1;
        vn -= 8;
    }
    if (!is_design(&r->match.docid)) {
        http_send_error(r, 404, "not_found", "missing");
        return;
    }
    if (queries && r->method != HTTP_POST) {
        http_send_method_not_allowed(r, "POST");
        return;
    }
    if (r->method == HTTP_POST && http_require_ctype(r, "application/json") != DV_OK)
        return;
    db_t *db = http_open_db(r);
    if (!db)
        return;
    view_job *j = job_new(r, db);
    json_doc jd = JSON_DOC_INIT;
    db_err e;
    if (!j) {
        db_release(db);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    if (!(j->view = strndup(rest->p, vn))) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    if (query_args_from_target(&j->args, &r->target, http_server_max_json_depth(r->server), &e) != DV_OK) {
        http_send_db_err(r, &e);
        goto fail;
    }
    if (r->method == HTTP_POST) {
        const json_val *root;
        if (http_json_body_obj(r, &jd, &root) != DV_OK)
            goto fail;
        if (queries) {
            const json_val *qs = json_object_get_cstr(root, "queries");
            if (!qs || !json_is_array(qs)) {
                http_send_error(r, 400, "bad_request", "POST body must include `queries` parameter.");
                goto fail;
            }
            j->nmulti = json_len(qs);
            if (!(j->multi = calloc(j->nmulti + 1, sizeof *j->multi))) {
                http_send_internal(r, DV_ERR_NOMEM);
                goto fail;
            }
            json_iter it = json_iter_begin(qs);
            const json_val *q;
            for (size_t i = 0; json_iter_elem(&it, &q); i++) {
                query_args_init(&j->multi[i]);
                if (query_args_copy(&j->multi[i], &j->args) != DV_OK) {
                    http_send_internal(r, DV_ERR_NOMEM);
                    goto fail;
                }
                query_args_new_query(&j->multi[i]);
                if (!json_is_object(q) || query_args_from_object(&j->multi[i], q, &e) != DV_OK) {
                    if (!json_is_object(q))
                        http_send_error(r, 400, "bad_request", "Each query must be a JSON object");
                    else
                        http_send_db_err(r, &e);
                    goto fail;
                }
            }
        } else if (query_args_from_object(&j->args, root, &e) != DV_OK) {
            http_send_db_err(r, &e);
            goto fail;
        }
    }
    json_doc_free(&jd);
    if (http_run_on_worker(r, view_job_run, j) != DV_OK)
        job_free(j);
    return;
fail:
    json_doc_free(&jd);
    job_free(j);
}

/* ---- _info, _compact/{ddoc}, _view_cleanup ------------------------------------------ */

static void info_job_run(http_wstream_t *ws, void *arg)
{
    view_job *j = arg;
    store_snap *snap = NULL;
    view_index *ix = NULL;
    db_err e;
    memset(&e, 0, sizeof e);
    buf_t b = BUF_INIT;
    int rc = db_snapshot(j->db, &snap);
    if (rc == DV_OK)
        rc = views_get(j->views, j->db, snap, j->ddoc_id, strlen(j->ddoc_id), &ix, &e);
    if (rc == DV_OK)
        rc = view_index_info(ix, &b);
    if (rc == DV_OK)
        http_ws_send_json(ws, 200, &b);
    else if (e.error)
        send_db_err(ws, &e);
    else
        http_ws_send_error(ws, 500, "unknown_error", dv_strerror(rc));
    http_ws_end(ws);
    buf_free(&b);
    view_index_release(ix);
    if (snap)
        store_snap_release(snap);
    job_free(j);
}

void http_handle_design_info(http_req_t *r)
{
    if (!is_design(&r->match.docid)) {
        http_send_error(r, 404, "not_found", "missing");
        return;
    }
    db_t *db = http_open_db(r);
    if (!db)
        return;
    view_job *j = job_new(r, db);
    if (!j) {
        db_release(db);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    if (http_run_on_worker(r, info_job_run, j) != DV_OK)
        job_free(j);
}

static void compact_job_run(http_wstream_t *ws, void *arg)
{
    view_job *j = arg;
    store_snap *snap = NULL;
    view_index *ix = NULL;
    db_err e;
    memset(&e, 0, sizeof e);
    int rc = db_snapshot(j->db, &snap);
    if (rc == DV_OK)
        rc = views_get(j->views, j->db, snap, j->ddoc_id, strlen(j->ddoc_id), &ix, &e);
    if (rc != DV_OK) {
        if (e.error)
            send_db_err(ws, &e);
        else
            http_ws_send_error(ws, 500, "unknown_error", dv_strerror(rc));
        http_ws_end(ws);
    } else {
        static const buf_t ok = {(uint8_t *)"{\"ok\":true}", 11, 11};
        http_ws_send_json(ws, 202, &ok);
        http_ws_end(ws);
        if (view_index_compact(ix, &e) != DV_OK)
            log_error("views: compaction of %s failed: %s", j->ddoc_id, e.reason ? e.reason : "");
    }
    view_index_release(ix);
    if (snap)
        store_snap_release(snap);
    job_free(j);
}

/* POST /{db}/_compact/{ddoc}: the design doc's name is {rest}. */
void http_handle_compact_views(http_req_t *r)
{
    if (http_require_ctype(r, "application/json") != DV_OK)
        return;
    view_job *j = job_open(r);
    if (!j)
        return;
    size_t n = r->match.rest.n;
    if (!(j->ddoc_id = malloc(n + 9))) {
        job_free(j);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    memcpy(j->ddoc_id, "_design/", 8);
    memcpy(j->ddoc_id + 8, r->match.rest.p, n);
    j->ddoc_id[8 + n] = 0;
    if (http_run_on_worker(r, compact_job_run, j) != DV_OK)
        job_free(j);
}

/* The signatures of every view of every design document of the db. */
static int live_sigs(const store_snap *snap, char ***sigs, size_t *n)
{
    store_btree_range rg = STORE_BTREE_RANGE_ALL;
    rg.has_start = rg.has_end = 1;
    rg.start = (store_slice){(const uint8_t *)"_design/", 8};
    rg.end = (store_slice){(const uint8_t *)"_design0", 8};
    rg.end_inclusive = 0;
    store_id_cursor *c = NULL;
    store_docinfo di;
    store_docinfo_init(&di);
    *sigs = NULL;
    *n = 0;
    size_t cap = 0;
    int rc = store_snap_iter_ids(snap, &rg, &c);
    while (rc == DV_OK && (rc = store_id_cursor_next(c, &di)) == 1) {
        rc = DV_OK;
        if (di.deleted)
            continue;
        buf_t b = BUF_INIT;
        json_doc jd = JSON_DOC_INIT;
        json_writer w;
        json_writer_init(&w, &b);
        db_render_opts o;
        memset(&o, 0, sizeof o);
        view_group g;
        db_err e;
        if (db_render_doc(snap, &di, revtree_winner(&di.tree), &o, &w, NULL) == DV_OK &&
            json_doc_parse(&jd, b.data, b.len, JSON_DEPTH_STORED, NULL) == DV_OK &&
            view_group_from_ddoc(json_doc_root(&jd), &g, &e) == DV_OK) {
            for (size_t i = 0; rc == DV_OK && i < g.nviews; i++) {
                if (*n == cap) {
                    cap = cap ? cap * 2 : 16;
                    char **ns = realloc(*sigs, cap * sizeof *ns);
                    if (!ns) {
                        rc = DV_ERR_NOMEM;
                        break;
                    }
                    *sigs = ns;
                }
                if (!((*sigs)[*n] = strdup(g.views[i].sig)))
                    rc = DV_ERR_NOMEM;
                else
                    (*n)++;
            }
            view_group_free(&g);
        }
        json_doc_free(&jd);
        buf_free(&b);
    }
    if (c)
        store_id_cursor_close(c);
    store_docinfo_free(&di);
    return rc < 0 ? rc : DV_OK;
}

static void cleanup_job_run(http_wstream_t *ws, void *arg)
{
    view_job *j = arg;
    store_snap *snap = NULL;
    char **sigs = NULL;
    size_t n = 0;
    int rc = db_snapshot(j->db, &snap);
    if (rc == DV_OK)
        rc = live_sigs(snap, &sigs, &n);
    if (rc == DV_OK)
        rc = views_cleanup(j->views, j->db, (const char *const *)sigs, n);
    if (rc == DV_OK) {
        static const buf_t ok = {(uint8_t *)"{\"ok\":true}", 11, 11};
        http_ws_send_json(ws, 202, &ok);
    } else {
        http_ws_send_error(ws, 500, "unknown_error", dv_strerror(rc));
    }
    http_ws_end(ws);
    for (size_t i = 0; i < n; i++)
        free(sigs[i]);
    free(sigs);
    if (snap)
        store_snap_release(snap);
    job_free(j);
}

void http_handle_view_cleanup(http_req_t *r)
{
    if (http_require_ctype(r, "application/json") != DV_OK)
        return;
    view_job *j = job_open(r);
    if (!j)
        return;
    if (http_run_on_worker(r, cleanup_job_run, j) != DV_OK)
        job_free(j);
}
