/*
 * engine_sqlite.c — SQLite as a storage-benchmark anchor.
 *
 * Settings: journal_mode=WAL, synchronous=FULL (the WAL is synced at every
 * commit: the durability divan's STORE_DURABLE_ALWAYS gives), default page
 * cache, busy_timeout 60 s.  Schema: docs(id TEXT PRIMARY KEY, body BLOB),
 * an ordinary rowid table with its primary-key index, as an application
 * would write it (WITHOUT ROWID suits rows far smaller than 1 KiB).
 *
 * Concurrent writers each get their own connection (a connection is not
 * shared between threads) and commit in autocommit mode; SQLite lets one
 * writer in at a time and the others wait in the busy handler, so it has no
 * group commit either.
 *
 * Compaction is VACUUM followed by a TRUNCATE checkpoint, so that the
 * rewritten pages reach the database file and the WAL is emptied; the
 * size afterwards is database file + WAL.
 */
#include "base/status.h"
#include "engine.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

typedef struct sqlite_conn {
    sqlite3 *db;
    sqlite3_stmt *insert; /* INSERT OR REPLACE */
} sqlite_conn;

typedef struct sqlite_handle {
    sqlite_conn main;
    sqlite3_stmt *get;
    sqlite3_stmt *scan;
    char path[4096];
} sqlite_handle;

static int sqlite_fail(sqlite3 *db, int rc, const char *what)
{
    fprintf(stderr, "sqlite: %s: %s (%d)\n", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
    return DV_ERR_IO;
}

static int sqlite_exec(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? DV_OK : sqlite_fail(db, rc, sql);
}

static void sqlite_conn_close(sqlite_conn *c)
{
    sqlite3_finalize(c->insert);
    sqlite3_close(c->db);
    c->insert = NULL;
    c->db = NULL;
}

static int sqlite_conn_open(const char *path, sqlite_conn *c)
{
    int rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite_fail(c->db, rc, "open");
        goto fail;
    }
    if ((rc = sqlite_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=60000;"
                                 "CREATE TABLE IF NOT EXISTS docs(id TEXT PRIMARY KEY, body BLOB NOT NULL)")) !=
        DV_OK)
        goto fail;
    rc = sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO docs(id, body) VALUES(?1, ?2)", -1, &c->insert, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite_fail(c->db, rc, "prepare insert");
        goto fail;
    }
    return DV_OK;
fail:
    sqlite_conn_close(c);
    return rc;
}

static int sqlite_open(const char *dir, void **out)
{
    sqlite_handle *h = calloc(1, sizeof *h);
    int rc;
    if (!h)
        return DV_ERR_NOMEM;
    snprintf(h->path, sizeof h->path, "%s/bench.sqlite", dir);
    if ((rc = sqlite_conn_open(h->path, &h->main)) != DV_OK)
        goto fail;
    rc = sqlite3_prepare_v2(h->main.db, "SELECT body FROM docs WHERE id = ?1", -1, &h->get, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(h->main.db, "SELECT body FROM docs WHERE id >= ?1 ORDER BY id LIMIT ?2", -1,
                                &h->scan, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite_fail(h->main.db, rc, "prepare");
        goto fail;
    }
    *out = h;
    return DV_OK;
fail:
    sqlite3_finalize(h->get);
    sqlite3_finalize(h->scan);
    sqlite_conn_close(&h->main);
    free(h);
    return rc;
}

static int sqlite_close(void *hp)
{
    sqlite_handle *h = hp;
    sqlite3_finalize(h->get);
    sqlite3_finalize(h->scan);
    sqlite_conn_close(&h->main);
    free(h);
    return DV_OK;
}

static int sqlite_writer_open(void *hp, void **w)
{
    sqlite_handle *h = hp;
    sqlite_conn *c = calloc(1, sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    int rc = sqlite_conn_open(h->path, c);
    if (rc != DV_OK) {
        free(c);
        return rc;
    }
    *w = c;
    return DV_OK;
}

static void sqlite_writer_close(void *w)
{
    sqlite_conn_close(w);
    free(w);
}

/* Binds and runs the insert statement once. */
static int sqlite_insert(sqlite_conn *c, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    int rc;
    sqlite3_bind_text(c->insert, 1, (const char *)key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_blob(c->insert, 2, val, (int)vlen, SQLITE_STATIC);
    /* The busy handler waits for other writers; a snapshot conflict
     * (SQLITE_BUSY without waiting) is retried like an application would. */
    while ((rc = sqlite3_step(c->insert)) == SQLITE_BUSY)
        sqlite3_reset(c->insert);
    sqlite3_reset(c->insert);
    return rc == SQLITE_DONE ? DV_OK : sqlite_fail(c->db, rc, "insert");
}

static int sqlite_put_one(void *w, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    return sqlite_insert(w, key, klen, val, vlen);
}

static int sqlite_put_batch(void *hp, const bench_kv *kv, size_t n, int update)
{
    sqlite_handle *h = hp;
    int rc = sqlite_exec(h->main.db, "BEGIN IMMEDIATE");
    (void)update; /* INSERT OR REPLACE overwrites */
    if (rc != DV_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = sqlite_insert(&h->main, kv[i].key, kv[i].klen, kv[i].val, kv[i].vlen)) != DV_OK) {
            sqlite_exec(h->main.db, "ROLLBACK");
            return rc;
        }
    }
    return sqlite_exec(h->main.db, "COMMIT");
}

static int sqlite_get(void *hp, const uint8_t *key, size_t klen, buf_t *out)
{
    sqlite_handle *h = hp;
    int rc;
    sqlite3_bind_text(h->get, 1, (const char *)key, (int)klen, SQLITE_STATIC);
    rc = sqlite3_step(h->get);
    if (rc == SQLITE_ROW) {
        buf_reset(out);
        rc = buf_append(out, sqlite3_column_blob(h->get, 0), (size_t)sqlite3_column_bytes(h->get, 0));
    } else if (rc == SQLITE_DONE) {
        rc = DV_ERR_NOTFOUND;
    } else {
        rc = sqlite_fail(h->main.db, rc, "get");
    }
    sqlite3_reset(h->get);
    return rc;
}

static int sqlite_scan(void *hp, const uint8_t *start, size_t slen, size_t nrows, buf_t *scratch, size_t *rows)
{
    sqlite_handle *h = hp;
    size_t got = 0;
    int rc;
    sqlite3_bind_text(h->scan, 1, (const char *)start, (int)slen, SQLITE_STATIC);
    sqlite3_bind_int64(h->scan, 2, (sqlite3_int64)nrows);
    while ((rc = sqlite3_step(h->scan)) == SQLITE_ROW) {
        buf_reset(scratch);
        if (buf_append(scratch, sqlite3_column_blob(h->scan, 0), (size_t)sqlite3_column_bytes(h->scan, 0)) != DV_OK) {
            rc = SQLITE_NOMEM;
            break;
        }
        got++;
    }
    sqlite3_reset(h->scan);
    *rows = got;
    return rc == SQLITE_DONE ? DV_OK : sqlite_fail(h->main.db, rc, "scan");
}

static int sqlite_compact(void *hp, uint64_t *bytes)
{
    sqlite_handle *h = hp;
    char wal[4200];
    struct stat st;
    int rc;
    if ((rc = sqlite_exec(h->main.db, "VACUUM")) != DV_OK)
        return rc;
    if ((rc = sqlite_exec(h->main.db, "PRAGMA wal_checkpoint(TRUNCATE)")) != DV_OK)
        return rc;
    if (stat(h->path, &st) != 0)
        return DV_ERR_IO;
    *bytes = (uint64_t)st.st_size;
    snprintf(wal, sizeof wal, "%s-wal", h->path);
    if (stat(wal, &st) == 0)
        *bytes += (uint64_t)st.st_size;
    return DV_OK;
}

const bench_engine_ops bench_engine_sqlite = {
    .name = "SQLite",
    .open = sqlite_open,
    .close = sqlite_close,
    .writer_open = sqlite_writer_open,
    .writer_close = sqlite_writer_close,
    .put_one = sqlite_put_one,
    .put_batch = sqlite_put_batch,
    .get = sqlite_get,
    .scan = sqlite_scan,
    .compact = sqlite_compact,
};
