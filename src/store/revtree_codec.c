/*
 * revtree_codec.c — revision ids (parse, format, order, MD5 rev ids) and the
 * on-disk encoding of a revision tree.
 *
 * Encoding (version 1), nodes in tree order (sorted by pos, then id):
 *   u8 version | varint n | n × node
 *   node: u8 flags | varint pos delta (absolute for the first node)
 *         | [varint own index - parent index, unless NODE_ROOT]
 *         | id: 16 raw bytes if NODE_HEXID, else u8 len + bytes
 *         | [varint body.off, varint body.size, if NODE_BODY]
 *         | varint seq | varint size
 * Rev ids divan makes are 32 lowercase hex digits; storing them as 16 bytes
 * halves the dominant part of a tree's size.  The encoding is canonical
 * (decode rejects a text id that should have been NODE_HEXID, overlong
 * varints and any node out of order), so a decoded tree re-encodes to the
 * same bytes.
 *
 * Decode trusts nothing: every count is bounded by the bytes left, every
 * parent must precede its child with pos = parent pos + 1, revs must be
 * strictly increasing (hence unique), ids well formed.  Any violation is
 * DV_ERR_CORRUPT; the caller knows the file and offset and logs it.
 */
#include "store/revtree.h"

#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define REVTREE_FORMAT 1

enum {
    NODE_DELETED = 1,
    NODE_HAS_BODY = 2,
    NODE_HEXID = 4,
    NODE_ROOT = 8,
    NODE_BODY = 16,
    NODE_FLAGS_ALL = 31,
};

/* ------------------------------------------------------------------ */
/* Revision ids                                                         */

int store_rev_id_valid(const char *id, size_t n)
{
    if (n == 0 || n > STORE_REV_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)id[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            return 0;
    }
    return 1;
}

int store_rev_parse(const char *s, size_t n, store_rev *out)
{
    size_t i = 0;
    uint64_t pos = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        unsigned d = (unsigned)(s[i] - '0');
        if (pos > (UINT64_MAX - d) / 10)
            return DV_ERR_INVALID;
        pos = pos * 10 + d;
        i++;
    }
    if (i == 0 || pos == 0 || i >= n || s[i] != '-')
        return DV_ERR_INVALID;
    i++;
    if (!store_rev_id_valid(s + i, n - i))
        return DV_ERR_INVALID;
    out->pos = pos;
    out->len = (uint8_t)(n - i);
    memset(out->id, 0, sizeof out->id);
    memcpy(out->id, s + i, n - i);
    return DV_OK;
}

int store_rev_format(const store_rev *r, buf_t *out)
{
    int rc = buf_printf(out, "%llu-", (unsigned long long)r->pos);
    if (rc != DV_OK)
        return rc;
    return buf_append(out, r->id, r->len);
}

int store_rev_equal(const store_rev *a, const store_rev *b)
{
    return a->pos == b->pos && a->len == b->len && memcmp(a->id, b->id, a->len) == 0;
}

int store_rev_cmp(const store_rev *a, const store_rev *b)
{
    if (a->pos != b->pos)
        return a->pos > b->pos ? 1 : -1;
    int c = memcmp(a->id, b->id, a->len < b->len ? a->len : b->len);
    if (c != 0)
        return c > 0 ? 1 : -1;
    return (a->len > b->len) - (a->len < b->len);
}

static const char hexdig[] = "0123456789abcdef";

/* Digit value + 1 for lowercase hex digits, 0 for every other byte. */
static const uint8_t hexv[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* Packs a 32-lowercase-hex-digit id into 16 bytes; 0 when the id has
 * another form.  Table-driven and branch-free: rev ids are random hex, so
 * a digit-or-letter branch would mispredict half the time. */
static int pack_hex_id(const store_rev *r, uint8_t raw[16])
{
    if (r->len != 32)
        return 0;
    unsigned miss = 0;
    for (int k = 0; k < 16; k++) {
        unsigned hi = hexv[(unsigned char)r->id[2 * k]] - 1u;
        unsigned lo = hexv[(unsigned char)r->id[2 * k + 1]] - 1u;
        miss |= (hi | lo) >> 4; /* nonzero when either byte was not a digit */
        raw[k] = (uint8_t)(hi << 4 | (lo & 15));
    }
    return miss == 0;
}

static EVP_MD *md5_fetched;
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;

static void md5_fetch(void) { md5_fetched = EVP_MD_fetch(NULL, "MD5", NULL); }

/* A digest context per thread that computes rev ids, kept for the thread's
 * life: EVP_MD_CTX_new and _free (an allocation, a cleanse) per document
 * were ~15% of hashing a 1 KiB body. */
static pthread_key_t md5_ctx_key;
static pthread_once_t md5_ctx_once = PTHREAD_ONCE_INIT;
static int md5_ctx_key_ok;

static void md5_ctx_free(void *p) { EVP_MD_CTX_free(p); }
static void md5_ctx_key_init(void) { md5_ctx_key_ok = pthread_key_create(&md5_ctx_key, md5_ctx_free) == 0; }

/* The calling thread's context; *owned set when it is a fresh one the caller
 * must free (no thread key, or it could not be stored). */
static EVP_MD_CTX *md5_ctx_get(int *owned)
{
    pthread_once(&md5_ctx_once, md5_ctx_key_init);
    EVP_MD_CTX *ctx = md5_ctx_key_ok ? pthread_getspecific(md5_ctx_key) : NULL;
    *owned = 0;
    if (ctx)
        return ctx;
    if (!(ctx = EVP_MD_CTX_new()))
        return NULL;
    if (!md5_ctx_key_ok || pthread_setspecific(md5_ctx_key, ctx) != 0)
        *owned = 1;
    return ctx;
}

const struct evp_md_st *revtree_md5(void)
{
    /* OpenSSL 3 looks the legacy EVP_md5() up in its provider on every
     * EVP_DigestInit_ex: about as many instructions as hashing a 1 KiB body.
     * Fetched once here and kept for the life of the process. */
    pthread_once(&md5_once, md5_fetch);
    return md5_fetched ? md5_fetched : EVP_md5();
}

void revtree_compute_rev_id(int deleted, const store_rev *parent, const uint8_t *body, size_t body_len,
                            const char *const *att_digests, size_t n_atts, char out[33])
{
    /* Every variable-length field is length-prefixed so that no two
     * different edits feed MD5 the same byte string.  The fixed fields go
     * in as one update: deleted (u8), has parent (u8), [parent pos (u64le),
     * id length (u8), id], body length (u64le), as they always did. */
    uint8_t hdr[1 + 1 + 8 + 1 + STORE_REV_ID_MAX + 8];
    size_t hn = 0;
    hdr[hn++] = deleted ? 1 : 0;
    hdr[hn++] = parent ? 1 : 0;
    if (parent) {
        size_t idlen = parent->len <= STORE_REV_ID_MAX ? parent->len : STORE_REV_ID_MAX;
        dv_store_u64le(hdr + hn, parent->pos);
        hn += 8;
        hdr[hn++] = parent->len;
        memcpy(hdr + hn, parent->id, idlen);
        hn += idlen;
    }
    dv_store_u64le(hdr + hn, body_len);
    hn += 8;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int owned;
    EVP_MD_CTX *ctx = md5_ctx_get(&owned);
    int ok = ctx && EVP_DigestInit_ex(ctx, revtree_md5(), NULL) == 1;
    ok = ok && EVP_DigestUpdate(ctx, hdr, hn) == 1;
    ok = ok && (body_len == 0 || EVP_DigestUpdate(ctx, body, body_len) == 1);
    for (size_t i = 0; i < n_atts; i++) {
        size_t len = strlen(att_digests[i]);
        dv_store_u64le(hdr, len);
        ok = ok && EVP_DigestUpdate(ctx, hdr, 8) == 1;
        ok = ok && EVP_DigestUpdate(ctx, att_digests[i], len) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 16;
    if (owned)
        EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* Only an allocation failure inside libcrypto gets here; the
         * signature has no error path and a wrong rev id would silently
         * break replication, so stop. */
        log_error("revtree: MD5 computation failed");
        abort();
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hexdig[md[i] >> 4];
        out[2 * i + 1] = hexdig[md[i] & 15];
    }
    out[32] = '\0';
}

/* ------------------------------------------------------------------ */
/* Tree encoding                                                        */

/* LEB128 into a scratch buffer; returns the new end. */
static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Largest encoded node: flags, pos, parent, id (1 + 64), body pointer,
 * seq, size.  Each node is built in a stack buffer and appended once, so
 * encoding costs one bounds check per node rather than one per field. */
#define NODE_MAX_BYTES (1 + 10 + 5 + 1 + STORE_REV_ID_MAX + 10 + 5 + 10 + 10)

int revtree_encode(const revtree *t, buf_t *out)
{
    uint8_t node[NODE_MAX_BYTES];
    uint8_t *p = put_varint(node + 1, t->n);
    node[0] = REVTREE_FORMAT;
    int rc = buf_append(out, node, (size_t)(p - node));
    uint64_t prev_pos = 0;
    for (uint32_t i = 0; i < t->n && rc == DV_OK; i++) {
        const revtree_node *nd = &t->nodes[i];
        uint8_t raw[16];
        int hex = pack_hex_id(&nd->rev, raw);
        int body = nd->body.off != 0 || nd->body.size != 0;
        node[0] = (uint8_t)((nd->deleted ? NODE_DELETED : 0) | (nd->has_body ? NODE_HAS_BODY : 0) |
                            (hex ? NODE_HEXID : 0) | (nd->parent == REVTREE_NONE ? NODE_ROOT : 0) |
                            (body ? NODE_BODY : 0));
        p = put_varint(node + 1, nd->rev.pos - prev_pos);
        prev_pos = nd->rev.pos;
        if (nd->parent != REVTREE_NONE)
            p = put_varint(p, i - nd->parent);
        if (hex) {
            memcpy(p, raw, sizeof raw);
            p += sizeof raw;
        } else {
            *p++ = nd->rev.len;
            memcpy(p, nd->rev.id, nd->rev.len);
            p += nd->rev.len;
        }
        if (body) {
            p = put_varint(p, nd->body.off);
            p = put_varint(p, nd->body.size);
        }
        p = put_varint(p, nd->seq);
        p = put_varint(p, nd->size);
        assert((size_t)(p - node) <= sizeof node);
        rc = buf_append(out, node, (size_t)(p - node));
    }
    return rc;
}

/* Smallest encoded node: flags, pos delta, parent or nothing, 1-byte id
 * length + 1 byte, seq, size.  Bounds n before anything is allocated. */
#define NODE_MIN_BYTES 6
#define REVTREE_MAX_NODES (1u << 24)

/* A varint in its shortest form only: an overlong one (a trailing 0x00
 * group) would decode to a tree that re-encodes to other bytes. */
static int get_varint(buf_reader *r, uint64_t *v)
{
    const uint8_t *start = r->p;
    if (buf_get_varint(r, v) != DV_OK)
        return DV_ERR_CORRUPT;
    if (r->p - start > 1 && r->p[-1] == 0)
        return DV_ERR_CORRUPT;
    return DV_OK;
}

static int decode_node(buf_reader *r, const revtree *t, uint32_t i, revtree_node *nd, const char **why)
{
    uint8_t flags, len;
    uint64_t v;
    const uint8_t *raw;
    memset(nd, 0, sizeof *nd);
    if (buf_get_u8(r, &flags) != DV_OK || (flags & ~NODE_FLAGS_ALL))
        return *why = "node flags", DV_ERR_CORRUPT;
    nd->deleted = (flags & NODE_DELETED) != 0;
    nd->has_body = (flags & NODE_HAS_BODY) != 0;
    if (get_varint(r, &v) != DV_OK)
        return *why = "pos", DV_ERR_CORRUPT;
    uint64_t prev = i ? t->nodes[i - 1].rev.pos : 0;
    if (v > UINT64_MAX - prev || prev + v == 0)
        return *why = "pos", DV_ERR_CORRUPT;
    nd->rev.pos = prev + v;
    nd->parent = REVTREE_NONE;
    if (!(flags & NODE_ROOT)) {
        if (get_varint(r, &v) != DV_OK || v == 0 || v > i)
            return *why = "parent index", DV_ERR_CORRUPT;
        nd->parent = i - (uint32_t)v;
        if (t->nodes[nd->parent].rev.pos + 1 != nd->rev.pos)
            return *why = "parent pos", DV_ERR_CORRUPT;
    }
    if (flags & NODE_HEXID) {
        if (buf_get_raw(r, 16, &raw) != DV_OK)
            return *why = "rev id", DV_ERR_CORRUPT;
        for (int k = 0; k < 16; k++) {
            nd->rev.id[2 * k] = hexdig[raw[k] >> 4];
            nd->rev.id[2 * k + 1] = hexdig[raw[k] & 15];
        }
        nd->rev.len = 32;
    } else {
        if (buf_get_u8(r, &len) != DV_OK || buf_get_raw(r, len, &raw) != DV_OK ||
            !store_rev_id_valid((const char *)raw, len))
            return *why = "rev id", DV_ERR_CORRUPT;
        nd->rev.len = len;
        memcpy(nd->rev.id, raw, len);
        uint8_t unused[16];
        if (pack_hex_id(&nd->rev, unused))
            return *why = "non-canonical rev id", DV_ERR_CORRUPT;
    }
    if (i > 0 && store_rev_cmp(&t->nodes[i - 1].rev, &nd->rev) >= 0)
        return *why = "node order", DV_ERR_CORRUPT;
    if (flags & NODE_BODY) {
        if (get_varint(r, &nd->body.off) != DV_OK || get_varint(r, &v) != DV_OK || v > UINT32_MAX ||
            (nd->body.off == 0 && v == 0))
            return *why = "body pointer", DV_ERR_CORRUPT;
        nd->body.size = (uint32_t)v;
    }
    if (get_varint(r, &nd->seq) != DV_OK || get_varint(r, &nd->size) != DV_OK)
        return *why = "seq/size", DV_ERR_CORRUPT;
    return DV_OK;
}

int revtree_decode(revtree *t, const uint8_t *p, size_t n)
{
    buf_reader r;
    buf_reader_init(&r, p, n);
    revtree tmp;
    revtree_init(&tmp);
    const char *why = "header";
    uint8_t version;
    uint64_t count;
    int rc = DV_ERR_CORRUPT;
    if (buf_get_u8(&r, &version) != DV_OK || version != REVTREE_FORMAT || get_varint(&r, &count) != DV_OK ||
        count > REVTREE_MAX_NODES || count > buf_reader_left(&r) / NODE_MIN_BYTES)
        goto fail;
    /* Most trees have a revision or two: those are decoded on the stack and
     * copied into t's own array when it is big enough, so that decoding a
     * doc per read (every GET) allocates nothing once t has grown. */
    revtree_node small[4];
    if (count <= 4) {
        tmp.nodes = small;
        tmp.cap = 4;
    } else {
        tmp.nodes = malloc((size_t)count * sizeof *tmp.nodes);
        if (!tmp.nodes) {
            rc = DV_ERR_NOMEM;
            goto fail;
        }
        tmp.cap = (uint32_t)count;
    }
    for (uint32_t i = 0; i < count; i++) {
        revtree_node nd;
        if (decode_node(&r, &tmp, i, &nd, &why) != DV_OK)
            goto fail;
        tmp.nodes[i] = nd;
        tmp.n = i + 1;
    }
    if (buf_reader_left(&r) != 0) {
        why = "trailing bytes";
        goto fail;
    }
    if (tmp.nodes != small) {
        revtree_free(t);
        *t = tmp;
        return DV_OK;
    }
    if (t->cap < tmp.n) {
        revtree_node *nn = malloc(4 * sizeof *nn);
        if (!nn)
            return DV_ERR_NOMEM;
        revtree_free(t);
        t->nodes = nn;
        t->cap = 4;
    }
    if (tmp.n)
        memcpy(t->nodes, small, tmp.n * sizeof *small);
    t->n = tmp.n;
    return DV_OK;
fail:
    if (rc == DV_ERR_CORRUPT)
        log_debug("revtree: corrupt encoding (%s) at byte %zu of %zu", why, (size_t)(r.p - p), n);
    if (tmp.nodes != small)
        revtree_free(&tmp);
    return rc;
}
