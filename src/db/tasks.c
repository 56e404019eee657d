/*
 * tasks.c — background work of the db layer and the registry behind
 * /_active_tasks: compaction threads, and the commit hook around writes.
 *
 * The registry is a process-wide list under one mutex: tasks are few (one
 * per running compaction, index build or replication) and the list is read
 * only by /_active_tasks, so a linked list and a lock cost nothing that
 * matters.  A task's fields are written through db_task_progress under the
 * same lock, so a reader never sees a torn row.
 */
#include "db/db_int.h"

#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct db_task {
    struct db_task *next;
    uint64_t id;
    char type[32];
    char phase[32];
    char *dbname;
    uint64_t done, total;
    time_t started_on, updated_on;
};

static pthread_mutex_t tasks_mu = PTHREAD_MUTEX_INITIALIZER;
static db_task *tasks_head;
static uint64_t tasks_next_id = 100;

db_task *db_task_begin(const char *type, const char *dbname, const char *phase)
{
    db_task *t = calloc(1, sizeof *t);
    if (!t || !(t->dbname = strdup(dbname ? dbname : ""))) {
        free(t);
        return NULL;
    }
    snprintf(t->type, sizeof t->type, "%s", type);
    snprintf(t->phase, sizeof t->phase, "%s", phase ? phase : "");
    t->started_on = t->updated_on = time(NULL);
    pthread_mutex_lock(&tasks_mu);
    t->id = tasks_next_id++;
    t->next = tasks_head;
    tasks_head = t;
    pthread_mutex_unlock(&tasks_mu);
    return t;
}

void db_task_progress(db_task *t, uint64_t done, uint64_t total)
{
    if (!t)
        return;
    pthread_mutex_lock(&tasks_mu);
    t->done = done;
    t->total = total;
    t->updated_on = time(NULL);
    pthread_mutex_unlock(&tasks_mu);
}

void db_task_end(db_task *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&tasks_mu);
    db_task **pp = &tasks_head;
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp)
        *pp = t->next;
    pthread_mutex_unlock(&tasks_mu);
    free(t->dbname);
    free(t);
}

int db_tasks_json(buf_t *out)
{
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_array(&w);
    pthread_mutex_lock(&tasks_mu);
    for (db_task *t = tasks_head; t; t = t->next) {
        char pid[48];
        snprintf(pid, sizeof pid, "<0.%llu.0>", (unsigned long long)t->id);
        uint64_t pct = t->total ? t->done * 100 / t->total : 0;
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "changes_done");
        json_write_u64(&w, t->done);
        json_write_key_cstr(&w, "database");
        json_write_cstr(&w, t->dbname);
        json_write_key_cstr(&w, "node");
        json_write_cstr(&w, "nonode@nohost");
        json_write_key_cstr(&w, "phase");
        json_write_cstr(&w, t->phase);
        json_write_key_cstr(&w, "pid");
        json_write_cstr(&w, pid);
        json_write_key_cstr(&w, "process_status");
        json_write_cstr(&w, "waiting");
        json_write_key_cstr(&w, "progress");
        json_write_u64(&w, pct > 100 ? 100 : pct);
        json_write_key_cstr(&w, "started_on");
        json_write_i64(&w, (int64_t)t->started_on);
        json_write_key_cstr(&w, "total_changes");
        json_write_u64(&w, t->total);
        json_write_key_cstr(&w, "type");
        json_write_cstr(&w, t->type);
        json_write_key_cstr(&w, "updated_on");
        json_write_i64(&w, (int64_t)t->updated_on);
        json_write_end_object(&w);
    }
    pthread_mutex_unlock(&tasks_mu);
    json_write_end_array(&w);
    return w.err;
}

/* ---- commit hook around writes ----------------------------------------- */

typedef struct write_ctx {
    db_t *db;
    store_write *w;
    store_write_done done;
    void *arg;
} write_ctx;

static void write_done(void *arg, int status)
{
    write_ctx c = *(write_ctx *)arg;
    free(arg);
    uint64_t seq = 0;
    if (status == DV_OK)
        for (size_t i = 0; i < c.w->ndocs; i++)
            if (c.w->docs[i].status == DV_OK && c.w->docs[i].seq > seq)
                seq = c.w->docs[i].seq;
    /* The hook runs before done: done may release the caller's reference,
     * after which db (and its name) may be gone. */
    if (seq)
        db_run_commit_hook(c.db->server, c.db->name, seq);
    c.done(c.arg, status);
}

void db_run_commit_hook(db_server *s, const char *name, uint64_t seq)
{
    pthread_mutex_lock(&s->mu);
    db_commit_hook hook = s->hook;
    void *hook_arg = s->hook_arg;
    if (hook)
        s->hook_calls++;
    pthread_mutex_unlock(&s->mu);
    if (!hook)
        return;
    hook(hook_arg, name, seq);
    pthread_mutex_lock(&s->mu);
    if (--s->hook_calls == 0)
        pthread_cond_broadcast(&s->hook_cv);
    pthread_mutex_unlock(&s->mu);
}

int db_write_async(db_t *db, store_write *w, store_write_done done, void *arg)
{
    write_ctx *c = malloc(sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    *c = (write_ctx){db, w, done, arg};
    int rc = store_dbfile_write_async(db->file, w, write_done, c);
    if (rc != DV_OK)
        free(c);
    return rc;
}

typedef struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
} sync_wait;

static void sync_done(void *arg, int status)
{
    sync_wait *sw = arg;
    pthread_mutex_lock(&sw->mu);
    sw->status = status;
    sw->done = 1;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
}

int db_write(db_t *db, store_write *w)
{
    sync_wait sw = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, DV_OK};
    int rc = db_write_async(db, w, sync_done, &sw);
    if (rc == DV_OK) {
        pthread_mutex_lock(&sw.mu);
        while (!sw.done)
            pthread_cond_wait(&sw.cv, &sw.mu);
        pthread_mutex_unlock(&sw.mu);
        rc = sw.status;
    }
    pthread_cond_destroy(&sw.cv);
    pthread_mutex_destroy(&sw.mu);
    return rc;
}

/* ---- compaction ---------------------------------------------------------- */

static void compact_progress(void *arg, uint64_t done, uint64_t total)
{
    db_task_progress(arg, done, total);
}

static void *compact_main(void *arg)
{
    db_t *db = arg;
    db_task *t = db_task_begin("database_compaction", db->name, "document_copy");
    log_info("db: compaction of %s started", db->name);
    int rc = store_dbfile_compact(db->file, compact_progress, t);
    if (rc == DV_OK)
        log_info("db: compaction of %s finished", db->name);
    else if (rc != DV_ERR_BUSY)
        log_error("db: compaction of %s failed: %s", db->name, dv_strerror(rc));
    db_task_end(t);
    db_server *s = db->server;
    db_release(db);
    pthread_mutex_lock(&s->mu);
    s->ncompacting--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int db_compact_start(db_t *db)
{
    db_server *s = db->server;
    store_dbinfo info;
    store_snap *snap;
    int rc = store_dbfile_snapshot(db->file, &snap);
    if (rc != DV_OK)
        return rc;
    store_snap_info(snap, &info);
    store_snap_release(snap);
    if (info.compact_running)
        return DV_ERR_BUSY;
    pthread_mutex_lock(&s->mu);
    db->refs++;
    s->ncompacting++;
    pthread_mutex_unlock(&s->mu);
    pthread_t tid;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, compact_main, db) == 0 ? DV_OK : DV_ERR_NOMEM;
    pthread_attr_destroy(&attr);
    if (rc != DV_OK) {
        db_release(db);
        pthread_mutex_lock(&s->mu);
        s->ncompacting--;
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}
