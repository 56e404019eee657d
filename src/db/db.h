/*
 * db.h — database semantics: the catalogue of databases in the data
 * directory, open handles, document updates from JSON, snapshots, and the
 * tasks list.  The one interface HTTP handlers use to reach data (DESIGN.md:
 * a cluster coordinator can later sit behind these same calls).
 *
 * Catalogue.  A database named N lives in one file
 * DATA/<N with '/' as "%2F">.<creation µs, 16 hex>.divan.  The creation stamp
 * makes every incarnation of a name a different file, so a compaction or a
 * writer still finishing on a deleted database can never touch a re-created
 * one (CouchDB's shard files carry the same kind of suffix).  Opening the
 * data directory lists the files once; when a crash left two incarnations of
 * one name (during a delete + create), the newest wins and the older file is
 * removed.
 *
 * Handles.  db_open returns a reference on an open database; db_release
 * gives it back.  At most max_dbs_open databases stay open: opening another
 * closes the least recently used one that nobody references (each open
 * database costs a writer thread and its file).  Deleting a database removes
 * its name and unlinks its file at once; references still held keep working
 * on the unlinked file until released.
 *
 * Thread safety: every function may be called from any thread.  A handle's
 * reads take a snapshot (db_snapshot) and never block on its writer.
 *
 * Update hook: after every commit of every database, the hook set with
 * db_server_set_commit_hook runs on that database's writer thread with the
 * database name and its new update_seq.  It also runs once after a
 * database is deleted, on the deleting thread, with update_seq 0, so that
 * waiting _changes feeds notice at once.  It must not block (the HTTP
 * layer posts wake-ups to its event loops).
 */
#ifndef DV_DB_DB_H
#define DV_DB_DB_H

#include "base/buf.h"
#include "json/json.h"
#include "store/dbfile.h"

#include <stddef.h>
#include <stdint.h>

typedef struct db_server db_server;
typedef struct db db_t;

/* The shared B+tree node cache when db_server_opts.cache_bytes is 0 (and
 * [divan] cache_mb's default). */
#define DB_CACHE_BYTES_DEFAULT (32u << 20)

typedef struct db_server_opts {
    const char *dir;             /* data directory (exists) */
    size_t max_dbs_open;         /* 0: 500 (CouchDB's default) */
    size_t cache_bytes;          /* shared B+tree node cache; 0: DB_CACHE_BYTES_DEFAULT */
    size_t map_resident_bytes;   /* pages of a database file mapped for reads before they are dropped
                                  * (store_file_map_trim; process-wide); 0: STORE_FILE_MAP_TRIM_DEFAULT */
    int durability;              /* STORE_DURABLE_* */
    unsigned sync_interval_ms;
    int compression;             /* STORE_COMPRESS_* for bodies and attachments */
    const char *default_security; /* _security of new databases, in their creating
                                   * commit (CouchDB's default_security); NULL: "{}" */
} db_server_opts;

int db_server_open(const db_server_opts *o, db_server **out);
/* Closes every database (their queued writes commit first).  No handle may
 * still be referenced. */
void db_server_close(db_server *s);
/* Settings that change while the server runs (a change through the
 * configuration API, as CouchDB applies them): max_dbs_open counts from
 * the next open (idle databases over it are closed then); default_security
 * (NULL: "{}", copied) is what the next database created gets.
 * DV_ERR_NOMEM: nothing changed. */
int db_server_configure(db_server *s, size_t max_dbs_open, const char *default_security);

typedef void (*db_commit_hook)(void *arg, const char *dbname, uint64_t update_seq);
void db_server_set_commit_hook(db_server *s, db_commit_hook fn, void *arg);

/* CouchDB's rule: ^[a-z][a-z0-9_$()+/-]*$, at most 238 bytes, or one of the
 * system databases _users, _replicator, _global_changes. */
int db_name_valid(const char *name, size_t n);

/* DV_ERR_EXISTS when present, DV_ERR_INVALID for an illegal name.  *out
 * may be NULL when the caller needs no handle. */
int db_create(db_server *s, const char *name, db_t **out);
/* DV_ERR_NOTFOUND when there is no such database. */
int db_open(db_server *s, const char *name, db_t **out);
void db_release(db_t *db);
/* DV_ERR_NOTFOUND when absent. */
int db_delete(db_server *s, const char *name);

/* Names of every database, sorted by bytes (malloc'd array of malloc'd
 * strings; free with db_names_free).  O(n log n). */
int db_list(db_server *s, char ***names, size_t *n);
void db_names_free(char **names, size_t n);

const char *db_name(const db_t *db);
/* The folder that holds this database incarnation's index files (created
 * by whoever writes the first one; removed with the database). */
const char *db_index_dir(const db_t *db);
/* The creation stamp (µs since the epoch), CouchDB's instance_start_time
 * analogue. */
uint64_t db_instance(const db_t *db);
store_dbfile *db_file(db_t *db);

/* ---- reads ---------------------------------------------------------- */

int db_snapshot(db_t *db, store_snap **out);

/* How to render a revision (GET /{db}/{docid} parameters). */
typedef struct db_render_opts {
    int revs;              /* _revisions */
    uint32_t revs_limit;   /* with revs: at most this many ids, newest first (0: all) */
    int revs_info;         /* _revs_info */
    int conflicts;         /* _conflicts (other non-deleted leaves) */
    int deleted_conflicts; /* _deleted_conflicts */
    int local_seq;         /* _local_seq */
    int attachments;       /* attachment data inline (else stubs) */
    int att_encoding_info; /* encoding and encoded_length of encoded atts */
    int follows;           /* with data: "follows": true instead of "data" */
    int follows_encoded;   /* follows: parts carry the stored (encoded) bytes */
    const store_rev *atts_since; /* data only for atts newer than these */
    size_t natts_since;
} db_render_opts;

/* Which attachments a render sends with data (inline or "follows"): all
 * with `attachments`, and with atts_since only those introduced after the
 * newest atts_since revision on idx's path (db_atts_since_pos, 0 when none
 * is an ancestor).  The others are stubs. */
uint64_t db_atts_since_pos(const revtree *t, uint32_t idx, const db_render_opts *o);
static inline int db_att_sends_data(const db_render_opts *o, uint64_t since, const store_att *a)
{
    return (o->attachments || o->natts_since) && a->revpos > since;
}

/* Writes revision idx of di as CouchDB's JSON object.  body_out, when not
 * NULL, receives the revision's body record (attachment list for
 * multipart responses).  Errors: the store's (corrupt, io, nomem). */
int db_render_doc(const store_snap *s, const store_docinfo *di, uint32_t idx, const db_render_opts *o,
                  json_writer *w, store_docbody *body_out);

/* Appends an attachment's bytes to out: as stored, or (decode) inflated
 * when it is gzip-encoded.  O(attachment size) memory: for inline data and
 * small attachments; stream big ones with store_snap_read_att. */
int db_att_read_all(const store_snap *s, const store_att *a, int decode, buf_t *out);
/* Inflates a gzip stream; DV_ERR_CORRUPT when it is not one. */
int db_gunzip(const uint8_t *p, size_t n, buf_t *out);

/* ---- writes --------------------------------------------------------- */

/* Queues w on db's writer (store_dbfile_write_async): done(arg, status)
 * runs on the writer thread once the commit holding w is durable, then the
 * commit hook runs when w changed documents.  The caller keeps its
 * reference on db until done has run. */
int db_write_async(db_t *db, store_write *w, store_write_done done, void *arg);
/* The same, blocking until the commit (worker threads only, never an
 * event loop). */
int db_write(db_t *db, store_write *w);

/* The CouchDB error for a rejected document or request: HTTP status,
 * error and reason (reason may be a formatted copy in `buf`). */
typedef struct db_err {
    int status;
    const char *error;
    const char *reason;
    char buf[200];
} db_err;
void db_err_set(db_err *e, int status, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One document edit parsed from its JSON form.  Owns its body bytes,
 * attachment data and revision path; json values it was parsed from may be
 * freed afterwards. */
typedef struct db_doc {
    buf_t id;
    int has_rev;
    store_rev rev;          /* _rev */
    int deleted;            /* _deleted: true */
    store_rev *path;        /* _revisions, newest first (new_edits=false) */
    size_t path_len;
    buf_t body;             /* the object without its '_' members */
    store_att_in *atts;
    size_t natts;
    buf_t attdata;          /* decoded inline data of every att, back to back */
    size_t *att_off;        /* offset of att i's data in attdata */
    int *att_follows;       /* 1: "follows": data comes from a MIME part */
} db_doc;

void db_doc_init(db_doc *d);
void db_doc_free(db_doc *d);

enum {
    DB_DOC_NEW_EDITS = 1,   /* new_edits=true; without it a rev is required (db_doc_require_rev) */
    DB_DOC_ID_REQUIRED = 2, /* _id must be present (bulk new_edits=false) */
    DB_DOC_LOCAL_OK = 4,    /* a _local/ id is accepted */
};
/* Parses one document object.  `id`, when not NULL, is the id from the
 * URL: it wins over a missing _id and must equal a present one.  Errors set
 * e (400 bad_request, illegal_docid, doc_validation…) and return
 * DV_ERR_INVALID. */
int db_doc_from_json(const json_val *obj, const char *id, size_t idlen, int flags, db_doc *out, db_err *e);

/* Document id rule (CouchDB's couch_doc:validate_docid): non-empty valid
 * UTF-8, and an id starting with '_' must be _design/… or _local/… (the
 * latter only with local_ok).  Sets e (400 illegal_docid / bad_request). */
int db_docid_check(const uint8_t *id, size_t n, int local_ok, db_err *e);

/* new_edits=false needs the document to name its revision (_rev,
 * _revisions, or a rev the caller merged in from ?rev=); local documents
 * are exempt.  400 bad_request otherwise. */
int db_doc_require_rev(const db_doc *d, db_err *e);
/* 1 for "_local/…" ids. */
int db_docid_is_local(const uint8_t *id, size_t n);
/* A local document's rev "0-N" (N decimal, fitting 64 bits) into out
 * (pos 0, id the digits); DV_ERR_INVALID otherwise.  db_doc_from_json uses
 * this rule for _rev when the id is a local one. */
int db_local_rev_parse(const char *s, size_t n, store_rev *out);
/* Fills a store_local_update from a local document (its rev counter from
 * "0-N"); points into d. */
void db_doc_to_local_update(db_doc *d, store_local_update *u);
/* Fills a store_doc_update that points into d (d must outlive the write). */
void db_doc_to_update(db_doc *d, int new_edits, store_doc_update *u);

/* The HTTP error for a store item status (conflict 409, missing stub 412,
 * …). */
void db_err_from_status(db_err *e, int status, const uint8_t *id, size_t idlen);

/* ---- tasks (/_active_tasks) ------------------------------------------ */

/* A running background task.  Fields are written by its thread and read
 * by db_tasks_json under the registry lock. */
typedef struct db_task db_task;
db_task *db_task_begin(const char *type, const char *dbname, const char *phase);
void db_task_progress(db_task *t, uint64_t done, uint64_t total);
void db_task_end(db_task *t);
/* Appends the JSON array CouchDB's /_active_tasks answers. */
int db_tasks_json(buf_t *out);

/* Starts compaction of db on a background thread (CouchDB's POST
 * /{db}/_compact); DV_ERR_BUSY when it is already running. */
int db_compact_start(db_t *db);

#endif
