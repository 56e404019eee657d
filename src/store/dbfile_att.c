/*
 * dbfile_att.c — revision body records, attachment chunk streams,
 * compression and attachment digests.
 *
 * Body record (one store_file record per stored revision):
 *   u8 version (1) | varint natts | natts × attachment entry |
 *   u8 codec (0 none, 1 lz4, 2 zstd) | varint raw_len | body bytes
 * The attachment list comes first so that size accounting and stub lookups
 * can read it without decompressing the body.
 * Attachment entry: bytes name | bytes type | u8 has_encoding | bytes
 *   encoding | varint length | varint decoded_length | bytes digest |
 *   varint revpos | varint stream.off | varint stream.size | varint disk
 *   (disk = bytes the stream occupies in the file, for sizes.active).
 *
 * Attachment stream: chunk records of at most 64 KiB of data, each
 *   u8 codec | bytes (compressed only when that saves >= 1/8), then an
 *   index.  Up to 1024 chunks (64 MiB) the index is one flat record:
 *   u8 1 | varint length | varint nchunks | nchunks × (varint off |
 *   varint size | varint raw_len).  Bigger streams write each run of 1024
 *   entries as a part record (u8 3 | varint n | entries) and index those:
 *   u8 2 | varint length | varint nparts | nparts × (varint off | varint
 *   size | varint raw_len | varint nchunks), so a ranged read touches the
 *   top record and one part, whatever the attachment's size.
 * A stub shares its parent's stream (same index pointer): never copied.
 *
 * Invariant: nothing decoded here is trusted.  Lengths are checked against
 * the record they came from, decompression is bounded by raw_len and must
 * produce exactly raw_len bytes; any mismatch is DV_ERR_CORRUPT, logged.
 */
#include "store/dbfile_int.h"

#include "base/log.h"
#include "base/status.h"

#include <lz4.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define BODY_VERSION 1
#define STREAM_VERSION 1      /* flat index: the chunk list itself */
#define STREAM_VERSION_2 2    /* two-level: a list of part records */
#define STREAM_PART_VERSION 3 /* a part record: up to dbf_att_part_chunks chunks */
#define MAX_RAW (1ull << 31) /* bodies and chunks decoded above this are refused */

void store_docbody_init(store_docbody *b)
{
    buf_init(&b->body);
    b->atts = NULL;
    b->natts = 0;
}

static void att_free(store_att *a)
{
    free(a->name);
    free(a->type);
    free(a->encoding);
    memset(a, 0, sizeof *a);
}

void store_docbody_free(store_docbody *b)
{
    buf_free(&b->body);
    for (size_t i = 0; i < b->natts; i++)
        att_free(&b->atts[i]);
    free(b->atts);
    b->atts = NULL;
    b->natts = 0;
}

void dbf_atts_free(dbf_att *atts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        att_free(&atts[i].a);
    free(atts);
}

static char *dupn(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

int dbf_att_dup(const store_att *src, store_att *dst)
{
    *dst = *src;
    dst->name = dupn(src->name, strlen(src->name));
    dst->type = dupn(src->type ? src->type : "", src->type ? strlen(src->type) : 0);
    dst->encoding = src->encoding ? dupn(src->encoding, strlen(src->encoding)) : NULL;
    if (!dst->name || !dst->type || (src->encoding && !dst->encoding)) {
        att_free(dst);
        return DV_ERR_NOMEM;
    }
    return DV_OK;
}

void dbf_md5_digest(const uint8_t *data, size_t len, char out[64])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, revtree_md5(), NULL);
    memcpy(out, "md5-", 4);
    EVP_EncodeBlock((unsigned char *)out + 4, md, (int)mdlen); /* 24 chars + NUL */
}

/* ---- compression ----------------------------------------------------- */

/* Compression contexts, one per thread that compresses (the writer of each
 * database, compaction), made on first use and freed when the thread ends.
 * LZ4_compress_default clears a 16 KiB state on every call and ZSTD_compress
 * builds a context: per 1 KiB body that was more work than compressing it.
 * After LZ4_resetStream_fast a stream holds no dictionary, so each body is
 * still an independent block that LZ4_decompress_safe reads alone. */
typedef struct codec_ctx {
    LZ4_stream_t *lz4;
    ZSTD_CCtx *zstd;
} codec_ctx;

static pthread_key_t codec_key;
static pthread_once_t codec_once = PTHREAD_ONCE_INIT;
static int codec_key_ok;

static void codec_free(void *p)
{
    codec_ctx *c = p;
    if (c->lz4)
        LZ4_freeStream(c->lz4);
    ZSTD_freeCCtx(c->zstd);
    free(c);
}

static void codec_key_init(void) { codec_key_ok = pthread_key_create(&codec_key, codec_free) == 0; }

/* The calling thread's context, NULL when out of memory (the caller then
 * compresses without one). */
static codec_ctx *codec_get(void)
{
    pthread_once(&codec_once, codec_key_init);
    if (!codec_key_ok)
        return NULL;
    codec_ctx *c = pthread_getspecific(codec_key);
    if (!c && (c = calloc(1, sizeof *c)) && pthread_setspecific(codec_key, c) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

static int compress_lz4(const uint8_t *p, size_t n, uint8_t *dst, size_t bound)
{
    codec_ctx *c = codec_get();
    if (c && !c->lz4)
        c->lz4 = LZ4_createStream();
    if (!c || !c->lz4)
        return LZ4_compress_default((const char *)p, (char *)dst, (int)n, (int)bound);
    LZ4_resetStream_fast(c->lz4);
    return LZ4_compress_fast_continue(c->lz4, (const char *)p, (char *)dst, (int)n, (int)bound, 1);
}

static size_t compress_zstd(const uint8_t *p, size_t n, uint8_t *dst, size_t bound)
{
    codec_ctx *c = codec_get();
    if (c && !c->zstd)
        c->zstd = ZSTD_createCCtx();
    if (!c || !c->zstd)
        return ZSTD_compress(dst, bound, p, n, 1);
    return ZSTD_compressCCtx(c->zstd, dst, bound, p, n, 1);
}

/* Appends codec tag, raw length and (maybe compressed) bytes to out.  Keeps
 * the compressed form only when it saves at least an eighth: decompression
 * is not free and incompressible data (images, gzip) would only grow. */
static int put_compressed(buf_t *out, int compression, const uint8_t *p, size_t n)
{
    int rc;
    if (compression != STORE_COMPRESS_NONE && n >= 64 && n < MAX_RAW) {
        size_t bound = compression == STORE_COMPRESS_LZ4 ? (size_t)LZ4_compressBound((int)n) : ZSTD_compressBound(n);
        size_t at = out->len;
        rc = buf_reserve(out, 11 + bound); /* tag, varint, bytes: one allocation */
        if (!rc)
            rc = buf_append_byte(out, (uint8_t)compression);
        if (!rc)
            rc = buf_put_varint(out, n);
        if (rc)
            return rc;
        uint8_t *dst = out->data + out->len;
        size_t cn = 0;
        if (compression == STORE_COMPRESS_LZ4) {
            int r = compress_lz4(p, n, dst, bound);
            cn = r > 0 ? (size_t)r : 0;
        } else {
            size_t r = compress_zstd(p, n, dst, bound);
            cn = ZSTD_isError(r) ? 0 : r;
        }
        if (cn && cn <= n - n / 8) {
            out->len += cn;
            return DV_OK;
        }
        out->len = at;
    }
    rc = buf_append_byte(out, STORE_COMPRESS_NONE);
    if (!rc)
        rc = buf_put_varint(out, n);
    if (!rc)
        rc = buf_append(out, p, n);
    return rc;
}

/* Decodes codec | raw_len | bytes (the rest of r) into out (appended). */
static int get_compressed(buf_reader *r, buf_t *out)
{
    uint8_t codec;
    uint64_t raw;
    int rc = buf_get_u8(r, &codec);
    if (!rc)
        rc = buf_get_varint(r, &raw);
    if (rc)
        return rc;
    const uint8_t *p = r->p;
    size_t n = buf_reader_left(r);
    r->p = r->end;
    if (raw > MAX_RAW)
        return DV_ERR_CORRUPT;
    if (codec == STORE_COMPRESS_NONE)
        return raw == n ? buf_append(out, p, n) : DV_ERR_CORRUPT;
    if (codec != STORE_COMPRESS_LZ4 && codec != STORE_COMPRESS_ZSTD)
        return DV_ERR_CORRUPT;
    rc = buf_reserve(out, raw + 1);
    if (rc)
        return rc;
    uint8_t *dst = out->data + out->len;
    if (codec == STORE_COMPRESS_LZ4) {
        if (n > INT32_MAX)
            return DV_ERR_CORRUPT;
        int got = LZ4_decompress_safe((const char *)p, (char *)dst, (int)n, (int)raw);
        if (got < 0 || (uint64_t)got != raw)
            return DV_ERR_CORRUPT;
    } else {
        size_t got = ZSTD_decompress(dst, raw, p, n);
        if (ZSTD_isError(got) || got != raw)
            return DV_ERR_CORRUPT;
    }
    out->len += raw;
    return DV_OK;
}

/* ---- body records ---------------------------------------------------- */

static int put_str(buf_t *b, const char *s)
{
    return buf_put_bytes(b, s ? s : "", s ? strlen(s) : 0);
}

int dbf_body_compress(int compression, const uint8_t *body, size_t len, buf_t *out)
{
    return put_compressed(out, compression, body, len);
}

int dbf_body_write(store_file *f, int compression, const uint8_t *body, size_t len, const buf_t *z,
                   const dbf_att *atts, size_t natts, store_ptr *out)
{
    buf_t b = BUF_INIT;
    /* Sized for the common case (no attachments, body already compressed)
     * so that the record is built in one allocation, not five doublings. */
    int rc = buf_reserve(&b, 16 + (z && z->len ? z->len : len + 11));
    if (!rc)
        rc = buf_append_byte(&b, BODY_VERSION);
    if (!rc)
        rc = buf_put_varint(&b, natts);
    for (size_t i = 0; i < natts && !rc; i++) {
        const store_att *a = &atts[i].a;
        rc = put_str(&b, a->name);
        if (!rc)
            rc = put_str(&b, a->type);
        if (!rc)
            rc = buf_append_byte(&b, a->encoding ? 1 : 0);
        if (!rc)
            rc = put_str(&b, a->encoding);
        if (!rc)
            rc = buf_put_varint(&b, a->length);
        if (!rc)
            rc = buf_put_varint(&b, a->decoded_length);
        if (!rc)
            rc = put_str(&b, a->digest);
        if (!rc)
            rc = buf_put_varint(&b, a->revpos);
        if (!rc)
            rc = buf_put_varint(&b, a->stream.off);
        if (!rc)
            rc = buf_put_varint(&b, a->stream.size);
        if (!rc)
            rc = buf_put_varint(&b, atts[i].disk);
    }
    if (!rc)
        rc = z && z->len ? buf_append(&b, z->data, z->len) : put_compressed(&b, compression, body, len);
    if (!rc)
        rc = store_file_append(f, b.data, b.len, out);
    buf_free(&b);
    return rc;
}

static int get_str(buf_reader *r, char **out)
{
    const uint8_t *p;
    size_t n;
    int rc = buf_get_bytes(r, &p, &n);
    if (rc)
        return rc;
    if (memchr(p, 0, n))
        return DV_ERR_CORRUPT;
    *out = dupn(p, n);
    return *out ? DV_OK : DV_ERR_NOMEM;
}

/* dbf_body_decode, and with ztail: the codec section as stored (codec |
 * raw_len | bytes) appended to ztail instead of decoded into body. */
static int body_decode(const uint8_t *p, size_t n, buf_t *body, buf_t *ztail, dbf_att **atts_out,
                       size_t *natts_out)
{
    buf_reader r;
    uint8_t ver, has_enc;
    uint64_t natts = 0, v;
    dbf_att *atts = NULL;
    size_t i = 0;
    buf_reader_init(&r, p, n);
    int rc = buf_get_u8(&r, &ver);
    if (!rc && ver != BODY_VERSION)
        rc = DV_ERR_CORRUPT;
    if (!rc)
        rc = buf_get_varint(&r, &natts);
    if (!rc && natts > buf_reader_left(&r))
        rc = DV_ERR_CORRUPT;
    if (rc)
        goto fail;
    /* Most revisions have no attachments: no allocation for them. */
    if (natts && !(atts = calloc(natts, sizeof *atts))) {
        rc = DV_ERR_NOMEM;
        goto fail;
    }
    for (i = 0; i < natts; i++) {
        store_att *a = &atts[i].a;
        char *dig = NULL;
        rc = get_str(&r, &a->name);
        if (!rc)
            rc = get_str(&r, &a->type);
        if (!rc)
            rc = buf_get_u8(&r, &has_enc);
        if (!rc)
            rc = get_str(&r, &a->encoding);
        if (!rc && !has_enc) {
            free(a->encoding);
            a->encoding = NULL;
        }
        if (!rc)
            rc = buf_get_varint(&r, &a->length);
        if (!rc)
            rc = buf_get_varint(&r, &a->decoded_length);
        if (!rc)
            rc = get_str(&r, &dig);
        if (!rc && strlen(dig) >= sizeof a->digest)
            rc = DV_ERR_CORRUPT;
        if (!rc)
            strcpy(a->digest, dig);
        free(dig);
        if (!rc)
            rc = buf_get_varint(&r, &a->revpos);
        if (!rc)
            rc = buf_get_varint(&r, &a->stream.off);
        if (!rc)
            rc = buf_get_varint(&r, &v);
        if (!rc && v > UINT32_MAX)
            rc = DV_ERR_CORRUPT;
        a->stream.size = (uint32_t)v;
        if (!rc)
            rc = buf_get_varint(&r, &atts[i].disk);
        if (rc) {
            i++;
            goto fail;
        }
    }
    if (body) {
        buf_reset(body);
        rc = get_compressed(&r, body);
        if (rc)
            goto fail;
    }
    if (ztail) {
        if (!buf_reader_left(&r) || *r.p > STORE_COMPRESS_ZSTD) {
            rc = DV_ERR_CORRUPT;
            goto fail;
        }
        rc = buf_append(ztail, r.p, buf_reader_left(&r));
        if (rc)
            goto fail;
    }
    if (atts_out) {
        *atts_out = atts;
        *natts_out = natts;
    } else {
        dbf_atts_free(atts, natts);
    }
    return DV_OK;
fail:
    dbf_atts_free(atts, i);
    return rc == DV_ERR_NOMEM ? rc : DV_ERR_CORRUPT;
}

int dbf_body_decode(const uint8_t *p, size_t n, buf_t *body, dbf_att **atts, size_t *natts)
{
    return body_decode(p, n, body, NULL, atts, natts);
}

static int body_read(store_file *f, store_ptr ptr, buf_t *body, buf_t *ztail, dbf_att **atts, size_t *natts)
{
    buf_t rec = BUF_INIT;
    const uint8_t *p;
    int rc = store_file_read_ref(f, ptr, &rec, &p);
    if (!rc) {
        rc = body_decode(p, ptr.size, body, ztail, atts, natts);
        if (rc == DV_ERR_CORRUPT)
            log_error("dbfile: %s: bad body record at offset %llu", store_file_path(f), (unsigned long long)ptr.off);
    }
    buf_free(&rec);
    return rc;
}

int dbf_body_read(store_file *f, store_ptr ptr, buf_t *body, dbf_att **atts, size_t *natts)
{
    return body_read(f, ptr, body, NULL, atts, natts);
}

int dbf_body_read_stored(store_file *f, store_ptr ptr, buf_t *ztail, dbf_att **atts, size_t *natts)
{
    buf_reset(ztail);
    return body_read(f, ptr, NULL, ztail, atts, natts);
}

int store_snap_read_body(const store_snap *s, store_ptr body, store_docbody *out)
{
    dbf_att *atts = NULL;
    size_t n = 0;
    if (store_ptr_is_null(body))
        return DV_ERR_NOTFOUND;
    int rc = dbf_body_read(s->fr->file, body, &out->body, &atts, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < out->natts; i++)
        att_free(&out->atts[i]);
    free(out->atts);
    out->atts = NULL;
    out->natts = 0;
    if (n == 0)
        return DV_OK;
    out->atts = calloc(n, sizeof *out->atts);
    if (!out->atts) {
        dbf_atts_free(atts, n);
        return DV_ERR_NOMEM;
    }
    /* Move the entries: the strings change owner, not copied. */
    for (size_t i = 0; i < n; i++)
        out->atts[i] = atts[i].a;
    out->natts = n;
    free(atts);
    return DV_OK;
}

/* ---- attachment streams --------------------------------------------- */

size_t dbf_att_part_chunks = 1024;

typedef struct stream_chunk {
    store_ptr p;
    uint64_t raw;
} stream_chunk;

/* Builds a stream index as chunks are appended: entries go to the current
 * part; a full part is written as its own record and named in the top
 * list.  A stream that never filled a part gets a flat (v1) index. */
typedef struct idx_builder {
    buf_t part;  /* entries of the current part */
    size_t npart;
    uint64_t part_raw;
    buf_t top;   /* v2 entries: off | size | raw | nchunks */
    size_t ntop;
    uint64_t total, disk;
} idx_builder;

static int put_chunk_entry(buf_t *b, store_ptr p, uint64_t raw)
{
    int rc = buf_put_varint(b, p.off);
    if (!rc)
        rc = buf_put_varint(b, p.size);
    if (!rc)
        rc = buf_put_varint(b, raw);
    return rc;
}

static int builder_flush_part(store_file *f, idx_builder *b)
{
    buf_t rec = BUF_INIT;
    store_ptr p;
    int rc = buf_append_byte(&rec, STREAM_PART_VERSION);
    if (!rc)
        rc = buf_put_varint(&rec, b->npart);
    if (!rc)
        rc = buf_append(&rec, b->part.data, b->part.len);
    if (!rc)
        rc = store_file_append(f, rec.data, rec.len, &p);
    if (!rc)
        rc = put_chunk_entry(&b->top, p, b->part_raw);
    if (!rc)
        rc = buf_put_varint(&b->top, b->npart);
    buf_free(&rec);
    if (!rc) {
        b->disk += p.size + DBF_REC_OVERHEAD;
        b->ntop++;
        buf_reset(&b->part);
        b->npart = 0;
        b->part_raw = 0;
    }
    return rc;
}

static int builder_add(store_file *f, idx_builder *b, store_ptr p, uint64_t raw)
{
    int rc = put_chunk_entry(&b->part, p, raw);
    if (rc)
        return rc;
    b->npart++;
    b->part_raw += raw;
    b->total += raw;
    b->disk += p.size + DBF_REC_OVERHEAD;
    return b->npart >= dbf_att_part_chunks ? builder_flush_part(f, b) : DV_OK;
}

static int builder_finish(store_file *f, idx_builder *b, dbf_att *out)
{
    buf_t rec = BUF_INIT;
    int rc = DV_OK;
    if (b->ntop && b->npart)
        rc = builder_flush_part(f, b);
    if (!rc)
        rc = buf_append_byte(&rec, b->ntop ? STREAM_VERSION_2 : STREAM_VERSION);
    if (!rc)
        rc = buf_put_varint(&rec, b->total);
    if (!rc)
        rc = buf_put_varint(&rec, b->ntop ? b->ntop : b->npart);
    if (!rc)
        rc = b->ntop ? buf_append(&rec, b->top.data, b->top.len) : buf_append(&rec, b->part.data, b->part.len);
    if (!rc)
        rc = store_file_append(f, rec.data, rec.len, &out->a.stream);
    if (!rc) {
        out->disk = b->disk + out->a.stream.size + DBF_REC_OVERHEAD;
        out->a.length = b->total;
    }
    buf_free(&rec);
    buf_free(&b->part);
    buf_free(&b->top);
    return rc;
}

int dbf_att_write(store_file *f, int compression, int try_compress, const uint8_t *data, size_t len, dbf_att *out)
{
    idx_builder b;
    buf_t chunk = BUF_INIT;
    int rc = DV_OK;
    memset(&b, 0, sizeof b);
    for (size_t off = 0; off < len && !rc; off += DBF_CHUNK) {
        size_t n = len - off < DBF_CHUNK ? len - off : DBF_CHUNK;
        store_ptr p;
        buf_reset(&chunk);
        rc = put_compressed(&chunk, try_compress ? compression : STORE_COMPRESS_NONE, data + off, n);
        if (!rc)
            rc = store_file_append(f, chunk.data, chunk.len, &p);
        if (!rc)
            rc = builder_add(f, &b, p, n);
    }
    buf_free(&chunk);
    if (rc) {
        buf_free(&b.part);
        buf_free(&b.top);
        return rc;
    }
    return builder_finish(f, &b, out);
}

/* Calls fn for every chunk overlapping [from, to) with the chunk's start
 * offset in the data.  Reads the top index and only the parts that
 * overlap, so a ranged read of a huge attachment costs O(part), not
 * O(whole index).  Lengths must add up at every level. */
typedef int (*chunk_fn)(void *ctx, store_file *f, const stream_chunk *c, uint64_t pos);

static int get_chunk_entry(buf_reader *r, stream_chunk *c)
{
    uint64_t v = 0;
    int rc = buf_get_varint(r, &c->p.off);
    if (!rc)
        rc = buf_get_varint(r, &v);
    if (!rc)
        rc = buf_get_varint(r, &c->raw);
    if (!rc && (v > UINT32_MAX || c->p.off == 0 || c->raw == 0))
        rc = DV_ERR_CORRUPT;
    c->p.size = (uint32_t)v;
    return rc;
}

/* Walks n chunk entries of r starting at data offset pos. */
static int walk_chunks(buf_reader *r, uint64_t n, uint64_t pos, uint64_t from, uint64_t to, store_file *f,
                       chunk_fn fn, void *ctx, uint64_t *sum)
{
    uint64_t start = pos;
    for (uint64_t i = 0; i < n; i++) {
        stream_chunk c;
        int rc = get_chunk_entry(r, &c);
        if (!rc && c.raw > DBF_CHUNK)
            rc = DV_ERR_CORRUPT;
        if (rc)
            return rc;
        if (pos < to && pos + c.raw > from) {
            rc = fn(ctx, f, &c, pos);
            if (rc)
                return rc;
        }
        pos += c.raw;
    }
    *sum = pos - start;
    return buf_reader_left(r) ? DV_ERR_CORRUPT : DV_OK;
}

static int stream_walk(store_file *f, store_ptr idx, uint64_t from, uint64_t to, uint64_t *total, chunk_fn fn,
                       void *ctx)
{
    buf_t rec = BUF_INIT, part = BUF_INIT;
    buf_reader r;
    uint8_t ver;
    uint64_t n = 0, sum = 0;
    int rc = store_file_read(f, idx, &rec);
    if (rc)
        goto done;
    buf_reader_init(&r, rec.data, rec.len);
    rc = buf_get_u8(&r, &ver);
    if (!rc && ver != STREAM_VERSION && ver != STREAM_VERSION_2)
        rc = DV_ERR_CORRUPT;
    if (!rc)
        rc = buf_get_varint(&r, total);
    if (!rc)
        rc = buf_get_varint(&r, &n);
    if (!rc && n > buf_reader_left(&r) / 3)
        rc = DV_ERR_CORRUPT;
    if (rc)
        goto done;
    if (to > *total)
        to = *total;
    if (ver == STREAM_VERSION) {
        rc = walk_chunks(&r, n, 0, from, to, f, fn, ctx, &sum);
    } else {
        uint64_t pos = 0;
        for (uint64_t i = 0; i < n && !rc; i++) {
            stream_chunk pc;
            uint64_t pn, psum = 0;
            uint8_t pver;
            buf_reader pr;
            rc = get_chunk_entry(&r, &pc);
            if (!rc)
                rc = buf_get_varint(&r, &pn);
            if (rc)
                break;
            if (pos < to && pos + pc.raw > from) {
                rc = store_file_read(f, pc.p, &part);
                if (rc)
                    break;
                buf_reader_init(&pr, part.data, part.len);
                uint64_t got = 0;
                rc = buf_get_u8(&pr, &pver);
                if (!rc)
                    rc = buf_get_varint(&pr, &got);
                if (!rc && (pver != STREAM_PART_VERSION || got != pn))
                    rc = DV_ERR_CORRUPT;
                if (!rc)
                    rc = walk_chunks(&pr, pn, pos, from, to, f, fn, ctx, &psum);
                if (!rc && psum != pc.raw)
                    rc = DV_ERR_CORRUPT;
            }
            pos += pc.raw;
        }
        sum = pos;
        if (!rc && buf_reader_left(&r))
            rc = DV_ERR_CORRUPT;
    }
    if (!rc && sum != *total)
        rc = DV_ERR_CORRUPT;
done:
    if (rc == DV_ERR_CORRUPT)
        log_error("dbfile: %s: bad attachment index at offset %llu", store_file_path(f), (unsigned long long)idx.off);
    buf_free(&rec);
    buf_free(&part);
    return rc;
}

static int chunk_read(store_file *f, const stream_chunk *c, buf_t *rec, buf_t *out)
{
    buf_reader r;
    size_t before = out->len;
    int rc = store_file_read(f, c->p, rec);
    if (rc)
        return rc;
    buf_reader_init(&r, rec->data, rec->len);
    rc = get_compressed(&r, out);
    if (!rc && out->len - before != c->raw)
        rc = DV_ERR_CORRUPT;
    if (rc == DV_ERR_CORRUPT)
        log_error("dbfile: %s: bad attachment chunk at offset %llu", store_file_path(f), (unsigned long long)c->p.off);
    return rc;
}

typedef struct range_ctx {
    uint64_t off, end;
    buf_t rec, data;
    buf_t *out;
} range_ctx;

static int range_chunk(void *ctx, store_file *f, const stream_chunk *c, uint64_t pos)
{
    range_ctx *r = ctx;
    buf_reset(&r->data);
    int rc = chunk_read(f, c, &r->rec, &r->data);
    if (rc)
        return rc;
    uint64_t from = r->off > pos ? r->off - pos : 0;
    uint64_t to = r->end - pos < c->raw ? r->end - pos : c->raw;
    return buf_append(r->out, r->data.data + from, to - from);
}

int dbf_att_read_range(store_file *f, const store_att *att, uint64_t off, uint64_t len, buf_t *out)
{
    range_ctx r = {off, off + (len > UINT64_MAX - off ? UINT64_MAX - off : len), BUF_INIT, BUF_INIT, out};
    uint64_t total;
    int rc = len ? stream_walk(f, att->stream, off, r.end, &total, range_chunk, &r) : DV_OK;
    buf_free(&r.rec);
    buf_free(&r.data);
    return rc;
}

int store_snap_read_att(const store_snap *s, const store_att *att, uint64_t off, uint64_t len, buf_t *out)
{
    return dbf_att_read_range(s->fr->file, att, off, len, out);
}

typedef struct copy_ctx {
    store_file *to;
    idx_builder b;
    buf_t rec;
} copy_ctx;

/* Chunks are copied as stored (still compressed): no recompression. */
static int copy_chunk(void *ctx, store_file *f, const stream_chunk *c, uint64_t pos)
{
    copy_ctx *cc = ctx;
    store_ptr p;
    int rc = store_file_read(f, c->p, &cc->rec);
    if (!rc)
        rc = store_file_append(cc->to, cc->rec.data, cc->rec.len, &p);
    if (!rc)
        rc = builder_add(cc->to, &cc->b, p, c->raw);
    return rc;
}

int dbf_att_copy(store_file *from, store_file *to, const dbf_att *src, dbf_att *dst)
{
    copy_ctx cc;
    uint64_t total;
    memset(&cc, 0, sizeof cc);
    cc.to = to;
    int rc = stream_walk(from, src->a.stream, 0, UINT64_MAX, &total, copy_chunk, &cc);
    buf_free(&cc.rec);
    if (rc) {
        buf_free(&cc.b.part);
        buf_free(&cc.b.top);
        return rc;
    }
    rc = dbf_att_dup(&src->a, &dst->a);
    if (rc) {
        buf_free(&cc.b.part);
        buf_free(&cc.b.top);
        return rc;
    }
    rc = builder_finish(to, &cc.b, dst);
    if (rc)
        att_free(&dst->a);
    return rc;
}

/* ---- size accounting -------------------------------------------------- */

int dbf_doc_sizes(store_file *f, const uint8_t *id, size_t idlen, const revtree *t, uint64_t noatt_off,
                  uint64_t *active, uint64_t *external)
{
    uint32_t *idx = malloc(sizeof *idx * (t->n ? t->n : 1));
    uint64_t *seen = NULL;
    size_t nseen = 0, capseen = 0;
    uint32_t n = 0;
    uint64_t a = 0, e = 0;
    int rc = DV_ERR_NOMEM;
    if (!idx)
        goto done;
    revtree_leaves(t, idx, &n);
    rc = DV_OK;
    for (uint32_t i = 0; i < n && !rc; i++) {
        const revtree_node *nd = &t->nodes[idx[i]];
        if (!nd->has_body)
            continue;
        e += nd->size;
        a += nd->body.size + DBF_REC_OVERHEAD;
        if (noatt_off && nd->body.off == noatt_off)
            continue; /* the caller wrote it without attachments: nothing to read */
        dbf_att *atts = NULL;
        size_t na = 0;
        rc = dbf_body_read(f, nd->body, NULL, &atts, &na);
        for (size_t j = 0; j < na && !rc; j++) {
            size_t k = 0;
            while (k < nseen && seen[k] != atts[j].a.stream.off)
                k++;
            if (k < nseen)
                continue; /* a stream shared by two leaves counts once */
            if (nseen == capseen) {
                size_t nc = capseen ? capseen * 2 : 8;
                uint64_t *ns = realloc(seen, nc * sizeof *ns);
                if (!ns) {
                    rc = DV_ERR_NOMEM;
                    break;
                }
                seen = ns;
                capseen = nc;
            }
            seen[nseen++] = atts[j].a.stream.off;
            a += atts[j].disk;
        }
        dbf_atts_free(atts, na);
    }
    /* The doc's own entries in by-id and by-seq, approximated by the id
     * and tree sizes (node framing is shared and not tracked). */
    a += 2 * (idlen + 24 + (uint64_t)t->n * 48);
done:
    free(idx);
    free(seen);
    *active = a;
    *external = e;
    return rc;
}
