/*
 * uuids.h — document ids for GET /_uuids, CouchDB's [uuids] algorithms.
 *
 *   sequential  (default) 26 random hex digits of prefix, then a 6-digit hex
 *               counter that grows by a random step in [1, 0xffe]; a new
 *               random prefix when the counter passes 0xfff000.  Ids from
 *               one server sort in creation order most of the time, which
 *               keeps B+tree inserts near the right edge.
 *   random      32 random hex digits.
 *   utc_random  14 hex digits of microseconds since the epoch + 18 random.
 *   utc_id      14 hex digits of microseconds + [uuids] utc_id_suffix.
 *
 * Randomness is OpenSSL's RAND_bytes.  Thread-safe: the settings and the
 * sequential state are behind a mutex, held for the sequential and utc_id
 * algorithms' work but not for drawing random bytes (one id per document
 * POSTed without an id).  The settings change without a restart, as in
 * CouchDB: http_uuids_configure (couch_uuids restarts its state on any
 * [uuids] change; divan only when the algorithm changes, which is all a
 * client can tell apart).
 */
#ifndef DV_HTTP_UUIDS_H
#define DV_HTTP_UUIDS_H

#include <pthread.h>
#include <stdint.h>

enum http_uuid_algo { HTTP_UUID_SEQUENTIAL, HTTP_UUID_RANDOM, HTTP_UUID_UTC_RANDOM, HTTP_UUID_UTC_ID };

typedef struct http_uuids {
    pthread_mutex_t lock;
    enum http_uuid_algo algo;
    char prefix[27];
    uint32_t seq;
    char *utc_suffix;
    long long max_count; /* [uuids] max_count: larger GET /_uuids counts get 400 */
} http_uuids_t;

/* The [uuids] settings of a configuration (strings point into it). */
struct config;
typedef struct http_uuids_conf {
    const char *algorithm;     /* NULL: sequential */
    const char *utc_id_suffix; /* NULL: "" */
    long long max_count;
} http_uuids_conf_t;
/* DV_ERR_INVALID (logged) for a max_count that is not a number in range. */
int http_uuids_conf_read(const struct config *c, http_uuids_conf_t *out);

/* algorithm: one of the names above (NULL = sequential); DV_ERR_INVALID for
 * an unknown name. */
int http_uuids_init(http_uuids_t *u, const http_uuids_conf_t *conf);
/* New settings for the ids that follow; a new algorithm starts afresh (a
 * new sequential prefix).  DV_ERR_INVALID (logged): unknown algorithm, the
 * old settings stay. */
int http_uuids_configure(http_uuids_t *u, const http_uuids_conf_t *conf);
long long http_uuids_max_count(http_uuids_t *u);
void http_uuids_destroy(http_uuids_t *u);
/* Writes one id and a NUL into out (at least 33 + strlen(suffix) bytes);
 * returns its length, or a negative DV_ERR_* when randomness fails. */
int http_uuids_next(http_uuids_t *u, char *out, size_t cap);

#endif
