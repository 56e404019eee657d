/*
 * bench_qserver.c — map throughput of the JavaScript query server: how many
 * 1 KiB documents per second go through qserver_map + divan-js with
 * CouchDB's simplest index, function(doc){ emit(doc.x, null); }.
 *
 *   build/bench_qserver [DOCS] [BATCH]     (defaults 200000, 1000)
 *
 * For 1, 2, ... CPUs processes, as many threads each map their share in
 * batches of BATCH documents through their own process; the figure is
 * documents mapped per second of wall time, rows delivered to a callback
 * that checks them as the index engine would receive them (valid JSON, one
 * row).  The documents are built in memory beforehand: this measures the
 * query server, not the store.  Not a test: it prints, it never fails on
 * a slow figure.
 */
#include "base/status.h"
#include "views/qserver.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const DEF = "{\"views\":[{\"name\":\"x\",\"map\":\"function(doc){ emit(doc.x, null); }\"}]}";

typedef struct job {
    qserver *qs;
    char **docs;
    size_t *lens;
    size_t from, to, batch;
    size_t rows, failed;
    int rc;
} job;

static int on_doc(void *ctx, size_t i, const char *rows, size_t len, const char *failure)
{
    job *j = ctx;
    (void)i;
    if (!rows || len < 6 || memcmp(rows, "[[[", 3) != 0)
        j->failed++;
    else
        j->rows++;
    (void)failure;
    return 0;
}

static void *run(void *arg)
{
    job *j = arg;
    qserver_proc *p;
    qserver_error err;
    if ((j->rc = qserver_acquire(j->qs, "bench", &p)) != DV_OK)
        return NULL;
    if ((j->rc = qserver_define(p, "bench", DEF, strlen(DEF), NULL, &err)) != DV_OK)
        goto out;
    for (size_t i = j->from; i < j->to && j->rc == DV_OK; i += j->batch) {
        size_t n = j->to - i < j->batch ? j->to - i : j->batch;
        j->rc = qserver_map(p, "bench", (const char *const *)j->docs + i, j->lens + i, n, on_doc, j, &err);
    }
out:
    qserver_release(j->qs, p);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t ndocs = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    size_t batch = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000;
    if (!ndocs || !batch)
        return 2;
    char **docs = malloc(ndocs * sizeof *docs);
    size_t *lens = malloc(ndocs * sizeof *lens);
    if (!docs || !lens)
        return 1;
    /* ~1 KiB: an id, a rev, the indexed number and a dozen text fields. */
    for (size_t i = 0; i < ndocs; i++) {
        char buf[1200];
        int n = snprintf(buf, sizeof buf,
                         "{\"_id\":\"%016zx\",\"_rev\":\"1-%032zx\",\"x\":%zu,\"type\":\"item\",\"ok\":true,"
                         "\"tags\":[\"a\",\"b\"],\"nested\":{\"a\":1,\"b\":2.5}",
                         i * 2654435761u, i, i % 100000);
        for (int f = 0; n < 1000; f++)
            n += snprintf(buf + n, sizeof buf - (size_t)n, ",\"field%d\":\"lorem ipsum dolor sit amet %zu\"", f, i);
        n += snprintf(buf + n, sizeof buf - (size_t)n, "}");
        docs[i] = malloc((size_t)n + 1);
        if (!docs[i])
            return 1;
        memcpy(docs[i], buf, (size_t)n + 1);
        lens[i] = (size_t)n;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("| processes | docs | batch | seconds | docs/s |\n| ---: | ---: | ---: | ---: | ---: |\n");
    for (long procs = 1; procs <= (cpus > 1 ? cpus : 1); procs++) {
        qserver_config cfg = {0};
        cfg.pool_size = (unsigned)procs;
        qserver *qs;
        if (qserver_open(&cfg, &qs) != DV_OK) {
            fprintf(stderr, "bench_qserver: no divan-js next to this binary\n");
            return 1;
        }
        job jobs[64];
        pthread_t th[64];
        size_t per = ndocs / (size_t)procs;
        /* Warm up: spawn and compile outside the timing. */
        for (long t = 0; t < procs; t++) {
            jobs[t] = (job){qs, docs, lens, (size_t)t * per, (size_t)t * per + (batch < per ? batch : per), batch, 0, 0, 0};
            pthread_create(&th[t], NULL, run, &jobs[t]);
        }
        for (long t = 0; t < procs; t++)
            pthread_join(th[t], NULL);
        double t0 = now_s();
        for (long t = 0; t < procs; t++) {
            jobs[t] = (job){qs, docs, lens, (size_t)t * per, t == procs - 1 ? ndocs : (size_t)(t + 1) * per, batch, 0, 0, 0};
            pthread_create(&th[t], NULL, run, &jobs[t]);
        }
        size_t rows = 0, failed = 0;
        int rc = DV_OK;
        for (long t = 0; t < procs; t++) {
            pthread_join(th[t], NULL);
            rows += jobs[t].rows;
            failed += jobs[t].failed;
            if (jobs[t].rc != DV_OK)
                rc = jobs[t].rc;
        }
        double secs = now_s() - t0;
        qserver_close(qs);
        if (rc != DV_OK || rows != ndocs || failed) {
            fprintf(stderr, "bench_qserver: %s, %zu rows, %zu failed\n", dv_strerror(rc), rows, failed);
            return 1;
        }
        printf("| %ld | %zu | %zu | %.3f | %.0f |\n", procs, ndocs, batch, secs, (double)ndocs / secs);
    }
    for (size_t i = 0; i < ndocs; i++)
        free(docs[i]);
    free(docs);
    free(lens);
    return 0;
}
