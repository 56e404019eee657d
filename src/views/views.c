/*
 * views.c — the view engine: registry of indexes and shared view files,
 * index updates through the query server (see views.h).
 *
 * Locks, always taken in this order: v->mu (the two tables) → ix->mu (one
 * index's definition and update state) → a shared file's upd (its single
 * updater), several of those in path order.  No lock is held while waiting
 * for the query server except a file's upd, which only updaters take.
 *
 * An update pass costs, per batch of documents: one by-seq cursor step per
 * document, one body read and one JSON rendering per live document, one
 * query-server round trip for the whole batch (the child answers one frame
 * per document), one parse of each document's rows, and per view one
 * sorted store_btree_modify of the view tree and of the by-doc tree.
 */
#include "base/digest.h"
#include "views/views.h"
#include "views/validate.h"

#include "base/log.h"
#include "base/status.h"
#include "store/dbfile.h"
#include "views/vkey.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- shared view files ---------------------------------------------------- */

typedef struct vshared {
    struct vshared *next;
    char *path;
    char sig[33];
    size_t refs;            /* under v->mu */
    view_file *vf;
    pthread_mutex_t upd;    /* the file's one updater */
    views *v;
    char *reduce_src;       /* JavaScript reduce, when the view has one */
    char handle[48];        /* query-server handle defining just that reduce */
} vshared;

struct view_index {
    struct view_index *next;
    views *v;
    char *dir;              /* the database's index folder */
    char *dbname;
    uint64_t instance;
    char *ddoc_id;
    size_t refs;            /* under v->mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char hash[33];          /* of the definition sent to the query server */
    char handle[48];
    buf_t def;              /* JSON for qserver_define */
    view_group g;
    vshared **files;        /* one per view of g */
    int updating;
};

struct views {
    pthread_mutex_t mu;
    qserver *qs;
    store_btree_cache *cache;
    size_t batch;
    vshared *files;
    view_index *indexes;
    vdu_cache *vdu;            /* validation functions per database (validate.c) */
};

int views_open(const views_opts *o, views **out)
{
    views *v = calloc(1, sizeof *v);
    if (!v)
        return DV_ERR_NOMEM;
    pthread_mutex_init(&v->mu, NULL);
    v->qs = o->qs;
    v->cache = o->cache;
    v->batch = o->batch_docs ? o->batch_docs : 2000;
    if (vdu_cache_new(&v->vdu) != DV_OK) {
        pthread_mutex_destroy(&v->mu);
        free(v);
        return DV_ERR_NOMEM;
    }
    *out = v;
    return DV_OK;
}

qserver *views_qserver(views *v) { return v->qs; }

vdu_cache *views_vdu_cache(views *v) { return v->vdu; }

/* JavaScript reduce of a view file, through the query server: keys/vals as
 * the view tree gives them (encoded view keys and tagged values). */
static int shared_js_reduce(void *ctx, int rereduce, const store_slice *keys, const store_slice *vals, size_t n,
                            buf_t *out)
{
    vshared *sh = ctx;
    buf_t in = BUF_INIT, res = BUF_INIT;
    json_writer w;
    int rc = DV_OK;
    /* An overflowed reduction sticks: rereduce passes it on without asking
     * the query server (CouchDB's get_overflow_error). */
    for (size_t i = 0; rereduce && i < n; i++) {
        static const char tag[] = "{\"reduce_overflow_error\":";
        if (vals[i].n > sizeof tag - 1 && !memcmp(vals[i].p, tag, sizeof tag - 1))
            return buf_append(out, vals[i].p, vals[i].n);
    }
    json_writer_init(&w, &in);
    json_write_begin_array(&w);
    for (size_t i = 0; rc == DV_OK && i < n; i++) {
        if (rereduce) {
            json_write_raw(&w, (const char *)vals[i].p, vals[i].n);
            continue;
        }
        vkey k;
        view_value_iter it;
        store_slice val;
        if ((rc = vkey_decode(keys[i], &k)) != DV_OK || (rc = view_value_iter_init(&it, vals[i])) != DV_OK)
            break;
        while ((rc = view_value_next(&it, &val)) == 1) {
            json_write_begin_array(&w);
            json_write_begin_array(&w);
            json_write_raw(&w, (const char *)k.key.p, k.key.n);
            json_write_string(&w, (const char *)k.id.p, k.id.n);
            json_write_end_array(&w);
            json_write_raw(&w, (const char *)val.p, val.n);
            json_write_end_array(&w);
        }
        if (rc == 0)
            rc = DV_OK;
    }
    json_write_end_array(&w);
    if (rc == DV_OK)
        rc = w.err;
    qserver_proc *p = NULL;
    qserver_error err;
    if (rc == DV_OK)
        rc = qserver_acquire(sh->v->qs, sh->handle, &p);
    if (rc == DV_OK) {
        buf_t def = BUF_INIT;
        json_writer dw;
        json_writer_init(&dw, &def);
        json_write_begin_object(&dw);
        json_write_key_cstr(&dw, "views");
        json_write_begin_array(&dw);
        json_write_begin_object(&dw);
        json_write_key_cstr(&dw, "name");
        json_write_cstr(&dw, "r");
        json_write_key_cstr(&dw, "map");
        json_write_cstr(&dw, "function(doc){}");
        json_write_key_cstr(&dw, "reduce");
        json_write_cstr(&dw, sh->reduce_src);
        json_write_end_object(&dw);
        json_write_end_array(&dw);
        json_write_end_object(&dw);
        rc = dw.err ? dw.err : qserver_define(p, sh->handle, (const char *)def.data, def.len, NULL, &err);
        buf_free(&def);
        static const unsigned view0 = 0;
        if (rc == DV_OK)
            rc = rereduce ? qserver_rereduce(p, sh->handle, &view0, 1, (const char *)in.data, in.len, &res, &err)
                          : qserver_reduce(p, sh->handle, &view0, 1, (const char *)in.data, in.len, &res, &err);
        qserver_release(sh->v->qs, p);
    }
    if (rc == DV_OK) {
        /* one reduction per view: take element 0 */
        json_doc jd = JSON_DOC_INIT;
        rc = json_doc_parse(&jd, res.data, res.len, 0, NULL);
        const json_val *arr = rc == DV_OK ? json_doc_root(&jd) : NULL;
        const json_val *first = arr && json_is_array(arr) ? json_array_get(arr, 0) : NULL;
        if (!first)
            rc = DV_ERR_CORRUPT;
        else
            rc = json_serialize(first, out);
        json_doc_free(&jd);
    } else if (rc == DV_ERR_INVALID) {
        /* the function refused (reduce_overflow_error): CouchDB stores
         * {"reduce_overflow_error": message} as the reduction */
        json_writer ew;
        json_writer_init(&ew, out);
        json_write_begin_object(&ew);
        json_write_key_cstr(&ew, err.error[0] ? err.error : "reduce_overflow_error");
        json_write_cstr(&ew, err.reason);
        json_write_end_object(&ew);
        rc = ew.err;
    }
    buf_free(&in);
    buf_free(&res);
    return rc;
}

/* Finds or opens the shared file of view d of an index in dir. */
static int shared_get(views *v, const char *dir, uint64_t instance, const view_group *g, const view_def *d,
                      vshared **out)
{
    size_t pl = strlen(dir) + 40;
    char *path = malloc(pl);
    if (!path)
        return DV_ERR_NOMEM;
    snprintf(path, pl, "%s/%s.view", dir, d->sig);
    for (vshared *sh = v->files; sh; sh = sh->next) {
        if (!strcmp(sh->path, path)) {
            sh->refs++;
            *out = sh;
            free(path);
            return DV_OK;
        }
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        log_error("views: cannot create %s: %s", dir, strerror(errno));
        free(path);
        return DV_ERR_IO;
    }
    vshared *sh = calloc(1, sizeof *sh);
    if (!sh) {
        free(path);
        return DV_ERR_NOMEM;
    }
    sh->path = path;
    sh->v = v;
    memcpy(sh->sig, d->sig, sizeof sh->sig);
    snprintf(sh->handle, sizeof sh->handle, "r:%s", d->sig);
    pthread_mutex_init(&sh->upd, NULL);
    int rc = DV_OK;
    if (d->rkind == VIEW_REDUCE_JS && !(sh->reduce_src = strdup(d->reduce)))
        rc = DV_ERR_NOMEM;
    view_file_opts fo = {0};
    fo.sig = d->sig;
    fo.db_instance = instance;
    fo.reduce = d->rkind;
    fo.raw_collation = g->raw;
    fo.js_reduce = shared_js_reduce;
    fo.js_ctx = sh;
    fo.cache = v->cache;
    if (rc == DV_OK)
        rc = view_file_open(path, &fo, &sh->vf);
    if (rc != DV_OK) {
        pthread_mutex_destroy(&sh->upd);
        free(sh->reduce_src);
        free(sh->path);
        free(sh);
        return rc;
    }
    sh->refs = 1;
    sh->next = v->files;
    v->files = sh;
    *out = sh;
    return DV_OK;
}

static void shared_put(views *v, vshared *sh)
{
    if (!sh || --sh->refs)
        return;
    for (vshared **pp = &v->files; *pp; pp = &(*pp)->next) {
        if (*pp == sh) {
            *pp = sh->next;
            break;
        }
    }
    view_file_close(sh->vf);
    pthread_mutex_destroy(&sh->upd);
    free(sh->reduce_src);
    free(sh->path);
    free(sh);
}

/* ---- indexes ----------------------------------------------------------------- */

static void index_drop_files(view_index *ix)
{
    for (size_t i = 0; ix->files && i < ix->g.nviews; i++)
        shared_put(ix->v, ix->files[i]);
    free(ix->files);
    ix->files = NULL;
}

static void index_free(view_index *ix)
{
    index_drop_files(ix);
    view_group_free(&ix->g);
    buf_free(&ix->def);
    pthread_cond_destroy(&ix->cv);
    pthread_mutex_destroy(&ix->mu);
    free(ix->dir);
    free(ix->dbname);
    free(ix->ddoc_id);
    free(ix);
}

void views_close(views *v)
{
    if (!v)
        return;
    while (v->indexes) {
        view_index *ix = v->indexes;
        v->indexes = ix->next;
        if (ix->refs)
            log_error("views: closing with %zu references on %s", ix->refs, ix->ddoc_id);
        index_free(ix);
    }
    vdu_cache_free(v->vdu);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

/* The definition the query server compiles: views in order, and lib. */
static int group_def_json(const view_group *g, buf_t *out)
{
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "views");
    json_write_begin_array(&w);
    for (size_t i = 0; i < g->nviews; i++) {
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "name");
        json_write_cstr(&w, g->views[i].name);
        json_write_key_cstr(&w, "map");
        json_write_cstr(&w, g->views[i].map);
        if (g->views[i].rkind == VIEW_REDUCE_JS) {
            json_write_key_cstr(&w, "reduce");
            json_write_cstr(&w, g->views[i].reduce);
        }
        json_write_end_object(&w);
    }
    json_write_end_array(&w);
    if (g->lib) {
        json_write_key_cstr(&w, "lib");
        json_write_raw(&w, g->lib, strlen(g->lib));
    }
    json_write_end_object(&w);
    return w.err;
}

/* Reads the design document from snap and parses its views. */
static int read_ddoc(const store_snap *snap, const char *id, size_t n, view_group *g, db_err *e)
{
    store_docinfo di;
    store_docinfo_init(&di);
    buf_t b = BUF_INIT;
    json_doc jd = JSON_DOC_INIT;
    int rc = store_snap_get_doc(snap, (const uint8_t *)id, n, &di);
    if (rc == DV_ERR_NOTFOUND) {
        db_err_set(e, 404, "not_found", "missing");
        goto done;
    }
    if (rc != DV_OK) {
        db_err_set(e, 500, "unknown_error", "%s", dv_strerror(rc));
        goto done;
    }
    if (di.deleted) {
        db_err_set(e, 404, "not_found", "deleted");
        rc = DV_ERR_NOTFOUND;
        goto done;
    }
    db_render_opts o;
    memset(&o, 0, sizeof o);
    json_writer w;
    json_writer_init(&w, &b);
    if ((rc = db_render_doc(snap, &di, revtree_winner(&di.tree), &o, &w, NULL)) != DV_OK ||
        (rc = json_doc_parse(&jd, b.data, b.len, JSON_DEPTH_STORED, NULL)) != DV_OK) {
        db_err_set(e, 500, "unknown_error", "%s", dv_strerror(rc));
        goto done;
    }
    rc = view_group_from_ddoc(json_doc_root(&jd), g, e);
done:
    json_doc_free(&jd);
    buf_free(&b);
    store_docinfo_free(&di);
    return rc;
}

/* Makes ix follow definition g (taking it over): keeps the files whose
 * signature stays, opens the new ones.  v->mu and ix->mu held, no update
 * running. */
static int index_set_def(view_index *ix, view_group *g, const buf_t *def, const char *hash)
{
    views *v = ix->v;
    vshared **files = calloc(g->nviews + 1, sizeof *files);
    if (!files)
        return DV_ERR_NOMEM;
    int rc = DV_OK;
    size_t i = 0;
    for (; rc == DV_OK && i < g->nviews; i++)
        rc = shared_get(v, ix->dir, ix->instance, g, &g->views[i], &files[i]);
    if (rc != DV_OK) {
        while (i-- > 0)
            shared_put(v, files[i]);
        free(files);
        return rc;
    }
    buf_t nd = BUF_INIT;
    if ((rc = buf_append(&nd, def->data, def->len)) != DV_OK) {
        for (i = 0; i < g->nviews; i++)
            shared_put(v, files[i]);
        free(files);
        return rc;
    }
    index_drop_files(ix);
    view_group_free(&ix->g);
    ix->g = *g;
    memset(g, 0, sizeof *g);
    ix->files = files;
    buf_free(&ix->def);
    ix->def = nd;
    memcpy(ix->hash, hash, 33);
    snprintf(ix->handle, sizeof ix->handle, "m:%s", hash);
    return DV_OK;
}

int views_get(views *v, db_t *db, const store_snap *snap, const char *ddoc_id, size_t n, view_index **out,
              db_err *e)
{
    *out = NULL;
    view_group g;
    buf_t def = BUF_INIT;
    char hash[33];
    int rc = read_ddoc(snap, ddoc_id, n, &g, e);
    if (rc != DV_OK)
        return rc;
    if ((rc = group_def_json(&g, &def)) != DV_OK) {
        view_group_free(&g);
        buf_free(&def);
        db_err_set(e, 500, "unknown_error", "%s", dv_strerror(rc));
        return rc;
    }
    /* The index follows the definition and every view's signature (which
     * also covers options such as include_design and collation). */
    size_t deflen = def.len;
    for (size_t i = 0; i < g.nviews && rc == DV_OK; i++)
        rc = buf_append(&def, g.views[i].sig, 32);
    if (rc == DV_OK)
        rc = dv_md5_hex(def.data, def.len, hash);
    def.len = deflen;
    if (rc != DV_OK) {
        view_group_free(&g);
        buf_free(&def);
        db_err_set(e, 500, "unknown_error", "%s", dv_strerror(rc));
        return rc;
    }
    const char *dir = db_index_dir(db);
    pthread_mutex_lock(&v->mu);
    view_index *ix = v->indexes;
    while (ix && !(!strcmp(ix->dir, dir) && strlen(ix->ddoc_id) == n && !memcmp(ix->ddoc_id, ddoc_id, n)))
        ix = ix->next;
    if (!ix) {
        rc = DV_ERR_NOMEM;
        if (!(ix = calloc(1, sizeof *ix)))
            goto fail;
        ix->v = v;
        pthread_mutex_init(&ix->mu, NULL);
        pthread_cond_init(&ix->cv, NULL);
        ix->instance = db_instance(db);
        if (!(ix->dir = strdup(dir)) || !(ix->dbname = strdup(db_name(db))) || !(ix->ddoc_id = strndup(ddoc_id, n))) {
            index_free(ix);
            goto fail;
        }
        ix->next = v->indexes;
        v->indexes = ix;
    }
    ix->refs++;
    pthread_mutex_lock(&ix->mu);
    if (strcmp(ix->hash, hash) != 0) {
        while (ix->updating)
            pthread_cond_wait(&ix->cv, &ix->mu); /* v->mu is held: updates never take it */
        rc = index_set_def(ix, &g, &def, hash);
    } else {
        rc = DV_OK;
    }
    pthread_mutex_unlock(&ix->mu);
    if (rc != DV_OK) {
        ix->refs--;
        goto fail;
    }
    pthread_mutex_unlock(&v->mu);
    view_group_free(&g);
    buf_free(&def);
    *out = ix;
    return DV_OK;
fail:
    pthread_mutex_unlock(&v->mu);
    view_group_free(&g);
    buf_free(&def);
    db_err_set(e, 500, "unknown_error", "cannot open the view index: %s", dv_strerror(rc));
    return rc;
}

void view_index_release(view_index *ix)
{
    if (!ix)
        return;
    views *v = ix->v;
    pthread_mutex_lock(&v->mu);
    ix->refs--;
    pthread_mutex_unlock(&v->mu);
}

int view_index_group(view_index *ix, view_group *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&ix->mu);
    const view_group *g = &ix->g;
    int rc = DV_ERR_NOMEM;
    if (!(out->ddoc_id = strdup(g->ddoc_id)) || !(out->language = strdup(g->language)) ||
        (g->lib && !(out->lib = strdup(g->lib))) || !(out->views = calloc(g->nviews + 1, sizeof *out->views)))
        goto done;
    out->include_design = g->include_design;
    out->local_seq = g->local_seq;
    out->raw = g->raw;
    for (size_t i = 0; i < g->nviews; i++) {
        view_def *d = &out->views[out->nviews++];
        *d = g->views[i];
        d->name = strdup(g->views[i].name);
        d->map = strdup(g->views[i].map);
        d->reduce = g->views[i].reduce ? strdup(g->views[i].reduce) : NULL;
        if (!d->name || !d->map || (g->views[i].reduce && !d->reduce))
            goto done;
    }
    rc = DV_OK;
done:
    pthread_mutex_unlock(&ix->mu);
    if (rc != DV_OK)
        view_group_free(out);
    return rc;
}

void view_def_free(view_def *d)
{
    free(d->name);
    free(d->map);
    free(d->reduce);
    memset(d, 0, sizeof *d);
}

int view_index_snapshot(view_index *ix, const char *name, size_t n, view_snap **out, view_def *def)
{
    pthread_mutex_lock(&ix->mu);
    int rc = DV_ERR_NOTFOUND;
    for (size_t i = 0; i < ix->g.nviews; i++) {
        const view_def *d = &ix->g.views[i];
        if (strlen(d->name) != n || memcmp(d->name, name, n))
            continue;
        rc = view_file_snapshot(ix->files[i]->vf, out);
        if (rc == DV_OK && def) {
            *def = *d;
            def->name = strdup(d->name);
            def->map = strdup(d->map);
            def->reduce = d->reduce ? strdup(d->reduce) : NULL;
            if (!def->name || !def->map || (d->reduce && !def->reduce)) {
                view_def_free(def);
                view_snap_release(*out);
                rc = DV_ERR_NOMEM;
            }
        }
        break;
    }
    pthread_mutex_unlock(&ix->mu);
    return rc;
}

int view_index_js_reduce(view_index *ix, const char *view_name, int rereduce, const store_slice *keys,
                         const store_slice *vals, size_t n, buf_t *out)
{
    vshared *sh = NULL;
    pthread_mutex_lock(&ix->mu);
    for (size_t i = 0; i < ix->g.nviews; i++)
        if (!strcmp(ix->g.views[i].name, view_name))
            sh = ix->files[i];
    pthread_mutex_unlock(&ix->mu);
    return sh && sh->reduce_src ? shared_js_reduce(sh, rereduce, keys, vals, n, out) : DV_ERR_NOTFOUND;
}

/* ---- updates ----------------------------------------------------------------------- */

/* One batch of changes.  Document texts live back to back in `texts`, the
 * rows' key and value texts in `arena`; both are addressed by offset while
 * they grow and turned into pointers only once complete. */
typedef struct brow {
    size_t koff, klen, voff, vlen;
} brow;

typedef struct bdoc {
    buf_t id;
    uint64_t seq;
    int mapped;        /* sent to the query server (else it has no rows) */
    size_t toff, tlen; /* its JSON in texts */
    size_t *first;     /* per view: its first row in rows[] */
    size_t *count;     /* per view: rows it emitted */
} bdoc;

typedef struct batch {
    view_index *ix;
    size_t nviews;
    bdoc *docs;
    size_t ndocs, capdocs;
    size_t *slot;      /* mapped document k is docs[slot[k]] */
    buf_t texts;
    brow *rows;
    size_t nrows, caprows;
    buf_t arena;
    size_t logged;     /* errors logged (capped per update) */
} batch;

static int batch_push_row(batch *b, const json_val *key, const json_val *value)
{
    if (b->nrows == b->caprows) {
        size_t nc = b->caprows ? b->caprows * 2 : 1024;
        brow *nr = realloc(b->rows, nc * sizeof *nr);
        if (!nr)
            return DV_ERR_NOMEM;
        b->rows = nr;
        b->caprows = nc;
    }
    brow *r = &b->rows[b->nrows];
    r->koff = b->arena.len;
    int rc = json_serialize(key, &b->arena);
    r->klen = b->arena.len - r->koff;
    r->voff = b->arena.len;
    if (rc == DV_OK)
        rc = json_serialize(value, &b->arena);
    r->vlen = b->arena.len - r->voff;
    if (rc == DV_OK)
        b->nrows++;
    return rc;
}

/* The query server's answer for mapped document k: one entry per view,
 * the rows [[key, value], ...] or {"error","reason"} when it threw. */
static int on_mapped(void *ctx, size_t k, const char *rows, size_t len, const char *failure)
{
    batch *b = ctx;
    bdoc *d = &b->docs[b->slot[k]];
    if (!rows) {
        if (b->logged++ < 20)
            log_error("views: %s: skipped document %.*s: %s", b->ix->ddoc_id, (int)d->id.len,
                      (const char *)d->id.data, failure ? failure : "failed");
        return 0;
    }
    json_doc jd = JSON_DOC_INIT;
    int rc = json_doc_parse(&jd, rows, len, 0, NULL);
    const json_val *arr = rc == DV_OK ? json_doc_root(&jd) : NULL;
    if (!arr || !json_is_array(arr)) {
        json_doc_free(&jd);
        return DV_ERR_CORRUPT;
    }
    json_iter it = json_iter_begin(arr);
    const json_val *vrows;
    for (size_t v = 0; rc == DV_OK && v < b->nviews && json_iter_elem(&it, &vrows); v++) {
        d->first[v] = b->nrows;
        if (!json_is_array(vrows)) {
            const json_val *reason = json_is_object(vrows) ? json_object_get_cstr(vrows, "reason") : NULL;
            size_t rl = 0;
            const char *rs = reason ? json_str(reason, &rl) : NULL;
            if (b->logged++ < 20)
                log_notice("views: %s/%s: map function raised for %.*s: %.*s", b->ix->ddoc_id,
                           b->ix->g.views[v].name, (int)d->id.len, (const char *)d->id.data,
                           (int)(rl > 300 ? 300 : rl), rs ? rs : "");
            continue;
        }
        json_iter ri = json_iter_begin(vrows);
        const json_val *kv;
        while (rc == DV_OK && json_iter_elem(&ri, &kv)) {
            const json_val *key = json_array_get(kv, 0), *val = json_array_get(kv, 1);
            if (!key || !val)
                continue;
            if ((rc = batch_push_row(b, key, val)) == DV_OK)
                d->count[v]++;
        }
    }
    json_doc_free(&jd);
    return rc == DV_OK ? 0 : rc;
}

static void batch_reset(batch *b)
{
    for (size_t i = 0; i < b->ndocs; i++) {
        buf_free(&b->docs[i].id);
        free(b->docs[i].first);
        free(b->docs[i].count);
    }
    b->ndocs = 0;
    b->nrows = 0;
    buf_reset(&b->texts);
    buf_reset(&b->arena);
}

static void batch_free(batch *b)
{
    batch_reset(b);
    free(b->docs);
    free(b->slot);
    free(b->rows);
    buf_free(&b->texts);
    buf_free(&b->arena);
}

/* The winning leaf of a change as the JSON map functions see: _id, _rev,
 * the members, attachment stubs (and _local_seq with options.local_seq). */
static int render_change(const store_snap *snap, const store_change *ch, int local_seq, buf_t *out)
{
    store_docinfo di;
    memset(&di, 0, sizeof di);
    revtree_node node;
    memset(&node, 0, sizeof node);
    node.rev = ch->leaves[0].rev;
    node.parent = REVTREE_NONE;
    node.has_body = 1;
    node.body = ch->leaves[0].body;
    di.id = ch->id;
    di.tree.nodes = &node;
    di.tree.n = di.tree.cap = 1;
    di.seq = ch->seq;
    db_render_opts o;
    memset(&o, 0, sizeof o);
    o.local_seq = local_seq;
    json_writer w;
    json_writer_init(&w, out);
    return db_render_doc(snap, &di, 0, &o, &w, NULL);
}

/* Adds one change to the batch (rendering it when the views see it). */
static int batch_add(batch *b, const store_snap *snap, const store_change *ch)
{
    const view_group *g = &b->ix->g;
    if (b->ndocs == b->capdocs) {
        size_t nc = b->capdocs ? b->capdocs * 2 : 256;
        bdoc *nd = realloc(b->docs, nc * sizeof *nd);
        size_t *ns = nd ? realloc(b->slot, nc * sizeof *ns) : NULL;
        if (nd)
            b->docs = nd;
        if (!ns)
            return DV_ERR_NOMEM;
        b->slot = ns;
        b->capdocs = nc;
    }
    bdoc *d = &b->docs[b->ndocs];
    memset(d, 0, sizeof *d);
    d->seq = ch->seq;
    d->first = calloc(b->nviews + 1, sizeof *d->first);
    d->count = calloc(b->nviews + 1, sizeof *d->count);
    b->ndocs++;
    int rc = d->first && d->count ? buf_append(&d->id, ch->id.data, ch->id.len) : DV_ERR_NOMEM;
    if (rc != DV_OK)
        return rc;
    int design = ch->id.len > 8 && !memcmp(ch->id.data, "_design/", 8);
    if (ch->deleted || (design && !g->include_design))
        return DV_OK; /* emits nothing: its old rows go */
    d->toff = b->texts.len;
    if ((rc = render_change(snap, ch, g->local_seq, &b->texts)) != DV_OK)
        return rc;
    d->tlen = b->texts.len - d->toff;
    d->mapped = 1;
    return DV_OK;
}

/* Maps the batch and writes each view's rows; commits every view file. */
/* Sends the batch's live documents to the query server; their rows land
 * in b (on_mapped). */
static int batch_map(batch *b, qserver_proc *p)
{
    view_index *ix = b->ix;
    size_t nmap = 0;
    int rc = DV_OK;
    const char **texts = calloc(b->ndocs + 1, sizeof *texts);
    size_t *lens = calloc(b->ndocs + 1, sizeof *lens);
    if (!texts || !lens) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < b->ndocs; i++) {
        if (!b->docs[i].mapped)
            continue;
        texts[nmap] = (const char *)b->texts.data + b->docs[i].toff;
        lens[nmap] = b->docs[i].tlen;
        b->slot[nmap++] = i;
    }
    if (nmap) {
        qserver_error err;
        rc = qserver_map(p, ix->handle, texts, lens, nmap, on_mapped, b, &err);
        if (rc != DV_OK)
            log_error("views: %s: map batch failed: %s: %s", ix->ddoc_id, err.error, err.reason);
    }
done:
    free(texts);
    free(lens);
    return rc;
}

/* Writes a mapped batch into every view file and commits them. */
static int batch_write(batch *b, vshared **files, const int *fresh)
{
    int rc = DV_OK;
    view_doc_rows *vd = calloc(b->ndocs + 1, sizeof *vd);
    view_emit *emits = b->nrows ? calloc(b->nrows, sizeof *emits) : NULL;
    if (!vd || (b->nrows && !emits)) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    for (size_t r = 0; r < b->nrows; r++) {
        emits[r].key = (store_slice){b->arena.data + b->rows[r].koff, b->rows[r].klen};
        emits[r].value = (store_slice){b->arena.data + b->rows[r].voff, b->rows[r].vlen};
    }
    uint64_t last = b->ndocs ? b->docs[b->ndocs - 1].seq : 0;
    for (size_t v = 0; rc == DV_OK && v < b->nviews; v++) {
        view_file *vf = files[v]->vf;
        uint64_t have = view_file_pending_seq(vf);
        size_t n = 0;
        for (size_t i = 0; i < b->ndocs; i++) {
            bdoc *d = &b->docs[i];
            if (d->seq <= have)
                continue; /* another design document sharing this file indexed it */
            vd[n].id = (store_slice){d->id.data, d->id.len};
            vd[n].rows = d->count[v] ? &emits[d->first[v]] : NULL;
            vd[n].nrows = d->count[v];
            n++;
        }
        if ((rc = view_file_update(vf, vd, n, last, fresh[v])) == DV_OK)
            rc = view_file_commit(vf);
    }
done:
    free(vd);
    free(emits);
    return rc;
}

/* The index writer of an update pass: writes batch k while the updater
 * reads and maps batch k+1, so a build keeps both the server and the
 * query server busy.  One batch at a time is handed over (`next`); the
 * updater refills a batch only after the writer released it. */
typedef struct pass_writer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch *next;      /* handed over, not yet taken */
    batch *busy;      /* being written */
    int stop;
    int rc;           /* first failure */
    vshared **files;
    const int *fresh;
    db_task *task;
    uint64_t from, total;
} pass_writer;

static void *writer_main(void *arg)
{
    pass_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->next && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        batch *b = w->next;
        if (!b)
            break;
        w->next = NULL;
        w->busy = b;
        int failed = w->rc != DV_OK;
        pthread_mutex_unlock(&w->mu);
        int rc = failed ? DV_OK : batch_write(b, w->files, w->fresh);
        if (rc == DV_OK && !failed && b->ndocs)
            db_task_progress(w->task, b->docs[b->ndocs - 1].seq - w->from, w->total);
        batch_reset(b);
        pthread_mutex_lock(&w->mu);
        if (rc != DV_OK && w->rc == DV_OK)
            w->rc = rc;
        w->busy = NULL;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Hands b to the writer once it can take it; DV_OK or the writer's first
 * failure. */
static int writer_hand(pass_writer *w, batch *b)
{
    pthread_mutex_lock(&w->mu);
    while (w->next)
        pthread_cond_wait(&w->cv, &w->mu);
    w->next = b;
    int rc = w->rc;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Waits until the writer no longer holds b (to refill it). */
static void writer_wait_for(pass_writer *w, const batch *b)
{
    pthread_mutex_lock(&w->mu);
    while (w->next == b || w->busy == b)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static int cmp_shared_path(const void *a, const void *b)
{
    return strcmp((*(vshared *const *)a)->path, (*(vshared *const *)b)->path);
}

/* The update pass itself: the caller holds the updating flag. */
static int update_pass(view_index *ix, db_t *db, vshared **files, size_t nviews, db_err *e)
{
    views *v = ix->v;
    store_snap *snap = NULL;
    store_seq_cursor *cur = NULL;
    qserver_proc *p = NULL;
    db_task *task = NULL;
    batch bs[2];
    memset(bs, 0, sizeof bs);
    for (int k = 0; k < 2; k++) {
        bs[k].ix = ix;
        bs[k].nviews = nviews;
    }
    pass_writer w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    pthread_t wtid;
    int writer_started = 0;
    store_change ch;
    store_change_init(&ch);
    int *fresh = NULL;
    int rc = db_snapshot(db, &snap);
    if (rc != DV_OK)
        goto done;
    store_dbinfo info;
    store_snap_info(snap, &info);
    uint64_t target = info.update_seq, from = UINT64_MAX;
    for (size_t i = 0; i < nviews; i++) {
        uint64_t s = view_file_pending_seq(files[i]->vf);
        if (s < from)
            from = s;
    }
    if (from >= target)
        goto done;
    /* A view starting from 0 sees every document for the first time in
     * this pass (by-seq holds each once): no old rows to look up. */
    fresh = calloc(nviews + 1, sizeof *fresh);
    if (!fresh) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < nviews; i++)
        fresh[i] = view_file_pending_seq(files[i]->vf) == 0;
    task = db_task_begin("indexer", ix->dbname, ix->ddoc_id);
    uint64_t total = target - from;
    qserver_error err;
    if ((rc = qserver_acquire(v->qs, ix->handle, &p)) != DV_OK) {
        db_err_set(e, 500, "os_process_error", "no query server process could start");
        goto done;
    }
    buf_t cerr = BUF_INIT;
    rc = qserver_define(p, ix->handle, (const char *)ix->def.data, ix->def.len, &cerr, &err);
    if (rc == DV_OK && cerr.len > 2)
        log_error("views: %s: %.*s", ix->ddoc_id, (int)(cerr.len > 1000 ? 1000 : cerr.len), (const char *)cerr.data);
    buf_free(&cerr);
    if (rc != DV_OK) {
        db_err_set(e, 500, err.error[0] ? err.error : "os_process_error", "%s", err.reason);
        goto done;
    }
    if ((rc = store_snap_iter_changes(snap, from, 0, &cur)) != DV_OK)
        goto done;
    log_info("views: updating %s/%s from seq %llu to %llu", ix->dbname, ix->ddoc_id, (unsigned long long)from,
             (unsigned long long)target);
    w.files = files;
    w.fresh = fresh;
    w.task = task;
    w.from = from;
    w.total = total;
    if (pthread_create(&wtid, NULL, writer_main, &w) != 0) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    writer_started = 1;
    batch *b = &bs[0];
    for (;;) {
        int more = store_seq_cursor_next(cur, &ch);
        if (more < 0) {
            rc = more;
            break;
        }
        if (more && (rc = batch_add(b, snap, &ch)) != DV_OK)
            break;
        if (b->ndocs == v->batch || (!more && b->ndocs)) {
            if ((rc = batch_map(b, p)) != DV_OK || (rc = writer_hand(&w, b)) != DV_OK)
                break;
            b = b == &bs[0] ? &bs[1] : &bs[0];
            writer_wait_for(&w, b);
        }
        if (!more)
            break;
    }
    /* let the writer finish what it holds */
    pthread_mutex_lock(&w.mu);
    w.stop = 1;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(wtid, NULL);
    writer_started = 0;
    if (rc == DV_OK)
        rc = w.rc;
    /* Every view now covers the snapshot, rows or not. */
    for (size_t i = 0; rc == DV_OK && i < nviews; i++) {
        view_file *vf = files[i]->vf;
        if (view_file_pending_seq(vf) < target && (rc = view_file_update(vf, NULL, 0, target, 0)) == DV_OK)
            rc = view_file_commit(vf);
    }
    if (rc == DV_OK)
        log_info("views: %s/%s is at seq %llu", ix->dbname, ix->ddoc_id, (unsigned long long)target);
done:
    if (rc != DV_OK && !e->error) {
        log_error("views: updating %s/%s failed: %s", ix->dbname, ix->ddoc_id, dv_strerror(rc));
        db_err_set(e, 500, "unknown_error", "view index update failed: %s", dv_strerror(rc));
    }
    if (cur)
        store_seq_cursor_close(cur);
    store_change_free(&ch);
    if (writer_started) {
        pthread_mutex_lock(&w.mu);
        w.stop = 1;
        pthread_cond_broadcast(&w.cv);
        pthread_mutex_unlock(&w.mu);
        pthread_join(wtid, NULL);
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    batch_free(&bs[0]);
    batch_free(&bs[1]);
    if (p)
        qserver_release(v->qs, p);
    if (snap)
        store_snap_release(snap);
    db_task_end(task);
    free(fresh);
    return rc;
}

int view_index_update(view_index *ix, db_t *db, db_err *e)
{
    e->error = NULL;
    pthread_mutex_lock(&ix->mu);
    while (ix->updating)
        pthread_cond_wait(&ix->cv, &ix->mu);
    ix->updating = 1;
    size_t n = ix->g.nviews;
    vshared **files = malloc((n + 1) * sizeof *files), **locked = malloc((n + 1) * sizeof *locked);
    if (files && locked) {
        memcpy(files, ix->files, n * sizeof *files);
        memcpy(locked, ix->files, n * sizeof *locked);
    }
    pthread_mutex_unlock(&ix->mu);
    int rc = DV_ERR_NOMEM;
    if (files && locked) {
        /* a file shared by two indexes: take the updater locks in path order */
        qsort(locked, n, sizeof *locked, cmp_shared_path);
        for (size_t i = 0; i < n; i++)
            if (i == 0 || locked[i] != locked[i - 1])
                pthread_mutex_lock(&locked[i]->upd);
        rc = update_pass(ix, db, files, n, e);
        for (size_t i = n; i-- > 0;)
            if (i == 0 || locked[i] != locked[i - 1])
                pthread_mutex_unlock(&locked[i]->upd);
    } else {
        db_err_set(e, 500, "unknown_error", "out of memory");
    }
    free(files);
    free(locked);
    pthread_mutex_lock(&ix->mu);
    ix->updating = 0;
    pthread_cond_broadcast(&ix->cv);
    pthread_mutex_unlock(&ix->mu);
    return rc;
}

/* ---- maintenance -------------------------------------------------------------------- */

int view_index_compact(view_index *ix, db_err *e)
{
    pthread_mutex_lock(&ix->mu);
    while (ix->updating)
        pthread_cond_wait(&ix->cv, &ix->mu);
    ix->updating = 1;
    pthread_mutex_unlock(&ix->mu);
    db_task *task = db_task_begin("view_compaction", ix->dbname, ix->ddoc_id);
    int rc = DV_OK;
    for (size_t i = 0; rc == DV_OK && i < ix->g.nviews; i++) {
        vshared *sh = ix->files[i];
        pthread_mutex_lock(&sh->upd);
        rc = view_file_compact(sh->vf, NULL, NULL);
        pthread_mutex_unlock(&sh->upd);
        db_task_progress(task, i + 1, ix->g.nviews);
    }
    db_task_end(task);
    if (rc != DV_OK)
        db_err_set(e, 500, "unknown_error", "view compaction failed: %s", dv_strerror(rc));
    pthread_mutex_lock(&ix->mu);
    ix->updating = 0;
    pthread_cond_broadcast(&ix->cv);
    pthread_mutex_unlock(&ix->mu);
    return rc;
}

int views_cleanup(views *v, db_t *db, const char *const *sigs, size_t nsigs)
{
    const char *dir = db_index_dir(db);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? DV_OK : DV_ERR_IO;
    struct dirent *de;
    pthread_mutex_lock(&v->mu);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n != 37 || strcmp(de->d_name + 32, ".view") != 0)
            continue;
        int keep = 0;
        for (size_t i = 0; i < nsigs && !keep; i++)
            keep = !strncmp(sigs[i], de->d_name, 32);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        for (vshared *sh = v->files; sh && !keep; sh = sh->next)
            keep = !strcmp(sh->path, path); /* open: a reader or updater still uses it */
        if (!keep) {
            log_info("views: removing unused index %s", path);
            unlink(path);
        }
    }
    pthread_mutex_unlock(&v->mu);
    closedir(d);
    return DV_OK;
}

int view_index_info(view_index *ix, buf_t *out)
{
    pthread_mutex_lock(&ix->mu);
    uint64_t seq = UINT64_MAX, file = 0;
    for (size_t i = 0; i < ix->g.nviews; i++) {
        view_snap *s;
        if (view_file_snapshot(ix->files[i]->vf, &s) != DV_OK)
            continue;
        if (view_snap_seq(s) < seq)
            seq = view_snap_seq(s);
        file += view_snap_file_size(s);
        view_snap_release(s);
    }
    if (seq == UINT64_MAX)
        seq = 0;
    const char *slash = strchr(ix->ddoc_id, '/');
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "name");
    json_write_cstr(&w, slash ? slash + 1 : ix->ddoc_id);
    json_write_key_cstr(&w, "view_index");
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "compact_running");
    json_write_bool(&w, false);
    json_write_key_cstr(&w, "language");
    json_write_cstr(&w, ix->g.language);
    json_write_key_cstr(&w, "purge_seq");
    json_write_u64(&w, 0);
    json_write_key_cstr(&w, "signature");
    json_write_cstr(&w, ix->hash);
    json_write_key_cstr(&w, "sizes");
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "active");
    json_write_u64(&w, file);
    json_write_key_cstr(&w, "external");
    json_write_u64(&w, 0);
    json_write_key_cstr(&w, "file");
    json_write_u64(&w, file);
    json_write_end_object(&w);
    json_write_key_cstr(&w, "update_seq");
    json_write_u64(&w, seq);
    json_write_key_cstr(&w, "updater_running");
    json_write_bool(&w, ix->updating);
    json_write_key_cstr(&w, "waiting_clients");
    json_write_u64(&w, 0);
    json_write_key_cstr(&w, "waiting_commit");
    json_write_bool(&w, false);
    json_write_end_object(&w);
    json_write_end_object(&w);
    pthread_mutex_unlock(&ix->mu);
    return w.err;
}

int views_check_ddoc(views *v, const uint8_t *body, size_t len, db_err *e)
{
    json_doc jd = JSON_DOC_INIT;
    view_group g;
    buf_t def = BUF_INIT, errors = BUF_INIT;
    memset(&g, 0, sizeof g);
    int rc = json_doc_parse(&jd, body, len, JSON_DEPTH_STORED, NULL); /* re-encoded by the server */
    if (rc != DV_OK) {
        db_err_set(e, 400, "bad_request", "invalid UTF-8 JSON");
        goto done;
    }
    const json_val *root = json_doc_root(&jd);
    if ((rc = view_group_from_ddoc(root, &g, e)) != DV_OK)
        goto done;
    const json_val *filters = json_object_get_cstr(root, "filters");
    const json_val *vdu = json_object_get_cstr(root, "validate_doc_update");
    if (g.nviews == 0 && !filters && !vdu)
        goto done; /* nothing to compile */
    if (strcmp(g.language, "javascript") != 0)
        goto done; /* CouchDB saves design documents of unknown languages */
    if ((rc = group_def_json(&g, &def)) != DV_OK)
        goto done;
    /* add filters and validate_doc_update to the definition */
    if (filters || vdu) {
        def.len--; /* reopen the object */
        json_writer w;
        json_writer_init(&w, &def);
        w.need_comma = true;
        w.depth = 1;
        if (filters && json_is_object(filters)) {
            json_write_key_cstr(&w, "filters");
            json_write_value(&w, filters);
        }
        if (vdu && json_is_string(vdu)) {
            json_write_key_cstr(&w, "validate_doc_update");
            json_write_value(&w, vdu);
        }
        json_write_end_object(&w);
        if ((rc = w.err) != DV_OK)
            goto done;
    }
    char hash[33], handle[48];
    if ((rc = dv_md5_hex(def.data, def.len, hash)) != DV_OK)
        goto done;
    snprintf(handle, sizeof handle, "c:%s", hash);
    qserver_proc *p;
    qserver_error err;
    if ((rc = qserver_acquire(v->qs, handle, &p)) != DV_OK) {
        db_err_set(e, 500, "os_process_error", "no query server process could start");
        goto done;
    }
    rc = qserver_define(p, handle, (const char *)def.data, def.len, &errors, &err);
    qserver_release(v->qs, p);
    if (rc != DV_OK) {
        db_err_set(e, 500, err.error[0] ? err.error : "os_process_error", "%s", err.reason);
        goto done;
    }
    json_doc ej = JSON_DOC_INIT;
    if (errors.len > 2 && json_doc_parse(&ej, errors.data, errors.len, 0, NULL) == DV_OK) {
        const json_val *first = json_array_get(json_doc_root(&ej), 0);
        const json_val *reason = first ? json_object_get_cstr(first, "reason") : NULL;
        size_t rl = 0;
        const char *rs = reason ? json_str(reason, &rl) : "function does not compile";
        db_err_set(e, 400, "compilation_error", "%.*s", (int)(rl > 180 ? 180 : rl ? rl : strlen(rs)), rs);
        rc = DV_ERR_INVALID;
    }
    json_doc_free(&ej);
done:
    view_group_free(&g);
    buf_free(&def);
    buf_free(&errors);
    json_doc_free(&jd);
    return rc;
}
