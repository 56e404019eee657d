/*
 * fuzz_jwt.c — libFuzzer target for JWT verification (http/jwt.c), the
 * parser of the untrusted bytes after "Authorization: Bearer ".
 *
 * Input: byte 0 picks options (bit 0: required_claims "" instead of the
 * default "exp"; bit 1: roles from the path "realm.roles" instead of
 * "_couchdb.roles"; bit 2: required_claims "exp, nbf, iat, typ, kid,
 * {iss, \"me\"}"), the rest is the token.  Keys: an HMAC secret
 * (hmac:_default, "secret"), an RSA key (rsa:r) and a P-256 key (ec:e);
 * the seeds in fuzz/corpus/fuzz_jwt/ include tokens signed with them, so
 * mutations start from inputs that reach the signature checks.  Checked on
 * every input: the result is either valid with a name, or one of CouchDB's
 * statuses with a non-empty printable reason; nothing leaks (ASan).
 */
#include "base/status.h"
#include "http/jwt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char RSA_PEM[] =
    "-----BEGIN PUBLIC KEY-----\\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyQpbrI58cIIk4huTwK6l\\n"
    "MQDhe6Bh3B+2iJsxm6mYLqBsNVnZMJ8mG/8pVxYssqzeo44OE8e4lq0awkanj0u3\\n"
    "l09lcQUG05scNwe/MejxhegcV/m8MTYEZcvx441/RUrOl0/zZ9n+HawVrb7ViKSt\\n"
    "dopSrhWxUTM63xmLowVL4k5PSQIljT2ZL8M5LP6B6SK6EVf5De+7m6p07CEbtJyd\\n"
    "xWMigEkqaK3p1KFrSawIxUSoT3PCs6RczZPn05dtTipmHEx2jtZ6Aky5a6rezLaP\\n"
    "yQoJeZzwPfTqE+b50oUSOD21UHbReOJOVEkIMzFId9jDL0aZhvFj5upflvFWSvYy\\n"
    "BQIDAQAB\\n"
    "-----END PUBLIC KEY-----\\n";
static const char EC_PEM[] =
    "-----BEGIN PUBLIC KEY-----\\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoUYFYMT/I0dbsCr1KgfR6ASodEEO\\n"
    "IzFN7CcY+Nn6VskqQiuQP/t+P0yXPBnfyizx8JSAilQQoUHf2EXv37XPiA==\\n"
    "-----END PUBLIC KEY-----\\n";

static const char *lookup(void *ctx, const char *name)
{
    (void)ctx;
    if (strcmp(name, "hmac:_default") == 0)
        return "c2VjcmV0"; /* "secret" */
    if (strcmp(name, "rsa:r") == 0)
        return RSA_PEM;
    if (strcmp(name, "ec:e") == 0)
        return EC_PEM;
    if (strcmp(name, "hmac:bad") == 0)
        return "not base64!";
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    jwt_opts o = {.now = 1700000000, .lookup = lookup};
    if (data[0] & 1)
        o.required_claims = "";
    if (data[0] & 2)
        o.roles_claim_path = "realm.roles";
    if (data[0] & 4)
        o.required_claims = "exp, nbf, iat, typ, kid, {iss, \"me\"}";
    jwt_result r;
    if (jwt_verify((const char *)data + 1, size - 1, &o, &r) != DV_OK) {
        jwt_result_free(&r);
        return 0;
    }
    if (r.status == 0) {
        if (!r.name || r.error)
            abort();
        for (size_t i = 0; i < r.nroles; i++)
            if (!r.roles[i])
                abort();
    } else {
        if (r.status != 400 && r.status != 401 && r.status != 404 && r.status != 500)
            abort();
        if (!r.error || !r.reason[0] || r.name || r.nroles)
            abort();
        for (const char *p = r.reason; *p; p++)
            if ((unsigned char)*p < 0x20)
                abort();
    }
    jwt_result_free(&r);
    return 0;
}
