/*
 * js_json.h — JSON text ↔ Duktape values for divan-js, faster than
 * Duktape's JSON.parse for the documents a map pass reads.
 *
 * Why not duk_json_decode: on a 1 KiB document it spends most of its time in
 * malloc (a growable buffer per string), in bigint decimal conversion for
 * plain integers and in re-scanning.  js_json_push builds the same values
 * straight from the input slice: strings without escapes are interned from
 * the input, numbers go through a fast integer path or strtod.
 *
 * Strings: Duktape keeps a raw 4-byte UTF-8 sequence as ONE code point
 * (length 1), but a "\ud83d\ude00" escape as two surrogates (length 2, as
 * JavaScript requires).  js_json_push turns every non-BMP character into the
 * surrogate pair (CESU-8), so user code sees UTF-16 semantics whichever way
 * the document spelt it; js_utf8_fix undoes that on output.
 *
 * Every function here may throw a Duktape error (allocation failure): call
 * them inside duk_safe_call / duk_pcall.
 */
#ifndef DV_JS_JSON_H
#define DV_JS_JSON_H

#include <duktape.h>
#include <stddef.h>

/* Scratch memory for unescaping, owned by the caller and reused across calls
 * (freed with js_scratch_free). */
typedef struct js_scratch {
    char *p;
    size_t cap;
} js_scratch;

void js_scratch_free(js_scratch *s);

/* Parses text[0..n) (one JSON value, surrounding whitespace allowed) and
 * pushes the value.  Returns 0, or -1 with nothing pushed when the text is
 * not JSON (the server sends only validated JSON; this is a defence, not a
 * validator: it rejects every malformed input but does not check UTF-8).
 * Nesting deeper than max_depth is rejected too. */
int js_json_push(duk_context *ctx, const char *text, size_t n, unsigned max_depth, js_scratch *s);

/* Rewrites Duktape's output bytes s[0..n) in place into valid UTF-8:
 * CESU-8 surrogate pairs become 4-byte sequences, lone surrogates become
 * U+FFFD.  Returns the new length (never longer than n). */
size_t js_utf8_fix(char *s, size_t n);

#endif
