/*
 * test_collate.c — CouchDB view collation (json/collate.h), seen as a view
 * user sees it: the order rows come out in.
 *
 * Fixtures are ordered lists; "=" before an entry means "collates equal to
 * the previous one".  Every pair of a list is checked three ways (DOM, the
 * text as written, the canonical json_write_value text), which must agree.
 * Strings are also checked against ICU called exactly as CouchDB's NIF calls
 * it (ucol_open(""), uiter_setUTF8, ucol_strcollIter), exhaustively for
 * short ASCII strings, so the ICU-free ASCII path is proved, not assumed.
 *
 * Property tests print their seed; reproduce with DIVAN_SEED=<seed>, scale
 * with DIVAN_ITERATIONS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicode/ucol.h>
#include <unicode/uiter.h>

#include "base/status.h"
#include "json/collate.h"
#include "json/json.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct parsed {
    json_doc doc;
    buf_t canon;
    const char *text;
    size_t len;
} parsed;

static void parse_into(parsed *p, const char *text, size_t len)
{
    json_error err = {0, NULL};
    json_doc_init(&p->doc);
    if (json_doc_parse(&p->doc, text, len, 0, &err) != DV_OK)
        fail_msg("cannot parse %.*s: %s at %zu", (int)len, text, err.reason, err.offset);
    buf_init(&p->canon);
    json_writer w;
    json_writer_init(&w, &p->canon);
    assert_int_equal(json_write_value(&w, json_doc_root(&p->doc)), DV_OK);
    p->text = text;
    p->len = len;
}

static void parsed_free(parsed *p)
{
    json_doc_free(&p->doc);
    buf_free(&p->canon);
}

/* Compares a and b every way; all must agree.  Returns the result. */
static int cmp3(json_collation c, const parsed *a, const parsed *b)
{
    int d = json_collate_as(c, json_doc_root(&a->doc), json_doc_root(&b->doc));
    int t = json_collate_text_as(c, a->text, a->len, b->text, b->len);
    int k = json_collate_text_as(c, a->canon.data, a->canon.len, b->canon.data, b->canon.len);
    if (d != t || d != k || d < -1 || d > 1)
        fail_msg("%s: %.*s vs %.*s: dom %d, text %d, canonical text %d",
                 c == JSON_COLLATION_RAW ? "raw" : "uca", (int)a->len, a->text, (int)b->len, b->text,
                 d, t, k);
    return d;
}

/* Every pair of an ordered list ("=" prefix: equal to the previous). */
static void check_order(json_collation c, const char *const *list, size_t n)
{
    parsed *p = calloc(n, sizeof *p);
    int *grp = calloc(n, sizeof *grp);
    assert_non_null(p);
    assert_non_null(grp);
    for (size_t i = 0, g = 0; i < n; i++) {
        int eq = list[i][0] == '=';
        g += i && !eq;
        grp[i] = (int)g;
        parse_into(&p[i], list[i] + eq, strlen(list[i] + eq));
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int want = (grp[i] > grp[j]) - (grp[i] < grp[j]);
            int got = cmp3(c, &p[i], &p[j]);
            if (got != want)
                fail_msg("%s: %s vs %s: got %d, want %d", c == JSON_COLLATION_RAW ? "raw" : "uca",
                         p[i].text, p[j].text, got, want);
        }
    for (size_t i = 0; i < n; i++)
        parsed_free(&p[i]);
    free(p);
    free(grp);
}

#define CHECK_ORDER(c, list) check_order(c, list, sizeof list / sizeof list[0])
#define TXT(s) s, strlen(s)

static int cmp_json(json_collation c, const char *a, const char *b)
{
    parsed pa, pb;
    parse_into(&pa, a, strlen(a));
    parse_into(&pb, b, strlen(b));
    int r = cmp3(c, &pa, &pb);
    assert_int_equal(cmp3(c, &pb, &pa), -r);
    parsed_free(&pa);
    parsed_free(&pb);
    return r;
}

/* ICU exactly as CouchDB's NIF: root collator, UTF-8 iterators. */
static UCollator *ref_coll;

static int ref_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    UCharIterator ia, ib;
    UErrorCode st = U_ZERO_ERROR;
    uiter_setUTF8(&ia, a, (int32_t)an);
    uiter_setUTF8(&ib, b, (int32_t)bn);
    int r = ucol_strcollIter(ref_coll, &ia, &ib, &st);
    if (U_FAILURE(st))
        fail_msg("ICU: %s", u_errorName(st));
    return r;
}

static int setup_ref(void **state)
{
    (void)state;
    UErrorCode st = U_ZERO_ERROR;
    ref_coll = ucol_open("", &st);
    return U_FAILURE(st) || json_collate_init() != DV_OK;
}

static int teardown_ref(void **state)
{
    (void)state;
    ucol_close(ref_coll);
    return 0;
}

static void check_str_vs_icu(const char *a, size_t an, const char *b, size_t bn)
{
    int got = json_collate_strings(a, an, b, bn), want = ref_cmp(a, an, b, bn);
    if (got != want) {
        char ha[256] = "", hb[256] = "";
        for (size_t k = 0; k < an && k < 60; k++)
            snprintf(ha + strlen(ha), sizeof ha - strlen(ha), "%02x", (uint8_t)a[k]);
        for (size_t k = 0; k < bn && k < 60; k++)
            snprintf(hb + strlen(hb), sizeof hb - strlen(hb), "%02x", (uint8_t)b[k]);
        fail_msg("strings [%s] vs [%s]: divan %d, ICU %d", ha, hb, got, want);
    }
}

/* ---- CouchDB's own fixtures --------------------------------------------- */

/* The ordered list of CouchDB's "Views Collation" documentation page and of
 * its view_collation test suite. */
static const char *const couchdb_docs_order[] = {
    "null", "false", "true",
    "1", "2", "3.0", "4",
    "\"a\"", "\"A\"", "\"aa\"", "\"b\"", "\"B\"", "\"ba\"", "\"bb\"",
    "[\"a\"]", "[\"b\"]", "[\"b\",\"c\"]", "[\"b\",\"c\", \"a\"]", "[\"b\",\"d\"]", "[\"b\",\"d\", \"e\"]",
    "{\"a\":1}", "{\"a\":2}", "{\"b\":1}", "{\"b\":2}", "{\"b\":2, \"a\":1}", "{\"b\":2, \"c\":2}",
};

/* couch_ejson_compare_tests.erl's TEST_VALUES (without its non-JSON max
 * sentinel, checked separately). */
static const char *const couchdb_eunit_order[] = {
    "null", "false", "true", "-2", "-0.1", "0", "0.1", "1", "2", "3.0", "4",
    "\"a\"", "\"A\"", "\"aa\"", "\"b\"", "\"B\"", "\"ba\"", "\"bb\"",
    "[\"a\"]", "[\"b\"]", "[\"b\",\"c\"]", "[\"b\",\"d\"]", "[\"b\",\"d\",\"e\"]",
    "{\"a\":1}", "{\"a\":2}", "{\"b\":1}", "{\"b\":2}", "{\"b\":2,\"a\":1}", "{\"b\":2,\"c\":2}",
};

/* The raw collation example of the documentation page. */
static const char *const couchdb_docs_raw_order[] = {
    "1", "false", "null", "true", "{\"a\":\"a\"}", "[\"a\"]", "\"a\"",
};

static void test_couchdb_fixtures(void **state)
{
    (void)state;
    CHECK_ORDER(JSON_COLLATION_UCA, couchdb_docs_order);
    CHECK_ORDER(JSON_COLLATION_UCA, couchdb_eunit_order);
    CHECK_ORDER(JSON_COLLATION_RAW, couchdb_docs_raw_order);
    /* The documentation's notes on case: "a < aa", "A < aa", "a < AA",
     * "a < A"; and its key-range example "abc < Abc < ABC < abc1 < AbcZZZZZ". */
    static const char *const case_notes[] = {"\"a\"", "\"A\"", "\"aa\"", "\"AA\""};
    CHECK_ORDER(JSON_COLLATION_UCA, case_notes);
    static const char *const range_note[] = {"\"abc\"", "\"Abc\"", "\"ABC\"", "\"abc1\"", "\"AbcZZZZZ\""};
    CHECK_ORDER(JSON_COLLATION_UCA, range_note);
}

/* CouchDB's tests use <<255,255,255,255>> (not UTF-8, so never a JSON key
 * divan accepts, but reachable through the text form) as the highest string:
 * ICU reads each byte as U+FFFD, above every assigned character and the
 * docs' "\ufff0" high key, below U+FFFF, and below every array. */
static void test_max_string_sentinel(void **state)
{
    (void)state;
    const char max[] = "\xff\xff\xff\xff";
    const char *below[] = {"", "a", "A", "bb", "\xef\xbf\xb0", "\xe4\xb8\x80", "\xf0\x9f\x98\x80", "zzzz"};
    for (size_t i = 0; i < sizeof below / sizeof below[0]; i++) {
        assert_int_equal(json_collate_strings(max, 4, below[i], strlen(below[i])), 1);
        assert_int_equal(json_collate_strings(below[i], strlen(below[i]), max, 4), -1);
        check_str_vs_icu(max, 4, below[i], strlen(below[i]));
    }
    check_str_vs_icu(max, 4, "\xef\xbf\xbf", 3);
    assert_int_equal(json_collate_text("\"\xff\xff\xff\xff\"", 6, "\"bb\"", 4), 1);
    assert_int_equal(json_collate_text("\"\xff\xff\xff\xff\"", 6, "[]", 2), -1);
}

/* ---- type boundaries, numbers ------------------------------------------- */

#define Z10 "0000000000"
#define Z100 Z10 Z10 Z10 Z10 Z10 Z10 Z10 Z10 Z10 Z10

static const char *const type_boundaries[] = {
    "null", "false", "true",
    "-1e400", "=-2E+400", /* beyond doubles: -infinity (CouchDB answers 400) */
    "-1" Z100 Z100 Z100 Z10, /* -10^310, below every finite double */
    "-1.7976931348623157e308",
    "-1000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "-123456789012345678901234567890",
    "-1.2345678901234568e29",
    "-18446744073709551617", "-18446744073709551616", "=-1.8446744073709552e19",
    "-9007199254740993", "-9007199254740992", "=-9007199254740992.0", "=-9007199254740993.0",
    "-1", "=-1.0", "=-1e0", "-0.5",
    "-5e-324",
    "0", "=-0", "=0.0", "=-0.0", "=0e10", "=0E-5", "=1e-400", "=-1e-400",
    "5e-324",
    "0.1", "=0.1000000000000000055511151231257827", "=1e-1", "0.5",
    "1", "=1.0", "=1e0", "=10e-1", "=0.1e1", "=1.00000000000000000000001",
    "2", "3.0", "4",
    "9007199254740991", "9007199254740992", "=9007199254740992.0", "=9007199254740993.0",
    "9007199254740993", "9007199254740994", "=9007199254740994.0",
    "18446744073709551615", "18446744073709551616", "=1.8446744073709552e19", "=18446744073709551616.0",
    "18446744073709551617",
    "1.2345678901234568e29", "123456789012345678901234567890",
    "1000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "1.7976931348623157e308",
    "1" Z100 Z100 Z100 Z10,
    "1e400", "=2e400",
    "\"\"", "=\"\\u0000\"", "=\"\\u200b\"", "=\"\\u0001\\u0002\\u200c\\u200d\"",
    "\" \"", "\"_\"", "\"-\"", "\"~\"", "\"\\ud83d\\ude00\"", "\"$\"", "\"0\"", "\"9\"",
    "\"a\"", "=\"a\\u0000\"", "=\"\\u200ba\\u200b\"", "\"A\"", "\"\\u00e1\"", "\"\\u00c1\"", "\"aa\"",
    "\"z\"", "\"Z\"", "\"\\u03b1\"", "\"\\u0430\"", "\"\\u4e00\"", "\"\\u4e01\"",
    "\"\\ufff0\"", "\"\\ufffd\"", "\"\\uffff\"",
    "[]", "[null]", "[null,null]", "[false]", "[1]", "[\"\"]", "[[]]", "[[[]]]", "[{}]",
    "{}", "{\"\":null}", "{\"\":null,\"a\":null}", "{\"\":1}", "{\"a\":null}", "{\"a\":[]}",
    "{\"a\":{}}", "{\"A\":null}", "{\"b\":null}",
};

static void test_type_boundaries(void **state)
{
    (void)state;
    CHECK_ORDER(JSON_COLLATION_UCA, type_boundaries);
}

static const char *const raw_order[] = {
    "-1e400", "-1", "=-1.0", "0", "=-0", "=0e0", "1", "=1.0", "123456789012345678901234567890", "1e400",
    "false", "null", "true",
    "{}", "{\"\":1}", "{\"A\":1}", "{\"B\":1}", "{\"a\":\"a\"}", "{\"a\":\"a\",\"b\":1}", "{\"b\":0}",
    "{\"\\u00e9\":0}",
    "[]", "[1]", "[false]", "[null]", "[true]", "[{}]", "[[]]", "[\"\"]", "[\"\",1]",
    "\"\"", "\"\\u0000\"", "\"A\"", "\"B\"", "\"Z\"", "\"a\"", "\"a\\u0000\"", "\"aa\"", "\"b\"", "\"e\\u0301\"",
    "\"z\"", "\"\\u00e9\"", "\"\\ufff0\"", "\"\\ud83d\\ude00\"",
};

/* Raw collation is Erlang's term order on the decoded value: numbers <
 * atoms (false < null < true, by name) < tuples ({props}) < lists <
 * binaries, binaries by bytes, so "é" and "e\u0301" differ and NUL counts. */
static void test_raw(void **state)
{
    (void)state;
    CHECK_ORDER(JSON_COLLATION_RAW, raw_order);
    assert_int_equal(json_collate_bytes("ab", 2, "abc", 3), -1);
    assert_int_equal(json_collate_bytes("\xff", 1, "\x01\x02", 2), 1);
    assert_int_equal(json_collate_bytes("", 0, "", 0), 0);
}

/* Numbers beyond what one literal list shows: 1 vs 1.0 everywhere they can
 * hide, and a 900-digit decimal whose correct rounding depends on its last
 * digit (the halfway case 2^53 + 1). */
static void test_numbers(void **state)
{
    (void)state;
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "[1,\"b\"]", "[1.0,\"a\"]"), 1);
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "{\"k\":1}", "{\"k\":1.0}"), 0);
    assert_int_equal(cmp_json(JSON_COLLATION_RAW, "[1.0]", "[1]"), 0);
    assert_int_equal(json_collate_numbers("1", 1, "1.0", 3), 0);
    assert_int_equal(json_collate_numbers("-0", 2, "0.0", 3), 0);

    char half[1000], above[1000];
    size_t n = 0;
    n += (size_t)snprintf(half, sizeof half, "9007199254740993.");
    memset(half + n, '0', 880);
    n += 880;
    memcpy(above, half, n);
    half[n] = '\0';
    above[n] = '1';
    above[n + 1] = '\0';
    /* exactly halfway: rounds to even, 2^53 */
    assert_int_equal(json_collate_numbers(half, strlen(half), "9007199254740992", 16), 0);
    /* a hair above halfway, 880 digits down: rounds up to 2^53 + 2 */
    assert_int_equal(json_collate_numbers(above, strlen(above), "9007199254740994", 16), 0);
    assert_int_equal(json_collate_numbers(above, strlen(above), "9007199254740993", 16), 1);
    /* the same through the exponent: 0.9007...e16 */
    char shifted[1100];
    snprintf(shifted, sizeof shifted, "0.%.*s%se16", 16, "9007199254740993", above + 17);
    assert_int_equal(json_collate_numbers(shifted, strlen(shifted), "9007199254740994", 16), 0);
    /* long exponents saturate instead of overflowing */
    assert_int_equal(json_collate_numbers("1e99999999999999999999", 22, "1e400", 5), 0);
    assert_int_equal(json_collate_numbers("1e-99999999999999999999", 23, "0", 1), 0);
    assert_int_equal(json_collate_numbers("0.00000000000000000000000000000000000001e38", 43, "1", 1), 0);
}

/* ---- strings ------------------------------------------------------------ */

/* The printable ASCII order of the docs page predates CLDR root collation
 * (` and ^ moved): this is ICU >= 6x's, checked against ICU itself. */
static void test_ascii_sequence(void **state)
{
    (void)state;
    const char want[] = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789"
                        "aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpPqQrRsStTuUvVwWxXyYzZ";
    assert_int_equal(strlen(want), 95);
    for (size_t i = 0; i + 1 < 95; i++) {
        assert_int_equal(json_collate_strings(want + i, 1, want + i + 1, 1), -1);
        check_str_vs_icu(want + i, 1, want + i + 1, 1);
    }
    assert_int_equal(json_collate_ascii_modelled(), 128);
    uint8_t v[4] = {0}, icu_v[4] = {0};
    assert_int_equal(json_collate_collator_version(v), DV_OK);
    ucol_getVersion(ref_coll, icu_v);
    assert_memory_equal(v, icu_v, 4);
    assert_true(v[0] != 0);
}

static void test_unicode(void **state)
{
    (void)state;
    /* accents are secondary: any accent sorts after none, case third */
    static const char *const resume[] = {
        "\"resume\"", "\"Resume\"", "\"r\\u00e9sum\\u00e9\"", "=\"re\\u0301sume\\u0301\"",
        "\"R\\u00e9sum\\u00e9\"",
    };
    CHECK_ORDER(JSON_COLLATION_UCA, resume);
    static const char *const accents[] = {
        "\"e\"", "\"E\"", "\"\\u00e9\"", "=\"e\\u0301\"", "\"\\u00c9\"", "=\"E\\u0301\"",
        "\"\\u00e8\"", "\"\\u00ea\"", "\"\\u00eb\"", "\"f\"",
    };
    CHECK_ORDER(JSON_COLLATION_UCA, accents);
    /* the root contraction l·: after l and L, before la */
    static const char *const middle_dot[] = {
        "\"l\"", "\"L\"", "\"l\\u00b7\"", "\"L\\u00b7\"", "\"la\"",
    };
    CHECK_ORDER(JSON_COLLATION_UCA, middle_dot);
    /* sharp s expands to ss with a third-level difference */
    static const char *const sharp_s[] = {"\"ss\"", "\"Ss\"", "\"SS\"", "\"\\u00df\"", "\"st\""};
    CHECK_ORDER(JSON_COLLATION_UCA, sharp_s);
    /* scripts: Latin < Greek < Cyrillic < Han (implicit weights) */
    static const char *const scripts[] = {
        "\"z\"", "\"\\u03b1\"", "\"\\u0430\"", "\"\\u4e00\"", "\"\\u4e8c\"", "\"\\u5927\\u962a\"",
    };
    CHECK_ORDER(JSON_COLLATION_UCA, scripts);
    /* CouchDB sets no UCOL_NORMALIZATION_MODE: canonically equivalent
     * sequences that are not FCD (marks in non-canonical order) differ. */
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "\"e\\u0301\\u0323\"", "\"e\\u0323\\u0301\""), -1);
    check_str_vs_icu("e\xcc\x81\xcc\xa3", 5, "e\xcc\xa3\xcc\x81", 5);
    /* emoji are symbols: after punctuation, before currency and digits */
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "\"\\ud83d\\ude00\"", "\"\\ud83d\\ude01\""), -1);
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "\"~\"", "\"\\ud83d\\ude00\""), -1);
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "\"\\ud83d\\ude00\"", "\"0\""), -1);
    /* NUL and zero-width characters are ignorable: equal keys, not a
     * byte tie-break (rows with such keys then order by doc id) */
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "\"a\\u0000b\"", "\"ab\""), 0);
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "[\"a\\u0000\",1]", "[\"a\",1]"), 0);
    assert_int_equal(cmp_json(JSON_COLLATION_UCA, "{\"a\\u200b\":1}", "{\"a\":1}"), 0);
    assert_int_equal(cmp_json(JSON_COLLATION_RAW, "\"a\\u0000\"", "\"a\""), 1);
    /* strings with NUL bytes through the string API */
    assert_int_equal(json_collate_strings("a\0b", 3, "ab", 2), 0);
    assert_int_equal(json_collate_strings("a\0b", 3, "a\0c", 3), -1);
    /* escaped and raw spellings of one string are one string */
    assert_int_equal(json_collate_text(TXT("\"\\u00e9\\n\\\"\""), TXT("\"\xc3\xa9\\u000a\\u0022\"")), 0);
}

/* Every ASCII string of up to two characters, sorted by divan, must be in
 * ICU's order: with ICU a total preorder, agreeing on every neighbour of the
 * sorted list means agreeing on every pair.  (divan's side is a total
 * preorder by construction: a lexicographic compare of rank tables.) */
typedef struct s3 {
    char s[4];
    uint8_t n;
} s3;

static int s3_cmp(const void *x, const void *y)
{
    const s3 *a = x, *b = y;
    return json_collate_strings(a->s, a->n, b->s, b->n);
}

static void check_sorted_vs_icu(s3 *all, size_t n)
{
    qsort(all, n, sizeof *all, s3_cmp);
    for (size_t k = 0; k + 1 < n; k++) {
        int r = s3_cmp(&all[k], &all[k + 1]);
        if (r > 0)
            fail_msg("divan's order is not sorted at %zu", k);
        check_str_vs_icu(all[k].s, all[k].n, all[k + 1].s, all[k + 1].n);
    }
}

static void test_ascii_exhaustive(void **state)
{
    (void)state;
    size_t n = 1 + 128 + 128 * 128, k = 0;
    s3 *all = calloc(n, sizeof *all);
    assert_non_null(all);
    all[k++].n = 0;
    for (int a = 0; a < 128; a++) {
        all[k].s[0] = (char)a;
        all[k++].n = 1;
        for (int b = 0; b < 128; b++) {
            all[k].s[0] = (char)a;
            all[k].s[1] = (char)b;
            all[k++].n = 2;
        }
    }
    assert_int_equal(k, n);
    check_sorted_vs_icu(all, n);
    free(all);

    /* three characters over an alphabet with every kind of ASCII character:
     * ignorable controls, whitespace, punctuation, symbols, digits, case
     * pairs, the contraction starters l/L */
    const char alpha[] = "\x00\x01\t\n -_.'~$09aAbBlLzZ\x7f";
    size_t m = sizeof alpha - 1, q = 0;
    all = calloc(1 + m + m * m + m * m * m, sizeof *all);
    assert_non_null(all);
    all[q++].n = 0;
    for (size_t a = 0; a < m; a++) {
        all[q].s[0] = alpha[a];
        all[q++].n = 1;
        for (size_t b = 0; b < m; b++) {
            all[q].s[0] = alpha[a];
            all[q].s[1] = alpha[b];
            all[q++].n = 2;
            for (size_t c = 0; c < m; c++) {
                all[q].s[0] = alpha[a];
                all[q].s[1] = alpha[b];
                all[q].s[2] = alpha[c];
                all[q++].n = 3;
            }
        }
    }
    check_sorted_vs_icu(all, q);
    free(all);
}

/* Random strings against ICU: ASCII ones (the model), ASCII with non-ASCII
 * mixed in (where the model must hand over to ICU, e.g. before a middle dot
 * that contracts with l), and arbitrary bytes (ill-formed UTF-8: divan's
 * ucol_strcollUTF8 must agree with CouchDB's ucol_strcollIter). */
static size_t rand_str(tu_rng *r, char *d, int kind)
{
    static const char *const pieces[] = {
        "a", "A", "b", "l", "L", "z", "Z", " ", "-", "0", "~", "\x01", "\t",
        "\xc2\xb7", "\xce\x87", "\xcc\x81", "\xcc\xa3", "\xc3\xa9", "\xc3\x9f", "\xe4\xb8\x80",
        "\xf0\x9f\x98\x80", "\xef\xbf\xbd", "\xef\xbf\xbf", "\xe2\x80\x8b", "\xff", "\xc3", "\xed\xa0\x80",
    };
    size_t n = 0, len = tu_rand_below(r, 9);
    for (size_t i = 0; i < len; i++) {
        if (kind == 0) {
            static const char ascii_bias[] = "aAbBlLzZ -_.\x01\x00\x7f" "09";
            d[n++] = tu_rand_below(r, 2) ? ascii_bias[tu_rand_below(r, sizeof ascii_bias - 1)]
                                         : (char)tu_rand_below(r, 128);
        } else if (kind == 1) {
            const char *p = pieces[tu_rand_below(r, sizeof pieces / sizeof pieces[0])];
            memcpy(d + n, p, strlen(p));
            n += strlen(p);
        } else {
            d[n++] = (char)tu_rand_below(r, 256);
        }
    }
    return n;
}

static void test_strings_random_vs_icu(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("test_strings_random_vs_icu")};
    long iters = tu_iterations(200000);
    for (long i = 0; i < iters; i++) {
        char a[64], b[64];
        int kind = (int)(i % 3);
        size_t an = rand_str(&r, a, kind), bn = rand_str(&r, b, kind);
        if (tu_rand_below(&r, 4) == 0) { /* shared prefixes reach deeper */
            memcpy(b, a, an < bn ? an : bn);
        }
        check_str_vs_icu(a, an, b, bn);
    }
}

/* ---- containers --------------------------------------------------------- */

static void test_nested(void **state)
{
    (void)state;
    static const char *const order[] = {
        "[[1,2],3]", "[[1,2],3,null]", "[[1,2,null]]", "[[1,\"a\"]]", "[[1,[]]]", "[[1,{}]]",
        "[[\"a\"],1]", "[[\"A\"],0]", "[{\"a\":[1]}]", "[{\"a\":[1],\"b\":0}]", "[{\"a\":[1,2]}]",
        "{\"a\":{\"b\":{\"c\":null}}}", "{\"a\":{\"b\":{\"c\":false}}}", "{\"a\":{\"b\":{\"c\":false,\"d\":1}}}",
        "{\"A\":{}}", "{\"aa\":0}",
    };
    CHECK_ORDER(JSON_COLLATION_UCA, order);
    /* whitespace and escapes in the text form do not matter */
    assert_int_equal(json_collate_text(TXT(" [ 1 , { \"\\u0061\" : [ ] } ] \n"), TXT("[1,{\"a\":[]}]")), 0);
    /* duplicate member names: the DOM sees CouchDB's last-wins value */
    json_doc a = JSON_DOC_INIT, b = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&a, "{\"b\":1,\"a\":2,\"b\":3}", 19, 0, NULL), DV_OK);
    assert_int_equal(json_doc_parse(&b, "{\"a\":2,\"b\":3}", 13, 0, NULL), DV_OK);
    assert_int_equal(json_collate(json_doc_root(&a), json_doc_root(&b)), 0);
    assert_int_equal(json_collate_raw(json_doc_root(&a), json_doc_root(&b)), 0);
    json_doc_free(&a);
    json_doc_free(&b);
}

/* Deep values: the DOM walker recurses (bounded by the parse depth), the
 * text walker does not. */
static void test_deep(void **state)
{
    (void)state;
    size_t depth = 500;
    char *x = malloc(2 * depth + 2), *y = malloc(2 * depth + 2);
    assert_non_null(x);
    assert_non_null(y);
    memset(x, '[', depth);
    memset(x + depth, ']', depth);
    memset(y, '[', depth - 1); /* [[...[1]...]]: a number where x nests on */
    y[depth - 1] = '1';
    memset(y + depth, ']', depth - 1);
    parsed px, py;
    parse_into(&px, x, 2 * depth);
    parse_into(&py, y, 2 * depth - 1);
    assert_int_equal(cmp3(JSON_COLLATION_UCA, &px, &py), 1); /* numbers < arrays */
    assert_int_equal(cmp3(JSON_COLLATION_RAW, &px, &py), 1); /* in Erlang's order too */
    assert_int_equal(cmp3(JSON_COLLATION_UCA, &px, &px), 0);
    parsed_free(&px);
    parsed_free(&py);
    free(x);
    free(y);
    /* past JSON_COLLATE_TEXT_MAX_DEPTH the text form compares by bytes */
    size_t deep = JSON_COLLATE_TEXT_MAX_DEPTH + 10;
    char *d1 = malloc(2 * deep), *d2 = malloc(2 * deep);
    assert_non_null(d1);
    assert_non_null(d2);
    memset(d1, '[', deep);
    memset(d1 + deep, ']', deep);
    memcpy(d2, d1, 2 * deep);
    assert_int_equal(json_collate_text(d1, 2 * deep, d2, 2 * deep), 0);
    assert_int_equal(json_collate_text(d1, 2 * deep, d2, 2 * deep - 1), 1);
    free(d1);
    free(d2);
}

/* Malformed texts never crash, compare like bytes and stay antisymmetric. */
static void test_malformed_text(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", " ", "[", "[1,", "[1,]", "[1 2]", "{\"a\"}", "{\"a\":}", "{1:2}", "{\"a\":1,}", "\"abc",
        "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\x01\"", "01",
        "1.", "1e", "-", "+1", "nul", "tru", "falsy", "[]]", "1 2", "]", "}", "[}", "{]", "NaN",
    };
    static const char *const good[] = {"1", "[1]", "[1,2]", "{\"a\":1}", "\"abc\"", "null", "[]"};
    size_t nb = sizeof bad / sizeof bad[0], ng = sizeof good / sizeof good[0];
    for (size_t i = 0; i < nb; i++) {
        const char *x = bad[i];
        assert_int_equal(json_collate_text(x, strlen(x), x, strlen(x)), 0);
        for (size_t j = 0; j < nb + ng; j++) {
            const char *y = j < nb ? bad[j] : good[j - nb];
            for (int raw = 0; raw < 2; raw++) {
                json_collation c = raw ? JSON_COLLATION_RAW : JSON_COLLATION_UCA;
                int r1 = json_collate_text_as(c, x, strlen(x), y, strlen(y));
                int r2 = json_collate_text_as(c, y, strlen(y), x, strlen(x));
                if (r1 != -r2)
                    fail_msg("%s vs %s: %d and %d", x, y, r1, r2);
            }
        }
    }
    /* a value that ends inside one side's container falls back to bytes */
    assert_int_equal(json_collate_text("[1,", 3, "[1,2]", 5), -1);
    /* but an answer found before the damage stands */
    assert_int_equal(json_collate_text("[1,2", 4, "[2]", 3), -1);
}

static void test_collation_option(void **state)
{
    (void)state;
    static const struct {
        const char *opts;
        json_collation want;
    } cases[] = {
        {"{\"collation\":\"raw\"}", JSON_COLLATION_RAW},
        {"{\"other\":1,\"collation\":\"raw\"}", JSON_COLLATION_RAW},
        {"{\"collation\":\"RAW\"}", JSON_COLLATION_UCA},
        {"{\"collation\":\"default\"}", JSON_COLLATION_UCA},
        {"{\"collation\":[\"raw\"]}", JSON_COLLATION_UCA},
        {"{}", JSON_COLLATION_UCA},
        {"[\"raw\"]", JSON_COLLATION_UCA},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_doc d = JSON_DOC_INIT;
        assert_int_equal(json_doc_parse(&d, cases[i].opts, strlen(cases[i].opts), 0, NULL), DV_OK);
        assert_int_equal(json_collation_of(json_doc_root(&d)), cases[i].want);
        json_doc_free(&d);
    }
    assert_int_equal(json_collation_of(NULL), JSON_COLLATION_UCA);
}

/* ---- properties over random values --------------------------------------- */

typedef struct gen {
    tu_rng r;
    buf_t out;
} gen;

static uint64_t rnd(gen *g, uint64_t n) { return tu_rand_below(&g->r, n); }

static void ws(gen *g)
{
    while (rnd(g, 5) == 0)
        buf_append_byte(&g->out, (uint8_t)" \n\t\r"[rnd(g, 4)]);
}

/* Numbers with many spellings of few values, so ties are common. */
static const char *const num_pool[] = {
    "0", "-0", "0.0", "-0.0", "0e5", "1", "1.0", "1e0", "10e-1", "0.1e1", "2", "-1", "-1.0", "1.5",
    "15e-1", "0.1", "1e-1", "9007199254740992", "9007199254740993", "9007199254740992.0",
    "9007199254740993.0", "18446744073709551616", "1.8446744073709552e19", "18446744073709551617",
    "123456789012345678901234567890", "1.2345678901234568e29", "-123456789012345678901234567890",
    "1e308", "1e400", "-1e400", "1e-400", "5e-324", "-5e-324", "99999999999999999999",
};

/* String pieces: raw, escaped, and canonically equivalent spellings. */
static const char *const str_pool[] = {
    "a", "A", "b", "B", "l", "z", " ", "-", "_", "0", "9", "~", "$", "\\u0000", "\\u0001", "\\t",
    "\\n", "\\\"", "\\\\", "\\/", "\\u0041", "\xc3\xa9", "\\u00e9", "e\xcc\x81", "e\\u0301", "\xc2\xb7",
    "\\u00b7", "\xc3\x9f", "ss", "\xe4\xb8\x80", "\\ud83d\\ude00", "\xe2\x80\x8b", "\\ufffd",
};

/* Member names with pairwise different decoded values (no duplicates). */
static const char *const key_pool[] = {"", "a", "A", "b", "\\u00e9", "e\\u0301", "a\\u0000", "\\\"", "z"};

static void gen_string(gen *g, size_t maxpieces)
{
    buf_append_byte(&g->out, '"');
    size_t n = rnd(g, maxpieces + 1);
    for (size_t i = 0; i < n; i++)
        buf_append_str(&g->out, str_pool[rnd(g, sizeof str_pool / sizeof str_pool[0])]);
    buf_append_byte(&g->out, '"');
}

static void gen_value(gen *g, int depth)
{
    ws(g);
    uint64_t k = rnd(g, depth >= 3 ? 6 : 9);
    switch (k) {
    case 0: buf_append_str(&g->out, "null"); break;
    case 1: buf_append_str(&g->out, rnd(g, 2) ? "true" : "false"); break;
    case 2:
    case 3: buf_append_str(&g->out, num_pool[rnd(g, sizeof num_pool / sizeof num_pool[0])]); break;
    case 4:
    case 5: gen_string(g, 3); break;
    case 6:
    case 7: {
        buf_append_byte(&g->out, '[');
        size_t n = rnd(g, 4);
        for (size_t i = 0; i < n; i++) {
            if (i)
                buf_append_byte(&g->out, ',');
            gen_value(g, depth + 1);
        }
        ws(g);
        buf_append_byte(&g->out, ']');
        break;
    }
    default: {
        buf_append_byte(&g->out, '{');
        size_t n = rnd(g, 4), nk = sizeof key_pool / sizeof key_pool[0];
        unsigned used = 0;
        for (size_t i = 0; i < n; i++) {
            size_t ki = rnd(g, nk);
            if (used & (1u << ki))
                continue;
            used |= 1u << ki;
            if (used != (1u << ki))
                buf_append_byte(&g->out, ',');
            ws(g);
            buf_append_byte(&g->out, '"');
            buf_append_str(&g->out, key_pool[ki]);
            buf_append_byte(&g->out, '"');
            ws(g);
            buf_append_byte(&g->out, ':');
            gen_value(g, depth + 1);
        }
        ws(g);
        buf_append_byte(&g->out, '}');
        break;
    }
    }
    ws(g);
}

static json_collation sort_coll;
static parsed *sort_vals;

static int idx_cmp(const void *x, const void *y)
{
    const parsed *a = &sort_vals[*(const size_t *)x], *b = &sort_vals[*(const size_t *)y];
    return json_collate_as(sort_coll, json_doc_root(&a->doc), json_doc_root(&b->doc));
}

static void test_properties(void **state)
{
    (void)state;
    gen g = {{tu_seed("test_properties")}, BUF_INIT};
    long rounds = tu_iterations(4);
    size_t n = 160;
    for (long round = 0; round < rounds; round++) {
        parsed *v = calloc(n, sizeof *v);
        char **texts = calloc(n, sizeof *texts);
        size_t *idx = calloc(n, sizeof *idx);
        assert_non_null(v);
        assert_non_null(texts);
        assert_non_null(idx);
        for (size_t i = 0; i < n; i++) {
            buf_reset(&g.out);
            gen_value(&g, 0);
            texts[i] = malloc(g.out.len + 1);
            assert_non_null(texts[i]);
            memcpy(texts[i], g.out.data, g.out.len);
            texts[i][g.out.len] = '\0';
            parse_into(&v[i], texts[i], g.out.len);
        }
        for (int raw = 0; raw < 2; raw++) {
            json_collation c = raw ? JSON_COLLATION_RAW : JSON_COLLATION_UCA;
            /* the three forms agree; antisymmetric; reflexive */
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++) {
                    int r = cmp3(c, &v[i], &v[j]);
                    if (cmp3(c, &v[j], &v[i]) != -r)
                        fail_msg("not antisymmetric: %s vs %s", texts[i], texts[j]);
                    if (i == j && r != 0)
                        fail_msg("not reflexive: %s", texts[i]);
                }
            /* transitive: after sorting, every pair is in order */
            for (size_t i = 0; i < n; i++)
                idx[i] = i;
            sort_coll = c;
            sort_vals = v;
            qsort(idx, n, sizeof *idx, idx_cmp);
            for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                    if (idx_cmp(&idx[i], &idx[j]) > 0)
                        fail_msg("not transitive: %s sorted before %s", texts[idx[i]], texts[idx[j]]);
        }
        for (size_t i = 0; i < n; i++) {
            parsed_free(&v[i]);
            free(texts[i]);
        }
        free(v);
        free(texts);
        free(idx);
    }
    buf_free(&g.out);
}

/* ---- threads ------------------------------------------------------------ */

/* Many threads on the one shared collator get the single-thread answers. */
#define TH_PAIRS 64
static char th_a[TH_PAIRS][64], th_b[TH_PAIRS][64];
static size_t th_an[TH_PAIRS], th_bn[TH_PAIRS];
static int th_want[TH_PAIRS];

static void *th_main(void *arg)
{
    long iters = *(const long *)arg;
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < TH_PAIRS; k++)
            if (json_collate_strings(th_a[k], th_an[k], th_b[k], th_bn[k]) != th_want[k])
                return (void *)1;
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("test_threads")};
    for (int k = 0; k < TH_PAIRS; k++) {
        th_an[k] = rand_str(&r, th_a[k], 1);
        th_bn[k] = rand_str(&r, th_b[k], 1);
        th_want[k] = ref_cmp(th_a[k], th_an[k], th_b[k], th_bn[k]);
    }
    long iters = tu_iterations(300);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, th_main, &iters), 0);
    for (int i = 0; i < 4; i++) {
        void *res = (void *)1;
        assert_int_equal(pthread_join(t[i], &res), 0);
        assert_null(res);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_couchdb_fixtures),
        cmocka_unit_test(test_max_string_sentinel),
        cmocka_unit_test(test_type_boundaries),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_ascii_sequence),
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_ascii_exhaustive),
        cmocka_unit_test(test_strings_random_vs_icu),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_deep),
        cmocka_unit_test(test_malformed_text),
        cmocka_unit_test(test_collation_option),
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup_ref, teardown_ref);
}
