/*
 * test_revtree_prop.c — seeded property tests for revision trees.
 *
 *   convergence: random "true histories" are cut into replicated paths
 *     (stemmed at random); merging them in two random orders gives the same
 *     nodes, edges, leaf fields and winner, and exactly the nodes and edges
 *     an independent set-union model predicts.
 *   random ops: edits, merges, stems and purges applied at random are each
 *     checked against naive O(n^2) models (leaf test by scanning, stem by
 *     walking k steps up from every leaf, purge by keeping ancestors of the
 *     remaining leaves), and after each the tree keeps its invariants and
 *     survives encode -> decode -> encode byte for byte.
 *
 * Reproduce a failure with DIVAN_SEED=<printed seed>; scale with
 * DIVAN_ITERATIONS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "store/revtree.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXH 64   /* nodes in a generated history */
#define MAXP 24   /* paths per convergence round */

static tu_rng g_rng;

static uint64_t rnd(uint64_t n) { return tu_rand_below(&g_rng, n); }

/* A random rev id: half the time 32 hex digits (as divan makes), else a
 * short id from the wider alphabet replicated revs may use. */
static void random_id(store_rev *r)
{
    static const char hex[] = "0123456789abcdef";
    static const char any[] = "0123456789abcdefABCDEFxyz_-.~!";
    if (rnd(2)) {
        r->len = 32;
        for (int i = 0; i < 32; i++)
            r->id[i] = hex[rnd(16)];
    } else {
        r->len = (uint8_t)(1 + rnd(3));
        for (int i = 0; i < r->len; i++)
            r->id[i] = any[rnd(sizeof any - 1)];
    }
}

/* ------------------------------------------------------------------ */
/* Naive models over a tree snapshot                                    */

static int naive_is_leaf(const revtree *t, uint32_t i)
{
    for (uint32_t k = 0; k < t->n; k++)
        if (t->nodes[k].parent == i)
            return 0;
    return 1;
}

static uint32_t naive_find(const revtree *t, const store_rev *r)
{
    for (uint32_t k = 0; k < t->n; k++)
        if (store_rev_equal(&t->nodes[k].rev, r))
            return k;
    return REVTREE_NONE;
}

static int naive_wins(const revtree_node *a, const revtree_node *b)
{
    if (a->deleted != b->deleted)
        return !a->deleted;
    return store_rev_cmp(&a->rev, &b->rev) > 0;
}

static uint32_t naive_winner(const revtree *t)
{
    uint32_t w = REVTREE_NONE;
    for (uint32_t k = 0; k < t->n; k++)
        if (naive_is_leaf(t, k) && (w == REVTREE_NONE || naive_wins(&t->nodes[k], &t->nodes[w])))
            w = k;
    return w;
}

static int fields_equal(const revtree_node *x, const revtree_node *y)
{
    return store_rev_equal(&x->rev, &y->rev) && x->deleted == y->deleted && x->has_body == y->has_body &&
           x->body.off == y->body.off && x->body.size == y->body.size && x->seq == y->seq && x->size == y->size;
}

/* Invariants, winner and leaves against the models, and the encoding round
 * trip (decode must accept what encode wrote and give it back exactly). */
static void check_tree(const revtree *t)
{
    for (uint32_t i = 0; i < t->n; i++) {
        const revtree_node *nd = &t->nodes[i];
        assert_true(nd->rev.pos >= 1 && store_rev_id_valid(nd->rev.id, nd->rev.len));
        if (i)
            assert_true(store_rev_cmp(&t->nodes[i - 1].rev, &nd->rev) < 0);
        if (nd->parent != REVTREE_NONE) {
            assert_true(nd->parent < i);
            assert_int_equal(t->nodes[nd->parent].rev.pos + 1, nd->rev.pos);
        }
        assert_int_equal(revtree_is_leaf(t, i), naive_is_leaf(t, i));
        assert_int_equal(revtree_find(t, &nd->rev), i);
    }
    assert_int_equal(revtree_winner(t), naive_winner(t));
    uint32_t idx[4 * MAXH], n;
    assert_true(t->n <= 4 * MAXH);
    revtree_leaves(t, idx, &n);
    uint32_t nleaves = 0;
    for (uint32_t i = 0; i < t->n; i++)
        nleaves += (uint32_t)naive_is_leaf(t, i);
    assert_int_equal(n, nleaves);
    for (uint32_t i = 0; i < n; i++) {
        assert_true(naive_is_leaf(t, idx[i]));
        if (i)
            assert_true(naive_wins(&t->nodes[idx[i - 1]], &t->nodes[idx[i]]));
    }
    if (n)
        assert_int_equal(idx[0], revtree_winner(t));

    buf_t a = BUF_INIT, b = BUF_INIT;
    revtree d;
    revtree_init(&d);
    assert_int_equal(revtree_encode(t, &a), DV_OK);
    assert_int_equal(revtree_decode(&d, a.data, a.len), DV_OK);
    assert_true(revtree_equal(&d, t));
    assert_int_equal(revtree_encode(&d, &b), DV_OK);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    revtree_free(&d);
    buf_free(&a);
    buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* Convergence of replicated merges                                     */

typedef struct history {
    store_rev rev[MAXH];
    int parent[MAXH];
    uint8_t deleted[MAXH];
    int n;
} history;

static void gen_history(history *h)
{
    h->n = 1 + (int)rnd(MAXH);
    for (int i = 0; i < h->n; i++) {
        for (;;) {
            /* Mostly extend a recent node (deep histories), sometimes branch
             * from anywhere, rarely start a second root. */
            if (i == 0 || rnd(20) == 0)
                h->parent[i] = -1;
            else if (rnd(3))
                h->parent[i] = i - 1 - (int)rnd(i < 3 ? (uint64_t)i : 3);
            else
                h->parent[i] = (int)rnd((uint64_t)i);
            h->rev[i].pos = h->parent[i] < 0 ? 1 : h->rev[h->parent[i]].pos + 1;
            random_id(&h->rev[i]);
            int dup = 0;
            for (int k = 0; k < i; k++)
                dup |= store_rev_equal(&h->rev[k], &h->rev[i]);
            if (!dup)
                break;
        }
        h->deleted[i] = rnd(4) == 0;
    }
}

static revtree_node proto_of(const history *h, int x)
{
    revtree_node p = {.rev = h->rev[x],
                      .deleted = h->deleted[x],
                      .has_body = 1,
                      .body = {(uint64_t)x * 64 + 64, (uint32_t)x + 1},
                      .seq = (uint64_t)x + 1,
                      .size = (uint64_t)x * 3};
    return p;
}

/* Path from x up to its root, cut to at most len revs (a stemmed path). */
static size_t path_of(const history *h, int x, size_t len, int *out)
{
    size_t k = 0;
    for (int i = x; i >= 0 && k < len; i = h->parent[i])
        out[k++] = i;
    return k;
}

static void merge_paths(revtree *t, const history *h, int (*paths)[MAXH], const size_t *plen, const int *order,
                        int np)
{
    for (int q = 0; q < np; q++) {
        const int *p = paths[order[q]];
        store_rev revs[MAXH];
        for (size_t i = 0; i < plen[order[q]]; i++)
            revs[i] = h->rev[p[i]];
        revtree_node proto = proto_of(h, p[0]);
        int added = -1;
        uint32_t before = revtree_find(t, &revs[0]);
        uint32_t idx;
        assert_int_equal(revtree_merge_path(t, revs, plen[order[q]], &proto, &added, &idx), DV_OK);
        assert_int_equal(added, before == REVTREE_NONE);
        assert_true(store_rev_equal(&t->nodes[idx].rev, &revs[0]));
    }
}

static void shuffle(int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rnd((uint64_t)i + 1), x = a[i];
        a[i] = a[j];
        a[j] = x;
    }
}

static void test_merge_converges(void **state)
{
    (void)state;
    long iters = tu_iterations(4000);
    for (long it = 0; it < iters; it++) {
        history h;
        gen_history(&h);
        int np = 1 + (int)rnd(MAXP);
        static int paths[MAXP][MAXH];
        size_t plen[MAXP];
        int order_a[MAXP], order_b[MAXP];
        for (int q = 0; q < np; q++) {
            int x = (int)rnd((uint64_t)h.n);
            size_t len = rnd(3) ? MAXH : 1 + rnd(6);
            plen[q] = path_of(&h, x, len, paths[q]);
            order_a[q] = order_b[q] = q;
        }
        shuffle(order_a, np);
        shuffle(order_b, np);
        revtree a, b;
        revtree_init(&a);
        revtree_init(&b);
        merge_paths(&a, &h, paths, plen, order_a, np);
        merge_paths(&b, &h, paths, plen, order_b, np);

        /* Model: the union of the paths' revs and of their edges. */
        int in[MAXH] = {0}, edge[MAXH] = {0};
        uint32_t expect_n = 0;
        for (int q = 0; q < np; q++)
            for (size_t i = 0; i < plen[q]; i++) {
                in[paths[q][i]] = 1;
                if (i + 1 < plen[q])
                    edge[paths[q][i]] = 1;
            }
        for (int x = 0; x < h.n; x++)
            expect_n += (uint32_t)in[x];
        assert_int_equal(a.n, expect_n);
        for (int x = 0; x < h.n; x++) {
            if (!in[x])
                continue;
            uint32_t i = revtree_find(&a, &h.rev[x]);
            assert_int_not_equal(i, REVTREE_NONE);
            uint32_t p = a.nodes[i].parent;
            if (edge[x])
                assert_true(p != REVTREE_NONE && store_rev_equal(&a.nodes[p].rev, &h.rev[h.parent[x]]));
            else
                assert_int_equal(p, REVTREE_NONE);
            if (naive_is_leaf(&a, i)) {
                revtree_node pr = proto_of(&h, x);
                assert_true(fields_equal(&a.nodes[i], &pr));
            }
        }
        /* Both orders: same nodes in the same (canonical) order, same
         * edges, same leaf fields, same winner. */
        assert_int_equal(a.n, b.n);
        for (uint32_t i = 0; i < a.n; i++) {
            assert_true(store_rev_equal(&a.nodes[i].rev, &b.nodes[i].rev));
            assert_int_equal(a.nodes[i].parent, b.nodes[i].parent);
            if (naive_is_leaf(&a, i))
                assert_true(fields_equal(&a.nodes[i], &b.nodes[i]));
        }
        assert_int_equal(revtree_winner(&a), revtree_winner(&b));
        check_tree(&a);
        check_tree(&b);
        revtree_free(&a);
        revtree_free(&b);
    }
}

/* ------------------------------------------------------------------ */
/* Random operation sequences against naive models                      */

static uint64_t g_seq;

static revtree_node random_proto(void)
{
    g_seq++;
    revtree_node p = {.deleted = rnd(4) == 0, .has_body = 1, .body = {g_seq * 8, (uint32_t)g_seq},
                      .seq = g_seq, .size = g_seq % 1000};
    return p;
}

static void op_edit(revtree *t)
{
    revtree old;
    revtree_init(&old);
    assert_int_equal(revtree_copy(&old, t), DV_OK);
    store_rev parent, nid;
    const store_rev *pp = NULL;
    int choice = (int)rnd(4);
    if (choice < 2 && t->n) {
        parent = t->nodes[rnd(t->n)].rev; /* a leaf or a stale inner rev */
        pp = &parent;
    } else if (choice == 2) {
        parent.pos = 1 + rnd(5);
        random_id(&parent); /* usually unknown */
        pp = &parent;
    }
    random_id(&nid);
    revtree_node proto = random_proto();
    uint32_t idx = REVTREE_NONE;
    int rc = revtree_add_edit(t, pp, nid.id, nid.len, &proto, &idx);

    uint32_t p = REVTREE_NONE;
    int ok;
    if (pp) {
        p = naive_find(&old, pp);
        ok = p != REVTREE_NONE && naive_is_leaf(&old, p);
    } else {
        uint32_t w = naive_winner(&old);
        ok = w == REVTREE_NONE || old.nodes[w].deleted;
        p = w;
    }
    store_rev expect = nid;
    expect.pos = p == REVTREE_NONE ? 1 : old.nodes[p].rev.pos + 1;
    if (ok && naive_find(&old, &expect) != REVTREE_NONE)
        ok = 0; /* the new rev already exists somewhere */
    if (!ok) {
        assert_int_equal(rc, DV_ERR_CONFLICT);
        assert_int_equal(t->n, old.n);
        for (uint32_t i = 0; i < t->n; i++)
            assert_true(fields_equal(&t->nodes[i], &old.nodes[i]) && t->nodes[i].parent == old.nodes[i].parent);
    } else {
        assert_int_equal(rc, DV_OK);
        assert_int_equal(t->n, old.n + 1);
        assert_true(store_rev_equal(&t->nodes[idx].rev, &expect));
        assert_int_equal(t->nodes[idx].seq, proto.seq);
        if (p == REVTREE_NONE)
            assert_int_equal(t->nodes[idx].parent, REVTREE_NONE);
        else
            assert_true(store_rev_equal(&t->nodes[t->nodes[idx].parent].rev, &old.nodes[p].rev));
        /* Every old node is still there with its parent. */
        for (uint32_t i = 0; i < old.n; i++) {
            uint32_t k = revtree_find(t, &old.nodes[i].rev);
            assert_int_not_equal(k, REVTREE_NONE);
            assert_true(fields_equal(&t->nodes[k], &old.nodes[i]));
            uint32_t op = old.nodes[i].parent, np = t->nodes[k].parent;
            assert_true(op == REVTREE_NONE ? np == REVTREE_NONE
                                           : store_rev_equal(&t->nodes[np].rev, &old.nodes[op].rev));
        }
    }
    revtree_free(&old);
}

/* A path made of a few new revs on top of a (stemmed) path of the tree. */
static void op_merge(revtree *t)
{
    store_rev path[40];
    size_t n = 0, fresh = rnd(4);
    uint32_t anc[40];
    size_t na = 0;
    if (t->n && rnd(5)) {
        na = revtree_path(t, (uint32_t)rnd(t->n), anc);
        if (na > 30)
            na = 30;
        na = 1 + rnd(na);
    }
    uint64_t top = na ? t->nodes[anc[0]].rev.pos + fresh : 1 + rnd(8) + fresh;
    if (!na && !fresh)
        fresh = 1;
    for (size_t i = 0; i < fresh; i++) {
        path[n].pos = top - i;
        random_id(&path[n]);
        n++;
    }
    for (size_t i = 0; i < na; i++)
        path[n++] = t->nodes[anc[i]].rev;
    revtree old;
    revtree_init(&old);
    assert_int_equal(revtree_copy(&old, t), DV_OK);
    revtree_node proto = random_proto();
    int added;
    uint32_t idx;
    int dup = 0;
    for (size_t i = 0; i < fresh; i++)
        dup |= naive_find(&old, &path[i]) != REVTREE_NONE;
    assert_int_equal(revtree_merge_path(t, path, n, &proto, &added, &idx), DV_OK);
    uint32_t was = naive_find(&old, &path[0]);
    assert_int_equal(added, was == REVTREE_NONE);
    assert_true(store_rev_equal(&t->nodes[idx].rev, &path[0]));
    if (added)
        assert_true(t->nodes[idx].seq == proto.seq && t->nodes[idx].deleted == proto.deleted);
    else
        assert_true(fields_equal(&t->nodes[idx], &old.nodes[was]));
    if (!dup) {
        /* A consistent path: every edge it names is now in the tree. */
        for (size_t i = 0; i + 1 < n; i++) {
            uint32_t k = revtree_find(t, &path[i]);
            assert_int_not_equal(k, REVTREE_NONE);
            assert_true(store_rev_equal(&t->nodes[t->nodes[k].parent].rev, &path[i + 1]));
        }
        uint32_t expect_n = old.n;
        for (size_t i = 0; i < n; i++)
            expect_n += naive_find(&old, &path[i]) == REVTREE_NONE;
        assert_int_equal(t->n, expect_n);
    }
    /* Old nodes survive unchanged (they may only gain a parent). */
    for (uint32_t i = 0; i < old.n; i++) {
        uint32_t k = revtree_find(t, &old.nodes[i].rev);
        assert_int_not_equal(k, REVTREE_NONE);
        assert_true(fields_equal(&t->nodes[k], &old.nodes[i]));
        uint32_t op = old.nodes[i].parent;
        if (op != REVTREE_NONE)
            assert_true(store_rev_equal(&t->nodes[t->nodes[k].parent].rev, &old.nodes[op].rev));
    }
    revtree_free(&old);
}

/* Model: CouchDB's definition, literally: cut every leaf's path to its
 * newest k revs; the result holds the union of those revs and edges. */
static void op_stem(revtree *t)
{
    uint64_t k = 1 + rnd(6);
    revtree old;
    revtree_init(&old);
    assert_int_equal(revtree_copy(&old, t), DV_OK);
    uint8_t keep[4 * MAXH] = {0}, edge[4 * MAXH] = {0};
    uint32_t expect_n = 0;
    for (uint32_t i = 0; i < old.n; i++) {
        if (!naive_is_leaf(&old, i))
            continue;
        uint32_t x = i;
        for (uint64_t s = 0; s < k && x != REVTREE_NONE; s++, x = old.nodes[x].parent) {
            keep[x] = 1;
            if (s + 1 < k && old.nodes[x].parent != REVTREE_NONE)
                edge[x] = 1;
        }
    }
    assert_int_equal(revtree_stem(t, k), DV_OK);
    for (uint32_t i = 0; i < old.n; i++) {
        expect_n += keep[i];
        uint32_t at = revtree_find(t, &old.nodes[i].rev);
        assert_int_equal(at != REVTREE_NONE, keep[i]);
        if (!keep[i])
            continue;
        assert_true(fields_equal(&t->nodes[at], &old.nodes[i]));
        uint32_t op = old.nodes[i].parent;
        if (!edge[i])
            assert_int_equal(t->nodes[at].parent, REVTREE_NONE);
        else
            assert_true(store_rev_equal(&t->nodes[t->nodes[at].parent].rev, &old.nodes[op].rev));
    }
    assert_int_equal(t->n, expect_n);
    revtree_free(&old);
}

static void op_purge(revtree *t)
{
    revtree old;
    revtree_init(&old);
    assert_int_equal(revtree_copy(&old, t), DV_OK);
    store_rev revs[8];
    size_t n = rnd(4) + (t->n == 0);
    uint8_t gone[4 * MAXH] = {0};
    size_t expect_purged = 0;
    for (size_t r = 0; r < n; r++) {
        if (old.n && rnd(5)) {
            revs[r] = old.nodes[rnd(old.n)].rev;
        } else {
            revs[r].pos = 1 + rnd(5);
            random_id(&revs[r]);
        }
        uint32_t i = naive_find(&old, &revs[r]);
        if (i != REVTREE_NONE && naive_is_leaf(&old, i) && !gone[i]) {
            gone[i] = 1;
            expect_purged++;
        }
    }
    /* Kept: ancestors (inclusive) of every leaf not purged. */
    uint8_t keep[4 * MAXH] = {0};
    for (uint32_t i = 0; i < old.n; i++)
        if (naive_is_leaf(&old, i) && !gone[i])
            for (uint32_t x = i; x != REVTREE_NONE; x = old.nodes[x].parent)
                keep[x] = 1;
    size_t purged;
    assert_int_equal(revtree_purge(t, revs, n, &purged), DV_OK);
    assert_int_equal(purged, expect_purged);
    uint32_t expect_n = 0;
    for (uint32_t i = 0; i < old.n; i++) {
        expect_n += keep[i];
        uint32_t at = revtree_find(t, &old.nodes[i].rev);
        assert_int_equal(at != REVTREE_NONE, keep[i]);
        if (keep[i])
            assert_true(fields_equal(&t->nodes[at], &old.nodes[i]));
    }
    assert_int_equal(t->n, expect_n);
    revtree_free(&old);
}

static void test_random_ops(void **state)
{
    (void)state;
    long iters = tu_iterations(800);
    for (long it = 0; it < iters; it++) {
        revtree t;
        revtree_init(&t);
        int steps = 1 + (int)rnd(40);
        for (int s = 0; s < steps; s++) {
            int op = (int)rnd(10);
            if (op < 4)
                op_edit(&t);
            else if (op < 8)
                op_merge(&t);
            else if (op < 9)
                op_stem(&t);
            else
                op_purge(&t);
            if (t.n > 2 * MAXH)
                op_stem(&t);
            check_tree(&t);
        }
        revtree_free(&t);
    }
}

int main(void)
{
    g_rng.s = tu_seed("test_revtree_prop");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_converges),
        cmocka_unit_test(test_random_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
