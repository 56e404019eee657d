/*
 * btree_node.c — decoding, validating and loading B+tree nodes; the root
 * encoding.  Format: see btree_node.h.
 *
 * Nothing read from the file is trusted: every length is bounds-checked,
 * keys must ascend, child pointers must point below the node, counts must
 * add up without overflow, and a loaded node must have the level and count
 * its parent claims.  Any failure is DV_ERR_CORRUPT with a log line naming
 * the file and offset, so a damaged file can neither crash a reader nor send
 * it round a loop (pointers strictly descend the file).
 *
 * Cost: a decode is one pass over the record plus one compare per entry, and
 * one allocation (header + tables + a copy of the record).
 */
#include "store/btree_node.h"

#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <stdlib.h>

static int get_bytes32(buf_reader *r, const uint8_t *base, uint32_t *off, uint32_t *n)
{
    const uint8_t *p;
    size_t len;
    int rc = buf_get_bytes(r, &p, &len);
    if (rc)
        return rc;
    *off = (uint32_t)(p - base);
    *n = (uint32_t)len;
    return DV_OK;
}

bt_node *bt_node_alloc(unsigned level, uint32_t n, size_t raw_len)
{
    size_t ents = sizeof(bt_node) + (size_t)n * sizeof(bt_ent);
    size_t kids = level ? (size_t)n * sizeof(bt_child) : 0;
    size_t mem = ents + kids + raw_len;
    bt_node *nd = malloc(mem);
    if (!nd)
        return NULL;
    atomic_init(&nd->refs, 1);
    nd->level = (uint8_t)level;
    nd->in_cache = 0;
    nd->referenced = 0;
    nd->n = n;
    nd->raw_len = (uint32_t)raw_len;
    nd->count = 0;
    nd->off = 0;
    nd->file = NULL;
    nd->mem = mem;
    nd->prev = nd->next = NULL;
    nd->child = level ? (bt_child *)((uint8_t *)nd + ents) : NULL;
    nd->raw = (uint8_t *)nd + ents + kids;
    return nd;
}

int bt_node_decode(const uint8_t *rec, size_t len, uint64_t off, const store_btree_ops *ops, bt_node **out,
                   const char **why)
{
    bt_node *nd = NULL;
    buf_reader r;
    uint8_t level;
    uint64_t n;
    *out = NULL;
    *why = "truncated header";
    if (len > UINT32_MAX) {
        *why = "record too large";
        return DV_ERR_CORRUPT;
    }
    buf_reader_init(&r, rec, len);
    if (buf_get_u8(&r, &level) || buf_get_varint(&r, &n))
        return DV_ERR_CORRUPT;
    if (level > BT_MAX_LEVEL) {
        *why = "bad level";
        return DV_ERR_CORRUPT;
    }
    /* Every entry takes at least 2 bytes (leaf) or 5 (inner), so n is bounded
     * by the record length before anything is allocated. */
    if (n == 0 || n > buf_reader_left(&r) / (level ? 5 : 2)) {
        *why = "bad entry count";
        return DV_ERR_CORRUPT;
    }
    nd = bt_node_alloc(level, (uint32_t)n, len);
    if (!nd)
        return DV_ERR_NOMEM;
    nd->off = off;
    uint8_t *raw = (uint8_t *)nd->raw;
    memcpy(raw, rec, len);

    buf_reader_init(&r, raw + (len - buf_reader_left(&r)), buf_reader_left(&r));
    uint64_t total = 0;
    for (uint32_t i = 0; i < nd->n; i++) {
        bt_ent *e = &nd->ent[i];
        *why = "truncated entry";
        if (get_bytes32(&r, raw, &e->koff, &e->kn))
            goto fail;
        if (level == 0) {
            if (get_bytes32(&r, raw, &e->voff, &e->vn))
                goto fail;
        } else {
            uint64_t coff, csize, ccount;
            if (buf_get_varint(&r, &coff) || buf_get_varint(&r, &csize) || buf_get_varint(&r, &ccount) ||
                get_bytes32(&r, raw, &e->voff, &e->vn))
                goto fail;
            *why = "child pointer not below its parent";
            if (coff == 0 || coff >= off)
                goto fail;
            *why = "bad child size or count";
            if (csize > UINT32_MAX || ccount == 0 || ccount > UINT64_MAX - total)
                goto fail;
            nd->child[i] = (bt_child){coff, ccount, (uint32_t)csize};
            total += ccount;
        }
        e->prefix = bt_prefix(raw + e->koff, e->kn);
        *why = "keys out of order";
        if (i > 0 && bt_cmp(ops, bt_key(nd, i - 1), bt_key(nd, i)) >= 0)
            goto fail;
    }
    *why = "trailing bytes";
    if (buf_reader_left(&r) != 0)
        goto fail;
    nd->count = level ? total : n;
    *out = nd;
    return DV_OK;
fail:
    free(nd);
    return DV_ERR_CORRUPT;
}

void bt_node_release(bt_node *nd)
{
    if (nd && atomic_fetch_sub_explicit(&nd->refs, 1, memory_order_acq_rel) == 1) {
        assert(!nd->in_cache);
        free(nd);
    }
}

static int corrupt(const store_btree *t, uint64_t off, const char *why)
{
    log_error("btree: corrupt node in %s at offset %llu: %s", store_file_path(t->file), (unsigned long long)off,
              why);
    return DV_ERR_CORRUPT;
}

int bt_node_load(const store_btree *t, store_ptr p, unsigned level, uint64_t count, bt_node **out)
{
    bt_node *nd = NULL;
    buf_t b = BUF_INIT;
    const char *why = NULL;
    int rc;
    *out = NULL;
    if (t->cache)
        nd = bt_cache_lookup(t->cache, t->file, p.off);
    if (!nd) {
        const uint8_t *rec;
        rc = store_file_read_ref(t->file, p, &b, &rec);
        if (rc)
            goto fail;
        rc = bt_node_decode(rec, p.size, p.off, t->ops, &nd, &why);
        if (rc) {
            if (rc == DV_ERR_CORRUPT)
                corrupt(t, p.off, why);
            goto fail;
        }
        nd->file = t->file;
        if (t->cache)
            nd = bt_cache_insert(t->cache, nd);
    }
    /* The parent's claims must match what the node says of itself. */
    if (nd->level != level || nd->count != count || nd->raw_len != p.size) {
        rc = corrupt(t, p.off, nd->level != level ? "level differs from parent's" : "count differs from parent's");
        bt_node_release(nd);
        goto fail;
    }
    buf_free(&b);
    *out = nd;
    return DV_OK;
fail:
    buf_free(&b);
    return rc;
}

int bt_root_parse(const uint8_t *root, size_t len, bt_root *out)
{
    buf_reader r;
    uint64_t height, off, size, count;
    memset(out, 0, sizeof *out);
    if (len == 0)
        return 0;
    buf_reader_init(&r, root, len);
    if (buf_get_varint(&r, &height) || buf_get_varint(&r, &off) || buf_get_varint(&r, &size) ||
        buf_get_varint(&r, &count))
        goto bad;
    if (height > BT_MAX_LEVEL || off == 0 || size > UINT32_MAX || count == 0)
        goto bad;
    out->height = (unsigned)height;
    out->ptr = (store_ptr){off, (uint32_t)size};
    out->count = count;
    out->red = (store_slice){r.p, buf_reader_left(&r)};
    return 1;
bad:
    log_error("btree: malformed root (%zu bytes)", len);
    return DV_ERR_CORRUPT;
}

int bt_root_encode(buf_t *out, unsigned height, store_ptr ptr, uint64_t count, store_slice red)
{
    buf_reset(out);
    int rc = buf_put_varint(out, height);
    if (!rc)
        rc = buf_put_varint(out, ptr.off);
    if (!rc)
        rc = buf_put_varint(out, ptr.size);
    if (!rc)
        rc = buf_put_varint(out, count);
    if (!rc)
        rc = buf_append(out, red.p, red.n);
    return rc;
}

uint64_t store_btree_root_count(const uint8_t *root, size_t len)
{
    bt_root r;
    return bt_root_parse(root, len, &r) == 1 ? r.count : 0;
}

int store_btree_root_reduction(const uint8_t *root, size_t len, store_slice *out)
{
    bt_root r;
    int rc = bt_root_parse(root, len, &r);
    if (rc < 0)
        return rc;
    *out = r.red;
    return DV_OK;
}
