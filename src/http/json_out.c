/*
 * json_out.c — JSON string escaping for responses (temporary, see header).
 *
 * UTF-8 is checked per RFC 3629 (no overlongs, no surrogates, <= U+10FFFF)
 * so bytes decoded from a URL can be echoed back without producing invalid
 * JSON.
 */
#include "http/json_out.h"
#include "base/status.h"

#include <stdint.h>

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_len(const uint8_t *p, size_t left)
{
    uint8_t c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

int http_json_str(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    int rc = buf_append_byte(b, '"');
    size_t i = 0;
    while (rc == DV_OK && i < n) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc = buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *short_esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                                  : c == '\f' ? "\\f" : NULL;
            if (short_esc)
                rc = buf_append(b, short_esc, 2);
            else {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                rc = buf_append(b, esc, 6);
            }
            i++;
        } else {
            size_t l = utf8_len(p + i, n - i);
            if (l == 0) {
                rc = buf_append(b, "\xef\xbf\xbd", 3);
                i++;
            } else {
                rc = buf_append(b, p + i, l);
                i += l;
            }
        }
    }
    if (rc == DV_OK)
        rc = buf_append_byte(b, '"');
    return rc;
}

int http_json_error(buf_t *b, const char *error, const char *reason)
{
    int rc = buf_append_str(b, "{\"error\":");
    if (rc == DV_OK)
        rc = http_json_cstr(b, error);
    if (rc == DV_OK)
        rc = buf_append_str(b, ",\"reason\":");
    if (rc == DV_OK)
        rc = http_json_cstr(b, reason);
    if (rc == DV_OK)
        rc = buf_append_byte(b, '}');
    return rc;
}
