/*
 * vkey.h — keys and values of a view's B+trees.
 *
 * View tree key:  u8 kind | varint(len) | key JSON | doc id
 *   kind 1 is a stored row.  Range bounds use kind 0 ("before every doc id
 *   of this key"), kind 2 ("after every doc id of this key") and kind 3
 *   ("after every array key that starts with this prefix": the key JSON is
 *   an array prefix, for group_level).  Order: the keys by CouchDB
 *   collation (or raw order), then kind, then doc id bytes (kind 1 only).
 * View tree value:  u8 tag | payload
 *   tag 0: one value, its JSON text; tag 1: duplicates (a doc emitting one
 *   key several times, as CouchDB's {dups, [...]}) as varint count then
 *   varint-prefixed JSON texts.
 * By-doc tree:  doc id → the keys the doc emitted in this view, each
 *   varint-prefixed JSON (so an update or deletion can remove its old rows).
 *
 * Key JSON is minified (as serialised by json/'s writer), so equal keys
 * have equal bytes only when they collate equal and are written the same;
 * the compare never relies on byte equality of keys.
 */
#ifndef DV_VIEWS_VKEY_H
#define DV_VIEWS_VKEY_H

#include "base/buf.h"
#include "store/btree.h"

#include <stddef.h>
#include <stdint.h>

enum { VKEY_LOW = 0, VKEY_ROW = 1, VKEY_HIGH = 2, VKEY_PREFIX_HIGH = 3 };

typedef struct vkey {
    int kind;
    store_slice key; /* JSON text */
    store_slice id;  /* doc id (kind 1) */
} vkey;

int vkey_encode(int kind, const void *key, size_t keylen, const void *id, size_t idlen, buf_t *out);
/* DV_ERR_CORRUPT when k is not a view key. */
int vkey_decode(store_slice k, vkey *out);

/* The B+tree compare for view keys: ctx is non-NULL for raw collation. */
int vkey_compare(void *ctx, store_slice a, store_slice b);

/* Collation of two JSON texts (CouchDB's view order, or raw order). */
int vkey_collate(const void *a, size_t an, const void *b, size_t bn, int raw);

#endif
