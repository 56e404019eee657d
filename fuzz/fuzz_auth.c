/*
 * fuzz_auth.c — libFuzzer target for the parsers of credentials a client
 * sends (http/auth.c): the Authorization header (HTTP Basic), the Cookie
 * header (finding AuthSession), the AuthSession value (base64url, then
 * "name:HEXTIME:mac"), and the cookie writer against its own parser.
 *
 * Input: first byte selects the parser (mod 4), the rest is its input.
 * Checked: every result points inside the input it came from; a decoded
 * Basic pair splits at the first ':' (the name has none); a cookie made
 * for (name, time) parses back to the same name and time with a 20-byte
 * HMAC-SHA1.  ASan catches any overrun.
 */
#include "base/buf.h"
#include "base/status.h"
#include "http/auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void basic(const char *s, size_t n)
{
    char *hdr = malloc(n + 7);
    if (!hdr)
        return;
    memcpy(hdr, "Basic ", 6);
    memcpy(hdr + 6, s, n);
    hdr[6 + n] = 0;
    char *buf;
    size_t nl, pl;
    const char *pw;
    if (http_auth_basic_parse(hdr, &buf, &nl, &pw, &pl) == DV_OK) {
        if (memchr(buf, ':', nl) || buf[nl] != 0 || pw != buf + nl + 1 || pw[pl] != 0)
            abort();
        free(buf);
    }
    free(hdr);
}

static void cookie_header(const char *s, size_t n)
{
    char *h = strndup(s, n);
    if (!h)
        return;
    size_t len;
    const char *v = http_auth_cookie_find(h, &len);
    if (v && (v < h || v + len > h + strlen(h)))
        abort();
    free(h);
}

static void cookie_value(const char *s, size_t n)
{
    buf_t d = BUF_INIT;
    if (http_auth_cookie_decode(s, n, &d) == DV_OK) {
        size_t nl, ml;
        uint64_t t;
        const char *mac;
        if (http_auth_cookie_parse((const char *)d.data, d.len, &nl, &t, &mac, &ml) == DV_OK) {
            const char *end = (const char *)d.data + d.len;
            if (nl > d.len || mac < (const char *)d.data || mac + ml != end || memchr(d.data, ':', nl))
                abort();
        }
    }
    buf_free(&d);
}

static void roundtrip(const char *s, size_t n)
{
    if (n < 8)
        return;
    uint64_t t;
    memcpy(&t, s, 8);
    t &= 0xffffffffffffULL;
    char *name = strndup(s + 8, n - 8);
    if (!name || !*name || strchr(name, ':')) {
        free(name);
        return;
    }
    char *v = http_auth_cookie_value("secret", name, "salt", t);
    if (!v)
        abort();
    buf_t d = BUF_INIT;
    size_t nl, ml;
    uint64_t t2;
    const char *mac;
    if (http_auth_cookie_decode(v, strlen(v), &d) != DV_OK ||
        http_auth_cookie_parse((const char *)d.data, d.len, &nl, &t2, &mac, &ml) != DV_OK || nl != strlen(name) ||
        memcmp(d.data, name, nl) != 0 || t2 != t || ml != 20)
        abort();
    buf_free(&d);
    free(v);
    free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0:
        basic(s, n);
        break;
    case 1:
        cookie_header(s, n);
        break;
    case 2:
        cookie_value(s, n);
        break;
    default:
        roundtrip(s, n);
        break;
    }
    return 0;
}
