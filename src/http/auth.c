/*
 * auth.c — authentication of every request: AuthSession cookies, HTTP
 * Basic, server admins and _users documents, the password cache (see
 * auth.h).
 *
 * Invariants: no plain password outlives the request that carried it (the
 * worker's copy is cleansed, the cache holds HMAC-SHA256 of the password
 * under a random per-process key); every secret comparison is
 * CRYPTO_memcmp; the user context and everything it points to lives in
 * the request's pool.  A _users lookup is one B-tree read and one body
 * read (pread on committed data, allowed on the loop); PBKDF2 runs on the
 * worker pool, at most once per (name, stored hash, password) while the
 * cache keeps the entry.
 *
 * The AuthSession cookie is CouchDB 3's: base64url (no padding) of
 * "name:HEXTIME:" followed by the 20 raw bytes of HMAC-SHA1 keyed by the
 * server secret concatenated with the user's salt, over "name:HEXTIME".
 * Changing a password changes the salt, which invalidates old cookies;
 * changing the secret invalidates every cookie.
 *
 * Settings that change without a restart (http_auth_live_t) form one
 * immutable set, published by an atomic pointer store and read per
 * request with one acquire load (no lock on the request path).  A replaced
 * set is retired, not freed, until http_auth_free: a request on another
 * loop may still be reading it, and only changes to the authentication
 * sections build a new one, so the retired sets stay few and small.
 */
#include "http/auth.h"
#include "http/auth_jwt.h"
#include "config.h"
#include "base/base64.h"
#include "base/digest.h"
#include "base/log.h"
#include "base/passwd.h"
#include "base/status.h"
#include "base/workers.h"
#include "json/json.h"
#include "store/dbfile.h"
#include "store/revtree.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <h2o.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define CACHE_SLOTS 1024 /* verified (name, hash, password) triples kept */

typedef struct cache_entry {
    char *name;
    char *stored;
    unsigned char mac[32]; /* HMAC-SHA256(cache_key, password) */
} cache_entry;

/* One (client address, user, salt) pair's failures. */
typedef struct lock_entry {
    struct lock_entry *next; /* bucket chain */
    uint64_t hash;
    long long created_ms;
    long long count;
    size_t len;
    char key[]; /* peer NUL name NUL salt */
} lock_entry;

#define LOCK_BUCKETS 4096

/* A published set of live settings: the strings are owned copies. */
typedef struct live_set {
    http_auth_live_t v;
    struct live_set *prev; /* the set it replaced (retired), freed with a */
    char *secret, *same_site, *xu, *xr, *xt, *users_prf, *public_fields;
    int random_secret; /* secret made here, none being configured */
} live_set;

struct http_auth {
    http_auth_opts_t o;
    const live_set *_Atomic live; /* in force; see the file comment */
    live_set *newest;             /* head of every set published (under mu) */
    lock_entry *locks[LOCK_BUCKETS]; /* under mu */
    long long nlocks;
    char **names, **hashes;
    unsigned char cache_key[32];
    pthread_mutex_t mu;
    cache_entry cache[CACHE_SLOTS];
    size_t cache_next; /* round-robin victim */
};

static char *xstrdup(const char *s) { return strdup(s ? s : ""); }

static char *lower_dup(const char *s)
{
    char *c = strdup(s);
    for (char *p = c; p && *p; p++)
        *p = (char)tolower((unsigned char)*p); /* h2o keeps request header names in lower case */
    return c;
}

static void live_set_free(live_set *l)
{
    if (!l)
        return;
    if (l->secret)
        OPENSSL_cleanse(l->secret, strlen(l->secret));
    free(l->secret);
    free(l->same_site);
    free(l->xu);
    free(l->xr);
    free(l->xt);
    free(l->users_prf);
    free(l->public_fields);
    free(l);
}

/* A copy of v with CouchDB's defaults filled in; NULL when out of memory.
 * An empty secret gets a random one, as CouchDB makes a new secret when
 * none is set: cookies issued under the old one are void either way.  cur
 * (the set in force, or NULL) keeps its random secret, so that later
 * changes to other settings do not void the cookies issued under it. */
static live_set *live_set_new(const http_auth_live_t *v, const live_set *cur)
{
    live_set *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->v = *v;
    if (v->secret && *v->secret) {
        l->secret = strdup(v->secret);
    } else if (cur && cur->random_secret) {
        l->secret = strdup(cur->secret);
        l->random_secret = 1;
    } else {
        l->random_secret = 1;
        if ((l->secret = malloc(33)) && dv_random_hex(l->secret, 16) != DV_OK) {
            free(l->secret);
            l->secret = NULL;
        }
    }
    l->same_site = xstrdup(v->same_site);
    l->xu = lower_dup(v->x_auth_username ? v->x_auth_username : "X-Auth-CouchDB-UserName");
    l->xr = lower_dup(v->x_auth_roles ? v->x_auth_roles : "X-Auth-CouchDB-Roles");
    l->xt = lower_dup(v->x_auth_token ? v->x_auth_token : "X-Auth-CouchDB-Token");
    l->users_prf = xstrdup(v->users_prf ? v->users_prf : PASSWD_DEFAULT_PRF);
    l->public_fields = xstrdup(v->public_fields);
    if (!l->secret || !l->same_site || !l->xu || !l->xr || !l->xt || !l->users_prf || !l->public_fields) {
        live_set_free(l);
        return NULL;
    }
    l->v.secret = l->secret;
    l->v.same_site = l->same_site;
    l->v.x_auth_username = l->xu;
    l->v.x_auth_roles = l->xr;
    l->v.x_auth_token = l->xt;
    l->v.users_prf = l->users_prf;
    l->v.public_fields = l->public_fields;
    if (l->v.nhandlers == 0 || l->v.nhandlers > 4) {
        l->v.handlers[0] = HTTP_AUTHN_COOKIE;
        l->v.handlers[1] = HTTP_AUTHN_DEFAULT;
        l->v.nhandlers = 2;
    }
    if (l->v.users_iterations < 1)
        l->v.users_iterations = PASSWD_DEFAULT_ITERATIONS;
    return l;
}

/* The live settings in force. */
static const http_auth_live_t *live(const http_auth_t *a)
{
    return &atomic_load_explicit(&((http_auth_t *)a)->live, memory_order_acquire)->v;
}

/* Whether two sets (made by live_set_new: no NULL strings) say the same;
 * every field of http_auth_live_t. */
static int live_equal(const live_set *x, const live_set *y)
{
    const http_auth_live_t *a = &x->v, *b = &y->v;
    return a->timeout == b->timeout && a->allow_persistent_cookies == b->allow_persistent_cookies &&
           a->cookie_secure == b->cookie_secure && a->require_valid_user == b->require_valid_user &&
           a->require_valid_user_except_for_up == b->require_valid_user_except_for_up &&
           a->admin_only_all_dbs == b->admin_only_all_dbs && a->nhandlers == b->nhandlers &&
           !memcmp(a->handlers, b->handlers, sizeof a->handlers) && a->proxy_use_secret == b->proxy_use_secret &&
           a->lockout_mode == b->lockout_mode && a->lockout_threshold == b->lockout_threshold &&
           a->users_iterations == b->users_iterations && a->users_db_public == b->users_db_public &&
           !strcmp(a->secret, b->secret) && !strcmp(a->same_site, b->same_site) &&
           !strcmp(a->x_auth_username, b->x_auth_username) && !strcmp(a->x_auth_roles, b->x_auth_roles) &&
           !strcmp(a->x_auth_token, b->x_auth_token) && !strcmp(a->users_prf, b->users_prf) &&
           !strcmp(a->public_fields, b->public_fields);
}

int http_auth_reconfigure(http_auth_t *a, const http_auth_live_t *v)
{
    /* Sets are published under mu only, so a->newest is the one in force. */
    pthread_mutex_lock(&a->mu);
    live_set *l = live_set_new(v, a->newest);
    if (!l) {
        pthread_mutex_unlock(&a->mu);
        return DV_ERR_NOMEM;
    }
    /* Every change to [chttpd] (and every reload) comes here; a set that
     * says what the current one says is not kept until stop. */
    if (a->newest && live_equal(l, a->newest)) {
        pthread_mutex_unlock(&a->mu);
        live_set_free(l);
        return DV_OK;
    }
    l->prev = a->newest;
    a->newest = l;
    atomic_store_explicit(&a->live, l, memory_order_release);
    pthread_mutex_unlock(&a->mu);
    return DV_OK;
}

int http_auth_new(const http_auth_opts_t *o, http_auth_t **out)
{
    *out = NULL;
    http_auth_t *a = calloc(1, sizeof *a);
    if (!a)
        return DV_ERR_NOMEM;
    a->o = *o;
    pthread_mutex_init(&a->mu, NULL);
    a->names = calloc(o->nadmins + 1, sizeof *a->names);
    a->hashes = calloc(o->nadmins + 1, sizeof *a->hashes);
    if (!a->names || !a->hashes)
        goto fail;
    for (size_t i = 0; i < o->nadmins; i++)
        if (!(a->names[i] = xstrdup(o->admin_names[i])) || !(a->hashes[i] = xstrdup(o->admin_hashes[i])))
            goto fail;
    if (RAND_bytes(a->cache_key, sizeof a->cache_key) != 1 || http_auth_reconfigure(a, &o->live) != DV_OK)
        goto fail;
    a->o.admin_names = (const char *const *)a->names;
    a->o.admin_hashes = (const char *const *)a->hashes;
    memset(&a->o.live, 0, sizeof a->o.live); /* the caller's strings: the live set is live(a) */
    *out = a;
    return DV_OK;
fail:
    http_auth_free(a);
    return DV_ERR_NOMEM;
}

void http_auth_free(http_auth_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->o.nadmins; i++) {
        free(a->names ? a->names[i] : NULL);
        free(a->hashes ? a->hashes[i] : NULL);
    }
    free(a->names);
    free(a->hashes);
    for (live_set *l = a->newest, *p; l; l = p) {
        p = l->prev;
        live_set_free(l);
    }
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        free(a->cache[i].name);
        free(a->cache[i].stored);
    }
    for (size_t i = 0; i < LOCK_BUCKETS; i++) {
        for (lock_entry *e = a->locks[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    }
    OPENSSL_cleanse(a->cache_key, sizeof a->cache_key);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* [chttpd] authentication_handlers, CouchDB's syntax:
 * "{chttpd_auth, cookie_authentication_handler}, {chttpd_auth, …}";
 * DV_ERR_INVALID (logged) when it names no handler divan has. */
static int parse_handlers(const char *hl, http_auth_live_t *out)
{
    static const struct {
        const char *name;
        int id;
    } known[] = {
        {"cookie_authentication_handler", HTTP_AUTHN_COOKIE},
        {"default_authentication_handler", HTTP_AUTHN_DEFAULT},
        {"proxy_authentication_handler", HTTP_AUTHN_PROXY},
        {"jwt_authentication_handler", HTTP_AUTHN_JWT},
    };
    out->nhandlers = 0;
    for (const char *p = hl; *p && out->nhandlers < 4;) {
        const char *end = strchr(p, '}');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int found = 0;
        for (size_t k = 0; k < sizeof known / sizeof known[0] && out->nhandlers < 4; k++) {
            const char *m = strstr(p, known[k].name);
            if (m && m < p + len) {
                out->handlers[out->nhandlers++] = known[k].id;
                found = 1;
            }
        }
        if (!found && memchr(p, '_', len)) {
            size_t skip = strspn(p, ", \t{");
            log_warn("config: [chttpd] authentication_handlers: {%.*s} is not supported",
                     (int)(len > skip ? len - skip : 0), p + skip);
        }
        p += len + (end ? 1 : 0);
    }
    if (out->nhandlers == 0) {
        log_error("config: [chttpd] authentication_handlers names no supported handler");
        return DV_ERR_INVALID;
    }
    return DV_OK;
}

int http_auth_live_read(const struct config *c, http_auth_live_t *out)
{
    long long iterations;
    int rc;
    memset(out, 0, sizeof *out);
    if ((rc = config_get_int(c, "chttpd_auth", "timeout", 600, 1, 1LL << 40, &out->timeout)) != DV_OK ||
        (rc = config_get_bool(c, "chttpd_auth", "allow_persistent_cookies", 1, &out->allow_persistent_cookies)) !=
            DV_OK ||
        (rc = config_get_bool(c, "chttpd_auth", "secure_cookie", 0, &out->cookie_secure)) != DV_OK ||
        (rc = config_get_bool(c, "chttpd", "require_valid_user", 0, &out->require_valid_user)) != DV_OK ||
        (rc = config_get_bool(c, "chttpd", "require_valid_user_except_for_up", 0,
                              &out->require_valid_user_except_for_up)) != DV_OK ||
        (rc = config_get_bool(c, "chttpd", "admin_only_all_dbs", 1, &out->admin_only_all_dbs)) != DV_OK ||
        (rc = config_get_int(c, "chttpd_auth_lockout", "threshold", 5, 1, 1LL << 40, &out->lockout_threshold)) !=
            DV_OK ||
        (rc = config_get_bool(c, "chttpd_auth", "proxy_use_secret", 0, &out->proxy_use_secret)) != DV_OK ||
        (rc = config_get_int(c, "chttpd_auth", "iterations", 50000, 1, 1000000000, &iterations)) != DV_OK ||
        (rc = config_get_bool(c, "chttpd_auth", "users_db_public", 0, &out->users_db_public)) != DV_OK)
        return rc;
    const char *mode = config_get_str(c, "chttpd_auth_lockout", "mode", "enforce");
    out->lockout_mode = !strcmp(mode, "enforce") ? HTTP_LOCKOUT_ENFORCE
                        : !strcmp(mode, "warn")  ? HTTP_LOCKOUT_WARN
                        : !strcmp(mode, "off")   ? HTTP_LOCKOUT_OFF
                                                 : -1;
    if (out->lockout_mode < 0) {
        log_error("config: [chttpd_auth_lockout] mode must be enforce, warn or off, not %s", mode);
        return DV_ERR_INVALID;
    }
    if ((rc = parse_handlers(config_get_str(c, "chttpd", "authentication_handlers",
                                            "{chttpd_auth, cookie_authentication_handler}, "
                                            "{chttpd_auth, default_authentication_handler}"),
                             out)) != DV_OK)
        return rc;
    out->secret = config_get_str(c, "chttpd_auth", "secret", "");
    out->same_site = config_get_str(c, "chttpd_auth", "same_site", "");
    out->x_auth_username = config_get_str(c, "chttpd_auth", "x_auth_username", "X-Auth-CouchDB-UserName");
    out->x_auth_roles = config_get_str(c, "chttpd_auth", "x_auth_roles", "X-Auth-CouchDB-Roles");
    out->x_auth_token = config_get_str(c, "chttpd_auth", "x_auth_token", "X-Auth-CouchDB-Token");
    out->users_prf = config_get_str(c, "chttpd_auth", "pbkdf2_prf", "sha256");
    out->users_iterations = (long)iterations;
    out->public_fields = config_get(c, "chttpd_auth", "public_fields");
    return DV_OK;
}

int http_auth_default_security(const struct config *c, const char **json)
{
    const char *v = config_get_str(c, "couchdb", "default_security", "admin_only");
    if (strcmp(v, "admin_only") != 0 && strcmp(v, "everyone") != 0) {
        log_error("config: [couchdb] default_security must be admin_only or everyone, not %s", v);
        return DV_ERR_INVALID;
    }
    *json = strcmp(v, "admin_only") == 0 ? HTTP_AUTH_ADMIN_ONLY_SECURITY : NULL;
    return DV_OK;
}

int http_auth_admin_only_all_dbs(const http_auth_t *a) { return live(a)->admin_only_all_dbs; }

void http_auth_users_hash(const http_auth_t *a, const char **prf, long *iterations)
{
    const http_auth_live_t *l = live(a);
    *prf = l->users_prf;
    *iterations = l->users_iterations;
}

static int fields_listed(const char *p) { return p && p[strspn(p, " \t,")] != 0; }

int http_auth_public_fields_set(const http_auth_t *a) { return fields_listed(live(a)->public_fields); }

int http_auth_users_listable(const http_auth_t *a)
{
    const http_auth_live_t *l = live(a); /* one set for the decision */
    return l->users_db_public && fields_listed(l->public_fields);
}

/* The comma-separated field that starts at p, without the blanks around
 * it, as [*b, *e) (CouchDB splits such lists with "\\s*,\\s*"); returns
 * where it ends: at its comma or at the NUL. */
static const char *list_field(const char *p, const char **b, const char **e)
{
    const char *end = p + strcspn(p, ",");
    *b = p;
    *e = end;
    while (*b < *e && isblank((unsigned char)**b))
        (*b)++;
    while (*e > *b && isblank((unsigned char)(*e)[-1]))
        (*e)--;
    return end;
}

const char *http_auth_public_fields(const http_auth_t *a) { return live(a)->public_fields; }

int http_auth_list_has(const char *list, const char *name, size_t n)
{
    for (const char *p = list, *b, *e, *end; p && *p; p = *end ? end + 1 : end) {
        end = list_field(p, &b, &e);
        if ((size_t)(e - b) == n && memcmp(b, name, n) == 0)
            return 1;
    }
    return 0;
}

size_t http_auth_handler_names(const http_auth_t *a, const char **out, size_t cap)
{
    size_t n = 0;
    const http_auth_live_t *l = a ? live(a) : NULL;
    for (size_t i = 0; l && i < l->nhandlers && n < cap; i++) {
        int h = l->handlers[i];
        out[n++] = h == HTTP_AUTHN_COOKIE  ? "cookie"
                   : h == HTTP_AUTHN_PROXY ? "proxy"
                   : h == HTTP_AUTHN_JWT   ? "jwt"
                                           : "default";
    }
    return n;
}

static http_auth_t *req_auth(http_req_t *r) { return http_server_opts(r->server)->auth; }

static void *pool_alloc(http_req_t *r, size_t n)
{
    return h2o_mem_alloc_pool(&((h2o_req_t *)r->h2o)->pool, n);
}

static char *pool_strndup(http_req_t *r, const char *s, size_t n)
{
    char *p = pool_alloc(r, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- users: server admins and _users documents ----------------------------- */

typedef struct auth_user {
    const char *stored; /* passwd.h form */
    const char *salt;   /* for the cookie secret */
    http_user_ctx_t *ctx;
} auth_user;

/* The salt field of a stored hash ("…-key,salt[,iterations]"). */
static const char *stored_salt(http_req_t *r, const char *stored)
{
    const char *c1 = strchr(stored, ',');
    if (!c1)
        return "";
    const char *c2 = strchr(c1 + 1, ',');
    size_t n = c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
    return pool_strndup(r, c1 + 1, n);
}

static const char *json_pool_str(http_req_t *r, const json_val *v)
{
    size_t n;
    const char *s = v ? json_str(v, &n) : NULL;
    return s ? pool_strndup(r, s, n) : NULL;
}

/* Reads org.couchdb.user:NAME from _users: DV_ERR_NOTFOUND when there is
 * no such live document or it carries no usable password hash. */
static int lookup_users_doc(http_req_t *r, const char *name, size_t n, auth_user *u)
{
    db_t *db = NULL;
    store_snap *snap = NULL;
    store_docinfo di;
    store_docbody body;
    json_doc jd = JSON_DOC_INIT;
    store_docinfo_init(&di);
    store_docbody_init(&body);
    char *id = NULL;
    int rc = db_open(http_dbs(r), HTTP_AUTH_USERS_DB, &db);
    if (rc != DV_OK)
        goto done;
    if ((rc = db_snapshot(db, &snap)) != DV_OK)
        goto done;
    size_t plen = strlen(HTTP_AUTH_USER_PREFIX);
    if (!(id = malloc(plen + n))) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    memcpy(id, HTTP_AUTH_USER_PREFIX, plen);
    memcpy(id + plen, name, n);
    if ((rc = store_snap_get_doc(snap, (const uint8_t *)id, plen + n, &di)) != DV_OK)
        goto done;
    uint32_t win = revtree_winner(&di.tree);
    if (win == REVTREE_NONE || di.tree.nodes[win].deleted || !di.tree.nodes[win].has_body) {
        rc = DV_ERR_NOTFOUND;
        goto done;
    }
    if ((rc = store_snap_read_body(snap, di.tree.nodes[win].body, &body)) != DV_OK)
        goto done;
    if ((rc = json_doc_parse(&jd, body.body.data, body.body.len, JSON_DEPTH_STORED, NULL)) != DV_OK)
        goto done;
    const json_val *root = json_doc_root(&jd);
    const json_val *scheme = json_object_get_cstr(root, "password_scheme");
    const char *salt = json_pool_str(r, json_object_get_cstr(root, "salt"));
    char *stored = NULL;
    rc = DV_ERR_NOTFOUND;
    if (!salt)
        goto done;
    if (scheme && json_str_eq(scheme, "pbkdf2")) {
        const char *key = json_pool_str(r, json_object_get_cstr(root, "derived_key"));
        const json_val *it = json_object_get_cstr(root, "iterations");
        const char *prf = json_pool_str(r, json_object_get_cstr(root, "pbkdf2_prf"));
        int64_t iters;
        if (!key || !it || json_get_i64(it, &iters) != DV_OK || iters < 1)
            goto done;
        size_t cap = strlen(key) + strlen(salt) + 64;
        stored = pool_alloc(r, cap);
        snprintf(stored, cap, "-pbkdf2:%s-%s,%s,%lld", prf ? prf : "sha", key, salt, (long long)iters);
    } else if (!scheme || json_str_eq(scheme, "simple")) {
        const char *sha = json_pool_str(r, json_object_get_cstr(root, "password_sha"));
        if (!sha)
            goto done;
        size_t cap = strlen(sha) + strlen(salt) + 16;
        stored = pool_alloc(r, cap);
        snprintf(stored, cap, "-hashed-%s,%s", sha, salt);
    } else {
        goto done;
    }
    const json_val *roles = json_object_get_cstr(root, "roles");
    size_t nroles = roles && json_is_array(roles) ? json_len(roles) : 0;
    const char **rv = pool_alloc(r, (nroles + 1) * sizeof *rv);
    size_t k = 0;
    for (size_t i = 0; i < nroles; i++) {
        const json_val *x = json_array_get(roles, i);
        if (x && json_is_string(x))
            rv[k++] = json_pool_str(r, x);
    }
    http_user_ctx_t *ctx = pool_alloc(r, sizeof *ctx);
    ctx->name = pool_strndup(r, name, n);
    ctx->roles = rv;
    ctx->nroles = k;
    ctx->handler = NULL;
    u->stored = stored;
    u->salt = salt;
    u->ctx = ctx;
    rc = DV_OK;
done:
    json_doc_free(&jd);
    store_docbody_free(&body);
    store_docinfo_free(&di);
    free(id);
    if (snap)
        store_snap_release(snap);
    if (db)
        db_release(db);
    return rc;
}

static const char *const admin_roles[] = {"_admin"};

/* A server admin named name whose [admins] value is stored (strings that
 * outlive the request); a value that is not a hash logs nobody in. */
static int admin_user(http_req_t *r, const char *name, const char *stored, auth_user *u)
{
    if (!passwd_is_hashed(stored))
        return DV_ERR_NOTFOUND;
    http_user_ctx_t *ctx = pool_alloc(r, sizeof *ctx);
    ctx->name = name;
    ctx->roles = admin_roles;
    ctx->nroles = 1;
    ctx->handler = NULL;
    u->stored = stored;
    u->salt = stored_salt(r, stored);
    u->ctx = ctx;
    return DV_OK;
}

/* A server admin first (config wins, as in CouchDB), then _users. */
static int lookup_user(http_req_t *r, const char *name, size_t n, auth_user *u)
{
    http_auth_t *a = req_auth(r);
    if (!a || n == 0 || memchr(name, 0, n))
        return DV_ERR_NOTFOUND;
    /* The live [admins] (changed through /_node/_local/_config without a
     * restart, as CouchDB): the hash is copied into the request's pool under
     * the read lock, since a change frees the old string.  A server started
     * without a configuration (fuzz_http_server) has the start-up copy. */
    struct config *c = http_server_opts(r->server)->config;
    if (c) {
        char *name0 = pool_strndup(r, name, n), *stored = NULL;
        config_rdlock(c);
        const char *h = config_get(c, "admins", name0);
        if (h)
            stored = pool_strndup(r, h, strlen(h));
        config_unlock(c);
        if (!stored)
            goto users_db;
        return admin_user(r, name0, stored, u);
    }
    for (size_t i = 0; i < a->o.nadmins; i++) {
        if (strlen(a->names[i]) == n && memcmp(a->names[i], name, n) == 0)
            return admin_user(r, a->names[i], a->hashes[i], u);
    }
users_db:;
    int rc = lookup_users_doc(r, name, n, u);
    if (rc != DV_OK && rc != DV_ERR_NOTFOUND)
        log_warn("auth: cannot read the _users document of a user: %s", dv_strerror(rc));
    return rc == DV_OK ? DV_OK : DV_ERR_NOTFOUND;
}

/* ---- the password cache ---------------------------------------------------- */

static int pw_mac(const http_auth_t *a, const char *pw, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    return HMAC(EVP_sha256(), a->cache_key, sizeof a->cache_key, (const unsigned char *)pw, n, out, &len) ? DV_OK
                                                                                                          : DV_ERR_NOMEM;
}

/* 1: verified before, matches; 0: this (name, hash) was verified with
 * another password, so this one is wrong; -1: not cached. */
static int cache_check(http_auth_t *a, const char *name, const char *stored, const unsigned char mac[32])
{
    int res = -1;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        cache_entry *e = &a->cache[i];
        if (e->name && strcmp(e->name, name) == 0 && strcmp(e->stored, stored) == 0) {
            res = CRYPTO_memcmp(e->mac, mac, 32) == 0;
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return res;
}

static void cache_put(http_auth_t *a, const char *name, const char *stored, const unsigned char mac[32])
{
    char *n = strdup(name), *s = strdup(stored);
    if (!n || !s) {
        free(n);
        free(s);
        return; /* the cache is an optimisation: nothing is lost but time */
    }
    pthread_mutex_lock(&a->mu);
    size_t slot = CACHE_SLOTS;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        if (a->cache[i].name && strcmp(a->cache[i].name, name) == 0) {
            slot = i; /* one entry per name: a new hash replaces the old */
            break;
        }
    if (slot == CACHE_SLOTS) {
        slot = a->cache_next;
        a->cache_next = (a->cache_next + 1) % CACHE_SLOTS;
    }
    cache_entry *e = &a->cache[slot];
    free(e->name);
    free(e->stored);
    e->name = n;
    e->stored = s;
    memcpy(e->mac, mac, 32);
    pthread_mutex_unlock(&a->mu);
}

/* ---- failed-login lockout ------------------------------------------------------ */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "peer\0name\0salt" for r's client into buf; 0 when r has no peer. */
static size_t lock_key(http_req_t *r, const char *name, const char *salt, char *buf, size_t cap)
{
    h2o_req_t *req = r->h2o;
    struct sockaddr_storage ss;
    char host[INET6_ADDRSTRLEN] = "";
    if (!req->conn || !req->conn->callbacks->get_peername)
        return 0;
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sl == 0)
        return 0;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    else
        return 0;
    size_t hl = strlen(host), nl = strlen(name), tl = strlen(salt);
    if (hl + nl + tl + 2 > cap)
        return 0;
    memcpy(buf, host, hl + 1);
    memcpy(buf + hl + 1, name, nl + 1);
    memcpy(buf + hl + nl + 2, salt, tl);
    return hl + nl + 2 + tl;
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
    return h;
}

/* The live entry for key (expired ones are dropped on the way); mu held. */
static lock_entry *lock_find(http_auth_t *a, const char *key, size_t len, uint64_t h, long long now)
{
    lock_entry **pp = &a->locks[h % LOCK_BUCKETS];
    while (*pp) {
        lock_entry *e = *pp;
        if (now - e->created_ms >= a->o.lockout_max_lifetime_ms) {
            *pp = e->next;
            free(e);
            a->nlocks--;
            continue;
        }
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
        pp = &e->next;
    }
    return NULL;
}

/* Drops the oldest entry (a full table is rare: max_objects distinct
 * failing pairs within max_lifetime), O(entries); mu held. */
static void lock_evict_oldest(http_auth_t *a)
{
    lock_entry **oldest = NULL;
    for (size_t i = 0; i < LOCK_BUCKETS; i++)
        for (lock_entry **pp = &a->locks[i]; *pp; pp = &(*pp)->next)
            if (!oldest || (*pp)->created_ms < (*oldest)->created_ms)
                oldest = pp;
    if (oldest) {
        lock_entry *e = *oldest;
        *oldest = e->next;
        free(e);
        a->nlocks--;
    }
}

/* Whether r's client is locked out of `name` (mode enforce); warn mode
 * only logs. */
static int lock_check(http_auth_t *a, http_req_t *r, const char *name, const char *salt)
{
    char key[512];
    size_t len;
    const http_auth_live_t *l = live(a); /* one set for the decision */
    if (l->lockout_mode == HTTP_LOCKOUT_OFF || !(len = lock_key(r, name, salt, key, sizeof key)))
        return 0;
    uint64_t h = fnv1a(key, len);
    pthread_mutex_lock(&a->mu);
    lock_entry *e = lock_find(a, key, len, h, now_ms());
    int over = e && e->count >= l->lockout_threshold;
    pthread_mutex_unlock(&a->mu);
    if (over && l->lockout_mode == HTTP_LOCKOUT_WARN) {
        log_warn("auth: authentication failure threshold reached for %s from %s", name, key);
        return 0;
    }
    return over;
}

static void lock_fail(http_auth_t *a, http_req_t *r, const char *name, const char *salt)
{
    char key[512];
    size_t len;
    if (live(a)->lockout_mode == HTTP_LOCKOUT_OFF || !(len = lock_key(r, name, salt, key, sizeof key)))
        return;
    uint64_t h = fnv1a(key, len);
    long long now = now_ms();
    pthread_mutex_lock(&a->mu);
    lock_entry *e = lock_find(a, key, len, h, now);
    if (!e) {
        if (a->nlocks >= a->o.lockout_max_objects)
            lock_evict_oldest(a);
        if ((e = malloc(sizeof *e + len))) {
            e->hash = h;
            e->created_ms = now;
            e->count = 0;
            e->len = len;
            memcpy(e->key, key, len);
            e->next = a->locks[h % LOCK_BUCKETS];
            a->locks[h % LOCK_BUCKETS] = e;
            a->nlocks++;
        }
    }
    if (e)
        e->count++;
    pthread_mutex_unlock(&a->mu);
}

void http_auth_send_locked(http_req_t *r)
{
    http_send_error(r, 403, "forbidden", "Account is temporarily locked due to multiple authentication failures");
}

/* ---- password checks (login) ----------------------------------------------- */

typedef struct login_job {
    http_auth_t *a;
    http_async_t *async;
    auth_user u;        /* in the request pool: read on the loop only */
    char *name, *stored; /* malloc'd copies for the worker */
    char *pw;           /* malloc'd, cleansed after the check */
    size_t pw_len;
    unsigned char mac[32];
    int ok;
    http_auth_login_fn fn;
    void *arg;
} login_job;

static void login_job_free(login_job *j)
{
    if (j->pw) {
        OPENSSL_cleanse(j->pw, j->pw_len);
        free(j->pw);
    }
    free(j->name);
    free(j->stored);
    free(j);
}

static void login_work(void *arg)
{
    login_job *j = arg;
    j->ok = passwd_verify(j->stored, j->pw) == DV_OK;
    if (j->ok)
        cache_put(j->a, j->name, j->stored, j->mac);
    OPENSSL_cleanse(j->pw, j->pw_len);
    http_async_post(j->async);
}

static void login_resume(http_req_t *r, void *arg)
{
    login_job *j = arg;
    http_auth_login_fn fn = j->fn;
    void *farg = j->arg;
    const http_user_ctx_t *user = j->ok ? j->u.ctx : NULL;
    if (r && !j->ok)
        lock_fail(j->a, r, j->u.ctx->name, j->u.salt);
    login_job_free(j);
    fn(r, user, 0, farg);
}

void http_auth_login(http_req_t *r, const char *name, size_t name_len, const char *password, size_t pw_len,
                     http_auth_login_fn fn, void *arg)
{
    http_auth_t *a = req_auth(r);
    auth_user u;
    unsigned char mac[32];
    if (!a || lookup_user(r, name, name_len, &u) != DV_OK) {
        fn(r, NULL, 0, arg);
        return;
    }
    if (lock_check(a, r, u.ctx->name, u.salt)) {
        fn(r, NULL, 1, arg);
        return;
    }
    if (pw_mac(a, password, pw_len, mac) != DV_OK) {
        fn(r, NULL, 0, arg);
        return;
    }
    int c = cache_check(a, u.ctx->name, u.stored, mac);
    if (c >= 0) {
        if (!c)
            lock_fail(a, r, u.ctx->name, u.salt);
        fn(r, c ? u.ctx : NULL, 0, arg);
        return;
    }
    login_job *j = calloc(1, sizeof *j);
    if (!j || !(j->name = strdup(u.ctx->name)) || !(j->stored = strdup(u.stored)) ||
        !(j->pw = malloc(pw_len + 1)))
        goto nomem;
    memcpy(j->pw, password, pw_len);
    j->pw[pw_len] = 0;
    j->pw_len = pw_len;
    j->a = a;
    j->u = u;
    memcpy(j->mac, mac, 32);
    j->fn = fn;
    j->arg = arg;
    if (!(j->async = http_async_new(r, login_resume, j)))
        goto nomem;
    if (workers_submit(http_server_workers(r->server), login_work, j) != DV_OK) {
        /* No pool (stopping): the request still gets an answer. */
        login_work(j);
    }
    return;
nomem:
    if (j)
        login_job_free(j);
    fn(r, NULL, 0, arg); /* refused: a login never succeeds by failing to check */
}

/* ---- parsing ----------------------------------------------------------------- */

int http_auth_basic_parse(const char *header, char **buf, size_t *name_len, const char **pw, size_t *pw_len)
{
    *buf = NULL;
    if (strncasecmp(header, "Basic ", 6) != 0)
        return DV_ERR_INVALID;
    const char *s = header + 6;
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        n--;
    buf_t b = BUF_INIT;
    if (base64_decode(s, n, &b) != DV_OK || buf_append_byte(&b, 0) != DV_OK) {
        buf_free(&b);
        return DV_ERR_INVALID;
    }
    char *d = (char *)b.data;
    size_t len = b.len - 1;
    char *colon = memchr(d, ':', len);
    if (!colon) {
        OPENSSL_cleanse(d, len);
        buf_free(&b);
        return DV_ERR_INVALID;
    }
    *colon = 0;
    *name_len = (size_t)(colon - d);
    *pw = colon + 1;
    *pw_len = len - *name_len - 1;
    *buf = d;
    return DV_OK;
}

const char *http_auth_cookie_find(const char *h, size_t *len)
{
    const char *p = h;
    while (p && *p) {
        while (*p == ' ' || *p == ';' || *p == ',')
            p++;
        const char *end = p + strcspn(p, ";,");
        if (strncmp(p, "AuthSession=", 12) == 0) {
            const char *v = p + 12;
            size_t n = (size_t)(end - v);
            while (n && v[n - 1] == ' ')
                n--;
            if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                v++;
                n -= 2;
            }
            *len = n;
            return v;
        }
        p = end;
    }
    return NULL;
}

int http_auth_cookie_parse(const char *s, size_t n, size_t *name_len, uint64_t *t, const char **mac, size_t *mac_len)
{
    if (n == 0) /* s may be NULL then (an empty decoded buffer) */
        return DV_ERR_INVALID;
    const char *c1 = memchr(s, ':', n);
    if (!c1)
        return DV_ERR_INVALID;
    const char *ts = c1 + 1;
    const char *c2 = memchr(ts, ':', n - (size_t)(ts - s));
    if (!c2 || c2 == ts || c2 - ts > 16)
        return DV_ERR_INVALID;
    uint64_t v = 0;
    for (const char *p = ts; p < c2; p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
                                                 : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0)
            return DV_ERR_INVALID;
        v = v << 4 | (uint64_t)d;
    }
    *name_len = (size_t)(c1 - s);
    *t = v;
    *mac = c2 + 1;
    *mac_len = n - (size_t)(c2 + 1 - s);
    return DV_OK;
}

int http_auth_cookie_decode(const char *s, size_t n, buf_t *out) { return base64url_decode(s, n, out); }

static int cookie_mac(const char *secret, const char *salt, const char *data, size_t n, unsigned char out[20])
{
    size_t sl = strlen(secret), tl = strlen(salt);
    char *key = malloc(sl + tl + 1);
    if (!key)
        return DV_ERR_NOMEM;
    memcpy(key, secret, sl);
    memcpy(key + sl, salt, tl);
    unsigned int len = 20;
    int ok = HMAC(EVP_sha1(), key, (int)(sl + tl), (const unsigned char *)data, n, out, &len) != NULL;
    OPENSSL_cleanse(key, sl + tl);
    free(key);
    return ok ? DV_OK : DV_ERR_NOMEM;
}

char *http_auth_cookie_value(const char *secret, const char *name, const char *salt, uint64_t t)
{
    buf_t data = BUF_INIT, out = BUF_INIT;
    unsigned char mac[20];
    char *res = NULL;
    if (buf_printf(&data, "%s:%llX", name, (unsigned long long)t) != DV_OK ||
        cookie_mac(secret, salt, (const char *)data.data, data.len, mac) != DV_OK ||
        buf_append_byte(&data, ':') != DV_OK || buf_append(&data, mac, sizeof mac) != DV_OK ||
        base64url_encode(data.data, data.len, &out) != DV_OK || buf_append_byte(&out, 0) != DV_OK)
        goto done;
    res = (char *)buf_steal(&out, NULL);
done:
    buf_free(&data);
    buf_free(&out);
    return res;
}

/* ---- cookies in responses ---------------------------------------------------- */

static const char *cookie_attrs(http_req_t *r, const char *value, long long max_age)
{
    http_auth_t *a = req_auth(r);
    const http_auth_live_t *l = a ? live(a) : NULL; /* one set for the whole cookie */
    char extra[160] = "";
    size_t k = 0;
    if (max_age >= 0) {
        time_t exp = time(NULL) + max_age;
        struct tm tm;
        gmtime_r(&exp, &tm);
        char date[64];
        strftime(date, sizeof date, "%a, %d-%b-%Y %H:%M:%S GMT", &tm);
        k += (size_t)snprintf(extra + k, sizeof extra - k, "; Expires=%s; Max-Age=%lld", date, max_age);
    }
    if (l && l->cookie_secure && k < sizeof extra)
        k += (size_t)snprintf(extra + k, sizeof extra - k, "; Secure");
    if (l && *l->same_site && k < sizeof extra) {
        const char *ss = l->same_site;
        snprintf(extra + k, sizeof extra - k, "; SameSite=%s",
                 !strcasecmp(ss, "strict") ? "Strict" : !strcasecmp(ss, "lax") ? "Lax" : "None");
    }
    size_t cap = strlen(value) + strlen(extra) + 64;
    char *s = pool_alloc(r, cap);
    snprintf(s, cap, "AuthSession=%s; Version=1; Path=/%s; HttpOnly", value, extra);
    return s;
}

const char *http_auth_session_cookie(http_req_t *r, const char *name)
{
    http_auth_t *a = req_auth(r);
    auth_user u;
    if (!a || lookup_user(r, name, strlen(name), &u) != DV_OK)
        return NULL;
    const http_auth_live_t *l = live(a);
    char *v = http_auth_cookie_value(l->secret, name, u.salt, (uint64_t)time(NULL));
    if (!v)
        return NULL;
    const char *s = cookie_attrs(r, v, l->allow_persistent_cookies ? l->timeout : -1);
    free(v);
    return s;
}

const char *http_auth_clear_cookie(http_req_t *r)
{
    char *s = pool_alloc(r, 64);
    snprintf(s, 64, "AuthSession=; Version=1; Path=/; HttpOnly");
    return s;
}

/* ---- the request path -------------------------------------------------------- */

typedef struct basic_ctx {
    http_auth_next_fn next;
} basic_ctx;

static int is_up(http_req_t *r)
{
    return r->target.nseg >= 1 && strcmp(r->target.seg[0].p, "_up") == 0;
}

static void finish(http_req_t *r, http_auth_next_fn next)
{
    http_auth_t *a = req_auth(r);
    const http_auth_live_t *l = a ? live(a) : NULL;
    if (l && !r->user && (l->require_valid_user || (l->require_valid_user_except_for_up && !is_up(r)))) {
        http_send_error(r, 401, "unauthorized", "Authentication required.");
        return;
    }
    next(r);
}

static void basic_done(http_req_t *r, const http_user_ctx_t *user, int locked, void *arg)
{
    http_auth_next_fn next = (http_auth_next_fn)(uintptr_t)arg;
    if (!r)
        return;
    if (locked) {
        http_auth_send_locked(r);
        return;
    }
    if (!user) {
        http_send_error(r, 401, "unauthorized", "Name or password is incorrect.");
        return;
    }
    ((http_user_ctx_t *)user)->handler = "default";
    r->user = user;
    finish(r, next);
}

/* DV_OK with r->user set or left anonymous; DV_ERR_INVALID after 400. */
static int cookie_auth(http_req_t *r, http_auth_t *a)
{
    const char *h = http_req_header(r, "cookie");
    size_t vlen;
    const char *v = h ? http_auth_cookie_find(h, &vlen) : NULL;
    if (!v || vlen == 0)
        return DV_OK;
    buf_t d = BUF_INIT;
    size_t name_len, mac_len;
    uint64_t t;
    const char *mac;
    if (http_auth_cookie_decode(v, vlen, &d) != DV_OK ||
        http_auth_cookie_parse((const char *)d.data, d.len, &name_len, &t, &mac, &mac_len) != DV_OK) {
        buf_free(&d);
        http_send_error(r, 400, "bad_request", "Malformed AuthSession cookie. Please clear your cookies.");
        return DV_ERR_INVALID;
    }
    auth_user u;
    unsigned char want[20];
    const char *data = (const char *)d.data;
    size_t data_len = (size_t)(mac - 1 - data);
    uint64_t now = (uint64_t)time(NULL);
    const http_auth_live_t *l = live(a);
    if (lookup_user(r, data, name_len, &u) == DV_OK &&
        cookie_mac(l->secret, u.salt, data, data_len, want) == DV_OK && mac_len == sizeof want &&
        CRYPTO_memcmp(want, mac, sizeof want) == 0 && t + (uint64_t)l->timeout > now) {
        u.ctx->handler = "cookie";
        r->user = u.ctx;
        /* CouchDB re-issues the cookie once 10% of its life is gone. */
        long long left = (long long)(t + (uint64_t)l->timeout - now);
        if (left * 10 < l->timeout * 9 && !(r->target.nseg >= 1 && !strcmp(r->target.seg[0].p, "_session"))) {
            const char *c = http_auth_session_cookie(r, u.ctx->name);
            if (c)
                http_add_header(r, "Set-Cookie", c);
        }
    }
    buf_free(&d);
    return DV_OK;
}

/* The proxy handler: DV_OK with r->user set, or left anonymous when the
 * name header is absent or the token does not match. */
static int proxy_auth(http_req_t *r, http_auth_t *a)
{
    const http_auth_live_t *l = live(a);
    const char *name = http_req_header(r, l->x_auth_username);
    if (!name || !*name)
        return DV_OK;
    if (l->proxy_use_secret) {
        const char *token = http_req_header(r, l->x_auth_token);
        unsigned char mac[20];
        unsigned int len = sizeof mac;
        char hex[41];
        if (!token || !HMAC(EVP_sha1(), l->secret, (int)strlen(l->secret), (const unsigned char *)name,
                            strlen(name), mac, &len))
            return DV_OK;
        for (size_t i = 0; i < sizeof mac; i++)
            snprintf(hex + 2 * i, 3, "%02x", mac[i]);
        if (strlen(token) != 40 || CRYPTO_memcmp(token, hex, 40) != 0)
            return DV_OK;
    }
    /* Roles: comma-separated, spaces around commas dropped, as CouchDB's
     * re:split(Roles, "\\s*,\\s*", [trim]). */
    const char *rh = http_req_header(r, l->x_auth_roles);
    size_t cap = 1;
    for (const char *p = rh; p && *p; p++)
        cap += *p == ',';
    const char **roles = pool_alloc(r, cap * sizeof *roles);
    size_t n = 0;
    for (const char *p = rh, *b, *e, *end; p && *p; p = *end ? end + 1 : end) {
        end = list_field(p, &b, &e);
        if (e > b || *end == ',')
            roles[n++] = pool_strndup(r, b, (size_t)(e - b));
    }
    while (n > 0 && !*roles[n - 1])
        n--; /* trim: trailing empty fields */
    http_user_ctx_t *ctx = pool_alloc(r, sizeof *ctx);
    ctx->name = name;
    ctx->roles = roles;
    ctx->nroles = n;
    ctx->handler = "proxy";
    r->user = ctx;
    return DV_OK;
}

void http_auth_request(http_req_t *r, http_auth_next_fn next)
{
    http_auth_t *a = req_auth(r);
    if (!a) {
        next(r);
        return;
    }
    const http_auth_live_t *l = live(a); /* one set for the whole search */
    for (size_t i = 0; i < l->nhandlers && !r->user; i++) {
        switch (l->handlers[i]) {
        case HTTP_AUTHN_COOKIE:
            if (cookie_auth(r, a) != DV_OK)
                return;
            break;
        case HTTP_AUTHN_PROXY:
            proxy_auth(r, a);
            break;
        case HTTP_AUTHN_JWT: /* a Bearer token (auth_jwt.h): an invalid one has been answered */
            if (!http_auth_jwt(r, http_req_header(r, "authorization")))
                return;
            break;
        default: {
            const char *h = http_req_header(r, "authorization");
            char *buf;
            size_t name_len, pw_len;
            const char *pw;
            if (h && http_auth_basic_parse(h, &buf, &name_len, &pw, &pw_len) == DV_OK) {
                /* Right or wrong, Basic credentials end the search. */
                http_auth_login(r, buf, name_len, pw, pw_len, basic_done, (void *)(uintptr_t)next);
                OPENSSL_cleanse(buf, name_len + 1 + pw_len);
                free(buf);
                return;
            }
            break;
        }
        }
    }
    finish(r, next);
}
