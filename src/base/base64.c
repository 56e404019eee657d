/*
 * base64.c — RFC 4648 base64 encode/decode (see base64.h).
 */
#include "base/base64.h"

#include "base/status.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_encode(const void *p, size_t n, buf_t *out)
{
    const uint8_t *s = p;
    if (n == 0)
        return DV_OK; /* out->data may still be NULL: no pointer arithmetic on it */
    int rc = buf_reserve(out, (n + 2) / 3 * 4);
    if (rc)
        return rc;
    uint8_t *o = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = (uint8_t)alphabet[v >> 18];
        *o++ = (uint8_t)alphabet[(v >> 12) & 63];
        *o++ = (uint8_t)alphabet[(v >> 6) & 63];
        *o++ = (uint8_t)alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *o++ = (uint8_t)alphabet[v >> 18];
        *o++ = (uint8_t)alphabet[(v >> 12) & 63];
        *o++ = i + 1 < n ? (uint8_t)alphabet[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    out->len = (size_t)(o - out->data);
    return DV_OK;
}

static int digit(uint8_t c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Decodes m alphabet characters (no padding) onto out; out->len moves
 * only on success.  canonical: the leftover low bits must be zero (JWS and
 * our own cookies are canonical); else they are ignored, as Erlang's
 * base64:decode does. */
static int decode_chars(const uint8_t *s, size_t m, int url, int canonical, buf_t *out)
{
    if (m % 4 == 1)
        return DV_ERR_INVALID;
    /* Reserved even for nothing: callers may hand out->data to memchr. */
    int rc = buf_reserve(out, m / 4 * 3 + 2);
    if (rc)
        return rc;
    uint8_t *o = out->data + out->len;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < m; i++) {
        int d = digit(s[i], url);
        if (d < 0)
            return DV_ERR_INVALID;
        acc = acc << 6 | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (uint8_t)(acc >> bits);
        }
    }
    if (canonical && bits && (acc & ((1u << bits) - 1)))
        return DV_ERR_INVALID;
    out->len = (size_t)(o - out->data);
    return DV_OK;
}

int base64_decode(const char *src, size_t n, buf_t *out)
{
    const uint8_t *s = (const uint8_t *)src;
    size_t pad = 0;
    while (pad < 2 && n > pad && s[n - 1 - pad] == '=')
        pad++;
    size_t m = n - pad; /* data characters */
    if (pad && (m + pad) % 4 != 0)
        return DV_ERR_INVALID;
    return decode_chars(s, m, 0, 0, out);
}

int base64url_encode(const void *p, size_t n, buf_t *out)
{
    size_t start = out->len;
    int rc = base64_encode(p, n, out);
    if (rc != DV_OK)
        return rc;
    size_t w = start;
    for (size_t i = start; i < out->len; i++) {
        uint8_t c = out->data[i];
        if (c != '=')
            out->data[w++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out->len = w;
    return DV_OK;
}

int base64url_decode(const char *s, size_t n, buf_t *out)
{
    return decode_chars((const uint8_t *)s, n, 1, 1, out);
}
