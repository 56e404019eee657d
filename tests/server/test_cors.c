/*
 * test_cors.c — the CORS decisions of http/cors.c as CouchDB 3's
 * chttpd_cors makes them: enable_cors in [chttpd] or [httpd], exact origin
 * matching and `*`, case-sensitive methods, case-insensitive header names
 * split on ",\s*" with trailing empty items dropped, credentials never for
 * the literal origin "*", and malformed config refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "config.h"
#include "http/cors.h"

#include <string.h>

/* A CORS config from (section, key, value) triples, NULL-terminated. */
static http_cors_t *cors_of(const char *const *kv)
{
    config_t *c = NULL;
    http_cors_t *h = NULL;
    assert_int_equal(config_new(&c), DV_OK);
    for (size_t i = 0; kv[i]; i += 3)
        assert_int_equal(config_set(c, kv[i], kv[i + 1], kv[i + 2], NULL), DV_OK);
    int rc = http_cors_new(c, &h);
    config_free(c);
    assert_int_equal(rc, DV_OK);
    return h;
}

#define S(x) (x), strlen(x)

static int preflight(const http_cors_t *h, const char *origin, const char *method, const char *headers,
                     http_cors_preflight_t *p)
{
    return http_cors_preflight(h, origin, origin ? strlen(origin) : 0, method, method ? strlen(method) : 0, headers,
                               headers ? strlen(headers) : 0, p);
}

static void test_disabled(void **state)
{
    (void)state;
    const char *const none[] = {"cors", "origins", "*", NULL};
    assert_null(cors_of(none));
    const char *const off[] = {"chttpd", "enable_cors", "false", "httpd", "enable_cors", "true", "cors", "origins", "*",
                               NULL};
    assert_null(cors_of(off)); /* [chttpd] wins over [httpd] */
    const char *const legacy[] = {"httpd", "enable_cors", "true", "cors", "origins", "*", NULL};
    http_cors_t *h = cors_of(legacy);
    assert_non_null(h);
    http_cors_free(h);
}

static void test_origins(void **state)
{
    (void)state;
    const char *const kv[] = {"chttpd", "enable_cors", "true", "cors", "origins", " http://a.example ,https://b:1 , ",
                              NULL};
    http_cors_t *h = cors_of(kv);
    int cred = -1;
    assert_int_equal(http_cors_origin_allowed(h, S("http://a.example"), &cred), 1);
    assert_int_equal(cred, 0);
    assert_int_equal(http_cors_origin_allowed(h, S("https://b:1"), &cred), 1);
    assert_int_equal(http_cors_origin_allowed(h, S("http://A.example"), &cred), 0);
    assert_int_equal(http_cors_origin_allowed(h, S("http://a.example/"), &cred), 0);
    assert_int_equal(http_cors_origin_allowed(h, "http://a.exampleX", 16, &cred), 1); /* length given, not NUL */
    assert_int_equal(http_cors_origin_allowed(h, S(""), &cred), 0);
    assert_int_equal(http_cors_origin_allowed(h, NULL, 0, &cred), 0);
    assert_string_equal(http_cors_exposed(h),
                        "accept-ranges, etag, server, x-couch-request-id, x-couch-update-newrev, x-couchdb-body-time");
    http_cors_free(h);
}

static void test_preflight(void **state)
{
    (void)state;
    const char *const kv[] = {"chttpd", "enable_cors",     "true", "cors", "origins", "*", "cors", "credentials",
                              "true",   "cors",            "methods", "GET, PUT", "cors", "headers", "Accept, X-Custom",
                              "cors",   "max_age",         "42",   NULL};
    http_cors_t *h = cors_of(kv);
    http_cors_preflight_t p;
    assert_int_equal(preflight(h, "http://x", "PUT", "x-custom,  ACCEPT", &p), 1);
    assert_memory_equal(p.allow_origin, "http://x", p.allow_origin_len);
    assert_string_equal(p.max_age, "42");
    assert_string_equal(p.allow_methods, "GET, PUT");
    assert_int_equal(p.allow_credentials, 1);
    assert_int_equal(p.allow_headers_len, strlen("x-custom,  ACCEPT"));
    assert_int_equal(preflight(h, "http://x", "GET", NULL, &p), 1);
    assert_int_equal(p.allow_headers_len, 0);
    assert_string_equal(p.allow_headers, "");
    assert_int_equal(preflight(h, "http://x", "GET", "accept,", &p), 1);   /* trailing empty item dropped */
    assert_int_equal(preflight(h, "http://x", "GET", "accept, ,", &p), 1); /* all trailing empties */
    assert_int_equal(preflight(h, "http://x", "GET", ",accept", &p), 0);   /* a leading empty item is kept */
    assert_int_equal(preflight(h, "http://x", "GET", "accept ,x-custom", &p), 0); /* space before a comma stays */
    assert_int_equal(preflight(h, "http://x", "GET", "authorization", &p), 0);
    assert_int_equal(preflight(h, "http://x", "get", NULL, &p), 0);
    assert_int_equal(preflight(h, "http://x", "DELETE", NULL, &p), 0);
    assert_int_equal(preflight(h, NULL, "GET", NULL, &p), 0);
    assert_int_equal(preflight(h, "http://x", NULL, NULL, &p), 0);
    /* the literal origin "*": accepted, never with credentials */
    assert_int_equal(preflight(h, "*", "GET", NULL, &p), 1);
    assert_int_equal(p.allow_credentials, 0);
    int cred = -1;
    assert_int_equal(http_cors_origin_allowed(h, S("*"), &cred), 1);
    assert_int_equal(cred, 0);
    http_cors_free(h);
}

static void test_bad_config(void **state)
{
    (void)state;
    config_t *c = NULL;
    http_cors_t *h = NULL;
    assert_int_equal(config_new(&c), DV_OK);
    assert_int_equal(config_set(c, "chttpd", "enable_cors", "yes please", NULL), DV_OK);
    assert_int_equal(http_cors_new(c, &h), DV_ERR_INVALID);
    assert_int_equal(config_set(c, "chttpd", "enable_cors", "true", NULL), DV_OK);
    assert_int_equal(config_set(c, "cors", "max_age", "ten", NULL), DV_OK);
    assert_int_equal(http_cors_new(c, &h), DV_ERR_INVALID);
    assert_null(h);
    config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_preflight),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
