/*
 * server.h — the HTTP server: h2o event loops, dispatch, response helpers.
 *
 * N threads each run one h2o event loop over a shared listening socket (one
 * listening file description, dup'd per loop, so a second server on the
 * same port fails with EADDRINUSE instead of silently sharing it as
 * SO_REUSEPORT would allow).  The kernel hands each connection to one loop;
 * a connection then stays on that loop for its life.
 *
 * A request is parsed (router.h) and dispatched to a handler on the loop
 * thread.  Handlers must not block the loop (DESIGN.md, Concurrency): they
 * answer inline or keep the http_req_t and answer later from the loop
 * thread.  The http_req_t lives in the request's memory pool until h2o has
 * finished with the request, so it stays valid for a deferred answer.
 *
 * Shutdown (http_server_stop): each loop closes its listener, turns off
 * keep-alive for new requests, lets every request in flight finish (up to
 * the drain limit), then closes idle connections and exits.  The caller
 * joins the threads; nothing is torn down under a live request.
 *
 * Responses follow CouchDB: JSON bodies end with "\n", Content-Type
 * application/json, Cache-Control: must-revalidate unless the handler set
 * its own, a Server header naming the CouchDB version divan follows, and
 * X-Couch-Request-ID.
 */
#ifndef DV_HTTP_SERVER_H
#define DV_HTTP_SERVER_H

#include "base/buf.h"
#include "db/db.h"
#include "http/router.h"
#include "http/user_ctx.h"

#include <stddef.h>

#define DIVAN_VERSION "0.1.0"
#define DIVAN_COUCHDB_VERSION "3.3.3" /* the CouchDB release whose API divan follows */

typedef struct http_server http_server_t;

typedef struct http_vendor_field {
    const char *key;
    const char *value;
} http_vendor_field_t;

typedef struct http_server_opts {
    const char *bind_address; /* IPv4 or IPv6 literal, e.g. "127.0.0.1", "::" */
    int port;                 /* 0: the kernel picks one (see http_server_port) */
    int threads;              /* event loops, >= 1 */
    const char *uuid;         /* server uuid for the welcome body */
    const http_vendor_field_t *vendor; /* [vendor] fields, in order, at start: see http_server_vendor */
    size_t nvendor;
    long long uuids_max_count;  /* [uuids] max_count, algorithm (NULL: sequential), utc_id_suffix at */
    const char *uuids_algorithm; /* start; then http_server_uuids (http/uuids.h) holds them */
    const char *uuids_utc_id_suffix;
    long long max_request_size; /* bytes; larger bodies get 413 (at start: see http_server_set_limits) */
    int drain_ms;               /* how long stop waits for requests in flight */
    db_server *dbs;             /* the databases (not owned) */
    struct views *views;        /* the view engine (not owned) */
    long long max_document_size; /* [couchdb] max_document_size, bytes, at start: handlers read
                                  * http_server_max_document_size */
    unsigned max_json_depth;    /* [chttpd] max_json_depth at start: handlers read http_server_max_json_depth */
    int worker_threads;         /* [divan] worker_threads: blocking work (view queries) */
    const char *att_compressible_types; /* [attachments] compressible_types (NULL: none) and */
    int att_compression_level;  /* compression_level, 0 (off) .. 9, at start: see http_server_att_conf */
    long long purge_max_ids;    /* [purge] max_document_id_number: more ids per _purge get 400, and */
    long long purge_max_revs;   /* max_revisions_number, at start: handlers read http_server_purge_limits */
    struct config *config;      /* the live configuration (not owned; locking rules in config.h) */
    const struct http_cors *cors; /* CORS config (http/cors.h; NULL: disabled; not owned) */
    long long max_connections;  /* [divan] max_connections: more are closed at once (0: no limit) */
    long long request_timeout_ms; /* [divan] request_timeout_ms: a request must arrive whole within it (0: h2o's) */
    struct ssl_ctx_st *tls_ctx; /* an SSL_CTX (http/tls.h): also serve HTTPS on tls_port (NULL: no; not owned) */
    int tls_port;               /* [ssl] port; 0: the kernel picks one (see http_server_tls_port) */
    struct http_auth *auth;     /* authentication settings (http/auth.h; not owned); NULL:
                                 * every request is anonymous */
} http_server_opts_t;

/* Binds, listens and starts the loop threads.  The strings in opts are
 * copied.  DV_ERR_IO (logged) when the address cannot be bound. */
int http_server_start(const http_server_opts_t *opts, http_server_t **out);
/* The port actually bound (useful with port 0). */
int http_server_port(const http_server_t *s);
/* The HTTPS port actually bound, or 0 when there is no HTTPS listener. */
int http_server_tls_port(const http_server_t *s);
/* Graceful stop, then frees everything.  Call once, from any thread but a
 * loop thread. */
void http_server_stop(http_server_t *s);

/* ---- for handlers ----------------------------------------------------- */

typedef struct http_req http_req_t;
typedef void (*http_handler_fn)(http_req_t *r);

/* The parsed request as handlers see it. */
struct http_req {
    void *h2o;              /* the h2o_req_t (for handler files that need h2o directly) */
    http_server_t *server;
    int method;             /* HTTP_GET, … (HEAD stays HTTP_HEAD) */
    http_target_t target;   /* decoded path segments and query parameters */
    http_match_t match;     /* captures of the route ({db}, {docid}, {rest}) */
    const http_route_t *route;
    const http_user_ctx_t *user; /* who the request acts as; NULL: anonymous (user_ctx.h) */
    struct http_loop *loop;     /* private to server.c */
    struct http_async *async;   /* private: the outstanding async, if any */
    struct http_chan *chan;     /* private: the open channel, if any */
    struct http_stream *stream; /* private: the streamed response, if any */
};

/* Sends status and body followed by "\n" (CouchDB ends JSON with a
 * newline).  Exactly one send per request. */
void http_send_json(http_req_t *r, int status, const buf_t *body);
/* CouchDB error body {"error":…,"reason":…}. */
void http_send_error(http_req_t *r, int status, const char *error, const char *reason);
/* 405 with Allow, as chttpd:send_method_not_allowed(Req, Allow). */
void http_send_method_not_allowed(http_req_t *r, const char *allow);
/* status (204, say) with the headers added so far, no Content-Type, no
 * body and no CORS headers of the simple-request kind (a preflight
 * answer carries its own). */
void http_send_empty(http_req_t *r, int status);
/* 304 Not Modified with the headers added so far (ETag) and no body. */
void http_send_not_modified(http_req_t *r);
/* 500 for an internal status code (logged). */
void http_send_internal(http_req_t *r, int status);
/* Adds a response header (copied into the request's pool) before sending;
 * CR and LF in the value become spaces, so no value can end its line. */
void http_add_header(http_req_t *r, const char *name, const char *value);
/* Value of a request header (NUL-terminated copy in the request pool), or
 * NULL. */
const char *http_req_header(http_req_t *r, const char *name);

/* Server-wide values handlers read. */
const http_server_opts_t *http_server_opts(const http_server_t *s);
/* The CORS settings in force (NULL: CORS off): opts.cors until replaced. */
const struct http_cors *http_server_cors(const http_server_t *s);
/* Puts c in force (a change through /_node/_local/_config); the server owns
 * it (and frees it, with every earlier one, when it stops). */
int http_server_set_cors(http_server_t *s, struct http_cors *c);
/* The request limits in force (http/limits.h): opts' until replaced by
 * http_server_set_limits (a change through /_node/_local/_config), which
 * applies to the requests that follow.  Atomic loads and stores: any
 * thread, no lock. */
struct http_limits_live;
void http_server_set_limits(http_server_t *s, const struct http_limits_live *l);
long long http_server_max_document_size(const http_server_t *s);
unsigned http_server_max_json_depth(const http_server_t *s);
void http_server_purge_limits(const http_server_t *s, long long *max_ids, long long *max_revs);
/* The [attachments] settings in force: opts' until replaced by
 * http_server_set_att_conf (a change through /_node/_local/_config), which
 * copies them; replaced ones are kept until the server stops, as CORS
 * sets are.  http_att_conf_read takes them from a configuration (strings
 * pointing into it): DV_ERR_INVALID (logged) for a bad level. */
typedef struct http_att_conf {
    int level;     /* compression_level */
    char types[];  /* compressible_types ("": none) */
} http_att_conf_t;
struct config;
int http_att_conf_read(const struct config *c, const char **types, int *level);
const http_att_conf_t *http_server_att_conf(const http_server_t *s);
int http_server_set_att_conf(http_server_t *s, const char *types, int level);
/* GET /'s vendor object in force: opts' until replaced by
 * http_server_set_vendor (a change to [vendor]), which copies the fields;
 * replaced ones are kept until stop.  http_vendor_read: the [vendor]
 * fields of c, {"name":"divan"} when it has none, as a malloc'd array
 * (strings pointing into c). */
typedef struct http_vendor {
    size_t n;
    http_vendor_field_t f[];
} http_vendor_t;
int http_vendor_read(const struct config *c, http_vendor_field_t **f, size_t *n);
const http_vendor_t *http_server_vendor(const http_server_t *s);
int http_server_set_vendor(http_server_t *s, const http_vendor_field_t *f, size_t n);
struct http_uuids *http_server_uuids(http_server_t *s);
static inline db_server *http_dbs(http_req_t *r) { return http_server_opts(r->server)->dbs; }
/* The pool for work that may block (http/wstream.h). */
struct workers *http_server_workers(http_server_t *s);

/* The request body as h2o buffered it (NULL, 0 when there is none). */
const uint8_t *http_req_body(http_req_t *r, size_t *len);

/* ---- answers that wait for other threads ------------------------------ */

/* A handler that must wait (for a commit, say) creates an http_async_t on
 * its loop thread and hands it to the other thread, which calls
 * http_async_post exactly once when done.  fn(r, arg) then runs on the
 * request's loop thread; r is NULL when the client went away meanwhile
 * (fn must still free what arg owns).  A loop does not exit while an
 * async it created is outstanding, so posting is always safe. */
typedef void (*http_async_fn)(http_req_t *r, void *arg);
typedef struct http_async http_async_t;
http_async_t *http_async_new(http_req_t *r, http_async_fn fn, void *arg); /* NULL: out of memory */
void http_async_post(http_async_t *a);

/* A channel: another thread wakes the request's loop any number of times.
 * Opened on the loop thread; http_chan_poke (any thread) makes fn(r, arg)
 * run on the loop soon after (pokes coalesce: fn must look at the shared
 * state it is told about, not count calls); http_chan_close (any thread,
 * once, no poke after it) makes fn run one last time (last = 1), after
 * which the channel is freed.  r is NULL in fn once the client went away.  A loop
 * does not exit while a channel is open; when the server's drain time runs
 * out, cancel(r, arg) runs on the loop so that the other side gives up
 * and closes. */
typedef void (*http_chan_fn)(http_req_t *r, void *arg, int last);
typedef struct http_chan http_chan_t;
http_chan_t *http_chan_open(http_req_t *r, http_chan_fn fn, http_chan_fn cancel, void *arg);
void http_chan_poke(http_chan_t *c);
void http_chan_close(http_chan_t *c);

/* ---- streamed (chunked) responses --------------------------------------- */

/* fill appends the next part of the body to out and says what follows:
 * MORE (call again when the part is sent), WAIT (send what is in out, then
 * call again only after http_stream_wake or the timer set with
 * http_stream_wake_after), DONE (out is the last part), or a negative
 * DV_ERR_* (the response is aborted: the client sees a truncated body).
 * Each part is held in memory until sent, so fill should append a bounded
 * amount (tens of KiB) per call.  dispose(ctx) runs once, when the request
 * is finished or the client is gone; r must not be used after it. */
enum { HTTP_STREAM_MORE = 0, HTTP_STREAM_WAIT = 1, HTTP_STREAM_DONE = 2 };
typedef int (*http_stream_fill_fn)(http_req_t *r, void *ctx, buf_t *out);
typedef void (*http_stream_dispose_fn)(void *ctx);
/* Starts the response (status, the headers added so far, JSON content type
 * unless one was added) and calls fill.  For HEAD, sends the headers and
 * disposes at once. */
void http_stream_start(http_req_t *r, int status, http_stream_fill_fn fill, http_stream_dispose_fn dispose,
                       void *ctx);
/* Loop thread only: a WAITing stream's fill is called again. */
void http_stream_wake(http_req_t *r);
/* Wakes the stream after at most ms milliseconds (replaces an earlier
 * timer).  The wait is rounded down to a fixed ladder of durations (1, 2,
 * 5, 10, … ms, at most 60 s): h2o 2.2 keeps one timeout list per distinct
 * duration for a loop's whole life, so client-chosen durations must not
 * each add one.  A stream may therefore wake early: fill re-checks its own
 * clock and calls this again for the time left. */
void http_stream_wake_after(http_req_t *r, uint64_t ms);
/* Wakes the stream whenever database `db` commits a document change (the
 * db layer's commit hook), until the request ends. */
int http_stream_watch_db(http_req_t *r, const char *db);
/* 1 once the server is stopping: long feeds should finish. */
int http_server_stopping(http_req_t *r);
/* The same from any thread (work on a worker that should give up). */
int http_server_stop_requested(http_server_t *s);

#endif
