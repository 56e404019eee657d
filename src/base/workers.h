/*
 * workers.h — a fixed pool of threads running submitted jobs in FIFO order.
 *
 * For work that may block (waiting for an index build, a query-server
 * call, a long read) and so must stay off the HTTP event loops.  Jobs run
 * to completion; a pool never cancels one.  Stopping the pool lets the
 * queued jobs run first, then joins the threads.
 */
#ifndef DV_BASE_WORKERS_H
#define DV_BASE_WORKERS_H

#include <stddef.h>

typedef struct workers workers_t;
typedef void (*workers_job_fn)(void *arg);

/* Starts n threads (n >= 1) named prefix-N for debuggers. */
int workers_start(size_t n, const char *prefix, workers_t **out);
/* Queues fn(arg); DV_ERR_CLOSED after workers_stop began, DV_ERR_NOMEM. */
int workers_submit(workers_t *w, workers_job_fn fn, void *arg);
/* Runs what is queued, joins the threads, frees the pool. */
void workers_stop(workers_t *w);

#endif
