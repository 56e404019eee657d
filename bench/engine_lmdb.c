/*
 * engine_lmdb.c — LMDB as a storage-benchmark anchor.
 *
 * Settings: default environment flags, so every write transaction syncs the
 * data file on commit (the durability divan's STORE_DURABLE_ALWAYS gives);
 * one unnamed database; a 16 GiB map (address space only: the file grows as
 * pages are used).  LMDB allows one write transaction at a time, so
 * concurrent writers queue on its writer lock and each commit syncs on its
 * own: LMDB has no group commit.
 *
 * Reads reuse one read-only transaction through mdb_txn_reset/renew, LMDB's
 * intended cheap path for short reads, and copy each value out of the map
 * so that every engine does the same work per row.
 *
 * "Compaction" is mdb_env_copy2 with MDB_CP_COMPACT (LMDB reuses free pages
 * in place and has no online compaction): a compacted copy written beside
 * the database and synced; its size is the compacted size.
 */
#include "base/status.h"
#include "engine.h"

#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct lmdb_handle {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *rtxn;   /* reset between reads; NULL until the first read */
    MDB_cursor *rcur; /* bound to rtxn */
    char dir[4096];
} lmdb_handle;

static int lmdb_status(int rc, const char *what)
{
    if (rc == 0)
        return DV_OK;
    fprintf(stderr, "lmdb: %s: %s\n", what, mdb_strerror(rc));
    return rc == MDB_NOTFOUND ? DV_ERR_NOTFOUND : DV_ERR_IO;
}

static int lmdb_open(const char *dir, void **out)
{
    lmdb_handle *h = calloc(1, sizeof *h);
    MDB_txn *txn = NULL;
    int rc;
    if (!h)
        return DV_ERR_NOMEM;
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    if ((rc = lmdb_status(mdb_env_create(&h->env), "env_create")) != DV_OK)
        goto fail;
    if ((rc = lmdb_status(mdb_env_set_mapsize(h->env, (size_t)16 << 30), "set_mapsize")) != DV_OK)
        goto fail;
    /* MDB_NOTLS: the read transaction belongs to the handle, not to a
     * thread, and writer threads come and go. */
    if ((rc = lmdb_status(mdb_env_open(h->env, dir, MDB_NOTLS, 0644), "env_open")) != DV_OK)
        goto fail;
    if ((rc = lmdb_status(mdb_txn_begin(h->env, NULL, 0, &txn), "txn_begin")) != DV_OK)
        goto fail;
    if ((rc = lmdb_status(mdb_dbi_open(txn, NULL, 0, &h->dbi), "dbi_open")) != DV_OK)
        goto fail;
    rc = lmdb_status(mdb_txn_commit(txn), "txn_commit");
    txn = NULL;
    if (rc != DV_OK)
        goto fail;
    *out = h;
    return DV_OK;
fail:
    if (txn)
        mdb_txn_abort(txn);
    if (h->env)
        mdb_env_close(h->env);
    free(h);
    return rc;
}

static int lmdb_close(void *hp)
{
    lmdb_handle *h = hp;
    if (h->rcur)
        mdb_cursor_close(h->rcur);
    if (h->rtxn)
        mdb_txn_abort(h->rtxn);
    mdb_env_close(h->env);
    free(h);
    return DV_OK;
}

static int lmdb_writer_open(void *h, void **w)
{
    *w = h;
    return DV_OK;
}

static void lmdb_writer_close(void *w) { (void)w; }

static int lmdb_put_batch(void *hp, const bench_kv *kv, size_t n, int update)
{
    lmdb_handle *h = hp;
    MDB_txn *txn;
    int rc = lmdb_status(mdb_txn_begin(h->env, NULL, 0, &txn), "txn_begin");
    (void)update; /* mdb_put overwrites */
    if (rc != DV_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        MDB_val k = {kv[i].klen, (void *)kv[i].key}, v = {kv[i].vlen, (void *)kv[i].val};
        if ((rc = lmdb_status(mdb_put(txn, h->dbi, &k, &v, 0), "put")) != DV_OK) {
            mdb_txn_abort(txn);
            return rc;
        }
    }
    return lmdb_status(mdb_txn_commit(txn), "txn_commit");
}

static int lmdb_put_one(void *w, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    bench_kv kv = {key, klen, val, vlen};
    return lmdb_put_batch(w, &kv, 1, 0);
}

/* Starts (or renews) the handle's read transaction and cursor. */
static int lmdb_read_begin(lmdb_handle *h)
{
    int rc;
    if (!h->rtxn) {
        if ((rc = lmdb_status(mdb_txn_begin(h->env, NULL, MDB_RDONLY, &h->rtxn), "read txn")) != DV_OK)
            return rc;
        rc = lmdb_status(mdb_cursor_open(h->rtxn, h->dbi, &h->rcur), "cursor_open");
        if (rc != DV_OK) {
            mdb_txn_abort(h->rtxn);
            h->rtxn = NULL;
        }
        return rc;
    }
    if ((rc = lmdb_status(mdb_txn_renew(h->rtxn), "txn_renew")) != DV_OK)
        return rc;
    return lmdb_status(mdb_cursor_renew(h->rtxn, h->rcur), "cursor_renew");
}

static int lmdb_get(void *hp, const uint8_t *key, size_t klen, buf_t *out)
{
    lmdb_handle *h = hp;
    MDB_val k = {klen, (void *)key}, v;
    int rc = lmdb_read_begin(h);
    if (rc != DV_OK)
        return rc;
    rc = mdb_get(h->rtxn, h->dbi, &k, &v);
    if (rc == 0) {
        buf_reset(out);
        rc = buf_append(out, v.mv_data, v.mv_size);
    } else {
        rc = lmdb_status(rc, "get");
    }
    mdb_txn_reset(h->rtxn);
    return rc;
}

static int lmdb_scan(void *hp, const uint8_t *start, size_t slen, size_t nrows, buf_t *scratch, size_t *rows)
{
    lmdb_handle *h = hp;
    MDB_val k = {slen, (void *)start}, v;
    size_t got = 0;
    int rc = lmdb_read_begin(h);
    if (rc != DV_OK)
        return rc;
    int mrc = mdb_cursor_get(h->rcur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && got < nrows) {
        buf_reset(scratch);
        if ((rc = buf_append(scratch, v.mv_data, v.mv_size)) != DV_OK)
            goto done;
        got++;
        mrc = mdb_cursor_get(h->rcur, &k, &v, MDB_NEXT);
    }
    rc = (mrc == 0 || mrc == MDB_NOTFOUND) ? DV_OK : lmdb_status(mrc, "cursor_get");
done:
    mdb_txn_reset(h->rtxn);
    *rows = got;
    return rc;
}

static int lmdb_compact(void *hp, uint64_t *bytes)
{
    lmdb_handle *h = hp;
    char cdir[4200], cfile[4300];
    struct stat st;
    int fd, rc;
    snprintf(cdir, sizeof cdir, "%s/compact", h->dir);
    snprintf(cfile, sizeof cfile, "%s/data.mdb", cdir);
    if (mkdir(cdir, 0755) != 0)
        return DV_ERR_IO;
    if ((rc = lmdb_status(mdb_env_copy2(h->env, cdir, MDB_CP_COMPACT), "env_copy2")) != DV_OK)
        goto done;
    /* The copy is not synced by LMDB; a compaction that divan reports done
     * is durable, so this one must be too. */
    fd = open(cfile, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0 || fstat(fd, &st) != 0) {
        rc = DV_ERR_IO;
    } else {
        *bytes = (uint64_t)st.st_size;
    }
    if (fd >= 0)
        close(fd);
done:
    unlink(cfile);
    rmdir(cdir);
    return rc;
}

const bench_engine_ops bench_engine_lmdb = {
    .name = "LMDB",
    .open = lmdb_open,
    .close = lmdb_close,
    .writer_open = lmdb_writer_open,
    .writer_close = lmdb_writer_close,
    .put_one = lmdb_put_one,
    .put_batch = lmdb_put_batch,
    .get = lmdb_get,
    .scan = lmdb_scan,
    .compact = lmdb_compact,
};
