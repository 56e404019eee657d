/*
 * test_reduce.c — the built-in reduces against values computed by hand from
 * CouchDB's rules: _sum of numbers, arrays (padded), objects (merged,
 * nested) and the error object for anything else; _count; _stats of numbers,
 * arrays and pre-reduced objects; _approx_count_distinct within its error
 * bound; and reduce-then-rereduce in any split giving the same answer as
 * one reduce.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "testutil.h"
#include "views/reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static store_slice S(const char *s) { return (store_slice){(const uint8_t *)s, strlen(s)}; }

/* Reduces vals[0..n) in one go and returns a malloc'd NUL-terminated JSON. */
static char *reduce_all(view_reduce_kind k, const char *const *vals, size_t n)
{
    store_slice *v = calloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = S(vals[i]);
    buf_t red = BUF_INIT, out = BUF_INIT;
    assert_int_equal(view_reduce(k, v, v, n, &red), DV_OK);
    assert_int_equal(view_reduce_finalize(k, (store_slice){red.data, red.len}, &out), DV_OK);
    buf_append_byte(&out, 0);
    buf_free(&red);
    free(v);
    return (char *)out.data;
}

/* Reduces in two halves at split, rereduces, finalizes. */
static char *reduce_split(view_reduce_kind k, const char *const *vals, size_t n, size_t split)
{
    store_slice *v = calloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = S(vals[i]);
    buf_t a = BUF_INIT, b = BUF_INIT, r = BUF_INIT, out = BUF_INIT;
    assert_int_equal(view_reduce(k, v, v, split, &a), DV_OK);
    assert_int_equal(view_reduce(k, v + split, v + split, n - split, &b), DV_OK);
    store_slice parts[2] = {{a.data, a.len}, {b.data, b.len}};
    assert_int_equal(view_rereduce(k, parts, 2, &r), DV_OK);
    assert_int_equal(view_reduce_finalize(k, (store_slice){r.data, r.len}, &out), DV_OK);
    buf_append_byte(&out, 0);
    buf_free(&a);
    buf_free(&b);
    buf_free(&r);
    free(v);
    return (char *)out.data;
}

static void expect(view_reduce_kind k, const char *const *vals, size_t n, const char *want)
{
    char *got = reduce_all(k, vals, n);
    assert_string_equal(got, want);
    free(got);
    /* B+tree nodes are never empty: every split leaves rows on both sides */
    for (size_t split = 1; split < n; split++) {
        got = reduce_split(k, vals, n, split);
        assert_string_equal(got, want);
        free(got);
    }
}

static void test_kind_of(void **state)
{
    (void)state;
    assert_int_equal(view_reduce_kind_of("_sum", 4), VIEW_REDUCE_SUM);
    assert_int_equal(view_reduce_kind_of(" _count", 7), VIEW_REDUCE_COUNT);
    assert_int_equal(view_reduce_kind_of("_stats", 6), VIEW_REDUCE_STATS);
    assert_int_equal(view_reduce_kind_of("_approx_count_distinct", 22), VIEW_REDUCE_APPROX_DISTINCT);
    assert_int_equal(view_reduce_kind_of("function(k,v,r){return sum(v);}", 31), VIEW_REDUCE_JS);
    assert_int_equal(view_reduce_kind_of("_nope", 5), -1);
}

static void test_sum(void **state)
{
    (void)state;
    const char *ints[] = {"1", "2", "3", "-10"};
    expect(VIEW_REDUCE_SUM, ints, 4, "-4");
    const char *floats[] = {"1.5", "1.5", "2"};
    expect(VIEW_REDUCE_SUM, floats, 3, "5.0");
    const char *arrays[] = {"[1,2]", "[10]", "[1,1,1]", "5"};
    expect(VIEW_REDUCE_SUM, arrays, 4, "[17,3,1]");
    const char *big[] = {"9223372036854775807", "1"};
    char *got = reduce_all(VIEW_REDUCE_SUM, big, 2);
    assert_string_equal(got, "9.223372036854776e+18"); /* overflow: float, as Erlang would not */
    free(got);
    const char *none[] = {NULL};
    got = reduce_all(VIEW_REDUCE_SUM, none, 0);
    assert_string_equal(got, "0");
    free(got);
}

static void test_sum_objects(void **state)
{
    (void)state;
    const char *one[] = {"{\"b\":1,\"a\":2}"};
    char *got = reduce_all(VIEW_REDUCE_SUM, one, 1);
    assert_string_equal(got, "{\"b\":1,\"a\":2}"); /* a lone object keeps its order */
    free(got);
    const char *objs[] = {"{\"b\":1,\"a\":{\"x\":[1,2]}}", "{\"a\":{\"x\":[1],\"y\":5},\"c\":3}"};
    got = reduce_all(VIEW_REDUCE_SUM, objs, 2);
    assert_string_equal(got, "{\"a\":{\"x\":[2,2],\"y\":5},\"b\":1,\"c\":3}");
    free(got);
}

static void test_sum_errors(void **state)
{
    (void)state;
    const char *bad[] = {"1", "\"str\"", "2"};
    char *got = reduce_all(VIEW_REDUCE_SUM, bad, 3);
    assert_non_null(strstr(got, "\"error\":\"builtin_reduce_error\""));
    assert_non_null(strstr(got, "\"caused_by\":\"str\""));
    free(got);
    /* the error sticks through rereduce */
    got = reduce_split(VIEW_REDUCE_SUM, bad, 3, 1);
    assert_non_null(strstr(got, "builtin_reduce_error"));
    free(got);
    const char *mixed[] = {"{\"a\":1}", "[1]"};
    got = reduce_all(VIEW_REDUCE_SUM, mixed, 2);
    assert_non_null(strstr(got, "builtin_reduce_error"));
    free(got);
    const char *nested[] = {"[[1]]"};
    got = reduce_all(VIEW_REDUCE_SUM, nested, 1);
    assert_non_null(strstr(got, "builtin_reduce_error"));
    free(got);
}

static void test_sum_limit(void **state)
{
    (void)state;
    /* one array of 2,000 distinct numbers per row: the output does not shrink */
    buf_t row = BUF_INIT;
    buf_append_byte(&row, '[');
    for (int i = 0; i < 2000; i++)
        buf_printf(&row, "%s%d", i ? "," : "", i);
    buf_append_str(&row, "]");
    buf_append_byte(&row, 0);
    const char *vals[] = {(const char *)row.data};
    char *got = reduce_all(VIEW_REDUCE_SUM, vals, 1);
    assert_non_null(strstr(got, "Reduce output must shrink more rapidly"));
    free(got);
    buf_free(&row);
}

static void test_count(void **state)
{
    (void)state;
    const char *vals[] = {"1", "\"x\"", "null", "{}", "[]"};
    expect(VIEW_REDUCE_COUNT, vals, 5, "5");
}

static void test_stats(void **state)
{
    (void)state;
    const char *nums[] = {"1", "2", "3", "4"};
    expect(VIEW_REDUCE_STATS, nums, 4, "{\"sum\":10,\"count\":4,\"min\":1,\"max\":4,\"sumsqr\":30}");
    const char *floats[] = {"1.5", "-2"};
    expect(VIEW_REDUCE_STATS, floats, 2, "{\"sum\":-0.5,\"count\":2,\"min\":-2,\"max\":1.5,\"sumsqr\":6.25}");
    const char *arrays[] = {"[1,10]", "[2,20]"};
    expect(VIEW_REDUCE_STATS, arrays, 2,
           "[{\"sum\":3,\"count\":2,\"min\":1,\"max\":2,\"sumsqr\":5},{\"sum\":30,\"count\":2,\"min\":10,\"max\":20,"
           "\"sumsqr\":500}]");
    const char *pre[] = {"{\"sum\":5,\"count\":2,\"min\":1,\"max\":4,\"sumsqr\":17}", "3"};
    expect(VIEW_REDUCE_STATS, pre, 2, "{\"sum\":8,\"count\":3,\"min\":1,\"max\":4,\"sumsqr\":26}");
    const char *bad[] = {"1", "\"x\""};
    char *got = reduce_all(VIEW_REDUCE_STATS, bad, 2);
    assert_non_null(strstr(got, "builtin_reduce_error"));
    free(got);
}

static void test_approx_count_distinct(void **state)
{
    (void)state;
    enum { N = 20000 };
    char **keys = calloc(2 * N, sizeof *keys);
    for (int i = 0; i < 2 * N; i++) {
        keys[i] = malloc(32);
        snprintf(keys[i], 32, "\"key-%d\"", i % N); /* every key twice */
    }
    char *got = reduce_split(VIEW_REDUCE_APPROX_DISTINCT, (const char *const *)keys, 2 * N, N / 3);
    long est = atol(got);
    assert_true(est > N * 0.93 && est < N * 1.07);
    free(got);
    const char *few[] = {"1", "2", "2", "3"};
    got = reduce_all(VIEW_REDUCE_APPROX_DISTINCT, few, 4);
    assert_string_equal(got, "3");
    free(got);
    for (int i = 0; i < 2 * N; i++)
        free(keys[i]);
    free(keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_of),   cmocka_unit_test(test_sum),   cmocka_unit_test(test_sum_objects),
        cmocka_unit_test(test_sum_errors), cmocka_unit_test(test_sum_limit), cmocka_unit_test(test_count),
        cmocka_unit_test(test_stats),     cmocka_unit_test(test_approx_count_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
