/*
 * doc_validate.h — validate_doc_update on the HTTP write paths
 * (docs/validation.md).
 *
 * Where the hook sits.  DESIGN.md's layering keeps db/ below views/, so
 * the writer cannot call the query server; and a validation function
 * must never run on an event loop (it blocks on a child process).  The
 * HTTP layer therefore validates in its write preparation, the step every
 * write path already shares: http_doc_submit (PUT, POST, DELETE, COPY of
 * a document, attachment PUT and DELETE, multipart/related PUT) and
 * _bulk_docs (both new_edits modes).  On the loop thread http_vdu_begin
 * takes a snapshot and the database's cached set of validation functions
 * (views/validate.h); when there is none the write goes on at once, so a
 * database without validation functions pays one B+tree descent per
 * request.  Otherwise the documents are validated on a worker thread
 * (http_vdu_check) against that snapshot and only the accepted ones are
 * queued for the writer.
 *
 * Rules (CouchDB 3's couch_db:validate_doc_update and
 * prep_and_validate_updates): _local and _design documents are not given
 * to validation functions (design documents are compiled and, once
 * authorization lands, need a database admin); admins are not exempt;
 * newDoc is the edit as sent (_id, the _rev it replaces and _revisions,
 * _deleted, attachment stubs); oldDoc is the revision the edit replaces
 * (new_edits=true: the leaf named by _rev, deleted leaves included, null
 * for a new document or one whose winner is deleted), or for replicated
 * writes (new_edits=false) the nearest ancestor of the new revision that
 * the database has with a body, null when none.  An edit that will
 * conflict (its _rev is not a leaf, or no _rev for a live document) and
 * a replicated revision the database already has are not validated: the
 * writer answers them as before (409, or nothing to do).
 *
 * Race: the snapshot is taken before the write is queued, so a write to
 * the same document committing in between is not seen as oldDoc; for
 * edits the writer then answers 409 anyway (the _rev is no longer a
 * leaf).  A design document committed in between takes effect from the
 * next request.
 */
#ifndef DV_HTTP_DOC_VALIDATE_H
#define DV_HTTP_DOC_VALIDATE_H

#include "base/buf.h"
#include "db/db.h"
#include "http/server.h"
#include "json/json.h"
#include "views/validate.h"

/* What a request's documents are validated with. */
typedef struct http_vdu {
    views *views;
    vdu_set *set;        /* NULL: nothing to validate */
    store_snap *snap;
    buf_t user_ctx;      /* {"db","name","roles"} */
    buf_t sec_obj;       /* the database's _security */
} http_vdu;

/* Loop thread: fills v for db.  v->set stays NULL (and nothing needs
 * freeing but http_vdu_end) when the database has no validation function.
 * Errors: answers 500 itself and returns the status. */
int http_vdu_begin(http_req_t *r, db_t *db, http_vdu *v);
void http_vdu_end(http_vdu *v);

/* Worker thread: runs the validation functions on d (new_edits as the
 * write will be queued).  DV_OK: accepted, or not subject to validation.
 * DV_ERR_INVALID: refused, res says how.  Other errors: the store's (res
 * then holds a 500 too). */
int http_vdu_check(http_vdu *v, const db_doc *d, int new_edits, vdu_result *res);
/* The same for docs[0..n) but exempt[i] (local, design, already failed),
 * batched (vdu_run_batch: one query-server round trip per function and up
 * to VDU_BATCH_DOCS documents): refused[i] = 1 and res[i] for each refused
 * document.  DV_OK, or DV_ERR_NOMEM (nothing may be written then). */
int http_vdu_check_all(http_vdu *v, const db_doc *docs, size_t n, int new_edits, const int *exempt, vdu_result *res,
                       int *refused);

/* {"error":res->error,"reason":res->reason} with res->status. */
void http_send_vdu_error(http_req_t *r, const vdu_result *res);

/* The userCtx object of r (exposed for the bulk handler and tests). */
int http_vdu_user_ctx(const http_req_t *r, const char *dbname, buf_t *out);

#endif
