/*
 * base64.h — RFC 4648 base64: the standard alphabet for inline attachment
 * data in JSON documents ("data": "...") and HTTP Basic credentials; the
 * url-safe alphabet without padding (§5) for JWS (RFC 7515) and CouchDB's
 * AuthSession cookies.
 *
 * Decoding is strict about the alphabet (a stray byte is an error, never
 * skipped) and lenient only where Erlang's base64:decode is: the final
 * padding may be missing.  Encoding always pads.
 */
#ifndef DV_BASE_BASE64_H
#define DV_BASE_BASE64_H

#include "base/buf.h"

#include <stddef.h>

/* Appends the encoding of p[0..n) to out. */
int base64_encode(const void *p, size_t n, buf_t *out);
/* Appends the decoding of s[0..n) to out; DV_ERR_INVALID (out unchanged)
 * when s is not base64. */
int base64_decode(const char *s, size_t n, buf_t *out);

/* base64url without padding: encoding appends no '='; decoding refuses
 * '=', the standard alphabet's '+' and '/', impossible lengths, and
 * non-zero leftover bits (DV_ERR_INVALID, out unchanged). */
int base64url_encode(const void *p, size_t n, buf_t *out);
int base64url_decode(const char *s, size_t n, buf_t *out);

#endif
