/*
 * vfile.h — one view's index file: its view tree and by-doc tree over an
 * append-only store_file, a commit header, MVCC snapshots, batched row
 * updates, and compaction.
 *
 * Header: magic/version, the view signature (it names the file, and a file
 * whose header names another signature is discarded), the database
 * instance it indexes (a recreated database never reuses an old index),
 * the database update_seq indexed so far, and the two roots.
 *
 * Concurrency: one updater at a time (the caller serialises
 * view_file_update/commit/compact); any number of readers, each on a
 * snapshot (the header it saw), never blocked by the updater or by
 * compaction: a snapshot keeps its file open until released.
 *
 * Durability: an index can always be rebuilt from its database, so commits
 * do not sync; a crash loses at most the commits since the last sync the OS
 * made, and opening finds the last complete commit (store_file's checked
 * headers) and resumes from its seq.
 */
#ifndef DV_VIEWS_VFILE_H
#define DV_VIEWS_VFILE_H

#include "base/buf.h"
#include "store/btree.h"
#include "views/reduce.h"

#include <stddef.h>
#include <stdint.h>

typedef struct view_file view_file;
typedef struct view_snap view_snap;

/* A JavaScript reduce, run by the query server for the view tree's inner
 * nodes.  keys/vals as in store_btree_ops (encoded view keys and values);
 * for rereduce, vals are earlier reductions.  Appends the reduction (JSON
 * text) to out. */
typedef int (*view_js_reduce_fn)(void *ctx, int rereduce, const store_slice *keys, const store_slice *vals, size_t n,
                                 buf_t *out);

typedef struct view_file_opts {
    const char *sig;            /* hex signature */
    uint64_t db_instance;
    view_reduce_kind reduce;    /* VIEW_REDUCE_NONE for map-only views */
    int raw_collation;
    view_js_reduce_fn js_reduce; /* VIEW_REDUCE_JS only */
    void *js_ctx;
    store_btree_cache *cache;
} view_file_opts;

/* Opens or creates path.  A file of another signature or database
 * instance, or one that does not open (corrupt), is replaced by an empty
 * index (logged). */
int view_file_open(const char *path, const view_file_opts *o, view_file **out);
void view_file_close(view_file *vf);
const char *view_file_path(const view_file *vf);

int view_file_snapshot(view_file *vf, view_snap **out);
void view_snap_release(view_snap *s);
uint64_t view_snap_seq(const view_snap *s);
/* 1 when the view collates raw (options.collation = "raw"). */
int view_snap_raw(const view_snap *s);
/* Rows of the view (a document emitting one key twice counts twice). */
uint64_t view_snap_rows(const view_snap *s);
/* A view tree reduction = varint(rows) + the view's own reduction (empty
 * for map-only views): splits one (an empty slice is 0 rows). */
int view_red_split(store_slice red, uint64_t *rows, store_slice *user);
uint64_t view_snap_file_size(const view_snap *s);
const store_btree *view_snap_tree(const view_snap *s, const uint8_t **root, size_t *root_len);

/* ---- updates (one updater) ------------------------------------------------- */

/* One row a document emitted: key and value JSON texts. */
typedef struct view_emit {
    store_slice key;
    store_slice value;
} view_emit;

/* A changed document and its rows in this view (nrows 0: it emits nothing
 * any more, or was deleted). */
typedef struct view_doc_rows {
    store_slice id;
    const view_emit *rows;
    size_t nrows;
} view_doc_rows;

/* Replaces the rows of every listed document (distinct ids) and notes
 * that the index now covers the database up to seq.  Appends new nodes;
 * nothing is visible to snapshots until view_file_commit.  fresh: the
 * caller knows no listed document has rows yet (an index built from seq
 * 0), so their old rows need not be looked up. */
int view_file_update(view_file *vf, const view_doc_rows *docs, size_t n, uint64_t seq, int fresh);
/* The seq the pending state covers (committed or not). */
uint64_t view_file_pending_seq(const view_file *vf);
/* Publishes the pending state (one header append, no sync). */
int view_file_commit(view_file *vf);

/* Copies the live trees into a fresh file and swaps it in; snapshots of
 * the old file stay readable.  Runs on the updater's side (no concurrent
 * update).  progress may be NULL. */
int view_file_compact(view_file *vf, void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);

/* ---- values ------------------------------------------------------------------ */

/* Iterates the values of one stored row (one, or several for duplicates). */
typedef struct view_value_iter {
    buf_reader r;
    uint64_t left;
    int single;
} view_value_iter;
int view_value_iter_init(view_value_iter *it, store_slice val);
/* 1 with *v set, 0 at the end, DV_ERR_CORRUPT. */
int view_value_next(view_value_iter *it, store_slice *v);

#endif
