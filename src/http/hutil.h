/*
 * hutil.h — what every database handler needs: opening the route's
 * database, CouchDB's error answers, query parameters with CouchDB's
 * parsing rules, JSON request bodies, and writes that answer when their
 * commit is durable.
 *
 * Convention: a helper that can fail because of the client's input sends
 * the 4xx answer itself and returns DV_ERR_INVALID (or NULL); the handler
 * then just returns.  Nothing here blocks the event loop.
 */
#ifndef DV_HTTP_HUTIL_H
#define DV_HTTP_HUTIL_H

#include "db/db.h"
#include "http/server.h"
#include "json/json.h"

#include <stdint.h>

/* The database named by the route's {db}: a reference to release with
 * db_release, or NULL after answering 404 "Database does not exist.". */
db_t *http_open_db(http_req_t *r);

void http_send_db_err(http_req_t *r, const db_err *e);
/* {"ok":true} */
void http_send_ok(http_req_t *r, int status);

/* ---- query parameters ----------------------------------------------------
 * Absent parameters leave *out at its default and return DV_OK.  A bad
 * value answers 400 {"error":"query_parse_error",...} (bad_request for
 * document parameters, as CouchDB) and returns DV_ERR_INVALID. */
const http_str_t *http_qs(http_req_t *r, const char *name);
/* "true" / "false" only. */
int http_qs_bool(http_req_t *r, const char *name, int *out);
/* A decimal integer in [min, max]. */
int http_qs_int(http_req_t *r, const char *name, long long min, long long max, long long *out);
/* A JSON value: parsed into doc (which the caller frees); *out NULL when
 * absent. */
int http_qs_json(http_req_t *r, const char *name, json_doc *doc, const json_val **out);

/* ---- bodies ---------------------------------------------------------------- */

/* 415 {"error":"bad_content_type"} unless the request's Content-Type is
 * `type` (parameters such as charset ignored). */
int http_require_ctype(http_req_t *r, const char *type);
/* Parses the request body as JSON into doc (caller frees); 400
 * bad_request "invalid UTF-8 JSON" when malformed or nested deeper than
 * [chttpd] max_json_depth. */
int http_json_body(http_req_t *r, json_doc *doc, const json_val **root);
/* Same for an arbitrary byte range (a MIME part). */
int http_json_parse(http_req_t *r, const void *p, size_t n, json_doc *doc, const json_val **root);
/* Both, when the value must be an object (chttpd:json_body_obj): 400
 * bad_request "Request body must be a JSON object" otherwise. */
int http_json_body_obj(http_req_t *r, json_doc *doc, const json_val **root);
int http_json_parse_obj(http_req_t *r, const void *p, size_t n, json_doc *doc, const json_val **root);

/* ---- writes ---------------------------------------------------------------- */

/* Runs on the request's loop once the write committed (status DV_OK, with
 * per-item statuses in the store_write) or failed.  r is NULL when the
 * client went away: done must still free ctx and release what it holds. */
typedef void (*http_write_done_fn)(http_req_t *r, void *ctx, int status);
/* Queues w on db's writer; done runs later, always exactly once (also
 * when queueing fails).  w and ctx must stay valid until then. */
void http_db_write(http_req_t *r, db_t *db, store_write *w, http_write_done_fn done, void *ctx);

/* ---- small JSON helpers ------------------------------------------------- */

/* Writes "N-id". */
void http_write_rev(json_writer *w, const store_rev *rev);
/* "N-id" as a NUL-terminated string into buf (STORE_REV_ID_MAX + 24). */
void http_rev_str(const store_rev *rev, char *buf, size_t cap);
/* Update sequences are opaque strings to clients (CouchDB 3): "N". */
void http_write_seq(json_writer *w, uint64_t seq);
/* Parses a sequence token as a client sends it back: a JSON number or
 * string of digits, optionally followed by "-anything" (CouchDB 3's
 * shape).  DV_ERR_INVALID otherwise. */
int http_parse_seq(const char *s, size_t n, uint64_t *out);

/* The absolute URL of /{db}/{docid}[/{att}] for Location headers, in the
 * request's pool. */
const char *http_location(http_req_t *r, const char *db, const uint8_t *id, size_t idlen, const char *att);

#endif
