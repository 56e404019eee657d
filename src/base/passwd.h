/*
 * passwd.h — CouchDB-compatible password hashes for server admins.
 *
 * CouchDB stores an [admins] entry as "-pbkdf2:<prf>-<hex key>,<salt>,<iterations>"
 * (3.4+), "-pbkdf2-<hex key>,<salt>,<iterations>" (PBKDF2-HMAC-SHA1, before
 * 3.4) or "-hashed-<hex sha1(password+salt)>,<salt>" (legacy "simple").  The
 * salt is the 32-character hex string itself, used as bytes, not decoded:
 * hashes written here verify in CouchDB and the other way round, so a data
 * directory's admins survive a move between the two servers.
 *
 * The cost is PBKDF2's: `iterations` HMAC rounds per hash or verify (about
 * 50 ms at CouchDB's default of 50000 with SHA-256 on one core here), which
 * is why callers hash once at start-up and never per request.
 */
#ifndef DV_BASE_PASSWD_H
#define DV_BASE_PASSWD_H

#include <stddef.h>

#define PASSWD_DEFAULT_PRF "sha256"
#define PASSWD_DEFAULT_ITERATIONS 50000

/* Writes a NUL-terminated stored form of `password` into a malloc'd string
 * (*out, caller frees).  prf: "sha", "sha224", "sha256", "sha384" or
 * "sha512"; iterations >= 1.  A fresh random salt is drawn for each call.
 * DV_ERR_INVALID for an unknown prf or a bad iteration count. */
int passwd_hash(const char *password, const char *prf, long iterations, char **out);

/* 1 if `stored` is one of the hashed forms above, 0 if it is anything else
 * (CouchDB then treats it as a plain password to be hashed). */
int passwd_is_hashed(const char *stored);

/* Checks `password` against a hashed form: DV_OK when it matches,
 * DV_ERR_CONFLICT when it does not, DV_ERR_INVALID when `stored` is not a
 * well-formed hash.  The final comparison takes constant time. */
int passwd_verify(const char *stored, const char *password);

#endif
