/*
 * dbfile.h — one database in one append-only file: documents, revision
 * trees, sequences, local docs, attachments, MVCC snapshots, a single writer
 * with group commit, and online compaction.
 *
 * Trees (all store_btree over the same file):
 *   by-id   doc id  -> encoded doc info: revtree (with leaf body pointers),
 *                      latest seq, deleted flag.  Reduction: (doc_count,
 *                      del_count, active bytes, external bytes), so db info
 *                      costs O(1) from the root.
 *   by-seq  seq     -> doc id and its leaves (rev, deleted, body ptr); one
 *                      entry per doc: its latest change.
 *   local   "_local/…" id -> rev counter and body; no revision tree, never
 *                      replicated, not in by-seq.
 *   purge   purge seq -> doc id and purged revs (purge history).
 * Header: format version, update_seq, purge_seq, revs_limit (default 1000),
 *   uuid (32 hex), security object (JSON bytes, default "{}"), the roots,
 *   compaction bookkeeping.
 *
 * A revision's body record: compressed (lz4/zstd/none, per option) JSON body
 * bytes (no _id/_rev/_attachments members) and the attachment list.  An
 * attachment's data is a chunk stream (checksummed records of up to 64 KiB,
 * each compressed when it helps) indexed by one record; a revision that keeps
 * an attachment from its parent (a stub) points at the same stream: it is
 * shared, never copied.
 *
 * Concurrency and durability:
 *   - One writer thread per open database.  store_dbfile_write* queue work;
 *     the writer takes everything queued, applies it in order and writes it
 *     as one commit (group commit).  With durability ALWAYS a syncer thread
 *     syncs what the writer wrote (one sync for every group written since
 *     its last one) while the writer applies the next group, publishes it
 *     and has its waiters completed (a completer thread wakes big groups).
 *     A write is acknowledged only after the commit that holds it is
 *     durable (durability ALWAYS); readers see it no earlier either.
 *   - Readers take a snapshot (a committed header) and never wait for the
 *     writer or compaction; a snapshot stays valid (the file stays open)
 *     until released, even after compaction swapped the file.
 *   - Durability PERIODIC: commits are written at once and synced every
 *     sync_interval_ms; a power loss may lose the writes of the last interval
 *     (never corrupt the file).  NEVER: the OS decides; a process crash loses
 *     nothing written, a power loss may lose any unsynced commits.
 *
 * Ids: any byte string of 1..65535 bytes for documents; local doc ids
 * include their "_local/" prefix.  Validation of names and JSON is the
 * caller's (db/ and http/): store/ treats bodies as opaque bytes.
 */
#ifndef DV_STORE_DBFILE_H
#define DV_STORE_DBFILE_H

#include "base/buf.h"
#include "store/btree.h"
#include "store/revtree.h"
#include "store/vfs.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_dbfile store_dbfile;
typedef struct store_snap store_snap;

enum { STORE_DURABLE_ALWAYS = 0, STORE_DURABLE_PERIODIC = 1, STORE_DURABLE_NEVER = 2 };
enum { STORE_COMPRESS_NONE = 0, STORE_COMPRESS_LZ4 = 1, STORE_COMPRESS_ZSTD = 2 };

typedef struct store_dbfile_options {
    store_vfs *vfs;            /* NULL: POSIX */
    store_btree_cache *cache;  /* NULL: a private cache of cache_bytes */
    size_t cache_bytes;        /* 0: 8 MiB */
    int create;                /* create the file if missing */
    int excl;                  /* with create: DV_ERR_EXISTS if present */
    int durability;            /* STORE_DURABLE_* */
    unsigned sync_interval_ms; /* PERIODIC; 0: 200 ms */
    int compression;           /* STORE_COMPRESS_*; 0 = none (db/ picks lz4) */
    const char *initial_security; /* security object (JSON) written by the creating
                                   * commit of a new file; NULL: "{}" */
} store_dbfile_options;

int store_dbfile_open(const char *path, const store_dbfile_options *o, store_dbfile **out);
/* Finishes queued writes (commits them), stops the writer, waits for any
 * compaction to stop, closes.  Snapshots must have been released. */
int store_dbfile_close(store_dbfile *db);
const char *store_dbfile_path(const store_dbfile *db);
/* Number of durable commits made since open: writes / commits is the
 * group-commit factor (stats, tests).  With durability ALWAYS a commit is a
 * sync, which may make several groups durable at once (see pipelining in
 * dbfile_write.c); otherwise it is a group. */
uint64_t store_dbfile_commit_count(store_dbfile *db);
/* Groups the writer took while spinning for work instead of asleep (see
 * dbfile_write.c, "waiting for work"; stats, tests). */
uint64_t store_dbfile_spin_catches(store_dbfile *db);

/* ---- snapshots and reads ------------------------------------------- */

int store_dbfile_snapshot(store_dbfile *db, store_snap **out);
void store_snap_release(store_snap *s);

typedef struct store_dbinfo {
    uint64_t update_seq;
    uint64_t purge_seq;
    uint64_t doc_count; /* docs whose winning rev is not deleted */
    uint64_t del_count; /* docs whose winning rev is deleted */
    uint64_t revs_limit;
    uint64_t file_size;     /* sizes.file: bytes of the file */
    uint64_t active_size;   /* sizes.active: live bytes (trees + live bodies + atts) */
    uint64_t external_size; /* sizes.external: uncompressed live bodies + atts */
    char uuid[33];
    int compact_running;
} store_dbinfo;
void store_snap_info(const store_snap *s, store_dbinfo *out);
/* The stored security object (JSON bytes; "{}" when never set). */
int store_snap_security(const store_snap *s, buf_t *out);

typedef struct store_docinfo {
    buf_t id;
    revtree tree;
    uint64_t seq;    /* latest update seq of this doc */
    int deleted;     /* winning rev deleted */
} store_docinfo;
void store_docinfo_init(store_docinfo *d);
void store_docinfo_free(store_docinfo *d);

/* DV_ERR_NOTFOUND when the id was never written (deleted docs are found). */
int store_snap_get_doc(const store_snap *s, const uint8_t *id, size_t idlen, store_docinfo *out);

typedef struct store_att {
    char *name;
    char *type;          /* content type */
    char *encoding;      /* NULL = identity, else e.g. "gzip" (HTTP layer's) */
    uint64_t length;     /* bytes as stored and served (encoded when encoding) */
    uint64_t decoded_length; /* identity length (== length when no encoding) */
    char digest[64];     /* "md5-<base64>" of the stored bytes, NUL-terminated */
    uint64_t revpos;     /* pos of the rev that introduced this data */
    store_ptr stream;    /* chunk index record */
} store_att;

typedef struct store_docbody {
    buf_t body; /* JSON bytes, decompressed */
    store_att *atts;
    size_t natts;
} store_docbody;
void store_docbody_init(store_docbody *b);
void store_docbody_free(store_docbody *b);

/* Reads the body record of a revision (revtree_node.body). */
int store_snap_read_body(const store_snap *s, store_ptr body, store_docbody *out);
/* Reads attachment bytes [off, off+len) (clamped to length) into out
 * (appended), verifying every chunk.  Bounded memory per call: callers
 * stream big attachments by calling it repeatedly with ranges. */
int store_snap_read_att(const store_snap *s, const store_att *att, uint64_t off, uint64_t len, buf_t *out);

/* Cursors: bounded memory, one snapshot, lazily read. */
typedef struct store_id_cursor store_id_cursor;
/* Range over doc ids in byte order (store_btree_range semantics). */
int store_snap_iter_ids(const store_snap *s, const store_btree_range *r, store_id_cursor **out);
/* 1 = row in *d (reused across calls), 0 = end, <0 error. */
int store_id_cursor_next(store_id_cursor *c, store_docinfo *d);
int store_id_cursor_skip(store_id_cursor *c, uint64_t n);
void store_id_cursor_close(store_id_cursor *c);
/* Number of doc ids strictly before id (for _all_docs "offset"), O(log n). */
int store_snap_count_ids_before(const store_snap *s, const uint8_t *id, size_t idlen, int descending,
                                uint64_t *out);
/* Documents with an id in range r, split by whether their winning rev is
 * live or deleted (either may be NULL), from the by-id reductions: O(log n)
 * node reads whatever the range size.  _all_docs counts only live docs in
 * its "offset" and _design_docs in its "total_rows". */
int store_snap_count_docs(const store_snap *s, const store_btree_range *r, uint64_t *live, uint64_t *deleted);

typedef struct store_change_leaf {
    store_rev rev;
    int deleted;
    store_ptr body;
} store_change_leaf;
typedef struct store_change {
    uint64_t seq;
    buf_t id;
    int deleted;                 /* winner deleted */
    store_change_leaf *leaves;   /* winner first */
    size_t nleaves, cap;
} store_change;
void store_change_init(store_change *c);
void store_change_free(store_change *c);

typedef struct store_seq_cursor store_seq_cursor;
/* Changes with seq > since (ascending), or all in descending order when
 * descending (since ignored then). */
int store_snap_iter_changes(const store_snap *s, uint64_t since, int descending, store_seq_cursor **out);
int store_seq_cursor_next(store_seq_cursor *c, store_change *ch);
void store_seq_cursor_close(store_seq_cursor *c);
/* Number of by-seq entries (documents) whose latest change is > since, in
 * O(log n) node reads from the tree's subtree counts (_changes "pending"). */
int store_snap_count_changes_since(const store_snap *s, uint64_t since, uint64_t *out);

/* Local docs.  rev is the counter ("0-N" in the API). */
int store_snap_get_local(const store_snap *s, const uint8_t *id, size_t idlen, uint64_t *rev, buf_t *body);
typedef struct store_local_cursor store_local_cursor;
int store_snap_iter_local(const store_snap *s, const store_btree_range *r, store_local_cursor **out);
int store_local_cursor_next(store_local_cursor *c, buf_t *id, uint64_t *rev, buf_t *body);
void store_local_cursor_close(store_local_cursor *c);

/* ---- writes ---------------------------------------------------------- */

typedef struct store_att_in {
    const char *name;
    const char *type;
    const char *encoding;   /* NULL = identity */
    uint64_t decoded_length; /* identity length when encoding set */
    int stub;               /* 1: keep this attachment from the parent rev */
    const uint8_t *data;    /* new data (stub == 0) */
    size_t len;
    uint64_t revpos;        /* replicated writes: as given; edits: ignored */
} store_att_in;

enum { STORE_EDIT = 0, STORE_REPLICATE = 1 };

typedef struct store_doc_update {
    /* in */
    const uint8_t *id;
    size_t idlen;
    int mode;                 /* STORE_EDIT (new_edits=true) / STORE_REPLICATE */
    int has_parent;           /* EDIT: client named a rev */
    store_rev parent;
    const store_rev *path;    /* REPLICATE: newest first */
    size_t path_len;
    int deleted;
    const uint8_t *body;      /* JSON bytes without _-members */
    size_t body_len;
    const store_att_in *atts; /* the new rev's complete attachment list */
    size_t natts;
    /* out, set by the writer */
    int status;               /* DV_OK, DV_ERR_CONFLICT, DV_ERR_MISSING_STUB, ... */
    store_rev rev;            /* the rev written (or that would have been) */
    uint64_t seq;
} store_doc_update;

typedef struct store_local_update {
    const uint8_t *id;
    size_t idlen;
    int has_rev;           /* "0-N" given: must equal the current rev */
    uint64_t rev;
    int deleted;
    const uint8_t *body;
    size_t body_len;
    int status;            /* out: DV_OK / DV_ERR_CONFLICT / DV_ERR_NOTFOUND (delete of absent) */
    uint64_t new_rev;      /* out */
} store_local_update;

typedef struct store_purge {
    const uint8_t *id;
    size_t idlen;
    const store_rev *revs;
    size_t nrevs;
    int status;            /* out */
    size_t npurged;        /* out: how many of revs were leaves and removed */
    uint8_t *purged;       /* out, caller-provided array of nrevs flags */
} store_purge;

typedef struct store_write {
    store_doc_update *docs;
    size_t ndocs;
    store_local_update *locals;
    size_t nlocals;
    store_purge *purges;
    size_t npurges;
    int set_revs_limit;
    uint64_t revs_limit;
    int set_security;
    const uint8_t *security;
    size_t security_len;
} store_write;

/* Queues w and blocks until the commit holding it is durable (per the
 * durability setting).  While it waits, the calling thread compresses the
 * bodies, digests new attachments and computes edit rev ids, sharing that
 * work with the writer thread (on which it would serialise); the async
 * variant shares it the same way and returns once its caller's share is
 * done: O(bytes of w), as parsing them was.  Returns DV_OK when the batch
 * was committed (each item then has its own status), or an error when the
 * commit failed (I/O): then nothing of w was acknowledged.  Items of one store_write are applied
 * in order and commit together. */
int store_dbfile_write(store_dbfile *db, store_write *w);
/* Same, without blocking: done(arg, status) runs on one of the database's
 * threads (writer, syncer or completer) after the commit, in commit order.  w and everything it points to must stay valid until then.
 * done must not block on this database (a blocking write from it would
 * wait for its own thread).
 * After a failed commit the writer reopens the file from its last good
 * header and goes on; while that reopen keeps failing every write returns
 * DV_ERR_IO (reads keep the last good state). */
typedef void (*store_write_done)(void *arg, int status);
int store_dbfile_write_async(store_dbfile *db, store_write *w, store_write_done done, void *arg);

/* ---- compaction -------------------------------------------------------- */

/* Progress runs on the compacting thread between copy steps, never while
 * the writer is paused, so it may itself read or write the database. */
typedef void (*store_compact_progress)(void *arg, uint64_t done, uint64_t total);
/* Copies live data into path + ".compact" while reads and writes go on,
 * catches up with writes made meanwhile, then atomically renames it over
 * path and switches the writer to it.  Runs on the calling thread.  A crash
 * at any point leaves a usable database (open ignores / removes a stale
 * ".compact" file).  DV_ERR_BUSY when already running. */
int store_dbfile_compact(store_dbfile *db, store_compact_progress progress, void *arg);

#endif
