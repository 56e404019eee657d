/*
 * btree_model.h — a deliberately simple in-memory model of store_btree for
 * tests: a sorted array searched with the same compare, plus reduce ops
 * whose answers the model can compute independently.
 *
 * The "sum" reduction is 16 bytes: u64le row count | u64le sum of each
 * value's first byte (0 for an empty value).  Carrying the count as well as
 * the sum means a reduction that lost or double-counted a row is caught even
 * when the row's byte is 0.
 */
#ifndef DV_TESTS_STORE_BTREE_MODEL_H
#define DV_TESTS_STORE_BTREE_MODEL_H

#include "store/btree.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bm_entry {
    uint8_t *k, *v;
    size_t kn, vn;
} bm_entry;

typedef struct bm_model {
    bm_entry *e;
    size_t n, cap;
    const store_btree_ops *ops;
} bm_model;

void bm_init(bm_model *m, const store_btree_ops *ops);
void bm_free(bm_model *m);
void bm_clone(bm_model *dst, const bm_model *src);
/* First index whose key is >= key (strict: > key). */
size_t bm_search(const bm_model *m, store_slice key, int strict);
/* Applies actions in order (they need not be sorted). */
void bm_apply(bm_model *m, const store_btree_action *acts, size_t n);
/* The rows of a range as ascending indices [*i0, *i1) (empty: i0 == i1). */
void bm_range(const bm_model *m, const store_btree_range *r, size_t *i0, size_t *i1);
/* Sum reduction of rows [i0, i1). */
void bm_sum(const bm_model *m, size_t i0, size_t i1, uint64_t *count, uint64_t *sum);
static inline store_slice bm_key(const bm_model *m, size_t i) { return (store_slice){m->e[i].k, m->e[i].kn}; }
static inline store_slice bm_val(const bm_model *m, size_t i) { return (store_slice){m->e[i].v, m->e[i].vn}; }

int bm_cmp(const store_btree_ops *ops, store_slice a, store_slice b);
int bm_slice_eq(store_slice a, store_slice b);

/* memcmp order + sum; reverse memcmp order + sum; memcmp order, counts only. */
extern const store_btree_ops bm_sum_ops;
extern const store_btree_ops bm_rev_sum_ops;
/* Decodes a sum reduction; 0 on success, -1 if malformed. */
int bm_red_decode(store_slice red, uint64_t *count, uint64_t *sum);

#endif
