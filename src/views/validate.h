/*
 * validate.h — validate_doc_update functions of a database: which design
 * documents have one (a cache per database incarnation) and running them
 * in the query server (docs/validation.md).
 *
 * The set of validating design documents is cached per database
 * incarnation (name + instance stamp) and checked against the caller's
 * snapshot on every lookup: the lookup lists the live "_design/" ids and
 * their winning revs (one B+tree range read, nothing more when the
 * database has no design document at all) and reuses the cached set when
 * they are the ones it was built from.  A design document written,
 * deleted, purged or replicated in by any path is therefore seen by the
 * next write whose snapshot contains it, with no invalidation protocol.
 * Only design documents whose rev changed have their bodies read again.
 *
 * Compiled functions are cached by the query-server processes (a handle
 * per definition, "v:<md5 of the definition>"): the definition is compiled
 * once per process and reused until the process is replaced.
 *
 * Thread safety: every function may be called from any thread.
 * vdu_lookup only reads (it may run on an event loop); vdu_run blocks on
 * the query server (worker threads only).
 */
#ifndef DV_VIEWS_VALIDATE_H
#define DV_VIEWS_VALIDATE_H

#include "base/buf.h"
#include "db/db.h"
#include "views/views.h"

#include <stddef.h>

typedef struct vdu_set vdu_set;
typedef struct vdu_cache vdu_cache;

/* The cache lives in the views engine (views_open / views_close;
 * views_vdu_cache hands it to this file). */
int vdu_cache_new(vdu_cache **out);
void vdu_cache_free(vdu_cache *c);
vdu_cache *views_vdu_cache(views *v);

/* The validation functions of db as of snap: *out NULL when there is none
 * (the common case costs one range read of the by-id tree), else a
 * reference to release with vdu_set_release.  Errors: the store's. */
int vdu_lookup(views *v, db_t *db, const store_snap *snap, vdu_set **out);
void vdu_set_release(vdu_set *s);
/* How many validation functions the set runs. */
size_t vdu_set_count(const vdu_set *s);

/* A refusal: HTTP status (401 unauthorized, 403 forbidden, 500 anything
 * else), CouchDB's error name and the reason as JSON text (the thrown
 * message as it was: usually a string, any JSON value is kept). */
typedef struct vdu_result {
    int status;
    char error[64];
    buf_t reason;
} vdu_result;
void vdu_result_init(vdu_result *r);
void vdu_result_free(vdu_result *r);

/* Runs every function of s, in design-document id order, on args (the
 * JSON array text [newDoc, oldDoc, userCtx, secObj]) until one refuses,
 * as CouchDB does.  DV_OK: all accepted.  DV_ERR_INVALID: res says why
 * (a function's refusal, its runtime error, a timeout: every failure is
 * an answer for the client, never a server crash).  DV_ERR_NOMEM
 * otherwise.  Blocking: worker threads only. */
int vdu_run(views *v, vdu_set *s, const char *args, size_t args_len, vdu_result *res);

/* vdu_run for n documents (args[i] of length lens[i] each): res[i] and
 * refused[i] (set to 1 on a refusal; elements already 1 are skipped).
 * Documents go to the query server VDU_BATCH_DOCS at a time (one round
 * trip per function and batch instead of per document); a batch whose
 * call fails as a whole (the deadline, a process that died) is run again
 * one document at a time, so that each document gets its own deadline and
 * only the guilty one is refused.  DV_OK, or DV_ERR_NOMEM. */
#define VDU_BATCH_DOCS 64
#define VDU_BATCH_BYTES (1u << 20)
int vdu_run_batch(views *v, vdu_set *s, const char *const *args, const size_t *lens, size_t n, vdu_result *res,
                  int *refused);

#endif
