/*
 * qserver.c — pool of divan-js processes and the framed protocol to them.
 * See qserver.h for the contract and src/js/qproto.h for the bytes.
 *
 * One process (qserver_proc) is a slot: a child pid and the parent's end
 * of a socketpair (non-blocking), a read buffer, a write buffer, and the
 * function-set definitions given to it.  A slot's child may be absent
 * (pid 0): it is spawned on the next call that needs it, and every
 * definition is compiled again in the new child before its first use.
 *
 * Invariants:
 *   - pid != 0 iff fd >= 0 iff a child is running for the slot; proc_kill
 *     is the only place that ends one, and it always reaps (no zombies);
 *   - a definition's `compiled` flag is true only for the current child;
 *   - bytes from the child are untrusted: frames are decoded with a length
 *     limit (qframe_decode), map rows are validated as JSON before the
 *     caller sees them, and any breach kills the child.
 *
 * Deadlines: divan-js writes map rows in 64 KiB chunks and keeps a shared
 * progress page (qproto.h) up to date: how many documents of the batch it
 * answered, when it started the current one.  A map batch's clock restarts
 * at every result frame and at every write that makes progress (the child
 * reads a whole batch before its first document); when it runs out, the
 * page says whether the current document has really had its time and which
 * one it is — rows of the documents before it that were still in the
 * child's buffer are mapped again by the next child.  Log frames never
 * restart a clock.  Other calls have one deadline for the call.
 */
#include "views/qserver.h"

#include "base/log.h"
#include "base/status.h"
#include "js/qproto.h"
#include "json/json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define QS_DEFAULT_TIMEOUT_MS 5000u
/* A child's first answer also waits for its start (exec, Duktape, its
 * helpers): under load, and slower under sanitizers, that alone can pass a
 * short per-call timeout, which would fail a definition no code of the
 * user's had run for.  Its first round trip gets at least this long. */
#define QS_SPAWN_GRACE_MS 5000u
#define QS_MAX_DEFS 64u               /* definitions remembered per process */
#define QS_BATCH_BYTES (4u << 20)     /* documents per MAP frame, in bytes */
#define QS_MAX_HANDLE 200u
#define QS_STOP_WAIT_MS 1000

typedef struct qs_def {
    char *handle;
    char *def;       /* the DEFINE payload, handle included */
    size_t def_len;
    char *errors;    /* compile errors JSON of the first compilation */
    size_t errors_len;
    int compiled;    /* in the current child */
    uint64_t used;   /* LRU tick */
} qs_def;

struct qserver_proc {
    qserver *qs;
    int fd;
    pid_t pid;
    int busy;
    qs_def defs[QS_MAX_DEFS];
    size_t ndefs;
    uint64_t tick;
    uint8_t *rbuf;
    size_t rlen, rpos, rcap;
    buf_t wbuf;
    qserver_log_fn log_fn;
    void *log_ctx;
    const char *cur_handle; /* for the default log line */
    int memfd;              /* the progress page (qproto.h), kept across children */
    qp_progress *prog;
    int reduce_limit;       /* the QS_RL_* its child was started with */
};

struct qserver {
    char *path;
    char *argv[10];      /* argv[rl_arg] is set per spawn from reduce_limit */
    size_t rl_arg;
    char mem_arg[24];
    unsigned timeout_ms; /* atomic: qserver_set_timeout may change it at any time (qs_timeout) */
    int reduce_limit;    /* atomic QS_RL_*: qserver_set_reduce_limit; children started under another are
                          * replaced before their next call (proc_ready) */
    size_t nprocs;
    qserver_proc *procs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_err(qserver_error *err, const char *error, const char *reason)
{
    if (!err)
        return;
    snprintf(err->error, sizeof err->error, "%s", error);
    snprintf(err->reason, sizeof err->reason, "%s", reason);
}

/* ---- frames ---------------------------------------------------------------- */

int qframe_decode(const uint8_t *buf, size_t len, size_t max_payload, qframe *f)
{
    if (len < QP_HDR)
        return QFRAME_MORE;
    uint32_t n = dv_load_u32le(buf);
    int type = buf[4];
    switch (type) {
    case QP_OK: case QP_ERROR: case QP_MAP_ROW: case QP_MAP_END: case QP_LOG:
        break;
    default:
        return DV_ERR_CORRUPT;
    }
    if (n > max_payload)
        return DV_ERR_CORRUPT;
    if (len - QP_HDR < n)
        return QFRAME_MORE;
    f->type = type;
    f->payload = buf + QP_HDR;
    f->len = n;
    f->consumed = QP_HDR + (size_t)n;
    return QFRAME_OK;
}

/* Copies s[0..n) into dst (cap bytes with NUL), cut at a UTF-8 boundary. */
static void copy_text(char *dst, size_t cap, const char *s, size_t n)
{
    if (n > cap - 1) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = 0;
    if (!json_utf8_valid(dst, n))
        snprintf(dst, cap, "(not UTF-8)");
}

/* A member as text: strings unquoted, anything else as its JSON. */
static void member_text(const json_val *v, char *dst, size_t cap)
{
    if (!v) {
        dst[0] = 0;
        return;
    }
    if (json_is_string(v)) {
        size_t n;
        const char *s = json_str(v, &n);
        copy_text(dst, cap, s, n);
        return;
    }
    buf_t b = BUF_INIT;
    if (json_serialize(v, &b) == DV_OK)
        copy_text(dst, cap, (const char *)b.data, b.len);
    else
        dst[0] = 0;
    buf_free(&b);
}

void qserver_parse_error(const uint8_t *payload, size_t len, qserver_error *err)
{
    json_doc doc = JSON_DOC_INIT;
    const json_val *root;
    if (json_doc_parse(&doc, payload, len, 0, NULL) != DV_OK || !(root = json_doc_root(&doc)) ||
        !json_is_object(root)) {
        set_err(err, "bad_reply", "the query server sent an unreadable error");
    } else {
        member_text(json_object_get_cstr(root, "error"), err->error, sizeof err->error);
        member_text(json_object_get_cstr(root, "reason"), err->reason, sizeof err->reason);
        if (!err->error[0])
            snprintf(err->error, sizeof err->error, "unknown_error");
    }
    json_doc_free(&doc);
}

/* One answer object; batch: {"error","reason"} is accepted too. */
static int verdict_of(const json_val *root, int batch, enum qserver_verdict *verdict, buf_t *message)
{
    const json_val *v;
    if (!json_is_object(root))
        return DV_ERR_CORRUPT;
    static const char *const names[] = {"ok", "forbidden", "unauthorized", "other"};
    for (int i = 0; i < 4; i++) {
        if (!(v = json_object_get_cstr(root, names[i])))
            continue;
        *verdict = (enum qserver_verdict)i;
        if (!i || !message)
            return DV_OK;
        buf_reset(message);
        return json_serialize(v, message);
    }
    const json_val *e = json_object_get_cstr(root, "error"), *r = json_object_get_cstr(root, "reason");
    if (!batch || !e || !r || !json_is_string(e) || !json_is_string(r))
        return DV_ERR_CORRUPT;
    *verdict = QSERVER_ERROR;
    if (!message)
        return DV_OK;
    buf_reset(message);
    return json_serialize(root, message);
}

int qserver_parse_verdict(const uint8_t *payload, size_t len, enum qserver_verdict *verdict, buf_t *message)
{
    json_doc doc = JSON_DOC_INIT;
    int rc = DV_ERR_CORRUPT;
    if (json_doc_parse(&doc, payload, len, 0, NULL) == DV_OK)
        rc = verdict_of(json_doc_root(&doc), 0, verdict, message);
    json_doc_free(&doc);
    return rc == DV_ERR_NOMEM ? rc : rc != DV_OK ? DV_ERR_CORRUPT : DV_OK;
}

int qserver_parse_verdicts(const uint8_t *payload, size_t len, size_t n, enum qserver_verdict *verdicts,
                           buf_t *messages)
{
    json_doc doc = JSON_DOC_INIT;
    const json_val *root, *x;
    int rc = DV_ERR_CORRUPT;
    if (json_doc_parse(&doc, payload, len, 0, NULL) != DV_OK || !(root = json_doc_root(&doc)) ||
        !json_is_array(root) || json_len(root) != n)
        goto done;
    json_iter it = json_iter_begin(root);
    rc = DV_OK;
    for (size_t i = 0; rc == DV_OK && json_iter_elem(&it, &x); i++)
        rc = verdict_of(x, 1, &verdicts[i], messages ? &messages[i] : NULL);
done:
    json_doc_free(&doc);
    return rc == DV_ERR_NOMEM ? rc : rc != DV_OK ? DV_ERR_CORRUPT : DV_OK;
}

/* ---- processes --------------------------------------------------------------- */

static void def_clear(qs_def *d)
{
    free(d->handle);
    free(d->def);
    free(d->errors);
    memset(d, 0, sizeof *d);
}

/* Ends the child, if any: SIGKILL to its group, reap, close. */
static void proc_kill(qserver_proc *p)
{
    if (p->pid > 0) {
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (p->fd >= 0)
        close(p->fd);
    p->pid = 0;
    p->fd = -1;
    p->rlen = p->rpos = 0;
    for (size_t i = 0; i < p->ndefs; i++)
        p->defs[i].compiled = 0;
}

/* Stops the child politely: EOF on its stdin, then SIGKILL after a wait. */
static void proc_stop(qserver_proc *p)
{
    if (p->pid <= 0)
        return;
    shutdown(p->fd, SHUT_WR);
    for (int waited = 0; waited < QS_STOP_WAIT_MS; waited += 5) {
        pid_t r = waitpid(p->pid, NULL, WNOHANG);
        if (r == p->pid || (r < 0 && errno == ECHILD)) {
            p->pid = 0; /* reaped: nothing left to kill */
            break;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    proc_kill(p);
}

/* The slot's progress page, created on its first spawn. */
static int proc_progress_page(qserver_proc *p, qserver_error *err)
{
    if (p->prog)
        return DV_OK;
    int fd = memfd_create("divan-js-progress", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)sizeof *p->prog) != 0) {
        set_err(err, "os_process_error", strerror(errno));
        if (fd >= 0)
            close(fd);
        return DV_ERR_IO;
    }
    void *pg = mmap(NULL, sizeof *p->prog, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (pg == MAP_FAILED) {
        set_err(err, "os_process_error", strerror(errno));
        close(fd);
        return DV_ERR_IO;
    }
    p->memfd = fd;
    p->prog = pg;
    return DV_OK;
}

static int proc_spawn(qserver_proc *p, qserver_error *err)
{
    qserver *qs = p->qs;
    int sv[2];
    if (proc_progress_page(p, err) != DV_OK)
        return DV_ERR_IO;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        set_err(err, "os_process_error", strerror(errno));
        return DV_ERR_IO;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0)
        goto fail_fds;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        goto fail_fds;
    }
    sigemptyset(&none);
    sigfillset(&all);
    /* stdin and stdout are the socket; stderr is shared with divan; every
     * other descriptor is closed (our own are CLOEXEC already, but another
     * thread's may not be).  Own process group, default signals, no mask
     * inherited from the calling thread. */
    if ((rc = posix_spawn_file_actions_adddup2(&fa, sv[1], 0)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&fa, sv[1], 1)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&fa, p->memfd, 3)) != 0 ||
        (rc = posix_spawn_file_actions_addclosefrom_np(&fa, 4)) != 0 ||
        (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                  POSIX_SPAWN_SETSIGDEF)) != 0 ||
        (rc = posix_spawnattr_setpgroup(&attr, 0)) != 0 || (rc = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
        (rc = posix_spawnattr_setsigdefault(&attr, &all)) != 0)
        goto fail_spawn;
    pid_t pid;
    char *argv[sizeof qs->argv / sizeof qs->argv[0]];
    memcpy(argv, qs->argv, sizeof argv);
    p->reduce_limit = __atomic_load_n(&qs->reduce_limit, __ATOMIC_RELAXED);
    argv[qs->rl_arg] = (char *)qserver_reduce_limit_name(p->reduce_limit);
    rc = posix_spawn(&pid, qs->path, &fa, &attr, argv, environ);
fail_spawn:
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
fail_fds:
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        set_err(err, "os_process_error", strerror(rc));
        log_error("query server: cannot start %s: %s", qs->path, strerror(rc));
        return DV_ERR_IO;
    }
    int fl = fcntl(sv[0], F_GETFL);
    if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) < 0) {
        p->pid = pid;
        p->fd = sv[0];
        proc_kill(p);
        set_err(err, "os_process_error", "fcntl failed");
        return DV_ERR_IO;
    }
    p->pid = pid;
    p->fd = sv[0];
    p->rlen = p->rpos = 0;
    return DV_OK;
}

/* Delivers a log frame to the callback or the server log. */
static void proc_log(qserver_proc *p, const qframe *f)
{
    const char *msg = (const char *)f->payload;
    if (!json_utf8_valid(msg, f->len))
        return; /* divan-js fixes its output: this is not one of its frames */
    if (p->log_fn)
        p->log_fn(p->log_ctx, p->cur_handle ? p->cur_handle : "", msg, f->len);
    else
        log_info("divan-js %s: %.*s", p->cur_handle ? p->cur_handle : "",
                 f->len > INT_MAX ? INT_MAX : (int)f->len, msg);
}

int qserver_reduce_limit_parse(const char *v)
{
    return v && !strcmp(v, "false") ? QS_RL_OFF : v && !strcmp(v, "log") ? QS_RL_LOG : QS_RL_ON;
}

const char *qserver_reduce_limit_name(int mode)
{
    return mode == QS_RL_OFF ? "false" : mode == QS_RL_LOG ? "log" : "true";
}

void qserver_set_reduce_limit(qserver *qs, int mode)
{
    __atomic_store_n(&qs->reduce_limit, mode, __ATOMIC_RELAXED);
}

/* The os_process_timeout in force (qserver_set_timeout). */
static unsigned qs_timeout(const qserver *qs) { return __atomic_load_n(&qs->timeout_ms, __ATOMIC_RELAXED); }

void qserver_set_timeout(qserver *qs, unsigned timeout_ms)
{
    __atomic_store_n(&qs->timeout_ms, timeout_ms ? timeout_ms : QS_DEFAULT_TIMEOUT_MS, __ATOMIC_RELAXED);
}

/* Waits for the next frame from the child, writing w[*woff..) meanwhile.
 * *deadline moves forward on write progress.  Returns DV_OK (f valid until
 * the next call), DV_ERR_TIMEOUT, DV_ERR_IO (EOF, error) or DV_ERR_CORRUPT
 * (a malformed frame).  The caller kills the child on any error. */
static int proc_frame(qserver_proc *p, const buf_t *w, size_t *woff, int64_t *deadline, qframe *f)
{
    for (;;) {
        /* Before the first read rbuf is NULL: no arithmetic on it. */
        const uint8_t *at = p->rbuf ? p->rbuf + p->rpos : (const uint8_t *)"";
        int rc = qframe_decode(at, p->rlen - p->rpos, QP_MAX_PAYLOAD, f);
        if (rc == QFRAME_OK) {
            p->rpos += f->consumed;
            return DV_OK;
        }
        if (rc < 0)
            return DV_ERR_CORRUPT;
        /* Room to read: compact, then grow to the frame's size. */
        if (p->rpos) {
            memmove(p->rbuf, p->rbuf + p->rpos, p->rlen - p->rpos);
            p->rlen -= p->rpos;
            p->rpos = 0;
        }
        size_t need = 64 * 1024;
        if (p->rlen >= QP_HDR)
            need = QP_HDR + dv_load_u32le(p->rbuf) - p->rlen + 64 * 1024;
        if (p->rcap - p->rlen < need) {
            size_t cap = p->rcap ? p->rcap : 128 * 1024;
            while (cap - p->rlen < need)
                cap *= 2;
            uint8_t *nb = realloc(p->rbuf, cap);
            if (!nb)
                return DV_ERR_NOMEM;
            p->rbuf = nb;
            p->rcap = cap;
        }
        int64_t left = *deadline - now_ms();
        if (left <= 0)
            return DV_ERR_TIMEOUT;
        int want_write = w && *woff < w->len;
        struct pollfd pfd = {p->fd, (short)(POLLIN | (want_write ? POLLOUT : 0)), 0};
        int pr = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return DV_ERR_IO;
        }
        if (pr == 0)
            return DV_ERR_TIMEOUT;
        if (want_write && (pfd.revents & POLLOUT)) {
            ssize_t s = send(p->fd, w->data + *woff, w->len - *woff, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (s > 0) {
                *woff += (size_t)s;
                *deadline = now_ms() + qs_timeout(p->qs);
            } else if (s < 0 && errno != EAGAIN && errno != EINTR) {
                return DV_ERR_IO;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(p->fd, p->rbuf + p->rlen, p->rcap - p->rlen);
            if (r == 0)
                return DV_ERR_IO;
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    continue;
                return DV_ERR_IO;
            }
            p->rlen += (size_t)r;
        }
    }
}

static const char *failure_text(int rc)
{
    return rc == DV_ERR_TIMEOUT ? "timeout" : rc == DV_ERR_CORRUPT ? "bad reply" : "process exited";
}

/* Starts a frame of `type` in p->wbuf (replacing it). */
static int wbuf_begin(qserver_proc *p, int type)
{
    buf_reset(&p->wbuf);
    int rc = buf_put_u32le(&p->wbuf, 0);
    if (rc == DV_OK)
        rc = buf_append_byte(&p->wbuf, (uint8_t)type);
    return rc;
}

static int wbuf_end(qserver_proc *p)
{
    size_t n = p->wbuf.len - QP_HDR;
    if (n > QP_MAX_PAYLOAD)
        return DV_ERR_TOO_LARGE;
    dv_store_u32le(p->wbuf.data, (uint32_t)n);
    return DV_OK;
}

/* Sends the request in p->wbuf and waits for its QP_OK (DV_OK, *f is it)
 * or QP_ERROR (DV_ERR_INVALID, err filled).  Log frames are delivered on
 * the way.  On a process failure the child is killed: DV_ERR_TIMEOUT or
 * DV_ERR_IO. */
static int proc_roundtrip(qserver_proc *p, unsigned timeout_ms, qframe *f, qserver_error *err)
{
    size_t woff = 0;
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int rc = proc_frame(p, &p->wbuf, &woff, &deadline, f);
        if (rc != DV_OK) {
            log_error("divan-js %s (pid %d): %s; killed", p->cur_handle ? p->cur_handle : "", (int)p->pid,
                      failure_text(rc));
            set_err(err, rc == DV_ERR_TIMEOUT ? "timeout" : "os_process_error", failure_text(rc));
            proc_kill(p);
            return rc == DV_ERR_TIMEOUT ? DV_ERR_TIMEOUT : rc == DV_ERR_NOMEM ? DV_ERR_NOMEM : DV_ERR_IO;
        }
        switch (f->type) {
        case QP_LOG:
            proc_log(p, f);
            continue;
        case QP_OK:
            return woff == p->wbuf.len ? DV_OK : DV_ERR_IO;
        case QP_ERROR:
            if (err)
                qserver_parse_error(f->payload, f->len, err);
            return woff == p->wbuf.len ? DV_ERR_INVALID : DV_ERR_IO;
        default:
            set_err(err, "os_process_error", "unexpected frame");
            proc_kill(p);
            return DV_ERR_IO;
        }
    }
}

/* Makes sure a child runs and has compiled d. */
static int proc_ready(qserver_proc *p, qs_def *d, qserver_error *err)
{
    int rc;
    /* A child started under another reduce_limit (a configuration change)
     * is replaced: the setting is one of its arguments. */
    if (p->pid > 0 && p->reduce_limit != __atomic_load_n(&p->qs->reduce_limit, __ATOMIC_RELAXED))
        proc_kill(p);
    /* A child that died while idle is replaced before it can take a
     * document down with it (waitpid WNOHANG: one cheap syscall). */
    if (p->pid > 0) {
        pid_t r = waitpid(p->pid, NULL, WNOHANG);
        if (r == p->pid || (r < 0 && errno == ECHILD)) {
            p->pid = 0;
            proc_kill(p);
        }
    }
    unsigned timeout_ms = qs_timeout(p->qs);
    if (p->pid == 0) {
        if ((rc = proc_spawn(p, err)) != DV_OK)
            return rc;
        if (timeout_ms < QS_SPAWN_GRACE_MS)
            timeout_ms = QS_SPAWN_GRACE_MS;
    }
    d->used = ++p->tick;
    if (d->compiled)
        return DV_OK;
    p->cur_handle = d->handle;
    if ((rc = wbuf_begin(p, QP_DEFINE)) != DV_OK || (rc = buf_append(&p->wbuf, d->def, d->def_len)) != DV_OK ||
        (rc = wbuf_end(p)) != DV_OK)
        return rc;
    qframe f;
    if ((rc = proc_roundtrip(p, timeout_ms, &f, err)) != DV_OK)
        return rc;
    /* {"errors":[...]}: keep the array of the first compilation. */
    if (!d->errors) {
        json_doc doc = JSON_DOC_INIT;
        const json_val *root, *e;
        buf_t b = BUF_INIT;
        if (json_doc_parse(&doc, f.payload, f.len, 0, NULL) != DV_OK || !(root = json_doc_root(&doc)) ||
            !(e = json_object_get_cstr(root, "errors")) || !json_is_array(e) || json_serialize(e, &b) != DV_OK) {
            json_doc_free(&doc);
            buf_free(&b);
            set_err(err, "os_process_error", "bad DEFINE answer");
            proc_kill(p);
            return DV_ERR_IO;
        }
        json_doc_free(&doc);
        d->errors = (char *)buf_steal(&b, &d->errors_len);
    }
    d->compiled = 1;
    return DV_OK;
}

static qs_def *def_find(qserver_proc *p, const char *handle)
{
    for (size_t i = 0; i < p->ndefs; i++)
        if (strcmp(p->defs[i].handle, handle) == 0)
            return &p->defs[i];
    return NULL;
}

/* ---- pool -------------------------------------------------------------------- */

static char *default_path(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return NULL;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    *slash = 0;
    size_t len = strlen(self) + sizeof "/divan-js";
    char *path = malloc(len);
    if (path)
        snprintf(path, len, "%s/divan-js", self);
    return path;
}

int qserver_open(const qserver_config *cfg, qserver **out)
{
    qserver *qs = calloc(1, sizeof *qs);
    if (!qs)
        return DV_ERR_NOMEM;
    qs->path = cfg->path ? strdup(cfg->path) : default_path();
    if (!qs->path)
        goto nomem;
    if (access(qs->path, X_OK) != 0) {
        log_error("query server: %s is not executable: %s", qs->path, strerror(errno));
        free(qs->path);
        free(qs);
        return DV_ERR_NOTFOUND;
    }
    qs->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : QS_DEFAULT_TIMEOUT_MS;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    qs->nprocs = cfg->pool_size ? cfg->pool_size : cpus > 0 ? (size_t)cpus : 1;
    size_t a = 0;
    qs->argv[a++] = qs->path;
    qs->argv[a++] = "--progress-fd";
    qs->argv[a++] = "3";
    if (cfg->memory_limit) {
        snprintf(qs->mem_arg, sizeof qs->mem_arg, "%llu", (unsigned long long)cfg->memory_limit);
        qs->argv[a++] = "--memory-limit";
        qs->argv[a++] = qs->mem_arg;
    }
    qs->reduce_limit = qserver_reduce_limit_parse(cfg->reduce_limit);
    qs->argv[a++] = "--reduce-limit";
    qs->rl_arg = a;
    qs->argv[a++] = (char *)qserver_reduce_limit_name(qs->reduce_limit);
    if (cfg->no_seccomp)
        qs->argv[a++] = "--no-seccomp";
    qs->argv[a] = NULL;
    qs->procs = calloc(qs->nprocs, sizeof *qs->procs);
    if (!qs->procs)
        goto nomem;
    for (size_t i = 0; i < qs->nprocs; i++) {
        qs->procs[i].qs = qs;
        qs->procs[i].fd = -1;
        qs->procs[i].memfd = -1;
    }
    if (pthread_mutex_init(&qs->mu, NULL) != 0)
        goto nomem;
    if (pthread_cond_init(&qs->cv, NULL) != 0) {
        pthread_mutex_destroy(&qs->mu);
        goto nomem;
    }
    *out = qs;
    return DV_OK;
nomem:
    free(qs->procs);
    free(qs->path);
    free(qs);
    return DV_ERR_NOMEM;
}

void qserver_close(qserver *qs)
{
    if (!qs)
        return;
    for (size_t i = 0; i < qs->nprocs; i++) {
        qserver_proc *p = &qs->procs[i];
        proc_stop(p);
        for (size_t j = 0; j < p->ndefs; j++)
            def_clear(&p->defs[j]);
        free(p->rbuf);
        buf_free(&p->wbuf);
        if (p->prog)
            munmap(p->prog, sizeof *p->prog);
        if (p->memfd >= 0)
            close(p->memfd);
    }
    pthread_cond_destroy(&qs->cv);
    pthread_mutex_destroy(&qs->mu);
    free(qs->procs);
    free(qs->path);
    free(qs);
}

int qserver_acquire(qserver *qs, const char *handle, qserver_proc **out)
{
    pthread_mutex_lock(&qs->mu);
    for (;;) {
        qserver_proc *any = NULL;
        for (size_t i = 0; i < qs->nprocs; i++) {
            qserver_proc *p = &qs->procs[i];
            if (p->busy)
                continue;
            if (handle) {
                qs_def *d = def_find(p, handle);
                if (d && d->compiled) {
                    any = p;
                    break;
                }
            }
            /* Else prefer a running child over spawning one. */
            if (!any || (any->pid == 0 && p->pid != 0))
                any = p;
        }
        if (any) {
            any->busy = 1;
            pthread_mutex_unlock(&qs->mu);
            *out = any;
            return DV_OK;
        }
        pthread_cond_wait(&qs->cv, &qs->mu);
    }
}

void qserver_release(qserver *qs, qserver_proc *p)
{
    p->log_fn = NULL;
    p->log_ctx = NULL;
    p->cur_handle = NULL;
    pthread_mutex_lock(&qs->mu);
    p->busy = 0;
    pthread_cond_signal(&qs->cv);
    pthread_mutex_unlock(&qs->mu);
}

void qserver_set_log(qserver_proc *p, qserver_log_fn fn, void *ctx)
{
    p->log_fn = fn;
    p->log_ctx = ctx;
}

int qserver_proc_pid(const qserver_proc *p) { return (int)p->pid; }

/* ---- calls ------------------------------------------------------------------- */

int qserver_define(qserver_proc *p, const char *handle, const char *def, size_t def_len, buf_t *errors,
                   qserver_error *err)
{
    size_t hl = strlen(handle);
    if (hl == 0 || hl > QS_MAX_HANDLE || !json_utf8_valid(handle, hl)) {
        set_err(err, "bad_request", "invalid handle");
        return DV_ERR_INVALID;
    }
    /* def must be an object: its members are spliced after the handle. */
    json_error je;
    size_t b = 0;
    while (b < def_len && (def[b] == ' ' || def[b] == '\n' || def[b] == '\r' || def[b] == '\t'))
        b++;
    if (b == def_len || def[b] != '{' || json_validate(def, def_len, JSON_DEPTH_STORED, &je) != DV_OK) {
        set_err(err, "bad_request", "definition is not a JSON object");
        return DV_ERR_INVALID;
    }
    buf_t payload = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &payload);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "handle");
    json_write_string(&w, handle, hl);
    json_write_members_raw(&w, def + b, def_len - b);
    json_write_end_object(&w);
    if (w.err) {
        buf_free(&payload);
        return w.err;
    }

    qs_def *d = def_find(p, handle);
    if (d && d->def_len == payload.len && memcmp(d->def, payload.data, payload.len) == 0) {
        buf_free(&payload);
    } else {
        if (!d) {
            if (p->ndefs == QS_MAX_DEFS) {
                /* Forget the least recently used; the child keeps its
                 * compiled copy until the next restart (bounded by the
                 * handles the server ever defines on it). */
                size_t lru = 0;
                for (size_t i = 1; i < p->ndefs; i++)
                    if (p->defs[i].used < p->defs[lru].used)
                        lru = i;
                def_clear(&p->defs[lru]);
                p->defs[lru] = p->defs[--p->ndefs];
            }
            d = &p->defs[p->ndefs];
            memset(d, 0, sizeof *d);
            if (!(d->handle = strdup(handle))) {
                buf_free(&payload);
                return DV_ERR_NOMEM;
            }
            p->ndefs++;
        }
        free(d->def);
        free(d->errors);
        d->errors = NULL;
        d->def = (char *)buf_steal(&payload, &d->def_len);
        d->compiled = 0;
    }
    int rc = proc_ready(p, d, err);
    if (rc == DV_OK && errors) {
        buf_reset(errors);
        rc = buf_append(errors, d->errors, d->errors_len);
    }
    return rc;
}

/* proc_ready for a handle that must have been defined on p. */
static int ready_handle(qserver_proc *p, const char *handle, qs_def **dout, qserver_error *err)
{
    qs_def *d = def_find(p, handle);
    if (!d) {
        set_err(err, "not_found", "function set not defined on this process");
        return DV_ERR_NOTFOUND;
    }
    p->cur_handle = d->handle;
    *dout = d;
    return proc_ready(p, d, err);
}

/* The document of the batch [i, j) the child was on when it failed, from
 * the progress page; j when it had answered them all.  On a timeout,
 * *still_ms > 0 when that document has not used its time yet (the clock
 * started when it did, not when the batch did). */
static size_t batch_culprit(const qserver_proc *p, size_t i, size_t j, int64_t *still_ms)
{
    unsigned long long done = __atomic_load_n(&p->prog->done, __ATOMIC_ACQUIRE);
    long long started = __atomic_load_n(&p->prog->started_ns, __ATOMIC_ACQUIRE);
    size_t cur = done < j - i ? i + (size_t)done : j;
    if (still_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        long long left = started + (long long)qs_timeout(p->qs) * 1000000LL - now;
        *still_ms = cur < j && left > 0 ? left / 1000000 + 1 : 0;
    }
    return cur;
}

int qserver_map(qserver_proc *p, const char *handle, const char *const *docs, const size_t *lens, size_t n,
                qserver_map_fn cb, void *cb_ctx, qserver_error *err)
{
    qs_def *d;
    size_t i = 0, skip = SIZE_MAX; /* skip: a document known to fail, reported in order */
    size_t retried = SIZE_MAX;     /* the document a dead child was given again */
    const char *skip_why = NULL;
    int rc;
    while (i < n) {
        if (i == skip) {
            if ((rc = cb(cb_ctx, i, NULL, 0, skip_why)) != 0)
                return rc;
            i++;
            skip = SIZE_MAX;
            continue;
        }
        if ((rc = ready_handle(p, handle, &d, err)) != DV_OK)
            return rc;
        /* MAP payload: u32 handle length, handle, (u32 length, doc)... */
        size_t hl = strlen(handle), j = i, end = skip < n ? skip : n;
        if ((rc = wbuf_begin(p, QP_MAP)) != DV_OK || (rc = buf_put_u32le(&p->wbuf, (uint32_t)hl)) != DV_OK ||
            (rc = buf_append(&p->wbuf, handle, hl)) != DV_OK)
            return rc;
        while (j < end && (j == i || p->wbuf.len + 4 + lens[j] <= QS_BATCH_BYTES)) {
            if (lens[j] > QP_MAX_PAYLOAD - 64) /* can never fit a frame */
                break;
            if ((rc = buf_put_u32le(&p->wbuf, (uint32_t)lens[j])) != DV_OK ||
                (rc = buf_append(&p->wbuf, docs[j], lens[j])) != DV_OK)
                return rc;
            j++;
        }
        if (j == i) { /* a document over the frame limit: fail it alone */
            skip = i;
            skip_why = "document too large";
            continue;
        }
        if ((rc = wbuf_end(p)) != DV_OK)
            return rc;
        __atomic_store_n(&p->prog->done, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&p->prog->started_ns, 0, __ATOMIC_RELEASE); /* not started: no extension */
        size_t woff = 0, k = i, culprit;
        int64_t deadline = now_ms() + qs_timeout(p->qs);
        qframe f;
        for (;;) {
            const char *failure = NULL;
            rc = proc_frame(p, &p->wbuf, &woff, &deadline, &f);
            if (rc == DV_ERR_NOMEM)
                return rc;
            if (rc == DV_ERR_TIMEOUT) {
                int64_t still;
                culprit = batch_culprit(p, i, j, &still);
                if (still > 0) { /* that document started late: its own clock */
                    deadline = now_ms() + still;
                    continue;
                }
                failure = "timeout";
            } else if (rc != DV_OK) {
                culprit = batch_culprit(p, i, j, NULL);
                failure = failure_text(rc);
            } else if (f.type == QP_LOG) {
                proc_log(p, &f);
                continue;
            } else if (f.type == QP_MAP_ROW && k < j) {
                if (f.len == 0 || f.payload[0] != '[' || json_validate(f.payload, f.len, 0, NULL) != DV_OK) {
                    culprit = k;
                    failure = "bad reply";
                } else {
                    int crc = cb(cb_ctx, k, (const char *)f.payload, f.len, NULL);
                    k++;
                    deadline = now_ms() + qs_timeout(p->qs);
                    if (crc != 0) {
                        proc_kill(p); /* rows still coming: start afresh next time */
                        return crc;
                    }
                    continue;
                }
            } else if (f.type == QP_MAP_END && k == j && woff == p->wbuf.len) {
                break;
            } else if (f.type == QP_ERROR && k == i) {
                /* The batch was refused as a whole. */
                qserver_error e;
                qserver_parse_error(f.payload, f.len, &e);
                if (strcmp(e.error, "unknown_handle") != 0) {
                    if (err)
                        *err = e;
                    return DV_ERR_INVALID;
                }
                culprit = k; /* we defined it: the child is confused */
                failure = "bad reply";
            } else {
                culprit = k;
                failure = "bad reply";
            }
            /* Rows of documents before the culprit may have been lost in
             * the child's buffer: they are mapped again by the next child.
             * A failure that names no document (all answered, the end
             * frame missing) is pinned on the first unanswered one, so the
             * loop always moves on. */
            if (culprit < k || culprit >= j)
                culprit = k < j ? k : j;
            /* A child that died (not a timeout, not a bad reply) may have
             * been killed from outside (OOM killer, an operator) while the
             * document was innocent: it gets one more child before it is
             * skipped, so a stray kill loses no rows.  A document that
             * kills every child costs two. */
            if (rc != DV_OK && rc != DV_ERR_TIMEOUT && rc != DV_ERR_CORRUPT && culprit < j && culprit != retried) {
                log_error("divan-js %s (pid %d): %s on document %zu of the batch; killed, the document is tried again",
                          handle, (int)p->pid, failure, culprit - i);
                proc_kill(p);
                retried = culprit;
                break;
            }
            log_error("divan-js %s (pid %d): %s on document %zu of the batch; killed, document skipped", handle,
                      (int)p->pid, failure, culprit - i);
            proc_kill(p);
            if (culprit < j) {
                skip = culprit;
                skip_why = failure;
            }
            break;
        }
        i = k;
    }
    return DV_OK;
}

/* JSON requests: call_begin readies the handle and opens
 * {"handle":H in p->wbuf; the caller writes its members with w; call_end
 * closes the object, sends, waits for the answer (*f) and checks it is
 * JSON (starting with `first` when not 0). */
static int call_begin(qserver_proc *p, int type, const char *handle, json_writer *w, qserver_error *err)
{
    qs_def *d;
    int rc = ready_handle(p, handle, &d, err);
    if (rc != DV_OK || (rc = wbuf_begin(p, type)) != DV_OK)
        return rc;
    json_writer_init(w, &p->wbuf);
    json_write_begin_object(w);
    json_write_key_cstr(w, "handle");
    return json_write_cstr(w, handle);
}

static int call_end(qserver_proc *p, json_writer *w, char first, qframe *f, qserver_error *err)
{
    int rc;
    if (json_write_end_object(w) != DV_OK)
        return w->err;
    if ((rc = wbuf_end(p)) != DV_OK || (rc = proc_roundtrip(p, qs_timeout(p->qs), f, err)) != DV_OK)
        return rc;
    if ((first && (f->len == 0 || f->payload[0] != (uint8_t)first)) ||
        json_validate(f->payload, f->len, 0, NULL) != DV_OK) {
        set_err(err, "os_process_error", "bad reply");
        proc_kill(p);
        return DV_ERR_IO;
    }
    return DV_OK;
}

static int reduce_call(qserver_proc *p, int type, const char *handle, const unsigned *views, size_t nviews,
                       const char *key, const char *raw, size_t raw_len, buf_t *result, qserver_error *err)
{
    json_writer w;
    qframe f;
    int rc = call_begin(p, type, handle, &w, err);
    if (rc != DV_OK)
        return rc;
    json_write_key_cstr(&w, "views");
    json_write_begin_array(&w);
    for (size_t i = 0; i < nviews; i++)
        json_write_u64(&w, views[i]);
    json_write_end_array(&w);
    json_write_key_cstr(&w, key);
    json_write_raw(&w, raw, raw_len);
    if ((rc = call_end(p, &w, '[', &f, err)) != DV_OK)
        return rc;
    buf_reset(result);
    return buf_append(result, f.payload, f.len);
}

int qserver_reduce(qserver_proc *p, const char *handle, const unsigned *views, size_t nviews, const char *kvs,
                   size_t kvs_len, buf_t *result, qserver_error *err)
{
    return reduce_call(p, QP_REDUCE, handle, views, nviews, "kvs", kvs, kvs_len, result, err);
}

int qserver_rereduce(qserver_proc *p, const char *handle, const unsigned *views, size_t nviews,
                     const char *values, size_t values_len, buf_t *result, qserver_error *err)
{
    return reduce_call(p, QP_REREDUCE, handle, views, nviews, "values", values, values_len, result, err);
}

int qserver_filter(qserver_proc *p, const char *handle, const char *name, const char *docs, size_t docs_len,
                   const char *req, size_t req_len, buf_t *result, qserver_error *err)
{
    json_writer w;
    qframe f;
    int rc = call_begin(p, QP_FILTER, handle, &w, err);
    if (rc != DV_OK)
        return rc;
    json_write_key_cstr(&w, "filter");
    json_write_cstr(&w, name);
    json_write_key_cstr(&w, "docs");
    json_write_raw(&w, docs, docs_len);
    json_write_key_cstr(&w, "req");
    json_write_raw(&w, req, req_len);
    if ((rc = call_end(p, &w, '[', &f, err)) != DV_OK)
        return rc;
    buf_reset(result);
    return buf_append(result, f.payload, f.len);
}

int qserver_validate(qserver_proc *p, const char *handle, const char *args, size_t args_len,
                     enum qserver_verdict *verdict, buf_t *message, qserver_error *err)
{
    json_writer w;
    qframe f;
    int rc = call_begin(p, QP_VALIDATE, handle, &w, err);
    if (rc != DV_OK)
        return rc;
    json_write_key_cstr(&w, "args");
    json_write_raw(&w, args, args_len);
    if ((rc = call_end(p, &w, '{', &f, err)) != DV_OK)
        return rc;
    if (qserver_parse_verdict(f.payload, f.len, verdict, message) != DV_OK) {
        set_err(err, "os_process_error", "bad reply");
        proc_kill(p);
        return DV_ERR_IO;
    }
    return DV_OK;
}

int qserver_validate_batch(qserver_proc *p, const char *handle, const char *batch, size_t batch_len, size_t n,
                           enum qserver_verdict *verdicts, buf_t *messages, qserver_error *err)
{
    json_writer w;
    qframe f;
    int rc = call_begin(p, QP_VALIDATE, handle, &w, err);
    if (rc != DV_OK)
        return rc;
    json_write_key_cstr(&w, "batch");
    json_write_raw(&w, batch, batch_len);
    if ((rc = call_end(p, &w, '[', &f, err)) != DV_OK)
        return rc;
    if ((rc = qserver_parse_verdicts(f.payload, f.len, n, verdicts, messages)) != DV_OK) {
        if (rc == DV_ERR_NOMEM)
            return rc;
        set_err(err, "os_process_error", "bad reply");
        proc_kill(p);
        return DV_ERR_IO;
    }
    return DV_OK;
}
