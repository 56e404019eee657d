/*
 * workers.c — the job pool (see workers.h): one mutex, one condition, a
 * singly linked FIFO.  Jobs are coarse (a whole view query, an index
 * build), so one lock is not a bottleneck.
 */
#include "base/workers.h"

#include "base/status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    workers_job_fn fn;
    void *arg;
    struct job *next;
} job;

struct workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    int stopping;
    size_t n;
    pthread_t *tids;
};

static void *worker_main(void *arg)
{
    workers_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        job *j = w->head;
        if (!j)
            break; /* stopping and drained */
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int workers_start(size_t n, const char *prefix, workers_t **out)
{
    *out = NULL;
    workers_t *w = calloc(1, sizeof *w);
    if (!w || !(w->tids = calloc(n ? n : 1, sizeof *w->tids))) {
        free(w);
        return DV_ERR_NOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    for (size_t i = 0; i < (n ? n : 1); i++) {
        if (pthread_create(&w->tids[i], NULL, worker_main, w) != 0) {
            workers_stop(w);
            return DV_ERR_NOMEM;
        }
        w->n++;
        char name[32]; /* the kernel keeps 15 bytes of it */
        snprintf(name, sizeof name, "%.10s-%u", prefix ? prefix : "worker", (unsigned)(i % 1000));
        name[15] = 0;
        pthread_setname_np(w->tids[i], name);
    }
    *out = w;
    return DV_OK;
}

int workers_submit(workers_t *w, workers_job_fn fn, void *arg)
{
    job *j = malloc(sizeof *j);
    if (!j)
        return DV_ERR_NOMEM;
    *j = (job){fn, arg, NULL};
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        free(j);
        return DV_ERR_CLOSED;
    }
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return DV_OK;
}

void workers_stop(workers_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < w->n; i++)
        pthread_join(w->tids[i], NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->tids);
    free(w);
}
