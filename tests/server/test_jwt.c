/*
 * test_jwt.c — JWT verification (http/jwt.c) with tokens signed here by
 * OpenSSL: every algorithm with keys generated per run, then each way a
 * token is refused (expired, not yet valid, bad signature, wrong alg or key
 * kind, malformed) with CouchDB's status and reason, required_claims and
 * the roles claim forms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/base64.h"
#include "base/buf.h"
#include "base/status.h"
#include "http/jwt.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1700000000LL

static EVP_PKEY *g_rsa, *g_p256, *g_p384, *g_p521;
static char *g_rsa_pem, *g_p256_pem, *g_p384_pem, *g_p521_pem;
static const char SECRET[] = "a-secret-of-thirty-two-bytes!!!!";
static char g_secret_b64[64];

/* ---- helpers ---------------------------------------------------------------- */

static void b64url(const void *p, size_t n, buf_t *out)
{
    buf_t t = BUF_INIT;
    assert_int_equal(base64_encode(p, n, &t), DV_OK);
    for (size_t i = 0; i < t.len; i++) {
        char c = (char)t.data[i];
        if (c == '=')
            break;
        assert_int_equal(buf_append_byte(out, (uint8_t)(c == '+' ? '-' : c == '/' ? '_' : c)), DV_OK);
    }
    buf_free(&t);
}

/* PEM of the public key; escaped: line breaks as the two characters "\n". */
static char *pub_pem(EVP_PKEY *k, int escaped)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = calloc(2 * (size_t)n + 1, 1);
    assert_non_null(out);
    char *o = out;
    for (long i = 0; i < n; i++) {
        if (escaped && data[i] == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else
            *o++ = data[i];
    }
    BIO_free(b);
    return out;
}

static const char *lookup(void *ctx, const char *name)
{
    (void)ctx;
    if (strcmp(name, "hmac:_default") == 0)
        return g_secret_b64;
    if (strcmp(name, "rsa:rk") == 0)
        return g_rsa_pem;
    if (strcmp(name, "ec:p256") == 0)
        return g_p256_pem;
    if (strcmp(name, "ec:p384") == 0)
        return g_p384_pem;
    if (strcmp(name, "ec:p521") == 0)
        return g_p521_pem;
    if (strcmp(name, "rsa:notrsa") == 0) /* an EC key filed as RSA */
        return g_p256_pem;
    if (strcmp(name, "rsa:junk") == 0)
        return "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----";
    return NULL;
}

/* Signs header.payload with `alg` using `key` (EVP_PKEY for RS/ES, the
 * raw secret for HS); corrupt flips one signature bit. */
static char *sign(const char *header, const char *payload, const char *alg, EVP_PKEY *key, int corrupt)
{
    buf_t t = BUF_INIT;
    b64url(header, strlen(header), &t);
    assert_int_equal(buf_append_byte(&t, '.'), DV_OK);
    b64url(payload, strlen(payload), &t);
    const EVP_MD *md = strstr(alg, "256") ? EVP_sha256() : strstr(alg, "384") ? EVP_sha384() : EVP_sha512();
    unsigned char sig[1024];
    size_t siglen = sizeof sig;
    if (alg[0] == 'H') {
        unsigned int l;
        assert_non_null(HMAC(md, SECRET, (int)strlen(SECRET), t.data, t.len, sig, &l));
        siglen = l;
    } else if (alg[0] == 'R' || alg[0] == 'E') {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(c, NULL, md, NULL, key), 1);
        assert_int_equal(EVP_DigestSign(c, sig, &siglen, t.data, t.len), 1);
        EVP_MD_CTX_free(c);
        if (alg[0] == 'E') { /* DER → r||s */
            const unsigned char *p = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
            assert_non_null(es);
            int half = EVP_PKEY_get_bits(key) == 521 ? 66 : (EVP_PKEY_get_bits(key) + 7) / 8;
            assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, half), half);
            assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + half, half), half);
            siglen = 2 * (size_t)half;
            ECDSA_SIG_free(es);
        }
    } else {
        siglen = 0;
    }
    if (corrupt && siglen)
        sig[siglen / 2] ^= 1;
    assert_int_equal(buf_append_byte(&t, '.'), DV_OK);
    b64url(sig, siglen, &t);
    assert_int_equal(buf_append_byte(&t, 0), DV_OK);
    return (char *)t.data;
}

static jwt_opts opts(const char *required)
{
    jwt_opts o = {.required_claims = required, .now = NOW, .lookup = lookup};
    return o;
}

/* Verifies and checks status and reason (reason NULL: valid). */
static void expect(const char *token, const jwt_opts *o, int status, const char *reason, jwt_result *keep)
{
    jwt_result r;
    assert_int_equal(jwt_verify(token, strlen(token), o, &r), DV_OK);
    if (r.status != status || (reason && strcmp(r.reason, reason) != 0))
        fail_msg("token %.60s…: got %d %s %s, want %d %s", token, r.status, r.error ? r.error : "", r.reason, status,
                 reason ? reason : "");
    if (keep)
        *keep = r;
    else
        jwt_result_free(&r);
}

static const char *PAYLOAD_OK = "{\"sub\":\"alice\",\"exp\":1700000600,\"_couchdb.roles\":[\"_admin\",\"r1\"]}";

/* ---- tests -------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    g_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g_p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g_p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    g_p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    if (!g_rsa || !g_p256 || !g_p384 || !g_p521)
        return -1;
    g_rsa_pem = pub_pem(g_rsa, 1);
    g_p256_pem = pub_pem(g_p256, 0); /* real line breaks work too */
    g_p384_pem = pub_pem(g_p384, 1);
    g_p521_pem = pub_pem(g_p521, 1);
    buf_t b = BUF_INIT;
    if (base64_encode(SECRET, strlen(SECRET), &b) != DV_OK || b.len >= sizeof g_secret_b64)
        return -1;
    memcpy(g_secret_b64, b.data, b.len);
    buf_free(&b);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_p256);
    EVP_PKEY_free(g_p384);
    EVP_PKEY_free(g_p521);
    free(g_rsa_pem);
    free(g_p256_pem);
    free(g_p384_pem);
    free(g_p521_pem);
    return 0;
}

static void test_every_alg(void **state)
{
    (void)state;
    static const struct {
        const char *alg, *kid;
        EVP_PKEY **key;
    } cases[] = {
        {"HS256", NULL, NULL},    {"HS384", NULL, NULL},    {"HS512", NULL, NULL},
        {"RS256", "rk", &g_rsa},  {"RS384", "rk", &g_rsa},  {"RS512", "rk", &g_rsa},
        {"ES256", "p256", &g_p256}, {"ES384", "p384", &g_p384}, {"ES512", "p521", &g_p521},
    };
    jwt_opts o = opts(NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char header[128];
        if (cases[i].kid)
            snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", cases[i].alg, cases[i].kid);
        else
            snprintf(header, sizeof header, "{\"alg\":\"%s\"}", cases[i].alg);
        char *t = sign(header, PAYLOAD_OK, cases[i].alg, cases[i].key ? *cases[i].key : NULL, 0);
        jwt_result r;
        expect(t, &o, 0, NULL, &r);
        assert_string_equal(r.name, "alice");
        assert_int_equal(r.nroles, 2);
        assert_string_equal(r.roles[0], "_admin");
        assert_string_equal(r.roles[1], "r1");
        jwt_result_free(&r);
        free(t);
        /* The same token with one signature bit flipped. */
        t = sign(header, PAYLOAD_OK, cases[i].alg, cases[i].key ? *cases[i].key : NULL, 1);
        expect(t, &o, 400, cases[i].alg[0] == 'H' ? "Bad HMAC" : "Bad signature", NULL);
        free(t);
    }
}

static void test_times(void **state)
{
    (void)state;
    jwt_opts o = opts(NULL);
    char *t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1699999999}", "HS256", NULL, 0);
    expect(t, &o, 401, "exp not in future", NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1700000000}", "HS256", NULL, 0); /* exp == now */
    expect(t, &o, 401, "exp not in future", NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1700000600,\"nbf\":1700000100}", "HS256", NULL, 0);
    expect(t, &o, 401, "nbf not in past", NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1700000600,\"nbf\":1699999000}", "HS256", NULL, 0);
    expect(t, &o, 0, NULL, NULL);
    free(t);
    /* exp is required by default; not when required_claims is empty, but
     * an expired exp is refused even then. */
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", "HS256", NULL, 0);
    expect(t, &o, 400, "Missing exp claim", NULL);
    jwt_opts none = opts("");
    expect(t, &none, 0, NULL, NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1}", "HS256", NULL, 0);
    expect(t, &none, 401, "exp not in future", NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":\"never\"}", "HS256", NULL, 0);
    expect(t, &o, 400, "Invalid exp claim", NULL);
    free(t);
}

static void test_wrong_alg_or_key(void **state)
{
    (void)state;
    jwt_opts o = opts(NULL);
    char *t = sign("{\"alg\":\"none\"}", PAYLOAD_OK, "none", NULL, 0);
    expect(t, &o, 400, "Invalid alg header parameter", NULL);
    free(t);
    t = sign("{\"typ\":\"JWT\"}", PAYLOAD_OK, "HS256", NULL, 0);
    expect(t, &o, 400, "Missing alg header parameter", NULL);
    free(t);
    t = sign("{\"alg\":\"PS256\",\"kid\":\"rk\"}", PAYLOAD_OK, "PS256", NULL, 0);
    expect(t, &o, 400, "Invalid alg header parameter", NULL);
    free(t);
    /* HS256 naming the RSA key's kid: looked up as hmac:rk, absent. */
    t = sign("{\"alg\":\"HS256\",\"kid\":\"rk\"}", PAYLOAD_OK, "HS256", NULL, 0);
    expect(t, &o, 400, "Unknown kid", NULL);
    free(t);
    /* RS256 with no kid: rsa:_default, absent. */
    t = sign("{\"alg\":\"RS256\"}", PAYLOAD_OK, "RS256", g_rsa, 0);
    expect(t, &o, 400, "Unknown kid", NULL);
    free(t);
    /* An EC key filed under rsa: refused as a key of the wrong kind. */
    t = sign("{\"alg\":\"RS256\",\"kid\":\"notrsa\"}", PAYLOAD_OK, "RS256", g_rsa, 0);
    expect(t, &o, 400, "not an RSA public key", NULL);
    free(t);
    t = sign("{\"alg\":\"RS256\",\"kid\":\"junk\"}", PAYLOAD_OK, "RS256", g_rsa, 0);
    expect(t, &o, 400, "Not a valid key", NULL);
    free(t);
    /* ES256 signed by the P-256 key but checked with the P-384 one. */
    t = sign("{\"alg\":\"ES256\",\"kid\":\"p384\"}", PAYLOAD_OK, "ES256", g_p256, 0);
    expect(t, &o, 400, "Bad signature", NULL);
    free(t);
    /* ES384 key, ES256 header: signature length does not fit. */
    t = sign("{\"alg\":\"ES256\",\"kid\":\"p256\"}", PAYLOAD_OK, "ES384", g_p384, 0);
    expect(t, &o, 400, "Bad signature", NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\",\"kid\":7}", PAYLOAD_OK, "HS256", NULL, 0);
    expect(t, &o, 400, "Unknown kid", NULL);
    free(t);
}

static void test_malformed(void **state)
{
    (void)state;
    jwt_opts o = opts(NULL);
    static const struct {
        const char *token, *reason;
    } cases[] = {
        {"", "Malformed token"},
        {"abc", "Malformed token"},
        {"a.b", "Malformed token"},
        {"a.b.c.d", "Malformed token"},
        {"!!!.e30.AAAA", "Malformed token"},
        {"e30=.e30.AAAA", "Malformed token"},     /* padding */
        {"eyJhbGciOiJIUzI1NiJ9.e.AAAA", "Malformed token"}, /* length 1 mod 4 */
        {"bm90IGpzb24.e30.AAAA", "Malformed token"},        /* "not json" */
        {"W10.e30.AAAA", "Not an object"},                  /* [] */
        {"eyJhbGciOiJIUzI1NiJ9.W10.AAAA", "Not an object"},
        {"eyJhbGciOiJIUzI1NiJ9.e30.", "Missing exp claim"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(cases[i].token, &o, 400, cases[i].reason, NULL);
    jwt_opts none = opts("");
    expect("eyJhbGciOiJIUzI1NiJ9.e30.", &none, 400, "Bad HMAC", NULL); /* empty signature */
    expect("eyJhbGciOiJIUzI1NiJ9.e30.@@@@", &none, 400, "Bad HMAC", NULL);
}

static void test_claims_and_roles(void **state)
{
    (void)state;
    jwt_opts o = opts(NULL);
    char *t = sign("{\"alg\":\"HS256\"}", "{\"exp\":1700000600}", "HS256", NULL, 0);
    expect(t, &o, 401, "Token missing sub claim.", NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":5,\"exp\":1700000600}", "HS256", NULL, 0);
    expect(t, &o, 400, "Malformed token", NULL);
    free(t);
    /* No roles claim: no roles. */
    jwt_result r;
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"b\",\"exp\":1700000600}", "HS256", NULL, 0);
    expect(t, &o, 0, NULL, &r);
    assert_int_equal(r.nroles, 0);
    jwt_result_free(&r);
    free(t);
    /* Roles as one comma-separated string, under another claim name. */
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"b\",\"exp\":1700000600,\"groups\":\" x ,y,  z\"}", "HS256", NULL, 0);
    o.roles_claim_name = "groups";
    expect(t, &o, 0, NULL, &r);
    assert_int_equal(r.nroles, 3);
    assert_string_equal(r.roles[0], "x");
    assert_string_equal(r.roles[2], "z");
    jwt_result_free(&r);
    free(t);
    /* A path, with an escaped dot. */
    o.roles_claim_name = NULL;
    o.roles_claim_path = "realm_access.a\\.b";
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"b\",\"exp\":1700000600,\"realm_access\":{\"a.b\":[\"q\"]}}", "HS256",
             NULL, 0);
    expect(t, &o, 0, NULL, &r);
    assert_int_equal(r.nroles, 1);
    assert_string_equal(r.roles[0], "q");
    jwt_result_free(&r);
    free(t);
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"b\",\"exp\":1700000600,\"realm_access\":{}}", "HS256", NULL, 0);
    expect(t, &o, 404, "missing json key: a.b", NULL);
    free(t);
    o.roles_claim_path = NULL;
    t = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"b\",\"exp\":1700000600,\"_couchdb.roles\":[\"a\",1]}", "HS256", NULL, 0);
    expect(t, &o, 400, "Malformed token", NULL);
    free(t);
    /* required_claims: iss with a value, typ, kid, iat; bad syntax. */
    jwt_opts req = opts("exp, {iss, \"https://issuer\"}, iat, typ, kid");
    t = sign("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"_default\"}",
             "{\"sub\":\"c\",\"exp\":1700000600,\"iat\":1699999999,\"iss\":\"https://issuer\"}", "HS256", NULL, 0);
    expect(t, &req, 0, NULL, NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"_default\"}",
             "{\"sub\":\"c\",\"exp\":1700000600,\"iat\":1699999999,\"iss\":\"https://other\"}", "HS256", NULL, 0);
    expect(t, &req, 400, "Invalid iss claim", NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\",\"kid\":\"_default\"}", "{\"sub\":\"c\",\"exp\":1700000600}", "HS256", NULL, 0);
    expect(t, &req, 400, "Missing typ header parameter", NULL);
    free(t);
    t = sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":\"c\",\"exp\":1700000600,\"iat\":1,\"iss\":\"https://issuer\"}",
             "HS256", NULL, 0);
    expect(t, &req, 400, "Missing kid claim", NULL);
    free(t);
    jwt_opts bad = opts("exp, 42");
    t = sign("{\"alg\":\"HS256\"}", PAYLOAD_OK, "HS256", NULL, 0);
    expect(t, &bad, 500, "JWT is not configured correctly", NULL);
    jwt_opts unknown = opts("aud");
    expect(t, &unknown, 500, "JWT is not configured correctly", NULL);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_alg),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_wrong_alg_or_key),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_claims_and_roles),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
