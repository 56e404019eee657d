/*
 * test_router.c — request-target parsing and route matching as CouchDB
 * clients rely on it: segment splitting, percent-decoding, _design/_local
 * ids, query parameters, 405 versus 404, database-name rules, and a seeded
 * property: percent-encoding any bytes and parsing gives the bytes back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "http/json_out.h"
#include "db/db.h"
#include "http/router.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static http_target_t parse(const char *s)
{
    http_target_t t;
    assert_int_equal(http_target_parse(s, strlen(s), &t), DV_OK);
    return t;
}

static void assert_str(http_str_t s, const char *want, size_t n)
{
    assert_int_equal(s.n, n);
    assert_memory_equal(s.p, want, n);
    assert_int_equal(s.p[n], '\0');
}
#define ASSERT_STR(s, lit) assert_str((s), (lit), sizeof(lit) - 1)

static void test_segments(void **state)
{
    (void)state;
    http_target_t t = parse("/");
    assert_int_equal(t.nseg, 0);
    assert_int_equal(t.nparam, 0);
    http_target_free(&t);

    t = parse("//db//doc/");
    assert_int_equal(t.nseg, 2);
    ASSERT_STR(t.seg[0], "db");
    ASSERT_STR(t.seg[1], "doc");
    http_target_free(&t);

    /* %2F stays inside its segment; '+' is a space; bad escapes are literal */
    t = parse("/my+db/_design%2Ffoo/a%zzb/c%4/%41%62%00x");
    assert_int_equal(t.nseg, 5);
    ASSERT_STR(t.seg[0], "my db");
    ASSERT_STR(t.seg[1], "_design/foo");
    ASSERT_STR(t.seg[2], "a%zzb");
    ASSERT_STR(t.seg[3], "c%4");
    ASSERT_STR(t.seg[4], "Ab\0x");
    http_target_free(&t);

    http_target_t bad;
    assert_int_equal(http_target_parse("", 0, &bad), DV_ERR_INVALID);
    assert_int_equal(http_target_parse("db/x", 4, &bad), DV_ERR_INVALID);
    assert_int_equal(http_target_parse("*", 1, &bad), DV_ERR_INVALID);
}

static void test_query(void **state)
{
    (void)state;
    http_target_t t = parse("/_uuids?count=3&&flag;x=a%20b+c&count=9&e=&=v&k%3D=1=2?");
    assert_int_equal(t.nseg, 1);
    assert_int_equal(t.nparam, 7);
    ASSERT_STR(t.param[0].key, "count");
    ASSERT_STR(t.param[0].value, "3");
    ASSERT_STR(t.param[1].key, "flag");
    ASSERT_STR(t.param[1].value, "");
    ASSERT_STR(t.param[2].value, "a b c");
    ASSERT_STR(t.param[4].key, "e");
    ASSERT_STR(t.param[4].value, "");
    ASSERT_STR(t.param[5].key, "");
    ASSERT_STR(t.param[5].value, "v");
    ASSERT_STR(t.param[6].key, "k=");
    ASSERT_STR(t.param[6].value, "1=2?");
    /* the first value wins, as couch_httpd:qs_value */
    ASSERT_STR(*http_target_param(&t, "count"), "3");
    assert_null(http_target_param(&t, "missing"));
    http_target_free(&t);

    t = parse("/?");
    assert_int_equal(t.nseg, 0);
    assert_int_equal(t.nparam, 0);
    http_target_free(&t);
}

static int h_welcome, h_uuids, h_doc, h_doc_delete, h_att, h_db;
static const http_route_t routes[] = {
    {HTTP_GET, "/", "GET,HEAD", &h_welcome, HTTP_ACCESS_PUBLIC},
    {HTTP_GET, "/_uuids/{any}", "GET", &h_uuids, HTTP_ACCESS_PUBLIC},
    {HTTP_GET | HTTP_PUT, "/{db}/{docid}", "GET,HEAD,PUT,DELETE", &h_doc, HTTP_ACCESS_PUBLIC},
    {HTTP_DELETE, "/{db}/{docid}", "GET,HEAD,PUT,DELETE", &h_doc_delete, HTTP_ACCESS_PUBLIC},
    {HTTP_GET, "/{db}/{docid}/{rest}", "GET,HEAD", &h_att, HTTP_ACCESS_PUBLIC},
    {HTTP_ANY, "/{db}/{any}", "GET", &h_db, HTTP_ACCESS_PUBLIC},
};

struct found {
    int rc;
    const http_route_t *route;
    http_match_t m;
    http_target_t t;
    char scratch[512];
};

static void find(struct found *f, int method, const char *target)
{
    f->t = parse(target);
    assert_true(http_route_scratch_size(&f->t) <= sizeof f->scratch);
    f->rc = http_route_find(routes, sizeof routes / sizeof routes[0], method, &f->t, f->scratch, sizeof f->scratch,
                            &f->route, &f->m);
}

static void test_routes(void **state)
{
    (void)state;
    struct found f;
    find(&f, HTTP_GET, "/");
    assert_int_equal(f.rc, HTTP_ROUTE_FOUND);
    assert_ptr_equal(f.route->handler, &h_welcome);
    http_target_free(&f.t);

    find(&f, HTTP_HEAD, "/");
    assert_int_equal(f.rc, HTTP_ROUTE_FOUND);
    http_target_free(&f.t);

    find(&f, HTTP_POST, "/");
    assert_int_equal(f.rc, HTTP_ROUTE_NO_METHOD);
    assert_string_equal(f.route->allow, "GET,HEAD");
    http_target_free(&f.t);

    find(&f, HTTP_GET, "/_uuids/extra/parts?count=2");
    assert_int_equal(f.rc, HTTP_ROUTE_FOUND);
    assert_ptr_equal(f.route->handler, &h_uuids);
    ASSERT_STR(f.m.rest, "extra/parts");
    http_target_free(&f.t);

    /* "/_uuids/{any}" names the resource: the catch-all below never sees it */
    find(&f, HTTP_DELETE, "/_uuids");
    assert_int_equal(f.rc, HTTP_ROUTE_NO_METHOD);
    assert_string_equal(f.route->allow, "GET");
    http_target_free(&f.t);

    const char *design[] = {"/db/_design/foo", "/db/_design%2Ffoo", "/db//_design//foo/"};
    for (size_t i = 0; i < 3; i++) {
        find(&f, HTTP_PUT, design[i]);
        assert_int_equal(f.rc, HTTP_ROUTE_FOUND);
        assert_ptr_equal(f.route->handler, &h_doc);
        ASSERT_STR(f.m.db, "db");
        ASSERT_STR(f.m.docid, "_design/foo");
        http_target_free(&f.t);
    }
    find(&f, HTTP_GET, "/db/_local/x%2Fy");
    ASSERT_STR(f.m.docid, "_local/x/y");
    http_target_free(&f.t);

    find(&f, HTTP_GET, "/db/_design/foo/a/b%2Fc.txt");
    assert_ptr_equal(f.route->handler, &h_att);
    ASSERT_STR(f.m.docid, "_design/foo");
    ASSERT_STR(f.m.rest, "a/b/c.txt");
    http_target_free(&f.t);

    /* "_all_docs" is not a document id; "_design" alone is not one either */
    find(&f, HTTP_GET, "/db/_all_docs");
    assert_ptr_equal(f.route->handler, &h_db);
    http_target_free(&f.t);
    find(&f, HTTP_GET, "/db/_design");
    assert_ptr_equal(f.route->handler, &h_db);
    http_target_free(&f.t);

    /* a later route with the same pattern adds methods to the resource */
    find(&f, HTTP_DELETE, "/db/doc");
    assert_int_equal(f.rc, HTTP_ROUTE_FOUND);
    assert_ptr_equal(f.route->handler, &h_doc_delete);
    http_target_free(&f.t);
    find(&f, HTTP_POST, "/db/doc");
    assert_int_equal(f.rc, HTTP_ROUTE_NO_METHOD);
    assert_string_equal(f.route->allow, "GET,HEAD,PUT,DELETE");
    http_target_free(&f.t);

    static const http_route_t only[] = {{HTTP_PUT, "/x", "PUT", NULL, HTTP_ACCESS_PUBLIC}};
    http_target_t t = parse("/y");
    const http_route_t *r;
    http_match_t m;
    char scratch[64];
    assert_int_equal(http_route_find(only, 1, HTTP_GET, &t, scratch, sizeof scratch, &r, &m), HTTP_ROUTE_NO_PATH);
    assert_null(r);
    http_target_free(&t);
    /* scratch too small: a joined capture cannot match */
    t = parse("/db/_design/foo");
    static const http_route_t doc_only[] = {{HTTP_GET, "/{db}/{docid}", "GET", NULL, HTTP_ACCESS_PUBLIC}};
    assert_int_equal(http_route_find(doc_only, 1, HTTP_GET, &t, scratch, 4, &r, &m), HTTP_ROUTE_NO_PATH);
    http_target_free(&t);
}

static void test_methods_and_names(void **state)
{
    (void)state;
    assert_int_equal(http_method_parse("GET", 3), HTTP_GET);
    assert_int_equal(http_method_parse("COPY", 4), HTTP_COPY);
    assert_int_equal(http_method_parse("get", 3), HTTP_OTHER);
    assert_int_equal(http_method_parse("GETX", 4), HTTP_OTHER);
    const char *good[] = {"a", "db", "a-b_c$d(e)f+g/h", "z9", "_users", "_replicator", "_global_changes"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(db_name_valid(good[i], strlen(good[i])));
    const char *badn[] = {"", "A", "9a", "_foo", "a b", "aB", "a.b", "_users2", "a\xc3\xa9"};
    for (size_t i = 0; i < sizeof badn / sizeof badn[0]; i++)
        assert_false(db_name_valid(badn[i], strlen(badn[i])));
    assert_false(db_name_valid("a\0b", 3));
    char longname[240];
    memset(longname, 'a', sizeof longname);
    assert_true(db_name_valid(longname, 238));
    assert_false(db_name_valid(longname, 239));
}

/* Property: a segment of arbitrary bytes, fully percent-encoded, parses
 * back to the same bytes; so does a query value. */
static void test_encode_decode_property(void **state)
{
    (void)state;
    tu_rng rng = {tu_seed("test_router")};
    long n = tu_iterations(2000);
    for (long it = 0; it < n; it++) {
        size_t len = 1 + tu_rand_below(&rng, 40);
        unsigned char raw[64];
        for (size_t i = 0; i < len; i++)
            raw[i] = (unsigned char)tu_rand(&rng);
        char enc[64 * 3 * 2 + 32];
        size_t o = 0;
        enc[o++] = '/';
        for (size_t i = 0; i < len; i++)
            o += (size_t)sprintf(enc + o, "%%%02X", raw[i]);
        o += (size_t)sprintf(enc + o, "?k=");
        for (size_t i = 0; i < len; i++)
            o += (size_t)sprintf(enc + o, "%%%02x", raw[i]);
        http_target_t t;
        assert_int_equal(http_target_parse(enc, o, &t), DV_OK);
        assert_int_equal(t.nseg, 1);
        assert_int_equal(t.seg[0].n, len);
        assert_memory_equal(t.seg[0].p, raw, len);
        assert_int_equal(t.nparam, 1);
        assert_memory_equal(t.param[0].value.p, raw, len);
        http_target_free(&t);
    }
}

static void test_json_strings(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(http_json_str(&b, "a\"b\\c\n\t\x01/\xc3\xa9", 11), DV_OK);
    const char *want = "\"a\\\"b\\\\c\\n\\t\\u0001/\xc3\xa9\"";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_reset(&b);
    /* invalid UTF-8 (lone continuation, overlong, surrogate, truncated) → U+FFFD each byte */
    assert_int_equal(http_json_str(&b, "\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82", 11), DV_OK);
    const char *rep = "\"\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                      "\xef\xbf\xbd\xef\xbf\xbd\"";
    assert_int_equal(b.len, strlen(rep));
    assert_memory_equal(b.data, rep, b.len);
    buf_reset(&b);
    assert_int_equal(http_json_error(&b, "not_found", "missing"), DV_OK);
    assert_int_equal(b.len, strlen("{\"error\":\"not_found\",\"reason\":\"missing\"}"));
    assert_memory_equal(b.data, "{\"error\":\"not_found\",\"reason\":\"missing\"}", b.len);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_methods_and_names),
        cmocka_unit_test(test_encode_decode_property),
        cmocka_unit_test(test_json_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
