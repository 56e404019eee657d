/*
 * dbfile_read.c — reads against a snapshot: documents by id, id ranges,
 * the changes feed (by-seq), local documents.
 *
 * Every read goes through the snapshot's own fileref and roots, so it sees
 * exactly one committed state, whatever the writer or compaction does
 * meanwhile.  Cursors wrap store_btree cursors: bounded memory, lazily read.
 * Values are decoded with bounds checks; a value that does not decode is
 * DV_ERR_CORRUPT (logged), never trusted.
 */
#include "store/dbfile_int.h"

#include "base/log.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

void store_docinfo_init(store_docinfo *d)
{
    buf_init(&d->id);
    revtree_init(&d->tree);
    d->seq = 0;
    d->deleted = 0;
}

void store_docinfo_free(store_docinfo *d)
{
    buf_free(&d->id);
    revtree_free(&d->tree);
}

static int corrupt(const store_snap *s, const char *what)
{
    log_error("dbfile: %s: undecodable %s value", store_file_path(s->fr->file), what);
    return DV_ERR_CORRUPT;
}

static int fill_docinfo(const store_snap *s, store_slice key, store_slice val, store_docinfo *d)
{
    buf_reset(&d->id);
    int rc = buf_append(&d->id, key.p, key.n);
    if (rc)
        return rc;
    rc = dbf_byid_decode(val.p, val.n, &d->tree, &d->seq, &d->deleted, NULL, NULL);
    return rc == DV_ERR_CORRUPT ? corrupt(s, "by-id") : rc;
}

typedef struct get_doc_arg {
    const store_snap *s;
    store_slice key;
    store_docinfo *out;
} get_doc_arg;

static int get_doc_fill(void *arg, store_slice val)
{
    get_doc_arg *a = arg;
    return fill_docinfo(a->s, a->key, val, a->out);
}

int store_snap_get_doc(const store_snap *s, const uint8_t *id, size_t idlen, store_docinfo *out)
{
    /* Decoded straight from the cached leaf: no copy of the value. */
    get_doc_arg a = {s, {id, idlen}, out};
    const buf_t *root = &s->root[DBF_T_BYID];
    return store_btree_get_with(&s->fr->tree[DBF_T_BYID], root->data, root->len, a.key, get_doc_fill, &a);
}

/* ---- id cursor ------------------------------------------------------- */

struct store_id_cursor {
    const store_snap *s;
    store_btree_cursor *c;
};

int store_snap_iter_ids(const store_snap *s, const store_btree_range *r, store_id_cursor **out)
{
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    store_id_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    c->s = s;
    const buf_t *root = &s->root[DBF_T_BYID];
    int rc = store_btree_cursor_open(&s->fr->tree[DBF_T_BYID], root->data, root->len, r ? r : &all, &c->c);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return DV_OK;
}

int store_id_cursor_next(store_id_cursor *c, store_docinfo *d)
{
    store_slice k, v;
    int rc = store_btree_cursor_next(c->c, &k, &v);
    if (rc <= 0)
        return rc;
    rc = fill_docinfo(c->s, k, v, d);
    return rc ? rc : 1;
}

int store_id_cursor_skip(store_id_cursor *c, uint64_t n) { return store_btree_cursor_skip(c->c, n); }

void store_id_cursor_close(store_id_cursor *c)
{
    if (!c)
        return;
    store_btree_cursor_close(c->c);
    free(c);
}

int store_snap_count_ids_before(const store_snap *s, const uint8_t *id, size_t idlen, int descending,
                                uint64_t *out)
{
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    /* Ascending: ids < id.  Descending order's "before" is ids > id. */
    if (descending) {
        r.has_start = 1;
        r.start_inclusive = 0;
        r.start = (store_slice){id, idlen};
    } else {
        r.has_end = 1;
        r.end_inclusive = 0;
        r.end = (store_slice){id, idlen};
    }
    const buf_t *root = &s->root[DBF_T_BYID];
    return store_btree_reduce_range(&s->fr->tree[DBF_T_BYID], root->data, root->len, &r, out, NULL);
}

int store_snap_count_docs(const store_snap *s, const store_btree_range *r, uint64_t *live, uint64_t *deleted)
{
    buf_t red = BUF_INIT;
    uint64_t rows, v[4] = {0, 0, 0, 0};
    const buf_t *root = &s->root[DBF_T_BYID];
    int rc = store_btree_reduce_range(&s->fr->tree[DBF_T_BYID], root->data, root->len, r, &rows, &red);
    if (rc == DV_OK && red.len && dbf_byid_red_decode((store_slice){red.data, red.len}, v) != DV_OK)
        rc = corrupt(s, "by-id reduction");
    buf_free(&red);
    if (rc == DV_OK && v[0] + v[1] != rows)
        rc = corrupt(s, "by-id reduction count");
    if (live)
        *live = rc == DV_OK ? v[0] : 0;
    if (deleted)
        *deleted = rc == DV_OK ? v[1] : 0;
    return rc;
}

/* ---- changes ------------------------------------------------------- */

void store_change_init(store_change *c)
{
    memset(c, 0, sizeof *c);
    buf_init(&c->id);
}

void store_change_free(store_change *c)
{
    buf_free(&c->id);
    free(c->leaves);
    store_change_init(c);
}

static int decode_change(store_slice k, store_slice v, store_change *ch)
{
    buf_reader r;
    const uint8_t *p;
    size_t n;
    uint64_t cnt, x;
    int rc = dbf_seq_key_decode(k, &ch->seq);
    if (rc)
        return rc;
    buf_reader_init(&r, v.p, v.n);
    rc = buf_get_bytes(&r, &p, &n);
    if (!rc)
        rc = buf_get_varint(&r, &cnt);
    if (!rc && (cnt == 0 || cnt > buf_reader_left(&r)))
        rc = DV_ERR_CORRUPT;
    if (rc)
        return rc;
    buf_reset(&ch->id);
    rc = buf_append(&ch->id, p, n);
    if (rc)
        return rc;
    if (cnt > ch->cap) {
        store_change_leaf *nl = realloc(ch->leaves, cnt * sizeof *nl);
        if (!nl)
            return DV_ERR_NOMEM;
        ch->leaves = nl;
        ch->cap = cnt;
    }
    ch->nleaves = 0;
    for (uint64_t i = 0; i < cnt; i++) {
        store_change_leaf *l = &ch->leaves[i];
        uint8_t del;
        memset(l, 0, sizeof *l);
        rc = buf_get_varint(&r, &l->rev.pos);
        if (!rc)
            rc = buf_get_bytes(&r, &p, &n);
        if (!rc && (n == 0 || n > STORE_REV_ID_MAX))
            rc = DV_ERR_CORRUPT;
        if (rc)
            return DV_ERR_CORRUPT;
        memcpy(l->rev.id, p, n);
        l->rev.len = (uint8_t)n;
        rc = buf_get_u8(&r, &del);
        if (!rc)
            rc = buf_get_varint(&r, &l->body.off);
        if (!rc)
            rc = buf_get_varint(&r, &x);
        if (rc || x > UINT32_MAX || del > 1)
            return DV_ERR_CORRUPT;
        l->body.size = (uint32_t)x;
        l->deleted = del;
    }
    ch->nleaves = cnt;
    ch->deleted = ch->leaves[0].deleted;
    return buf_reader_left(&r) ? DV_ERR_CORRUPT : DV_OK;
}

struct store_seq_cursor {
    const store_snap *s;
    store_btree_cursor *c;
    uint8_t since[8];
};

int store_snap_iter_changes(const store_snap *s, uint64_t since, int descending, store_seq_cursor **out)
{
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    store_seq_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    c->s = s;
    if (descending) {
        r.descending = 1;
    } else {
        dbf_seq_key(since, c->since);
        r.has_start = 1;
        r.start_inclusive = 0;
        r.start = (store_slice){c->since, 8};
    }
    const buf_t *root = &s->root[DBF_T_BYSEQ];
    int rc = store_btree_cursor_open(&s->fr->tree[DBF_T_BYSEQ], root->data, root->len, &r, &c->c);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return DV_OK;
}

int store_seq_cursor_next(store_seq_cursor *c, store_change *ch)
{
    store_slice k, v;
    int rc = store_btree_cursor_next(c->c, &k, &v);
    if (rc <= 0)
        return rc;
    rc = decode_change(k, v, ch);
    if (rc == DV_ERR_CORRUPT)
        return corrupt(c->s, "by-seq");
    return rc ? rc : 1;
}

void store_seq_cursor_close(store_seq_cursor *c)
{
    if (!c)
        return;
    store_btree_cursor_close(c->c);
    free(c);
}

int store_snap_count_changes_since(const store_snap *s, uint64_t since, uint64_t *out)
{
    uint8_t k[8];
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    dbf_seq_key(since, k);
    r.has_start = 1;
    r.start_inclusive = 0;
    r.start = (store_slice){k, 8};
    const buf_t *root = &s->root[DBF_T_BYSEQ];
    return store_btree_reduce_range(&s->fr->tree[DBF_T_BYSEQ], root->data, root->len, &r, out, NULL);
}

/* ---- local docs ------------------------------------------------------- */

int store_snap_get_local(const store_snap *s, const uint8_t *id, size_t idlen, uint64_t *rev, buf_t *body)
{
    buf_t val = BUF_INIT;
    const uint8_t *b;
    size_t bn;
    const buf_t *root = &s->root[DBF_T_LOCAL];
    int rc = store_btree_get(&s->fr->tree[DBF_T_LOCAL], root->data, root->len, (store_slice){id, idlen}, &val);
    if (!rc) {
        rc = dbf_local_decode((store_slice){val.data, val.len}, rev, &b, &bn);
        if (rc == DV_ERR_CORRUPT)
            rc = corrupt(s, "local");
    }
    if (!rc && body) {
        buf_reset(body);
        rc = buf_append(body, b, bn);
    }
    buf_free(&val);
    return rc;
}

struct store_local_cursor {
    const store_snap *s;
    store_btree_cursor *c;
};

int store_snap_iter_local(const store_snap *s, const store_btree_range *r, store_local_cursor **out)
{
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    store_local_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    c->s = s;
    const buf_t *root = &s->root[DBF_T_LOCAL];
    int rc = store_btree_cursor_open(&s->fr->tree[DBF_T_LOCAL], root->data, root->len, r ? r : &all, &c->c);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return DV_OK;
}

int store_local_cursor_next(store_local_cursor *c, buf_t *id, uint64_t *rev, buf_t *body)
{
    store_slice k, v;
    const uint8_t *b;
    size_t bn;
    int rc = store_btree_cursor_next(c->c, &k, &v);
    if (rc <= 0)
        return rc;
    rc = dbf_local_decode(v, rev, &b, &bn);
    if (rc)
        return corrupt(c->s, "local");
    buf_reset(id);
    rc = buf_append(id, k.p, k.n);
    if (!rc && body) {
        buf_reset(body);
        rc = buf_append(body, b, bn);
    }
    return rc ? rc : 1;
}

void store_local_cursor_close(store_local_cursor *c)
{
    if (!c)
        return;
    store_btree_cursor_close(c->c);
    free(c);
}
