/*
 * handlers_server.c — server-level endpoints: GET /, GET /_up, GET /_uuids,
 * and /_node/{node}/_stats.
 *
 * Bodies and status codes mirror CouchDB 3's chttpd_misc and
 * couch_httpd_misc_handlers.  JSON is written with http/json_out.h until
 * json/'s writer lands.
 */
#include "base/status.h"
#include "http/handlers.h"
#include "http/json_out.h"
#include "http/stats.h"
#include "http/uuids.h"

#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#ifndef DIVAN_GIT_SHA
#define DIVAN_GIT_SHA "unknown"
#endif

void http_handle_welcome(http_req_t *r)
{
    const http_server_opts_t *o = http_server_opts(r->server);
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "{\"couchdb\":\"Welcome\",\"version\":\"" DIVAN_COUCHDB_VERSION
                                "\",\"git_sha\":");
    if (rc == DV_OK)
        rc = http_json_cstr(&b, DIVAN_GIT_SHA);
    if (rc == DV_OK)
        rc = buf_append_str(&b, ",\"uuid\":");
    if (rc == DV_OK)
        rc = http_json_cstr(&b, o->uuid);
    /* CouchDB lists optional subsystems here (partitioned, reshard, …);
     * divan advertises none it does not implement. */
    if (rc == DV_OK)
        rc = buf_append_str(&b, ",\"features\":[]");
    const http_vendor_t *v = http_server_vendor(r->server);
    if (rc == DV_OK && v->n) {
        rc = buf_append_str(&b, ",\"vendor\":{");
        for (size_t i = 0; rc == DV_OK && i < v->n; i++) {
            if (i)
                rc = buf_append_byte(&b, ',');
            if (rc == DV_OK)
                rc = http_json_cstr(&b, v->f[i].key);
            if (rc == DV_OK)
                rc = buf_append_byte(&b, ':');
            if (rc == DV_OK)
                rc = http_json_cstr(&b, v->f[i].value);
        }
        if (rc == DV_OK)
            rc = buf_append_byte(&b, '}');
    }
    if (rc == DV_OK)
        rc = buf_append_byte(&b, '}');
    if (rc == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, rc);
    buf_free(&b);
}

void http_handle_up(http_req_t *r)
{
    /* A single node has no seeds; CouchDB answers the same shape. */
    static const buf_t body = {(uint8_t *)"{\"status\":\"ok\",\"seeds\":{}}", 26, 26};
    http_send_json(r, 200, &body);
}

/* Erlang's list_to_integer: optional sign, then at least one digit.
 * Returns 0 when malformed; saturates at LLONG_MAX/LLONG_MIN. */
static int parse_erlang_int(const http_str_t *s, long long *out)
{
    size_t i = 0;
    int neg = 0;
    if (s->n && (s->p[0] == '-' || s->p[0] == '+')) {
        neg = s->p[0] == '-';
        i = 1;
    }
    if (i == s->n)
        return 0;
    long long v = 0;
    for (; i < s->n; i++) {
        if (s->p[i] < '0' || s->p[i] > '9')
            return 0;
        int d = s->p[i] - '0';
        v = v > (LLONG_MAX - d) / 10 ? LLONG_MAX : v * 10 + d;
    }
    *out = neg ? -v : v;
    return 1;
}

/* ETag over the body, as couch_httpd:make_etag does over the ids: a quoted
 * digest, so two responses never share one. */
static void set_etag(http_req_t *r, const buf_t *b)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char etag[2 * EVP_MAX_MD_SIZE + 3];
    if (EVP_Digest(b->data, b->len, md, &mdlen, EVP_md5(), NULL) != 1)
        return;
    etag[0] = '"';
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(etag + 1 + 2 * i, 3, "%02X", md[i]);
    etag[1 + 2 * mdlen] = '"';
    etag[2 + 2 * mdlen] = '\0';
    http_add_header(r, "ETag", etag);
}

void http_handle_uuids(http_req_t *r)
{
    long long count = 1;
    const http_str_t *p = http_target_param(&r->target, "count");
    if (p) {
        if (!parse_erlang_int(p, &count)) {
            http_send_error(r, 400, "bad_request", "count must be a positive integer");
            return;
        }
        if (count > http_uuids_max_count(http_server_uuids(r->server))) {
            http_send_error(r, 400, "bad_request", "count parameter too large");
            return;
        }
        if (count < 0) {
            http_send_error(r, 400, "bad_request", "count must be a positive integer");
            return;
        }
    }
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "{\"uuids\":[");
    for (long long i = 0; rc == DV_OK && i < count; i++) {
        char id[128];
        int n = http_uuids_next(http_server_uuids(r->server), id, sizeof id);
        if (n < 0) {
            rc = n;
            break;
        }
        if (i)
            rc = buf_append_byte(&b, ',');
        if (rc == DV_OK)
            rc = http_json_str(&b, id, (size_t)n);
    }
    if (rc == DV_OK)
        rc = buf_append_str(&b, "]}");
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        buf_free(&b);
        return;
    }
    /* Cache-busting headers, as CouchDB sends for _uuids. */
    http_add_header(r, "Cache-Control", "no-cache");
    http_add_header(r, "Expires", "Mon, 01 Jan 1990 00:00:00 GMT");
    http_add_header(r, "Pragma", "no-cache");
    set_etag(r, &b);
    http_send_json(r, 200, &b);
    buf_free(&b);
}

/* GET /_node/{node}/_stats[/group[/name]]: the node must be "_local" or
 * this node's name. */
void http_handle_stats(http_req_t *r)
{
    const http_str_t *node = &r->match.db;
    if (!((node->n == 6 && !memcmp(node->p, "_local", 6)) || (node->n == 13 && !memcmp(node->p, "nonode@nohost", 13)))) {
        http_send_error(r, 404, "not_found", "missing");
        return;
    }
    const char *path[8];
    size_t np = 0;
    for (size_t i = 3; i < r->target.nseg && np < 8; i++)
        path[np++] = r->target.seg[i].p;
    buf_t b = BUF_INIT;
    int rc = http_stats_json(path, np, &b);
    if (rc == DV_OK)
        http_send_json(r, 200, &b);
    else if (rc == DV_ERR_NOTFOUND)
        http_send_error(r, 404, "not_found", "missing");
    else
        http_send_internal(r, rc);
    buf_free(&b);
}
