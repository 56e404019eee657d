/*
 * limits.h — process-wide resource limits the HTTP server depends on.
 *
 * The process-wide ones are set once at start-up, before the loop threads
 * exist.  The numeric limits that change without a restart
 * (http_limits_live_t) are read from the configuration at start and again
 * after every change through /_node/_local/_config, as CouchDB reads them
 * at use: the server publishes the request limits with atomic stores
 * (http_server_set_limits), the database catalogue and the query-server
 * pool take theirs (db_server_configure, qserver_set_timeout).  What each
 * limit protects and what it costs is in docs/security.md.
 */
#ifndef DV_HTTP_LIMITS_H
#define DV_HTTP_LIMITS_H

#include <stddef.h>

struct config;

/* The numeric limits that change without a restart: one parse, so a bad
 * value in any of them keeps all as they were. */
typedef struct http_limits_live {
    long long max_request_size;  /* [chttpd] max_http_request_size: larger bodies get 413 too_large */
    long long max_document_size; /* [couchdb] max_document_size: larger documents get 413 document_too_large */
    unsigned max_json_depth;     /* [chttpd] max_json_depth: deeper JSON gets 400 */
    long long purge_max_ids;     /* [purge] max_document_id_number: more ids per _purge get 400 */
    long long purge_max_revs;    /* [purge] max_revisions_number: more revs per _purge get 400 */
    long long max_dbs_open;      /* [couchdb] max_dbs_open: open databases kept (db_server_configure) */
    long long os_process_timeout; /* [couchdb] os_process_timeout, ms a query-server call may take */
} http_limits_live_t;

/* Reads them from c (the caller holds its read lock once the server runs):
 * DV_ERR_INVALID (logged) when a value is not a number in range. */
int http_limits_read(const struct config *c, http_limits_live_t *out);

/* Raises the soft RLIMIT_NOFILE to the hard limit (thousands of client
 * connections need as many descriptors) and returns the soft limit then
 * in force, or -1 when it cannot be read. */
long long http_limits_raise_nofile(void);

/* The largest max_connections that fits in `nofile` descriptors: half of
 * them, the rest kept for database and view files, the query servers'
 * pipes and the listener. */
long long http_limits_connections_for(long long nofile);

/* Request bytes h2o buffers for one connection beyond `threshold` go to an
 * unlinked temporary file in `dir` (mapped, so the kernel can page them
 * out) instead of anonymous memory.  DV_ERR_INVALID when dir is too long
 * for h2o's template. */
int http_limits_body_spill(const char *dir, size_t threshold);

#endif
