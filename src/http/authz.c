/*
 * authz.c — authorization checks (see authz.h).
 *
 * Checks are O(roles) string compares on the request's user context; they
 * allocate nothing and never look at credentials: by the time a handler
 * runs, authentication has either filled r->user or left it anonymous.
 */
#include "http/authz.h"

#include <string.h>

int http_user_has_role(const http_user_ctx_t *ctx, const char *role)
{
    if (!ctx)
        return 0;
    for (size_t i = 0; i < ctx->nroles; i++)
        if (strcmp(ctx->roles[i], role) == 0)
            return 1;
    return 0;
}

int http_authz_server_admin(http_req_t *r)
{
    if (http_user_has_role(r->user, "_admin"))
        return 1;
    if (!r->user || !r->user->name)
        http_send_error(r, 401, "unauthorized", "You are not a server admin.");
    else
        http_send_error(r, 403, "forbidden", "You are not a server admin.");
    return 0;
}
