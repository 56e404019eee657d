/*
 * mp_doc.h — one document revision as the body of a multipart/related
 * part (multipart.c), shared by every answer that sends documents with
 * their attachments as MIME parts: GET ?attachments=true, GET ?open_revs
 * (multipart.c) and POST _bulk_get (bulk_get_mp.c).
 *
 * http_mp_render renders the revision with CouchDB's multipart options
 * (attachments, follows, att_encoding_info: attachments sent with data are
 * marked "follows" and their parts carry the stored bytes) and reads its
 * body record into the stream's body, so that the attachment pieces
 * http_mp_emit queues name the right attachments.  A stream holds one body
 * at a time: render and emit one revision, let it be sent (the stream's
 * `more` callback runs only when the queue is empty), then the next.
 *
 * Cost: the revision's JSON and an index array (O(attachments)); the
 * attachment bytes are read by the stream 64 KiB at a time when sent.
 */
#ifndef DV_HTTP_MP_DOC_H
#define DV_HTTP_MP_DOC_H

#include "db/db.h"
#include "http/att_stream.h"

#include <stddef.h>
#include <stdint.h>

typedef struct http_mp_doc {
    buf_t json;     /* the revision's JSON */
    size_t *follow; /* indices (into the stream's body) of the attachments sent with data */
    size_t nfollow; /* 0: no part follows; the JSON alone is the answer */
} http_mp_doc;

#define HTTP_MP_DOC_INIT {BUF_INIT, NULL, 0}

void http_mp_doc_free(http_mp_doc *m);
/* Renders revision idx of di (read in the stream's snapshot) with the
 * multipart options added to o; the stream's body becomes the revision's. */
int http_mp_render(att_stream *st, const store_docinfo *di, uint32_t idx, const db_render_opts *o, http_mp_doc *m);
/* Queues the multipart/related form of m with boundary b:
 * "--b" CRLF Content-Type: application/json CRLF CRLF json CRLF "--b", one
 * part per followed attachment (each closed by CRLF "--b"), then "--". */
int http_mp_emit(att_stream *st, const http_mp_doc *m, const char *b);

#endif
