/*
 * auth_jwt.c — Authorization: Bearer → r->user (see auth_jwt.h).
 *
 * The configuration's read lock is held across the verification (key
 * lookup, PEM parse, signature check: tens of microseconds) because the
 * key strings belong to the config; the user context is copied into the
 * request's pool before the lock is released.  Costs nothing for requests
 * without a Bearer token beyond one prefix compare.
 */
#include "http/auth_jwt.h"
#include "base/status.h"
#include "config.h"
#include "http/jwt.h"

#include <h2o.h>
#include <string.h>
#include <time.h>

static const char *key_lookup(void *ctx, const char *name)
{
    return config_get(ctx, "jwt_keys", name);
}

static const char *pool_dup(h2o_req_t *req, const char *s)
{
    return h2o_strdup(&req->pool, s, strlen(s)).base;
}

int http_auth_jwt(http_req_t *r, const char *authorization)
{
    if (!authorization || strncmp(authorization, "Bearer ", 7) != 0)
        return 1;
    config_t *c = http_server_opts(r->server)->config;
    if (!c)
        return 1;
    const char *token = authorization + 7;
    jwt_result res;
    config_rdlock(c);
    jwt_opts o = {
        .required_claims = config_get(c, "jwt_auth", "required_claims"),
        .roles_claim_name = config_get(c, "jwt_auth", "roles_claim_name"),
        .roles_claim_path = config_get(c, "jwt_auth", "roles_claim_path"),
        .now = (int64_t)time(NULL),
        .lookup = key_lookup,
        .lookup_ctx = c,
    };
    int rc = jwt_verify(token, strlen(token), &o, &res);
    config_unlock(c);
    if (rc != DV_OK) {
        jwt_result_free(&res);
        http_send_internal(r, rc);
        return 0;
    }
    if (res.status) {
        http_send_error(r, res.status, res.error, res.reason);
        jwt_result_free(&res);
        return 0;
    }
    h2o_req_t *req = r->h2o;
    http_user_ctx_t *u = h2o_mem_alloc_pool(&req->pool, sizeof *u);
    const char **roles = h2o_mem_alloc_pool(&req->pool, (res.nroles + 1) * sizeof *roles);
    u->name = pool_dup(req, res.name);
    for (size_t i = 0; i < res.nroles; i++)
        roles[i] = pool_dup(req, res.roles[i]);
    u->roles = roles;
    u->nroles = res.nroles;
    u->handler = "jwt";
    r->user = u;
    jwt_result_free(&res);
    return 1;
}
