/*
 * auth.h — authentication: who a request acts as (CouchDB's chttpd_auth).
 *
 * Before a route's handler runs, http_auth_request fills r->user from, in
 * CouchDB's default handler order: an AuthSession cookie (a valid one wins;
 * an expired or forged one counts as no cookie; a malformed one is 400),
 * then HTTP Basic credentials (wrong ones are 401 "Name or password is
 * incorrect.").  Credentials are checked against the server admins
 * ([admins], role "_admin") and then against `org.couchdb.user:NAME`
 * documents of the `_users` database.  With [chttpd] require_valid_user a
 * request that is still anonymous gets 401 "Authentication required."
 *
 * PBKDF2 costs tens of milliseconds, so a password is verified on the
 * server's worker pool and the request resumes on its loop; a verified
 * password is remembered as an HMAC under a per-process random key (never
 * the password itself), keyed by name and the stored hash, so a repeat
 * request costs one HMAC and a changed password or hash misses the cache.
 */
#ifndef DV_HTTP_AUTH_H
#define DV_HTTP_AUTH_H

#include "http/server.h"

#include <stdint.h>

#define HTTP_AUTH_USERS_DB "_users"
#define HTTP_AUTH_USER_PREFIX "org.couchdb.user:"
/* [couchdb] default_security = admin_only: what a new database's _security is. */
#define HTTP_AUTH_ADMIN_ONLY_SECURITY "{\"members\":{\"roles\":[\"_admin\"]},\"admins\":{\"roles\":[\"_admin\"]}}"

/* Authentication handlers (CouchDB's names without
 * "_authentication_handler"): tried in the configured order until one
 * names a user.  proxy trusts X-Auth-CouchDB-UserName/-Roles (with
 * proxy_use_secret, only with X-Auth-CouchDB-Token = hex HMAC-SHA1 of the
 * name under [chttpd_auth] secret); CouchDB enables it only when listed. */
enum { HTTP_AUTHN_COOKIE = 1, HTTP_AUTHN_DEFAULT = 2, HTTP_AUTHN_PROXY = 3, HTTP_AUTHN_JWT = 4 };

/* The settings that change without a restart, as in CouchDB (which reads
 * them with config:get at use).  http_auth_live_read takes them from a
 * configuration, its strings pointing into it; http_auth_new and
 * http_auth_reconfigure copy them into an immutable set that requests read
 * through one atomic load (see auth.c). */
typedef struct http_auth_live {
    const char *secret;               /* [chttpd_auth] secret; "": a random one (cookies of before are void) */
    long long timeout;                /* [chttpd_auth] timeout, seconds */
    int allow_persistent_cookies;     /* [chttpd_auth] allow_persistent_cookies */
    const char *same_site;            /* [chttpd_auth] same_site: "", strict, lax, none */
    int cookie_secure;                /* [chttpd_auth] secure_cookie */
    int require_valid_user;           /* [chttpd] require_valid_user */
    int require_valid_user_except_for_up; /* [chttpd] require_valid_user_except_for_up */
    int admin_only_all_dbs;           /* [chttpd] admin_only_all_dbs */
    int handlers[4];                  /* [chttpd] authentication_handlers, in order: HTTP_AUTHN_* */
    size_t nhandlers;                 /* 0: cookie, default (CouchDB's default list) */
    int proxy_use_secret;             /* [chttpd_auth] proxy_use_secret */
    const char *x_auth_username;      /* [chttpd_auth] x_auth_username, … (NULL: CouchDB's names) */
    const char *x_auth_roles;
    const char *x_auth_token;
    int lockout_mode;                 /* [chttpd_auth_lockout] mode: HTTP_LOCKOUT_* */
    long long lockout_threshold;      /* failures before the lock */
    const char *users_prf;            /* [chttpd_auth] pbkdf2_prf for _users passwords (NULL: sha256) */
    long users_iterations;            /* [chttpd_auth] iterations (< 1: the default) */
    int users_db_public;              /* [chttpd_auth] users_db_public: _users/_all_docs for everyone */
    const char *public_fields;        /* [chttpd_auth] public_fields: comma-separated (NULL: none) */
} http_auth_live_t;

typedef struct http_auth_opts {
    const char *const *admin_names;  /* [admins]: names … */
    const char *const *admin_hashes; /* … and their stored hashes (base/passwd.h forms) */
    size_t nadmins;
    long long lockout_max_objects;    /* [chttpd_auth_lockout] max_objects: (client, user) pairs remembered */
    long long lockout_max_lifetime_ms; /* [chttpd_auth_lockout] max_lifetime: how long a pair's count lives */
    http_auth_live_t live;            /* in force until http_auth_reconfigure */
} http_auth_opts_t;

/* Failed-login lockout (CouchDB 3.4's [chttpd_auth_lockout]): after
 * `threshold` wrong passwords for one user from one client address, that
 * client's further attempts for the user get 403 (enforce) or a logged
 * warning (warn) until the count expires; the user's salt is part of the
 * key, so a password change lifts it. */
enum { HTTP_LOCKOUT_OFF = 0, HTTP_LOCKOUT_WARN = 1, HTTP_LOCKOUT_ENFORCE = 2 };

typedef struct http_auth http_auth_t;

/* Copies everything in o. */
int http_auth_new(const http_auth_opts_t *o, http_auth_t **out);
void http_auth_free(http_auth_t *a);

struct config;
/* Reads the live settings from c (the caller holds its read lock once the
 * server runs, and until out has been given to http_auth_new or
 * http_auth_reconfigure): DV_ERR_INVALID (logged) for a bad value. */
int http_auth_live_read(const struct config *c, http_auth_live_t *out);
/* Puts a copy of l in force for the requests that follow.  The set it
 * replaces is kept until http_auth_free (a request may still read it), so
 * call it only for changes that may alter it.  DV_ERR_NOMEM: the old set
 * stays. */
int http_auth_reconfigure(http_auth_t *a, const http_auth_live_t *l);
/* [couchdb] default_security as the _security JSON of a new database
 * (admin_only: HTTP_AUTH_ADMIN_ONLY_SECURITY; everyone: NULL, "{}"):
 * DV_ERR_INVALID (logged) for any other value. */
int http_auth_default_security(const struct config *c, const char **json);
/* [chttpd] admin_only_all_dbs in force. */
int http_auth_admin_only_all_dbs(const http_auth_t *a);
/* How a _users password is hashed now ([chttpd_auth] pbkdf2_prf,
 * iterations); *prf lives as long as a. */
void http_auth_users_hash(const http_auth_t *a, const char **prf, long *iterations);
/* Whether a non-admin may list _users (users_db_public with public_fields
 * set, as CouchDB); whether public_fields names any field; the
 * public_fields in force (lives as long as a: read it once per request);
 * whether a comma-separated list names `name` (n bytes). */
int http_auth_users_listable(const http_auth_t *a);
int http_auth_public_fields_set(const http_auth_t *a);
const char *http_auth_public_fields(const http_auth_t *a);
int http_auth_list_has(const char *list, const char *name, size_t n);

/* Authenticates r (see above), then calls next(r) on r's loop thread, now
 * or after a password check; or answers the error itself and never calls
 * next.  A server without an http_auth_t leaves every request anonymous. */
typedef void (*http_auth_next_fn)(http_req_t *r);
void http_auth_request(http_req_t *r, http_auth_next_fn next);

/* Checks name/password (Basic, the _session login): fn(r, user, locked,
 * arg) runs on r's loop with the user's context (in r's pool), or NULL
 * when the name is unknown or the password wrong, or NULL and locked = 1
 * when the lockout refused to check (answer with http_auth_send_locked).
 * r is NULL in fn when the client left. */
typedef void (*http_auth_login_fn)(http_req_t *r, const http_user_ctx_t *user, int locked, void *arg);
/* 403 "Account is temporarily locked due to multiple authentication failures". */
void http_auth_send_locked(http_req_t *r);
void http_auth_login(http_req_t *r, const char *name, size_t name_len, const char *password, size_t pw_len,
                     http_auth_login_fn fn, void *arg);

/* The configured handlers' names in order ("cookie", "default", "proxy"),
 * for GET /_session's info.authentication_handlers. */
size_t http_auth_handler_names(const http_auth_t *a, const char **out, size_t cap);

/* The Set-Cookie value of a fresh AuthSession for `name` (in r's pool),
 * or NULL when the user no longer exists. */
const char *http_auth_session_cookie(http_req_t *r, const char *name);
/* The Set-Cookie value that clears the cookie. */
const char *http_auth_clear_cookie(http_req_t *r);

/* The AuthSession value for name/salt/time (without attributes), malloc'd;
 * exposed for the fuzz target and unit tests. */
char *http_auth_cookie_value(const char *secret, const char *name, const char *salt, uint64_t t);
/* Splits a decoded-cookie string "name:HEXTIME:mac" into its parts:
 * DV_OK, or DV_ERR_INVALID when malformed (no two ':' or a bad time). */
int http_auth_cookie_parse(const char *s, size_t n, size_t *name_len, uint64_t *t, const char **mac,
                           size_t *mac_len);
/* Decodes "Basic <base64>" into name and password (malloc'd in *buf, name
 * NUL-terminated at buf, password after it): DV_ERR_INVALID when it is not
 * a Basic header or not "name:password". */
int http_auth_basic_parse(const char *header, char **buf, size_t *name_len, const char **pw, size_t *pw_len);
/* base64url (padding optional) → bytes appended to out; DV_ERR_INVALID on
 * any byte outside the url-safe alphabet. */
int http_auth_cookie_decode(const char *v, size_t n, buf_t *out);
/* Finds the AuthSession value in a Cookie header; NULL when absent. */
const char *http_auth_cookie_find(const char *cookie_header, size_t *len);

#endif
