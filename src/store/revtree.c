/*
 * revtree.c — in-memory revision trees: edit, replicated merge, stem, purge,
 * winner selection (CouchDB 3.x couch_key_tree semantics).
 *
 * Representation: t->nodes is sorted by store_rev_cmp order, i.e. by pos and
 * then by id bytes.  Because a child's pos is its parent's pos + 1, that
 * order is also topological (parent index < child index), and it is
 * canonical: two trees holding the same revisions have the same node order
 * and therefore the same encoding, which is what makes replicas comparable
 * byte for byte.  It also makes revtree_find a binary search.
 *
 * Costs (n nodes, m path length): find O(log n); add_edit O(n) (one
 * memmove + one pass renumbering parents); merge_path O(m log n + n) (one
 * in-place backward merge of the new nodes); stem and purge O(n) (one pass
 * from the leaves up, since children always follow their parent); leaves
 * O(n + L log L).  Nothing on these paths is quadratic in n.
 *
 * Replicated merges converge: a path contributes its revisions and its
 * (child, parent) edges; a node's parent is only ever set once (from NONE,
 * when a path names an ancestor of a stemmed root), so merging the same
 * consistent set of paths in any order yields the same nodes and edges.
 * Leaves keep the fields of the path that brought them; inner nodes added
 * as ancestors are bodiless.
 */
#include "store/revtree.h"

#include "base/status.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Lifetime                                                             */

void revtree_init(revtree *t)
{
    t->nodes = NULL;
    t->n = 0;
    t->cap = 0;
}

void revtree_free(revtree *t)
{
    free(t->nodes);
    revtree_init(t);
}

/* Ensures room for `extra` more nodes.  Node counts are bounded far below
 * UINT32_MAX / 2 by decode and by revs_limit, so doubling cannot wrap. */
static int reserve(revtree *t, uint32_t extra)
{
    if ((uint64_t)t->n + extra > UINT32_MAX / 2)
        return DV_ERR_TOO_LARGE;
    uint32_t need = t->n + extra;
    if (need <= t->cap)
        return DV_OK;
    uint32_t cap = t->cap ? t->cap : 4;
    while (cap < need)
        cap *= 2;
    revtree_node *p = realloc(t->nodes, (size_t)cap * sizeof *p);
    if (!p)
        return DV_ERR_NOMEM;
    t->nodes = p;
    t->cap = cap;
    return DV_OK;
}

int revtree_copy(revtree *dst, const revtree *src)
{
    revtree tmp;
    revtree_init(&tmp);
    int rc = reserve(&tmp, src->n);
    if (rc != DV_OK)
        return rc;
    if (src->n)
        memcpy(tmp.nodes, src->nodes, (size_t)src->n * sizeof *src->nodes);
    tmp.n = src->n;
    revtree_free(dst);
    *dst = tmp;
    return DV_OK;
}

int revtree_equal(const revtree *a, const revtree *b)
{
    if (a->n != b->n)
        return 0;
    for (uint32_t i = 0; i < a->n; i++) {
        const revtree_node *x = &a->nodes[i], *y = &b->nodes[i];
        if (!store_rev_equal(&x->rev, &y->rev) || x->parent != y->parent || x->deleted != y->deleted ||
            x->has_body != y->has_body || x->body.off != y->body.off || x->body.size != y->body.size ||
            x->seq != y->seq || x->size != y->size)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* Lookup                                                               */

/* First index whose rev is >= rev in tree order (t->n if none). */
static uint32_t lower_bound(const revtree *t, const store_rev *rev)
{
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (store_rev_cmp(&t->nodes[mid].rev, rev) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First index whose pos is >= pos. */
static uint32_t lower_bound_pos(const revtree *t, uint64_t pos)
{
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->nodes[mid].rev.pos < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint32_t revtree_find(const revtree *t, const store_rev *rev)
{
    uint32_t i = lower_bound(t, rev);
    if (i < t->n && store_rev_equal(&t->nodes[i].rev, rev))
        return i;
    return REVTREE_NONE;
}

/* Children of idx all have pos + 1, so they sit in one contiguous run that
 * a binary search finds; the cost is O(log n + width of that generation). */
int revtree_is_leaf(const revtree *t, uint32_t idx)
{
    assert(idx < t->n);
    uint64_t pos = t->nodes[idx].rev.pos;
    if (pos == UINT64_MAX)
        return 1;
    for (uint32_t i = lower_bound_pos(t, pos + 1); i < t->n && t->nodes[i].rev.pos == pos + 1; i++)
        if (t->nodes[i].parent == idx)
            return 0;
    return 1;
}

uint32_t revtree_path(const revtree *t, uint32_t idx, uint32_t *out)
{
    uint32_t k = 0;
    while (idx != REVTREE_NONE) {
        assert(idx < t->n && k < t->n);
        out[k++] = idx;
        idx = t->nodes[idx].parent;
    }
    return k;
}

/* ------------------------------------------------------------------ */
/* Winner                                                               */

/* Winner order on leaves: live before deleted, then store_rev_cmp. */
static int leaf_cmp(const revtree_node *a, const revtree_node *b)
{
    if (a->deleted != b->deleted)
        return a->deleted ? -1 : 1;
    return store_rev_cmp(&a->rev, &b->rev);
}

static int leaf_sort_cmp(const void *pa, const void *pb, void *ctx)
{
    const revtree *t = ctx;
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return -leaf_cmp(&t->nodes[a], &t->nodes[b]); /* winner first */
}

void revtree_leaves(const revtree *t, uint32_t *idx, uint32_t *n)
{
    /* idx doubles as the "has a child" mark array, then is compacted in
     * place: slot k is written only after slot i >= k has been read. */
    for (uint32_t i = 0; i < t->n; i++)
        idx[i] = 0;
    for (uint32_t i = 0; i < t->n; i++)
        if (t->nodes[i].parent != REVTREE_NONE)
            idx[t->nodes[i].parent] = 1;
    uint32_t k = 0;
    for (uint32_t i = 0; i < t->n; i++)
        if (idx[i] == 0)
            idx[k++] = i;
    qsort_r(idx, k, sizeof *idx, leaf_sort_cmp, (void *)t);
    *n = k;
}

uint32_t revtree_leaves_under(const revtree *t, uint32_t idx, uint32_t *out)
{
    enum { BELOW = 1, HAS_CHILD = 2 };
    /* out doubles as the mark array (parents come before their children,
     * so one forward pass marks every descendant), then is compacted in
     * place as in revtree_leaves. */
    if (idx >= t->n)
        return 0;
    for (uint32_t i = 0; i < t->n; i++)
        out[i] = 0;
    out[idx] = BELOW;
    for (uint32_t i = idx + 1; i < t->n; i++) {
        uint32_t p = t->nodes[i].parent;
        if (p != REVTREE_NONE && (out[p] & BELOW))
            out[i] |= BELOW;
    }
    for (uint32_t i = 0; i < t->n; i++)
        if (t->nodes[i].parent != REVTREE_NONE)
            out[t->nodes[i].parent] |= HAS_CHILD;
    uint32_t k = 0;
    for (uint32_t i = idx; i < t->n; i++)
        if (out[i] == BELOW)
            out[k++] = i;
    qsort_r(out, k, sizeof *out, leaf_sort_cmp, (void *)t);
    return k;
}

/* Scans from the highest rev down: the first live leaf met is the live leaf
 * with the highest (pos, id), hence the winner; if there is none every leaf
 * is deleted and the last node (highest pos, so necessarily a leaf) wins. */
uint32_t revtree_winner(const revtree *t)
{
    if (t->n == 0)
        return REVTREE_NONE;
    for (uint32_t i = t->n; i-- > 0;)
        if (!t->nodes[i].deleted && revtree_is_leaf(t, i))
            return i;
    return t->n - 1;
}

uint32_t revtree_implicit_parent(const revtree *t)
{
    uint32_t w = revtree_winner(t);
    if (w == REVTREE_NONE || !t->nodes[w].deleted)
        return REVTREE_NONE;
    return w;
}

/* ------------------------------------------------------------------ */
/* Edit (new_edits=true)                                                */

static void node_from_proto(revtree_node *dst, const revtree_node *proto)
{
    if (proto)
        *dst = *proto;
    else
        memset(dst, 0, sizeof *dst);
}

int revtree_add_edit(revtree *t, const store_rev *parent, const char *new_id, uint8_t new_id_len,
                     const revtree_node *proto, uint32_t *out_idx)
{
    if (!store_rev_id_valid(new_id, new_id_len))
        return DV_ERR_INVALID;
    uint32_t p;
    if (parent) {
        p = revtree_find(t, parent);
        if (p == REVTREE_NONE || !revtree_is_leaf(t, p))
            return DV_ERR_CONFLICT;
    } else {
        p = revtree_implicit_parent(t);
        if (p == REVTREE_NONE && t->n > 0)
            return DV_ERR_CONFLICT; /* a live leaf exists: the edit must name it */
    }
    revtree_node node;
    node_from_proto(&node, proto);
    node.parent = p;
    node.rev.pos = 1;
    if (p != REVTREE_NONE) {
        if (t->nodes[p].rev.pos == UINT64_MAX)
            return DV_ERR_INVALID;
        node.rev.pos = t->nodes[p].rev.pos + 1;
    }
    node.rev.len = new_id_len;
    memset(node.rev.id, 0, sizeof node.rev.id);
    memcpy(node.rev.id, new_id, new_id_len);

    uint32_t at = lower_bound(t, &node.rev);
    if (at < t->n && store_rev_equal(&t->nodes[at].rev, &node.rev))
        return DV_ERR_CONFLICT; /* the rev exists elsewhere in the forest */
    int rc = reserve(t, 1);
    if (rc != DV_OK)
        return rc;
    /* The parent has a smaller pos, so it sorts before `at` and keeps its
     * index; every node from `at` on moves up by one. */
    assert(p == REVTREE_NONE || p < at);
    memmove(&t->nodes[at + 1], &t->nodes[at], (size_t)(t->n - at) * sizeof *t->nodes);
    t->nodes[at] = node;
    t->n++;
    for (uint32_t i = at + 1; i < t->n; i++)
        if (t->nodes[i].parent != REVTREE_NONE && t->nodes[i].parent >= at)
            t->nodes[i].parent++;
    if (out_idx)
        *out_idx = at;
    return DV_OK;
}

/* ------------------------------------------------------------------ */
/* Replicated merge (new_edits=false)                                   */

/*
 * Working state of one merge.  Indices are "tags": an existing node keeps
 * its index (< n0); the new node for path[i] is tagged n0 + i.  Existing
 * nodes' parents may be rewritten to tags during the walk; the final merge
 * maps every tag to its index in the sorted result.
 */
typedef struct merge_ctx {
    revtree *t;
    uint32_t n0;
    const store_rev *path;
    size_t m;
    uint32_t *found;       /* m: index of path[i] in t, or NONE */
    revtree_node *fresh;   /* m: new node for path[i] when isnew[i] */
    uint8_t *isnew;        /* m */
    uint32_t *map;         /* n0 + m: tag -> final index */
} merge_ctx;

static revtree_node *tag_node(merge_ctx *c, uint32_t tag)
{
    return tag < c->n0 ? &c->t->nodes[tag] : &c->fresh[tag - c->n0];
}

static uint32_t make_fresh(merge_ctx *c, size_t i)
{
    memset(&c->fresh[i], 0, sizeof c->fresh[i]);
    c->fresh[i].rev = c->path[i];
    c->fresh[i].parent = REVTREE_NONE;
    c->isnew[i] = 1;
    return c->n0 + (uint32_t)i;
}

/* Inserts the fresh nodes into the sorted array (backward in-place merge,
 * O(n + m)), then rewrites every parent tag to its final index. */
static void merge_commit(merge_ctx *c)
{
    revtree *t = c->t;
    uint32_t n_new = 0;
    for (size_t i = 0; i < c->m; i++)
        n_new += c->isnew[i];
    uint32_t w = c->n0 + n_new;
    uint32_t a = c->n0; /* old nodes not yet placed: [0, a) */
    size_t i = 0;       /* fresh nodes in descending order: path index ascending */
    while (i < c->m && !c->isnew[i])
        i++;
    while (w > 0) {
        w--;
        int take_new = i < c->m && (a == 0 || store_rev_cmp(&c->fresh[i].rev, &t->nodes[a - 1].rev) > 0);
        if (take_new) {
            t->nodes[w] = c->fresh[i];
            c->map[c->n0 + i] = w;
            i++;
            while (i < c->m && !c->isnew[i])
                i++;
        } else {
            a--;
            t->nodes[w] = t->nodes[a];
            c->map[a] = w;
        }
    }
    t->n = c->n0 + n_new;
    for (uint32_t k = 0; k < t->n; k++)
        if (t->nodes[k].parent != REVTREE_NONE) {
            t->nodes[k].parent = c->map[t->nodes[k].parent];
            assert(t->nodes[k].parent < k);
        }
}

int revtree_merge_path(revtree *t, const store_rev *path, size_t n, const revtree_node *proto, int *added,
                       uint32_t *out_idx)
{
    if (added)
        *added = 0;
    if (n == 0 || n > UINT32_MAX / 4)
        return DV_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (path[i].pos == 0 || !store_rev_id_valid(path[i].id, path[i].len))
            return DV_ERR_INVALID;
        if (i + 1 < n && path[i + 1].pos != path[i].pos - 1)
            return DV_ERR_INVALID;
    }

    merge_ctx c = {.t = t, .n0 = t->n, .path = path, .m = n};
    int rc = DV_ERR_NOMEM;
    c.found = malloc(n * sizeof *c.found);
    c.fresh = malloc(n * sizeof *c.fresh);
    c.isnew = calloc(n, 1);
    c.map = malloc(((size_t)t->n + n) * sizeof *c.map);
    if (!c.found || !c.fresh || !c.isnew || !c.map)
        goto done;
    rc = reserve(t, (uint32_t)n);
    if (rc != DV_OK)
        goto done;
    /* Nothing below fails: the tree is only modified from here on. */

    size_t k = n; /* youngest path rev already present */
    for (size_t i = 0; i < n; i++) {
        c.found[i] = revtree_find(t, &path[i]);
        if (c.found[i] != REVTREE_NONE && k == n)
            k = i;
    }
    int changed = 0;
    for (size_t i = 0; i < k; i++) {
        make_fresh(&c, i);
        changed = 1;
    }
    if (k > 0) {
        if (proto) {
            c.fresh[0] = *proto;
            c.fresh[0].rev = path[0];
        }
        for (size_t i = 0; i < k; i++)
            c.fresh[i].parent = i + 1 == k ? (k < n ? c.found[k] : REVTREE_NONE) : c.n0 + (uint32_t)(i + 1);
    }
    /* Walk up from the youngest known rev in step with the path.  Where the
     * tree's branch ends (a root, left by stemming) and the path knows more
     * ancestors, graft them on, joining an existing node when the path's
     * ancestor is already in the tree.  A tree parent that disagrees with
     * the path means inconsistent histories: the tree's version is kept. */
    if (k < n) {
        uint32_t cur = c.found[k];
        for (size_t j = k; j + 1 < n; j++) {
            revtree_node *cn = tag_node(&c, cur);
            if (cn->parent != REVTREE_NONE) {
                if (!store_rev_equal(&tag_node(&c, cn->parent)->rev, &path[j + 1]))
                    break;
                cur = cn->parent;
                continue;
            }
            uint32_t up = c.found[j + 1] != REVTREE_NONE ? c.found[j + 1] : make_fresh(&c, j + 1);
            cn->parent = up;
            cur = up;
            changed = 1;
        }
    }

    uint32_t leaf_tag = k == 0 ? c.found[0] : c.n0;
    if (changed) {
        merge_commit(&c);
        leaf_tag = c.map[leaf_tag];
    }
    if (added)
        *added = k > 0;
    if (out_idx)
        *out_idx = leaf_tag;
    rc = DV_OK;
done:
    free(c.found);
    free(c.fresh);
    free(c.isnew);
    free(c.map);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Removal: stem and purge                                              */

/* Keeps the nodes with keep[i] != 0, preserving order; children of dropped
 * nodes become roots.  keep is reused as the old -> new index map. */
static void compact(revtree *t, uint32_t *keep)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        if (!keep[i]) {
            keep[i] = REVTREE_NONE;
            continue;
        }
        revtree_node nd = t->nodes[i];
        if (nd.parent != REVTREE_NONE)
            nd.parent = keep[nd.parent]; /* parent < i: already mapped */
        t->nodes[w] = nd;
        keep[i] = w++;
    }
    t->n = w;
}

/*
 * CouchDB stems by cutting every leaf's path to its newest `limit` revs and
 * merging those paths back.  So a node survives when it is within limit - 1
 * generations of some leaf below it, and the edge to its parent survives
 * only when one leaf's window holds both, i.e. when the node's nearest leaf
 * is within limit - 2.  (A path through a node kept by a nearer leaf can
 * therefore stay longer than limit, exactly as in CouchDB.)
 */
int revtree_stem(revtree *t, uint64_t limit)
{
    if (limit == 0)
        return DV_ERR_INVALID;
    if (t->n == 0)
        return DV_OK;
    /* depth[i] = distance to the nearest leaf below i, computed children
     * first (they follow their parent in the array). */
    uint32_t *depth = malloc((size_t)t->n * sizeof *depth);
    if (!depth)
        return DV_ERR_NOMEM;
    for (uint32_t i = 0; i < t->n; i++)
        depth[i] = UINT32_MAX;
    for (uint32_t i = t->n; i-- > 0;) {
        if (depth[i] == UINT32_MAX)
            depth[i] = 0; /* no child reached it: a leaf */
        uint32_t p = t->nodes[i].parent;
        if (p != REVTREE_NONE && depth[i] + 1 < depth[p])
            depth[p] = depth[i] + 1;
    }
    int dropped = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        int keep = (uint64_t)depth[i] < limit;
        if (keep && t->nodes[i].parent != REVTREE_NONE && (uint64_t)depth[i] + 1 >= limit)
            t->nodes[i].parent = REVTREE_NONE;
        depth[i] = (uint32_t)keep;
        dropped |= !keep;
    }
    if (dropped)
        compact(t, depth);
    free(depth);
    return DV_OK;
}

int revtree_purge(revtree *t, const store_rev *revs, size_t n, size_t *purged)
{
    size_t count = 0;
    int rc = DV_OK;
    uint32_t *live = NULL; /* 0 unknown, 1 kept, 2 purged leaf */
    uint8_t *has_child = NULL;
    if (t->n == 0 || n == 0)
        goto out;
    rc = DV_ERR_NOMEM;
    live = calloc(t->n, sizeof *live);
    has_child = calloc(t->n, 1);
    if (!live || !has_child)
        goto out;
    rc = DV_OK;
    for (size_t r = 0; r < n; r++) {
        uint32_t i = revtree_find(t, &revs[r]);
        if (i != REVTREE_NONE && live[i] == 0 && revtree_is_leaf(t, i)) {
            live[i] = 2;
            count++;
        }
    }
    if (count == 0)
        goto out;
    /* A node stays when it is an unpurged leaf or an ancestor of one;
     * children come after their parent, so one backward pass decides. */
    for (uint32_t i = t->n; i-- > 0;) {
        uint32_t p = t->nodes[i].parent;
        if (live[i] == 0 && !has_child[i])
            live[i] = 1; /* a leaf not purged */
        else if (live[i] == 2 || !has_child[i])
            live[i] = 0;
        if (p != REVTREE_NONE) {
            has_child[p] = 1;
            if (live[i] == 1)
                live[p] = 1;
        }
    }
    compact(t, live);
out:
    free(live);
    free(has_child);
    if (purged)
        *purged = rc == DV_OK ? count : 0;
    return rc;
}
