/*
 * buf.c — growable buffers and the bounds-checked reader.
 *
 * Growth doubles capacity, so appending N bytes costs O(N) amortised.  The
 * append and reserve fast paths are inline in buf.h; only growth is here.
 */
#include "base/buf.h"
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_free(buf_t *b)
{
    free(b->data);
    buf_init(b);
}

int buf_grow(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return DV_ERR_NOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return DV_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return DV_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return DV_OK;
}

int buf_append_str(buf_t *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return DV_ERR_INVALID;
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return DV_OK;
}

int buf_put_u16le(buf_t *b, uint16_t v)
{
    uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return buf_append(b, t, 2);
}

int buf_put_u32le(buf_t *b, uint32_t v)
{
    uint8_t t[4];
    dv_store_u32le(t, v);
    return buf_append(b, t, 4);
}

int buf_put_u64le(buf_t *b, uint64_t v)
{
    uint8_t t[8];
    dv_store_u64le(t, v);
    return buf_append(b, t, 8);
}

int buf_put_varint(buf_t *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        t[n++] = c | (v ? 0x80 : 0);
    } while (v);
    return buf_append(b, t, n);
}

int buf_put_bytes(buf_t *b, const void *p, size_t n)
{
    int rc = buf_put_varint(b, n);
    return rc ? rc : buf_append(b, p, n);
}

uint8_t *buf_steal(buf_t *b, size_t *len_out)
{
    uint8_t *p = b->data;
    if (len_out)
        *len_out = b->len;
    buf_init(b);
    return p;
}

int buf_get_u8(buf_reader *r, uint8_t *v)
{
    if (r->p >= r->end)
        return DV_ERR_CORRUPT;
    *v = *r->p++;
    return DV_OK;
}

int buf_get_u16le(buf_reader *r, uint16_t *v)
{
    if (buf_reader_left(r) < 2)
        return DV_ERR_CORRUPT;
    *v = (uint16_t)(r->p[0] | r->p[1] << 8);
    r->p += 2;
    return DV_OK;
}

int buf_get_u32le(buf_reader *r, uint32_t *v)
{
    if (buf_reader_left(r) < 4)
        return DV_ERR_CORRUPT;
    *v = dv_load_u32le(r->p);
    r->p += 4;
    return DV_OK;
}

int buf_get_u64le(buf_reader *r, uint64_t *v)
{
    if (buf_reader_left(r) < 8)
        return DV_ERR_CORRUPT;
    *v = dv_load_u64le(r->p);
    r->p += 8;
    return DV_OK;
}

int buf_get_varint(buf_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            return DV_ERR_CORRUPT;
        uint8_t c = *r->p++;
        if (shift == 63 && (c & 0x7e))
            return DV_ERR_CORRUPT; /* would overflow 64 bits */
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return DV_OK;
        }
    }
    return DV_ERR_CORRUPT;
}

int buf_get_raw(buf_reader *r, size_t n, const uint8_t **p)
{
    if (buf_reader_left(r) < n)
        return DV_ERR_CORRUPT;
    *p = r->p;
    r->p += n;
    return DV_OK;
}

int buf_get_bytes(buf_reader *r, const uint8_t **p, size_t *n)
{
    uint64_t len;
    int rc = buf_get_varint(r, &len);
    if (rc)
        return rc;
    if (len > buf_reader_left(r))
        return DV_ERR_CORRUPT;
    *n = (size_t)len;
    return buf_get_raw(r, (size_t)len, p);
}
