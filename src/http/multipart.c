/*
 * multipart.c — MIME multipart forms of documents, as CouchDB 3 reads and
 * writes them (couch_doc:doc_from_multi_part_stream and
 * doc_to_multi_part_stream, chttpd_db:send_doc_efficiently and
 * send_docs_multipart), so that CouchDB's replicator and other clients
 * parse them unchanged.
 *
 * PUT multipart/related: the first part is the JSON document (Content-Type
 * application/json, else 415); every attachment marked "follows" takes its
 * bytes from a following part: the part whose Content-Disposition filename
 * names it, else the next unfilled one in document order (CouchDB's only
 * rule).  A part's size must equal the attachment's encoded_length (when
 * encoded) or length when given; gzip parts must inflate to length.  Parts
 * nobody asked for are ignored, as CouchDB does.  Parts point into the
 * request body; db_doc_finish_atts copies them into the edit.
 *
 * GET ?attachments=true (Accept: multipart/related) answers
 *   --B CRLF Content-Type: application/json CRLF CRLF <json> CRLF --B
 *   then per attachment sent with data:
 *   CRLF Content-Disposition: attachment; filename="<name>" CRLF
 *   Content-Type: <type> CRLF Content-Length: <n> [CRLF Content-Encoding: gzip]
 *   CRLF CRLF <stored bytes> CRLF --B
 *   and finally "--"; the JSON marks those attachments "follows": true with
 *   encoding/encoded_length when stored encoded, the bytes go as stored.
 *   With no attachment to send it is the JSON alone (application/json).
 * GET ?open_revs= (Accept: multipart/mixed) answers one part per revision,
 *   chunked: a nested multipart/related as above, or application/json
 *   when the revision sends no attachment, or {"missing": rev} with
 *   Content-Type: application/json; error="true".
 * Both stream from their own database reference and snapshot
 * (att_stream), reading attachments 64 KiB at a time; open_revs renders
 * one revision at a time.
 */
#include "http/doc_util.h"

#include "base/status.h"
#include "db/att_codec.h"
#include "http/att_stream.h"
#include "http/hutil.h"
#include "http/mime.h"
#include "http/mp_doc.h"
#include "http/stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int http_wants_multipart_mixed(http_req_t *r)
{
    return mime_accepts(http_req_header(r, "accept"), "multipart/mixed");
}

int http_wants_multipart_related(http_req_t *r)
{
    return mime_accepts(http_req_header(r, "accept"), "multipart/related");
}

/* ---- PUT ----------------------------------------------------------------- */

static int bad_request(http_req_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_request(http_req_t *r, const char *fmt, ...)
{
    char reason[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    http_send_error(r, 400, "bad_request", reason);
    return DV_ERR_INVALID;
}

/* A non-negative integer member of an attachment object, if present. */
static int get_len(const json_val *att, const char *key, uint64_t *out)
{
    const json_val *v = att ? json_object_get_cstr(att, key) : NULL;
    int64_t x;
    if (!v || json_get_i64(v, &x) != DV_OK || x < 0)
        return 0;
    *out = (uint64_t)x;
    return 1;
}

/* Gives attachment k the bytes of part pt, checking them against what the
 * JSON said (jatt: its object in _attachments). */
static int fill_att(http_req_t *r, db_doc *d, size_t k, const mime_part *pt, const json_val *jatt)
{
    store_att_in *a = &d->atts[k];
    uint64_t length = 0, elen = 0, decoded = pt->body_len;
    int has_len = get_len(jatt, "length", &length);
    int has_elen = a->encoding && get_len(jatt, "encoded_length", &elen);
    if (!has_elen && a->encoding && has_len) {
        has_elen = 1; /* CouchDB: encoded_length defaults to length */
        elen = length;
    }
    uint64_t want = has_elen ? elen : length;
    if ((has_elen || (!a->encoding && has_len)) && want != pt->body_len)
        return bad_request(r, "Attachment %.100s: its MIME part holds %llu bytes, not the %llu announced", a->name,
                           (unsigned long long)pt->body_len, (unsigned long long)want);
    if (a->encoding && !strcmp(a->encoding, "gzip")) {
        int rc = db_gunzip_size(pt->body, pt->body_len, &decoded);
        if (rc == DV_ERR_CORRUPT)
            return bad_request(r, "Attachment %.100s: its MIME part is not valid gzip", a->name);
        if (rc != DV_OK) {
            http_send_internal(r, rc);
            return rc;
        }
        if (has_len && length != elen && length != decoded)
            return bad_request(r, "Attachment %.100s: inflates to %llu bytes, not the %llu announced", a->name,
                               (unsigned long long)decoded, (unsigned long long)length);
    } else if (a->encoding && has_len) {
        decoded = length; /* an encoding we cannot undo: trust the sender */
    }
    a->data = pt->body;
    a->len = pt->body_len;
    a->decoded_length = decoded;
    d->att_follows[k] = 0;
    return DV_OK;
}

/* The "follows" attachment a part is for: the one its Content-Disposition
 * filename names, else the next unfilled one in order (*next). */
static long part_target(const db_doc *d, const mime_part *pt, size_t *next)
{
    const char *v;
    size_t vl, fl;
    char fname[1024];
    if (mime_part_header(pt, "content-disposition", &v, &vl) &&
        mime_param(v, vl, "filename", fname, sizeof fname, &fl) == 1) {
        for (size_t i = 0; i < d->natts; i++)
            if (d->att_follows[i] == 1 && strlen(d->atts[i].name) == fl && !memcmp(d->atts[i].name, fname, fl))
                return (long)i;
    }
    while (*next < d->natts && d->att_follows[*next] != 1)
        (*next)++;
    return *next < d->natts ? (long)*next : -1;
}

static int attach_parts(http_req_t *r, db_doc *d, const mime_parts *ps)
{
    json_doc jd = JSON_DOC_INIT;
    const json_val *root, *jatts = NULL;
    size_t next = 0;
    int rc = DV_OK;
    if (!d->natts)
        return DV_OK;
    /* The JSON parsed before: parse it again for the lengths db_doc does
     * not keep (whether "length" was given at all). */
    if ((rc = http_json_parse(r, ps->v[0].body, ps->v[0].body_len, &jd, &root)) != DV_OK)
        goto done;
    jatts = json_object_get_cstr(root, "_attachments");
    for (size_t p = 1; p < ps->n; p++) {
        long k = part_target(d, &ps->v[p], &next);
        if (k < 0)
            continue;
        const json_val *ja = jatts ? json_object_get_cstr(jatts, d->atts[k].name) : NULL;
        if ((rc = fill_att(r, d, (size_t)k, &ps->v[p], ja)) != DV_OK)
            goto done;
    }
    for (size_t i = 0; i < d->natts; i++) {
        if (d->att_follows[i] == 1) {
            rc = bad_request(r, "Attachment %.100s is marked follows but no MIME part holds its data",
                             d->atts[i].name);
            goto done;
        }
    }
done:
    json_doc_free(&jd);
    return rc;
}

int http_doc_from_multipart(http_req_t *r, http_doc_ctx *c, const char *content_type, int new_edits)
{
    char boundary[MIME_BOUNDARY_MAX + 1];
    size_t blen = 0, n;
    mime_parts ps = MIME_PARTS_INIT;
    const char *why, *v;
    size_t vl;
    int rc = mime_param(content_type, strlen(content_type), "boundary", boundary, sizeof boundary, &blen);
    if (rc != 1 || blen == 0) {
        http_send_error(r, 400, "bad_request", "Invalid multipart/related Content-Type: no boundary");
        return DV_ERR_INVALID;
    }
    const uint8_t *body = http_req_body(r, &n);
    rc = mime_split(body ? body : (const uint8_t *)"", n, boundary, blen, &ps, &why);
    if (rc == DV_ERR_INVALID) {
        http_send_error(r, 400, "bad_request", why);
        return rc;
    }
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        return rc;
    }
    if (ps.n == 0) {
        http_send_error(r, 400, "bad_request", "Multipart body has no document part");
        rc = DV_ERR_INVALID;
    } else if (!mime_part_header(&ps.v[0], "content-type", &v, &vl) || !mime_type_is(v, vl, "application/json")) {
        http_send_error(r, 415, "bad_content_type", "Content-Type must be application/json");
        rc = DV_ERR_INVALID;
    } else if ((rc = http_doc_from_body(r, c, ps.v[0].body, ps.v[0].body_len, new_edits)) == DV_OK) {
        rc = attach_parts(r, &c->doc, &ps);
    }
    mime_parts_free(&ps);
    return rc;
}

/* ---- GET ------------------------------------------------------------------ */

void http_mp_doc_free(http_mp_doc *m)
{
    buf_free(&m->json);
    free(m->follow);
    memset(m, 0, sizeof *m);
}

int http_mp_render(att_stream *st, const store_docinfo *di, uint32_t idx, const db_render_opts *o, http_mp_doc *m)
{
    db_render_opts ro = *o;
    ro.attachments = ro.follows = ro.follows_encoded = ro.att_encoding_info = 1;
    store_docbody *body = att_stream_body(st);
    json_writer w;
    json_writer_init(&w, &m->json);
    int rc = db_render_doc(att_stream_snap(st), di, idx, &ro, &w, body);
    if (rc != DV_OK)
        return rc;
    uint64_t since = db_atts_since_pos(&di->tree, idx, &ro);
    if (body->natts && !(m->follow = calloc(body->natts, sizeof *m->follow)))
        return DV_ERR_NOMEM;
    for (size_t i = 0; i < body->natts; i++)
        if (db_att_sends_data(&ro, since, &body->atts[i]))
            m->follow[m->nfollow++] = i;
    return DV_OK;
}

/* A header value between double quotes: '"' and '\\' escaped, CR and LF
 * (which would end the header) replaced by spaces. */
static int quoted(att_stream *st, const char *s)
{
    buf_t b = BUF_INIT;
    int rc = buf_append_byte(&b, '"');
    for (; *s && rc == DV_OK; s++) {
        char c = *s == '\r' || *s == '\n' ? ' ' : *s;
        if (c == '"' || c == '\\')
            rc = buf_append_byte(&b, '\\');
        if (rc == DV_OK)
            rc = buf_append_byte(&b, (uint8_t)c);
    }
    if (rc == DV_OK)
        rc = buf_append_byte(&b, '"');
    if (rc == DV_OK)
        rc = att_stream_text(st, b.data, b.len);
    buf_free(&b);
    return rc;
}

int http_mp_emit(att_stream *st, const http_mp_doc *m, const char *b)
{
    const store_docbody *body = att_stream_body(st);
    int rc = att_stream_printf(st, "--%s\r\nContent-Type: application/json\r\n\r\n", b);
    if (rc == DV_OK)
        rc = att_stream_text(st, m->json.data, m->json.len);
    if (rc == DV_OK)
        rc = att_stream_printf(st, "\r\n--%s", b);
    for (size_t i = 0; rc == DV_OK && i < m->nfollow; i++) {
        const store_att *a = &body->atts[m->follow[i]];
        rc = att_stream_printf(st, "\r\nContent-Disposition: attachment; filename=");
        if (rc == DV_OK)
            rc = quoted(st, a->name);
        if (rc == DV_OK)
            rc = att_stream_text(st, "\r\nContent-Type: ", 16);
        if (rc == DV_OK)
            rc = att_stream_header_text(st, a->type, strlen(a->type));
        if (rc == DV_OK)
            rc = att_stream_printf(st, "\r\nContent-Length: %llu", (unsigned long long)a->length);
        if (rc == DV_OK && a->encoding)
            rc = att_stream_printf(st, "\r\nContent-Encoding: %s", a->encoding);
        if (rc == DV_OK)
            rc = att_stream_text(st, "\r\n\r\n", 4);
        if (rc == DV_OK)
            rc = att_stream_att(st, m->follow[i], 0, a->length, 0);
        if (rc == DV_OK)
            rc = att_stream_printf(st, "\r\n--%s", b);
    }
    return rc == DV_OK ? att_stream_text(st, "--", 2) : rc;
}

/* A stream over the route's database with a snapshot of its own, and the
 * document id in it.  Answers the error itself (NULL). */
static att_stream *own_stream(http_req_t *r, const uint8_t *id, size_t idlen, store_docinfo *di, int *found)
{
    store_snap *snap = NULL;
    att_stream *st = NULL;
    db_t *db = http_open_db(r);
    if (!db)
        return NULL;
    int rc = db_snapshot(db, &snap);
    if (rc == DV_OK && !(st = att_stream_new(db, snap)))
        rc = DV_ERR_NOMEM;
    if (rc == DV_OK) {
        rc = store_snap_get_doc(snap, id, idlen, di);
        *found = rc == DV_OK;
        if (rc == DV_ERR_NOTFOUND)
            rc = DV_OK;
    }
    if (rc == DV_OK)
        return st;
    if (st) {
        att_stream_free(st);
    } else {
        if (snap)
            store_snap_release(snap);
        db_release(db);
    }
    http_send_internal(r, rc);
    return NULL;
}

void http_send_doc_multipart(http_req_t *r, const store_snap *snap, const store_docinfo *di, uint32_t idx,
                             const db_render_opts *o)
{
    store_docinfo mine;
    store_docinfo_init(&mine);
    http_mp_doc m = HTTP_MP_DOC_INIT;
    int found = 0, rc = DV_OK;
    (void)snap; /* the caller's snapshot ends with its handler; ours lasts the answer */
    att_stream *st = own_stream(r, di->id.data, di->id.len, &mine, &found);
    if (!st)
        goto done;
    uint32_t k = found ? revtree_find(&mine.tree, &di->tree.nodes[idx].rev) : REVTREE_NONE;
    if (k == REVTREE_NONE || !mine.tree.nodes[k].has_body) {
        http_send_error(r, 404, "not_found", "missing"); /* purged or compacted away meanwhile */
        goto done;
    }
    if ((rc = http_mp_render(st, &mine, k, o, &m)) != DV_OK)
        goto done;
    http_stat_inc(STAT_DB_READS);
    if (m.nfollow == 0) {
        http_send_json(r, 200, &m.json);
        goto done;
    }
    char b[33], ct[80];
    att_stream_boundary(b);
    if ((rc = http_mp_emit(st, &m, b)) != DV_OK)
        goto done;
    snprintf(ct, sizeof ct, "multipart/related; boundary=\"%s\"", b);
    http_add_header(r, "Content-Type", ct);
    att_stream_send(r, 200, st, 1);
    st = NULL;
done:
    if (rc != DV_OK)
        http_send_internal(r, rc);
    http_mp_doc_free(&m);
    store_docinfo_free(&mine);
    att_stream_free(st);
}

/* ---- open_revs as multipart/mixed ------------------------------------------------ */

typedef struct rev_entry {
    uint32_t idx; /* REVTREE_NONE: missing */
    store_rev rev;
} rev_entry;

typedef struct open_revs_ctx {
    store_docinfo di;
    db_render_opts o;
    store_rev *since; /* copy of o.atts_since */
    rev_entry *e;
    size_t n, cur;
    int ended;
    char outer[33], inner[33];
} open_revs_ctx;

static void open_revs_free(void *arg)
{
    open_revs_ctx *x = arg;
    store_docinfo_free(&x->di);
    free(x->since);
    free(x->e);
    free(x);
}

/* Queues the part of the next revision (or the closing "--"). */
static int open_revs_more(att_stream *st, void *arg)
{
    open_revs_ctx *x = arg;
    http_mp_doc m = HTTP_MP_DOC_INIT;
    int rc = DV_OK;
    if (x->cur == x->n) {
        if (x->ended)
            return 0;
        x->ended = 1;
        att_stream_reset(st);
        return att_stream_text(st, "--", 2) == DV_OK ? 1 : DV_ERR_NOMEM;
    }
    att_stream_reset(st);
    const rev_entry *e = &x->e[x->cur++];
    if (e->idx == REVTREE_NONE || !x->di.tree.nodes[e->idx].has_body) {
        char rs[STORE_REV_ID_MAX + 24];
        http_rev_str(e->idx == REVTREE_NONE ? &e->rev : &x->di.tree.nodes[e->idx].rev, rs, sizeof rs);
        rc = att_stream_printf(st, "\r\nContent-Type: application/json; error=\"true\"\r\n\r\n{\"missing\":\"%s\"}", rs);
    } else if ((rc = http_mp_render(st, &x->di, e->idx, &x->o, &m)) == DV_OK) {
        if (m.nfollow == 0) {
            rc = att_stream_printf(st, "\r\nContent-Type: application/json\r\n\r\n");
            if (rc == DV_OK)
                rc = att_stream_text(st, m.json.data, m.json.len);
        } else {
            rc = att_stream_printf(st, "\r\nContent-Type: multipart/related; boundary=\"%s\"\r\n\r\n", x->inner);
            if (rc == DV_OK)
                rc = http_mp_emit(st, &m, x->inner);
        }
    }
    if (rc == DV_OK)
        rc = att_stream_printf(st, "\r\n--%s", x->outer);
    http_mp_doc_free(&m);
    return rc == DV_OK ? 1 : rc;
}

/* The revisions to send, in order: every leaf (all), or each named one
 * (its leaves with latest), missing ones by their rev. */
static int open_revs_list(open_revs_ctx *x, int found, const store_rev *revs, size_t nrevs, int all, int latest)
{
    const revtree *t = &x->di.tree;
    uint32_t nl = 0, *buf = malloc(sizeof *buf * (t->n + 1));
    if (!buf)
        return DV_ERR_NOMEM;
    if (found)
        revtree_leaves(t, buf, &nl);
    /* latest: each named rev expands to at most every leaf */
    size_t cap = (all ? nl : nrevs * (latest && nl ? nl : 1)) + 1;
    if (!(x->e = calloc(cap, sizeof *x->e))) {
        free(buf);
        return DV_ERR_NOMEM;
    }
    for (uint32_t i = 0; all && i < nl; i++)
        x->e[x->n++] = (rev_entry){buf[i], t->nodes[buf[i]].rev};
    for (size_t i = 0; !all && i < nrevs; i++) {
        uint32_t k = found ? revtree_find(t, &revs[i]) : REVTREE_NONE;
        if (k != REVTREE_NONE && latest) {
            uint32_t nb = http_leaves_below(t, k, buf);
            for (uint32_t j = 0; j < nb; j++)
                x->e[x->n++] = (rev_entry){buf[j], t->nodes[buf[j]].rev};
            continue;
        }
        x->e[x->n++] = (rev_entry){k, revs[i]};
    }
    free(buf);
    return DV_OK;
}

void http_send_open_revs_multipart(http_req_t *r, const store_snap *snap, const store_docinfo *di,
                                   const store_rev *revs, size_t nrevs, int all, int latest,
                                   const db_render_opts *o)
{
    const http_str_t *id = &r->match.docid;
    int found = 0, rc = DV_ERR_NOMEM;
    (void)snap, (void)di; /* re-read in the stream's own snapshot */
    open_revs_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        http_send_internal(r, rc);
        return;
    }
    store_docinfo_init(&x->di);
    att_stream *st = own_stream(r, (const uint8_t *)id->p, id->n, &x->di, &found);
    if (!st) {
        open_revs_free(x);
        return;
    }
    att_stream_set_more(st, open_revs_more, x, open_revs_free);
    x->o = *o;
    if (o->natts_since) {
        if (!(x->since = malloc(o->natts_since * sizeof *x->since)))
            goto fail;
        memcpy(x->since, o->atts_since, o->natts_since * sizeof *x->since);
        x->o.atts_since = x->since;
    }
    if ((rc = open_revs_list(x, found, revs, nrevs, all, latest)) != DV_OK)
        goto fail;
    att_stream_boundary(x->outer);
    att_stream_boundary(x->inner);
    if ((rc = att_stream_printf(st, "--%s", x->outer)) != DV_OK)
        goto fail;
    char ct[80];
    snprintf(ct, sizeof ct, "multipart/mixed; boundary=\"%s\"", x->outer);
    http_add_header(r, "Content-Type", ct);
    http_stat_inc(STAT_DB_READS);
    att_stream_send(r, 200, st, 0);
    return;
fail:
    att_stream_free(st);
    http_send_internal(r, rc);
}
