/*
 * digest.h — MD5 and random bytes as the hex text CouchDB shows (view
 * signatures, ETags, query-server handles, uuids, secrets).  OpenSSL
 * computes; this only formats.
 */
#ifndef DIVAN_BASE_DIGEST_H
#define DIVAN_BASE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

/* n bytes as 2n lowercase hex digits followed by a NUL. */
void dv_hex_lower(const uint8_t *p, size_t n, char *out);

/* nbytes random bytes (OpenSSL's CSPRNG) as 2 * nbytes lowercase hex digits
 * and a NUL.  DV_ERR_IO when the generator fails (out is then unset);
 * nbytes at most 64. */
int dv_random_hex(char *out, size_t nbytes);

/* MD5 of p as 32 lowercase hex digits and a NUL.  DV_OK, or DV_ERR_NOMEM
 * when OpenSSL could not run the digest (out is then 32 zeros, so callers
 * that only label something with it stay well defined). */
int dv_md5_hex(const void *p, size_t n, char out[33]);

#endif
