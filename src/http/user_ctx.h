/*
 * user_ctx.h — who a request is acting as (CouchDB's userCtx).
 *
 * Authentication (Basic, cookie, JWT, proxy) fills r->user before the
 * route's handler runs; authorization and validate_doc_update read it.
 * NULL means anonymous: no name, no roles.  The context lives in the
 * request's memory pool (or is static) and is valid until the response is
 * sent; handlers never free it.  A server admin carries the role "_admin".
 */
#ifndef DIVAN_HTTP_USER_CTX_H
#define DIVAN_HTTP_USER_CTX_H

#include <stddef.h>

typedef struct http_user_ctx {
    const char *name;          /* NUL-terminated; NULL: anonymous */
    const char *const *roles;  /* nroles NUL-terminated strings */
    size_t nroles;
    const char *handler;       /* how it was authenticated: "cookie", "default"
                                * (Basic), "jwt", "proxy", or NULL; GET /_session
                                * reports it */
} http_user_ctx_t;

#endif
