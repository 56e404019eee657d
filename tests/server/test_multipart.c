/*
 * test_multipart.c — the pure MIME helpers behind attachments and
 * multipart documents (http/mime.c): splitting multipart bodies as
 * CouchDB's parser does (headerless parts, preamble, epilogue, padding)
 * and refusing what it would choke on; header and parameter lookup;
 * Accept / Accept-Encoding negotiation with mochiweb's rules; Range with
 * CouchDB's parse_ranges rules.  A seeded property builds random bodies,
 * splits them and must get every part back byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/status.h"
#include "http/mime.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int split(const char *body, const char *boundary, mime_parts *ps, const char **why)
{
    return mime_split((const uint8_t *)body, strlen(body), boundary, strlen(boundary), ps, why);
}

static void assert_bytes(const uint8_t *p, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static void test_split_couchdb_example(void **state)
{
    (void)state;
    /* The body of CouchDB's attachments_multipart test: headerless parts
     * and an epilogue after the close delimiter. */
    const char *body = "--abc123\r\ncontent-type: application/json\r\n\r\n{\"a\":1}"
                       "\r\n--abc123\r\n\r\nthis is 21 chars long"
                       "\r\n--abc123\r\n\r\nthis is 20 chars lon"
                       "\r\n--abc123--epilogue";
    mime_parts ps = MIME_PARTS_INIT;
    const char *why, *v;
    size_t vl;
    assert_int_equal(split(body, "abc123", &ps, &why), DV_OK);
    assert_int_equal(ps.n, 3);
    assert_bytes(ps.v[0].body, ps.v[0].body_len, "{\"a\":1}");
    assert_int_equal(mime_part_header(&ps.v[0], "Content-Type", &v, &vl), 1);
    assert_true(mime_type_is(v, vl, "application/json"));
    assert_int_equal(ps.v[1].head_len, 0);
    assert_bytes(ps.v[1].body, ps.v[1].body_len, "this is 21 chars long");
    assert_bytes(ps.v[2].body, ps.v[2].body_len, "this is 20 chars lon");
    assert_int_equal(mime_part_header(&ps.v[1], "content-type", &v, &vl), 0);
    mime_parts_free(&ps);
}

static void test_split_shapes(void **state)
{
    (void)state;
    mime_parts ps = MIME_PARTS_INIT;
    const char *why, *v;
    size_t vl;
    /* preamble, transport padding, several headers, a body holding CRLF
     * and text that looks like (but is not) a delimiter */
    const char *body = "preamble\r\n--b \t\r\nX-A: 1\r\nContent-Disposition:  attachment; filename=\"x.txt\" \r\n\r\n"
                       "line1\r\nx--b is not one\r\n-b\r\n\r\n--b--\r\n";
    assert_int_equal(split(body, "b", &ps, &why), DV_OK);
    assert_int_equal(ps.n, 1);
    assert_bytes(ps.v[0].body, ps.v[0].body_len, "line1\r\nx--b is not one\r\n-b\r\n");
    mime_parts_free(&ps);
    /* "\r\n--bx" is a delimiter too, as in CouchDB (the sender promised the
     * boundary does not occur in content): the "x" after it is garbage */
    body = "--b\r\n\r\nline1\r\n--bx\r\n\r\nline2\r\n--b--";
    assert_int_equal(split(body, "b", &ps, &why), DV_ERR_INVALID);
    body = "--b\r\nX-A: 1\r\ncontent-disposition:  attachment; filename=\"x.txt\" \r\n\r\n\r\n--b--";
    assert_int_equal(split(body, "b", &ps, &why), DV_OK);
    assert_int_equal(ps.n, 1);
    assert_int_equal(ps.v[0].body_len, 0);
    assert_int_equal(mime_part_header(&ps.v[0], "CONTENT-DISPOSITION", &v, &vl), 1);
    char fname[64];
    size_t fl;
    assert_int_equal(mime_param(v, vl, "filename", fname, sizeof fname, &fl), 1);
    assert_string_equal(fname, "x.txt");
    assert_int_equal(mime_part_header(&ps.v[0], "x-a", &v, &vl), 1);
    assert_int_equal(vl, 1);
    assert_int_equal(v[0], '1');
    mime_parts_free(&ps);
    /* no parts at all */
    assert_int_equal(split("--b--", "b", &ps, &why), DV_OK);
    assert_int_equal(ps.n, 0);
}

static void test_split_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *boundary;
    } bad[] = {
        {"no delimiter here", "b"},
        {"--b\r\n\r\nnever closed", "b"},                /* truncated part */
        {"--b\r\n\r\nbody\r\n--b", "b"},                 /* truncated after a delimiter */
        {"--b\r\nno colon line\r\n\r\nx\r\n--b--", "b"}, /* bad part header */
        {"--b\r\n: empty name\r\n\r\nx\r\n--b--", "b"},
        {"--bjunk\r\n\r\nx\r\n--b--", "b"},              /* garbage after the boundary */
        {"--b\r\nA: 1\r\nunterminated headers", "b"},
        {"--b\r\n\r\nx\r\n--b--", ""},                   /* empty boundary */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mime_parts ps = MIME_PARTS_INIT;
        const char *why = NULL;
        assert_int_equal(split(bad[i].body, bad[i].boundary, &ps, &why), DV_ERR_INVALID);
        assert_non_null(why);
        assert_int_equal(ps.n, 0);
        assert_null(ps.v);
    }
    char big[MIME_BOUNDARY_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    mime_parts ps = MIME_PARTS_INIT;
    const char *why;
    assert_int_equal(split("--x\r\n\r\n\r\n--x--", big, &ps, &why), DV_ERR_INVALID);
}

static void test_params(void **state)
{
    (void)state;
    char out[32];
    size_t n;
    const char *ct = "multipart/related; boundary=\"ab\\\"c d\"; charset=utf-8";
    assert_int_equal(mime_param(ct, strlen(ct), "boundary", out, sizeof out, &n), 1);
    assert_string_equal(out, "ab\"c d");
    assert_int_equal(mime_param(ct, strlen(ct), "CHARSET", out, sizeof out, &n), 1);
    assert_string_equal(out, "utf-8");
    assert_int_equal(mime_param(ct, strlen(ct), "missing", out, sizeof out, &n), 0);
    ct = "multipart/related;boundary=abc123";
    assert_int_equal(mime_param(ct, strlen(ct), "boundary", out, sizeof out, &n), 1);
    assert_string_equal(out, "abc123");
    assert_int_equal(n, 6);
    ct = "multipart/related; boundary=\"unclosed";
    assert_int_equal(mime_param(ct, strlen(ct), "boundary", out, sizeof out, &n), DV_ERR_INVALID);
    ct = "multipart/related; boundary=0123456789012345678901234567890123456789";
    assert_int_equal(mime_param(ct, strlen(ct), "boundary", out, sizeof out, &n), DV_ERR_INVALID);
    ct = "multipart/related; novalue; boundary=x";
    assert_int_equal(mime_param(ct, strlen(ct), "boundary", out, sizeof out, &n), 1);
    assert_string_equal(out, "x");
    /* the leading value is not a parameter */
    ct = "boundary=x";
    assert_int_equal(mime_param(ct, strlen(ct), "boundary", out, sizeof out, &n), 0);
    assert_true(mime_type_is(" Application/JSON ; charset=utf-8", 33, "application/json"));
    assert_false(mime_type_is("application/jsonx", 17, "application/json"));
}

static void test_accept(void **state)
{
    (void)state;
    /* mochiweb: an absent Accept header is any type */
    assert_true(mime_accepts(NULL, "multipart/related"));
    assert_true(mime_accepts("*/*", "multipart/mixed"));
    assert_true(mime_accepts("multipart/related,*/*;", "multipart/related"));
    assert_true(mime_accepts("application/json, multipart/*", "multipart/mixed"));
    assert_true(mime_accepts("text/plain; q=0.5, */*; q=0.1", "multipart/mixed"));
    assert_true(mime_accepts("MULTIPART/MIXED", "multipart/mixed"));
    assert_false(mime_accepts("application/json", "multipart/related"));
    assert_false(mime_accepts("text/plain, */*; q=0.0", "multipart/mixed"));
    assert_false(mime_accepts("multipart/mixed;q=0, */*", "multipart/mixed"));
    assert_false(mime_accepts("multipart/*;q=0, */*", "multipart/mixed"));
    assert_false(mime_accepts("*/*;q=abc", "multipart/mixed"));
    assert_false(mime_accepts("", "multipart/mixed"));
    assert_false(mime_accepts("*", "multipart/mixed"));

    assert_false(mime_accepts_encoding(NULL, "gzip"));
    assert_true(mime_accepts_encoding("gzip", "gzip"));
    assert_true(mime_accepts_encoding("gzip, deflate, br", "gzip"));
    assert_true(mime_accepts_encoding("identity;q=0.5, GZIP;q=1.0", "gzip"));
    assert_true(mime_accepts_encoding("*", "gzip"));
    assert_false(mime_accepts_encoding("gzip;q=0", "gzip"));
    assert_false(mime_accepts_encoding("*;q=0", "gzip"));
    assert_false(mime_accepts_encoding("*, gzip;q=0", "gzip"));
    assert_false(mime_accepts_encoding("identity", "gzip"));
    assert_false(mime_accepts_encoding("deflate, br", "gzip"));
}

static int range(const char *h, uint64_t len, mime_range *out, size_t *n)
{
    return mime_range_parse(h, len, out, n);
}

static void test_ranges(void **state)
{
    (void)state;
    mime_range r[MIME_RANGES_MAX];
    size_t n;
    /* CouchDB's attachment_ranges test, entity of 29 bytes */
    assert_int_equal(range("bytes=0-28", 29, r, &n), MIME_RANGE_PARTIAL);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].from, 0);
    assert_int_equal(r[0].to, 28);
    assert_int_equal(range("bytes=0-", 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range("bytes=0-,0-,0-", 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range("bytes:0-", 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range(NULL, 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range("bytes=2-", 29, r, &n), MIME_RANGE_PARTIAL);
    assert_int_equal(r[0].from, 2);
    assert_int_equal(r[0].to, 28);
    assert_int_equal(range("bytes=10-15", 29, r, &n), MIME_RANGE_PARTIAL);
    assert_int_equal(r[0].from, 10);
    assert_int_equal(r[0].to, 15);
    assert_int_equal(range("bytes=-3", 29, r, &n), MIME_RANGE_PARTIAL);
    assert_int_equal(r[0].from, 26);
    assert_int_equal(r[0].to, 28);
    assert_int_equal(range("bytes=5-3", 29, r, &n), MIME_RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=300-310", 29, r, &n), MIME_RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1", 29, r, &n), MIME_RANGE_WHOLE);
    /* more */
    assert_int_equal(range("bytes=20-100", 29, r, &n), MIME_RANGE_PARTIAL);
    assert_int_equal(r[0].to, 28);
    assert_int_equal(range("bytes=-100", 29, r, &n), MIME_RANGE_PARTIAL);
    assert_int_equal(r[0].from, 0);
    assert_int_equal(r[0].to, 28);
    assert_int_equal(range("bytes=-0", 29, r, &n), MIME_RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=29-", 29, r, &n), MIME_RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=0-0", 0, r, &n), MIME_RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=-5", 0, r, &n), MIME_RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes= 1-2 , ,4-5", 29, r, &n), MIME_RANGE_PARTIAL);
    assert_int_equal(n, 2);
    assert_int_equal(r[1].from, 4);
    assert_int_equal(range("bytes=1-2,0-", 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range("bytes=5-3,0-", 29, r, &n), MIME_RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=1-x", 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range("bytes=-", 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range("bytes=", 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range("bytes=99999999999999999999-", 29, r, &n), MIME_RANGE_WHOLE);
    assert_int_equal(range("bytes=1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9", 29, r, &n), MIME_RANGE_PARTIAL);
    assert_int_equal(n, MIME_RANGES_MAX);
}

/* Random bodies: parts of random headers and bytes (never containing the
 * delimiter) split back into exactly themselves. */
static void test_split_property(void **state)
{
    (void)state;
    tu_rng rng = {tu_seed("test_split_property")};
    long iters = tu_iterations(2000);
    for (long it = 0; it < iters; it++) {
        char boundary[40];
        size_t blen = 1 + tu_rand_below(&rng, 32);
        for (size_t i = 0; i < blen; i++)
            boundary[i] = "abcdefghijklmnopqrstuvwxyz0123456789'()+_,-./:=?"[tu_rand_below(&rng, 47)];
        boundary[blen] = 0;
        size_t nparts = tu_rand_below(&rng, 6);
        buf_t b = BUF_INIT, want[6];
        size_t nhead[6];
        if (tu_rand_below(&rng, 2))
            buf_append_str(&b, "some preamble\r\n");
        for (size_t p = 0; p < nparts; p++) {
            buf_init(&want[p]);
            buf_printf(&b, "--%s", boundary);
            if (tu_rand_below(&rng, 3) == 0)
                buf_append_str(&b, "  ");
            buf_append_str(&b, "\r\n");
            nhead[p] = tu_rand_below(&rng, 3);
            for (size_t h = 0; h < nhead[p]; h++)
                buf_printf(&b, "X-H%zu: v%zu\r\n", h, p);
            buf_append_str(&b, "\r\n");
            size_t len = tu_rand_below(&rng, 200);
            for (size_t i = 0; i < len; i++) {
                /* bytes biased towards CR, LF and '-' to tempt the parser */
                static const uint8_t tempt[] = {'\r', '\n', '-', '-', 'a'};
                uint8_t c = tu_rand_below(&rng, 3) ? tempt[tu_rand_below(&rng, 5)] : (uint8_t)tu_rand(&rng);
                buf_append_byte(&want[p], c);
                /* never let "\r\n--<boundary>" appear in content (a match
                 * cannot straddle into the real delimiter: only its first
                 * byte is a CR) */
                if (want[p].len >= 4 + blen &&
                    !memcmp(want[p].data + want[p].len - blen, boundary, blen) &&
                    !memcmp(want[p].data + want[p].len - blen - 4, "\r\n--", 4))
                    want[p].data[want[p].len - 1] ^= 0x20 | 1;
            }
            buf_append(&b, want[p].data, want[p].len);
            buf_append_str(&b, "\r\n");
        }
        buf_printf(&b, "--%s--", boundary);
        mime_parts ps = MIME_PARTS_INIT;
        const char *why;
        int rc = mime_split(b.data, b.len, boundary, blen, &ps, &why);
        if (rc != DV_OK)
            fprintf(stderr, "iteration %ld: %s\n", it, why);
        assert_int_equal(rc, DV_OK);
        assert_int_equal(ps.n, nparts);
        for (size_t p = 0; p < nparts; p++) {
            assert_int_equal(ps.v[p].body_len, want[p].len);
            if (want[p].len)
                assert_memory_equal(ps.v[p].body, want[p].data, want[p].len);
            const char *v;
            size_t vl;
            assert_int_equal(mime_part_header(&ps.v[p], "x-h0", &v, &vl), nhead[p] > 0);
            buf_free(&want[p]);
        }
        /* every strict prefix is truncated: refused, never overread */
        size_t cut = tu_rand_below(&rng, b.len);
        mime_parts ps2 = MIME_PARTS_INIT;
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.data, cut);
        rc = mime_split(copy, cut, boundary, blen, &ps2, &why);
        assert_true(rc == DV_ERR_INVALID || (rc == DV_OK && ps2.n <= nparts));
        mime_parts_free(&ps2);
        free(copy);
        mime_parts_free(&ps);
        buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_couchdb_example),
        cmocka_unit_test(test_split_shapes),
        cmocka_unit_test(test_split_errors),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_split_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
