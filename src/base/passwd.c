/*
 * passwd.c — PBKDF2 password hashes in CouchDB's [admins] formats.
 *
 * All crypto is OpenSSL's (PKCS5_PBKDF2_HMAC, SHA1, RAND_bytes via digest.h,
 * CRYPTO_memcmp); this file only builds and parses the text forms.  The
 * derived key length is the digest's output length, as CouchDB computes it.
 */
#include "base/passwd.h"
#include "base/digest.h"
#include "base/status.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSWD_SALT_BYTES 16            /* 32 hex characters, as couch_uuids:random() */
#define PASSWD_MAX_ITERATIONS 1000000000L /* CouchDB's [chttpd_auth] max_iterations */

static const char *const prf_names[] = {"sha", "sha224", "sha256", "sha384", "sha512"};
static const char *const evp_names[] = {"sha1", "sha224", "sha256", "sha384", "sha512"};

static const EVP_MD *prf_digest(const char *prf, size_t prf_len)
{
    for (size_t i = 0; i < sizeof prf_names / sizeof prf_names[0]; i++)
        if (strlen(prf_names[i]) == prf_len && memcmp(prf_names[i], prf, prf_len) == 0)
            return EVP_get_digestbyname(evp_names[i]);
    return NULL;
}

/* Derives the hex key into out (2 * digest size + 1 bytes). */
static int derive_hex(const EVP_MD *md, const char *password, const char *salt, size_t salt_len,
                      long iterations, char *out)
{
    unsigned char key[EVP_MAX_MD_SIZE];
    int keylen = EVP_MD_get_size(md);
    if (keylen <= 0 || keylen > EVP_MAX_MD_SIZE)
        return DV_ERR_INVALID;
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), (const unsigned char *)salt, (int)salt_len,
                          (int)iterations, md, keylen, key) != 1)
        return DV_ERR_NOMEM;
    dv_hex_lower(key, (size_t)keylen, out);
    OPENSSL_cleanse(key, sizeof key);
    return DV_OK;
}

int passwd_hash(const char *password, const char *prf, long iterations, char **out)
{
    *out = NULL;
    const EVP_MD *md = prf_digest(prf, strlen(prf));
    if (!md || iterations < 1 || iterations > PASSWD_MAX_ITERATIONS)
        return DV_ERR_INVALID;
    char salt[2 * PASSWD_SALT_BYTES + 1];
    char key[2 * EVP_MAX_MD_SIZE + 1];
    int rc = dv_random_hex(salt, PASSWD_SALT_BYTES);
    if (rc != DV_OK)
        return rc;
    rc = derive_hex(md, password, salt, strlen(salt), iterations, key);
    if (rc != DV_OK)
        return rc;
    size_t n = strlen(prf) + strlen(key) + strlen(salt) + 40;
    char *s = malloc(n);
    if (!s)
        return DV_ERR_NOMEM;
    snprintf(s, n, "-pbkdf2:%s-%s,%s,%ld", prf, key, salt, iterations);
    *out = s;
    return DV_OK;
}

/* Splits "<key>,<salt>[,<iterations>]" in place-free fashion: pointers and
 * lengths into `s`.  Returns 0 on success, -1 when the shape is wrong. */
static int split_fields(const char *s, const char **key, size_t *key_len, const char **salt,
                        size_t *salt_len, long *iterations, int want_iterations)
{
    const char *c1 = strchr(s, ',');
    if (!c1)
        return -1;
    *key = s;
    *key_len = (size_t)(c1 - s);
    *salt = c1 + 1;
    const char *c2 = strchr(*salt, ',');
    if (!want_iterations) {
        if (c2)
            return -1;
        *salt_len = strlen(*salt);
        return *key_len && *salt_len ? 0 : -1;
    }
    if (!c2)
        return -1;
    *salt_len = (size_t)(c2 - *salt);
    const char *it = c2 + 1;
    if (*it < '1' || *it > '9')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(it, &end, 10);
    if (errno || *end || v < 1 || v > PASSWD_MAX_ITERATIONS)
        return -1;
    *iterations = v;
    return *key_len && *salt_len ? 0 : -1;
}

int passwd_is_hashed(const char *stored)
{
    return strncmp(stored, "-pbkdf2-", 8) == 0 || strncmp(stored, "-pbkdf2:", 8) == 0 ||
           strncmp(stored, "-hashed-", 8) == 0;
}

int passwd_verify(const char *stored, const char *password)
{
    const char *key, *salt;
    size_t key_len, salt_len;
    long iterations = 0;
    char computed[2 * EVP_MAX_MD_SIZE + 1];
    char *salt_z = NULL;
    int rc = DV_ERR_INVALID;

    if (strncmp(stored, "-hashed-", 8) == 0) {
        if (split_fields(stored + 8, &key, &key_len, &salt, &salt_len, &iterations, 0) != 0)
            goto done;
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
                 EVP_DigestUpdate(ctx, password, strlen(password)) == 1 &&
                 EVP_DigestUpdate(ctx, salt, salt_len) == 1 && EVP_DigestFinal_ex(ctx, digest, &dlen) == 1;
        EVP_MD_CTX_free(ctx);
        if (!ok) {
            rc = DV_ERR_NOMEM;
            goto done;
        }
        dv_hex_lower(digest, dlen, computed);
    } else {
        const EVP_MD *md;
        const char *rest;
        if (strncmp(stored, "-pbkdf2-", 8) == 0) {
            md = EVP_sha1();
            rest = stored + 8;
        } else if (strncmp(stored, "-pbkdf2:", 8) == 0) {
            const char *prf = stored + 8;
            const char *dash = strchr(prf, '-');
            if (!dash)
                goto done;
            md = prf_digest(prf, (size_t)(dash - prf));
            rest = dash + 1;
        } else {
            goto done;
        }
        if (!md || split_fields(rest, &key, &key_len, &salt, &salt_len, &iterations, 1) != 0)
            goto done;
        salt_z = strndup(salt, salt_len);
        if (!salt_z) {
            rc = DV_ERR_NOMEM;
            goto done;
        }
        rc = derive_hex(md, password, salt_z, salt_len, iterations, computed);
        if (rc != DV_OK)
            goto done;
        rc = DV_ERR_INVALID;
    }
    /* Stored keys may be upper-case hex when written by other tools. */
    if (key_len != strlen(computed))
        rc = DV_ERR_CONFLICT;
    else {
        char lower[2 * EVP_MAX_MD_SIZE + 1];
        for (size_t i = 0; i < key_len; i++)
            lower[i] = (key[i] >= 'A' && key[i] <= 'F') ? (char)(key[i] + 32) : key[i];
        rc = CRYPTO_memcmp(lower, computed, key_len) == 0 ? DV_OK : DV_ERR_CONFLICT;
    }
done:
    free(salt_z);
    OPENSSL_cleanse(computed, sizeof computed);
    return rc;
}
