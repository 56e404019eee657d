/*
 * authz.h — authorization checks handlers make before they act.
 *
 * Each check reads r->user (filled by authentication, user_ctx.h) and
 * answers 1 when the request may go on; otherwise it has already sent
 * CouchDB's error (401 unauthorized without credentials, 403 forbidden with
 * valid ones that lack the right) and answers 0, and the handler returns.
 */
#ifndef DIVAN_HTTP_AUTHZ_H
#define DIVAN_HTTP_AUTHZ_H

#include "http/server.h"

/* Whether ctx holds the role (NULL ctx: anonymous, no roles). */
int http_user_has_role(const http_user_ctx_t *ctx, const char *role);

/* Server admins only (the "_admin" role). */
int http_authz_server_admin(http_req_t *r);

/* The route's access class (router.h enum http_access), for r->route and
 * r->match; called once per request before the handler. */
int http_authz_route(http_req_t *r);

/* Whether ctx is an admin of a database with this _security object (JSON
 * bytes; NULL or unparsable: no db admins), or a member (empty members:
 * everyone).  Server admins are both. */
int http_authz_is_db_admin(const http_user_ctx_t *ctx, const char *sec, size_t len);
int http_authz_is_db_member(const http_user_ctx_t *ctx, const char *sec, size_t len);

/* Database admins (or server admins) of the route's {db}: 401/403 "You are
 * not a db or server admin." otherwise.  For handler-level rules such as
 * design-document writes.  A missing database passes (the handler 404s). */
int http_authz_db_admin(http_req_t *r);
/* The same question without an answer sent (per-document results of
 * _bulk_docs): 1 for a db or server admin or a missing database. */
int http_authz_is_route_db_admin(http_req_t *r);

#endif
