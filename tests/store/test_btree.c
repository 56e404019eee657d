/*
 * test_btree.c — B+tree behaviour beyond the random model test: snapshots
 * (MVCC), a custom numeric order, reopening a committed file, corruption
 * (flipped bytes, structurally bad node records), the shared cache under
 * eviction and threads, tree height for 100k keys, and rough rates.
 */
#include "store/btree.h"
#include "store/btree_model.h"
#include "store/btree_node.h"
#include "testutil.h"

#include "base/status.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct fx {
    char *dir, *path;
    store_file *f;
    store_btree_cache *cache;
    store_btree t;
    buf_t root;
} fx;

static void fx_open(fx *x, const char *tag, const store_btree_ops *ops, size_t node_bytes, size_t cache_bytes)
{
    memset(x, 0, sizeof *x);
    x->dir = tu_mkdtemp(tag);
    x->path = tu_path(x->dir, "t.db");
    buf_t hdr = BUF_INIT;
    assert_int_equal(store_file_open(store_vfs_posix(), x->path, STORE_FILE_CREATE, &x->f, &hdr), DV_OK);
    buf_free(&hdr);
    if (cache_bytes)
        assert_int_equal(store_btree_cache_new(cache_bytes, &x->cache), DV_OK);
    x->t = (store_btree){x->f, x->cache, ops, node_bytes};
}

static void fx_close(fx *x)
{
    store_btree_cache_forget(x->cache, x->f);
    store_btree_cache_free(x->cache);
    if (x->f)
        assert_int_equal(store_file_close(x->f), DV_OK);
    buf_free(&x->root);
    tu_rmtree(x->dir);
    free(x->dir);
    free(x->path);
}

static store_slice S(const char *s) { return (store_slice){(const uint8_t *)s, strlen(s)}; }

/* PUTs keys fmt % i for i in [from, to) with value "v<i>" (or "w<i>" when
 * alt), in batches of `batch`. */
static void put_range(fx *x, const char *fmt, int from, int to, int batch, int alt)
{
    store_btree_action *acts = calloc((size_t)batch, sizeof *acts);
    char(*keys)[32] = calloc((size_t)batch, 32);
    char(*vals)[32] = calloc((size_t)batch, 32);
    for (int b = from; b < to; b += batch) {
        int n = 0;
        for (int i = b; i < to && i < b + batch; i++, n++) {
            snprintf(keys[n], 32, fmt, i);
            snprintf(vals[n], 32, "%c%d", alt ? 'w' : 'v', i);
            acts[n] = (store_btree_action){STORE_BTREE_PUT, S(keys[n]), S(vals[n])};
        }
        buf_t nr = BUF_INIT;
        assert_int_equal(store_btree_modify(&x->t, x->root.data, x->root.len, acts, (size_t)n, &nr), DV_OK);
        buf_free(&x->root);
        x->root = nr;
    }
    free(acts);
    free(keys);
    free(vals);
}

static void expect_get(const fx *x, const buf_t *root, const char *key, const char *val)
{
    buf_t v = BUF_INIT;
    int rc = store_btree_get(&x->t, root->data, root->len, S(key), &v);
    if (!val) {
        assert_int_equal(rc, DV_ERR_NOTFOUND);
    } else {
        assert_int_equal(rc, DV_OK);
        assert_int_equal(v.len, strlen(val));
        assert_memory_equal(v.data, val, v.len);
    }
    buf_free(&v);
}

/* A full ascending scan of root gives exactly keys fmt % i with values
 * "v<i>" for i in [0, n). */
static void expect_scan(const fx *x, const buf_t *root, const char *fmt, int n)
{
    store_btree_cursor *c;
    store_slice k, v;
    assert_int_equal(store_btree_cursor_open(&x->t, root->data, root->len, NULL, &c), DV_OK);
    for (int i = 0; i < n; i++) {
        char kb[32], vb[32];
        snprintf(kb, sizeof kb, fmt, i);
        snprintf(vb, sizeof vb, "v%d", i);
        assert_int_equal(store_btree_cursor_next(c, &k, &v), 1);
        assert_true(bm_slice_eq(k, S(kb)));
        assert_true(bm_slice_eq(v, S(vb)));
    }
    assert_int_equal(store_btree_cursor_next(c, &k, &v), 0);
    store_btree_cursor_close(c);
}

/* ---- empty tree and argument checks ------------------------------------ */

static void test_empty_and_invalid(void **state)
{
    (void)state;
    fx x;
    fx_open(&x, "btree-empty", NULL, 0, 0);
    expect_get(&x, &x.root, "a", NULL);
    store_btree_cursor *c;
    store_slice k, v;
    assert_int_equal(store_btree_cursor_open(&x.t, NULL, 0, NULL, &c), DV_OK);
    assert_int_equal(store_btree_cursor_next(c, &k, &v), 0);
    store_btree_cursor_close(c);
    uint64_t count = 99;
    assert_int_equal(store_btree_reduce_range(&x.t, NULL, 0, NULL, &count, NULL), DV_OK);
    assert_int_equal(count, 0);

    /* Deleting from an empty tree leaves it empty. */
    store_btree_action del = {STORE_BTREE_DEL, S("a"), {NULL, 0}};
    buf_t nr = BUF_INIT;
    assert_int_equal(store_btree_modify(&x.t, NULL, 0, &del, 1, &nr), DV_OK);
    assert_int_equal(nr.len, 0);

    /* Unsorted or repeated keys are refused and change nothing. */
    store_btree_action bad[2] = {{STORE_BTREE_PUT, S("b"), S("1")}, {STORE_BTREE_PUT, S("a"), S("2")}};
    assert_int_equal(store_btree_modify(&x.t, NULL, 0, bad, 2, &nr), DV_ERR_INVALID);
    bad[1].key = S("b");
    assert_int_equal(store_btree_modify(&x.t, NULL, 0, bad, 2, &nr), DV_ERR_INVALID);

    /* Put then delete everything: back to the empty root. */
    put_range(&x, "k%04d", 0, 500, 100, 0);
    assert_int_equal(store_btree_root_count(x.root.data, x.root.len), 500);
    store_btree_action *acts = calloc(500, sizeof *acts);
    char(*keys)[16] = calloc(500, 16);
    for (int i = 0; i < 500; i++) {
        snprintf(keys[i], 16, "k%04d", i);
        acts[i] = (store_btree_action){STORE_BTREE_DEL, S(keys[i]), {NULL, 0}};
    }
    assert_int_equal(store_btree_modify(&x.t, x.root.data, x.root.len, acts, 500, &nr), DV_OK);
    assert_int_equal(nr.len, 0);
    buf_free(&nr);
    free(acts);
    free(keys);
    fx_close(&x);
}

/* ---- MVCC ------------------------------------------------------------- */

static void test_snapshots(void **state)
{
    (void)state;
    fx x;
    fx_open(&x, "btree-snap", &bm_sum_ops, 512, 1 << 20);
    put_range(&x, "k%05d", 0, 3000, 250, 0);
    buf_t old = BUF_INIT;
    assert_int_equal(buf_append(&old, x.root.data, x.root.len), DV_OK);

    /* Overwrite the first half, delete every third key, add new ones. */
    put_range(&x, "k%05d", 0, 1500, 300, 1);
    store_btree_action *acts = calloc(1000, sizeof *acts);
    char(*keys)[16] = calloc(1000, 16);
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], 16, "k%05d", i * 3);
        acts[i] = (store_btree_action){STORE_BTREE_DEL, S(keys[i]), {NULL, 0}};
    }
    buf_t nr = BUF_INIT;
    assert_int_equal(store_btree_modify(&x.t, x.root.data, x.root.len, acts, 1000, &nr), DV_OK);
    buf_free(&x.root);
    x.root = nr;
    put_range(&x, "n%05d", 0, 500, 500, 0);

    /* The old root is untouched: every original row, original values. */
    assert_int_equal(store_btree_root_count(old.data, old.len), 3000);
    expect_scan(&x, &old, "k%05d", 3000);
    expect_get(&x, &old, "k00003", "v3");
    expect_get(&x, &old, "n00001", NULL);

    /* The new root has the new state. */
    assert_int_equal(store_btree_root_count(x.root.data, x.root.len), 3000 - 1000 + 500);
    expect_get(&x, &x.root, "k00003", NULL);
    expect_get(&x, &x.root, "k00004", "w4");
    expect_get(&x, &x.root, "k02000", "v2000");
    expect_get(&x, &x.root, "n00001", "v1");
    buf_free(&old);
    free(acts);
    free(keys);
    fx_close(&x);
}

/* ---- custom order ----------------------------------------------------- */

static long parse_num(store_slice s)
{
    long v = 0;
    for (size_t i = 0; i < s.n; i++)
        v = v * 10 + (s.p[i] - '0');
    return v;
}

static int numeric_compare(void *ctx, store_slice a, store_slice b)
{
    (void)ctx;
    long x = parse_num(a), y = parse_num(b);
    return x < y ? -1 : x > y;
}

static int count_reduce(void *ctx, const store_slice *k, const store_slice *v, size_t n, buf_t *out)
{
    (void)ctx;
    (void)v;
    /* Sum of the numeric keys: checks the keys handed to reduce. */
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (uint64_t)parse_num(k[i]);
    return buf_put_u64le(out, s);
}

static int count_rereduce(void *ctx, const store_slice *r, size_t n, buf_t *out)
{
    (void)ctx;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += dv_load_u64le(r[i].p);
    return buf_put_u64le(out, s);
}

static void test_numeric_order(void **state)
{
    (void)state;
    static const store_btree_ops num_ops = {numeric_compare, count_reduce, count_rereduce, NULL};
    fx x;
    fx_open(&x, "btree-num", &num_ops, 256, 0);
    /* Inserted in numeric order, which is not memcmp order ("10" < "9"). */
    put_range(&x, "%d", 1, 2001, 97, 0);
    expect_get(&x, &x.root, "0777", "v777"); /* equal under the order */
    expect_get(&x, &x.root, "2001", NULL);

    store_btree_range r = STORE_BTREE_RANGE_ALL;
    r.has_start = r.has_end = 1;
    r.start = S("9");
    r.end = S("100");
    r.end_inclusive = 0;
    store_btree_cursor *c;
    store_slice k, v;
    assert_int_equal(store_btree_cursor_open(&x.t, x.root.data, x.root.len, &r, &c), DV_OK);
    for (long want = 9; want < 100; want++) {
        assert_int_equal(store_btree_cursor_next(c, &k, &v), 1);
        assert_int_equal(parse_num(k), want);
    }
    assert_int_equal(store_btree_cursor_next(c, &k, &v), 0);
    store_btree_cursor_close(c);

    uint64_t count;
    buf_t red = BUF_INIT;
    assert_int_equal(store_btree_reduce_range(&x.t, x.root.data, x.root.len, &r, &count, &red), DV_OK);
    assert_int_equal(count, 91);
    assert_int_equal(dv_load_u64le(red.data), (9 + 99) * 91 / 2);

    /* Descending from 1500 (exclusive) skipping 10: 1489 first. */
    r = (store_btree_range)STORE_BTREE_RANGE_ALL;
    r.descending = 1;
    r.has_start = 1;
    r.start_inclusive = 0;
    r.start = S("1500");
    assert_int_equal(store_btree_cursor_open(&x.t, x.root.data, x.root.len, &r, &c), DV_OK);
    assert_int_equal(store_btree_cursor_skip(c, 10), DV_OK);
    assert_int_equal(store_btree_cursor_next(c, &k, &v), 1);
    assert_int_equal(parse_num(k), 1489);
    store_btree_cursor_close(c);
    assert_int_equal(store_btree_reduce_range(&x.t, x.root.data, x.root.len, &r, &count, &red), DV_OK);
    assert_int_equal(count, 1499);
    assert_int_equal(dv_load_u64le(red.data), 1499 * 1500 / 2);
    buf_free(&red);
    fx_close(&x);
}

/* ---- reopen ----------------------------------------------------------- */

static void test_reopen(void **state)
{
    (void)state;
    fx x;
    fx_open(&x, "btree-reopen", &bm_sum_ops, 0, 1 << 20);
    put_range(&x, "doc-%06d", 0, 5000, 700, 0);
    assert_int_equal(store_file_commit(x.f, x.root.data, x.root.len, 1), DV_OK);
    /* More appends after the commit are not part of what reopens. */
    buf_t committed = BUF_INIT;
    assert_int_equal(buf_append(&committed, x.root.data, x.root.len), DV_OK);
    put_range(&x, "zzz-%06d", 0, 100, 100, 0);
    store_btree_cache_forget(x.cache, x.f);
    assert_int_equal(store_file_close(x.f), DV_OK);

    buf_t hdr = BUF_INIT;
    assert_int_equal(store_file_open(store_vfs_posix(), x.path, 0, &x.f, &hdr), DV_OK);
    x.t.file = x.f;
    assert_int_equal(hdr.len, committed.len);
    assert_memory_equal(hdr.data, committed.data, hdr.len);
    assert_int_equal(store_btree_root_count(hdr.data, hdr.len), 5000);
    expect_scan(&x, &hdr, "doc-%06d", 5000);
    /* And the reopened tree can be modified further. */
    buf_free(&x.root);
    x.root = hdr;
    put_range(&x, "doc-%06d", 5000, 5100, 100, 0);
    assert_int_equal(store_btree_root_count(x.root.data, x.root.len), 5100);
    expect_get(&x, &x.root, "doc-000042", "v42");
    buf_free(&committed);
    fx_close(&x);
}

/* ---- corruption ------------------------------------------------------- */

/* Runs every read path over root; each must give the right answer or
 * DV_ERR_CORRUPT.  Returns 1 if any reported corruption. */
static int read_all_or_corrupt(const store_btree *t, const buf_t *root, int n)
{
    int corrupt = 0;
    store_btree_cursor *c;
    store_slice k, v;
    for (int desc = 0; desc < 2; desc++) {
        store_btree_range r = STORE_BTREE_RANGE_ALL;
        r.descending = desc;
        assert_int_equal(store_btree_cursor_open(t, root->data, root->len, &r, &c), DV_OK);
        int rows = 0, rc;
        while ((rc = store_btree_cursor_next(c, &k, &v)) == 1) {
            char kb[16];
            snprintf(kb, sizeof kb, "k%05d", desc ? n - 1 - rows : rows);
            assert_true(bm_slice_eq(k, S(kb)));
            rows++;
        }
        if (rc == 0)
            assert_int_equal(rows, n);
        else
            assert_int_equal(rc, DV_ERR_CORRUPT), corrupt = 1;
        assert_int_equal(store_btree_cursor_next(c, &k, &v), rc); /* stays failed */
        store_btree_cursor_close(c);
    }
    buf_t val = BUF_INIT;
    for (int i = 0; i < n; i += 37) {
        char kb[16], vb[16];
        snprintf(kb, sizeof kb, "k%05d", i);
        snprintf(vb, sizeof vb, "v%d", i);
        int rc = store_btree_get(t, root->data, root->len, S(kb), &val);
        if (rc == DV_OK)
            assert_true(bm_slice_eq((store_slice){val.data, val.len}, S(vb)));
        else
            assert_int_equal(rc, DV_ERR_CORRUPT), corrupt = 1;
    }
    buf_free(&val);
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    r.has_start = 1;
    r.start = S("k00100");
    uint64_t count;
    buf_t red = BUF_INIT;
    int rc = store_btree_reduce_range(t, root->data, root->len, &r, &count, &red);
    if (rc == DV_OK)
        assert_int_equal(count, (uint64_t)(n - 100));
    else
        assert_int_equal(rc, DV_ERR_CORRUPT), corrupt = 1;
    buf_free(&red);
    return corrupt;
}

static void test_flipped_bytes(void **state)
{
    (void)state;
    const int n = 2000;
    fx x;
    fx_open(&x, "btree-flip", &bm_sum_ops, 512, 0);
    put_range(&x, "k%05d", 0, n, n, 0); /* one batch: every node is live */
    uint64_t data_end = store_file_size(x.f); /* flips stay clear of the headers */
    assert_int_equal(store_file_commit(x.f, x.root.data, x.root.len, 1), DV_OK);
    /* A second synced commit certifies the first one's bytes as synced, so
     * open takes the tree as written and the flips are the readers' to
     * find (a flip in the newest commit's own bytes makes open fall back,
     * see test_file). */
    assert_int_equal(store_file_commit(x.f, x.root.data, x.root.len, 1), DV_OK);
    assert_int_equal(store_file_close(x.f), DV_OK);
    x.f = NULL;
    FILE *fp = fopen(x.path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    uint8_t *orig = malloc((size_t)size);
    rewind(fp);
    assert_int_equal(fread(orig, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);

    bt_root rt;
    assert_int_equal(bt_root_parse(x.root.data, x.root.len, &rt), 1);
    tu_rng rng = {tu_seed("btree_flipped_bytes")};
    int trials = (int)tu_iterations(40), detected = 0;
    char *path2 = tu_path(x.dir, "flip.db");
    for (int t = 0; t < trials; t++) {
        /* The first trial hits the root node itself. */
        uint64_t pos = t == 0 ? rt.ptr.off + 14 : 64 + tu_rand_below(&rng, data_end - 64);
        uint8_t saved = orig[pos];
        orig[pos] ^= (uint8_t)(1u << tu_rand_below(&rng, 8));
        fp = fopen(path2, "wb");
        assert_int_equal(fwrite(orig, 1, (size_t)size, fp), (size_t)size);
        fclose(fp);
        orig[pos] = saved;
        store_file *f2;
        buf_t hdr = BUF_INIT;
        assert_int_equal(store_file_open(store_vfs_posix(), path2, 0, &f2, &hdr), DV_OK);
        store_btree t2 = {f2, NULL, &bm_sum_ops, 512};
        int c = read_all_or_corrupt(&t2, &hdr, n);
        if (t == 0)
            assert_true(c);
        detected += c;
        buf_free(&hdr);
        assert_int_equal(store_file_close(f2), DV_OK);
    }
    fprintf(stderr, "[btree_flipped_bytes] %d of %d flips detected (others hit unused bytes)\n", detected, trials);
    assert_true(detected >= trials / 2);
    free(orig);
    free(path2);
    fx_close(&x);
}

/* A record with a valid checksum but a bad node inside must be refused by
 * the decoder. */
static void expect_bad_node(fx *x, const buf_t *rec, unsigned height, uint64_t count, const char *what)
{
    store_ptr p;
    assert_int_equal(store_file_append(x->f, rec->data, rec->len, &p), DV_OK);
    buf_t root = BUF_INIT;
    assert_int_equal(bt_root_encode(&root, height, p, count, (store_slice){NULL, 0}), DV_OK);
    buf_t v = BUF_INIT;
    int rc = store_btree_get(&x->t, root.data, root.len, S("b"), &v);
    if (rc != DV_ERR_CORRUPT)
        fail_msg("%s: get gave %d", what, rc);
    store_btree_cursor *c;
    store_slice k, val;
    assert_int_equal(store_btree_cursor_open(&x->t, root.data, root.len, NULL, &c), DV_OK);
    assert_int_equal(store_btree_cursor_next(c, &k, &val), DV_ERR_CORRUPT);
    store_btree_cursor_close(c);
    store_btree_action a = {STORE_BTREE_PUT, S("b"), S("x")};
    buf_t nr = BUF_INIT;
    assert_int_equal(store_btree_modify(&x->t, root.data, root.len, &a, 1, &nr), DV_ERR_CORRUPT);
    buf_free(&nr);
    buf_free(&v);
    buf_free(&root);
}

static void test_bad_node_records(void **state)
{
    (void)state;
    fx x;
    fx_open(&x, "btree-badnode", NULL, 0, 1 << 20);
    put_range(&x, "k%d", 0, 3, 3, 0); /* a real leaf to point at */
    bt_root good;
    assert_int_equal(bt_root_parse(x.root.data, x.root.len, &good), 1);
    buf_t r = BUF_INIT;

    /* Leaf with keys out of order. */
    buf_append_byte(&r, 0), buf_put_varint(&r, 2);
    buf_put_bytes(&r, "b", 1), buf_put_bytes(&r, "1", 1), buf_put_bytes(&r, "a", 1), buf_put_bytes(&r, "2", 1);
    expect_bad_node(&x, &r, 0, 2, "unordered keys");
    /* Leaf with a duplicate key. */
    buf_reset(&r);
    buf_append_byte(&r, 0), buf_put_varint(&r, 2);
    buf_put_bytes(&r, "b", 1), buf_put_bytes(&r, "1", 1), buf_put_bytes(&r, "b", 1), buf_put_bytes(&r, "2", 1);
    expect_bad_node(&x, &r, 0, 2, "duplicate keys");
    /* Zero entries. */
    buf_reset(&r);
    buf_append_byte(&r, 0), buf_put_varint(&r, 0);
    expect_bad_node(&x, &r, 0, 1, "empty node");
    /* Entry count larger than the record could hold. */
    buf_reset(&r);
    buf_append_byte(&r, 0), buf_put_varint(&r, 1000000);
    buf_put_bytes(&r, "b", 1), buf_put_bytes(&r, "1", 1);
    expect_bad_node(&x, &r, 0, 1000000, "huge count");
    /* Key length running past the end. */
    buf_reset(&r);
    buf_append_byte(&r, 0), buf_put_varint(&r, 1), buf_put_varint(&r, 50), buf_append(&r, "bb", 2);
    expect_bad_node(&x, &r, 0, 1, "truncated key");
    /* Trailing garbage. */
    buf_reset(&r);
    buf_append_byte(&r, 0), buf_put_varint(&r, 1), buf_put_bytes(&r, "b", 1), buf_put_bytes(&r, "1", 1);
    buf_append_byte(&r, 7);
    expect_bad_node(&x, &r, 0, 1, "trailing bytes");
    /* Root claims a different count or level than the node has. */
    buf_reset(&r);
    buf_append_byte(&r, 0), buf_put_varint(&r, 1), buf_put_bytes(&r, "b", 1), buf_put_bytes(&r, "1", 1);
    expect_bad_node(&x, &r, 0, 5, "count mismatch");
    expect_bad_node(&x, &r, 1, 1, "level mismatch");
    /* Inner node whose child pointer is not below it (a would-be cycle). */
    buf_reset(&r);
    buf_append_byte(&r, 1), buf_put_varint(&r, 1), buf_put_bytes(&r, "z", 1);
    buf_put_varint(&r, store_file_size(x.f) + 1000), buf_put_varint(&r, 10), buf_put_varint(&r, 3);
    buf_put_bytes(&r, NULL, 0);
    expect_bad_node(&x, &r, 1, 3, "forward child pointer");
    /* Inner node with a zero child count. */
    buf_reset(&r);
    buf_append_byte(&r, 1), buf_put_varint(&r, 1), buf_put_bytes(&r, "z", 1);
    buf_put_varint(&r, good.ptr.off), buf_put_varint(&r, good.ptr.size), buf_put_varint(&r, 0);
    buf_put_bytes(&r, NULL, 0);
    expect_bad_node(&x, &r, 1, 0 + 1, "zero child count");
    /* Inner node pointing at a real leaf but claiming the wrong count. */
    buf_reset(&r);
    buf_append_byte(&r, 1), buf_put_varint(&r, 1), buf_put_bytes(&r, "z", 1);
    buf_put_varint(&r, good.ptr.off), buf_put_varint(&r, good.ptr.size), buf_put_varint(&r, 7);
    buf_put_bytes(&r, NULL, 0);
    expect_bad_node(&x, &r, 1, 7, "child count mismatch");
    /* A malformed root. */
    uint8_t badroot[3] = {0x80, 0x80, 0x80};
    buf_t v = BUF_INIT;
    assert_int_equal(store_btree_get(&x.t, badroot, 3, S("a"), &v), DV_ERR_CORRUPT);
    buf_free(&v);
    buf_free(&r);
    fx_close(&x);
}

/* ---- cache ------------------------------------------------------------ */

static void test_cache_eviction_under_cursors(void **state)
{
    (void)state;
    fx x;
    /* A cache far smaller than the tree: nodes held by cursors get evicted
     * while in use and must stay valid (ASan checks the memory). */
    fx_open(&x, "btree-evict", NULL, 256, 4096);
    put_range(&x, "k%05d", 0, 4000, 500, 0);
    enum { NC = 4 };
    store_btree_cursor *c[NC];
    int pos[NC];
    for (int i = 0; i < NC; i++) {
        store_btree_range r = STORE_BTREE_RANGE_ALL;
        r.descending = i & 1;
        assert_int_equal(store_btree_cursor_open(&x.t, x.root.data, x.root.len, &r, &c[i]), DV_OK);
        pos[i] = 0;
    }
    for (int step = 0; step < 4000; step++) {
        for (int i = 0; i < NC; i++) {
            store_slice k, v;
            assert_int_equal(store_btree_cursor_next(c[i], &k, &v), 1);
            char kb[16];
            snprintf(kb, sizeof kb, "k%05d", (i & 1) ? 3999 - pos[i] : pos[i]);
            assert_true(bm_slice_eq(k, S(kb)));
            pos[i]++;
            if (step % 97 == 0) /* churn the cache from another path */
                expect_get(&x, &x.root, "k01234", "v1234");
        }
    }
    for (int i = 0; i < NC; i++)
        store_btree_cursor_close(c[i]);
    /* Forgetting the file's nodes leaves lookups working (re-read). */
    store_btree_cache_forget(x.cache, x.f);
    expect_get(&x, &x.root, "k00042", "v42");
    fx_close(&x);
}

/* The root a modification writes stays cached: a small root is written
 * "thin" and finish_root loads it to see whether it can be peeled; when it
 * cannot, it must not go with the superseded nodes (it did: every commit
 * then read its own new root back from the file). */
static void check_new_root_cached(int nkeys)
{
    fx x;
    fx_open(&x, "btree-root", NULL, 256, 64u << 20);
    put_range(&x, "k%05d", 0, nkeys, 500, 0);
    for (int i = 0; i < 20; i++) {
        store_btree_retired kept = {0};
        store_btree_action a = {STORE_BTREE_PUT, {(const uint8_t *)"k00007", 6}, {(const uint8_t *)"u", 1}};
        buf_t nr = BUF_INIT;
        assert_int_equal(store_btree_modify_keep(&x.t, x.root.data, x.root.len, &a, 1, &nr, &kept), DV_OK);
        store_btree_retire(&kept); /* what a commit does once it is published */
        bt_root r;
        assert_int_equal(bt_root_parse(nr.data, nr.len, &r), 1);
        assert_true(r.height > 0);
        bt_node *nd = bt_cache_lookup(x.cache, x.f, r.ptr.off);
        assert_non_null(nd);
        bt_node_release(nd);
        buf_free(&x.root);
        x.root = nr;
    }
    expect_get(&x, &x.root, "k00007", "u");
    fx_close(&x);
}

static void test_cache_keeps_new_root(void **state)
{
    (void)state;
    /* Roots of two to a dozen children: the small ones are thin (under a
     * quarter of a node). */
    static const int sizes[] = {150, 300, 600, 2000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        check_new_root_cached(sizes[i]);
}

/* Updates rewrite a path of nodes each (copy-on-write); the versions they
 * replace leave the cache, so with room to spare it holds about the live
 * tree, not every version written since. */
static void test_cache_keeps_live_nodes(void **state)
{
    (void)state;
    fx x;
    fx_open(&x, "btree-retire", NULL, 256, 64u << 20);
    put_range(&x, "k%05d", 0, 4000, 500, 0);
    size_t live = store_btree_cache_bytes(x.cache);
    assert_true(live > 0);
    /* 2,000 single-key updates: each writes a new root-to-leaf path. */
    for (int i = 0; i < 2000; i++) {
        int k = (i * 37) % 4000;
        put_range(&x, "k%05d", k, k + 1, 1, i & 1);
    }
    size_t after = store_btree_cache_bytes(x.cache);
    assert_true(after < live + live / 2); /* the replaced versions were dropped */
    /* and the tree reads back whole, through cache and file */
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    store_btree_cursor *c;
    store_slice k, v;
    int n = 0;
    assert_int_equal(store_btree_cursor_open(&x.t, x.root.data, x.root.len, &r, &c), DV_OK);
    while (store_btree_cursor_next(c, &k, &v) == 1)
        n++;
    store_btree_cursor_close(c);
    assert_int_equal(n, 4000);
    expect_get(&x, &x.root, "k00003", "v3"); /* never updated */
    expect_get(&x, &x.root, "k00001", "w1"); /* updated by i = 973 */
    fx_close(&x);
}

typedef struct thr_arg {
    const fx *x;
    uint64_t seed;
    int errors;
} thr_arg;

static void *reader_thread(void *p)
{
    thr_arg *a = p;
    tu_rng rng = {a->seed};
    buf_t v = BUF_INIT;
    for (int i = 0; i < 3000; i++) {
        int n = (int)tu_rand_below(&rng, 6000);
        char kb[16], vb[16];
        snprintf(kb, sizeof kb, "k%05d", n);
        snprintf(vb, sizeof vb, "v%d", n);
        int rc = store_btree_get(&a->x->t, a->x->root.data, a->x->root.len, S(kb), &v);
        if (n < 5000 ? rc != DV_OK || !bm_slice_eq((store_slice){v.data, v.len}, S(vb)) : rc != DV_ERR_NOTFOUND)
            a->errors++;
        if (i % 100 == 0) {
            store_btree_range r = STORE_BTREE_RANGE_ALL;
            r.has_start = 1;
            r.start = S(kb);
            store_btree_cursor *c;
            store_slice k, val;
            if (store_btree_cursor_open(&a->x->t, a->x->root.data, a->x->root.len, &r, &c) != DV_OK) {
                a->errors++;
                continue;
            }
            for (int j = n; j < n + 50 && j < 5000; j++) {
                snprintf(kb, sizeof kb, "k%05d", j);
                if (store_btree_cursor_next(c, &k, &val) != 1 || !bm_slice_eq(k, S(kb)))
                    a->errors++;
            }
            store_btree_cursor_close(c);
        }
    }
    buf_free(&v);
    return NULL;
}

static void test_cache_threads(void **state)
{
    (void)state;
    fx x;
    fx_open(&x, "btree-threads", NULL, 512, 64 * 1024);
    put_range(&x, "k%05d", 0, 5000, 1000, 0);
    assert_int_equal(store_file_commit(x.f, x.root.data, x.root.len, 0), DV_OK);
    enum { NT = 4 };
    pthread_t th[NT];
    thr_arg args[NT];
    uint64_t seed = tu_seed("btree_cache_threads");
    for (int i = 0; i < NT; i++) {
        args[i] = (thr_arg){&x, seed + (uint64_t)i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, reader_thread, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].errors, 0);
    }
    fx_close(&x);
}

/* ---- height and rates ------------------------------------------------- */

/* The POSIX VFS with a count of preads: how many reads a lookup costs
 * (without the read mapping, which would make every read free of preads). */
static long counted_preads;
static int counting_pread(store_vfs_file *f, void *buf, size_t len, uint64_t off)
{
    counted_preads++;
    return store_vfs_posix()->pread(f, buf, len, off);
}

static store_vfs *counting_vfs(void)
{
    static store_vfs v;
    v = *store_vfs_posix();
    v.pread = counting_pread;
    v.map = NULL;
    return &v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_height_and_rates(void **state)
{
    (void)state;
    const int n = 100000;
    fx x;
    fx_open(&x, "btree-height", NULL, 0, 8 << 20);
    double t0 = now_s();
    put_range(&x, "key%08d", 0, n, 1000, 0);
    double t_ins = now_s() - t0;
    bt_root rt;
    assert_int_equal(bt_root_parse(x.root.data, x.root.len, &rt), 1);
    assert_int_equal(rt.count, (uint64_t)n);
    /* ~22-byte rows: ~180 per 4 KiB leaf, inner fan-out similar, so 100k
     * rows fit under a root of level 2. */
    assert_true(rt.height <= 2);

    tu_rng rng = {tu_seed("btree_height_rates")};
    int lookups = (int)tu_iterations(20000);
    buf_t v = BUF_INIT;
    t0 = now_s();
    for (int i = 0; i < lookups; i++) {
        char kb[16];
        snprintf(kb, sizeof kb, "key%08d", (int)tu_rand_below(&rng, (uint64_t)n));
        assert_int_equal(store_btree_get(&x.t, x.root.data, x.root.len, S(kb), &v), DV_OK);
    }
    double t_hot = now_s() - t0;
    store_btree uncached = x.t;
    uncached.cache = NULL;
    t0 = now_s();
    for (int i = 0; i < lookups; i++) {
        char kb[16];
        snprintf(kb, sizeof kb, "key%08d", (int)tu_rand_below(&rng, (uint64_t)n));
        assert_int_equal(store_btree_get(&uncached, x.root.data, x.root.len, S(kb), &v), DV_OK);
    }
    double t_cold = now_s() - t0;

    /* Reopen through a counting VFS: an uncached lookup reads one record
     * per level, root to leaf. */
    assert_int_equal(store_file_commit(x.f, x.root.data, x.root.len, 0), DV_OK);
    store_btree_cache_forget(x.cache, x.f);
    assert_int_equal(store_file_close(x.f), DV_OK);
    buf_t hdr = BUF_INIT;
    assert_int_equal(store_file_open(counting_vfs(), x.path, 0, &x.f, &hdr), DV_OK);
    uncached.file = x.f;
    int probes = 1000;
    counted_preads = 0;
    for (int i = 0; i < probes; i++) {
        char kb[16];
        snprintf(kb, sizeof kb, "key%08d", (int)tu_rand_below(&rng, (uint64_t)n));
        assert_int_equal(store_btree_get(&uncached, hdr.data, hdr.len, S(kb), &v), DV_OK);
    }
    double reads = (double)counted_preads / probes;
    assert_true(reads <= 1.0 * (rt.height + 1)); /* one pread per node: frame and payload together */
    fprintf(stderr,
            "[btree_height_rates] %d rows: height %u, %.2f preads per uncached lookup, file %llu bytes\n"
            "  insert (batches of 1000): %.0f rows/s; get cached: %.0f/s; get uncached: %.0f/s\n",
            n, rt.height, reads, (unsigned long long)store_file_size(x.f), n / t_ins, lookups / t_hot,
            lookups / t_cold);
    buf_free(&hdr);
    buf_free(&v);
    fx_close(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_invalid),
        cmocka_unit_test(test_snapshots),
        cmocka_unit_test(test_numeric_order),
        cmocka_unit_test(test_reopen),
        cmocka_unit_test(test_flipped_bytes),
        cmocka_unit_test(test_bad_node_records),
        cmocka_unit_test(test_cache_eviction_under_cursors),
        cmocka_unit_test(test_cache_keeps_live_nodes),
        cmocka_unit_test(test_cache_keeps_new_root),
        cmocka_unit_test(test_cache_threads),
        cmocka_unit_test(test_height_and_rates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
