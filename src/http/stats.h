/*
 * stats.h — process-wide counters behind GET /_node/_local/_stats, in
 * CouchDB's shape ({"couchdb":{"database_reads":{"value":N,"type":
 * "counter","desc":"..."}}}).  Relaxed atomic increments: a counter costs a
 * few nanoseconds and never a lock.
 */
#ifndef DV_HTTP_STATS_H
#define DV_HTTP_STATS_H

#include "base/buf.h"

enum http_stat {
    STAT_DB_READS,
    STAT_DB_WRITES,
    STAT_REQUESTS,
    STAT_BULK_REQUESTS,
    STAT_CHANGES_CLIENTS, /* a gauge: continuous/longpoll feeds open now */
    STAT_M_GET,
    STAT_M_HEAD,
    STAT_M_POST,
    STAT_M_PUT,
    STAT_M_DELETE,
    STAT_M_COPY,
    STAT_M_OPTIONS,
    STAT_S_200,
    STAT_S_201,
    STAT_S_202,
    STAT_S_206,
    STAT_S_301,
    STAT_S_304,
    STAT_S_400,
    STAT_S_401,
    STAT_S_403,
    STAT_S_404,
    STAT_S_405,
    STAT_S_409,
    STAT_S_412,
    STAT_S_413,
    STAT_S_415,
    STAT_S_416,
    STAT_S_417,
    STAT_S_500,
    STAT_COUNT
};

void http_stat_add(enum http_stat s, long long n);
static inline void http_stat_inc(enum http_stat s) { http_stat_add(s, 1); }
void http_stat_method(int method);
void http_stat_status(int status);
/* The whole tree, or the subtree named by path[0..n) (e.g. "couchdb",
 * "database_reads"); DV_ERR_NOTFOUND when it names nothing. */
int http_stats_json(const char *const *path, size_t n, buf_t *out);

#endif
