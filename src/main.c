/*
 * main.c — process start-up and shutdown.
 *
 * Order: parse flags, build the configuration (which creates the data
 * directory, persists the server uuid and hashes admin passwords), set the
 * log level, start the HTTP server, log the URL it serves, then wait for
 * SIGTERM or SIGINT.  Those signals are blocked in every thread and taken
 * synchronously here with sigwait, so no handler runs in signal context;
 * a stop then lets requests in flight finish and the process exits 0.
 */
#include "base/log.h"
#include "base/status.h"
#include "config.h"
#include "db/db.h"
#include "http/cors.h"
#include "http/limits.h"
#include "http/tls.h"
#include "http/uuids.h"
#include "http/auth.h"
#include "http/server.h"
#include "store/file.h"
#include "views/qserver.h"
#include "views/views.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* Two h2o 2.2 leaks divan cannot fix from outside: freed memory-pool chunks
 * and socket buffers sit on thread-local recycle lists with no call to
 * drain them, lost when a loop thread exits; and the evloop build of
 * h2o_multithread_destroy_queue closes the queue but never frees it.  Only
 * those allocations are exempt from LeakSanitizer. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\nleak:h2o_multithread_create_queue\n";
}
#endif

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

/* Reads the server options from the config; DV_ERR_INVALID when a value is
 * malformed (already logged).  limits: as read at start (a config change
 * may alter them later; the server then publishes its own). */
static int server_opts(const config_t *c, const http_limits_live_t *limits, http_server_opts_t *o,
                       http_vendor_field_t **vendor)
{
    long long port, threads, drain, workers;
    http_uuids_conf_t uuids;
    const char *att_types;
    int att_level;
    long long max_conns, req_timeout;
    int rc;
    if ((rc = config_get_int(c, "chttpd", "port", 5984, 0, 65535, &port)) != DV_OK ||
        (rc = config_get_int(c, "divan", "http_threads", default_threads(), 1, 256, &threads)) != DV_OK ||
        (rc = http_uuids_conf_read(c, &uuids)) != DV_OK ||
        (rc = config_get_int(c, "divan", "shutdown_drain_ms", 10000, 0, 3600000, &drain)) != DV_OK ||
        (rc = http_att_conf_read(c, &att_types, &att_level)) != DV_OK ||
        (rc = config_get_int(c, "divan", "worker_threads", 4, 1, 256, &workers)) != DV_OK ||
        (rc = config_get_int(c, "divan", "max_connections", 2048, 1, 10000000, &max_conns)) != DV_OK ||
        (rc = config_get_int(c, "divan", "request_timeout_ms", 60000, 1, 86400000, &req_timeout)) != DV_OK)
        return rc;
    memset(o, 0, sizeof *o);
    o->bind_address = config_bind_address(c);
    o->port = (int)port;
    o->threads = (int)threads;
    o->uuid = config_uuid(c);
    o->uuids_max_count = uuids.max_count;
    o->uuids_algorithm = uuids.algorithm;
    o->uuids_utc_id_suffix = uuids.utc_id_suffix;
    o->max_request_size = limits->max_request_size;
    o->drain_ms = (int)drain;
    o->max_document_size = limits->max_document_size;
    o->max_json_depth = limits->max_json_depth;
    o->worker_threads = (int)workers;
    o->att_compressible_types = att_types;
    o->att_compression_level = att_level;
    o->purge_max_ids = limits->purge_max_ids;
    o->purge_max_revs = limits->purge_max_revs;
    /* Each connection is a descriptor: raise the soft limit as far as the
     * hard one allows, and keep max_connections within what fits. */
    long long nofile = http_limits_raise_nofile(), fit = http_limits_connections_for(nofile);
    if (nofile > 0 && max_conns > fit) {
        log_warn("config: [divan] max_connections = %lld needs more descriptors than RLIMIT_NOFILE (%lld) allows; "
                 "using %lld",
                 max_conns, nofile, fit);
        max_conns = fit;
    }
    o->max_connections = max_conns;
    o->request_timeout_ms = req_timeout;
    if ((rc = http_vendor_read(c, vendor, &o->nvendor)) != DV_OK)
        return rc;
    o->vendor = *vendor;
    return DV_OK;
}

/* The databases: [couchdb] max_dbs_open, [divan] durability
 * (always|periodic|never), sync_interval_ms, cache_mb, map_resident_mb,
 * compression (lz4|zstd|none). */
static int open_dbs(const config_t *c, const http_limits_live_t *limits, const char *default_security,
                    db_server **out)
{
    long long sync_ms, cache_mb, map_mb;
    int rc;
    if ((rc = config_get_int(c, "divan", "sync_interval_ms", 200, 1, 3600000, &sync_ms)) != DV_OK ||
        (rc = config_get_int(c, "divan", "cache_mb", DB_CACHE_BYTES_DEFAULT >> 20, 1, 1 << 20, &cache_mb)) !=
            DV_OK ||
        (rc = config_get_int(c, "divan", "map_resident_mb", STORE_FILE_MAP_TRIM_DEFAULT >> 20, 1, 1 << 20,
                             &map_mb)) != DV_OK)
        return rc;
    db_server_opts o = {0};
    o.dir = config_data_dir(c);
    o.max_dbs_open = (size_t)limits->max_dbs_open;
    o.cache_bytes = (size_t)cache_mb << 20;
    o.map_resident_bytes = (size_t)map_mb << 20;
    o.sync_interval_ms = (unsigned)sync_ms;
    o.default_security = default_security;
    const char *d = config_get_str(c, "divan", "durability", "always");
    if (!strcmp(d, "always"))
        o.durability = STORE_DURABLE_ALWAYS;
    else if (!strcmp(d, "periodic"))
        o.durability = STORE_DURABLE_PERIODIC;
    else if (!strcmp(d, "never"))
        o.durability = STORE_DURABLE_NEVER;
    else {
        log_error("config: [divan] durability must be always, periodic or never, not %s", d);
        return DV_ERR_INVALID;
    }
    const char *z = config_get_str(c, "divan", "compression", "lz4");
    if (!strcmp(z, "lz4"))
        o.compression = STORE_COMPRESS_LZ4;
    else if (!strcmp(z, "zstd"))
        o.compression = STORE_COMPRESS_ZSTD;
    else if (!strcmp(z, "none"))
        o.compression = STORE_COMPRESS_NONE;
    else {
        log_error("config: [divan] compression must be lz4, zstd or none, not %s", z);
        return DV_ERR_INVALID;
    }
    return db_server_open(&o, out);
}

/* The query-server pool and the view engine: [couchdb] os_process_timeout
 * (ms), [query_server_config] os_process_memory_limit (bytes, 0 = none),
 * reduce_limit, [divan] query_servers (processes; 0 = CPUs),
 * query_server_path, view_batch_docs. */
static int open_views(const config_t *c, const http_limits_live_t *limits, qserver **qs, views **v)
{
    long long memlimit, procs, batch;
    int rc;
    if ((rc = config_get_int(c, "query_server_config", "os_process_memory_limit", 0, 0, 1LL << 40, &memlimit)) !=
            DV_OK ||
        (rc = config_get_int(c, "divan", "query_servers", 0, 0, 256, &procs)) != DV_OK ||
        (rc = config_get_int(c, "divan", "view_batch_docs", 2000, 1, 100000, &batch)) != DV_OK)
        return rc;
    qserver_config qc = {0};
    qc.path = config_get(c, "divan", "query_server_path");
    qc.pool_size = (unsigned)procs;
    qc.timeout_ms = (unsigned)limits->os_process_timeout;
    qc.memory_limit = (uint64_t)memlimit;
    qc.reduce_limit = config_get(c, "query_server_config", "reduce_limit");
    if ((rc = qserver_open(&qc, qs)) != DV_OK) {
        log_error("views: the JavaScript query server is not available (%s)", dv_strerror(rc));
        return rc;
    }
    views_opts vo = {0};
    vo.qs = *qs;
    vo.batch_docs = (size_t)batch;
    return views_open(&vo, v);
}

/* [ssl] enable, port (6984, 0 for any free one), cert_file, key_file, as
 * CouchDB 3.  *out stays NULL when TLS is off. */
static int open_tls(const config_t *c, SSL_CTX **out, int *port)
{
    int enabled = 0, rc;
    long long p;
    *out = NULL;
    if ((rc = config_get_bool(c, "ssl", "enable", 0, &enabled)) != DV_OK ||
        (rc = config_get_int(c, "ssl", "port", 6984, 0, 65535, &p)) != DV_OK)
        return rc;
    *port = (int)p;
    if (!enabled)
        return DV_OK;
    return http_tls_ctx_new(config_get(c, "ssl", "cert_file"), config_get(c, "ssl", "key_file"), out);
}

struct admin_list {
    const char **names, **hashes;
    size_t n;
};

static void collect_admin(void *ctx, const char *key, const char *value)
{
    struct admin_list *l = ctx;
    l->names[l->n] = key;
    l->hashes[l->n] = value;
    l->n++;
}

/* Authentication settings (http/auth.h) from [admins], [chttpd_auth],
 * [chttpd], [chttpd_auth_lockout]; *default_security from [couchdb]
 * default_security (NULL: "{}").  CouchDB 3 refuses to start without a server
 * admin ("admin party" is gone): so does divan. */
static int open_auth(const config_t *c, struct admin_list *al, const char **default_security, http_auth_t **out)
{
    long long lk_objects, lk_lifetime;
    http_auth_opts_t o = {0};
    int rc;
    if ((rc = http_auth_live_read(c, &o.live)) != DV_OK ||
        (rc = config_get_int(c, "chttpd_auth_lockout", "max_objects", 10000, 1, 100000000, &lk_objects)) != DV_OK ||
        (rc = config_get_int(c, "chttpd_auth_lockout", "max_lifetime", 300000, 1, 1LL << 40, &lk_lifetime)) !=
            DV_OK)
        return rc;
    if ((rc = http_auth_default_security(c, default_security)) != DV_OK)
        return rc;
    size_t n = config_count(c, "admins");
    if (n == 0) {
        log_error("no server admin is configured, refusing to start (CouchDB 3 has no admin party): "
                  "pass --admin NAME:PASSWORD, put NAME = PASSWORD under [admins] in a --config file, "
                  "or start once with --first-admin NAME to get a random password");
        return DV_ERR_INVALID;
    }
    al->names = calloc(n, sizeof *al->names);
    al->hashes = calloc(n, sizeof *al->hashes);
    al->n = 0;
    if (!al->names || !al->hashes)
        return DV_ERR_NOMEM;
    config_foreach(c, "admins", collect_admin, al);
    o.admin_names = al->names;
    o.admin_hashes = al->hashes;
    o.nadmins = al->n;
    o.lockout_max_objects = lk_objects;
    o.lockout_max_lifetime_ms = lk_lifetime;
    return http_auth_new(&o, out);
}

/* The _users database exists from the start (with [couchdb]
 * default_security, like every new database), as CouchDB's cluster setup
 * creates it. */
static int ensure_users_db(db_server *dbs)
{
    int rc = db_create(dbs, HTTP_AUTH_USERS_DB, NULL);
    return rc == DV_ERR_EXISTS ? DV_OK : rc;
}

int main(int argc, char **argv)
{
    config_args_t args;
    config_t *cfg = NULL;
    http_server_t *srv = NULL;
    db_server *dbs = NULL;
    qserver *qs = NULL;
    views *vws = NULL;
    http_vendor_field_t *vendor = NULL;
    http_cors_t *cors = NULL;
    SSL_CTX *tls = NULL;
    struct admin_list admins = {NULL, NULL, 0};
    http_auth_t *auth = NULL;
    http_server_opts_t opts;
    http_limits_live_t limits; /* as read at start: the server publishes later changes itself */
    int exit_code = 1;

    if (config_parse_args(argc, argv, &args) != DV_OK)
        return 2;
    /* Block the stop signals before any thread exists so all inherit it. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up is an EPIPE, not a death */

    if (config_setup(&args, &cfg) != DV_OK)
        goto done;
    const char *level = config_get(cfg, "log", "level");
    if (level)
        log_set_level((enum log_level)log_level_parse(level));
    if (http_limits_read(cfg, &limits) != DV_OK || server_opts(cfg, &limits, &opts, &vendor) != DV_OK)
        goto done;
    if (http_cors_new(cfg, &cors) != DV_OK)
        goto done;
    opts.cors = cors;
    if (open_tls(cfg, &tls, &opts.tls_port) != DV_OK)
        goto done;
    opts.tls_ctx = tls;
    const char *default_security = NULL;
    if (open_auth(cfg, &admins, &default_security, &auth) != DV_OK)
        goto done;
    opts.auth = auth;
    if (open_dbs(cfg, &limits, default_security, &dbs) != DV_OK)
        goto done;
    /* Request bodies beyond 2 MiB wait for their handler in an unlinked
     * file of the data directory, not in anonymous memory (http/limits.h).
     * The threshold is h2o's, on a buffer that grows by doubling: 4 MiB
     * keeps the 2 MiB buffer in memory.  At 1 MiB a 1,000-doc _bulk_docs
     * of 1 KiB docs went to the file: block allocation, faults on the
     * shared mapping and the inode's eviction cost ~6-10% of the server's
     * CPU per batch (docs/benchmarks.md). */
    if (http_limits_body_spill(config_data_dir(cfg), (size_t)4 << 20) != DV_OK)
        goto done;
    opts.dbs = dbs;
    if (ensure_users_db(dbs) != DV_OK) {
        log_error("cannot create the %s database", HTTP_AUTH_USERS_DB);
        goto done;
    }
    if (open_views(cfg, &limits, &qs, &vws) != DV_OK)
        goto done;
    opts.views = vws;
    /* From here on the config API may change cfg from server threads:
     * this thread reads it no more (the server keeps its own copies). */
    opts.config = cfg;
    log_notice("data directory %s", config_data_dir(cfg));
    if (http_server_start(&opts, &srv) != DV_OK)
        goto done;
    const char *bind = http_server_opts(srv)->bind_address;
    int v6 = strchr(bind, ':') != NULL;
    log_notice("divan listening on http://%s%s%s:%d/", v6 ? "[" : "", bind, v6 ? "]" : "",
               http_server_port(srv));
    if (tls)
        log_notice("divan listening on https://%s%s%s:%d/", v6 ? "[" : "", bind, v6 ? "]" : "",
                   http_server_tls_port(srv));

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    log_notice("%s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http_server_stop(srv);
    exit_code = 0;
done:
    views_close(vws);
    qserver_close(qs);
    db_server_close(dbs); /* commits what is queued */
    if (exit_code == 0)
        log_notice("stopped");
    free(vendor);
    http_cors_free(cors);
    http_tls_ctx_free(tls);
    http_auth_free(auth);
    free(admins.names);
    free(admins.hashes);
    config_free(cfg);
    config_args_free(&args);
    return exit_code;
}
