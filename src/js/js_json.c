/*
 * js_json.c — JSON text → Duktape values, and Duktape output → UTF-8.
 * See js_json.h for why this exists instead of duk_json_decode.
 *
 * The parser is a plain recursive descent over a slice that is never read
 * past its end; depth is bounded by the caller's max_depth, so the C stack
 * is too.  Object members are stored with duk_def_prop semantics only for
 * "__proto__" (a put would set the prototype; JSON.parse defines an own
 * property); every other member is a put on a fresh object, which cannot
 * meet a setter unless user code defined one on Object.prototype.
 */
#include "js/js_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void js_scratch_free(js_scratch *s)
{
    free(s->p);
    s->p = NULL;
    s->cap = 0;
}

/* Grows the scratch to at least n bytes; throws on allocation failure (we
 * are inside a Duktape protected call). */
static char *scratch_get(duk_context *ctx, js_scratch *s, size_t n)
{
    if (n > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < n)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (!p)
            (void)duk_error(ctx, DUK_ERR_RANGE_ERROR, "alloc failed");
        s->p = p;
        s->cap = cap;
    }
    return s->p;
}

typedef struct parser {
    duk_context *ctx;
    const unsigned char *p, *end;
    unsigned depth_left;
    js_scratch *s;
} parser;

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

static int hexval(unsigned c)
{
    if (c - '0' < 10)
        return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6)
        return (int)(c - 'a' + 10);
    return -1;
}

/* Appends a code unit (or a BMP code point) as 1–3 byte (extended) UTF-8:
 * surrogates come out as CESU-8 halves, as Duktape stores them. */
static char *put_unit(char *o, uint32_t c)
{
    if (c < 0x80) {
        *o++ = (char)c;
    } else if (c < 0x800) {
        *o++ = (char)(0xC0 | c >> 6);
        *o++ = (char)(0x80 | (c & 0x3F));
    } else {
        *o++ = (char)(0xE0 | c >> 12);
        *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
        *o++ = (char)(0x80 | (c & 0x3F));
    }
    return o;
}

/* Writes src[0..n) (string contents, escapes already known to be present or
 * 4-byte sequences to split) into scratch; returns the decoded length or
 * -1 on a malformed escape.  Output is at most n bytes: an escape shrinks,
 * a 4-byte sequence becomes 6 bytes, hence the 3/2 bound. */
static long decode_string(parser *ps, const unsigned char *src, size_t n, char **out)
{
    char *buf = scratch_get(ps->ctx, ps->s, n / 2 * 3 + 8);
    char *o = buf;
    const unsigned char *q = src, *e = src + n;
    while (q < e) {
        unsigned c = *q;
        if (c == '\\') {
            if (e - q < 2)
                return -1;
            switch (q[1]) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/': *o++ = '/'; break;
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                if (e - q < 6)
                    return -1;
                uint32_t u = 0;
                for (int i = 2; i < 6; i++) {
                    int h = hexval(q[i]);
                    if (h < 0)
                        return -1;
                    u = u << 4 | (uint32_t)h;
                }
                o = put_unit(o, u);
                q += 6;
                continue;
            }
            default:
                return -1;
            }
            q += 2;
        } else if (c >= 0xF0 && c <= 0xF4 && e - q >= 4) {
            uint32_t cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(q[1] & 0x3F) << 12 |
                          (uint32_t)(q[2] & 0x3F) << 6 | (uint32_t)(q[3] & 0x3F);
            if (cp < 0x10000 || cp > 0x10FFFF) { /* malformed: copy the byte */
                *o++ = (char)c;
                q++;
                continue;
            }
            cp -= 0x10000;
            o = put_unit(o, 0xD800 + (cp >> 10));
            o = put_unit(o, 0xDC00 + (cp & 0x3FF));
            q += 4;
        } else {
            *o++ = (char)c;
            q++;
        }
    }
    *out = buf;
    return (long)(o - buf);
}

/* Nonzero when one of the 8 bytes of v is '"', '\\', a control character
 * or the lead byte of a 4-byte UTF-8 sequence: the bytes parse_string must
 * look at one by one.  (The usual SWAR zero-byte test; it may misplace
 * which byte matched, never miss one.) */
static inline uint64_t special8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
#define ZERO_BYTE(x) (((x) - ones) & ~(x) & highs)
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\'), f = (v & (ones * 0xF0)) ^ (ones * 0xF0);
    return ZERO_BYTE(q) | ZERO_BYTE(b) | ZERO_BYTE(f) | ((v - ones * 0x20) & ~v & highs);
#undef ZERO_BYTE
}

/* Parses a string at ps->p (on the opening quote); *ptr and *len get its decoded
 * bytes, which live in the input or in scratch until the next string. */
static int parse_string(parser *ps, const char **ptr, size_t *len)
{
    const unsigned char *start = ++ps->p, *q = start;
    int slow = 0;
    for (;;) {
        /* The common run: no quote, backslash, control or 4-byte lead;
         * eight bytes at a time, then byte by byte. */
        while (ps->end - q >= 8) {
            uint64_t v;
            memcpy(&v, q, 8);
            if (special8(v))
                break;
            q += 8;
        }
        while (q < ps->end && *q >= 0x20 && *q != '"' && *q != '\\' && *q < 0xF0)
            q++;
        if (q >= ps->end || *q < 0x20)
            return -1;
        if (*q == '"')
            break;
        slow = 1;
        if (*q == '\\') {
            if (q + 1 >= ps->end)
                return -1;
            q += 2;
        } else {
            q++;
        }
    }
    ps->p = q + 1;
    if (!slow) {
        *ptr = (const char *)start;
        *len = (size_t)(q - start);
        return 0;
    }
    char *buf;
    long n = decode_string(ps, start, (size_t)(q - start), &buf);
    if (n < 0)
        return -1;
    *ptr = buf;
    *len = (size_t)n;
    return 0;
}

static int parse_number(parser *ps)
{
    const unsigned char *start = ps->p, *q = ps->p;
    int neg = 0, is_int = 1;
    if (q < ps->end && *q == '-') {
        neg = 1;
        q++;
    }
    if (q >= ps->end || (unsigned)(*q - '0') > 9u)
        return -1;
    if (*q == '0') {
        q++;
    } else {
        while (q < ps->end && (unsigned)(*q - '0') <= 9u)
            q++;
    }
    if (q < ps->end && *q == '.') {
        is_int = 0;
        q++;
        if (q >= ps->end || (unsigned)(*q - '0') > 9u)
            return -1;
        while (q < ps->end && (unsigned)(*q - '0') <= 9u)
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        is_int = 0;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= ps->end || (unsigned)(*q - '0') > 9u)
            return -1;
        while (q < ps->end && (unsigned)(*q - '0') <= 9u)
            q++;
    }
    size_t n = (size_t)(q - start);
    ps->p = q;
    /* Up to 15 digits an integer is exact in a double: no rounding to do. */
    if (is_int && n - (size_t)neg <= 15) {
        int64_t v = 0;
        for (const unsigned char *d = start + neg; d < q; d++)
            v = v * 10 + (*d - '0');
        double dv = (double)v;
        duk_push_number(ps->ctx, neg ? -dv : dv);
        return 0;
    }
    char local[64], *tmp = local;
    if (n >= sizeof local)
        tmp = scratch_get(ps->ctx, ps->s, n + 1);
    memcpy(tmp, start, n);
    tmp[n] = 0;
    duk_push_number(ps->ctx, strtod(tmp, NULL)); /* C locale: '.' separator */
    return 0;
}

static int parse_value(parser *ps);

static int parse_container(parser *ps, int is_obj)
{
    if (!ps->depth_left--)
        return -1;
    duk_context *ctx = ps->ctx;
    duk_require_stack(ctx, 4);
    duk_idx_t idx = is_obj ? duk_push_object(ctx) : duk_push_array(ctx);
    duk_uarridx_t n = 0;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) {
        ps->p++;
        goto done;
    }
    for (;;) {
        skip_ws(ps);
        if (is_obj) {
            const char *k;
            size_t klen;
            if (ps->p >= ps->end || *ps->p != '"' || parse_string(ps, &k, &klen) < 0)
                goto fail;
            /* Interned now: scratch is reused by the value's strings. */
            duk_push_lstring(ctx, k, klen);
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                goto fail;
            ps->p++;
            if (parse_value(ps) < 0)
                goto fail;
            if (klen == 9 && memcmp(k, "__proto__", 9) == 0)
                duk_def_prop(ctx, idx, DUK_DEFPROP_HAVE_VALUE | DUK_DEFPROP_SET_WEC);
            else
                duk_put_prop(ctx, idx);
        } else {
            if (parse_value(ps) < 0)
                goto fail;
            duk_put_prop_index(ctx, idx, n++);
        }
        skip_ws(ps);
        if (ps->p >= ps->end)
            goto fail;
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p != (is_obj ? '}' : ']'))
            goto fail;
        ps->p++;
        break;
    }
done:
    ps->depth_left++;
    return 0;
fail:
    duk_set_top(ctx, idx);
    return -1;
}

static int match_lit(parser *ps, const char *lit, size_t n)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0)
        return -1;
    ps->p += n;
    return 0;
}

static int parse_value(parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return -1;
    switch (*ps->p) {
    case '{':
        return parse_container(ps, 1);
    case '[':
        return parse_container(ps, 0);
    case '"': {
        const char *s;
        size_t n;
        if (parse_string(ps, &s, &n) < 0)
            return -1;
        duk_push_lstring(ps->ctx, s, n);
        return 0;
    }
    case 't':
        if (match_lit(ps, "true", 4) < 0)
            return -1;
        duk_push_true(ps->ctx);
        return 0;
    case 'f':
        if (match_lit(ps, "false", 5) < 0)
            return -1;
        duk_push_false(ps->ctx);
        return 0;
    case 'n':
        if (match_lit(ps, "null", 4) < 0)
            return -1;
        duk_push_null(ps->ctx);
        return 0;
    default:
        return parse_number(ps);
    }
}

int js_json_push(duk_context *ctx, const char *text, size_t n, unsigned max_depth, js_scratch *s)
{
    parser ps = {ctx, (const unsigned char *)text, (const unsigned char *)text + n, max_depth, s};
    duk_idx_t top = duk_get_top(ctx);
    if (parse_value(&ps) < 0)
        goto fail;
    skip_ws(&ps);
    if (ps.p != ps.end)
        goto fail;
    return 0;
fail:
    duk_set_top(ctx, top);
    return -1;
}

size_t js_utf8_fix(char *s, size_t n)
{
    char *w = s, *r = s, *e = s + n;
    for (;;) {
        char *hit = memchr(r, 0xED, (size_t)(e - r));
        if (!hit) {
            size_t rest = (size_t)(e - r);
            if (w != r)
                memmove(w, r, rest);
            return (size_t)(w - s) + rest;
        }
        size_t run = (size_t)(hit - r);
        if (w != r)
            memmove(w, r, run);
        w += run;
        r = hit;
        unsigned char b1 = e - r > 1 ? (unsigned char)r[1] : 0;
        if (e - r < 3 || b1 < 0xA0 || b1 > 0xBF) { /* not a surrogate */
            *w++ = *r++;
            continue;
        }
        uint32_t hi = 0xD000 | (uint32_t)(b1 & 0x3F) << 6 | ((unsigned char)r[2] & 0x3F);
        if (hi < 0xDC00 && e - r >= 6 && (unsigned char)r[3] == 0xED &&
            (unsigned char)r[4] >= 0xB0 && (unsigned char)r[4] <= 0xBF) {
            uint32_t lo = 0xD000 | (uint32_t)((unsigned char)r[4] & 0x3F) << 6 | ((unsigned char)r[5] & 0x3F);
            uint32_t cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            w[0] = (char)(0xF0 | cp >> 18);
            w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            w[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            w[3] = (char)(0x80 | (cp & 0x3F));
            w += 4;
            r += 6;
        } else { /* lone surrogate: U+FFFD, same length */
            w[0] = (char)0xEF;
            w[1] = (char)0xBF;
            w[2] = (char)0xBD;
            w += 3;
            r += 3;
        }
    }
}
