/*
 * uuids.c — id generation for /_uuids (see uuids.h).
 *
 * Every read or write of the state and the settings holds u->lock, so a
 * configuration change (on a worker) and id generation (on loops) never
 * see half of the other; the suffix a change replaces is freed after the
 * swap, under the lock no reader can hold it any more.
 */
#include "http/uuids.h"
#include "base/digest.h"
#include "base/log.h"
#include "base/status.h"
#include "config.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* Random step in [1, 0xffe], as couch_uuids:inc/0. */
static int random_step(uint32_t *step)
{
    unsigned char r[2];
    if (RAND_bytes(r, 2) != 1)
        return DV_ERR_IO;
    *step = 1 + (((uint32_t)r[0] << 8 | r[1]) % 0xffe);
    return DV_OK;
}

int http_uuids_conf_read(const struct config *c, http_uuids_conf_t *out)
{
    out->algorithm = config_get_str(c, "uuids", "algorithm", "sequential");
    out->utc_id_suffix = config_get_str(c, "uuids", "utc_id_suffix", "");
    return config_get_int(c, "uuids", "max_count", 1000, 0, 1000000, &out->max_count);
}

static int parse_algo(const char *algorithm, enum http_uuid_algo *out)
{
    if (!algorithm || strcmp(algorithm, "sequential") == 0)
        *out = HTTP_UUID_SEQUENTIAL;
    else if (strcmp(algorithm, "random") == 0)
        *out = HTTP_UUID_RANDOM;
    else if (strcmp(algorithm, "utc_random") == 0)
        *out = HTTP_UUID_UTC_RANDOM;
    else if (strcmp(algorithm, "utc_id") == 0)
        *out = HTTP_UUID_UTC_ID;
    else {
        log_error("http: [uuids] algorithm %s is not one of sequential, random, utc_random, utc_id", algorithm);
        return DV_ERR_INVALID;
    }
    return DV_OK;
}

int http_uuids_init(http_uuids_t *u, const http_uuids_conf_t *conf)
{
    memset(u, 0, sizeof *u);
    int rc = parse_algo(conf->algorithm, &u->algo);
    if (rc != DV_OK)
        return rc;
    u->max_count = conf->max_count;
    u->utc_suffix = strdup(conf->utc_id_suffix ? conf->utc_id_suffix : "");
    if (!u->utc_suffix)
        return DV_ERR_NOMEM;
    rc = dv_random_hex(u->prefix, 13);
    if (rc == DV_OK)
        rc = random_step(&u->seq);
    if (rc == DV_OK && pthread_mutex_init(&u->lock, NULL) != 0)
        rc = DV_ERR_NOMEM;
    if (rc != DV_OK) {
        free(u->utc_suffix);
        u->utc_suffix = NULL;
    }
    return rc;
}

int http_uuids_configure(http_uuids_t *u, const http_uuids_conf_t *conf)
{
    enum http_uuid_algo algo;
    char prefix[27];
    uint32_t seq;
    int rc = parse_algo(conf->algorithm, &algo);
    if (rc != DV_OK || (rc = dv_random_hex(prefix, 13)) != DV_OK || (rc = random_step(&seq)) != DV_OK)
        return rc;
    char *suffix = strdup(conf->utc_id_suffix ? conf->utc_id_suffix : "");
    if (!suffix)
        return DV_ERR_NOMEM;
    pthread_mutex_lock(&u->lock);
    if (algo != u->algo) {
        memcpy(u->prefix, prefix, sizeof prefix);
        u->seq = seq;
    }
    u->algo = algo;
    u->max_count = conf->max_count;
    char *old = u->utc_suffix;
    u->utc_suffix = suffix;
    pthread_mutex_unlock(&u->lock);
    free(old);
    return DV_OK;
}

long long http_uuids_max_count(http_uuids_t *u)
{
    pthread_mutex_lock(&u->lock);
    long long n = u->max_count;
    pthread_mutex_unlock(&u->lock);
    return n;
}

void http_uuids_destroy(http_uuids_t *u)
{
    if (!u->utc_suffix)
        return;
    pthread_mutex_destroy(&u->lock);
    free(u->utc_suffix);
    u->utc_suffix = NULL;
}

static unsigned long long now_micros(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
}

/* An id of the algorithms that keep no state: random and utc_random. */
static int next_random(enum http_uuid_algo algo, char *out, size_t cap)
{
    if (cap < 33)
        return DV_ERR_INVALID;
    if (algo == HTTP_UUID_RANDOM) {
        int rc = dv_random_hex(out, 16);
        return rc == DV_OK ? 32 : rc;
    }
    snprintf(out, cap, "%014llx", now_micros());
    int rc = dv_random_hex(out + 14, 9);
    return rc == DV_OK ? 32 : rc;
}

/* An id of utc_id (the configured suffix) or sequential (the prefix and
 * sequence), under the lock held. */
static int next_locked(http_uuids_t *u, char *out, size_t cap)
{
    int rc = DV_OK;
    if (u->algo == HTTP_UUID_UTC_ID) {
        int n = snprintf(out, cap, "%014llx%s", now_micros(), u->utc_suffix);
        return n < 0 || (size_t)n >= cap ? DV_ERR_INVALID : n;
    }
    if (cap < 33)
        return DV_ERR_INVALID;
    uint32_t step;
    rc = random_step(&step);
    if (rc == DV_OK) {
        if (u->seq + step >= 0xfff000) {
            rc = dv_random_hex(u->prefix, 13);
            u->seq = step;
        } else {
            u->seq += step;
        }
    }
    if (rc == DV_OK)
        snprintf(out, cap, "%s%06x", u->prefix, (unsigned)u->seq);
    return rc == DV_OK ? 32 : rc;
}

int http_uuids_next(http_uuids_t *u, char *out, size_t cap)
{
    /* The lock guards the settings, which the config API may change, and
     * the sequential state; random bytes are drawn outside it, so the loop
     * threads do not queue behind each other's RAND_bytes for every
     * document POSTed without an id. */
    pthread_mutex_lock(&u->lock);
    enum http_uuid_algo algo = u->algo;
    int stateless = algo == HTTP_UUID_RANDOM || algo == HTTP_UUID_UTC_RANDOM;
    int rc = stateless ? DV_OK : next_locked(u, out, cap);
    pthread_mutex_unlock(&u->lock);
    return stateless ? next_random(algo, out, cap) : rc;
}
