/*
 * hutil.c — shared helpers of the database handlers (see hutil.h).
 */
#include "http/hutil.h"

#include "base/log.h"
#include "base/status.h"

#include <h2o.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

db_t *http_open_db(http_req_t *r)
{
    db_t *db = NULL;
    char name[256];
    const http_str_t *n = &r->match.db;
    if (n->n >= sizeof name || !db_name_valid(n->p, n->n)) {
        http_send_error(r, 404, "not_found", "Database does not exist.");
        return NULL;
    }
    memcpy(name, n->p, n->n);
    name[n->n] = 0;
    int rc = db_open(http_dbs(r), name, &db);
    if (rc == DV_ERR_NOTFOUND) {
        http_send_error(r, 404, "not_found", "Database does not exist.");
        return NULL;
    }
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        return NULL;
    }
    return db;
}

void http_send_db_err(http_req_t *r, const db_err *e)
{
    http_send_error(r, e->status, e->error, e->reason);
}

void http_send_ok(http_req_t *r, int status)
{
    static const buf_t ok = {(uint8_t *)"{\"ok\":true}", 11, 11};
    http_send_json(r, status, &ok);
}

/* ---- query parameters ------------------------------------------------------ */

const http_str_t *http_qs(http_req_t *r, const char *name)
{
    return http_target_param(&r->target, name);
}

static int qs_error(http_req_t *r, const char *name, const char *what)
{
    char reason[200];
    snprintf(reason, sizeof reason, "Invalid value for %s: \"%s\"", what, name);
    http_send_error(r, 400, "query_parse_error", reason);
    return DV_ERR_INVALID;
}

int http_qs_bool(http_req_t *r, const char *name, int *out)
{
    const http_str_t *v = http_qs(r, name);
    if (!v)
        return DV_OK;
    if (v->n == 4 && !memcmp(v->p, "true", 4))
        *out = 1;
    else if (v->n == 5 && !memcmp(v->p, "false", 5))
        *out = 0;
    else
        return qs_error(r, name, "boolean");
    return DV_OK;
}

int http_qs_int(http_req_t *r, const char *name, long long min, long long max, long long *out)
{
    const http_str_t *v = http_qs(r, name);
    if (!v)
        return DV_OK;
    size_t i = 0;
    int neg = 0;
    if (v->n && (v->p[0] == '-' || v->p[0] == '+'))
        neg = v->p[i++] == '-';
    if (i == v->n)
        return qs_error(r, name, "integer");
    unsigned long long acc = 0;
    for (; i < v->n; i++) {
        if (v->p[i] < '0' || v->p[i] > '9' || acc > (unsigned long long)INT64_MAX / 10)
            return qs_error(r, name, "integer");
        acc = acc * 10 + (unsigned long long)(v->p[i] - '0');
    }
    if (acc > (unsigned long long)INT64_MAX)
        return qs_error(r, name, "integer");
    long long x = neg ? -(long long)acc : (long long)acc;
    if (x < min || x > max)
        return qs_error(r, name, "positive integer");
    *out = x;
    return DV_OK;
}

int http_qs_json(http_req_t *r, const char *name, json_doc *doc, const json_val **out)
{
    const http_str_t *v = http_qs(r, name);
    *out = NULL;
    if (!v)
        return DV_OK;
    if (json_doc_parse(doc, v->p, v->n, http_server_max_json_depth(r->server), NULL) != DV_OK) {
        char reason[200];
        snprintf(reason, sizeof reason, "Invalid JSON for %s", name);
        http_send_error(r, 400, "bad_request", reason);
        return DV_ERR_INVALID;
    }
    *out = json_doc_root(doc);
    return DV_OK;
}

/* ---- bodies ------------------------------------------------------------------ */

int http_require_ctype(http_req_t *r, const char *type)
{
    const char *ct = http_req_header(r, "content-type");
    size_t n = strlen(type);
    if (ct) {
        while (*ct == ' ')
            ct++;
        if (!strncasecmp(ct, type, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' '))
            return DV_OK;
    }
    char reason[120];
    snprintf(reason, sizeof reason, "Content-Type must be %s", type);
    http_send_error(r, 415, "bad_content_type", reason);
    return DV_ERR_INVALID;
}

int http_json_parse(http_req_t *r, const void *p, size_t n, json_doc *doc, const json_val **root)
{
    json_error err;
    int rc = json_doc_parse(doc, p ? p : "", n, http_server_max_json_depth(r->server), &err);
    if (rc == DV_ERR_NOMEM) {
        http_send_internal(r, rc);
        return rc;
    }
    if (rc != DV_OK) {
        log_debug("http: bad JSON body at byte %zu: %s", err.offset, err.reason);
        http_send_error(r, 400, "bad_request", "invalid UTF-8 JSON");
        return DV_ERR_INVALID;
    }
    *root = json_doc_root(doc);
    return DV_OK;
}

int http_json_body(http_req_t *r, json_doc *doc, const json_val **root)
{
    size_t n;
    const uint8_t *p = http_req_body(r, &n);
    return http_json_parse(r, p, n, doc, root);
}

int http_json_parse_obj(http_req_t *r, const void *p, size_t n, json_doc *doc, const json_val **root)
{
    int rc = http_json_parse(r, p, n, doc, root);
    if (rc == DV_OK && !json_is_object(*root)) {
        http_send_error(r, 400, "bad_request", "Request body must be a JSON object");
        rc = DV_ERR_INVALID;
    }
    return rc;
}

int http_json_body_obj(http_req_t *r, json_doc *doc, const json_val **root)
{
    size_t n;
    const uint8_t *p = http_req_body(r, &n);
    return http_json_parse_obj(r, p, n, doc, root);
}

/* ---- writes --------------------------------------------------------------------- */

typedef struct write_op {
    http_async_t *async;
    http_write_done_fn done;
    void *ctx;
    int status;
} write_op;

static void write_landed(http_req_t *r, void *arg)
{
    write_op op = *(write_op *)arg;
    free(arg);
    op.done(r, op.ctx, op.status);
}

static void write_committed(void *arg, int status)
{
    write_op *op = arg;
    op->status = status;
    http_async_post(op->async);
}

void http_db_write(http_req_t *r, db_t *db, store_write *w, http_write_done_fn done, void *ctx)
{
    write_op *op = calloc(1, sizeof *op);
    if (!op) {
        done(r, ctx, DV_ERR_NOMEM);
        return;
    }
    op->done = done;
    op->ctx = ctx;
    if (!(op->async = http_async_new(r, write_landed, op))) {
        free(op);
        done(r, ctx, DV_ERR_NOMEM);
        return;
    }
    int rc = db_write_async(db, w, write_committed, op);
    if (rc != DV_OK)
        write_committed(op, rc); /* delivered through the loop like any other outcome */
}

/* ---- small JSON helpers --------------------------------------------------------- */

void http_rev_str(const store_rev *rev, char *buf, size_t cap)
{
    /* By hand: snprintf took ~950 instructions per rev, and a _bulk_docs
     * answer formats one per document. */
    char digits[20];
    size_t nd = 0, idlen = rev->len <= STORE_REV_ID_MAX ? rev->len : STORE_REV_ID_MAX;
    uint64_t pos = rev->pos;
    do {
        digits[nd++] = (char)('0' + pos % 10);
        pos /= 10;
    } while (pos);
    if (nd + 1 + idlen + 1 > cap) {
        snprintf(buf, cap, "%" PRIu64 "-%.*s", rev->pos, (int)idlen, rev->id); /* truncates */
        return;
    }
    for (size_t i = 0; i < nd; i++)
        buf[i] = digits[nd - 1 - i];
    buf[nd] = '-';
    memcpy(buf + nd + 1, rev->id, idlen);
    buf[nd + 1 + idlen] = '\0';
}

void http_write_rev(json_writer *w, const store_rev *rev)
{
    char s[STORE_REV_ID_MAX + 24];
    http_rev_str(rev, s, sizeof s);
    json_write_cstr(w, s);
}

void http_write_seq(json_writer *w, uint64_t seq)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, seq);
    json_write_cstr(w, s);
}

int http_parse_seq(const char *s, size_t n, uint64_t *out)
{
    size_t i = 0;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    uint64_t v = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return DV_ERR_INVALID;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0 || (i < n && s[i] != '-'))
        return DV_ERR_INVALID;
    *out = v;
    return DV_OK;
}

static int url_safe(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

static void url_encode(buf_t *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n > 8 && !memcmp(p, "_design/", 8)) {
        buf_append(b, p, 8);
        p += 8;
        n -= 8;
    }
    for (size_t i = 0; i < n; i++) {
        if (url_safe(p[i])) {
            buf_append_byte(b, p[i]);
        } else {
            uint8_t e[3] = {'%', (uint8_t)hex[p[i] >> 4], (uint8_t)hex[p[i] & 15]};
            buf_append(b, e, 3);
        }
    }
}

const char *http_location(http_req_t *r, const char *db, const uint8_t *id, size_t idlen, const char *att)
{
    h2o_req_t *req = r->h2o;
    buf_t b = BUF_INIT;
    buf_printf(&b, "http://%.*s/", (int)req->authority.len, req->authority.base);
    url_encode(&b, (const uint8_t *)db, strlen(db));
    if (id) {
        buf_append_byte(&b, '/');
        url_encode(&b, id, idlen);
    }
    if (att) {
        buf_append_byte(&b, '/');
        url_encode(&b, (const uint8_t *)att, strlen(att));
    }
    buf_append_byte(&b, 0);
    char *out = NULL;
    if (b.data) {
        out = h2o_mem_alloc_pool(&req->pool, b.len);
        memcpy(out, b.data, b.len);
    }
    buf_free(&b);
    return out ? out : "";
}
