/*
 * compact.c — online compaction: copy the live data of a database into
 * path + ".compact" while readers and the writer go on, catch up, swap.
 *
 * Steps:
 *   1. Snapshot S0.  Copy every doc of S0's by-id tree in key order: leaf
 *      bodies are re-written (recompressed with the current option),
 *      attachment streams reachable from leaves are copied once each (a map
 *      old stream offset -> new keeps stubs sharing one stream), non-leaf
 *      revs lose their bodies (as CouchDB).  by-id is built by batched
 *      modifies in key order; then by-seq from S0's by-seq order, each entry
 *      rebuilt from the new by-id tree (new body pointers); locals and the
 *      purge history are copied as they are.
 *   2. Catch up from a newer snapshot: purge entries after the copied
 *      purge_seq (docs purged away are removed), changes after the copied
 *      update_seq (each changed doc re-copied, its old by-seq entry in the
 *      new file removed), locals re-diffed when local_seq moved.  Repeated
 *      while the writer keeps producing (bounded rounds).
 *   3. Pause the writer (it finishes its group and waits), catch up with
 *      the final state, commit + sync the new file, rename it over path,
 *      sync the directory, switch db->fr and db->cur to it, resume.
 *
 * Invariants:
 *   - Nothing here writes to the live file: a crash at any point leaves
 *     either the old file (and a stale ".compact" that open deletes) or,
 *     once the rename is durable, the complete new file.
 *   - Only the final step blocks the writer; readers never wait.  Old
 *     snapshots keep the old fileref, so they stay readable after the swap
 *     (the unlinked file is closed when the last of them is released).
 *   - Disk overhead is the new file: at most the live data plus trees.
 */
#include "store/dbfile_int.h"

#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 512
#define MAX_ROUNDS 8
#define FINAL_LAG 64 /* changes left for the paused final round */

typedef struct amap_ent {
    uint64_t old_off; /* 0 = empty */
    store_ptr ptr;
    uint64_t disk;
} amap_ent;

typedef struct cctx {
    store_dbfile *db;
    dbf_fileref *nf;
    store_snap *dst; /* state being built on nf */
    amap_ent *amap;
    size_t acap, an;
    store_compact_progress progress;
    void *arg;
    uint64_t done, total;
} cctx;

/* ---- attachment stream map ------------------------------------------- */

static amap_ent *amap_slot(cctx *c, uint64_t off)
{
    size_t mask = c->acap - 1, i = (size_t)(off * 0x9e3779b97f4a7c15ULL >> 20) & mask;
    while (c->amap[i].old_off && c->amap[i].old_off != off)
        i = (i + 1) & mask;
    return &c->amap[i];
}

static int amap_reserve(cctx *c)
{
    if (c->acap && (c->an + 1) * 2 <= c->acap)
        return DV_OK;
    size_t ocap = c->acap;
    amap_ent *old = c->amap;
    c->acap = ocap ? ocap * 2 : 256;
    c->amap = calloc(c->acap, sizeof *c->amap);
    if (!c->amap) {
        c->amap = old;
        c->acap = ocap;
        return DV_ERR_NOMEM;
    }
    for (size_t i = 0; i < ocap; i++)
        if (old[i].old_off)
            *amap_slot(c, old[i].old_off) = old[i];
    free(old);
    return DV_OK;
}

/* ---- copying one doc -------------------------------------------------- */

/* Copies the body record of a leaf into the new file.  A body stored with
 * the database's compression is copied as stored: decompressing and
 * compressing it again was half of compaction's instructions (callgrind,
 * 30k docs).  Bodies stored otherwise (the setting changed, or compression
 * did not pay) are decoded and written with the current setting. */
static int copy_body(cctx *c, store_file *from, store_ptr src, store_ptr *dst)
{
    buf_t body = BUF_INIT, z = BUF_INIT;
    dbf_att *atts = NULL;
    size_t n = 0;
    int rc = dbf_body_read_stored(from, src, &z, &atts, &n);
    if (!rc && z.data[0] != c->db->compression) {
        buf_reset(&z);
        dbf_atts_free(atts, n);
        atts = NULL;
        n = 0;
        rc = dbf_body_read(from, src, &body, &atts, &n);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = amap_reserve(c);
        if (rc)
            break;
        amap_ent *e = amap_slot(c, atts[i].a.stream.off);
        if (!e->old_off) {
            dbf_att copy;
            memset(&copy, 0, sizeof copy);
            rc = dbf_att_copy(from, c->nf->file, &atts[i], &copy);
            if (rc)
                break;
            e->old_off = atts[i].a.stream.off;
            e->ptr = copy.a.stream;
            e->disk = copy.disk;
            c->an++;
            free(copy.a.name);
            free(copy.a.type);
            free(copy.a.encoding);
        }
        atts[i].a.stream = e->ptr;
        atts[i].disk = e->disk;
    }
    if (!rc)
        rc = dbf_body_write(c->nf->file, c->db->compression, body.data, body.len, &z, atts, n, dst);
    dbf_atts_free(atts, n);
    buf_free(&body);
    buf_free(&z);
    return rc;
}

/* Builds the new by-id value of a doc from its source value.  prev: the
 * doc's tree already in the new file (catch-up), whose leaf bodies are
 * reused by rev instead of copied again; may be NULL. */
static int copy_doc(cctx *c, store_file *from, store_slice id, store_slice srcval, const revtree *prev,
                    buf_t *out, uint64_t *seq_out)
{
    revtree t;
    uint64_t seq, act, ext;
    int deleted;
    revtree_init(&t);
    int rc = dbf_byid_decode(srcval.p, srcval.n, &t, &seq, &deleted, NULL, NULL);
    for (uint32_t i = 0; i < t.n && !rc; i++) {
        revtree_node *nd = &t.nodes[i];
        if (!revtree_is_leaf(&t, i)) {
            nd->has_body = 0;
            nd->body = STORE_PTR_NULL;
            continue;
        }
        if (!nd->has_body)
            continue;
        uint32_t k = prev ? revtree_find(prev, &nd->rev) : REVTREE_NONE;
        if (k != REVTREE_NONE && prev->nodes[k].has_body)
            nd->body = prev->nodes[k].body;
        else
            rc = copy_body(c, from, nd->body, &nd->body);
    }
    if (!rc)
        rc = dbf_doc_sizes(c->nf->file, id.p, id.n, &t, 0, &act, &ext);
    if (!rc)
        rc = dbf_byid_encode(&t, seq, deleted, act, ext, out);
    *seq_out = seq;
    revtree_free(&t);
    return rc;
}

/* ---- batches ---------------------------------------------------------- */

typedef struct batch {
    store_btree_action a[2 * BATCH];
    buf_t keys[2 * BATCH];
    buf_t vals[2 * BATCH];
    size_t n;
} batch;

static void batch_free(batch *b)
{
    for (size_t i = 0; i < 2 * BATCH; i++) {
        buf_free(&b->keys[i]);
        buf_free(&b->vals[i]);
    }
}

static int batch_add(batch *b, int op, store_slice k, store_slice v)
{
    assert(b->n < 2 * BATCH);
    buf_t *kb = &b->keys[b->n], *vb = &b->vals[b->n];
    buf_reset(kb);
    buf_reset(vb);
    int rc = buf_append(kb, k.p, k.n);
    if (!rc && op == STORE_BTREE_PUT)
        rc = buf_append(vb, v.p, v.n);
    if (rc)
        return rc;
    b->a[b->n].op = op;
    b->n++;
    return DV_OK;
}

static int cmp_act(const void *x, const void *y)
{
    const store_btree_action *a = x, *b = y;
    return dbf_key_cmp(a->key.p, a->key.n, b->key.p, b->key.n);
}

/* Applies the batch to tree t of the new file (sorting it first). */
static int batch_flush(cctx *c, batch *b, int t)
{
    if (!b->n)
        return DV_OK;
    for (size_t i = 0; i < b->n; i++) {
        b->a[i].key = (store_slice){b->keys[i].data, b->keys[i].len};
        b->a[i].val = (store_slice){b->vals[i].data, b->vals[i].len};
    }
    qsort(b->a, b->n, sizeof *b->a, cmp_act);
    buf_t nr = BUF_INIT;
    buf_t *root = &c->dst->root[t];
    int rc = store_btree_modify(&c->nf->tree[t], root->data, root->len, b->a, b->n, &nr);
    if (!rc) {
        buf_free(root);
        *root = nr;
    } else {
        buf_free(&nr);
    }
    b->n = 0;
    return rc;
}

static int closing(store_dbfile *db)
{
    pthread_mutex_lock(&db->mu);
    int r = db->closing;
    pthread_mutex_unlock(&db->mu);
    return r;
}

static void report(cctx *c)
{
    if (c->progress)
        c->progress(c->arg, c->done, c->total < c->done ? c->done : c->total);
}

/* Copies a whole tree of src into the new file as it is (locals, purges). */
static int copy_tree_raw(cctx *c, const store_snap *src, int t, batch *b)
{
    store_btree_cursor *cur;
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    store_slice k, v;
    int rc = store_btree_cursor_open(&src->fr->tree[t], src->root[t].data, src->root[t].len, &all, &cur);
    if (rc)
        return rc;
    while ((rc = store_btree_cursor_next(cur, &k, &v)) == 1) {
        rc = batch_add(b, STORE_BTREE_PUT, k, v);
        if (!rc && b->n == BATCH)
            rc = batch_flush(c, b, t);
        if (rc)
            break;
    }
    store_btree_cursor_close(cur);
    if (!rc)
        rc = batch_flush(c, b, t);
    return rc;
}

/* Step 1: the full copy of S0. */
static int copy_initial(cctx *c, const store_snap *s, batch *b)
{
    store_btree_cursor *cur = NULL;
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    store_slice k, v;
    buf_t val = BUF_INIT;
    uint64_t seq;
    int rc = store_btree_cursor_open(&s->fr->tree[DBF_T_BYID], s->root[DBF_T_BYID].data, s->root[DBF_T_BYID].len,
                                     &all, &cur);
    if (rc)
        return rc;
    while ((rc = store_btree_cursor_next(cur, &k, &v)) == 1) {
        rc = copy_doc(c, s->fr->file, k, v, NULL, &val, &seq);
        if (!rc)
            rc = batch_add(b, STORE_BTREE_PUT, k, (store_slice){val.data, val.len});
        if (!rc && b->n == BATCH) {
            rc = batch_flush(c, b, DBF_T_BYID);
            report(c);
            if (!rc && closing(c->db))
                rc = DV_ERR_CLOSED;
        }
        if (rc)
            break;
        c->done++;
    }
    store_btree_cursor_close(cur);
    cur = NULL;
    if (!rc)
        rc = batch_flush(c, b, DBF_T_BYID);
    /* by-seq in seq order, each value rebuilt from the new by-id entry */
    if (!rc)
        rc = store_btree_cursor_open(&s->fr->tree[DBF_T_BYSEQ], s->root[DBF_T_BYSEQ].data,
                                     s->root[DBF_T_BYSEQ].len, &all, &cur);
    revtree t;
    revtree_init(&t);
    while (!rc && (rc = store_btree_cursor_next(cur, &k, &v)) == 1) {
        buf_reader r;
        const uint8_t *id;
        size_t idn;
        buf_reader_init(&r, v.p, v.n);
        rc = buf_get_bytes(&r, &id, &idn);
        if (rc)
            break;
        const buf_t *root = &c->dst->root[DBF_T_BYID];
        rc = store_btree_get(&c->nf->tree[DBF_T_BYID], root->data, root->len, (store_slice){id, idn}, &val);
        if (!rc)
            rc = dbf_byid_decode(val.data, val.len, &t, NULL, NULL, NULL, NULL);
        if (!rc)
            rc = dbf_byseq_encode(id, idn, &t, &val);
        if (!rc)
            rc = batch_add(b, STORE_BTREE_PUT, k, (store_slice){val.data, val.len});
        if (!rc && b->n == BATCH)
            rc = batch_flush(c, b, DBF_T_BYSEQ);
    }
    revtree_free(&t);
    store_btree_cursor_close(cur);
    if (!rc)
        rc = batch_flush(c, b, DBF_T_BYSEQ);
    if (!rc)
        rc = copy_tree_raw(c, s, DBF_T_LOCAL, b);
    if (!rc)
        rc = copy_tree_raw(c, s, DBF_T_PURGE, b);
    buf_free(&val);
    return rc;
}

/* The new file's by-id entry of id, if any: its tree and seq. */
static int dst_doc(cctx *c, store_slice id, revtree *t, uint64_t *seq, int *found)
{
    buf_t val = BUF_INIT;
    const buf_t *root = &c->dst->root[DBF_T_BYID];
    int rc = store_btree_get(&c->nf->tree[DBF_T_BYID], root->data, root->len, id, &val);
    *found = rc == DV_OK;
    if (rc == DV_ERR_NOTFOUND)
        rc = DV_OK;
    else if (!rc)
        rc = dbf_byid_decode(val.data, val.len, t, seq, NULL, NULL, NULL);
    buf_free(&val);
    return rc;
}

static int catchup_purges(cctx *c, const store_snap *s, batch *b, batch *seqb)
{
    if (s->purge_seq == c->dst->purge_seq)
        return DV_OK;
    store_btree_cursor *cur;
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    uint8_t from[8];
    store_slice k, v;
    buf_t tmp = BUF_INIT;
    revtree t;
    revtree_init(&t);
    dbf_seq_key(c->dst->purge_seq, from);
    r.has_start = 1;
    r.start_inclusive = 0;
    r.start = (store_slice){from, 8};
    int rc = store_btree_cursor_open(&s->fr->tree[DBF_T_PURGE], s->root[DBF_T_PURGE].data, s->root[DBF_T_PURGE].len,
                                     &r, &cur);
    if (rc)
        return rc;
    /* Purge entries go straight in (ascending keys past the copied ones);
     * docs purged away are removed from by-id and by-seq. */
    batch *pb = seqb;
    while ((rc = store_btree_cursor_next(cur, &k, &v)) == 1) {
        buf_reader rd;
        const uint8_t *id;
        size_t idn;
        uint64_t seq;
        int found;
        rc = batch_add(pb, STORE_BTREE_PUT, k, v);
        if (!rc && pb->n == BATCH)
            rc = batch_flush(c, pb, DBF_T_PURGE);
        buf_reader_init(&rd, v.p, v.n);
        if (!rc)
            rc = buf_get_bytes(&rd, &id, &idn);
        if (rc)
            break;
        rc = store_btree_get(&s->fr->tree[DBF_T_BYID], s->root[DBF_T_BYID].data, s->root[DBF_T_BYID].len,
                             (store_slice){id, idn}, &tmp);
        if (rc == DV_OK)
            continue; /* still there: the changes feed carries it */
        if (rc != DV_ERR_NOTFOUND)
            break;
        rc = dst_doc(c, (store_slice){id, idn}, &t, &seq, &found);
        if (rc)
            break;
        if (!found)
            continue;
        /* Remove at once (one modify each): purges are rare. */
        rc = batch_flush(c, pb, DBF_T_PURGE);
        uint8_t sk[8];
        dbf_seq_key(seq, sk);
        if (!rc)
            rc = batch_add(b, STORE_BTREE_DEL, (store_slice){id, idn}, (store_slice){NULL, 0});
        if (!rc)
            rc = batch_flush(c, b, DBF_T_BYID);
        if (!rc)
            rc = batch_add(b, STORE_BTREE_DEL, (store_slice){sk, 8}, (store_slice){NULL, 0});
        if (!rc)
            rc = batch_flush(c, b, DBF_T_BYSEQ);
        if (rc)
            break;
    }
    store_btree_cursor_close(cur);
    if (!rc)
        rc = batch_flush(c, pb, DBF_T_PURGE);
    revtree_free(&t);
    buf_free(&tmp);
    return rc;
}

/* Re-copies a chunk of changed docs: by-id puts and by-seq del+put. */
static int catchup_changes(cctx *c, const store_snap *s, batch *b, batch *seqb)
{
    store_btree_cursor *cur;
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    uint8_t from[8];
    store_slice k, v;
    buf_t src = BUF_INIT, val = BUF_INIT;
    revtree prev;
    revtree_init(&prev);
    dbf_seq_key(c->dst->update_seq, from);
    r.has_start = 1;
    r.start_inclusive = 0;
    r.start = (store_slice){from, 8};
    int rc = store_btree_cursor_open(&s->fr->tree[DBF_T_BYSEQ], s->root[DBF_T_BYSEQ].data, s->root[DBF_T_BYSEQ].len,
                                     &r, &cur);
    if (rc)
        return rc;
    while ((rc = store_btree_cursor_next(cur, &k, &v)) == 1) {
        buf_reader rd;
        const uint8_t *id;
        size_t idn;
        uint64_t oldseq, seq;
        int found;
        buf_reader_init(&rd, v.p, v.n);
        rc = buf_get_bytes(&rd, &id, &idn);
        if (!rc)
            rc = store_btree_get(&s->fr->tree[DBF_T_BYID], s->root[DBF_T_BYID].data, s->root[DBF_T_BYID].len,
                                 (store_slice){id, idn}, &src);
        if (!rc)
            rc = dst_doc(c, (store_slice){id, idn}, &prev, &oldseq, &found);
        if (!rc)
            rc = copy_doc(c, s->fr->file, (store_slice){id, idn}, (store_slice){src.data, src.len},
                          found ? &prev : NULL, &val, &seq);
        if (!rc)
            rc = batch_add(b, STORE_BTREE_PUT, (store_slice){id, idn}, (store_slice){val.data, val.len});
        if (!rc && found) {
            uint8_t sk[8];
            dbf_seq_key(oldseq, sk);
            rc = batch_add(seqb, STORE_BTREE_DEL, (store_slice){sk, 8}, (store_slice){NULL, 0});
        }
        if (rc)
            break;
        c->done++;
        if (b->n == BATCH) {
            /* by-seq puts are rebuilt below from the new by-id entries */
            rc = batch_flush(c, b, DBF_T_BYID);
            if (!rc)
                rc = batch_flush(c, seqb, DBF_T_BYSEQ);
            if (rc)
                break;
        }
    }
    store_btree_cursor_close(cur);
    cur = NULL;
    if (!rc)
        rc = batch_flush(c, b, DBF_T_BYID);
    if (!rc)
        rc = batch_flush(c, seqb, DBF_T_BYSEQ);
    /* Second pass over the same changes: by-seq entries from new by-id. */
    if (!rc)
        rc = store_btree_cursor_open(&s->fr->tree[DBF_T_BYSEQ], s->root[DBF_T_BYSEQ].data,
                                     s->root[DBF_T_BYSEQ].len, &r, &cur);
    while (!rc && (rc = store_btree_cursor_next(cur, &k, &v)) == 1) {
        buf_reader rd;
        const uint8_t *id;
        size_t idn;
        uint64_t seq;
        int found;
        buf_reader_init(&rd, v.p, v.n);
        rc = buf_get_bytes(&rd, &id, &idn);
        if (!rc)
            rc = dst_doc(c, (store_slice){id, idn}, &prev, &seq, &found);
        if (!rc && !found)
            rc = DV_ERR_CORRUPT;
        if (!rc)
            rc = dbf_byseq_encode(id, idn, &prev, &val);
        if (!rc)
            rc = batch_add(seqb, STORE_BTREE_PUT, k, (store_slice){val.data, val.len});
        if (!rc && seqb->n == BATCH)
            rc = batch_flush(c, seqb, DBF_T_BYSEQ);
    }
    if (!rc)
        rc = batch_flush(c, seqb, DBF_T_BYSEQ);
    if (cur)
        store_btree_cursor_close(cur);
    revtree_free(&prev);
    buf_free(&src);
    buf_free(&val);
    return rc;
}

/* Makes the new local tree equal to s's (a merge of two sorted scans). */
static int catchup_locals(cctx *c, const store_snap *s, batch *b)
{
    if (s->local_seq == c->dst->local_seq)
        return DV_OK;
    store_btree_cursor *a = NULL, *d = NULL;
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    store_slice ak, av, dk, dv;
    int rc = store_btree_cursor_open(&s->fr->tree[DBF_T_LOCAL], s->root[DBF_T_LOCAL].data, s->root[DBF_T_LOCAL].len,
                                     &all, &a);
    if (!rc)
        rc = store_btree_cursor_open(&c->nf->tree[DBF_T_LOCAL], c->dst->root[DBF_T_LOCAL].data,
                                     c->dst->root[DBF_T_LOCAL].len, &all, &d);
    int ha = rc ? -1 : store_btree_cursor_next(a, &ak, &av);
    int hd = rc ? -1 : store_btree_cursor_next(d, &dk, &dv);
    /* The batch is flushed only at the end: the scan of the new tree must
     * not see its own edits; locals are few (replication checkpoints). */
    while (!rc && (ha == 1 || hd == 1)) {
        if (ha < 0 || hd < 0) {
            rc = ha < 0 ? ha : hd;
            break;
        }
        int cmp = ha != 1 ? 1 : hd != 1 ? -1 : dbf_key_cmp(ak.p, ak.n, dk.p, dk.n);
        if (b->n + 1 >= 2 * BATCH) {
            rc = DV_ERR_TOO_LARGE;
            break;
        }
        if (cmp < 0 || (cmp == 0 && (av.n != dv.n || memcmp(av.p, dv.p, av.n))))
            rc = batch_add(b, STORE_BTREE_PUT, ak, av);
        else if (cmp > 0)
            rc = batch_add(b, STORE_BTREE_DEL, dk, (store_slice){NULL, 0});
        if (cmp <= 0 && !rc)
            ha = store_btree_cursor_next(a, &ak, &av);
        if (cmp >= 0 && !rc)
            hd = store_btree_cursor_next(d, &dk, &dv);
    }
    if (!rc && (ha < 0 || hd < 0))
        rc = ha < 0 ? ha : hd;
    if (a)
        store_btree_cursor_close(a);
    if (d)
        store_btree_cursor_close(d);
    if (rc == DV_ERR_TOO_LARGE) {
        /* Many locals: rebuild the tree from scratch instead. */
        b->n = 0;
        buf_reset(&c->dst->root[DBF_T_LOCAL]);
        rc = copy_tree_raw(c, s, DBF_T_LOCAL, b);
    } else if (!rc) {
        rc = batch_flush(c, b, DBF_T_LOCAL);
    }
    return rc;
}

/* Brings dst up to s. */
static int catchup(cctx *c, const store_snap *s, batch *b, batch *seqb)
{
    int rc = DV_OK;
    c->total += s->update_seq - c->dst->update_seq;
    rc = catchup_purges(c, s, b, seqb);
    if (!rc && s->update_seq != c->dst->update_seq)
        rc = catchup_changes(c, s, b, seqb);
    if (!rc)
        rc = catchup_locals(c, s, b);
    if (rc)
        return rc;
    c->dst->update_seq = s->update_seq;
    c->dst->purge_seq = s->purge_seq;
    c->dst->local_seq = s->local_seq;
    c->dst->revs_limit = s->revs_limit;
    buf_reset(&c->dst->security);
    return buf_append(&c->dst->security, s->security.data, s->security.len);
}

static int commit_dst(cctx *c, int sync)
{
    buf_t hdr = BUF_INIT;
    int rc = dbf_state_encode(c->dst, &hdr);
    if (!rc)
        rc = store_file_commit(c->nf->file, hdr.data, hdr.len, sync);
    if (!rc)
        c->dst->file_size = store_file_committed_size(c->nf->file);
    buf_free(&hdr);
    return rc;
}

int store_dbfile_compact(store_dbfile *db, store_compact_progress progress, void *arg)
{
    cctx c;
    store_snap *s = NULL;
    batch *b = calloc(2, sizeof *b);
    buf_t hdr = BUF_INIT;
    int rc = DV_OK, paused = 0, renamed = 0, rounds = 0;
    size_t plen = strlen(db->path);
    char *cpath = malloc(plen + 9);
    memset(&c, 0, sizeof c);
    c.db = db;
    c.progress = progress;
    c.arg = arg;
    if (!b || !cpath) {
        free(b);
        free(cpath);
        return DV_ERR_NOMEM;
    }
    memcpy(cpath, db->path, plen);
    memcpy(cpath + plen, ".compact", 9);
    pthread_mutex_lock(&db->mu);
    if (db->closing)
        rc = DV_ERR_CLOSED;
    else if (atomic_load(&db->compact_running))
        rc = DV_ERR_BUSY;
    else
        atomic_store(&db->compact_running, 1);
    pthread_mutex_unlock(&db->mu);
    if (rc) {
        free(b);
        free(cpath);
        return rc;
    }

    rc = db->vfs->unlink(db->vfs, cpath);
    if (rc == DV_ERR_NOTFOUND)
        rc = DV_OK;
    if (!rc)
        rc = dbf_fileref_open(db, cpath, STORE_FILE_CREATE | STORE_FILE_EXCL, 0, &c.nf, &hdr);
    if (!rc)
        rc = store_dbfile_snapshot(db, &s);
    if (!rc)
        rc = dbf_state_clone(s, &c.dst);
    if (rc)
        goto fail;
    /* dst describes the new file: empty trees, S0's settings, nothing yet
     * copied (update/purge seqs are advanced as data lands). */
    dbf_fileref_unref(c.dst->fr);
    c.dst->fr = c.nf;
    atomic_fetch_add(&c.nf->refs, 1);
    for (int i = 0; i < DBF_NTREES; i++)
        buf_reset(&c.dst->root[i]);
    {
        store_dbinfo info;
        store_snap_info(s, &info);
        c.total = info.doc_count + info.del_count;
    }
    rc = copy_initial(&c, s, b);
    if (rc)
        goto fail;
    c.dst->update_seq = s->update_seq;
    c.dst->purge_seq = s->purge_seq;
    c.dst->local_seq = s->local_seq;
    c.dst->revs_limit = s->revs_limit;
    report(&c);

    for (int round = 0; round < MAX_ROUNDS; round++) {
        store_snap_release(s);
        s = NULL;
        rc = store_dbfile_snapshot(db, &s);
        if (!rc && closing(db))
            rc = DV_ERR_CLOSED;
        if (rc)
            goto fail;
        uint64_t lag = s->update_seq - c.dst->update_seq;
        if (lag <= FINAL_LAG && s->purge_seq == c.dst->purge_seq)
            break;
        rc = catchup(&c, s, &b[0], &b[1]);
        if (rc)
            goto fail;
        rounds++;
        report(&c);
    }
    store_snap_release(s);
    s = NULL;

    /* Final round with the writer idle: nothing can commit to the old file
     * between this catch-up and the switch. */
    dbf_writer_pause(db);
    paused = 1;
    rc = store_dbfile_snapshot(db, &s);
    uint64_t final_lag = rc ? 0 : s->update_seq - c.dst->update_seq;
    if (!rc)
        rc = catchup(&c, s, &b[0], &b[1]);
    if (!rc)
        rc = commit_dst(&c, 1);
    if (!rc)
        rc = db->vfs->rename(db->vfs, cpath, db->path);
    if (rc)
        goto fail;
    renamed = 1;
    rc = dbf_sync_dir(db);
    pthread_mutex_lock(&db->mu);
    if (rc) {
        /* The swap may not survive a power loss yet: the writer retries
         * before its next commit and fails groups until it succeeds, so no
         * write is acknowledged in a file whose name could vanish. */
        log_error("dbfile: %s: directory sync after compaction swap failed: %s", db->path, dv_strerror(rc));
        db->dir_unsynced = 1;
    }
    dbf_fileref *old = db->fr;
    db->fr = c.nf;
    c.nf = NULL;
    dbf_publish_locked(db, c.dst);
    c.dst = NULL;
    db->unsynced = 0;
    pthread_mutex_unlock(&db->mu);
    dbf_fileref_unref(old);
    log_info("dbfile: %s compacted: %llu docs copied, %d catch-up rounds, %llu changes while paused", db->path,
             (unsigned long long)c.done, rounds, (unsigned long long)final_lag);
fail:
    if (paused)
        dbf_writer_resume(db);
    if (!rc)
        report(&c); /* never while paused: the callback may write */
    if (rc && !renamed) {
        log_warn("dbfile: %s: compaction stopped: %s", db->path, dv_strerror(rc));
        if (c.nf) {
            dbf_state_unref(c.dst);
            c.dst = NULL;
            dbf_fileref_unref(c.nf);
            c.nf = NULL;
            int urc = db->vfs->unlink(db->vfs, cpath);
            if (urc && urc != DV_ERR_NOTFOUND)
                log_warn("dbfile: cannot remove %s: %s", cpath, dv_strerror(urc));
        }
    }
    dbf_state_unref(c.dst);
    dbf_fileref_unref(c.nf);
    store_snap_release(s);
    batch_free(&b[0]);
    batch_free(&b[1]);
    free(b);
    free(c.amap);
    free(cpath);
    buf_free(&hdr);
    pthread_mutex_lock(&db->mu);
    atomic_store(&db->compact_running, 0);
    pthread_cond_broadcast(&db->cv_done);
    pthread_mutex_unlock(&db->mu);
    return rc;
}
