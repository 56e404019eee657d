/*
 * views.h — the view engine: which index files exist for which design
 * documents, bringing them up to date with their database, and handing
 * snapshots to queries.
 *
 * Registry.  An index (view_index) exists per database incarnation and
 * design document id; it follows the design document: when its views
 * change, the index takes the new definition and keeps the files of the
 * views whose signature did not change.  View files are shared by
 * signature in a second table (two design documents with an identical view
 * share one file), each with its own updater lock, so no file ever has two
 * writers.
 *
 * Updates (view_index_update) are blocking and run on worker threads: they
 * read the database's changes since the oldest view of the index, send
 * batches of documents to the query server (one MAP_DOCS pass for every
 * stale view of the design document), and commit the view files after
 * every batch, so an interrupted build (even kill -9) resumes from the last
 * batch.  Concurrent callers for one index wait for the running update
 * instead of starting another.  Progress shows in /_active_tasks
 * (type "indexer").
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef DV_VIEWS_VIEWS_H
#define DV_VIEWS_VIEWS_H

#include "db/db.h"
#include "views/ddoc.h"
#include "views/qserver.h"
#include "views/vfile.h"

#include <stddef.h>
#include <stdint.h>

typedef struct views views;
typedef struct view_index view_index;

typedef struct views_opts {
    qserver *qs;               /* the query-server pool (not owned) */
    store_btree_cache *cache;  /* node cache for view files (may be NULL) */
    size_t batch_docs;         /* documents per map batch; 0: 2000 */
} views_opts;

int views_open(const views_opts *o, views **out);
/* The query-server pool the engine was opened with (for _changes filters). */
qserver *views_qserver(views *v);
/* Every index must have been released. */
void views_close(views *v);

/* The index of design document ddoc_id ("_design/…") of db, as snap's
 * version of that document defines it.  DV_ERR_NOTFOUND with e set (404
 * not_found missing / deleted) when it does not exist in snap. */
int views_get(views *v, db_t *db, const store_snap *snap, const char *ddoc_id, size_t n, view_index **out,
              db_err *e);
void view_index_release(view_index *ix);

/* A copy of the index's current definition (free with view_group_free). */
int view_index_group(view_index *ix, view_group *out);

/* Brings every view of the index up to the database's update_seq at the
 * time of the call (blocking).  On failure e says why (500). */
int view_index_update(view_index *ix, db_t *db, db_err *e);

/* The committed state of view `name` (with its definition copied into
 * *def when def is not NULL; free with view_def_free).  DV_ERR_NOTFOUND
 * when the index has no such view. */
int view_index_snapshot(view_index *ix, const char *name, size_t n, view_snap **out, view_def *def);
void view_def_free(view_def *d);

/* JavaScript reduce/rereduce for reads of a view whose reduce is a
 * function (the view tree's reduce callback during queries uses it). */
int view_index_js_reduce(view_index *ix, const char *view_name, int rereduce, const store_slice *keys,
                         const store_slice *vals, size_t n, buf_t *out);

/* Compacts the files of every view of the index (blocking). */
int view_index_compact(view_index *ix, db_err *e);

/* Removes the index files of db that no current design document needs
 * (POST /{db}/_view_cleanup).  ddocs: the signatures still in use. */
int views_cleanup(views *v, db_t *db, const char *const *sigs, size_t nsigs);

/* Checks a design document about to be saved (its body JSON, without the
 * '_' members): the shape of views/filters/options (400
 * invalid_design_doc) and that every JavaScript function compiles in the
 * query server (400 compilation_error).  Blocking: worker threads only. */
int views_check_ddoc(views *v, const uint8_t *body, size_t len, db_err *e);

/* Info of the index for GET /{db}/_design/{ddoc}/_info, as CouchDB's
 * view_index object (JSON object appended to out). */
int view_index_info(view_index *ix, buf_t *out);

#endif
