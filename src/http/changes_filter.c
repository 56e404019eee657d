/*
 * changes_filter.c — JavaScript and view filters of the changes feed
 * (CouchDB 3's couch_changes:filter/3 custom and view clauses,
 * couch_query_servers:filter_docs and filter_view, chttpd_external's
 * json_req_obj).  See changes_filter.h for the life of a filter.
 *
 * What the function sees, as CouchDB:
 *   - each candidate revision rendered with _revisions (at most
 *     REVS_LIMIT ids, [query_server_config] revs_limit) and, for
 *     style=main_only, _conflicts; deleted revisions too (_deleted).
 *     main_only tests the winning revision; all_docs tests every leaf
 *     alone and the row lists the leaves that passed;
 *   - for filters, `this` is the design document and the second argument
 *     is `req`: info, uuid, id (null), method, requested_path, path,
 *     raw_path, query (startkey, endkey, key and descending JSON-decoded),
 *     headers (sorted by lower-case name, repeated ones joined with ", "
 *     as mochiweb's header table), body ("undefined" without one), peer,
 *     form, cookie, userCtx and secObj.  divan has no authentication yet,
 *     so userCtx is {"db", "name": null, "roles": []}.  The parts that
 *     come from the request are captured once (cfilter_new); info, uuid
 *     and secObj once per pass, from that pass's database and snapshot;
 *   - _view runs the view's map function (with views.lib for require);
 *     a change passes when it emits at least one row.
 * A function that throws fails the request as CouchDB's does: 500 with
 * the exception's name and reason before anything was sent, else a final
 * {"code","error","reason"} line (chttpd:send_chunked_error).
 *
 * Concurrency: while a batch is out (CF_OUT) the worker owns the batch
 * (candidates, leaves' pass flags, error) and reads the pass's definition,
 * req and snapshot; the loop touches none of them until it sees CF_READY
 * or CF_FAILED under mu.  The channel (http_chan_*) carries the "batch is
 * back" wake-up: the worker pokes it under mu unless the feed is gone
 * (orphan), in which case the worker closes it; otherwise the loop closes
 * it in cfilter_free.  Exactly one side closes, and the last callback of
 * the channel frees the filter, so neither side can touch freed memory.
 *
 * Cost per batch (BATCH candidates, chosen by the caller): one id lookup
 * and one rendering per tested revision on the worker, one query-server
 * round trip per FILTER_CALL_BYTES of documents, one parse of the verdicts.
 * The loop only copies ids and revisions into the batch.
 */
#include "base/digest.h"
#include "http/changes_filter.h"

#include "base/log.h"
#include "base/status.h"
#include "base/workers.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/uuids.h"
#include "views/views.h"

#include <arpa/inet.h>
#include <h2o.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FILTER_CALL_BYTES (1u << 20) /* documents per query-server call: bounds its frame */
#define REVS_LIMIT 20                /* [query_server_config] revs_limit */

typedef struct cand {
    uint64_t seq;
    size_t idoff, idlen; /* in ids */
    int deleted;         /* the winner is */
    size_t first, n;     /* its leaves to test: leaves[first .. first + n) */
} cand;

typedef struct cleaf {
    store_rev rev;
    int deleted;
    store_ptr body;
    int pass; /* written by the worker */
} cleaf;

struct cfilter {
    /* the request (loop, fixed) */
    int kind, all_docs;
    char *ddoc_id;
    char *name;
    qserver *qs;
    workers_t *workers;
    http_server_t *server;
    cfilter_back_fn back;
    void *ctx;
    buf_t tmpl; /* req members id .. userCtx, as an object text */
    /* the pass (loop writes between batches; the worker reads) */
    uint64_t ddoc_seq; /* version of the design document compiled; 0: none yet */
    buf_t def;
    char handle[48];
    buf_t req;
    const store_snap *snap;
    /* the batch */
    cand *cands;
    size_t ncand, capcand, inext;
    cleaf *leaves;
    size_t nleaf, capleaf;
    buf_t ids;
    int fstatus;
    char ferror[64];
    char freason[512];
    /* shared with the worker */
    pthread_mutex_t mu;
    int state;
    int orphan;         /* the feed is gone */
    int cancel;         /* give up: orphan, or the server's drain time ran out */
    http_chan_t *chan;  /* opened by the first submit */
    db_t *adopted_db;   /* a closed pass's, released by the worker */
    store_snap *adopted_snap;
};

static void set_error(cfilter *cf, int status, const char *error, const char *reason)
{
    cf->fstatus = status;
    snprintf(cf->ferror, sizeof cf->ferror, "%s", error && *error ? error : "unknown_error");
    snprintf(cf->freason, sizeof cf->freason, "%s", reason ? reason : "");
}

static void destroy(cfilter *cf)
{
    buf_free(&cf->tmpl);
    buf_free(&cf->def);
    buf_free(&cf->req);
    buf_free(&cf->ids);
    free(cf->cands);
    free(cf->leaves);
    free(cf->ddoc_id);
    free(cf->name);
    pthread_mutex_destroy(&cf->mu);
    free(cf);
}

/* ---- the request's part of `req` ------------------------------------------------ */

static int write_segments(json_writer *w, const http_req_t *r)
{
    json_write_begin_array(w);
    for (size_t i = 0; i < r->target.nseg; i++)
        json_write_string(w, r->target.seg[i].p, r->target.seg[i].n);
    return json_write_end_array(w);
}

/* query: every parameter, in order (a repeated one repeats); the view
 * range keys are JSON (json_query_keys).  DV_ERR_INVALID on a bad one. */
static int write_query(json_writer *w, const http_req_t *r)
{
    static const char *const json_keys[] = {"startkey", "endkey", "key", "descending"};
    json_write_begin_object(w);
    for (size_t i = 0; i < r->target.nparam; i++) {
        const http_param_t *p = &r->target.param[i];
        int is_json = 0;
        for (size_t k = 0; k < sizeof json_keys / sizeof json_keys[0]; k++)
            is_json |= p->key.n == strlen(json_keys[k]) && !memcmp(p->key.p, json_keys[k], p->key.n);
        json_write_key(w, p->key.p, p->key.n);
        if (!is_json) {
            json_write_string(w, p->value.p, p->value.n);
            continue;
        }
        json_doc jd = JSON_DOC_INIT;
        int rc = json_doc_parse(&jd, p->value.p, p->value.n, 0, NULL);
        if (rc == DV_OK)
            json_write_value(w, json_doc_root(&jd));
        json_doc_free(&jd);
        if (rc != DV_OK)
            return DV_ERR_INVALID;
    }
    return json_write_end_object(w);
}

typedef struct hdr {
    const char *name, *orig, *value;
    size_t nlen, vlen;
} hdr;

static int hdr_cmp(const void *a, const void *b)
{
    const hdr *x = a, *y = b;
    size_t m = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = strncasecmp(x->name, y->name, m);
    return c ? c : (x->nlen < y->nlen ? -1 : x->nlen > y->nlen);
}

/* headers: mochiweb keeps them in a table keyed by lower-case name (so
 * they come out sorted), with the first spelling seen and repeated values
 * joined by ", ". */
static int write_headers(json_writer *w, const h2o_req_t *req)
{
    size_t n = req->headers.size;
    hdr *h = calloc(n + 2, sizeof *h);
    char clen[24];
    buf_t v = BUF_INIT;
    if (!h)
        return DV_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const h2o_header_t *e = &req->headers.entries[i];
        h[i] = (hdr){e->name->base, e->orig_name ? e->orig_name : e->name->base, e->value.base, e->name->len,
                     e->value.len};
    }
    if (req->authority.len) /* h2o keeps Host apart from the other headers */
        h[n++] = (hdr){"host", "Host", req->authority.base, 4, req->authority.len};
    if (req->entity.base) { /* and Content-Length, once it read the body */
        int k = snprintf(clen, sizeof clen, "%zu", req->entity.len);
        h[n++] = (hdr){"content-length", "Content-Length", clen, 14, (size_t)k};
    }
    qsort(h, n, sizeof *h, hdr_cmp); /* stable enough: equal names keep no order CouchDB promises */
    json_write_begin_object(w);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        buf_reset(&v);
        for (; j < n && hdr_cmp(&h[i], &h[j]) == 0; j++)
            if ((j > i && buf_append_str(&v, ", ") != DV_OK) || buf_append(&v, h[j].value, h[j].vlen) != DV_OK)
                w->err = DV_ERR_NOMEM;
        json_write_key(w, h[i].orig, h[i].nlen);
        json_write_string(w, v.data ? (const char *)v.data : "", v.len);
        i = j;
    }
    json_write_end_object(w);
    buf_free(&v);
    free(h);
    return w->err;
}

/* cookie: mochiweb_cookies:parse_cookie — pairs split on ';' or ',',
 * trimmed, quotes removed; $-attributes skipped. */
static int write_cookies(json_writer *w, const char *s)
{
    json_write_begin_object(w);
    while (s && *s) {
        size_t k = strcspn(s, ";,");
        const char *e = s + k, *p = s;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ne = eq ? eq : e, *vs = eq ? eq + 1 : e, *ve = e;
        while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
            ne--;
        while (vs < ve && (*vs == ' ' || *vs == '\t'))
            vs++;
        while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"') {
            vs++;
            ve--;
        }
        if (ne > p && *p != '$') {
            json_write_key(w, p, (size_t)(ne - p));
            json_write_string(w, vs, (size_t)(ve - vs));
        }
        s = *e ? e + 1 : e;
    }
    return json_write_end_object(w);
}

static void peer_text(const h2o_req_t *req, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    snprintf(out, cap, "%s", "127.0.0.1");
    if (!req->conn->callbacks->get_peername || !req->conn->callbacks->get_peername(req->conn, (void *)&ss))
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
}

/* The members of `req` that come from the request, id .. userCtx. */
static int build_template(cfilter *cf, http_req_t *r)
{
    h2o_req_t *req = r->h2o;
    json_writer w;
    json_writer_init(&w, &cf->tmpl);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "id");
    json_write_null(&w);
    json_write_key_cstr(&w, "method");
    json_write_string(&w, req->method.base, req->method.len);
    json_write_key_cstr(&w, "requested_path");
    write_segments(&w, r);
    json_write_key_cstr(&w, "path");
    write_segments(&w, r);
    json_write_key_cstr(&w, "raw_path");
    json_write_string(&w, req->input.path.base, req->input.path.len);
    json_write_key_cstr(&w, "query");
    int rc = write_query(&w, r);
    if (rc == DV_ERR_INVALID)
        return rc;
    json_write_key_cstr(&w, "headers");
    if ((rc = write_headers(&w, req)) != DV_OK)
        return rc;
    size_t blen;
    const uint8_t *body = http_req_body(r, &blen);
    json_write_key_cstr(&w, "body");
    if (body || r->method == HTTP_POST)
        json_write_string(&w, body ? (const char *)body : "", blen);
    else
        json_write_cstr(&w, "undefined"); /* mochiweb's recv_body of a GET: the atom */
    char peer[INET6_ADDRSTRLEN + 1];
    peer_text(req, peer, sizeof peer);
    json_write_key_cstr(&w, "peer");
    json_write_cstr(&w, peer);
    json_write_key_cstr(&w, "form");
    json_write_begin_object(&w); /* only for form-encoded POST/PUT bodies: _changes takes JSON */
    json_write_end_object(&w);
    json_write_key_cstr(&w, "cookie");
    write_cookies(&w, http_req_header(r, "cookie"));
    json_write_key_cstr(&w, "userCtx");
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "db");
    json_write_string(&w, r->match.db.p, r->match.db.n);
    json_write_key_cstr(&w, "name");
    json_write_null(&w);
    json_write_key_cstr(&w, "roles");
    json_write_begin_array(&w);
    json_write_end_array(&w);
    json_write_end_object(&w);
    json_write_end_object(&w);
    return w.err;
}

/* ---- the channel ---------------------------------------------------------------------- */

static void on_chan(http_req_t *r, void *arg, int last)
{
    cfilter *cf = arg;
    if (last) {
        destroy(cf); /* whoever closed has let go of it */
        return;
    }
    cf->back(r, cf->ctx);
}

static void on_cancel(http_req_t *r, void *arg, int last)
{
    cfilter *cf = arg;
    (void)r;
    (void)last;
    pthread_mutex_lock(&cf->mu);
    cf->cancel = 1;
    pthread_mutex_unlock(&cf->mu);
}

int cfilter_new(http_req_t *r, int kind, const char *ddoc, const char *name, int all_docs, cfilter_back_fn back,
                void *ctx, cfilter **out)
{
    views *v = http_server_opts(r->server)->views;
    *out = NULL;
    if (!v)
        return DV_ERR_NOTFOUND;
    cfilter *cf = calloc(1, sizeof *cf);
    if (!cf)
        return DV_ERR_NOMEM;
    pthread_mutex_init(&cf->mu, NULL);
    cf->kind = kind;
    cf->all_docs = all_docs;
    cf->qs = views_qserver(v);
    cf->workers = http_server_workers(r->server);
    cf->server = r->server;
    cf->back = back;
    cf->ctx = ctx;
    size_t dl = strlen(ddoc);
    int rc = DV_ERR_NOMEM;
    if (!(cf->name = strdup(name)) || !(cf->ddoc_id = malloc(dl + 9)))
        goto fail;
    memcpy(cf->ddoc_id, "_design/", 8);
    memcpy(cf->ddoc_id + 8, ddoc, dl + 1);
    if (kind == CFILTER_JS && (rc = build_template(cf, r)) != DV_OK) {
        if (rc == DV_ERR_INVALID)
            http_send_error(r, 400, "bad_request", "invalid UTF-8 JSON");
        goto fail;
    }
    *out = cf;
    return DV_OK;
fail:
    destroy(cf);
    return rc;
}

void cfilter_free(cfilter *cf)
{
    if (!cf)
        return;
    pthread_mutex_lock(&cf->mu);
    int out = cf->state == CF_OUT;
    if (out)
        cf->orphan = cf->cancel = 1; /* the worker closes the channel */
    http_chan_t *c = cf->chan;
    pthread_mutex_unlock(&cf->mu);
    if (out)
        return;
    if (c)
        http_chan_close(c); /* its last callback frees cf */
    else
        destroy(cf);
}

/* ---- passes ----------------------------------------------------------------------------- */

/* The definition the query server compiles for this design document. */
static int build_def(cfilter *cf, const json_val *root, buf_t *def)
{
    json_writer w;
    json_writer_init(&w, def);
    json_write_begin_object(&w);
    if (cf->kind == CFILTER_JS) {
        const json_val *fs = json_object_get_cstr(root, "filters");
        const json_val *src = fs && json_is_object(fs) ? json_object_get_cstr(fs, cf->name) : NULL;
        if (!src || !json_is_string(src))
            return DV_ERR_NOTFOUND;
        json_write_key_cstr(&w, "filters");
        json_write_begin_object(&w);
        json_write_key_cstr(&w, cf->name);
        json_write_value(&w, src);
        json_write_end_object(&w);
        json_write_key_cstr(&w, "ddoc"); /* `this`, and the root of require() */
        json_write_value(&w, root);
    } else {
        const json_val *vs = json_object_get_cstr(root, "views");
        const json_val *v = vs && json_is_object(vs) ? json_object_get_cstr(vs, cf->name) : NULL;
        const json_val *map = v && json_is_object(v) ? json_object_get_cstr(v, "map") : NULL;
        const json_val *lib = vs && json_is_object(vs) ? json_object_get_cstr(vs, "lib") : NULL;
        if (!map || !json_is_string(map))
            return DV_ERR_NOTFOUND;
        json_write_key_cstr(&w, "views");
        json_write_begin_array(&w);
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "name");
        json_write_cstr(&w, cf->name);
        json_write_key_cstr(&w, "map");
        json_write_value(&w, map);
        json_write_end_object(&w);
        json_write_end_array(&w);
        if (lib && json_is_object(lib)) {
            json_write_key_cstr(&w, "lib");
            json_write_value(&w, lib);
        }
    }
    json_write_end_object(&w);
    return w.err;
}

/* Reads the design document from snap; recompiles when it changed. */
static int load_ddoc(cfilter *cf, const store_snap *snap)
{
    store_docinfo di;
    store_docinfo_init(&di);
    buf_t text = BUF_INIT, def = BUF_INIT;
    json_doc jd = JSON_DOC_INIT;
    int rc = store_snap_get_doc(snap, (const uint8_t *)cf->ddoc_id, strlen(cf->ddoc_id), &di);
    uint32_t win = rc == DV_OK ? revtree_winner(&di.tree) : REVTREE_NONE;
    if (rc == DV_ERR_NOTFOUND || (rc == DV_OK && (win == REVTREE_NONE || di.deleted))) {
        rc = cf->ddoc_seq ? DV_OK : DV_ERR_NOTFOUND; /* gone since: the last definition stays */
        goto done;
    }
    if (rc != DV_OK || di.seq == cf->ddoc_seq)
        goto done;
    db_render_opts o;
    memset(&o, 0, sizeof o);
    json_writer w;
    json_writer_init(&w, &text);
    if ((rc = db_render_doc(snap, &di, win, &o, &w, NULL)) != DV_OK ||
        (rc = json_doc_parse(&jd, text.data, text.len, JSON_DEPTH_STORED, NULL)) != DV_OK)
        goto done;
    rc = build_def(cf, json_doc_root(&jd), &def);
    if (rc == DV_ERR_NOTFOUND && cf->ddoc_seq) {
        rc = DV_OK; /* the function was removed: keep the last one */
        goto done;
    }
    if (rc != DV_OK)
        goto done;
    char hash[33];
    if ((rc = dv_md5_hex(def.data, def.len, hash)) != DV_OK)
        goto done;
    snprintf(cf->handle, sizeof cf->handle, "%s:%s", cf->kind == CFILTER_JS ? "cf" : "cv", hash);
    buf_free(&cf->def);
    cf->def = def;
    def = (buf_t)BUF_INIT;
    cf->ddoc_seq = di.seq;
done:
    json_doc_free(&jd);
    buf_free(&text);
    buf_free(&def);
    store_docinfo_free(&di);
    return rc;
}

/* The pass's `req`: info, uuid, the request's members, secObj. */
static int build_req(cfilter *cf, http_req_t *r, db_t *db, const store_snap *snap)
{
    char uuid[128];
    buf_t sec = BUF_INIT;
    int rc = http_uuids_next(http_server_uuids(r->server), uuid, sizeof uuid);
    rc = rc < 0 ? rc : DV_OK; /* else its length */
    if (rc == DV_OK)
        rc = store_snap_security(snap, &sec);
    buf_reset(&cf->req);
    json_writer w;
    json_writer_init(&w, &cf->req);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "info");
    if (rc == DV_OK)
        rc = http_db_info_json(db, &w);
    json_write_key_cstr(&w, "uuid");
    json_write_cstr(&w, uuid);
    if (rc == DV_OK && cf->tmpl.len > 2) {
        /* the template's members, spliced in: the writer still owes a
         * comma before the next key */
        rc = buf_append(&cf->req, ",", 1);
        if (rc == DV_OK)
            rc = buf_append(&cf->req, cf->tmpl.data + 1, cf->tmpl.len - 2);
    }
    json_write_key_cstr(&w, "secObj");
    json_write_raw(&w, sec.len ? (const char *)sec.data : "{}", sec.len ? sec.len : 2);
    json_write_end_object(&w);
    buf_free(&sec);
    return rc ? rc : w.err;
}

int cfilter_pass(cfilter *cf, http_req_t *r, db_t *db, const store_snap *snap)
{
    if (cfilter_state(cf) == CF_OUT)
        return DV_ERR_INVALID;
    int rc = load_ddoc(cf, snap);
    if (rc == DV_OK && cf->kind == CFILTER_JS)
        rc = build_req(cf, r, db, snap);
    return rc;
}

/* ---- batches (loop side) --------------------------------------------------------------- */

int cfilter_add(cfilter *cf, const store_change *ch)
{
    size_t nl = cf->all_docs ? ch->nleaves : ch->nleaves ? 1 : 0;
    if (cf->ncand == cf->capcand) {
        size_t nc = cf->capcand ? cf->capcand * 2 : 64;
        cand *p = realloc(cf->cands, nc * sizeof *p);
        if (!p)
            return DV_ERR_NOMEM;
        cf->cands = p;
        cf->capcand = nc;
    }
    if (cf->nleaf + nl > cf->capleaf) {
        size_t nc = cf->capleaf ? cf->capleaf * 2 : 64;
        while (nc < cf->nleaf + nl)
            nc *= 2;
        cleaf *p = realloc(cf->leaves, nc * sizeof *p);
        if (!p)
            return DV_ERR_NOMEM;
        cf->leaves = p;
        cf->capleaf = nc;
    }
    cand *c = &cf->cands[cf->ncand];
    *c = (cand){ch->seq, cf->ids.len, ch->id.len, ch->deleted, cf->nleaf, nl};
    int rc = buf_append(&cf->ids, ch->id.data, ch->id.len);
    if (rc != DV_OK)
        return rc;
    for (size_t i = 0; i < nl; i++)
        cf->leaves[cf->nleaf++] = (cleaf){ch->leaves[i].rev, ch->leaves[i].deleted, ch->leaves[i].body, 0};
    cf->ncand++;
    return DV_OK;
}

size_t cfilter_count(const cfilter *cf) { return cf->ncand; }

int cfilter_state(cfilter *cf)
{
    pthread_mutex_lock(&cf->mu);
    int s = cf->state;
    pthread_mutex_unlock(&cf->mu);
    return s;
}

static void job(void *arg);

int cfilter_submit(cfilter *cf, http_req_t *r, const store_snap *snap)
{
    if (!cf->chan && !(cf->chan = http_chan_open(r, on_chan, on_cancel, cf)))
        return DV_ERR_NOMEM;
    cf->snap = snap;
    cf->inext = 0;
    pthread_mutex_lock(&cf->mu);
    cf->state = CF_OUT;
    pthread_mutex_unlock(&cf->mu);
    if (workers_submit(cf->workers, job, cf) == DV_OK)
        return DV_OK;
    pthread_mutex_lock(&cf->mu);
    cf->state = CF_FAILED;
    pthread_mutex_unlock(&cf->mu);
    set_error(cf, 503, "service_unavailable", "The server is stopping.");
    return DV_OK; /* the feed reads the failure like any other */
}

int cfilter_next(cfilter *cf, store_change *ch, uint64_t *last)
{
    while (cf->inext < cf->ncand) {
        const cand *c = &cf->cands[cf->inext++];
        size_t np = 0;
        for (size_t i = 0; i < c->n; i++)
            np += cf->leaves[c->first + i].pass != 0;
        if (!np)
            continue;
        if (np > ch->cap) {
            store_change_leaf *nl = realloc(ch->leaves, np * sizeof *nl);
            if (!nl)
                return DV_ERR_NOMEM;
            ch->leaves = nl;
            ch->cap = np;
        }
        ch->nleaves = 0;
        for (size_t i = 0; i < c->n; i++) {
            const cleaf *l = &cf->leaves[c->first + i];
            if (l->pass)
                ch->leaves[ch->nleaves++] = (store_change_leaf){l->rev, l->deleted, l->body};
        }
        ch->seq = c->seq;
        ch->deleted = c->deleted;
        buf_reset(&ch->id);
        int rc = buf_append(&ch->id, cf->ids.data + c->idoff, c->idlen);
        return rc == DV_OK ? 1 : rc;
    }
    *last = cf->ncand ? cf->cands[cf->ncand - 1].seq : 0;
    cfilter_drop(cf);
    return 0;
}

void cfilter_drop(cfilter *cf)
{
    pthread_mutex_lock(&cf->mu);
    if (cf->state == CF_READY)
        cf->state = CF_IDLE;
    int idle = cf->state == CF_IDLE;
    pthread_mutex_unlock(&cf->mu);
    if (!idle)
        return;
    cf->ncand = cf->nleaf = cf->inext = 0;
    buf_reset(&cf->ids);
    cf->snap = NULL;
}

void cfilter_error(const cfilter *cf, int *status, const char **error, const char **reason)
{
    *status = cf->fstatus ? cf->fstatus : 500;
    *error = cf->ferror[0] ? cf->ferror : "unknown_error";
    *reason = cf->freason;
}

int cfilter_adopt(cfilter *cf, db_t *db, store_snap *snap)
{
    pthread_mutex_lock(&cf->mu);
    int take = cf->state == CF_OUT && !cf->adopted_snap;
    if (take) {
        cf->adopted_db = db;
        cf->adopted_snap = snap;
    }
    pthread_mutex_unlock(&cf->mu);
    return take;
}

/* ---- the worker ---------------------------------------------------------------------- */

typedef struct run {
    cfilter *cf;
    qserver_proc *p;
    buf_t docs;     /* "[" doc, doc ... */
    size_t *off, *len;
    size_t *leaf;   /* docs[i] tests leaves[leaf[i]] */
    size_t n, cap;
    buf_t res;
} run;

/* Whether to give up: the feed is gone, the drain time ran out, or the
 * server stops (a feed waiting for its first batch is no stream yet, so
 * the stop reaches it only when its batch is back: make that soon). */
static int cancelled(cfilter *cf)
{
    pthread_mutex_lock(&cf->mu);
    int c = cf->cancel;
    pthread_mutex_unlock(&cf->mu);
    return c || http_server_stop_requested(cf->server);
}

static int from_qserver(cfilter *cf, int rc, const qserver_error *err)
{
    set_error(cf, 500, err->error[0] ? err->error : rc == DV_ERR_TIMEOUT ? "timeout" : "os_process_error",
              err->reason[0] ? err->reason : dv_strerror(rc));
    return rc ? rc : DV_ERR_INVALID;
}

/* A map answer for one document: [rows] passes when non-empty; a
 * function that threw fails the request (filter_view has no per-document
 * escape). */
static int on_map(void *ctx, size_t i, const char *rows, size_t len, const char *failure)
{
    run *x = ctx;
    if (!rows) {
        set_error(x->cf, 500, "os_process_error", failure ? failure : "the query server failed");
        return DV_ERR_IO;
    }
    json_doc jd = JSON_DOC_INIT;
    int rc = json_doc_parse(&jd, rows, len, 0, NULL);
    const json_val *v = rc == DV_OK ? json_array_get(json_doc_root(&jd), 0) : NULL;
    if (v && json_is_array(v)) {
        x->cf->leaves[x->leaf[i]].pass = json_len(v) > 0;
    } else if (v && json_is_object(v)) {
        const json_val *e = json_object_get_cstr(v, "error"), *r = json_object_get_cstr(v, "reason");
        size_t el = 0, rl = 0;
        const char *es = e && json_is_string(e) ? json_str(e, &el) : "unknown_error";
        const char *rs = r && json_is_string(r) ? json_str(r, &rl) : "";
        char eb[64], rb[512];
        snprintf(eb, sizeof eb, "%.*s", (int)(el ? el : strlen(es)), es);
        snprintf(rb, sizeof rb, "%.*s", (int)rl, rs);
        set_error(x->cf, 500, eb, rb);
        rc = DV_ERR_INVALID;
    } else {
        set_error(x->cf, 500, "os_process_error", "bad reply from the query server");
        rc = DV_ERR_CORRUPT;
    }
    json_doc_free(&jd);
    return rc;
}

/* One qserver_filter call for docs [from, from + n) (their JSON array in
 * text); records their verdicts. */
static int call_filter(run *x, size_t from, size_t n, const char *text, size_t len, qserver_error *err)
{
    cfilter *cf = x->cf;
    buf_reset(&x->res);
    int rc = qserver_filter(x->p, cf->handle, cf->name, text, len, (const char *)cf->req.data, cf->req.len,
                            &x->res, err);
    if (rc != DV_OK)
        return rc;
    json_doc jd = JSON_DOC_INIT;
    rc = json_doc_parse(&jd, x->res.data, x->res.len, 0, NULL);
    const json_val *arr = rc == DV_OK ? json_doc_root(&jd) : NULL;
    if (!arr || !json_is_array(arr) || json_len(arr) != n) {
        set_error(cf, 500, "os_process_error", "bad reply from the query server");
        rc = DV_ERR_CORRUPT;
    } else {
        json_iter it = json_iter_begin(arr);
        const json_val *b;
        for (size_t i = from; json_iter_elem(&it, &b); i++)
            cf->leaves[x->leaf[i]].pass = json_is_true(b);
    }
    json_doc_free(&jd);
    return rc;
}

/* Sends the rendered documents to the query server and records verdicts. */
static int flush(run *x)
{
    cfilter *cf = x->cf;
    qserver_error err;
    memset(&err, 0, sizeof err);
    int rc;
    if (!x->n)
        return DV_OK;
    if (cancelled(cf)) {
        set_error(cf, 503, "service_unavailable", "The server is stopping.");
        return DV_ERR_CLOSED;
    }
    if (cf->kind == CFILTER_VIEW) {
        const char **texts = calloc(x->n, sizeof *texts);
        if (!texts)
            return DV_ERR_NOMEM;
        for (size_t i = 0; i < x->n; i++)
            texts[i] = (const char *)x->docs.data + x->off[i];
        rc = qserver_map(x->p, cf->handle, texts, x->len, x->n, on_map, x, &err);
        free(texts);
        if (rc != DV_OK && !cf->ferror[0])
            from_qserver(cf, rc, &err);
    } else {
        rc = buf_append_byte(&x->docs, ']');
        if (rc == DV_OK)
            rc = call_filter(x, 0, x->n, (const char *)x->docs.data, x->docs.len, &err);
        /* The deadline is per call; CouchDB's is per document (it filters
         * one at a time).  A batch that ran out of time goes again one
         * document per call, as CouchDB's retry of a batch that failed. */
        if (rc == DV_ERR_TIMEOUT && x->n > 1) {
            buf_t one = BUF_INIT;
            rc = DV_OK;
            for (size_t i = 0; rc == DV_OK && i < x->n; i++) {
                if (cancelled(cf)) {
                    set_error(cf, 503, "service_unavailable", "The server is stopping.");
                    rc = DV_ERR_CLOSED;
                    break;
                }
                buf_reset(&one);
                if ((rc = buf_append_byte(&one, '[')) == DV_OK &&
                    (rc = buf_append(&one, x->docs.data + x->off[i], x->len[i])) == DV_OK &&
                    (rc = buf_append_byte(&one, ']')) == DV_OK)
                    rc = call_filter(x, i, 1, (const char *)one.data, one.len, &err);
            }
            buf_free(&one);
        }
        if (rc != DV_OK && !cf->ferror[0])
            from_qserver(cf, rc, &err);
    }
    x->n = 0;
    buf_reset(&x->docs);
    return rc;
}

/* Renders leaf l (node idx of di) as the function sees it. */
static int add_doc(run *x, const store_docinfo *di, uint32_t idx, size_t l)
{
    cfilter *cf = x->cf;
    if (x->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 64;
        size_t *a = realloc(x->off, nc * sizeof *a), *b = a ? realloc(x->len, nc * sizeof *b) : NULL;
        if (a)
            x->off = a;
        if (b)
            x->len = b;
        size_t *c = b ? realloc(x->leaf, nc * sizeof *c) : NULL;
        if (!c)
            return DV_ERR_NOMEM;
        x->leaf = c;
        x->cap = nc;
    }
    int rc = buf_append_byte(&x->docs, x->n ? ',' : '[');
    if (rc != DV_OK)
        return rc;
    db_render_opts o;
    memset(&o, 0, sizeof o);
    o.revs = 1;
    o.revs_limit = REVS_LIMIT;
    o.conflicts = !cf->all_docs; /* a leaf tested alone has no conflicts (couch_db doc_meta_info) */
    json_writer w;
    json_writer_init(&w, &x->docs);
    size_t at = x->docs.len;
    if ((rc = db_render_doc(cf->snap, di, idx, &o, &w, NULL)) != DV_OK)
        return rc;
    x->off[x->n] = at;
    x->len[x->n] = x->docs.len - at;
    x->leaf[x->n++] = l;
    return x->docs.len >= FILTER_CALL_BYTES ? flush(x) : DV_OK;
}

static int run_batch(run *x)
{
    cfilter *cf = x->cf;
    qserver_error err;
    memset(&err, 0, sizeof err);
    buf_t errs = BUF_INIT;
    store_docinfo di;
    store_docinfo_init(&di);
    int rc;
    if (cancelled(cf)) {
        set_error(cf, 503, "service_unavailable", "The server is stopping.");
        return DV_ERR_CLOSED;
    }
    if ((rc = qserver_acquire(cf->qs, cf->handle, &x->p)) != DV_OK) {
        set_error(cf, 500, "os_process_error", "no query server process could start");
        return rc;
    }
    if (cancelled(cf)) { /* it may have waited long for a free process */
        set_error(cf, 503, "service_unavailable", "The server is stopping.");
        rc = DV_ERR_CLOSED;
        goto done;
    }
    if ((rc = qserver_define(x->p, cf->handle, (const char *)cf->def.data, cf->def.len, &errs, &err)) != DV_OK) {
        from_qserver(cf, rc, &err);
        goto done;
    }
    if (errs.len > 2) {
        /* Saved design documents compile (views_check_ddoc); a replicated
         * one may not: CouchDB's compilation_error. */
        json_doc jd = JSON_DOC_INIT;
        const json_val *e = json_doc_parse(&jd, errs.data, errs.len, 0, NULL) == DV_OK
                                ? json_array_get(json_doc_root(&jd), 0)
                                : NULL;
        const json_val *reason = e ? json_object_get_cstr(e, "reason") : NULL;
        size_t rl = 0;
        const char *rs = reason && json_is_string(reason) ? json_str(reason, &rl) : "";
        char rb[512];
        snprintf(rb, sizeof rb, "%.*s", (int)rl, rs);
        set_error(cf, 500, "compilation_error", rb);
        json_doc_free(&jd);
        rc = DV_ERR_INVALID;
        goto done;
    }
    for (size_t i = 0; rc == DV_OK && i < cf->ncand; i++) {
        const cand *c = &cf->cands[i];
        if ((rc = store_snap_get_doc(cf->snap, cf->ids.data + c->idoff, c->idlen, &di)) != DV_OK)
            break;
        for (size_t k = 0; rc == DV_OK && k < c->n; k++) {
            uint32_t idx = revtree_find(&di.tree, &cf->leaves[c->first + k].rev);
            if (idx != REVTREE_NONE)
                rc = add_doc(x, &di, idx, c->first + k);
        }
    }
    if (rc == DV_OK)
        rc = flush(x);
    if (rc != DV_OK && !cf->ferror[0])
        set_error(cf, 500, "unknown_error", dv_strerror(rc));
done:
    qserver_release(cf->qs, x->p);
    store_docinfo_free(&di);
    buf_free(&errs);
    return rc;
}

static void job(void *arg)
{
    cfilter *cf = arg;
    run x;
    memset(&x, 0, sizeof x);
    x.cf = cf;
    cf->ferror[0] = 0;
    int rc = run_batch(&x);
    buf_free(&x.docs);
    buf_free(&x.res);
    free(x.off);
    free(x.len);
    free(x.leaf);
    pthread_mutex_lock(&cf->mu);
    cf->state = rc == DV_OK ? CF_READY : CF_FAILED;
    db_t *db = cf->adopted_db;
    store_snap *snap = cf->adopted_snap;
    cf->adopted_db = NULL;
    cf->adopted_snap = NULL;
    int orphan = cf->orphan;
    http_chan_t *c = cf->chan;
    if (!orphan)
        http_chan_poke(c); /* under mu: the loop cannot close the channel meanwhile */
    pthread_mutex_unlock(&cf->mu);
    /* From here cf may be gone (the loop frees it after a close). */
    if (snap)
        store_snap_release(snap);
    if (db)
        db_release(db);
    if (orphan)
        http_chan_close(c);
}
