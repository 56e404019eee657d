/*
 * buf.h — growable byte buffer and little-endian/varint encoding helpers.
 *
 * Every on-disk structure in divan is encoded into a buf_t and decoded from a
 * (pointer, length) slice with a bounds-checked reader, so that a truncated or
 * corrupted record yields DV_ERR_CORRUPT instead of a read past the end.
 *
 * Invariant: data[0..len) is initialised; cap >= len; data is NULL iff cap == 0.
 */
#ifndef DV_BASE_BUF_H
#define DV_BASE_BUF_H

#include "base/status.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

void buf_init(buf_t *b);
void buf_free(buf_t *b);                       /* releases memory, resets to empty */
static inline void buf_reset(buf_t *b) { b->len = 0; } /* keeps capacity */
int buf_grow(buf_t *b, size_t extra);          /* buf_reserve's slow path: reallocates */
int buf_append_str(buf_t *b, const char *s);

/* The fast paths are inline: when the capacity is there, reserving is one
 * compare and appending a byte one store.  As calls they cost ~75
 * instructions each, and a stored document went through ~50 of them (JSON
 * punctuation, varints, record headers).  cap - len cannot wrap (cap >= len),
 * and extra <= cap - len means len + extra cannot overflow. */
static inline int buf_reserve(buf_t *b, size_t extra) /* ensures cap >= len + extra */
{
    return extra <= b->cap - b->len ? DV_OK : buf_grow(b, extra);
}

static inline int buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return DV_OK;
    if (n > b->cap - b->len) {
        int rc = buf_grow(b, n);
        if (rc)
            return rc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return DV_OK;
}

static inline int buf_append_byte(buf_t *b, uint8_t c)
{
    if (b->len == b->cap) {
        int rc = buf_grow(b, 1);
        if (rc)
            return rc;
    }
    b->data[b->len++] = c;
    return DV_OK;
}
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_put_u16le(buf_t *b, uint16_t v);
int buf_put_u32le(buf_t *b, uint32_t v);
int buf_put_u64le(buf_t *b, uint64_t v);
int buf_put_varint(buf_t *b, uint64_t v);      /* LEB128, at most 10 bytes */
int buf_put_bytes(buf_t *b, const void *p, size_t n); /* varint length + bytes */
/* Detaches the memory: caller owns *out (free()), buffer becomes empty. */
uint8_t *buf_steal(buf_t *b, size_t *len_out);

/* Bounds-checked reader over an immutable slice. Every get returns DV_OK or
 * DV_ERR_CORRUPT (when the slice is too short or a varint is malformed). */
typedef struct buf_reader {
    const uint8_t *p;
    const uint8_t *end;
} buf_reader;

static inline void buf_reader_init(buf_reader *r, const void *p, size_t n)
{
    r->p = (const uint8_t *)p;
    r->end = n ? r->p + n : r->p; /* p may be NULL when n is 0: no arithmetic on it */
}
static inline size_t buf_reader_left(const buf_reader *r) { return (size_t)(r->end - r->p); }
int buf_get_u8(buf_reader *r, uint8_t *v);
int buf_get_u16le(buf_reader *r, uint16_t *v);
int buf_get_u32le(buf_reader *r, uint32_t *v);
int buf_get_u64le(buf_reader *r, uint64_t *v);
int buf_get_varint(buf_reader *r, uint64_t *v);
/* Points *p into the slice (no copy); *n is the varint-prefixed length. */
int buf_get_bytes(buf_reader *r, const uint8_t **p, size_t *n);
int buf_get_raw(buf_reader *r, size_t n, const uint8_t **p);

static inline void dv_store_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t dv_load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void dv_store_u64le(uint8_t *p, uint64_t v)
{
    dv_store_u32le(p, (uint32_t)v); dv_store_u32le(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t dv_load_u64le(const uint8_t *p)
{
    return (uint64_t)dv_load_u32le(p) | (uint64_t)dv_load_u32le(p + 4) << 32;
}

#endif
