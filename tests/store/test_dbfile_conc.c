/*
 * test_dbfile_conc.c — one database under concurrent writers and readers.
 *
 * 8 writer threads use the blocking API.  Each owns a pair of docs whose
 * values always sum to 1000 (every write moves an amount from one to the
 * other in a single store_write) and creates docs of its own.  2 reader
 * threads loop over snapshots and check, inside each snapshot, that every
 * pair sums to 1000 and that the id scan, the changes feed and the info
 * counts agree: a torn group or a snapshot that moved would break them.
 * Afterwards every acknowledged write must be visible, and the number of
 * commits must be below the number of writes (group commit groups).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "store/dbfile.h"
#include "store/dbfile_tutil.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NWRITERS 8
#define NREADERS 2

typedef struct wctx {
    store_dbfile *db;
    int t;
    int nwrites;
    store_rev pair_rev[2];
    int pair_val[2];
    int created;
    store_rev created_rev[64];
    int failures;
} wctx;

static atomic_int writers_done;
static atomic_long reader_checks;

static int parse_v(const buf_t *b)
{
    char tmp[64];
    size_t n = b->len < sizeof tmp - 1 ? b->len : sizeof tmp - 1;
    memcpy(tmp, b->data, n);
    tmp[n] = 0;
    const char *p = strstr(tmp, "\"v\":");
    return p ? atoi(p + 4) : -1000000;
}

static void *writer_main(void *arg)
{
    wctx *c = arg;
    char ids[2][16], bodies[2][32];
    for (int k = 0; k < 2; k++)
        snprintf(ids[k], sizeof ids[k], "pair%d-%c", c->t, 'a' + k);
    c->pair_val[0] = 1000;
    c->pair_val[1] = 0;
    for (int i = 0; i < c->nwrites; i++) {
        store_doc_update u[2];
        memset(u, 0, sizeof u);
        int amount = (i * 37 + c->t) % 100;
        int nv[2] = {c->pair_val[0] - amount, c->pair_val[1] + amount};
        for (int k = 0; k < 2; k++) {
            snprintf(bodies[k], sizeof bodies[k], "{\"v\":%d}", nv[k]);
            u[k].id = (const uint8_t *)ids[k];
            u[k].idlen = strlen(ids[k]);
            u[k].body = (const uint8_t *)bodies[k];
            u[k].body_len = strlen(bodies[k]);
            if (i) {
                u[k].has_parent = 1;
                u[k].parent = c->pair_rev[k];
            }
        }
        store_write w = {.docs = u, .ndocs = 2};
        if (store_dbfile_write(c->db, &w) || u[0].status || u[1].status) {
            c->failures++;
            continue;
        }
        for (int k = 0; k < 2; k++) {
            c->pair_rev[k] = u[k].rev;
            c->pair_val[k] = nv[k];
        }
        if (i % 2 == 0 && c->created < 64) {
            char id[32];
            snprintf(id, sizeof id, "new%d-%d", c->t, c->created);
            if (dt_edit(c->db, id, NULL, "{\"v\":1}", 0, &c->created_rev[c->created]) == DV_OK)
                c->created++;
            else
                c->failures++;
        }
    }
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

typedef struct rctx {
    store_dbfile *db;
    int failures;
} rctx;

static int check_snapshot(store_dbfile *db)
{
    store_snap *s;
    store_dbinfo info;
    store_docinfo d;
    store_docbody b;
    store_id_cursor *ic;
    store_seq_cursor *sc;
    store_change ch;
    int bad = 0, rc;
    if (store_dbfile_snapshot(db, &s))
        return 1;
    store_snap_info(s, &info);
    store_docinfo_init(&d);
    store_docbody_init(&b);
    store_change_init(&ch);
    uint64_t ndocs = 0;
    int pair_sum[NWRITERS] = {0}, pair_seen[NWRITERS] = {0};
    if (store_snap_iter_ids(s, NULL, &ic))
        return 1;
    while ((rc = store_id_cursor_next(ic, &d)) == 1) {
        ndocs++;
        if (d.id.len > 4 && !memcmp(d.id.data, "pair", 4)) {
            int t = d.id.data[4] - '0';
            uint32_t w = revtree_winner(&d.tree);
            if (store_snap_read_body(s, d.tree.nodes[w].body, &b)) {
                bad++;
                continue;
            }
            pair_sum[t] += parse_v(&b.body);
            pair_seen[t]++;
        }
    }
    store_id_cursor_close(ic);
    if (rc != 0 || ndocs != info.doc_count)
        bad++;
    for (int t = 0; t < NWRITERS; t++)
        if (pair_seen[t] && (pair_seen[t] != 2 || pair_sum[t] != 1000))
            bad++;
    uint64_t nchanges = 0, last = 0;
    if (store_snap_iter_changes(s, 0, 0, &sc))
        return 1;
    while ((rc = store_seq_cursor_next(sc, &ch)) == 1) {
        nchanges++;
        if (ch.seq <= last || ch.seq > info.update_seq)
            bad++;
        last = ch.seq;
    }
    store_seq_cursor_close(sc);
    if (rc != 0 || nchanges != info.doc_count + info.del_count)
        bad++;
    store_change_free(&ch);
    store_docbody_free(&b);
    store_docinfo_free(&d);
    store_snap_release(s);
    return bad;
}

static void *reader_main(void *arg)
{
    rctx *c = arg;
    while (atomic_load(&writers_done) < NWRITERS) {
        c->failures += check_snapshot(c->db);
        atomic_fetch_add(&reader_checks, 1);
    }
    return NULL;
}

static void test_writers_and_readers(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("dbfile-conc");
    char *path = tu_path(dir, "conc.couch");
    store_dbfile_options o = {.create = 1, .compression = STORE_COMPRESS_LZ4};
    store_dbfile *db;
    assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
    wctx w[NWRITERS];
    rctx r[NREADERS];
    pthread_t wt[NWRITERS], rt[NREADERS];
    atomic_store(&writers_done, 0);
    atomic_store(&reader_checks, 0);
    int nwrites = (int)tu_iterations(40);
    for (int i = 0; i < NREADERS; i++) {
        r[i] = (rctx){db, 0};
        assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &r[i]), 0);
    }
    for (int i = 0; i < NWRITERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].db = db;
        w[i].t = i;
        w[i].nwrites = nwrites;
        assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < NWRITERS; i++)
        pthread_join(wt[i], NULL);
    for (int i = 0; i < NREADERS; i++) {
        pthread_join(rt[i], NULL);
        assert_int_equal(r[i].failures, 0);
    }
    assert_true(atomic_load(&reader_checks) > 0);

    uint64_t writes = 0;
    for (int i = 0; i < NWRITERS; i++) {
        assert_int_equal(w[i].failures, 0);
        writes += (uint64_t)w[i].nwrites + (uint64_t)w[i].created;
    }
    uint64_t commits = store_dbfile_commit_count(db);
    fprintf(stderr, "[test_dbfile_conc] %llu writes in %llu commits, %ld reader snapshots\n",
            (unsigned long long)writes, (unsigned long long)commits, (long)atomic_load(&reader_checks));
    assert_true(commits < writes);

    /* every acknowledged write is visible, after a reopen too */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < NWRITERS; i++) {
            for (int k = 0; k < 2; k++) {
                char id[16], rev[96], want[96];
                buf_t body = BUF_INIT;
                snprintf(id, sizeof id, "pair%d-%c", i, 'a' + k);
                assert_int_equal(dt_winner(db, id, rev, &body, NULL), DV_OK);
                assert_string_equal(rev, dt_rev_str(&w[i].pair_rev[k], want));
                assert_int_equal(parse_v(&body), w[i].pair_val[k]);
                buf_free(&body);
            }
            for (int k = 0; k < w[i].created; k++) {
                char id[32], rev[96], want[96];
                snprintf(id, sizeof id, "new%d-%d", i, k);
                assert_int_equal(dt_winner(db, id, rev, NULL, NULL), DV_OK);
                assert_string_equal(rev, dt_rev_str(&w[i].created_rev[k], want));
            }
        }
        assert_int_equal(check_snapshot(db), 0);
        assert_int_equal(store_dbfile_close(db), DV_OK);
        o.create = 0;
        assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
    }
    assert_int_equal(store_dbfile_close(db), DV_OK);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

/* A client writing one doc at a time with ~100 us between its commits:
 * the writer waits for it awake (dbfile_write.c, "waiting for work") and
 * must take each write while spinning, lose none, and still close at once
 * when asked while it spins. */
static void test_paced_writer(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("dbfile-paced");
    char *path = tu_path(dir, "paced.couch");
    store_dbfile_options o = {.create = 1, .durability = STORE_DURABLE_NEVER};
    store_dbfile *db;
    assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
    int n = 300;
    store_rev revs[300];
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%03d", i);
        assert_int_equal(dt_edit(db, id, NULL, "{\"v\":1}", 0, &revs[i]), DV_OK);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do /* a busy pause: a sleep would make the gap the timer's slack */
            clock_gettime(CLOCK_MONOTONIC, &t1);
        while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 100000L);
    }
    uint64_t caught = store_dbfile_spin_catches(db);
    fprintf(stderr, "[test_dbfile_conc] paced writer: %d writes, %llu taken while spinning\n", n,
            (unsigned long long)caught);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu > 1)
        assert_true(caught > 0);
    else
        assert_int_equal(caught, 0);
    /* Close while the writer is spinning: it must notice the stop. */
    assert_int_equal(dt_edit(db, "last", NULL, "{}", 0, NULL), DV_OK);
    struct timespec c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &c0);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    clock_gettime(CLOCK_MONOTONIC, &c1);
    assert_true(c1.tv_sec - c0.tv_sec < 2);
    o.create = 0;
    assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
    for (int i = 0; i < n; i++) {
        char id[16], rev[96], want[96];
        snprintf(id, sizeof id, "d%03d", i);
        assert_int_equal(dt_winner(db, id, rev, NULL, NULL), DV_OK);
        assert_string_equal(rev, dt_rev_str(&revs[i], want));
    }
    assert_int_equal(store_dbfile_close(db), DV_OK);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writers_and_readers),
        cmocka_unit_test(test_paced_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
