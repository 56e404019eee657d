/*
 * test_dbfile_faults.c — the database file under I/O errors (faultvfs):
 * a failed commit fails its whole group and nothing of it is visible, the
 * next group works again (the file is reopened from its last good header),
 * snapshots held across the failure stay readable, a permanent failure
 * never hangs writers or close, and a compaction that fails leaves the
 * database as it was.  (Power-loss loops are tests/store/test_crash_*.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "store/dbfile.h"
#include "store/dbfile_tutil.h"
#include "store/faultvfs.h"
#include "store/file.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static store_dbfile *open_fv(faultvfs *v, int create)
{
    store_dbfile_options o = {.vfs = faultvfs_vfs(v), .create = create};
    store_dbfile *db = NULL;
    assert_int_equal(store_dbfile_open("db.couch", &o, &db), DV_OK);
    return db;
}

static void test_failed_commit_then_recovery(void **state)
{
    (void)state;
    faultvfs *v = faultvfs_new(1);
    store_dbfile *db = open_fv(v, 1);
    assert_int_equal(dt_edit(db, "a", NULL, "{\"a\":1}", 0, NULL), DV_OK);
    store_snap *held;
    assert_int_equal(store_dbfile_snapshot(db, &held), DV_OK);
    for (int mode = 0; mode < 2; mode++) {
        if (mode == 0)
            faultvfs_fail_sync_after(v, 1);
        else
            faultvfs_fail_write_after(v, 1);
        char id[8];
        snprintf(id, sizeof id, "lost%d", mode);
        assert_int_equal(dt_edit(db, id, NULL, "{}", 0, NULL), DV_ERR_IO);
        assert_int_equal(dt_winner(db, id, NULL, NULL, NULL), DV_ERR_NOTFOUND);
        snprintf(id, sizeof id, "ok%d", mode);
        assert_int_equal(dt_edit(db, id, NULL, "{}", 0, NULL), DV_OK);
    }
    store_dbinfo i = dt_info(db);
    assert_int_equal(i.update_seq, 3);
    assert_int_equal(i.doc_count, 3);
    /* the snapshot from before the failures still reads its data */
    store_docinfo d;
    store_docinfo_init(&d);
    assert_int_equal(store_snap_get_doc(held, (const uint8_t *)"a", 1, &d), DV_OK);
    store_docbody b;
    store_docbody_init(&b);
    assert_int_equal(store_snap_read_body(held, d.tree.nodes[0].body, &b), DV_OK);
    assert_memory_equal(b.body.data, "{\"a\":1}", 7);
    store_docbody_free(&b);
    store_docinfo_free(&d);
    store_snap_release(held);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    /* and the state survives a power loss */
    faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
    db = open_fv(v, 0);
    i = dt_info(db);
    assert_int_equal(i.update_seq, 3);
    assert_int_equal(dt_winner(db, "ok1", NULL, NULL, NULL), DV_OK);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    faultvfs_free(v);
}

static void test_power_cut_never_hangs(void **state)
{
    (void)state;
    faultvfs *v = faultvfs_new(2);
    store_dbfile *db = open_fv(v, 1);
    assert_int_equal(dt_edit(db, "kept", NULL, "{}", 0, NULL), DV_OK);
    faultvfs_cut_after(v, 1);
    for (int k = 0; k < 5; k++)
        assert_int_equal(dt_edit(db, "gone", NULL, "{}", 0, NULL), DV_ERR_IO);
    /* reads keep working on the last good state */
    assert_int_equal(dt_winner(db, "kept", NULL, NULL, NULL), DV_OK);
    /* compaction fails cleanly too */
    assert_int_not_equal(store_dbfile_compact(db, NULL, NULL), DV_OK);
    assert_false(dt_info(db).compact_running);
    store_dbfile_close(db); /* may report the failure; must not hang */
    faultvfs_crash(v, FAULTVFS_KEEP_RANDOM);
    db = open_fv(v, 0);
    assert_int_equal(dt_winner(db, "kept", NULL, NULL, NULL), DV_OK);
    assert_int_equal(dt_winner(db, "gone", NULL, NULL, NULL), DV_ERR_NOTFOUND);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    faultvfs_free(v);
}

static void test_failed_compaction_keeps_db(void **state)
{
    (void)state;
    faultvfs *v = faultvfs_new(3);
    store_dbfile *db = open_fv(v, 1);
    char prev[96];
    store_rev r;
    for (int k = 0; k < 30; k++)
        assert_int_equal(dt_edit(db, "x", k ? dt_rev_str(&r, prev) : NULL, "{\"pad\":\"................\"}", 0, &r),
                         DV_OK);
    store_rev rx = r;
    store_dbinfo before = dt_info(db);
    /* fail at every mutating step of a compaction in turn */
    int failed = 0;
    for (uint64_t n = 1; n < 40; n++) {
        faultvfs_fail_write_after(v, n);
        int rc = store_dbfile_compact(db, NULL, NULL);
        faultvfs_fail_write_after(v, 0);
        if (rc == DV_OK)
            break;
        failed++;
        assert_int_equal(rc, DV_ERR_IO);
        store_dbinfo i = dt_info(db);
        assert_int_equal(i.update_seq, before.update_seq + (failed > 1));
        assert_int_equal(dt_edit(db, "y", NULL, "{}", 0, NULL), failed == 1 ? DV_OK : DV_ERR_CONFLICT);
    }
    assert_true(failed > 0);
    char rev[96];
    assert_int_equal(dt_winner(db, "x", rev, NULL, NULL), DV_OK);
    assert_string_equal(rev, dt_rev_str(&rx, prev));
    assert_int_equal(dt_info(db).doc_count, 2);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
    db = open_fv(v, 0);
    assert_int_equal(dt_info(db).doc_count, 2);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    faultvfs_free(v);
}

/* A power cut at every mutating step of a compaction, then a power loss:
 * the database opens with all its committed data, whichever file won. */
static void test_compaction_power_cut_anywhere(void **state)
{
    (void)state;
    int completed = 0;
    uint64_t n;
    for (n = 1; !completed && n < 400; n++) {
        faultvfs *v = faultvfs_new(n);
        store_dbfile *db = open_fv(v, 1);
        store_rev r[6];
        char prev[96], body[64];
        for (int k = 0; k < 60; k++) {
            char id[8];
            snprintf(id, sizeof id, "d%d", k % 6);
            snprintf(body, sizeof body, "{\"k\":%d}", k);
            assert_int_equal(dt_edit(db, id, k >= 6 ? dt_rev_str(&r[k % 6], prev) : NULL, body, 0, &r[k % 6]),
                             DV_OK);
        }
        faultvfs_cut_after(v, n);
        int rc = store_dbfile_compact(db, NULL, NULL);
        completed = rc == DV_OK && !faultvfs_cut_happened(v);
        store_dbfile_close(db);
        faultvfs_crash(v, (int)(n % 4));
        db = open_fv(v, 0);
        store_dbinfo i = dt_info(db);
        assert_int_equal(i.update_seq, 60);
        assert_int_equal(i.doc_count, 6);
        for (int k = 0; k < 6; k++) {
            char id[8], rev[96], want[96];
            buf_t got = BUF_INIT;
            snprintf(id, sizeof id, "d%d", k);
            snprintf(body, sizeof body, "{\"k\":%d}", 54 + k);
            assert_int_equal(dt_winner(db, id, rev, &got, NULL), DV_OK);
            assert_string_equal(rev, dt_rev_str(&r[k], want));
            assert_int_equal(got.len, strlen(body));
            assert_memory_equal(got.data, body, got.len);
            buf_free(&got);
        }
        /* and it takes writes and another compaction */
        assert_int_equal(dt_edit(db, "after", NULL, "{}", 0, NULL), DV_OK);
        assert_int_equal(store_dbfile_compact(db, NULL, NULL), DV_OK);
        assert_int_equal(dt_info(db).doc_count, 7);
        assert_int_equal(store_dbfile_close(db), DV_OK);
        faultvfs_free(v);
    }
    fprintf(stderr, "[test_dbfile_faults] compaction survived a cut at each of its %llu mutating steps\n",
            (unsigned long long)n - 2);
    assert_true(completed);
}

/* PERIODIC syncs within its interval; NEVER leaves syncing to the OS, so
 * a power loss takes its unsynced commits (the documented loss windows). */
static void test_durability_windows(void **state)
{
    (void)state;
    for (int mode = STORE_DURABLE_PERIODIC; mode <= STORE_DURABLE_NEVER; mode++) {
        faultvfs *v = faultvfs_new(7);
        store_dbfile_options o = {.vfs = faultvfs_vfs(v), .create = 1, .durability = mode, .sync_interval_ms = 10};
        store_dbfile *db = NULL;
        assert_int_equal(store_dbfile_open("db.couch", &o, &db), DV_OK);
        assert_int_equal(dt_edit(db, "w", NULL, "{}", 0, NULL), DV_OK);
        usleep(200 * 1000); /* 20 intervals: the timer has run */
        faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
        store_dbfile_close(db); /* handles are dead after the crash */
        db = open_fv(v, 0);
        assert_int_equal(dt_winner(db, "w", NULL, NULL, NULL), mode == STORE_DURABLE_PERIODIC ? DV_OK : DV_ERR_NOTFOUND);
        assert_int_equal(store_dbfile_close(db), DV_OK);
        faultvfs_free(v);
    }
}

/* Pipelined durable commits under sync failures: 8 writers edit their own
 * docs while syncs fail now and then.  A write that failed is never visible
 * afterwards (its writer's next edit names the last acknowledged rev and
 * must not conflict), every acknowledged one is, and survives a power
 * loss; the database keeps taking writes after each failure. */
enum { PL_THREADS = 8, PL_EDITS = 120 };
typedef struct pl_writer {
    store_dbfile *db;
    int t;
    store_rev rev; /* last acknowledged */
    int acked, failed, bad;
    _Atomic int *total;
} pl_writer;

static void *pl_writer_main(void *arg)
{
    pl_writer *w = arg;
    char id[16], prev[96], body[32];
    snprintf(id, sizeof id, "t%d", w->t);
    for (int k = 0; k < PL_EDITS; k++) {
        store_rev r;
        snprintf(body, sizeof body, "{\"k\":%d}", k);
        int rc = dt_edit(w->db, id, w->acked ? dt_rev_str(&w->rev, prev) : NULL, body, 0, &r);
        if (rc == DV_OK) {
            w->rev = r;
            w->acked++;
            atomic_fetch_add(w->total, 1);
        } else if (rc == DV_ERR_IO) {
            w->failed++;
        } else {
            w->bad++; /* a conflict: a failed write came back */
        }
    }
    return NULL;
}

/* sync_ahead: store_file_sync_ahead_max for the run; 0 makes the writer
 * sync each commit's data itself before its header (then the syncer's sync
 * is the header's), so synced bytes run ahead of acknowledged commits. */
static void pipelined_sync_failures(uint64_t sync_ahead)
{
    uint64_t saved = store_file_sync_ahead_max;
    store_file_sync_ahead_max = sync_ahead;
    faultvfs *v = faultvfs_new(11);
    store_dbfile *db = open_fv(v, 1);
    pl_writer w[PL_THREADS];
    pthread_t th[PL_THREADS];
    _Atomic int total = 0;
    for (int t = 0; t < PL_THREADS; t++) {
        w[t] = (pl_writer){db, t, {0}, 0, 0, 0, &total};
        assert_int_equal(pthread_create(&th[t], NULL, pl_writer_main, &w[t]), 0);
    }
    /* Three failed syncs, each once some writes went through. */
    for (int f = 1; f <= 3; f++) {
        while (atomic_load(&total) < f * PL_THREADS * PL_EDITS / 5)
            usleep(1000);
        faultvfs_fail_sync_after(v, 1);
    }
    int failed = 0;
    for (int t = 0; t < PL_THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(w[t].bad, 0);
        assert_int_equal(w[t].acked + w[t].failed, PL_EDITS);
        failed += w[t].failed;
    }
    assert_true(failed > 0);
    for (int pass = 0; pass < 2; pass++) {
        for (int t = 0; t < PL_THREADS; t++) {
            char id[16], rev[96], want[96];
            snprintf(id, sizeof id, "t%d", t);
            assert_int_equal(dt_winner(db, id, rev, NULL, NULL), DV_OK);
            assert_string_equal(rev, dt_rev_str(&w[t].rev, want));
        }
        if (pass == 0) {
            assert_int_equal(store_dbfile_close(db), DV_OK);
            faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
            db = open_fv(v, 0);
        }
    }
    fprintf(stderr, "[test_dbfile_faults] sync_ahead %llu: %d writes acknowledged, %d failed with 3 failed syncs\n",
            (unsigned long long)sync_ahead, atomic_load(&total), failed);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    faultvfs_free(v);
    store_file_sync_ahead_max = saved;
}

static void test_pipelined_sync_failures(void **state)
{
    (void)state;
    pipelined_sync_failures(store_file_sync_ahead_max);
    pipelined_sync_failures(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_commit_then_recovery),
        cmocka_unit_test(test_power_cut_never_hangs),
        cmocka_unit_test(test_failed_compaction_keeps_db),
        cmocka_unit_test(test_compaction_power_cut_anywhere),
        cmocka_unit_test(test_durability_windows),
        cmocka_unit_test(test_pipelined_sync_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
