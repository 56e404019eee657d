/*
 * test_revtree.c — CouchDB revision-tree rules, one test per rule: edits and
 * their conflicts, replicated merges, winner and conflict lists, stemming,
 * purge, rev parsing, rev ids, and the encoding's corruption checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "store/revtree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static store_rev R(const char *s)
{
    store_rev r;
    int rc = store_rev_parse(s, strlen(s), &r);
    if (rc != DV_OK)
        fail_msg("bad test rev %s", s);
    return r;
}

/* "pos-id" of node idx, in a static buffer (tests only). */
static const char *rev_str(const revtree *t, uint32_t idx)
{
    static char s[96];
    if (idx == REVTREE_NONE)
        return "none";
    const store_rev *r = &t->nodes[idx].rev;
    snprintf(s, sizeof s, "%llu-%.*s", (unsigned long long)r->pos, (int)r->len, r->id);
    return s;
}

static uint32_t find(const revtree *t, const char *s)
{
    store_rev r = R(s);
    return revtree_find(t, &r);
}

/* Edit with an optional parent rev string; new id is a literal. */
static int edit(revtree *t, const char *parent, const char *id, int deleted)
{
    revtree_node proto = {.deleted = (uint8_t)deleted, .has_body = 1, .body = {100, 10}, .seq = 7, .size = 10};
    store_rev p;
    if (parent)
        p = R(parent);
    return revtree_add_edit(t, parent ? &p : NULL, id, (uint8_t)strlen(id), &proto, NULL);
}

/* Merges a replicated path given newest first as a space-separated list. */
static int merge(revtree *t, const char *revs, int deleted, int *added)
{
    store_rev path[16];
    size_t n = 0;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", revs);
    for (char *tok = strtok(tmp, " "); tok; tok = strtok(NULL, " "))
        path[n++] = R(tok);
    revtree_node proto = {.deleted = (uint8_t)deleted, .has_body = 1, .body = {200, 20}, .seq = 9, .size = 20};
    return revtree_merge_path(t, path, n, &proto, added, NULL);
}

/* Leaves in winner order as "a b c". */
static const char *leaves_str(const revtree *t)
{
    static char s[1024];
    uint32_t idx[64], n;
    assert_true(t->n <= 64);
    revtree_leaves(t, idx, &n);
    s[0] = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, rev_str(t, idx[i]));
    }
    return s;
}

/* All nodes as "rev<parent" in tree order, to compare whole shapes. */
static const char *shape(const revtree *t)
{
    static char s[2048];
    s[0] = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        char one[200];
        char self[96];
        snprintf(self, sizeof self, "%s", rev_str(t, i));
        snprintf(one, sizeof one, "%s%s<%s", i ? " " : "", self, rev_str(t, t->nodes[i].parent));
        strcat(s, one);
    }
    return s;
}

static void test_create(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    assert_int_equal(revtree_winner(&t), REVTREE_NONE);
    assert_int_equal(revtree_implicit_parent(&t), REVTREE_NONE);
    uint32_t idx = 99;
    revtree_node proto = {.has_body = 1, .body = {64, 5}, .seq = 3, .size = 5};
    assert_int_equal(revtree_add_edit(&t, NULL, "abc", 3, &proto, &idx), DV_OK);
    assert_int_equal(t.n, 1);
    assert_string_equal(rev_str(&t, idx), "1-abc");
    assert_int_equal(t.nodes[idx].parent, REVTREE_NONE);
    assert_int_equal(t.nodes[idx].seq, 3);
    assert_int_equal(t.nodes[idx].body.off, 64);
    assert_int_equal(revtree_winner(&t), idx);
    assert_true(revtree_is_leaf(&t, idx));
    /* Next edit names the leaf. */
    assert_int_equal(edit(&t, "1-abc", "def", 0), DV_OK);
    assert_string_equal(shape(&t), "1-abc<none 2-def<1-abc");
    assert_false(revtree_is_leaf(&t, find(&t, "1-abc")));
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "2-def");
    /* Invalid new ids are refused. */
    assert_int_equal(edit(&t, "2-def", "a\"b", 0), DV_ERR_INVALID);
    assert_int_equal(revtree_add_edit(&t, NULL, "x", 0, NULL, NULL), DV_ERR_INVALID);
    revtree_free(&t);
}

static void test_edit_conflicts(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    assert_int_equal(edit(&t, NULL, "a", 0), DV_OK);
    assert_int_equal(edit(&t, "1-a", "b", 0), DV_OK);
    const char *before = "1-a<none 2-b<1-a";
    assert_string_equal(shape(&t), before);
    /* Stale parent (an inner node). */
    assert_int_equal(edit(&t, "1-a", "c", 0), DV_ERR_CONFLICT);
    /* Unknown parent. */
    assert_int_equal(edit(&t, "2-zz", "c", 0), DV_ERR_CONFLICT);
    assert_int_equal(edit(&t, "7-b", "c", 0), DV_ERR_CONFLICT);
    /* No parent while a live leaf exists. */
    assert_int_equal(edit(&t, NULL, "c", 0), DV_ERR_CONFLICT);
    assert_string_equal(shape(&t), before);
    /* A conflict elsewhere makes a second live leaf; both can be edited. */
    assert_int_equal(merge(&t, "2-c 1-a", 0, NULL), DV_OK);
    assert_int_equal(edit(&t, "2-b", "d", 0), DV_OK);
    assert_int_equal(edit(&t, "2-c", "e", 1), DV_OK);
    assert_string_equal(leaves_str(&t), "3-d 3-e");
    revtree_free(&t);
}

static void test_recreate_after_delete(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    assert_int_equal(edit(&t, NULL, "a", 0), DV_OK);
    assert_int_equal(edit(&t, "1-a", "b", 1), DV_OK); /* delete */
    assert_string_equal(rev_str(&t, revtree_implicit_parent(&t)), "2-b");
    uint32_t idx;
    revtree_node proto = {.has_body = 1};
    assert_int_equal(revtree_add_edit(&t, NULL, "c", 1, &proto, &idx), DV_OK);
    assert_string_equal(rev_str(&t, idx), "3-c");
    assert_string_equal(rev_str(&t, t.nodes[idx].parent), "2-b");
    assert_int_equal(revtree_implicit_parent(&t), REVTREE_NONE);
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "3-c");
    /* Two deleted leaves: the implicit parent is the winning one. */
    assert_int_equal(edit(&t, "3-c", "d", 1), DV_OK);
    assert_int_equal(merge(&t, "5-x 4-y 3-z", 1, NULL), DV_OK);
    assert_string_equal(rev_str(&t, revtree_implicit_parent(&t)), "5-x");
    assert_int_equal(edit(&t, NULL, "n", 0), DV_OK);
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "6-n");
    assert_string_equal(rev_str(&t, t.nodes[revtree_winner(&t)].parent), "5-x");
    /* Editing a deleted leaf by rev is allowed too. */
    assert_int_equal(edit(&t, "4-d", "u", 0), DV_OK);
    assert_string_equal(leaves_str(&t), "6-n 5-u");
    revtree_free(&t);
}

static void test_merge_paths(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    int added = -1;
    assert_int_equal(merge(&t, "3-c 2-b 1-a", 0, &added), DV_OK);
    assert_int_equal(added, 1);
    assert_string_equal(shape(&t), "1-a<none 2-b<1-a 3-c<2-b");
    uint32_t leaf = find(&t, "3-c");
    assert_int_equal(t.nodes[leaf].seq, 9);
    assert_int_equal(t.nodes[find(&t, "2-b")].has_body, 0);
    /* Same path again, and a path whose leaf is an inner node: no change. */
    revtree copy;
    revtree_init(&copy);
    assert_int_equal(revtree_copy(&copy, &t), DV_OK);
    assert_int_equal(merge(&t, "3-c 2-b 1-a", 1, &added), DV_OK);
    assert_int_equal(added, 0);
    assert_int_equal(merge(&t, "2-b 1-a", 1, &added), DV_OK);
    assert_int_equal(added, 0);
    assert_int_equal(merge(&t, "3-c", 1, &added), DV_OK);
    assert_int_equal(added, 0);
    assert_true(revtree_equal(&t, &copy));
    /* A conflicting branch sharing 1-a. */
    assert_int_equal(merge(&t, "3-y 2-x 1-a", 0, &added), DV_OK);
    assert_int_equal(added, 1);
    assert_string_equal(shape(&t), "1-a<none 2-b<1-a 2-x<1-a 3-c<2-b 3-y<2-x");
    assert_string_equal(leaves_str(&t), "3-y 3-c");
    /* A stemmed path (oldest rev 2-b missing from it) joins where it overlaps. */
    assert_int_equal(merge(&t, "5-e 4-d 3-c", 0, &added), DV_OK);
    assert_int_equal(added, 1);
    assert_string_equal(rev_str(&t, t.nodes[find(&t, "4-d")].parent), "3-c");
    assert_string_equal(leaves_str(&t), "5-e 3-y");
    /* A path with no known rev becomes a separate root. */
    assert_int_equal(merge(&t, "9-q 8-p", 0, &added), DV_OK);
    assert_int_equal(t.nodes[find(&t, "8-p")].parent, REVTREE_NONE);
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "9-q");
    /* Non-consecutive positions are refused and change nothing. */
    uint32_t n0 = t.n;
    assert_int_equal(merge(&t, "7-a 5-b", 0, &added), DV_ERR_INVALID);
    assert_int_equal(revtree_merge_path(&t, NULL, 0, NULL, &added, NULL), DV_ERR_INVALID);
    store_rev bad[2] = {R("2-b"), R("1-a")};
    bad[1].pos = 0;
    bad[0].pos = 1;
    assert_int_equal(revtree_merge_path(&t, bad, 2, NULL, &added, NULL), DV_ERR_INVALID);
    bad[0] = R("2-b");
    bad[0].id[0] = ' ';
    assert_int_equal(revtree_merge_path(&t, bad, 1, NULL, &added, NULL), DV_ERR_INVALID);
    assert_int_equal(t.n, n0);
    /* A path naming another parent for a known rev: the tree's is kept,
     * the new leaf still joins where the path and tree agree. */
    assert_int_equal(merge(&t, "4-n 3-c 2-zz 1-a", 0, &added), DV_OK);
    assert_int_equal(added, 1);
    assert_string_equal(rev_str(&t, t.nodes[find(&t, "3-c")].parent), "2-b");
    assert_int_equal(find(&t, "2-zz"), REVTREE_NONE);
    revtree_free(&copy);
    revtree_free(&t);
}

static void test_merge_grafts_ancestors(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    int added;
    /* A stemmed doc: only 3-c <- 4-d known. */
    assert_int_equal(merge(&t, "4-d 3-c", 0, &added), DV_OK);
    /* Another replica knows the older history: it is grafted under 3-c
     * (the leaf exists, so nothing is "added"). */
    assert_int_equal(merge(&t, "4-d 3-c 2-b 1-a", 0, &added), DV_OK);
    assert_int_equal(added, 0);
    assert_string_equal(shape(&t), "1-a<none 2-b<1-a 3-c<2-b 4-d<3-c");
    /* Two disconnected pieces joined by a path spanning both. */
    revtree_free(&t);
    assert_int_equal(merge(&t, "2-b 1-a", 0, &added), DV_OK);
    assert_int_equal(merge(&t, "5-e 4-d", 0, &added), DV_OK);
    assert_int_equal(merge(&t, "6-f 5-e 4-d 3-c 2-b", 0, &added), DV_OK);
    assert_int_equal(added, 1);
    assert_string_equal(shape(&t), "1-a<none 2-b<1-a 3-c<2-b 4-d<3-c 5-e<4-d 6-f<5-e");
    assert_string_equal(leaves_str(&t), "6-f");
    revtree_free(&t);
}

static void test_winner_tiebreaks(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    /* Live beats deleted even when the deleted leaf is longer. */
    assert_int_equal(merge(&t, "2-x 1-a", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "3-y 2-w 1-a", 1, NULL), DV_OK);
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "2-x");
    /* Higher pos beats higher id. */
    assert_int_equal(merge(&t, "3-a 2-x", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "2-z 1-a", 0, NULL), DV_OK);
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "3-a");
    /* Same pos: higher id (byte order), a longer id beats its prefix. */
    assert_int_equal(merge(&t, "3-b 2-z", 0, NULL), DV_OK);
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "3-b");
    assert_int_equal(merge(&t, "3-bA 2-z", 0, NULL), DV_OK);
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "3-bA");
    assert_int_equal(merge(&t, "3-Z 2-z", 0, NULL), DV_OK); /* 'Z' < 'a' in bytes */
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "3-bA");
    store_rev a = R("3-b"), b = R("3-bA"), c = R("4-a");
    assert_true(store_rev_cmp(&b, &a) > 0);
    assert_true(store_rev_cmp(&a, &b) < 0);
    assert_true(store_rev_cmp(&c, &b) > 0);
    assert_int_equal(store_rev_cmp(&a, &a), 0);
    revtree_free(&t);
    /* All leaves deleted: the highest (pos, id) deleted leaf wins. */
    assert_int_equal(merge(&t, "2-b 1-a", 1, NULL), DV_OK);
    assert_int_equal(merge(&t, "2-c 1-a", 1, NULL), DV_OK);
    assert_int_equal(merge(&t, "1-z", 1, NULL), DV_OK);
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "2-c");
    revtree_free(&t);
}

static void test_conflict_lists(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    assert_int_equal(merge(&t, "3-a 2-a 1-a", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "2-z 1-a", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "4-q 3-q 2-q 1-a", 1, NULL), DV_OK);
    assert_int_equal(merge(&t, "2-m 1-a", 1, NULL), DV_OK);
    assert_int_equal(merge(&t, "2-b 1-a", 0, NULL), DV_OK);
    /* winner, then conflicts (live), then deleted conflicts, each by rev. */
    assert_string_equal(leaves_str(&t), "3-a 2-z 2-b 4-q 2-m");
    uint32_t idx[32], n;
    revtree_leaves(&t, idx, &n);
    assert_int_equal(idx[0], revtree_winner(&t));
    assert_false(t.nodes[idx[2]].deleted);
    assert_true(t.nodes[idx[3]].deleted);
    /* leaves under a node, winner order */
    static const struct {
        const char *node, *want;
    } under[] = {{"1-a", "3-a 2-z 2-b 4-q 2-m"}, {"2-a", "3-a"}, {"3-a", "3-a"}, {"2-q", "4-q"}, {"2-m", "2-m"}};
    for (size_t i = 0; i < sizeof under / sizeof under[0]; i++) {
        char got[128] = "";
        n = revtree_leaves_under(&t, find(&t, under[i].node), idx);
        for (uint32_t k = 0; k < n; k++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", k ? " " : "", rev_str(&t, idx[k]));
        assert_string_equal(got, under[i].want);
    }
    assert_int_equal(revtree_leaves_under(&t, REVTREE_NONE, idx), 0);
    revtree_free(&t);
}

static void test_stem(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    assert_int_equal(merge(&t, "5-e 4-d 3-c 2-b 1-a", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "4-x 3-c", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "2-y 1-a", 0, NULL), DV_OK);
    assert_int_equal(revtree_stem(&t, 3), DV_OK);
    /* 5-e keeps 4-d 3-c; 4-x keeps 3-c 2-b; 2-y keeps 1-a.  No leaf's window
     * holds both 2-b and 1-a, so that edge goes and 2-b becomes a root. */
    assert_string_equal(shape(&t), "1-a<none 2-b<none 2-y<1-a 3-c<2-b 4-d<3-c 4-x<3-c 5-e<4-d");
    assert_int_equal(revtree_stem(&t, 2), DV_OK);
    assert_string_equal(shape(&t), "1-a<none 2-y<1-a 3-c<none 4-d<none 4-x<3-c 5-e<4-d");
    assert_int_equal(revtree_stem(&t, 1), DV_OK);
    assert_string_equal(shape(&t), "2-y<none 4-x<none 5-e<none");
    assert_int_equal(t.nodes[find(&t, "5-e")].seq, 9); /* leaves keep their fields */
    assert_string_equal(rev_str(&t, revtree_winner(&t)), "5-e");
    assert_int_equal(revtree_stem(&t, 0), DV_ERR_INVALID);
    revtree_free(&t);
    /* Stem to 3 on a linear history. */
    assert_int_equal(merge(&t, "5-e 4-d 3-c 2-b 1-a", 0, NULL), DV_OK);
    assert_int_equal(revtree_stem(&t, 3), DV_OK);
    assert_string_equal(shape(&t), "3-c<none 4-d<3-c 5-e<4-d");
    /* Editing after stemming continues from the kept leaf. */
    assert_int_equal(edit(&t, "5-e", "f", 0), DV_OK);
    assert_int_equal(revtree_stem(&t, 3), DV_OK);
    assert_string_equal(shape(&t), "4-d<none 5-e<4-d 6-f<5-e");
    revtree_free(&t);
}

static void test_purge(void **state)
{
    (void)state;
    revtree t;
    revtree_init(&t);
    size_t purged = 99;
    assert_int_equal(merge(&t, "2-b 1-a", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "2-c 1-a", 0, NULL), DV_OK);
    store_rev r[3] = {R("2-c"), R("2-c"), R("9-nope")};
    assert_int_equal(revtree_purge(&t, r, 3, &purged), DV_OK);
    assert_int_equal(purged, 1);
    assert_string_equal(shape(&t), "1-a<none 2-b<1-a");
    /* Inner revs are not purgeable. */
    r[0] = R("1-a");
    assert_int_equal(revtree_purge(&t, r, 1, &purged), DV_OK);
    assert_int_equal(purged, 0);
    assert_int_equal(t.n, 2);
    revtree_free(&t);

    /* Ancestors shared with a remaining leaf stay; those only the purged
     * leaf needed go. */
    assert_int_equal(merge(&t, "3-c 2-b 1-a", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "3-d 2-b 1-a", 0, NULL), DV_OK);
    assert_int_equal(merge(&t, "4-z 3-y 2-x 1-a", 0, NULL), DV_OK);
    r[0] = R("4-z");
    assert_int_equal(revtree_purge(&t, r, 1, &purged), DV_OK);
    assert_int_equal(purged, 1);
    assert_string_equal(shape(&t), "1-a<none 2-b<1-a 3-c<2-b 3-d<2-b");
    r[0] = R("3-d");
    assert_int_equal(revtree_purge(&t, r, 1, &purged), DV_OK);
    assert_string_equal(shape(&t), "1-a<none 2-b<1-a 3-c<2-b");
    r[0] = R("3-c");
    assert_int_equal(revtree_purge(&t, r, 1, &purged), DV_OK);
    assert_int_equal(purged, 1);
    assert_int_equal(t.n, 0);
    assert_int_equal(revtree_winner(&t), REVTREE_NONE);
    revtree_free(&t);
}

static void test_rev_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int ok;
        unsigned long long pos;
        const char *id;
    } cases[] = {
        {"1-abc", 1, 1, "abc"},
        {"12-967a00dff5e02add41819138abb3284d", 1, 12, "967a00dff5e02add41819138abb3284d"},
        {"18446744073709551615-x", 1, 18446744073709551615ULL, "x"},
        {"3-a-b", 1, 3, "a-b"},
        {"3-A_z.~", 1, 3, "A_z.~"},
        {"007-x", 1, 7, "x"},
        {"18446744073709551616-x", 0, 0, NULL},
        {"0-abc", 0, 0, NULL},
        {"-abc", 0, 0, NULL},
        {"+1-abc", 0, 0, NULL},
        {"1abc", 0, 0, NULL},
        {"1-", 0, 0, NULL},
        {"", 0, 0, NULL},
        {"1", 0, 0, NULL},
        {"a-1", 0, 0, NULL},
        {" 1-a", 0, 0, NULL},
        {"1-a b", 0, 0, NULL},
        {"1-a\"b", 0, 0, NULL},
        {"1-a\\b", 0, 0, NULL},
        {"1-a\tb", 0, 0, NULL},
        {"1-\xc3\xa9", 0, 0, NULL},
        {"1-0123456789012345678901234567890123456789012345678901234567890123", 1, 1,
         "0123456789012345678901234567890123456789012345678901234567890123"},
        {"1-01234567890123456789012345678901234567890123456789012345678901234", 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        store_rev r;
        int rc = store_rev_parse(cases[i].s, strlen(cases[i].s), &r);
        if (!cases[i].ok) {
            if (rc != DV_ERR_INVALID)
                fail_msg("accepted %s", cases[i].s);
            continue;
        }
        if (rc != DV_OK)
            fail_msg("rejected %s", cases[i].s);
        assert_int_equal(r.pos, cases[i].pos);
        assert_int_equal(r.len, strlen(cases[i].id));
        assert_memory_equal(r.id, cases[i].id, r.len);
        buf_t b = BUF_INIT;
        assert_int_equal(store_rev_format(&r, &b), DV_OK);
        store_rev back;
        assert_int_equal(store_rev_parse((const char *)b.data, b.len, &back), DV_OK);
        assert_true(store_rev_equal(&r, &back));
        buf_free(&b);
    }
    /* An embedded NUL ends nothing: the length is what counts. */
    store_rev r;
    assert_int_equal(store_rev_parse("1-a\0b", 5, &r), DV_ERR_INVALID);
    assert_int_equal(store_rev_parse("1-ab", 3, &r), DV_OK);
    assert_int_equal(r.len, 1);
}

static void test_compute_rev_id(void **state)
{
    (void)state;
    char base[33], other[33];
    store_rev p = R("1-abc");
    const uint8_t body[] = "{\"a\":1}";
    const char *atts[] = {"md5-AAAA", "md5-BBBB"};
    revtree_compute_rev_id(0, &p, body, 7, atts, 2, base);
    assert_int_equal(strlen(base), 32);
    for (int i = 0; i < 32; i++)
        assert_true((base[i] >= '0' && base[i] <= '9') || (base[i] >= 'a' && base[i] <= 'f'));
    revtree_compute_rev_id(0, &p, body, 7, atts, 2, other);
    assert_string_equal(base, other); /* stable */
    revtree_compute_rev_id(1, &p, body, 7, atts, 2, other);
    assert_string_not_equal(base, other); /* deleted */
    revtree_compute_rev_id(0, NULL, body, 7, atts, 2, other);
    assert_string_not_equal(base, other); /* no parent */
    store_rev p2 = R("2-abc");
    revtree_compute_rev_id(0, &p2, body, 7, atts, 2, other);
    assert_string_not_equal(base, other); /* parent pos */
    p2 = R("1-abd");
    revtree_compute_rev_id(0, &p2, body, 7, atts, 2, other);
    assert_string_not_equal(base, other); /* parent id */
    revtree_compute_rev_id(0, &p, body, 6, atts, 2, other);
    assert_string_not_equal(base, other); /* body */
    revtree_compute_rev_id(0, &p, body, 7, atts, 1, other);
    assert_string_not_equal(base, other); /* attachment count */
    const char *atts2[] = {"md5-AAAA", "md5-BBBC"};
    revtree_compute_rev_id(0, &p, body, 7, atts2, 2, other);
    assert_string_not_equal(base, other); /* attachment digest */
    const char *atts3[] = {"md5-BBBB", "md5-AAAA"};
    revtree_compute_rev_id(0, &p, body, 7, atts3, 2, other);
    assert_string_not_equal(base, other); /* attachment order */
    /* Moving bytes between body and digests changes the id. */
    const char *atts4[] = {"}md5-AAAA", "md5-BBBB"};
    revtree_compute_rev_id(0, &p, body, 6, atts4, 2, other);
    assert_string_not_equal(base, other);
    /* Known answers: rev ids must never change for the same edit (replicas
     * that make the same edit converge on one revision).  MD5 of
     * u8 deleted | u8 has parent | [u64le pos | u8 id len | id] |
     * u64le body len | body | per digest: u64le len | digest, computed
     * independently (Python hashlib) from that description. */
    assert_string_equal(base, "bbf10bde4d0f5bd30f71a9937d87482d");
    revtree_compute_rev_id(1, NULL, body, 7, NULL, 0, other);
    assert_string_equal(other, "7d9a5c32f616b4e6329a5862395e20e0");
    revtree_compute_rev_id(0, NULL, body, 0, NULL, 0, other);
    assert_string_equal(other, "a63c90cc3684ad8b0a2176a6a8fe9005");
}

static void test_encoding(void **state)
{
    (void)state;
    revtree t, d;
    revtree_init(&t);
    revtree_init(&d);
    char hex[33];
    revtree_compute_rev_id(0, NULL, (const uint8_t *)"x", 1, NULL, 0, hex);
    assert_int_equal(edit(&t, NULL, hex, 0), DV_OK);
    store_rev p = R("1-a");
    p.len = 32;
    memcpy(p.id, hex, 32);
    revtree_node proto = {.deleted = 1, .seq = UINT64_MAX, .size = 1ULL << 40, .body = {1ULL << 50, UINT32_MAX}};
    assert_int_equal(revtree_add_edit(&t, &p, "ABCDEF0123456789ABCDEF0123456789", 32, &proto, NULL), DV_OK);
    assert_int_equal(merge(&t, "7-x 6-y", 0, NULL), DV_OK);
    buf_t b = BUF_INIT, b2 = BUF_INIT;
    assert_int_equal(revtree_encode(&t, &b), DV_OK);
    assert_int_equal(revtree_decode(&d, b.data, b.len), DV_OK);
    assert_true(revtree_equal(&d, &t));
    d.nodes[1].body.size--; /* equality looks at every field */
    assert_false(revtree_equal(&d, &t));
    d.nodes[1].body.size++;
    d.nodes[3].parent = REVTREE_NONE; /* 7-x loses 6-y */
    assert_false(revtree_equal(&d, &t));
    assert_int_equal(revtree_decode(&d, b.data, b.len), DV_OK);
    assert_int_equal(revtree_encode(&d, &b2), DV_OK);
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.data, b.data, b.len);
    /* Every truncation and a trailing byte are corrupt, and leave d alone. */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(revtree_decode(&d, b.data, n), DV_ERR_CORRUPT);
    assert_int_equal(buf_append_byte(&b, 0), DV_OK);
    assert_int_equal(revtree_decode(&d, b.data, b.len), DV_ERR_CORRUPT);
    assert_int_equal(d.n, t.n);
    /* Empty tree. */
    revtree e;
    revtree_init(&e);
    buf_reset(&b);
    assert_int_equal(revtree_encode(&e, &b), DV_OK);
    assert_int_equal(revtree_decode(&d, b.data, b.len), DV_OK);
    assert_int_equal(d.n, 0);
    buf_free(&b);
    buf_free(&b2);
    revtree_free(&t);
    revtree_free(&d);
}

/* Hand-built encodings that break one invariant each. */
static void test_decode_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[40];
        size_t len;
    } bad[] = {
        {"version", {2, 1, 8, 1, 1, 'a', 0, 0}, 8},
        {"count beyond bytes", {1, 9, 8, 1, 1, 'a', 0, 0}, 8},
        {"unknown flag", {1, 1, 8 | 64, 1, 1, 'a', 0, 0}, 8},
        {"pos zero", {1, 1, 8, 0, 1, 'a', 0, 0}, 8},
        {"empty id", {1, 1, 8, 1, 0, 0, 0, 0}, 8},
        {"bad id char", {1, 1, 8, 1, 1, '"', 0, 0}, 8},
        {"id too long", {1, 1, 8, 1, 65, 'a', 0, 0}, 8},
        {"parent is self", {1, 1, 0, 1, 0, 1, 'a', 0, 0}, 9},
        {"parent pos", {1, 2, 8, 1, 1, 'a', 0, 0, 0, 0, 1, 1, 'b', 0, 0}, 15},
        {"duplicate rev", {1, 2, 8, 1, 1, 'a', 0, 0, 8, 0, 1, 'a', 0, 0}, 14},
        {"order", {1, 2, 8, 1, 1, 'b', 0, 0, 8, 0, 1, 'a', 0, 0}, 14},
        {"overlong varint", {1, 1, 8, 0x81, 0, 1, 'a', 0, 0}, 9},
        {"non-canonical hex id", {1, 1, 8, 1, 32, '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c',
                                  'd', 'e', 'f', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c',
                                  'd', 'e', 'f', 0, 0},
         39},
        {"null body pointer", {1, 1, 8 | 16, 1, 1, 'a', 0, 0, 0, 0}, 10},
        {"body size > u32", {1, 1, 8 | 16, 1, 1, 'a', 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0}, 14},
        {"pos overflow", {1, 2, 8, 2, 1, 'a', 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 1,
                          'b', 0, 0},
         23},
    };
    revtree d;
    revtree_init(&d);
    /* The first entry fixed to version 1 decodes: the table tests what it says. */
    uint8_t good[] = {1, 1, 8, 1, 1, 'a', 0, 0};
    assert_int_equal(revtree_decode(&d, good, sizeof good), DV_OK);
    assert_int_equal(d.n, 1);
    uint8_t good2[] = {1, 2, 8, 1, 1, 'a', 0, 0, 0, 1, 1, 1, 'b', 0, 0};
    assert_int_equal(revtree_decode(&d, good2, sizeof good2), DV_OK);
    assert_int_equal(d.n, 2);
    /* The same id with one uppercase digit is a valid text id. */
    size_t hx = 0;
    while (strcmp(bad[hx].what, "non-canonical hex id") != 0)
        hx++;
    uint8_t upper[39];
    memcpy(upper, bad[hx].bytes, sizeof upper);
    upper[15] = 'A';
    assert_int_equal(revtree_decode(&d, upper, sizeof upper), DV_OK);
    assert_int_equal(d.n, 1);
    assert_int_equal(revtree_decode(&d, good2, sizeof good2), DV_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (revtree_decode(&d, bad[i].bytes, bad[i].len) != DV_ERR_CORRUPT)
            fail_msg("accepted: %s", bad[i].what);
    assert_int_equal(d.n, 2);
    revtree_free(&d);
}

/* A 1000-rev history (revs_limit's default) edited, replicated and stemmed
 * as a whole: checks results on the sizes where a quadratic step would
 * show, and that the long path joins the existing one. */
static void test_long_history(void **state)
{
    (void)state;
    enum { N = 1000 };
    revtree t, u;
    revtree_init(&t);
    revtree_init(&u);
    store_rev *path = malloc(N * sizeof *path);
    assert_non_null(path);
    for (int i = 0; i < N; i++) {
        char id[33];
        store_rev parent;
        if (i)
            parent = t.nodes[t.n - 1].rev;
        revtree_compute_rev_id(0, i ? &parent : NULL, (const uint8_t *)&i, sizeof i, NULL, 0, id);
        assert_int_equal(revtree_add_edit(&t, i ? &parent : NULL, id, 32, NULL, NULL), DV_OK);
        assert_int_equal(t.nodes[t.n - 1].rev.pos, (uint64_t)i + 1);
    }
    uint32_t *out = malloc(N * sizeof *out);
    assert_non_null(out);
    assert_int_equal(revtree_path(&t, revtree_winner(&t), out), N);
    for (int i = 0; i < N; i++)
        path[i] = t.nodes[out[i]].rev;
    /* Replicate the second half, then the whole path: one tree again. */
    int added;
    assert_int_equal(revtree_merge_path(&u, path, N / 2, NULL, &added, NULL), DV_OK);
    assert_int_equal(revtree_merge_path(&u, path, N, NULL, &added, NULL), DV_OK);
    assert_int_equal(added, 0);
    assert_int_equal(u.n, N);
    for (uint32_t i = 0; i < u.n; i++)
        assert_true(store_rev_equal(&u.nodes[i].rev, &t.nodes[i].rev) && u.nodes[i].parent == t.nodes[i].parent);
    assert_int_equal(revtree_stem(&u, 10), DV_OK);
    assert_int_equal(u.n, 10);
    assert_true(store_rev_equal(&u.nodes[0].rev, &path[9]));
    free(out);
    free(path);
    revtree_free(&t);
    revtree_free(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_edit_conflicts),
        cmocka_unit_test(test_recreate_after_delete),
        cmocka_unit_test(test_merge_paths),
        cmocka_unit_test(test_merge_grafts_ancestors),
        cmocka_unit_test(test_winner_tiebreaks),
        cmocka_unit_test(test_conflict_lists),
        cmocka_unit_test(test_stem),
        cmocka_unit_test(test_purge),
        cmocka_unit_test(test_rev_parse),
        cmocka_unit_test(test_compute_rev_id),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_long_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
