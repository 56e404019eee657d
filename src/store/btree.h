/*
 * btree.h — copy-on-write, append-only B+tree over a store_file.
 *
 * A tree is named by its root, an opaque encoded byte string (empty = empty
 * tree) that the owner keeps in its commit header.  Nodes are immutable
 * records; a modification appends the changed path and returns a new root,
 * so any older root stays a consistent snapshot for readers (MVCC).
 *
 * Every inner-node entry carries, for its subtree: the count of leaf entries
 * (always) and the reduction computed by ops->reduce / ops->rereduce (when
 * set).  Counting or reducing any key range therefore costs O(log n) node
 * reads, not O(rows).
 *
 * Keys and values are byte strings.  Order is ops->compare (NULL: memcmp
 * order, a shorter prefix first).  Keys are unique within a tree.
 *
 * Node size: nodes are split when their encoding passes node_bytes
 * (default 4096), so fan-out adapts to key sizes.
 *
 * Thread safety: any number of readers may use different or the same roots
 * concurrently with one modifier; the cache is internally locked.
 */
#ifndef DV_STORE_BTREE_H
#define DV_STORE_BTREE_H

#include "base/buf.h"
#include "store/file.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_slice {
    const uint8_t *p;
    size_t n;
} store_slice;

typedef struct store_btree_ops {
    /* <0, 0, >0 like memcmp.  Must be a total order, pure, thread-safe. */
    int (*compare)(void *ctx, store_slice a, store_slice b);
    /* Reduction of n leaf entries into out (appended to an empty buffer).
     * NULL: the tree keeps counts only. */
    int (*reduce)(void *ctx, const store_slice *keys, const store_slice *vals, size_t n, buf_t *out);
    /* Combination of n reductions into out.  Required when reduce is set. */
    int (*rereduce)(void *ctx, const store_slice *reds, size_t n, buf_t *out);
    void *ctx;
} store_btree_ops;

/* A node cache shared by any number of trees and files.  Nodes are keyed by
 * (file, offset); since nodes are immutable the cache never needs
 * invalidation, only store_btree_cache_forget when a file is closed. */
typedef struct store_btree_cache store_btree_cache;
int store_btree_cache_new(size_t max_bytes, store_btree_cache **out);
void store_btree_cache_free(store_btree_cache *c);
void store_btree_cache_forget(store_btree_cache *c, const store_file *f);
size_t store_btree_cache_bytes(store_btree_cache *c); /* charged to it now */

typedef struct store_btree {
    store_file *file;
    store_btree_cache *cache; /* may be NULL: no caching */
    const store_btree_ops *ops; /* may be NULL: memcmp order, counts only */
    size_t node_bytes;          /* 0: default 4096 */
} store_btree;

/* Root accessors (root = encoded bytes; len 0 = empty tree). */
uint64_t store_btree_root_count(const uint8_t *root, size_t len);
/* The whole tree's reduction (empty slice for an empty tree / no reduce). */
int store_btree_root_reduction(const uint8_t *root, size_t len, store_slice *out);

/* Point lookup.  DV_ERR_NOTFOUND when absent; value copied into val. */
int store_btree_get(const store_btree *t, const uint8_t *root, size_t root_len, store_slice key, buf_t *val);
/* Point lookup without the copy: calls fn with the value, valid only during
 * the call (the leaf is pinned meanwhile), and returns what fn returns. */
int store_btree_get_with(const store_btree *t, const uint8_t *root, size_t root_len, store_slice key,
                         int (*fn)(void *arg, store_slice val), void *arg);

/* Batched update: acts sorted ascending by ops->compare, no key twice.
 * PUT inserts or replaces, DEL removes (absent key: no-op).  Appends the new
 * nodes (not durable until the owner commits) and writes the new root to
 * new_root (replacing its contents).  One pass: O(touched nodes). */
enum { STORE_BTREE_PUT = 1, STORE_BTREE_DEL = 2 };
typedef struct store_btree_action {
    int op;
    store_slice key;
    store_slice val; /* PUT only */
} store_btree_action;
int store_btree_modify(const store_btree *t, const uint8_t *root, size_t root_len, const store_btree_action *acts,
                       size_t n, buf_t *new_root);

/* The nodes a modification rewrote, held until the caller knows whether
 * the new root was committed.  store_btree_modify drops them from the
 * cache at once (copy-on-write leaves them to older snapshots only); a
 * caller whose commit can still fail collects them with
 * store_btree_modify_keep, then retires them once it succeeded (they leave
 * the cache) or releases them (they stay cached for the state that is
 * still current).  Zero-initialise. */
typedef struct store_btree_retired {
    store_btree_cache *cache;
    struct bt_node **v;
    size_t n, cap;
} store_btree_retired;
int store_btree_modify_keep(const store_btree *t, const uint8_t *root, size_t root_len,
                            const store_btree_action *acts, size_t n, buf_t *new_root, store_btree_retired *kept);
void store_btree_retire(store_btree_retired *kept);  /* drops them from the cache, then releases */
void store_btree_retired_free(store_btree_retired *kept); /* releases only */

/* A key range.  has_start/has_end = 0 means unbounded on that side.  With
 * descending, iteration runs from start (the high key) down to end. */
typedef struct store_btree_range {
    int has_start, start_inclusive; /* start_inclusive defaults to 1 via macro */
    store_slice start;
    int has_end, end_inclusive;
    store_slice end;
    int descending;
} store_btree_range;
#define STORE_BTREE_RANGE_ALL {0, 1, {NULL, 0}, 0, 1, {NULL, 0}, 0}

/* Streaming cursor: holds the root path, reads nodes lazily, bounded memory
 * whatever the range size.  The root bytes are copied, so the caller's root
 * buffer may change after open. */
typedef struct store_btree_cursor store_btree_cursor;
int store_btree_cursor_open(const store_btree *t, const uint8_t *root, size_t root_len,
                            const store_btree_range *r, store_btree_cursor **out);
/* 1 = a row (key/val valid until the next call or close), 0 = end, <0 error. */
int store_btree_cursor_next(store_btree_cursor *c, store_slice *key, store_slice *val);
/* Skips n rows in O(log n) node reads using subtree counts. */
int store_btree_cursor_skip(store_btree_cursor *c, uint64_t n);
void store_btree_cursor_close(store_btree_cursor *c);

/* Count (and reduction, when the tree reduces and red != NULL) of the rows in
 * a range, in O(log n) node reads: whole subtrees inside the range contribute
 * their stored count and reduction; only the two boundary paths are read.
 * An empty range gives count 0 and leaves red empty (reduce is not called). */
int store_btree_reduce_range(const store_btree *t, const uint8_t *root, size_t root_len,
                             const store_btree_range *r, uint64_t *count, buf_t *red);

#endif
