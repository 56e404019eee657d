/*
 * query_args.h — CouchDB's view query parameters: what couch_mrview_http's
 * parse_params reads (key, keys, startkey/start_key, endkey/end_key,
 * startkey_docid/start_key_doc_id, endkey_docid, inclusive_end, descending,
 * limit, skip, include_docs, conflicts, attachments, att_encoding_info,
 * update_seq, reduce, group, group_level, stale, stable, update, sorted,
 * partition) and the checks of couch_mrview_util:validate_args.  Used by
 * _all_docs, _design_docs, _local_docs (and their /queries forms); views
 * reuse it.
 *
 * Parameters come in two forms, as in CouchDB: URL text (keys are JSON
 * text, booleans "true"/"false" in any case, integers in decimal) or
 * decoded JSON values (POST bodies and the members of "queries"), where a
 * boolean may be true/false or the same strings and an integer must be a
 * JSON integer.  Later parameters override earlier ones; unknown ones are
 * ignored.
 *
 * Errors are CouchDB's: 400 query_parse_error with its reason for bad
 * values and inconsistent combinations, 400 bad_request "invalid UTF-8
 * JSON" for a key that is not JSON.  A failing call fills a db_err and
 * returns DV_ERR_INVALID (DV_ERR_NOMEM when out of memory).
 *
 * Keys are kept as owned minified JSON text (and, for strings, their
 * bytes), so a query_args outlives the request text it was parsed from and
 * can be copied (the /queries form starts each query from the URL's).
 * Memory: O(total size of the keys).
 */
#ifndef DV_HTTP_QUERY_ARGS_H
#define DV_HTTP_QUERY_ARGS_H

#include "base/buf.h"
#include "db/db.h"
#include "http/router.h"
#include "json/json.h"

#include <stdint.h>

/* One JSON key (start_key, end_key). */
typedef struct query_key {
    int set;
    buf_t json;    /* the value as minified JSON */
    int is_string;
    buf_t str;     /* the string's bytes, when is_string */
} query_key;

enum { QUERY_UPDATE_TRUE = 0, QUERY_UPDATE_FALSE = 1, QUERY_UPDATE_LAZY = 2 };
enum { QUERY_VIEW_MAP = 0, QUERY_VIEW_REDUCE = 1 };
/* group_level once validated: QUERY_GROUP_EXACT for group=true. */
#define QUERY_GROUP_EXACT (-2)

typedef struct query_args {
    query_key start_key, end_key; /* key= sets both */
    int has_keys;
    buf_t keys;                   /* minified JSON; an array once validated */
    int has_start_docid, has_end_docid;
    buf_t start_docid, end_docid;
    int descending;
    int inclusive_end;            /* default 1 */
    uint64_t limit;               /* default UINT64_MAX */
    uint64_t skip;
    int include_docs;
    int conflicts;                /* -1 unset */
    int attachments, att_encoding_info;
    int update_seq;
    int reduce;                   /* -1 unset */
    int group;                    /* -1 unset */
    long long group_level;        /* -1 unset; after validate: level or QUERY_GROUP_EXACT */
    int sorted;                   /* default 1 */
    int stable;
    int update;                   /* QUERY_UPDATE_* */
    int has_partition;
} query_args;

void query_args_init(query_args *a);
void query_args_free(query_args *a);
/* Deep copy into dst (initialised or not; freed first when from_init). */
int query_args_copy(query_args *dst, const query_args *src);
/* What parse_params does before reading a new set of parameters: keys and
 * grouping are not inherited (the /queries form). */
void query_args_new_query(query_args *a);

/* One parameter as URL text.  max_depth: nesting limit for JSON keys. */
int query_args_set_text(query_args *a, const char *name, size_t nlen, const char *val, size_t vlen,
                        unsigned max_depth, db_err *e);
/* One parameter as a decoded JSON value. */
int query_args_set_json(query_args *a, const char *name, size_t nlen, const json_val *v, db_err *e);
/* Every query-string parameter of t, in order. */
int query_args_from_target(query_args *a, const http_target_t *t, unsigned max_depth, db_err *e);
/* Every member of a JSON object, in order. */
int query_args_from_object(query_args *a, const json_val *obj, db_err *e);

/* couch_mrview_util:validate_args (view_type QUERY_VIEW_*) plus the
 * all_docs rule that partitions need a partitioned database (divan has
 * none): fixes group_level, checks keys is an array. */
int query_args_validate(query_args *a, int view_type, db_err *e);

#endif
