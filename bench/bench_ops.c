/*
 * bench_ops.c — one storage operation, a fixed number of times, for
 * profiling under valgrind (callgrind counts instructions, which a noisy
 * shared machine does not disturb) or perf.  Not a benchmark table: it
 * prints what it did and the wall time, nothing else.
 *
 *   bench_ops ENGINE load   DIR DOCS [B]    insert DOCS docs in batches of B (1,000)
 *   bench_ops ENGINE grow   DIR FIRST N B   insert docs FIRST.. FIRST+N-1 (of the
 *                                           same id sequence) in batches of B
 *   bench_ops ENGINE reads  DIR DOCS N      N random point reads of those docs
 *   bench_ops ENGINE scans  DIR DOCS N      N 1,000-row range scans
 *   bench_ops ENGINE compact DIR 1          compact the database in DIR
 *   bench_ops ENGINE commit DIR N [T]       N single-doc durable commits from
 *                                           T threads (default 1) in total
 * ENGINE is divan, lmdb or sqlite; DIR is created by load and reused by the
 * read operations.  Same workload (ids, bodies, seeds) as bench_store, so a
 * profile explains a row of its table.
 *
 * The timed loop of each operation is its own function (run_reads,
 * run_scans, run_commits, run_load), so that
 *   valgrind --tool=callgrind --toggle-collect=run_reads build/bench_ops divan reads DIR 100000 20000
 * counts only the reads, not the open.
 */
#include "base/status.h"
#include "engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SEED 42
#define BATCH 1000
#define SCAN_ROWS 1000

static const bench_engine_ops *engine_named(const char *name)
{
    if (!strcmp(name, "divan"))
        return &bench_engine_divan;
    if (!strcmp(name, "lmdb"))
        return &bench_engine_lmdb;
    if (!strcmp(name, "sqlite"))
        return &bench_engine_sqlite;
    return NULL;
}

/* noinline: callgrind's --toggle-collect needs the symbol. */
__attribute__((noinline)) int run_load(const bench_engine_ops *ops, void *h, uint64_t first, uint64_t docs,
                                       size_t batch);
__attribute__((noinline)) int run_reads(const bench_engine_ops *ops, void *h, uint64_t docs, uint64_t n);
__attribute__((noinline)) int run_scans(const bench_engine_ops *ops, void *h, uint64_t n);

int run_load(const bench_engine_ops *ops, void *h, uint64_t first, uint64_t docs, size_t batch)
{
    uint8_t *ids = malloc(batch * BENCH_ID_LEN);
    uint8_t *bodies = malloc(batch * BENCH_DOC_LEN);
    bench_kv *kv = malloc(batch * sizeof *kv);
    int rc = ids && bodies && kv ? DV_OK : DV_ERR_NOMEM;
    for (uint64_t n = first; n < first + docs && rc == DV_OK;) {
        size_t k = 0;
        for (; k < batch && n < first + docs; k++, n++) {
            bench_make_id(SEED, n, ids + k * BENCH_ID_LEN);
            bench_make_doc(SEED, n, bodies + k * BENCH_DOC_LEN);
            kv[k] = (bench_kv){ids + k * BENCH_ID_LEN, BENCH_ID_LEN, bodies + k * BENCH_DOC_LEN, BENCH_DOC_LEN};
        }
        rc = ops->put_batch(h, kv, k, 0);
    }
    free(kv);
    free(bodies);
    free(ids);
    return rc;
}

int run_reads(const bench_engine_ops *ops, void *h, uint64_t docs, uint64_t n)
{
    uint8_t id[BENCH_ID_LEN];
    buf_t out = BUF_INIT;
    int rc = DV_OK;
    for (uint64_t i = 0; i < n && rc == DV_OK; i++) {
        bench_make_id(SEED, bench_mix((SEED ^ 0x5eed) + i) % docs, id);
        rc = ops->get(h, id, sizeof id, &out);
        if (rc == DV_OK && out.len != BENCH_DOC_LEN)
            rc = DV_ERR_CORRUPT;
    }
    buf_free(&out);
    return rc;
}

int run_scans(const bench_engine_ops *ops, void *h, uint64_t n)
{
    uint8_t start[BENCH_ID_LEN];
    buf_t scratch = BUF_INIT;
    int rc = DV_OK;
    for (uint64_t i = 0; i < n && rc == DV_OK; i++) {
        size_t got = 0;
        bench_make_id(SEED ^ 0x5ca9, i, start);
        rc = ops->scan(h, start, sizeof start, SCAN_ROWS, &scratch, &got);
    }
    buf_free(&scratch);
    return rc;
}

typedef struct commit_arg {
    const bench_engine_ops *ops;
    void *h;
    uint64_t first, n;
    int rc;
} commit_arg;

static void *commit_main(void *p)
{
    commit_arg *a = p;
    uint8_t id[BENCH_ID_LEN], doc[16][BENCH_DOC_LEN];
    void *w = NULL;
    if ((a->rc = a->ops->writer_open(a->h, &w)) != DV_OK)
        return NULL;
    /* A few bodies made up front, as bench_store's pool: the commit loop
     * profiles the engine, not snprintf. */
    for (uint64_t i = 0; i < 16; i++)
        bench_make_doc(SEED, a->first + i, doc[i]);
    for (uint64_t i = 0; i < a->n && a->rc == DV_OK; i++) {
        bench_make_id(SEED + 1, a->first + i, id);
        a->rc = a->ops->put_one(w, id, sizeof id, doc[i % 16], BENCH_DOC_LEN);
    }
    a->ops->writer_close(w);
    return NULL;
}

__attribute__((noinline)) int run_commits(const bench_engine_ops *ops, void *h, uint64_t n, int threads);
__attribute__((noinline)) int run_compact(const bench_engine_ops *ops, void *h);
int run_compact(const bench_engine_ops *ops, void *h)
{
    uint64_t bytes = 0;
    int rc = ops->compact(h, &bytes);
    fprintf(stderr, "compacted to %llu bytes\n", (unsigned long long)bytes);
    return rc;
}
int run_commits(const bench_engine_ops *ops, void *h, uint64_t n, int threads)
{
    commit_arg *args = calloc((size_t)threads, sizeof *args);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int rc = args && tids ? DV_OK : DV_ERR_NOMEM, started = 0;
    for (; rc == DV_OK && started < threads; started++) {
        args[started] = (commit_arg){ops, h, n / (uint64_t)threads * (uint64_t)started, n / (uint64_t)threads, 0};
        if (pthread_create(&tids[started], NULL, commit_main, &args[started]) != 0)
            rc = DV_ERR_NOMEM;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(tids[i], NULL);
        if (args[i].rc != DV_OK && rc == DV_OK)
            rc = args[i].rc;
    }
    free(args);
    free(tids);
    return rc;
}

int main(int argc, char **argv)
{
    const bench_engine_ops *ops = argc > 3 ? engine_named(argv[1]) : NULL;
    const char *op = argc > 3 ? argv[2] : "", *dir = argc > 3 ? argv[3] : "";
    uint64_t a = argc > 4 ? strtoull(argv[4], NULL, 10) : 0, b = argc > 5 ? strtoull(argv[5], NULL, 10) : 0;
    uint64_t c = argc > 6 ? strtoull(argv[6], NULL, 10) : 0;
    void *h = NULL;
    int rc;
    if (!ops || !a || (strcmp(op, "load") && strcmp(op, "commit") && !b) || (!strcmp(op, "grow") && !c)) {
        fprintf(stderr, "usage: bench_ops divan|lmdb|sqlite load|grow|reads|scans|commit DIR ... (see bench_ops.c)\n");
        return 2;
    }
    if ((!strcmp(op, "load") || !strcmp(op, "commit")) && mkdir(dir, 0755) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    if ((rc = ops->open(dir, &h)) != DV_OK)
        goto done;
    double t0 = bench_now();
    if (!strcmp(op, "load"))
        rc = run_load(ops, h, 0, a, b ? (size_t)b : BATCH);
    else if (!strcmp(op, "grow"))
        rc = run_load(ops, h, a, b, (size_t)c);
    else if (!strcmp(op, "reads"))
        rc = run_reads(ops, h, a, b);
    else if (!strcmp(op, "scans"))
        rc = run_scans(ops, h, b);
    else if (!strcmp(op, "compact"))
        rc = run_compact(ops, h);
    else if (!strcmp(op, "commit"))
        rc = run_commits(ops, h, a, b ? (int)b : 1);
    else
        rc = DV_ERR_INVALID;
    double dt = bench_now() - t0;
    fprintf(stderr, "%s %s: %s in %.3f s\n", ops->name, op, dv_strerror(rc), dt);
    int crc = ops->close(h);
    if (rc == DV_OK)
        rc = crc;
done:
    if (rc != DV_OK)
        fprintf(stderr, "bench_ops: %s\n", dv_strerror(rc));
    return rc == DV_OK ? 0 : 1;
}
