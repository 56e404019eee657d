/*
 * dbfile_int.h — internals shared by the files that implement dbfile.h
 * (dbfile.c, dbfile_write.c, dbfile_read.c, dbfile_att.c, compact.c).
 * Nothing outside src/store/dbfile*.c and compact.c includes it.
 *
 * Object graph and lifetimes:
 *   store_dbfile ── cur ──> store_snap (the last committed state)
 *   store_snap   ── fr  ──> dbf_fileref (one open store_file + its trees)
 * A snapshot is a refcounted, immutable decoded header: roots, seqs,
 * security, plus a reference on the fileref it belongs to.  The fileref is
 * closed (and its cache entries forgotten) only when the last snapshot of it
 * is released, so readers of an old snapshot keep reading the old file after
 * a failed-commit reopen or a compaction swap, even once it is unlinked.
 *
 * Locking: db->mu guards cur, fr, the write queue and the writer/compaction
 * handshake flags.  Snapshots are read without locks (immutable); their
 * refcounts are atomic.
 */
#ifndef DV_STORE_DBFILE_INT_H
#define DV_STORE_DBFILE_INT_H

#include "store/dbfile.h"

#include <pthread.h>
#include <stdatomic.h>

#define DBF_FORMAT 1
#define DBF_CHUNK (64 * 1024)      /* attachment chunk size */
#define DBF_REC_OVERHEAD 12        /* store_file record framing: len + checksum */
#define DBF_DEFAULT_REVS_LIMIT 1000
/* Node size of the database's trees.  A commit rewrites every leaf it
 * touches and the path above it: with random doc ids a group of n docs
 * rewrites about n by-id leaves, so the leaf size is most of the bytes a
 * small commit writes and syncs.  2 KiB instead of btree's default 4 KiB:
 * groups of 32 docs took 16% fewer writer instructions and the file of the
 * 64-writer benchmark grew 30% less (bench_ops, docs/benchmarks.md), while
 * random reads did not get slower (smaller binary searches make up for a
 * deeper tree) and batched inserts cost the same CPU. */
#define DBF_NODE_BYTES 2048
#define DBF_WAKE_WORDS 16 /* > groups ever waited on at once (see dbfile_write.c) */

enum { DBF_T_BYID = 0, DBF_T_BYSEQ = 1, DBF_T_LOCAL = 2, DBF_T_PURGE = 3, DBF_NTREES = 4 };

/* One open file and the four trees over it.  Refcounted by snapshots and
 * by the db while it is the current file. */
typedef struct dbf_fileref {
    atomic_uint refs;
    store_file *file;
    store_btree_cache *cache;
    store_btree tree[DBF_NTREES];
} dbf_fileref;

/* Decoded header = committed state.  Immutable once published. */
struct store_snap {
    atomic_uint refs;
    store_dbfile *db;
    dbf_fileref *fr;
    uint64_t update_seq, purge_seq, revs_limit;
    uint64_t local_seq; /* bumped by every local-doc write (compaction catch-up) */
    char uuid[33];
    buf_t security;
    buf_t root[DBF_NTREES];
    uint64_t file_size; /* committed size when this state was published */
};

/* Per-document work done by the caller's thread (dbfile_write.c, "work
 * shared with the caller"), so that the one writer thread of a busy
 * database does not do it for everyone: the compressed body, new
 * attachments' digests and the rev id computed for the parent the edit
 * names (or none).  The writer uses what matches what it finds and
 * recomputes the rest. */
enum { DBF_PREP_TODO = 0, DBF_PREP_CALLER = 1, DBF_PREP_WRITER = 2, DBF_PREP_DONE = 3 };
typedef struct dbf_prep {
    atomic_int state;    /* DBF_PREP_*: who computes it (claimed by compare-and-swap) */
    buf_t zbody;         /* codec | raw_len | bytes (dbf_body_compress); len 0: not done */
    char (*digests)[64]; /* per attachment, stubs "" ; NULL: not done */
    int has_rid;         /* rid is the edit's rev id for parent u->parent (or none) */
    char rid[33];
} dbf_prep;

/* A queued write.  A blocking writer sleeps on the futex word of the
 * group its item will be part of (dbf_wake_word), checking its own
 * finished flag: the writer sets the flags of a whole group, then wakes the
 * group's waiters with one system call.  (A broadcast on one condition
 * variable woke all 64 writers of a busy database for each group, most of
 * which went back to sleep; a semaphore per waiter cost the writer thread
 * one futex call each, 15% of its time with 64 writers.) */
typedef struct dbf_item {
    store_write *w;
    store_write_done done; /* async; NULL for blocking */
    void *arg;
    atomic_int finished;   /* blocking: 1 once status is final */
    atomic_int refs;       /* async: the writer's, plus the caller's while it
                            * prepares docs after queueing (dbf_item_release) */
    uint64_t group;        /* blocking: the group that takes it (see groups_taken) */
    dbf_prep *prep;        /* nprep (w->ndocs) entries, or NULL */
    size_t nprep;
    int status;
    struct dbf_item *next;
} dbf_item;

struct store_dbfile {
    char *path;
    store_vfs *vfs;
    store_btree_cache *cache;
    int own_cache;
    int durability;
    unsigned sync_interval_ms;
    int compression;
    char *initial_security; /* a new file's security object, NULL: "{}" */

    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* writer waits for work / unpause */
    pthread_cond_t cv_done; /* pause handshake, close */
    /* Groups taken by the writer so far (under mu): the writer takes the
     * whole queue, so an item queued now is in group groups_taken + 1. */
    uint64_t groups_taken;
    _Atomic uint32_t wake[DBF_WAKE_WORDS]; /* futex words, group g's at g % DBF_WAKE_WORDS */
    store_snap *cur;
    dbf_fileref *fr;
    dbf_item *qhead, *qtail;
    pthread_t writer;
    int writer_started;
    int stop;          /* close requested: drain and exit */
    int closing;       /* close started: compaction aborts */
    int broken;        /* last commit failed and the reopen failed */
    int pause_req;     /* compaction wants the writer idle */
    int paused;        /* writer is idle, waiting for pause_req == 0 */
    int unsynced;      /* PERIODIC: commits not yet synced */
    /* Pipelined durable commits (ALWAYS, see dbfile_write.c): groups the
     * writer wrote wait in phead..ptail for the syncer thread, which syncs,
     * publishes and completes them while the writer applies the next. */
    pthread_t syncer;
    int syncer_started;
    int syncer_stop;
    pthread_cond_t cv_sync;         /* syncer: work or stop; writer: drained */
    struct dbf_pending *phead, *ptail;
    int npend;                      /* groups handed over and not yet completed */
    int writer_busy;                /* the writer is applying a group it took */
    uint64_t handovers;             /* groups handed over since open */
    int sync_failed;                /* a handed-over group's sync failed */
    store_snap *tip;                /* state of the newest handed-over group (NULL: cur) */
    /* Synced groups wait in chead..ctail for the completer thread. */
    pthread_t completer;
    int completer_started;
    int completer_stop;
    pthread_cond_t cv_comp;
    struct dbf_pending *chead, *ctail;
    int dir_unsynced;  /* a compaction swap's rename is not durable yet */
    atomic_int compact_running;
    atomic_uint queued; /* items ever queued (mod 2^32): what a spinning writer watches */
    atomic_uint_fast64_t commits; /* groups committed (tests, stats) */
    atomic_uint_fast64_t spin_catches; /* work found while spinning (tests, stats) */
};

/* ---- dbfile.c ---- */
/* limit: see store_file_open_limit (0 = the whole file). */
int dbf_fileref_open(store_dbfile *db, const char *path, int flags, uint64_t limit, dbf_fileref **out,
                     buf_t *header);
void dbf_fileref_unref(dbf_fileref *fr);
/* Builds a state from a header payload (len 0 = fresh: new uuid, defaults). */
int dbf_state_from_header(store_dbfile *db, dbf_fileref *fr, const uint8_t *p, size_t n, store_snap **out);
int dbf_state_encode(const store_snap *s, buf_t *out);
int dbf_state_clone(const store_snap *s, store_snap **out); /* refs fr again */
void dbf_state_unref(store_snap *s);
void dbf_fileref_init_trees(dbf_fileref *fr);
/* Syncs the folder holding db->path (after a rename into it). */
int dbf_sync_dir(store_dbfile *db);
/* Publishes s as db->cur (takes ownership), under db->mu. */
void dbf_publish_locked(store_dbfile *db, store_snap *s);

/* by-id value: u8 deleted | varint seq | varint active | varint external | revtree */
int dbf_byid_encode(const revtree *t, uint64_t seq, int deleted, uint64_t active, uint64_t external, buf_t *out);
int dbf_byid_decode(const uint8_t *p, size_t n, revtree *t, uint64_t *seq, int *deleted, uint64_t *active,
                    uint64_t *external);
/* by-id reduction: doc_count, del_count, active, external (varints). */
int dbf_byid_red_decode(store_slice red, uint64_t v[4]);
void dbf_seq_key(uint64_t seq, uint8_t out[8]);
int dbf_seq_key_decode(store_slice k, uint64_t *seq);
/* by-seq value from a doc's tree: bytes id | varint n | leaves (winner first) */
int dbf_byseq_encode(const uint8_t *id, size_t idlen, const revtree *t, buf_t *out);
int dbf_local_encode(uint64_t rev, const uint8_t *body, size_t len, buf_t *out);
int dbf_local_decode(store_slice v, uint64_t *rev, const uint8_t **body, size_t *len);
/* Orders slices as the default btree order: memcmp, shorter prefix first. */
int dbf_key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn);

/* ---- dbfile_att.c ---- */
/* Internal attachment: the public struct plus the stream's bytes on disk. */
typedef struct dbf_att {
    store_att a;
    uint64_t disk;
} dbf_att;
void dbf_atts_free(dbf_att *atts, size_t n);
/* Writes a body record (atts list first, then codec tag and body).  z:
 * the body already compressed by dbf_body_compress, or NULL. */
int dbf_body_write(store_file *f, int compression, const uint8_t *body, size_t len, const buf_t *z,
                   const dbf_att *atts, size_t natts, store_ptr *out);
/* The codec tag, raw length and bytes of a body as a body record holds
 * them (appended to out). */
int dbf_body_compress(int compression, const uint8_t *body, size_t len, buf_t *out);
/* Decodes a body record; body may be NULL (atts only).  *atts malloc'd. */
int dbf_body_decode(const uint8_t *p, size_t n, buf_t *body, dbf_att **atts, size_t *natts);
int dbf_body_read(store_file *f, store_ptr ptr, buf_t *body, dbf_att **atts, size_t *natts);
/* For copying a record (compaction): its attachment list, and its body as
 * stored (codec | raw_len | bytes, what dbf_body_write takes as z) in ztail,
 * not decompressed. */
int dbf_body_read_stored(store_file *f, store_ptr ptr, buf_t *ztail, dbf_att **atts, size_t *natts);
/* Writes data as a chunk stream; fills stream, disk, length (the caller
 * computed the digest: it names the rev before anything is written). */
int dbf_att_write(store_file *f, int compression, int try_compress, const uint8_t *data, size_t len, dbf_att *out);
/* "md5-<base64>" of data. */
void dbf_md5_digest(const uint8_t *data, size_t len, char out[64]);
/* Chunks per part record of an attachment index (tests lower it). */
extern size_t dbf_att_part_chunks;
/* Copies a stream from one file to another (compaction). */
int dbf_att_copy(store_file *from, store_file *to, const dbf_att *src, dbf_att *dst);
int dbf_att_read_range(store_file *f, const store_att *att, uint64_t off, uint64_t len, buf_t *out);
int dbf_att_dup(const store_att *src, store_att *dst);
/* Sizes of a doc (active: leaf body records + distinct streams + index
 * estimate; external: sum of leaf node sizes), reading leaf records to
 * find their attachments, except the record at noatt_off (0: none), which
 * the caller knows has none (the writer just wrote it: reading it back
 * from the write buffer and verifying it was 3% of a batched insert). */
int dbf_doc_sizes(store_file *f, const uint8_t *id, size_t idlen, const revtree *t, uint64_t noatt_off,
                  uint64_t *active, uint64_t *external);

/* ---- dbfile_write.c ---- */
void dbf_prep_free(dbf_item *it);
void dbf_item_release(dbf_item *it); /* async: drops a reference; the last frees */
void dbf_prep_settle(dbf_item *it);  /* async, before done: no doc left to the caller */
int dbf_writer_start(store_dbfile *db);
void dbf_writer_stop(store_dbfile *db); /* drains the queue, joins */
/* Compaction handshake: blocks until the writer is idle (no group in
 * flight) and keeps it so until dbf_writer_resume. */
void dbf_writer_pause(store_dbfile *db);
void dbf_writer_resume(store_dbfile *db);

/* A group written by the writer, waiting for the syncer. */
typedef struct dbf_pending {
    dbf_item *items;
    store_snap *st; /* its state, published once synced; NULL: it wrote nothing */
    uint64_t end;   /* committed size after it */
    int status;     /* once synced: its items' status */
    store_btree_retired rewritten; /* tree nodes it replaced: retired once it is published */
    struct dbf_pending *next;
} dbf_pending;

/* ---- dbfile_sync.c (pipelined durable commits) ---- */
void dbf_futex_wait(_Atomic uint32_t *word, uint32_t val);
/* Gives every item of a group its status and wakes its waiters. */
void dbf_complete(store_dbfile *db, dbf_item *items, int status);
/* Under db->mu: hands a written group to the syncer. */
void dbf_hand_over_locked(store_dbfile *db, dbf_pending *p);
/* Under db->mu (released around the fdatasync): syncs, publishes and takes
 * out of npend a batch of groups; by_writer: the writer's inline sync. */
int dbf_sync_batch_locked(store_dbfile *db, dbf_pending *batch, int by_writer);
/* Under db->mu: completes a synced batch here or has the completer do it. */
void dbf_finish_batch_locked(store_dbfile *db, dbf_pending *batch);
void *dbf_syncer_main(void *arg);
void *dbf_completer_main(void *arg);

#endif
