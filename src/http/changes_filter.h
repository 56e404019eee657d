/*
 * changes_filter.h — _changes filters that run in the JavaScript query
 * server: filter={ddoc}/{name} (a design document's filter function, called
 * with CouchDB's `req` object) and filter=_view&view={ddoc}/{view} (a
 * change passes when the view's map function emits at least one row for
 * it).  Used by handlers_changes.c; see changes_filter.c for the costs.
 *
 * The query server blocks, so it never runs on an event loop: the feed
 * hands a batch of candidate changes to a worker (cfilter_submit), returns
 * WAIT, and is called back on its loop (on_back) once the batch's verdicts
 * are in.  One batch at a time per feed.  Everything here but the worker
 * job runs on the request's loop thread.
 *
 * Life: cfilter_new when the request is parsed; cfilter_pass at the start
 * of every pass (reads the design document from that pass's snapshot);
 * then cfilter_add ... cfilter_submit, wait, cfilter_next until it gives
 * 0, and again.  cfilter_free when the feed ends; a batch still out then
 * finishes on its worker and frees what is left.  A pass that ends while a
 * batch is out gives its database reference and snapshot to the filter
 * (cfilter_adopt), which releases them once the worker is done with them.
 */
#ifndef DV_HTTP_CHANGES_FILTER_H
#define DV_HTTP_CHANGES_FILTER_H

#include "db/db.h"
#include "http/server.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cfilter cfilter;

enum { CFILTER_JS = 1, CFILTER_VIEW = 2 };
/* cfilter_state */
enum { CF_IDLE = 0, CF_OUT, CF_READY, CF_FAILED };

/* Runs on the loop when a batch is back; r is NULL when the client left
 * before the feed's response started (the feed must then free itself). */
typedef void (*cfilter_back_fn)(http_req_t *r, void *ctx);

/* A filter for this request (ddoc and name unquoted; both exist in the
 * request's snapshot, checked by the caller).  Captures what the `req`
 * object needs from r.  On a bad request parameter answers 400 itself and
 * returns DV_ERR_INVALID; other errors are returned unanswered. */
int cfilter_new(http_req_t *r, int kind, const char *ddoc, const char *name, int all_docs, cfilter_back_fn back,
                void *ctx, cfilter **out);
/* The feed ends (loop thread). */
void cfilter_free(cfilter *cf);

/* Starts a pass over snap of db: the design document as snap has it (an
 * edited one is compiled again; a deleted one, or one that lost the
 * function, keeps the last definition), and for JavaScript filters the
 * pass's `req` (info, uuid, secObj). */
int cfilter_pass(cfilter *cf, http_req_t *r, db_t *db, const store_snap *snap);

/* Adds a candidate to the batch being filled; cfilter_count says how many
 * it holds.  CF_IDLE only. */
int cfilter_add(cfilter *cf, const store_change *ch);
size_t cfilter_count(const cfilter *cf);
/* Hands the batch to a worker (CF_OUT); snap must stay valid until the
 * batch is back, or be adopted. */
int cfilter_submit(cfilter *cf, http_req_t *r, const store_snap *snap);
int cfilter_state(cfilter *cf);

/* CF_READY: the next candidate with at least one passing revision, as a
 * change whose leaves are the passing ones (1); 0 once the batch is used
 * up (the state is CF_IDLE again).  *last gets the seq of the batch's last
 * candidate when it returns 0. */
int cfilter_next(cfilter *cf, store_change *ch, uint64_t *last);
/* Forgets the rest of a CF_READY batch (a pass cut by limit). */
void cfilter_drop(cfilter *cf);
/* CF_FAILED: why (a throwing function, the query server failing). */
void cfilter_error(const cfilter *cf, int *status, const char **error, const char **reason);

/* A pass ends while a batch may be out: 1 when the filter took db and snap
 * (it releases them), 0 when the caller still owns them. */
int cfilter_adopt(cfilter *cf, db_t *db, store_snap *snap);

#endif
