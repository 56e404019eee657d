/*
 * dbs.c — the catalogue of databases: names ↔ files, open handles with
 * reference counts, the open-database limit, create, delete, list (db.h).
 *
 * One mutex (s->mu) guards the name table and every entry's open state and
 * reference count.  Opening or closing a store file happens under it: both
 * are short (open reads the last header from the end of the file, close
 * joins an idle writer) and doing them under the lock is what makes "one
 * open handle per name" and "delete unlinks the file nobody can reopen"
 * simple to see.  Entries live in a flat array searched linearly by a
 * hash-first compare: O(n) per open with n databases, a few microseconds at
 * ten thousand names; a hash index is the upgrade when that shows up in
 * profiles.
 *
 * Invariants (under s->mu):
 *   - every entry names a file that exists in the data directory;
 *   - entry->db is non-NULL iff the database is open; refs counts the
 *     handles given out (db_open/db_create) and not released;
 *   - a deleted database's db_t leaves the table at once (detached) and is
 *     closed by its last db_release.
 */
#include "db/db_int.h"
#include "store/file.h"

#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <xxhash.h>

#define DB_SUFFIX ".divan"

int db_name_valid(const char *name, size_t n)
{
    static const char *const system[] = {"_users", "_replicator", "_global_changes"};
    for (size_t i = 0; i < sizeof system / sizeof system[0]; i++)
        if (n == strlen(system[i]) && !memcmp(name, system[i], n))
            return 1;
    if (n == 0 || n > 238 || name[0] < 'a' || name[0] > 'z')
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c && strchr("_$()+-/", c))))
            return 0;
    }
    return 1;
}

/* ---- file names -------------------------------------------------------- */

/* "<name, '/' as %2F>.<16 hex>.divan" under dir. */
static char *file_path(const char *dir, const char *name, uint64_t instance)
{
    buf_t b = BUF_INIT;
    int rc = buf_printf(&b, "%s/", dir);
    for (const char *p = name; rc == DV_OK && *p; p++)
        rc = *p == '/' ? buf_append_str(&b, "%2F") : buf_append_byte(&b, (uint8_t)*p);
    if (rc == DV_OK)
        rc = buf_printf(&b, ".%016" PRIx64 DB_SUFFIX, instance);
    if (rc == DV_OK)
        rc = buf_append_byte(&b, 0);
    if (rc != DV_OK) {
        buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* Parses a directory entry name; 1 with *name (malloc'd) and *instance
 * when it is a database file. */
static int parse_file_name(const char *fn, char **name, uint64_t *instance)
{
    size_t n = strlen(fn), sl = strlen(DB_SUFFIX);
    if (n < sl + 18 || strcmp(fn + n - sl, DB_SUFFIX) != 0)
        return 0;
    const char *stamp = fn + n - sl - 16;
    if (stamp[-1] != '.')
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = stamp[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return 0;
        v = v << 4 | (uint64_t)d;
    }
    buf_t b = BUF_INIT;
    const char *end = stamp - 1;
    for (const char *p = fn; p < end; p++) {
        if (end - p >= 3 && !memcmp(p, "%2F", 3)) {
            if (buf_append_byte(&b, '/'))
                goto fail;
            p += 2;
        } else if (buf_append_byte(&b, (uint8_t)*p)) {
            goto fail;
        }
    }
    if (buf_append_byte(&b, 0))
        goto fail;
    if (!db_name_valid((const char *)b.data, b.len - 1))
        goto fail;
    *name = (char *)b.data;
    *instance = v;
    return 1;
fail:
    buf_free(&b);
    return 0;
}

/* "<path without .divan>.views": the folder of the database's indexes. */
static char *index_dir_of(const char *path)
{
    size_t n = strlen(path), sl = strlen(DB_SUFFIX);
    char *d = malloc(n - sl + 7);
    if (d) {
        memcpy(d, path, n - sl);
        memcpy(d + n - sl, ".views", 7);
    }
    return d;
}

/* Removes a folder of index files (one level deep; best effort). */
static void remove_index_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = malloc(strlen(dir) + strlen(de->d_name) + 2);
        if (p) {
            sprintf(p, "%s/%s", dir, de->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
    if (rmdir(dir) != 0 && errno != ENOENT)
        log_warn("db: cannot remove %s: %s", dir, strerror(errno));
}

static uint64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* ---- the name table ------------------------------------------------------ */

static db_entry *find(db_server *s, const char *name)
{
    uint64_t h = XXH3_64bits(name, strlen(name));
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].hash == h && !strcmp(s->e[i].name, name))
            return &s->e[i];
    return NULL;
}

static int add_entry(db_server *s, char *name, char *path, uint64_t instance)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        db_entry *ne = realloc(s->e, nc * sizeof *ne);
        if (!ne)
            return DV_ERR_NOMEM;
        s->e = ne;
        s->cap = nc;
    }
    db_entry *e = &s->e[s->n++];
    memset(e, 0, sizeof *e);
    e->name = name;
    e->path = path;
    e->instance = instance;
    e->hash = XXH3_64bits(name, strlen(name));
    return DV_OK;
}

/* Removes entry e (swap with the last); its open db, if any, must already
 * be detached or closed. */
static void remove_entry(db_server *s, db_entry *e)
{
    free(e->name);
    free(e->path);
    size_t i = (size_t)(e - s->e);
    s->e[i] = s->e[--s->n];
}

/* Index folders whose database file is gone (a crash between deleting
 * the file and its folder) are removed. */
static void remove_orphan_index_dirs(db_server *s)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n <= 6 || strcmp(de->d_name + n - 6, ".views") != 0)
            continue;
        char *path = malloc(strlen(s->dir) + n + 2);
        if (!path)
            break;
        sprintf(path, "%s/%s", s->dir, de->d_name);
        int live = 0;
        for (size_t i = 0; i < s->n && !live; i++) {
            char *idir = index_dir_of(s->e[i].path);
            live = idir && !strcmp(idir, path);
            free(idir);
        }
        if (!live) {
            log_warn("db: removing index folder %s of a deleted database", path);
            remove_index_dir(path);
        }
        free(path);
    }
    closedir(d);
}

/* Lists the data directory.  Two incarnations of one name are what a
 * crash between "create new file" and "unlink old file" leaves: keep the
 * newer. */
static int scan_dir(db_server *s)
{
    DIR *d = opendir(s->dir);
    if (!d) {
        log_error("db: cannot list %s: %s", s->dir, strerror(errno));
        return DV_ERR_IO;
    }
    int rc = DV_OK;
    struct dirent *de;
    while (rc == DV_OK && (de = readdir(d)) != NULL) {
        char *name;
        uint64_t inst;
        if (!parse_file_name(de->d_name, &name, &inst))
            continue;
        char *path = file_path(s->dir, name, inst);
        if (!path) {
            free(name);
            rc = DV_ERR_NOMEM;
            break;
        }
        db_entry *old = find(s, name);
        if (old) {
            const char *stale = old->instance < inst ? old->path : path;
            log_warn("db: two files for database %s; removing the older %s", name, stale);
            unlink(stale);
            if (old->instance < inst) {
                free(old->path);
                old->path = path;
                old->instance = inst;
            } else {
                free(path);
            }
            free(name);
            continue;
        }
        if ((rc = add_entry(s, name, path, inst)) != DV_OK) {
            free(name);
            free(path);
        }
    }
    closedir(d);
    if (rc == DV_OK)
        remove_orphan_index_dirs(s);
    return rc;
}

int db_server_open(const db_server_opts *o, db_server **out)
{
    *out = NULL;
    db_server *s = calloc(1, sizeof *s);
    if (!s)
        return DV_ERR_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->hook_cv, NULL);
    int rc = DV_ERR_NOMEM;
    s->dir = strdup(o->dir);
    if (!s->dir)
        goto fail;
    s->max_open = o->max_dbs_open ? o->max_dbs_open : 500;
    s->durability = o->durability;
    s->sync_interval_ms = o->sync_interval_ms;
    s->compression = o->compression;
    if (o->default_security && !(s->default_security = strdup(o->default_security)))
        goto fail;
    if (o->map_resident_bytes)
        store_file_map_trim = o->map_resident_bytes;
    if ((rc = store_btree_cache_new(o->cache_bytes ? o->cache_bytes : DB_CACHE_BYTES_DEFAULT, &s->cache)) != DV_OK)
        goto fail;
    if ((rc = scan_dir(s)) != DV_OK)
        goto fail;
    *out = s;
    return DV_OK;
fail:
    db_server_close(s);
    return rc;
}

static void close_db(db_t *db)
{
    if (db->file) {
        int rc = store_dbfile_close(db->file);
        if (rc != DV_OK)
            log_error("db: closing %s: %s", db->name, dv_strerror(rc));
    }
    free(db->index_dir);
    free(db->name);
    free(db);
}

void db_server_close(db_server *s)
{
    if (!s)
        return;
    /* Compactions hold references: let them finish (store compaction has
     * no cancel point; a crash instead would be safe too, see compact.c). */
    pthread_mutex_lock(&s->mu);
    while (s->ncompacting)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->n; i++) {
        if (s->e[i].db) {
            assert(s->e[i].db->refs == 0);
            close_db(s->e[i].db);
        }
        free(s->e[i].name);
        free(s->e[i].path);
    }
    free(s->e);
    if (s->cache)
        store_btree_cache_free(s->cache);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->hook_cv);
    pthread_mutex_destroy(&s->mu);
    free(s->default_security);
    free(s->dir);
    free(s);
}

void db_server_set_commit_hook(db_server *s, db_commit_hook fn, void *arg)
{
    pthread_mutex_lock(&s->mu);
    s->hook = fn;
    s->hook_arg = arg;
    /* Whoever unsets the hook may free what arg points to next: wait for
     * the calls already running. */
    while (s->hook_calls)
        pthread_cond_wait(&s->hook_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

int db_server_configure(db_server *s, size_t max_dbs_open, const char *default_security)
{
    char *sec = default_security ? strdup(default_security) : NULL;
    if (default_security && !sec)
        return DV_ERR_NOMEM;
    /* Both are read under s->mu only (open_entry), so the old string can
     * go once the swap is done. */
    pthread_mutex_lock(&s->mu);
    s->max_open = max_dbs_open ? max_dbs_open : 500;
    char *old = s->default_security;
    s->default_security = sec;
    pthread_mutex_unlock(&s->mu);
    free(old);
    return DV_OK;
}

/* ---- open handles -------------------------------------------------------- */

/* Closes idle open databases, least recently used first, until fewer than
 * max_open are open.  O(n) per victim. */
static void evict_idle(db_server *s)
{
    while (s->nopen >= s->max_open) {
        db_entry *victim = NULL;
        for (size_t i = 0; i < s->n; i++) {
            db_entry *e = &s->e[i];
            if (e->db && e->db->refs == 0 && (!victim || e->db->last_used < victim->db->last_used))
                victim = e;
        }
        if (!victim)
            return; /* every open database is in use: go over the limit */
        close_db(victim->db);
        victim->db = NULL;
        s->nopen--;
    }
}

static int open_entry(db_server *s, db_entry *e, int create, db_t **out)
{
    if (!e->db) {
        evict_idle(s);
        db_t *db = calloc(1, sizeof *db);
        if (!db)
            return DV_ERR_NOMEM;
        db->server = s;
        db->instance = e->instance;
        if (!(db->name = strdup(e->name)) || !(db->index_dir = index_dir_of(e->path))) {
            free(db->name);
            free(db);
            return DV_ERR_NOMEM;
        }
        store_dbfile_options fo = {0};
        fo.cache = s->cache;
        fo.create = create;
        fo.excl = create;
        fo.durability = s->durability;
        fo.sync_interval_ms = s->sync_interval_ms;
        fo.compression = s->compression;
        fo.initial_security = s->default_security;
        int rc = store_dbfile_open(e->path, &fo, &db->file);
        if (rc != DV_OK) {
            log_error("db: cannot open %s (%s): %s", e->name, e->path, dv_strerror(rc));
            free(db->index_dir);
            free(db->name);
            free(db);
            return rc;
        }
        e->db = db;
        s->nopen++;
    }
    e->db->refs++;
    e->db->last_used = ++s->clock;
    *out = e->db;
    return DV_OK;
}

int db_open(db_server *s, const char *name, db_t **out)
{
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    db_entry *e = find(s, name);
    int rc = e ? open_entry(s, e, 0, out) : DV_ERR_NOTFOUND;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int db_create(db_server *s, const char *name, db_t **out)
{
    if (out)
        *out = NULL;
    if (!db_name_valid(name, strlen(name)))
        return DV_ERR_INVALID;
    pthread_mutex_lock(&s->mu);
    int rc = DV_ERR_EXISTS;
    db_t *db = NULL;
    if (find(s, name))
        goto done;
    rc = DV_ERR_NOMEM;
    uint64_t inst = now_us();
    if (inst <= s->last_instance)
        inst = s->last_instance + 1;
    s->last_instance = inst;
    char *nm = strdup(name), *path = file_path(s->dir, name, inst);
    if (!nm || !path || (rc = add_entry(s, nm, path, inst)) != DV_OK) {
        free(nm);
        free(path);
        goto done;
    }
    db_entry *e = &s->e[s->n - 1];
    if ((rc = open_entry(s, e, 1, &db)) != DV_OK) {
        unlink(e->path);
        remove_entry(s, e);
        goto done;
    }
    log_info("db: created %s", name);
    if (out)
        *out = db;
    else
        db->refs--;
done:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void db_release(db_t *db)
{
    if (!db)
        return;
    db_server *s = db->server;
    pthread_mutex_lock(&s->mu);
    assert(db->refs > 0);
    int last = --db->refs == 0 && db->detached;
    pthread_mutex_unlock(&s->mu);
    if (last)
        close_db(db); /* a deleted database: nobody can find it any more */
}

int db_delete(db_server *s, const char *name)
{
    pthread_mutex_lock(&s->mu);
    db_entry *e = find(s, name);
    if (!e) {
        pthread_mutex_unlock(&s->mu);
        return DV_ERR_NOTFOUND;
    }
    db_t *idle = NULL;
    if (e->db) {
        s->nopen--;
        if (e->db->refs == 0)
            idle = e->db;
        else
            e->db->detached = 1;
    }
    if (unlink(e->path) != 0 && errno != ENOENT)
        log_error("db: cannot remove %s: %s", e->path, strerror(errno));
    char *idir = index_dir_of(e->path);
    if (idir) {
        remove_index_dir(idir); /* open index files of a live handle stay readable until closed */
        free(idir);
    }
    log_info("db: deleted %s", name);
    remove_entry(s, e);
    pthread_mutex_unlock(&s->mu);
    if (idle)
        close_db(idle);
    /* Feeds waiting on this name wake and find it gone (db.h). */
    db_run_commit_hook(s, name, 0);
    return DV_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int db_list(db_server *s, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    pthread_mutex_lock(&s->mu);
    char **v = calloc(s->n ? s->n : 1, sizeof *v);
    size_t k = 0;
    int rc = v ? DV_OK : DV_ERR_NOMEM;
    for (; rc == DV_OK && k < s->n; k++)
        if (!(v[k] = strdup(s->e[k].name)))
            rc = DV_ERR_NOMEM;
    pthread_mutex_unlock(&s->mu);
    if (rc != DV_OK) {
        db_names_free(v, k);
        return rc;
    }
    qsort(v, k, sizeof *v, cmp_names);
    *names = v;
    *n = k;
    return DV_OK;
}

void db_names_free(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

const char *db_name(const db_t *db) { return db->name; }
const char *db_index_dir(const db_t *db) { return db->index_dir; }
uint64_t db_instance(const db_t *db) { return db->instance; }
store_dbfile *db_file(db_t *db) { return db->file; }

int db_snapshot(db_t *db, store_snap **out) { return store_dbfile_snapshot(db->file, out); }
