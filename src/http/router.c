/*
 * router.c — request-target parsing and route matching (see router.h).
 *
 * Parsing makes two passes over the target: one to count segments and
 * parameters, one to decode into a single allocation sized from the raw
 * length (decoding never grows a string).  Matching allocates nothing; it
 * walks each pattern token by token, so its cost is O(routes × segments).
 */
#include "http/router.h"
#include "base/status.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t http_unquote(const char *src, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '+') {
            dst[o++] = ' ';
        } else if (c == '%' && i + 2 < n && hexval(src[i + 1]) >= 0 && hexval(src[i + 2]) >= 0) {
            dst[o++] = (char)(hexval(src[i + 1]) << 4 | hexval(src[i + 2]));
            i += 2;
        } else {
            dst[o++] = c;
        }
    }
    dst[o] = '\0';
    return o;
}

/* Decodes src[0..n) at *cursor, advancing it past the NUL. */
static http_str_t decode_into(const char *src, size_t n, char **cursor)
{
    http_str_t s = {*cursor, http_unquote(src, n, *cursor)};
    *cursor += s.n + 1;
    return s;
}

int http_target_parse(const char *target, size_t len, http_target_t *out)
{
    memset(out, 0, sizeof *out);
    if (len == 0 || target[0] != '/')
        return DV_ERR_INVALID;
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len;
    const char *qs = q ? q + 1 : NULL;
    size_t qlen = q ? len - plen - 1 : 0;

    size_t nseg = 0, nparam = 0;
    for (size_t i = 0; i < plen; i++)
        if (target[i] != '/' && (i == 0 || target[i - 1] == '/'))
            nseg++;
    for (size_t i = 0; i < qlen; i++)
        if (qs[i] != '&' && qs[i] != ';' && (i == 0 || qs[i - 1] == '&' || qs[i - 1] == ';'))
            nparam++;

    /* Decoded text never exceeds the raw text; +1 NUL per string. */
    size_t bytes = nseg * sizeof(http_str_t) + nparam * sizeof(http_param_t) + len + nseg + 2 * nparam + 1;
    char *mem = malloc(bytes);
    if (!mem)
        return DV_ERR_NOMEM;
    out->mem = mem;
    out->seg = (http_str_t *)(void *)mem;
    out->param = (http_param_t *)(void *)(mem + nseg * sizeof(http_str_t));
    char *cursor = mem + nseg * sizeof(http_str_t) + nparam * sizeof(http_param_t);

    for (size_t i = 0; i < plen;) {
        if (target[i] == '/') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < plen && target[j] != '/')
            j++;
        out->seg[out->nseg++] = decode_into(target + i, j - i, &cursor);
        i = j;
    }
    for (size_t i = 0; i < qlen;) {
        if (qs[i] == '&' || qs[i] == ';') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < qlen && qs[j] != '&' && qs[j] != ';')
            j++;
        const char *eq = memchr(qs + i, '=', j - i);
        size_t klen = eq ? (size_t)(eq - (qs + i)) : j - i;
        http_param_t *p = &out->param[out->nparam++];
        p->key = decode_into(qs + i, klen, &cursor);
        p->value = eq ? decode_into(eq + 1, (size_t)(qs + j - eq - 1), &cursor) : decode_into("", 0, &cursor);
        i = j;
    }
    assert(out->nseg == nseg && out->nparam == nparam);
    assert((size_t)(cursor - mem) <= bytes);
    return DV_OK;
}

void http_target_free(http_target_t *t)
{
    free(t->mem);
    memset(t, 0, sizeof *t);
}

const http_str_t *http_target_param(const http_target_t *t, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < t->nparam; i++)
        if (t->param[i].key.n == n && memcmp(t->param[i].key.p, key, n) == 0)
            return &t->param[i].value;
    return NULL;
}

int http_method_parse(const char *m, size_t n)
{
    static const struct { const char *name; int bit; } methods[] = {
        {"GET", HTTP_GET},       {"HEAD", HTTP_HEAD},   {"POST", HTTP_POST},       {"PUT", HTTP_PUT},
        {"DELETE", HTTP_DELETE}, {"COPY", HTTP_COPY},   {"OPTIONS", HTTP_OPTIONS}, {"PATCH", HTTP_PATCH},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strlen(methods[i].name) == n && memcmp(methods[i].name, m, n) == 0)
            return methods[i].bit;
    return HTTP_OTHER;
}

size_t http_route_scratch_size(const http_target_t *t)
{
    size_t n = 16;
    for (size_t i = 0; i < t->nseg; i++)
        n += t->seg[i].n + 1;
    return n;
}

static int str_is(http_str_t s, const char *lit, size_t n) { return s.n == n && memcmp(s.p, lit, n) == 0; }
static int str_starts(http_str_t s, const char *lit, size_t n) { return s.n > n && memcmp(s.p, lit, n) == 0; }

/* Scratch space handed out front to back; NULL when exhausted. */
typedef struct scratch {
    char *p;
    size_t left;
} scratch_t;

/* Joins seg[from..to) with '/' into scratch. */
static int join(const http_target_t *t, size_t from, size_t to, scratch_t *s, http_str_t *out)
{
    size_t need = 1;
    for (size_t i = from; i < to; i++)
        need += t->seg[i].n + (i > from);
    if (need > s->left)
        return -1;
    char *d = s->p;
    size_t o = 0;
    for (size_t i = from; i < to; i++) {
        if (i > from)
            d[o++] = '/';
        memcpy(d + o, t->seg[i].p, t->seg[i].n);
        o += t->seg[i].n;
    }
    d[o] = '\0';
    out->p = d;
    out->n = o;
    s->p += o + 1;
    s->left -= o + 1;
    return 0;
}

/* Does the path of t match pattern?  Fills m. */
static int path_matches(const char *pattern, const http_target_t *t, scratch_t s, http_match_t *m)
{
    memset(m, 0, sizeof *m);
    size_t i = 0; /* next segment */
    const char *p = pattern;
    while (*p == '/')
        p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t tl = e ? (size_t)(e - p) : strlen(p);
        const char *next = p + tl;
        while (*next == '/')
            next++;
        if (tl == 5 && memcmp(p, "{any}", 5) == 0) {
            if (i < t->nseg && join(t, i, t->nseg, &s, &m->rest) != 0)
                return 0;
            return 1;
        }
        if (i >= t->nseg)
            return 0;
        http_str_t seg = t->seg[i];
        if (tl == 4 && memcmp(p, "{db}", 4) == 0) {
            m->db = seg;
            i++;
        } else if (tl == 7 && memcmp(p, "{docid}", 7) == 0) {
            int prefixed = str_is(seg, "_design", 7) || str_is(seg, "_local", 6);
            if (prefixed && i + 1 < t->nseg) {
                if (join(t, i, i + 2, &s, &m->docid) != 0)
                    return 0;
                i += 2;
            } else if (!prefixed && (seg.n == 0 || seg.p[0] != '_' || str_starts(seg, "_design/", 8) ||
                                     str_starts(seg, "_local/", 7))) {
                m->docid = seg;
                i++;
            } else {
                return 0;
            }
        } else if (tl == 6 && memcmp(p, "{rest}", 6) == 0) {
            if (join(t, i, t->nseg, &s, &m->rest) != 0)
                return 0;
            return 1;
        } else {
            if (!(seg.n == tl && memcmp(seg.p, p, tl) == 0))
                return 0;
            i++;
        }
        p = next;
    }
    return i == t->nseg;
}

int http_route_find(const http_route_t *routes, size_t nroutes, int method, const http_target_t *t,
                    char *scratch, size_t scratch_len, const http_route_t **route, http_match_t *m)
{
    int effective = method == HTTP_HEAD ? HTTP_GET : method;
    scratch_t s = {scratch, scratch_len};
    *route = NULL;
    for (size_t r = 0; r < nroutes; r++) {
        if (!path_matches(routes[r].pattern, t, s, m))
            continue;
        /* The first matching pattern names the resource; only routes with
         * that same pattern may serve other methods on it. */
        for (size_t q = r; q < nroutes; q++) {
            if ((routes[q].methods & effective) && strcmp(routes[q].pattern, routes[r].pattern) == 0) {
                *route = &routes[q];
                return HTTP_ROUTE_FOUND;
            }
        }
        memset(m, 0, sizeof *m);
        *route = &routes[r];
        return HTTP_ROUTE_NO_METHOD;
    }
    memset(m, 0, sizeof *m);
    return HTTP_ROUTE_NO_PATH;
}

