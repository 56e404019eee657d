/*
 * tls.c — the HTTPS listener's SSL_CTX (see tls.h).
 *
 * h2o does the handshake and the record layer (h2o_accept with an
 * SSL_CTX in the accept context, on the loop thread; a handshake not done
 * within h2o's handshake timeout, 10 s, is dropped).  No ALPN callback is
 * registered, so every TLS connection speaks HTTP/1.1, the protocol divan
 * serves.  Errors name the file and OpenSSL's reason; OpenSSL's reasons
 * never include key bytes or passphrases.
 */
#include "http/tls.h"
#include "base/log.h"
#include "base/status.h"

#include <openssl/err.h>

static void log_ssl_error(const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char reason[256];
    ERR_error_string_n(e, reason, sizeof reason);
    log_error("ssl: %s %s: %s", what, file ? file : "(not set)", e ? reason : "failed");
    ERR_clear_error();
}

/* An encrypted key would make OpenSSL prompt on the terminal for its
 * passphrase and block start-up: refuse it instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

int http_tls_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out)
{
    *out = NULL;
    if (!cert_file || !*cert_file || !key_file || !*key_file) {
        log_error("ssl: [ssl] enable = true needs cert_file and key_file");
        return DV_ERR_INVALID;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_ssl_error("cannot create a context for", cert_file);
        return DV_ERR_NOMEM;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    /* Sessions kept for resumption: OpenSSL's default cache holds 20480;
     * each full handshake a client makes can add one.  A smaller bound
     * keeps that memory small (resumed TLS 1.3 sessions use tickets). */
    SSL_CTX_sess_set_cache_size(ctx, 1024);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        log_ssl_error("cannot set the minimum TLS version for", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        log_ssl_error("cannot load the certificate chain", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        log_ssl_error("cannot load the private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_error("the private key does not match the certificate", cert_file);
        goto fail;
    }
    *out = ctx;
    return DV_OK;
fail:
    SSL_CTX_free(ctx);
    return DV_ERR_INVALID;
}

void http_tls_ctx_free(SSL_CTX *ctx)
{
    if (ctx)
        SSL_CTX_free(ctx);
}
