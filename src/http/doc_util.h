/*
 * doc_util.h — pieces shared by the handlers of documents, attachments and
 * bulk requests: the write context of one document edit, CouchDB's
 * document query parameters, rev reconciliation (body _rev, ?rev=,
 * If-Match), open_revs rows, and the multipart forms of documents
 * (multipart.c).
 */
#ifndef DV_HTTP_DOC_UTIL_H
#define DV_HTTP_DOC_UTIL_H

#include "db/db.h"
#include "http/server.h"
#include "json/json.h"

/* One document (or local document) edit on its way to the writer. */
typedef struct http_doc_ctx {
    db_t *db;               /* reference owned by the context */
    db_doc doc;
    store_doc_update u;
    store_local_update lu;
    store_write w;
    int local;              /* a _local/ document */
    int batch;              /* batch=ok: answered 202 before the commit */
    int status_ok;          /* 201, or 200 for deletions */
    char *att_name;         /* attachment requests: Location names it */
} http_doc_ctx;

/* A new context owning the reference db (released by http_doc_ctx_free);
 * NULL after answering 500. */
http_doc_ctx *http_doc_ctx_new(http_req_t *r, db_t *db);
void http_doc_ctx_free(http_doc_ctx *c);
/* 1 for "_design/…" ids. */
int http_doc_is_design(const db_doc *d);
/* Queues c's edit (a design document is first checked on a worker: its
 * views' shape and that its functions compile; an ordinary document of a
 * database with validate_doc_update functions is first validated on a
 * worker, doc_validate.h) and answers {"ok":true,"id","rev"} (ETag, Location)
 * when it commits, or 202 at once for batch=ok.  Takes ownership of c.
 * Finishes the attachments first (http_doc_finish_atts). */
void http_doc_submit(http_req_t *r, http_doc_ctx *c, int new_edits);
/* The last step of every write path before the writer: compresses d's new
 * attachments of [attachments] compressible_types and gathers their bytes
 * into d's own buffer (db_doc_finish_atts); answers the 4xx/500 itself.
 * Paths that do not go through http_doc_submit (_bulk_docs) call it per
 * document. */
int http_doc_finish_atts(http_req_t *r, db_doc *d);

/* ---- parameters ----------------------------------------------------------- */

/* GET document options (revs, revs_info, conflicts, deleted_conflicts,
 * local_seq, meta, attachments, att_encoding_info, latest).  CouchDB reads
 * only the value "true" and ignores anything else, so this cannot fail;
 * it returns DV_OK. */
int http_parse_doc_opts(http_req_t *r, db_render_opts *o, int *latest);
/* *out = 1 when the parameter is exactly "true" (left alone otherwise). */
void http_qs_true(http_req_t *r, const char *name, int *out);
/* ?name=N-id → *rev, *has = 1; 400 "Invalid rev format" when malformed. */
int http_parse_rev_param(http_req_t *r, const char *name, store_rev *rev, int *has);
/* atts_since=["1-a",...]: *revs malloc'd (caller frees). */
int http_parse_atts_since(http_req_t *r, store_rev **revs, size_t *n);
/* A JSON array of rev strings → malloc'd array; 400 on anything else. */
int http_parse_rev_array(http_req_t *r, const json_val *arr, store_rev **revs, size_t *n);

/* Merges ?rev= and If-Match into d's rev (d->has_rev/d->rev from _rev):
 * 400 when two of them disagree.  local: revs are "0-N". */
int http_reconcile_rev(http_req_t *r, db_doc *d, int local);

/* Parses COPY's Destination header ("id" or "id?rev=N-x") into d's id and
 * rev; 400 when malformed. */
int http_parse_destination(http_req_t *r, const char *dest, db_doc *d);
/* Makes d's attachment list keep every attachment of body (stubs: COPY
 * copies data by pointing at the same streams through new data).  Reads
 * each attachment whole; O(total attachment size). */
int http_doc_copy_atts(const store_snap *snap, const store_docbody *body, db_doc *d);

/* Gives d a server-made id (GET /_uuids's algorithm) when it has none;
 * answers 500 on failure. */
int http_doc_assign_id(http_req_t *r, db_doc *d);
/* Whether the document fits [couchdb] max_document_size; answers 413
 * otherwise. */
int http_doc_size_ok(http_req_t *r, const db_doc *d);

/* Parses a JSON document body for PUT /{db}/{docid} into c (id from the
 * URL, rev reconciled with ?rev= and If-Match); answers the 4xx itself. */
int http_doc_from_body(http_req_t *r, http_doc_ctx *c, const void *p, size_t n, int new_edits);

/* ---- answers -------------------------------------------------------------- */

/* Indices (into out, t->n entries) of the leaves that descend from node
 * idx, idx itself when it is a leaf (open_revs with latest=true), in
 * winner order: revtree_leaves_under. */
uint32_t http_leaves_below(const revtree *t, uint32_t idx, uint32_t *out);

/* {"ok": doc} for node idx of di, or {"missing": "rev"} when idx is
 * REVTREE_NONE or has no body (rev names it then, else the node's). */
int http_write_open_rev(const store_snap *snap, const store_docinfo *di, uint32_t idx, const store_rev *rev,
                        const db_render_opts *o, json_writer *w);

/* ---- multipart (multipart.c) ------------------------------------------- */

/* Accept header asks for multipart/mixed (open_revs) or multipart/related
 * (a document with attachments). */
int http_wants_multipart_mixed(http_req_t *r);
int http_wants_multipart_related(http_req_t *r);
/* PUT with Content-Type multipart/related: the JSON part, then one part
 * per attachment marked "follows", in order. */
int http_doc_from_multipart(http_req_t *r, http_doc_ctx *c, const char *content_type, int new_edits);
/* GET ?attachments=true with Accept: multipart/related. */
void http_send_doc_multipart(http_req_t *r, const store_snap *snap, const store_docinfo *di, uint32_t idx,
                             const db_render_opts *o);
/* GET ?open_revs=… with Accept: multipart/mixed.  di NULL: no such doc. */
void http_send_open_revs_multipart(http_req_t *r, const store_snap *snap, const store_docinfo *di,
                                   const store_rev *revs, size_t nrevs, int all, int latest,
                                   const db_render_opts *o);

#endif
