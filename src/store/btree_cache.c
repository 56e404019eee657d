/*
 * btree_cache.c — the decoded-node cache shared by trees and files.
 *
 * A chained hash table keyed by (store_file *, offset) plus an LRU list,
 * both under one mutex; eviction keeps the bytes charged (each node's whole
 * allocation) under max_bytes.  Nodes are immutable, so the cache never
 * invalidates: it only forgets a file's nodes when the file is closed (a new
 * file could be allocated at the same address).
 *
 * Reference counting: a resident node holds one reference owned by the
 * cache; lookups add one for the caller.  Eviction drops the cache's
 * reference, so a node still held by a cursor stays valid and is freed by
 * its last holder.  The hit path is: hash, one short critical section (chain
 * walk, LRU move, atomic increment), unlock.
 */
#include "store/btree_node.h"

#include "base/status.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

struct store_btree_cache {
    pthread_mutex_t mu;
    size_t max_bytes, bytes;
    bt_node **tab;
    size_t mask; /* table size - 1 (a power of two) */
    size_t count;
    bt_node *head, *tail; /* LRU: head = most recently used */
};

static size_t slot(const store_btree_cache *c, const store_file *f, uint64_t off)
{
    uint64_t h = (off ^ ((uint64_t)(uintptr_t)f * 0x9e3779b97f4a7c15ULL)) * 0xbf58476d1ce4e5b9ULL;
    return (size_t)(h >> 32) & c->mask;
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

/* Unlinks nd from table and list; returns the cache's reference to drop
 * (outside or inside the lock: bt_node_release never takes it). */
static void remove_node(store_btree_cache *c, bt_node *nd)
{
    bt_node **pp = &c->tab[slot(c, nd->file, nd->off)];
    while (*pp != nd)
        pp = &(*pp)->hnext;
    *pp = nd->hnext;
    nd->hnext = NULL;
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
    bt_node *nd = c->tab[slot(c, f, off)];
    while (nd && (nd->off != off || nd->file != f))
        nd = nd->hnext;
    if (nd) {
        atomic_fetch_add_explicit(&nd->refs, 1, memory_order_relaxed);
        if (c->head != nd) {
            lru_unlink(c, nd);
            lru_push_front(c, nd);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return nd;
}

/* Doubles the table when chains would grow past one node on average.  A
 * failed allocation just keeps the old table (longer chains, still correct). */
static void maybe_grow(store_btree_cache *c)
{
    if (c->count <= c->mask + 1)
        return;
    size_t nsize = (c->mask + 1) * 2;
    bt_node **ntab = calloc(nsize, sizeof *ntab);
    if (!ntab)
        return;
    bt_node **old = c->tab;
    size_t osize = c->mask + 1;
    c->tab = ntab;
    c->mask = nsize - 1;
    for (size_t i = 0; i < osize; i++) {
        for (bt_node *nd = old[i], *next; nd; nd = next) {
            next = nd->hnext;
            size_t s = slot(c, nd->file, nd->off);
            nd->hnext = ntab[s];
            ntab[s] = nd;
        }
    }
    free(old);
}

bt_node *bt_cache_insert(store_btree_cache *c, bt_node *nd)
{
    assert(nd->file && !nd->in_cache);
    if (nd->mem > c->max_bytes)
        return nd; /* would evict everything: hand it out uncached */
    pthread_mutex_lock(&c->mu);
    size_t s = slot(c, nd->file, nd->off);
    bt_node *cur = c->tab[s];
    while (cur && (cur->off != nd->off || cur->file != nd->file))
        cur = cur->hnext;
    if (cur) {
        /* Another reader decoded the same node first: share its copy. */
        atomic_fetch_add_explicit(&cur->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&c->mu);
        bt_node_release(nd);
        return cur;
    }
    atomic_fetch_add_explicit(&nd->refs, 1, memory_order_relaxed); /* the cache's */
    nd->in_cache = 1;
    nd->hnext = c->tab[s];
    c->tab[s] = nd;
    lru_push_front(c, nd);
    c->bytes += nd->mem;
    c->count++;
    while (c->bytes > c->max_bytes && c->tail && c->tail != nd) {
        bt_node *victim = c->tail;
        remove_node(c, victim);
        bt_node_release(victim);
    }
    maybe_grow(c);
    pthread_mutex_unlock(&c->mu);
    return nd;
}
