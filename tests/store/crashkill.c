/*
 * crashkill.c — the SIGKILL crash runner shared by test_crash_kill and
 * tool_crash_kill.
 *
 * Each iteration forks a child that opens the real database file, starts
 * several writer threads (cu_writer_step, durability ALWAYS or NEVER) and,
 * optionally, a thread running store_dbfile_compact in a loop.  The child
 * reports every write to the parent through a pipe: "attempt" before
 * store_dbfile_write is called, "ack" after it returned DV_OK.  A record is
 * one write() of less than PIPE_BUF bytes, so records from several threads
 * never interleave and everything written before the kill reaches the
 * parent.  The parent kills the child with SIGKILL at a random moment
 * (during open, during writes, or aimed just after a compaction started),
 * then reopens the file itself and verifies it against the acknowledged
 * log (cu_verify).  A process kill loses nothing the OS accepted, so the
 * same bar holds for durability NEVER.
 *
 * The database persists across iterations: every child starts from what
 * the previous crash left, so recovery is also tested on recovered files.
 */
#include "store/crashutil.h"

#include "base/log.h"
#include "base/status.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { REC_READY = 'R', REC_ATTEMPT = 'A', REC_ACK = 'K', REC_CSTART = 'S', REC_CEND = 'C', REC_ERROR = 'X' };

typedef struct kill_rec {
    uint8_t type, kind;
    uint32_t k;
    int32_t status;
    uint64_t v, seq;
    store_rev rev;
    char msg[64];
} kill_rec;
_Static_assert(sizeof(kill_rec) <= 512, "a record must be written atomically (PIPE_BUF)");

#define KILL_NDOCS 300
#define KILL_NLOCALS 16

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- child ----------------------------------------------------------- */

typedef struct child_ctx {
    int fd;
    store_dbfile *db;
    cu_state st;
    uint64_t seed;
    int threads;
} child_ctx;

static void child_send(int fd, const kill_rec *r)
{
    /* A pipe write of < PIPE_BUF bytes is all or nothing. */
    while (write(fd, r, sizeof *r) < 0) {
        if (errno != EINTR)
            _exit(5); /* the parent is gone */
    }
}

static void child_fail(int fd, const char *what, int status)
{
    kill_rec r;
    memset(&r, 0, sizeof r);
    r.type = REC_ERROR;
    r.status = status;
    snprintf(r.msg, sizeof r.msg, "%s", what);
    child_send(fd, &r);
    _exit(3);
}

static void child_report(int fd, uint8_t type, int kind, uint32_t k, uint64_t v, const store_rev *rev, uint64_t seq)
{
    kill_rec r;
    memset(&r, 0, sizeof r);
    r.type = type;
    r.kind = (uint8_t)kind;
    r.k = k;
    r.v = v;
    r.seq = seq;
    if (rev)
        r.rev = *rev;
    child_send(fd, &r);
}

static void child_attempt(void *arg, int kind, uint32_t k, uint64_t v)
{
    child_report(*(int *)arg, REC_ATTEMPT, kind, k, v, NULL, 0);
}

static void child_ack(void *arg, int kind, uint32_t k, uint64_t v, const store_rev *rev, uint64_t seq)
{
    child_report(*(int *)arg, REC_ACK, kind, k, v, rev, seq);
}

typedef struct child_thread {
    child_ctx *c;
    uint32_t offset;
} child_thread;

static void *child_writer(void *arg)
{
    child_thread *t = arg;
    cu_writer w = {0};
    w.db = t->c->db;
    w.st = &t->c->st;
    w.stride = (uint32_t)t->c->threads;
    w.offset = t->offset;
    w.rng.s = t->c->seed ^ ((uint64_t)t->offset + 1) * 0x9e3779b97f4a7c15ULL;
    w.ev.attempt = child_attempt;
    w.ev.ack = child_ack;
    w.ev.arg = &t->c->fd;
    w.ctx = "crash_kill child";
    for (;;) {
        int rc = cu_writer_step(&w);
        if (rc != DV_OK)
            child_fail(t->c->fd, rc == CU_VIOLATION ? "writer: violation (see stderr)" : "writer: write failed", rc);
    }
    return NULL;
}

static void *child_compactor(void *arg)
{
    child_ctx *c = arg;
    tu_rng rng = {c->seed ^ 0xc0ffee};
    kill_rec r;
    for (;;) {
        usleep((useconds_t)(10000 + tu_rand_below(&rng, 140000)));
        memset(&r, 0, sizeof r);
        r.type = REC_CSTART;
        child_send(c->fd, &r);
        int rc = store_dbfile_compact(c->db, NULL, NULL);
        if (rc != DV_OK && rc != DV_ERR_BUSY)
            child_fail(c->fd, "compaction failed", rc);
        r.type = REC_CEND;
        r.status = rc;
        child_send(c->fd, &r);
    }
    return NULL;
}

static void child_main(const char *path, int fd, const cu_kill_opts *o, uint64_t seed)
{
    child_ctx c = {0};
    c.fd = fd;
    c.seed = seed;
    c.threads = o->threads;
    alarm(120); /* never outlive a parent that forgot us */
    tu_rng rng = {seed};
    store_dbfile_options opts = {0};
    opts.durability = o->durability;
    opts.compression = (int)tu_rand_below(&rng, 3);
    int rc = store_dbfile_open(path, &opts, &c.db);
    if (rc != DV_OK)
        child_fail(fd, "child: open failed", rc);
    if ((rc = cu_state_init(&c.st, KILL_NDOCS, KILL_NLOCALS)) != DV_OK || (rc = cu_state_load(&c.st, c.db)) != DV_OK)
        child_fail(fd, "child: loading the state failed", rc);
    kill_rec r;
    memset(&r, 0, sizeof r);
    r.type = REC_READY;
    child_send(fd, &r);
    pthread_t th;
    child_thread ts[8];
    for (int i = 0; i < o->threads && i < 8; i++) {
        ts[i].c = &c;
        ts[i].offset = (uint32_t)i;
        if (pthread_create(&th, NULL, child_writer, &ts[i]) != 0)
            child_fail(fd, "child: pthread_create", DV_ERR_NOMEM);
    }
    if (o->compact && pthread_create(&th, NULL, child_compactor, &c) != 0)
        child_fail(fd, "child: pthread_create", DV_ERR_NOMEM);
    for (;;)
        pause();
}

/* ---- parent ---------------------------------------------------------- */

typedef struct kill_run {
    cu_model m;
    int fd;
    uint8_t buf[sizeof(kill_rec) * 64];
    size_t have;
    int eof, ready, cstarted, cended;
    int child_error;
    long acks;
} kill_run;

static void kill_apply(kill_run *k, const kill_rec *r)
{
    switch (r->type) {
    case REC_READY: k->ready = 1; break;
    case REC_ATTEMPT: cu_model_attempt(&k->m, r->kind, r->k, r->v); break;
    case REC_ACK:
        cu_model_ack(&k->m, r->kind, r->k, r->v, &r->rev, r->seq);
        k->acks++;
        break;
    case REC_CSTART: k->cstarted++; break;
    case REC_CEND: k->cended++; break;
    case REC_ERROR:
        k->child_error = 1;
        fprintf(stderr, "[crash_kill] child error: %s: %s\n", r->msg, dv_strerror(r->status));
        break;
    default: k->child_error = 1; fprintf(stderr, "[crash_kill] garbled record from child\n");
    }
}

/* Reads and applies records until the deadline, EOF, or stop(k) holds. */
static void kill_pump(kill_run *k, uint64_t deadline_us, int (*stop)(const kill_run *))
{
    while (!k->eof && !(stop && stop(k))) {
        uint64_t now = now_us();
        if (now >= deadline_us)
            break;
        uint64_t wait_us = deadline_us - now;
        if (wait_us > 1000000)
            wait_us = 1000000;
        /* poll has ms granularity: sleep sub-ms remainders precisely. */
        struct pollfd p = {k->fd, POLLIN, 0};
        int pr = poll(&p, 1, wait_us >= 1000 ? (int)(wait_us / 1000) : 0);
        if (pr == 0) {
            if (wait_us < 1000)
                usleep((useconds_t)wait_us);
            continue;
        }
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        ssize_t n = read(k->fd, k->buf + k->have, sizeof k->buf - k->have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            k->eof = 1;
            break;
        }
        k->have += (size_t)n;
        size_t off = 0;
        while (k->have - off >= sizeof(kill_rec)) {
            kill_rec r;
            memcpy(&r, k->buf + off, sizeof r);
            kill_apply(k, &r);
            off += sizeof r;
        }
        memmove(k->buf, k->buf + off, k->have - off);
        k->have -= off;
    }
}

static int stop_ready(const kill_run *k) { return k->ready || k->child_error; }
static int stop_cstart(const kill_run *k) { return k->cstarted > 0 || k->child_error; }

/* Compacts the recovered database in the parent: a stale ".compact" left by
 * the kill must not stop the next compaction, nor may compaction lose data. */
static int kill_parent_compact(const char *path, cu_model *m, const char *ctx)
{
    store_dbfile_options o = {0};
    o.durability = STORE_DURABLE_ALWAYS;
    store_dbfile *db = NULL;
    int rc = store_dbfile_open(path, &o, &db);
    if (rc != DV_OK) {
        cu_violation(ctx, "open for compaction: %s", dv_strerror(rc));
        return 1;
    }
    int bad = 0;
    rc = store_dbfile_compact(db, NULL, NULL);
    if (rc != DV_OK) {
        cu_violation(ctx, "compaction of the recovered file: %s", dv_strerror(rc));
        bad = 1;
    }
    if (!bad)
        bad = cu_verify_db(db, m, 0, ctx);
    rc = store_dbfile_close(db);
    if (rc != DV_OK && !bad) {
        cu_violation(ctx, "close after compaction: %s", dv_strerror(rc));
        bad = 1;
    }
    return bad;
}

int cu_run_kill(const cu_kill_opts *o)
{
    int bad = 1;
    char *dir = tu_mkdtemp("crash-kill");
    char *path = tu_path(dir, "db.couch");
    char *cpath = tu_path(dir, "db.couch.compact");
    kill_run k;
    memset(&k, 0, sizeof k);
    tu_rng rng = {o->seed};
    long in_compaction = 0, during_open = 0, leftovers = 0, total_acks = 0;
    uint64_t t0 = now_us();
    int log_level = cu_quiet_logs(LOG_ERROR); /* torn tails are expected after kills */
    if (cu_model_init(&k.m, KILL_NDOCS, KILL_NLOCALS) != DV_OK)
        goto done;
    int rc = cu_create(path, NULL, &k.m);
    if (rc != DV_OK) {
        cu_violation("crash_kill", "create %s: %s", path, dv_strerror(rc));
        goto done;
    }
    for (long it = 0; it < o->iterations; it++) {
        char ctx[128];
        uint64_t cseed = tu_rand(&rng);
        unsigned how = (unsigned)tu_rand_below(&rng, 10); /* 0: during open, 1-3: aimed at compaction */
        int aim = o->compact && how >= 1 && how <= 3;
        snprintf(ctx, sizeof ctx, "crash_kill seed=%" PRIu64 " it=%ld durability=%d", o->seed, it, o->durability);
        int pfd[2];
        if (pipe(pfd) != 0) {
            perror("pipe");
            goto done;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            goto done;
        }
        if (pid == 0) {
            close(pfd[0]);
            child_main(path, pfd[1], o, cseed);
            _exit(4);
        }
        close(pfd[1]);
        k.fd = pfd[0];
        k.have = 0;
        k.eof = k.ready = k.cstarted = k.cended = k.child_error = 0;
        k.acks = 0;
        if (how == 0) {
            /* Kill while the child may still be opening (recovering). */
            kill_pump(&k, now_us() + tu_rand_below(&rng, 3000), stop_ready);
            during_open += !k.ready;
        } else {
            kill_pump(&k, now_us() + 20000000, stop_ready);
            if (!k.ready && !k.child_error) {
                cu_violation(ctx, "child never became ready");
                kill(pid, SIGKILL);
                goto done;
            }
            if (aim) {
                kill_pump(&k, now_us() + 3000000, stop_cstart);
                kill_pump(&k, now_us() + tu_rand_below(&rng, 6000), NULL);
            } else {
                kill_pump(&k, now_us() + 1000 + tu_rand_below(&rng, 150000), NULL);
            }
        }
        int compacting = k.cstarted > k.cended;
        kill(pid, SIGKILL);
        kill_pump(&k, UINT64_MAX, NULL); /* drain until EOF: every record written before death */
        close(k.fd);
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (k.child_error || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
            cu_violation(ctx, "child failed by itself (status 0x%x) before the kill", st);
            goto done;
        }
        in_compaction += compacting;
        total_acks += k.acks;
        struct stat sb;
        int leftover = stat(cpath, &sb) == 0;
        if (cu_verify(path, NULL, &k.m, ctx))
            goto done;
        leftovers += leftover;
        if (o->compact && (leftover || tu_rand_below(&rng, 8) == 0)) {
            if (kill_parent_compact(path, &k.m, ctx))
                goto done;
            if (stat(cpath, &sb) == 0) {
                cu_violation(ctx, "%s still exists after a completed compaction", cpath);
                goto done;
            }
        }
    }
    fprintf(stderr,
            "[crash_kill] %ld kills (durability %s, %d threads%s): %ld during open, %ld during compaction, "
            "%ld stale .compact files, %ld acknowledged writes verified, %.1f s\n",
            o->iterations, o->durability == STORE_DURABLE_NEVER      ? "never"
            : o->durability == STORE_DURABLE_PERIODIC ? "periodic"
                                                      : "always", o->threads,
            o->compact ? " + compaction" : "", during_open, in_compaction, leftovers, total_acks,
            (double)(now_us() - t0) / 1e6);
    bad = 0;
done:
    if (bad)
        fprintf(stderr, "[crash_kill] FAILED; reproduce with DIVAN_SEED=%" PRIu64 " (file kept in %s)\n", o->seed,
                dir);
    else
        tu_rmtree(dir);
    log_set_level((enum log_level)log_level);
    cu_model_free(&k.m);
    free(cpath);
    free(path);
    free(dir);
    return bad;
}
