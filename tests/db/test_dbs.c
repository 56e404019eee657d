/*
 * test_dbs.c — the database catalogue's settings that change while it
 * runs (db_server_configure): a lower max_dbs_open closes idle databases
 * at the next open, and a new default_security is what the next database
 * created gets.  Open database files are counted in /proc/self/fd, which
 * is what the limit bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/status.h"
#include "db/db.h"
#include "store/dbfile.h"
#include "testutil.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Descriptors of this process open on files under dir. */
static int open_files_under(const char *dir)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    size_t dl = strlen(dir);
    for (struct dirent *e; (e = readdir(d));) {
        char link[300], target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = 0;
        n += strncmp(target, dir, dl) == 0 && target[dl] == '/' && strstr(target, ".divan") != NULL;
    }
    closedir(d);
    return n;
}

static void use(db_server *s, const char *name)
{
    db_t *db;
    int rc = db_create(s, name, &db);
    if (rc == DV_ERR_EXISTS)
        rc = db_open(s, name, &db);
    assert_int_equal(rc, DV_OK);
    db_release(db);
}

static void test_max_dbs_open(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("dbs-max");
    char *real = realpath(dir, NULL); /* fd links name the resolved path */
    assert_non_null(real);
    db_server_opts o = {0};
    o.dir = dir;
    o.max_dbs_open = 10;
    db_server *s;
    assert_int_equal(db_server_open(&o, &s), DV_OK);
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++)
        use(s, names[i]);
    int before = open_files_under(real);
    assert_true(before >= 5);
    /* lowered: the next open closes idle ones down to the new limit */
    assert_int_equal(db_server_configure(s, 2, NULL), DV_OK);
    use(s, "f");
    int after = open_files_under(real);
    assert_true(after < before);
    assert_true(after <= 2 * before / 5 + 1); /* files per database times 2, rounded up */
    /* raised again: nothing is closed */
    assert_int_equal(db_server_configure(s, 10, NULL), DV_OK);
    for (size_t i = 0; i < 5; i++)
        use(s, names[i]);
    assert_true(open_files_under(real) > after);
    db_server_close(s);
    tu_rmtree(dir);
    free(real);
    free(dir);
}

static void assert_security(db_server *s, const char *name, const char *want)
{
    db_t *db;
    store_snap *snap;
    buf_t sec = BUF_INIT;
    assert_int_equal(db_create(s, name, &db), DV_OK);
    assert_int_equal(db_snapshot(db, &snap), DV_OK);
    assert_int_equal(store_snap_security(snap, &sec), DV_OK);
    assert_int_equal(sec.len, strlen(want));
    assert_memory_equal(sec.data, want, sec.len);
    buf_free(&sec);
    store_snap_release(snap);
    db_release(db);
}

static void test_default_security(void **state)
{
    (void)state;
    static const char admin_only[] = "{\"members\":{\"roles\":[\"_admin\"]}}";
    char *dir = tu_mkdtemp("dbs-sec");
    db_server_opts o = {0};
    o.dir = dir;
    db_server *s;
    assert_int_equal(db_server_open(&o, &s), DV_OK);
    assert_security(s, "open1", "{}");
    assert_int_equal(db_server_configure(s, 500, admin_only), DV_OK);
    assert_security(s, "locked", admin_only);
    assert_int_equal(db_server_configure(s, 500, NULL), DV_OK);
    assert_security(s, "open2", "{}");
    db_server_close(s);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_dbs_open),
        cmocka_unit_test(test_default_security),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
