/*
 * btree_node.h — internal to the B+tree: the on-disk node format, its
 * decoded in-memory form, and the shared node cache.  Not for users of
 * store/btree.h (the fuzzer includes it to reach the decoder directly).
 *
 * Node record (one store_file record, immutable once appended):
 *   u8 level            0 = leaf, k = inner node whose children are level k-1
 *   varint n            entries, >= 1 (no node is ever empty)
 *   leaf entry:         bytes key | bytes value
 *   inner entry:        bytes key | varint child_off | varint child_size |
 *                       varint count | bytes reduction
 * ("bytes" = varint length + raw bytes.)  Keys ascend strictly by the tree's
 * compare.  An inner entry's key is the greatest key of its subtree; count is
 * the subtree's number of leaf entries (>= 1); reduction is the subtree's
 * ops->reduce/rereduce value (empty when the tree keeps counts only).
 * Children are appended before their parents, so a child offset is always
 * below its parent's: following pointers strictly descends the file, which
 * is what makes a corrupt node unable to create a cycle.
 *
 * Root (opaque bytes kept by the tree's owner; empty = empty tree):
 *   varint height | varint off | varint size | varint count | reduction...
 * height is the root node's level.
 *
 * Decoded node: one allocation holding the header, an entry table of
 * (offset, length) pairs, the child table for inner nodes, and a private copy
 * of the record bytes the tables point into.  No per-entry allocation.
 * Nodes are reference counted; the cache holds one reference while a node is
 * resident, so an evicted node stays valid for whoever still holds it.
 */
#ifndef DV_STORE_BTREE_NODE_H
#define DV_STORE_BTREE_NODE_H

#include "store/btree.h"

#include <endian.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Inner nodes have >= 2 children except transiently, so 2^64 entries need
 * at most 64 inner levels above the leaves. */
#define BT_MAX_LEVEL 64

typedef struct bt_ent {
    uint64_t prefix;   /* bt_prefix of the key: see bt_search */
    uint32_t koff, kn; /* key: raw[koff .. koff+kn) */
    uint32_t voff, vn; /* leaf: value; inner: reduction */
} bt_ent;

typedef struct bt_child {
    uint64_t off;
    uint64_t count;
    uint32_t size;
} bt_child;

typedef struct bt_node {
    atomic_uint refs;
    uint8_t level;
    uint8_t in_cache;   /* guarded by the cache mutex */
    uint8_t referenced; /* CLOCK bit, guarded by the cache mutex */
    uint32_t n;
    uint32_t raw_len;
    uint64_t count; /* leaf entries in this subtree */
    uint64_t off;   /* record offset: the cache key with file */
    const store_file *file;
    size_t mem; /* bytes charged to the cache */
    struct bt_node *prev, *next; /* cache recency list */
    bt_child *child;                     /* NULL for leaves */
    const uint8_t *raw;
    bt_ent ent[];
} bt_node;

static inline store_slice bt_key(const bt_node *nd, uint32_t i)
{
    return (store_slice){nd->raw + nd->ent[i].koff, nd->ent[i].kn};
}
static inline store_slice bt_val(const bt_node *nd, uint32_t i)
{
    return (store_slice){nd->raw + nd->ent[i].voff, nd->ent[i].vn};
}
static inline store_ptr bt_child_ptr(const bt_node *nd, uint32_t i)
{
    return (store_ptr){nd->child[i].off, nd->child[i].size};
}

static inline int bt_cmp_bytes(store_slice a, store_slice b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (c)
        return c;
    return a.n < b.n ? -1 : a.n > b.n;
}

static inline int bt_cmp(const store_btree_ops *ops, store_slice a, store_slice b)
{
    if (ops && ops->compare)
        return ops->compare(ops->ctx, a, b);
    return bt_cmp_bytes(a, b);
}

/* The first 8 bytes of a key as a big-endian integer, zero-padded: in the
 * default (memcmp) order, keys whose prefixes differ compare as their
 * prefixes do, so a search compares integers held in the entry table and
 * reads key bytes only on a tie.  That keeps a binary search on the table's
 * cache lines instead of one more line per probe in the record copy. */
static inline uint64_t bt_prefix(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    if (n >= 8) {
        memcpy(&v, p, 8);
        return be64toh(v);
    }
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (56 - 8 * i);
    return v;
}

/* First index i in [from, n) whose key is >= key (strict: > key); n if none. */
static inline uint32_t bt_search(const store_btree_ops *ops, const bt_node *nd, uint32_t from, store_slice key,
                                 int strict)
{
    uint32_t lo = from, hi = nd->n;
    if (ops && ops->compare) {
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            int c = ops->compare(ops->ctx, bt_key(nd, mid), key);
            if (c < 0 || (strict && c == 0))
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
    const uint64_t kp = bt_prefix(key.p, key.n);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint64_t ep = nd->ent[mid].prefix;
        int c = ep < kp ? -1 : ep > kp ? 1 : bt_cmp_bytes(bt_key(nd, mid), key);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Decodes and validates a node record read from offset off (children must
 * lie below off).  On DV_ERR_CORRUPT *why names the failed check; nothing is
 * logged (the caller knows the file name). */
int bt_node_decode(const uint8_t *rec, size_t len, uint64_t off, const store_btree_ops *ops, bt_node **out,
                   const char **why);
void bt_node_release(bt_node *nd);
/* One allocation for a node of n entries and raw_len record bytes: header,
 * entry table, child table (level > 0), raw.  refs = 1, off/count/file 0;
 * the caller fills the tables and the record.  NULL when out of memory. */
bt_node *bt_node_alloc(unsigned level, uint32_t n, size_t raw_len);

/* Reads the node p points to, expecting it at level `level` with `count`
 * entries below it (what the parent or root claims): through the cache when
 * the tree has one.  Corruption is logged with the file name and offset. */
int bt_node_load(const store_btree *t, store_ptr p, unsigned level, uint64_t count, bt_node **out);

/* Root encoding. */
typedef struct bt_root {
    unsigned height;
    store_ptr ptr;
    uint64_t count;
    store_slice red;
} bt_root;
/* 1 = a tree, 0 = empty, DV_ERR_CORRUPT = malformed. */
int bt_root_parse(const uint8_t *root, size_t len, bt_root *out);
int bt_root_encode(buf_t *out, unsigned height, store_ptr ptr, uint64_t count, store_slice red);

/* Cache internals (btree_cache.c). */
bt_node *bt_cache_lookup(store_btree_cache *c, const store_file *f, uint64_t off);
/* Inserts nd (caller's reference is kept) and returns the resident node for
 * (file, off): nd itself, or an equal node another thread inserted first (nd
 * is then released). */
bt_node *bt_cache_insert(store_btree_cache *c, bt_node *nd);
/* Drops nd from the cache if it is there (the caller's reference is kept):
 * a modification superseded it, so only older snapshots can still read it,
 * and they reload it if they do. */
void bt_cache_retire(store_btree_cache *c, bt_node *nd);

#endif
