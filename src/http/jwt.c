/*
 * jwt.c — JWT (compact JWS) verification; see jwt.h for the rules.
 *
 * Order of checks, as CouchDB's jwtf: split into three parts, header (an
 * object; typ when required; alg known), payload (an object; required and
 * time claims), key (by alg's kind and kid), signature, then sub and roles.
 * Every failure fills out->status/error/reason and returns DV_OK; only
 * allocation failures return an error code.  Decoded parts live in buffers
 * owned by verify() until it returns (the JSON DOM points into them), and
 * the name and roles handed out are copies.
 *
 * Invariant: a token is valid only after a signature check with a key of
 * the alg's own kind succeeded; any OpenSSL failure counts as a bad
 * signature, and OpenSSL's thread-local error queue is cleared after one so
 * that failures do not pile up on a server thread.
 */
#include "http/jwt.h"
#include "base/base64.h"
#include "base/buf.h"
#include "base/status.h"
#include "json/json.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum alg_kind { K_HMAC, K_RSA, K_EC };

typedef struct alg_info {
    const char *name;
    enum alg_kind kind;
    const char *kty;  /* [jwt_keys] prefix */
    int md_bits;      /* SHA-2 size */
    int ec_bits;      /* curve size for ES* (EVP_PKEY_get_bits) */
    size_t ec_half;   /* bytes of r (and of s) in the JWS signature */
} alg_info;

static const alg_info ALGS[] = {
    {"HS256", K_HMAC, "hmac", 256, 0, 0}, {"HS384", K_HMAC, "hmac", 384, 0, 0},
    {"HS512", K_HMAC, "hmac", 512, 0, 0}, {"RS256", K_RSA, "rsa", 256, 0, 0},
    {"RS384", K_RSA, "rsa", 384, 0, 0},   {"RS512", K_RSA, "rsa", 512, 0, 0},
    {"ES256", K_EC, "ec", 256, 256, 32},  {"ES384", K_EC, "ec", 384, 384, 48},
    {"ES512", K_EC, "ec", 512, 521, 66},
};

static const EVP_MD *md_of(int bits)
{
    return bits == 256 ? EVP_sha256() : bits == 384 ? EVP_sha384() : EVP_sha512();
}

static void fail(jwt_result *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(jwt_result *r, int status, const char *fmt, ...)
{
    r->status = status;
    r->error = status == 401   ? "unauthorized"
               : status == 404 ? "not_found"
               : status == 500 ? "misconfigured_server"
                               : "bad_request";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
}

/* ---- required_claims --------------------------------------------------- */

typedef struct checks {
    int alg, exp, iat, iss, kid, nbf, typ;
    const char *iss_val; /* points into the config string */
    size_t iss_len;
} checks;

/* CouchDB's syntax: words and {word, "value"} separated by commas. */
static int parse_checks(const char *s, checks *c, jwt_result *r)
{
    memset(c, 0, sizeof *c);
    c->alg = 1; /* CouchDB always checks alg */
    const char *p = s;
    while (*p) {
        if (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
            continue;
        }
        int braced = *p == '{';
        if (braced)
            for (p++; *p == ' ' || *p == '\t'; p++)
                ;
        const char *w = p;
        while (*p >= 'a' && *p <= 'z')
            p++;
        size_t wl = (size_t)(p - w);
        const char *val = NULL;
        size_t vl = 0;
        if (braced) {
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != ',')
                goto bad;
            for (p++; *p == ' ' || *p == '\t'; p++)
                ;
            if (*p != '"')
                goto bad;
            val = ++p;
            while (*p && *p != '"')
                p++;
            if (*p != '"' || p == val)
                goto bad;
            vl = (size_t)(p - val);
            for (p++; *p == ' ' || *p == '\t'; p++)
                ;
            if (*p != '}')
                goto bad;
            p++;
        }
#define IS(word) (wl == sizeof(word) - 1 && memcmp(w, word, wl) == 0)
        if (IS("alg") || IS("sig"))
            ;
        else if (IS("exp"))
            c->exp = 1;
        else if (IS("iat"))
            c->iat = 1;
        else if (IS("kid"))
            c->kid = 1;
        else if (IS("nbf"))
            c->nbf = 1;
        else if (IS("typ"))
            c->typ = 1;
        else if (IS("iss")) {
            c->iss = 1;
            c->iss_val = val;
            c->iss_len = vl;
        } else
            goto bad;
#undef IS
    }
    return DV_OK;
bad:
    fail(r, 500, "JWT is not configured correctly");
    return DV_ERR_INVALID;
}

/* ---- keys ---------------------------------------------------------------- */

/* PEM with "\n" written as two characters (CouchDB's ini form) or real
 * line breaks; only SubjectPublicKeyInfo ("BEGIN PUBLIC KEY"). */
static EVP_PKEY *pem_pubkey(const char *v)
{
    buf_t b = BUF_INIT;
    EVP_PKEY *k = NULL;
    for (const char *p = v; *p; p++) {
        if (p[0] == '\\' && p[1] == 'n') {
            if (buf_append_byte(&b, '\n') != DV_OK)
                goto done;
            p++;
        } else if (buf_append_byte(&b, (uint8_t)*p) != DV_OK)
            goto done;
    }
    if (b.len == 0 || b.len > 1 << 20)
        goto done;
    BIO *bio = BIO_new_mem_buf(b.data, (int)b.len);
    if (bio) {
        k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
done:
    if (!k)
        ERR_clear_error();
    buf_free(&b);
    return k;
}

/* ---- signatures ------------------------------------------------------------ */

static int verify_hmac(const alg_info *a, const char *secret_b64, const uint8_t *msg, size_t msglen,
                       const buf_t *sig, jwt_result *r)
{
    buf_t key = BUF_INIT;
    int rc = base64_decode(secret_b64, strlen(secret_b64), &key);
    if (rc == DV_ERR_NOMEM)
        return rc;
    if (rc != DV_OK) {
        fail(r, 400, "Not a valid key");
        buf_free(&key);
        return DV_OK;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    static const uint8_t empty[1];
    if (!HMAC(md_of(a->md_bits), key.len ? key.data : empty, (int)key.len, msg, msglen, mac, &maclen)) {
        ERR_clear_error();
        fail(r, 400, "Bad HMAC");
    } else if (sig->len != maclen || CRYPTO_memcmp(sig->data, mac, maclen) != 0) {
        fail(r, 400, "Bad HMAC");
    }
    OPENSSL_cleanse(mac, sizeof mac);
    if (key.data)
        OPENSSL_cleanse(key.data, key.len);
    buf_free(&key);
    return DV_OK;
}

/* JWS ES* signatures are r||s, each ec_half bytes; EVP wants DER. */
static int ec_sig_der(const alg_info *a, const buf_t *sig, unsigned char **der, int *derlen)
{
    *der = NULL;
    if (sig->len != 2 * a->ec_half)
        return DV_ERR_INVALID;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *br = BN_bin2bn(sig->data, (int)a->ec_half, NULL);
    BIGNUM *bs = BN_bin2bn(sig->data + a->ec_half, (int)a->ec_half, NULL);
    if (!es || !br || !bs || ECDSA_SIG_set0(es, br, bs) != 1) {
        BN_free(br);
        BN_free(bs);
        ECDSA_SIG_free(es);
        return DV_ERR_NOMEM;
    }
    *derlen = i2d_ECDSA_SIG(es, der);
    ECDSA_SIG_free(es);
    return *derlen > 0 ? DV_OK : DV_ERR_NOMEM;
}

static int verify_pkey(const alg_info *a, const char *pem, const uint8_t *msg, size_t msglen, const buf_t *sig,
                       jwt_result *r)
{
    const char *bad = a->kind == K_RSA ? "not an RSA public key" : "not an EC public key";
    EVP_PKEY *k = pem_pubkey(pem);
    if (!k) {
        fail(r, 400, "Not a valid key");
        return DV_OK;
    }
    int rc = DV_OK;
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    int want = a->kind == K_RSA ? EVP_PKEY_RSA : EVP_PKEY_EC;
    if (EVP_PKEY_get_base_id(k) != want) {
        fail(r, 400, "%s", bad);
        goto done;
    }
    const uint8_t *sp = sig->data;
    size_t sl = sig->len;
    if (a->kind == K_EC) {
        if (EVP_PKEY_get_bits(k) != a->ec_bits) { /* ES256 with a P-384 key, say */
            fail(r, 400, "Bad signature");
            goto done;
        }
        int dl;
        int crc = ec_sig_der(a, sig, &der, &dl);
        if (crc == DV_ERR_INVALID) {
            fail(r, 400, "Bad signature");
            goto done;
        }
        if (crc != DV_OK) {
            rc = crc;
            goto done;
        }
        sp = der;
        sl = (size_t)dl;
    }
    if (!(md = EVP_MD_CTX_new())) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    if (EVP_DigestVerifyInit(md, NULL, md_of(a->md_bits), NULL, k) != 1 ||
        EVP_DigestVerify(md, sp, sl, msg, msglen) != 1)
        fail(r, 400, "Bad signature");
done:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
    return rc;
}

/* ---- claims ----------------------------------------------------------------- */

/* A NumericDate: a JSON number (fractions allowed); 0 when it is not one. */
static int numeric_date(const json_val *v, double *out)
{
    return json_is_number(v) && json_get_double(v, out) == DV_OK;
}

static int check_time_claims(const json_val *payload, const checks *c, int64_t now, jwt_result *r)
{
    static const char *const names[] = {"iat", "nbf", "exp"};
    const int required[] = {c->iat, c->nbf, c->exp};
    for (int i = 0; i < 3; i++) {
        const json_val *v = json_object_get_cstr(payload, names[i]);
        double t;
        if (!v) {
            if (required[i]) {
                fail(r, 400, "Missing %s claim", names[i]);
                return DV_ERR_INVALID;
            }
            continue;
        }
        if (!numeric_date(v, &t)) {
            fail(r, 400, "Invalid %s claim", names[i]);
            return DV_ERR_INVALID;
        }
        if (i == 1 && !(t < (double)now)) {
            fail(r, 401, "nbf not in past");
            return DV_ERR_INVALID;
        }
        if (i == 2 && !(t > (double)now)) {
            fail(r, 401, "exp not in future");
            return DV_ERR_INVALID;
        }
    }
    if (c->iss) {
        const json_val *v = json_object_get_cstr(payload, "iss");
        size_t n;
        if (!v) {
            fail(r, 400, "Missing iss claim");
            return DV_ERR_INVALID;
        }
        if (c->iss_val) {
            const char *s = json_is_string(v) ? json_str(v, &n) : NULL;
            if (!s || n != c->iss_len || memcmp(s, c->iss_val, n) != 0) {
                fail(r, 400, "Invalid iss claim");
                return DV_ERR_INVALID;
            }
        }
    }
    return DV_OK;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int add_role(jwt_result *r, const char *s, size_t n)
{
    char **nr = realloc(r->roles, (r->nroles + 1) * sizeof *nr);
    if (!nr)
        return DV_ERR_NOMEM;
    r->roles = nr;
    if (!(r->roles[r->nroles] = dup_n(s, n)))
        return DV_ERR_NOMEM;
    r->nroles++;
    return DV_OK;
}

/* The roles value: CouchDB's get_roles_claim. */
static const json_val *roles_value(const json_val *payload, const jwt_opts *o, jwt_result *r)
{
    if (!o->roles_claim_path)
        return json_object_get_cstr(payload, o->roles_claim_name ? o->roles_claim_name : "_couchdb.roles");
    /* Split on '.' not preceded by '\'; "\." stands for '.'. */
    const json_val *cur = payload;
    const char *p = o->roles_claim_path;
    char seg[256];
    for (;;) {
        size_t n = 0;
        for (; *p && *p != '.'; p++) {
            if (p[0] == '\\' && p[1] == '.')
                p++;
            if (n + 1 < sizeof seg)
                seg[n++] = *p;
        }
        seg[n] = '\0';
        const json_val *next = json_is_object(cur) ? json_object_get(cur, seg, n) : NULL;
        if (!next) {
            fail(r, 404, "missing json key: %s", seg);
            return NULL;
        }
        cur = next;
        if (!*p)
            return cur;
        p++;
    }
}

static int take_roles(const json_val *payload, const jwt_opts *o, jwt_result *r)
{
    const json_val *v = roles_value(payload, o, r);
    if (r->status)
        return DV_OK;
    if (!v)
        return DV_OK;
    if (json_is_string(v)) { /* "a, b" → ["a", "b"] (re:split on \s*,\s*, trim) */
        size_t n;
        const char *s = json_str(v, &n), *end = s + n;
        while (s < end) {
            const char *comma = memchr(s, ',', (size_t)(end - s));
            const char *e = comma ? comma : end;
            const char *a = s, *b = e;
            while (a < b && (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r'))
                b--;
            if ((b > a || comma) && add_role(r, a, (size_t)(b - a)) != DV_OK)
                return DV_ERR_NOMEM;
            s = comma ? comma + 1 : end;
        }
        return DV_OK;
    }
    if (!json_is_array(v)) {
        fail(r, 400, "Malformed token");
        return DV_OK;
    }
    json_iter it = json_iter_begin(v);
    const json_val *e;
    while (json_iter_elem(&it, &e)) {
        size_t n;
        if (!json_is_string(e)) {
            fail(r, 400, "Malformed token");
            return DV_OK;
        }
        const char *s = json_str(e, &n);
        if (add_role(r, s, n) != DV_OK)
            return DV_ERR_NOMEM;
    }
    return DV_OK;
}

/* ---- the whole check -------------------------------------------------------- */

static int decode_object(const char *s, size_t n, buf_t *raw, json_doc *doc, const json_val **out, jwt_result *r)
{
    int rc = base64url_decode(s, n, raw);
    if (rc == DV_ERR_NOMEM)
        return rc;
    if (rc != DV_OK || json_doc_parse(doc, raw->data ? (const char *)raw->data : "", raw->len, 0, NULL) != DV_OK) {
        fail(r, 400, "Malformed token");
        return DV_OK;
    }
    *out = json_doc_root(doc);
    if (!json_is_object(*out))
        fail(r, 400, "Not an object");
    return DV_OK;
}

int jwt_verify(const char *token, size_t len, const jwt_opts *o, jwt_result *r)
{
    memset(r, 0, sizeof *r);
    buf_t hraw = BUF_INIT, praw = BUF_INIT, sig = BUF_INIT;
    json_doc hdoc = JSON_DOC_INIT, pdoc = JSON_DOC_INIT;
    const json_val *header = NULL, *payload = NULL;
    int rc = DV_OK;
    checks c;

    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) {
        fail(r, 400, "Malformed token");
        goto done;
    }
    if (parse_checks(o->required_claims ? o->required_claims : "exp", &c, r) != DV_OK)
        goto done;
    if ((rc = decode_object(token, (size_t)(d1 - token), &hraw, &hdoc, &header, r)) != DV_OK || r->status)
        goto done;
    size_t n;
    if (c.typ) {
        const json_val *typ = json_object_get_cstr(header, "typ");
        if (!typ) {
            fail(r, 400, "Missing typ header parameter");
            goto done;
        }
        if (!json_str_eq(typ, "JWT")) {
            fail(r, 400, "Invalid typ header parameter");
            goto done;
        }
    }
    const json_val *algv = json_object_get_cstr(header, "alg");
    if (!algv) {
        fail(r, 400, "Missing alg header parameter");
        goto done;
    }
    const alg_info *a = NULL;
    for (size_t i = 0; i < sizeof ALGS / sizeof ALGS[0]; i++)
        if (json_str_eq(algv, ALGS[i].name))
            a = &ALGS[i];
    if (!a) {
        fail(r, 400, "Invalid alg header parameter");
        goto done;
    }
    if ((rc = decode_object(d1 + 1, (size_t)(d2 - d1 - 1), &praw, &pdoc, &payload, r)) != DV_OK || r->status)
        goto done;
    if (check_time_claims(payload, &c, o->now, r) != DV_OK)
        goto done;

    /* The key: "<kty>:<kid>", kid "_default" when the header has none. */
    const json_val *kidv = json_object_get_cstr(header, "kid");
    if (!kidv && c.kid) {
        fail(r, 400, "Missing kid claim");
        goto done;
    }
    const char *kid = "_default";
    size_t kidlen = 8;
    if (kidv) {
        if (!json_is_string(kidv)) {
            fail(r, 400, "Unknown kid");
            goto done;
        }
        kid = json_str(kidv, &kidlen);
    }
    char name[300];
    if (kidlen > 256 || memchr(kid, '\0', kidlen)) {
        fail(r, 400, "Unknown kid");
        goto done;
    }
    snprintf(name, sizeof name, "%s:%.*s", a->kty, (int)kidlen, kid);
    const char *keyval = o->lookup ? o->lookup(o->lookup_ctx, name) : NULL;
    if (!keyval) {
        fail(r, 400, "Unknown kid");
        goto done;
    }

    rc = base64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), &sig);
    if (rc == DV_ERR_NOMEM)
        goto done;
    rc = DV_OK;
    const uint8_t *msg = (const uint8_t *)token;
    size_t msglen = (size_t)(d2 - token);
    if (sig.len == 0) { /* also an encoding error: nothing verifies */
        fail(r, 400, a->kind == K_HMAC ? "Bad HMAC" : "Bad signature");
        goto done;
    }
    if (a->kind == K_HMAC)
        rc = verify_hmac(a, keyval, msg, msglen, &sig, r);
    else
        rc = verify_pkey(a, keyval, msg, msglen, &sig, r);
    if (rc != DV_OK || r->status)
        goto done;

    /* Signed: now who it is. */
    if ((rc = take_roles(payload, o, r)) != DV_OK || r->status)
        goto done;
    const json_val *sub = json_object_get_cstr(payload, "sub");
    if (!sub) {
        fail(r, 401, "Token missing sub claim.");
        goto done;
    }
    if (!json_is_string(sub)) {
        fail(r, 400, "Malformed token");
        goto done;
    }
    const char *s = json_str(sub, &n);
    if (memchr(s, '\0', n)) {
        fail(r, 400, "Malformed token");
        goto done;
    }
    if (!(r->name = dup_n(s, n)))
        rc = DV_ERR_NOMEM;
done:
    if (rc != DV_OK || r->status) {
        for (size_t i = 0; i < r->nroles; i++)
            free(r->roles[i]);
        free(r->roles);
        r->roles = NULL;
        r->nroles = 0;
        free(r->name);
        r->name = NULL;
    }
    json_doc_free(&hdoc);
    json_doc_free(&pdoc);
    buf_free(&hraw);
    buf_free(&praw);
    buf_free(&sig);
    return rc;
}

void jwt_result_free(jwt_result *r)
{
    for (size_t i = 0; i < r->nroles; i++)
        free(r->roles[i]);
    free(r->roles);
    free(r->name);
    r->roles = NULL;
    r->name = NULL;
    r->nroles = 0;
}
