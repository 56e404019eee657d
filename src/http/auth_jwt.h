/*
 * auth_jwt.h — JWT authentication of HTTP requests (CouchDB's
 * jwt_authentication_handler).
 *
 * Called by auth.c only while the [chttpd] authentication_handlers in force
 * names `{chttpd_auth, jwt_authentication_handler}` (CouchDB 3's syntax; the
 * default list, cookie and default handlers, leaves it off).  Settings are
 * read from the live configuration on every request, so a change through
 * /_node/{node}/_config applies at once: [jwt_keys], [jwt_auth]
 * required_claims, roles_claim_name, roles_claim_path.
 */
#ifndef DV_HTTP_AUTH_JWT_H
#define DV_HTTP_AUTH_JWT_H

#include "http/server.h"

/* `authorization` is the request's Authorization header (may be NULL).  A
 * value that is not "Bearer <token>": answers 1 and
 * leaves r->user alone (another handler may authenticate).  A valid token:
 * sets r->user (name from sub, roles from the roles claim; both in the
 * request's pool) and answers 1.  An invalid one: sends CouchDB's error
 * (400/401, see http/jwt.h) and answers 0; the caller returns. */
int http_auth_jwt(http_req_t *r, const char *authorization);

#endif
