/*
 * json_write.c — minified JSON output: the streaming writer, DOM
 * serialisation, and serialisation of an object minus some members.
 *
 * Output form is CouchDB's (jiffy's): no whitespace, strings escaped
 * minimally ('"', '\\' and bytes below 0x20; everything else, including '/',
 * U+2028/2029 and all non-ASCII, as raw UTF-8), numbers as their original
 * text.  Because the escaping is a function of the decoded string alone,
 * parse -> write is byte-identical for any input already in this form, and
 * write -> parse -> write is always a fixed point.
 *
 * The writer tracks only "does the next item need a comma"; that is enough
 * for minified output because a key resets it and every value or closing
 * bracket sets it.  Errors are sticky in w->err: after one failure every
 * later call is a no-op returning the same code, so streaming handlers may
 * check once at the end.
 *
 * An object minus some members (document bodies minus CouchDB's '_' fields)
 * is copied from the parsed input when that text is already the output
 * (write_members_verbatim), and re-serialised node by node otherwise.
 *
 * Strings coming from a parsed DOM are known-valid UTF-8 and are not checked
 * again; strings handed in by callers (json_write_string/key) are, because
 * they may come from URLs or other unchecked bytes.
 */
#include "json/json.h"
#include "json/json_internal.h"

#include "base/status.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_err(json_writer *w, int rc)
{
    if (rc && !w->err)
        w->err = rc;
    return rc;
}

void json_writer_init(json_writer *w, buf_t *out)
{
    w->out = out;
    w->err = DV_OK;
    w->need_comma = false;
    w->depth = 0;
}

static inline int needs_escape(uint8_t c) { return c < 0x20 || c == '"' || c == '\\'; }

/* Appends s as a quoted, escaped JSON string (s known to be valid UTF-8). */
static int append_escaped(buf_t *b, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = buf_reserve(b, n + 2);
    if (rc)
        return rc;
    b->data[b->len++] = '"';
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (n - j >= 8 && !json__needs_escape8(json__load64(s + j)))
            j += 8;
        while (j < n && !needs_escape(s[j]))
            j++;
        /* +7: room for the escape and the closing quote */
        rc = buf_reserve(b, (j - i) + 7);
        if (rc)
            return rc;
        memcpy(b->data + b->len, s + i, j - i);
        b->len += j - i;
        if (j == n)
            break;
        uint8_t c = s[j];
        uint8_t *d = b->data + b->len;
        d[0] = '\\';
        switch (c) {
        case '"': d[1] = '"'; b->len += 2; break;
        case '\\': d[1] = '\\'; b->len += 2; break;
        case '\b': d[1] = 'b'; b->len += 2; break;
        case '\f': d[1] = 'f'; b->len += 2; break;
        case '\n': d[1] = 'n'; b->len += 2; break;
        case '\r': d[1] = 'r'; b->len += 2; break;
        case '\t': d[1] = 't'; b->len += 2; break;
        default:
            d[1] = 'u';
            d[2] = '0';
            d[3] = '0';
            d[4] = hex[c >> 4];
            d[5] = hex[c & 15];
            b->len += 6;
        }
        i = j + 1;
    }
    rc = buf_reserve(b, 1);
    if (rc)
        return rc;
    b->data[b->len++] = '"';
    return DV_OK;
}

/* A DOM string: plain ones are copied verbatim. */
static int append_dom_string(buf_t *b, const json_val *v)
{
    if (!(v->meta & JSON_F_PLAIN))
        return append_escaped(b, (const uint8_t *)v->str, v->len);
    int rc = buf_reserve(b, (size_t)v->len + 2);
    if (rc)
        return rc;
    b->data[b->len++] = '"';
    memcpy(b->data + b->len, v->str, v->len);
    b->len += v->len;
    b->data[b->len++] = '"';
    return DV_OK;
}

int json_utf8_valid(const void *text, size_t n)
{
    const uint8_t *s = text;
    const uint8_t *p = s, *end = s + n;
    while (p < end) {
        if (end - p >= 8 && !(json__load64(p) & JSON__HIGHS)) {
            p += 8;
            continue;
        }
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t k = json__utf8_seq(p, end);
        if (!k)
            return 0;
        p += k;
    }
    return 1;
}

/* Comma before a value or key when one is due. */
static inline int pre(json_writer *w)
{
    if (w->err)
        return w->err;
    if (w->need_comma)
        return set_err(w, buf_append_byte(w->out, ','));
    return DV_OK;
}

static int put_scalar(json_writer *w, const char *s, size_t n)
{
    int rc = pre(w);
    if (rc)
        return rc;
    rc = set_err(w, buf_append(w->out, s, n));
    if (rc)
        return rc;
    w->need_comma = true;
    return DV_OK;
}

static int open_container(json_writer *w, char c)
{
    int rc = pre(w);
    if (rc)
        return rc;
    rc = set_err(w, buf_append_byte(w->out, (uint8_t)c));
    if (rc)
        return rc;
    w->need_comma = false;
    w->depth++;
    return DV_OK;
}

static int close_container(json_writer *w, char c)
{
    if (w->err)
        return w->err;
    assert(w->depth > 0);
    int rc = set_err(w, buf_append_byte(w->out, (uint8_t)c));
    if (rc)
        return rc;
    w->need_comma = true;
    w->depth--;
    return DV_OK;
}

int json_write_begin_object(json_writer *w) { return open_container(w, '{'); }
int json_write_end_object(json_writer *w) { return close_container(w, '}'); }
int json_write_begin_array(json_writer *w) { return open_container(w, '['); }
int json_write_end_array(json_writer *w) { return close_container(w, ']'); }

int json_write_key(json_writer *w, const char *s, size_t n)
{
    if (w->err)
        return w->err;
    if (!json_utf8_valid(s, n))
        return set_err(w, DV_ERR_INVALID);
    int rc = pre(w);
    if (rc)
        return rc;
    rc = set_err(w, append_escaped(w->out, (const uint8_t *)s, n));
    if (rc)
        return rc;
    rc = set_err(w, buf_append_byte(w->out, ':'));
    if (rc)
        return rc;
    w->need_comma = false;
    return DV_OK;
}

int json_write_key_cstr(json_writer *w, const char *s) { return json_write_key(w, s, strlen(s)); }

int json_write_string(json_writer *w, const char *s, size_t n)
{
    if (w->err)
        return w->err;
    if (!json_utf8_valid(s, n))
        return set_err(w, DV_ERR_INVALID);
    int rc = pre(w);
    if (rc)
        return rc;
    rc = set_err(w, append_escaped(w->out, (const uint8_t *)s, n));
    if (rc)
        return rc;
    w->need_comma = true;
    return DV_OK;
}

int json_write_cstr(json_writer *w, const char *s) { return json_write_string(w, s, strlen(s)); }

int json_write_number_text(json_writer *w, const char *s, size_t n)
{
    if (w->err)
        return w->err;
    const uint8_t *bad, *p = (const uint8_t *)s;
    const char *why;
    if (n == 0 || json__scan_number(p, p + n, &bad, &why) != p + n)
        return set_err(w, DV_ERR_INVALID);
    return put_scalar(w, s, n);
}

int json_write_i64(json_writer *w, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    return put_scalar(w, tmp, (size_t)n);
}

int json_write_u64(json_writer *w, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    return put_scalar(w, tmp, (size_t)n);
}

int json_write_double(json_writer *w, double v)
{
    if (w->err)
        return w->err;
    if (!isfinite(v))
        return set_err(w, DV_ERR_INVALID);
    /* Shortest precision that round-trips; at most 17 digits are needed. */
    char tmp[40];
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    if (!strpbrk(tmp, ".e")) {
        tmp[n++] = '.';
        tmp[n++] = '0';
        tmp[n] = '\0';
    }
    return put_scalar(w, tmp, (size_t)n);
}

int json_write_bool(json_writer *w, bool v)
{
    return v ? put_scalar(w, "true", 4) : put_scalar(w, "false", 5);
}

int json_write_null(json_writer *w) { return put_scalar(w, "null", 4); }

int json_write_raw(json_writer *w, const char *s, size_t n)
{
    assert(json_validate(s, n, UINT32_MAX, NULL) == DV_OK);
    return put_scalar(w, s, n);
}

int json_write_members_raw(json_writer *w, const char *obj, size_t n)
{
    assert(n >= 2 && obj[0] == '{' && obj[n - 1] == '}');
    assert(json_validate(obj, n, UINT32_MAX, NULL) == DV_OK);
    if (n <= 2)
        return w->err;
    return put_scalar(w, obj + 1, n - 2);
}

typedef struct wframe {
    const json_val *end;
    char close;
} wframe;

/* Reserve for a DOM value: at most this many bytes, so that the buffer
 * grows once (a 1 KiB document body grew 64 -> 2048 in six reallocs).  An
 * upper bound from one pass over the nodes: a plain string is written as it
 * is, an escaped one at most 6 bytes per byte (\u00XX), plus quotes and a
 * separator; literals and brackets at most 6.  Capped, so that a large
 * escaped document does not reserve six times its size at once: beyond the
 * cap the buffer grows by doubling as before. */
enum { JSON_RESERVE_MAX = 1 << 16 };

static size_t dom_size_bound(const json_val *v)
{
    size_t n = 0;
    for (const json_val *p = v, *end = json__next(v); p < end && n < JSON_RESERVE_MAX; p++) {
        switch (json_typeof(p)) {
        case JSON_STRING: n += (p->meta & JSON_F_PLAIN ? (size_t)p->len : (size_t)p->len * 6) + 3; break;
        case JSON_NUMBER: n += (size_t)p->len + 1; break;
        default: n += 6; break;
        }
    }
    return n < JSON_RESERVE_MAX ? n : JSON_RESERVE_MAX;
}

static int write_value(json_writer *w, const json_val *v);

int json_write_value(json_writer *w, const json_val *v)
{
    if (w->err)
        return w->err;
    int rc = buf_reserve(w->out, dom_size_bound(v) + 1);
    if (rc)
        return set_err(w, rc);
    return write_value(w, v);
}

/* json_write_value without the reserve (the caller made it). */
static int write_value(json_writer *w, const json_val *v)
{
    wframe local[64], *stack = local, *heap = NULL;
    uint32_t depth = 0, cap = 64;
    const json_val *p = v, *end = json__next(v);
    buf_t *b = w->out;
    int rc = pre(w);
    if (rc)
        return rc;
    /* pre() wrote the leading comma if one was due */
    bool comma = false;
    for (;;) {
        while (depth && p == stack[depth - 1].end) {
            rc = buf_append_byte(b, (uint8_t)stack[--depth].close);
            if (rc)
                goto fail;
            comma = true;
        }
        if (p == end)
            break;
        if ((p->meta & JSON_F_KEY) && p != v) {
            if (p->meta & JSON_F_SHADOWED) {
                p = json__next(p + 1);
                continue;
            }
            if (comma && (rc = buf_append_byte(b, ',')))
                goto fail;
            if ((rc = append_dom_string(b, p)) || (rc = buf_append_byte(b, ':')))
                goto fail;
            comma = false;
            p++;
            continue;
        }
        if (comma && (rc = buf_append_byte(b, ',')))
            goto fail;
        switch (json_typeof(p)) {
        case JSON_NULL: rc = buf_append(b, "null", 4); break;
        case JSON_FALSE: rc = buf_append(b, "false", 5); break;
        case JSON_TRUE: rc = buf_append(b, "true", 4); break;
        case JSON_NUMBER: rc = buf_append(b, p->str, p->len); break;
        case JSON_STRING: rc = append_dom_string(b, p); break;
        case JSON_ARRAY:
        case JSON_OBJECT:
            if (depth == cap) {
                wframe *ns = realloc(heap, (size_t)cap * 2 * sizeof *ns);
                if (!ns) {
                    rc = DV_ERR_NOMEM;
                    goto fail;
                }
                if (!heap)
                    memcpy(ns, local, sizeof local);
                heap = stack = ns;
                cap *= 2;
            }
            stack[depth].end = json__next(p);
            stack[depth].close = json_is_object(p) ? '}' : ']';
            depth++;
            rc = buf_append_byte(b, json_is_object(p) ? '{' : '[');
            if (rc)
                goto fail;
            comma = false;
            p++;
            continue;
        }
        if (rc)
            goto fail;
        comma = true;
        p++;
    }
    free(heap);
    w->need_comma = true;
    return DV_OK;
fail:
    free(heap);
    return set_err(w, rc);
}

/* Bytes the writer outputs for the nodes [p, end) when every string in
 * them is plain and no member is shadowed; SIZE_MAX when one is not.  A
 * container counts its brackets and separators (its members or elements
 * are all visible, so len counts them all); *closers counts the containers
 * that end where the object does (at obj_end). */
static size_t verbatim_size(const json_val *p, const json_val *end, const json_val *obj_end, size_t *closers)
{
    size_t n = 0;
    for (; p < end; p++) {
        switch (json_typeof(p)) {
        case JSON_STRING:
            if (!(p->meta & JSON_F_PLAIN) || (p->meta & JSON_F_SHADOWED))
                return SIZE_MAX;
            n += (size_t)p->len + 2 + ((p->meta & JSON_F_KEY) ? 1 : 0); /* quotes, ':' */
            break;
        case JSON_NUMBER: n += p->len; break;
        case JSON_FALSE: n += 5; break;
        case JSON_NULL:
        case JSON_TRUE: n += 4; break;
        default: /* brackets, commas */
            n += 2 + (p->len ? p->len - 1 : 0);
            *closers += json__next(p) == obj_end;
            break;
        }
    }
    return n;
}

/* The members that json_write_object_filtered keeps, copied from the input
 * text when that text is already exactly what it would write.  Parsed plain
 * strings and numbers point into the one input text (json.h), so the kept
 * members are the input from the first kept key's quote to obj's '}' when
 * the skipped members all come first.  Every token there is written as it
 * was read (plain strings, number texts, literals) and the separators are the
 * same, so that text differs from the output only by whitespace: equal
 * lengths prove there is none.  The end is found from the last node: a
 * plain string or number, followed by one closing bracket per container
 * ending with it (checked to be brackets, so no whitespace there either).
 * Writes and returns 1, or returns 0 for the general path: escaped strings,
 * duplicates, a skipped member after a kept one, a literal or an empty
 * container last, whitespace.  Cost: one pass over the nodes and a memcpy
 * (re-serialising a 1 KiB body node by node was ~3,500 instructions). */
static int write_members_verbatim(json_writer *w, const json_val *obj, json_key_pred skip, void *ctx)
{
    const json_val *end = json__next(obj), *first = NULL, *last = end - 1;
    size_t size = 0, kept = 0, closers = 1;
    for (const json_val *k = obj + 1; k < end; k = json__next(k + 1)) {
        if (k->meta & JSON_F_SHADOWED)
            return 0;
        if (skip && skip(k->str, k->len, ctx)) {
            if (first)
                return 0;
            continue;
        }
        size_t n = verbatim_size(k, json__next(k + 1), end, &closers);
        if (n == SIZE_MAX)
            return 0;
        size += n + (kept++ ? 1 : 0);
        if (!first)
            first = k;
    }
    if (!first || (json_typeof(last) != JSON_STRING && json_typeof(last) != JSON_NUMBER))
        return 0;
    const char *from = first->str - 1;
    const char *tail = last->str + last->len + (json_typeof(last) == JSON_STRING);
    if (tail < from || (size_t)(tail - from) + closers != size + 1)
        return 0;
    for (size_t i = 0; i < closers; i++)
        if (tail[i] != '}' && tail[i] != ']')
            return 0;
    if (pre(w) || set_err(w, buf_reserve(w->out, size + 2)))
        return 1;
    w->out->data[w->out->len++] = '{';
    memcpy(w->out->data + w->out->len, from, size + 1); /* ends with obj's '}' */
    w->out->len += size + 1;
    w->need_comma = true;
    return 1;
}

int json_write_object_filtered(json_writer *w, const json_val *obj, json_key_pred skip, void *ctx)
{
    if (w->err)
        return w->err;
    if (!json_is_object(obj))
        return set_err(w, DV_ERR_INVALID);
    if (write_members_verbatim(w, obj, skip, ctx))
        return w->err;
    int rc = set_err(w, buf_reserve(w->out, dom_size_bound(obj) + 1));
    if (!rc)
        rc = json_write_begin_object(w);
    json_iter it = json_iter_begin(obj);
    const json_val *k, *v;
    while (!rc && json_iter_member(&it, &k, &v)) {
        if (skip && skip(k->str, k->len, ctx))
            continue;
        if ((rc = pre(w)))
            break;
        if ((rc = set_err(w, append_dom_string(w->out, k))) ||
            (rc = set_err(w, buf_append_byte(w->out, ':'))))
            break;
        w->need_comma = false;
        rc = write_value(w, v);
    }
    if (rc)
        return rc;
    return json_write_end_object(w);
}

typedef struct name_set {
    const char *const *names;
    size_t n;
} name_set;

static bool in_name_set(const char *name, size_t len, void *ctx)
{
    const name_set *set = ctx;
    for (size_t i = 0; i < set->n; i++)
        if (strlen(set->names[i]) == len && memcmp(set->names[i], name, len) == 0)
            return true;
    return false;
}

int json_write_object_without(json_writer *w, const json_val *obj, const char *const *names,
                              size_t n_names)
{
    name_set set = {names, n_names};
    return json_write_object_filtered(w, obj, in_name_set, &set);
}

int json_serialize(const json_val *v, buf_t *out)
{
    json_writer w;
    json_writer_init(&w, out);
    return json_write_value(&w, v);
}
