/*
 * jwt.h — JSON Web Token verification as CouchDB 3's JWT authentication
 * handler does it (jwtf + jwtf_keystore + couch_httpd_auth).
 *
 * A token is a compact JWS: base64url(header) "." base64url(payload) "."
 * base64url(signature), no padding.  Supported algorithms: HS256/384/512
 * (HMAC), RS256/384/512 (RSASSA-PKCS1-v1_5), ES256/384/512 (ECDSA on
 * P-256/P-384/P-521; the JWS signature is raw r||s, converted to DER for
 * OpenSSL).  "none" and every other alg are refused.
 *
 * Keys come from [jwt_keys], named "<kty>:<kid>" where kty follows from the
 * token's alg (HS* → "hmac", RS* → "rsa", ES* → "ec") and kid is the
 * header's kid or "_default".  So the key kind is fixed by the alg before any
 * key is read: an HS256 token can never be checked against an RSA key's
 * bytes (no alg confusion), and the key found must also be of the alg's kind
 * (an EC key of the alg's curve for ES*).  Values: hmac = the secret in
 * base64; rsa / ec = a PEM "PUBLIC KEY" (SubjectPublicKeyInfo), with line
 * breaks written as the two characters "\n" as CouchDB's ini files do.
 *
 * Claims: [jwt_auth] required_claims (CouchDB syntax: `exp, nbf` or
 * `{iss, "https://issuer"}`, default "exp") must be present; exp and nbf are
 * checked whenever present (CouchDB checks them only when required: a token
 * that says it has expired is refused here either way).  `sub` is the user
 * name; roles come from the claim named by roles_claim_name (default
 * "_couchdb.roles", a top-level member whose name contains a dot) or the
 * dotted path roles_claim_path ("a.b\.c" is a → "b.c"): an array of strings
 * or one comma-separated string.
 *
 * Errors carry CouchDB's status and reason: 400 bad_request for a malformed
 * token, an unknown alg or kid, a bad key or signature ("Bad signature",
 * "Bad HMAC"), a missing required claim; 401 unauthorized for "exp not in
 * future", "nbf not in past" and "Token missing sub claim."; 404 not_found
 * when roles_claim_path names nothing; 500 misconfigured_server when
 * required_claims cannot be read.
 *
 * Cost: one base64url decode and JSON parse per part, one PEM parse per
 * RSA/EC token (keys are not cached: tens of microseconds) and one
 * signature check.  Nothing here knows HTTP; the fuzz target drives it
 * directly.
 */
#ifndef DV_HTTP_JWT_H
#define DV_HTTP_JWT_H

#include <stddef.h>
#include <stdint.h>

/* Returns the [jwt_keys] value named `name` ("hmac:_default"), NULL when
 * absent.  The string must stay valid until jwt_verify returns. */
typedef const char *(*jwt_key_lookup_fn)(void *ctx, const char *name);

typedef struct jwt_opts {
    const char *required_claims;  /* NULL: "exp" */
    const char *roles_claim_name; /* NULL: "_couchdb.roles" */
    const char *roles_claim_path; /* NULL: use roles_claim_name */
    int64_t now;                  /* seconds since the epoch */
    jwt_key_lookup_fn lookup;
    void *lookup_ctx;
} jwt_opts;

typedef struct jwt_result {
    int status;        /* 0: valid; else the HTTP status to answer */
    const char *error; /* CouchDB's error ("bad_request", "unauthorized", ...) */
    char reason[160];  /* CouchDB's reason */
    char *name;        /* sub (malloc'd), when valid */
    char **roles;      /* roles (malloc'd strings), when valid */
    size_t nroles;
} jwt_result;

/* Verifies token[0..len).  DV_OK with out->status 0 (valid) or the error
 * to answer; DV_ERR_NOMEM.  Release out with jwt_result_free either way. */
int jwt_verify(const char *token, size_t len, const jwt_opts *opts, jwt_result *out);
void jwt_result_free(jwt_result *r);

#endif
