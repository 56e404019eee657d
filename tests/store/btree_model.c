/*
 * btree_model.c — the reference model for the B+tree tests (see
 * btree_model.h).  O(n) inserts; only ever used with a few thousand rows.
 */
#include "store/btree_model.h"

#include "base/buf.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

static int memcmp_order(store_slice a, store_slice b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (c)
        return c;
    return a.n < b.n ? -1 : a.n > b.n;
}

static int rev_compare(void *ctx, store_slice a, store_slice b)
{
    (void)ctx;
    return -memcmp_order(a, b);
}

static int sum_reduce(void *ctx, const store_slice *keys, const store_slice *vals, size_t n, buf_t *out)
{
    (void)ctx;
    (void)keys;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += vals[i].n ? vals[i].p[0] : 0;
    int rc = buf_put_u64le(out, n);
    return rc ? rc : buf_put_u64le(out, sum);
}

static int sum_rereduce(void *ctx, const store_slice *reds, size_t n, buf_t *out)
{
    (void)ctx;
    uint64_t count = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t c, s;
        if (bm_red_decode(reds[i], &c, &s))
            return DV_ERR_CORRUPT;
        count += c;
        sum += s;
    }
    int rc = buf_put_u64le(out, count);
    return rc ? rc : buf_put_u64le(out, sum);
}

const store_btree_ops bm_sum_ops = {NULL, sum_reduce, sum_rereduce, NULL};
const store_btree_ops bm_rev_sum_ops = {rev_compare, sum_reduce, sum_rereduce, NULL};

int bm_red_decode(store_slice red, uint64_t *count, uint64_t *sum)
{
    if (red.n != 16)
        return -1;
    *count = dv_load_u64le(red.p);
    *sum = dv_load_u64le(red.p + 8);
    return 0;
}

int bm_cmp(const store_btree_ops *ops, store_slice a, store_slice b)
{
    return ops && ops->compare ? ops->compare(ops->ctx, a, b) : memcmp_order(a, b);
}

int bm_slice_eq(store_slice a, store_slice b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }

void bm_init(bm_model *m, const store_btree_ops *ops)
{
    memset(m, 0, sizeof *m);
    m->ops = ops;
}

void bm_free(bm_model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].k);
        free(m->e[i].v);
    }
    free(m->e);
    memset(m, 0, sizeof *m);
}

static uint8_t *dup(store_slice s)
{
    uint8_t *p = malloc(s.n ? s.n : 1);
    if (!p)
        abort();
    if (s.n)
        memcpy(p, s.p, s.n);
    return p;
}

void bm_clone(bm_model *dst, const bm_model *src)
{
    bm_init(dst, src->ops);
    dst->cap = src->n ? src->n : 1;
    dst->e = malloc(dst->cap * sizeof *dst->e);
    if (!dst->e)
        abort();
    for (size_t i = 0; i < src->n; i++)
        dst->e[i] = (bm_entry){dup(bm_key(src, i)), dup(bm_val(src, i)), src->e[i].kn, src->e[i].vn};
    dst->n = src->n;
}

size_t bm_search(const bm_model *m, store_slice key, int strict)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = bm_cmp(m->ops, bm_key(m, mid), key);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void bm_apply(bm_model *m, const store_btree_action *acts, size_t n)
{
    for (size_t a = 0; a < n; a++) {
        size_t i = bm_search(m, acts[a].key, 0);
        int found = i < m->n && bm_cmp(m->ops, bm_key(m, i), acts[a].key) == 0;
        if (acts[a].op == STORE_BTREE_DEL) {
            if (found) {
                free(m->e[i].k);
                free(m->e[i].v);
                memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof *m->e);
                m->n--;
            }
            continue;
        }
        if (found) {
            free(m->e[i].v);
            m->e[i].v = dup(acts[a].val);
            m->e[i].vn = acts[a].val.n;
            continue;
        }
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 64;
            m->e = realloc(m->e, m->cap * sizeof *m->e);
            if (!m->e)
                abort();
        }
        memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof *m->e);
        m->e[i] = (bm_entry){dup(acts[a].key), dup(acts[a].val), acts[a].key.n, acts[a].val.n};
        m->n++;
    }
}

void bm_range(const bm_model *m, const store_btree_range *r, size_t *i0, size_t *i1)
{
    int has_lo = r->descending ? r->has_end : r->has_start;
    int lo_incl = r->descending ? r->end_inclusive : r->start_inclusive;
    store_slice lo = r->descending ? r->end : r->start;
    int has_hi = r->descending ? r->has_start : r->has_end;
    int hi_incl = r->descending ? r->start_inclusive : r->end_inclusive;
    store_slice hi = r->descending ? r->start : r->end;
    *i0 = has_lo ? bm_search(m, lo, !lo_incl) : 0;
    *i1 = has_hi ? bm_search(m, hi, hi_incl) : m->n;
    if (*i1 < *i0)
        *i1 = *i0;
}

void bm_sum(const bm_model *m, size_t i0, size_t i1, uint64_t *count, uint64_t *sum)
{
    *count = i1 - i0;
    *sum = 0;
    for (size_t i = i0; i < i1; i++)
        *sum += m->e[i].vn ? m->e[i].v[0] : 0;
}
