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
#include "http/router.h"

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
    const http_vendor_field_t *vendor; /* [vendor] fields, in order */
    size_t nvendor;
    long long uuids_max_count;  /* [uuids] max_count */
    const char *uuids_algorithm; /* [uuids] algorithm (NULL: sequential) */
    const char *uuids_utc_id_suffix;
    long long max_request_size; /* bytes; larger bodies get 413 */
    int drain_ms;               /* how long stop waits for requests in flight */
} http_server_opts_t;

/* Binds, listens and starts the loop threads.  The strings in opts are
 * copied.  DV_ERR_IO (logged) when the address cannot be bound. */
int http_server_start(const http_server_opts_t *opts, http_server_t **out);
/* The port actually bound (useful with port 0). */
int http_server_port(const http_server_t *s);
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
    struct http_loop *loop; /* private to server.c */
};

/* Sends status and body followed by "\n" (CouchDB ends JSON with a
 * newline).  Exactly one send per request. */
void http_send_json(http_req_t *r, int status, const buf_t *body);
/* CouchDB error body {"error":…,"reason":…}. */
void http_send_error(http_req_t *r, int status, const char *error, const char *reason);
/* 405 with Allow, as chttpd:send_method_not_allowed(Req, Allow). */
void http_send_method_not_allowed(http_req_t *r, const char *allow);
/* 500 for an internal status code (logged). */
void http_send_internal(http_req_t *r, int status);
/* Adds a response header (copied into the request's pool) before sending. */
void http_add_header(http_req_t *r, const char *name, const char *value);
/* Value of a request header (NUL-terminated copy in the request pool), or
 * NULL. */
const char *http_req_header(http_req_t *r, const char *name);

/* Server-wide values handlers read. */
const http_server_opts_t *http_server_opts(const http_server_t *s);
struct http_uuids *http_server_uuids(http_server_t *s);

#endif
