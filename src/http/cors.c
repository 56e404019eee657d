/*
 * cors.c — CORS decisions as CouchDB 3's chttpd_cors (see cors.h).
 *
 * Lists from the config are split once at start-up on commas with the
 * spaces around them (CouchDB's "\s*,\s*", trailing empty items dropped);
 * methods compare case-sensitively, header names case-insensitively (the
 * configured ones are lower-cased here, the requested ones compared with
 * strncasecmp).  Per request the work is a few linear scans of short
 * lists; nothing is allocated, so a hostile header costs at most its own
 * length in comparisons per configured entry.
 */
#include "http/cors.h"
#include "base/log.h"
#include "base/status.h"
#include "config.h"
#include "http/server.h"

#include <h2o.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct str_list {
    char **v;
    size_t n;
} str_list;

struct http_cors {
    str_list origins;
    int accept_all; /* "*" is one of the origins */
    int credentials;
    str_list methods;
    str_list headers; /* lower case */
    char *methods_joined;
    char *exposed_joined;
    char *max_age;
};

/* chttpd_cors.hrl: the defaults when [cors] methods / headers /
 * exposed_headers are not set. */
static const char *const default_methods = "CONNECT, COPY, DELETE, GET, HEAD, OPTIONS, POST, PUT, TRACE";
static const char *const default_headers =
    "accept, accept-language, authorization, content-length, content-range, content-type, destination, expires, "
    "if-match, last-modified, origin, pragma, x-couch-full-commit, x-couch-id, x-couch-persist, "
    "x-couchdb-www-authenticate, x-http-method-override, x-requested-with, x-couchdb-vhost-path";
static const char *const default_exposed =
    "accept-ranges, etag, server, x-couch-request-id, x-couch-update-newrev, x-couchdb-body-time";

static void list_free(str_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Splits s on "\s*,\s*" (outer spaces trimmed, trailing empty items
 * dropped), lower-casing items when lower is set. */
static int list_split(const char *s, int lower, str_list *out)
{
    out->v = NULL;
    out->n = 0;
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    if (!(out->v = calloc(cap, sizeof *out->v)))
        return DV_ERR_NOMEM;
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    while (*p) {
        const char *e = strchr(p, ',');
        const char *end = e ? e : p + strlen(p);
        const char *t = end;
        while (t > p && isspace((unsigned char)t[-1]))
            t--;
        char *item = strndup(p, (size_t)(t - p));
        if (!item) {
            list_free(out);
            return DV_ERR_NOMEM;
        }
        if (lower)
            for (char *q = item; *q; q++)
                *q = (char)tolower((unsigned char)*q);
        out->v[out->n++] = item;
        if (!e)
            break;
        p = e + 1;
        while (isspace((unsigned char)*p))
            p++;
    }
    while (out->n > 0 && out->v[out->n - 1][0] == '\0') /* re:split's trim */
        free(out->v[--out->n]);
    return DV_OK;
}

static char *list_join(const str_list *l)
{
    size_t len = 1;
    for (size_t i = 0; i < l->n; i++)
        len += strlen(l->v[i]) + 2;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < l->n; i++) {
        size_t n = strlen(l->v[i]);
        if (i) {
            memcpy(p, ", ", 2);
            p += 2;
        }
        memcpy(p, l->v[i], n);
        p += n;
    }
    *p = '\0';
    return s;
}

void http_cors_free(http_cors_t *c)
{
    if (!c)
        return;
    list_free(&c->origins);
    list_free(&c->methods);
    list_free(&c->headers);
    free(c->methods_joined);
    free(c->exposed_joined);
    free(c->max_age);
    free(c);
}

int http_cors_new(const struct config *cfg, http_cors_t **out)
{
    *out = NULL;
    int enabled = 0, rc;
    /* CouchDB 3 reads [chttpd] enable_cors, falling back to [httpd]. */
    const char *sect = config_get(cfg, "chttpd", "enable_cors") ? "chttpd" : "httpd";
    if ((rc = config_get_bool(cfg, sect, "enable_cors", 0, &enabled)) != DV_OK)
        return rc;
    if (!enabled)
        return DV_OK;
    http_cors_t *c = calloc(1, sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    const char *cred = config_get_str(cfg, "cors", "credentials", "false");
    c->credentials = !strcmp(cred, "true"); /* CouchDB: anything else is false */
    const char *age = config_get_str(cfg, "cors", "max_age", "600");
    str_list exposed = {NULL, 0};
    rc = DV_ERR_NOMEM;
    if (list_split(config_get_str(cfg, "cors", "origins", ""), 0, &c->origins) != DV_OK ||
        list_split(config_get_str(cfg, "cors", "methods", default_methods), 0, &c->methods) != DV_OK ||
        list_split(config_get_str(cfg, "cors", "headers", default_headers), 1, &c->headers) != DV_OK ||
        list_split(config_get_str(cfg, "cors", "exposed_headers", default_exposed), 1, &exposed) != DV_OK)
        goto fail;
    c->exposed_joined = list_join(&exposed);
    list_free(&exposed);
    if (!c->exposed_joined || !(c->methods_joined = list_join(&c->methods)) || !(c->max_age = strdup(age)))
        goto fail;
    for (size_t i = 0; i < c->origins.n; i++)
        c->accept_all |= !strcmp(c->origins.v[i], "*");
    for (const char *p = c->max_age; *p; p++)
        if (!isdigit((unsigned char)*p)) {
            log_error("config: [cors] max_age must be a number of seconds, not %s", c->max_age);
            rc = DV_ERR_INVALID;
            goto fail;
        }
    if (c->origins.n == 0)
        log_warn("config: CORS is enabled but [cors] origins is empty: no origin is accepted");
    *out = c;
    return DV_OK;
fail:
    list_free(&exposed);
    http_cors_free(c);
    return rc;
}

static int origin_accepted(const http_cors_t *c, const char *origin, size_t len)
{
    if (c->accept_all)
        return 1;
    for (size_t i = 0; i < c->origins.n; i++)
        if (strlen(c->origins.v[i]) == len && !memcmp(c->origins.v[i], origin, len))
            return 1;
    return 0;
}

/* allow_credentials(_Config, <<"*">>) -> false: never for the literal
 * origin "*". */
static int credentials_for(const http_cors_t *c, const char *origin, size_t len)
{
    return c->credentials && !(len == 1 && origin[0] == '*');
}

static int list_has(const str_list *l, const char *s, size_t len, int nocase)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strlen(l->v[i]) != len)
            continue;
        if (nocase ? !strncasecmp(l->v[i], s, len) : !memcmp(l->v[i], s, len))
            return 1;
    }
    return 0;
}

/* Every item of the Access-Control-Request-Headers value, split as
 * CouchDB does (",\s*", trailing empty items dropped), is allowed.  An
 * empty item followed by a non-empty one is kept, and then must itself be
 * allowed (it never is unless the config lists an empty name). */
static int headers_allowed(const http_cors_t *c, const char *h, size_t len)
{
    size_t i = 0, empties = 0;
    for (;;) {
        size_t j = i;
        while (j < len && h[j] != ',')
            j++;
        if (j == i) {
            empties++;
        } else {
            if (empties && !list_has(&c->headers, "", 0, 1))
                return 0;
            empties = 0;
            if (!list_has(&c->headers, h + i, j - i, 1))
                return 0;
        }
        if (j >= len)
            return 1;
        i = j + 1;
        while (i < len && (h[i] == ' ' || h[i] == '\t' || h[i] == '\r' || h[i] == '\n' || h[i] == '\f' ||
                           h[i] == '\v'))
            i++;
    }
}

int http_cors_preflight(const http_cors_t *c, const char *origin, size_t origin_len, const char *req_method,
                        size_t req_method_len, const char *req_headers, size_t req_headers_len,
                        http_cors_preflight_t *out)
{
    if (!c || !origin || !req_method || !origin_accepted(c, origin, origin_len))
        return 0;
    if (!list_has(&c->methods, req_method, req_method_len, 0))
        return 0;
    if (req_headers && req_headers_len > 0 && !headers_allowed(c, req_headers, req_headers_len))
        return 0;
    out->allow_origin = origin;
    out->allow_origin_len = origin_len;
    out->max_age = c->max_age;
    out->allow_methods = c->methods_joined;
    out->allow_credentials = credentials_for(c, origin, origin_len);
    out->allow_headers = req_headers ? req_headers : "";
    out->allow_headers_len = req_headers ? req_headers_len : 0;
    return 1;
}

int http_cors_origin_allowed(const http_cors_t *c, const char *origin, size_t origin_len, int *credentials)
{
    *credentials = 0;
    if (!c || !origin || !origin_accepted(c, origin, origin_len))
        return 0;
    *credentials = credentials_for(c, origin, origin_len);
    return 1;
}

const char *http_cors_exposed(const http_cors_t *c) { return c->exposed_joined; }

/* ---- on a live request ---------------------------------------------------- */

/* The raw value of a request header (not NUL-terminated), or NULL. */
static const char *req_header(h2o_req_t *req, const char *name, size_t name_len, size_t *len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, name_len, -1);
    if (i < 0)
        return NULL;
    *len = req->headers.entries[i].value.len;
    return req->headers.entries[i].value.base;
}

/* Adds a response header whose value may come from the client's bytes:
 * copied into the request's pool with CR and LF flattened to spaces (as
 * http_add_header does), so no value can end its line. */
static void add_hdr(h2o_req_t *req, const char *name, const char *v, size_t len)
{
    size_t nl = strlen(name);
    char *orig = h2o_mem_alloc_pool(&req->pool, nl + 1), *lower = h2o_mem_alloc_pool(&req->pool, nl + 1);
    char *val = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(orig, name, nl + 1);
    for (size_t i = 0; i <= nl; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < len; i++)
        val[i] = v[i] == '\r' || v[i] == '\n' ? ' ' : v[i];
    val[len] = '\0';
    h2o_add_header_by_str(&req->pool, &req->res.headers, lower, nl, 1, orig, val, len);
}

static void add_hdr_str(h2o_req_t *req, const char *name, const char *v) { add_hdr(req, name, v, strlen(v)); }

int http_cors_answer_preflight(http_req_t *r)
{
    const http_cors_t *c = http_server_cors(r->server);
    h2o_req_t *req = r->h2o;
    if (!c || r->method != HTTP_OPTIONS)
        return 0;
    size_t olen = 0, mlen = 0, hlen = 0;
    const char *origin = req_header(req, H2O_STRLIT("origin"), &olen);
    const char *method = req_header(req, H2O_STRLIT("access-control-request-method"), &mlen);
    const char *hdrs = req_header(req, H2O_STRLIT("access-control-request-headers"), &hlen);
    http_cors_preflight_t p;
    if (!http_cors_preflight(c, origin, olen, method, mlen, hdrs, hlen, &p))
        return 0;
    add_hdr(req, "Access-Control-Allow-Origin", p.allow_origin, p.allow_origin_len);
    add_hdr_str(req, "Access-Control-Max-Age", p.max_age);
    add_hdr_str(req, "Access-Control-Allow-Methods", p.allow_methods);
    if (p.allow_credentials)
        add_hdr_str(req, "Access-Control-Allow-Credentials", "true");
    add_hdr(req, "Access-Control-Allow-Headers", p.allow_headers, p.allow_headers_len);
    http_send_empty(r, 204);
    return 1;
}

/* W3C CORS "simple response headers" (chttpd_cors.hrl SIMPLE_HEADERS). */
static int simple_response_header(const h2o_iovec_t *name)
{
    static const char *const simple[] = {"cache-control", "content-language", "content-type",
                                         "expires",       "last-modified",    "pragma"};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (h2o_lcstris(name->base, name->len, simple[i], strlen(simple[i])))
            return 1;
    return 0;
}

void http_cors_add_response_headers(http_req_t *r)
{
    http_cors_add_h2o_response_headers(http_server_cors(r->server), r->h2o);
}

void http_cors_add_h2o_response_headers(const http_cors_t *c, void *h2o_req)
{
    h2o_req_t *req = h2o_req;
    size_t olen = 0;
    const char *origin = c ? req_header(req, H2O_STRLIT("origin"), &olen) : NULL;
    int cred = 0;
    if (!origin || !http_cors_origin_allowed(c, origin, olen, &cred))
        return;
    /* Access-Control-Expose-Headers as chttpd_cors:maybe_apply_headers:
     * "content-type", then the other simple headers of this response in
     * order (lower case), then [cors] exposed_headers. */
    size_t cap = strlen("content-type") + strlen(c->exposed_joined) + 3;
    for (size_t i = 0; i < req->res.headers.size; i++)
        cap += req->res.headers.entries[i].name->len + 2;
    char *aceh = h2o_mem_alloc_pool(&req->pool, cap), *p = aceh;
    p += sprintf(p, "content-type");
    for (size_t i = 0; i < req->res.headers.size; i++) {
        const h2o_iovec_t *n = req->res.headers.entries[i].name;
        if (!simple_response_header(n) || h2o_lcstris(n->base, n->len, H2O_STRLIT("content-type")))
            continue;
        *p++ = ',';
        *p++ = ' ';
        for (size_t k = 0; k < n->len; k++)
            *p++ = (char)tolower((unsigned char)n->base[k]);
    }
    if (c->exposed_joined[0])
        p += sprintf(p, ", %s", c->exposed_joined);
    *p = '\0';
    add_hdr(req, "Access-Control-Allow-Origin", origin, olen);
    if (cred)
        add_hdr_str(req, "Access-Control-Allow-Credentials", "true");
    add_hdr(req, "Access-Control-Expose-Headers", aceh, (size_t)(p - aceh));
}
