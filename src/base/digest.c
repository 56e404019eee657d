/*
 * digest.c — MD5 and random hex text (see digest.h).  O(n) in the input; no
 * allocation of ours (EVP_Digest may allocate its context).
 */
#include "base/digest.h"
#include "base/status.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

void dv_hex_lower(const uint8_t *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = 0;
}

int dv_random_hex(char *out, size_t nbytes)
{
    uint8_t raw[64];
    if (nbytes > sizeof raw || RAND_bytes(raw, (int)nbytes) != 1)
        return DV_ERR_IO;
    dv_hex_lower(raw, nbytes, out);
    OPENSSL_cleanse(raw, nbytes); /* some callers make secrets of it */
    return DV_OK;
}

int dv_md5_hex(const void *p, size_t n, char out[33])
{
    uint8_t md[16];
    unsigned int len = 0;
    int rc = DV_OK;
    if (EVP_Digest(p, n, md, &len, EVP_md5(), NULL) != 1 || len != sizeof md) {
        memset(md, 0, sizeof md);
        rc = DV_ERR_NOMEM;
    }
    dv_hex_lower(md, sizeof md, out);
    return rc;
}
