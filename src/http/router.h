/*
 * router.h — request-target parsing and route matching, CouchDB's rules.
 *
 * Parsing follows chttpd: the path is split on '/' first, empty segments are
 * dropped ("//db//doc" is ["db", "doc"]), then each segment is
 * percent-decoded, with '+' read as a space and a malformed escape kept
 * literally, as mochiweb's unquote does.  So "%2F" stays inside a segment:
 * "/db/_design%2Ffoo" names the same document as "/db/_design/foo".  The
 * query string splits on '&' and ';' into decoded key/value pairs (a key
 * without '=' has the empty value).  Decoded strings may contain NUL: use the
 * lengths; each is also NUL-terminated for convenience.
 *
 * Matching walks a table of routes in order.  A pattern is a '/'-separated
 * list of tokens: a literal segment, "{db}" (any one segment), "{docid}" (a
 * document id: "_design/x" or "_local/x" over two segments, any other single
 * segment not starting with '_', or one decoded segment that starts with
 * "_design/" or "_local/"), "{rest}" (one or more remaining segments, joined
 * with '/') and "{any}" (zero or more remaining segments).  A route lists
 * its methods; HEAD is served by GET routes (chttpd aliases it).  The first
 * route whose pattern matches the path names the resource: it, or a later
 * route with the identical pattern string, must accept the method, else the
 * answer is 405 with the first route's `allow` string (so "/_up/{any}"
 * keeps PUT /_up away from a later "/{db}/{any}", as chttpd's dispatch on
 * the first segment does).
 *
 * This file knows nothing of h2o: the fuzz target and unit tests drive it
 * directly.  One parse costs one allocation.
 */
#ifndef DV_HTTP_ROUTER_H
#define DV_HTTP_ROUTER_H

#include <stddef.h>

typedef struct http_str {
    const char *p; /* NUL-terminated */
    size_t n;
} http_str_t;

typedef struct http_param {
    http_str_t key;
    http_str_t value;
} http_param_t;

typedef struct http_target {
    http_str_t *seg;     /* decoded path segments */
    size_t nseg;
    http_param_t *param; /* decoded query parameters, in order */
    size_t nparam;
    void *mem;           /* the single allocation behind everything above */
} http_target_t;

/* Parses an origin-form request target ("/a/b?x=1").  DV_ERR_INVALID when it
 * does not start with '/', DV_ERR_NOMEM on allocation failure. */
int http_target_parse(const char *target, size_t len, http_target_t *out);
void http_target_free(http_target_t *t);
/* First value of query parameter `key`, NULL when absent. */
const http_str_t *http_target_param(const http_target_t *t, const char *key);

/* Percent-decodes src into dst (capacity >= n + 1), '+' → ' ', malformed
 * escapes kept literally; returns the decoded length, dst NUL-terminated. */
size_t http_unquote(const char *src, size_t n, char *dst);

enum http_method {
    HTTP_GET = 1 << 0,
    HTTP_HEAD = 1 << 1,
    HTTP_POST = 1 << 2,
    HTTP_PUT = 1 << 3,
    HTTP_DELETE = 1 << 4,
    HTTP_COPY = 1 << 5,
    HTTP_OPTIONS = 1 << 6,
    HTTP_PATCH = 1 << 7,
    HTTP_OTHER = 1 << 8,
    HTTP_ANY = 0x1ff,
};
/* Method token → bit; HTTP_OTHER for anything unknown. */
int http_method_parse(const char *m, size_t n);

/* Captures of a match.  docid and rest point into `scratch` (caller-owned)
 * when they join several segments, else into the target. */
typedef struct http_match {
    http_str_t db;
    http_str_t docid;
    http_str_t rest;
} http_match_t;

/* Who may use a route (checked once, before the handler, by
 * http_authz_route in authz.c; see there for CouchDB's rules).  The zero
 * value is the strictest, so a route that names no class is closed to all
 * but server admins. */
enum http_access {
    HTTP_ACCESS_SERVER_ADMIN = 0, /* the "_admin" role */
    HTTP_ACCESS_PUBLIC,           /* anyone (/, /_up, /_uuids, /_session) */
    HTTP_ACCESS_ALL_DBS,          /* server admins unless [chttpd] admin_only_all_dbs = false */
    HTTP_ACCESS_DB_MEMBER,        /* members of {db} (_security "members") */
    HTTP_ACCESS_DB_ADMIN,         /* admins of {db} (_security "admins") */
    HTTP_ACCESS_DB,               /* /{db}: PUT, DELETE server admin; the rest member */
    HTTP_ACCESS_DB_META,          /* _security, _revs_limit: GET member, PUT db admin */
};

typedef struct http_route {
    int methods;          /* HTTP_* bits; HEAD is implied by GET */
    const char *pattern;  /* e.g. "/{db}/{docid}" */
    const char *allow;    /* CouchDB's Allow list for 405, e.g. "GET,HEAD" */
    void *handler;        /* opaque to the router */
    int access;           /* enum http_access */
} http_route_t;

enum { HTTP_ROUTE_FOUND = 0, HTTP_ROUTE_NO_METHOD = 1, HTTP_ROUTE_NO_PATH = 2 };

/* Finds the route for (method, target).  Returns HTTP_ROUTE_FOUND with
 * *route and *m set, HTTP_ROUTE_NO_METHOD with *route set to the route that
 * named the resource (for its allow string), or HTTP_ROUTE_NO_PATH.
 * Joined captures are written into scratch, which must hold at least the
 * target's total decoded length plus nseg bytes; when scratch is too small
 * the route does not match.  Allocates nothing. */
int http_route_find(const http_route_t *routes, size_t nroutes, int method, const http_target_t *t,
                    char *scratch, size_t scratch_len, const http_route_t **route, http_match_t *m);

/* Size scratch must have for http_route_find on target t. */
size_t http_route_scratch_size(const http_target_t *t);


#endif
