/*
 * faultvfs.c — the in-memory, fault-injecting store_vfs of faultvfs.h.
 *
 * Model:
 *   - A file is a node with two images: `durable` (what survived the last
 *     sync) and `cur` (what reads see), plus the list of operations (writes,
 *     truncates) made since the last sync, in order.  cur always equals
 *     durable with every pending operation applied.  sync replays the pending
 *     operations onto durable (cost: bytes written since the last sync).
 *   - Names live in two tables: `names` (what lookups see) and `dnames` (what
 *     survives a power loss).  create, rename and unlink change `names`;
 *     sync_dir(d) copies every entry of directory d from `names` to `dnames`.
 *     The directory of "a/b/c" is "a/b"; of "c" it is ".".
 *   - A power loss (faultvfs_crash) rebuilds each file from durable plus a
 *     mode-dependent selection of its pending operations, and replaces
 *     `names` with `dnames`.  In KEEP_RANDOM every 4 KiB page of every
 *     pending write is independently kept, lost or torn (a prefix kept), so
 *     later writes survive while earlier ones are lost, as a disk with a
 *     volatile cache reorders them.
 *   - Handles carry the generation they were opened in; a crash bumps it and
 *     every older handle then fails with DV_ERR_IO.
 *   - A power cut (faultvfs_cut_after) switches the machine "off": the
 *     chosen mutating operation and every later operation fail without
 *     effect until faultvfs_crash turns it back on.
 * Nodes are never freed before faultvfs_free (a dead handle may still point
 * at one); their images are released when no name refers to them after a
 * crash.
 */
#include "store/faultvfs.h"

#include "base/status.h"
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FV_PAGE 4096

enum { OP_WRITE, OP_TRUNC };

typedef struct fv_op {
    int kind;
    uint64_t off; /* write offset, or the new size for a truncate */
    size_t len;
    uint8_t *data;
    struct fv_op *next;
} fv_op;

typedef struct fv_node {
    buf_t cur, durable;
    fv_op *ops, *ops_tail;
    struct fv_node *next_all;
} fv_node;

typedef struct fv_name {
    char *path;
    fv_node *node;
} fv_name;

typedef struct fv_names {
    fv_name *v;
    size_t n, cap;
} fv_names;

struct faultvfs {
    store_vfs vfs; /* first: store_vfs * converts back to faultvfs * */
    pthread_mutex_t mu;
    tu_rng rng;
    fv_node *nodes;
    fv_names names, dnames;
    uint64_t gen;
    uint64_t cut_left, fail_write_left, fail_sync_left, op_count;
    int power_off, cut_happened;
};

typedef struct fv_file {
    faultvfs *v;
    fv_node *node;
    uint64_t gen;
    int readonly;
} fv_file;

static faultvfs *fv_of(store_vfs *vfs) { return (faultvfs *)(void *)vfs; }
static fv_file *fh_of(store_vfs_file *f) { return (fv_file *)(void *)f; }

static void *fv_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort(); /* a test helper: out of memory ends the test */
    return p;
}

static char *fv_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = fv_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

/* ---- images and operations ------------------------------------------- */

static void img_resize(buf_t *b, uint64_t size)
{
    if (size > b->len) {
        if (buf_reserve(b, (size_t)(size - b->len)) != DV_OK)
            abort();
        memset(b->data + b->len, 0, (size_t)(size - b->len));
    }
    b->len = (size_t)size;
}

static void img_write(buf_t *b, uint64_t off, const uint8_t *p, size_t len)
{
    if (len == 0)
        return;
    if (off + len > b->len)
        img_resize(b, off + len);
    memcpy(b->data + off, p, len);
}

static void img_copy(buf_t *dst, const buf_t *src)
{
    img_resize(dst, 0);
    img_write(dst, 0, src->data, src->len);
    dst->len = src->len;
}

static void node_free_ops(fv_node *n)
{
    fv_op *o = n->ops;
    while (o) {
        fv_op *next = o->next;
        free(o->data);
        free(o);
        o = next;
    }
    n->ops = n->ops_tail = NULL;
}

static void node_push_op(fv_node *n, int kind, uint64_t off, const void *data, size_t len)
{
    fv_op *o = fv_xmalloc(sizeof(*o));
    o->kind = kind;
    o->off = off;
    o->len = len;
    o->data = NULL;
    if (kind == OP_WRITE) {
        o->data = fv_xmalloc(len);
        memcpy(o->data, data, len);
    }
    o->next = NULL;
    if (n->ops_tail)
        n->ops_tail->next = o;
    else
        n->ops = o;
    n->ops_tail = o;
}

/* Applies op to img; for a write only bytes [from, from + keep) of it. */
static void op_apply(buf_t *img, const fv_op *o, size_t from, size_t keep)
{
    if (o->kind == OP_TRUNC)
        img_resize(img, o->off);
    else
        img_write(img, o->off + from, o->data + from, keep);
}

/* The image a power loss leaves, from durable plus a selection of ops. */
static void node_resolve(faultvfs *v, fv_node *n, int mode)
{
    buf_t out = BUF_INIT;
    img_copy(&out, &n->durable);
    for (fv_op *o = n->ops; o; o = o->next) {
        int last = o->next == NULL;
        switch (mode) {
        case FAULTVFS_KEEP_ALL:
            op_apply(&out, o, 0, o->len);
            break;
        case FAULTVFS_TEAR_LAST:
            if (!last)
                op_apply(&out, o, 0, o->len);
            else if (o->kind == OP_WRITE)
                op_apply(&out, o, 0, (size_t)tu_rand_below(&v->rng, o->len));
            break;
        case FAULTVFS_KEEP_RANDOM:
            if (o->kind == OP_TRUNC) {
                if (tu_rand(&v->rng) & 1)
                    op_apply(&out, o, 0, 0);
                break;
            }
            /* Page by page, aligned on absolute file offsets. */
            for (size_t from = 0; from < o->len;) {
                size_t page_end = (size_t)(((o->off + from) / FV_PAGE + 1) * FV_PAGE - o->off);
                size_t n_here = (page_end < o->len ? page_end : o->len) - from;
                uint64_t r = tu_rand_below(&v->rng, 100);
                if (r < 45)
                    op_apply(&out, o, from, n_here);
                else if (r < 65)
                    op_apply(&out, o, from, (size_t)tu_rand_below(&v->rng, n_here));
                from += n_here;
            }
            break;
        default: /* FAULTVFS_DROP_UNSYNCED */
            break;
        }
    }
    node_free_ops(n);
    img_copy(&n->durable, &out);
    img_copy(&n->cur, &out);
    buf_free(&out);
}

/* ---- name tables ------------------------------------------------------ */

static fv_name *names_find(fv_names *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].path, path) == 0)
            return &t->v[i];
    return NULL;
}

static void names_put(fv_names *t, const char *path, fv_node *node)
{
    fv_name *e = names_find(t, path);
    if (e) {
        e->node = node;
        return;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        fv_name *nv = realloc(t->v, cap * sizeof(*nv));
        if (!nv)
            abort();
        t->v = nv;
        t->cap = cap;
    }
    t->v[t->n].path = fv_strdup(path);
    t->v[t->n].node = node;
    t->n++;
}

static void names_del_at(fv_names *t, size_t i)
{
    free(t->v[i].path);
    t->v[i] = t->v[--t->n];
}

static void names_clear(fv_names *t)
{
    while (t->n)
        names_del_at(t, t->n - 1);
}

/* Does path live directly in dir?  dir is normalised ("." for no slash). */
static int in_dir(const char *path, const char *dir)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strcmp(dir, ".") == 0;
    size_t n = (size_t)(slash - path);
    if (n == 0)
        return strcmp(dir, "/") == 0;
    return strlen(dir) == n && memcmp(path, dir, n) == 0;
}

/* ---- gates ------------------------------------------------------------ */

static int fv_powered(faultvfs *v) { return v->power_off ? DV_ERR_IO : DV_OK; }

/* Every mutating operation passes here first. */
static int fv_mutation(faultvfs *v)
{
    if (v->power_off)
        return DV_ERR_IO;
    if (v->cut_left && --v->cut_left == 0) {
        v->power_off = 1;
        v->cut_happened = 1;
        return DV_ERR_IO;
    }
    v->op_count++;
    return DV_OK;
}

static int fv_handle_ok(fv_file *f)
{
    if (f->gen != f->v->gen)
        return DV_ERR_IO; /* opened before a power loss */
    return fv_powered(f->v);
}

static fv_node *node_new(faultvfs *v)
{
    fv_node *n = calloc(1, sizeof(*n));
    if (!n)
        abort();
    n->next_all = v->nodes;
    v->nodes = n;
    return n;
}

/* ---- the store_vfs operations ----------------------------------------- */

static int fv_open(store_vfs *vfs, const char *path, int flags, store_vfs_file **out)
{
    faultvfs *v = fv_of(vfs);
    int rc;
    pthread_mutex_lock(&v->mu);
    fv_name *e = names_find(&v->names, path);
    fv_node *node;
    if ((rc = fv_powered(v)) != DV_OK)
        goto done;
    if (e) {
        if ((flags & STORE_VFS_CREATE) && (flags & STORE_VFS_EXCL)) {
            rc = DV_ERR_EXISTS;
            goto done;
        }
        node = e->node;
    } else {
        if (!(flags & STORE_VFS_CREATE)) {
            rc = DV_ERR_NOTFOUND;
            goto done;
        }
        if ((rc = fv_mutation(v)) != DV_OK)
            goto done;
        node = node_new(v);
        names_put(&v->names, path, node);
    }
    fv_file *f = fv_xmalloc(sizeof(*f));
    f->v = v;
    f->node = node;
    f->gen = v->gen;
    f->readonly = (flags & STORE_VFS_READONLY) != 0;
    *out = (store_vfs_file *)(void *)f;
done:
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static int fv_close(store_vfs_file *vf)
{
    free(fh_of(vf));
    return DV_OK;
}

static int fv_pread(store_vfs_file *vf, void *buf, size_t len, uint64_t off)
{
    fv_file *f = fh_of(vf);
    faultvfs *v = f->v;
    int rc;
    pthread_mutex_lock(&v->mu);
    if ((rc = fv_handle_ok(f)) != DV_OK)
        goto done;
    const buf_t *img = &f->node->cur;
    if (off > img->len || len > img->len - off) {
        rc = DV_ERR_CORRUPT;
        goto done;
    }
    if (len)
        memcpy(buf, img->data + off, len);
done:
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static int fv_pwrite(store_vfs_file *vf, const void *buf, size_t len, uint64_t off)
{
    fv_file *f = fh_of(vf);
    faultvfs *v = f->v;
    int rc;
    pthread_mutex_lock(&v->mu);
    if ((rc = fv_handle_ok(f)) != DV_OK || (rc = fv_mutation(v)) != DV_OK)
        goto done;
    if (f->readonly || off > (1ULL << 40) || (v->fail_write_left && --v->fail_write_left == 0)) {
        rc = DV_ERR_IO;
        goto done;
    }
    img_write(&f->node->cur, off, buf, len);
    node_push_op(f->node, OP_WRITE, off, buf, len);
done:
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static int fv_sync(store_vfs_file *vf)
{
    fv_file *f = fh_of(vf);
    faultvfs *v = f->v;
    int rc;
    pthread_mutex_lock(&v->mu);
    if ((rc = fv_handle_ok(f)) != DV_OK || (rc = fv_mutation(v)) != DV_OK)
        goto done;
    if (v->fail_sync_left && --v->fail_sync_left == 0) {
        rc = DV_ERR_IO;
        goto done;
    }
    for (fv_op *o = f->node->ops; o; o = o->next)
        op_apply(&f->node->durable, o, 0, o->len);
    node_free_ops(f->node);
done:
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static int fv_size(store_vfs_file *vf, uint64_t *out)
{
    fv_file *f = fh_of(vf);
    int rc;
    pthread_mutex_lock(&f->v->mu);
    if ((rc = fv_handle_ok(f)) == DV_OK)
        *out = f->node->cur.len;
    pthread_mutex_unlock(&f->v->mu);
    return rc;
}

static int fv_truncate(store_vfs_file *vf, uint64_t size)
{
    fv_file *f = fh_of(vf);
    faultvfs *v = f->v;
    int rc;
    pthread_mutex_lock(&v->mu);
    if ((rc = fv_handle_ok(f)) != DV_OK || (rc = fv_mutation(v)) != DV_OK)
        goto done;
    if (f->readonly || size > (1ULL << 40)) {
        rc = DV_ERR_IO;
        goto done;
    }
    img_resize(&f->node->cur, size);
    node_push_op(f->node, OP_TRUNC, size, NULL, 0);
done:
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static int fv_rename(store_vfs *vfs, const char *from, const char *to)
{
    faultvfs *v = fv_of(vfs);
    int rc;
    pthread_mutex_lock(&v->mu);
    if ((rc = fv_mutation(v)) != DV_OK)
        goto done;
    fv_name *e = names_find(&v->names, from);
    if (!e) {
        rc = DV_ERR_NOTFOUND;
        goto done;
    }
    fv_node *node = e->node;
    if (strcmp(from, to) != 0) {
        names_del_at(&v->names, (size_t)(e - v->names.v));
        names_put(&v->names, to, node);
    }
done:
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static int fv_unlink(store_vfs *vfs, const char *path)
{
    faultvfs *v = fv_of(vfs);
    int rc;
    pthread_mutex_lock(&v->mu);
    if ((rc = fv_mutation(v)) != DV_OK)
        goto done;
    fv_name *e = names_find(&v->names, path);
    if (!e)
        rc = DV_ERR_NOTFOUND;
    else
        names_del_at(&v->names, (size_t)(e - v->names.v));
done:
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static int fv_sync_dir(store_vfs *vfs, const char *dir_in)
{
    faultvfs *v = fv_of(vfs);
    int rc;
    char *dir = fv_strdup(dir_in && *dir_in ? dir_in : ".");
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = 0;
    pthread_mutex_lock(&v->mu);
    if ((rc = fv_mutation(v)) != DV_OK)
        goto done;
    for (size_t i = v->dnames.n; i-- > 0;)
        if (in_dir(v->dnames.v[i].path, dir))
            names_del_at(&v->dnames, i);
    for (size_t i = 0; i < v->names.n; i++)
        if (in_dir(v->names.v[i].path, dir))
            names_put(&v->dnames, v->names.v[i].path, v->names.v[i].node);
done:
    pthread_mutex_unlock(&v->mu);
    free(dir);
    return rc;
}

static int fv_exists(store_vfs *vfs, const char *path)
{
    faultvfs *v = fv_of(vfs);
    int rc;
    pthread_mutex_lock(&v->mu);
    rc = fv_powered(v);
    if (rc == DV_OK)
        rc = names_find(&v->names, path) != NULL;
    pthread_mutex_unlock(&v->mu);
    return rc;
}

/* ---- public API ------------------------------------------------------- */

faultvfs *faultvfs_new(uint64_t seed)
{
    faultvfs *v = calloc(1, sizeof(*v));
    if (!v)
        abort();
    v->vfs = (store_vfs){
        .open = fv_open,
        .close = fv_close,
        .pread = fv_pread,
        .pwrite = fv_pwrite,
        .sync = fv_sync,
        .size = fv_size,
        .truncate = fv_truncate,
        .rename = fv_rename,
        .unlink = fv_unlink,
        .sync_dir = fv_sync_dir,
        .exists = fv_exists,
    };
    pthread_mutex_init(&v->mu, NULL);
    v->rng.s = seed;
    return v;
}

void faultvfs_free(faultvfs *v)
{
    if (!v)
        return;
    fv_node *n = v->nodes;
    while (n) {
        fv_node *next = n->next_all;
        node_free_ops(n);
        buf_free(&n->cur);
        buf_free(&n->durable);
        free(n);
        n = next;
    }
    names_clear(&v->names);
    names_clear(&v->dnames);
    free(v->names.v);
    free(v->dnames.v);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

store_vfs *faultvfs_vfs(faultvfs *v) { return &v->vfs; }

void faultvfs_crash(faultvfs *v, int mode)
{
    pthread_mutex_lock(&v->mu);
    for (fv_node *n = v->nodes; n; n = n->next_all)
        node_resolve(v, n, mode);
    names_clear(&v->names);
    for (size_t i = 0; i < v->dnames.n; i++)
        names_put(&v->names, v->dnames.v[i].path, v->dnames.v[i].node);
    /* Files no name refers to are gone for good: release their images. */
    for (fv_node *n = v->nodes; n; n = n->next_all) {
        int named = 0;
        for (size_t i = 0; i < v->names.n && !named; i++)
            named = v->names.v[i].node == n;
        if (!named) {
            buf_free(&n->cur);
            buf_free(&n->durable);
        }
    }
    v->gen++;
    v->cut_left = 0;
    v->power_off = 0;
    pthread_mutex_unlock(&v->mu);
}

void faultvfs_cut_after(faultvfs *v, uint64_t n)
{
    pthread_mutex_lock(&v->mu);
    v->cut_left = n;
    v->cut_happened = 0;
    pthread_mutex_unlock(&v->mu);
}

int faultvfs_cut_happened(faultvfs *v)
{
    pthread_mutex_lock(&v->mu);
    int r = v->cut_happened;
    pthread_mutex_unlock(&v->mu);
    return r;
}

void faultvfs_fail_write_after(faultvfs *v, uint64_t n)
{
    pthread_mutex_lock(&v->mu);
    v->fail_write_left = n;
    pthread_mutex_unlock(&v->mu);
}

void faultvfs_fail_sync_after(faultvfs *v, uint64_t n)
{
    pthread_mutex_lock(&v->mu);
    v->fail_sync_left = n;
    pthread_mutex_unlock(&v->mu);
}

uint64_t faultvfs_op_count(faultvfs *v)
{
    pthread_mutex_lock(&v->mu);
    uint64_t r = v->op_count;
    pthread_mutex_unlock(&v->mu);
    return r;
}

int faultvfs_read_file(faultvfs *v, const char *path, buf_t *out)
{
    int rc = DV_OK;
    pthread_mutex_lock(&v->mu);
    fv_name *e = names_find(&v->names, path);
    buf_reset(out);
    if (!e)
        rc = DV_ERR_NOTFOUND;
    else if (e->node->cur.len)
        rc = buf_append(out, e->node->cur.data, e->node->cur.len);
    pthread_mutex_unlock(&v->mu);
    return rc;
}

int faultvfs_write_file(faultvfs *v, const char *path, const void *data, size_t len)
{
    pthread_mutex_lock(&v->mu);
    fv_name *e = names_find(&v->names, path);
    fv_node *node = e ? e->node : node_new(v);
    if (!e)
        names_put(&v->names, path, node);
    names_put(&v->dnames, path, node);
    node_free_ops(node);
    img_resize(&node->cur, 0);
    img_write(&node->cur, 0, data, len);
    img_copy(&node->durable, &node->cur);
    pthread_mutex_unlock(&v->mu);
    return DV_OK;
}
