/*
 * powerloss.c — power-loss and I/O-failure runners shared by
 * test_power_loss and tool_power_loss.
 *
 * cu_run_power: every iteration is a fresh in-memory faultvfs and a few
 * rounds of: open, write, arm a fault, write on (sometimes compacting, on
 * the same thread or concurrently), then a simulated power loss or a clean
 * close, and a reopen that must succeed and pass cu_verify.  Faults:
 *   - a power cut after a random number n of mutating operations: the
 *     state freezes at an exact point (between a commit's data sync and its
 *     header, between compaction's rename and its directory sync, ...);
 *     the unsynced writes are then resolved by a random faultvfs mode;
 *   - one failed pwrite or one failed sync, after which the system goes on:
 *     the write that hit it must report an error, later writes may succeed
 *     (then they count as acknowledged) or be refused.
 * Durability NEVER rounds are included: a power loss may then lose every
 * unsynced commit, so the model's lower bound falls back to the state the
 * round started from, except in KEEP_ALL mode (a process crash), where
 * everything acknowledged must survive.  Even with reordered writes
 * (KEEP_RANDOM) what survives must be a consistent prefix of commits: the
 * file layer chains unsynced headers with checksums of the bytes between
 * them, so a header that outlived its data is rejected.
 *
 * cu_run_truncate: real files.  A database is written commit by commit,
 * recording the file size after each acknowledged commit; copies cut at
 * random byte offsets (plus, sometimes, a tail of garbage) must open and
 * hold exactly the commits whose header ends before the cut.
 */
#include "store/crashutil.h"

#include "base/log.h"
#include "base/status.h"
#include "store/faultvfs.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PL_NDOCS 40
#define PL_NLOCALS 6
#define PL_PATH "/pl/db.couch"

static double pl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct pl_compactor {
    store_dbfile *db;
    int rc;
} pl_compactor;

static void *pl_compact_thread(void *arg)
{
    pl_compactor *c = arg;
    c->rc = store_dbfile_compact(c->db, NULL, NULL);
    return NULL;
}

static int pl_open(store_vfs *vfs, int create, int durability, int compression, store_dbfile **db)
{
    store_dbfile_options o = {0};
    o.vfs = vfs;
    o.create = create;
    o.durability = durability;
    o.compression = compression;
    return store_dbfile_open(PL_PATH, &o, db);
}

enum { SC_CUT, SC_FAIL_WRITE, SC_FAIL_SYNC };
static const char *const sc_name[] = {"cut", "fail-write", "fail-sync"};
static const char *const mode_name[] = {"drop-unsynced", "keep-random", "tear-last", "keep-all", "clean-close"};

/* Counters for the summary line (the long run's report). */
typedef struct pl_stats {
    long rounds, cuts_hit, failures_seen, acks, compactions, create_cuts;
} pl_stats;

/* One writer of the fault phase: `planned` writes, stopping after three
 * failures or when the database cannot even be read back. */
typedef struct pl_worker {
    cu_writer w;
    faultvfs *fv;
    long planned, fails;
    int violation, stopped;
} pl_worker;

static void *pl_worker_run(void *arg)
{
    pl_worker *p = arg;
    for (long i = 0; i < p->planned && !p->stopped; i++) {
        int cut_before = faultvfs_cut_happened(p->fv);
        int rc = cu_writer_step(&p->w);
        if (rc == CU_VIOLATION) {
            p->violation = p->stopped = 1;
            break;
        }
        if (rc == DV_OK && cut_before) {
            /* Durable means synced, and nothing syncs after the cut. */
            cu_violation(p->w.ctx, "write %ld acknowledged after the power was cut", i);
            p->violation = p->stopped = 1;
            break;
        }
        if (rc != DV_OK) {
            p->fails++;
            /* A failed write may still have reached the file (a header
             * written whose sync failed, found again when the database
             * reopens it): as a client retrying after an error, re-read
             * where its docs are.  A database that cannot answer is
             * refusing cleanly, which is fine. */
            if (p->fails >= 3 || cu_writer_resync(&p->w) != DV_OK)
                p->stopped = 1;
        }
    }
    return NULL;
}

/* One round on an existing database.  0 on success. */
static int pl_round(faultvfs *fv, cu_model *m, tu_rng *rng, pl_stats *stats, const char *ctx0)
{
    store_vfs *vfs = faultvfs_vfs(fv);
    store_dbfile *db = NULL;
    cu_model base;
    cu_state st;
    int bad = 1, rc, thread_started = 0;
    pthread_t th;
    pl_compactor comp = {0};
    char ctx[256];
    int durability = tu_rand_below(rng, 5) == 0 ? STORE_DURABLE_NEVER : STORE_DURABLE_ALWAYS;
    int sc = (int)tu_rand_below(rng, 10);
    sc = sc < 6 ? SC_CUT : sc < 8 ? SC_FAIL_WRITE : SC_FAIL_SYNC;
    /* Crash mode; 4 = no power loss, the process closes the db cleanly. */
    int mode = (int)tu_rand_below(rng, sc == SC_CUT ? 4 : 5);
    /* One writer, compaction in between or on its own thread; or two
     * writers (group commits of both) with compaction beside them. */
    int nworkers = tu_rand_below(rng, 3) == 0 ? 2 : 1;
    /* A third of the rounds make commits above a few KiB sync their data
     * before their header (the two-sync path of big commits). */
    store_file_sync_ahead_max = tu_rand_below(rng, 3) == 0 ? tu_rand_below(rng, 16 * 1024) : 4u << 20;
    snprintf(ctx, sizeof ctx, "%s %s durability=%s mode=%s writers=%d sync_ahead=%llu", ctx0, sc_name[sc],
             durability == STORE_DURABLE_NEVER ? "never" : "always", mode_name[mode], nworkers,
             (unsigned long long)store_file_sync_ahead_max);
    memset(&base, 0, sizeof base);
    memset(&st, 0, sizeof st);
    if (cu_model_copy(&base, m) != DV_OK || cu_state_init(&st, m->ndocs, m->nlocals) != DV_OK)
        goto done;
    rc = pl_open(vfs, 0, durability, (int)tu_rand_below(rng, 3), &db);
    if (rc != DV_OK) {
        cu_violation(ctx, "open: %s", dv_strerror(rc));
        goto done;
    }
    if ((rc = cu_state_load(&st, db)) != DV_OK) {
        cu_violation(ctx, "state load: %s", dv_strerror(rc));
        goto done;
    }
    cu_writer w;
    cu_writer_init_model(&w, db, &st, tu_rand(rng), m, ctx);
    /* Healthy phase: writes (and a compaction, which must work even when a
     * stale ".compact" from an earlier cut is lying around) must succeed. */
    uint64_t ops0 = faultvfs_op_count(fv);
    long warm = 1 + (long)tu_rand_below(rng, 8);
    for (long i = 0; i < warm; i++) {
        if ((rc = cu_writer_step(&w)) != DV_OK) {
            cu_violation(ctx, "healthy write %ld: %s", i, rc == CU_VIOLATION ? "violation" : dv_strerror(rc));
            goto done;
        }
    }
    uint64_t per_write = (faultvfs_op_count(fv) - ops0) / (uint64_t)warm + 1;
    if (tu_rand_below(rng, 4) == 0) {
        if ((rc = store_dbfile_compact(db, NULL, NULL)) != DV_OK) {
            cu_violation(ctx, "healthy compaction: %s", dv_strerror(rc));
            goto done;
        }
        stats->compactions++;
    }
    long planned = 3 + (long)tu_rand_below(rng, 15);
    long compact_at = tu_rand_below(rng, 3) == 0 ? (long)tu_rand_below(rng, (uint64_t)planned) : -1;
    int concurrent = compact_at >= 0 && tu_rand_below(rng, 2);
    /* Aim the fault anywhere in the writes to come, compaction included
     * (it rewrites every live doc: budget it as a few dozen writes). */
    uint64_t span = per_write * (uint64_t)planned + (compact_at >= 0 ? per_write * 30 : 0);
    uint64_t n = 1 + tu_rand_below(rng, span);
    if (sc == SC_CUT)
        faultvfs_cut_after(fv, n);
    else if (sc == SC_FAIL_WRITE)
        faultvfs_fail_write_after(fv, n);
    else
        faultvfs_fail_sync_after(fv, n);
    pl_worker wk[2];
    pthread_t wth[2];
    int wstarted = 0;
    memset(wk, 0, sizeof wk);
    for (int i = 0; i < nworkers; i++) {
        cu_writer_init_model(&wk[i].w, db, &st, tu_rand(rng), m, ctx);
        wk[i].w.stride = (uint32_t)nworkers;
        wk[i].w.offset = (uint32_t)i;
        wk[i].fv = fv;
        wk[i].planned = nworkers == 1 && compact_at >= 0 ? compact_at : planned;
    }
    comp.db = db;
    if (nworkers == 1) {
        pl_worker_run(&wk[0]);
        if (compact_at >= 0 && !wk[0].violation) {
            if (concurrent) {
                if (pthread_create(&th, NULL, pl_compact_thread, &comp) != 0)
                    goto done;
                thread_started = 1;
            } else {
                pl_compact_thread(&comp);
                stats->compactions += comp.rc == DV_OK;
            }
            wk[0].planned = planned - compact_at;
            pl_worker_run(&wk[0]);
        }
    } else {
        for (; wstarted < nworkers; wstarted++)
            if (pthread_create(&wth[wstarted], NULL, pl_worker_run, &wk[wstarted]) != 0)
                break;
        if (compact_at >= 0) {
            pl_compact_thread(&comp);
            stats->compactions += comp.rc == DV_OK;
        }
        for (int i = 0; i < wstarted; i++)
            pthread_join(wth[i], NULL);
        if (wstarted < nworkers)
            goto done;
    }
    if (thread_started) {
        pthread_join(th, NULL);
        thread_started = 0;
        stats->compactions += comp.rc == DV_OK;
    }
    if (wk[0].violation || wk[1].violation)
        goto done;
    long fails = wk[0].fails + wk[1].fails;
    stats->cuts_hit += faultvfs_cut_happened(fv);
    stats->failures_seen += fails > 0;
    if (mode != 4)
        faultvfs_crash(fv, mode);
    /* After a power loss close only frees (errors expected); after a single
     * failure close may report the poisoned file.  It must return either way. */
    store_dbfile_close(db);
    db = NULL;
    faultvfs_cut_after(fv, 0);
    faultvfs_fail_write_after(fv, 0);
    faultvfs_fail_sync_after(fv, 0);
    if (durability == STORE_DURABLE_NEVER && mode != FAULTVFS_KEEP_ALL && mode != 4) {
        /* Unsynced commits may all be gone: only the round's start is owed. */
        memcpy(m->acked_v, base.acked_v, m->ndocs * sizeof *m->acked_v);
        memcpy(m->acked_rev, base.acked_rev, m->ndocs * sizeof *m->acked_rev);
        memcpy(m->acked_l, base.acked_l, m->nlocals * sizeof *m->acked_l);
        m->max_acked_seq = base.max_acked_seq;
    }
    for (uint32_t k = 0; k < m->ndocs; k++)
        stats->acks += (long)(m->acked_v[k] - base.acked_v[k]);
    if (cu_verify(PL_PATH, vfs, m, ctx))
        goto done;
    stats->rounds++;
    bad = 0;
done:
    if (thread_started)
        pthread_join(th, NULL);
    if (db)
        store_dbfile_close(db);
    cu_model_free(&base);
    cu_state_free(&st);
    return bad;
}

int cu_run_power(const cu_power_opts *o)
{
    int bad = 1;
    tu_rng rng = {o->seed};
    pl_stats stats = {0};
    double t0 = pl_now();
    int log_level = cu_quiet_logs(LOG_NONE); /* injected failures log on every round */
    for (long it = 0; it < o->iterations; it++) {
        uint64_t iseed = tu_rand(&rng);
        tu_rng r = {iseed};
        char ctx[128];
        snprintf(ctx, sizeof ctx, "power_loss seed=%" PRIu64 " it=%ld", o->seed, it);
        faultvfs *fv = faultvfs_new(tu_rand(&r));
        cu_model m;
        if (!fv || cu_model_init(&m, PL_NDOCS, PL_NLOCALS) != DV_OK) {
            faultvfs_free(fv);
            goto done;
        }
        /* Sometimes the power goes while the database is being created: it
         * was never acknowledged, but creating it again must then work. */
        int precut = tu_rand_below(&r, 3) == 0;
        if (precut)
            faultvfs_cut_after(fv, 1 + tu_rand_below(&r, 12));
        int rc = cu_create(PL_PATH, faultvfs_vfs(fv), &m);
        if (precut) {
            stats.create_cuts += faultvfs_cut_happened(fv);
            faultvfs_crash(fv, (int)tu_rand_below(&r, 4));
            faultvfs_cut_after(fv, 0); /* also clears "cut happened" */
            if (rc != DV_OK)
                rc = cu_create(PL_PATH, faultvfs_vfs(fv), &m);
        }
        int fail = rc != DV_OK;
        if (fail)
            cu_violation(ctx, "create%s: %s", precut ? " after a power cut during creation" : "", dv_strerror(rc));
        int rounds = 2 + (int)tu_rand_below(&r, 3);
        for (int i = 0; i < rounds && !fail; i++) {
            char rctx[160];
            snprintf(rctx, sizeof rctx, "%s round=%d", ctx, i);
            fail = pl_round(fv, &m, &r, &stats, rctx);
        }
        cu_model_free(&m);
        faultvfs_free(fv);
        if (fail)
            goto done;
    }
    fprintf(stderr,
            "[power_loss] %ld iterations (%ld cut while creating), %ld rounds: %ld power cuts hit, "
            "%ld rounds with failed writes, %ld compactions, %ld acknowledged edits verified, %.1f s\n",
            o->iterations, stats.create_cuts, stats.rounds, stats.cuts_hit, stats.failures_seen, stats.compactions,
            stats.acks, pl_now() - t0);
    bad = 0;
done:
    log_set_level((enum log_level)log_level);
    if (bad)
        fprintf(stderr, "[power_loss] FAILED; reproduce with DIVAN_SEED=%" PRIu64 " (DIVAN_VERBOSE=1 shows store logs)\n",
                o->seed);
    return bad;
}

/* ---- truncation of real files ------------------------------------------ */

static int tr_copy(const char *from, const char *to, uint64_t len, const uint8_t *tail, size_t tail_len)
{
    int rc = DV_ERR_IO;
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out)
        goto done;
    uint8_t buf[65536];
    while (len > 0) {
        size_t want = len < sizeof buf ? (size_t)len : sizeof buf;
        size_t got = fread(buf, 1, want, in);
        if (got == 0 || fwrite(buf, 1, got, out) != got)
            goto done;
        len -= got;
    }
    if (tail_len && fwrite(tail, 1, tail_len, out) != tail_len)
        goto done;
    rc = DV_OK;
done:
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = DV_ERR_IO;
    return rc;
}

static int tr_read(const char *path, buf_t *out)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return DV_ERR_IO;
    buf_reset(out);
    int rc = buf_reserve(out, (size_t)sb.st_size);
    if (rc != DV_OK)
        return rc;
    FILE *f = fopen(path, "rb");
    if (!f)
        return DV_ERR_IO;
    out->len = fread(out->data, 1, (size_t)sb.st_size, f);
    fclose(f);
    return out->len == (size_t)sb.st_size ? DV_OK : DV_ERR_IO;
}

/* The end of db's last commit (the file may go on with zeros written ahead
 * of the next small commits, which are not part of it). */
static uint64_t tr_size(store_dbfile *db)
{
    store_snap *s;
    store_dbinfo info;
    if (store_dbfile_snapshot(db, &s) != DV_OK)
        return 0;
    store_snap_info(s, &info);
    store_snap_release(s);
    return info.file_size;
}

#define TR_MAX_COMMITS 64

/* One database, many cuts.  0 on success. */
static int tr_one(tu_rng *rng, const char *dir, const char *ctx0, long *cuts_done)
{
    int bad = 1, rc;
    char *path = tu_path(dir, "db.couch"), *cpath = tu_path(dir, "cut.couch");
    cu_model models[TR_MAX_COMMITS + 1];
    uint64_t ends[TR_MAX_COMMITS + 1];
    /* models[i]: the state after commit i; ends[i]: the file size then. */
    int nstates = 0;
    cu_model m;
    cu_state st;
    store_dbfile *db = NULL;
    buf_t file = BUF_INIT, tail = BUF_INIT;
    char ctx[256];
    memset(&m, 0, sizeof m);
    memset(&st, 0, sizeof st);
    if (cu_model_init(&m, PL_NDOCS, PL_NLOCALS) != DV_OK || cu_state_init(&st, PL_NDOCS, PL_NLOCALS) != DV_OK)
        goto done;
    store_dbfile_options o = {0};
    o.create = 1;
    o.durability = STORE_DURABLE_ALWAYS;
    o.compression = (int)tu_rand_below(rng, 3);
    if ((rc = store_dbfile_open(path, &o, &db)) != DV_OK) {
        cu_violation(ctx0, "create: %s", dv_strerror(rc));
        goto done;
    }
    /* State 0: the empty database as created. */
    if (cu_model_copy(&models[0], &m) != DV_OK)
        goto done;
    ends[0] = tr_size(db);
    nstates = 1;
    cu_writer w;
    cu_writer_init_model(&w, db, &st, tu_rand(rng), &m, ctx0);
    long nwrites = 5 + (long)tu_rand_below(rng, TR_MAX_COMMITS - 5);
    long compact_at = tu_rand_below(rng, 3) == 0 ? (long)tu_rand_below(rng, (uint64_t)nwrites) : -1;
    for (long i = 0; i < nwrites; i++) {
        if (i == compact_at) {
            if ((rc = store_dbfile_compact(db, NULL, NULL)) != DV_OK) {
                cu_violation(ctx0, "compaction: %s", dv_strerror(rc));
                goto done;
            }
            /* The file now starts afresh with the state as compacted; a cut
             * before its first header is a file that never was the db. */
            for (int j = 0; j < nstates; j++)
                cu_model_free(&models[j]);
            nstates = 0;
            if (cu_model_copy(&models[0], &m) != DV_OK)
                goto done;
            ends[0] = tr_size(db);
            nstates = 1;
        }
        if ((rc = cu_writer_step(&w)) != DV_OK) {
            cu_violation(ctx0, "write %ld: %s", i, rc == CU_VIOLATION ? "violation" : dv_strerror(rc));
            goto done;
        }
        if (cu_model_copy(&models[nstates], &m) != DV_OK)
            goto done;
        ends[nstates++] = tr_size(db);
        if (nstates > 1 && ends[nstates - 1] <= ends[nstates - 2]) {
            cu_violation(ctx0, "file did not grow with commit %ld (%" PRIu64 " bytes)", i, ends[nstates - 1]);
            goto done;
        }
    }
    rc = store_dbfile_close(db);
    db = NULL;
    if (rc != DV_OK) {
        cu_violation(ctx0, "close: %s", dv_strerror(rc));
        goto done;
    }
    if ((rc = tr_read(path, &file)) != DV_OK)
        goto done;
    int ncuts = 10 + (int)tu_rand_below(rng, 10);
    for (int c = 0; c < ncuts; c++) {
        uint64_t cut;
        if (tu_rand_below(rng, 2))
            cut = tu_rand_below(rng, file.len + 1);
        else { /* near a commit boundary, where off-by-ones live */
            int64_t x = (int64_t)ends[tu_rand_below(rng, (uint64_t)nstates)] + (int64_t)tu_rand_below(rng, 65) - 32;
            cut = x < 0 ? 0 : (uint64_t)x > file.len ? file.len : (uint64_t)x;
        }
        unsigned garbage = (unsigned)tu_rand_below(rng, 4);
        buf_reset(&tail);
        if (garbage == 1) { /* random bytes */
            size_t n = 1 + tu_rand_below(rng, 600);
            if (buf_reserve(&tail, n) != DV_OK)
                goto done;
            for (size_t i = 0; i < n; i++)
                tail.data[i] = (uint8_t)tu_rand(rng);
            tail.len = n;
        } else if (garbage == 2 && file.len > 0) {
            /* Stale bytes of this same file from another offset (a reused
             * disk block): headers and records in it sit at the wrong offset
             * now and must not validate. */
            uint64_t from = tu_rand_below(rng, file.len);
            size_t n = 1 + tu_rand_below(rng, 8192);
            if (from == cut)
                from = (from + 1) % file.len;
            if (n > file.len - from)
                n = file.len - from;
            if (buf_append(&tail, file.data + from, n) != DV_OK)
                goto done;
        } else if (garbage == 3) { /* a fake header magic followed by junk */
            if (buf_append_str(&tail, "DVHEADER") != DV_OK)
                goto done;
            for (int i = 0; i < 64; i++)
                if (buf_append_byte(&tail, (uint8_t)tu_rand(rng)) != DV_OK)
                    goto done;
        }
        /* Garbage that starts with the very byte it replaces extends the cut
         * by one byte of the real file, which can complete a commit ending
         * just after the cut (seen: a 1-byte stale tail): the model would
         * then be one commit short.  Its first byte differs, always. */
        if ((garbage == 1 || garbage == 2) && tail.len && cut < file.len && tail.data[0] == file.data[cut])
            tail.data[0] ^= 0xff;
        if (tr_copy(path, cpath, cut, tail.data, tail.len) != DV_OK)
            goto done;
        snprintf(ctx, sizeof ctx, "%s cut=%" PRIu64 "/%zu garbage=%u", ctx0, cut, file.len, garbage);
        int j = -1;
        for (int i = 0; i < nstates; i++)
            if (ends[i] <= cut)
                j = i;
        if (j < 0) {
            /* Before the first commit of this file (a torn prologue, or a
             * compacted file cut before it was complete): anything but a
             * crash is acceptable, an error is expected. */
            store_dbfile_options ro = {0};
            store_dbfile *x = NULL;
            if (store_dbfile_open(cpath, &ro, &x) == DV_OK)
                store_dbfile_close(x);
        } else {
            cu_model want;
            if (cu_model_copy(&want, &models[j]) != DV_OK)
                goto done;
            /* Exactly state j: acked == attempted. */
            memcpy(want.attempted_v, want.acked_v, want.ndocs * sizeof *want.acked_v);
            memcpy(want.attempted_l, want.acked_l, want.nlocals * sizeof *want.acked_l);
            int fail = cu_verify(cpath, NULL, &want, ctx);
            cu_model_free(&want);
            if (fail)
                goto done;
        }
        (*cuts_done)++;
        unlink(cpath);
    }
    bad = 0;
done:
    if (db)
        store_dbfile_close(db);
    for (int j = 0; j < nstates; j++)
        cu_model_free(&models[j]);
    cu_model_free(&m);
    cu_state_free(&st);
    buf_free(&file);
    buf_free(&tail);
    free(path);
    free(cpath);
    return bad;
}

int cu_run_truncate(const cu_power_opts *o)
{
    tu_rng rng = {o->seed ^ 0x7472756e63ULL};
    long cuts = 0;
    double t0 = pl_now();
    int log_level = cu_quiet_logs(LOG_NONE); /* cut copies log torn tails and corruption */
    int bad = 0;
    for (long it = 0; it < o->iterations; it++) {
        char ctx[128];
        snprintf(ctx, sizeof ctx, "truncate seed=%" PRIu64 " it=%ld", o->seed, it);
        char *dir = tu_mkdtemp("crash-trunc");
        bad = tr_one(&rng, dir, ctx, &cuts);
        if (bad) {
            fprintf(stderr, "[truncate] FAILED; reproduce with DIVAN_SEED=%" PRIu64 " (files kept in %s)\n", o->seed,
                    dir);
            free(dir);
            break;
        }
        tu_rmtree(dir);
        free(dir);
    }
    log_set_level((enum log_level)log_level);
    if (!bad)
        fprintf(stderr, "[truncate] %ld databases, %ld cut copies verified, %.1f s\n", o->iterations, cuts,
                pl_now() - t0);
    return bad;
}
