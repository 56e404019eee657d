/*
 * btree_cache.c — the decoded-node cache shared by trees and files.
 *
 * An open-addressing hash table keyed by (store_file *, offset), the keys
 * stored inline so a probe reads one table cache line rather than node
 * headers scattered over the heap, plus a recency list,
 * both under one mutex; eviction keeps the bytes charged (each node's whole
 * allocation) under max_bytes.  Recency is CLOCK-style (second chance): a
 * hit only sets the node's referenced bit, and eviction moves a referenced
 * tail node back to the head instead of dropping it, so the hit path never
 * touches neighbouring nodes' memory.  Nodes are immutable, so the cache never
 * invalidates: it only forgets a file's nodes when the file is closed (a new
 * file could be allocated at the same address).  A modification retires the
 * nodes it rewrote (bt_cache_retire): copy-on-write leaves them to older
 * snapshots only, and kept until CLOCK reached them they filled the cache
 * to its cap under any write load (measured: the HTTP benchmark's server
 * held 64 MiB of nodes for a 100,000-doc database whose live trees decode
 * to far less).
 *
 * Reference counting: a resident node holds one reference owned by the
 * cache; lookups add one for the caller.  Eviction drops the cache's
 * reference, so a node still held by a cursor stays valid and is freed by
 * its last holder.  The hit path is: hash, one short critical section (a
 * probe, the referenced bit, an atomic increment), unlock.
 */
#include "store/btree_node.h"

#include "base/status.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

typedef struct slot_t {
    const store_file *file; /* NULL: empty */
    uint64_t off;
    bt_node *nd;
} slot_t;

struct store_btree_cache {
    pthread_mutex_t mu;
    size_t max_bytes, bytes;
    slot_t *tab;
    size_t mask; /* table size - 1 (a power of two); load kept <= 1/2 */
    size_t count;
    bt_node *head, *tail; /* recency: head = most recent */
};

static size_t hash(const store_btree_cache *c, const store_file *f, uint64_t off)
{
    uint64_t h = (off ^ ((uint64_t)(uintptr_t)f * 0x9e3779b97f4a7c15ULL)) * 0xbf58476d1ce4e5b9ULL;
    return (size_t)(h >> 29) & c->mask;
}

/* Index of (f, off) or of the empty slot where it would go. */
static size_t probe(const store_btree_cache *c, const store_file *f, uint64_t off)
{
    size_t i = hash(c, f, off);
    while (c->tab[i].file && (c->tab[i].off != off || c->tab[i].file != f))
        i = (i + 1) & c->mask;
    return i;
}

int store_btree_cache_new(size_t max_bytes, store_btree_cache **out)
{
    store_btree_cache *c = calloc(1, sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    c->max_bytes = max_bytes;
    c->mask = 255;
    c->tab = calloc(c->mask + 1, sizeof *c->tab);
    if (!c->tab || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->tab);
        free(c);
        return DV_ERR_NOMEM;
    }
    *out = c;
    return DV_OK;
}

static void lru_unlink(store_btree_cache *c, bt_node *nd)
{
    if (nd->prev)
        nd->prev->next = nd->next;
    else
        c->head = nd->next;
    if (nd->next)
        nd->next->prev = nd->prev;
    else
        c->tail = nd->prev;
    nd->prev = nd->next = NULL;
}

static void lru_push_front(store_btree_cache *c, bt_node *nd)
{
    nd->prev = NULL;
    nd->next = c->head;
    if (c->head)
        c->head->prev = nd;
    c->head = nd;
    if (!c->tail)
        c->tail = nd;
}

/* Unlinks nd from table and list; the caller then drops the cache's
 * reference.  Deletion shifts later members of the probe run back so that
 * lookups need no tombstones. */
static void remove_node(store_btree_cache *c, bt_node *nd)
{
    size_t i = probe(c, nd->file, nd->off), j = i;
    assert(c->tab[i].nd == nd);
    for (;;) {
        j = (j + 1) & c->mask;
        if (!c->tab[j].file)
            break;
        size_t home = hash(c, c->tab[j].file, c->tab[j].off);
        /* The entry at j stays if its home lies cyclically in (i, j]. */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        c->tab[i] = c->tab[j];
        i = j;
    }
    c->tab[i] = (slot_t){NULL, 0, NULL};
    lru_unlink(c, nd);
    nd->in_cache = 0;
    c->bytes -= nd->mem;
    c->count--;
}

void store_btree_cache_free(store_btree_cache *c)
{
    if (!c)
        return;
    while (c->head) {
        bt_node *nd = c->head;
        remove_node(c, nd);
        bt_node_release(nd);
    }
    pthread_mutex_destroy(&c->mu);
    free(c->tab);
    free(c);
}

void store_btree_cache_forget(store_btree_cache *c, const store_file *f)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    for (bt_node *nd = c->head, *next; nd; nd = next) {
        next = nd->next;
        if (nd->file == f) {
            remove_node(c, nd);
            bt_node_release(nd);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

bt_node *bt_cache_lookup(store_btree_cache *c, const store_file *f, uint64_t off)
{
    pthread_mutex_lock(&c->mu);
    size_t i = probe(c, f, off);
    bt_node *nd = c->tab[i].file ? c->tab[i].nd : NULL;
    if (nd) {
        atomic_fetch_add_explicit(&nd->refs, 1, memory_order_relaxed);
        nd->referenced = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return nd;
}

size_t store_btree_cache_bytes(store_btree_cache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->bytes;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void bt_cache_retire(store_btree_cache *c, bt_node *nd)
{
    pthread_mutex_lock(&c->mu);
    int drop = nd->in_cache; /* a node is only ever in the cache of the tree that loaded it */
    if (drop)
        remove_node(c, nd);
    pthread_mutex_unlock(&c->mu);
    if (drop)
        bt_node_release(nd); /* the cache's reference; the caller still holds one */
}

/* Doubles the table when it passes half full.  A failed allocation keeps
 * the old table: probes get longer, and insertion declines (the node is
 * handed out uncached) rather than fill it past three quarters. */
static void maybe_grow(store_btree_cache *c)
{
    if (c->count * 2 <= c->mask + 1)
        return;
    size_t osize = c->mask + 1, nsize = osize * 2;
    slot_t *ntab = calloc(nsize, sizeof *ntab);
    if (!ntab)
        return;
    slot_t *old = c->tab;
    c->tab = ntab;
    c->mask = nsize - 1;
    for (size_t i = 0; i < osize; i++)
        if (old[i].file)
            c->tab[probe(c, old[i].file, old[i].off)] = old[i];
    free(old);
}

bt_node *bt_cache_insert(store_btree_cache *c, bt_node *nd)
{
    assert(nd->file && !nd->in_cache);
    if (nd->mem > c->max_bytes)
        return nd; /* would evict everything: hand it out uncached */
    pthread_mutex_lock(&c->mu);
    size_t i = probe(c, nd->file, nd->off);
    if (c->tab[i].file) {
        /* Another reader decoded the same node first: share its copy. */
        bt_node *cur = c->tab[i].nd;
        atomic_fetch_add_explicit(&cur->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&c->mu);
        bt_node_release(nd);
        return cur;
    }
    if ((c->count + 1) * 4 > (c->mask + 1) * 3) {
        pthread_mutex_unlock(&c->mu); /* table could not grow: stay uncached */
        return nd;
    }
    atomic_fetch_add_explicit(&nd->refs, 1, memory_order_relaxed); /* the cache's */
    nd->in_cache = 1;
    c->tab[i] = (slot_t){nd->file, nd->off, nd};
    lru_push_front(c, nd);
    c->bytes += nd->mem;
    c->count++;
    /* Each pass either evicts or clears a referenced bit, so this ends. */
    while (c->bytes > c->max_bytes && c->tail && c->tail != nd) {
        bt_node *victim = c->tail;
        if (victim->referenced) {
            victim->referenced = 0;
            lru_unlink(c, victim);
            lru_push_front(c, victim);
            continue;
        }
        remove_node(c, victim);
        bt_node_release(victim);
    }
    maybe_grow(c);
    pthread_mutex_unlock(&c->mu);
    return nd;
}
