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

#endif
