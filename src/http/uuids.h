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
 * Randomness is OpenSSL's RAND_bytes.  Thread-safe: the sequential state is
 * behind a mutex (a few nanoseconds per id; ids are never a hot path).
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
} http_uuids_t;

/* algorithm: one of the names above (NULL = sequential); DV_ERR_INVALID for
 * an unknown name. */
int http_uuids_init(http_uuids_t *u, const char *algorithm, const char *utc_id_suffix);
void http_uuids_destroy(http_uuids_t *u);
/* Writes one id and a NUL into out (at least 33 + strlen(suffix) bytes);
 * returns its length, or a negative DV_ERR_* when randomness fails. */
int http_uuids_next(http_uuids_t *u, char *out, size_t cap);

#endif
