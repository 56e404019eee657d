/*
 * json_out.h — the few JSON-writing helpers the HTTP layer needs today.
 *
 * TEMPORARY: to be replaced by json/'s json_writer when it lands; handlers
 * then build bodies with it and this file goes away.  Kept deliberately
 * small: strings and the {"error","reason"} body, nothing that parses.
 */
#ifndef DV_HTTP_JSON_OUT_H
#define DV_HTTP_JSON_OUT_H

#include "base/buf.h"

#include <stddef.h>
#include <string.h>

/* Appends s[0..n) as a quoted JSON string: '"', '\\' and control characters
 * escaped (\n, \t, … or \u00XX), invalid UTF-8 bytes replaced by U+FFFD so
 * that the output is always valid JSON whatever the input. */
int http_json_str(buf_t *b, const char *s, size_t n);
static inline int http_json_cstr(buf_t *b, const char *s) { return http_json_str(b, s, strlen(s)); }

/* {"error":"<error>","reason":"<reason>"} */
int http_json_error(buf_t *b, const char *error, const char *reason);

#endif
