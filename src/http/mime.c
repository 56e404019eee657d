/*
 * mime.c — multipart bodies, header parameters, content negotiation and
 * byte ranges (see mime.h).  Pure functions over bytes; every scan is
 * bounded by the lengths given, never by a terminator in the data.
 */
#include "http/mime.h"

#include "base/status.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void mime_parts_free(mime_parts *ps)
{
    free(ps->v);
    ps->v = NULL;
    ps->n = ps->cap = 0;
}

static int parts_push(mime_parts *ps, const mime_part *pt)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        mime_part *v = realloc(ps->v, cap * sizeof *v);
        if (!v)
            return DV_ERR_NOMEM;
        ps->v = v;
        ps->cap = cap;
    }
    ps->v[ps->n++] = *pt;
    return DV_OK;
}

static const uint8_t *find(const uint8_t *p, size_t n, const void *pat, size_t m)
{
    return memmem(p, n, pat, m);
}

/* Every line of a header block must be "Name: value" with a non-empty
 * name (CouchDB answers "bad part header" otherwise). */
static int headers_ok(const uint8_t *p, size_t n)
{
    while (n) {
        const uint8_t *eol = find(p, n, "\r\n", 2);
        size_t len = eol ? (size_t)(eol - p) : n;
        const uint8_t *colon = memchr(p, ':', len);
        if (!colon || colon == p)
            return 0;
        if (!eol)
            break;
        n -= len + 2;
        p = eol + 2;
    }
    return 1;
}

int mime_split(const uint8_t *p, size_t n, const char *boundary, size_t blen, mime_parts *out, const char **why)
{
    char delim[MIME_BOUNDARY_MAX + 4];
    int rc = DV_ERR_INVALID;
    *why = "Invalid multipart boundary";
    if (blen == 0 || blen > MIME_BOUNDARY_MAX)
        goto fail;
    /* "\r\n--B": the delimiter between parts; "--B" alone opens the body. */
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;
    *why = "Multipart body has no opening boundary";
    const uint8_t *at = find(p, n, delim + 2, dlen - 2);
    if (!at)
        goto fail;
    size_t pos = (size_t)(at - p) + dlen - 2;
    for (;;) {
        if (n - pos >= 2 && p[pos] == '-' && p[pos + 1] == '-')
            return DV_OK; /* close delimiter; the epilogue is ignored */
        while (pos < n && (p[pos] == ' ' || p[pos] == '\t'))
            pos++;
        *why = "Malformed multipart boundary line";
        if (n - pos < 2 || p[pos] != '\r' || p[pos + 1] != '\n')
            goto fail;
        pos += 2;
        mime_part pt = {p + pos, 0, NULL, 0};
        if (n - pos >= 2 && p[pos] == '\r' && p[pos + 1] == '\n') {
            pos += 2; /* no headers */
        } else {
            const uint8_t *end = find(p + pos, n - pos, "\r\n\r\n", 4);
            *why = "Unterminated multipart part headers";
            if (!end)
                goto fail;
            pt.head_len = (size_t)(end - (p + pos));
            *why = "bad part header";
            if (!headers_ok(pt.head, pt.head_len))
                goto fail;
            pos += pt.head_len + 4;
        }
        const uint8_t *next = find(p + pos, n - pos, delim, dlen);
        *why = "Multipart part is not closed by a boundary";
        if (!next)
            goto fail;
        pt.body = p + pos;
        pt.body_len = (size_t)(next - (p + pos));
        if ((rc = parts_push(out, &pt)) != DV_OK)
            goto fail;
        rc = DV_ERR_INVALID;
        pos = (size_t)(next - p) + dlen;
    }
fail:
    mime_parts_free(out);
    return rc;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_space((*s)[*n - 1]))
        (*n)--;
}

/* The next element of a sep-separated list at p[*i..n), trimmed (maybe
 * empty); 0 when the list is exhausted. */
static int next_item(const char *p, size_t n, size_t *i, char sep, const char **e, size_t *el)
{
    if (*i >= n)
        return 0;
    size_t k = *i;
    while (*i < n && p[*i] != sep)
        (*i)++;
    *e = p + k;
    *el = *i - k;
    (*i)++;
    trim(e, el);
    return 1;
}

int mime_part_header(const mime_part *pt, const char *name, const char **val, size_t *vlen)
{
    const char *p = (const char *)pt->head;
    size_t n = pt->head_len, nl = strlen(name);
    while (n) {
        const char *eol = (const char *)find((const uint8_t *)p, n, "\r\n", 2);
        size_t len = eol ? (size_t)(eol - p) : n;
        const char *colon = memchr(p, ':', len);
        if (colon) {
            const char *k = p, *v = colon + 1;
            size_t kn = (size_t)(colon - p), vn = len - kn - 1;
            trim(&k, &kn);
            if (kn == nl && !strncasecmp(k, name, nl)) {
                trim(&v, &vn);
                *val = v;
                *vlen = vn;
                return 1;
            }
        }
        if (!eol)
            break;
        n -= len + 2;
        p = eol + 2;
    }
    return 0;
}

int mime_type_is(const char *v, size_t n, const char *type)
{
    const char *semi = memchr(v, ';', n);
    size_t tl = semi ? (size_t)(semi - v) : n;
    trim(&v, &tl);
    return tl == strlen(type) && !strncasecmp(v, type, tl);
}

/* Reads a parameter value at v[*i..n): a quoted string (backslash escapes
 * undone) or a token up to ';'.  Writes it to out when out is not NULL. */
static int param_value(const char *v, size_t n, size_t *i, char *out, size_t cap, size_t *outlen)
{
    size_t k = 0;
    int quoted = *i < n && v[*i] == '"';
    if (quoted)
        (*i)++;
    while (*i < n) {
        char c = v[*i];
        if (quoted && c == '"') {
            (*i)++;
            quoted = 0;
            break;
        }
        if (!quoted && (c == ';' || is_space(c)))
            break;
        if (quoted && c == '\\' && *i + 1 < n)
            c = v[++*i];
        if (out) {
            if (k + 1 >= cap)
                return DV_ERR_INVALID;
            out[k] = c;
        }
        k++;
        (*i)++;
    }
    if (quoted)
        return DV_ERR_INVALID;
    if (out) {
        out[k] = 0;
        *outlen = k;
    }
    return DV_OK;
}

int mime_param(const char *v, size_t n, const char *name, char *out, size_t cap, size_t *outlen)
{
    size_t nl = strlen(name), i = 0;
    /* Skip the leading value ("multipart/related", "attachment"). */
    while (i < n && v[i] != ';')
        i++;
    while (i < n) {
        i++; /* the ';' */
        while (i < n && is_space(v[i]))
            i++;
        size_t k = i;
        while (i < n && v[i] != '=' && v[i] != ';')
            i++;
        size_t kl = i - k;
        while (kl && is_space(v[k + kl - 1]))
            kl--;
        if (i == n || v[i] == ';')
            continue; /* a parameter without a value */
        i++;
        while (i < n && is_space(v[i]))
            i++;
        int want = kl == nl && !strncasecmp(v + k, name, nl);
        int rc = param_value(v, n, &i, want ? out : NULL, cap, outlen);
        if (rc != DV_OK)
            return rc;
        if (want)
            return 1;
        while (i < n && v[i] != ';')
            i++;
    }
    return 0;
}

/* ---- negotiation ------------------------------------------------------------ */

/* q-value of one list element from its parameters (the text after its
 * first ';'): 1000 when absent, else thousandths; -1 when malformed
 * (mochiweb then rejects the whole header). */
static int qvalue(const char *p, size_t n)
{
    size_t i = 0, el;
    const char *e;
    while (next_item(p, n, &i, ';', &e, &el)) {
        if (el < 2 || (e[0] != 'q' && e[0] != 'Q') || e[1] != '=')
            continue;
        int q = 0, digits = 0, frac = -1;
        for (size_t j = 2; j < el; j++) {
            if (e[j] == '.' && frac < 0) {
                frac = 0;
            } else if (e[j] >= '0' && e[j] <= '9') {
                digits++;
                if (frac >= 3)
                    continue; /* finer than thousandths: ignored */
                if (q > 100000)
                    return -1;
                q = q * 10 + (e[j] - '0');
                if (frac >= 0)
                    frac++;
            } else {
                return -1;
            }
        }
        if (!digits)
            return -1;
        for (int f = frac < 0 ? 0 : frac; f < 3; f++)
            q *= 10;
        return q;
    }
    return 1000;
}

/* What a q-list says about one type or coding: the q of its exact entry,
 * of the "a/" star range (types only) and of the wildcard; -2 where not listed. */
typedef struct qmatch {
    const char *want;     /* "a/b" or "gzip" */
    size_t want_len;
    size_t super_len;     /* length of "a/" prefix of the star range, 0 for codings */
    int exact_q, super_q, any_q; /* -2: not listed */
} qmatch;

/* Fills m from a comma-separated q-list; -1 when a q-value is malformed. */
static int qlist_scan(const char *h, qmatch *m)
{
    m->exact_q = m->super_q = m->any_q = -2;
    size_t n = strlen(h), i = 0, el;
    const char *e;
    while (next_item(h, n, &i, ',', &e, &el)) {
        const char *semi = memchr(e, ';', el);
        size_t vl = semi ? (size_t)(semi - e) : el;
        const char *v = e;
        trim(&v, &vl);
        if (!vl)
            continue;
        int q = semi ? qvalue(semi + 1, el - (size_t)(semi + 1 - e)) : 1000;
        if (q < 0)
            return -1;
        if (vl == m->want_len && !strncasecmp(v, m->want, vl))
            m->exact_q = q;
        else if (m->super_len && vl == m->super_len + 1 && !strncasecmp(v, m->want, m->super_len) && v[vl - 1] == '*')
            m->super_q = q;
        else if (m->super_len ? (vl == 3 && !memcmp(v, "*/*", 3)) : (vl == 1 && v[0] == '*'))
            m->any_q = q;
    }
    return 0;
}

int mime_accepts(const char *accept, const char *type)
{
    const char *slash = strchr(type, '/');
    qmatch m = {type, strlen(type), slash ? (size_t)(slash - type) + 1 : 0, 0, 0, 0};
    if (!accept)
        return 1;
    if (qlist_scan(accept, &m) < 0)
        return 0;
    if (m.exact_q == 0 || m.super_q == 0)
        return 0;
    return m.exact_q > 0 || m.super_q > 0 || m.any_q > 0;
}

int mime_accepts_encoding(const char *accept_encoding, const char *coding)
{
    qmatch m = {coding, strlen(coding), 0, 0, 0, 0};
    if (!accept_encoding)
        return 0;
    if (qlist_scan(accept_encoding, &m) < 0)
        return 0;
    if (m.exact_q != -2)
        return m.exact_q > 0;
    return m.any_q > 0;
}

/* ---- ranges -------------------------------------------------------------------- */

/* Decimal digits only; 0 on overflow or anything else. */
static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

int mime_range_parse(const char *hdr, uint64_t length, mime_range *out, size_t *n)
{
    *n = 0;
    if (!hdr || strncmp(hdr, "bytes=", 6) != 0)
        return MIME_RANGE_WHOLE;
    const char *p = hdr + 6;
    size_t len = strlen(p), i = 0, count = 0, el;
    const char *e;
    int unsat = 0, whole = 0;
    while (next_item(p, len, &i, ',', &e, &el)) {
        if (!el)
            continue;
        const char *dash = memchr(e, '-', el);
        if (!dash)
            return MIME_RANGE_WHOLE; /* malformed: mochiweb's fail */
        size_t al = (size_t)(dash - e), bl = el - al - 1;
        uint64_t a = 0, b = 0;
        int has_a = al > 0, has_b = bl > 0;
        if ((!has_a && !has_b) || (has_a && !parse_u64(e, al, &a)) || (has_b && !parse_u64(dash + 1, bl, &b)))
            return MIME_RANGE_WHOLE;
        if (unsat || whole)
            continue; /* still validate the syntax of the rest */
        if (has_a && !has_b && a == 0) {
            whole = 1; /* "0-": CouchDB serves the whole entity */
            continue;
        }
        if (!has_a) { /* suffix: the last b bytes */
            a = b >= length ? 0 : length - b;
            b = length ? length - 1 : 0;
            if (length == 0 || a > b) {
                unsat = 1;
                continue;
            }
        } else {
            if (!has_b || b >= length)
                b = length - 1; /* wraps for length 0: caught below */
            if (length == 0 || a > b) {
                unsat = 1;
                continue;
            }
        }
        if (count < MIME_RANGES_MAX)
            out[count] = (mime_range){a, b};
        count++;
    }
    if (unsat)
        return MIME_RANGE_UNSATISFIABLE;
    if (whole || count == 0 || count > MIME_RANGES_MAX)
        return MIME_RANGE_WHOLE;
    *n = count;
    return MIME_RANGE_PARTIAL;
}
