/*
 * bulk_get.h — POST /{db}/_bulk_get as an iterator over the requested
 * documents, shared by its JSON answer (handlers_bulk_get.c) and its
 * multipart/mixed and multipart/related answers (multipart.c).
 *
 * http_bulk_get_open checks the request as CouchDB's chttpd_db does
 * (Content-Type, a JSON object body with a "docs" list, no open_revs / rev
 * / atts_since / new_edits / w query parameters), reads the document
 * options of the query string (revs, attachments, latest, conflicts, …)
 * and takes one snapshot.  http_bulk_get_next then handles one requested
 * document per call, in request order, and reports it through callbacks:
 * doc_begin, then for each revision answered either rev_ok (a revision to
 * render, with the render options that apply to it: the query's plus the
 * item's atts_since) or rev_error (CouchDB's error object), then doc_end.
 * A request item that is not an object, has no id, a bad id, a bad rev or
 * a bad atts_since is one rev_error; an absent document is one rev_error
 * "not_found"/"missing" (rev "undefined" when none was asked).
 *
 * Memory: a copy of the request body and its parse (O(request)); each
 * call holds one document's revision tree.  Calls run on the request's
 * loop thread (reads are inline, as every snapshot read).
 *
 * Answers: JSON (handlers_bulk_get.c) unless the request's Accept calls for
 * multipart (http_bulk_get_multipart_type), then multipart/mixed or
 * multipart/related (bulk_get_mp.c).
 */
#ifndef DV_HTTP_BULK_GET_H
#define DV_HTTP_BULK_GET_H

#include "db/db.h"
#include "http/server.h"
#include "json/json.h"

typedef struct http_bulk_get http_bulk_get;

/* One error object of the answer: {"id","rev","error","reason"}. */
typedef struct http_bulk_get_error {
    const json_val *id;   /* the item's "id" as sent; NULL: null */
    const json_val *rev;  /* the offending value as sent (bad rev, bad atts_since), or NULL */
    const char *rev_text; /* used when rev is NULL: "N-x", "undefined"; NULL: null */
    const char *error;
    const char *reason;
    int missing_rev;      /* a revision that is not there (not a bad item): CouchDB's
                           * multipart error part for it has no "id" */
} http_bulk_get_error;

typedef struct http_bulk_get_cb {
    /* A requested item begins; id is its "id" member as sent (NULL: none). */
    int (*doc_begin)(void *ctx, const json_val *id);
    /* Revision idx of di is part of the answer, rendered with o. */
    int (*rev_ok)(void *ctx, const store_snap *snap, const store_docinfo *di, uint32_t idx,
                  const db_render_opts *o);
    int (*rev_error)(void *ctx, const http_bulk_get_error *e);
    int (*doc_end)(void *ctx);
} http_bulk_get_cb;

/* Parses and checks the request, takes a snapshot of db.  Takes over the
 * reference db (released by http_bulk_get_free, or here on failure).
 * NULL after answering the 4xx (or 500) itself. */
http_bulk_get *http_bulk_get_open(http_req_t *r, db_t *db);
/* Reports the next requested item: 1 = one item reported, 0 = no items
 * left, <0 = a read failed or a callback's error. */
int http_bulk_get_next(http_bulk_get *g, const http_bulk_get_cb *cb, void *ctx);
void http_bulk_get_free(http_bulk_get *g);

/* The database reference and snapshot the iterator reads.  After
 * http_bulk_get_disown(g) g still reads them but no longer releases them:
 * the caller (an att_stream reading attachments in that same snapshot)
 * has taken them over and must release them after http_bulk_get_free(g). */
db_t *http_bulk_get_db(http_bulk_get *g);
store_snap *http_bulk_get_snap(http_bulk_get *g);
void http_bulk_get_disown(http_bulk_get *g);

/* CouchDB's bulk_get_is_multipart: when Accept does not accept
 * application/json but accepts multipart/mixed or multipart/related, the
 * media type of the answer ("multipart/mixed" when accepted, else
 * "multipart/related"); NULL: answer JSON. */
const char *http_bulk_get_multipart_type(http_req_t *r);
/* Streams the multipart answer over g (taking it over; answers 500 itself
 * when it cannot start). */
void http_send_bulk_get_multipart(http_req_t *r, http_bulk_get *g, const char *type);

/* Writes e as CouchDB's error object (the value of "error" in the JSON
 * answer, the body of an error part in the multipart ones). */
int http_bulk_get_write_error(json_writer *w, const http_bulk_get_error *e);

#endif
