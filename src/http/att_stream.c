/*
 * att_stream.c — streamed answers of framing text and attachment bytes
 * (see att_stream.h).
 *
 * Invariant: pieces[cur] is the piece being sent and pos the bytes of it
 * already sent; text pieces index into `text`, which only grows until the
 * next reset.  Decoding keeps one zlib inflater and one raw window alive
 * across fills, so a gzip attachment of any size inflates in 64 KiB steps.
 */
#include "http/att_stream.h"
#include "base/digest.h"

#include "base/log.h"
#include "base/status.h"

#include <h2o.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct piece {
    long att;          /* index into body.atts, or -1 for text */
    uint64_t off, len; /* text: offset in `text`; att: first byte */
    int decode;
} piece;

struct att_stream {
    db_t *db;
    store_snap *snap;
    store_docbody body;
    buf_t text;
    piece *pieces;
    size_t npieces, cap, cur;
    uint64_t pos;
    /* decoding state of the current piece */
    int z_live;
    z_stream z;
    buf_t raw;
    uint64_t raw_off;
    att_stream_more_fn more;
    void *more_arg;
    void (*free_arg)(void *);
};

att_stream *att_stream_new(db_t *db, store_snap *snap)
{
    att_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->db = db;
    s->snap = snap;
    store_docbody_init(&s->body);
    return s;
}

static void z_done(att_stream *s)
{
    if (s->z_live)
        inflateEnd(&s->z);
    s->z_live = 0;
}

void att_stream_free(att_stream *s)
{
    if (!s)
        return;
    z_done(s);
    if (s->free_arg)
        s->free_arg(s->more_arg);
    store_docbody_free(&s->body);
    buf_free(&s->text);
    buf_free(&s->raw);
    free(s->pieces);
    if (s->snap)
        store_snap_release(s->snap);
    if (s->db)
        db_release(s->db);
    free(s);
}

db_t *att_stream_db(att_stream *s) { return s->db; }
store_snap *att_stream_snap(att_stream *s) { return s->snap; }
store_docbody *att_stream_body(att_stream *s) { return &s->body; }

static int push(att_stream *s, piece p)
{
    if (p.len == 0)
        return DV_OK;
    if (s->npieces == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        piece *v = realloc(s->pieces, cap * sizeof *v);
        if (!v)
            return DV_ERR_NOMEM;
        s->pieces = v;
        s->cap = cap;
    }
    s->pieces[s->npieces++] = p;
    return DV_OK;
}

int att_stream_text(att_stream *s, const void *p, size_t n)
{
    size_t off = s->text.len;
    int rc = buf_append(&s->text, p, n);
    return rc ? rc : push(s, (piece){-1, off, n, 0});
}

int att_stream_printf(att_stream *s, const char *fmt, ...)
{
    va_list ap;
    char small[512];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return DV_ERR_INVALID;
    if ((size_t)n < sizeof small)
        return att_stream_text(s, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return DV_ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = att_stream_text(s, big, (size_t)n);
    free(big);
    return rc;
}

int att_stream_header_text(att_stream *s, const void *p, size_t n)
{
    const char *c = p;
    size_t i = 0;
    int rc = DV_OK;
    while (i < n && rc == DV_OK) {
        size_t j = i;
        while (j < n && c[j] != '\r' && c[j] != '\n')
            j++;
        if (j > i)
            rc = att_stream_text(s, c + i, j - i);
        if (rc == DV_OK && j < n)
            rc = att_stream_text(s, " ", 1);
        i = j + 1;
    }
    return rc;
}

int att_stream_att(att_stream *s, size_t att, uint64_t from, uint64_t len, int decode)
{
    if (att >= s->body.natts)
        return DV_ERR_INVALID;
    return push(s, (piece){(long)att, from, len, decode});
}

uint64_t att_stream_length(const att_stream *s)
{
    uint64_t n = 0;
    for (size_t i = s->cur; i < s->npieces; i++)
        n += s->pieces[i].len;
    return n - s->pos;
}

void att_stream_reset(att_stream *s)
{
    z_done(s);
    buf_reset(&s->text);
    s->npieces = s->cur = 0;
    s->pos = 0;
}

void att_stream_set_more(att_stream *s, att_stream_more_fn fn, void *arg, void (*free_arg)(void *))
{
    s->more = fn;
    s->more_arg = arg;
    s->free_arg = free_arg;
}

/* Appends the next n inflated bytes of attachment a to out, reading the
 * stored bytes one window at a time.  The inflated stream must hold at
 * least the identity length the piece promised (DV_ERR_CORRUPT if not). */
static int inflate_some(att_stream *s, const store_att *a, size_t n, buf_t *out)
{
    int rc;
    if (!s->z_live) {
        memset(&s->z, 0, sizeof s->z);
        if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
            return DV_ERR_NOMEM;
        s->z_live = 1;
        s->raw_off = 0;
    }
    if ((rc = buf_reserve(out, n)) != DV_OK)
        return rc;
    s->z.next_out = out->data + out->len;
    s->z.avail_out = (uInt)n;
    while (s->z.avail_out) {
        if (s->z.avail_in == 0) {
            if (s->raw_off >= a->length)
                return DV_ERR_CORRUPT;
            buf_reset(&s->raw);
            if ((rc = store_snap_read_att(s->snap, a, s->raw_off, ATT_STREAM_CHUNK, &s->raw)) != DV_OK)
                return rc;
            if (s->raw.len == 0)
                return DV_ERR_CORRUPT;
            s->raw_off += s->raw.len;
            s->z.next_in = s->raw.data;
            s->z.avail_in = (uInt)s->raw.len;
        }
        int zr = inflate(&s->z, Z_NO_FLUSH);
        if (zr == Z_STREAM_END && s->z.avail_out)
            return DV_ERR_CORRUPT; /* shorter than its identity length */
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            return DV_ERR_CORRUPT;
    }
    out->len += n;
    return DV_OK;
}

static int fill(http_req_t *r, void *ctx, buf_t *out)
{
    att_stream *s = ctx;
    (void)r;
    while (out->len < ATT_STREAM_CHUNK) {
        if (s->cur == s->npieces) {
            if (!s->more)
                return HTTP_STREAM_DONE;
            int rc = s->more(s, s->more_arg);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                s->more = NULL;
                return HTTP_STREAM_DONE;
            }
            continue;
        }
        const piece *p = &s->pieces[s->cur];
        uint64_t left = p->len - s->pos, room = ATT_STREAM_CHUNK - out->len;
        size_t n = (size_t)(left < room ? left : room);
        int rc;
        if (p->att < 0) {
            rc = buf_append(out, s->text.data + p->off + s->pos, n);
        } else if (p->decode) {
            rc = inflate_some(s, &s->body.atts[p->att], n, out);
        } else {
            size_t before = out->len;
            rc = store_snap_read_att(s->snap, &s->body.atts[p->att], p->off + s->pos, n, out);
            if (rc == DV_OK && out->len - before != n)
                rc = DV_ERR_CORRUPT; /* the stream is shorter than its entry says */
        }
        if (rc != DV_OK)
            return rc;
        s->pos += n;
        if (s->pos == p->len) {
            if (p->decode)
                z_done(s);
            s->cur++;
            s->pos = 0;
        }
    }
    return HTTP_STREAM_MORE;
}

static void dispose(void *ctx)
{
    att_stream_free(ctx);
}

void att_stream_send(http_req_t *r, int status, att_stream *s, int with_length)
{
    if (with_length)
        ((h2o_req_t *)r->h2o)->res.content_length = att_stream_length(s);
    http_stream_start(r, status, fill, dispose, s);
}

void att_stream_boundary(char out[33])
{
    if (dv_random_hex(out, 16) == DV_OK)
        return;
    /* No entropy: any unlikely string will do for a boundary. */
    uint64_t t = (uint64_t)(uintptr_t)out ^ (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
    uint8_t b[16];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (uint8_t)(t >> (8 * (i % 8))) ^ (uint8_t)i;
    dv_hex_lower(b, sizeof b, out);
}
