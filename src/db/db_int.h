/*
 * db_int.h — internals shared by the files of src/db/.  Nothing else includes it.
 */
#ifndef DV_DB_DB_INT_H
#define DV_DB_DB_INT_H

#include "db/db.h"

#include <pthread.h>
#include <stdatomic.h>

struct db {
    db_server *server;
    char *name;
    uint64_t instance;
    char *index_dir;    /* "<file path without .divan>.views" */
    store_dbfile *file;
    size_t refs;        /* under server->mu */
    uint64_t last_used; /* under server->mu: LRU clock */
    int detached;       /* deleted while referenced: closed by the last release */
};

typedef struct db_entry {
    char *name;
    char *path;
    uint64_t instance;
    uint64_t hash;
    db_t *db; /* open handle or NULL */
} db_entry;

struct db_server {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* ncompacting reached 0 */
    size_t ncompacting;
    char *dir;
    db_entry *e;
    size_t n, cap;
    size_t nopen, max_open;
    uint64_t clock;
    uint64_t last_instance;
    store_btree_cache *cache;
    char *default_security; /* NULL: "{}" */
    int durability;
    unsigned sync_interval_ms;
    int compression;
    db_commit_hook hook;
    void *hook_arg;
    size_t hook_calls; /* hooks running now (outside mu) */
    pthread_cond_t hook_cv; /* hook_calls reached 0 */
};

/* Runs the commit hook (if set) outside s->mu, counted in hook_calls so
 * that unsetting it waits for this call.  Caller must not hold s->mu. */
void db_run_commit_hook(db_server *s, const char *name, uint64_t seq);

#endif
