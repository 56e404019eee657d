/*
 * att_codec.h — gzip for attachments, CouchDB's [attachments] semantics.
 *
 * CouchDB stores attachments whose content type matches
 * compressible_types (DB_ATT_COMPRESSIBLE_DEFAULT below: any text type,
 * JavaScript, JSON and XML) gzip-encoded at compression_level (8; 0
 * turns it off), unless the client already sent them encoded.  The
 * attachment's length stays the identity length; encoded_length and
 * encoding say how it is stored; its digest is the md5 of the stored
 * (encoded) bytes, as CouchDB's.
 *
 * db_doc_finish_atts is the one place every write path passes through
 * before an edit goes to the writer: it compresses what should be, and
 * gathers every new attachment's bytes into the document's own buffer, so
 * that data parsed in place from a request body (a MIME part, a standalone
 * PUT) need not outlive the request.  Cost: one gzip pass over compressible
 * data (~20-50 MB/s at level 8, on the calling thread) and one copy of
 * the rest; nothing when all data is already the document's own and
 * nothing is compressible.
 */
#ifndef DV_DB_ATT_CODEC_H
#define DV_DB_ATT_CODEC_H

#include "base/buf.h"
#include "db/db.h"

#include <stddef.h>
#include <stdint.h>

#define DB_ATT_COMPRESSIBLE_DEFAULT "text/*, application/javascript, application/json, application/xml"
#define DB_ATT_COMPRESSION_LEVEL_DEFAULT 8

typedef struct db_att_gzip_opts {
    const char *types; /* compressible_types; NULL or "": none */
    int level;         /* 1..9; 0: never compress */
} db_att_gzip_opts;

/* Appends the gzip encoding of p[0..n) at level (1..9) to out. */
int db_gzip(const uint8_t *p, size_t n, int level, buf_t *out);
/* The identity length of a gzip stream, inflating it through a small
 * window (O(n) time, O(64 KiB) memory); DV_ERR_CORRUPT when p[0..n) is not
 * exactly one complete gzip stream. */
int db_gunzip_size(const uint8_t *p, size_t n, uint64_t *out);

/* CouchDB's compressible_att_type: 1 when content type `type` (parameters
 * after ';' ignored) matches one of the comma-separated patterns of
 * `types`, case-insensitively, '*' matching any run of characters. */
int db_att_type_compressible(const char *types, const char *type);

/* Finishes d's new attachments before the write (see above).  An
 * attachment still marked "follows" (no MIME part supplied its data) is a
 * 400 bad_request in e and DV_ERR_INVALID; DV_ERR_NOMEM otherwise. */
int db_doc_finish_atts(db_doc *d, const db_att_gzip_opts *o, db_err *e);

#endif
