/*
 * fuzz_http_server.c — libFuzzer target for the whole server: the real
 * divan HTTP server (h2o loops, router, every handler, the db and store
 * layers below) runs in this process, and each input becomes one HTTP/1.1
 * exchange over a loopback TCP connection.
 *
 * Set-up (LLVMFuzzerInitialize): a data directory made with mkdtemp, a
 * db_server over it (durability never: no fsync per input; a small cache
 * and max_dbs_open so that fuzzed database names cannot pile up writer
 * threads), the view engine over the JavaScript query server (see
 * open_views), http_server_start on 127.0.0.1 port 0 with two loop
 * threads, then seed data written through HTTP: databases "a" and "b"
 * holding plain documents, a document with attachments (one stored gzip),
 * conflicting and deleted branches (new_edits=false), a design document
 * (map/reduce views, a filter) and a local document.  The seed is written again every RESEED_EVERY inputs, with
 * fixed revisions so that writing it again changes nothing that is still
 * there and restores what inputs deleted or purged; every RESET_EVERY
 * inputs every database is deleted first, so that what inputs pile up
 * (and the time each request takes over it) stays bounded in a long run.
 * Nothing is written outside the temporary directory, which is removed at
 * exit.
 *
 * Input format.  First byte >= 0xF0: raw mode, the rest is sent as it is,
 * then the write side is shut down.  Otherwise a structured request:
 *   byte    method (table below, modulo its size)
 *   byte    route template (table below: every route of routes.c, and
 *           shapes that reach them through odd paths)
 *   pick    database name     } a pick is one byte: < 0xC0 an entry of
 *   3 picks path segments     } the field's table, 0xC0-0xDF a string
 *   byte    number of query parameters (mod 8), each a key pick and a
 *           value pick                   } (length byte, bytes) sent
 *   byte    number of headers (mod 6), each a name pick and a value pick
 *   rest    the body                     } percent-encoded, 0xE0-0xFF the
 *                                        } same string sent nearly raw
 * The harness keeps the request well-formed HTTP/1.1 (method token,
 * escaped target, header values without control characters, header names
 * as tokens, Host, Connection: close, Content-Length of the body); inputs
 * cannot set framing headers (Content-Length, Transfer-Encoding,
 * Connection, Expect, Host, Upgrade, TE) — raw mode covers those.  DELETE
 * of a seed database goes to a scratch one instead, so the data stays.
 *
 * What is asserted (abort, so libFuzzer keeps the input):
 *   - structured requests: a status line "HTTP/1.1 NNN " and a complete
 *     header block; the body complete by its framing (Content-Length, or
 *     chunks up to the last one: a streamed answer must not be cut short);
 *     no 5xx but 501 (divan's documented not_implemented) and a 500 that
 *     names the error of failing user JavaScript (CouchDB's answer to a
 *     reduce or filter that throws, os_process_error) — bad input must get
 *     a 4xx, and divan's own internal errors (unknown_error: out of
 *     memory, I/O on a healthy temporary directory) would be bugs too;
 *     Content-Type, Content-Length, Transfer-Encoding, ETag and
 *     Location at most once each, never a length with chunks; a JSON body
 *     (Content-Type application/json, where divan writes the body: not an
 *     attachment, not _changes, as the server's own router decides) must
 *     be valid JSON; the answer must come within ANSWER_MS.  _changes may
 *     legitimately wait (longpoll, continuous): it gets CHANGES_MS, then
 *     whatever arrived is checked as far as it goes; a view query may take
 *     longer than ANSWER_MS (fuzzed map functions that loop), then it is
 *     checked likewise.
 *   - raw mode: either no byte at all (the server closed on garbage) or a
 *     status line, with the same 5xx rule; nothing about completeness.
 *   - after every input, GET /_up on a new connection answers 200 within
 *     ANSWER_MS (a dead or stuck loop shows here).
 * A crash, an ASan/UBSan report or a failed assert() in a server thread
 * ends the process like one in this thread (ASan's death callback lets
 * libFuzzer save the input).
 *
 * State: the server keeps what earlier inputs wrote, so an input may need
 * its predecessors to fail again; a saved crash input reproduces on a
 * fresh process when it does not depend on them (most do not: each input
 * is one request against the seed).
 *
 * Seeds: DIVAN_FUZZ_HTTP_SEEDS=DIR fuzz_http_server writes the seed corpus
 * (fuzz/corpus/fuzz_http_server: every route template, with the parameters
 * and headers that lead deep into its handler) and exits.  The seed table
 * is written by name and encoded with the same tables the decoder uses; at
 * start-up each seed is decoded again and must give back what it names.
 */
#include "base/buf.h"
#include "base/log.h"
#include "base/status.h"
#include "config.h"
#include "db/db.h"
#include "http/cors.h"
#include "base/passwd.h"
#include "http/auth.h"
#include "http/handlers.h"
#include "http/router.h"
#include "http/server.h"
#include "json/json.h"
#include "views/qserver.h"
#include "views/views.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


/* Every structured request acts as the server admin "admin" (password
 * "pw") unless the input sends its own Authorization or Cookie header. */
#define ADMIN_BASIC "Authorization: Basic YWRtaW46cHc=\r\n"

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* h2o 2.2's two leaks at thread exit, suppressed as in main.c (see there). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\nleak:h2o_multithread_create_queue\n";
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ANSWER_MS 10000   /* any answer but _changes; far above a loaded ASan run */
#define CHANGES_MS 40     /* a waiting _changes feed (or raw request) is cut after this */
#define RESEED_EVERY 512
#define RESET_EVERY 8192  /* a multiple of RESEED_EVERY: the reset is seeded at once */
#define RESP_MAX (8u << 20)

/* ---- tables ---------------------------------------------------------------- */

static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "COPY", "OPTIONS", "PATCH", "MOVE"};

/* {db}, {s1}, {s2}, {s3} are replaced by picks; everything else is literal. */
static const char *const routes[] = {
    "/",
    "/_up",
    "/_uuids",
    "/_all_dbs",
    "/_dbs_info",
    "/_active_tasks",
    "/_node/_local/_stats",
    "/_node/{s1}/_stats/{s2}",
    "/_up/{s1}",
    "/{db}",
    "/{db}/_compact",
    "/{db}/_ensure_full_commit",
    "/{db}/_revs_limit",
    "/{db}/_security",
    "/{db}/_bulk_docs",
    "/{db}/_changes",
    "/{db}/_bulk_get",
    "/{db}/_revs_diff",
    "/{db}/_missing_revs",
    "/{db}/_purge",
    "/{db}/_all_docs",
    "/{db}/_design_docs",
    "/{db}/_local_docs",
    "/{db}/_all_docs/queries",
    "/{db}/_design_docs/queries",
    "/{db}/_local_docs/queries",
    "/{db}/{s1}",
    "/{db}/_design/{s1}",
    "/{db}/_local/{s1}",
    "/{db}/{s1}/{s2}",
    "/{db}/_design/{s1}/{s2}",
    "/{db}/{s1}/{s2}/{s3}",
    "/{s1}",
    "/{s1}/{s2}/{s3}",
    "/{db}/_compact/{s1}",
    "/{db}/_view_cleanup",
    "/{db}/_design/{s1}/_view/{s2}",
    "/{db}/_design/{s1}/_info",
};

static const char *const dbs[] = {"a", "b", "nodb", "s1", "s2", "_users", "_replicator", "A", "a/b", "a%2Fb"};

static const char *const segs[] = {
    "d1", "att", "conf", "del", "dd", "loc", "a.txt", "b.bin", "dir/c.txt", "x", "nope", "_design", "_local",
    "_all_docs", "_changes", "_design/dd", "_local/loc", "_bulk_get", "long", "_stats", "%", "..",
    "v", "byv", "js", "_view", "_info",
};

static const char *const keys[] = {
    "rev", "revs", "open_revs", "latest", "attachments", "atts_since", "att_encoding_info", "conflicts",
    "deleted_conflicts", "revs_info", "local_seq", "meta", "new_edits", "batch", "feed", "since", "limit",
    "include_docs", "descending", "style", "heartbeat", "timeout", "filter", "doc_ids", "seq_interval", "keys",
    "key", "startkey", "endkey", "start_key", "end_key", "startkey_docid", "endkey_docid", "inclusive_end",
    "skip", "update_seq", "count", "include_system", "w", "r", "n", "q", "last-event-id", "reduce", "group",
    "group_level", "view", "stable", "update", "sorted", "stale",
};

static const char *const values[] = {
    "true", "false", "all", "0", "1", "2", "-1", "10", "1000000000000", "now", "[]", "[\"2-c1\"]",
    "[\"1-c0\",\"3-c3\"]", "[\"d1\",\"att\",\"nope\"]", "\"d1\"", "\"_design/\"", "\"\"", "null", "{}", "normal",
    "longpoll", "continuous", "eventsource", "live", "_doc_ids", "_design", "main_only", "all_docs", "ok",
    "2-c1", "1-a7", "2-x", "abc", "\"\\ud800\"", "[1,{\"a\":[]}]", "dd/f", "dd/v", "_view", "lazy",
    "[\"d1\",1]", "[null,{}]",
};

static const char *const hnames[] = {
    "Content-Type", "Accept", "Range", "If-Match", "If-None-Match", "Accept-Encoding", "Content-Encoding",
    "Destination", "X-Couch-Full-Commit", "Last-Event-ID", "Referer", "X-Forwarded-Host", "Authorization",
    "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers",
    "Cookie",
};

static const char *const hvalues[] = {
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "multipart/related; boundary=\"B\"",
    "multipart/related; boundary=B",
    "multipart/related",
    "multipart/mixed",
    "multipart/mixed, application/json;q=0.5",
    "*/*",
    "application/*;q=0",
    "gzip",
    "identity",
    "gzip, deflate",
    "bytes=0-1",
    "bytes=1-2,4-5",
    "bytes=-3",
    "bytes=5-",
    "bytes=9-1",
    "\"2-c1\"",
    "2-c1",
    "d2",
    "d2?rev=1-a7",
    "true",
    "Basic YTpi",
    "http://a.example",
    "content-type, x-requested-with",
    "Basic YWRtaW46cHc=",
    "Basic YWRtaW46d3Jvbmc=",
    "Basic !!",
    "AuthSession=YWRtaW46NjAwMDAwMDA6AAECAwQFBgcICQoLDA0ODxAREhM",
    "AuthSession=bm9jb2xvbg",
    "a=b; AuthSession=; c",
};

/* Framing headers the structured mode keeps for itself. */
static const char *const framing[] = {"content-length", "transfer-encoding", "connection", "expect",
                                      "host",           "upgrade",           "te",         "keep-alive"};

#define N(t) (sizeof(t) / sizeof((t)[0]))
#define PICK_ENCODED 0xC0
#define PICK_RAW 0xE0
#define RAW_MODE 0xF0

/* ---- decoding an input --------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static unsigned rd_byte(rd *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

typedef struct pick {
    int kind; /* 0 table, PICK_ENCODED, PICK_RAW */
    const uint8_t *p;
    size_t n;
} pick;

static pick rd_pick(rd *r, const char *const *table, size_t ntable)
{
    unsigned c = rd_byte(r);
    pick k = {0, NULL, 0};
    if (c < PICK_ENCODED) {
        k.p = (const uint8_t *)table[c % ntable];
        k.n = strlen(table[c % ntable]);
        return k;
    }
    k.kind = c >= PICK_RAW ? PICK_RAW : PICK_ENCODED;
    size_t len = rd_byte(r);
    if (len > r->n)
        len = r->n;
    k.p = r->p;
    k.n = len;
    r->p += len;
    r->n -= len;
    return k;
}

static int is_unreserved(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

/* A pick as part of a request target: table entries and encoded picks
 * percent-encoded (so "_design/dd" stays one segment), raw picks as they
 * are but for what would break the request line. */
static int put_target_text(buf_t *b, const pick *k, int in_query)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = DV_OK;
    for (size_t i = 0; i < k->n && rc == DV_OK; i++) {
        uint8_t c = k->p[i];
        int keep = k->kind == PICK_RAW ? c > 0x20 && c != 0x7f && c != '#' && (in_query || c != '?')
                                       : is_unreserved(c);
        if (keep) {
            rc = buf_append_byte(b, c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, e, 3);
        }
    }
    return rc;
}

static int is_tchar(uint8_t c)
{
    return is_unreserved(c) || (c && strchr("!#$%&'*+^`|", c));
}

/* The decoded request, as the harness builds it (also what the seed self
 * check compares). */
typedef struct fuzz_req {
    int raw;
    const uint8_t *raw_p;
    size_t raw_n;
    unsigned method, route;
    pick db, seg[3];
    size_t nparam;
    pick pkey[8], pval[8];
    size_t nhdr;
    pick hname[6], hval[6];
    const uint8_t *body;
    size_t body_n;
} fuzz_req;

static void decode(const uint8_t *data, size_t size, fuzz_req *q)
{
    rd r = {data, size};
    memset(q, 0, sizeof *q);
    unsigned m = rd_byte(&r);
    if (m >= RAW_MODE) {
        q->raw = 1;
        q->raw_p = r.p;
        q->raw_n = r.n;
        return;
    }
    q->method = m % N(methods);
    q->route = rd_byte(&r) % N(routes);
    q->db = rd_pick(&r, dbs, N(dbs));
    for (size_t i = 0; i < 3; i++)
        q->seg[i] = rd_pick(&r, segs, N(segs));
    q->nparam = rd_byte(&r) % 8;
    for (size_t i = 0; i < q->nparam; i++) {
        q->pkey[i] = rd_pick(&r, keys, N(keys));
        q->pval[i] = rd_pick(&r, values, N(values));
    }
    q->nhdr = rd_byte(&r) % 6;
    for (size_t i = 0; i < q->nhdr; i++) {
        q->hname[i] = rd_pick(&r, hnames, N(hnames));
        q->hval[i] = rd_pick(&r, hvalues, N(hvalues));
    }
    q->body = r.p;
    q->body_n = r.n;
}

static int pick_is(const pick *k, const char *s)
{
    return k->n == strlen(s) && !memcmp(k->p, s, k->n);
}

/* The HTTP/1.1 bytes of a structured request. */
static int build(const fuzz_req *q, buf_t *out)
{
    int rc = buf_append_str(out, methods[q->method]);
    rc = rc ? rc : buf_append_byte(out, ' ');
    const char *t = routes[q->route];
    pick db = q->db;
    /* DELETE of a seed database would take the seed away for every later
     * input: a scratch database is deleted instead. */
    if (!strcmp(methods[q->method], "DELETE") && (!strcmp(t, "/{db}") || !strcmp(t, "/{s1}"))) {
        const pick *named = !strcmp(t, "/{db}") ? &q->db : &q->seg[0];
        if (pick_is(named, "a") || pick_is(named, "b")) {
            static const char scratch[] = "s1";
            db = (pick){0, (const uint8_t *)scratch, 2};
            t = "/{db}";
        }
    }
    while (*t && rc == DV_OK) {
        if (!strncmp(t, "{db}", 4)) {
            rc = put_target_text(out, &db, 0);
            t += 4;
        } else if (t[0] == '{' && t[1] == 's' && t[2] >= '1' && t[2] <= '3' && t[3] == '}') {
            rc = put_target_text(out, &q->seg[t[2] - '1'], 0);
            t += 4;
        } else {
            rc = buf_append_byte(out, (uint8_t)*t++);
        }
    }
    for (size_t i = 0; i < q->nparam && rc == DV_OK; i++) {
        rc = buf_append_byte(out, i ? '&' : '?');
        rc = rc ? rc : put_target_text(out, &q->pkey[i], 1);
        rc = rc ? rc : buf_append_byte(out, '=');
        rc = rc ? rc : put_target_text(out, &q->pval[i], 1);
    }
    rc = rc ? rc : buf_append_str(out, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    /* The server admin's credentials, unless the input sends its own
     * Authorization or Cookie: then authentication itself is fuzzed. */
    int own_auth = 0;
    for (size_t i = 0; i < q->nhdr; i++)
        own_auth |= (q->hname[i].n == 13 && !strncasecmp((const char *)q->hname[i].p, "authorization", 13)) ||
                    (q->hname[i].n == 6 && !strncasecmp((const char *)q->hname[i].p, "cookie", 6));
    if (!own_auth)
        rc = rc ? rc : buf_append_str(out, ADMIN_BASIC);
    for (size_t i = 0; i < q->nhdr && rc == DV_OK; i++) {
        const pick *n = &q->hname[i], *v = &q->hval[i];
        size_t start = out->len;
        for (size_t j = 0; j < n->n && rc == DV_OK; j++)
            rc = buf_append_byte(out, is_tchar(n->p[j]) ? n->p[j] : 'x');
        if (rc == DV_OK && out->len == start)
            rc = buf_append_str(out, "X-Empty");
        for (size_t j = 0; rc == DV_OK && j < N(framing); j++) {
            if (out->len - start == strlen(framing[j]) &&
                !strncasecmp((const char *)out->data + start, framing[j], out->len - start)) {
                out->len = start;
                rc = buf_append_str(out, "X-Fuzz");
            }
        }
        rc = rc ? rc : buf_append_str(out, ": ");
        for (size_t j = 0; j < v->n && rc == DV_OK; j++) {
            uint8_t c = v->p[j];
            rc = buf_append_byte(out, (c < 0x20 && c != '\t') || c == 0x7f ? ' ' : c);
        }
        rc = rc ? rc : buf_append_str(out, "\r\n");
    }
    char cl[48];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n\r\n", q->body_n);
    rc = rc ? rc : buf_append_str(out, cl);
    return rc ? rc : buf_append(out, q->body, q->body_n);
}

/* ---- the server and the client side ----------------------------------------- */

static char g_dir[256];
static db_server *g_dbs;
static qserver *g_qs;
static views *g_views;
static http_server_t *g_srv;
static http_auth_t *g_auth;
static char *g_admin_hash;
static int g_port;
static unsigned long g_runs;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum { X_EOF = 0, X_TIMEOUT = 1, X_RESET = 2 };

/* Sends req on a new connection and reads until the server closes it, the
 * deadline passes or RESP_MAX bytes came.  half_close: shut the write side
 * down after sending (raw mode: an incomplete request then ends). */
static int exchange(const buf_t *req, int half_close, int deadline_ms, buf_t *resp)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("fuzz_http_server: socket");
        abort();
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Short slices: a read returns at least every 50 ms, so the deadline
     * below is kept whatever the server does. */
    struct timeval tv = {0, 50 * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("fuzz_http_server: connect");
        abort();
    }
    long long end = now_ms() + deadline_ms;
    size_t off = 0;
    int result = X_EOF;
    while (off < req->len && now_ms() < end) {
        ssize_t k = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
        if (k > 0)
            off += (size_t)k;
        else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break; /* the server closed early (an answer may be waiting) */
    }
    if (half_close)
        shutdown(fd, SHUT_WR);
    for (;;) {
        if (now_ms() >= end) {
            result = X_TIMEOUT;
            break;
        }
        if (buf_reserve(resp, 64 * 1024) != DV_OK)
            abort();
        ssize_t k = recv(fd, resp->data + resp->len, 64 * 1024, 0);
        if (k > 0) {
            resp->len += (size_t)k;
            if (resp->len >= RESP_MAX)
                break;
        } else if (k == 0) {
            break;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            result = X_RESET;
            break;
        }
    }
    close(fd);
    return result;
}

static void show(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes): \"", what, n);
    for (size_t i = 0; i < n && i < 4096; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            fputc(p[i], stderr);
        else
            fprintf(stderr, "\\x%02x", p[i]);
    }
    fprintf(stderr, "%s\"\n", n > 4096 ? "..." : "");
}

static const buf_t *g_req;  /* what the current input sent, for reports */
static const buf_t *g_resp;

static void die(const char *why) __attribute__((noreturn));
static void die(const char *why)
{
    fprintf(stderr, "fuzz_http_server: %s\n", why);
    if (g_req)
        show("request", g_req->data, g_req->len);
    if (g_resp)
        show("response", g_resp->data, g_resp->len);
    abort();
}

/* ---- reading an answer --------------------------------------------------------- */

typedef struct answer {
    int status;
    const uint8_t *head; /* header lines (after the status line) */
    size_t head_n;
    const uint8_t *body;
    size_t body_n;
} answer;

/* Status line and header block: 0, or -1 when there is no status line, -2
 * when the header block is not complete. */
static int parse_answer(const buf_t *b, answer *a)
{
    const char *p = (const char *)b->data;
    memset(a, 0, sizeof *a);
    if (b->len < 13 || memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' || p[12] != ' ')
        return -1;
    a->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    const uint8_t *eol = memmem(b->data, b->len, "\r\n", 2);
    const uint8_t *end = memmem(b->data, b->len, "\r\n\r\n", 4);
    if (!eol || !end)
        return -2;
    a->head = eol + 2;
    a->head_n = (size_t)(end + 2 - a->head);
    a->body = end + 4;
    a->body_n = b->len - (size_t)(a->body - b->data);
    return 0;
}

/* The value of header `name` (case-insensitive), trimmed, or NULL. */
static const char *header(const answer *a, const char *name, size_t *vn)
{
    size_t nl = strlen(name);
    const char *p = (const char *)a->head, *end = p + a->head_n;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && !strncasecmp(p, name, nl)) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *vn = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Removes chunked framing into out: 0 when complete (last chunk and final
 * CRLF seen), -1 when cut short or malformed. */
static int dechunk(const uint8_t *p, size_t n, buf_t *out)
{
    size_t i = 0;
    for (;;) {
        size_t size = 0, digits = 0;
        while (i < n && ((p[i] >= '0' && p[i] <= '9') || ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f'))) {
            uint8_t c = p[i++];
            size = size * 16 + (size_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            if (++digits > 12)
                return -1;
        }
        const uint8_t *eol = i < n ? memmem(p + i, n - i, "\r\n", 2) : NULL;
        if (!digits || !eol)
            return -1;
        i = (size_t)(eol - p) + 2; /* chunk extensions ignored */
        if (size == 0) /* the last chunk, the final CRLF, and nothing after it */
            return n - i == 2 && p[i] == '\r' && p[i + 1] == '\n' ? 0 : -1;
        if (n - i < size + 2 || p[i + size] != '\r' || p[i + size + 1] != '\n')
            return -1;
        if (buf_append(out, p + i, size) != DV_OK)
            abort();
        i += size + 2;
    }
}

/* ---- checks ------------------------------------------------------------------ */

/* 501 is divan's documented not_implemented; a 500 is CouchDB's answer
 * when user JavaScript fails (a reduce or filter that throws, a query
 * server process that dies: the error names it, os_process_error …).
 * divan's own internal errors are "unknown_error": those are bugs here. */
static void check_status(const answer *a)
{
    if (a->status == 501 || a->status < 500)
        return;
    if (a->status == 500 && a->body_n && !memmem(a->body, a->body_n, "\"error\":\"unknown_error\"", 23) &&
        memmem(a->body, a->body_n, "\"error\":\"", 9))
        return;
    die("5xx answer (allowed: 501, and 500 for a failing user function)");
}

/* Which handler a structured request reaches, found as the server finds
 * it (its router and route table, on the target as it decodes it:
 * "/a/_chang%65s" is _changes): _changes may wait, and an attachment
 * answers the stored bytes with the stored type, so JSON is checked only
 * where divan writes the body itself. */
enum { ROUTE_OTHER, ROUTE_CHANGES, ROUTE_ATTACHMENT, ROUTE_VIEW };
static int route_kind(const fuzz_req *q, const buf_t *req)
{
    const uint8_t *sp = memchr(req->data, ' ', req->len);
    const uint8_t *sp2 = sp ? memchr(sp + 1, ' ', req->len - (size_t)(sp + 1 - req->data)) : NULL;
    http_target_t t;
    if (!sp || !sp2 || http_target_parse((const char *)sp + 1, (size_t)(sp2 - sp - 1), &t) != DV_OK)
        die("harness built a bad request line");
    size_t slen = http_route_scratch_size(&t);
    char *scratch = malloc(slen);
    const http_route_t *route = NULL;
    http_match_t m;
    if (!scratch)
        abort();
    int method = http_method_parse(methods[q->method], strlen(methods[q->method]));
    int kind = ROUTE_OTHER;
    if (http_route_find(http_routes, http_nroutes, method, &t, scratch, slen, &route, &m) != HTTP_ROUTE_NO_PATH) {
        if (!strcmp(route->pattern, "/{db}/_changes"))
            kind = ROUTE_CHANGES;
        else if (!strcmp(route->pattern, "/{db}/{docid}/{rest}"))
            kind = ROUTE_ATTACHMENT;
        else if (!strcmp(route->pattern, "/{db}/{docid}/_view/{rest}"))
            kind = ROUTE_VIEW;
    }
    free(scratch);
    http_target_free(&t);
    return kind;
}

/* How many times header `name` appears. */
static int header_count(const answer *a, const char *name)
{
    size_t nl = strlen(name);
    int n = 0;
    const char *p = (const char *)a->head, *end = p + a->head_n;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && !strncasecmp(p, name, nl))
            n++;
        p = eol + 2;
    }
    return n;
}

static void check_structured(const fuzz_req *q, const buf_t *resp, int result, int kind)
{
    int changes = kind == ROUTE_CHANGES, own_body = kind == ROUTE_OTHER || kind == ROUTE_VIEW;
    answer a;
    int pr = parse_answer(resp, &a);
    if (result == X_TIMEOUT && (changes || kind == ROUTE_VIEW))
        return; /* a feed that waits, or a view whose map functions take their time */
    if (result == X_TIMEOUT)
        die("no complete answer within ANSWER_MS");
    if (pr == -1)
        die("no status line for a well-formed request");
    if (pr == -2)
        die("header block not complete");
    check_status(&a);
    static const char *const once[] = {"content-type", "content-length", "transfer-encoding", "etag", "location"};
    for (size_t i = 0; i < N(once); i++)
        if (header_count(&a, once[i]) > 1)
            die("a header that must appear once appears twice");
    if (header_count(&a, "content-length") && header_count(&a, "transfer-encoding"))
        die("both Content-Length and Transfer-Encoding");
    int head = !strcmp(methods[q->method], "HEAD");
    if (head || a.status == 204 || a.status == 304 || a.status < 200)
        return;
    size_t vn;
    const char *te = header(&a, "transfer-encoding", &vn);
    const char *cl = header(&a, "content-length", &vn);
    buf_t body = BUF_INIT;
    const uint8_t *bp = a.body;
    size_t bn = a.body_n;
    if (te && vn >= 7 && !strncasecmp(te + vn - 7, "chunked", 7)) {
        if (dechunk(a.body, a.body_n, &body) != 0)
            die("chunked body cut short or malformed");
        bp = body.data;
        bn = body.len;
    } else if (cl) {
        if ((size_t)strtoull(cl, NULL, 10) != a.body_n)
            die("body length differs from Content-Length");
    }
    const char *ct = header(&a, "content-type", &vn);
    if (own_body && ct && vn >= 16 && !strncasecmp(ct, "application/json", 16)) {
        while (bn && (bp[bn - 1] == '\n' || bp[bn - 1] == '\r'))
            bn--;
        json_error err;
        if (json_validate(bp ? bp : (const uint8_t *)"", bn, 4096, &err) != DV_OK)
            die("application/json body is not valid JSON");
    }
    buf_free(&body);
}

static void check_raw(const buf_t *resp)
{
    answer a;
    if (resp->len == 0)
        return; /* closed on garbage */
    if (parse_answer(resp, &a) == -1)
        die("raw request: bytes came back but no status line");
    check_status(&a);
}

/* One request from text, for the seed data and GET /_up: its status, or
 * -1 when none came. */
static int simple_answer(const char *method, const char *target, const char *body, buf_t *resp);
static int simple(const char *method, const char *target, const char *body)
{
    buf_t resp = BUF_INIT;
    int status = simple_answer(method, target, body, &resp);
    buf_free(&resp);
    return status;
}

/* The same, the whole answer (status line on) left in resp. */
static int simple_answer(const char *method, const char *target, const char *body, buf_t *resp)
{
    buf_t req = BUF_INIT;
    char head[512];
    size_t n = body ? strlen(body) : 0;
    snprintf(head, sizeof head,
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
             "%sContent-Length: %zu\r\n\r\n",
             method, target, ADMIN_BASIC, n);
    if (buf_append_str(&req, head) != DV_OK || buf_append(&req, body ? body : "", n) != DV_OK)
        abort();
    int result = exchange(&req, 0, ANSWER_MS, resp);
    answer a;
    int status = result == X_EOF && parse_answer(resp, &a) == 0 ? a.status : -1;
    buf_free(&req);
    return status;
}

/* Deletes every database (inputs create them under any name), so that a
 * long run keeps a bounded state and the seed starts afresh. */
static void delete_all(void)
{
    buf_t resp = BUF_INIT, target = BUF_INIT;
    json_doc jd = JSON_DOC_INIT;
    answer a;
    if (simple_answer("GET", "/_all_dbs", NULL, &resp) != 200 || parse_answer(&resp, &a) != 0 ||
        json_doc_parse(&jd, a.body, a.body_n, 0, NULL) != DV_OK || !json_is_array(json_doc_root(&jd)))
        die("GET /_all_dbs does not list the databases");
    json_iter it = json_iter_begin(json_doc_root(&jd));
    const json_val *v;
    while (json_iter_elem(&it, &v)) {
        size_t n;
        const char *name = json_str(v, &n);
        pick k = {PICK_ENCODED, (const uint8_t *)name, n};
        buf_reset(&target);
        if (buf_append_byte(&target, '/') != DV_OK || put_target_text(&target, &k, 0) != DV_OK ||
            buf_append_byte(&target, 0) != DV_OK)
            abort();
        int st = simple("DELETE", (const char *)target.data, NULL);
        if (st != 200 && st != 404)
            die("DELETE of a database failed");
    }
    json_doc_free(&jd);
    buf_free(&target);
    buf_free(&resp);
}

/* The seed data, every write with fixed revisions (new_edits=false), so
 * that writing it again is a no-op for what is still there. */
static void reseed(void)
{
    static const char *const w[][3] = {
        {"PUT", "/a", NULL},
        {"PUT", "/b", NULL},
        {"PUT", "/a/d1?new_edits=false", "{\"_id\":\"d1\",\"v\":1,\"tags\":[\"x\",\"y\"],\"n\":1.5e3,"
                                         "\"_revisions\":{\"start\":2,\"ids\":[\"b1\",\"a1\"]}}"},
        {"PUT", "/a/att?new_edits=false",
         "{\"_id\":\"att\",\"_revisions\":{\"start\":1,\"ids\":[\"a7\"]},\"_attachments\":{"
         "\"a.txt\":{\"content_type\":\"text/plain\",\"data\":\"aGVsbG8gaGVsbG8gaGVsbG8gaGVsbG8=\"},"
         "\"b.bin\":{\"content_type\":\"application/octet-stream\",\"data\":\"AAECAwQFBgcICQ==\"},"
         "\"dir/c.txt\":{\"content_type\":\"application/json\",\"data\":\"eyJqc29uIjp0cnVlfQ==\"}}}"},
        {"PUT", "/a/conf?new_edits=false",
         "{\"_id\":\"conf\",\"v\":\"one\",\"_revisions\":{\"start\":2,\"ids\":[\"c1\",\"c0\"]}}"},
        {"PUT", "/a/conf?new_edits=false",
         "{\"_id\":\"conf\",\"v\":\"two\",\"_revisions\":{\"start\":2,\"ids\":[\"c2\",\"c0\"]},"
         "\"_attachments\":{\"a.txt\":{\"content_type\":\"text/plain\",\"data\":\"Y29uZmxpY3Q=\"}}}"},
        {"PUT", "/a/conf?new_edits=false",
         "{\"_id\":\"conf\",\"_deleted\":true,\"_revisions\":{\"start\":3,\"ids\":[\"c3\",\"c2\",\"c0\"]}}"},
        {"PUT", "/a/del?new_edits=false", "{\"_id\":\"del\",\"_deleted\":true,\"_revisions\":{\"start\":2,"
                                          "\"ids\":[\"d2\",\"d1\"]}}"},
        {"PUT", "/a/_design/dd?new_edits=false",
         "{\"_id\":\"_design/dd\",\"views\":{\"v\":{\"map\":\"function(doc){emit(doc._id,1)}\",\"reduce\":"
         "\"_sum\"},\"byv\":{\"map\":\"function(doc){emit([doc.v,doc._id],doc.tags||null)}\",\"reduce\":\"_count\"},"
         "\"js\":{\"map\":\"function(doc){if(doc.v)emit(doc.v,doc.n)}\",\"reduce\":\"function(k,v,re){return sum(v)}\"}},"
         "\"filters\":{\"f\":\"function(doc,req){return !!doc.v}\"},\"_revisions\":{\"start\":1,\"ids\":[\"dd\"]}}"},
        {"PUT", "/a/_local/loc", "{\"v\":1}"},
        {"POST", "/b/_bulk_docs",
         "{\"new_edits\":false,\"docs\":[{\"_id\":\"long\",\"v\":5,\"_revisions\":{\"start\":5,\"ids\":"
         "[\"l5\",\"l4\",\"l3\",\"l2\",\"l1\"]}},{\"_id\":\"d1\",\"_revisions\":{\"start\":1,\"ids\":[\"x\"]}}]}"},
    };
    for (size_t i = 0; i < N(w); i++) {
        int st = simple(w[i][0], w[i][1], w[i][2]);
        if (st < 0 || st == 500 || st >= 502) {
            fprintf(stderr, "fuzz_http_server: seed %s %s answered %d\n", w[i][0], w[i][1], st);
            abort();
        }
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    if (g_srv)
        http_server_stop(g_srv);
    g_srv = NULL;
    http_auth_free(g_auth);
    g_auth = NULL;
    free(g_admin_hash);
    g_admin_hash = NULL;
    views_close(g_views);
    g_views = NULL;
    qserver_close(g_qs);
    g_qs = NULL;
    if (g_dbs)
        db_server_close(g_dbs);
    g_dbs = NULL;
    if (g_dir[0])
        nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    OPENSSL_cleanup();
}

/* ---- seeds ------------------------------------------------------------------- */

/* A seed by name: fields are table entries when a table holds them, else
 * sent as encoded strings. */
typedef struct seed {
    const char *name;
    const char *method, *route, *db;
    const char *seg[3];
    const char *param[7][2];
    const char *hdr[5][2];
    const char *body;
} seed;

#define JSON_CT {"Content-Type", "application/json"}
#define MP_BODY                                                                                              \
    "--B\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"mp\",\"_attachments\":{\"f.bin\":{\"follows\":true," \
    "\"content_type\":\"application/octet-stream\",\"length\":3}}}\r\n--B\r\nContent-Disposition: attachment; " \
    "filename=\"f.bin\"\r\n\r\nabc\r\n--B--"

static const seed seeds[] = {
    {"welcome", "GET", "/", "a", {0}, {{0}}, {{0}}, NULL},
    {"up", "GET", "/_up", "a", {0}, {{0}}, {{0}}, NULL},
    {"uuids", "GET", "/_uuids", "a", {0}, {{"count", "10"}}, {{0}}, NULL},
    {"all_dbs", "GET", "/_all_dbs", "a", {0}, {{"descending", "true"}, {"limit", "1"}}, {{0}}, NULL},
    {"dbs_info_get", "GET", "/_dbs_info", "a", {0}, {{0}}, {{0}}, NULL},
    {"dbs_info_post", "POST", "/_dbs_info", "a", {0}, {{0}}, {JSON_CT}, "{\"keys\":[\"a\",\"nodb\"]}"},
    {"active_tasks", "GET", "/_active_tasks", "a", {0}, {{0}}, {{0}}, NULL},
    {"stats", "GET", "/_node/_local/_stats", "a", {0}, {{0}}, {{0}}, NULL},
    {"stats_sub", "GET", "/_node/{s1}/_stats/{s2}", "a", {"_local", "couchdb"}, {{0}}, {{0}}, NULL},
    {"up_sub", "PUT", "/_up/{s1}", "a", {"x"}, {{0}}, {{0}}, NULL},
    {"db_get", "GET", "/{db}", "a", {0}, {{0}}, {{0}}, NULL},
    {"db_put", "PUT", "/{db}", "s2", {0}, {{0}}, {{0}}, NULL},
    {"db_delete", "DELETE", "/{db}", "s1", {0}, {{0}}, {{0}}, NULL},
    {"db_post", "POST", "/{db}", "a", {0}, {{"batch", "ok"}}, {JSON_CT}, "{\"_id\":\"posted\",\"v\":[1,2]}"},
    {"compact", "POST", "/{db}/_compact", "a", {0}, {{0}}, {JSON_CT}, NULL},
    {"full_commit", "POST", "/{db}/_ensure_full_commit", "a", {0}, {{0}}, {JSON_CT}, NULL},
    {"revs_limit", "PUT", "/{db}/_revs_limit", "b", {0}, {{0}}, {JSON_CT}, "1000"},
    {"security", "PUT", "/{db}/_security", "b", {0}, {{0}}, {JSON_CT},
     "{\"admins\":{\"names\":[],\"roles\":[]},\"members\":{\"names\":[\"x\"]}}"},
    {"bulk_docs", "POST", "/{db}/_bulk_docs", "a", {0}, {{0}}, {JSON_CT},
     "{\"docs\":[{\"_id\":\"n1\"},{\"_id\":\"d1\",\"_rev\":\"2-b1\",\"v\":2},{\"_id\":\"_local/l\"},"
     "{\"_id\":\"g\",\"_attachments\":{\"z\":{\"data\":\"AAAA\",\"content_type\":\"text/plain\"}}}]}"},
    {"bulk_docs_replicate", "POST", "/{db}/_bulk_docs", "a", {0}, {{0}}, {JSON_CT},
     "{\"new_edits\":false,\"docs\":[{\"_id\":\"conf\",\"_rev\":\"3-c9\",\"_revisions\":{\"start\":3,"
     "\"ids\":[\"c9\",\"c1\",\"c0\"]}}]}"},
    {"changes", "GET", "/{db}/_changes", "a", {0},
     {{"style", "all_docs"}, {"include_docs", "true"}, {"conflicts", "true"}, {"attachments", "true"}}, {{0}}, NULL},
    {"changes_longpoll", "GET", "/{db}/_changes", "a", {0}, {{"feed", "longpoll"}, {"since", "now"}, {"timeout", "10"}},
     {{0}}, NULL},
    {"changes_continuous", "GET", "/{db}/_changes", "a", {0}, {{"feed", "continuous"}, {"heartbeat", "10"}},
     {{0}}, NULL},
    {"changes_doc_ids", "POST", "/{db}/_changes", "a", {0}, {{"filter", "_doc_ids"}}, {JSON_CT},
     "{\"doc_ids\":[\"d1\",\"att\"]}"},
    {"changes_eventsource", "GET", "/{db}/_changes", "a", {0}, {{"feed", "eventsource"}, {"since", "0"}},
     {{"Last-Event-ID", "2"}}, NULL},
    {"bulk_get", "POST", "/{db}/_bulk_get", "a", {0}, {{"revs", "true"}, {"latest", "true"}}, {JSON_CT},
     "{\"docs\":[{\"id\":\"d1\"},{\"id\":\"conf\",\"rev\":\"1-c0\"},{\"id\":\"att\",\"atts_since\":[\"1-x\"]},"
     "{\"id\":\"nope\",\"rev\":\"1-z\"},5,{\"id\":\"_bad\"}]}"},
    {"bulk_get_multipart", "POST", "/{db}/_bulk_get", "a", {0}, {{"attachments", "true"}},
     {JSON_CT, {"Accept", "multipart/mixed"}},
     "{\"docs\":[{\"id\":\"att\"},{\"id\":\"conf\"},{\"id\":\"d1\",\"rev\":\"9-z\"},{}]}"},
    {"revs_diff", "POST", "/{db}/_revs_diff", "a", {0}, {{0}}, {JSON_CT},
     "{\"conf\":[\"2-c1\",\"4-zz\",\"3-c3\"],\"nope\":[\"1-a\"]}"},
    {"missing_revs", "POST", "/{db}/_missing_revs", "a", {0}, {{0}}, {JSON_CT}, "{\"d1\":[\"2-b1\",\"3-q\"]}"},
    {"purge", "POST", "/{db}/_purge", "b", {0}, {{0}}, {JSON_CT}, "{\"d1\":[\"1-x\"],\"long\":[\"9-q\"]}"},
    {"all_docs", "GET", "/{db}/_all_docs", "a", {0},
     {{"include_docs", "true"}, {"startkey", "\"d1\""}, {"limit", "10"}, {"update_seq", "true"}}, {{0}}, NULL},
    {"all_docs_keys", "POST", "/{db}/_all_docs", "a", {0}, {{"conflicts", "true"}}, {JSON_CT},
     "{\"keys\":[\"conf\",\"nope\",\"del\"]}"},
    {"design_docs", "GET", "/{db}/_design_docs", "a", {0}, {{"descending", "true"}}, {{0}}, NULL},
    {"local_docs", "GET", "/{db}/_local_docs", "a", {0}, {{"include_docs", "true"}}, {{0}}, NULL},
    {"all_docs_queries", "POST", "/{db}/_all_docs/queries", "a", {0}, {{0}}, {JSON_CT},
     "{\"queries\":[{\"keys\":[\"d1\"]},{\"limit\":1,\"skip\":1}]}"},
    {"design_docs_queries", "POST", "/{db}/_design_docs/queries", "a", {0}, {{0}}, {JSON_CT},
     "{\"queries\":[{}]}"},
    {"local_docs_queries", "POST", "/{db}/_local_docs/queries", "a", {0}, {{0}}, {JSON_CT},
     "{\"queries\":[{\"include_docs\":true}]}"},
    {"doc_get", "GET", "/{db}/{s1}", "a", {"conf"},
     {{"revs", "true"}, {"revs_info", "true"}, {"conflicts", "true"}, {"deleted_conflicts", "true"},
      {"local_seq", "true"}, {"meta", "true"}},
     {{0}}, NULL},
    {"doc_open_revs", "GET", "/{db}/{s1}", "a", {"conf"}, {{"open_revs", "all"}, {"latest", "true"}},
     {{"Accept", "multipart/mixed"}}, NULL},
    {"doc_attachments", "GET", "/{db}/{s1}", "a", {"att"}, {{"attachments", "true"}, {"atts_since", "[]"}},
     {{"Accept", "multipart/related"}}, NULL},
    {"doc_put", "PUT", "/{db}/{s1}", "a", {"x"}, {{0}}, {JSON_CT}, "{\"v\":{\"deep\":[null,true,-0.0]}}"},
    {"doc_put_multipart", "PUT", "/{db}/{s1}", "a", {"x"}, {{"new_edits", "false"}},
     {{"Content-Type", "multipart/related; boundary=\"B\""}}, MP_BODY},
    {"doc_delete", "DELETE", "/{db}/{s1}", "a", {"d1"}, {{"rev", "2-x"}}, {{"If-Match", "\"2-c1\""}}, NULL},
    {"doc_copy", "COPY", "/{db}/{s1}", "a", {"att"}, {{0}}, {{"Destination", "d2?rev=1-a7"}}, NULL},
    {"cors_preflight", "OPTIONS", "/{db}/{s1}", "a", {"d1"}, {{0}},
     {{"Origin", "http://a.example"}, {"Access-Control-Request-Method", "PUT"},
      {"Access-Control-Request-Headers", "content-type, x-requested-with"}},
     NULL},
    {"cors_simple", "GET", "/{db}/{s1}", "a", {"d1"}, {{0}}, {{"Origin", "http://a.example"}}, NULL},
    {"doc_if_none_match", "GET", "/{db}/{s1}", "a", {"d1"}, {{0}}, {{"If-None-Match", "\"2-c1\""}}, NULL},
    {"design_get", "GET", "/{db}/_design/{s1}", "a", {"dd"}, {{0}}, {{0}}, NULL},
    {"local_put", "PUT", "/{db}/_local/{s1}", "a", {"loc"}, {{0}}, {JSON_CT}, "{\"v\":2}"},
    {"att_get", "GET", "/{db}/{s1}/{s2}", "a", {"att", "b.bin"}, {{0}}, {{"Range", "bytes=1-2,4-5"}}, NULL},
    {"att_get_gzip", "GET", "/{db}/{s1}/{s2}", "a", {"att", "a.txt"}, {{0}}, {{"Accept-Encoding", "gzip"}}, NULL},
    {"att_put", "PUT", "/{db}/{s1}/{s2}", "a", {"att", "x"}, {{"rev", "1-a7"}}, {{"Content-Type", "text/plain"}},
     "attachment body"},
    {"att_delete", "DELETE", "/{db}/{s1}/{s2}", "a", {"conf", "a.txt"}, {{"rev", "2-c2"}}, {{0}}, NULL},
    {"design_att", "GET", "/{db}/_design/{s1}/{s2}", "a", {"dd", "x"}, {{0}}, {{0}}, NULL},
    {"att_nested", "GET", "/{db}/{s1}/{s2}/{s3}", "a", {"att", "dir", "c.txt"}, {{0}}, {{0}}, NULL},
    {"odd_db", "GET", "/{s1}", "a", {"%"}, {{0}}, {{0}}, NULL},
    {"odd_path", "GET", "/{s1}/{s2}/{s3}", "a", {"a", "_design", "dd"}, {{0}}, {{0}}, NULL},
    {"compact_ddoc", "POST", "/{db}/_compact/{s1}", "a", {"dd"}, {{0}}, {JSON_CT}, NULL},
    {"view_cleanup", "POST", "/{db}/_view_cleanup", "a", {0}, {{0}}, {JSON_CT}, NULL},
    {"view_reduce", "GET", "/{db}/_design/{s1}/_view/{s2}", "a", {"dd", "byv"}, {{"group_level", "1"}}, {{0}}, NULL},
    {"view_map", "GET", "/{db}/_design/{s1}/_view/{s2}", "a", {"dd", "v"},
     {{"reduce", "false"}, {"include_docs", "true"}, {"startkey", "\"d1\""}, {"limit", "10"}, {"update_seq", "true"}},
     {{0}}, NULL},
    {"view_keys", "POST", "/{db}/_design/{s1}/_view/{s2}", "a", {"dd", "js"}, {{"group", "true"}}, {JSON_CT},
     "{\"keys\":[1,\"one\",null]}"},
    {"design_info", "GET", "/{db}/_design/{s1}/_info", "a", {"dd"}, {{0}}, {{0}}, NULL},
    {"changes_filter_js", "GET", "/{db}/_changes", "a", {0}, {{"filter", "dd/f"}, {"include_docs", "true"}}, {{0}}, NULL},
    {"changes_filter_view", "GET", "/{db}/_changes", "a", {0}, {{"filter", "_view"}, {"view", "dd/v"}}, {{0}}, NULL},
};

/* Appends a pick: the table index when the table holds s, else an encoded
 * string. */
static int enc_pick(buf_t *b, const char *const *table, size_t ntable, const char *s)
{
    for (size_t i = 0; i < ntable; i++)
        if (!strcmp(table[i], s))
            return buf_append_byte(b, (uint8_t)i);
    size_t n = strlen(s);
    if (n > 255)
        return DV_ERR_INVALID;
    int rc = buf_append_byte(b, PICK_ENCODED);
    rc = rc ? rc : buf_append_byte(b, (uint8_t)n);
    return rc ? rc : buf_append(b, s, n);
}

static size_t index_of(const char *const *table, size_t ntable, const char *s)
{
    for (size_t i = 0; i < ntable; i++)
        if (!strcmp(table[i], s))
            return i;
    fprintf(stderr, "fuzz_http_server: seed names %s, which no table holds\n", s);
    abort();
}

static size_t count_pairs(const char *const (*pairs)[2], size_t max)
{
    size_t n = 0;
    while (n < max && pairs[n][0])
        n++;
    return n;
}

static void encode_seed(const seed *s, buf_t *b)
{
    size_t np = count_pairs(s->param, 7), nh = count_pairs(s->hdr, 5);
    int rc = buf_append_byte(b, (uint8_t)index_of(methods, N(methods), s->method));
    rc = rc ? rc : buf_append_byte(b, (uint8_t)index_of(routes, N(routes), s->route));
    rc = rc ? rc : enc_pick(b, dbs, N(dbs), s->db);
    for (size_t i = 0; i < 3 && rc == DV_OK; i++)
        rc = enc_pick(b, segs, N(segs), s->seg[i] ? s->seg[i] : "x");
    rc = rc ? rc : buf_append_byte(b, (uint8_t)np);
    for (size_t i = 0; i < np && rc == DV_OK; i++) {
        rc = enc_pick(b, keys, N(keys), s->param[i][0]);
        rc = rc ? rc : enc_pick(b, values, N(values), s->param[i][1]);
    }
    rc = rc ? rc : buf_append_byte(b, (uint8_t)nh);
    for (size_t i = 0; i < nh && rc == DV_OK; i++) {
        rc = enc_pick(b, hnames, N(hnames), s->hdr[i][0]);
        rc = rc ? rc : enc_pick(b, hvalues, N(hvalues), s->hdr[i][1]);
    }
    if (rc == DV_OK && s->body)
        rc = buf_append_str(b, s->body);
    if (rc != DV_OK)
        abort();
}

/* Each seed must decode to what it names (the tables and the two
 * directions agree). */
static void check_seeds(void)
{
    for (size_t i = 0; i < N(seeds); i++) {
        const seed *s = &seeds[i];
        buf_t b = BUF_INIT;
        fuzz_req q;
        encode_seed(s, &b);
        decode(b.data, b.len, &q);
        size_t np = count_pairs(s->param, 7), nh = count_pairs(s->hdr, 5);
        int ok = !q.raw && !strcmp(methods[q.method], s->method) && !strcmp(routes[q.route], s->route) &&
                 pick_is(&q.db, s->db) && q.nparam == np && q.nhdr == nh &&
                 q.body_n == (s->body ? strlen(s->body) : 0);
        for (size_t j = 0; ok && j < 3; j++)
            ok = pick_is(&q.seg[j], s->seg[j] ? s->seg[j] : "x");
        for (size_t j = 0; ok && j < np; j++)
            ok = pick_is(&q.pkey[j], s->param[j][0]) && pick_is(&q.pval[j], s->param[j][1]);
        for (size_t j = 0; ok && j < nh; j++)
            ok = pick_is(&q.hname[j], s->hdr[j][0]) && pick_is(&q.hval[j], s->hdr[j][1]);
        if (!ok) {
            fprintf(stderr, "fuzz_http_server: seed %s does not decode to itself\n", s->name);
            abort();
        }
        buf_free(&b);
    }
}

/* Raw-mode seeds: framing the structured mode never sends. */
static const char *const raw_seeds[][2] = {
    {"raw_pipelined", "GET /_up HTTP/1.1\r\nHost: x\r\n\r\nGET /a/d1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46cHc=\r\n\r\n"},
    {"raw_chunked", "PUT /a/ch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46cHc=\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json"
                    "\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"},
    {"raw_http10", "GET /a/_all_docs HTTP/1.0\r\n\r\n"},
    {"raw_expect", "POST /a/_bulk_get HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46cHc=\r\nExpect: 100-continue\r\nContent-Type: "
                   "application/json\r\nContent-Length: 11\r\n\r\n{\"docs\":[]}"},
    {"raw_garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
};

static void write_seeds(const char *dir)
{
    char path[1024];
    for (size_t i = 0; i < N(seeds) + N(raw_seeds); i++) {
        buf_t b = BUF_INIT;
        const char *name;
        if (i < N(seeds)) {
            name = seeds[i].name;
            encode_seed(&seeds[i], &b);
        } else {
            name = raw_seeds[i - N(seeds)][0];
            if (buf_append_byte(&b, RAW_MODE) != DV_OK || buf_append_str(&b, raw_seeds[i - N(seeds)][1]) != DV_OK)
                abort();
        }
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
            perror(path);
            exit(1);
        }
        buf_free(&b);
    }
    printf("fuzz_http_server: %zu seeds written to %s\n", N(seeds) + N(raw_seeds), dir);
}

/* ---- libFuzzer ----------------------------------------------------------------- */

/* The query server: DIVAN_FUZZ_QUERY_SERVER, else divan-js next to this
 * binary or in the release build beside the fuzz build (make build), else
 * /bin/false, so that views and JavaScript filters answer
 * os_process_error (a documented 500) rather than not at all.  Short
 * timeouts: a fuzzed map function that loops costs 100 ms per document. */
static void open_views(void)
{
    static char path[4096];
    const char *env = getenv("DIVAN_FUZZ_QUERY_SERVER");
    char exe[4000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0; /* exe is now the directory of this binary */
    path[0] = 0;
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    if (!path[0] && slash) {
        snprintf(path, sizeof path, "%s/divan-js", exe);
        if (access(path, X_OK) != 0)
            snprintf(path, sizeof path, "%s/../build/divan-js", exe);
        if (access(path, X_OK) != 0)
            path[0] = 0;
    }
    if (!path[0]) {
        fprintf(stderr, "fuzz_http_server: no divan-js (make build, or DIVAN_FUZZ_QUERY_SERVER): views fail\n");
        snprintf(path, sizeof path, "/bin/false");
    }
    qserver_config qc;
    memset(&qc, 0, sizeof qc);
    qc.path = path;
    qc.pool_size = 2;
    qc.timeout_ms = 100;
    qc.memory_limit = 64u << 20;
    views_opts vo;
    memset(&vo, 0, sizeof vo);
    if (qserver_open(&qc, &g_qs) != DV_OK)
        abort();
    vo.qs = g_qs;
    if (views_open(&vo, &g_views) != DV_OK)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    check_seeds();
    const char *seed_dir = getenv("DIVAN_FUZZ_HTTP_SEEDS");
    if (seed_dir) {
        write_seeds(seed_dir);
        exit(0);
    }
    signal(SIGPIPE, SIG_IGN); /* h2o writes to sockets this harness may close first */
    log_set_level(LOG_ERROR);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/divan-fuzz-http-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("fuzz_http_server: mkdtemp");
        abort();
    }
    /* OpenSSL (request ids, boundaries) would register its own exit
     * handler on first use, and tear its per-thread cleanup down before
     * cleanup() stops the loop threads that hold per-thread state: no
     * handler, and cleanup() ends OpenSSL itself once they are gone. */
    if (OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL) != 1)
        abort();
    atexit(cleanup);
    db_server_opts dbo;
    memset(&dbo, 0, sizeof dbo);
    dbo.dir = g_dir;
    dbo.max_dbs_open = 16;
    dbo.cache_bytes = 4u << 20;
    dbo.durability = STORE_DURABLE_NEVER;
    dbo.compression = STORE_COMPRESS_LZ4;
    dbo.default_security = HTTP_AUTH_ADMIN_ONLY_SECURITY; /* as divan's default */
    if (db_server_open(&dbo, &g_dbs) != DV_OK)
        abort();
    open_views();
    http_server_opts_t o;
    memset(&o, 0, sizeof o);
    o.views = g_views;
    o.bind_address = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.uuid = "0123456789abcdef0123456789abcdef";
    o.uuids_max_count = 1000;
    o.max_request_size = 64 << 20;
    o.drain_ms = 2000;
    o.dbs = g_dbs;
    o.max_document_size = 1 << 20;
    o.max_json_depth = 512;
    o.att_compressible_types = "text/*, application/json";
    o.att_compression_level = 1;
    o.purge_max_ids = 100;
    o.purge_max_revs = 1000;
    /* CORS on, so preflights and the response-header hook are fuzzed too. */
    config_t *cfg = NULL;
    static http_cors_t *cors;
    if (config_new(&cfg) != DV_OK || config_set(cfg, "chttpd", "enable_cors", "true", NULL) != DV_OK ||
        config_set(cfg, "cors", "origins", "http://a.example", NULL) != DV_OK ||
        config_set(cfg, "cors", "credentials", "true", NULL) != DV_OK || http_cors_new(cfg, &cors) != DV_OK)
        abort();
    config_free(cfg);
    o.cors = cors;
    /* Few PBKDF2 rounds: the first check of each password runs per
     * process, the cache answers the rest. */
    if (passwd_hash("pw", "sha256", 10, &g_admin_hash) != DV_OK)
        abort();
    const char *admin_name = "admin", *admin_hash = g_admin_hash;
    http_auth_opts_t ao;
    memset(&ao, 0, sizeof ao);
    ao.admin_names = &admin_name;
    ao.admin_hashes = &admin_hash;
    ao.nadmins = 1;
    ao.live.secret = "fuzz-secret";
    ao.live.timeout = 600;
    ao.live.allow_persistent_cookies = 1;
    ao.live.admin_only_all_dbs = 1;
    ao.live.users_prf = "sha256";
    ao.live.users_iterations = 10;
    if (http_auth_new(&ao, &g_auth) != DV_OK)
        abort();
    o.auth = g_auth;
    if (http_server_start(&o, &g_srv) != DV_OK)
        abort();
    g_port = http_server_port(g_srv);
    reseed();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (++g_runs % RESET_EVERY == 0)
        delete_all();
    if (g_runs % RESEED_EVERY == 0)
        reseed();
    fuzz_req q;
    decode(data, size, &q);
    buf_t req = BUF_INIT, resp = BUF_INIT;
    int rc = q.raw ? buf_append(&req, q.raw_p, q.raw_n) : build(&q, &req);
    if (rc != DV_OK)
        abort();
    g_req = &req;
    g_resp = &resp;
    int kind = q.raw ? ROUTE_OTHER : route_kind(&q, &req);
    int result = exchange(&req, q.raw, q.raw || kind == ROUTE_CHANGES ? CHANGES_MS : ANSWER_MS, &resp);
    if (q.raw)
        check_raw(&resp);
    else
        check_structured(&q, &resp, result, kind);
    if (simple("GET", "/_up", NULL) != 200)
        die("GET /_up does not answer 200 after this request");
    g_req = g_resp = NULL;
    buf_free(&req);
    buf_free(&resp);
    return 0;
}
