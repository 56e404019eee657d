/*
 * btree.c — point lookup and batched copy-on-write modification of the
 * append-only B+tree (format: btree_node.h; cursors and range reductions:
 * btree_cursor.c).
 *
 * Modification is one recursive pass over the sorted actions.  Each visited
 * node returns its new *content* (the entries it should now hold, not yet
 * written); the parent cuts the contents of its touched children into nodes
 * of at most node_bytes, appends them, and so forms its own content.
 * Untouched children are kept by pointer, so a batch appends only the nodes
 * on touched paths, and only they get their counts and reductions
 * recomputed (reduce on leaves, rereduce on inner nodes).
 *
 * Balance: a touched child whose content is under a quarter of node_bytes is
 * merged with an adjacent sibling before being written, so nodes never end
 * up empty and stay reasonably full.  Inner nodes are cut with at least two
 * children each, so height is O(log n) whatever the key sizes.  A root left
 * with a single child is replaced by that child (the tree gets shorter); a
 * root that splits gains a new level.
 *
 * Memory: everything a modification creates (item vectors aside) lives in
 * one arena and every node it reads stays pinned until it returns, so slices
 * (keys, reductions) can point anywhere without copies; the cost is memory
 * proportional to the touched part of the tree, released at the end.
 */
#include "store/btree_node.h"

#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <stdlib.h>

enum { DEFAULT_NODE_BYTES = 4096, MIN_NODE_BYTES = 32 };

static size_t node_bytes(const store_btree *t)
{
    if (!t->node_bytes)
        return DEFAULT_NODE_BYTES;
    return t->node_bytes < MIN_NODE_BYTES ? MIN_NODE_BYTES : t->node_bytes;
}

static int has_reduce(const store_btree *t) { return t->ops && t->ops->reduce; }

/* ---- point lookup ------------------------------------------------------ */

/* Finds key: *leaf (pinned: the caller releases it) and the index of the
 * key in it.  DV_ERR_NOTFOUND (nothing pinned) when absent. */
static int get_leaf(const store_btree *t, const uint8_t *root, size_t root_len, store_slice key, bt_node **leaf,
                    uint32_t *idx)
{
    bt_root r;
    int rc = bt_root_parse(root, root_len, &r);
    if (rc <= 0)
        return rc == 0 ? DV_ERR_NOTFOUND : rc;
    bt_node *nd = NULL;
    rc = bt_node_load(t, r.ptr, r.height, r.count, &nd);
    if (rc)
        return rc;
    while (nd->level > 0) {
        uint32_t i = bt_search(t->ops, nd, 0, key, 0);
        if (i == nd->n) {
            rc = DV_ERR_NOTFOUND; /* beyond the greatest key */
            goto fail;
        }
        bt_node *child = NULL;
        rc = bt_node_load(t, bt_child_ptr(nd, i), nd->level - 1u, nd->child[i].count, &child);
        if (rc)
            goto fail;
        bt_node_release(nd);
        nd = child;
    }
    uint32_t i = bt_search(t->ops, nd, 0, key, 0);
    if (i == nd->n || bt_cmp(t->ops, bt_key(nd, i), key) != 0) {
        rc = DV_ERR_NOTFOUND;
        goto fail;
    }
    *leaf = nd;
    *idx = i;
    return DV_OK;
fail:
    bt_node_release(nd);
    return rc;
}

int store_btree_get(const store_btree *t, const uint8_t *root, size_t root_len, store_slice key, buf_t *val)
{
    bt_node *nd;
    uint32_t i;
    int rc = get_leaf(t, root, root_len, key, &nd, &i);
    if (rc)
        return rc;
    store_slice v = bt_val(nd, i);
    buf_reset(val);
    rc = buf_append(val, v.p, v.n);
    bt_node_release(nd);
    return rc;
}

int store_btree_get_with(const store_btree *t, const uint8_t *root, size_t root_len, store_slice key,
                         int (*fn)(void *arg, store_slice val), void *arg)
{
    bt_node *nd;
    uint32_t i;
    int rc = get_leaf(t, root, root_len, key, &nd, &i);
    if (rc)
        return rc;
    rc = fn(arg, bt_val(nd, i));
    bt_node_release(nd);
    return rc;
}

/* ---- modification ------------------------------------------------------ */

/* An entry of a node being built: a leaf row, or a child pointer with the
 * child's count and reduction. */
typedef struct bt_item {
    store_slice key;
    store_slice val; /* leaf: value; inner: reduction */
    uint64_t count;
    store_ptr child;
    size_t size; /* encoded bytes at its level (item_size), computed once: flush sizes lists repeatedly */
} bt_item;

typedef struct bt_vec {
    bt_item *v;
    size_t n, cap;
} bt_vec;

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    uint8_t data[];
} arena_chunk;

typedef struct bt_mod {
    const store_btree *t;
    size_t node_bytes;
    arena_chunk *arena;
    bt_node **pins;
    size_t npins, cappins;
    buf_t enc, red;
    store_slice *sk, *sv; /* scratch arrays for reduce/rereduce */
    size_t scap;
    uint64_t *thin; /* offsets of nodes written thin: see absorb_thin */
    size_t nthin, capthin;
} bt_mod;

static int vec_reserve(bt_vec *v, size_t extra)
{
    if (v->cap - v->n >= extra)
        return DV_OK;
    size_t cap = v->cap ? v->cap : 16;
    while (cap - v->n < extra)
        cap *= 2;
    bt_item *p = realloc(v->v, cap * sizeof *p);
    if (!p)
        return DV_ERR_NOMEM;
    v->v = p;
    v->cap = cap;
    return DV_OK;
}

static int vec_push(bt_vec *v, const bt_item *it)
{
    if (v->n == v->cap) {
        int rc = vec_reserve(v, 1);
        if (rc)
            return rc;
    }
    v->v[v->n++] = *it;
    return DV_OK;
}

static void vec_free(bt_vec *v)
{
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

/* Copies n bytes into the modification's arena (stable until it ends). */
static int arena_copy(bt_mod *m, const void *p, size_t n, store_slice *out)
{
    arena_chunk *c = m->arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + cap);
        if (!c)
            return DV_ERR_NOMEM;
        c->next = m->arena;
        c->used = 0;
        c->cap = cap;
        m->arena = c;
    }
    uint8_t *dst = c->data + c->used;
    if (n)
        memcpy(dst, p, n);
    c->used += n;
    *out = (store_slice){dst, n};
    return DV_OK;
}

static int mod_load(bt_mod *m, store_ptr p, unsigned level, uint64_t count, bt_node **out)
{
    if (m->npins == m->cappins) {
        size_t cap = m->cappins ? m->cappins * 2 : 32;
        bt_node **np = realloc(m->pins, cap * sizeof *np);
        if (!np)
            return DV_ERR_NOMEM;
        m->pins = np;
        m->cappins = cap;
    }
    int rc = bt_node_load(m->t, p, level, count, out);
    if (rc == DV_OK)
        m->pins[m->npins++] = *out;
    return rc;
}

static int scratch_reserve(bt_mod *m, size_t n)
{
    if (n <= m->scap)
        return DV_OK;
    store_slice *a = realloc(m->sk, n * sizeof *a);
    if (!a)
        return DV_ERR_NOMEM;
    m->sk = a;
    store_slice *b = realloc(m->sv, n * sizeof *b);
    if (!b)
        return DV_ERR_NOMEM;
    m->sv = b;
    m->scap = n;
    return DV_OK;
}

static inline size_t varint_len(uint64_t v)
{
    return v < 0x80 ? 1 : (size_t)(64 - __builtin_clzll(v) + 6) / 7;
}

static inline uint8_t *put_varint(uint8_t *w, uint64_t v)
{
    while (v >= 0x80) {
        *w++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *w++ = (uint8_t)v;
    return w;
}

static inline uint8_t *put_bytes(uint8_t *w, store_slice s)
{
    w = put_varint(w, s.n);
    if (s.n)
        memcpy(w, s.p, s.n);
    return w + s.n;
}

static size_t item_size(unsigned level, const bt_item *it)
{
    size_t n = varint_len(it->key.n) + it->key.n + varint_len(it->val.n) + it->val.n;
    if (level)
        n += varint_len(it->child.off) + varint_len(it->child.size) + varint_len(it->count);
    return n;
}

static inline size_t item_bytes(unsigned level, const bt_item *it)
{
    (void)level;
    assert(it->size == item_size(level, it));
    return it->size;
}

static size_t items_bytes(unsigned level, const bt_item *it, size_t n)
{
    size_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += item_bytes(level, &it[i]);
    return s;
}

static bt_item node_item(const bt_node *nd, uint32_t i)
{
    bt_item it = {bt_key(nd, i), bt_val(nd, i), 1, STORE_PTR_NULL, 0};
    if (nd->level) {
        it.count = nd->child[i].count;
        it.child = bt_child_ptr(nd, i);
    }
    it.size = item_size(nd->level, &it);
    return it;
}

/* Appends entries [from, to) of nd as items. */
static int node_items(const bt_node *nd, uint32_t from, uint32_t to, bt_vec *out)
{
    int rc = vec_reserve(out, to - from);
    if (rc)
        return rc;
    for (uint32_t i = from; i < to; i++)
        out->v[out->n++] = node_item(nd, i);
    return DV_OK;
}

/* Encodes items[0..n) at `level` from w (the node record of btree_node.h)
 * and returns the end.  With nd, fills its entry and child tables as it
 * goes, w being nd->raw: the node is decoded by construction. */
static uint8_t *encode_node(uint8_t *w, unsigned level, const bt_item *items, size_t n, bt_node *nd,
                            uint64_t *count)
{
    const uint8_t *base = w;
    uint64_t c = 0;
    *w++ = (uint8_t)level;
    w = put_varint(w, n);
    for (size_t i = 0; i < n; i++) {
        const bt_item *it = &items[i];
        w = put_bytes(w, it->key);
        if (nd) {
            bt_ent *e = &nd->ent[i];
            e->koff = (uint32_t)(w - it->key.n - base);
            e->kn = (uint32_t)it->key.n;
            e->prefix = bt_prefix(it->key.p, it->key.n);
        }
        if (level) {
            w = put_varint(w, it->child.off);
            w = put_varint(w, it->child.size);
            w = put_varint(w, it->count);
            if (nd)
                nd->child[i] = (bt_child){it->child.off, it->count, it->child.size};
        }
        w = put_bytes(w, it->val);
        if (nd) {
            nd->ent[i].voff = (uint32_t)(w - it->val.n - base);
            nd->ent[i].vn = (uint32_t)it->val.n;
        }
        c += level ? it->count : 1;
    }
    *count = c;
    return w;
}

/* Writes items[0..n) as one node at `level`; *out becomes its parent entry.
 * With a cache, the new node goes into it decoded: the next modification
 * or read of this tree starts from the path just written.  The node is
 * encoded straight into its decoded form (entry tables filled while
 * encoding), so caching it costs no decode: the writer appends thousands
 * of nodes a second. */
static int write_node(bt_mod *m, unsigned level, const bt_item *items, size_t n, bt_item *out)
{
    const store_btree *t = m->t;
    buf_t *e = &m->enc;
    bt_node *nd = NULL;
    uint64_t count = 0;
    const uint8_t *rec;
    int rc;
    assert(n > 0 && n <= UINT32_MAX);
    size_t size = 1 + varint_len(n) + items_bytes(level, items, n);
    if (t->cache) {
        if (!(nd = bt_node_alloc(level, (uint32_t)n, size)))
            return DV_ERR_NOMEM;
        rec = nd->raw;
    } else {
        buf_reset(e);
        if ((rc = buf_reserve(e, size)) != DV_OK)
            return rc;
        rec = e->data;
    }
    uint8_t *end = encode_node((uint8_t *)rec, level, items, n, nd, &count);
    assert((size_t)(end - rec) == size);
    (void)end;
    store_ptr p;
    rc = store_file_append(t->file, rec, size, &p);
    if (rc) {
        bt_node_release(nd);
        return rc;
    }
    *out = (bt_item){items[n - 1].key, {NULL, 0}, count, p, 0};
    if (nd) {
        nd->off = p.off;
        nd->count = count;
        nd->file = t->file;
#ifndef NDEBUG
        /* Debug builds: the node built while encoding equals its decode. */
        bt_node *chk;
        const char *why;
        assert(bt_node_decode(rec, size, p.off, t->ops, &chk, &why) == DV_OK);
        assert(chk->n == nd->n && chk->count == nd->count && chk->raw_len == nd->raw_len);
        assert(memcmp(chk->ent, nd->ent, n * sizeof *nd->ent) == 0);
        for (size_t i = 0; level && i < n; i++)
            assert(chk->child[i].off == nd->child[i].off && chk->child[i].count == nd->child[i].count &&
                   chk->child[i].size == nd->child[i].size);
        bt_node_release(chk);
#endif
        bt_node_release(bt_cache_insert(t->cache, nd));
    }
    if (!has_reduce(t)) {
        out->size = item_size(level + 1u, out);
        return DV_OK;
    }
    rc = scratch_reserve(m, n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        m->sk[i] = items[i].key;
        m->sv[i] = items[i].val;
    }
    buf_reset(&m->red);
    if (level == 0)
        rc = t->ops->reduce(t->ops->ctx, m->sk, m->sv, n, &m->red);
    else
        rc = t->ops->rereduce(t->ops->ctx, m->sv, n, &m->red);
    if (rc)
        return rc;
    rc = arena_copy(m, m->red.data, m->red.len, &out->val);
    out->size = item_size(level + 1u, out);
    return rc;
}

static int flush(bt_mod *m, unsigned level, const bt_item *items, size_t n, bt_vec *out);

static int note_thin(bt_mod *m, uint64_t off)
{
    if (m->nthin == m->capthin) {
        size_t cap = m->capthin ? m->capthin * 2 : 8;
        uint64_t *p = realloc(m->thin, cap * sizeof *p);
        if (!p)
            return DV_ERR_NOMEM;
        m->thin = p;
        m->capthin = cap;
    }
    m->thin[m->nthin++] = off;
    return DV_OK;
}

static int is_thin(const bt_mod *m, uint64_t off)
{
    for (size_t i = m->nthin; i-- > 0;)
        if (m->thin[i] == off)
            return 1;
    return 0;
}

/* Rows of neighbouring nodes are joined (merges, rebuilt children's
 * content, an inner node's new child list): each run is in order (a decoded
 * node was checked, a rebuilt leaf merges two sorted lists), so a corrupt
 * tree whose nodes overlap shows only where two runs meet.  Checking there,
 * one compare per join, reports it instead of writing a node whose keys are
 * out of order. */
static int check_join(const bt_mod *m, const bt_vec *v, size_t at)
{
    if (at == 0 || at >= v->n || bt_cmp(m->t->ops, v->v[at - 1].key, v->v[at].key) < 0)
        return DV_OK;
    log_error("btree: neighbouring nodes overlap in key order (child at file offset %llu): file corrupt",
              (unsigned long long)v->v[at].child.off);
    return DV_ERR_CORRUPT;
}

/* A subtree that lost nearly everything comes back from its parent as one
 * thin node (an inner node with a single child, or a small leaf) when it had
 * no sibling left to merge with at its own level.  Once it sits beside a
 * sibling in a list being flushed one level up, it is merged with that
 * sibling here, so no inner node keeps a single child and height stays
 * logarithmic in the live rows.  Copies items to *fixed with every thin
 * child merged into a neighbour. */
static int absorb_thin(bt_mod *m, unsigned level, const bt_item *items, size_t n, bt_vec *fixed)
{
    int rc = DV_OK;
    bt_vec tmp = {0};
    for (size_t i = 0; i < n && !rc; i++) {
        if (fixed->n == 0 || (!is_thin(m, fixed->v[fixed->n - 1].child.off) && !is_thin(m, items[i].child.off))) {
            rc = vec_push(fixed, &items[i]);
            continue;
        }
        /* Merge the previous item (thin, or before a thin one) with this one;
         * a result that is still thin merges on with the next item. */
        bt_item a = fixed->v[--fixed->n], b = items[i];
        bt_node *na, *nb;
        tmp.n = 0;
        rc = mod_load(m, a.child, level - 1u, a.count, &na);
        if (!rc)
            rc = mod_load(m, b.child, level - 1u, b.count, &nb);
        if (!rc)
            rc = node_items(na, 0, na->n, &tmp);
        size_t join = tmp.n;
        if (!rc)
            rc = node_items(nb, 0, nb->n, &tmp);
        if (!rc)
            rc = check_join(m, &tmp, join);
        if (!rc)
            rc = flush(m, level - 1u, tmp.v, tmp.n, fixed);
    }
    vec_free(&tmp);
    return rc;
}

/* Cuts items into nodes at `level` of at most node_bytes each (a leaf row
 * larger than that gets a node of its own; an inner node always gets at
 * least two children), sized evenly around total/parts; appends one parent
 * entry per node to out.  Cut points are chosen first so the tail can be
 * evened out before anything is written. */
static int flush(bt_mod *m, unsigned level, const bt_item *items, size_t n, bt_vec *out)
{
    /* Room for entries once the header (level byte, varint count) is in. */
    const size_t budget = m->node_bytes - 1 - varint_len(n);
    const size_t min_items = level ? 2 : 1;
    size_t total = items_bytes(level, items, n);
    size_t parts = (total + budget - 1) / budget;
    size_t target = parts ? total / parts : total;
    size_t *cuts = NULL, ncuts = 0, cap = 0; /* start index of each chunk after the first */
    size_t start = 0, cur = 0;
    bt_vec fixed = {0};
    int rc = DV_OK;
    if (level > 0 && n >= 2 && m->nthin) {
        rc = absorb_thin(m, level, items, n, &fixed);
        if (rc)
            goto out;
        items = fixed.v;
        n = fixed.n;
        total = items_bytes(level, items, n);
        parts = (total + budget - 1) / budget;
        target = parts ? total / parts : total;
    }
    for (size_t i = 0; i < n; i++) {
        size_t s = item_bytes(level, &items[i]);
        if (i - start >= min_items && n - i >= min_items && (cur + s > budget || cur + s / 2 > target)) {
            if (ncuts == cap) {
                cap = cap ? cap * 2 : 8;
                size_t *nc = realloc(cuts, cap * sizeof *nc);
                if (!nc) {
                    rc = DV_ERR_NOMEM;
                    goto out;
                }
                cuts = nc;
            }
            cuts[ncuts++] = start = i;
            cur = 0;
        }
        cur += s;
    }
    /* An inner tail may have had to swallow the last item oversized (a
     * chunk needs two): split it before its last two items instead. */
    size_t tail = ncuts ? cuts[ncuts - 1] : 0;
    if (level && n - tail >= 4 && items_bytes(level, items + tail, n - tail) > budget) {
        if (ncuts == cap) {
            size_t *nc = realloc(cuts, (cap + 1) * sizeof *nc);
            if (!nc) {
                rc = DV_ERR_NOMEM;
                goto out;
            }
            cuts = nc;
        }
        cuts[ncuts++] = n - 2;
    }
    start = 0;
    for (size_t c = 0; c <= ncuts && !rc; c++) {
        size_t end = c < ncuts ? cuts[c] : n;
        bt_item up;
        rc = write_node(m, level, items + start, end - start, &up);
        if (!rc)
            rc = vec_push(out, &up);
        start = end;
    }
    /* A lone node that is an inner node with one child or a small leaf is
     * remembered: the next flush that has it beside a sibling merges them. */
    if (!rc && ncuts == 0 && ((level > 0 && n == 1) || total < m->node_bytes / 4))
        rc = note_thin(m, out->v[out->n - 1].child.off);
out:
    vec_free(&fixed);
    free(cuts);
    return rc;
}

static int mod_node(bt_mod *m, store_ptr p, unsigned level, uint64_t count, const store_btree_action *acts,
                    size_t nacts, bt_vec *out);

/* New content of a leaf (nd NULL: the empty tree) after acts. */
static int mod_leaf(bt_mod *m, const bt_node *nd, const store_btree_action *acts, size_t nacts, bt_vec *out)
{
    const store_btree_ops *ops = m->t->ops;
    uint32_t i = 0, n = nd ? nd->n : 0;
    int rc = DV_OK;
    for (size_t a = 0; a < nacts && !rc; a++) {
        uint32_t j = nd ? bt_search(ops, nd, i, acts[a].key, 0) : 0;
        rc = node_items(nd, i, j, out); /* untouched rows before this key */
        i = j;
        int found = i < n && bt_cmp(ops, bt_key(nd, i), acts[a].key) == 0;
        if (found)
            i++;
        if (!rc && acts[a].op == STORE_BTREE_PUT) {
            bt_item it = {acts[a].key, acts[a].val, 1, STORE_PTR_NULL, 0};
            it.size = item_size(0, &it);
            rc = vec_push(out, &it);
        }
    }
    if (!rc && nd)
        rc = node_items(nd, i, n, out);
    return rc;
}

/* Index of the last action (exclusive) in [a, nacts) with key <= k. */
static size_t acts_upto(const store_btree_ops *ops, const store_btree_action *acts, size_t a, size_t nacts,
                        store_slice k)
{
    size_t lo = a, hi = nacts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bt_cmp(ops, acts[mid].key, k) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* New content of an inner node: children untouched by acts are kept by
 * pointer; touched ones are rebuilt and written, small ones merged with a
 * neighbour first. */
static int mod_inner(bt_mod *m, const bt_node *nd, const store_btree_action *acts, size_t nacts, bt_vec *out)
{
    const store_btree_ops *ops = m->t->ops;
    const unsigned cl = nd->level - 1u; /* children's level */
    const size_t min_fill = m->node_bytes / 4;
    const size_t out_start = out->n;
    bt_vec pend = {0}; /* rebuilt children's content (level cl), not yet written */
    size_t a = 0;
    uint32_t i = 0;
    int rc = DV_OK;
    while (i < nd->n && !rc) {
        uint32_t ci = nd->n;
        size_t a_end = a;
        if (a < nacts) {
            ci = bt_search(ops, nd, i, acts[a].key, 0);
            if (ci >= nd->n - 1) {
                ci = nd->n - 1; /* keys past the greatest go to the last child */
                a_end = nacts;
            } else {
                a_end = acts_upto(ops, acts, a, nacts, bt_key(nd, ci));
            }
        }
        for (; i < ci && !rc; i++) {
            if (pend.n) {
                if (items_bytes(cl, pend.v, pend.n) < min_fill) {
                    bt_node *sib;
                    size_t join = pend.n;
                    rc = mod_load(m, bt_child_ptr(nd, i), cl, nd->child[i].count, &sib);
                    if (!rc)
                        rc = node_items(sib, 0, sib->n, &pend);
                    if (!rc)
                        rc = check_join(m, &pend, join);
                    if (!rc)
                        rc = flush(m, cl, pend.v, pend.n, out);
                    pend.n = 0;
                    continue;
                }
                rc = flush(m, cl, pend.v, pend.n, out);
                pend.n = 0;
                if (rc)
                    break;
            }
            bt_item it = node_item(nd, i);
            rc = vec_push(out, &it);
        }
        if (rc || i == nd->n)
            break;
        if (pend.n && items_bytes(cl, pend.v, pend.n) >= min_fill) {
            rc = flush(m, cl, pend.v, pend.n, out);
            pend.n = 0;
            if (rc)
                break;
        }
        rc = mod_node(m, bt_child_ptr(nd, ci), cl, nd->child[ci].count, acts + a, a_end - a, &pend);
        a = a_end;
        i = ci + 1;
    }
    if (!rc && pend.n) {
        if (items_bytes(cl, pend.v, pend.n) < min_fill && out->n > out_start) {
            /* Small tail: merge with the previous sibling. */
            bt_item prev = out->v[--out->n];
            bt_node *sib;
            bt_vec merged = {0};
            rc = mod_load(m, prev.child, cl, prev.count, &sib);
            if (!rc)
                rc = node_items(sib, 0, sib->n, &merged);
            size_t join = merged.n;
            for (size_t k = 0; k < pend.n && !rc; k++)
                rc = vec_push(&merged, &pend.v[k]);
            if (!rc)
                rc = check_join(m, &merged, join);
            if (!rc)
                rc = flush(m, cl, merged.v, merged.n, out);
            vec_free(&merged);
        } else {
            rc = flush(m, cl, pend.v, pend.n, out);
        }
    }
    /* The new child list joins kept and rebuilt children: O(children). */
    for (size_t k = out_start ? out_start : 1; k < out->n && !rc; k++)
        rc = check_join(m, out, k);
    vec_free(&pend);
    return rc;
}

static int mod_node(bt_mod *m, store_ptr p, unsigned level, uint64_t count, const store_btree_action *acts,
                    size_t nacts, bt_vec *out)
{
    bt_node *nd;
    const size_t join = out->n;
    int rc = mod_load(m, p, level, count, &nd);
    if (!rc)
        rc = level == 0 ? mod_leaf(m, nd, acts, nacts, out) : mod_inner(m, nd, acts, nacts, out);
    if (!rc)
        rc = check_join(m, out, join);
    return rc;
}

static int check_actions(const store_btree *t, const store_btree_action *acts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (acts[i].op != STORE_BTREE_PUT && acts[i].op != STORE_BTREE_DEL)
            return DV_ERR_INVALID;
        if (acts[i].key.n > UINT32_MAX / 4 || (acts[i].op == STORE_BTREE_PUT && acts[i].val.n > UINT32_MAX / 4))
            return DV_ERR_TOO_LARGE;
        if (i > 0 && bt_cmp(t->ops, acts[i - 1].key, acts[i].key) >= 0) {
            log_error("btree: modify actions not in ascending key order (index %zu)", i);
            return DV_ERR_INVALID;
        }
    }
    return DV_OK;
}

/* Builds the root from the new content of the old root's level: cuts it
 * into nodes, and those into a level above, until one entry remains.  That
 * entry is the root unless it is an inner node with a single child written
 * by this modification (a subtree that lost everything else), which is
 * replaced by its child: the tree gets shorter. */
static int finish_root(bt_mod *m, unsigned level, bt_vec *content, buf_t *new_root)
{
    bt_vec next = {0};
    int rc = DV_OK;
    for (;;) {
        if (content->n == 0) {
            buf_reset(new_root);
            break;
        }
        if (level > 0 && content->n == 1) {
            bt_item top = content->v[0];
            unsigned h = level - 1;
            while (h > 0 && is_thin(m, top.child.off)) {
                bt_node *nd;
                rc = mod_load(m, top.child, h, top.count, &nd);
                if (rc)
                    break;
                if (nd->n != 1) {
                    /* Not peeled: the node stays under the new root.  Left
                     * pinned it would be retired with the superseded ones,
                     * and a small root (most roots: few children) left the
                     * cache at every commit, for the writer and every
                     * reader to load again. */
                    assert(m->npins > 0 && m->pins[m->npins - 1] == nd);
                    m->npins--;
                    bt_node_release(nd);
                    break;
                }
                top = node_item(nd, 0);
                h--;
            }
            if (!rc)
                rc = bt_root_encode(new_root, h, top.child, top.count, top.val);
            break;
        }
        if (level >= BT_MAX_LEVEL) {
            rc = DV_ERR_TOO_LARGE;
            break;
        }
        next.n = 0;
        rc = flush(m, level, content->v, content->n, &next);
        if (rc)
            break;
        bt_vec tmp = *content;
        *content = next;
        next = tmp;
        level++;
    }
    vec_free(&next);
    return rc;
}

int store_btree_modify(const store_btree *t, const uint8_t *root, size_t root_len, const store_btree_action *acts,
                       size_t n, buf_t *new_root)
{
    return store_btree_modify_keep(t, root, root_len, acts, n, new_root, NULL);
}

void store_btree_retire(store_btree_retired *kept)
{
    for (size_t i = 0; kept->cache && i < kept->n; i++)
        bt_cache_retire(kept->cache, kept->v[i]);
    store_btree_retired_free(kept);
}

void store_btree_retired_free(store_btree_retired *kept)
{
    for (size_t i = 0; i < kept->n; i++)
        bt_node_release(kept->v[i]);
    free(kept->v);
    *kept = (store_btree_retired){0};
}

/* Every node a modification pinned was rewritten (its rows copied into new
 * nodes) or peeled off the top by finish_root.  On success the pins move to
 * kept, or with kept NULL (store_btree_modify) leave the cache at once; on
 * failure they are released (nothing was superseded). */
int store_btree_modify_keep(const store_btree *t, const uint8_t *root, size_t root_len,
                            const store_btree_action *acts, size_t n, buf_t *new_root, store_btree_retired *kept)
{
    bt_mod m = {.t = t, .node_bytes = node_bytes(t), .enc = BUF_INIT, .red = BUF_INIT};
    bt_vec content = {0};
    bt_root r;
    int rc = check_actions(t, acts, n);
    if (rc)
        return rc;
    if (has_reduce(t) && !t->ops->rereduce)
        return DV_ERR_INVALID;
    rc = bt_root_parse(root, root_len, &r);
    if (rc < 0)
        return rc;
    if (n == 0) {
        buf_reset(new_root);
        return buf_append(new_root, root, root_len);
    }
    if (rc == 0)
        rc = mod_leaf(&m, NULL, acts, n, &content);
    else
        rc = mod_node(&m, r.ptr, r.height, r.count, acts, n, &content);
    if (!rc)
        rc = finish_root(&m, r.height, &content, new_root);
    vec_free(&content);
    size_t moved = 0;
    if (!rc && kept && m.npins && kept->n + m.npins > kept->cap) {
        size_t cap = kept->cap ? kept->cap : 64;
        while (cap < kept->n + m.npins)
            cap *= 2;
        bt_node **v = realloc(kept->v, cap * sizeof *v);
        if (v) {
            kept->v = v;
            kept->cap = cap;
        }
    }
    if (!rc && kept && m.npins && kept->n + m.npins <= kept->cap) { /* else (no memory): they stay cached */
        assert(!kept->n || kept->cache == t->cache); /* one kept list, one cache */
        kept->cache = t->cache;
        memcpy(kept->v + kept->n, m.pins, m.npins * sizeof *m.pins);
        kept->n += m.npins;
        moved = m.npins;
    }
    for (size_t i = moved; i < m.npins; i++) {
        if (!rc && !kept && t->cache)
            bt_cache_retire(t->cache, m.pins[i]);
        bt_node_release(m.pins[i]);
    }
    free(m.pins);
    while (m.arena) {
        arena_chunk *c = m.arena;
        m.arena = c->next;
        free(c);
    }
    buf_free(&m.enc);
    buf_free(&m.red);
    free(m.sk);
    free(m.sv);
    free(m.thin);
    return rc;
}
