/*
 * test_query_args.c — view query parameters as CouchDB parses them: URL
 * text and decoded JSON forms, aliases, later parameters overriding earlier
 * ones, CouchDB's error texts (Erlang's printing of the bad value
 * included), validation of combinations, deep copies for /queries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "http/query_args.h"
#include "http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses a query string ("a=1&b=2") into a (URL form). */
static int from_qs(query_args *a, const char *qs, db_err *e)
{
    char target[512];
    snprintf(target, sizeof target, "/db/_all_docs?%s", qs);
    http_target_t t;
    assert_int_equal(http_target_parse(target, strlen(target), &t), DV_OK);
    int rc = query_args_from_target(a, &t, 0, e);
    http_target_free(&t);
    return rc;
}

/* Parses a JSON object's members into a (decoded form). */
static int from_json(query_args *a, const char *obj, db_err *e)
{
    json_doc jd = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&jd, obj, strlen(obj), 0, NULL), DV_OK);
    int rc = query_args_from_object(a, json_doc_root(&jd), e);
    json_doc_free(&jd);
    return rc;
}

static void assert_buf(const buf_t *b, const char *want)
{
    assert_int_equal(b->len, strlen(want));
    if (b->len)
        assert_memory_equal(b->data, want, b->len);
}

/* Expects qs to fail with status/error/reason. */
static void qs_fails(const char *qs, int status, const char *error, const char *reason)
{
    query_args a;
    db_err e;
    query_args_init(&a);
    int rc = from_qs(&a, qs, &e);
    if (rc == DV_OK)
        rc = query_args_validate(&a, QUERY_VIEW_MAP, &e);
    if (rc != DV_ERR_INVALID)
        fail_msg("%s: expected an error, got %d", qs, rc);
    assert_int_equal(e.status, status);
    assert_string_equal(e.error, error);
    assert_string_equal(e.reason, reason);
    query_args_free(&a);
}

static void json_fails(const char *obj, const char *reason)
{
    query_args a;
    db_err e;
    query_args_init(&a);
    int rc = from_json(&a, obj, &e);
    if (rc == DV_OK)
        rc = query_args_validate(&a, QUERY_VIEW_MAP, &e);
    if (rc != DV_ERR_INVALID)
        fail_msg("%s: expected an error, got %d", obj, rc);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.error, "query_parse_error");
    assert_string_equal(e.reason, reason);
    query_args_free(&a);
}

static void test_defaults(void **state)
{
    (void)state;
    query_args a;
    db_err e;
    query_args_init(&a);
    assert_int_equal(from_qs(&a, "", &e), DV_OK);
    assert_int_equal(query_args_validate(&a, QUERY_VIEW_MAP, &e), DV_OK);
    assert_false(a.start_key.set);
    assert_false(a.end_key.set);
    assert_false(a.has_keys);
    assert_false(a.descending);
    assert_true(a.inclusive_end);
    assert_true(a.limit == UINT64_MAX);
    assert_int_equal(a.skip, 0);
    assert_false(a.include_docs);
    assert_int_equal(a.conflicts, -1);
    assert_int_equal(a.group_level, 0);
    assert_int_equal(a.update, QUERY_UPDATE_TRUE);
    query_args_free(&a);
}

static void test_url_values(void **state)
{
    (void)state;
    query_args a;
    db_err e;
    query_args_init(&a);
    assert_int_equal(from_qs(&a,
                             "startkey=%22a%5C%22b%22&end_key=%5B1,%20%7B%7D%5D&startkey_docid=x%20y&"
                             "end_key_doc_id=%22z%22&limit=%2B7&skip=0003&descending=TRUE&inclusive_end=False&"
                             "include_docs=true&conflicts=false&attachments=true&att_encoding_info=true&"
                             "update_seq=true&stale=update_after&unknown=whatever&=x",
                             &e),
                     DV_OK);
    assert_int_equal(query_args_validate(&a, QUERY_VIEW_MAP, &e), DV_OK);
    assert_true(a.start_key.set);
    assert_true(a.start_key.is_string);
    assert_buf(&a.start_key.json, "\"a\\\"b\"");
    assert_buf(&a.start_key.str, "a\"b");
    assert_true(a.end_key.set);
    assert_false(a.end_key.is_string);
    assert_buf(&a.end_key.json, "[1,{}]");
    assert_true(a.has_start_docid);
    assert_buf(&a.start_docid, "x y");
    assert_buf(&a.end_docid, "\"z\""); /* doc ids are not JSON */
    assert_true(a.limit == 7);
    assert_int_equal(a.skip, 3);
    assert_true(a.descending);
    assert_false(a.inclusive_end);
    assert_true(a.include_docs);
    assert_int_equal(a.conflicts, 0);
    assert_true(a.attachments);
    assert_true(a.att_encoding_info);
    assert_true(a.update_seq);
    assert_true(a.stable);
    assert_int_equal(a.update, QUERY_UPDATE_LAZY);
    query_args_free(&a);

    /* key sets both ends; later parameters win; huge limits saturate */
    query_args_init(&a);
    assert_int_equal(from_qs(&a, "key=%22k%22&endkey=%22z%22&limit=5&limit=99999999999999999999999&keys=%5B%5D",
                             &e),
                     DV_OK);
    assert_int_equal(query_args_validate(&a, QUERY_VIEW_MAP, &e), DV_OK);
    assert_buf(&a.start_key.str, "k");
    assert_buf(&a.end_key.str, "z");
    assert_true(a.limit == UINT64_MAX);
    assert_true(a.has_keys);
    assert_buf(&a.keys, "[]"); /* empty keys go with key (CouchDB allows it) */
    query_args_free(&a);
}

static void test_url_errors(void **state)
{
    (void)state;
    qs_fails("descending=yes", 400, "query_parse_error", "Invalid boolean parameter: \"yes\"");
    qs_fails("include_docs=", 400, "query_parse_error", "Invalid boolean parameter: \"\"");
    qs_fails("inclusive_end=%C3%A9", 400, "query_parse_error", "Invalid boolean parameter: [195,169]");
    qs_fails("limit=abc", 400, "query_parse_error", "Invalid value for integer: \"abc\"");
    qs_fails("limit=1.5", 400, "query_parse_error", "Invalid value for integer: \"1.5\"");
    qs_fails("limit=-", 400, "query_parse_error", "Invalid value for integer: \"-\"");
    qs_fails("skip=-1", 400, "query_parse_error", "Invalid value for positive integer: \"-1\"");
    qs_fails("skip=%22", 400, "query_parse_error", "Invalid value for integer: \"\\\"\"");
    qs_fails("key=abc", 400, "bad_request", "invalid UTF-8 JSON");
    qs_fails("startkey=%7B", 400, "bad_request", "invalid UTF-8 JSON");
    qs_fails("keys=%5B%22a%22", 400, "bad_request", "invalid UTF-8 JSON");
    qs_fails("stale=bad", 400, "query_parse_error", "Invalid value for `stale`.");
    qs_fails("stable=1", 400, "query_parse_error", "Invalid value for `stable`.");
    qs_fails("update=maybe", 400, "query_parse_error", "Invalid value for `update`.");
    qs_fails("keys=%5B%22a%22%5D&key=%22a%22", 400, "query_parse_error",
             "`keys` is incompatible with `key`, `start_key` and `end_key`");
    qs_fails("keys=%5B1%5D&startkey=null", 400, "query_parse_error",
             "`keys` is incompatible with `key`, `start_key` and `end_key`");
    qs_fails("keys=%7B%7D", 400, "query_parse_error", "`keys` must be an array of strings.");
    qs_fails("reduce=true", 400, "query_parse_error", "Reduce is invalid for map-only views.");
    qs_fails("group=true", 400, "query_parse_error", "Invalid use of grouping on a map view.");
    qs_fails("group_level=2", 400, "query_parse_error", "Invalid use of grouping on a map view.");
    qs_fails("group=false&group_level=1", 400, "query_parse_error",
             "Can't specify group=false and group_level>0 at the same time");
    qs_fails("partition=p", 400, "query_parse_error", "`partition` parameter is not supported on this db");
}

static void test_decoded_values(void **state)
{
    (void)state;
    query_args a;
    db_err e;
    query_args_init(&a);
    assert_int_equal(from_json(&a,
                               "{\"startkey\":\"b\",\"endkey\":{\"x\":[1,2.50]},\"limit\":2,\"skip\":0,"
                               "\"descending\":\"true\",\"include_docs\":true,\"startkey_docid\":17,"
                               "\"reduce\":false,\"group\":false,\"stable\":true,\"update\":\"lazy\"}",
                               &e),
                     DV_OK);
    assert_int_equal(query_args_validate(&a, QUERY_VIEW_MAP, &e), DV_OK);
    assert_buf(&a.start_key.str, "b");
    assert_buf(&a.end_key.json, "{\"x\":[1,2.50]}"); /* numbers as written */
    assert_true(a.limit == 2);
    assert_true(a.descending);
    assert_true(a.include_docs);
    assert_buf(&a.start_docid, "17");
    assert_true(a.stable);
    assert_int_equal(a.update, QUERY_UPDATE_LAZY);
    query_args_free(&a);

    json_fails("{\"limit\":\"5\"}", "Invalid value for integer: <<\"5\">>");
    json_fails("{\"limit\":1.0}", "Invalid value for integer: 1.0");
    json_fails("{\"skip\":-3}", "Invalid value for positive integer: -3");
    json_fails("{\"descending\":1}", "Invalid boolean parameter: 1");
    json_fails("{\"include_docs\":\"yes\"}", "Invalid boolean parameter: <<\"yes\">>");
    json_fails("{\"include_docs\":null}", "Invalid boolean parameter: null");
    json_fails("{\"stale\":true}", "Invalid value for `stale`.");
    json_fails("{\"keys\":\"a\"}", "`keys` must be an array of strings.");
    json_fails("{\"keys\":[\"a\"],\"end_key\":\"b\"}", "`keys` is incompatible with `key`, `start_key` and `end_key`");
}

static void test_reduce_rules(void **state)
{
    (void)state;
    query_args a;
    db_err e;
    query_args_init(&a);
    assert_int_equal(from_qs(&a, "group=true", &e), DV_OK);
    assert_int_equal(query_args_validate(&a, QUERY_VIEW_REDUCE, &e), DV_OK);
    assert_int_equal(a.group_level, QUERY_GROUP_EXACT);
    query_args_free(&a);
    query_args_init(&a);
    assert_int_equal(from_qs(&a, "keys=%5B1%5D", &e), DV_OK);
    assert_int_equal(query_args_validate(&a, QUERY_VIEW_REDUCE, &e), DV_ERR_INVALID);
    assert_string_equal(e.reason, "Multi-key fetchs for reduce views must use `group=true`");
    query_args_free(&a);
    query_args_init(&a);
    assert_int_equal(from_qs(&a, "include_docs=true", &e), DV_OK);
    assert_int_equal(query_args_validate(&a, QUERY_VIEW_REDUCE, &e), DV_ERR_INVALID);
    assert_string_equal(e.reason, "`include_docs` is invalid for reduce");
    query_args_free(&a);
    query_args_init(&a);
    assert_int_equal(from_qs(&a, "group_level=3", &e), DV_OK);
    assert_int_equal(query_args_validate(&a, QUERY_VIEW_REDUCE, &e), DV_OK);
    assert_int_equal(a.group_level, 3);
    query_args_free(&a);
}

/* /queries: each query starts from the URL's parameters, without their
 * keys or grouping; copies own their buffers. */
static void test_copy_and_new_query(void **state)
{
    (void)state;
    query_args base, q;
    db_err e;
    query_args_init(&base);
    assert_int_equal(from_qs(&base, "startkey=%22s%22&keys=%5B%22a%22%5D&limit=3&include_docs=true", &e), DV_OK);
    assert_int_equal(query_args_copy(&q, &base), DV_OK);
    query_args_free(&base); /* q must not depend on base */
    query_args_new_query(&q);
    assert_false(q.has_keys);
    assert_buf(&q.start_key.str, "s");
    assert_true(q.limit == 3);
    assert_true(q.include_docs);
    assert_int_equal(from_json(&q, "{\"limit\":1}", &e), DV_OK);
    assert_int_equal(query_args_validate(&q, QUERY_VIEW_MAP, &e), DV_OK);
    assert_true(q.limit == 1);
    query_args_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_url_values),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_decoded_values),
        cmocka_unit_test(test_reduce_rules),
        cmocka_unit_test(test_copy_and_new_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
