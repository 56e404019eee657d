/*
 * vquery.c — view queries (see vquery.h).
 *
 * Ranges are built from encoded view keys (vkey.h): LOW and HIGH bounds
 * stand before and after every doc id of a key, so "endkey=K with
 * inclusive_end" is simply the HIGH bound of K, and startkey_docid /
 * endkey_docid refine a bound to one row.  Descending iteration swaps which
 * bound is the start, as CouchDB's direction does.
 */
#include "views/vquery.h"

#include "base/log.h"
#include "base/status.h"
#include "json/collate.h"
#include "json/json.h"
#include "views/vkey.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_AT (32u << 10)

typedef struct qctx {
    view_index *ix;
    const view_def *def;
    view_snap *vs;
    const store_snap *dbsnap;
    const view_qargs *a;
    const store_btree *tree;
    const uint8_t *root;
    size_t root_len;
    view_sink_fn sink;
    void *sctx;
    buf_t out;
    uint64_t nrows;     /* rows written */
    uint64_t skip, left;
    int raw;
} qctx;

static int flush(qctx *q, int force)
{
    if (!q->out.len || (!force && q->out.len < FLUSH_AT))
        return DV_OK;
    int rc = q->sink(q->sctx, q->out.data, q->out.len);
    buf_reset(&q->out);
    return rc;
}

static int row_sep(qctx *q)
{
    return q->nrows++ ? buf_append_str(&q->out, ",\r\n") : DV_OK;
}

/* ---- bounds ------------------------------------------------------------------ */

typedef struct bound {
    int set;
    buf_t key;
    int inclusive;
} bound;

static int bound_make(bound *b, int kind, store_slice key, store_slice docid, int inclusive)
{
    b->set = 1;
    b->inclusive = inclusive;
    return vkey_encode(kind, key.p, key.n, docid.p, docid.n, &b->key);
}

/* The query's range in iteration order (start, end). */
static int query_range(const view_qargs *a, bound *start, bound *end)
{
    static const store_slice none = {NULL, 0};
    int rc = DV_OK;
    if (!a->descending) {
        if (a->has_start)
            rc = a->has_start_docid ? bound_make(start, VKEY_ROW, a->start_key, a->start_docid, 1)
                                    : bound_make(start, VKEY_LOW, a->start_key, none, 1);
        if (rc == DV_OK && a->has_end)
            rc = a->has_end_docid ? bound_make(end, VKEY_ROW, a->end_key, a->end_docid, a->inclusive_end)
                                  : bound_make(end, a->inclusive_end ? VKEY_HIGH : VKEY_LOW, a->end_key, none, 1);
    } else {
        if (a->has_start)
            rc = a->has_start_docid ? bound_make(start, VKEY_ROW, a->start_key, a->start_docid, 1)
                                    : bound_make(start, VKEY_HIGH, a->start_key, none, 1);
        if (rc == DV_OK && a->has_end)
            rc = a->has_end_docid ? bound_make(end, VKEY_ROW, a->end_key, a->end_docid, a->inclusive_end)
                                  : bound_make(end, a->inclusive_end ? VKEY_LOW : VKEY_HIGH, a->end_key, none, 1);
    }
    return rc;
}

static void range_from(store_btree_range *r, const bound *start, const bound *end, int descending)
{
    memset(r, 0, sizeof *r);
    r->descending = descending;
    r->start_inclusive = r->end_inclusive = 1;
    if (start->set) {
        r->has_start = 1;
        r->start = (store_slice){start->key.data, start->key.len};
        r->start_inclusive = start->inclusive;
    }
    if (end->set) {
        r->has_end = 1;
        r->end = (store_slice){end->key.data, end->key.len};
        r->end_inclusive = end->inclusive;
    }
}

static int vcmp(const qctx *q, const buf_t *a, const buf_t *b)
{
    return vkey_compare(q->raw ? (void *)1 : NULL, (store_slice){a->data, a->len}, (store_slice){b->data, b->len});
}

/* ---- map rows ------------------------------------------------------------------ */

/* include_docs: the document the row names — the value's _id (and _rev)
 * when the value is an object that has one, else the row's doc id. */
static int write_doc(qctx *q, json_writer *w, store_slice id, store_slice value)
{
    json_doc jd = JSON_DOC_INIT;
    store_rev rev;
    int has_rev = 0;
    const uint8_t *idp = id.p;
    size_t idn = id.n;
    if (value.n && value.p[0] == '{' && json_doc_parse(&jd, value.p, value.n, 0, NULL) == DV_OK) {
        const json_val *lid = json_object_get_cstr(json_doc_root(&jd), "_id");
        const json_val *lrev = json_object_get_cstr(json_doc_root(&jd), "_rev");
        if (lid && json_is_string(lid)) {
            idp = (const uint8_t *)json_str(lid, &idn);
            size_t rl;
            const char *rs = lrev && json_is_string(lrev) ? json_str(lrev, &rl) : NULL;
            has_rev = rs && store_rev_parse(rs, rl, &rev) == DV_OK;
        }
    }
    store_docinfo di;
    store_docinfo_init(&di);
    int rc = store_snap_get_doc(q->dbsnap, idp, idn, &di);
    uint32_t idx = REVTREE_NONE;
    if (rc == DV_OK) {
        idx = has_rev ? revtree_find(&di.tree, &rev) : revtree_winner(&di.tree);
        if (idx != REVTREE_NONE && (!di.tree.nodes[idx].has_body || (!has_rev && di.tree.nodes[idx].deleted)))
            idx = REVTREE_NONE;
    }
    json_write_key_cstr(w, "doc");
    if (rc == DV_ERR_NOTFOUND || (rc == DV_OK && idx == REVTREE_NONE)) {
        rc = json_write_null(w);
    } else if (rc == DV_OK) {
        db_render_opts o;
        memset(&o, 0, sizeof o);
        o.conflicts = q->a->conflicts;
        o.attachments = q->a->attachments;
        o.att_encoding_info = q->a->att_encoding_info;
        rc = db_render_doc(q->dbsnap, &di, idx, &o, w, NULL);
    }
    store_docinfo_free(&di);
    json_doc_free(&jd);
    return rc;
}

/* Writes the rows of one stored entry (several for duplicates), honouring
 * skip and limit.  *stop = 1 once the limit is reached. */
static int emit_entry(qctx *q, store_slice k, store_slice v, int *stop)
{
    vkey key;
    view_value_iter it;
    store_slice val;
    int rc = vkey_decode(k, &key);
    if (rc == DV_OK)
        rc = view_value_iter_init(&it, v);
    while (rc == DV_OK && (rc = view_value_next(&it, &val)) == 1) {
        rc = DV_OK;
        if (q->skip) {
            q->skip--;
            continue;
        }
        if (!q->left) {
            *stop = 1;
            return DV_OK;
        }
        q->left--;
        json_writer w;
        if ((rc = row_sep(q)) != DV_OK)
            break;
        json_writer_init(&w, &q->out);
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "id");
        json_write_string(&w, (const char *)key.id.p, key.id.n);
        json_write_key_cstr(&w, "key");
        json_write_raw(&w, (const char *)key.key.p, key.key.n);
        json_write_key_cstr(&w, "value");
        json_write_raw(&w, (const char *)val.p, val.n);
        if (q->a->include_docs && (rc = write_doc(q, &w, key.id, val)) != DV_OK)
            break;
        json_write_end_object(&w);
        if ((rc = w.err) == DV_OK)
            rc = flush(q, 0);
    }
    return rc < 0 ? rc : DV_OK;
}

static int map_range(qctx *q, const store_btree_range *r, int *stop)
{
    store_btree_cursor *c;
    int rc = store_btree_cursor_open(q->tree, q->root, q->root_len, r, &c);
    if (rc != DV_OK)
        return rc;
    store_slice k, v;
    while (!*stop && q->left) {
        int more = store_btree_cursor_next(c, &k, &v);
        if (more <= 0) {
            rc = more;
            break;
        }
        if ((rc = emit_entry(q, k, v, stop)) != DV_OK)
            break;
    }
    store_btree_cursor_close(c);
    return rc;
}

/* Rows (duplicates expanded) in range r, from the tree's reductions. */
static int count_rows(qctx *q, const store_btree_range *r, uint64_t *rows)
{
    uint64_t entries;
    buf_t red = BUF_INIT;
    store_slice user;
    int rc = store_btree_reduce_range(q->tree, q->root, q->root_len, r, &entries, &red);
    if (rc == DV_OK)
        rc = view_red_split((store_slice){red.data, red.len}, rows, &user);
    buf_free(&red);
    return rc;
}

static int map_query(qctx *q)
{
    const view_qargs *a = q->a;
    uint64_t total = view_snap_rows(q->vs), offset = 0;
    int rc = DV_OK, stop = 0;
    bound start = {0}, end = {0};
    store_btree_range r;
    if (!a->has_keys) {
        if ((rc = query_range(a, &start, &end)) != DV_OK)
            goto done;
        range_from(&r, &start, &end, a->descending);
        if (start.set) {
            /* rows before the start, in iteration order */
            store_btree_range before;
            memset(&before, 0, sizeof before);
            before.start_inclusive = before.end_inclusive = 1;
            if (!a->descending) {
                before.has_end = 1;
                before.end = r.start;
                before.end_inclusive = !r.start_inclusive;
            } else {
                before.has_start = 1;
                before.start = r.start;
                before.start_inclusive = !r.start_inclusive;
            }
            rc = count_rows(q, &before, &offset);
            if (rc != DV_OK)
                goto done;
        }
    }
    offset += a->skip;
    if (offset > total)
        offset = total;
    rc = buf_printf(&q->out, "{\"total_rows\":%" PRIu64 ",\"offset\":%" PRIu64, total, offset);
    if (rc == DV_OK && a->update_seq)
        rc = buf_printf(&q->out, ",\"update_seq\":\"%" PRIu64 "\"", view_snap_seq(q->vs));
    if (rc == DV_OK)
        rc = buf_append_str(&q->out, ",\"rows\":[\r\n");
    if (rc != DV_OK)
        goto done;
    if (!a->has_keys) {
        rc = map_range(q, &r, &stop);
    } else {
        static const store_slice none = {NULL, 0};
        for (size_t i = 0; rc == DV_OK && !stop && q->left && i < a->nkeys; i++) {
            size_t k = a->descending ? a->nkeys - 1 - i : i;
            bound lo = {0}, hi = {0};
            rc = bound_make(&lo, VKEY_LOW, a->keys[k], none, 1);
            if (rc == DV_OK)
                rc = bound_make(&hi, VKEY_HIGH, a->keys[k], none, 1);
            if (rc == DV_OK) {
                range_from(&r, a->descending ? &hi : &lo, a->descending ? &lo : &hi, a->descending);
                rc = map_range(q, &r, &stop);
            }
            buf_free(&lo.key);
            buf_free(&hi.key);
        }
    }
    if (rc == DV_OK)
        rc = buf_append_str(&q->out, "\r\n]}\n");
done:
    buf_free(&start.key);
    buf_free(&end.key);
    return rc;
}

/* ---- reduce rows ----------------------------------------------------------------- */

static int write_reduction(qctx *q, json_writer *w, store_slice red)
{
    if (q->def->rkind == VIEW_REDUCE_JS)
        return red.n ? json_write_raw(w, (const char *)red.p, red.n) : json_write_null(w);
    buf_t fin = BUF_INIT;
    int rc = view_reduce_finalize(q->def->rkind, red, &fin);
    if (rc == DV_OK)
        rc = json_write_raw(w, (const char *)fin.data, fin.len);
    buf_free(&fin);
    return rc;
}

/* One reduce row for the range r with the given group key (NULL: null). */
static int reduce_row(qctx *q, const store_btree_range *r, const void *gkey, size_t gklen, int *stop)
{
    uint64_t count = 0, rows = 0;
    buf_t red = BUF_INIT;
    store_slice user = {NULL, 0};
    int rc = store_btree_reduce_range(q->tree, q->root, q->root_len, r, &count, &red);
    if (rc == DV_OK)
        rc = view_red_split((store_slice){red.data, red.len}, &rows, &user);
    if (rc == DV_OK && count) {
        if (q->skip) {
            q->skip--;
        } else if (!q->left) {
            *stop = 1;
        } else {
            q->left--;
            json_writer w;
            if ((rc = row_sep(q)) == DV_OK) {
                json_writer_init(&w, &q->out);
                json_write_begin_object(&w);
                json_write_key_cstr(&w, "key");
                if (gkey)
                    json_write_raw(&w, gkey, gklen);
                else
                    json_write_null(&w);
                json_write_key_cstr(&w, "value");
                rc = write_reduction(q, &w, user);
                json_write_end_object(&w);
                if (rc == DV_OK)
                    rc = w.err;
                if (rc == DV_OK)
                    rc = flush(q, 0);
            }
        }
    }
    buf_free(&red);
    return rc;
}

/* The group key of a row's key at the query's group level: the key itself
 * (group=true, non-arrays, short arrays) or its first `level` elements. */
static int group_key(const qctx *q, store_slice key, buf_t *out, int *is_prefix)
{
    *is_prefix = 0;
    long long level = q->a->group_level;
    if (level == VIEW_GROUP_EXACT || key.n == 0 || key.p[0] != '[')
        return buf_append(out, key.p, key.n);
    json_doc jd = JSON_DOC_INIT;
    int rc = json_doc_parse(&jd, key.p, key.n, 0, NULL);
    if (rc != DV_OK) {
        json_doc_free(&jd);
        return DV_ERR_CORRUPT;
    }
    const json_val *arr = json_doc_root(&jd);
    if ((long long)json_len(arr) < level) {
        rc = buf_append(out, key.p, key.n); /* shorter than the level: only itself */
    } else if ((long long)json_len(arr) == level) {
        rc = buf_append(out, key.p, key.n);
        *is_prefix = 1; /* longer arrays starting with it share its group */
    } else {
        json_writer w;
        json_writer_init(&w, out);
        json_write_begin_array(&w);
        json_iter it = json_iter_begin(arr);
        const json_val *x;
        for (long long i = 0; i < level && json_iter_elem(&it, &x); i++)
            json_write_value(&w, x);
        json_write_end_array(&w);
        rc = w.err;
        *is_prefix = 1;
    }
    json_doc_free(&jd);
    return rc;
}

/* Grouped reduce: one row per group key, each reduced over its key range
 * (clipped to the query range) from the tree's reductions. */
static int grouped(qctx *q, const bound *qstart, const bound *qend)
{
    const view_qargs *a = q->a;
    store_btree_range r;
    bound cur_start = {0};
    int rc = DV_OK, stop = 0;
    if (qstart->set && (rc = buf_append(&cur_start.key, qstart->key.data, qstart->key.len)) == DV_OK) {
        cur_start.set = 1;
        cur_start.inclusive = qstart->inclusive;
    }
    static const store_slice none = {NULL, 0};
    while (rc == DV_OK && !stop && q->left) {
        /* the first row at or after cur_start */
        range_from(&r, &cur_start, qend, a->descending);
        store_btree_cursor *c;
        if ((rc = store_btree_cursor_open(q->tree, q->root, q->root_len, &r, &c)) != DV_OK)
            break;
        store_slice k, v;
        int more = store_btree_cursor_next(c, &k, &v);
        vkey key;
        buf_t gk = BUF_INIT;
        int is_prefix = 0;
        if (more == 1 && (rc = vkey_decode(k, &key)) == DV_OK)
            rc = group_key(q, key.key, &gk, &is_prefix);
        store_btree_cursor_close(c);
        if (more <= 0 || rc != DV_OK) {
            if (more < 0)
                rc = more;
            buf_free(&gk);
            break;
        }
        /* the group's range: [LOW(g), HIGH(g)] or, for a prefix, up to PREFIX_HIGH(g) */
        bound glo = {0}, ghi = {0};
        rc = bound_make(&glo, VKEY_LOW, (store_slice){gk.data, gk.len}, none, 1);
        if (rc == DV_OK)
            rc = bound_make(&ghi, is_prefix ? VKEY_PREFIX_HIGH : VKEY_HIGH, (store_slice){gk.data, gk.len}, none, 1);
        if (rc == DV_OK) {
            bound *gs = a->descending ? &ghi : &glo, *ge = a->descending ? &glo : &ghi;
            /* clip to the query range */
            const bound *s = gs, *e2 = ge;
            int cs = cur_start.set ? vcmp(q, &cur_start.key, &gs->key) : -1;
            if (cur_start.set && (a->descending ? cs < 0 : cs > 0))
                s = &cur_start;
            if (qend->set) {
                int ce = vcmp(q, &qend->key, &ge->key);
                if (a->descending ? ce > 0 : ce < 0)
                    e2 = qend;
            }
            range_from(&r, s, e2, a->descending);
            rc = reduce_row(q, &r, gk.data, gk.len, &stop);
            /* continue after the group */
            buf_reset(&cur_start.key);
            if (rc == DV_OK)
                rc = buf_append(&cur_start.key, ge->key.data, ge->key.len);
            cur_start.set = 1;
            cur_start.inclusive = 0;
        }
        buf_free(&glo.key);
        buf_free(&ghi.key);
        buf_free(&gk);
    }
    buf_free(&cur_start.key);
    return rc;
}

static int reduce_query(qctx *q)
{
    const view_qargs *a = q->a;
    bound start = {0}, end = {0};
    store_btree_range r;
    int rc = buf_append_str(&q->out, "{");
    if (rc == DV_OK && a->update_seq)
        rc = buf_printf(&q->out, "\"update_seq\":\"%" PRIu64 "\",", view_snap_seq(q->vs));
    if (rc == DV_OK)
        rc = buf_append_str(&q->out, "\"rows\":[\r\n");
    int stop = 0;
    if (rc == DV_OK && a->has_keys) {
        /* keys with reduce: one row per key (grouped) or the keys' total */
        static const store_slice none = {NULL, 0};
        for (size_t i = 0; rc == DV_OK && !stop && i < a->nkeys; i++) {
            size_t k = a->descending ? a->nkeys - 1 - i : i;
            bound lo = {0}, hi = {0};
            rc = bound_make(&lo, VKEY_LOW, a->keys[k], none, 1);
            if (rc == DV_OK)
                rc = bound_make(&hi, VKEY_HIGH, a->keys[k], none, 1);
            if (rc == DV_OK && a->group_level == VIEW_GROUP_NONE) {
                range_from(&r, a->descending ? &hi : &lo, a->descending ? &lo : &hi, a->descending);
                rc = reduce_row(q, &r, NULL, 0, &stop);
            } else if (rc == DV_OK) {
                rc = grouped(q, a->descending ? &hi : &lo, a->descending ? &lo : &hi);
            }
            buf_free(&lo.key);
            buf_free(&hi.key);
        }
    } else if (rc == DV_OK && (rc = query_range(a, &start, &end)) == DV_OK) {
        if (a->group_level == VIEW_GROUP_NONE) {
            range_from(&r, &start, &end, a->descending);
            rc = reduce_row(q, &r, NULL, 0, &stop);
        } else {
            rc = grouped(q, &start, &end);
        }
    }
    if (rc == DV_OK)
        rc = buf_append_str(&q->out, "\r\n]}\n");
    buf_free(&start.key);
    buf_free(&end.key);
    return rc;
}

int view_query_run(view_index *ix, const view_def *def, view_snap *vs, const store_snap *dbsnap,
                   const view_qargs *a, view_sink_fn sink, void *ctx)
{
    qctx q;
    memset(&q, 0, sizeof q);
    q.ix = ix;
    q.def = def;
    q.vs = vs;
    q.dbsnap = dbsnap;
    q.a = a;
    q.sink = sink;
    q.sctx = ctx;
    q.skip = a->skip;
    q.left = a->limit;
    q.tree = view_snap_tree(vs, &q.root, &q.root_len);
    q.raw = view_snap_raw(vs);
    int rc = a->reduce ? reduce_query(&q) : map_query(&q);
    if (rc == DV_OK)
        rc = flush(&q, 1);
    buf_free(&q.out);
    return rc;
}
