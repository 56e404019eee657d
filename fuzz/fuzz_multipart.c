/*
 * fuzz_multipart.c — libFuzzer target for the MIME helpers behind
 * attachments and multipart documents (http/mime.c) and the attachment
 * codec's pure parts (db/att_codec.c).
 *
 * Input: byte 0 picks the boundary length (1..32), the next bytes are the
 * boundary, the rest is a multipart body; the same rest, as a C string, is
 * also fed to the header parsers (parameters, Accept, Accept-Encoding,
 * Range, compressible types).  Checked on every input: parts lie inside
 * the input in order, no body holds the delimiter, every header block
 * line has a name, a range is inside the entity and ordered, a split
 * failure leaves no parts behind.  ASan catches any overrun.
 */
#include "base/buf.h"
#include "base/status.h"
#include "db/att_codec.h"
#include "http/mime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_split(const uint8_t *body, size_t n, const char *b, size_t blen)
{
    mime_parts ps = MIME_PARTS_INIT;
    const char *why = NULL;
    int rc = mime_split(body, n, b, blen, &ps, &why);
    if (rc != DV_OK) {
        if (rc != DV_ERR_INVALID || ps.n || ps.v || !why)
            abort();
        return;
    }
    char delim[MIME_BOUNDARY_MAX + 4] = "\r\n--";
    memcpy(delim + 4, b, blen);
    const uint8_t *prev = body;
    for (size_t i = 0; i < ps.n; i++) {
        const mime_part *pt = &ps.v[i];
        if (pt->head < prev || pt->head + pt->head_len > body + n || pt->body < pt->head + pt->head_len ||
            pt->body + pt->body_len > body + n)
            abort();
        if (memmem(pt->body, pt->body_len, delim, blen + 4))
            abort();
        prev = pt->body + pt->body_len;
        const char *v;
        size_t vl;
        if (mime_part_header(pt, "content-disposition", &v, &vl)) {
            char out[64];
            size_t ol;
            if ((const uint8_t *)v < pt->head || (const uint8_t *)v + vl > pt->head + pt->head_len)
                abort();
            (void)mime_param(v, vl, "filename", out, sizeof out, &ol);
        }
        if (mime_part_header(pt, "content-type", &v, &vl))
            (void)mime_type_is(v, vl, "application/json");
    }
    mime_parts_free(&ps);
}

static void check_headers(const char *s, size_t n)
{
    char out[MIME_BOUNDARY_MAX + 1];
    size_t ol;
    int rc = mime_param(s, n, "boundary", out, sizeof out, &ol);
    if (rc == 1 && (ol >= sizeof out || out[ol] != 0))
        abort();
    (void)mime_accepts(s, "multipart/related");
    (void)mime_accepts_encoding(s, "gzip");
    (void)db_att_type_compressible(s, "text/plain; charset=utf-8");
    (void)db_att_type_compressible(DB_ATT_COMPRESSIBLE_DEFAULT, s);
    mime_range r[MIME_RANGES_MAX];
    size_t nr = 0;
    uint64_t len = n * 3;
    int kind = mime_range_parse(s, len, r, &nr);
    if (kind == MIME_RANGE_PARTIAL) {
        if (nr == 0 || nr > MIME_RANGES_MAX)
            abort();
        for (size_t i = 0; i < nr; i++)
            if (r[i].from > r[i].to || r[i].to >= len)
                abort();
    } else if (nr != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t blen = 1 + data[0] % 32;
    if (size < 1 + blen)
        return 0;
    char b[33];
    memcpy(b, data + 1, blen);
    b[blen] = 0;
    const uint8_t *body = data + 1 + blen;
    size_t n = size - 1 - blen;
    check_split(body, n, b, blen);
    char *s = malloc(n + 1);
    if (!s)
        return 0;
    memcpy(s, body, n);
    s[n] = 0;
    check_headers(s, strlen(s));
    uint64_t dl;
    (void)db_gunzip_size(body, n, &dl);
    free(s);
    return 0;
}
