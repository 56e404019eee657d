/*
 * authz.c — authorization checks (see authz.h), CouchDB 3's rules
 * (chttpd_auth_request and couch_db's is_admin / is_member):
 *
 *   - "_admin" (a server admin) may do everything.
 *   - A db admin: name in _security admins.names or a role in
 *     admins.roles.  A member: a db admin, or anyone when members has no
 *     names and no roles (a public database), or a name/role in members.
 *   - PUT/DELETE /{db}, _purge, /_active_tasks, /_all_dbs and /_dbs_info
 *     (with [chttpd] admin_only_all_dbs), any other "_"-prefixed first
 *     segment that is not a server endpoint: server admins ("You are not a
 *     server admin.").
 *   - _compact, _view_cleanup: db admins ("You are not a server or db
 *     admin.", chttpd_auth_request:require_db_admin).
 *   - everything else under /{db}: members (401 "You are not authorized
 *     to access this db." anonymous, 403 "You are not allowed to access this
 *     db." otherwise); writing _security, _revs_limit and design documents:
 *     db admins (401/403 "You are not a db or server admin.").
 *   - _users: _all_docs and _changes are server-admin only; its documents
 *     are guarded per document (users.c), so no member check applies.
 *
 * Every refusal is 401 `unauthorized` without credentials and 403
 * `forbidden` with valid ones that lack the right (the security issue's
 * rule).  CouchDB itself answers 401 to logged-in users at its two
 * admin-only checks (verify_is_server_admin, require_db_admin); its
 * reasons are kept.
 *
 * Role checks are O(roles) string compares.  A database check reads the
 * security object from a snapshot (one header's bytes, no I/O beyond the
 * page cache) and parses it: a few microseconds per request.
 */
#include "http/authz.h"
#include "base/status.h"
#include "http/auth.h"
#include "http/handlers.h"
#include "http/users.h"
#include "json/json.h"

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

static int anonymous(const http_user_ctx_t *u) { return !u || !u->name; }

int http_authz_server_admin(http_req_t *r)
{
    if (http_user_has_role(r->user, "_admin"))
        return 1;
    /* CouchDB's verify_is_server_admin answers 401 even to a logged-in
     * user; divan answers 403 then (valid credentials, no right), as every
     * other check does: see the opening comment. */
    if (anonymous(r->user))
        http_send_error(r, 401, "unauthorized", "You are not a server admin.");
    else
        http_send_error(r, 403, "forbidden", "You are not a server admin.");
    return 0;
}

/* Whether the list (an array of strings) holds s. */
static int list_has(const json_val *list, const char *s)
{
    if (!list || !json_is_array(list) || !s)
        return 0;
    for (size_t i = 0; i < json_len(list); i++) {
        const json_val *x = json_array_get(list, i);
        if (x && json_is_string(x) && json_str_eq(x, s))
            return 1;
    }
    return 0;
}

/* names/roles of one _security section match ctx. */
static int section_match(const http_user_ctx_t *ctx, const json_val *sect)
{
    if (!ctx || !sect || !json_is_object(sect))
        return 0;
    const json_val *roles = json_object_get_cstr(sect, "roles");
    for (size_t i = 0; i < ctx->nroles; i++)
        if (list_has(roles, ctx->roles[i]))
            return 1;
    return ctx->name && list_has(json_object_get_cstr(sect, "names"), ctx->name);
}

static int list_empty(const json_val *v) { return !v || !json_is_array(v) || json_len(v) == 0; }

static int sec_check(const http_user_ctx_t *ctx, const char *sec, size_t len, int want_admin)
{
    if (http_user_has_role(ctx, "_admin"))
        return 1;
    json_doc jd = JSON_DOC_INIT;
    const json_val *root = NULL;
    if (sec && json_doc_parse(&jd, sec, len, JSON_DEPTH_STORED, NULL) == DV_OK)
        root = json_doc_root(&jd);
    if (root && !json_is_object(root))
        root = NULL;
    int ok = root && section_match(ctx, json_object_get_cstr(root, "admins"));
    if (!ok && !want_admin) {
        const json_val *m = root ? json_object_get_cstr(root, "members") : NULL;
        if (!m && root)
            m = json_object_get_cstr(root, "readers"); /* CouchDB's fallback for old objects */
        if (!m || !json_is_object(m))
            ok = 1;
        else if (list_empty(json_object_get_cstr(m, "names")) && list_empty(json_object_get_cstr(m, "roles")))
            ok = 1;
        else
            ok = section_match(ctx, m);
    }
    json_doc_free(&jd);
    return ok;
}

int http_authz_is_db_admin(const http_user_ctx_t *ctx, const char *sec, size_t len)
{
    return sec_check(ctx, sec, len, 1);
}

int http_authz_is_db_member(const http_user_ctx_t *ctx, const char *sec, size_t len)
{
    return sec_check(ctx, sec, len, 0);
}

/* The route's database's security object into *out: DV_ERR_NOTFOUND when
 * the database does not exist. */
static int route_security(http_req_t *r, buf_t *out)
{
    db_t *db;
    store_snap *snap;
    int rc = db_open(http_dbs(r), r->match.db.p, &db);
    if (rc != DV_OK)
        return rc;
    rc = db_snapshot(db, &snap);
    db_release(db);
    if (rc != DV_OK)
        return rc;
    rc = store_snap_security(snap, out);
    store_snap_release(snap);
    return rc;
}

enum { NEED_MEMBER, NEED_ADMIN, NEED_ADMIN_COMPACT };

/* 1: go on (also when the database is missing: the handler answers 404). */
static int db_check(http_req_t *r, int need)
{
    if (http_user_has_role(r->user, "_admin"))
        return 1;
    buf_t sec = BUF_INIT;
    int rc = route_security(r, &sec);
    if (rc == DV_ERR_NOTFOUND || rc == DV_ERR_INVALID) {
        buf_free(&sec);
        return 1;
    }
    if (rc != DV_OK) {
        buf_free(&sec);
        http_send_internal(r, rc);
        return 0;
    }
    int ok = need == NEED_MEMBER ? http_authz_is_db_member(r->user, (const char *)sec.data, sec.len)
                                 : http_authz_is_db_admin(r->user, (const char *)sec.data, sec.len);
    buf_free(&sec);
    if (ok)
        return 1;
    int anon = anonymous(r->user);
    if (need == NEED_ADMIN_COMPACT)
        http_send_error(r, anon ? 401 : 403, anon ? "unauthorized" : "forbidden", "You are not a server or db admin.");
    else if (need == NEED_ADMIN)
        http_send_error(r, anon ? 401 : 403, anon ? "unauthorized" : "forbidden", "You are not a db or server admin.");
    else if (anon)
        http_send_error(r, 401, "unauthorized", "You are not authorized to access this db.");
    else
        http_send_error(r, 403, "forbidden", "You are not allowed to access this db.");
    return 0;
}

int http_authz_db_admin(http_req_t *r) { return db_check(r, NEED_ADMIN); }

int http_authz_is_route_db_admin(http_req_t *r)
{
    if (http_user_has_role(r->user, "_admin"))
        return 1;
    buf_t sec = BUF_INIT;
    int rc = route_security(r, &sec);
    int ok = rc == DV_ERR_NOTFOUND || (rc == DV_OK && http_authz_is_db_admin(r->user, (const char *)sec.data, sec.len));
    buf_free(&sec);
    return ok;
}

static int is_users_db(const http_req_t *r) { return r->match.db.p && !strcmp(r->match.db.p, HTTP_AUTH_USERS_DB); }

static int second_segment_is(const http_req_t *r, const char *s)
{
    return r->target.nseg >= 2 && strcmp(r->target.seg[1].p, s) == 0;
}

int http_authz_route(http_req_t *r)
{
    int access = r->route->access;
    const http_auth_t *a = http_server_opts(r->server)->auth;
    if (access == HTTP_ACCESS_PUBLIC)
        return 1;
    if (access == HTTP_ACCESS_SERVER_ADMIN)
        return http_authz_server_admin(r);
    if (access == HTTP_ACCESS_ALL_DBS)
        return (a && !http_auth_admin_only_all_dbs(a)) || http_authz_server_admin(r);
    /* Database routes.  A "_" name that is not a system database is a
     * server path CouchDB reserves for admins. */
    const char *db = r->match.db.p;
    if (!db)
        return http_authz_server_admin(r);
    if (db[0] == '_' && strcmp(db, HTTP_AUTH_USERS_DB) != 0 && strcmp(db, "_replicator") != 0)
        return http_authz_server_admin(r);
    int writes = r->method != HTTP_GET && r->method != HTTP_HEAD;
    switch (access) {
    case HTTP_ACCESS_DB:
        if (r->method == HTTP_PUT || r->method == HTTP_DELETE)
            return http_authz_server_admin(r);
        break;
    case HTTP_ACCESS_DB_ADMIN:
        return db_check(r, NEED_ADMIN_COMPACT);
    case HTTP_ACCESS_DB_META:
        if (writes)
            return db_check(r, NEED_ADMIN);
        break;
    default:
        break;
    }
    if (is_users_db(r)) {
        /* Listing users is for admins, or with users_db_public (and
         * public_fields) for any user, who then sees only those fields. */
        if (second_segment_is(r, "_all_docs") && r->user && a && http_auth_users_listable(a))
            return 1;
        if (second_segment_is(r, "_all_docs") || second_segment_is(r, "_changes"))
            return http_authz_server_admin(r);
        /* Its documents are guarded one by one (users.c): anyone may sign
         * up, a user reads and edits only their own document. */
        int local = r->match.docid.n >= 7 && memcmp(r->match.docid.p, "_local/", 7) == 0;
        if (((r->route->handler == (void *)http_handle_doc || r->route->handler == (void *)http_handle_attachment) &&
             !local) ||
            (access == HTTP_ACCESS_DB && r->method == HTTP_POST))
            return http_users_authz_doc(r);
        /* its _local documents and everything else: _security as usual */
    }
    return db_check(r, NEED_MEMBER);
}
