/*
 * wstream.h — answers produced on a worker thread.
 *
 * Some answers must wait (for an index build, a JavaScript reduce) and so
 * cannot be produced on an event loop.  http_run_on_worker hands the request
 * to the server's worker pool; the job answers through an http_wstream_t,
 * which carries the bytes to the loop: a whole JSON answer, or a streamed
 * (chunked) one whose parts the loop sends as the client reads them.
 *
 * Memory stays bounded: http_ws_write blocks while more than
 * HTTP_WS_BUFFER bytes are waiting for the client.  A client that goes
 * away, or a server stop whose drain time runs out, makes http_ws_write
 * return DV_ERR_CLOSED so that the job ends early.
 *
 * The job must not touch the http_req_t (it belongs to the loop): copy what
 * it needs into its argument before handing over.  It calls exactly one of
 * http_ws_send_json / http_ws_send_error / http_ws_start (+ writes), then
 * http_ws_end, which releases the wstream.
 */
#ifndef DV_HTTP_WSTREAM_H
#define DV_HTTP_WSTREAM_H

#include "base/buf.h"
#include "http/server.h"

#include <stddef.h>

#define HTTP_WS_BUFFER (256u << 10)

typedef struct http_wstream http_wstream_t;
typedef void (*http_worker_fn)(http_wstream_t *ws, void *arg);

/* Queues fn(ws, arg) on the server's worker pool.  On failure answers 500
 * itself and returns the error (fn is not called then: the caller still
 * owns arg). */
int http_run_on_worker(http_req_t *r, http_worker_fn fn, void *arg);

/* Adds a response header (copied) before the answer starts. */
int http_ws_add_header(http_wstream_t *ws, const char *name, const char *value);
/* A whole JSON answer (a newline is added, as http_send_json). */
int http_ws_send_json(http_wstream_t *ws, int status, const buf_t *body);
int http_ws_send_error(http_wstream_t *ws, int status, const char *error, const char *reason);
/* 304 Not Modified with the headers added so far. */
int http_ws_not_modified(http_wstream_t *ws);
/* Starts a streamed answer with status and the headers added so far. */
int http_ws_start(http_wstream_t *ws, int status);
/* Appends bytes of a started stream; DV_ERR_CLOSED when nobody will read
 * them any more. */
int http_ws_write(http_wstream_t *ws, const void *p, size_t n);
/* Finishes the answer (ends a stream; answers 500 if nothing was sent)
 * and releases ws. */
void http_ws_end(http_wstream_t *ws);

#endif
