/*
 * json.h — divan's lossless JSON codec: strict parser, DOM, writer.
 *
 * Every HTTP body and every replicated document goes through this module, so
 * it is strict where RFC 8259 is strict and lossless where other libraries
 * are not (see docs/json.md for the full accept/reject list):
 *
 *   - input must be UTF-8 (overlongs, UTF-8-encoded surrogates and code points
 *     above U+10FFFF are rejected), \u escapes must pair surrogates correctly,
 *     raw control characters inside strings are rejected, nothing but RFC
 *     whitespace may follow the top-level value, nesting is limited by the
 *     caller (JSON_DEFAULT_MAX_DEPTH when 0 is passed);
 *   - numbers are kept as the text that was written ("1.0", "1e400" and a
 *     30-digit integer survive unchanged); json_get_i64/json_get_double convert
 *     when the value fits;
 *   - object member order is kept.  Duplicate member names follow CouchDB
 *     (jiffy's dedupe_keys, used by CouchDB since CVE-2017-12635): the LAST
 *     occurrence wins and keeps its position; earlier ones are "shadowed":
 *     invisible to lookups, iteration, json_len() and every writer.
 *
 * DOM layout: a parsed document is one array of json_val nodes in document
 * order (pre-order).  A container's children follow it directly; every node
 * records the size of its subtree, so the next sibling is `v + skip` and a
 * value handle is a plain pointer with no back-reference to its document.
 * Object members are stored as a key node (JSON_STRING) followed by the value.
 * Strings without escapes and all number texts point INTO THE INPUT TEXT
 * (zero copy): the input must outlive the document.  Strings that had escapes
 * are unescaped into an arena owned by the document.  Strings are not
 * NUL-terminated and may contain NUL bytes (from \u0000): always use lengths.
 *
 * A json_doc can be embedded in a caller's struct and reused for many parses;
 * reuse keeps the node array and scratch memory, so a warmed-up request
 * handler parses without calling malloc at all for typical bodies.
 *
 * Errors: parse functions return DV_OK, DV_ERR_INVALID (malformed input; the
 * json_error gets the byte offset and a short static reason), DV_ERR_TOO_LARGE
 * (input over 4 GiB or over 2^27 nodes) or DV_ERR_NOMEM.  CouchDB answers any
 * malformed body with 400 {"error":"bad_request","reason":"invalid UTF-8 JSON"};
 * the offset and reason are for logs and for clients that want detail.
 */
#ifndef DV_JSON_JSON_H
#define DV_JSON_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define JSON_DEFAULT_MAX_DEPTH 512u
/* max_depth for text the server wrote itself (a stored document rendered,
 * a body it re-encoded): it passed the [chttpd] max_json_depth in force
 * when it came in, which may have been higher than the default; the
 * parser keeps its stack on the heap, so no limit of its own is needed. */
#define JSON_DEPTH_STORED UINT32_MAX

typedef enum json_type {
    JSON_NULL = 0,
    JSON_FALSE = 1,
    JSON_TRUE = 2,
    JSON_NUMBER = 3,
    JSON_STRING = 4,
    JSON_ARRAY = 5,
    JSON_OBJECT = 6,
} json_type;

/* One DOM node; 16 bytes.  Fields are private: use the accessors below. */
typedef struct json_val {
    const char *str; /* JSON_STRING: unescaped bytes; JSON_NUMBER: text as written */
    uint32_t len;    /* string/number: byte length; array: elements; object: visible members */
    uint32_t meta;   /* bits 0-2 type, bits 3-5 JSON_F_* flags, bits 6-31 subtree size */
} json_val;

/* meta flags (internal, exposed for the inline accessors) */
#define JSON_F_PLAIN 0x08u    /* string: bytes need no escaping (verbatim from input) */
#define JSON_F_KEY 0x10u      /* string: an object member name */
#define JSON_F_SHADOWED 0x20u /* key: a later member of the same object has this name */
#define JSON_META_SKIP_SHIFT 6
#define JSON_MAX_NODES (1u << 26)

typedef struct json_error {
    size_t offset;      /* byte offset of the offending input byte */
    const char *reason; /* short static English text, e.g. "invalid UTF-8" */
} json_error;

struct json_chunk;

typedef struct json_doc {
    json_val *nodes;           /* nodes[0] is the root once parsed */
    uint32_t n, cap;
    struct json_chunk *chunks; /* arena for unescaped strings */
    uint32_t *stack;           /* parser stack, kept for reuse */
    uint32_t stack_cap;
    uint32_t *slots;           /* duplicate-key hash table, kept for reuse */
    uint32_t slots_cap;
} json_doc;

#define JSON_DOC_INIT {NULL, 0, 0, NULL, NULL, 0, NULL, 0}

void json_doc_init(json_doc *doc);
void json_doc_free(json_doc *doc);

/* Parses text[0..len) into doc (replacing what it held).  max_depth: maximum
 * container nesting ("[]" is depth 1); 0 means JSON_DEFAULT_MAX_DEPTH.  err may
 * be NULL.  On failure doc holds no value (json_doc_root returns NULL). */
int json_doc_parse(json_doc *doc, const void *text, size_t len, uint32_t max_depth,
                   json_error *err);

/* The top-level value, or NULL when the last parse failed or none happened. */
static inline const json_val *json_doc_root(const json_doc *doc)
{
    return doc->n ? &doc->nodes[0] : NULL;
}

/* Checks text without building anything (no allocation up to depth 64). */
int json_validate(const void *text, size_t len, uint32_t max_depth, json_error *err);

/* ---- reading the DOM ---------------------------------------------------- */

static inline json_type json_typeof(const json_val *v) { return (json_type)(v->meta & 7u); }
static inline bool json_is_null(const json_val *v) { return json_typeof(v) == JSON_NULL; }
static inline bool json_is_bool(const json_val *v)
{
    return json_typeof(v) == JSON_TRUE || json_typeof(v) == JSON_FALSE;
}
static inline bool json_is_true(const json_val *v) { return json_typeof(v) == JSON_TRUE; }
static inline bool json_is_number(const json_val *v) { return json_typeof(v) == JSON_NUMBER; }
static inline bool json_is_string(const json_val *v) { return json_typeof(v) == JSON_STRING; }
static inline bool json_is_array(const json_val *v) { return json_typeof(v) == JSON_ARRAY; }
static inline bool json_is_object(const json_val *v) { return json_typeof(v) == JSON_OBJECT; }

/* String bytes / number text; length in *len.  NULL for other types. */
static inline const char *json_str(const json_val *v, size_t *len)
{
    json_type t = json_typeof(v);
    if (t != JSON_STRING && t != JSON_NUMBER) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->len;
    return v->str;
}
/* True when v is a string equal to the NUL-terminated s. */
bool json_str_eq(const json_val *v, const char *s);

/* Elements of an array, visible members of an object, bytes of a string or
 * number; 0 for the rest. */
static inline size_t json_len(const json_val *v)
{
    return json_typeof(v) >= JSON_NUMBER ? v->len : 0;
}

/* Number conversion.  json_get_i64 accepts only integer syntax (no fraction,
 * no exponent): DV_ERR_INVALID otherwise, DV_ERR_TOO_LARGE when outside
 * int64.  json_get_double accepts any number: DV_ERR_TOO_LARGE when it
 * overflows a double (1e400); underflow rounds toward zero like JavaScript.
 * Both return DV_ERR_INVALID when v is not a number. */
int json_get_i64(const json_val *v, int64_t *out);
int json_get_double(const json_val *v, double *out);

/* Member lookup by name (bytes, may contain NUL).  Linear in the member count,
 * comparing lengths first; skips shadowed duplicates.  NULL when absent or
 * when obj is not an object. */
const json_val *json_object_get(const json_val *obj, const char *name, size_t name_len);
const json_val *json_object_get_cstr(const json_val *obj, const char *name);

/* Element i of an array (linear walk); NULL when out of range. */
const json_val *json_array_get(const json_val *arr, size_t i);

/* Iteration over a container's children in order:
 *     json_iter it = json_iter_begin(obj);
 *     const json_val *k, *v;
 *     while (json_iter_member(&it, &k, &v)) ...
 *     while (json_iter_elem(&it, &v)) ...       (arrays)  */
typedef struct json_iter {
    const json_val *cur;
    const json_val *end;
} json_iter;

static inline const json_val *json__next(const json_val *v)
{
    return v + (v->meta >> JSON_META_SKIP_SHIFT);
}
static inline json_iter json_iter_begin(const json_val *container)
{
    json_iter it = {container + 1, json__next(container)};
    if (json_typeof(container) < JSON_ARRAY)
        it.cur = it.end;
    return it;
}
static inline bool json_iter_elem(json_iter *it, const json_val **elem)
{
    if (it->cur >= it->end)
        return false;
    *elem = it->cur;
    it->cur = json__next(it->cur);
    return true;
}
static inline bool json_iter_member(json_iter *it, const json_val **key, const json_val **val)
{
    while (it->cur < it->end) {
        const json_val *k = it->cur, *v = k + 1;
        it->cur = json__next(v);
        if (!(k->meta & JSON_F_SHADOWED)) {
            *key = k;
            *val = v;
            return true;
        }
    }
    return false;
}

/* ---- writing ------------------------------------------------------------ */

/* Streaming minified writer appending to a buf_t.  Commas and colons are
 * inserted automatically.  Every call returns DV_OK or an error; the first
 * error is also kept in w->err (later calls then do nothing), so a caller may
 * check once at the end.  The writer does not track nesting beyond asserts:
 * callers must balance begin/end and put a key before each object member. */
typedef struct json_writer {
    buf_t *out;
    int err;
    bool need_comma;
    uint32_t depth;
} json_writer;

void json_writer_init(json_writer *w, buf_t *out);
int json_write_begin_object(json_writer *w);
int json_write_end_object(json_writer *w);
int json_write_begin_array(json_writer *w);
int json_write_end_array(json_writer *w);
/* Key and string texts are raw bytes that must be valid UTF-8 (DV_ERR_INVALID
 * otherwise, nothing written); they are escaped CouchDB/jiffy style: '"', '\\'
 * and control characters only ("\b\f\n\r\t" short forms, others \u00XX with
 * upper-case hex); '/', DEL, U+2028/2029 and all non-ASCII go out as UTF-8. */
int json_write_key(json_writer *w, const char *s, size_t n);
int json_write_key_cstr(json_writer *w, const char *s);
int json_write_string(json_writer *w, const char *s, size_t n);
int json_write_cstr(json_writer *w, const char *s);
/* Number text as written by someone else: checked against the RFC grammar. */
int json_write_number_text(json_writer *w, const char *s, size_t n);
int json_write_i64(json_writer *w, int64_t v);
int json_write_u64(json_writer *w, uint64_t v);
/* Shortest text that reads back as the same double, with ".0" added to
 * integral values (1.0 -> "1.0", as jiffy prints floats); non-finite values
 * are DV_ERR_INVALID (JSON has no NaN/Infinity). */
int json_write_double(json_writer *w, double v);
int json_write_bool(json_writer *w, bool v);
int json_write_null(json_writer *w);
/* Splices an already-valid JSON value (a stored body, say) as the next value.
 * Not re-checked in release builds (asserted in debug builds). */
int json_write_raw(json_writer *w, const char *s, size_t n);
/* Splices the members of obj[0..n), an already-valid minified object text
 * ("{...}", as stored), into the object being written, after the members
 * written so far.  "{}" adds nothing. */
int json_write_members_raw(json_writer *w, const char *obj, size_t n);
/* Writes a DOM value (minified, duplicates resolved, strings re-escaped). */
int json_write_value(json_writer *w, const json_val *v);

/* Writes object obj without the top-level members for which skip(name, len,
 * ctx) is true (nested values are written whole).  Used to store a body
 * minus _id, _rev, _attachments... without building a new DOM. */
typedef bool (*json_key_pred)(const char *name, size_t len, void *ctx);
int json_write_object_filtered(json_writer *w, const json_val *obj, json_key_pred skip,
                               void *ctx);
/* Same, skipping the members named in names[0..n_names) (NUL-terminated). */
int json_write_object_without(json_writer *w, const json_val *obj, const char *const *names,
                              size_t n_names);

/* 1 when s[0..n) is well-formed UTF-8 (the parser's rules: no overlongs,
 * no surrogates, nothing above U+10FFFF). */
int json_utf8_valid(const void *s, size_t n);

/* Appends the minified serialisation of v to out. */
int json_serialize(const json_val *v, buf_t *out);

#endif
