/*
 * json_parse.c — strict RFC 8259 parser building the flat DOM (and the
 * validator, which is the same code with node building compiled out).
 *
 * Shape: one iterative loop with an explicit stack (no recursion, so the depth
 * limit is the only bound on nesting and a hostile body cannot overflow the C
 * stack).  Each value appends one node; a container's node is patched with
 * its subtree size when it closes.  Stack entries are (node index << 1) |
 * is_object; the validator keeps only the low bit.
 *
 * Strings take two passes only when they contain escapes: the first pass
 * finds the closing quote while validating UTF-8, escapes and surrogate
 * pairing (8 bytes at a time over plain ASCII); strings without escapes are
 * then referenced in place, the others decoded into the arena (the decoded
 * form is never longer than the escaped text, which bounds the allocation).
 *
 * Duplicate names are resolved when an object closes: earlier members whose
 * name reappears later get JSON_F_SHADOWED (CouchDB/jiffy keep the last).
 * Objects up to 16 members compare names pairwise (cheap: lengths first);
 * larger ones use a hash table of member indexes, so a body with a million
 * equal names costs O(n), not O(n^2).
 *
 * Invariants after a successful parse: nodes[0..n) is the pre-order DOM;
 * every container's subtree size covers exactly its descendants; object
 * children alternate key (JSON_F_KEY string), value; strings are valid UTF-8.
 */
#include "json/json.h"
#include "json/json_internal.h"

#include "base/status.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Arena chunk for unescaped strings.  Pointers into a chunk stay valid until
 * the next parse or json_doc_free (chunks never move). */
struct json_chunk {
    struct json_chunk *next;
    size_t used, cap;
    char data[];
};

#define JSON_LOCAL_STACK 64
#define JSON_SMALL_OBJECT 16

typedef struct json_parser {
    const uint8_t *start, *p, *end;
    json_doc *doc; /* NULL when validating only */
    uint32_t *stack;
    uint32_t stack_cap, depth, max_depth;
    uint32_t *heap_stack; /* validator's stack once deeper than the local one */
    const uint8_t *err_at;
    const char *why;
} json_parser;

void json_doc_init(json_doc *doc) { memset(doc, 0, sizeof *doc); }

static void free_chunks(json_doc *doc)
{
    struct json_chunk *c = doc->chunks;
    while (c) {
        struct json_chunk *next = c->next;
        free(c);
        c = next;
    }
    doc->chunks = NULL;
}

void json_doc_free(json_doc *doc)
{
    free(doc->nodes);
    free(doc->stack);
    free(doc->slots);
    free_chunks(doc);
    json_doc_init(doc);
}

static char *arena_alloc(json_doc *doc, size_t n)
{
    struct json_chunk *c = doc->chunks;
    if (c && c->cap - c->used >= n) {
        char *r = c->data + c->used;
        c->used += n;
        return r;
    }
    size_t cap = c ? c->cap * 2 : 4096;
    if (cap > (1u << 20))
        cap = 1u << 20;
    if (cap < n)
        cap = n;
    struct json_chunk *nc = malloc(sizeof *nc + cap);
    if (!nc)
        return NULL;
    nc->next = c;
    nc->cap = cap;
    nc->used = n;
    doc->chunks = nc;
    return nc->data;
}

static int fail(json_parser *ps, const uint8_t *at, const char *why)
{
    ps->err_at = at;
    ps->why = why;
    return DV_ERR_INVALID;
}

static int grow_nodes(json_doc *doc, size_t input_len)
{
    uint32_t cap = doc->cap;
    if (cap == 0) {
        /* Typical documents hold one node per 8-16 input bytes. */
        size_t guess = input_len / 8 + 16;
        cap = guess > 65536 ? 65536 : (uint32_t)guess;
    } else {
        /* the root's subtree size must fit the 26-bit skip field */
        if (cap >= JSON_MAX_NODES - 1)
            return DV_ERR_TOO_LARGE;
        cap = cap >= JSON_MAX_NODES / 2 ? JSON_MAX_NODES - 1 : cap * 2;
    }
    json_val *n = realloc(doc->nodes, (size_t)cap * sizeof *n);
    if (!n)
        return DV_ERR_NOMEM;
    doc->nodes = n;
    doc->cap = cap;
    return DV_OK;
}

static int push_stack(json_parser *ps, uint32_t entry, const uint8_t *at)
{
    if (ps->depth >= ps->max_depth)
        return fail(ps, at, "nesting too deep");
    if (ps->depth == ps->stack_cap) {
        uint32_t cap = ps->stack_cap * 2;
        uint32_t *s;
        if (ps->doc) {
            s = realloc(ps->doc->stack, (size_t)cap * sizeof *s);
            if (!s)
                return DV_ERR_NOMEM;
            ps->doc->stack = s;
            ps->doc->stack_cap = cap;
        } else {
            s = realloc(ps->heap_stack, (size_t)cap * sizeof *s);
            if (!s)
                return DV_ERR_NOMEM;
            if (!ps->heap_stack)
                memcpy(s, ps->stack, (size_t)ps->depth * sizeof *s);
            ps->heap_stack = s;
        }
        ps->stack = s;
        ps->stack_cap = cap;
    }
    ps->stack[ps->depth++] = entry;
    return DV_OK;
}

static inline int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Reads 4 hex digits at p (caller checked 4 bytes exist); -1 if not hex. */
static inline int32_t hex4(const uint8_t *p)
{
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
    if ((a | b | c | d) < 0)
        return -1;
    return (a << 12) | (b << 8) | (c << 4) | d;
}

/* First pass over a string body starting after the opening quote.  On success
 * *close points at the closing quote and *escaped says whether any backslash
 * was seen. */
static int scan_string(json_parser *ps, const uint8_t *p, const uint8_t **close, int *escaped)
{
    const uint8_t *end = ps->end;
    int esc = 0;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes a test: a signed compare below 0x20 flags controls and
         * every byte >= 0x80 at once, the exact stop set of the SWAR test. */
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                     _mm_cmplt_epi8(x, space));
            unsigned stop = (unsigned)_mm_movemask_epi8(m);
            if (stop) {
                p += __builtin_ctz(stop);
                goto stopped;
            }
            p += 16;
        }
#endif
        while (end - p >= 8) {
            uint64_t stop = json__string_stop8(json__load64(p));
            if (stop) {
                p += json__first_flagged(stop); /* straight to the byte that stops the run */
                break;
            }
            p += 8;
        }
#ifdef __SSE2__
    stopped:
#endif
        if (p >= end)
            return fail(ps, p, "unterminated string");
        uint8_t c = *p;
        if (c == '"')
            break;
        if (c == '\\') {
            esc = 1;
            const uint8_t *bs = p;
            if (end - p < 2)
                return fail(ps, p, "unterminated string");
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u':
                break;
            default:
                return fail(ps, p, "invalid escape");
            }
            if (end - p < 6)
                return fail(ps, p, "truncated \\u escape");
            int32_t cp = hex4(p + 2);
            if (cp < 0)
                return fail(ps, p, "invalid \\u escape");
            p += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return fail(ps, bs, "lone low surrogate escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                    return fail(ps, bs, "unpaired high surrogate escape");
                int32_t lo = hex4(p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return fail(ps, bs, "unpaired high surrogate escape");
                p += 6;
            }
            continue;
        }
        if (c < 0x20)
            return fail(ps, p, "control character in string");
        if (c >= 0x80) {
            size_t n = json__utf8_seq(p, end);
            if (!n)
                return fail(ps, p, "invalid UTF-8");
            p += n;
            continue;
        }
        p++;
    }
    *close = p;
    *escaped = esc;
    return DV_OK;
}

static size_t put_utf8(char *d, uint32_t cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Second pass: decodes an already validated escaped body into d; returns the
 * decoded length. */
static size_t unescape(char *d, const uint8_t *s, const uint8_t *e)
{
    char *d0 = d;
    while (s < e) {
        const uint8_t *bs = memchr(s, '\\', (size_t)(e - s));
        size_t run = (size_t)((bs ? bs : e) - s);
        memcpy(d, s, run);
        d += run;
        if (!bs)
            break;
        s = bs + 2;
        switch (bs[1]) {
        case 'b': *d++ = '\b'; break;
        case 'f': *d++ = '\f'; break;
        case 'n': *d++ = '\n'; break;
        case 'r': *d++ = '\r'; break;
        case 't': *d++ = '\t'; break;
        case 'u': {
            uint32_t cp = (uint32_t)hex4(s);
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = (uint32_t)hex4(s + 2);
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            d += put_utf8(d, cp);
            break;
        }
        default: *d++ = (char)bs[1]; break; /* " \ / */
        }
    }
    return (size_t)(d - d0);
}

static inline int key_eq(const json_val *a, const json_val *b)
{
    return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
}

/* Marks earlier duplicates in the object at nodes[oi] as shadowed and fixes
 * its visible member count. */
static int resolve_duplicates(json_doc *doc, uint32_t oi)
{
    json_val *obj = &doc->nodes[oi];
    uint32_t n = obj->len, shadowed = 0;
    if (n < 2)
        return DV_OK;
    json_val *end = doc->nodes + doc->n;
    if (n <= JSON_SMALL_OBJECT) {
        json_val *keys[JSON_SMALL_OBJECT];
        uint32_t k = 0;
        for (json_val *m = obj + 1; m < end; m = (json_val *)json__next(m + 1))
            keys[k++] = m;
        for (uint32_t i = 0; i + 1 < n; i++)
            for (uint32_t j = i + 1; j < n; j++)
                if (key_eq(keys[i], keys[j])) {
                    keys[i]->meta |= JSON_F_SHADOWED;
                    shadowed++;
                    break;
                }
    } else {
        uint32_t cap = 64;
        while (cap < 2 * n)
            cap *= 2;
        if (cap > doc->slots_cap) {
            uint32_t *s = realloc(doc->slots, (size_t)cap * sizeof *s);
            if (!s)
                return DV_ERR_NOMEM;
            doc->slots = s;
            doc->slots_cap = cap;
        }
        /* Slots hold node index + 1 (0 = empty).  Walking members in order
         * and replacing a match with the later member leaves every earlier
         * occurrence shadowed exactly once. */
        uint32_t *slots = doc->slots;
        memset(slots, 0, (size_t)cap * sizeof *slots);
        for (json_val *m = obj + 1; m < end; m = (json_val *)json__next(m + 1)) {
            uint64_t h = XXH3_64bits(m->str, m->len);
            uint32_t i = (uint32_t)h & (cap - 1);
            for (;;) {
                if (!slots[i]) {
                    slots[i] = (uint32_t)(m - doc->nodes) + 1;
                    break;
                }
                json_val *o = &doc->nodes[slots[i] - 1];
                if (key_eq(o, m)) {
                    o->meta |= JSON_F_SHADOWED;
                    shadowed++;
                    slots[i] = (uint32_t)(m - doc->nodes) + 1;
                    break;
                }
                i = (i + 1) & (cap - 1);
            }
        }
    }
    obj->len = n - shadowed;
    return DV_OK;
}

static inline void skip_ws(json_parser *ps)
{
    const uint8_t *p = ps->p, *end = ps->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

/* Appends a node; returns its index through *idx. */
static inline int new_node(json_parser *ps, size_t input_len, uint32_t type, uint32_t *idx)
{
    json_doc *doc = ps->doc;
    if (doc->n == doc->cap) {
        int rc = grow_nodes(doc, input_len);
        if (rc)
            return rc;
    }
    *idx = doc->n++;
    json_val *v = &doc->nodes[*idx];
    v->str = NULL;
    v->len = 0;
    v->meta = type | (1u << JSON_META_SKIP_SHIFT);
    return DV_OK;
}

/* Parses a string at ps->p (the opening quote).  In build mode appends the
 * node (flagged key or not) and counts it in the enclosing container. */
static inline __attribute__((always_inline)) int parse_string(json_parser *ps, const bool build, uint32_t key_flag)
{
    const uint8_t *s = ps->p + 1, *close;
    int escaped, rc = scan_string(ps, s, &close, &escaped);
    if (rc)
        return rc;
    ps->p = close + 1;
    if (!build)
        return DV_OK;
    uint32_t idx;
    rc = new_node(ps, (size_t)(ps->end - ps->start), JSON_STRING | key_flag, &idx);
    if (rc)
        return rc;
    json_val *v = &ps->doc->nodes[idx];
    if (!escaped) {
        v->str = (const char *)s;
        v->len = (uint32_t)(close - s);
        v->meta |= JSON_F_PLAIN;
    } else {
        char *d = arena_alloc(ps->doc, (size_t)(close - s));
        if (!d)
            return DV_ERR_NOMEM;
        v->str = d;
        v->len = (uint32_t)unescape(d, s, close);
    }
    return DV_OK;
}

/* `value` counts one element when the innermost container is an array;
 * object members are counted at their key instead.  Always inlined so that
 * each caller gets a copy specialised on `build`. */
static inline __attribute__((always_inline)) int parse_generic(json_parser *ps, const bool build)
{
    const size_t input_len = (size_t)(ps->end - ps->start);
    uint32_t idx = 0;
    int rc;

value:
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, ps->p, ps->depth ? "unexpected end of input" : "empty input");
    if (build && ps->depth && !(ps->stack[ps->depth - 1] & 1))
        ps->doc->nodes[ps->stack[ps->depth - 1] >> 1].len++; /* array element count */
    switch (*ps->p) {
    case '{':
    case '[': {
        int is_obj = *ps->p == '{';
        if (build) {
            rc = new_node(ps, input_len, is_obj ? JSON_OBJECT : JSON_ARRAY, &idx);
            if (rc)
                return rc;
        }
        rc = push_stack(ps, (idx << 1) | (uint32_t)is_obj, ps->p);
        if (rc)
            return rc;
        ps->p++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']'))
            goto close;
        if (is_obj)
            goto key;
        goto value;
    }
    case '"':
        rc = parse_string(ps, build, 0);
        if (rc)
            return rc;
        goto after;
    case 't':
    case 'f':
    case 'n': {
        static const char *const lit[] = {"true", "false", "null"};
        static const uint32_t lit_type[] = {JSON_TRUE, JSON_FALSE, JSON_NULL};
        int which = *ps->p == 't' ? 0 : *ps->p == 'f' ? 1 : 2;
        size_t n = which == 1 ? 5 : 4;
        if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit[which], n) != 0)
            return fail(ps, ps->p, "invalid literal");
        if (build) {
            rc = new_node(ps, input_len, lit_type[which], &idx);
            if (rc)
                return rc;
        }
        ps->p += n;
        goto after;
    }
    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': {
        const uint8_t *bad, *s = ps->p;
        const uint8_t *e = json__scan_number(s, ps->end, &bad, &ps->why);
        if (!e) {
            ps->err_at = bad;
            return DV_ERR_INVALID;
        }
        if (build) {
            rc = new_node(ps, input_len, JSON_NUMBER, &idx);
            if (rc)
                return rc;
            ps->doc->nodes[idx].str = (const char *)s;
            ps->doc->nodes[idx].len = (uint32_t)(e - s);
        }
        ps->p = e;
        goto after;
    }
    case ']':
    case '}':
        return fail(ps, ps->p, ps->depth ? "value expected (trailing comma?)" : "unexpected character");
    default:
        return fail(ps, ps->p, "unexpected character");
    }

key:
    /* at the first non-space byte after '{' or ',' inside an object */
    if (ps->p >= ps->end)
        return fail(ps, ps->p, "unexpected end of input");
    if (*ps->p != '"')
        return fail(ps, ps->p, *ps->p == '}' ? "member expected (trailing comma?)" : "member name expected");
    rc = parse_string(ps, build, JSON_F_KEY);
    if (rc)
        return rc;
    if (build)
        ps->doc->nodes[ps->stack[ps->depth - 1] >> 1].len++;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':')
        return fail(ps, ps->p, "':' expected");
    ps->p++;
    goto value;

after:
    if (ps->depth == 0) {
        skip_ws(ps);
        if (ps->p != ps->end)
            return fail(ps, ps->p, "unexpected data after the top-level value");
        return DV_OK;
    }
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, ps->p, "unexpected end of input");
    {
        uint32_t top = ps->stack[ps->depth - 1];
        uint8_t c = *ps->p;
        if (c == ',') {
            ps->p++;
            skip_ws(ps);
            if (top & 1)
                goto key;
            goto value;
        }
        if (c == ((top & 1) ? '}' : ']'))
            goto close;
        return fail(ps, ps->p, (top & 1) ? "',' or '}' expected" : "',' or ']' expected");
    }

close:
    /* at the closing bracket of the innermost container */
    {
        uint32_t top = ps->stack[--ps->depth];
        if (build) {
            uint32_t ci = top >> 1;
            json_val *c = &ps->doc->nodes[ci];
            c->meta = (c->meta & ((1u << JSON_META_SKIP_SHIFT) - 1)) |
                      ((ps->doc->n - ci) << JSON_META_SKIP_SHIFT);
            if (top & 1) {
                rc = resolve_duplicates(ps->doc, ci);
                if (rc)
                    return rc;
            }
        }
        ps->p++;
        goto after;
    }
}

static void set_error(const json_parser *ps, int rc, json_error *err)
{
    if (!err)
        return;
    if (rc == DV_ERR_INVALID) {
        err->offset = (size_t)(ps->err_at - ps->start);
        err->reason = ps->why;
    } else {
        err->offset = (size_t)(ps->p - ps->start);
        err->reason = rc == DV_ERR_NOMEM ? "out of memory" : "document too large";
    }
}

int json_doc_parse(json_doc *doc, const void *text, size_t len, uint32_t max_depth,
                   json_error *err)
{
    json_parser ps;
    int rc;
    doc->n = 0;
    free_chunks(doc);
    ps.start = ps.p = (const uint8_t *)text;
    ps.end = ps.start + len;
    ps.doc = doc;
    ps.depth = 0;
    ps.max_depth = max_depth ? max_depth : JSON_DEFAULT_MAX_DEPTH;
    ps.heap_stack = NULL;
    ps.err_at = ps.start;
    ps.why = NULL;
    if (len > UINT32_MAX) {
        rc = DV_ERR_TOO_LARGE;
        goto fail;
    }
    if (!doc->stack) {
        doc->stack = malloc(JSON_LOCAL_STACK * sizeof *doc->stack);
        if (!doc->stack) {
            rc = DV_ERR_NOMEM;
            goto fail;
        }
        doc->stack_cap = JSON_LOCAL_STACK;
    }
    ps.stack = doc->stack;
    ps.stack_cap = doc->stack_cap;
    rc = parse_generic(&ps, true);
    if (rc)
        goto fail;
    assert(doc->n >= 1 && (doc->nodes[0].meta >> JSON_META_SKIP_SHIFT) == doc->n);
    return DV_OK;
fail:
    doc->n = 0;
    set_error(&ps, rc, err);
    return rc;
}

int json_validate(const void *text, size_t len, uint32_t max_depth, json_error *err)
{
    uint32_t local[JSON_LOCAL_STACK];
    json_parser ps;
    ps.start = ps.p = (const uint8_t *)text;
    ps.end = ps.start + len;
    ps.doc = NULL;
    ps.stack = local;
    ps.stack_cap = JSON_LOCAL_STACK;
    ps.depth = 0;
    ps.max_depth = max_depth ? max_depth : JSON_DEFAULT_MAX_DEPTH;
    ps.heap_stack = NULL;
    ps.err_at = ps.start;
    ps.why = NULL;
    int rc = parse_generic(&ps, false);
    free(ps.heap_stack);
    if (rc)
        set_error(&ps, rc, err);
    return rc;
}
