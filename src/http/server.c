/*
 * server.c — h2o glue: listening socket, event-loop threads, dispatch,
 * CouchDB-style responses, graceful stop (see server.h).
 *
 * Per loop, two counters drive shutdown, both touched only by the loop's
 * own thread: `inflight` counts http_req_t objects not yet released (one per
 * request, released when h2o disposes the request's pool, i.e. after the
 * response has been written or the connection dropped) and `nconns` counts
 * accepted sockets not yet closed.  Stop = close listener, disable
 * keep-alive, wait for inflight == 0, then expire idle connections (the
 * http1 request timeout is set to zero) and wait for nconns == 0.  Only then
 * is the h2o context disposed, so no connection outlives its context.
 *
 * Abuse bounds (docs/security.md): all loops share one count of open
 * client connections; a connection accepted beyond max_connections is
 * closed at once, before h2o reads a byte of it.  h2o's http1 request
 * timeout (request_timeout_ms) is a deadline from the moment a connection
 * starts waiting for a request (after accept, or after the previous
 * response) until that request's headers and body have all arrived, so it
 * drops slowloris senders and idle keep-alive connections alike.
 */
#include "http/server.h"
#include "base/log.h"
#include "base/status.h"
#include "base/workers.h"
#include "config.h"
#include "db/att_codec.h"
#include "http/cors.h"
#include "http/limits.h"
#include "http/auth.h"
#include "http/authz.h"
#include "http/handlers.h"
#include "http/json_out.h"
#include "http/stats.h"
#include "http/uuids.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

/* A timeout list per distinct duration: h2o 2.2 timeouts have one fixed
 * duration each, and disposing one from inside its own callback is unsafe,
 * so a loop keeps the few durations its streams use for its whole life. */
typedef struct loop_timeout {
    uint64_t ms;
    h2o_timeout_t t;
} loop_timeout;

struct http_loop {
    http_server_t *server;
    pthread_t tid;
    int started;
    int init_done, init_rc; /* under server->mu: the thread's set-up result */
    int has_ctx;           /* the h2o context exists (disposal needed) */
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    h2o_accept_ctx_t tls_accept_ctx; /* ssl_ctx set: h2o handshakes first */
    h2o_socket_t *tls_listener;      /* NULL without TLS */
    h2o_multithread_receiver_t wake;
    size_t inflight;
    size_t nconns;
    int stopping;
    int idle_expired;
    long long deadline_ms;
    uint64_t rng; /* request ids; not security sensitive */
    size_t npending;       /* asyncs created here and not yet delivered */
    atomic_size_t nwatch;  /* streams watching a database (read by the commit hook) */
    h2o_linklist_t streams; /* every live stream of this loop */
    loop_timeout **timeouts;
    size_t ntimeouts;
    h2o_linklist_t chans;   /* open channels (for cancel at stop) */
    int cancelled;          /* the channels were told to give up */
};

enum { MSG_ASYNC = 1, MSG_COMMIT = 2, MSG_CHAN = 3 };
struct loop_msg {
    h2o_multithread_message_t super;
    int kind;
};

struct http_async {
    struct loop_msg m;
    struct http_loop *loop;
    http_req_t *req; /* NULL once the request is gone */
    http_async_fn fn;
    void *arg;
};

struct commit_msg {
    struct loop_msg m;
    char db[];
};

struct http_chan {
    struct loop_msg m;     /* re-sent on every poke that finds it idle */
    struct http_loop *loop;
    http_req_t *req;       /* NULL once the request is gone (loop thread) */
    http_chan_fn fn;
    http_chan_fn cancel;   /* loop thread: the server stops, give up */
    void *arg;
    pthread_mutex_t mu;
    int queued;            /* under mu: the message is on its way */
    int closed;            /* under mu: the other side is done */
    h2o_linklist_t link;   /* loop->chans */
};

struct http_stream {
    h2o_generator_t gen;
    http_req_t *r;
    struct http_loop *loop;
    http_stream_fill_fn fill;
    http_stream_dispose_fn dispose;
    void *ctx;
    buf_t out;
    int sending;    /* a part is with h2o; proceed will follow */
    int waiting;    /* fill said WAIT: call again only when woken */
    int woken;      /* a wake arrived while sending */
    int done;       /* the final part (or an error) was sent */
    int in_pump;
    h2o_timeout_entry_t timer;
    char *watch_db;
    h2o_linklist_t link; /* loop->streams */
};

struct dispatch_handler {
    h2o_handler_t super;
    http_server_t *server;
};

struct http_server {
    h2o_globalconf_t config;
    int listen_fd;
    int port;
    int tls_fd; /* -1 without TLS */
    int tls_port;
    struct http_loop *loops;
    size_t nloops;
    atomic_int stop_requested;
    http_server_opts_t opts;
    char **strings; /* copies owned by the server */
    size_t nstrings;
    http_uuids_t uuids;
    char server_header[64];
    pthread_mutex_t mu;  /* guards the two hand-offs below */
    pthread_cond_t cv;
    int wakes_sent;      /* stop has woken every loop: receivers may go */
    workers_t *workers;  /* blocking work (wstream.h) */
    atomic_llong nclients; /* client connections open, all loops */
    atomic_int refusing;   /* at max_connections (logged once per episode) */
    /* CORS settings in force: opts.cors at start (the caller's), then each
     * set by http_server_set_cors.  Replaced ones are retired, not freed:
     * a request on another loop may still read them, and a server sees a
     * handful of config changes, so keeping them until stop costs little. */
    _Atomic(const void *) cors;
    /* [attachments] settings in force (an http_att_conf_t), replaced and
     * retired the same way. */
    _Atomic(const void *) att;
    _Atomic(const void *) vendor; /* [vendor] (an http_vendor_t), the same way */
    struct kept *kept; /* every set published after start (under mu), freed at stop */
    size_t nkept;
};

/* A replaced (or current) settings set, freed when the server stops. */
struct kept {
    void *p;
    void (*free_fn)(void *);
};

/* Adds p to the sets freed at stop; mu held.  DV_ERR_NOMEM: not added. */
static int keep_until_stop(http_server_t *s, void *p, void (*free_fn)(void *))
{
    struct kept *k = realloc(s->kept, (s->nkept + 1) * sizeof *k);
    if (!k)
        return DV_ERR_NOMEM;
    s->kept = k;
    k[s->nkept++] = (struct kept){p, free_fn};
    return DV_OK;
}

/* Puts p in force in *slot for the requests that follow (they load it with
 * acquire) and keeps it until stop; out of memory: p is freed and the old
 * set stays. */
static int publish(http_server_t *s, _Atomic(const void *) *slot, void *p, void (*free_fn)(void *))
{
    pthread_mutex_lock(&s->mu);
    int rc = keep_until_stop(s, p, free_fn);
    if (rc == DV_OK)
        atomic_store_explicit(slot, p, memory_order_release);
    pthread_mutex_unlock(&s->mu);
    if (rc != DV_OK)
        free_fn(p);
    return rc;
}

static void free_cors(void *p) { http_cors_free(p); }

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- responses --------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Object Not Found"; /* mochiweb's phrase, as CouchDB sends it */
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 415: return "Unsupported Media Type";
    case 416: return "Requested Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 300 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

void http_add_header(http_req_t *r, const char *name, const char *value)
{
    h2o_req_t *req = r->h2o;
    size_t nl = strlen(name), vl = strlen(value);
    h2o_iovec_t orig = h2o_strdup(&req->pool, name, nl);
    h2o_iovec_t lower = h2o_strdup(&req->pool, name, nl);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, vl);
    /* Values can come from stored data (an attachment's content_type is
     * any JSON string): a CR or LF would end the header and let a document
     * write headers, or a whole response, of its own.  h2o copies values
     * as they are, so they are flattened here. */
    for (size_t i = 0; i < v.len; i++)
        if (v.base[i] == '\r' || v.base[i] == '\n')
            v.base[i] = ' ';
    h2o_strtolower(lower.base, lower.len); /* h2o finds tokens by their lower-case name */
    h2o_add_header_by_str(&req->pool, &req->res.headers, lower.base, lower.len, 1, orig.base, v.base, v.len);
}

const char *http_req_header(http_req_t *r, const char *name)
{
    h2o_req_t *req = r->h2o;
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    h2o_iovec_t v = req->headers.entries[i].value;
    return h2o_strdup(&req->pool, v.base, v.len).base;
}

static void add_token_header(h2o_req_t *req, const h2o_token_t *token, const char *orig, const char *value)
{
    h2o_add_header(&req->pool, &req->res.headers, token, orig, value, strlen(value));
}

/* Content-Type (JSON unless set or no body), Cache-Control, request id,
 * body time, and CORS headers for an accepted Origin (http/cors.h). */
static void add_standard_headers(http_req_t *r, int body)
{
    h2o_req_t *req = r->h2o;
    struct http_loop *l = r->loop;
    if (body && h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1) < 0)
        add_token_header(req, H2O_TOKEN_CONTENT_TYPE, "Content-Type", "application/json");
    if (h2o_find_header(&req->res.headers, H2O_TOKEN_CACHE_CONTROL, -1) < 0)
        add_token_header(req, H2O_TOKEN_CACHE_CONTROL, "Cache-Control", "must-revalidate");
    /* chttpd's reqid(): ten hex digits per request. */
    char id[11];
    l->rng += 0x9e3779b97f4a7c15ULL;
    uint64_t z = l->rng;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    snprintf(id, sizeof id, "%010llx", (unsigned long long)((z ^ (z >> 31)) & 0xffffffffffULL));
    http_add_header(r, "X-Couch-Request-ID", id);
    http_add_header(r, "X-CouchDB-Body-Time", "0");
    if (body)
        http_cors_add_response_headers(r);
}

void http_send_json(http_req_t *r, int status, const buf_t *body)
{
    h2o_req_t *req = r->h2o;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    http_stat_status(status);
    add_standard_headers(r, 1);
    size_t n = body ? body->len : 0;
    char *p = h2o_mem_alloc_pool(&req->pool, n + 1);
    if (n)
        memcpy(p, body->data, n);
    p[n] = '\n';
    /* HEAD gets the headers GET would get, Content-Length included. */
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t chunk = h2o_iovec_init(p, n + 1);
    req->res.content_length = n + 1;
    h2o_start_response(req, &generator);
    if (r->method == HTTP_HEAD)
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &chunk, 1, H2O_SEND_STATE_FINAL);
}

void http_send_empty(http_req_t *r, int status)
{
    h2o_req_t *req = r->h2o;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    http_stat_status(status);
    add_standard_headers(r, 0);
    static h2o_generator_t generator = {NULL, NULL};
    req->res.content_length = 0;
    h2o_start_response(req, &generator);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}

void http_send_not_modified(http_req_t *r)
{
    h2o_req_t *req = r->h2o;
    req->res.status = 304;
    req->res.reason = reason_phrase(304);
    http_stat_status(304);
    add_standard_headers(r, 1);
    static h2o_generator_t generator = {NULL, NULL};
    h2o_start_response(req, &generator);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}

void http_send_error(http_req_t *r, int status, const char *error, const char *reason)
{
    buf_t b = BUF_INIT;
    if (http_json_error(&b, error, reason) != DV_OK) {
        buf_free(&b);
        h2o_send_error_generic(r->h2o, 500, "Internal Server Error", "out of memory", 0);
        return;
    }
    http_send_json(r, status, &b);
    buf_free(&b);
}

void http_send_method_not_allowed(http_req_t *r, const char *allow)
{
    char reason[128];
    snprintf(reason, sizeof reason, "Only %s allowed", allow);
    http_add_header(r, "Allow", allow);
    http_send_error(r, 405, "method_not_allowed", reason);
}

void http_send_internal(http_req_t *r, int status)
{
    /* The path only: a query string is the client's to keep out of logs. */
    h2o_iovec_t path = ((h2o_req_t *)r->h2o)->input.path;
    const char *q = memchr(path.base, '?', path.len);
    log_error("http: internal error %s on %.*s", dv_strerror(status), (int)(q ? (size_t)(q - path.base) : path.len),
              path.base);
    http_send_error(r, 500, "unknown_error", dv_strerror(status));
}

const http_server_opts_t *http_server_opts(const http_server_t *s) { return &s->opts; }

const struct http_cors *http_server_cors(const http_server_t *s)
{
    return atomic_load_explicit(&((http_server_t *)s)->cors, memory_order_acquire);
}

int http_server_set_cors(http_server_t *s, struct http_cors *c)
{
    return publish(s, &s->cors, c, free_cors);
}
/* The limits live in s->opts (and h2o's globalconf for the body size),
 * written by a config change on a worker while loops read them: every
 * access is atomic (relaxed: each limit stands alone).  h2o reads
 * max_request_entity_size with a plain load when a request's body starts;
 * an aligned word store cannot tear, so the worst case is that a request
 * already being read keeps the old limit. */
void http_server_set_limits(http_server_t *s, const struct http_limits_live *l)
{
    __atomic_store_n(&s->config.max_request_entity_size, (size_t)l->max_request_size, __ATOMIC_RELAXED);
    __atomic_store_n(&s->opts.max_document_size, l->max_document_size, __ATOMIC_RELAXED);
    __atomic_store_n(&s->opts.max_json_depth, l->max_json_depth, __ATOMIC_RELAXED);
    __atomic_store_n(&s->opts.purge_max_ids, l->purge_max_ids, __ATOMIC_RELAXED);
    __atomic_store_n(&s->opts.purge_max_revs, l->purge_max_revs, __ATOMIC_RELAXED);
}

void http_server_purge_limits(const http_server_t *s, long long *max_ids, long long *max_revs)
{
    *max_ids = __atomic_load_n(&s->opts.purge_max_ids, __ATOMIC_RELAXED);
    *max_revs = __atomic_load_n(&s->opts.purge_max_revs, __ATOMIC_RELAXED);
}

long long http_server_max_document_size(const http_server_t *s)
{
    return __atomic_load_n(&s->opts.max_document_size, __ATOMIC_RELAXED);
}

unsigned http_server_max_json_depth(const http_server_t *s)
{
    return __atomic_load_n(&s->opts.max_json_depth, __ATOMIC_RELAXED);
}

struct vendor_list {
    http_vendor_field_t *f;
    size_t n;
};

static void collect_vendor(void *ctx, const char *key, const char *value)
{
    struct vendor_list *v = ctx;
    v->f[v->n++] = (http_vendor_field_t){key, value};
}

int http_vendor_read(const struct config *c, http_vendor_field_t **f, size_t *n)
{
    struct vendor_list v = {calloc(config_count(c, "vendor") + 1, sizeof *v.f), 0};
    if (!v.f)
        return DV_ERR_NOMEM;
    config_foreach(c, "vendor", collect_vendor, &v);
    if (v.n == 0)
        v.f[v.n++] = (http_vendor_field_t){"name", "divan"};
    *f = v.f;
    *n = v.n;
    return DV_OK;
}

const http_vendor_t *http_server_vendor(const http_server_t *s)
{
    return atomic_load_explicit(&((http_server_t *)s)->vendor, memory_order_acquire);
}

int http_server_set_vendor(http_server_t *s, const http_vendor_field_t *f, size_t n)
{
    size_t bytes = sizeof(http_vendor_t) + n * sizeof *f;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(f[i].key) + strlen(f[i].value) + 2;
    http_vendor_t *v = malloc(bytes);
    if (!v)
        return DV_ERR_NOMEM;
    /* One block: the fields, then their strings. */
    char *p = (char *)&v->f[n];
    v->n = n;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(f[i].key) + 1, vl = strlen(f[i].value) + 1;
        v->f[i].key = memcpy(p, f[i].key, kl);
        v->f[i].value = memcpy(p + kl, f[i].value, vl);
        p += kl + vl;
    }
    return publish(s, &s->vendor, v, free);
}

int http_att_conf_read(const struct config *c, const char **types, int *level)
{
    long long z;
    int rc = config_get_int(c, "attachments", "compression_level", DB_ATT_COMPRESSION_LEVEL_DEFAULT, 0, 9, &z);
    *types = config_get_str(c, "attachments", "compressible_types", DB_ATT_COMPRESSIBLE_DEFAULT);
    *level = (int)z;
    return rc;
}

const http_att_conf_t *http_server_att_conf(const http_server_t *s)
{
    return atomic_load_explicit(&((http_server_t *)s)->att, memory_order_acquire);
}

int http_server_set_att_conf(http_server_t *s, const char *types, int level)
{
    size_t n = types ? strlen(types) : 0;
    http_att_conf_t *c = malloc(sizeof *c + n + 1);
    if (!c)
        return DV_ERR_NOMEM;
    c->level = level;
    memcpy(c->types, types ? types : "", n + 1);
    return publish(s, &s->att, c, free);
}

struct workers *http_server_workers(http_server_t *s) { return s->workers; }
struct http_uuids *http_server_uuids(http_server_t *s) { return &s->uuids; }
int http_server_port(const http_server_t *s) { return s->port; }
int http_server_tls_port(const http_server_t *s) { return s->tls_fd >= 0 ? s->tls_port : 0; }

const uint8_t *http_req_body(http_req_t *r, size_t *len)
{
    h2o_req_t *req = r->h2o;
    *len = req->entity.base ? req->entity.len : 0;
    return (const uint8_t *)req->entity.base;
}

/* ---- asyncs ---------------------------------------------------------------- */

http_async_t *http_async_new(http_req_t *r, http_async_fn fn, void *arg)
{
    assert(r->async == NULL);
    http_async_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->m.kind = MSG_ASYNC;
    a->loop = r->loop;
    a->req = r;
    a->fn = fn;
    a->arg = arg;
    r->async = a;
    r->loop->npending++;
    return a;
}

void http_async_post(http_async_t *a)
{
    h2o_multithread_send_message(&a->loop->wake, &a->m.super);
}

static void deliver_async(http_async_t *a)
{
    struct http_loop *l = a->loop;
    http_req_t *r = a->req;
    if (r)
        r->async = NULL;
    a->fn(r, a->arg);
    free(a);
    assert(l->npending > 0);
    l->npending--;
}

/* ---- channels ------------------------------------------------------------ */

http_chan_t *http_chan_open(http_req_t *r, http_chan_fn fn, http_chan_fn cancel, void *arg)
{
    assert(r->chan == NULL);
    http_chan_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->m.kind = MSG_CHAN;
    c->loop = r->loop;
    c->req = r;
    c->fn = fn;
    c->cancel = cancel;
    c->arg = arg;
    pthread_mutex_init(&c->mu, NULL);
    h2o_linklist_insert(&r->loop->chans, &c->link);
    r->chan = c;
    r->loop->npending++;
    return c;
}

/* Queues the channel's message unless it is already on its way; mu held. */
static void chan_send_locked(http_chan_t *c)
{
    if (c->queued)
        return;
    c->queued = 1;
    h2o_multithread_send_message(&c->loop->wake, &c->m.super);
}

void http_chan_poke(http_chan_t *c)
{
    pthread_mutex_lock(&c->mu);
    assert(!c->closed);
    chan_send_locked(c);
    pthread_mutex_unlock(&c->mu);
}

void http_chan_close(http_chan_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->closed = 1;
    chan_send_locked(c);
    pthread_mutex_unlock(&c->mu);
}

static void deliver_chan(http_chan_t *c)
{
    struct http_loop *l = c->loop;
    pthread_mutex_lock(&c->mu);
    c->queued = 0; /* a poke from now on sends again; fn below sees its data */
    int closed = c->closed;
    pthread_mutex_unlock(&c->mu);
    c->fn(c->req, c->arg, closed);
    if (!closed)
        return;
    if (c->req)
        c->req->chan = NULL;
    h2o_linklist_unlink(&c->link);
    pthread_mutex_destroy(&c->mu);
    free(c);
    assert(l->npending > 0);
    l->npending--;
}

/* ---- streams ------------------------------------------------------------- */

static void stream_pump(struct http_stream *st);

static void stream_send(struct http_stream *st, h2o_send_state_t state)
{
    h2o_iovec_t chunk = h2o_iovec_init(st->out.data, st->out.len);
    h2o_send(st->r->h2o, st->out.len ? &chunk : NULL, st->out.len ? 1 : 0, state);
}

static void stream_pump(struct http_stream *st)
{
    if (st->in_pump)
        return;
    st->in_pump = 1;
    while (!st->done && !st->sending && !st->waiting) {
        buf_reset(&st->out);
        int rc = st->fill(st->r, st->ctx, &st->out);
        if (rc < 0 || rc == HTTP_STREAM_DONE) {
            if (rc < 0) {
                log_error("http: streamed response aborted: %s", dv_strerror(rc));
                buf_reset(&st->out);
            }
            st->done = 1;
            st->in_pump = 0;
            /* The last send may finish the request at once (all of it
             * written): h2o then clears the pool holding st.  Touch
             * nothing after it. */
            stream_send(st, rc < 0 ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL);
            return;
        } else {
            st->waiting = rc == HTTP_STREAM_WAIT;
            if (st->out.len) {
                st->sending = 1;
                stream_send(st, H2O_SEND_STATE_IN_PROGRESS);
            }
        }
    }
    st->in_pump = 0;
}

static void stream_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct http_stream *st = H2O_STRUCT_FROM_MEMBER(struct http_stream, gen, g);
    (void)req;
    st->sending = 0;
    if (st->woken) {
        st->woken = 0;
        st->waiting = 0;
    }
    stream_pump(st);
}

void http_stream_wake(http_req_t *r)
{
    struct http_stream *st = r->stream;
    if (!st || st->done)
        return;
    if (st->sending) {
        st->woken = 1;
        return;
    }
    st->waiting = 0;
    stream_pump(st);
}

static void stream_timer_cb(h2o_timeout_entry_t *e)
{
    struct http_stream *st = H2O_STRUCT_FROM_MEMBER(struct http_stream, timer, e);
    http_stream_wake(st->r);
}

static h2o_timeout_t *loop_timeout_for(struct http_loop *l, uint64_t ms)
{
    for (size_t i = 0; i < l->ntimeouts; i++)
        if (l->timeouts[i]->ms == ms)
            return &l->timeouts[i]->t;
    loop_timeout **nt = realloc(l->timeouts, (l->ntimeouts + 1) * sizeof *nt);
    if (!nt)
        return NULL;
    l->timeouts = nt;
    loop_timeout *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ms = ms;
    h2o_timeout_init(l->ctx.loop, &t->t, ms);
    l->timeouts[l->ntimeouts++] = t;
    return &t->t;
}

void http_stream_wake_after(http_req_t *r, uint64_t ms)
{
    static const uint64_t ladder[] = {60000, 50000, 20000, 10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1};
    struct http_stream *st = r->stream;
    if (!st)
        return;
    size_t i = 0;
    while (i + 1 < sizeof ladder / sizeof ladder[0] && ladder[i] > ms)
        i++;
    ms = ladder[i];
    if (h2o_timeout_is_linked(&st->timer))
        h2o_timeout_unlink(&st->timer);
    h2o_timeout_t *t = loop_timeout_for(st->loop, ms);
    if (t)
        h2o_timeout_link(st->loop->ctx.loop, t, &st->timer);
}

int http_stream_watch_db(http_req_t *r, const char *db)
{
    struct http_stream *st = r->stream;
    if (!st || st->watch_db)
        return DV_ERR_INVALID;
    if (!(st->watch_db = strdup(db)))
        return DV_ERR_NOMEM;
    atomic_fetch_add(&st->loop->nwatch, 1);
    return DV_OK;
}

int http_server_stopping(http_req_t *r) { return r->loop->stopping; }
int http_server_stop_requested(http_server_t *s) { return atomic_load(&s->stop_requested); }

static void stream_dispose(void *p)
{
    struct http_stream *st = p;
    if (h2o_timeout_is_linked(&st->timer))
        h2o_timeout_unlink(&st->timer);
    h2o_linklist_unlink(&st->link);
    if (st->watch_db) {
        atomic_fetch_sub(&st->loop->nwatch, 1);
        free(st->watch_db);
    }
    buf_free(&st->out);
    if (st->dispose)
        st->dispose(st->ctx);
}

void http_stream_start(http_req_t *r, int status, http_stream_fill_fn fill, http_stream_dispose_fn dispose,
                       void *ctx)
{
    h2o_req_t *req = r->h2o;
    struct http_stream *st = h2o_mem_alloc_shared(&req->pool, sizeof *st, stream_dispose);
    memset(st, 0, sizeof *st);
    st->gen.proceed = stream_proceed;
    st->r = r;
    st->loop = r->loop;
    st->fill = fill;
    st->dispose = dispose;
    st->ctx = ctx;
    st->timer.cb = stream_timer_cb;
    h2o_linklist_insert(&r->loop->streams, &st->link);
    r->stream = st;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    http_stat_status(status);
    add_standard_headers(r, 1);
    h2o_start_response(req, &st->gen);
    if (r->method == HTTP_HEAD) {
        st->done = 1;
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    stream_pump(st);
}

/* The commit hook (db.h): wakes every stream watching dbname, through a
 * message to each loop that has watchers.  Runs on a writer thread. */
static void on_commit(void *arg, const char *dbname, uint64_t seq)
{
    http_server_t *s = arg;
    (void)seq;
    size_t n = strlen(dbname);
    for (size_t i = 0; i < s->nloops; i++) {
        struct http_loop *l = &s->loops[i];
        if (atomic_load(&l->nwatch) == 0)
            continue;
        struct commit_msg *m = malloc(sizeof *m + n + 1);
        if (!m)
            continue; /* a missed wake-up: feeds still wake on their timers */
        memset(&m->m, 0, sizeof m->m);
        m->m.kind = MSG_COMMIT;
        memcpy(m->db, dbname, n + 1);
        h2o_multithread_send_message(&l->wake, &m->m.super);
    }
}

static void deliver_commit(struct http_loop *l, const char *db)
{
    for (h2o_linklist_t *n = l->streams.next; n != &l->streams;) {
        struct http_stream *st = H2O_STRUCT_FROM_MEMBER(struct http_stream, link, n);
        n = n->next; /* waking may finish (not free) the stream; the list stays intact */
        if (st->watch_db && !strcmp(st->watch_db, db))
            http_stream_wake(st->r);
    }
}

/* ---- h2o's own error answers ------------------------------------------------ */

/* h2o answers some errors itself, before any handler runs (a body over
 * max_request_entity_size, a malformed request line), with a text/plain
 * body.  This filter gives those answers CouchDB's JSON error body; it
 * recognises them by that content type, which divan never sends with an
 * error status. */
typedef struct couch_error_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
} couch_error_ostream;

static void couch_error_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n, h2o_send_state_t st)
{
    (void)bufs;
    (void)n;
    couch_error_ostream *os = (couch_error_ostream *)self;
    if (st == H2O_SEND_STATE_IN_PROGRESS) {
        h2o_ostream_send_next(self, req, NULL, 0, st); /* swallow h2o's text */
        return;
    }
    h2o_ostream_send_next(self, req, &os->body, 1, st);
}

typedef struct couch_errors_filter_t {
    h2o_filter_t super;
    const http_server_t *server; /* its CORS settings: headers for these answers too */
} couch_errors_filter_t;

static void couch_errors_filter(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (req->res.status >= 400 && ct >= 0 && !strncmp(req->res.headers.entries[ct].value.base, "text/plain", 10)) {
        http_cors_add_h2o_response_headers(http_server_cors(((couch_errors_filter_t *)self)->server), req);
        const char *text = req->res.status == 413
                               ? "{\"error\":\"too_large\",\"reason\":\"the request entity is too large\"}\n"
                               : "{\"error\":\"bad_request\",\"reason\":\"Bad request\"}\n";
        req->res.headers.entries[ct].value = h2o_iovec_init(H2O_STRLIT("application/json"));
        couch_error_ostream *os = (couch_error_ostream *)h2o_add_ostream(req, sizeof *os, slot);
        os->super.do_send = couch_error_send;
        os->body = h2o_iovec_init(text, strlen(text));
        req->res.content_length = os->body.len;
        slot = &os->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

/* ---- dispatch ---------------------------------------------------------- */

static void release_req(void *p)
{
    http_req_t *r = p;
    if (r->async)
        r->async->req = NULL;
    if (r->chan)
        r->chan->req = NULL;
    http_target_free(&r->target);
    assert(r->loop->inflight > 0);
    r->loop->inflight--;
}

/* Runs once r->user is known (http/auth.c authenticates every request,
 * so bad credentials are 401 whatever the path, as in CouchDB): finds the
 * route, checks its access class (authz.c), runs the handler. */
static void dispatch_authorized(http_req_t *r)
{
    h2o_req_t *req = r->h2o;
    size_t scratch_len = http_route_scratch_size(&r->target);
    char *scratch = h2o_mem_alloc_pool(&req->pool, scratch_len);
    const http_route_t *route;
    switch (http_route_find(http_routes, http_nroutes, r->method, &r->target, scratch, scratch_len, &route,
                            &r->match)) {
    case HTTP_ROUTE_FOUND:
        r->route = route;
        if (http_authz_route(r))
            ((http_handler_fn)route->handler)(r);
        break;
    case HTTP_ROUTE_NO_METHOD:
        http_send_method_not_allowed(r, route->allow);
        break;
    default:
        http_send_error(r, 404, "not_found", "missing");
        break;
    }
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    http_server_t *s = ((struct dispatch_handler *)self)->server;
    struct http_loop *l = H2O_STRUCT_FROM_MEMBER(struct http_loop, ctx, req->conn->ctx);
    http_req_t *r = h2o_mem_alloc_shared(&req->pool, sizeof *r, release_req);
    memset(r, 0, sizeof *r);
    r->h2o = req;
    r->server = s;
    r->loop = l;
    l->inflight++;
    r->method = http_method_parse(req->input.method.base, req->input.method.len);
    http_stat_method(r->method);
    /* A CORS preflight carries no credentials: answered before anything
     * else looks at the request (CouchDB does the same). */
    if (http_cors_answer_preflight(r))
        return 0;
    int rc = http_target_parse(req->input.path.base, req->input.path.len, &r->target);
    if (rc == DV_ERR_INVALID) {
        http_send_error(r, 400, "bad_request", "Invalid request target");
        return 0;
    }
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        return 0;
    }
    http_auth_request(r, dispatch_authorized);
    return 0;
}

/* ---- connections -------------------------------------------------------- */

static void on_sock_close(void *data)
{
    struct http_loop *l = data;
    assert(l->nconns > 0);
    l->nconns--;
    atomic_fetch_sub(&l->server->nclients, 1);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    struct http_loop *l = listener->data;
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock == NULL)
        return; /* another loop took it, or EMFILE: h2o retries on the next event */
    http_server_t *s = l->server;
    if (s->opts.max_connections > 0 && atomic_fetch_add(&s->nclients, 1) >= s->opts.max_connections) {
        atomic_fetch_sub(&s->nclients, 1);
        if (!atomic_exchange(&s->refusing, 1))
            log_warn("http: %lld connections open ([divan] max_connections): closing new ones", s->opts.max_connections);
        h2o_socket_close(sock);
        return;
    }
    if (s->opts.max_connections <= 0)
        atomic_fetch_add(&s->nclients, 1);
    else if (atomic_load(&s->nclients) < s->opts.max_connections * 9 / 10)
        atomic_store(&s->refusing, 0);
    l->nconns++;
    sock->on_close.cb = on_sock_close;
    sock->on_close.data = l;
    h2o_accept(listener == l->tls_listener ? &l->tls_accept_ctx : &l->accept_ctx, sock);
}

static void on_wake(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    struct http_loop *l = H2O_STRUCT_FROM_MEMBER(struct http_loop, wake, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        struct loop_msg *m = H2O_STRUCT_FROM_MEMBER(struct loop_msg, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        if (m->kind == MSG_ASYNC) {
            deliver_async((http_async_t *)m);
        } else if (m->kind == MSG_CHAN) {
            deliver_chan((http_chan_t *)m);
        } else {
            deliver_commit(l, ((struct commit_msg *)m)->db);
            free(m);
        }
    }
}

static void close_listeners(struct http_loop *l)
{
    h2o_socket_t **ls[] = {&l->listener, &l->tls_listener};
    for (size_t i = 0; i < 2; i++) {
        if (*ls[i]) {
            h2o_socket_read_stop(*ls[i]);
            h2o_socket_close(*ls[i]);
            *ls[i] = NULL;
        }
    }
}

static void begin_stop(struct http_loop *l)
{
    l->stopping = 1;
    l->deadline_ms = monotonic_ms() + l->server->opts.drain_ms;
    l->ctx.shutdown_requested = 1; /* h2o answers with Connection: close from now on */
    close_listeners(l);
    /* Long feeds notice the stop when woken (http_server_stopping). */
    for (h2o_linklist_t *n = l->streams.next; n != &l->streams;) {
        struct http_stream *st = H2O_STRUCT_FROM_MEMBER(struct http_stream, link, n);
        n = n->next;
        http_stream_wake(st->r);
    }
}

static void loop_main(struct http_loop *l)
{
    http_server_t *s = l->server;
    for (;;) {
        h2o_evloop_run(l->ctx.loop, l->stopping ? 10 : INT32_MAX);
        if (!l->stopping) {
            if (atomic_load(&s->stop_requested))
                begin_stop(l);
            continue;
        }
        if (l->inflight == 0 && !l->idle_expired) {
            /* Nothing in flight: idle keep-alive connections may go now. */
            l->ctx.http1.req_timeout.timeout = 0;
            l->ctx.handshake_timeout.timeout = 0; /* and TLS handshakes not finished */
            l->idle_expired = 1;
            continue;
        }
        if (l->inflight == 0 && l->nconns == 0 && l->npending == 0)
            break;
        /* An outstanding async will be posted to this loop: never leave
         * before it arrives (writes always complete, even failed).  Work
         * on other threads that waits for its client gives up at the
         * deadline (its channel's cancel), then closes its channel. */
        if (monotonic_ms() > l->deadline_ms && !l->cancelled) {
            l->cancelled = 1;
            for (h2o_linklist_t *n = l->chans.next; n != &l->chans; n = n->next) {
                http_chan_t *c = H2O_STRUCT_FROM_MEMBER(http_chan_t, link, n);
                if (c->cancel)
                    c->cancel(c->req, c->arg, 0);
            }
        }
        if (monotonic_ms() > l->deadline_ms && l->npending == 0) {
            log_warn("http: stopping with %zu requests in flight and %zu connections open", l->inflight,
                     l->nconns);
            break;
        }
    }
}

/* ---- start and stop ------------------------------------------------------ */

/* Binds and listens on the configured address and `port`; *fd_out and
 * *port_out get the socket and the port actually bound. */
static int open_listener(http_server_t *s, int port_num, int *fd_out, int *port_out)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char port[16];
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    snprintf(port, sizeof port, "%d", port_num);
    int e = getaddrinfo(s->opts.bind_address, port, &hints, &ai);
    if (e != 0) {
        log_error("http: bad bind address %s: %s", s->opts.bind_address, gai_strerror(e));
        return DV_ERR_INVALID;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        log_error("http: cannot listen on %s port %d: %s", s->opts.bind_address, port_num, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return DV_ERR_IO;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return DV_ERR_IO;
    }
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return DV_OK;
}

static const char *keep(http_server_t *s, const char *str)
{
    if (!str)
        return NULL;
    char *c = strdup(str);
    if (!c)
        return NULL;
    s->strings[s->nstrings++] = c;
    return c;
}

static int copy_opts(http_server_t *s, const http_server_opts_t *o)
{
    s->opts = *o;
    atomic_init(&s->cors, o->cors);
    s->strings = calloc(6, sizeof(char *));
    if (!s->strings || http_server_set_vendor(s, o->vendor, o->nvendor) != DV_OK)
        return DV_ERR_NOMEM;
    if (!(s->opts.bind_address = keep(s, o->bind_address)) || !(s->opts.uuid = keep(s, o->uuid ? o->uuid : "")))
        return DV_ERR_NOMEM;
    if (http_server_set_att_conf(s, o->att_compressible_types, o->att_compression_level) != DV_OK)
        return DV_ERR_NOMEM;
    s->opts.att_compressible_types = NULL; /* copied: read through http_server_att_conf */
    s->opts.vendor = NULL; /* copied: read through http_server_vendor */
    s->opts.nvendor = 0;
    s->opts.uuids_algorithm = s->opts.uuids_utc_id_suffix = NULL; /* consumed by http_uuids_init */
    if (s->opts.threads < 1)
        s->opts.threads = 1;
    return DV_OK;
}

static void free_server(http_server_t *s)
{
    workers_stop(s->workers); /* jobs still running finish first */
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->tls_fd >= 0)
        close(s->tls_fd);
    free(s->loops);
    h2o_config_dispose(&s->config);
    http_uuids_destroy(&s->uuids);
    for (size_t i = 0; i < s->nstrings; i++)
        free(s->strings[i]);
    free(s->strings);
    for (size_t i = 0; i < s->nkept; i++)
        s->kept[i].free_fn(s->kept[i].p);
    free(s->kept);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Creates the loop's context and listener.  Runs on the loop's own thread:
 * h2o sockets take their buffers from the creating thread's thread-local
 * recycling allocator, so a socket created on one thread and read on
 * another (the context's wake-up pipe, say) corrupts that allocator once
 * two loops read at the same time.  For the same reason the loop is
 * disposed on its thread too. */
static int init_loop(http_server_t *s, struct http_loop *l)
{
    if (RAND_bytes((unsigned char *)&l->rng, sizeof l->rng) != 1)
        return DV_ERR_IO;
    h2o_context_init(&l->ctx, h2o_evloop_create(), &s->config);
    l->has_ctx = 1;
    l->accept_ctx.ctx = &l->ctx;
    l->accept_ctx.hosts = s->config.hosts;
    h2o_multithread_register_receiver(l->ctx.queue, &l->wake, on_wake);
    h2o_linklist_init_anchor(&l->streams);
    h2o_linklist_init_anchor(&l->chans);
    l->tls_accept_ctx = l->accept_ctx;
    l->tls_accept_ctx.ssl_ctx = s->opts.tls_ctx;
    int fds[2] = {s->listen_fd, s->tls_fd};
    h2o_socket_t **ls[2] = {&l->listener, &l->tls_listener};
    for (size_t i = 0; i < 2; i++) {
        if (fds[i] < 0)
            continue;
        int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            log_error("http: dup of the listening socket failed: %s", strerror(errno));
            return DV_ERR_IO;
        }
        *ls[i] = h2o_evloop_socket_create(l->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
        (*ls[i])->data = l;
        h2o_socket_read_start(*ls[i], on_accept);
    }
    return DV_OK;
}

static void dispose_loop(struct http_loop *l)
{
    if (!l->has_ctx)
        return;
    h2o_evloop_t *loop = l->ctx.loop;
    if (l->listener || l->tls_listener) {
        close_listeners(l);
        h2o_evloop_run(loop, 0); /* lets the close complete */
    }
    if (l->nconns != 0 || l->inflight != 0)
        return; /* the process is exiting; tearing down under live connections would be unsafe */
    h2o_evloop_run(loop, 0); /* delivers messages still queued */
    for (size_t i = 0; i < l->ntimeouts; i++) {
        h2o_timeout_dispose(loop, &l->timeouts[i]->t);
        free(l->timeouts[i]);
    }
    free(l->timeouts);
    h2o_multithread_unregister_receiver(l->ctx.queue, &l->wake);
    h2o_context_dispose(&l->ctx);
    /* The context's queue is freed when its socket's close completes,
     * which takes one more turn of the loop. */
    h2o_evloop_run(loop, 0);
    h2o_evloop_destroy(loop);
}

/* The loop thread: set up, report, serve until stopped, then wait until
 * the stopper has woken every loop (its wake-up messages go through our
 * receiver, which must still exist) and tear down. */
static void *loop_thread(void *arg)
{
    struct http_loop *l = arg;
    http_server_t *s = l->server;
    int rc = init_loop(s, l);
    pthread_mutex_lock(&s->mu);
    l->init_rc = rc;
    l->init_done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc == DV_OK)
        loop_main(l);
    pthread_mutex_lock(&s->mu);
    while (!s->wakes_sent)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    dispose_loop(l);
    return NULL;
}

/* Sets stop_requested, wakes every loop whose receiver exists, then lets
 * the loops tear down. */
static void wake_all_and_release(http_server_t *s)
{
    atomic_store(&s->stop_requested, 1);
    for (size_t i = 0; i < s->nloops; i++) {
        struct http_loop *l = &s->loops[i];
        if (l->started && l->init_rc == DV_OK)
            h2o_multithread_send_message(&l->wake, NULL);
    }
    pthread_mutex_lock(&s->mu);
    s->wakes_sent = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int http_server_start(const http_server_opts_t *o, http_server_t **out)
{
    *out = NULL;
    http_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return DV_ERR_NOMEM;
    s->listen_fd = -1;
    s->tls_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    h2o_config_init(&s->config);
    int rc = copy_opts(s, o);
    if (rc != DV_OK)
        goto fail;
    http_uuids_conf_t uc = {o->uuids_algorithm, o->uuids_utc_id_suffix, o->uuids_max_count};
    if ((rc = http_uuids_init(&s->uuids, &uc)) != DV_OK)
        goto fail; /* logged */
    snprintf(s->server_header, sizeof s->server_header, "CouchDB/%s (divan/%s)", DIVAN_COUCHDB_VERSION,
             DIVAN_VERSION);
    s->config.server_name = h2o_iovec_init(s->server_header, strlen(s->server_header));
    if (o->max_request_size > 0)
        s->config.max_request_entity_size = (size_t)o->max_request_size;
    if (o->request_timeout_ms > 0)
        s->config.http1.req_timeout = (uint64_t)o->request_timeout_ms;
    /* HTTP/1.1 only, as CouchDB: no h2c upgrade or prior-knowledge HTTP/2
     * (h2o 2.2 allows both by default), so the limits above are the only
     * ones a client meets and h2o's HTTP/2 code is not exposed. */
    s->config.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host = h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct dispatch_handler *h = (struct dispatch_handler *)h2o_create_handler(path, sizeof *h);
    /* h2o's own errors (413 before the handler runs, 400 for a malformed
     * request) are bound to the host's fallback path. */
    h2o_pathconf_t *fpaths[] = {&host->fallback_path, path};
    for (size_t i = 0; i < 2; i++) {
        couch_errors_filter_t *f = (couch_errors_filter_t *)h2o_create_filter(fpaths[i], sizeof *f);
        f->super.on_setup_ostream = couch_errors_filter;
        f->server = s;
    }
    h->super.on_req = on_req;
    h->server = s;
    if ((rc = open_listener(s, s->opts.port, &s->listen_fd, &s->port)) != DV_OK)
        goto fail;
    if (s->opts.tls_ctx && (rc = open_listener(s, s->opts.tls_port, &s->tls_fd, &s->tls_port)) != DV_OK)
        goto fail;
    if ((rc = workers_start(s->opts.worker_threads > 0 ? (size_t)s->opts.worker_threads : 4, "divan-work",
                            &s->workers)) != DV_OK)
        goto fail;
    s->nloops = (size_t)s->opts.threads;
    s->loops = calloc(s->nloops, sizeof *s->loops);
    if (!s->loops) {
        rc = DV_ERR_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < s->nloops; i++) {
        struct http_loop *l = &s->loops[i];
        l->server = s;
        if (pthread_create(&l->tid, NULL, loop_thread, l) != 0) {
            rc = DV_ERR_NOMEM;
            goto fail_loops;
        }
        l->started = 1;
        pthread_mutex_lock(&s->mu);
        while (!l->init_done)
            pthread_cond_wait(&s->cv, &s->mu);
        rc = l->init_rc;
        pthread_mutex_unlock(&s->mu);
        if (rc != DV_OK)
            goto fail_loops;
    }
    if (s->opts.dbs)
        db_server_set_commit_hook(s->opts.dbs, on_commit, s);
    *out = s;
    return DV_OK;
fail_loops:
    wake_all_and_release(s);
    for (size_t i = 0; i < s->nloops; i++)
        if (s->loops[i].started)
            pthread_join(s->loops[i].tid, NULL);
fail:
    free_server(s);
    return rc;
}

void http_server_stop(http_server_t *s)
{
    if (s->opts.dbs)
        db_server_set_commit_hook(s->opts.dbs, NULL, NULL); /* waits for hooks running now */
    wake_all_and_release(s);
    int clean = 1;
    for (size_t i = 0; i < s->nloops; i++) {
        pthread_join(s->loops[i].tid, NULL);
        clean &= s->loops[i].nconns == 0 && s->loops[i].inflight == 0;
    }
    if (clean)
        free_server(s);
    /* else: loops kept alive objects that point into s; leave it to exit. */
}
