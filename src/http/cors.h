/*
 * cors.h — Cross-Origin Resource Sharing as CouchDB 3's chttpd_cors.
 *
 * Configuration (read once at start-up, immutable afterwards, so loop
 * threads read it without locks):
 *   [chttpd] enable_cors  (falls back to [httpd] enable_cors, as CouchDB 3)
 *   [cors] origins, credentials, methods, headers, exposed_headers, max_age
 *
 * Decisions are pure functions of the config and the request's header
 * values (untrusted bytes, any length, no NUL terminator assumed), so they
 * are unit tested and fuzzed without a server.  An origin matches only a
 * listed origin byte for byte, or any origin when `*` is listed.  A
 * request from an origin that does not match gets no CORS header at all.
 */
#ifndef DV_HTTP_CORS_H
#define DV_HTTP_CORS_H

#include <stddef.h>

struct config;
typedef struct http_cors http_cors_t;

/* Reads the keys above.  *out is NULL (nothing to do per request) when
 * CORS is disabled.  DV_ERR_INVALID (logged) for a malformed value. */
int http_cors_new(const struct config *c, http_cors_t **out);
void http_cors_free(http_cors_t *c);

/* The headers of a preflight answer, in CouchDB's order.  Strings point
 * into the config or into the request's own header value. */
typedef struct http_cors_preflight {
    const char *allow_origin;   /* the Origin as sent */
    size_t allow_origin_len;
    const char *max_age;
    const char *allow_methods;  /* ", "-joined */
    int allow_credentials;
    const char *allow_headers;  /* Access-Control-Request-Headers as sent ("" when absent) */
    size_t allow_headers_len;
} http_cors_preflight_t;

/* 1 and *out filled when an OPTIONS request with these headers is a
 * preflight to answer with 204 (origin accepted, requested method allowed,
 * every requested header allowed); 0 when not (the request then goes on
 * like any other).  NULL pointers stand for absent headers. */
int http_cors_preflight(const http_cors_t *c, const char *origin, size_t origin_len, const char *req_method,
                        size_t req_method_len, const char *req_headers, size_t req_headers_len,
                        http_cors_preflight_t *out);

/* For an ordinary request: 1 when `origin` is accepted (the response then
 * carries Access-Control-Allow-Origin: origin, -Credentials when
 * *credentials, and Access-Control-Expose-Headers), else 0. */
int http_cors_origin_allowed(const http_cors_t *c, const char *origin, size_t origin_len, int *credentials);

/* The configured exposed headers (", "-joined, lower case), which the
 * server appends to the simple headers it found in the response. */
const char *http_cors_exposed(const http_cors_t *c);

/* ---- on a live request (loop thread) ---------------------------------- */

struct http_req;
/* Answers a CORS preflight (OPTIONS with Origin and
 * Access-Control-Request-Method that the config accepts) with 204 and
 * returns 1; returns 0, sending nothing, for any other request.  Runs
 * before authentication: browsers send preflights without credentials. */
int http_cors_answer_preflight(struct http_req *r);
/* Adds Access-Control-Allow-Origin (+ -Credentials,
 * Access-Control-Expose-Headers) to the response being started, when the
 * request's Origin is accepted. */
void http_cors_add_response_headers(struct http_req *r);
/* The same for a response h2o makes itself (an h2o_req_t *), such as the
 * 413 for a body over max_http_request_size; c may be NULL. */
void http_cors_add_h2o_response_headers(const http_cors_t *c, void *h2o_req);

#endif
