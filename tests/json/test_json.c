/*
 * test_json.c — the JSON codec seen from a caller: what is accepted and
 * rejected (a JSONTestSuite-style table written for divan), where errors are
 * reported, what the DOM holds, and what the writer emits.
 *
 * Every table case is checked twice, through the DOM parser and through the
 * validator, which must agree on acceptance and on the error offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "json/json.h"

/* A case: bytes (length from sizeof, so NULs are allowed), expected result,
 * and for rejections the expected error offset (-1: not checked). */
typedef struct jcase {
    const char *name;
    const char *text;
    size_t len;
    int ok;
    long offset;
} jcase;

#define Y(name, lit) {name, lit, sizeof(lit) - 1, 1, -1}
#define N(name, lit, off) {name, lit, sizeof(lit) - 1, 0, off}

static const jcase cases[] = {
    /* ---- accepted: structure ---- */
    Y("y_array_empty", "[]"),
    Y("y_object_empty", "{}"),
    Y("y_array_nested", "[[[]],[{}]]"),
    Y("y_object_nested", "{\"a\":{\"b\":[1,{\"c\":null}]}}"),
    Y("y_object_empty_key", "{\"\":0}"),
    Y("y_object_duplicate_keys", "{\"a\":1,\"a\":2}"),
    Y("y_ws_all_four", " \t\n\r[ \t\n\r1 \t\n\r, \t\n\r2 \t\n\r] \t\n\r"),
    Y("y_ws_around_colon", "{ \"a\" : 1 , \"b\" :2}"),
    Y("y_scalar_true", "true"),
    Y("y_scalar_false", "false"),
    Y("y_scalar_null", "null"),
    Y("y_scalar_string", "\"x\""),
    Y("y_scalar_number_ws", " 42 "),
    /* ---- accepted: numbers ---- */
    Y("y_number_zero", "0"),
    Y("y_number_minus_zero", "-0"),
    Y("y_number_minus_zero_frac", "-0.0"),
    Y("y_number_int", "[123]"),
    Y("y_number_negative", "[-123]"),
    Y("y_number_frac", "[1.5]"),
    Y("y_number_zero_frac", "[0.000001]"),
    Y("y_number_exp", "[1e5]"),
    Y("y_number_exp_upper", "[1E5]"),
    Y("y_number_exp_plus", "[1e+5]"),
    Y("y_number_exp_minus", "[1e-5]"),
    Y("y_number_exp_leading_zeros", "[1e007]"),
    Y("y_number_frac_exp", "[-12.34E-56]"),
    Y("y_number_huge_exp", "[1e400]"),
    Y("y_number_tiny_exp", "[1e-400]"),
    Y("y_number_bigint", "[123456789012345678901234567890]"),
    Y("y_number_zero_exp", "[0e0]"),
    /* ---- accepted: strings ---- */
    Y("y_string_empty", "\"\""),
    Y("y_string_all_escapes", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""),
    Y("y_string_u_escape_nul", "\"\\u0000\""),
    Y("y_string_u_escape_lower_hex", "\"\\u00e9\\u00E9\""),
    Y("y_string_surrogate_pair", "\"\\uD834\\uDD1E\""),
    Y("y_string_surrogate_pair_max", "\"\\uDBFF\\uDFFF\""),
    Y("y_string_nonchar_fffe_ffff", "\"\\uFFFE\\uFFFF\""),
    Y("y_string_u2028_u2029", "\"\\u2028\\u2029\""),
    Y("y_string_utf8_2byte", "\"\xC3\xA9\""),
    Y("y_string_utf8_3byte", "\"\xE2\x82\xAC\""),
    Y("y_string_utf8_4byte", "\"\xF0\x9D\x84\x9E\""),
    Y("y_string_utf8_max", "\"\xF4\x8F\xBF\xBF\""),
    Y("y_string_utf8_before_surrogates", "\"\xED\x9F\xBF\""),
    Y("y_string_utf8_after_surrogates", "\"\xEE\x80\x80\""),
    Y("y_string_utf8_e0_lowest", "\"\xE0\xA0\x80\""),
    Y("y_string_utf8_f0_lowest", "\"\xF0\x90\x80\x80\""),
    Y("y_string_del", "\"\x7F\""),
    Y("y_string_slash_raw", "\"/\""),
    Y("y_string_long_ascii", "\"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop\""),

    /* ---- rejected: structure ---- */
    N("n_empty", "", 0),
    N("n_only_ws", " \n", 2),
    N("n_array_open", "[", 1),
    N("n_array_close_only", "]", 0),
    N("n_array_trailing_comma", "[1,]", 3),
    N("n_array_leading_comma", "[,1]", 1),
    N("n_array_double_comma", "[1,,2]", 3),
    N("n_array_missing_comma", "[1 2]", 3),
    N("n_array_unclosed_value", "[1", 2),
    N("n_array_colon", "[1:2]", 2),
    N("n_object_trailing_comma", "{\"a\":1,}", 7),
    N("n_object_comma_only", "{,}", 1),
    N("n_object_missing_colon", "{\"a\" 1}", 5),
    N("n_object_missing_value", "{\"a\":}", 5),
    N("n_object_unquoted_key", "{a:1}", 1),
    N("n_object_single_quoted_key", "{'a':1}", 1),
    N("n_object_number_key", "{1:1}", 1),
    N("n_object_unclosed", "{\"a\":1", 6),
    N("n_object_bracket_mismatch", "{\"a\":1]", 6),
    N("n_array_bracket_mismatch", "[1}", 2),
    N("n_single_quoted_string", "['a']", 1),
    N("n_trailing_garbage", "[1] x", 4),
    N("n_two_values", "[1][2]", 3),
    N("n_two_scalars", "1 2", 2),
    N("n_comment_block", "/**/[]", 0),
    N("n_comment_line_after", "[]//", 2),
    N("n_nul_after_value", "[1]\0", 3),
    N("n_nul_in_array", "[1\0]", 2),
    /* ---- rejected: whitespace the RFC does not allow ---- */
    N("n_ws_vertical_tab", "[\v1]", 1),
    N("n_ws_form_feed", "[\f1]", 1),
    N("n_ws_nbsp", "[\xC2\xA0" "1]", 1),
    N("n_ws_bom", "\xEF\xBB\xBF[]", 0),
    N("n_ws_u2028", "[\xE2\x80\xA8" "1]", 1),
    /* ---- rejected: literals ---- */
    N("n_literal_truncated", "[tru]", 1),
    N("n_literal_capital", "[True]", 1),
    N("n_literal_null_extra", "nulll", 4),
    N("n_literal_nan", "[NaN]", 1),
    N("n_literal_infinity", "[Infinity]", 1),
    N("n_literal_minus_infinity", "[-Infinity]", 2),
    N("n_literal_undefined", "[undefined]", 1),
    /* ---- rejected: numbers ---- */
    N("n_number_leading_zero", "[01]", 2),
    N("n_number_minus_leading_zero", "[-01]", 3),
    N("n_number_plus", "[+1]", 1),
    N("n_number_leading_dot", "[.5]", 1),
    N("n_number_trailing_dot", "[1.]", 3),
    N("n_number_dot_exp", "[1.e5]", 3),
    N("n_number_exp_empty", "[1e]", 3),
    N("n_number_exp_sign_only", "[1e+]", 4),
    N("n_number_minus_only", "[-]", 2),
    N("n_number_double_minus", "[--1]", 2),
    N("n_number_hex", "[0x10]", 2),
    N("n_number_frac_exp_frac", "[1e1.5]", 4),
    N("n_number_space_inside", "[1 000]", 3),
    N("n_number_minus_space", "[- 1]", 2),
    N("n_number_top_minus", "-", 1),
    /* ---- rejected: strings ---- */
    N("n_string_unterminated", "\"abc", 4),
    N("n_string_unterminated_escape", "\"abc\\", 4),
    N("n_string_bad_escape_x", "[\"\\x41\"]", 2),
    N("n_string_bad_escape_quote", "[\"\\'\"]", 2),
    N("n_string_bad_escape_a", "[\"\\a\"]", 2),
    N("n_string_u_short", "[\"\\u12\"]", 2),
    N("n_string_u_nonhex", "[\"\\uZZZZ\"]", 2),
    N("n_string_u_uppercase_U", "[\"\\U0041\"]", 2),
    N("n_string_ctrl_01", "[\"a\x01\"]", 3),
    N("n_string_ctrl_tab", "[\"\t\"]", 2),
    N("n_string_ctrl_newline", "[\"\n\"]", 2),
    N("n_string_ctrl_nul", "[\"a\0b\"]", 3),
    N("n_string_ctrl_1f", "[\"\x1F\"]", 2),
    N("n_string_lone_high_surrogate", "\"\\uD800\"", 1),
    N("n_string_lone_low_surrogate", "\"\\uDC00\"", 1),
    N("n_string_high_then_ascii", "\"\\uD800\\u0041\"", 1),
    N("n_string_high_then_text", "\"\\uD800abc\"", 1),
    N("n_string_high_high", "\"\\uDBFF\\uDBFF\"", 1),
    N("n_string_low_high", "\"\\uDC00\\uD800\"", 1),
    N("n_string_high_then_escape", "\"\\uD800\\n\"", 1),
    N("n_string_high_at_end", "\"\\uD83D", 1),
    /* ---- rejected: invalid UTF-8, one case per class ---- */
    N("n_utf8_lone_continuation", "[\"a\x80\"]", 3),
    N("n_utf8_continuation_bf", "[\"\xBF\"]", 2),
    N("n_utf8_overlong_nul_c0", "[\"\xC0\x80\"]", 2),
    N("n_utf8_overlong_c1", "[\"\xC1\xBF\"]", 2),
    N("n_utf8_overlong_3byte", "[\"\xE0\x80\xAF\"]", 2),
    N("n_utf8_overlong_3byte_max", "[\"\xE0\x9F\xBF\"]", 2),
    N("n_utf8_overlong_4byte", "[\"\xF0\x8F\xBF\xBF\"]", 2),
    N("n_utf8_surrogate_d800", "[\"\xED\xA0\x80\"]", 2),
    N("n_utf8_surrogate_dfff", "[\"\xED\xBF\xBF\"]", 2),
    N("n_utf8_surrogate_pair_cesu", "[\"\xED\xA0\xBD\xED\xB8\x8A\"]", 2),
    N("n_utf8_above_10ffff", "[\"\xF4\x90\x80\x80\"]", 2),
    N("n_utf8_f5", "[\"\xF5\x80\x80\x80\"]", 2),
    N("n_utf8_f8_5byte", "[\"\xF8\x88\x80\x80\x80\"]", 2),
    N("n_utf8_fc_6byte", "[\"\xFC\x84\x80\x80\x80\x80\"]", 2),
    N("n_utf8_fe", "[\"\xFE\"]", 2),
    N("n_utf8_ff", "[\"\xFF\"]", 2),
    N("n_utf8_truncated_2byte", "[\"\xC3\"]", 2),
    N("n_utf8_truncated_3byte", "[\"\xE2\x82\"]", 2),
    N("n_utf8_truncated_4byte", "[\"\xF0\x9F\x98\"]", 2),
    N("n_utf8_truncated_at_eof", "\"\xF0\x9F", 1),
    N("n_utf8_bad_second_byte", "[\"\xC3\x28\"]", 2),
    N("n_utf8_bad_third_byte", "[\"\xE2\x82\x28\"]", 2),
    N("n_utf8_bad_fourth_byte", "[\"\xF0\x9F\x98\x28\"]", 2),
    N("n_utf8_after_long_ascii", "[\"abcdefghijklmnop\xC0\xAF\"]", 18),
    N("n_utf8_in_key", "{\"k\xFF\":1}", 3),
    N("n_utf8_outside_string", "[\xC3\xA9]", 1),
};

static void check_case(const jcase *c)
{
    json_doc doc = JSON_DOC_INIT;
    json_error e1 = {0, NULL}, e2 = {0, NULL};
    int r1 = json_doc_parse(&doc, c->text, c->len, 0, &e1);
    int r2 = json_validate(c->text, c->len, 0, &e2);
    if ((r1 == DV_OK) != c->ok || (r2 == DV_OK) != c->ok) {
        fail_msg("%s: expected %s, parse rc %d (%s at %zu), validate rc %d", c->name,
                 c->ok ? "accept" : "reject", r1, r1 ? e1.reason : "-", e1.offset, r2);
    }
    if (!c->ok) {
        assert_int_equal(r1, DV_ERR_INVALID);
        assert_int_equal(r2, DV_ERR_INVALID);
        assert_non_null(e1.reason);
        assert_null(json_doc_root(&doc));
        if (e1.offset != e2.offset)
            fail_msg("%s: parser offset %zu, validator offset %zu", c->name, e1.offset, e2.offset);
        if (c->offset >= 0 && e1.offset != (size_t)c->offset)
            fail_msg("%s: error at %zu (%s), expected %ld", c->name, e1.offset, e1.reason,
                     c->offset);
    } else {
        assert_non_null(json_doc_root(&doc));
    }
    json_doc_free(&doc);
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i]);
}

/* Parses text (NUL-terminated) and serialises the root into *out. */
static void reserialize(const char *text, size_t len, buf_t *out)
{
    json_doc doc = JSON_DOC_INIT;
    json_error e = {0, NULL};
    int rc = json_doc_parse(&doc, text, len, 0, &e);
    if (rc)
        fail_msg("parse of %s failed: %s at %zu", text, e.reason, e.offset);
    buf_reset(out);
    assert_int_equal(json_serialize(json_doc_root(&doc), out), DV_OK);
    json_doc_free(&doc);
}

static void assert_reserializes(const char *in, size_t in_len, const char *want, size_t want_len)
{
    buf_t out = BUF_INIT;
    reserialize(in, in_len, &out);
    if (out.len != want_len || memcmp(out.data, want, want_len) != 0)
        fail_msg("%s -> %.*s, expected %s", in, (int)out.len, (char *)out.data, want);
    buf_free(&out);
}
#define RESER(in, want) assert_reserializes(in, sizeof(in) - 1, want, sizeof(want) - 1)
#define IDENT(in) RESER(in, in)

static void test_round_trip_minified_is_identical(void **state)
{
    (void)state;
    IDENT("{}");
    IDENT("[]");
    IDENT("{\"a\":[1,2.50,-0,1e400,\"x\\\"y\\\\z\\n\\u001F\",true,false,null],\"b\":{}}");
    IDENT("[1.0,1E+2,1e-400,123456789012345678901234567890,-0.0,0.1]");
    IDENT("\"\\u0000\\u0001\\b\\f\\n\\r\\t\\u001F\x7F\"");
    IDENT("\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E /\"");
    IDENT("{\"z\":1,\"a\":2,\"m\":{\"y\":[],\"b\":[{}]}}");
    IDENT("\"\\u0000\"");
    IDENT("[[[[[[[[[[]]]]]]]]]]");
}

static void test_canonical_output(void **state)
{
    (void)state;
    /* whitespace removed */
    RESER(" [ 1 , { \"a\" : true } ] ", "[1,{\"a\":true}]");
    /* non-ASCII escapes come out as UTF-8 bytes (jiffy emits UTF-8) */
    RESER("\"\\u00e9\"", "\"\xC3\xA9\"");
    RESER("\"\\uD834\\uDD1E\"", "\"\xF0\x9D\x84\x9E\"");
    /* U+2028/2029 are not escaped (jiffy's default) */
    RESER("\"\\u2028\\u2029\"", "\"\xE2\x80\xA8\xE2\x80\xA9\"");
    /* '/' never escaped */
    RESER("\"\\/\"", "\"/\"");
    /* control characters: short forms where JSON has them, else upper-case \u00XX */
    RESER("\"\\u0008\\u000c\\u000A\\u000d\\u0009\\u001f\\u0001\"", "\"\\b\\f\\n\\r\\t\\u001F\\u0001\"");
    /* DEL and other printable ASCII are not escaped */
    RESER("\"\\u007f\\u0041\"", "\"\x7F" "A\"");
    RESER("\"\\\"\\\\\"", "\"\\\"\\\\\"");
    /* duplicates: last value wins at the last position (jiffy dedupe_keys) */
    RESER("{\"a\":1,\"b\":2,\"a\":3}", "{\"b\":2,\"a\":3}");
    RESER("{\"x\":1,\"x\":2,\"x\":3}", "{\"x\":3}");
    RESER("{\"o\":{\"k\":1,\"k\":[2]},\"k\":0}", "{\"o\":{\"k\":[2]},\"k\":0}");
    RESER("[{\"a\":1,\"a\":2},{\"a\":3}]", "[{\"a\":2},{\"a\":3}]");
}

static void test_numbers_kept_and_converted(void **state)
{
    (void)state;
    static const char text[] =
        "[9223372036854775807,9223372036854775808,-9223372036854775808,-9223372036854775809,"
        "1.0,1e2,-0,1e400,1e-400,0.1,123456789012345678901234567890,-1.5E+3]";
    json_doc doc = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&doc, text, sizeof text - 1, 0, NULL), DV_OK);
    const json_val *a = json_doc_root(&doc);
    assert_int_equal(json_len(a), 12);
    int64_t i;
    double d;
    size_t n;
    assert_int_equal(json_get_i64(json_array_get(a, 0), &i), DV_OK);
    assert_true(i == INT64_MAX);
    assert_int_equal(json_get_i64(json_array_get(a, 1), &i), DV_ERR_TOO_LARGE);
    assert_int_equal(json_get_i64(json_array_get(a, 2), &i), DV_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(json_get_i64(json_array_get(a, 3), &i), DV_ERR_TOO_LARGE);
    assert_int_equal(json_get_i64(json_array_get(a, 4), &i), DV_ERR_INVALID); /* 1.0 */
    assert_int_equal(json_get_i64(json_array_get(a, 5), &i), DV_ERR_INVALID); /* 1e2 */
    assert_int_equal(json_get_i64(json_array_get(a, 6), &i), DV_OK);
    assert_true(i == 0);
    assert_int_equal(json_get_double(json_array_get(a, 4), &d), DV_OK);
    assert_true(d == 1.0);
    assert_int_equal(json_get_double(json_array_get(a, 5), &d), DV_OK);
    assert_true(d == 100.0);
    assert_int_equal(json_get_double(json_array_get(a, 6), &d), DV_OK);
    assert_true(d == 0.0 && signbit(d));
    assert_int_equal(json_get_double(json_array_get(a, 7), &d), DV_ERR_TOO_LARGE);
    assert_int_equal(json_get_double(json_array_get(a, 8), &d), DV_OK);
    assert_true(d == 0.0);
    assert_int_equal(json_get_double(json_array_get(a, 9), &d), DV_OK);
    assert_true(d == 0.1);
    assert_int_equal(json_get_double(json_array_get(a, 10), &d), DV_OK);
    assert_true(d == 123456789012345678901234567890.0);
    assert_int_equal(json_get_double(json_array_get(a, 11), &d), DV_OK);
    assert_true(d == -1500.0);
    /* the text is what was written */
    const char *s = json_str(json_array_get(a, 10), &n);
    assert_int_equal(n, 30);
    assert_memory_equal(s, "123456789012345678901234567890", 30);
    s = json_str(json_array_get(a, 4), &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "1.0", 3);
    /* non-numbers refuse conversion */
    assert_int_equal(json_get_i64(a, &i), DV_ERR_INVALID);
    assert_int_equal(json_get_double(a, &d), DV_ERR_INVALID);
    assert_null(json_array_get(a, 12));
    json_doc_free(&doc);

    /* long number text (> local buffer) converts too */
    char big[400];
    memset(big, '0', sizeof big);
    big[0] = '1';
    big[1] = '.';
    assert_int_equal(json_doc_parse(&doc, big, sizeof big, 0, NULL), DV_OK);
    assert_int_equal(json_get_double(json_doc_root(&doc), &d), DV_OK);
    assert_true(d == 1.0);
    json_doc_free(&doc);
}

static char *nested(size_t depth, size_t *len)
{
    char *s = malloc(2 * depth + 1);
    assert_non_null(s);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    *len = 2 * depth;
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    json_doc doc = JSON_DOC_INIT;
    json_error e;
    size_t len;
    char *s = nested(JSON_DEFAULT_MAX_DEPTH, &len);
    assert_int_equal(json_doc_parse(&doc, s, len, 0, &e), DV_OK);
    assert_int_equal(json_validate(s, len, 0, &e), DV_OK);
    free(s);
    s = nested(JSON_DEFAULT_MAX_DEPTH + 1, &len);
    assert_int_equal(json_doc_parse(&doc, s, len, 0, &e), DV_ERR_INVALID);
    assert_int_equal(e.offset, JSON_DEFAULT_MAX_DEPTH);
    assert_string_equal(e.reason, "nesting too deep");
    assert_int_equal(json_validate(s, len, 0, &e), DV_ERR_INVALID);
    assert_int_equal(e.offset, JSON_DEFAULT_MAX_DEPTH);
    /* a caller may allow more */
    assert_int_equal(json_doc_parse(&doc, s, len, JSON_DEFAULT_MAX_DEPTH + 1, &e), DV_OK);
    buf_t out = BUF_INIT;
    assert_int_equal(json_serialize(json_doc_root(&doc), &out), DV_OK);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, s, len);
    buf_free(&out);
    free(s);
    /* ... or less; objects count like arrays */
    static const char three[] = "{\"a\":[{}]}", four[] = "{\"a\":[{\"b\":[]}]}";
    assert_int_equal(json_doc_parse(&doc, three, sizeof three - 1, 3, &e), DV_OK);
    assert_int_equal(json_doc_parse(&doc, four, sizeof four - 1, 3, &e), DV_ERR_INVALID);
    assert_int_equal(e.offset, 11);
    assert_int_equal(json_validate(four, sizeof four - 1, 3, &e), DV_ERR_INVALID);
    /* deep validation beyond the validator's local stack */
    s = nested(5000, &len);
    assert_int_equal(json_validate(s, len, 10000, &e), DV_OK);
    assert_int_equal(json_doc_parse(&doc, s, len, 10000, &e), DV_OK);
    free(s);
    json_doc_free(&doc);
}

static void test_strings_escapes_and_nul(void **state)
{
    (void)state;
    static const char text[] =
        "{\"a\\u0000b\":\"x\\u0000y\",\"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\","
        "\"pair\":\"\\uD834\\uDD1E\",\"e\":\"\\u00E9\\u20ac\",\"plain\":\"caf\xC3\xA9\"}";
    json_doc doc = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&doc, text, sizeof text - 1, 0, NULL), DV_OK);
    const json_val *o = json_doc_root(&doc);
    assert_true(json_is_object(o));
    assert_int_equal(json_len(o), 5);
    size_t n;
    const json_val *v = json_object_get(o, "a\0b", 3);
    assert_non_null(v);
    const char *s = json_str(v, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "x\0y", 3);
    assert_null(json_object_get_cstr(o, "a"));
    s = json_str(json_object_get_cstr(o, "esc"), &n);
    assert_int_equal(n, 8);
    assert_memory_equal(s, "\"\\/\b\f\n\r\t", 8);
    s = json_str(json_object_get_cstr(o, "pair"), &n);
    assert_int_equal(n, 4);
    assert_memory_equal(s, "\xF0\x9D\x84\x9E", 4);
    s = json_str(json_object_get_cstr(o, "e"), &n);
    assert_int_equal(n, 5);
    assert_memory_equal(s, "\xC3\xA9\xE2\x82\xAC", 5);
    assert_true(json_str_eq(json_object_get_cstr(o, "plain"), "caf\xC3\xA9"));
    assert_false(json_str_eq(json_object_get_cstr(o, "plain"), "cafe"));
    /* serialises back with NULs escaped */
    buf_t out = BUF_INIT;
    assert_int_equal(json_serialize(o, &out), DV_OK);
    static const char want[] =
        "{\"a\\u0000b\":\"x\\u0000y\",\"esc\":\"\\\"\\\\/\\b\\f\\n\\r\\t\","
        "\"pair\":\"\xF0\x9D\x84\x9E\",\"e\":\"\xC3\xA9\xE2\x82\xAC\",\"plain\":\"caf\xC3\xA9\"}";
    assert_int_equal(out.len, sizeof want - 1);
    assert_memory_equal(out.data, want, out.len);
    buf_free(&out);
    json_doc_free(&doc);
}

static void test_dom_navigation_and_duplicates(void **state)
{
    (void)state;
    static const char text[] = "{\"a\":1,\"b\":[true,false,null,\"s\"],\"a\":{\"c\":2},\"d\":{}}";
    json_doc doc = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&doc, text, sizeof text - 1, 0, NULL), DV_OK);
    const json_val *o = json_doc_root(&doc);
    assert_int_equal(json_len(o), 3); /* a (last), b, d */
    const json_val *a = json_object_get_cstr(o, "a");
    assert_true(json_is_object(a));
    assert_non_null(json_object_get_cstr(a, "c"));
    /* iteration sees b, a, d: the shadowed first "a" is invisible */
    const char *order[3] = {"b", "a", "d"};
    json_iter it = json_iter_begin(o);
    const json_val *k, *v;
    int i = 0;
    while (json_iter_member(&it, &k, &v)) {
        assert_true(i < 3);
        assert_true(json_str_eq(k, order[i]));
        i++;
    }
    assert_int_equal(i, 3);
    const json_val *b = json_object_get_cstr(o, "b");
    assert_int_equal(json_len(b), 4);
    json_type want[4] = {JSON_TRUE, JSON_FALSE, JSON_NULL, JSON_STRING};
    it = json_iter_begin(b);
    i = 0;
    while (json_iter_elem(&it, &v))
        assert_int_equal(json_typeof(v), want[i++]);
    assert_int_equal(i, 4);
    assert_true(json_is_bool(json_array_get(b, 0)) && json_is_true(json_array_get(b, 0)));
    assert_true(json_is_null(json_array_get(b, 2)));
    assert_null(json_object_get_cstr(b, "x")); /* not an object */
    assert_int_equal(json_len(json_object_get_cstr(o, "d")), 0);
    /* iterating a scalar yields nothing */
    it = json_iter_begin(json_array_get(b, 3));
    assert_false(json_iter_elem(&it, &v));
    json_doc_free(&doc);

    /* a large object with duplicates goes through the hash path */
    buf_t in = BUF_INIT, want_out = BUF_INIT, out = BUF_INIT;
    buf_append_str(&in, "{");
    for (int m = 0; m < 100; m++)
        buf_printf(&in, "%s\"k%d\":%d", m ? "," : "", m % 30, m);
    buf_append_str(&in, "}");
    buf_append_str(&want_out, "{");
    for (int m = 70; m < 100; m++)
        buf_printf(&want_out, "%s\"k%d\":%d", m > 70 ? "," : "", m % 30, m);
    buf_append_str(&want_out, "}");
    assert_int_equal(json_doc_parse(&doc, in.data, in.len, 0, NULL), DV_OK);
    o = json_doc_root(&doc);
    assert_int_equal(json_len(o), 30);
    int64_t iv;
    assert_int_equal(json_get_i64(json_object_get_cstr(o, "k5"), &iv), DV_OK);
    assert_int_equal(iv, 95);
    assert_int_equal(json_serialize(o, &out), DV_OK);
    assert_int_equal(out.len, want_out.len);
    assert_memory_equal(out.data, want_out.data, out.len);
    buf_free(&in);
    buf_free(&want_out);
    buf_free(&out);
    json_doc_free(&doc);
}

static void test_doc_reuse(void **state)
{
    (void)state;
    json_doc doc;
    json_doc_init(&doc);
    buf_t out = BUF_INIT;
    for (int i = 0; i < 200; i++) {
        char text[128];
        int n = snprintf(text, sizeof text, "{\"i\":%d,\"s\":\"x\\n%d\",\"l\":[%d,%d]}", i, i, i, i + 1);
        assert_int_equal(json_doc_parse(&doc, text, (size_t)n, 0, NULL), DV_OK);
        buf_reset(&out);
        assert_int_equal(json_serialize(json_doc_root(&doc), &out), DV_OK);
        assert_int_equal(out.len, (size_t)n);
        assert_memory_equal(out.data, text, out.len);
        /* a failing parse in between leaves no root */
        assert_int_equal(json_doc_parse(&doc, "[1,", 3, 0, NULL), DV_ERR_INVALID);
        assert_null(json_doc_root(&doc));
    }
    buf_free(&out);
    json_doc_free(&doc);
}

static void test_writer(void **state)
{
    (void)state;
    buf_t out = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &out);
    assert_int_equal(json_write_begin_object(&w), DV_OK);
    json_write_key_cstr(&w, "s");
    json_write_cstr(&w, "q\"b\\c\x01\x1f\n/\xC3\xA9\xE2\x80\xA8");
    json_write_key_cstr(&w, "n");
    json_write_begin_array(&w);
    json_write_i64(&w, INT64_MIN);
    json_write_u64(&w, UINT64_MAX);
    json_write_double(&w, 0.1);
    json_write_double(&w, 1.0);
    json_write_double(&w, -0.0);
    json_write_double(&w, 1e300);
    json_write_double(&w, 5e-324);
    json_write_number_text(&w, "1e400", 5);
    json_write_end_array(&w);
    json_write_key(&w, "k\0z", 3);
    json_write_bool(&w, true);
    json_write_key_cstr(&w, "f");
    json_write_bool(&w, false);
    json_write_key_cstr(&w, "z");
    json_write_null(&w);
    json_write_key_cstr(&w, "raw");
    json_write_raw(&w, "{\"stored\":[1,2]}", 16);
    json_write_key_cstr(&w, "e");
    json_write_begin_object(&w);
    json_write_end_object(&w);
    assert_int_equal(json_write_end_object(&w), DV_OK);
    assert_int_equal(w.err, DV_OK);
    static const char want[] =
        "{\"s\":\"q\\\"b\\\\c\\u0001\\u001F\\n/\xC3\xA9\xE2\x80\xA8\","
        "\"n\":[-9223372036854775808,18446744073709551615,0.1,1.0,-0.0,1e+300,5e-324,1e400],"
        "\"k\\u0000z\":true,\"f\":false,\"z\":null,\"raw\":{\"stored\":[1,2]},\"e\":{}}";
    if (out.len != sizeof want - 1 || memcmp(out.data, want, out.len) != 0)
        fail_msg("writer produced %.*s", (int)out.len, (char *)out.data);
    /* the output is valid JSON and reads back with the same values */
    json_doc doc = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&doc, out.data, out.len, 0, NULL), DV_OK);
    double d;
    assert_int_equal(json_get_double(json_array_get(json_object_get_cstr(json_doc_root(&doc), "n"), 6), &d), DV_OK);
    assert_true(d == 5e-324);
    json_doc_free(&doc);

    /* invalid input is refused and the error sticks */
    buf_reset(&out);
    json_writer_init(&w, &out);
    json_write_begin_array(&w);
    assert_int_equal(json_write_string(&w, "\xC0\x80", 2), DV_ERR_INVALID);
    assert_int_equal(json_write_null(&w), DV_ERR_INVALID);
    assert_int_equal(w.err, DV_ERR_INVALID);
    assert_int_equal(out.len, 1);
    json_writer_init(&w, &out);
    assert_int_equal(json_write_double(&w, NAN), DV_ERR_INVALID);
    json_writer_init(&w, &out);
    assert_int_equal(json_write_double(&w, INFINITY), DV_ERR_INVALID);
    json_writer_init(&w, &out);
    assert_int_equal(json_write_number_text(&w, "01", 2), DV_ERR_INVALID);
    json_writer_init(&w, &out);
    assert_int_equal(json_write_number_text(&w, "1 ", 2), DV_ERR_INVALID);
    json_writer_init(&w, &out);
    assert_int_equal(json_write_number_text(&w, "", 0), DV_ERR_INVALID);
    json_writer_init(&w, &out);
    assert_int_equal(json_write_key(&w, "\xED\xA0\x80", 3), DV_ERR_INVALID);
    buf_free(&out);
}

static void test_write_value_and_strip_members(void **state)
{
    (void)state;
    static const char body[] =
        "{\"_id\":\"doc1\",\"name\":\"x\",\"_rev\":\"1-abc\",\"nested\":{\"_id\":\"kept\"},"
        "\"_attachments\":{\"a.txt\":{\"stub\":true}},\"n\":[1,2]}";
    json_doc doc = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&doc, body, sizeof body - 1, 0, NULL), DV_OK);
    const json_val *root = json_doc_root(&doc);
    buf_t out = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &out);
    static const char *const strip[] = {"_id", "_rev", "_attachments"};
    assert_int_equal(json_write_object_without(&w, root, strip, 3), DV_OK);
    static const char want[] = "{\"name\":\"x\",\"nested\":{\"_id\":\"kept\"},\"n\":[1,2]}";
    assert_int_equal(out.len, sizeof want - 1);
    assert_memory_equal(out.data, want, out.len);

    /* stripping everything leaves {} */
    static const char *const all[] = {"_id", "name", "_rev", "nested", "_attachments", "n"};
    buf_reset(&out);
    json_writer_init(&w, &out);
    assert_int_equal(json_write_object_without(&w, root, all, 6), DV_OK);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "{}", 2);

    /* DOM values spliced into a response, with commas placed correctly */
    buf_reset(&out);
    json_writer_init(&w, &out);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "ok");
    json_write_bool(&w, true);
    json_write_key_cstr(&w, "n");
    json_write_value(&w, json_object_get_cstr(root, "n"));
    json_write_key_cstr(&w, "doc");
    json_write_object_without(&w, root, strip, 1);
    json_write_key_cstr(&w, "rows");
    json_write_begin_array(&w);
    json_write_value(&w, json_object_get_cstr(root, "nested"));
    json_write_value(&w, json_object_get_cstr(root, "name"));
    json_write_end_array(&w);
    assert_int_equal(json_write_end_object(&w), DV_OK);
    static const char want2[] =
        "{\"ok\":true,\"n\":[1,2],\"doc\":{\"name\":\"x\",\"_rev\":\"1-abc\",\"nested\":{\"_id\":\"kept\"},"
        "\"_attachments\":{\"a.txt\":{\"stub\":true}},\"n\":[1,2]},\"rows\":[{\"_id\":\"kept\"},\"x\"]}";
    if (out.len != sizeof want2 - 1 || memcmp(out.data, want2, out.len) != 0)
        fail_msg("got %.*s", (int)out.len, (char *)out.data);
    /* not an object */
    json_writer_init(&w, &out);
    assert_int_equal(json_write_object_without(&w, json_object_get_cstr(root, "n"), strip, 3),
                     DV_ERR_INVALID);
    buf_free(&out);
    json_doc_free(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_round_trip_minified_is_identical),
        cmocka_unit_test(test_canonical_output),
        cmocka_unit_test(test_numbers_kept_and_converted),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_strings_escapes_and_nul),
        cmocka_unit_test(test_dom_navigation_and_duplicates),
        cmocka_unit_test(test_doc_reuse),
        cmocka_unit_test(test_writer),
        cmocka_unit_test(test_write_value_and_strip_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
