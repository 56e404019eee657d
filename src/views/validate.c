/*
 * validate.c — the validate_doc_update functions of a database: the cached
 * set of validating design documents per database incarnation, and
 * running them in the query server.  See validate.h.
 *
 * Cache.  One entry per database incarnation (name + instance), holding a
 * reference-counted vdu_set: every live design document (id, winning rev)
 * of the snapshot it was built from, and for those with a JavaScript
 * validate_doc_update the query-server definition and its handle.  A set
 * is immutable once built; a lookup that finds the design documents
 * changed builds a new set (reading only the bodies whose rev changed,
 * copying the rest from the old set) and swaps it in.  Callers holding
 * the old set keep using it until they release it.  At most
 * VDU_CACHE_MAX entries: the least recently used one is dropped.
 *
 * Invariants: a set's design documents are in id order, which is the
 * order the functions run in; fns[i].def is NULL iff that design document
 * has no validation function; a set is never modified after it is
 * published (only its reference count changes, under the cache mutex).
 *
 * Cost: a lookup on a database without design documents is one B+tree
 * descent of the by-id tree; with k design documents it decodes k
 * revision trees and compares k ids (bodies are read only when changed).
 * A run costs one query-server round trip per validation function and
 * document.
 */
#include "base/digest.h"
#include "views/validate.h"

#include "base/log.h"
#include "base/status.h"
#include "json/json.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VDU_CACHE_MAX 256u

typedef struct vdu_fn {
    char *id;          /* design document id, NUL-terminated */
    size_t id_len;
    store_rev rev;     /* its winning rev */
    char *def;         /* query-server definition; NULL: no validation function */
    size_t def_len;
    char handle[40];   /* "v:<md5 of def>" */
} vdu_fn;

struct vdu_set {
    size_t refs;       /* under the cache mutex */
    vdu_cache *cache;
    vdu_fn *fns;
    size_t n;
    size_t nvdu;       /* fns with a def */
};

typedef struct vdu_entry {
    char *dbname;
    uint64_t instance;
    vdu_set *set;
    uint64_t used;
} vdu_entry;

struct vdu_cache {
    pthread_mutex_t mu;
    vdu_entry e[VDU_CACHE_MAX];
    size_t n;
    uint64_t tick;
};

/* A live design document as the lookup scan saw it. */
typedef struct ddoc_seen {
    buf_t id;
    store_rev rev;
    store_ptr body;
} ddoc_seen;

int vdu_cache_new(vdu_cache **out)
{
    vdu_cache *c = calloc(1, sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return DV_OK;
}

static void set_free(vdu_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->fns[i].id);
        free(s->fns[i].def);
    }
    free(s->fns);
    free(s);
}

/* Drops one reference; the cache mutex must be held. */
static void set_unref_locked(vdu_set *s)
{
    if (s && --s->refs == 0)
        set_free(s);
}

void vdu_cache_free(vdu_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].dbname);
        set_unref_locked(c->e[i].set);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void vdu_set_release(vdu_set *s)
{
    if (!s)
        return;
    vdu_cache *c = s->cache;
    pthread_mutex_lock(&c->mu);
    set_unref_locked(s);
    pthread_mutex_unlock(&c->mu);
}

size_t vdu_set_count(const vdu_set *s)
{
    return s ? s->nvdu : 0;
}

void vdu_result_init(vdu_result *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->reason);
}

void vdu_result_free(vdu_result *r)
{
    buf_free(&r->reason);
}

/* ---- building a set ------------------------------------------------------- */

/* Lists the live design documents of snap, in id order. */
static int scan_ddocs(const store_snap *snap, ddoc_seen **out, size_t *n)
{
    static const char first[] = "_design/", last[] = "_design0"; /* '0' follows '/' */
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    r.has_start = 1;
    r.start = (store_slice){(const uint8_t *)first, sizeof first - 1};
    r.has_end = 1;
    r.end_inclusive = 0;
    r.end = (store_slice){(const uint8_t *)last, sizeof last - 1};
    store_id_cursor *cur = NULL;
    store_docinfo di;
    store_docinfo_init(&di);
    ddoc_seen *v = NULL;
    size_t len = 0, cap = 0;
    int rc = store_snap_iter_ids(snap, &r, &cur);
    while (rc == DV_OK) {
        int k = store_id_cursor_next(cur, &di);
        if (k <= 0) {
            rc = k;
            break;
        }
        uint32_t w = revtree_winner(&di.tree);
        if (w == REVTREE_NONE || di.tree.nodes[w].deleted || !di.tree.nodes[w].has_body)
            continue;
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 4;
            ddoc_seen *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = DV_ERR_NOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        ddoc_seen *d = &v[len];
        buf_init(&d->id);
        d->rev = di.tree.nodes[w].rev;
        d->body = di.tree.nodes[w].body;
        len++;
        rc = buf_append(&d->id, di.id.data, di.id.len);
    }
    if (cur)
        store_id_cursor_close(cur);
    store_docinfo_free(&di);
    *out = v;
    *n = len;
    return rc;
}

static void seen_free(ddoc_seen *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_free(&v[i].id);
    free(v);
}

static int same_ddocs(const vdu_set *s, const ddoc_seen *v, size_t n)
{
    if (!s || s->n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s->fns[i].id_len != v[i].id.len || memcmp(s->fns[i].id, v[i].id.data, v[i].id.len) ||
            !store_rev_equal(&s->fns[i].rev, &v[i].rev))
            return 0;
    return 1;
}

/* The query-server definition of one design document's validation
 * function: {"validate_doc_update": src, "ddoc": the document} (the
 * document is the function's `this` and its require() root).  def stays
 * empty when the document has none, or one in another language. */
static int ddoc_def(const store_snap *snap, const ddoc_seen *d, buf_t *def)
{
    store_docbody body;
    store_docbody_init(&body);
    json_doc jd = JSON_DOC_INIT;
    buf_t rev = BUF_INIT;
    int rc = store_snap_read_body(snap, d->body, &body);
    if (rc != DV_OK)
        goto done;
    if (json_doc_parse(&jd, body.body.data, body.body.len, JSON_DEPTH_STORED, NULL) != DV_OK) {
        rc = DV_ERR_CORRUPT;
        goto done;
    }
    const json_val *root = json_doc_root(&jd);
    const json_val *src = json_is_object(root) ? json_object_get_cstr(root, "validate_doc_update") : NULL;
    const json_val *lang = json_is_object(root) ? json_object_get_cstr(root, "language") : NULL;
    size_t ll = 0;
    const char *ls = lang && json_is_string(lang) ? json_str(lang, &ll) : "javascript";
    if (!src || !json_is_string(src) || !(ll ? ll == 10 && !memcmp(ls, "javascript", 10) : !lang))
        goto done; /* CouchDB ignores functions of languages it has no server for: so does divan */
    if ((rc = store_rev_format(&d->rev, &rev)) != DV_OK)
        goto done;
    json_writer w;
    json_writer_init(&w, def);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "validate_doc_update");
    json_write_value(&w, src);
    json_write_key_cstr(&w, "ddoc");
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "_id");
    json_write_string(&w, (const char *)d->id.data, d->id.len);
    json_write_key_cstr(&w, "_rev");
    json_write_string(&w, (const char *)rev.data, rev.len);
    if (body.body.len > 2)
        json_write_members_raw(&w, (const char *)body.body.data, body.body.len);
    json_write_end_object(&w);
    json_write_end_object(&w);
    rc = w.err;
done:
    buf_free(&rev);
    json_doc_free(&jd);
    store_docbody_free(&body);
    return rc;
}

/* A new set for the design documents v[0..n) of snap; fns whose id and
 * rev are in old are copied from it. */
static int build_set(vdu_cache *c, const store_snap *snap, const ddoc_seen *v, size_t n, const vdu_set *old,
                     vdu_set **out)
{
    buf_t def = BUF_INIT;
    int rc = DV_ERR_NOMEM;
    vdu_set *s = calloc(1, sizeof *s);
    if (!s || !(s->fns = calloc(n ? n : 1, sizeof *s->fns)))
        goto fail;
    s->cache = c;
    s->refs = 1;
    for (size_t i = 0; i < n; i++) {
        vdu_fn *f = &s->fns[i];
        s->n = i + 1;
        rc = DV_ERR_NOMEM;
        if (!(f->id = strndup((const char *)v[i].id.data, v[i].id.len)))
            goto fail;
        f->id_len = v[i].id.len;
        f->rev = v[i].rev;
        const vdu_fn *o = NULL;
        for (size_t k = 0; old && k < old->n && !o; k++)
            if (old->fns[k].id_len == f->id_len && !memcmp(old->fns[k].id, f->id, f->id_len) &&
                store_rev_equal(&old->fns[k].rev, &f->rev))
                o = &old->fns[k];
        if (o) {
            if (o->def) {
                if (!(f->def = malloc(o->def_len)))
                    goto fail;
                memcpy(f->def, o->def, o->def_len);
                f->def_len = o->def_len;
                memcpy(f->handle, o->handle, sizeof f->handle);
            }
        } else {
            buf_reset(&def);
            if ((rc = ddoc_def(snap, &v[i], &def)) != DV_OK)
                goto fail;
            if (def.len) {
                char hash[33];
                if ((rc = dv_md5_hex(def.data, def.len, hash)) != DV_OK)
                    goto fail;
                snprintf(f->handle, sizeof f->handle, "v:%s", hash);
                if (!(f->def = malloc(def.len)))
                    goto fail;
                memcpy(f->def, def.data, def.len);
                f->def_len = def.len;
            }
        }
        s->nvdu += f->def != NULL;
    }
    buf_free(&def);
    *out = s;
    return DV_OK;
fail:
    buf_free(&def);
    if (s)
        set_free(s);
    return rc;
}

static vdu_entry *find_entry(vdu_cache *c, const char *name, uint64_t instance)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].instance == instance && !strcmp(c->e[i].dbname, name))
            return &c->e[i];
    return NULL;
}

/* Publishes s as name's set (taking the caller's reference); cache mutex
 * held.  Out of memory only means the set is not cached. */
static void publish_locked(vdu_cache *c, const char *name, uint64_t instance, vdu_set *s)
{
    vdu_entry *e = find_entry(c, name, instance);
    if (!e) {
        if (c->n == VDU_CACHE_MAX) {
            size_t lru = 0;
            for (size_t i = 1; i < c->n; i++)
                if (c->e[i].used < c->e[lru].used)
                    lru = i;
            free(c->e[lru].dbname);
            set_unref_locked(c->e[lru].set);
            c->e[lru] = c->e[--c->n];
        }
        char *dn = strdup(name);
        if (!dn) {
            set_unref_locked(s);
            return;
        }
        e = &c->e[c->n++];
        e->dbname = dn;
        e->instance = instance;
        e->set = NULL;
    }
    set_unref_locked(e->set);
    e->set = s;
    e->used = ++c->tick;
}

int vdu_lookup(views *v, db_t *db, const store_snap *snap, vdu_set **out)
{
    *out = NULL;
    vdu_cache *c = views_vdu_cache(v);
    ddoc_seen *seen = NULL;
    size_t n = 0;
    int rc = scan_ddocs(snap, &seen, &n);
    if (rc != DV_OK || n == 0)
        goto done; /* no design document: nothing to validate, nothing cached */
    const char *name = db_name(db);
    uint64_t instance = db_instance(db);
    vdu_set *old = NULL, *s = NULL;
    pthread_mutex_lock(&c->mu);
    vdu_entry *e = find_entry(c, name, instance);
    if (e) {
        e->used = ++c->tick;
        old = e->set;
        old->refs++;
    }
    pthread_mutex_unlock(&c->mu);
    if (same_ddocs(old, seen, n)) {
        s = old;
        old = NULL;
    } else if ((rc = build_set(c, snap, seen, n, old, &s)) == DV_OK) {
        pthread_mutex_lock(&c->mu);
        s->refs++; /* one for the cache, one for the caller */
        publish_locked(c, name, instance, s);
        pthread_mutex_unlock(&c->mu);
    }
    vdu_set_release(old);
    if (s && s->nvdu == 0) {
        vdu_set_release(s);
        s = NULL;
    }
    *out = s;
done:
    seen_free(seen, n);
    return rc;
}

/* ---- running -------------------------------------------------------------- */

static int refuse(vdu_result *res, int status, const char *error, const char *reason_json, size_t len)
{
    res->status = status;
    snprintf(res->error, sizeof res->error, "%s", error);
    buf_reset(&res->reason);
    int rc = buf_append(&res->reason, reason_json, len);
    return rc == DV_OK ? DV_ERR_INVALID : rc;
}

/* A refusal whose reason is a C string (written as a JSON string). */
static int refuse_str(vdu_result *res, int status, const char *error, const char *reason)
{
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    json_write_cstr(&w, reason);
    int rc = w.err ? w.err : refuse(res, status, error, (const char *)b.data, b.len);
    buf_free(&b);
    return rc;
}

/* The refusal for one answer of a function (not QSERVER_VALID). */
static int refusal(enum qserver_verdict verdict, const buf_t *msg, vdu_result *res)
{
    const char *m = (const char *)msg->data;
    switch (verdict) {
    case QSERVER_FORBIDDEN:
        return refuse(res, 403, "forbidden", m, msg->len);
    case QSERVER_UNAUTHORIZED:
        return refuse(res, 401, "unauthorized", m, msg->len);
    case QSERVER_ERROR: {
        /* a JavaScript error of this document: {"error","reason"} */
        json_doc jd = JSON_DOC_INIT;
        int rc = json_doc_parse(&jd, msg->data, msg->len, 0, NULL);
        const json_val *root = rc == DV_OK ? json_doc_root(&jd) : NULL;
        const json_val *e = root ? json_object_get_cstr(root, "error") : NULL;
        const json_val *r = root ? json_object_get_cstr(root, "reason") : NULL;
        char name[64] = "unknown_error";
        size_t en = 0;
        const char *es = e && json_is_string(e) ? json_str(e, &en) : NULL;
        if (es && en && en < sizeof name) {
            memcpy(name, es, en);
            name[en] = 0;
        }
        buf_t rj = BUF_INIT;
        rc = r ? json_serialize(r, &rj) : buf_append_str(&rj, "null");
        if (rc == DV_OK)
            rc = refuse(res, 500, name, (const char *)rj.data, rj.len);
        buf_free(&rj);
        json_doc_free(&jd);
        return rc;
    }
    default:
        return refuse(res, 500, "unknown_error", m, msg->len);
    }
}

static int run_one(qserver *qs, const vdu_fn *f, const char *args, size_t args_len, vdu_result *res)
{
    qserver_proc *p;
    qserver_error err;
    buf_t errors = BUF_INIT, msg = BUF_INIT;
    enum qserver_verdict verdict = QSERVER_VALID;
    memset(&err, 0, sizeof err);
    int rc = qserver_acquire(qs, f->handle, &p);
    if (rc != DV_OK)
        return refuse_str(res, 500, "os_process_error", "no query server process could start");
    rc = qserver_define(p, f->handle, f->def, f->def_len, &errors, &err);
    if (rc == DV_OK && errors.len > 2) {
        /* saved before it was checked (cannot happen through divan's own
         * write paths, which compile design documents first) */
        qserver_release(qs, p);
        rc = refuse_str(res, 500, "compilation_error", "validate_doc_update does not compile");
        goto done;
    }
    if (rc == DV_OK)
        rc = qserver_validate(p, f->handle, args, args_len, &verdict, &msg, &err);
    qserver_release(qs, p);
    if (rc == DV_ERR_INVALID) {
        /* the function raised a JavaScript error (TypeError…) */
        rc = refuse_str(res, 500, err.error[0] ? err.error : "unknown_error", err.reason);
    } else if (rc == DV_ERR_TIMEOUT) {
        log_notice("validate: %s of %s timed out", f->handle, f->id);
        rc = refuse_str(res, 500, "os_process_error", "validate_doc_update timed out");
    } else if (rc == DV_ERR_NOMEM) {
        goto done;
    } else if (rc != DV_OK) {
        rc = refuse_str(res, 500, "os_process_error", err.reason[0] ? err.reason : "query server failed");
    } else if (verdict != QSERVER_VALID) {
        rc = refusal(verdict, &msg, res);
    }
done:
    buf_free(&errors);
    buf_free(&msg);
    return rc;
}

int vdu_run(views *v, vdu_set *s, const char *args, size_t args_len, vdu_result *res)
{
    qserver *qs = views_qserver(v);
    for (size_t i = 0; s && i < s->n; i++) {
        if (!s->fns[i].def)
            continue;
        int rc = run_one(qs, &s->fns[i], args, args_len, res);
        if (rc != DV_OK)
            return rc;
    }
    return DV_OK;
}

/* One batch of documents idx[0..k) through f; DV_OK when the call went
 * through (refusals recorded), else the call's status (nothing recorded). */
static int run_chunk(qserver *qs, const vdu_fn *f, const char *const *args, const size_t *lens, const size_t *idx,
                     size_t k, vdu_result *res, int *refused)
{
    qserver_proc *p = NULL;
    qserver_error err;
    buf_t batch = BUF_INIT, errors = BUF_INIT;
    enum qserver_verdict *verdicts = calloc(k, sizeof *verdicts);
    buf_t *msgs = calloc(k, sizeof *msgs);
    int rc = DV_ERR_NOMEM;
    memset(&err, 0, sizeof err);
    if (!verdicts || !msgs)
        goto done;
    for (size_t i = 0; i < k; i++)
        buf_init(&msgs[i]);
    rc = buf_append_byte(&batch, '[');
    for (size_t i = 0; rc == DV_OK && i < k; i++) {
        if (i)
            rc = buf_append_byte(&batch, ',');
        if (rc == DV_OK)
            rc = buf_append(&batch, args[idx[i]], lens[idx[i]]);
    }
    if (rc == DV_OK)
        rc = buf_append_byte(&batch, ']');
    if (rc != DV_OK || (rc = qserver_acquire(qs, f->handle, &p)) != DV_OK)
        goto done;
    rc = qserver_define(p, f->handle, f->def, f->def_len, &errors, &err);
    if (rc == DV_OK && errors.len > 2)
        rc = DV_ERR_INVALID; /* run one by one: each gets the compilation error */
    if (rc == DV_OK)
        rc = qserver_validate_batch(p, f->handle, (const char *)batch.data, batch.len, k, verdicts, msgs, &err);
    qserver_release(qs, p);
    for (size_t i = 0; rc == DV_OK && i < k; i++) {
        if (verdicts[i] == QSERVER_VALID)
            continue;
        refused[idx[i]] = 1;
        int r = refusal(verdicts[i], &msgs[i], &res[idx[i]]);
        if (r == DV_ERR_NOMEM)
            rc = r;
    }
done:
    for (size_t i = 0; msgs && i < k; i++)
        buf_free(&msgs[i]);
    free(msgs);
    free(verdicts);
    buf_free(&batch);
    buf_free(&errors);
    return rc;
}

int vdu_run_batch(views *v, vdu_set *s, const char *const *args, const size_t *lens, size_t n, vdu_result *res,
                  int *refused)
{
    qserver *qs = views_qserver(v);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx)
        return DV_ERR_NOMEM;
    int rc = DV_OK;
    for (size_t fi = 0; s && fi < s->n && rc == DV_OK; fi++) {
        const vdu_fn *f = &s->fns[fi];
        if (!f->def)
            continue;
        size_t i = 0;
        while (i < n && rc == DV_OK) {
            /* the next batch: documents not refused yet, bounded in count and bytes */
            size_t k = 0, bytes = 0;
            for (; i < n && k < VDU_BATCH_DOCS && (k == 0 || bytes + lens[i] <= VDU_BATCH_BYTES); i++) {
                if (refused[i])
                    continue;
                idx[k++] = i;
                bytes += lens[i];
            }
            if (!k)
                continue;
            int r = k > 1 ? run_chunk(qs, f, args, lens, idx, k, res, refused) : DV_ERR_INVALID;
            if (r == DV_ERR_NOMEM) {
                rc = r;
            } else if (r != DV_OK) {
                /* the batch failed as a whole (or is one document): each on
                 * its own, with its own deadline */
                for (size_t j = 0; j < k && rc == DV_OK; j++) {
                    r = run_one(qs, f, args[idx[j]], lens[idx[j]], &res[idx[j]]);
                    if (r == DV_ERR_INVALID)
                        refused[idx[j]] = 1;
                    else if (r != DV_OK)
                        rc = r;
                }
            }
        }
    }
    free(idx);
    return rc;
}
