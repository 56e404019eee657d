/*
 * test_faultvfs.c — the fault-injecting VFS keeps its promises, since every
 * power-loss test in the project trusts it: unsynced writes and unsynced
 * directory entries vanish, crash modes keep what they say, cuts freeze the
 * state at an exact operation, and single failures have no effect.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/status.h"
#include "store/faultvfs.h"
#include "testutil.h"

#include <string.h>

static store_vfs_file *must_open(store_vfs *vfs, const char *path, int flags)
{
    store_vfs_file *f = NULL;
    assert_int_equal(vfs->open(vfs, path, flags, &f), DV_OK);
    return f;
}

static void expect_contents(faultvfs *v, const char *path, const void *want, size_t len)
{
    buf_t b = BUF_INIT;
    assert_int_equal(faultvfs_read_file(v, path, &b), DV_OK);
    assert_int_equal(b.len, len);
    if (len)
        assert_memory_equal(b.data, want, len);
    buf_free(&b);
}

static void test_drop_unsynced_loses_exactly_unsynced(void **state)
{
    (void)state;
    faultvfs *v = faultvfs_new(1);
    store_vfs *vfs = faultvfs_vfs(v);
    uint8_t a[100], b[50], x[10], img[150];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    memset(x, 'x', sizeof(x));

    store_vfs_file *f = must_open(vfs, "d/f", STORE_VFS_CREATE);
    assert_int_equal(vfs->sync_dir(vfs, "d"), DV_OK);
    assert_int_equal(vfs->pwrite(f, a, sizeof(a), 0), DV_OK);
    assert_int_equal(vfs->sync(f), DV_OK);
    assert_int_equal(vfs->pwrite(f, b, sizeof(b), 100), DV_OK);
    assert_int_equal(vfs->pwrite(f, x, sizeof(x), 10), DV_OK);
    /* Reads see everything written. */
    uint64_t size;
    assert_int_equal(vfs->size(f, &size), DV_OK);
    assert_int_equal(size, 150);
    memcpy(img, a, 100);
    memcpy(img + 100, b, 50);
    memcpy(img + 10, x, 10);
    expect_contents(v, "d/f", img, 150);
    uint8_t got[150];
    assert_int_equal(vfs->pread(f, got, 150, 0), DV_OK);
    assert_memory_equal(got, img, 150);
    assert_int_equal(vfs->pread(f, got, 2, 149), DV_ERR_CORRUPT); /* past the end */

    faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
    assert_int_equal(vfs->pread(f, got, 1, 0), DV_ERR_IO); /* handle died */
    assert_int_equal(vfs->pwrite(f, got, 1, 0), DV_ERR_IO);
    assert_int_equal(vfs->close(f), DV_OK);
    expect_contents(v, "d/f", a, 100);

    /* KEEP_ALL (a process crash) keeps every write, synced or not. */
    f = must_open(vfs, "d/f", 0);
    assert_int_equal(vfs->pwrite(f, b, sizeof(b), 100), DV_OK);
    assert_int_equal(vfs->truncate(f, 120), DV_OK);
    assert_int_equal(vfs->close(f), DV_OK);
    faultvfs_crash(v, FAULTVFS_KEEP_ALL);
    memcpy(img, a, 100);
    memcpy(img + 100, b, 20);
    expect_contents(v, "d/f", img, 120);

    /* A truncate is a write like any other: unsynced, it is lost. */
    f = must_open(vfs, "d/f", 0);
    assert_int_equal(vfs->truncate(f, 5), DV_OK);
    assert_int_equal(vfs->close(f), DV_OK);
    faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
    expect_contents(v, "d/f", img, 120);
    faultvfs_free(v);
}

static void test_directory_entries_need_sync_dir(void **state)
{
    (void)state;
    faultvfs *v = faultvfs_new(2);
    store_vfs *vfs = faultvfs_vfs(v);
    store_vfs_file *f;

    /* Created and synced, but its directory entry was not. */
    f = must_open(vfs, "d/lost", STORE_VFS_CREATE);
    assert_int_equal(vfs->pwrite(f, "data", 4, 0), DV_OK);
    assert_int_equal(vfs->sync(f), DV_OK);
    assert_int_equal(vfs->close(f), DV_OK);
    /* Made durable in the right directory only. */
    f = must_open(vfs, "d/kept", STORE_VFS_CREATE);
    assert_int_equal(vfs->close(f), DV_OK);
    f = must_open(vfs, "d/sub/nested", STORE_VFS_CREATE);
    assert_int_equal(vfs->close(f), DV_OK);
    f = must_open(vfs, "top", STORE_VFS_CREATE);
    assert_int_equal(vfs->close(f), DV_OK);
    assert_int_equal(vfs->sync_dir(vfs, "e"), DV_OK);
    assert_int_equal(vfs->exists(vfs, "d/lost"), 1);
    f = must_open(vfs, "d/kept", 0);
    assert_int_equal(vfs->close(f), DV_OK);
    assert_int_equal(vfs->sync_dir(vfs, "d/"), DV_OK); /* trailing slash tolerated */
    assert_int_equal(vfs->unlink(vfs, "d/lost"), DV_OK);
    assert_int_equal(vfs->unlink(vfs, "d/lost"), DV_ERR_NOTFOUND);
    assert_int_equal(vfs->sync_dir(vfs, "d"), DV_OK);
    assert_int_equal(vfs->sync_dir(vfs, "."), DV_OK); /* "top" lives in "." */
    faultvfs_crash(v, FAULTVFS_KEEP_ALL);
    assert_int_equal(vfs->exists(vfs, "d/lost"), 0);
    assert_int_equal(vfs->exists(vfs, "d/kept"), 1);
    assert_int_equal(vfs->exists(vfs, "d/sub/nested"), 0);
    assert_int_equal(vfs->exists(vfs, "top"), 1);
    assert_int_equal(vfs->open(vfs, "d/lost", 0, &f), DV_ERR_NOTFOUND);
    assert_int_equal(vfs->open(vfs, "d/kept", STORE_VFS_CREATE | STORE_VFS_EXCL, &f), DV_ERR_EXISTS);

    /* Rename and unlink are undone by a crash unless the directory is synced. */
    f = must_open(vfs, "d/kept", 0);
    assert_int_equal(vfs->pwrite(f, "K", 1, 0), DV_OK);
    assert_int_equal(vfs->sync(f), DV_OK);
    assert_int_equal(vfs->close(f), DV_OK);
    assert_int_equal(vfs->rename(vfs, "d/kept", "d/renamed"), DV_OK);
    assert_int_equal(vfs->rename(vfs, "d/nothing", "d/x"), DV_ERR_NOTFOUND);
    assert_int_equal(vfs->exists(vfs, "d/kept"), 0);
    assert_int_equal(vfs->exists(vfs, "d/renamed"), 1);
    faultvfs_crash(v, FAULTVFS_KEEP_ALL);
    assert_int_equal(vfs->exists(vfs, "d/kept"), 1);
    assert_int_equal(vfs->exists(vfs, "d/renamed"), 0);
    assert_int_equal(vfs->rename(vfs, "d/kept", "d/renamed"), DV_OK);
    assert_int_equal(vfs->sync_dir(vfs, "d"), DV_OK);
    assert_int_equal(vfs->unlink(vfs, "top"), DV_OK);
    faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
    assert_int_equal(vfs->exists(vfs, "d/kept"), 0);
    expect_contents(v, "d/renamed", "K", 1);
    assert_int_equal(vfs->exists(vfs, "top"), 1);
    faultvfs_free(v);
}

/* TEAR_LAST keeps all unsynced writes but a prefix of the last. */
static void test_tear_last(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("test_tear_last");
    int partial = 0;
    for (int it = 0; it < 200; it++) {
        faultvfs *v = faultvfs_new(seed + (uint64_t)it);
        store_vfs *vfs = faultvfs_vfs(v);
        uint8_t w1[300], w2[300];
        memset(w1, 1, sizeof(w1));
        memset(w2, 2, sizeof(w2));
        assert_int_equal(faultvfs_write_file(v, "f", "base", 4), DV_OK);
        store_vfs_file *f = must_open(vfs, "f", 0);
        assert_int_equal(vfs->pwrite(f, w1, sizeof(w1), 4), DV_OK);
        assert_int_equal(vfs->pwrite(f, w2, sizeof(w2), 304), DV_OK);
        assert_int_equal(vfs->close(f), DV_OK);
        faultvfs_crash(v, FAULTVFS_TEAR_LAST);
        buf_t b = BUF_INIT;
        assert_int_equal(faultvfs_read_file(v, "f", &b), DV_OK);
        assert_true(b.len >= 304 && b.len < 604);
        assert_memory_equal(b.data, "base", 4);
        assert_memory_equal(b.data + 4, w1, 300);
        for (size_t i = 304; i < b.len; i++)
            assert_int_equal(b.data[i], 2);
        partial += b.len > 304;
        buf_free(&b);
        faultvfs_free(v);
    }
    assert_true(partial > 0);
}

/* KEEP_RANDOM: every byte is old or new, and over many crashes later writes
 * survive while earlier ones are lost, and writes are torn mid-page. */
static void test_keep_random_reorders_and_tears(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("test_keep_random_reorders_and_tears");
    int reordered = 0, torn = 0, all = 0, none = 0;
    enum { SZ = 4 * 4096 };
    static uint8_t zeros[SZ], w1[2 * 4096], w2[2 * 4096];
    memset(w1, 0xa1, sizeof(w1));
    memset(w2, 0xb2, sizeof(w2));
    for (int it = 0; it < 300; it++) {
        faultvfs *v = faultvfs_new(seed * 31 + (uint64_t)it);
        store_vfs *vfs = faultvfs_vfs(v);
        assert_int_equal(faultvfs_write_file(v, "f", zeros, SZ), DV_OK);
        store_vfs_file *f = must_open(vfs, "f", 0);
        assert_int_equal(vfs->pwrite(f, w1, sizeof(w1), 0), DV_OK);
        assert_int_equal(vfs->pwrite(f, w2, sizeof(w2), sizeof(w1)), DV_OK);
        assert_int_equal(vfs->close(f), DV_OK);
        faultvfs_crash(v, FAULTVFS_KEEP_RANDOM);
        buf_t b = BUF_INIT;
        assert_int_equal(faultvfs_read_file(v, "f", &b), DV_OK);
        assert_int_equal(b.len, SZ);
        int first_new = 0, second_new = 0, page_torn = 0, newb = 0;
        for (int pg = 0; pg < 4; pg++) {
            int n_new = 0;
            uint8_t want = pg < 2 ? 0xa1 : 0xb2;
            for (int i = 0; i < 4096; i++) {
                uint8_t c = b.data[pg * 4096 + i];
                assert_true(c == 0 || c == want);
                n_new += c == want;
            }
            /* A torn page keeps a prefix. */
            if (n_new > 0 && n_new < 4096) {
                page_torn = 1;
                assert_int_equal(b.data[pg * 4096 + n_new - 1], want);
                assert_int_equal(b.data[pg * 4096 + n_new], 0);
            }
            if (pg < 2 && n_new < 4096)
                first_new = 1; /* part of w1 was lost */
            if (pg >= 2 && n_new == 4096)
                second_new = 1;
            newb += n_new;
        }
        reordered += first_new && second_new;
        torn += page_torn;
        all += newb == SZ;
        none += newb == 0;
        buf_free(&b);
        faultvfs_free(v);
    }
    assert_true(reordered > 0);
    assert_true(torn > 0);
    assert_true(all > 0);
    assert_true(none > 0);
}

static void test_cut_freezes_state(void **state)
{
    (void)state;
    faultvfs *v = faultvfs_new(3);
    store_vfs *vfs = faultvfs_vfs(v);
    store_vfs_file *f = must_open(vfs, "f", STORE_VFS_CREATE); /* op 1 */
    assert_int_equal(vfs->sync_dir(vfs, "."), DV_OK);           /* op 2 */
    assert_int_equal(faultvfs_op_count(v), 2);
    faultvfs_cut_after(v, 3);
    assert_int_equal(faultvfs_cut_happened(v), 0);
    assert_int_equal(vfs->pwrite(f, "one", 3, 0), DV_OK); /* 1 */
    assert_int_equal(vfs->sync(f), DV_OK);               /* 2 */
    assert_int_equal(vfs->pwrite(f, "two", 3, 3), DV_ERR_IO); /* 3: the cut */
    assert_int_equal(faultvfs_cut_happened(v), 1);
    /* Everything after fails, reads included, and changes nothing. */
    uint8_t got[6];
    assert_int_equal(vfs->pread(f, got, 3, 0), DV_ERR_IO);
    assert_int_equal(vfs->sync(f), DV_ERR_IO);
    assert_int_equal(vfs->truncate(f, 0), DV_ERR_IO);
    assert_int_equal(vfs->rename(vfs, "f", "g"), DV_ERR_IO);
    assert_int_equal(vfs->unlink(vfs, "f"), DV_ERR_IO);
    assert_int_equal(vfs->exists(vfs, "f"), DV_ERR_IO);
    store_vfs_file *g;
    assert_int_equal(vfs->open(vfs, "new", STORE_VFS_CREATE, &g), DV_ERR_IO);
    expect_contents(v, "f", "one", 3);
    assert_int_equal(vfs->close(f), DV_OK);
    faultvfs_crash(v, FAULTVFS_KEEP_ALL);
    assert_int_equal(faultvfs_cut_happened(v), 1); /* sticky until re-armed */
    expect_contents(v, "f", "one", 3);
    f = must_open(vfs, "f", 0); /* powered again */
    assert_int_equal(vfs->pwrite(f, "two", 3, 3), DV_OK);
    assert_int_equal(vfs->pread(f, got, 6, 0), DV_OK);
    assert_memory_equal(got, "onetwo", 6);
    assert_int_equal(vfs->close(f), DV_OK);
    faultvfs_free(v);
}

static void test_single_failures(void **state)
{
    (void)state;
    faultvfs *v = faultvfs_new(4);
    store_vfs *vfs = faultvfs_vfs(v);
    store_vfs_file *f = must_open(vfs, "f", STORE_VFS_CREATE);
    faultvfs_fail_write_after(v, 2);
    assert_int_equal(vfs->pwrite(f, "a", 1, 0), DV_OK);
    assert_int_equal(vfs->pwrite(f, "b", 1, 1), DV_ERR_IO);
    assert_int_equal(vfs->pwrite(f, "c", 1, 2), DV_OK);
    expect_contents(v, "f", "a\0c", 3);
    faultvfs_fail_sync_after(v, 1);
    assert_int_equal(vfs->sync(f), DV_ERR_IO);
    assert_int_equal(vfs->close(f), DV_OK);
    assert_int_equal(vfs->sync_dir(vfs, "."), DV_OK);
    faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED); /* the failed sync made nothing durable */
    expect_contents(v, "f", "", 0);
    f = must_open(vfs, "f", 0);
    assert_int_equal(vfs->pwrite(f, "d", 1, 0), DV_OK);
    assert_int_equal(vfs->sync(f), DV_OK);
    assert_int_equal(vfs->close(f), DV_OK);
    faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
    expect_contents(v, "f", "d", 1);
    faultvfs_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drop_unsynced_loses_exactly_unsynced),
        cmocka_unit_test(test_directory_entries_need_sync_dir),
        cmocka_unit_test(test_tear_last),
        cmocka_unit_test(test_keep_random_reorders_and_tears),
        cmocka_unit_test(test_cut_freezes_state),
        cmocka_unit_test(test_single_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
