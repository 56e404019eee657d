/*
 * bulk_get_mp.c — the multipart answers of POST /{db}/_bulk_get, as
 * CouchDB 3 sends them (chttpd_db:bulk_get_ret_multipart and
 * send_docs_multipart_bulk_get) when Accept does not accept
 * application/json but accepts multipart/mixed or multipart/related.
 *
 * Wire form (OB, IB: "--" followed by 32 hex digits, CouchDB's
 * bulk_get_multipart_boundary; one IB per requested item):
 *   Content-Type: multipart/mixed; boundary="OB"  (or multipart/related)
 *   for each revision answered, in request order:
 *     CRLF "--OB" CRLF Content-Type: application/json CRLF CRLF <doc JSON>
 *         when the revision sends no attachment data (all stubs or none);
 *     CRLF "--OB" CRLF X-Doc-Id: <id> CRLF X-Rev-Id: <rev> CRLF
 *         Content-Type: multipart/related; boundary=IB CRLF CRLF
 *         <the document's multipart/related form with IB (mp_doc.h)>
 *         when attachments follow (every attachment, as GET ?open_revs
 *         sends them, except those atts_since leaves as stubs);
 *     CRLF "--OB" CRLF Content-Type: application/json; error="true"
 *         CRLF CRLF <error JSON>: {"id","rev","error","reason"} for a bad
 *         item or an absent document asked without rev,
 *         {"rev","error","reason"} for a revision that is not there;
 *   then CRLF "--OB--" CRLF, only when at least one item was asked (an
 *   empty "docs" answers an empty body).
 * Where divan differs: X-Doc-Id is the id with CR and LF replaced by
 * spaces, so that an id cannot forge headers (CouchDB writes it raw); the
 * JSON part's _id is exact.
 *
 * Streaming: the answer is an att_stream owning the iterator's database
 * reference and snapshot (one snapshot for every item, as the JSON
 * answer).  Its `more` callback asks the iterator for one item at a time,
 * notes the item's revisions (indices and rendered error parts, O(leaves
 * of one document)), then queues one revision per call: a stream holds
 * one revision body at a time, and attachment bytes go out 64 KiB per
 * fill, so memory stays bounded by one document whatever the attachments'
 * and the answer's sizes.
 */
#include "base/log.h"
#include "base/status.h"
#include "http/att_stream.h"
#include "http/bulk_get.h"
#include "http/hutil.h"
#include "http/mime.h"
#include "http/mp_doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOUNDARY_LEN 34 /* "--" + 32 hex digits */

/* One part of the current item: a revision to render, or an error. */
typedef struct mp_entry {
    uint32_t idx;    /* REVTREE_NONE: an error part, its JSON in errs */
    size_t off, len; /* error JSON */
} mp_entry;

typedef struct bulk_mp {
    http_bulk_get *g;
    const store_docinfo *di; /* the current item's document (owned by g) */
    db_render_opts o;        /* its render options (atts_since owned by g) */
    mp_entry *e;             /* the current item's parts */
    size_t n, cap, cur;
    buf_t errs;              /* their error JSON, back to back */
    int items;               /* items reported so far */
    int ended;               /* the iterator is exhausted */
    char outer[BOUNDARY_LEN + 1], inner[BOUNDARY_LEN + 1];
} bulk_mp;

static void new_boundary(char out[BOUNDARY_LEN + 1])
{
    out[0] = out[1] = '-';
    att_stream_boundary(out + 2);
}

const char *http_bulk_get_multipart_type(http_req_t *r)
{
    const char *accept = http_req_header(r, "accept");
    if (mime_accepts(accept, "application/json"))
        return NULL;
    if (mime_accepts(accept, "multipart/mixed"))
        return "multipart/mixed";
    return mime_accepts(accept, "multipart/related") ? "multipart/related" : NULL;
}

/* ---- iterator callbacks: note the item's parts ---------------------------- */

static int push(bulk_mp *x, mp_entry e)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        mp_entry *v = realloc(x->e, cap * sizeof *v);
        if (!v)
            return DV_ERR_NOMEM;
        x->e = v;
        x->cap = cap;
    }
    x->e[x->n++] = e;
    return DV_OK;
}

static int cb_doc_begin(void *ctx, const json_val *id)
{
    bulk_mp *x = ctx;
    (void)id;
    x->items++;
    x->n = x->cur = 0;
    buf_reset(&x->errs);
    new_boundary(x->inner);
    return DV_OK;
}

static int cb_rev_ok(void *ctx, const store_snap *snap, const store_docinfo *di, uint32_t idx,
                     const db_render_opts *o)
{
    bulk_mp *x = ctx;
    (void)snap; /* the stream's: the iterator's snapshot was handed to it */
    x->di = di;
    x->o = *o;
    return push(x, (mp_entry){idx, 0, 0});
}

static int cb_rev_error(void *ctx, const http_bulk_get_error *e)
{
    bulk_mp *x = ctx;
    size_t off = x->errs.len;
    json_writer w;
    json_writer_init(&w, &x->errs);
    if (e->missing_rev) {
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "rev");
        json_write_cstr(&w, e->rev_text);
        json_write_key_cstr(&w, "error");
        json_write_cstr(&w, e->error);
        json_write_key_cstr(&w, "reason");
        json_write_cstr(&w, e->reason);
        json_write_end_object(&w);
    } else {
        http_bulk_get_write_error(&w, e);
    }
    if (w.err)
        return w.err;
    return push(x, (mp_entry){REVTREE_NONE, off, x->errs.len - off});
}

static int cb_doc_end(void *ctx)
{
    (void)ctx;
    return DV_OK;
}

static const http_bulk_get_cb mp_cb = {cb_doc_begin, cb_rev_ok, cb_rev_error, cb_doc_end};

/* ---- the stream ----------------------------------------------------------- */

static int queue_rev(att_stream *st, bulk_mp *x, uint32_t idx)
{
    http_mp_doc m = HTTP_MP_DOC_INIT;
    int rc = http_mp_render(st, x->di, idx, &x->o, &m);
    if (rc == DV_OK && m.nfollow == 0) {
        rc = att_stream_printf(st, "\r\nContent-Type: application/json\r\n\r\n");
        if (rc == DV_OK)
            rc = att_stream_text(st, m.json.data, m.json.len);
    } else if (rc == DV_OK) {
        char rs[STORE_REV_ID_MAX + 24];
        http_rev_str(&x->di->tree.nodes[idx].rev, rs, sizeof rs);
        rc = att_stream_printf(st, "\r\nX-Doc-Id: ");
        if (rc == DV_OK)
            rc = att_stream_header_text(st, x->di->id.data, x->di->id.len);
        if (rc == DV_OK)
            rc = att_stream_printf(st, "\r\nX-Rev-Id: %s\r\nContent-Type: multipart/related; boundary=%s\r\n\r\n",
                                   rs, x->inner);
        if (rc == DV_OK)
            rc = http_mp_emit(st, &m, x->inner);
    }
    http_mp_doc_free(&m);
    return rc;
}

/* Queues the next part (or the closing delimiter): 1, 0 when the answer
 * is complete, or an error that aborts it. */
static int bulk_mp_more(att_stream *st, void *arg)
{
    bulk_mp *x = arg;
    att_stream_reset(st);
    while (x->cur == x->n) {
        if (x->ended)
            return 0;
        x->n = x->cur = 0;
        int rc = http_bulk_get_next(x->g, &mp_cb, x);
        if (rc < 0) {
            log_error("http: multipart _bulk_get of %s failed while streaming: %s",
                      db_name(http_bulk_get_db(x->g)), dv_strerror(rc));
            return rc;
        }
        if (rc == 0) {
            x->ended = 1;
            if (!x->items)
                return 0; /* CouchDB: no part, no closing delimiter */
            rc = att_stream_printf(st, "\r\n--%s--\r\n", x->outer);
            return rc == DV_OK ? 1 : rc;
        }
    }
    const mp_entry *e = &x->e[x->cur++];
    int rc = att_stream_printf(st, "\r\n--%s", x->outer);
    if (rc == DV_OK && e->idx == REVTREE_NONE) {
        rc = att_stream_printf(st, "\r\nContent-Type: application/json; error=\"true\"\r\n\r\n");
        if (rc == DV_OK)
            rc = att_stream_text(st, x->errs.data + e->off, e->len);
    } else if (rc == DV_OK) {
        rc = queue_rev(st, x, e->idx);
    }
    if (rc != DV_OK)
        log_error("http: multipart _bulk_get of %s failed while streaming: %s", db_name(http_bulk_get_db(x->g)),
                  dv_strerror(rc));
    return rc == DV_OK ? 1 : rc;
}

static void bulk_mp_free(void *arg)
{
    bulk_mp *x = arg;
    http_bulk_get_free(x->g);
    free(x->e);
    buf_free(&x->errs);
    free(x);
}

void http_send_bulk_get_multipart(http_req_t *r, http_bulk_get *g, const char *type)
{
    bulk_mp *x = calloc(1, sizeof *x);
    att_stream *st = x ? att_stream_new(http_bulk_get_db(g), http_bulk_get_snap(g)) : NULL;
    if (!st) {
        free(x);
        http_bulk_get_free(g);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    http_bulk_get_disown(g); /* the stream releases db and snapshot, after bulk_mp_free */
    x->g = g;
    att_stream_set_more(st, bulk_mp_more, x, bulk_mp_free);
    new_boundary(x->outer);
    char ct[96];
    snprintf(ct, sizeof ct, "%s; boundary=\"%s\"", type, x->outer);
    http_add_header(r, "Content-Type", ct);
    att_stream_send(r, 200, st, 0);
}
