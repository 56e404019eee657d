/*
 * reduce.c — the built-in reduce functions (see reduce.h for the forms).
 *
 * _sum keeps a small tree of accumulators (sval): a number, an array of
 * numbers, or an object of svals, mirroring couch_query_servers:sum_values.
 * The first object summed keeps its member order; combining two objects
 * sorts both by key bytes and merges, as CouchDB's sum_objects does on
 * lists:sort'ed proplists.  An invalid value turns the whole sum into
 * CouchDB's builtin_reduce_error object, which every later combination
 * passes through unchanged.
 */
#include "views/reduce.h"

#include "base/status.h"
#include "json/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SUM_ERROR                                                                                                    \
    "The _sum function requires that map values be numbers, arrays of numbers, or objects. Objects cannot be "     \
    "mixed with other data structures. Objects can be arbitrarily nested, provided that the values for all fields " \
    "are themselves numbers, arrays of numbers, or objects."

/* CouchDB's reduce_limit for _sum: an output over 4906 bytes that is more
 * than half its input is an error (query_server_config reduce_limit). */
#define SUM_LIMIT_THRESHOLD 4906
#define SUM_LIMIT_RATIO 2.0

int view_reduce_kind_of(const char *src, size_t n)
{
    static const struct {
        const char *name;
        int kind;
    } builtins[] = {{"_sum", VIEW_REDUCE_SUM},
                    {"_count", VIEW_REDUCE_COUNT},
                    {"_stats", VIEW_REDUCE_STATS},
                    {"_approx_count_distinct", VIEW_REDUCE_APPROX_DISTINCT}};
    while (n && (*src == ' ' || *src == '\t' || *src == '\n' || *src == '\r')) {
        src++;
        n--;
    }
    if (n == 0 || src[0] != '_')
        return VIEW_REDUCE_JS;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        size_t k = strlen(builtins[i].name);
        if (n >= k && !memcmp(src, builtins[i].name, k))
            return builtins[i].kind;
    }
    return -1;
}

/* ---- numbers ------------------------------------------------------------------ */

typedef struct num {
    int is_int;
    int64_t i;
    double d;
} num;

static int num_parse(const json_val *v, num *out)
{
    if (!json_is_number(v))
        return DV_ERR_INVALID;
    if (json_get_i64(v, &out->i) == DV_OK) {
        out->is_int = 1;
        out->d = (double)out->i;
        return DV_OK;
    }
    out->is_int = 0;
    if (json_get_double(v, &out->d) != DV_OK)
        return DV_ERR_INVALID;
    return DV_OK;
}

static num num_add(num a, num b)
{
    num r = {0, 0, 0};
    if (a.is_int && b.is_int && !__builtin_add_overflow(a.i, b.i, &r.i)) {
        r.is_int = 1;
        r.d = (double)r.i;
        return r;
    }
    r.d = (a.is_int ? (double)a.i : a.d) + (b.is_int ? (double)b.i : b.d);
    return r;
}

static num num_mul(num a, num b)
{
    num r = {0, 0, 0};
    if (a.is_int && b.is_int && !__builtin_mul_overflow(a.i, b.i, &r.i)) {
        r.is_int = 1;
        r.d = (double)r.i;
        return r;
    }
    r.d = (a.is_int ? (double)a.i : a.d) * (b.is_int ? (double)b.i : b.d);
    return r;
}

static double num_d(num a) { return a.is_int ? (double)a.i : a.d; }

static int num_write(json_writer *w, num a)
{
    if (a.is_int)
        return json_write_i64(w, a.i);
    if (!isfinite(a.d))
        return json_write_null(w); /* JSON has no infinity; CouchDB would crash */
    return json_write_double(w, a.d);
}

/* ---- _sum ----------------------------------------------------------------------- */

enum { SV_ZERO = 0, SV_NUM, SV_ARR, SV_OBJ };

typedef struct sval {
    int type;
    num n;
    struct sval *items; /* SV_ARR: numbers; SV_OBJ: values */
    char **keys;        /* SV_OBJ */
    size_t *keylen;
    size_t len, cap;
} sval;

typedef struct sum_state {
    sval acc;
    int failed;       /* acc is replaced by error */
    buf_t error;      /* the builtin_reduce_error object (JSON) */
} sum_state;

static void sval_free(sval *s)
{
    for (size_t i = 0; i < s->len; i++) {
        if (s->items)
            sval_free(&s->items[i]);
        if (s->keys)
            free(s->keys[i]);
    }
    free(s->items);
    free(s->keys);
    free(s->keylen);
    memset(s, 0, sizeof *s);
}

static int sval_grow(sval *s)
{
    if (s->len < s->cap)
        return DV_OK;
    size_t nc = s->cap ? s->cap * 2 : 4;
    sval *ni = realloc(s->items, nc * sizeof *ni);
    if (!ni)
        return DV_ERR_NOMEM;
    s->items = ni;
    if (s->type == SV_OBJ) {
        char **nk = realloc(s->keys, nc * sizeof *nk);
        if (!nk)
            return DV_ERR_NOMEM;
        s->keys = nk;
        size_t *nl = realloc(s->keylen, nc * sizeof *nl);
        if (!nl)
            return DV_ERR_NOMEM;
        s->keylen = nl;
    }
    s->cap = nc;
    return DV_OK;
}

/* Builds an sval from a JSON value (numbers, arrays of numbers, objects of
 * those).  DV_ERR_INVALID for anything else. */
static int sval_from(const json_val *v, sval *out)
{
    memset(out, 0, sizeof *out);
    if (json_is_number(v)) {
        out->type = SV_NUM;
        return num_parse(v, &out->n);
    }
    if (json_is_array(v)) {
        out->type = SV_ARR;
        json_iter it = json_iter_begin(v);
        const json_val *x;
        while (json_iter_elem(&it, &x)) {
            int rc = sval_grow(out);
            if (rc)
                return rc;
            sval *e = &out->items[out->len];
            memset(e, 0, sizeof *e);
            e->type = SV_NUM;
            out->len++;
            if (num_parse(x, &e->n) != DV_OK)
                return DV_ERR_INVALID;
        }
        return DV_OK;
    }
    if (json_is_object(v)) {
        out->type = SV_OBJ;
        json_iter it = json_iter_begin(v);
        const json_val *k, *x;
        while (json_iter_member(&it, &k, &x)) {
            int rc = sval_grow(out);
            if (rc)
                return rc;
            size_t kl;
            const char *ks = json_str(k, &kl);
            char *kc = malloc(kl + 1);
            if (!kc)
                return DV_ERR_NOMEM;
            memcpy(kc, ks, kl);
            kc[kl] = 0;
            out->keys[out->len] = kc;
            out->keylen[out->len] = kl;
            sval *e = &out->items[out->len++];
            if ((rc = sval_from(x, e)) != DV_OK)
                return rc;
        }
        return DV_OK;
    }
    return DV_ERR_INVALID;
}

static int key_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

typedef struct kidx {
    const char *k;
    size_t n;
    size_t i;
} kidx;

static int kidx_cmp(const void *x, const void *y)
{
    const kidx *a = x, *b = y;
    return key_cmp(a->k, a->n, b->k, b->n);
}

static int sval_add(sval *acc, sval *v);

/* Array + array (numbers only), padding the shorter with the longer's tail. */
static int add_arrays(sval *acc, sval *v)
{
    for (size_t i = 0; i < v->len; i++) {
        if (v->items[i].type != SV_NUM)
            return DV_ERR_INVALID;
        if (i < acc->len) {
            if (acc->items[i].type != SV_NUM)
                return DV_ERR_INVALID;
            acc->items[i].n = num_add(acc->items[i].n, v->items[i].n);
        } else {
            int rc = sval_grow(acc);
            if (rc)
                return rc;
            acc->items[acc->len++] = v->items[i];
            memset(&v->items[i], 0, sizeof v->items[i]);
        }
    }
    return DV_OK;
}

/* Object + object: both sorted by key, merged, common keys summed.  Takes
 * the members of v (v is left empty). */
static int add_objects(sval *acc, sval *v)
{
    sval m;
    memset(&m, 0, sizeof m);
    m.type = SV_OBJ;
    kidx *a = calloc(acc->len + 1, sizeof *a), *b = calloc(v->len + 1, sizeof *b);
    int rc = a && b ? DV_OK : DV_ERR_NOMEM;
    for (size_t i = 0; rc == DV_OK && i < acc->len; i++)
        a[i] = (kidx){acc->keys[i], acc->keylen[i], i};
    for (size_t i = 0; rc == DV_OK && i < v->len; i++)
        b[i] = (kidx){v->keys[i], v->keylen[i], i};
    if (rc == DV_OK) {
        qsort(a, acc->len, sizeof *a, kidx_cmp);
        qsort(b, v->len, sizeof *b, kidx_cmp);
    }
    size_t i = 0, j = 0;
    while (rc == DV_OK && (i < acc->len || j < v->len)) {
        int c = i == acc->len ? 1 : j == v->len ? -1 : key_cmp(a[i].k, a[i].n, b[j].k, b[j].n);
        if ((rc = sval_grow(&m)) != DV_OK)
            break;
        sval *src = c <= 0 ? acc : v;
        size_t si = c <= 0 ? a[i].i : b[j].i;
        m.keys[m.len] = src->keys[si];
        m.keylen[m.len] = src->keylen[si];
        src->keys[si] = NULL;
        m.items[m.len] = src->items[si];
        memset(&src->items[si], 0, sizeof src->items[si]);
        m.len++;
        if (c == 0) {
            rc = sval_add(&m.items[m.len - 1], &v->items[b[j].i]);
            j++;
        }
        if (c <= 0)
            i++;
        else
            j++;
    }
    free(a);
    free(b);
    sval_free(acc);
    sval_free(v);
    *acc = m;
    return rc;
}

/* acc += v (sum_values).  v's storage may be taken over. */
static int sval_add(sval *acc, sval *v)
{
    if (acc->type == SV_ZERO) {
        *acc = *v;
        memset(v, 0, sizeof *v);
        return DV_OK;
    }
    if (v->type == SV_NUM && acc->type == SV_NUM) {
        acc->n = num_add(acc->n, v->n);
        return DV_OK;
    }
    if (v->type == SV_OBJ || acc->type == SV_OBJ) {
        if (v->type != SV_OBJ || acc->type != SV_OBJ)
            return DV_ERR_INVALID;
        return add_objects(acc, v);
    }
    /* numbers and arrays: a number acts as a one-element array */
    if (acc->type == SV_NUM) {
        sval arr;
        memset(&arr, 0, sizeof arr);
        arr.type = SV_ARR;
        if (sval_grow(&arr) != DV_OK)
            return DV_ERR_NOMEM;
        arr.items[0] = *acc;
        arr.len = 1;
        *acc = arr;
    }
    if (v->type == SV_NUM) {
        sval tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.type = SV_ARR;
        tmp.items = v;
        tmp.len = 1;
        int rc = add_arrays(acc, &tmp);
        return rc;
    }
    return add_arrays(acc, v);
}

static int sval_write(json_writer *w, const sval *s)
{
    switch (s->type) {
    case SV_ZERO:
        return json_write_i64(w, 0);
    case SV_NUM:
        return num_write(w, s->n);
    case SV_ARR:
        json_write_begin_array(w);
        for (size_t i = 0; i < s->len; i++)
            sval_write(w, &s->items[i]);
        return json_write_end_array(w);
    default:
        json_write_begin_object(w);
        for (size_t i = 0; i < s->len; i++) {
            json_write_key(w, s->keys[i], s->keylen[i]);
            sval_write(w, &s->items[i]);
        }
        return json_write_end_object(w);
    }
}

/* An error object in a value: it is CouchDB's builtin_reduce_error. */
static int is_reduce_error(const json_val *v)
{
    const json_val *e = json_is_object(v) ? json_object_get_cstr(v, "error") : NULL;
    return e && json_str_eq(e, "builtin_reduce_error");
}

static void sum_fail(sum_state *st, const json_val *cause)
{
    json_writer w;
    buf_reset(&st->error);
    json_writer_init(&w, &st->error);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "error");
    json_write_cstr(&w, "builtin_reduce_error");
    json_write_key_cstr(&w, "reason");
    json_write_cstr(&w, SUM_ERROR);
    if (cause) {
        json_write_key_cstr(&w, "caused_by");
        json_write_value(&w, cause);
    }
    json_write_end_object(&w);
    st->failed = 1;
}

/* Adds one value (JSON text) to the sum. */
static int sum_one(sum_state *st, store_slice text, json_doc *jd)
{
    if (st->failed)
        return DV_OK;
    int rc = json_doc_parse(jd, text.p, text.n, 0, NULL);
    if (rc != DV_OK)
        return rc == DV_ERR_NOMEM ? rc : DV_ERR_CORRUPT;
    const json_val *v = json_doc_root(jd);
    if (is_reduce_error(v)) {
        buf_reset(&st->error);
        rc = buf_append(&st->error, text.p, text.n);
        st->failed = 1;
        return rc;
    }
    sval s;
    rc = sval_from(v, &s);
    if (rc == DV_OK)
        rc = sval_add(&st->acc, &s);
    sval_free(&s);
    if (rc == DV_ERR_INVALID) {
        sum_fail(st, v);
        return DV_OK;
    }
    return rc;
}

static int sum_finish(sum_state *st, size_t in_bytes, buf_t *out)
{
    int rc;
    if (st->failed) {
        rc = buf_append(out, st->error.data, st->error.len);
    } else {
        size_t start = out->len;
        json_writer w;
        json_writer_init(&w, out);
        rc = sval_write(&w, &st->acc);
        if (rc == DV_OK)
            rc = w.err;
        size_t outn = out->len - start;
        if (rc == DV_OK && outn > SUM_LIMIT_THRESHOLD && (double)outn * SUM_LIMIT_RATIO > (double)in_bytes) {
            out->len = start;
            rc = buf_printf(out,
                            "{\"error\":\"builtin_reduce_error\",\"reason\":\"Reduce output must shrink more rapidly: "
                            "input size: %zu output size: %zu\"}",
                            in_bytes, outn);
        }
    }
    sval_free(&st->acc);
    buf_free(&st->error);
    return rc;
}

static int sum_rows(const store_slice *vals, size_t n, buf_t *out)
{
    sum_state st;
    memset(&st, 0, sizeof st);
    json_doc jd = JSON_DOC_INIT;
    size_t in_bytes = 0;
    int rc = DV_OK;
    for (size_t i = 0; rc == DV_OK && i < n; i++) {
        in_bytes += vals[i].n;
        rc = sum_one(&st, vals[i], &jd);
    }
    json_doc_free(&jd);
    if (rc != DV_OK) {
        sval_free(&st.acc);
        buf_free(&st.error);
        return rc;
    }
    return sum_finish(&st, in_bytes, out);
}

/* ---- _count ----------------------------------------------------------------------- */

static int count_rereduce(const store_slice *reds, size_t n, buf_t *out)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        for (size_t k = 0; k < reds[i].n; k++) {
            uint8_t c = reds[i].p[k];
            if (c < '0' || c > '9')
                return DV_ERR_CORRUPT;
            v = v * 10 + (uint64_t)(c - '0');
        }
        total += v;
    }
    return buf_printf(out, "%llu", (unsigned long long)total);
}

/* ---- _stats ---------------------------------------------------------------------- */

typedef struct stats {
    num sum, count, min, max, sumsqr;
} stats;

typedef struct stats_acc {
    int set, is_array;
    stats one;
    stats *arr;
    size_t len;
    int failed;
    char reason[160];
} stats_acc;

static int stats_from_number(const json_val *v, stats *s)
{
    num n;
    if (num_parse(v, &n) != DV_OK)
        return DV_ERR_INVALID;
    s->sum = s->min = s->max = n;
    s->count = (num){1, 1, 1.0};
    s->sumsqr = num_mul(n, n);
    return DV_OK;
}

/* A number, or a pre-reduced {"sum","count","min","max","sumsqr"}. */
static int stats_from(const json_val *v, stats *s)
{
    if (json_is_number(v))
        return stats_from_number(v, s);
    if (!json_is_object(v))
        return DV_ERR_INVALID;
    static const char *const f[] = {"sum", "count", "min", "max", "sumsqr"};
    num *dst[] = {&s->sum, &s->count, &s->min, &s->max, &s->sumsqr};
    for (int i = 0; i < 5; i++) {
        const json_val *x = json_object_get_cstr(v, f[i]);
        if (!x || num_parse(x, dst[i]) != DV_OK)
            return DV_ERR_INVALID;
    }
    return DV_OK;
}

static void stats_add(stats *a, const stats *b)
{
    /* the stats of no rows (all zero) are neutral */
    if (num_d(b->count) == 0)
        return;
    if (num_d(a->count) == 0) {
        *a = *b;
        return;
    }
    a->sum = num_add(a->sum, b->sum);
    a->count = num_add(a->count, b->count);
    if (num_d(b->min) < num_d(a->min))
        a->min = b->min;
    if (num_d(b->max) > num_d(a->max))
        a->max = b->max;
    a->sumsqr = num_add(a->sumsqr, b->sumsqr);
}

static int stats_one(stats_acc *st, const json_val *v)
{
    if (json_is_array(v)) {
        size_t n = json_len(v), i = 0;
        if (!st->set) {
            st->set = st->is_array = 1;
            st->len = n;
            if (!(st->arr = calloc(n ? n : 1, sizeof *st->arr)))
                return DV_ERR_NOMEM;
            json_iter it = json_iter_begin(v);
            const json_val *x;
            while (json_iter_elem(&it, &x))
                if (stats_from(x, &st->arr[i++]) != DV_OK)
                    return DV_ERR_INVALID;
            return DV_OK;
        }
        if (!st->is_array)
            return DV_ERR_INVALID;
        /* lists:zipwith: both lists must have the same length */
        if (n != st->len)
            return DV_ERR_INVALID;
        json_iter it = json_iter_begin(v);
        const json_val *x;
        while (json_iter_elem(&it, &x)) {
            stats s;
            if (stats_from(x, &s) != DV_OK)
                return DV_ERR_INVALID;
            stats_add(&st->arr[i++], &s);
        }
        return DV_OK;
    }
    stats s;
    if (stats_from(v, &s) != DV_OK || (st->set && st->is_array))
        return DV_ERR_INVALID;
    if (!st->set) {
        st->set = 1;
        st->one = s;
    } else {
        stats_add(&st->one, &s);
    }
    return DV_OK;
}

static void stats_write_one(json_writer *w, const stats *s)
{
    json_write_begin_object(w);
    json_write_key_cstr(w, "sum");
    num_write(w, s->sum);
    json_write_key_cstr(w, "count");
    num_write(w, s->count);
    json_write_key_cstr(w, "min");
    num_write(w, s->min);
    json_write_key_cstr(w, "max");
    num_write(w, s->max);
    json_write_key_cstr(w, "sumsqr");
    num_write(w, s->sumsqr);
    json_write_end_object(w);
}

static int stats_rows(const store_slice *vals, size_t n, buf_t *out)
{
    stats_acc st;
    memset(&st, 0, sizeof st);
    json_doc jd = JSON_DOC_INIT;
    int rc = DV_OK;
    for (size_t i = 0; rc == DV_OK && i < n && !st.failed; i++) {
        if ((rc = json_doc_parse(&jd, vals[i].p, vals[i].n, 0, NULL)) != DV_OK) {
            rc = rc == DV_ERR_NOMEM ? rc : DV_ERR_CORRUPT;
            break;
        }
        const json_val *v = json_doc_root(&jd);
        if (is_reduce_error(v)) {
            rc = buf_append(out, vals[i].p, vals[i].n);
            st.failed = 2; /* passed through as is */
            break;
        }
        rc = stats_one(&st, v);
        if (rc == DV_ERR_INVALID) {
            st.failed = 1;
            rc = DV_OK;
        }
    }
    json_doc_free(&jd);
    if (rc == DV_OK && st.failed != 2) {
        json_writer w;
        json_writer_init(&w, out);
        if (st.failed) {
            json_write_begin_object(&w);
            json_write_key_cstr(&w, "error");
            json_write_cstr(&w, "builtin_reduce_error");
            json_write_key_cstr(&w, "reason");
            json_write_cstr(&w, "The _stats function requires that map values be numbers or arrays of numbers, "
                                "or objects with sum, count, min, max and sumsqr");
            json_write_end_object(&w);
        } else if (!st.set) {
            stats zero = {{1, 0, 0}, {1, 0, 0}, {1, 0, 0}, {1, 0, 0}, {1, 0, 0}};
            stats_write_one(&w, &zero);
        } else if (st.is_array) {
            json_write_begin_array(&w);
            for (size_t i = 0; i < st.len; i++)
                stats_write_one(&w, &st.arr[i]);
            json_write_end_array(&w);
        } else {
            stats_write_one(&w, &st.one);
        }
        rc = w.err;
    }
    free(st.arr);
    return rc;
}

/* ---- _approx_count_distinct (HyperLogLog) ------------------------------------------ */

#define HLL_P 11
#define HLL_M (1u << HLL_P)

static void hll_add(uint8_t *reg, const void *p, size_t n)
{
    uint64_t h = XXH3_64bits(p, n);
    uint32_t idx = (uint32_t)(h >> (64 - HLL_P));
    uint64_t rest = h << HLL_P;
    uint8_t rank = rest ? (uint8_t)(__builtin_clzll(rest) + 1) : (uint8_t)(64 - HLL_P + 1);
    if (rank > reg[idx])
        reg[idx] = rank;
}

static int hll_rows(const store_slice *keys, size_t n, buf_t *out)
{
    int rc = buf_reserve(out, HLL_M);
    if (rc)
        return rc;
    uint8_t *reg = out->data + out->len;
    memset(reg, 0, HLL_M);
    for (size_t i = 0; i < n; i++)
        hll_add(reg, keys[i].p, keys[i].n);
    out->len += HLL_M;
    return DV_OK;
}

static int hll_union(const store_slice *reds, size_t n, buf_t *out)
{
    int rc = buf_reserve(out, HLL_M);
    if (rc)
        return rc;
    uint8_t *reg = out->data + out->len;
    memset(reg, 0, HLL_M);
    for (size_t i = 0; i < n; i++) {
        if (reds[i].n != HLL_M)
            return DV_ERR_CORRUPT;
        for (size_t k = 0; k < HLL_M; k++)
            if (reds[i].p[k] > reg[k])
                reg[k] = reds[i].p[k];
    }
    out->len += HLL_M;
    return DV_OK;
}

/* The standard estimator with the small-range (linear counting) correction. */
static uint64_t hll_estimate(const uint8_t *reg)
{
    double sum = 0, m = HLL_M;
    size_t zeros = 0;
    for (size_t k = 0; k < HLL_M; k++) {
        sum += ldexp(1.0, -(int)reg[k]);
        zeros += reg[k] == 0;
    }
    double alpha = 0.7213 / (1.0 + 1.079 / m);
    double e = alpha * m * m / sum;
    if (e <= 2.5 * m && zeros)
        e = m * log(m / (double)zeros);
    return (uint64_t)llround(e);
}

/* ---- dispatch --------------------------------------------------------------------- */

int view_reduce(view_reduce_kind k, const store_slice *keys, const store_slice *vals, size_t n, buf_t *out)
{
    switch (k) {
    case VIEW_REDUCE_SUM:
        return sum_rows(vals, n, out);
    case VIEW_REDUCE_COUNT:
        return buf_printf(out, "%zu", n);
    case VIEW_REDUCE_STATS:
        return stats_rows(vals, n, out);
    case VIEW_REDUCE_APPROX_DISTINCT:
        return hll_rows(keys, n, out);
    default:
        return DV_ERR_INVALID;
    }
}

int view_rereduce(view_reduce_kind k, const store_slice *reds, size_t n, buf_t *out)
{
    switch (k) {
    case VIEW_REDUCE_SUM:
        return sum_rows(reds, n, out);
    case VIEW_REDUCE_COUNT:
        return count_rereduce(reds, n, out);
    case VIEW_REDUCE_STATS:
        return stats_rows(reds, n, out);
    case VIEW_REDUCE_APPROX_DISTINCT:
        return hll_union(reds, n, out);
    default:
        return DV_ERR_INVALID;
    }
}

int view_reduce_finalize(view_reduce_kind k, store_slice red, buf_t *out)
{
    if (k == VIEW_REDUCE_APPROX_DISTINCT) {
        if (red.n == 0)
            return buf_append_byte(out, '0');
        if (red.n != HLL_M)
            return DV_ERR_CORRUPT;
        return buf_printf(out, "%llu", (unsigned long long)hll_estimate(red.p));
    }
    if (red.n == 0)
        return view_reduce(k, NULL, NULL, 0, out);
    return buf_append(out, red.p, red.n);
}
