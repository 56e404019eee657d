/*
 * test_config.c — ini loading and precedence, typed getters, the atomic
 * one-line write-back, command-line parsing, and start-up: data directory
 * creation, a persisted server uuid, admin passwords hashed in place (the
 * clear text gone from the file) and --admin stored hashed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/passwd.h"
#include "base/status.h"
#include "config.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *g_dir;

static int setup(void **state)
{
    (void)state;
    g_dir = tu_mkdtemp("config");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static char *write_file(const char *name, const char *text)
{
    char *p = tu_path(g_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *s = calloc(1, 65536);
    assert_non_null(s);
    size_t n = fread(s, 1, 65535, f);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void test_load_and_precedence(void **state)
{
    (void)state;
    char *a = write_file("a.ini", "; comment\n[chttpd]\nport = 1111\nbind_address = 0.0.0.0\n\n[couchdb]\n"
                                  "max_document_size = 42 ; inline comment\n[log]\nlevel=debug\n");
    char *b = write_file("b.ini", "[chttpd]\nport = 2222\n[flags]\nyes = true\nno = false\nbad = maybe\n");
    config_t *c;
    assert_int_equal(config_new(&c), DV_OK);
    assert_int_equal(config_load_file(c, a), DV_OK);
    assert_int_equal(config_load_file(c, b), DV_OK);
    long long v;
    assert_int_equal(config_get_int(c, "chttpd", "port", 5984, 0, 65535, &v), DV_OK);
    assert_int_equal(v, 2222);
    assert_string_equal(config_origin(c, "chttpd", "port"), b);
    assert_string_equal(config_get(c, "chttpd", "bind_address"), "0.0.0.0");
    assert_int_equal(config_get_int(c, "couchdb", "max_document_size", 8000000, 0, 1LL << 40, &v), DV_OK);
    assert_int_equal(v, 42);
    assert_string_equal(config_get(c, "log", "level"), "debug");
    assert_int_equal(config_get_int(c, "couchdb", "absent", 8000000, 0, 1LL << 40, &v), DV_OK);
    assert_int_equal(v, 8000000);
    assert_int_equal(config_get_int(c, "chttpd", "port", 5984, 0, 1000, &v), DV_ERR_INVALID); /* out of range */
    assert_int_equal(config_get_int(c, "chttpd", "bind_address", 1, 0, 10, &v), DV_ERR_INVALID);
    int bv;
    assert_int_equal(config_get_bool(c, "flags", "yes", 0, &bv), DV_OK);
    assert_true(bv);
    assert_int_equal(config_get_bool(c, "flags", "no", 1, &bv), DV_OK);
    assert_false(bv);
    assert_int_equal(config_get_bool(c, "flags", "bad", 0, &bv), DV_ERR_INVALID);
    assert_int_equal(config_set(c, "chttpd", "port", "3333", NULL), DV_OK);
    assert_string_equal(config_get(c, "chttpd", "port"), "3333");
    assert_null(config_origin(c, "chttpd", "port"));
    config_unset(c, "chttpd", "port");
    assert_null(config_get(c, "chttpd", "port"));
    assert_int_equal(config_count(c, "chttpd"), 1);

    char *missing = tu_path(g_dir, "missing.ini");
    assert_int_equal(config_load_file(c, missing), DV_ERR_NOTFOUND);
    char *broken = write_file("broken.ini", "[chttpd\nport = 1\n");
    assert_int_equal(config_load_file(c, broken), DV_ERR_INVALID);
    config_free(c);
    free(a);
    free(b);
    free(missing);
    free(broken);
}

static void test_file_update(void **state)
{
    (void)state;
    char *p = write_file("u.ini", "; keep me\n[admins]\n; an old admin\nbob = x\n\n[other]\nbob = y\n");
    chmod(p, 0640);
    assert_int_equal(config_file_update(p, "admins", "bob", "-pbkdf2-h"), DV_OK);
    assert_int_equal(config_file_update(p, "admins", "alice", "-pbkdf2-a"), DV_OK);
    assert_int_equal(config_file_update(p, "couchdb", "uuid", "abc"), DV_OK);
    char *s = slurp(p);
    assert_string_equal(s, "; keep me\n[admins]\n; an old admin\nbob = -pbkdf2-h\nalice = -pbkdf2-a\n\n[other]\n"
                           "bob = y\n\n[couchdb]\nuuid = abc\n");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640); /* mode kept */
    free(s);
    /* what was written loads back */
    config_t *c;
    assert_int_equal(config_new(&c), DV_OK);
    assert_int_equal(config_load_file(c, p), DV_OK);
    assert_string_equal(config_get(c, "admins", "bob"), "-pbkdf2-h");
    assert_string_equal(config_get(c, "other", "bob"), "y");
    config_free(c);
    /* a new file is private */
    char *n = tu_path(g_dir, "new.ini");
    assert_int_equal(config_file_update(n, "couchdb", "uuid", "u"), DV_OK);
    assert_int_equal(stat(n, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    s = slurp(n);
    assert_string_equal(s, "[couchdb]\nuuid = u\n");
    assert_int_equal(config_file_update(n, "couchdb", "uuid", "two\nlines"), DV_ERR_INVALID);
    free(s);
    free(n);
    free(p);
}

/* CouchDB's ini rules: the first '=' splits (keys keep ':'), no line length
 * limit, " ;" starts an inline comment, an empty value deletes what an
 * earlier file set, a line starting with a blank continues a value. */
static void test_couchdb_ini_rules(void **state)
{
    (void)state;
    char longval[3001];
    memset(longval, 'k', 3000);
    longval[3000] = '\0';
    size_t n = 4096;
    char *text = malloc(n);
    assert_non_null(text);
    snprintf(text, n,
             "[jwt_keys]\nhmac:_default = c2VjcmV0\nrsa:k1 = %s\n[chttpd]\nbind_address = ::1\n"
             "[vendor]\nname = divan;not a comment\nurl = x ; a comment\ncont = first\n  second line\n"
             "[gone]\nk = v\n", longval);
    char *a = write_file("rules.ini", text);
    char *b = write_file("rules2.ini", "[gone]\nk =\n");
    config_t *c;
    assert_int_equal(config_new(&c), DV_OK);
    assert_int_equal(config_load_file(c, a), DV_OK);
    assert_string_equal(config_get(c, "jwt_keys", "hmac:_default"), "c2VjcmV0");
    assert_string_equal(config_get(c, "jwt_keys", "rsa:k1"), longval);
    assert_string_equal(config_get(c, "chttpd", "bind_address"), "::1");
    assert_string_equal(config_get(c, "vendor", "name"), "divan;not a comment");
    assert_string_equal(config_get(c, "vendor", "url"), "x");
    assert_string_equal(config_get(c, "vendor", "cont"), "first second line");
    assert_string_equal(config_get(c, "gone", "k"), "v");
    assert_int_equal(config_load_file(c, b), DV_OK);
    assert_null(config_get(c, "gone", "k"));
    /* A colon key is found again when written back. */
    assert_int_equal(config_file_update(a, "jwt_keys", "hmac:_default", "bmV3"), DV_OK);
    char *after = slurp(a);
    assert_non_null(strstr(after, "hmac:_default = bmV3\n"));
    assert_null(strstr(after, "c2VjcmV0"));
    int removed = 0;
    assert_int_equal(config_file_remove(a, "jwt_keys", "hmac:_default", &removed), DV_OK);
    assert_true(removed);
    free(after);
    after = slurp(a);
    assert_null(strstr(after, "hmac:_default"));
    assert_non_null(strstr(after, "rsa:k1 = kkk"));
    assert_int_equal(config_file_remove(a, "jwt_keys", "hmac:_default", &removed), DV_OK);
    assert_false(removed);
    char *nokey = write_file("nokey.ini", "[s]\n= v\n");
    assert_int_equal(config_load_file(c, nokey), DV_ERR_INVALID);
    char *nosec = write_file("nosec.ini", "k = v\n");
    assert_int_equal(config_load_file(c, nosec), DV_ERR_INVALID);
    config_free(c);
    free(after);
    free(text);
    free(a);
    free(b);
    free(nokey);
    free(nosec);
}

/* The config API's changes: file first, then memory; the old value back;
 * [admins] hashed; delete from every file; reload drops what was not
 * persisted and brings back what the files say. */
static void test_api_changes(void **state)
{
    (void)state;
    char *data = tu_path(g_dir, "apidata");
    char *cfg = write_file("api.ini", "[vendor]\nfrom_file = yes\n[chttpd_auth]\niterations = 3\n");
    char *argv[] = {"divan", "--config", cfg, "--data", data, "--port", "7777", NULL};
    config_args_t a;
    assert_int_equal(config_parse_args(7, argv, &a), DV_OK);
    config_t *c;
    assert_int_equal(config_setup(&a, &c), DV_OK);
    char *local = strdup(config_local_file(c));
    assert_non_null(strstr(local, ".divan.ini"));

    char *old = NULL;
    assert_int_equal(config_api_set(c, "sec", "k", "v1", 1, &old), DV_OK);
    assert_null(old);
    assert_int_equal(config_api_set(c, "sec", "k", "v2", 1, &old), DV_OK);
    assert_string_equal(old, "v1");
    free(old);
    char *text = slurp(local);
    assert_non_null(strstr(text, "[sec]\nk = v2\n"));
    free(text);
    /* A value from the --config file is written back there. */
    assert_int_equal(config_api_set(c, "vendor", "from_file", "changed", 1, &old), DV_OK);
    assert_string_equal(old, "yes");
    free(old);
    text = slurp(cfg);
    assert_non_null(strstr(text, "from_file = changed"));
    free(text);
    /* Admin passwords are hashed. */
    assert_int_equal(config_api_set(c, "admins", "eve", "pw-eve", 1, &old), DV_OK);
    const char *h = config_get(c, "admins", "eve");
    assert_true(passwd_is_hashed(h));
    assert_int_equal(passwd_verify(h, "pw-eve"), DV_OK);
    text = slurp(local);
    assert_null(strstr(text, "pw-eve"));
    free(text);
    /* Not persisted: memory only, and reload drops it. */
    assert_int_equal(config_api_set(c, "sec", "volatile", "x", 0, &old), DV_OK);
    text = slurp(local);
    assert_null(strstr(text, "volatile"));
    free(text);
    assert_string_equal(config_get(c, "sec", "volatile"), "x");
    /* Port from the flag: a change is visible now, the flag wins on reload. */
    assert_int_equal(config_api_set(c, "chttpd", "port", "1", 0, &old), DV_OK);
    assert_string_equal(old, "7777");
    free(old);
    assert_int_equal(config_reload(c), DV_OK);
    assert_null(config_get(c, "sec", "volatile"));
    assert_string_equal(config_get(c, "sec", "k"), "v2");
    assert_string_equal(config_get(c, "chttpd", "port"), "7777");
    assert_string_equal(config_get(c, "vendor", "from_file"), "changed");
    assert_true(passwd_is_hashed(config_get(c, "admins", "eve")));
    /* Delete: the old value back, gone from every file, NOTFOUND after. */
    assert_int_equal(config_api_delete(c, "vendor", "from_file", 1, &old), DV_OK);
    assert_string_equal(old, "changed");
    free(old);
    assert_int_equal(config_api_delete(c, "vendor", "from_file", 1, &old), DV_ERR_NOTFOUND);
    assert_null(old);
    assert_int_equal(config_reload(c), DV_OK);
    assert_null(config_get(c, "vendor", "from_file"));
    /* A plain password put into a file by hand is hashed by reload. */
    assert_int_equal(config_file_update(cfg, "admins", "mallory", "plain-pw"), DV_OK);
    assert_int_equal(config_reload(c), DV_OK);
    assert_true(passwd_is_hashed(config_get(c, "admins", "mallory")));
    text = slurp(cfg);
    assert_null(strstr(text, "plain-pw"));
    free(text);
    /* A broken file: reload fails and keeps the config as it was. */
    FILE *f = fopen(cfg, "a");
    assert_non_null(f);
    fputs("[broken\n", f);
    fclose(f);
    assert_int_equal(config_reload(c), DV_ERR_INVALID);
    assert_string_equal(config_get(c, "sec", "k"), "v2");
    config_free(c);
    config_args_free(&a);
    free(local);
    free(cfg);
    free(data);
}

static void test_parse_args(void **state)
{
    (void)state;
    config_args_t a;
    char *ok[] = {"divan", "--config", "x.ini", "--config", "y.ini", "--data", "d", "--bind", "::1",
                  "--port", "0", "--admin", "root:pa:ss", NULL};
    assert_int_equal(config_parse_args(13, ok, &a), DV_OK);
    assert_int_equal(a.nconfig, 2);
    assert_string_equal(a.config_files[1], "y.ini");
    assert_string_equal(a.data_dir, "d");
    assert_string_equal(a.bind, "::1");
    assert_string_equal(a.port, "0");
    assert_int_equal(a.nadmins, 1);
    assert_string_equal(a.admins[0], "root:pa:ss");
    config_args_free(&a);
    char *bad1[] = {"divan", "--nope", "1", NULL};
    char *bad2[] = {"divan", "--data", NULL};
    char *bad3[] = {"divan", "--admin", "rootonly", NULL};
    char *bad4[] = {"divan", "--admin", ":pw", NULL};
    assert_int_equal(config_parse_args(3, bad1, &a), DV_ERR_INVALID);
    assert_int_equal(config_parse_args(2, bad2, &a), DV_ERR_INVALID);
    assert_int_equal(config_parse_args(3, bad3, &a), DV_ERR_INVALID);
    assert_int_equal(config_parse_args(3, bad4, &a), DV_ERR_INVALID);
}

static void test_setup(void **state)
{
    (void)state;
    char *data = tu_path(g_dir, "data/nested");
    char *cfgtext = NULL;
    size_t n = strlen(data) + 256;
    cfgtext = malloc(n);
    snprintf(cfgtext, n, "[couchdb]\ndatabase_dir = %s\n[chttpd]\nport = 1234\n[chttpd_auth]\niterations = 7\n"
                         "[admins]\nroot = Tr0ub4dor&3\n", data);
    char *cfg = write_file("server.ini", cfgtext);
    char *argv[] = {"divan", "--config", cfg, "--port", "4321", "--admin", "ops:hunter2", NULL};
    config_args_t a;
    assert_int_equal(config_parse_args(7, argv, &a), DV_OK);
    config_t *c;
    assert_int_equal(config_setup(&a, &c), DV_OK);

    struct stat st;
    assert_int_equal(stat(data, &st), 0); /* created, parents included */
    assert_true(S_ISDIR(st.st_mode));
    assert_string_equal(config_data_dir(c), data);
    assert_string_equal(config_get(c, "chttpd", "port"), "4321"); /* flag beats file */
    const char *uuid = config_uuid(c);
    assert_non_null(uuid);
    assert_int_equal(strlen(uuid), 32);
    char *uuid1 = strdup(uuid);

    /* the plain password is gone from the file, replaced by a working hash */
    char *text = slurp(cfg);
    assert_null(strstr(text, "Tr0ub4dor"));
    config_t *re;
    assert_int_equal(config_new(&re), DV_OK);
    assert_int_equal(config_load_file(re, cfg), DV_OK);
    const char *h = config_get(re, "admins", "root");
    assert_non_null(h);
    assert_memory_equal(h, "-pbkdf2:sha256-", 15);
    assert_non_null(strstr(h, ",7"));
    assert_int_equal(passwd_verify(h, "Tr0ub4dor&3"), DV_OK);
    assert_string_equal(config_get(c, "admins", "root"), h);
    config_free(re);
    free(text);

    /* --admin is stored hashed in the data directory's file, with the uuid */
    char *local = tu_path(data, CONFIG_LOCAL_FILE);
    text = slurp(local);
    assert_null(strstr(text, "hunter2"));
    assert_non_null(strstr(text, uuid1));
    assert_int_equal(passwd_verify(config_get(c, "admins", "ops"), "hunter2"), DV_OK);
    char *ops1 = strdup(config_get(c, "admins", "ops"));
    free(text);
    config_free(c);

    /* restart: same uuid, same stored hash for an unchanged --admin */
    assert_int_equal(config_setup(&a, &c), DV_OK);
    assert_string_equal(config_uuid(c), uuid1);
    assert_string_equal(config_get(c, "admins", "ops"), ops1);
    config_free(c);
    config_args_free(&a);

    /* a changed --admin password replaces the hash */
    char *argv2[] = {"divan", "--config", cfg, "--admin", "ops:correct horse", NULL};
    assert_int_equal(config_parse_args(5, argv2, &a), DV_OK);
    assert_int_equal(config_setup(&a, &c), DV_OK);
    assert_int_equal(passwd_verify(config_get(c, "admins", "ops"), "correct horse"), DV_OK);
    assert_int_equal(passwd_verify(config_get(c, "admins", "ops"), "hunter2"), DV_ERR_CONFLICT);
    assert_string_equal(config_get(c, "chttpd", "port"), "1234");
    config_free(c);
    config_args_free(&a);

    /* errors: a missing --config file, a bad log level */
    char *argv3[] = {"divan", "--config", "/nonexistent/divan.ini", NULL};
    assert_int_equal(config_parse_args(3, argv3, &a), DV_OK);
    assert_int_not_equal(config_setup(&a, &c), DV_OK);
    config_args_free(&a);
    char *badlog = write_file("badlog.ini", "[log]\nlevel = loud\n");
    char *argv4[] = {"divan", "--config", badlog, "--data", data, NULL};
    assert_int_equal(config_parse_args(5, argv4, &a), DV_OK);
    assert_int_equal(config_setup(&a, &c), DV_ERR_INVALID);
    config_args_free(&a);

    free(badlog);
    free(local);
    free(ops1);
    free(uuid1);
    free(cfg);
    free(cfgtext);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_update, setup, teardown),
        cmocka_unit_test(test_parse_args),
        cmocka_unit_test_setup_teardown(test_couchdb_ini_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
