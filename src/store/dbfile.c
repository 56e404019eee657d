/*
 * dbfile.c — opening and closing a database file, its commit header, the
 * refcounted committed states that snapshots are, db info, and the
 * encodings of the tree values shared by the writer, readers and compaction.
 *
 * Header payload (inside store_file's checksummed header):
 *   varint format (1) | varint update_seq | varint purge_seq |
 *   varint revs_limit | varint local_seq | bytes uuid (32 hex) |
 *   bytes security JSON | bytes root × 4 (by-id, by-seq, local, purge)
 * local_seq counts local-doc writes; compaction uses it to know whether the
 * local tree changed while it copied.  A header that does not decode is
 * DV_ERR_CORRUPT: open fails rather than guess.
 *
 * Invariants:
 *   - db->cur is always a state whose header is committed in db->fr's file
 *     (or the fresh state of a file just created and committed at open).
 *   - A state never changes after it is published; the writer builds the
 *     next one aside and swaps db->cur under db->mu.
 *   - A fileref is closed only when no state refers to it any more, and its
 *     btree cache entries are forgotten first (the cache is keyed by the
 *     store_file pointer, which a later allocation may reuse).
 */
#include "store/dbfile_int.h"

#include "base/digest.h"
#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tree value encodings ------------------------------------------ */

int dbf_key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

void dbf_seq_key(uint64_t seq, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)seq;
        seq >>= 8;
    }
}

int dbf_seq_key_decode(store_slice k, uint64_t *seq)
{
    if (k.n != 8)
        return DV_ERR_CORRUPT;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | k.p[i];
    *seq = v;
    return DV_OK;
}

int dbf_byid_encode(const revtree *t, uint64_t seq, int deleted, uint64_t active, uint64_t external, buf_t *out)
{
    buf_reset(out);
    int rc = buf_append_byte(out, deleted ? 1 : 0);
    if (!rc)
        rc = buf_put_varint(out, seq);
    if (!rc)
        rc = buf_put_varint(out, active);
    if (!rc)
        rc = buf_put_varint(out, external);
    if (!rc)
        rc = revtree_encode(t, out);
    return rc;
}

/* buf_get_varint inlined for values of up to 63 bits; anything longer or
 * truncated goes to it, which decides.  The writer reduces every entry of
 * each leaf it rewrites: a call per field showed in its profile. */
static inline int rd_varint(buf_reader *r, uint64_t *v)
{
    const uint8_t *p = r->p;
    size_t left = (size_t)(r->end - p);
    /* Seqs and sizes take 1 to 3 bytes: those cases unrolled. */
    if (left >= 1 && p[0] < 0x80) {
        *v = p[0];
        r->p = p + 1;
        return DV_OK;
    }
    if (left >= 2 && p[1] < 0x80) {
        *v = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
        r->p = p + 2;
        return DV_OK;
    }
    if (left >= 3 && p[2] < 0x80) {
        *v = (uint64_t)(p[0] & 0x7f) | (uint64_t)(p[1] & 0x7f) << 7 | (uint64_t)p[2] << 14;
        r->p = p + 3;
        return DV_OK;
    }
    return buf_get_varint(r, v);
}

/* Header fields of a by-id value without decoding its tree (reduce). */
static int byid_head(buf_reader *r, uint64_t *seq, int *deleted, uint64_t *active, uint64_t *external)
{
    if (r->p >= r->end)
        return DV_ERR_CORRUPT;
    uint8_t d = *r->p++;
    int rc = rd_varint(r, seq);
    if (!rc)
        rc = rd_varint(r, active);
    if (!rc)
        rc = rd_varint(r, external);
    if (!rc && d > 1)
        rc = DV_ERR_CORRUPT;
    *deleted = d;
    return rc;
}

int dbf_byid_decode(const uint8_t *p, size_t n, revtree *t, uint64_t *seq, int *deleted, uint64_t *active,
                    uint64_t *external)
{
    buf_reader r;
    uint64_t s, a, e;
    int d;
    buf_reader_init(&r, p, n);
    int rc = byid_head(&r, &s, &d, &a, &e);
    if (rc)
        return rc;
    if (t) {
        rc = revtree_decode(t, r.p, buf_reader_left(&r)); /* reuses t's array */
        if (rc) {
            t->n = 0; /* callers see an empty tree after a failed decode */
            return rc;
        }
    }
    if (seq)
        *seq = s;
    if (deleted)
        *deleted = d;
    if (active)
        *active = a;
    if (external)
        *external = e;
    return DV_OK;
}

int dbf_byseq_encode(const uint8_t *id, size_t idlen, const revtree *t, buf_t *out)
{
    uint32_t *idx = malloc(sizeof *idx * (t->n ? t->n : 1));
    uint32_t n = 0;
    int rc = DV_ERR_NOMEM;
    if (!idx)
        goto fail;
    revtree_leaves(t, idx, &n);
    buf_reset(out);
    rc = buf_put_bytes(out, id, idlen);
    if (!rc)
        rc = buf_put_varint(out, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        const revtree_node *nd = &t->nodes[idx[i]];
        rc = buf_put_varint(out, nd->rev.pos);
        if (!rc)
            rc = buf_put_bytes(out, nd->rev.id, nd->rev.len);
        if (!rc)
            rc = buf_append_byte(out, nd->deleted ? 1 : 0);
        if (!rc)
            rc = buf_put_varint(out, nd->has_body ? nd->body.off : 0);
        if (!rc)
            rc = buf_put_varint(out, nd->has_body ? nd->body.size : 0);
    }
fail:
    free(idx);
    return rc;
}

int dbf_local_encode(uint64_t rev, const uint8_t *body, size_t len, buf_t *out)
{
    buf_reset(out);
    int rc = buf_put_varint(out, rev);
    if (!rc)
        rc = buf_put_bytes(out, body, len);
    return rc;
}

int dbf_local_decode(store_slice v, uint64_t *rev, const uint8_t **body, size_t *len)
{
    buf_reader r;
    buf_reader_init(&r, v.p, v.n);
    int rc = buf_get_varint(&r, rev);
    if (!rc)
        rc = buf_get_bytes(&r, body, len);
    if (!rc && buf_reader_left(&r))
        rc = DV_ERR_CORRUPT;
    return rc;
}

/* by-id reduction: varint doc_count | del_count | active | external. */
static int red_put(buf_t *out, const uint64_t v[4])
{
    int rc = DV_OK;
    for (int i = 0; i < 4 && !rc; i++)
        rc = buf_put_varint(out, v[i]);
    return rc;
}

int dbf_byid_red_decode(store_slice s, uint64_t v[4])
{
    buf_reader r;
    buf_reader_init(&r, s.p, s.n);
    for (int i = 0; i < 4; i++) {
        int rc = rd_varint(&r, &v[i]);
        if (rc)
            return rc;
    }
    return DV_OK;
}

static int byid_reduce(void *ctx, const store_slice *keys, const store_slice *vals, size_t n, buf_t *out)
{
    uint64_t v[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        buf_reader r;
        uint64_t seq, a, e;
        int d;
        buf_reader_init(&r, vals[i].p, vals[i].n);
        int rc = byid_head(&r, &seq, &d, &a, &e);
        if (rc)
            return rc;
        v[d ? 1 : 0]++;
        v[2] += a;
        v[3] += e;
    }
    return red_put(out, v);
}

static int byid_rereduce(void *ctx, const store_slice *reds, size_t n, buf_t *out)
{
    uint64_t v[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        uint64_t w[4];
        int rc = dbf_byid_red_decode(reds[i], w);
        if (rc)
            return rc;
        for (int j = 0; j < 4; j++)
            v[j] += w[j];
    }
    return red_put(out, v);
}

static const store_btree_ops byid_ops = {NULL, byid_reduce, byid_rereduce, NULL};

/* ---- filerefs and states -------------------------------------------- */

void dbf_fileref_init_trees(dbf_fileref *fr)
{
    for (int i = 0; i < DBF_NTREES; i++) {
        fr->tree[i].file = fr->file;
        fr->tree[i].cache = fr->cache;
        fr->tree[i].ops = i == DBF_T_BYID ? &byid_ops : NULL;
        fr->tree[i].node_bytes = DBF_NODE_BYTES;
    }
}

int dbf_fileref_open(store_dbfile *db, const char *path, int flags, uint64_t limit, dbf_fileref **out,
                     buf_t *header)
{
    dbf_fileref *fr = calloc(1, sizeof *fr);
    if (!fr)
        return DV_ERR_NOMEM;
    int rc = store_file_open_limit(db->vfs, path, flags, limit, &fr->file, header);
    if (rc) {
        free(fr);
        return rc;
    }
    atomic_init(&fr->refs, 1);
    fr->cache = db->cache;
    dbf_fileref_init_trees(fr);
    *out = fr;
    return DV_OK;
}

void dbf_fileref_unref(dbf_fileref *fr)
{
    if (!fr || atomic_fetch_sub(&fr->refs, 1) != 1)
        return;
    if (fr->cache)
        store_btree_cache_forget(fr->cache, fr->file);
    int rc = store_file_close(fr->file);
    if (rc)
        log_warn("dbfile: closing a file: %s", dv_strerror(rc));
    free(fr);
}

void dbf_state_unref(store_snap *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    buf_free(&s->security);
    for (int i = 0; i < DBF_NTREES; i++)
        buf_free(&s->root[i]);
    dbf_fileref_unref(s->fr);
    free(s);
}

static store_snap *state_new(store_dbfile *db, dbf_fileref *fr)
{
    store_snap *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->db = db;
    s->fr = fr;
    atomic_fetch_add(&fr->refs, 1);
    return s;
}

int dbf_state_clone(const store_snap *src, store_snap **out)
{
    store_snap *s = state_new(src->db, src->fr);
    if (!s)
        return DV_ERR_NOMEM;
    s->update_seq = src->update_seq;
    s->purge_seq = src->purge_seq;
    s->revs_limit = src->revs_limit;
    s->local_seq = src->local_seq;
    s->file_size = src->file_size;
    memcpy(s->uuid, src->uuid, sizeof s->uuid);
    int rc = buf_append(&s->security, src->security.data, src->security.len);
    for (int i = 0; i < DBF_NTREES && !rc; i++)
        rc = buf_append(&s->root[i], src->root[i].data, src->root[i].len);
    if (rc) {
        dbf_state_unref(s);
        return rc;
    }
    *out = s;
    return DV_OK;
}

static int new_uuid(char out[33])
{
    if (dv_random_hex(out, 16) == DV_OK)
        return DV_OK;
    uint8_t r[16];
    FILE *fp = fopen("/dev/urandom", "rb");
    size_t got = fp ? fread(r, 1, sizeof r, fp) : 0;
    if (fp)
        fclose(fp);
    if (got != sizeof r)
        return DV_ERR_IO;
    dv_hex_lower(r, sizeof r, out);
    return DV_OK;
}

int dbf_state_from_header(store_dbfile *db, dbf_fileref *fr, const uint8_t *p, size_t n, store_snap **out)
{
    store_snap *s = state_new(db, fr);
    int rc = DV_ERR_NOMEM;
    if (!s)
        return rc;
    s->file_size = store_file_committed_size(fr->file);
    if (n == 0) {
        s->revs_limit = DBF_DEFAULT_REVS_LIMIT;
        rc = new_uuid(s->uuid);
        if (!rc)
            rc = buf_append_str(&s->security, db->initial_security ? db->initial_security : "{}");
        if (rc)
            goto fail;
        *out = s;
        return DV_OK;
    }
    buf_reader r;
    uint64_t fmt;
    const uint8_t *b;
    size_t bn;
    buf_reader_init(&r, p, n);
    rc = buf_get_varint(&r, &fmt);
    if (!rc && fmt != DBF_FORMAT)
        rc = DV_ERR_CORRUPT;
    if (!rc)
        rc = buf_get_varint(&r, &s->update_seq);
    if (!rc)
        rc = buf_get_varint(&r, &s->purge_seq);
    if (!rc)
        rc = buf_get_varint(&r, &s->revs_limit);
    if (!rc)
        rc = buf_get_varint(&r, &s->local_seq);
    if (!rc)
        rc = buf_get_bytes(&r, &b, &bn);
    if (!rc && bn != 32)
        rc = DV_ERR_CORRUPT;
    if (rc)
        goto corrupt;
    memcpy(s->uuid, b, 32);
    s->uuid[32] = 0;
    rc = buf_get_bytes(&r, &b, &bn);
    if (rc)
        goto corrupt;
    rc = buf_append(&s->security, b, bn);
    if (rc)
        goto fail;
    for (int i = 0; i < DBF_NTREES; i++) {
        rc = buf_get_bytes(&r, &b, &bn);
        if (rc)
            goto corrupt;
        rc = buf_append(&s->root[i], b, bn);
        if (rc)
            goto fail;
    }
    if (buf_reader_left(&r) || s->revs_limit == 0) {
        rc = DV_ERR_CORRUPT;
        goto corrupt;
    }
    *out = s;
    return DV_OK;
corrupt:
    log_error("dbfile: %s: undecodable header (format or fields)", store_file_path(fr->file));
fail:
    dbf_state_unref(s);
    return rc;
}

int dbf_state_encode(const store_snap *s, buf_t *out)
{
    buf_reset(out);
    int rc = buf_put_varint(out, DBF_FORMAT);
    if (!rc)
        rc = buf_put_varint(out, s->update_seq);
    if (!rc)
        rc = buf_put_varint(out, s->purge_seq);
    if (!rc)
        rc = buf_put_varint(out, s->revs_limit);
    if (!rc)
        rc = buf_put_varint(out, s->local_seq);
    if (!rc)
        rc = buf_put_bytes(out, s->uuid, 32);
    if (!rc)
        rc = buf_put_bytes(out, s->security.data, s->security.len);
    for (int i = 0; i < DBF_NTREES && !rc; i++)
        rc = buf_put_bytes(out, s->root[i].data, s->root[i].len);
    return rc;
}

void dbf_publish_locked(store_dbfile *db, store_snap *s)
{
    store_snap *old = db->cur;
    db->cur = s;
    dbf_state_unref(old);
}

/* ---- open / close ---------------------------------------------------- */

static char *path_with(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s", path, suffix);
    return p;
}

int store_dbfile_open(const char *path, const store_dbfile_options *o, store_dbfile **out)
{
    store_dbfile_options def = {0};
    if (!o)
        o = &def;
    buf_t hdr = BUF_INIT, enc = BUF_INIT;
    char *cpath = NULL;
    int rc = DV_ERR_NOMEM, sync_init = 0;
    store_dbfile *db = calloc(1, sizeof *db);
    if (!db)
        return rc;
    db->path = strdup(path);
    cpath = path_with(path, ".compact");
    if (!db->path || !cpath || (o->initial_security && !(db->initial_security = strdup(o->initial_security))))
        goto fail;
    db->vfs = o->vfs ? o->vfs : store_vfs_posix();
    db->durability = o->durability;
    db->sync_interval_ms = o->sync_interval_ms ? o->sync_interval_ms : 200;
    db->compression = o->compression;
    if (o->compression < STORE_COMPRESS_NONE || o->compression > STORE_COMPRESS_ZSTD ||
        o->durability < STORE_DURABLE_ALWAYS || o->durability > STORE_DURABLE_NEVER) {
        rc = DV_ERR_INVALID;
        goto fail;
    }
    if (o->cache) {
        db->cache = o->cache;
    } else {
        rc = store_btree_cache_new(o->cache_bytes ? o->cache_bytes : 8u << 20, &db->cache);
        if (rc)
            goto fail;
        db->own_cache = 1;
    }
    /* A ".compact" file is never live: the swap is a rename, so a leftover
     * is an interrupted compaction whose work is simply discarded. */
    rc = db->vfs->unlink(db->vfs, cpath);
    if (rc && rc != DV_ERR_NOTFOUND)
        log_warn("dbfile: cannot remove stale %s: %s", cpath, dv_strerror(rc));
    int flags = (o->create ? STORE_FILE_CREATE : 0) | (o->create && o->excl ? STORE_FILE_EXCL : 0);
    rc = dbf_fileref_open(db, path, flags, 0, &db->fr, &hdr);
    if (rc)
        goto fail;
    rc = dbf_state_from_header(db, db->fr, hdr.data, hdr.len, &db->cur);
    if (rc)
        goto fail;
    if (hdr.len == 0) {
        /* First commit at creation so that the uuid is stable. */
        rc = dbf_state_encode(db->cur, &enc);
        if (!rc)
            rc = store_file_commit(db->fr->file, enc.data, enc.len, 1);
        if (rc)
            goto fail;
        db->cur->file_size = store_file_committed_size(db->fr->file);
    }
    if (pthread_mutex_init(&db->mu, NULL))
        goto fail_sync;
    if (pthread_cond_init(&db->cv_work, NULL)) {
        pthread_mutex_destroy(&db->mu);
        goto fail_sync;
    }
    if (pthread_cond_init(&db->cv_done, NULL)) {
        pthread_cond_destroy(&db->cv_work);
        pthread_mutex_destroy(&db->mu);
        goto fail_sync;
    }
    if (pthread_cond_init(&db->cv_sync, NULL)) {
        pthread_cond_destroy(&db->cv_done);
        pthread_cond_destroy(&db->cv_work);
        pthread_mutex_destroy(&db->mu);
        goto fail_sync;
    }
    if (pthread_cond_init(&db->cv_comp, NULL)) {
        pthread_cond_destroy(&db->cv_sync);
        pthread_cond_destroy(&db->cv_done);
        pthread_cond_destroy(&db->cv_work);
        pthread_mutex_destroy(&db->mu);
        goto fail_sync;
    }
    sync_init = 1;
    rc = dbf_writer_start(db);
    if (rc)
        goto fail;
    buf_free(&hdr);
    buf_free(&enc);
    free(cpath);
    *out = db;
    return DV_OK;
fail_sync:
    rc = DV_ERR_NOMEM;
fail:
    if (sync_init) {
        pthread_cond_destroy(&db->cv_comp);
        pthread_cond_destroy(&db->cv_sync);
        pthread_cond_destroy(&db->cv_done);
        pthread_cond_destroy(&db->cv_work);
        pthread_mutex_destroy(&db->mu);
    }
    dbf_state_unref(db->cur);
    dbf_fileref_unref(db->fr);
    if (db->own_cache)
        store_btree_cache_free(db->cache);
    free(db->initial_security);
    free(db->path);
    free(db);
    free(cpath);
    buf_free(&hdr);
    buf_free(&enc);
    return rc;
}

int store_dbfile_close(store_dbfile *db)
{
    int rc = DV_OK;
    pthread_mutex_lock(&db->mu);
    db->closing = 1;
    while (atomic_load(&db->compact_running))
        pthread_cond_wait(&db->cv_done, &db->mu);
    pthread_mutex_unlock(&db->mu);
    dbf_writer_stop(db);
    if (db->durability == STORE_DURABLE_PERIODIC && db->unsynced && !db->broken)
        rc = store_file_sync(db->fr->file);
    assert(atomic_load(&db->cur->refs) == 1 && "snapshots must be released before close");
    dbf_state_unref(db->cur);
    dbf_fileref_unref(db->fr);
    if (db->own_cache)
        store_btree_cache_free(db->cache);
    pthread_cond_destroy(&db->cv_comp);
    pthread_cond_destroy(&db->cv_sync);
    pthread_cond_destroy(&db->cv_done);
    pthread_cond_destroy(&db->cv_work);
    pthread_mutex_destroy(&db->mu);
    free(db->initial_security);
    free(db->path);
    free(db);
    return rc;
}

const char *store_dbfile_path(const store_dbfile *db) { return db->path; }

int dbf_sync_dir(store_dbfile *db)
{
    char *tmp = strdup(db->path);
    if (!tmp)
        return DV_ERR_NOMEM;
    int rc = db->vfs->sync_dir(db->vfs, dirname(tmp));
    free(tmp);
    return rc;
}

uint64_t store_dbfile_commit_count(store_dbfile *db) { return atomic_load(&db->commits); }
uint64_t store_dbfile_spin_catches(store_dbfile *db) { return atomic_load(&db->spin_catches); }

/* ---- snapshots ------------------------------------------------------- */

int store_dbfile_snapshot(store_dbfile *db, store_snap **out)
{
    pthread_mutex_lock(&db->mu);
    store_snap *s = db->cur;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&db->mu);
    *out = s;
    return DV_OK;
}

void store_snap_release(store_snap *s) { dbf_state_unref(s); }

void store_snap_info(const store_snap *s, store_dbinfo *out)
{
    memset(out, 0, sizeof *out);
    out->update_seq = s->update_seq;
    out->purge_seq = s->purge_seq;
    out->revs_limit = s->revs_limit;
    out->file_size = s->file_size;
    memcpy(out->uuid, s->uuid, sizeof out->uuid);
    out->compact_running = atomic_load(&s->db->compact_running);
    store_slice red;
    uint64_t v[4];
    const buf_t *root = &s->root[DBF_T_BYID];
    if (root->len && !store_btree_root_reduction(root->data, root->len, &red) && red.n &&
        !dbf_byid_red_decode(red, v)) {
        out->doc_count = v[0];
        out->del_count = v[1];
        out->active_size = v[2];
        out->external_size = v[3];
    }
    /* Local docs: their tree bytes approximated by the root's count times a
     * small per-entry overhead; bodies are rarely big (checkpoints). */
    root = &s->root[DBF_T_LOCAL];
    if (root->len)
        out->active_size += store_btree_root_count(root->data, root->len) * 64;
    if (out->active_size > out->file_size)
        out->active_size = out->file_size;
}

int store_snap_security(const store_snap *s, buf_t *out)
{
    return buf_append(out, s->security.data, s->security.len);
}
