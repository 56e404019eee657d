/*
 * engine.h — the storage benchmark's view of a key-value engine, and the
 * workload every engine is given.
 *
 * bench_store runs the same work against divan's store_dbfile, LMDB and
 * SQLite through this one small vtable, so that the figures differ only by
 * engine.  Keys are document ids (16 lowercase hex digits drawn from a
 * seeded 64-bit mix: random order, as CouchDB's "random" uuids), values are
 * 1 KiB JSON document bodies built from a small vocabulary (lz4 takes one
 * to about 710 bytes, like real documents).
 *
 * Durability is equal by construction: every put_one and put_batch returns
 * only once its transaction is on stable storage (divan
 * STORE_DURABLE_ALWAYS, LMDB's default sync on commit, SQLite WAL with
 * synchronous=FULL).  All functions return DV_OK or a negative DV_ERR_*.
 *
 * Threads: put_one is called concurrently from many threads, each with its
 * own writer context from writer_open; every other call comes from the one
 * thread that opened the engine.
 */
#ifndef DV_BENCH_ENGINE_H
#define DV_BENCH_ENGINE_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

#define BENCH_ID_LEN 16
#define BENCH_DOC_LEN 1024

typedef struct bench_kv {
    const uint8_t *key;
    size_t klen;
    const uint8_t *val;
    size_t vlen;
} bench_kv;

typedef struct bench_engine_ops {
    const char *name;
    /* Opens (creating when missing) a database kept in directory dir. */
    int (*open)(const char *dir, void **h);
    int (*close)(void *h);
    /* Per-thread writer context for put_one (may be h itself). */
    int (*writer_open)(void *h, void **w);
    void (*writer_close)(void *w);
    /* One document in its own durable transaction. */
    int (*put_one)(void *w, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen);
    /* n documents in one durable transaction.  update: the keys exist and
     * are overwritten (divan names the current revision as parent). */
    int (*put_batch)(void *h, const bench_kv *kv, size_t n, int update);
    /* Copies the value of key into out (replacing it); DV_ERR_NOTFOUND. */
    int (*get)(void *h, const uint8_t *key, size_t klen, buf_t *out);
    /* Reads up to nrows rows in key order from the first key >= start,
     * copying each value into scratch; *rows receives the count. */
    int (*scan)(void *h, const uint8_t *start, size_t slen, size_t nrows, buf_t *scratch, size_t *rows);
    /* Rewrites the database keeping only live data, durably; *bytes
     * receives the size of the database on disk afterwards. */
    int (*compact)(void *h, uint64_t *bytes);
    /* Durable commits made since open, for the group-commit factor; NULL
     * when every put_one is its own commit. */
    uint64_t (*commits)(void *h);
} bench_engine_ops;

extern const bench_engine_ops bench_engine_divan;
extern const bench_engine_ops bench_engine_lmdb;
extern const bench_engine_ops bench_engine_sqlite;

/* ---- workload (workload.c) ------------------------------------------ */

/* A 64-bit mix (splitmix64 finaliser): ids and choices are reproducible
 * from the seed. */
uint64_t bench_mix(uint64_t x);
/* Writes the 16-hex-digit id of number n under seed into out. */
void bench_make_id(uint64_t seed, uint64_t n, uint8_t out[BENCH_ID_LEN]);
/* Writes a JSON document body of exactly BENCH_DOC_LEN bytes for number n
 * under seed into out. */
void bench_make_doc(uint64_t seed, uint64_t n, uint8_t out[BENCH_DOC_LEN]);
/* Sum of the sizes of the regular files under dir (the database on disk). */
uint64_t bench_dir_bytes(const char *dir);
/* Removes dir and everything under it (best effort). */
void bench_rmtree(const char *dir);
/* Seconds on the monotonic clock. */
double bench_now(void);

#endif
