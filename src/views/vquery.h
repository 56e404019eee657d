/*
 * vquery.h — answering a view query from one committed view snapshot:
 * map rows over key ranges (CouchDB's startkey/endkey/…_docid rules,
 * inclusive_end, descending, skip, limit, keys), include_docs from one
 * database snapshot, and reduce queries (whole range, group=true,
 * group_level) computed from the view tree's stored reductions.
 *
 * The answer is CouchDB 3's bytes: {"total_rows":N,"offset":M,"rows":[\r\n
 * rows joined by ",\r\n" \r\n]} for maps, {"rows":[…]} for reduces, with
 * "update_seq" when asked.  It is written through a sink in parts of at
 * most ~32 KiB, so a query of any size runs in bounded memory.
 *
 * Cost: a map query costs O(log n + rows) node reads (offset from the
 * tree's counts); a reduce over a range O(log n); group=true and
 * group_level O(groups × log n), whole subtrees inside a group being
 * reduced from their stored reductions.  A JavaScript reduce calls the
 * query server for the reductions it must combine: this runs on a worker
 * thread.
 */
#ifndef DV_VIEWS_VQUERY_H
#define DV_VIEWS_VQUERY_H

#include "db/db.h"
#include "store/dbfile.h"
#include "views/views.h"

#include <stddef.h>
#include <stdint.h>

#define VIEW_GROUP_NONE (-1)
#define VIEW_GROUP_EXACT (-2)

typedef struct view_qargs {
    int has_start, has_end;
    store_slice start_key, end_key;     /* JSON texts */
    int has_start_docid, has_end_docid;
    store_slice start_docid, end_docid;
    int inclusive_end;
    int descending;
    uint64_t skip, limit;
    int has_keys;
    const store_slice *keys;            /* JSON texts */
    size_t nkeys;
    int reduce;                         /* answer reduced rows */
    long long group_level;              /* VIEW_GROUP_NONE, VIEW_GROUP_EXACT or a level */
    int include_docs, conflicts, attachments, att_encoding_info;
    int update_seq;
} view_qargs;

/* Receives the answer's bytes; a non-zero return (DV_ERR_CLOSED: the
 * client left) stops the query. */
typedef int (*view_sink_fn)(void *ctx, const void *p, size_t n);

/* Runs the query on view `def` of ix (its committed state vs), documents
 * for include_docs from dbsnap.  DV_OK once the whole answer went to the
 * sink. */
int view_query_run(view_index *ix, const view_def *def, view_snap *vs, const store_snap *dbsnap,
                   const view_qargs *a, view_sink_fn sink, void *ctx);

#endif
