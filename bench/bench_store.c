/*
 * bench_store.c — divan's storage engine side by side with LMDB and SQLite:
 * the same work, in the same run, printed as a markdown table of figures
 * and ratios.  A benchmark, never a test: it asserts nothing about speed.
 *
 * Every group of phases runs in its own forked child, so that an engine's
 * peak RSS (ru_maxrss from wait4, the maximum over its children) is its own
 * and one engine's heap or mapped pages cannot inflate another's.  A child
 * sends its figures back over a pipe.
 *
 * Groups (directories under the work directory, one child per phase):
 *   commits  timed phases of durable single-document commits with 1, 8 and
 *            64 writer threads (group commit where the engine has it); the
 *            1-writer phase also records per-commit latency.  Then the file
 *            bytes per committed document.  Sync latency on a shared machine
 *            drifts, so engines take turns for BENCH_ROUNDS rounds and each
 *            row reports the median round.
 *   load     BENCH_DOCS documents inserted in batches of 1,000 (only the
 *            engine calls are timed, not building the documents); file bytes
 *            per document after close.  The directory stays for:
 *   reads    random point reads and range scans (1,000 rows from a random
 *            start), each for BENCH_SECONDS, over the loaded database; the
 *            engines take turns for BENCH_ROUNDS rounds, as for commits (a
 *            slow moment of the machine used to land on one engine's only
 *            read phase: 0.27x LMDB in one run, 0.44x in the next), and divan
 *            takes a second turn each round with its whole file mapped;
 *   compact  a quarter of the documents rewritten (untimed) and the database
 *            compacted, timed; then the directory goes.
 *
 * Environment: BENCH_DOCS (default 100000), BENCH_SECONDS (default 2),
 * BENCH_ROUNDS (default 3), BENCH_SEED (default 42), BENCH_ENGINES (default
 * "divan,lmdb,sqlite").
 * Usage: bench_store [workdir]  (default "."; must be on a real disk, not
 * tmpfs, for the sync figures to mean anything).
 */
#include "base/status.h"
#include "db/db.h"
#include "engine.h"
#include "store/file.h"

#include <errno.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 1000
#define SCAN_ROWS 1000
#define POOL_DOCS 256
#define LAT_CAP (1u << 18)
#define MAX_ROUNDS 15

enum {
    ROW_C1,
    ROW_C1_P50,
    ROW_C1_P99,
    ROW_C8,
    ROW_G8,
    ROW_C64,
    ROW_G64,
    ROW_COMMIT_BYTES,
    ROW_BATCH,
    ROW_BYTES,
    ROW_READS,
    ROW_SCAN,
    ROW_COMPACT,
    ROW_BYTES_COMPACT,
    ROW_RSS,
    ROW_READS_MAPPED,
    ROW_SCAN_MAPPED,
    ROW_RSS_MAPPED,
    ROW_COUNT
};

static const char *const row_label[ROW_COUNT] = {
    [ROW_C1] = "durable single-doc commits/s, 1 writer",
    [ROW_C1_P50] = "commit latency p50, 1 writer (us, lower is better)",
    [ROW_C1_P99] = "commit latency p99, 1 writer (us, lower is better)",
    [ROW_C8] = "commits/s, 8 concurrent writers",
    [ROW_G8] = "docs per durable commit, 8 writers (group commit)",
    [ROW_C64] = "commits/s, 64 concurrent writers",
    [ROW_G64] = "docs per durable commit, 64 writers (group commit)",
    [ROW_COMMIT_BYTES] = "file bytes per doc after single-doc commits (lower is better)",
    [ROW_BATCH] = "batched inserts, 1,000 per batch (docs/s)",
    [ROW_BYTES] = "file bytes per doc after batched inserts (lower is better)",
    [ROW_READS] = "random point reads/s",
    [ROW_SCAN] = "range scan rows/s (1,000-row ranges)",
    [ROW_COMPACT] = "compaction (MiB of compacted file per s)",
    [ROW_BYTES_COMPACT] = "file bytes per doc after update of 1/4 + compaction (lower is better)",
    [ROW_RSS] = "peak RSS (MiB, lower is better)",
    [ROW_READS_MAPPED] = "random point reads/s, divan's whole file mapped (as LMDB's)",
    [ROW_SCAN_MAPPED] = "range scan rows/s, divan's whole file mapped (as LMDB's)",
    [ROW_RSS_MAPPED] = "peak RSS, divan's whole file mapped (MiB, lower is better)",
};

typedef struct bench_cfg {
    uint64_t docs;
    double seconds;
    int rounds;
    uint64_t seed;
} bench_cfg;

typedef struct bench_results {
    double v[ROW_COUNT]; /* NAN: not measured (failed or not available) */
} bench_results;

/* ---- timed concurrent writers ------------------------------------------ */

typedef struct writer_arg {
    const bench_engine_ops *ops;
    void *h;
    uint64_t seed;
    const uint8_t *pool;
    pthread_barrier_t *start;
    atomic_int *stop;
    float *lat; /* per-commit latency in us, or NULL */
    size_t nlat;
    uint64_t count;
    int rc;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *a = p;
    void *w = NULL;
    uint8_t id[BENCH_ID_LEN];
    a->rc = a->ops->writer_open(a->h, &w);
    pthread_barrier_wait(a->start);
    if (a->rc != DV_OK)
        return NULL;
    while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
        const uint8_t *doc = a->pool + (a->count % POOL_DOCS) * BENCH_DOC_LEN;
        bench_make_id(a->seed, a->count, id);
        double t0 = bench_now();
        if ((a->rc = a->ops->put_one(w, id, sizeof id, doc, BENCH_DOC_LEN)) != DV_OK)
            break;
        if (a->lat && a->nlat < LAT_CAP)
            a->lat[a->nlat++] = (float)((bench_now() - t0) * 1e6);
        a->count++;
    }
    a->ops->writer_close(w);
    return NULL;
}

static int cmp_float(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* Runs nthreads writers for cfg->seconds; *rate gets commits/s, *group
 * documents per durable commit, *docs adds the documents committed; with
 * p50, p99: latencies. */
static int run_writers(const bench_engine_ops *ops, void *h, const bench_cfg *cfg, const uint8_t *pool,
                       int nthreads, uint64_t phase_seed, double *rate, double *group, uint64_t *docs, double *p50,
                       double *p99)
{
    uint64_t commits0 = ops->commits ? ops->commits(h) : 0;
    writer_arg *args = calloc((size_t)nthreads, sizeof *args);
    pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
    float *lat = p50 ? malloc(LAT_CAP * sizeof *lat) : NULL;
    pthread_barrier_t start;
    atomic_int stop = 0;
    int started = 0, rc = DV_OK;
    if (!args || !tids || (p50 && !lat)) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (; started < nthreads; started++) {
        writer_arg *a = &args[started];
        a->ops = ops;
        a->h = h;
        a->seed = bench_mix(phase_seed + (uint64_t)started);
        a->pool = pool;
        a->start = &start;
        a->stop = &stop;
        a->lat = started == 0 ? lat : NULL;
        if (pthread_create(&tids[started], NULL, writer_main, a) != 0) {
            /* The barrier counts every thread: the phase cannot start. */
            fprintf(stderr, "bench_store: pthread_create failed\n");
            abort();
        }
    }
    pthread_barrier_wait(&start);
    double t0 = bench_now();
    struct timespec ts = {(time_t)cfg->seconds, (long)((cfg->seconds - (double)(time_t)cfg->seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    atomic_store(&stop, 1);
    uint64_t total = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(tids[i], NULL);
        total += args[i].count;
        if (args[i].rc != DV_OK && rc == DV_OK)
            rc = args[i].rc;
    }
    double dt = bench_now() - t0;
    pthread_barrier_destroy(&start);
    *docs += total;
    *rate = (double)total / dt;
    if (ops->commits && ops->commits(h) > commits0)
        *group = (double)total / (double)(ops->commits(h) - commits0);
    else if (!ops->commits)
        *group = 1.0;
    if (lat && args[0].nlat > 0) {
        qsort(lat, args[0].nlat, sizeof *lat, cmp_float);
        *p50 = lat[args[0].nlat / 2];
        *p99 = lat[(size_t)((double)args[0].nlat * 0.99)];
    }
done:
    free(lat);
    free(tids);
    free(args);
    return rc;
}

/* ---- the phases ------------------------------------------------------ */

static int phase_commits(const bench_engine_ops *ops, const char *dir, const bench_cfg *cfg, bench_results *r)
{
    static const int writers[] = {1, 8, 64};
    static const int row[] = {ROW_C1, ROW_C8, ROW_C64};
    static const int grow[] = {-1, ROW_G8, ROW_G64};
    uint8_t *pool = malloc((size_t)POOL_DOCS * BENCH_DOC_LEN);
    uint64_t docs = 0;
    void *h = NULL;
    int rc;
    if (!pool)
        return DV_ERR_NOMEM;
    for (int i = 0; i < POOL_DOCS; i++)
        bench_make_doc(cfg->seed + 7, (uint64_t)i, pool + (size_t)i * BENCH_DOC_LEN);
    rc = mkdir(dir, 0755) == 0 ? DV_OK : DV_ERR_IO;
    if (rc != DV_OK || (rc = ops->open(dir, &h)) != DV_OK)
        goto done;
    for (int i = 0; i < 3; i++) {
        fprintf(stderr, "  %s: %d writer(s)...\n", ops->name, writers[i]);
        int first = i == 0;
        double group = NAN;
        rc = run_writers(ops, h, cfg, pool, writers[i], cfg->seed * 1000 + (uint64_t)i * 100, &r->v[row[i]], &group,
                         &docs, first ? &r->v[ROW_C1_P50] : NULL, first ? &r->v[ROW_C1_P99] : NULL);
        if (grow[i] >= 0)
            r->v[grow[i]] = group;
        if (rc != DV_OK)
            goto done;
    }
    rc = ops->close(h);
    h = NULL;
    if (rc == DV_OK && docs > 0)
        r->v[ROW_COMMIT_BYTES] = (double)bench_dir_bytes(dir) / (double)docs;
done:
    if (h)
        ops->close(h);
    free(pool);
    return rc;
}

/* Writes docs [0, cfg->docs) (update: every fourth, with new bodies) in
 * batches of BATCH; *secs receives the time spent inside the engine. */
static int load(const bench_engine_ops *ops, void *h, const bench_cfg *cfg, int update, double *secs)
{
    uint8_t *ids = malloc((size_t)BATCH * BENCH_ID_LEN);
    uint8_t *docs = malloc((size_t)BATCH * BENCH_DOC_LEN);
    bench_kv *kv = malloc(BATCH * sizeof *kv);
    uint64_t step = update ? 4 : 1;
    int rc = DV_OK;
    *secs = 0;
    if (!ids || !docs || !kv) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    for (uint64_t n = 0; n < cfg->docs && rc == DV_OK;) {
        size_t k = 0;
        for (; k < BATCH && n < cfg->docs; k++, n += step) {
            bench_make_id(cfg->seed, n, ids + k * BENCH_ID_LEN);
            bench_make_doc(cfg->seed + (uint64_t)update, n, docs + k * BENCH_DOC_LEN);
            kv[k] = (bench_kv){ids + k * BENCH_ID_LEN, BENCH_ID_LEN, docs + k * BENCH_DOC_LEN, BENCH_DOC_LEN};
        }
        double t0 = bench_now();
        rc = ops->put_batch(h, kv, k, update);
        *secs += bench_now() - t0;
    }
done:
    free(kv);
    free(docs);
    free(ids);
    return rc;
}

/* Random point reads for cfg->seconds; every 64th is checked against the
 * document the loader wrote. */
static int reads(const bench_engine_ops *ops, void *h, const bench_cfg *cfg, double *rate)
{
    uint8_t id[BENCH_ID_LEN], want[BENCH_DOC_LEN];
    buf_t out = BUF_INIT;
    uint64_t n = 0, rng = cfg->seed ^ 0x5eed;
    double t0 = bench_now(), dt = 0;
    int rc = DV_OK;
    while (rc == DV_OK) {
        if ((n & 255) == 0 && (dt = bench_now() - t0) >= cfg->seconds)
            break;
        uint64_t i = bench_mix(rng + n) % cfg->docs;
        bench_make_id(cfg->seed, i, id);
        if ((rc = ops->get(h, id, sizeof id, &out)) != DV_OK)
            break;
        if (out.len != BENCH_DOC_LEN) {
            rc = DV_ERR_CORRUPT;
        } else if ((n & 63) == 0) {
            bench_make_doc(cfg->seed, i, want);
            if (memcmp(want, out.data, BENCH_DOC_LEN) != 0)
                rc = DV_ERR_CORRUPT;
        }
        if (rc != DV_OK)
            fprintf(stderr, "  %s: read of doc %llu returned wrong bytes\n", ops->name, (unsigned long long)i);
        n++;
    }
    *rate = (double)n / dt;
    buf_free(&out);
    return rc;
}

static int scans(const bench_engine_ops *ops, void *h, const bench_cfg *cfg, double *rate)
{
    uint8_t start[BENCH_ID_LEN];
    buf_t scratch = BUF_INIT;
    uint64_t n = 0, rows = 0;
    double t0 = bench_now(), dt = 0;
    int rc = DV_OK;
    while (rc == DV_OK && (dt = bench_now() - t0) < cfg->seconds) {
        size_t got = 0;
        bench_make_id(cfg->seed ^ 0x5ca9, n++, start);
        rc = ops->scan(h, start, sizeof start, SCAN_ROWS, &scratch, &got);
        rows += got;
        if (rc == DV_OK && got > 0 && scratch.len != BENCH_DOC_LEN)
            rc = DV_ERR_CORRUPT;
    }
    *rate = (double)rows / dt;
    buf_free(&scratch);
    return rc;
}

static int phase_load(const bench_engine_ops *ops, const char *dir, const bench_cfg *cfg, bench_results *r)
{
    void *h = NULL;
    double secs;
    int rc;
    if (mkdir(dir, 0755) != 0)
        return DV_ERR_IO;
    if ((rc = ops->open(dir, &h)) != DV_OK)
        goto done;
    fprintf(stderr, "  %s: batched inserts of %llu docs...\n", ops->name, (unsigned long long)cfg->docs);
    if ((rc = load(ops, h, cfg, 0, &secs)) != DV_OK)
        goto done;
    r->v[ROW_BATCH] = (double)cfg->docs / secs;
    rc = ops->close(h);
    h = NULL;
    if (rc == DV_OK)
        r->v[ROW_BYTES] = (double)bench_dir_bytes(dir) / (double)cfg->docs;
done:
    if (h)
        ops->close(h);
    return rc;
}

/* Reads and scans over what phase_load left in dir, into rows rd and sc. */
static int reads_and_scans(const bench_engine_ops *ops, const char *dir, const bench_cfg *cfg, double *rd, double *sc)
{
    void *h = NULL;
    int rc;
    if ((rc = ops->open(dir, &h)) != DV_OK)
        return rc;
    fprintf(stderr, "  %s: point reads, range scans...\n", ops->name);
    if ((rc = reads(ops, h, cfg, rd)) == DV_OK)
        rc = scans(ops, h, cfg, sc);
    int crc = ops->close(h);
    return rc ? rc : crc;
}

static int phase_reads(const bench_engine_ops *ops, const char *dir, const bench_cfg *cfg, bench_results *r)
{
    return reads_and_scans(ops, dir, cfg, &r->v[ROW_READS], &r->v[ROW_SCAN]);
}

/* divan only: the same reads and scans with the mapped-read budget above
 * the file's size, so that divan keeps the whole file mapped as LMDB does;
 * the default budget (16 MiB, the rows above) trades read speed for
 * resident memory.  The peers have no such setting: their rows repeat their
 * reads, scans and RSS above. */
static int phase_reads_mapped(const bench_engine_ops *ops, const char *dir, const bench_cfg *cfg, bench_results *r)
{
    setenv("BENCH_DIVAN_MAP_MB", "1048576", 1); /* read by engine_divan's open, in this child only */
    fprintf(stderr, "  %s: with the whole file mapped:\n", ops->name);
    return reads_and_scans(ops, dir, cfg, &r->v[ROW_READS_MAPPED], &r->v[ROW_SCAN_MAPPED]);
}

static int phase_compact(const bench_engine_ops *ops, const char *dir, const bench_cfg *cfg, bench_results *r)
{
    void *h = NULL;
    double secs;
    uint64_t bytes = 0;
    int rc;
    if ((rc = ops->open(dir, &h)) != DV_OK)
        return rc;
    fprintf(stderr, "  %s: update 1/4, compaction...\n", ops->name);
    if ((rc = load(ops, h, cfg, 1, &secs)) != DV_OK)
        goto done;
    double t0 = bench_now();
    if ((rc = ops->compact(h, &bytes)) != DV_OK)
        goto done;
    r->v[ROW_COMPACT] = (double)bytes / (1024.0 * 1024.0) / (bench_now() - t0);
    r->v[ROW_BYTES_COMPACT] = (double)bytes / (double)cfg->docs;
done:
    if (h)
        ops->close(h);
    return rc;
}

/* One group of phases, run in a child in a fresh directory dir. */
typedef int (*phase_fn)(const bench_engine_ops *ops, const char *dir, const bench_cfg *cfg, bench_results *r);

/* Runs fn for ops in a forked child; r receives its figures (NAN where it
 * measured nothing), *rss_mib its peak RSS.  Removes dir afterwards unless
 * keep (a later phase goes on with it). */
static void run_child(phase_fn fn, const bench_engine_ops *ops, const char *dir, const bench_cfg *cfg,
                      bench_results *r, double *rss_mib, int keep)
{
    int fds[2];
    for (int i = 0; i < ROW_COUNT; i++)
        r->v[i] = NAN;
    *rss_mib = NAN;
    if (pipe(fds) != 0) {
        perror("pipe");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        bench_results cr;
        close(fds[0]);
        for (int i = 0; i < ROW_COUNT; i++)
            cr.v[i] = NAN;
        int rc = fn(ops, dir, cfg, &cr);
        if (rc != DV_OK)
            fprintf(stderr, "  %s: failed: %s (the figures it did not reach are n/a)\n", ops->name,
                    dv_strerror(rc));
        ssize_t w = write(fds[1], &cr, sizeof cr);
        _exit(w == (ssize_t)sizeof cr ? 0 : 1);
    }
    close(fds[1]);
    bench_results cr;
    size_t got = 0;
    while (got < sizeof cr) {
        ssize_t n = read(fds[0], (char *)&cr + got, sizeof cr - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
        ;
    if (got == sizeof cr) {
        *r = cr;
        *rss_mib = (double)ru.ru_maxrss / 1024.0;
    } else {
        fprintf(stderr, "  %s: child died (status 0x%x)\n", ops->name, (unsigned)status);
    }
    if (!keep)
        bench_rmtree(dir);
}

/* Every figure one engine produced, over all its children. */
typedef struct engine_samples {
    double v[ROW_COUNT][MAX_ROUNDS];
    int n[ROW_COUNT];
} engine_samples;

static void samples_add(engine_samples *s, const bench_results *r, double rss_mib)
{
    for (int i = 0; i < ROW_COUNT; i++) {
        double v = i == ROW_RSS ? rss_mib : r->v[i];
        if (!isnan(v) && s->n[i] < MAX_ROUNDS)
            s->v[i][s->n[i]++] = v;
    }
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Median of each row (peak RSS rows: the maximum), NAN for rows never measured. */
static void samples_reduce(engine_samples *s, bench_results *out)
{
    for (int i = 0; i < ROW_COUNT; i++) {
        int n = s->n[i];
        qsort(s->v[i], (size_t)n, sizeof(double), cmp_double);
        if (n == 0)
            out->v[i] = NAN;
        else if (i == ROW_RSS || i == ROW_RSS_MAPPED)
            out->v[i] = s->v[i][n - 1];
        else
            out->v[i] = n % 2 ? s->v[i][n / 2] : (s->v[i][n / 2 - 1] + s->v[i][n / 2]) / 2;
    }
}

/* ---- output ------------------------------------------------------------ */

static void fmt_value(double v, char *out, size_t n)
{
    if (isnan(v))
        snprintf(out, n, "n/a");
    else if (v >= 100)
        snprintf(out, n, "%.0f", v);
    else if (v >= 10)
        snprintf(out, n, "%.1f", v);
    else
        snprintf(out, n, "%.2f", v);
}

static void fmt_ratio(double a, double b, char *out, size_t n)
{
    if (isnan(a) || isnan(b) || b == 0)
        snprintf(out, n, "n/a");
    else
        snprintf(out, n, "%.2fx", a / b);
}

static void print_table(const bench_results *res, const int *ran, const bench_cfg *cfg)
{
    printf("| scenario | divan | LMDB | SQLite | divan/LMDB | divan/SQLite |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < ROW_COUNT; i++) {
        char v[3][32], r1[32], r2[32];
        for (int e = 0; e < 3; e++)
            fmt_value(ran[e] ? res[e].v[i] : NAN, v[e], sizeof v[e]);
        /* Group factors describe how, not how fast: no ratio. */
        int no_ratio = i == ROW_G8 || i == ROW_G64;
        fmt_ratio(ran[0] && !no_ratio ? res[0].v[i] : NAN, ran[1] ? res[1].v[i] : NAN, r1, sizeof r1);
        fmt_ratio(ran[0] && !no_ratio ? res[0].v[i] : NAN, ran[2] ? res[2].v[i] : NAN, r2, sizeof r2);
        printf("| %s | %s | %s | %s | %s | %s |\n", row_label[i], v[0], v[1], v[2], r1, r2);
    }
    printf("\nDocuments: %d-byte JSON bodies (order records from a 64-word vocabulary; lz4 takes one to ~710 bytes), "
           "ids %d random hex digits; %llu docs in the bulk database; timed phases %.1f s each; "
           "commit rows (the first eight) and read and scan rows are the median of %d rounds in which the engines "
           "take turns; seed %llu.\n",
           BENCH_DOC_LEN, BENCH_ID_LEN, (unsigned long long)cfg->docs, cfg->seconds, cfg->rounds,
           (unsigned long long)cfg->seed);
    printf("Durability: every commit synced before it returns. divan STORE_DURABLE_ALWAYS, lz4 bodies, "
           "%u MiB node cache (the server's default); LMDB %d.%d.%d default flags (sync on commit); "
           "SQLite %s journal_mode=WAL, synchronous=FULL, one connection per writer thread.\n",
           DB_CACHE_BYTES_DEFAULT >> 20, MDB_VERSION_MAJOR, MDB_VERSION_MINOR, MDB_VERSION_PATCH,
           sqlite3_libversion());
    printf("Ratios are divan / other: above 1 means divan is faster, except rows marked \"lower is better\". "
           "commits/s counts documents acknowledged durable per second; docs per durable commit is 1 for LMDB "
           "and SQLite by construction (one writer at a time, each commit synced). "
           "Reads and scans copy each document body out of the engine; divan reads the winning revision's "
           "body through a fresh snapshot per read or range. LMDB compaction is mdb_env_copy2(MDB_CP_COMPACT) "
           "plus fsync; SQLite's is VACUUM plus a TRUNCATE checkpoint. Peak RSS includes mapped file pages "
           "(LMDB and divan read through a map of the file). divan keeps at most %u MiB of a file mapped by "
           "default ([divan] map_resident_mb) and reads the rest with pread; the \"whole file mapped\" rows are "
           "divan's second turn of each read round, over the same database with that budget lifted (their peak RSS is "
           "that of those reads alone); the peers' repeat their rows above.\n\n",
           STORE_FILE_MAP_TRIM_DEFAULT >> 20);
}

static const bench_engine_ops *const engines[3] = {&bench_engine_divan, &bench_engine_lmdb, &bench_engine_sqlite};
static const char *const keys[3] = {"divan", "lmdb", "sqlite"};

/* Runs fn for engine e in root/<key>-<tag> (kept afterwards when keep: a
 * later phase goes on with it) and adds what it measured to e's samples.
 * The child's peak RSS counts in ROW_RSS, or only in ROW_RSS_MAPPED when
 * mapped_rss (divan's whole-file-mapped reads). */
static void run_phase(phase_fn fn, int e, const char *root, const char *tag, int keep, int mapped_rss,
                      const bench_cfg *cfg, engine_samples *s)
{
    char dir[4200];
    bench_results r;
    double rss;
    snprintf(dir, sizeof dir, "%s/%s-%s", root, keys[e], tag);
    run_child(fn, engines[e], dir, cfg, &r, &rss, keep);
    if (mapped_rss)
        r.v[ROW_RSS_MAPPED] = rss;
    samples_add(s, &r, mapped_rss ? NAN : rss);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 10) : dflt;
}

int main(int argc, char **argv)
{
    static engine_samples samples[3];
    bench_results res[3];
    int ran[3] = {0, 0, 0};
    bench_cfg cfg;
    const char *workdir = argc > 1 ? argv[1] : ".";
    const char *which = getenv("BENCH_ENGINES");
    const char *secs = getenv("BENCH_SECONDS");
    char root[4096], tag[32];

    cfg.docs = env_u64("BENCH_DOCS", 100000);
    cfg.seconds = secs && *secs ? strtod(secs, NULL) : 2.0;
    cfg.rounds = (int)env_u64("BENCH_ROUNDS", 3);
    cfg.seed = env_u64("BENCH_SEED", 42);
    if (cfg.docs < BATCH || !(cfg.seconds > 0) || cfg.rounds < 1 || cfg.rounds > MAX_ROUNDS) {
        fprintf(stderr, "bench_store: need BENCH_DOCS >= %d, BENCH_SECONDS > 0, 1 <= BENCH_ROUNDS <= %d\n", BATCH,
                MAX_ROUNDS);
        return 2;
    }
    for (int e = 0; e < 3; e++) {
        ran[e] = !(which && *which && !strstr(which, keys[e]));
    }
    if (snprintf(root, sizeof root, "%s/bench-store-XXXXXX", workdir) >= 4000 || !mkdtemp(root)) {
        fprintf(stderr, "bench_store: cannot create a directory under %s: %s\n", workdir, strerror(errno));
        return 1;
    }
    /* Commit phases hang on the disk's sync latency, which drifts with
     * whatever else the machine does: engines take turns, round after
     * round, and each row reports the median round. */
    for (int round = 0; round < cfg.rounds; round++) {
        for (int e = 0; e < 3; e++) {
            if (!ran[e])
                continue;
            fprintf(stderr, "bench_store: round %d/%d, %s commits\n", round + 1, cfg.rounds, engines[e]->name);
            snprintf(tag, sizeof tag, "commits-%d", round);
            run_phase(phase_commits, e, root, tag, 0, 0, &cfg, &samples[e]);
        }
    }
    /* One load per engine, then reads in rounds over it (turns again), then
     * its compaction.  Peak RSS is the maximum over an engine's children;
     * divan's whole-file-mapped reads count in their own row only. */
    for (int e = 0; e < 3; e++) {
        if (!ran[e])
            continue;
        fprintf(stderr, "bench_store: %s load\n", engines[e]->name);
        run_phase(phase_load, e, root, "bulk", 1, 0, &cfg, &samples[e]);
    }
    for (int round = 0; round < cfg.rounds; round++) {
        for (int e = 0; e < 3; e++) {
            if (!ran[e])
                continue;
            fprintf(stderr, "bench_store: round %d/%d, %s reads\n", round + 1, cfg.rounds, engines[e]->name);
            run_phase(phase_reads, e, root, "bulk", 1, 0, &cfg, &samples[e]);
            if (e == 0)
                run_phase(phase_reads_mapped, e, root, "bulk", 1, 1, &cfg, &samples[e]);
        }
    }
    for (int e = 0; e < 3; e++) {
        if (!ran[e])
            continue;
        fprintf(stderr, "bench_store: %s compaction\n", engines[e]->name);
        run_phase(phase_compact, e, root, "bulk", 0, 0, &cfg, &samples[e]);
    }
    for (int e = 0; e < 3; e++) {
        samples_reduce(&samples[e], &res[e]);
        if (e > 0) { /* the peers always map what they read: their rows above */
            res[e].v[ROW_READS_MAPPED] = res[e].v[ROW_READS];
            res[e].v[ROW_SCAN_MAPPED] = res[e].v[ROW_SCAN];
            res[e].v[ROW_RSS_MAPPED] = res[e].v[ROW_RSS];
        }
    }
    bench_rmtree(root);
    print_table(res, ran, &cfg);
    return 0;
}
