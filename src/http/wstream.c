/*
 * wstream.c — answers produced on worker threads (see wstream.h).
 *
 * Shared state (one mutex, one condition) between the job's thread and the
 * request's loop:
 *   - the job fills `pending` (bytes not yet taken by the loop) and sets
 *     `mode` (what kind of answer) and `ended`;
 *   - the loop's channel callback starts the answer once `mode` is set, and
 *     the stream's fill takes `pending` whole (swapping buffers: no copy);
 *   - `gone` says nobody will read: the client left, or the server gave up.
 * The loop is poked only when it waits for data (`loop_waiting`) or has
 * not started the answer yet, so a fast job does not flood the loop.
 *
 * Lifetime: three references — the job's (dropped by http_ws_end), the
 * channel's (dropped by its last delivery), the stream's (taken when the
 * stream starts, dropped by its dispose).
 */
#include "http/wstream.h"

#include "base/log.h"
#include "base/status.h"
#include "base/workers.h"
#include "http/json_out.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { WS_NONE = 0, WS_WHOLE, WS_STREAM, WS_NOT_MODIFIED };

typedef struct ws_header {
    char *name, *value;
} ws_header;

struct http_wstream {
    atomic_int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    http_chan_t *chan;
    http_worker_fn fn;
    void *arg;
    /* under mu */
    int mode;
    int status;
    ws_header *headers;
    size_t nheaders;
    buf_t pending;
    int ended;
    int gone;
    int started;      /* the loop answered / started the stream */
    int loop_waiting; /* the stream's fill found nothing and waits */
};

static void ws_unref(http_wstream_t *ws)
{
    if (atomic_fetch_sub(&ws->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ws->nheaders; i++) {
        free(ws->headers[i].name);
        free(ws->headers[i].value);
    }
    free(ws->headers);
    buf_free(&ws->pending);
    pthread_cond_destroy(&ws->cv);
    pthread_mutex_destroy(&ws->mu);
    free(ws);
}

/* ---- the loop's side --------------------------------------------------------- */

static int ws_fill(http_req_t *r, void *ctx, buf_t *out)
{
    http_wstream_t *ws = ctx;
    (void)r;
    pthread_mutex_lock(&ws->mu);
    buf_t t = *out;
    *out = ws->pending; /* take everything: the job refills a fresh buffer */
    ws->pending = t;
    buf_reset(&ws->pending);
    int ended = ws->ended, empty = out->len == 0;
    if (empty && !ended)
        ws->loop_waiting = 1;
    pthread_cond_broadcast(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    if (ended)
        return HTTP_STREAM_DONE;
    return empty ? HTTP_STREAM_WAIT : HTTP_STREAM_MORE;
}

static void ws_stream_dispose(void *ctx)
{
    http_wstream_t *ws = ctx;
    pthread_mutex_lock(&ws->mu);
    ws->gone = 1;
    pthread_cond_broadcast(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    ws_unref(ws);
}

static void ws_on_chan(http_req_t *r, void *arg, int last)
{
    http_wstream_t *ws = arg;
    pthread_mutex_lock(&ws->mu);
    if (!r) {
        ws->gone = 1;
        pthread_cond_broadcast(&ws->cv);
    }
    int start = r && ws->mode != WS_NONE && !ws->started;
    int wake = r && ws->started && ws->mode == WS_STREAM;
    buf_t body = BUF_INIT;
    if (start) {
        ws->started = 1;
        for (size_t i = 0; i < ws->nheaders; i++)
            http_add_header(r, ws->headers[i].name, ws->headers[i].value);
        if (ws->mode == WS_WHOLE) {
            body = ws->pending;
            buf_init(&ws->pending);
        }
    }
    int mode = ws->mode, status = ws->status;
    if (start && mode == WS_STREAM)
        atomic_fetch_add(&ws->refs, 1); /* the stream's */
    pthread_mutex_unlock(&ws->mu);
    if (start && mode == WS_WHOLE)
        http_send_json(r, status, &body);
    else if (start && mode == WS_NOT_MODIFIED)
        http_send_not_modified(r);
    else if (start)
        http_stream_start(r, status, ws_fill, ws_stream_dispose, ws);
    else if (wake)
        http_stream_wake(r);
    buf_free(&body);
    if (last) {
        if (r && !start && !ws->started)
            http_send_internal(r, DV_ERR_INVALID); /* the job ended without answering */
        ws_unref(ws);
    }
}

static void ws_on_cancel(http_req_t *r, void *arg, int last)
{
    http_wstream_t *ws = arg;
    (void)r;
    (void)last;
    pthread_mutex_lock(&ws->mu);
    ws->gone = 1;
    pthread_cond_broadcast(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
}

/* ---- the job's side ------------------------------------------------------------ */

static void ws_job(void *arg)
{
    http_wstream_t *ws = arg;
    ws->fn(ws, ws->arg);
}

int http_run_on_worker(http_req_t *r, http_worker_fn fn, void *arg)
{
    http_wstream_t *ws = calloc(1, sizeof *ws);
    if (!ws) {
        http_send_internal(r, DV_ERR_NOMEM);
        return DV_ERR_NOMEM;
    }
    atomic_init(&ws->refs, 2);
    pthread_mutex_init(&ws->mu, NULL);
    pthread_cond_init(&ws->cv, NULL);
    ws->fn = fn;
    ws->arg = arg;
    if (!(ws->chan = http_chan_open(r, ws_on_chan, ws_on_cancel, ws))) {
        pthread_cond_destroy(&ws->cv);
        pthread_mutex_destroy(&ws->mu);
        free(ws);
        http_send_internal(r, DV_ERR_NOMEM);
        return DV_ERR_NOMEM;
    }
    int rc = workers_submit(http_server_workers(r->server), ws_job, ws);
    if (rc != DV_OK) {
        /* No job will run: answer now and let the channel close. */
        http_send_error(r, 503, "service_unavailable", "The server is stopping.");
        pthread_mutex_lock(&ws->mu);
        ws->started = 1;
        pthread_mutex_unlock(&ws->mu);
        http_chan_close(ws->chan);
        ws_unref(ws); /* the job's */
    }
    return rc;
}

int http_ws_add_header(http_wstream_t *ws, const char *name, const char *value)
{
    pthread_mutex_lock(&ws->mu);
    int rc = DV_ERR_NOMEM;
    ws_header *nh = realloc(ws->headers, (ws->nheaders + 1) * sizeof *nh);
    if (nh) {
        ws->headers = nh;
        nh[ws->nheaders].name = strdup(name);
        nh[ws->nheaders].value = strdup(value);
        if (nh[ws->nheaders].name && nh[ws->nheaders].value) {
            ws->nheaders++;
            rc = DV_OK;
        } else {
            free(nh[ws->nheaders].name);
            free(nh[ws->nheaders].value);
        }
    }
    pthread_mutex_unlock(&ws->mu);
    return rc;
}

int http_ws_send_json(http_wstream_t *ws, int status, const buf_t *body)
{
    pthread_mutex_lock(&ws->mu);
    int rc = DV_ERR_INVALID;
    if (ws->mode == WS_NONE) {
        ws->mode = WS_WHOLE;
        ws->status = status;
        rc = body ? buf_append(&ws->pending, body->data, body->len) : DV_OK;
    }
    pthread_mutex_unlock(&ws->mu);
    if (rc == DV_OK)
        http_chan_poke(ws->chan);
    return rc;
}

int http_ws_not_modified(http_wstream_t *ws)
{
    pthread_mutex_lock(&ws->mu);
    int rc = ws->mode == WS_NONE ? DV_OK : DV_ERR_INVALID;
    if (rc == DV_OK) {
        ws->mode = WS_NOT_MODIFIED;
        ws->status = 304;
    }
    pthread_mutex_unlock(&ws->mu);
    if (rc == DV_OK)
        http_chan_poke(ws->chan);
    return rc;
}

int http_ws_send_error(http_wstream_t *ws, int status, const char *error, const char *reason)
{
    buf_t b = BUF_INIT;
    int rc = http_json_error(&b, error, reason);
    if (rc == DV_OK)
        rc = http_ws_send_json(ws, status, &b);
    buf_free(&b);
    return rc;
}

int http_ws_start(http_wstream_t *ws, int status)
{
    pthread_mutex_lock(&ws->mu);
    int rc = ws->mode == WS_NONE ? DV_OK : DV_ERR_INVALID;
    if (rc == DV_OK) {
        ws->mode = WS_STREAM;
        ws->status = status;
    }
    pthread_mutex_unlock(&ws->mu);
    if (rc == DV_OK)
        http_chan_poke(ws->chan);
    return rc;
}

int http_ws_write(http_wstream_t *ws, const void *p, size_t n)
{
    pthread_mutex_lock(&ws->mu);
    while (!ws->gone && ws->pending.len >= HTTP_WS_BUFFER)
        pthread_cond_wait(&ws->cv, &ws->mu);
    int rc = ws->gone ? DV_ERR_CLOSED : ws->mode != WS_STREAM ? DV_ERR_INVALID : buf_append(&ws->pending, p, n);
    int poke = rc == DV_OK && ws->loop_waiting;
    if (poke)
        ws->loop_waiting = 0;
    pthread_mutex_unlock(&ws->mu);
    if (poke)
        http_chan_poke(ws->chan);
    return rc;
}

void http_ws_end(http_wstream_t *ws)
{
    pthread_mutex_lock(&ws->mu);
    ws->ended = 1;
    pthread_mutex_unlock(&ws->mu);
    /* The last delivery starts a not-yet-started answer, wakes the stream
     * for its final part, or answers 500 when nothing was produced. */
    http_chan_close(ws->chan);
    ws_unref(ws);
}
