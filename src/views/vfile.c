/*
 * vfile.c — one view's index file (see vfile.h).
 *
 * Object graph, as store/dbfile's: view_file ── cur ──> view_snap ──> vfref
 * (one open store_file and the two trees over it).  Snapshots are
 * refcounted and immutable; a vfref closes when its last snapshot goes, so
 * a reader of an old snapshot keeps reading the old file after compaction
 * swapped it away (unlinked, still open).
 *
 * Updates: view_file_update builds one sorted action list per tree for the
 * whole batch and applies each with one store_btree_modify, so a batch of
 * 500 documents costs one pass over the touched nodes, not 500.  The old
 * rows of a document come from the by-doc tree (one lookup per document).
 *
 * Locking: vf->mu guards cur (readers take a reference under it); the
 * pending roots belong to the single updater.
 */
#include "views/vfile.h"

#include "base/log.h"
#include "base/status.h"
#include "store/file.h"
#include "store/vfs.h"
#include "json/collate.h"
#include "views/vkey.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VFILE_MAGIC "DVVIEW02" /* 02: reductions carry the row count */
enum { T_VIEW = 0, T_BYDOC = 1 };

typedef struct vfref {
    atomic_uint refs;
    store_file *file;
    store_btree tree[2];
    store_btree_cache *cache;
} vfref;

struct view_snap {
    atomic_uint refs;
    vfref *fr;
    int raw;
    uint64_t seq;
    buf_t root[2];
    uint64_t file_size;
};

struct view_file {
    char *path;
    char *sig;
    uint64_t instance;
    view_reduce_kind reduce;
    int raw;
    view_js_reduce_fn js_reduce;
    void *js_ctx;
    store_btree_cache *cache;
    store_btree_ops view_ops;
    pthread_mutex_t mu;
    view_snap *cur;
    vfref *fr;             /* the file updates go to */
    buf_t pending[2];      /* roots after the last update */
    uint64_t pending_seq;
};

/* ---- reduce adapters ---------------------------------------------------------- */

/* Key JSON and value JSONs of n stored rows, duplicates expanded: the
 * built-in reduces see one entry per emitted row, as CouchDB's. */
typedef struct rows_flat {
    store_slice *keys, *vals;
    size_t n, cap;
} rows_flat;

static int flat_push(rows_flat *f, store_slice k, store_slice v)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 64;
        store_slice *nk = realloc(f->keys, nc * sizeof *nk);
        if (!nk)
            return DV_ERR_NOMEM;
        f->keys = nk;
        store_slice *nv = realloc(f->vals, nc * sizeof *nv);
        if (!nv)
            return DV_ERR_NOMEM;
        f->vals = nv;
        f->cap = nc;
    }
    f->keys[f->n] = k;
    f->vals[f->n++] = v;
    return DV_OK;
}

/* Every view tree reduces: an inner entry holds varint(rows, duplicates
 * expanded) followed by the view's own reduction (nothing for map-only
 * views).  total_rows and offset count rows as CouchDB does (a document
 * emitting one key twice is two rows), whatever the reduce. */
int view_red_split(store_slice red, uint64_t *rows, store_slice *user)
{
    buf_reader r;
    buf_reader_init(&r, red.p, red.n);
    if (red.n == 0) {
        *rows = 0;
        *user = red;
        return DV_OK;
    }
    if (buf_get_varint(&r, rows) != DV_OK)
        return DV_ERR_CORRUPT;
    *user = (store_slice){r.p, buf_reader_left(&r)};
    return DV_OK;
}

static int view_reduce_cb(void *ctx, const store_slice *keys, const store_slice *vals, size_t n, buf_t *out)
{
    view_file *vf = ctx;
    rows_flat f = {0};
    int rc = DV_OK;
    for (size_t i = 0; rc == DV_OK && i < n; i++) {
        vkey k;
        view_value_iter it;
        store_slice v;
        if ((rc = vkey_decode(keys[i], &k)) != DV_OK || (rc = view_value_iter_init(&it, vals[i])) != DV_OK)
            break;
        while (rc == DV_OK && (rc = view_value_next(&it, &v)) == 1)
            rc = flat_push(&f, k.key, v);
    }
    if (rc == DV_OK)
        rc = buf_put_varint(out, f.n);
    if (rc == DV_OK && vf->reduce == VIEW_REDUCE_JS)
        rc = vf->js_reduce ? vf->js_reduce(vf->js_ctx, 0, keys, vals, n, out) : DV_ERR_INVALID;
    else if (rc == DV_OK && vf->reduce != VIEW_REDUCE_NONE)
        rc = view_reduce(vf->reduce, f.keys, f.vals, f.n, out);
    free(f.keys);
    free(f.vals);
    return rc;
}

static int view_rereduce_cb(void *ctx, const store_slice *reds, size_t n, buf_t *out)
{
    view_file *vf = ctx;
    store_slice *user = malloc((n ? n : 1) * sizeof *user);
    if (!user)
        return DV_ERR_NOMEM;
    uint64_t total = 0;
    int rc = DV_OK;
    for (size_t i = 0; rc == DV_OK && i < n; i++) {
        uint64_t rows;
        rc = view_red_split(reds[i], &rows, &user[i]);
        total += rows;
    }
    if (rc == DV_OK)
        rc = buf_put_varint(out, total);
    if (rc == DV_OK && vf->reduce == VIEW_REDUCE_JS)
        rc = vf->js_reduce ? vf->js_reduce(vf->js_ctx, 1, NULL, user, n, out) : DV_ERR_INVALID;
    else if (rc == DV_OK && vf->reduce != VIEW_REDUCE_NONE)
        rc = view_rereduce(vf->reduce, user, n, out);
    free(user);
    return rc;
}

static int view_compare_cb(void *ctx, store_slice a, store_slice b)
{
    view_file *vf = ctx;
    return vkey_compare(vf->raw ? (void *)1 : NULL, a, b);
}

/* ---- values ---------------------------------------------------------------------- */

int view_value_iter_init(view_value_iter *it, store_slice val)
{
    uint8_t tag;
    buf_reader_init(&it->r, val.p, val.n);
    if (buf_get_u8(&it->r, &tag) != DV_OK || tag > 1)
        return DV_ERR_CORRUPT;
    it->single = tag == 0;
    it->left = 1;
    if (!it->single && buf_get_varint(&it->r, &it->left) != DV_OK)
        return DV_ERR_CORRUPT;
    return DV_OK;
}

int view_value_next(view_value_iter *it, store_slice *v)
{
    if (it->left == 0)
        return 0;
    it->left--;
    if (it->single) {
        *v = (store_slice){it->r.p, buf_reader_left(&it->r)};
        it->r.p = it->r.end;
        return 1;
    }
    const uint8_t *p;
    size_t n;
    if (buf_get_bytes(&it->r, &p, &n) != DV_OK)
        return DV_ERR_CORRUPT;
    *v = (store_slice){p, n};
    return 1;
}

/* ---- files and snapshots -------------------------------------------------------- */

static void fr_unref(vfref *fr)
{
    if (!fr || atomic_fetch_sub(&fr->refs, 1) != 1)
        return;
    if (fr->cache)
        store_btree_cache_forget(fr->cache, fr->file);
    store_file_close(fr->file);
    free(fr);
}

static void snap_free(view_snap *s)
{
    fr_unref(s->fr);
    buf_free(&s->root[0]);
    buf_free(&s->root[1]);
    free(s);
}

void view_snap_release(view_snap *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        snap_free(s);
}

uint64_t view_snap_seq(const view_snap *s) { return s->seq; }
int view_snap_raw(const view_snap *s) { return s->raw; }
uint64_t view_snap_rows(const view_snap *s)
{
    store_slice red;
    uint64_t rows = 0;
    store_slice user;
    if (store_btree_root_reduction(s->root[T_VIEW].data, s->root[T_VIEW].len, &red) != DV_OK ||
        view_red_split(red, &rows, &user) != DV_OK)
        return store_btree_root_count(s->root[T_VIEW].data, s->root[T_VIEW].len);
    return rows;
}
uint64_t view_snap_file_size(const view_snap *s) { return s->file_size; }

const store_btree *view_snap_tree(const view_snap *s, const uint8_t **root, size_t *root_len)
{
    *root = s->root[T_VIEW].data;
    *root_len = s->root[T_VIEW].len;
    return &s->fr->tree[T_VIEW];
}

int view_file_snapshot(view_file *vf, view_snap **out)
{
    pthread_mutex_lock(&vf->mu);
    view_snap *s = vf->cur;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&vf->mu);
    *out = s;
    return DV_OK;
}

static int header_encode(const view_file *vf, uint64_t seq, const buf_t root[2], buf_t *out)
{
    int rc = buf_append(out, VFILE_MAGIC, 8);
    if (rc == DV_OK)
        rc = buf_put_bytes(out, vf->sig, strlen(vf->sig));
    if (rc == DV_OK)
        rc = buf_put_u64le(out, vf->instance);
    if (rc == DV_OK)
        rc = buf_put_u64le(out, seq);
    for (int i = 0; rc == DV_OK && i < 2; i++)
        rc = buf_put_bytes(out, root[i].data, root[i].len);
    return rc;
}

/* DV_ERR_NOTFOUND when the header belongs to another view or database
 * instance (the file must be replaced), DV_ERR_CORRUPT when undecodable. */
static int header_decode(const view_file *vf, const buf_t *h, uint64_t *seq, buf_t root[2])
{
    buf_reader r;
    const uint8_t *p;
    size_t n;
    uint64_t inst;
    buf_reader_init(&r, h->data, h->len);
    if (buf_get_raw(&r, 8, &p) != DV_OK || memcmp(p, VFILE_MAGIC, 8))
        return DV_ERR_CORRUPT;
    if (buf_get_bytes(&r, &p, &n) != DV_OK)
        return DV_ERR_CORRUPT;
    if (n != strlen(vf->sig) || memcmp(p, vf->sig, n))
        return DV_ERR_NOTFOUND;
    if (buf_get_u64le(&r, &inst) != DV_OK || buf_get_u64le(&r, seq) != DV_OK)
        return DV_ERR_CORRUPT;
    if (inst != vf->instance)
        return DV_ERR_NOTFOUND;
    for (int i = 0; i < 2; i++) {
        if (buf_get_bytes(&r, &p, &n) != DV_OK)
            return DV_ERR_CORRUPT;
        buf_reset(&root[i]);
        if (buf_append(&root[i], p, n) != DV_OK)
            return DV_ERR_NOMEM;
    }
    return DV_OK;
}

static int fr_open(view_file *vf, const char *path, int flags, vfref **out, buf_t *header)
{
    vfref *fr = calloc(1, sizeof *fr);
    if (!fr)
        return DV_ERR_NOMEM;
    atomic_init(&fr->refs, 1);
    fr->cache = vf->cache;
    int rc = store_file_open(store_vfs_posix(), path, flags, &fr->file, header);
    if (rc != DV_OK) {
        free(fr);
        return rc;
    }
    for (int i = 0; i < 2; i++) {
        fr->tree[i].file = fr->file;
        fr->tree[i].cache = vf->cache;
    }
    fr->tree[T_VIEW].ops = &vf->view_ops;
    *out = fr;
    return DV_OK;
}

/* A new current snapshot from the pending state (takes a ref on fr). */
static int publish(view_file *vf, uint64_t seq)
{
    view_snap *s = calloc(1, sizeof *s);
    if (!s)
        return DV_ERR_NOMEM;
    atomic_init(&s->refs, 1);
    s->seq = seq;
    s->raw = vf->raw;
    int rc = DV_OK;
    for (int i = 0; rc == DV_OK && i < 2; i++)
        rc = buf_append(&s->root[i], vf->pending[i].data, vf->pending[i].len);
    if (rc != DV_OK) {
        buf_free(&s->root[0]);
        buf_free(&s->root[1]);
        free(s);
        return rc;
    }
    atomic_fetch_add(&vf->fr->refs, 1);
    s->fr = vf->fr;
    s->file_size = store_file_committed_size(vf->fr->file);
    pthread_mutex_lock(&vf->mu);
    view_snap *old = vf->cur;
    vf->cur = s;
    pthread_mutex_unlock(&vf->mu);
    view_snap_release(old);
    return DV_OK;
}

int view_file_open(const char *path, const view_file_opts *o, view_file **out)
{
    *out = NULL;
    view_file *vf = calloc(1, sizeof *vf);
    buf_t header = BUF_INIT;
    if (!vf)
        return DV_ERR_NOMEM;
    pthread_mutex_init(&vf->mu, NULL);
    int rc = DV_ERR_NOMEM;
    if (!(vf->path = strdup(path)) || !(vf->sig = strdup(o->sig)))
        goto fail;
    vf->instance = o->db_instance;
    vf->reduce = o->reduce;
    vf->raw = o->raw_collation;
    vf->js_reduce = o->js_reduce;
    vf->js_ctx = o->js_ctx;
    vf->cache = o->cache;
    vf->view_ops.compare = view_compare_cb;
    vf->view_ops.reduce = view_reduce_cb;
    vf->view_ops.rereduce = view_rereduce_cb;
    vf->view_ops.ctx = vf;
    rc = fr_open(vf, path, STORE_FILE_CREATE, &vf->fr, &header);
    uint64_t seq = 0;
    if (rc == DV_OK && header.len) {
        rc = header_decode(vf, &header, &seq, vf->pending);
        if (rc != DV_OK) {
            log_warn("views: %s belongs to another view or database, or is damaged (%s): rebuilding", path,
                     dv_strerror(rc));
            fr_unref(vf->fr);
            vf->fr = NULL;
            rc = store_vfs_posix()->unlink(store_vfs_posix(), path);
            if (rc == DV_OK)
                rc = fr_open(vf, path, STORE_FILE_CREATE, &vf->fr, &header);
            seq = 0;
            buf_reset(&vf->pending[0]);
            buf_reset(&vf->pending[1]);
        }
    } else if (rc == DV_ERR_CORRUPT) {
        log_warn("views: %s does not open (corrupt): rebuilding", path);
        if ((rc = store_vfs_posix()->unlink(store_vfs_posix(), path)) == DV_OK)
            rc = fr_open(vf, path, STORE_FILE_CREATE, &vf->fr, &header);
    }
    if (rc != DV_OK)
        goto fail;
    vf->pending_seq = seq;
    if ((rc = publish(vf, seq)) != DV_OK)
        goto fail;
    buf_free(&header);
    *out = vf;
    return DV_OK;
fail:
    buf_free(&header);
    view_file_close(vf);
    return rc;
}

void view_file_close(view_file *vf)
{
    if (!vf)
        return;
    view_snap_release(vf->cur);
    fr_unref(vf->fr);
    buf_free(&vf->pending[0]);
    buf_free(&vf->pending[1]);
    pthread_mutex_destroy(&vf->mu);
    free(vf->path);
    free(vf->sig);
    free(vf);
}

const char *view_file_path(const view_file *vf) { return vf->path; }
uint64_t view_file_pending_seq(const view_file *vf) { return vf->pending_seq; }

int view_file_commit(view_file *vf)
{
    buf_t h = BUF_INIT;
    int rc = header_encode(vf, vf->pending_seq, vf->pending, &h);
    if (rc == DV_OK)
        rc = store_file_commit(vf->fr->file, h.data, h.len, 0);
    buf_free(&h);
    if (rc == DV_OK)
        rc = publish(vf, vf->pending_seq);
    return rc;
}

/* ---- updates ---------------------------------------------------------------------- */

typedef struct act {
    int op;
    buf_t key, val;
} act;

typedef struct actlist {
    act *a;
    size_t n, cap;
} actlist;

static act *act_push(actlist *l)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        act *na = realloc(l->a, nc * sizeof *na);
        if (!na)
            return NULL;
        l->a = na;
        l->cap = nc;
    }
    act *x = &l->a[l->n++];
    memset(x, 0, sizeof *x);
    return x;
}

static void actlist_free(actlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        buf_free(&l->a[i].key);
        buf_free(&l->a[i].val);
    }
    free(l->a);
}

static int act_cmp_r(const void *x, const void *y, void *ctx)
{
    const act *a = x, *b = y;
    view_file *vf = ctx;
    return vkey_compare(vf->raw ? (void *)1 : NULL, (store_slice){a->key.data, a->key.len},
                        (store_slice){b->key.data, b->key.len});
}

static int act_cmp_bytes(const void *x, const void *y)
{
    const act *a = x, *b = y;
    int c = memcmp(a->key.data, b->key.data, a->key.len < b->key.len ? a->key.len : b->key.len);
    return c ? c : (a->key.len > b->key.len) - (a->key.len < b->key.len);
}

static int cmp_value_raw(const void *x, const void *y)
{
    const store_slice *a = x, *b = y;
    return json_collate_text_raw(a->p, a->n, b->p, b->n);
}

/* Sorts view-tree actions by view order and merges actions on equal keys:
 * a PUT wins over a DEL (the row is replaced), two PUTs (one doc emitting
 * one key twice) become one row with duplicate values. */
static int merge_view_acts(view_file *vf, actlist *l)
{
    if (l->n == 0)
        return DV_OK;
    qsort_r(l->a, l->n, sizeof *l->a, act_cmp_r, vf);
    size_t w = 0;
    for (size_t i = 0; i < l->n;) {
        size_t j = i + 1;
        while (j < l->n && act_cmp_r(&l->a[i], &l->a[j], vf) == 0)
            j++;
        /* [i, j) share one key */
        size_t nput = 0;
        for (size_t k = i; k < j; k++)
            nput += l->a[k].op == STORE_BTREE_PUT;
        act merged = l->a[i];
        memset(&l->a[i], 0, sizeof l->a[i]);
        if (nput == 0) {
            merged.op = STORE_BTREE_DEL;
        } else {
            buf_t v = BUF_INIT;
            int rc = DV_OK;
            if (nput == 1) {
                for (size_t k = i; k < j; k++)
                    if ((k == i ? merged.op : l->a[k].op) == STORE_BTREE_PUT) {
                        buf_t *src = k == i ? &merged.val : &l->a[k].val;
                        rc = buf_append(&v, src->data, src->len);
                    }
            } else {
                /* CouchDB sorts one document's values for one key (Erlang
                 * term order of the decoded values: the raw collation). */
                store_slice *vals = malloc(nput * sizeof *vals);
                size_t nv = 0;
                rc = vals ? buf_append_byte(&v, 1) : DV_ERR_NOMEM;
                if (rc == DV_OK)
                    rc = buf_put_varint(&v, nput);
                for (size_t k = i; rc == DV_OK && k < j; k++) {
                    buf_t *src = k == i ? &merged.val : &l->a[k].val;
                    int op = k == i ? merged.op : l->a[k].op;
                    if (op == STORE_BTREE_PUT) /* single values: tag 0 then the JSON */
                        vals[nv++] = (store_slice){src->data + 1, src->len - 1};
                }
                if (rc == DV_OK)
                    qsort(vals, nv, sizeof *vals, cmp_value_raw);
                for (size_t k = 0; rc == DV_OK && k < nv; k++)
                    rc = buf_put_bytes(&v, vals[k].p, vals[k].n);
                free(vals);
            }
            if (rc != DV_OK) {
                buf_free(&v);
                buf_free(&merged.key);
                buf_free(&merged.val);
                return rc;
            }
            buf_free(&merged.val);
            merged.val = v;
            merged.op = STORE_BTREE_PUT;
        }
        for (size_t k = i + 1; k < j; k++) {
            buf_free(&l->a[k].key);
            buf_free(&l->a[k].val);
        }
        l->a[w++] = merged;
        i = j;
    }
    l->n = w;
    return DV_OK;
}

static int apply(view_file *vf, int t, actlist *l)
{
    if (l->n == 0)
        return DV_OK;
    store_btree_action *acts = malloc(l->n * sizeof *acts);
    if (!acts)
        return DV_ERR_NOMEM;
    for (size_t i = 0; i < l->n; i++)
        acts[i] = (store_btree_action){l->a[i].op, {l->a[i].key.data, l->a[i].key.len},
                                       {l->a[i].val.data, l->a[i].val.len}};
    buf_t nr = BUF_INIT;
    int rc = store_btree_modify(&vf->fr->tree[t], vf->pending[t].data, vf->pending[t].len, acts, l->n, &nr);
    free(acts);
    if (rc == DV_OK) {
        buf_free(&vf->pending[t]);
        vf->pending[t] = nr;
    } else {
        buf_free(&nr);
    }
    return rc;
}

/* Old keys of a document from the by-doc tree → DEL actions. */
static int old_rows(view_file *vf, store_slice id, actlist *view)
{
    buf_t v = BUF_INIT;
    int rc = store_btree_get(&vf->fr->tree[T_BYDOC], vf->pending[T_BYDOC].data, vf->pending[T_BYDOC].len, id, &v);
    if (rc == DV_ERR_NOTFOUND) {
        buf_free(&v);
        return DV_OK;
    }
    buf_reader r;
    buf_reader_init(&r, v.data, v.len);
    while (rc == DV_OK && buf_reader_left(&r)) {
        const uint8_t *k;
        size_t kn;
        if (buf_get_bytes(&r, &k, &kn) != DV_OK) {
            rc = DV_ERR_CORRUPT;
            break;
        }
        act *a = act_push(view);
        if (!a) {
            rc = DV_ERR_NOMEM;
            break;
        }
        a->op = STORE_BTREE_DEL;
        rc = vkey_encode(VKEY_ROW, k, kn, id.p, id.n, &a->key);
    }
    buf_free(&v);
    return rc;
}

int view_file_update(view_file *vf, const view_doc_rows *docs, size_t n, uint64_t seq, int fresh)
{
    actlist view = {0}, bydoc = {0};
    int rc = DV_OK;
    for (size_t i = 0; rc == DV_OK && i < n; i++) {
        const view_doc_rows *d = &docs[i];
        if (!fresh && (rc = old_rows(vf, d->id, &view)) != DV_OK)
            break;
        if (fresh && !d->nrows)
            continue; /* nothing to remove, nothing to add */
        act *b = act_push(&bydoc);
        if (!b) {
            rc = DV_ERR_NOMEM;
            break;
        }
        b->op = d->nrows ? STORE_BTREE_PUT : STORE_BTREE_DEL;
        if ((rc = buf_append(&b->key, d->id.p, d->id.n)) != DV_OK)
            break;
        for (size_t k = 0; rc == DV_OK && k < d->nrows; k++) {
            act *a = act_push(&view);
            if (!a) {
                rc = DV_ERR_NOMEM;
                break;
            }
            a->op = STORE_BTREE_PUT;
            rc = vkey_encode(VKEY_ROW, d->rows[k].key.p, d->rows[k].key.n, d->id.p, d->id.n, &a->key);
            if (rc == DV_OK)
                rc = buf_append_byte(&a->val, 0);
            if (rc == DV_OK)
                rc = buf_append(&a->val, d->rows[k].value.p, d->rows[k].value.n);
            if (rc == DV_OK)
                rc = buf_put_bytes(&b->val, d->rows[k].key.p, d->rows[k].key.n);
        }
    }
    if (rc == DV_OK)
        rc = merge_view_acts(vf, &view);
    if (rc == DV_OK && bydoc.n)
        qsort(bydoc.a, bydoc.n, sizeof *bydoc.a, act_cmp_bytes);
    if (rc == DV_OK)
        rc = apply(vf, T_VIEW, &view);
    if (rc == DV_OK)
        rc = apply(vf, T_BYDOC, &bydoc);
    if (rc == DV_OK && seq > vf->pending_seq)
        vf->pending_seq = seq;
    actlist_free(&view);
    actlist_free(&bydoc);
    return rc;
}

/* ---- compaction --------------------------------------------------------------------- */

/* Copies tree t of the current pending state into nfr, in key order,
 * 4,096 rows per modify. */
static int copy_tree(view_file *vf, vfref *nfr, int t, buf_t *nroot, uint64_t *done, uint64_t total,
                     void (*progress)(void *, uint64_t, uint64_t), void *arg)
{
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    store_btree_cursor *c;
    int rc = store_btree_cursor_open(&vf->fr->tree[t], vf->pending[t].data, vf->pending[t].len, &all, &c);
    if (rc != DV_OK)
        return rc;
    actlist l = {0};
    store_slice k, v;
    for (;;) {
        int more = store_btree_cursor_next(c, &k, &v);
        if (more < 0) {
            rc = more;
            break;
        }
        if (more) {
            act *a = act_push(&l);
            if (!a || buf_append(&a->key, k.p, k.n) || buf_append(&a->val, v.p, v.n)) {
                rc = DV_ERR_NOMEM;
                break;
            }
            a->op = STORE_BTREE_PUT;
        }
        if (l.n == 4096 || (!more && l.n)) {
            store_btree_action *acts = malloc(l.n * sizeof *acts);
            if (!acts) {
                rc = DV_ERR_NOMEM;
                break;
            }
            for (size_t i = 0; i < l.n; i++)
                acts[i] = (store_btree_action){STORE_BTREE_PUT, {l.a[i].key.data, l.a[i].key.len},
                                               {l.a[i].val.data, l.a[i].val.len}};
            buf_t nr = BUF_INIT;
            rc = store_btree_modify(&nfr->tree[t], nroot->data, nroot->len, acts, l.n, &nr);
            free(acts);
            buf_free(nroot);
            *nroot = nr;
            *done += l.n;
            actlist_free(&l);
            memset(&l, 0, sizeof l);
            if (rc != DV_OK)
                break;
            if (progress)
                progress(arg, *done, total);
        }
        if (!more)
            break;
    }
    actlist_free(&l);
    store_btree_cursor_close(c);
    return rc;
}

int view_file_compact(view_file *vf, void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
    size_t pl = strlen(vf->path);
    char *tmp = malloc(pl + 9);
    if (!tmp)
        return DV_ERR_NOMEM;
    memcpy(tmp, vf->path, pl);
    memcpy(tmp + pl, ".compact", 9);
    store_vfs *vfs = store_vfs_posix();
    vfs->unlink(vfs, tmp); /* a leftover of an interrupted compaction */
    vfref *nfr = NULL;
    buf_t roots[2] = {BUF_INIT, BUF_INIT}, h = BUF_INIT;
    int rc = fr_open(vf, tmp, STORE_FILE_CREATE | STORE_FILE_EXCL, &nfr, NULL);
    uint64_t done = 0, total = 0;
    for (int t = 0; t < 2; t++)
        total += store_btree_root_count(vf->pending[t].data, vf->pending[t].len);
    for (int t = 0; rc == DV_OK && t < 2; t++)
        rc = copy_tree(vf, nfr, t, &roots[t], &done, total, progress, arg);
    if (rc == DV_OK)
        rc = header_encode(vf, vf->pending_seq, roots, &h);
    if (rc == DV_OK)
        rc = store_file_commit(nfr->file, h.data, h.len, 1);
    if (rc == DV_OK)
        rc = vfs->rename(vfs, tmp, vf->path);
    if (rc != DV_OK) {
        fr_unref(nfr);
        vfs->unlink(vfs, tmp);
        goto done;
    }
    /* Swap: new updates go to the new file; snapshots keep the old one. */
    fr_unref(vf->fr);
    vf->fr = nfr;
    for (int t = 0; t < 2; t++) {
        buf_free(&vf->pending[t]);
        vf->pending[t] = roots[t];
        buf_init(&roots[t]);
    }
    rc = publish(vf, vf->pending_seq);
done:
    buf_free(&roots[0]);
    buf_free(&roots[1]);
    buf_free(&h);
    free(tmp);
    return rc;
}
