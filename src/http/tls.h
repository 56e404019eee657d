/*
 * tls.h — the TLS context of the HTTPS listener ([ssl] as CouchDB 3).
 *
 * One SSL_CTX, made at start-up from a PEM certificate chain and a PEM
 * private key, shared read-only by every loop's HTTPS listener (OpenSSL
 * allows concurrent SSL_new from one SSL_CTX once it is configured).
 */
#ifndef DV_HTTP_TLS_H
#define DV_HTTP_TLS_H

#include <openssl/ssl.h>

/* Loads cert_file (certificate chain, leaf first) and key_file (an
 * unencrypted private key matching it); TLS 1.2 or later, no compression,
 * no renegotiation.  DV_ERR_INVALID (logged with OpenSSL's reason, never
 * with key material) when a file cannot be read or they do not match. */
int http_tls_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out);
void http_tls_ctx_free(SSL_CTX *ctx);

#endif
