/*
 * test_auth.c — the pure parts of authentication and authorization:
 * _security membership rules (public databases, names, roles, _admin), the
 * _users validation with CouchDB's reasons, Basic and Cookie header
 * parsing, AuthSession values parsing back to what was written, and the
 * live settings read from a configuration (handler list, public fields).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "config.h"
#include "http/auth.h"
#include "http/authz.h"
#include "http/users.h"
#include "json/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const no_roles[] = {NULL};
static const char *const readers[] = {"readers"};
static const char *const admin_role[] = {"_admin"};

static int member(const http_user_ctx_t *u, const char *sec)
{
    return http_authz_is_db_member(u, sec, strlen(sec));
}

static int dbadmin(const http_user_ctx_t *u, const char *sec)
{
    return http_authz_is_db_admin(u, sec, strlen(sec));
}

static void test_security_rules(void **state)
{
    (void)state;
    http_user_ctx_t bob = {"bob", no_roles, 0, NULL};
    http_user_ctx_t rita = {"rita", readers, 1, NULL};
    http_user_ctx_t root = {"root", admin_role, 1, NULL};
    const char *sec = "{\"admins\":{\"names\":[\"bob\"]},\"members\":{\"roles\":[\"readers\"]}}";
    /* anonymous (NULL) */
    assert_true(member(NULL, "{}"));
    assert_true(member(NULL, "{\"members\":{\"names\":[],\"roles\":[]}}"));
    assert_false(member(NULL, sec));
    assert_false(dbadmin(NULL, "{}"));
    /* names, roles, admins are members */
    assert_true(member(&rita, sec));
    assert_false(dbadmin(&rita, sec));
    assert_true(member(&bob, sec));
    assert_true(dbadmin(&bob, sec));
    /* _admin is everything, whatever the object says */
    assert_true(member(&root, sec));
    assert_true(dbadmin(&root, "{\"admins\":{\"names\":[\"x\"]}}"));
    /* old "readers" objects; admin-only default */
    assert_false(member(&bob, "{\"readers\":{\"names\":[\"rita\"]}}"));
    assert_true(member(&rita, "{\"readers\":{\"names\":[\"rita\"]}}"));
    const char *admin_only = "{\"members\":{\"roles\":[\"_admin\"]},\"admins\":{\"roles\":[\"_admin\"]}}";
    assert_false(member(&bob, admin_only));
    assert_true(member(&root, admin_only));
    /* unparsable security: nobody but server admins is a db admin */
    assert_false(dbadmin(&bob, "{"));
    assert_true(http_user_has_role(&root, "_admin"));
    assert_false(http_user_has_role(NULL, "_admin"));
}

static const char *validate(const char *newdoc, const char *id, int deleted, const char *olddoc,
                            const http_user_ctx_t *u, int admin)
{
    static char reason[200];
    json_doc nd = JSON_DOC_INIT, od = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&nd, newdoc, strlen(newdoc), 0, NULL), DV_OK);
    if (olddoc)
        assert_int_equal(json_doc_parse(&od, olddoc, strlen(olddoc), 0, NULL), DV_OK);
    const char *r = http_users_validate(json_doc_root(&nd), id, strlen(id), deleted,
                                        olddoc ? json_doc_root(&od) : NULL, u, admin);
    if (r)
        snprintf(reason, sizeof reason, "%s", r);
    json_doc_free(&nd);
    json_doc_free(&od);
    return r ? reason : NULL;
}

static void test_users_validation(void **state)
{
    (void)state;
    http_user_ctx_t jan = {"jan", no_roles, 0, NULL};
    const char *id = "org.couchdb.user:jan";
    assert_null(validate("{\"type\":\"user\",\"name\":\"jan\",\"roles\":[]}", id, 0, NULL, NULL, 0));
    assert_string_equal(validate("{\"type\":\"user\",\"name\":\"jan\",\"roles\":[\"a\"]}", id, 0, NULL, NULL, 0),
                        "Only _admin may set roles");
    assert_null(validate("{\"type\":\"user\",\"name\":\"jan\",\"roles\":[\"a\"]}", id, 0, NULL, NULL, 1));
    const char *old = "{\"type\":\"user\",\"name\":\"jan\",\"roles\":[\"b\",\"a\"]}";
    /* same roles in another order are no change */
    assert_null(validate("{\"type\":\"user\",\"name\":\"jan\",\"roles\":[\"a\",\"b\"]}", id, 0, old, &jan, 0));
    assert_string_equal(validate("{\"type\":\"user\",\"name\":\"jan\",\"roles\":[\"a\"]}", id, 0, old, &jan, 0),
                        "Only _admin may edit roles");
    http_user_ctx_t kim = {"kim", no_roles, 0, NULL};
    assert_string_equal(validate("{\"type\":\"user\",\"name\":\"jan\",\"roles\":[\"a\",\"b\"]}", id, 0, old, &kim, 0),
                        "You may only update your own user document.");
    assert_string_equal(validate("{\"type\":\"user\",\"name\":\"jo\",\"roles\":[]}", id, 0, old, &jan, 1),
                        "Doc ID must be of the form org.couchdb.user:name");
    assert_string_equal(validate("{}", id, 1, old, &kim, 0), "Only admins may delete other user docs.");
    assert_null(validate("{}", id, 1, old, &jan, 0));
    assert_string_equal(validate("{\"type\":\"user\",\"name\":\"\",\"roles\":[]}", "org.couchdb.user:", 0, NULL,
                                 NULL, 1),
                        "doc.name is required");
    assert_string_equal(validate("{\"type\":\"user\",\"name\":\"jan\",\"roles\":{}}", id, 0, NULL, NULL, 1),
                        "doc.roles must be an array");
}

static void test_basic_parse(void **state)
{
    (void)state;
    char *buf;
    size_t nl, pl;
    const char *pw;
    assert_int_equal(http_auth_basic_parse("Basic YWRtaW46cDpx", &buf, &nl, &pw, &pl), DV_OK); /* admin:p:q */
    assert_int_equal(nl, 5);
    assert_string_equal(buf, "admin");
    assert_int_equal(pl, 3);
    assert_string_equal(pw, "p:q");
    free(buf);
    assert_int_equal(http_auth_basic_parse("basic   YTo=  ", &buf, &nl, &pw, &pl), DV_OK); /* "a:" */
    assert_int_equal(pl, 0);
    free(buf);
    assert_int_equal(http_auth_basic_parse("Basic bm9jb2xvbg==", &buf, &nl, &pw, &pl), DV_ERR_INVALID);
    assert_int_equal(http_auth_basic_parse("Basic !!", &buf, &nl, &pw, &pl), DV_ERR_INVALID);
    assert_int_equal(http_auth_basic_parse("Bearer x", &buf, &nl, &pw, &pl), DV_ERR_INVALID);
}

static void test_cookies(void **state)
{
    (void)state;
    size_t n;
    const char *v = http_auth_cookie_find("a=b; AuthSession=xyz; c=d", &n);
    assert_non_null(v);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "xyz", 3);
    v = http_auth_cookie_find("AuthSession=\"q\"", &n);
    assert_int_equal(n, 1);
    assert_null(http_auth_cookie_find("XAuthSession=1; a=2", &n));

    char *c = http_auth_cookie_value("secret", "jan", "salt", 0x5F0AB);
    assert_non_null(c);
    assert_null(strpbrk(c, "+/="));
    buf_t d = BUF_INIT;
    assert_int_equal(http_auth_cookie_decode(c, strlen(c), &d), DV_OK);
    size_t nl, ml;
    uint64_t t;
    const char *mac;
    assert_int_equal(http_auth_cookie_parse((const char *)d.data, d.len, &nl, &t, &mac, &ml), DV_OK);
    assert_int_equal(nl, 3);
    assert_memory_equal(d.data, "jan:5F0AB:", 10);
    assert_int_equal(t, 0x5F0AB);
    assert_int_equal(ml, 20);
    /* another secret or salt, another mac */
    char *c2 = http_auth_cookie_value("secret", "jan", "salt2", 0x5F0AB);
    assert_string_not_equal(c, c2);
    free(c2);
    free(c);
    buf_free(&d);
    assert_int_equal(http_auth_cookie_parse("nocolon", 7, &nl, &t, &mac, &ml), DV_ERR_INVALID);
    assert_int_equal(http_auth_cookie_parse("a:zz:m", 6, &nl, &t, &mac, &ml), DV_ERR_INVALID);
    assert_int_equal(http_auth_cookie_parse("a::m", 4, &nl, &t, &mac, &ml), DV_ERR_INVALID);
    buf_t e = BUF_INIT;
    assert_int_equal(http_auth_cookie_decode("ab+/", 4, &e), DV_ERR_INVALID);
    buf_free(&e);
}

/* The live settings as a configuration gives them, and what a reconfigure
 * puts in force. */
static void test_live_settings(void **state)
{
    (void)state;
    config_t *c;
    http_auth_live_t l;
    assert_int_equal(config_new(&c), DV_OK);
    /* CouchDB's defaults: cookie then default; nothing public */
    assert_int_equal(http_auth_live_read(c, &l), DV_OK);
    assert_int_equal(l.nhandlers, 2);
    assert_int_equal(l.handlers[0], HTTP_AUTHN_COOKIE);
    assert_int_equal(l.handlers[1], HTTP_AUTHN_DEFAULT);
    assert_null(l.public_fields);
    assert_int_equal(l.users_db_public, 0);
    assert_string_equal(l.x_auth_username, "X-Auth-CouchDB-UserName");
    /* order kept, unknown ones skipped */
    assert_int_equal(config_set(c, "chttpd", "authentication_handlers",
                                "{chttpd_auth, proxy_authentication_handler}, {foo, bar_handler}, "
                                "{chttpd_auth, jwt_authentication_handler}",
                                NULL),
                     DV_OK);
    assert_int_equal(config_set(c, "chttpd_auth", "public_fields", " name ,  type,x ", NULL), DV_OK);
    assert_int_equal(config_set(c, "chttpd_auth", "users_db_public", "true", NULL), DV_OK);
    assert_int_equal(http_auth_live_read(c, &l), DV_OK);
    assert_int_equal(l.nhandlers, 2);
    assert_int_equal(l.handlers[0], HTTP_AUTHN_PROXY);
    assert_int_equal(l.handlers[1], HTTP_AUTHN_JWT);
    http_auth_opts_t o = {0};
    o.live = l;
    o.lockout_max_objects = 10;
    o.lockout_max_lifetime_ms = 1000;
    http_auth_t *a;
    assert_int_equal(http_auth_new(&o, &a), DV_OK);
    assert_int_equal(http_auth_users_listable(a), 1);
    assert_int_equal(http_auth_list_has(http_auth_public_fields(a), "name", 4), 1);
    assert_int_equal(http_auth_list_has(http_auth_public_fields(a), "type", 4), 1);
    assert_int_equal(http_auth_list_has(http_auth_public_fields(a), "x", 1), 1);
    assert_int_equal(http_auth_list_has(http_auth_public_fields(a), "nam", 3), 0);
    assert_int_equal(http_auth_list_has(http_auth_public_fields(a), "salt", 4), 0);
    const char *names[4];
    assert_int_equal(http_auth_handler_names(a, names, 4), 2);
    assert_string_equal(names[0], "proxy");
    /* a handler list naming nothing divan has is refused; a new set
     * replaces the old one */
    assert_int_equal(config_set(c, "chttpd", "authentication_handlers", "{foo, bar}", NULL), DV_OK);
    assert_int_equal(http_auth_live_read(c, &l), DV_ERR_INVALID);
    config_unset(c, "chttpd", "authentication_handlers");
    config_unset(c, "chttpd_auth", "public_fields");
    assert_int_equal(http_auth_live_read(c, &l), DV_OK);
    assert_int_equal(http_auth_reconfigure(a, &l), DV_OK);
    assert_int_equal(http_auth_handler_names(a, names, 4), 2);
    assert_string_equal(names[0], "cookie");
    assert_int_equal(http_auth_users_listable(a), 0); /* users_db_public without public_fields */
    assert_int_equal(http_auth_list_has(http_auth_public_fields(a), "name", 4), 0);
    http_auth_free(a);
    config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_security_rules),
        cmocka_unit_test(test_users_validation),
        cmocka_unit_test(test_basic_parse),
        cmocka_unit_test(test_cookies),
        cmocka_unit_test(test_live_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
