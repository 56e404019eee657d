/*
 * limits.c — process-wide resource limits (see limits.h).
 *
 * h2o 2.2 keeps a request's bytes (headers, then the whole body) in one
 * growing buffer per connection; once that buffer would reach the
 * threshold of h2o_socket_buffer_mmap_settings it moves to a temporary
 * file that h2o creates with mkstemp and unlinks at once, and maps.  h2o's
 * default is 32 MiB in /tmp (often RAM-backed tmpfs): divan lowers the
 * threshold and points the template into the data directory, so what
 * abusive uploads can pin in anonymous memory is about max_connections
 * times the threshold, and bigger bodies cost page cache of a real disk.
 * The setting is a global of libh2o, written here before any loop starts
 * and read-only afterwards.
 *
 * http_limits_read is the one place the request limits are parsed, for
 * start-up and for every configuration change alike, so both accept the
 * same values with the same defaults (CouchDB 3's).
 */
#include "http/limits.h"
#include "base/log.h"
#include "base/status.h"
#include "config.h"

#include <h2o.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

long long http_limits_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -1;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)1 << 40)
        return 1LL << 40;
    return (long long)rl.rlim_cur;
}

long long http_limits_connections_for(long long nofile)
{
    long long n = nofile / 2;
    return n < 1 ? 1 : n;
}

int http_limits_body_spill(const char *dir, size_t threshold)
{
    h2o_buffer_mmap_settings_t *m = &h2o_socket_buffer_mmap_settings;
    int n = snprintf(m->fn_template, sizeof m->fn_template, "%s/.divan-request.XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof m->fn_template) {
        snprintf(m->fn_template, sizeof m->fn_template, "/tmp/h2o.b.XXXXXX");
        log_error("http: data directory path too long for request spill files: %s", dir);
        return DV_ERR_INVALID;
    }
    m->threshold = threshold;
    return DV_OK;
}

int http_limits_read(const struct config *c, http_limits_live_t *out)
{
    long long depth;
    int rc;
    if ((rc = config_get_int(c, "chttpd", "max_http_request_size", 4294967296LL, 1, 1LL << 40,
                             &out->max_request_size)) != DV_OK ||
        (rc = config_get_int(c, "couchdb", "max_document_size", 8000000, 1, 1LL << 40, &out->max_document_size)) !=
            DV_OK ||
        (rc = config_get_int(c, "chttpd", "max_json_depth", 512, 1, 100000, &depth)) != DV_OK ||
        (rc = config_get_int(c, "purge", "max_document_id_number", 100, 1, 1000000, &out->purge_max_ids)) !=
            DV_OK ||
        (rc = config_get_int(c, "purge", "max_revisions_number", 1000, 1, 100000000, &out->purge_max_revs)) !=
            DV_OK ||
        (rc = config_get_int(c, "couchdb", "max_dbs_open", 500, 1, 1000000, &out->max_dbs_open)) != DV_OK ||
        (rc = config_get_int(c, "couchdb", "os_process_timeout", 5000, 1, 3600000, &out->os_process_timeout)) !=
            DV_OK)
        return rc;
    out->max_json_depth = (unsigned)depth;
    return DV_OK;
}
