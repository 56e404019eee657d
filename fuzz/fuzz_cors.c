/*
 * fuzz_cors.c — libFuzzer target for the CORS decisions (http/cors.c) on
 * the untrusted header values a preflight carries: Origin,
 * Access-Control-Request-Method and Access-Control-Request-Headers.
 *
 * Input: byte 0 picks one of three configs (a listed origin with the
 * default lists, `*` with short custom lists, credentials on and off);
 * bytes 1 and 2 are the lengths of the Origin and method values (0xFF:
 * header absent); then the Origin bytes, the method bytes, and the rest is
 * the Access-Control-Request-Headers value (absent when input runs out).
 * Values are passed unterminated, in their own heap copies, so ASan sees
 * any read past their ends.
 *
 * Checked on every input: a preflight accepted implies the origin is
 * accepted for simple requests; the answer echoes the origin and the
 * requested headers exactly (pointer and length); the header list decision
 * agrees with a second, naive implementation here (copy, split on ',',
 * skip spaces after each comma, drop trailing empty items, compare without
 * case against the config's list); credentials are never granted to the
 * literal origin "*".
 */
#include "base/status.h"
#include "config.h"
#include "http/cors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static http_cors_t *cfgs[3];
static const char *const headers_of[3] = {
    "accept, accept-language, authorization, content-length, content-range, content-type, destination, expires, "
    "if-match, last-modified, origin, pragma, x-couch-full-commit, x-couch-id, x-couch-persist, "
    "x-couchdb-www-authenticate, x-http-method-override, x-requested-with, x-couchdb-vhost-path",
    "accept,content-type",
    "x-a, X-B",
};

static http_cors_t *make(const char *origins, const char *cred, const char *methods, const char *headers)
{
    config_t *c = NULL;
    http_cors_t *h = NULL;
    if (config_new(&c) != DV_OK || config_set(c, "chttpd", "enable_cors", "true", NULL) != DV_OK ||
        config_set(c, "cors", "origins", origins, NULL) != DV_OK || config_set(c, "cors", "credentials", cred, NULL) ||
        (methods && config_set(c, "cors", "methods", methods, NULL) != DV_OK) ||
        (headers && config_set(c, "cors", "headers", headers, NULL) != DV_OK) || http_cors_new(c, &h) != DV_OK ||
        !h)
        abort();
    config_free(c);
    return h;
}

static void setup(void)
{
    if (cfgs[0])
        return;
    cfgs[0] = make("http://a.example, https://b.example:8443", "true", NULL, NULL);
    cfgs[1] = make("*", "true", "GET, POST", headers_of[1]);
    cfgs[2] = make("http://a.example", "false", "PUT", headers_of[2]);
}

/* The naive reference: 1 when every item of h is in the (lower-case,
 * comma-separated) list. */
static int ref_in_list(const char *list, const char *item, size_t n)
{
    const char *p = list;
    for (;;) {
        while (*p == ' ')
            p++;
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && p[len - 1] == ' ')
            len--;
        if (len == n && !strncasecmp(p, item, n))
            return 1;
        if (!e)
            return 0;
        p = e + 1;
    }
}

static int ref_headers_ok(const char *list, const uint8_t *h, size_t len)
{
    /* items: [start, end) pairs */
    size_t *st = malloc((len + 1) * 2 * sizeof *st), n = 0, i = 0;
    if (!st)
        abort();
    for (;;) {
        size_t j = i;
        while (j < len && h[j] != ',')
            j++;
        st[2 * n] = i;
        st[2 * n + 1] = j;
        n++;
        if (j >= len)
            break;
        i = j + 1;
        while (i < len && (h[i] == ' ' || h[i] == '\t' || h[i] == '\r' || h[i] == '\n' || h[i] == '\f' || h[i] == '\v'))
            i++;
    }
    while (n > 0 && st[2 * (n - 1)] == st[2 * (n - 1) + 1])
        n--;
    int ok = 1;
    for (size_t k = 0; k < n && ok; k++)
        ok = ref_in_list(list, (const char *)h + st[2 * k], st[2 * k + 1] - st[2 * k]);
    free(st);
    return ok;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (!c)
        abort();
    if (n)
        memcpy(c, p, n);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 3)
        return 0;
    int which = data[0] % 3;
    const http_cors_t *c = cfgs[which];
    size_t olen = data[1], mlen = data[2], off = 3;
    int has_origin = olen != 0xFF, has_method = mlen != 0xFF;
    if (!has_origin)
        olen = 0;
    if (!has_method)
        mlen = 0;
    if (off + olen + mlen > size)
        return 0;
    char *origin = has_origin ? dup_bytes(data + off, olen) : NULL;
    off += olen;
    char *method = has_method ? dup_bytes(data + off, mlen) : NULL;
    off += mlen;
    size_t hlen = size - off;
    char *hdrs = hlen ? dup_bytes(data + off, hlen) : NULL;

    http_cors_preflight_t p;
    int pre = http_cors_preflight(c, origin, olen, method, mlen, hdrs, hlen, &p);
    int cred = 0;
    int simple = http_cors_origin_allowed(c, origin, olen, &cred);
    if (pre) {
        if (!simple || p.allow_origin != origin || p.allow_origin_len != olen || p.allow_credentials != cred)
            abort();
        if (hdrs ? (p.allow_headers != hdrs || p.allow_headers_len != hlen) : p.allow_headers_len != 0)
            abort();
        if (hdrs && !ref_headers_ok(headers_of[which], data + off, hlen))
            abort();
    } else if (simple && has_method && hdrs) {
        /* refused although origin accepted: method or headers at fault */
        http_cors_preflight_t q;
        int bare = http_cors_preflight(c, origin, olen, method, mlen, NULL, 0, &q);
        if (bare && ref_headers_ok(headers_of[which], data + off, hlen))
            abort();
    }
    if (cred && olen == 1 && origin[0] == '*')
        abort();
    free(origin);
    free(method);
    free(hdrs);
    return 0;
}
