/*
 * handlers_att.c — standalone attachments: GET/HEAD/PUT/DELETE
 * /{db}/{docid}/{name} (CouchDB 3's chttpd_db:db_attachment_req).  The
 * name is everything after the document id, '/' included; _design/ ids
 * take two segments, _local/ documents have no attachments (400).
 *
 * GET streams the bytes from one snapshot through att_stream: 64 KiB per
 * fill whatever the size, inflating on the fly when a gzip-stored
 * attachment goes to a client that does not accept gzip.  Ranges apply to
 * identity-stored attachments only (Accept-Ranges: none otherwise), as
 * CouchDB: one range is a 206 with Content-Range, two to nine a 206
 * multipart/byteranges, more than nine or a malformed header the whole
 * entity, an unsatisfiable one 416.  The ETag is the stored digest
 * ("\"<md5 base64>\""), If-None-Match answers 304.
 *
 * PUT and DELETE edit the revision named by ?rev= or If-Match: the other
 * attachments are kept as stubs (their streams are shared, never copied),
 * the body is the revision's.  Without a rev, PUT creates the document
 * (409 when it exists) and DELETE answers 404 for a missing document or
 * attachment and 409 otherwise, as CouchDB.  The request body is copied
 * once into the edit (db_doc_finish_atts), compressed when its type is
 * compressible, so it need not outlive the request.
 */
#include "base/status.h"
#include "db/att_codec.h"
#include "http/att_stream.h"
#include "http/doc_util.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/mime.h"
#include "http/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ATT_ALLOW "DELETE,GET,HEAD,PUT"

static void not_found(http_req_t *r, const char *reason)
{
    http_send_error(r, 404, "not_found", reason);
}

static long find_att(const store_docbody *b, const char *name, size_t n)
{
    for (size_t i = 0; i < b->natts; i++)
        if (strlen(b->atts[i].name) == n && !memcmp(b->atts[i].name, name, n))
            return (long)i;
    return -1;
}

/* ---- GET / HEAD ---------------------------------------------------------- */

/* The body record of revision rev (NULL: the winning one) of the route's
 * document in snap, and whether that revision is deleted.
 * DV_ERR_NOTFOUND when the document or the revision is absent or has no
 * body left. */
static int read_rev(http_req_t *r, const store_snap *snap, const store_rev *rev, store_docbody *body, int *deleted)
{
    const http_str_t *id = &r->match.docid;
    store_docinfo di;
    store_docinfo_init(&di);
    int rc = store_snap_get_doc(snap, (const uint8_t *)id->p, id->n, &di);
    uint32_t idx = REVTREE_NONE;
    if (rc == DV_OK) {
        idx = rev ? revtree_find(&di.tree, rev) : revtree_winner(&di.tree);
        if (idx == REVTREE_NONE || !di.tree.nodes[idx].has_body)
            rc = DV_ERR_NOTFOUND;
    }
    if (rc == DV_OK) {
        *deleted = di.tree.nodes[idx].deleted;
        rc = store_snap_read_body(snap, di.tree.nodes[idx].body, body);
    }
    store_docinfo_free(&di);
    return rc;
}

/* If-None-Match: a list of entity tags or "*". */
static int etag_matches(const char *inm, const char *etag)
{
    size_t el = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t n = (size_t)(e - p);
        while (n && p[n - 1] == ' ')
            n--;
        if ((n == 1 && *p == '*') || (n == el && !memcmp(p, etag, el)))
            return 1;
        p = e;
    }
    return 0;
}

/* Queues the answer for attachment k of the stream's body and sends it.
 * Headers are added only once the answer is queued, so a failure is a
 * plain JSON 500. */
static void send_att(http_req_t *r, att_stream *s, size_t k)
{
    const store_att *a = &att_stream_body(s)->atts[k];
    int encoded = a->encoding != NULL;
    int send_encoded = encoded && mime_accepts_encoding(http_req_header(r, "accept-encoding"), a->encoding);
    int decode = encoded && !send_encoded && !strcmp(a->encoding, "gzip");
    mime_range rg[MIME_RANGES_MAX];
    size_t nr = 0;
    int kind = encoded ? MIME_RANGE_WHOLE : mime_range_parse(http_req_header(r, "range"), a->length, rg, &nr);
    int rc = DV_OK, multi = kind == MIME_RANGE_PARTIAL && nr > 1;
    char b[33], ct[96], cr[96];
    if (kind == MIME_RANGE_UNSATISFIABLE) {
        att_stream_free(s);
        http_send_error(r, 416, "requested_range_not_satisfiable", "Requested range not satisfiable");
        return;
    }
    if (multi) {
        att_stream_boundary(b);
        snprintf(ct, sizeof ct, "multipart/byteranges; boundary=\"%s\"", b);
        rc = att_stream_printf(s, "--%s", b);
        for (size_t i = 0; rc == DV_OK && i < nr; i++) {
            rc = att_stream_text(s, "\r\nContent-Type: ", 16);
            if (rc == DV_OK)
                rc = att_stream_header_text(s, a->type, strlen(a->type));
            if (rc == DV_OK)
                rc = att_stream_printf(s, "\r\nContent-Range: bytes %llu-%llu/%llu\r\n\r\n",
                                       (unsigned long long)rg[i].from, (unsigned long long)rg[i].to,
                                       (unsigned long long)a->length);
            if (rc == DV_OK)
                rc = att_stream_att(s, k, rg[i].from, rg[i].to - rg[i].from + 1, 0);
            if (rc == DV_OK)
                rc = att_stream_printf(s, "\r\n--%s", b);
        }
        if (rc == DV_OK)
            rc = att_stream_text(s, "--", 2);
    } else if (kind == MIME_RANGE_PARTIAL) {
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)rg[0].from, (unsigned long long)rg[0].to,
                 (unsigned long long)a->length);
        rc = att_stream_att(s, k, rg[0].from, rg[0].to - rg[0].from + 1, 0);
    } else {
        rc = att_stream_att(s, k, 0, decode ? a->decoded_length : a->length, decode);
    }
    if (rc != DV_OK) {
        att_stream_free(s);
        http_send_internal(r, rc);
        return;
    }
    http_add_header(r, "Accept-Ranges", encoded ? "none" : "bytes");
    http_add_header(r, "Content-Security-Policy", "sandbox");
    http_add_header(r, "Content-Type", multi ? ct : a->type);
    if (send_encoded)
        http_add_header(r, "Content-Encoding", a->encoding);
    if (kind == MIME_RANGE_PARTIAL && !multi)
        http_add_header(r, "Content-Range", cr);
    http_stat_inc(STAT_DB_READS);
    att_stream_send(r, kind == MIME_RANGE_PARTIAL ? 206 : 200, s, 1);
}

static void att_get(http_req_t *r, db_t *db, const char *name, size_t nlen)
{
    store_snap *snap = NULL;
    att_stream *s = NULL;
    store_rev rev;
    int has_rev = 0, deleted = 0;
    if (http_parse_rev_param(r, "rev", &rev, &has_rev) != DV_OK)
        goto done;
    int rc = db_snapshot(db, &snap);
    if (rc != DV_OK)
        goto internal;
    if (!(s = att_stream_new(db, snap))) {
        rc = DV_ERR_NOMEM;
        goto internal;
    }
    db = NULL, snap = NULL; /* the stream owns them now */
    store_docbody *body = att_stream_body(s);
    rc = read_rev(r, att_stream_snap(s), has_rev ? &rev : NULL, body, &deleted);
    if (rc == DV_ERR_NOTFOUND || (rc == DV_OK && deleted && !has_rev)) {
        not_found(r, rc == DV_OK ? "deleted" : "missing");
        goto done;
    }
    if (rc != DV_OK)
        goto internal;
    long k = find_att(body, name, nlen);
    if (k < 0) {
        not_found(r, "Document is missing attachment");
        goto done;
    }
    const char *digest = body->atts[k].digest;
    char etag[80];
    snprintf(etag, sizeof etag, "\"%s\"", strncmp(digest, "md5-", 4) ? digest : digest + 4);
    http_add_header(r, "ETag", etag);
    const char *inm = http_req_header(r, "if-none-match");
    if (inm && etag_matches(inm, etag)) {
        http_send_not_modified(r);
        goto done;
    }
    send_att(r, s, (size_t)k);
    s = NULL;
    goto done;
internal:
    http_send_internal(r, rc);
done:
    att_stream_free(s);
    if (snap)
        store_snap_release(snap);
    if (db)
        db_release(db);
}

/* ---- PUT / DELETE ------------------------------------------------------------ */

/* CouchDB's validate_attachment_name. */
static int name_ok(http_req_t *r, const char *name, size_t n)
{
    if (name[0] == '_') {
        char reason[200];
        snprintf(reason, sizeof reason, "Attachment name '%.100s' starts with prohibited character '_'", name);
        http_send_error(r, 400, "bad_request", reason);
        return 0;
    }
    if (memchr(name, 0, n) || !json_utf8_valid(name, n)) {
        http_send_error(r, 400, "bad_request", "Attachment name is not UTF-8 encoded");
        return 0;
    }
    return 1;
}

/* The revision an edit starts from, read in snap: the one named by ?rev= /
 * If-Match (409 not_found/missing_rev when it does not exist, as CouchDB),
 * whose body and other attachments (as stubs) go into c->doc; or, without
 * a rev, the winner, which DELETE needs to exist and to hold the
 * attachment (404 otherwise; the edit then conflicts, as CouchDB's).
 * *had: the revision has attachment `name`. */
static int load_rev(http_req_t *r, http_doc_ctx *c, const store_snap *snap, const char *name, int *had)
{
    store_docbody body;
    store_docbody_init(&body);
    int deleted = 0, rc = read_rev(r, snap, c->doc.has_rev ? &c->doc.rev : NULL, &body, &deleted);
    if (rc == DV_ERR_NOTFOUND && c->doc.has_rev) {
        http_send_error(r, 409, "not_found", "missing_rev");
        goto done;
    }
    if (rc == DV_ERR_NOTFOUND || (rc == DV_OK && deleted && !c->doc.has_rev)) {
        not_found(r, rc == DV_OK ? "deleted" : "missing");
        rc = DV_ERR_NOTFOUND;
        goto done;
    }
    if (rc != DV_OK)
        goto internal;
    *had = find_att(&body, name, strlen(name)) >= 0;
    if (!c->doc.has_rev)
        goto done; /* only checked: the edit names no parent */
    if ((rc = buf_append(&c->doc.body, body.body.data, body.body.len)) != DV_OK)
        goto internal;
    c->doc.deleted = deleted;
    size_t n = body.natts + 1;
    c->doc.atts = calloc(n, sizeof *c->doc.atts);
    c->doc.att_off = calloc(n, sizeof *c->doc.att_off);
    c->doc.att_follows = calloc(n, sizeof *c->doc.att_follows);
    if (!c->doc.atts || !c->doc.att_off || !c->doc.att_follows) {
        rc = DV_ERR_NOMEM;
        goto internal;
    }
    for (size_t i = 0; i < body.natts; i++) {
        if (!strcmp(body.atts[i].name, name))
            continue;
        store_att_in *a = &c->doc.atts[c->doc.natts++];
        a->stub = 1;
        if (!(a->name = strdup(body.atts[i].name))) {
            rc = DV_ERR_NOMEM;
            goto internal;
        }
    }
    goto done;
internal:
    http_send_internal(r, rc);
done:
    store_docbody_free(&body);
    return rc;
}

/* Adds the new attachment from the request body (copied into the edit by
 * db_doc_finish_atts when it is submitted). */
static int add_body_att(http_req_t *r, http_doc_ctx *c, const char *name)
{
    const char *ct = http_req_header(r, "content-type");
    const char *ce = http_req_header(r, "content-encoding");
    size_t n;
    const uint8_t *p = http_req_body(r, &n);
    int gzip = 0;
    /* The type is stored and written into every JSON rendering of the
     * document: bytes that are not UTF-8 would make each of those fail. */
    if (ct && !json_utf8_valid(ct, strlen(ct))) {
        http_send_error(r, 400, "bad_request", "Attachment content type is not UTF-8 encoded");
        return DV_ERR_INVALID;
    }
    if (ce) {
        while (*ce == ' ')
            ce++;
        size_t cl = strlen(ce);
        while (cl && ce[cl - 1] == ' ')
            cl--;
        gzip = cl == 4 && !strncasecmp(ce, "gzip", 4);
        if (!gzip && !(cl == 8 && !strncasecmp(ce, "identity", 8))) {
            http_send_error(r, 415, "bad_content_type", "Only gzip and identity content-encodings are supported");
            return DV_ERR_INVALID;
        }
    }
    if (!c->doc.atts) {
        c->doc.atts = calloc(1, sizeof *c->doc.atts);
        c->doc.att_off = calloc(1, sizeof *c->doc.att_off);
        c->doc.att_follows = calloc(1, sizeof *c->doc.att_follows);
        if (!c->doc.atts || !c->doc.att_off || !c->doc.att_follows)
            goto nomem;
    }
    store_att_in *a = &c->doc.atts[c->doc.natts++];
    a->name = strdup(name);
    a->type = strdup(ct && *ct ? ct : "application/octet-stream");
    if (!a->name || !a->type)
        goto nomem;
    a->data = p ? p : (const uint8_t *)"";
    a->len = n;
    if (gzip) {
        /* Stored as sent; its identity length is measured now, which also
         * refuses bytes that are not gzip. */
        int rc = db_gunzip_size(a->data, a->len, &a->decoded_length);
        if (rc == DV_ERR_CORRUPT) {
            http_send_error(r, 400, "bad_request", "Attachment data is not valid gzip");
            return DV_ERR_INVALID;
        }
        if (rc != DV_OK || !(a->encoding = strdup("gzip")))
            goto nomem;
    }
    return DV_OK;
nomem:
    http_send_internal(r, DV_ERR_NOMEM);
    return DV_ERR_NOMEM;
}

static void att_write(http_req_t *r, db_t *db, const char *name, size_t nlen)
{
    const http_str_t *id = &r->match.docid;
    int put = r->method == HTTP_PUT;
    db_err e;
    http_doc_ctx *c = http_doc_ctx_new(r, db);
    if (!c) {
        db_release(db);
        return;
    }
    if (!name_ok(r, name, nlen))
        goto fail;
    if (db_docid_check((const uint8_t *)id->p, id->n, 0, &e) != DV_OK) {
        http_send_db_err(r, &e);
        goto fail;
    }
    if (buf_append(&c->doc.id, id->p, id->n) != DV_OK || !(c->att_name = strdup(name))) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    c->batch = 0; /* CouchDB has no batch mode for attachments */
    if (http_reconcile_rev(r, &c->doc, 0) != DV_OK)
        goto fail;
    int had = 0;
    if (c->doc.has_rev || !put) {
        store_snap *snap;
        int rc = db_snapshot(c->db, &snap);
        if (rc != DV_OK) {
            http_send_internal(r, rc);
            goto fail;
        }
        rc = load_rev(r, c, snap, name, &had);
        store_snap_release(snap);
        if (rc != DV_OK)
            goto fail;
        if (!put && !had) {
            not_found(r, "Document is missing attachment");
            goto fail;
        }
    }
    if (!c->doc.has_rev && buf_append_str(&c->doc.body, "{}") != DV_OK) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    if (put && add_body_att(r, c, name) != DV_OK)
        goto fail;
    c->status_ok = put ? 201 : 200;
    http_doc_submit(r, c, 1);
    return;
fail:
    http_doc_ctx_free(c);
}

void http_handle_attachment(http_req_t *r)
{
    const http_str_t *id = &r->match.docid, *name = &r->match.rest;
    db_t *db = http_open_db(r);
    if (!db)
        return;
    if (id->n > 7 && !memcmp(id->p, "_local/", 7)) {
        db_release(db);
        http_send_error(r, 400, "bad_request", "_local documents do not accept attachments.");
        return;
    }
    switch (r->method) {
    case HTTP_GET:
    case HTTP_HEAD:
        att_get(r, db, name->p, name->n);
        break;
    case HTTP_PUT:
    case HTTP_DELETE:
        att_write(r, db, name->p, name->n);
        break;
    default:
        db_release(db);
        http_send_method_not_allowed(r, ATT_ALLOW);
    }
}
