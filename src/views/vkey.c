/*
 * vkey.c — view tree keys: encoding and the B+tree order (see vkey.h).
 *
 * The compare is on the hot path of every index update and range query: it
 * decodes the two headers in place (no allocation) and hands the key texts
 * to the collation.  Only PREFIX_HIGH bounds (group_level queries) parse
 * JSON, and only for the one comparison against the bound.
 */
#include "views/vkey.h"

#include "base/status.h"
#include "json/collate.h"
#include "json/json.h"

#include <string.h>

int vkey_encode(int kind, const void *key, size_t keylen, const void *id, size_t idlen, buf_t *out)
{
    int rc = buf_append_byte(out, (uint8_t)kind);
    if (rc == DV_OK)
        rc = buf_put_bytes(out, key, keylen);
    if (rc == DV_OK && idlen)
        rc = buf_append(out, id, idlen);
    return rc;
}

int vkey_decode(store_slice k, vkey *out)
{
    buf_reader r;
    uint8_t kind;
    buf_reader_init(&r, k.p, k.n);
    if (buf_get_u8(&r, &kind) != DV_OK || kind > VKEY_PREFIX_HIGH)
        return DV_ERR_CORRUPT;
    const uint8_t *p;
    size_t n;
    if (buf_get_bytes(&r, &p, &n) != DV_OK)
        return DV_ERR_CORRUPT;
    out->kind = kind;
    out->key = (store_slice){p, n};
    out->id = (store_slice){r.p, buf_reader_left(&r)};
    return DV_OK;
}

int vkey_collate(const void *a, size_t an, const void *b, size_t bn, int raw)
{
    return raw ? json_collate_text_raw(a, an, b, bn) : json_collate_text(a, an, b, bn);
}

/* Whether JSON text `a` is an array whose first elements collate equal to
 * every element of the array `prefix`.  Parses both: only group_level
 * bounds get here. */
static int starts_with(store_slice a, store_slice prefix, int raw)
{
    json_doc da = JSON_DOC_INIT, dp = JSON_DOC_INIT;
    int yes = 0;
    if (json_doc_parse(&da, a.p, a.n, 0, NULL) != DV_OK || json_doc_parse(&dp, prefix.p, prefix.n, 0, NULL) != DV_OK)
        goto done;
    const json_val *va = json_doc_root(&da), *vp = json_doc_root(&dp);
    if (!json_is_array(va) || !json_is_array(vp) || json_len(va) < json_len(vp))
        goto done;
    json_iter ia = json_iter_begin(va), ip = json_iter_begin(vp);
    const json_val *xa, *xp;
    yes = 1;
    while (yes && json_iter_elem(&ip, &xp) && json_iter_elem(&ia, &xa))
        yes = (raw ? json_collate_raw(xa, xp) : json_collate(xa, xp)) == 0;
done:
    json_doc_free(&da);
    json_doc_free(&dp);
    return yes;
}

int vkey_compare(void *ctx, store_slice a, store_slice b)
{
    int raw = ctx != NULL;
    vkey ka, kb;
    /* Undecodable keys never reach a tree (we wrote them); order them by
     * bytes rather than crash if one does. */
    if (vkey_decode(a, &ka) != DV_OK || vkey_decode(b, &kb) != DV_OK) {
        int c = memcmp(a.p, b.p, a.n < b.n ? a.n : b.n);
        return c ? c : (a.n > b.n) - (a.n < b.n);
    }
    if (kb.kind == VKEY_PREFIX_HIGH || ka.kind == VKEY_PREFIX_HIGH) {
        if (ka.kind == kb.kind)
            return vkey_collate(ka.key.p, ka.key.n, kb.key.p, kb.key.n, raw);
        int flip = ka.kind == VKEY_PREFIX_HIGH;
        vkey *row = flip ? &kb : &ka, *bound = flip ? &ka : &kb;
        int c = starts_with(row->key, bound->key, raw) ? -1
                                                       : vkey_collate(row->key.p, row->key.n, bound->key.p, bound->key.n, raw);
        if (c == 0)
            c = -1; /* equal to the prefix itself: still below its high bound */
        return flip ? -c : c;
    }
    int c = vkey_collate(ka.key.p, ka.key.n, kb.key.p, kb.key.n, raw);
    if (c)
        return c;
    if (ka.kind != kb.kind)
        return ka.kind - kb.kind;
    c = memcmp(ka.id.p, kb.id.p, ka.id.n < kb.id.n ? ka.id.n : kb.id.n);
    return c ? c : (ka.id.n > kb.id.n) - (ka.id.n < kb.id.n);
}
