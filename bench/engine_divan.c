/*
 * engine_divan.c — divan's store_dbfile in the storage benchmark.
 *
 * Settings: STORE_DURABLE_ALWAYS (a write returns once its commit is
 * synced), lz4 body compression (what db/ uses), a private node cache of
 * the server's default size (DB_CACHE_BYTES_DEFAULT; BENCH_DIVAN_CACHE_MB
 * overrides it) and the default mapped-read budget (BENCH_DIVAN_MAP_MB
 * overrides it).  A document is a new edit without a parent; an update
 * names the current winning revision, read from a snapshot first, as db/
 * does for a client that sends _rev.
 *
 * Concurrency: every put_one thread calls store_dbfile_write on the one
 * handle; the writer thread takes everything queued and commits it with one
 * sync (group commit), which is what the concurrent-writer rows measure.
 *
 * Reads take a fresh snapshot per get and per scan (one request's worth of
 * work in db/), find the winning leaf and read its body record, so a row
 * costs what a GET of the document costs below the HTTP layer.
 */
#include "base/status.h"
#include "db/db.h"
#include "engine.h"
#include "store/dbfile.h"
#include "store/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct divan_handle {
    store_dbfile *db;
    store_docinfo di;   /* reused by get and scan */
    store_docbody body; /* reused by get and scan */
    char path[4096];
} divan_handle;

static int divan_open(const char *dir, void **out)
{
    divan_handle *h = calloc(1, sizeof *h);
    store_dbfile_options o;
    int rc;
    if (!h)
        return DV_ERR_NOMEM;
    const char *map_mb = getenv("BENCH_DIVAN_MAP_MB"); /* the db layer's [divan] map_resident_mb */
    if (map_mb && *map_mb)
        store_file_map_trim = strtoull(map_mb, NULL, 10) << 20;
    memset(&o, 0, sizeof o);
    o.create = 1;
    o.durability = STORE_DURABLE_ALWAYS;
    o.compression = STORE_COMPRESS_LZ4;
    o.cache_bytes = DB_CACHE_BYTES_DEFAULT;
    const char *cache_mb = getenv("BENCH_DIVAN_CACHE_MB");
    if (cache_mb && *cache_mb)
        o.cache_bytes = strtoull(cache_mb, NULL, 10) << 20;
    snprintf(h->path, sizeof h->path, "%s/bench.divan", dir);
    if ((rc = store_dbfile_open(h->path, &o, &h->db)) != DV_OK) {
        fprintf(stderr, "divan: open %s: %s\n", h->path, dv_strerror(rc));
        free(h);
        return rc;
    }
    store_docinfo_init(&h->di);
    store_docbody_init(&h->body);
    *out = h;
    return DV_OK;
}

static int divan_close(void *hp)
{
    divan_handle *h = hp;
    int rc = store_dbfile_close(h->db);
    store_docinfo_free(&h->di);
    store_docbody_free(&h->body);
    free(h);
    return rc;
}

static int divan_writer_open(void *h, void **w)
{
    *w = h;
    return DV_OK;
}

static void divan_writer_close(void *w) { (void)w; }

/* Fills u with the current winning revision of its id as parent. */
static int divan_set_parent(divan_handle *h, const store_snap *s, store_doc_update *u)
{
    int rc = store_snap_get_doc(s, u->id, u->idlen, &h->di);
    if (rc != DV_OK)
        return rc;
    uint32_t w = revtree_winner(&h->di.tree);
    if (w == REVTREE_NONE)
        return DV_ERR_CORRUPT;
    u->has_parent = 1;
    u->parent = h->di.tree.nodes[w].rev;
    return DV_OK;
}

static int divan_put_batch(void *hp, const bench_kv *kv, size_t n, int update)
{
    divan_handle *h = hp;
    store_doc_update *u = calloc(n, sizeof *u);
    store_snap *s = NULL;
    store_write w;
    int rc = DV_OK;
    if (!u)
        return DV_ERR_NOMEM;
    if (update && (rc = store_dbfile_snapshot(h->db, &s)) != DV_OK)
        goto done;
    for (size_t i = 0; i < n; i++) {
        u[i].id = kv[i].key;
        u[i].idlen = kv[i].klen;
        u[i].mode = STORE_EDIT;
        u[i].body = kv[i].val;
        u[i].body_len = kv[i].vlen;
        if (update && (rc = divan_set_parent(h, s, &u[i])) != DV_OK)
            goto done;
    }
    memset(&w, 0, sizeof w);
    w.docs = u;
    w.ndocs = n;
    if ((rc = store_dbfile_write(h->db, &w)) != DV_OK)
        goto done;
    for (size_t i = 0; i < n && rc == DV_OK; i++)
        rc = u[i].status;
done:
    if (s)
        store_snap_release(s);
    if (rc != DV_OK)
        fprintf(stderr, "divan: write: %s\n", dv_strerror(rc));
    free(u);
    return rc;
}

static int divan_put_one(void *w, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    bench_kv kv = {key, klen, val, vlen};
    return divan_put_batch(w, &kv, 1, 0);
}

/* Reads the body of the winning revision in h->di into out. */
static int divan_read_winner(divan_handle *h, const store_snap *s, buf_t *out)
{
    uint32_t w = revtree_winner(&h->di.tree);
    if (w == REVTREE_NONE)
        return DV_ERR_CORRUPT;
    int rc = store_snap_read_body(s, h->di.tree.nodes[w].body, &h->body);
    if (rc != DV_OK)
        return rc;
    buf_reset(out);
    return buf_append(out, h->body.body.data, h->body.body.len);
}

static int divan_get(void *hp, const uint8_t *key, size_t klen, buf_t *out)
{
    divan_handle *h = hp;
    store_snap *s;
    int rc = store_dbfile_snapshot(h->db, &s);
    if (rc != DV_OK)
        return rc;
    if ((rc = store_snap_get_doc(s, key, klen, &h->di)) == DV_OK)
        rc = divan_read_winner(h, s, out);
    store_snap_release(s);
    return rc;
}

static int divan_scan(void *hp, const uint8_t *start, size_t slen, size_t nrows, buf_t *scratch, size_t *rows)
{
    divan_handle *h = hp;
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    store_id_cursor *c = NULL;
    store_snap *s;
    size_t got = 0;
    int rc = store_dbfile_snapshot(h->db, &s);
    if (rc != DV_OK)
        return rc;
    r.has_start = 1;
    r.start.p = start;
    r.start.n = slen;
    if ((rc = store_snap_iter_ids(s, &r, &c)) != DV_OK)
        goto done;
    while (got < nrows && (rc = store_id_cursor_next(c, &h->di)) == 1) {
        if ((rc = divan_read_winner(h, s, scratch)) != DV_OK)
            goto done;
        got++;
    }
    if (rc > 0)
        rc = DV_OK;
done:
    if (c)
        store_id_cursor_close(c);
    store_snap_release(s);
    *rows = got;
    return rc;
}

static int divan_compact(void *hp, uint64_t *bytes)
{
    divan_handle *h = hp;
    struct stat st;
    int rc = store_dbfile_compact(h->db, NULL, NULL);
    if (rc != DV_OK) {
        fprintf(stderr, "divan: compact: %s\n", dv_strerror(rc));
        return rc;
    }
    if (stat(h->path, &st) != 0)
        return DV_ERR_IO;
    *bytes = (uint64_t)st.st_size;
    return DV_OK;
}

static uint64_t divan_commits(void *hp)
{
    divan_handle *h = hp;
    return store_dbfile_commit_count(h->db);
}

const bench_engine_ops bench_engine_divan = {
    .name = "divan",
    .open = divan_open,
    .close = divan_close,
    .writer_open = divan_writer_open,
    .writer_close = divan_writer_close,
    .put_one = divan_put_one,
    .put_batch = divan_put_batch,
    .get = divan_get,
    .scan = divan_scan,
    .compact = divan_compact,
    .commits = divan_commits,
};
