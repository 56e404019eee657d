/*
 * mime.h — pure functions over header and body bytes: multipart bodies
 * (RFC 2046) as CouchDB reads them, header parameters, content negotiation
 * (Accept, Accept-Encoding) with mochiweb's rules, and byte ranges with
 * CouchDB's parse_ranges rules.
 *
 * Nothing here knows h2o or allocates beyond the part list: the fuzz target
 * (fuzz/fuzz_multipart.c) and the unit tests (tests/server/test_multipart.c)
 * drive it directly.  Parsed parts point into the caller's bytes, which
 * must outlive them.
 *
 * Multipart grammar accepted (CouchDB's couch_httpd:parse_multipart_request
 * is the reference, made strict where it would hang or crash):
 *   preamble  anything up to the first "--B" (B the boundary)
 *   part      "--B" [spaces/tabs] CRLF headers CRLF body CRLF
 *   headers   zero or more "Name: value" lines, each CRLF-terminated
 *   end       "--B--", then an epilogue that is ignored
 * A part's body ends at the first CRLF "--B": the boundary must not occur
 * in the content (the sender's promise, RFC 2046 §5.1.1).
 * Cost: O(n) over the body (memmem per delimiter), one array of parts.
 */
#ifndef DV_HTTP_MIME_H
#define DV_HTTP_MIME_H

#include <stddef.h>
#include <stdint.h>

#define MIME_BOUNDARY_MAX 200 /* RFC 2046 says 70; CouchDB sends 32, clients vary */

typedef struct mime_part {
    const uint8_t *head; /* header lines, CRLF-separated, no final blank line */
    size_t head_len;
    const uint8_t *body;
    size_t body_len;
} mime_part;

typedef struct mime_parts {
    mime_part *v;
    size_t n, cap;
} mime_parts;

#define MIME_PARTS_INIT {NULL, 0, 0}
void mime_parts_free(mime_parts *ps);

/* Splits p[0..n) into its parts.  DV_ERR_INVALID (with *why set to a short
 * reason for the client) when there is no opening delimiter, a header line
 * has no ':', or a part or the body is not closed by a delimiter;
 * DV_ERR_NOMEM.  On error out is left empty. */
int mime_split(const uint8_t *p, size_t n, const char *boundary, size_t blen, mime_parts *out, const char **why);

/* The value of header `name` (case-insensitive) of a part, trimmed: 1 and
 * *val, *vlen when present, 0 when absent. */
int mime_part_header(const mime_part *pt, const char *name, const char **val, size_t *vlen);

/* The media type of a Content-Type-like value ("type/sub; k=v"), trimmed:
 * 1 when it equals `type` case-insensitively, else 0. */
int mime_type_is(const char *v, size_t n, const char *type);

/* Parameter `name` of a header value ("x; a=1; b=\"q\\\"s\""): token or
 * quoted-string, unescaped into out (NUL-terminated).  1 found, 0 absent,
 * DV_ERR_INVALID when the value does not fit in cap - 1 bytes or a quoted
 * string is not closed. */
int mime_param(const char *v, size_t n, const char *name, char *out, size_t cap, size_t *outlen);

/* mochiweb's accepts_content_type: whether an Accept header (NULL: absent,
 * which means any type) lets the server answer with `type` ("a/b").  A
 * range with q > 0 matching exactly, "a/" with a star or the star pair accepts it, unless
 * the type or its "a/" star range is listed with q=0.  A malformed q-value accepts
 * nothing. */
int mime_accepts(const char *accept, const char *type);
/* mochiweb's accepted_encodings for one coding: whether Accept-Encoding
 * (NULL: absent, which accepts only identity) lets the server send
 * `coding`. */
int mime_accepts_encoding(const char *accept_encoding, const char *coding);

/* ---- byte ranges ---------------------------------------------------------- */

typedef struct mime_range {
    uint64_t from, to; /* inclusive, to < length */
} mime_range;

enum {
    MIME_RANGE_WHOLE = 0,         /* no usable Range: answer the whole entity (200) */
    MIME_RANGE_PARTIAL = 1,       /* *n ranges in out (206) */
    MIME_RANGE_UNSATISFIABLE = 2, /* 416 */
};
#define MIME_RANGES_MAX 9 /* CouchDB answers 200 to ten ranges or more */

/* Parses a Range header (NULL: absent) against an entity of `length`
 * bytes, CouchDB's way: a malformed header, "bytes=0-" as the first range
 * or more than MIME_RANGES_MAX ranges is WHOLE; a range whose start is
 * past its end (after clamping the end to length - 1) is UNSATISFIABLE;
 * a suffix "-N" is the last N bytes.  out holds MIME_RANGES_MAX ranges. */
int mime_range_parse(const char *hdr, uint64_t length, mime_range *out, size_t *n);

#endif
