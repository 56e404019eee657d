/*
 * btree_cursor.c — range iteration, skipping and range reductions over the
 * append-only B+tree (format: btree_node.h).
 *
 * A cursor keeps the path from the root to its current leaf as a stack of
 * (node, index) frames, each node held by reference: memory is bounded by
 * height x node size whatever the range, nodes are read only when the path
 * moves into them, and the current row's bytes stay valid while its leaf is
 * held (until the next call).  The cursor is positioned on a row; `pending`
 * says whether that row still has to be returned (after a seek or a skip) or
 * was returned already (the next call moves first).
 *
 * Skipping uses the children's counts: it climbs only as far as needed,
 * jumps over whole subtrees by their count, and descends straight to the
 * target row: O(height) node reads for any n.
 *
 * A range reduction reads only the nodes on the paths to the two range
 * boundaries; every subtree lying wholly inside contributes its stored count
 * and reduction from its parent's entry.
 */
#include "store/btree_node.h"

#include "base/status.h"

#include <assert.h>
#include <stdlib.h>

typedef struct frame {
    bt_node *nd;
    uint32_t idx;
} frame;

enum { CUR_FRESH = 0, CUR_ON_ROW = 1, CUR_DONE = 2, CUR_FAILED = 3 };

struct store_btree_cursor {
    store_btree t;
    store_btree_range r; /* start/end point into mem */
    bt_root root;        /* red points into mem */
    int has_root;
    int state;
    int err;
    int pending;
    unsigned depth; /* frames in use; fr[depth-1] is the leaf when positioned */
    frame fr[BT_MAX_LEVEL + 1];
    uint8_t mem[]; /* root bytes | start | end */
};

static void cur_release_all(store_btree_cursor *c)
{
    while (c->depth > 0)
        bt_node_release(c->fr[--c->depth].nd);
}

int store_btree_cursor_open(const store_btree *t, const uint8_t *root, size_t root_len, const store_btree_range *r,
                            store_btree_cursor **out)
{
    static const store_btree_range all = STORE_BTREE_RANGE_ALL;
    if (!r)
        r = &all;
    size_t sn = r->has_start ? r->start.n : 0, en = r->has_end ? r->end.n : 0;
    store_btree_cursor *c = malloc(sizeof *c + root_len + sn + en);
    if (!c)
        return DV_ERR_NOMEM;
    memset(c, 0, sizeof *c);
    c->t = *t;
    c->r = *r;
    if (root_len)
        memcpy(c->mem, root, root_len);
    if (sn)
        memcpy(c->mem + root_len, r->start.p, sn);
    if (en)
        memcpy(c->mem + root_len + sn, r->end.p, en);
    c->r.start = (store_slice){c->mem + root_len, sn};
    c->r.end = (store_slice){c->mem + root_len + sn, en};
    int rc = bt_root_parse(c->mem, root_len, &c->root);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->has_root = rc;
    *out = c;
    return DV_OK;
}

void store_btree_cursor_close(store_btree_cursor *c)
{
    if (!c)
        return;
    cur_release_all(c);
    free(c);
}

/* Pushes the child idx of the top frame's node (or the root when empty). */
static int cur_push_child(store_btree_cursor *c, uint32_t idx)
{
    bt_node *nd;
    int rc;
    if (c->depth == 0) {
        rc = bt_node_load(&c->t, c->root.ptr, c->root.height, c->root.count, &nd);
    } else {
        frame *f = &c->fr[c->depth - 1];
        assert(f->nd->level > 0 && idx < f->nd->n);
        f->idx = idx;
        rc = bt_node_load(&c->t, bt_child_ptr(f->nd, idx), f->nd->level - 1u, f->nd->child[idx].count, &nd);
    }
    if (rc)
        return rc;
    assert(c->depth <= BT_MAX_LEVEL);
    c->fr[c->depth++] = (frame){nd, 0};
    return DV_OK;
}

/* From the top frame (a node just pushed), descends to its k-th row (1-based)
 * counting from the first row (forward) or from the last (backward). */
static int cur_descend_kth(store_btree_cursor *c, uint64_t k, int backward)
{
    for (;;) {
        frame *f = &c->fr[c->depth - 1];
        const bt_node *nd = f->nd;
        assert(k >= 1 && k <= nd->count); /* load checked counts add up */
        if (nd->level == 0) {
            f->idx = backward ? (uint32_t)(nd->n - k) : (uint32_t)(k - 1);
            return DV_OK;
        }
        uint32_t j;
        if (!backward) {
            for (j = 0; k > nd->child[j].count; j++)
                k -= nd->child[j].count;
        } else {
            for (j = nd->n - 1; k > nd->child[j].count; j--)
                k -= nd->child[j].count;
        }
        int rc = cur_push_child(c, j);
        if (rc)
            return rc;
    }
}

/* Pushes child j of the top node and descends to its k-th row: 1 or <0. */
static int cur_enter(store_btree_cursor *c, uint32_t j, uint64_t k, int backward)
{
    int rc = cur_push_child(c, j);
    if (!rc)
        rc = cur_descend_kth(c, k, backward);
    return rc ? rc : 1;
}

/* Moves k >= 1 rows in the cursor's direction.  1 = on a row, 0 = ran off
 * the tree, <0 error. */
static int cur_advance(store_btree_cursor *c, uint64_t k)
{
    const int back = c->r.descending;
    frame *leaf = &c->fr[c->depth - 1];
    uint64_t room = back ? leaf->idx : leaf->nd->n - 1u - leaf->idx;
    if (k <= room) {
        leaf->idx = back ? leaf->idx - (uint32_t)k : leaf->idx + (uint32_t)k;
        return 1;
    }
    k -= room; /* rows still to move past the leaf's edge */
    bt_node_release(leaf->nd);
    c->depth--;
    while (c->depth > 0) {
        frame *f = &c->fr[c->depth - 1];
        const bt_node *nd = f->nd;
        if (!back) {
            for (uint32_t j = f->idx + 1; j < nd->n; j++) {
                if (k <= nd->child[j].count)
                    return cur_enter(c, j, k, back);
                k -= nd->child[j].count;
            }
        } else {
            for (uint32_t j = f->idx; j-- > 0;) {
                if (k <= nd->child[j].count)
                    return cur_enter(c, j, k, back);
                k -= nd->child[j].count;
            }
        }
        bt_node_release(f->nd);
        c->depth--;
    }
    return 0;
}

/* Positions on the first row of the range (ignoring the far bound).
 * 1 = on a row, 0 = none, <0 error. */
static int cur_seek(store_btree_cursor *c)
{
    const store_btree_ops *ops = c->t.ops;
    const int back = c->r.descending;
    if (!c->has_root)
        return 0;
    int rc = cur_push_child(c, 0);
    if (rc)
        return rc;
    if (!c->r.has_start) {
        rc = cur_descend_kth(c, 1, back);
        return rc ? rc : 1;
    }
    store_slice k = c->r.start;
    for (;;) {
        frame *f = &c->fr[c->depth - 1];
        const bt_node *nd = f->nd;
        if (nd->level > 0) {
            /* The first child whose greatest key is >= start holds the start
             * or, failing that, the next row up. */
            uint32_t j = bt_search(ops, nd, 0, k, 0);
            if (j == nd->n) {
                if (!back)
                    return 0; /* every key is below start */
                j = nd->n - 1;
            }
            rc = cur_push_child(c, j);
            if (rc)
                return rc;
            continue;
        }
        if (!back) {
            f->idx = bt_search(ops, nd, 0, k, !c->r.start_inclusive);
            if (f->idx < nd->n)
                return 1;
            f->idx = nd->n - 1; /* the row wanted is the first of the next leaf */
            return cur_advance(c, 1);
        }
        uint32_t j = bt_search(ops, nd, 0, k, c->r.start_inclusive);
        if (j > 0) {
            f->idx = j - 1;
            return 1;
        }
        f->idx = 0;
        return cur_advance(c, 1);
    }
}

static int past_end(const store_btree_cursor *c, store_slice key)
{
    if (!c->r.has_end)
        return 0;
    int cmp = bt_cmp(c->t.ops, key, c->r.end);
    if (c->r.descending)
        cmp = -cmp;
    return cmp > 0 || (cmp == 0 && !c->r.end_inclusive);
}

static int cur_fail(store_btree_cursor *c, int rc)
{
    cur_release_all(c);
    if (rc < 0) {
        c->state = CUR_FAILED;
        c->err = rc;
        return rc;
    }
    c->state = CUR_DONE;
    return 0;
}

/* Makes the cursor sit on a row (seeking first if fresh). */
static int cur_ensure_started(store_btree_cursor *c)
{
    if (c->state == CUR_FAILED)
        return c->err;
    if (c->state == CUR_DONE)
        return 0;
    if (c->state == CUR_FRESH) {
        int rc = cur_seek(c);
        if (rc <= 0)
            return cur_fail(c, rc);
        c->state = CUR_ON_ROW;
        c->pending = 1;
    }
    return 1;
}

int store_btree_cursor_next(store_btree_cursor *c, store_slice *key, store_slice *val)
{
    int rc = cur_ensure_started(c);
    if (rc <= 0)
        return rc;
    if (!c->pending) {
        rc = cur_advance(c, 1);
        if (rc <= 0)
            return cur_fail(c, rc);
    }
    c->pending = 0;
    const frame *f = &c->fr[c->depth - 1];
    store_slice k = bt_key(f->nd, f->idx);
    if (past_end(c, k))
        return cur_fail(c, 0);
    *key = k;
    *val = bt_val(f->nd, f->idx);
    return 1;
}

int store_btree_cursor_skip(store_btree_cursor *c, uint64_t n)
{
    if (n == 0)
        return c->state == CUR_FAILED ? c->err : DV_OK;
    int rc = cur_ensure_started(c);
    if (rc <= 0)
        return rc;
    uint64_t k = n;
    if (!c->pending && ++k == 0)
        return cur_fail(c, 0); /* 2^64 rows: past anything */
    rc = cur_advance(c, k);
    if (rc <= 0)
        return cur_fail(c, rc);
    c->pending = 1;
    return DV_OK;
}

/* ---- range reduction -------------------------------------------------- */

typedef struct rr_ctx {
    const store_btree *t;
    int has_lo, lo_incl, has_hi, hi_incl;
    store_slice lo, hi;
    int want_red;
    uint64_t count;
    store_slice *reds;
    size_t nreds, capreds;
    bt_node **pins;
    size_t npins, cappins;
    buf_t *parts; /* leaf-range reductions */
    size_t nparts, capparts;
} rr_ctx;

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return DV_OK;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return DV_ERR_NOMEM;
    *p = np;
    *cap = ncap;
    return DV_OK;
}

static int rr_push_red(rr_ctx *x, store_slice red)
{
    if (!x->want_red)
        return DV_OK;
    int rc = grow((void **)&x->reds, &x->capreds, x->nreds, sizeof *x->reds);
    if (rc)
        return rc;
    x->reds[x->nreds++] = red;
    return DV_OK;
}

/* Adds the rows of the subtree at p that fall in range; has_lo/has_hi say
 * whether a boundary can cut this subtree. */
static int rr_node(rr_ctx *x, store_ptr p, unsigned level, uint64_t count, store_slice red, int has_lo, int has_hi)
{
    const store_btree_ops *ops = x->t->ops;
    if (!has_lo && !has_hi) {
        x->count += count;
        return rr_push_red(x, red);
    }
    int rc = grow((void **)&x->pins, &x->cappins, x->npins, sizeof *x->pins);
    if (rc)
        return rc;
    bt_node *nd;
    rc = bt_node_load(x->t, p, level, count, &nd);
    if (rc)
        return rc;
    x->pins[x->npins++] = nd; /* reductions below point into it */
    if (level == 0) {
        uint32_t i0 = has_lo ? bt_search(ops, nd, 0, x->lo, !x->lo_incl) : 0;
        uint32_t i1 = has_hi ? bt_search(ops, nd, i0, x->hi, x->hi_incl) : nd->n;
        if (i1 <= i0)
            return DV_OK;
        x->count += i1 - i0;
        if (!x->want_red)
            return DV_OK;
        if ((rc = grow((void **)&x->parts, &x->capparts, x->nparts, sizeof *x->parts)))
            return rc;
        buf_t *out = &x->parts[x->nparts++];
        buf_init(out);
        store_slice *kv = malloc(2 * (size_t)(i1 - i0) * sizeof *kv);
        if (!kv)
            return DV_ERR_NOMEM;
        for (uint32_t i = i0; i < i1; i++) {
            kv[i - i0] = bt_key(nd, i);
            kv[(i1 - i0) + (i - i0)] = bt_val(nd, i);
        }
        rc = ops->reduce(ops->ctx, kv, kv + (i1 - i0), i1 - i0, out);
        free(kv);
        return rc ? rc : rr_push_red(x, (store_slice){out->data, out->len});
    }
    uint32_t jlo = has_lo ? bt_search(ops, nd, 0, x->lo, 0) : 0;
    uint32_t jhi = has_hi ? bt_search(ops, nd, jlo, x->hi, 0) : nd->n;
    for (uint32_t j = jlo; j < nd->n && j <= jhi && !rc; j++)
        rc = rr_node(x, bt_child_ptr(nd, j), level - 1u, nd->child[j].count, bt_val(nd, j), has_lo && j == jlo,
                     has_hi && j == jhi);
    return rc;
}

int store_btree_reduce_range(const store_btree *t, const uint8_t *root, size_t root_len, const store_btree_range *r,
                             uint64_t *count, buf_t *red)
{
    static const store_btree_range all = STORE_BTREE_RANGE_ALL;
    rr_ctx x = {.t = t, .want_red = red && t->ops && t->ops->reduce};
    bt_root rt;
    if (!r)
        r = &all;
    *count = 0;
    if (red)
        buf_reset(red);
    int rc = bt_root_parse(root, root_len, &rt);
    if (rc <= 0)
        return rc;
    /* Normalise to an ascending [lo, hi]. */
    if (!r->descending) {
        x.has_lo = r->has_start, x.lo = r->start, x.lo_incl = r->start_inclusive;
        x.has_hi = r->has_end, x.hi = r->end, x.hi_incl = r->end_inclusive;
    } else {
        x.has_lo = r->has_end, x.lo = r->end, x.lo_incl = r->end_inclusive;
        x.has_hi = r->has_start, x.hi = r->start, x.hi_incl = r->start_inclusive;
    }
    if (x.has_lo && x.has_hi) {
        int c = bt_cmp(t->ops, x.lo, x.hi);
        if (c > 0 || (c == 0 && (!x.lo_incl || !x.hi_incl)))
            return DV_OK; /* empty range */
    }
    rc = rr_node(&x, rt.ptr, rt.height, rt.count, rt.red, x.has_lo, x.has_hi);
    if (rc == DV_OK) {
        *count = x.count;
        /* An empty range leaves red empty; one part is the answer as is. */
        if (x.want_red && x.nreds == 1)
            rc = buf_append(red, x.reds[0].p, x.reds[0].n);
        else if (x.want_red && x.nreds > 1)
            rc = t->ops->rereduce(t->ops->ctx, x.reds, x.nreds, red);
    }
    for (size_t i = 0; i < x.npins; i++)
        bt_node_release(x.pins[i]);
    for (size_t i = 0; i < x.nparts; i++)
        buf_free(&x.parts[i]);
    free(x.pins);
    free(x.parts);
    free(x.reds);
    return rc;
}
