/*
 * stats.c — the counters of /_node/_local/_stats (see stats.h).
 */
#include "http/stats.h"

#include "base/status.h"
#include "http/router.h"
#include "json/json.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_llong counters[STAT_COUNT];

typedef struct stat_def {
    const char *group; /* "couchdb" or "couchdb/httpd" ... as a path */
    const char *name;
    const char *type;
    const char *desc;
} stat_def;

static const stat_def defs[STAT_COUNT] = {
    [STAT_DB_READS] = {"couchdb", "database_reads", "counter", "number of times a document was read from a database"},
    [STAT_DB_WRITES] = {"couchdb", "database_writes", "counter", "number of times a database was changed"},
    [STAT_REQUESTS] = {"couchdb/httpd", "requests", "counter", "number of HTTP requests"},
    [STAT_BULK_REQUESTS] = {"couchdb/httpd", "bulk_requests", "counter", "number of bulk requests"},
    [STAT_CHANGES_CLIENTS] = {"couchdb/httpd", "clients_requesting_changes", "counter",
                              "number of clients for continuous _changes"},
    [STAT_M_GET] = {"couchdb/httpd_request_methods", "GET", "counter", "number of HTTP GET requests"},
    [STAT_M_HEAD] = {"couchdb/httpd_request_methods", "HEAD", "counter", "number of HTTP HEAD requests"},
    [STAT_M_POST] = {"couchdb/httpd_request_methods", "POST", "counter", "number of HTTP POST requests"},
    [STAT_M_PUT] = {"couchdb/httpd_request_methods", "PUT", "counter", "number of HTTP PUT requests"},
    [STAT_M_DELETE] = {"couchdb/httpd_request_methods", "DELETE", "counter", "number of HTTP DELETE requests"},
    [STAT_M_COPY] = {"couchdb/httpd_request_methods", "COPY", "counter", "number of HTTP COPY requests"},
    [STAT_M_OPTIONS] = {"couchdb/httpd_request_methods", "OPTIONS", "counter", "number of HTTP OPTIONS requests"},
    [STAT_S_200] = {"couchdb/httpd_status_codes", "200", "counter", "number of HTTP 200 OK responses"},
    [STAT_S_201] = {"couchdb/httpd_status_codes", "201", "counter", "number of HTTP 201 Created responses"},
    [STAT_S_202] = {"couchdb/httpd_status_codes", "202", "counter", "number of HTTP 202 Accepted responses"},
    [STAT_S_206] = {"couchdb/httpd_status_codes", "206", "counter", "number of HTTP 206 Partial Content responses"},
    [STAT_S_301] = {"couchdb/httpd_status_codes", "301", "counter", "number of HTTP 301 Moved Permanently responses"},
    [STAT_S_304] = {"couchdb/httpd_status_codes", "304", "counter", "number of HTTP 304 Not Modified responses"},
    [STAT_S_400] = {"couchdb/httpd_status_codes", "400", "counter", "number of HTTP 400 Bad Request responses"},
    [STAT_S_401] = {"couchdb/httpd_status_codes", "401", "counter", "number of HTTP 401 Unauthorized responses"},
    [STAT_S_403] = {"couchdb/httpd_status_codes", "403", "counter", "number of HTTP 403 Forbidden responses"},
    [STAT_S_404] = {"couchdb/httpd_status_codes", "404", "counter", "number of HTTP 404 Not Found responses"},
    [STAT_S_405] = {"couchdb/httpd_status_codes", "405", "counter",
                    "number of HTTP 405 Method Not Allowed responses"},
    [STAT_S_409] = {"couchdb/httpd_status_codes", "409", "counter", "number of HTTP 409 Conflict responses"},
    [STAT_S_412] = {"couchdb/httpd_status_codes", "412", "counter",
                    "number of HTTP 412 Precondition Failed responses"},
    [STAT_S_413] = {"couchdb/httpd_status_codes", "413", "counter",
                    "number of HTTP 413 Request Entity Too Long responses"},
    [STAT_S_415] = {"couchdb/httpd_status_codes", "415", "counter",
                    "number of HTTP 415 Unsupported Media Type responses"},
    [STAT_S_416] = {"couchdb/httpd_status_codes", "416", "counter",
                    "number of HTTP 416 Requested Range Not Satisfiable responses"},
    [STAT_S_417] = {"couchdb/httpd_status_codes", "417", "counter",
                    "number of HTTP 417 Expectation Failed responses"},
    [STAT_S_500] = {"couchdb/httpd_status_codes", "500", "counter",
                    "number of HTTP 500 Internal Server Error responses"},
};

void http_stat_add(enum http_stat s, long long n)
{
    atomic_fetch_add_explicit(&counters[s], n, memory_order_relaxed);
}

void http_stat_method(int method)
{
    switch (method) {
    case HTTP_GET: http_stat_inc(STAT_M_GET); break;
    case HTTP_HEAD: http_stat_inc(STAT_M_HEAD); break;
    case HTTP_POST: http_stat_inc(STAT_M_POST); break;
    case HTTP_PUT: http_stat_inc(STAT_M_PUT); break;
    case HTTP_DELETE: http_stat_inc(STAT_M_DELETE); break;
    case HTTP_COPY: http_stat_inc(STAT_M_COPY); break;
    case HTTP_OPTIONS: http_stat_inc(STAT_M_OPTIONS); break;
    default: break;
    }
    http_stat_inc(STAT_REQUESTS);
}

void http_stat_status(int status)
{
    for (int s = STAT_S_200; s <= STAT_S_500; s++) {
        if (atoi(defs[s].name) == status) {
            http_stat_inc((enum http_stat)s);
            return;
        }
    }
}

/* Splits "couchdb/httpd" into components; returns the count. */
static size_t split_group(const char *g, const char *parts[4], size_t lens[4])
{
    size_t n = 0;
    while (*g && n < 4) {
        const char *e = strchr(g, '/');
        size_t l = e ? (size_t)(e - g) : strlen(g);
        parts[n] = g;
        lens[n++] = l;
        g += l + (e ? 1 : 0);
    }
    return n;
}

static int comp_eq(const char *p, size_t l, const char *s)
{
    return strlen(s) == l && !memcmp(p, s, l);
}

/* Writes the object of every stat whose full path (group + name) starts
 * with prefix[0..np); nesting follows the path.  Stats are listed grouped
 * (defs are ordered by group), so one pass with a "currently open path"
 * suffices. */
int http_stats_json(const char *const *prefix, size_t np, buf_t *out)
{
    json_writer w;
    json_writer_init(&w, out);
    const char *open[5];
    size_t openl[5], nopen = 0;
    int any = 0;
    json_write_begin_object(&w);
    for (int s = 0; s < STAT_COUNT; s++) {
        const char *parts[5];
        size_t lens[5];
        size_t n = split_group(defs[s].group, parts, lens);
        parts[n] = defs[s].name;
        lens[n++] = strlen(defs[s].name);
        size_t k = 0;
        while (k < np && k < n && comp_eq(parts[k], lens[k], prefix[k]))
            k++;
        if (k < np)
            continue;
        any = 1;
        /* path below the prefix: parts[np..n-1]; groups parts[np..n-2] */
        size_t common = 0;
        while (common < nopen && np + common < n - 1 && openl[common] == lens[np + common] &&
               !memcmp(open[common], parts[np + common], lens[np + common]))
            common++;
        while (nopen > common) {
            json_write_end_object(&w);
            nopen--;
        }
        for (size_t i = np + nopen; i + 1 < n; i++) {
            json_write_key(&w, parts[i], lens[i]);
            json_write_begin_object(&w);
            open[nopen] = parts[i];
            openl[nopen++] = lens[i];
        }
        long long v = atomic_load_explicit(&counters[s], memory_order_relaxed);
        if (np == n) {
            /* the prefix names this stat itself: its object is the answer */
            buf_reset(out);
            json_writer_init(&w, out);
        } else {
            json_write_key(&w, parts[n - 1], lens[n - 1]);
        }
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "value");
        json_write_i64(&w, v);
        json_write_key_cstr(&w, "type");
        json_write_cstr(&w, defs[s].type);
        json_write_key_cstr(&w, "desc");
        json_write_cstr(&w, defs[s].desc);
        json_write_end_object(&w);
        if (np == n)
            return w.err;
    }
    while (nopen--)
        json_write_end_object(&w);
    json_write_end_object(&w);
    return !any ? DV_ERR_NOTFOUND : w.err;
}
