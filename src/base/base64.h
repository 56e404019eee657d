/*
 * base64.h — RFC 4648 base64 (standard alphabet), for inline attachment
 * data in JSON documents ("data": "...") and HTTP Basic credentials.
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

#endif
