/*
 * reduce.h — CouchDB's built-in reduce functions, in C: _sum, _count,
 * _stats and _approx_count_distinct (couch_query_servers:builtin_reduce).
 *
 * A reduction has an internal form, stored in the inner nodes of a view's
 * B+tree and combined by rereduce, and an output form (JSON) produced by
 * view_reduce_finalize for query answers:
 *
 *   _sum    JSON: a number, an array of numbers, or an object whose values
 *           are any of these (nested); or CouchDB's builtin_reduce_error
 *           object, which then sticks (every later combination keeps it).
 *   _count  JSON integer.
 *   _stats  JSON {"sum","count","min","max","sumsqr"} (or an array of them
 *           for array values), as CouchDB's pack_stats.
 *   _approx_count_distinct
 *           binary HyperLogLog registers (precision 11: 2,048 one-byte
 *           registers, ±2.3% standard error, as CouchDB's couch_hyper);
 *           the output is the estimated number of distinct keys.
 *
 * Numbers follow Erlang's arithmetic as CouchDB does it: integers (here up
 * to 64 bits) stay integers, anything with a float becomes a float, and
 * floats print as jiffy does (1.0 keeps its ".0").  Integer overflow falls
 * back to floats (Erlang would use bignums; noted in docs/views.md).
 *
 * Cost: reduce parses every value once (O(total value bytes)); rereduce
 * parses the partial reductions.  Nothing here allocates per call beyond
 * the parsed values and the output buffer.
 */
#ifndef DV_VIEWS_REDUCE_H
#define DV_VIEWS_REDUCE_H

#include "base/buf.h"
#include "store/btree.h"

#include <stddef.h>

typedef enum view_reduce_kind {
    VIEW_REDUCE_NONE = 0,
    VIEW_REDUCE_SUM,
    VIEW_REDUCE_COUNT,
    VIEW_REDUCE_STATS,
    VIEW_REDUCE_APPROX_DISTINCT,
    VIEW_REDUCE_JS, /* a JavaScript function: the query server reduces */
} view_reduce_kind;

/* The kind of a design document's reduce source: a built-in name (CouchDB
 * matches by prefix: "_sum..." is _sum), VIEW_REDUCE_JS for anything else,
 * or -1 for an unknown built-in ("_foo"). */
int view_reduce_kind_of(const char *src, size_t n);

/* Reduces n rows: keys[i] is the emitted key's JSON text (only
 * _approx_count_distinct reads it), vals[i] the value's JSON text.  Appends
 * the internal form to out.  Built-in kinds only. */
int view_reduce(view_reduce_kind k, const store_slice *keys, const store_slice *vals, size_t n, buf_t *out);
/* Combines n internal forms into one (appended to out). */
int view_rereduce(view_reduce_kind k, const store_slice *reds, size_t n, buf_t *out);
/* Appends the JSON answer for an internal form (an empty slice: the
 * reduction of no rows, which CouchDB answers as 0, 0 or the zero stats). */
int view_reduce_finalize(view_reduce_kind k, store_slice red, buf_t *out);

#endif
