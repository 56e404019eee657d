/*
 * status.h — the integer status codes every divan function returns.
 *
 * Convention (LMDB/nginx style): 0 is success, negative values are errors.
 * A function that can fail returns int and writes results through out
 * parameters; callers check every result.  Corruption is its own code so that
 * callers can report it distinctly and never mistake it for "not found".
 */
#ifndef DV_BASE_STATUS_H
#define DV_BASE_STATUS_H

enum {
    DV_OK = 0,
    DV_ERR_IO = -1,        /* the OS refused a read, write, sync, open…      */
    DV_ERR_CORRUPT = -2,   /* a checksum or a structural check failed        */
    DV_ERR_NOMEM = -3,     /* allocation failed                               */
    DV_ERR_NOTFOUND = -4,  /* key, document or file absent                    */
    DV_ERR_CONFLICT = -5,  /* optimistic concurrency: stale or missing rev    */
    DV_ERR_INVALID = -6,   /* caller passed malformed input                   */
    DV_ERR_EXISTS = -7,    /* create of something that already exists         */
    DV_ERR_TOO_LARGE = -8, /* input over a configured limit                   */
    DV_ERR_CLOSED = -9,    /* object is shutting down                         */
    DV_ERR_BUSY = -10,     /* operation already running (e.g. compaction)     */
    DV_ERR_MISSING_STUB = -11, /* attachment stub names nothing in the parent */
    DV_ERR_TIMEOUT = -12,  /* a deadline passed (query server os_process_timeout) */
};

/* Short stable name of a status code, for logs and tests ("corrupt", …). */
const char *dv_strerror(int status);

#endif
