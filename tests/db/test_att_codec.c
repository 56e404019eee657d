/*
 * test_att_codec.c — gzip for attachments (db/att_codec.c): deflate and
 * inflate agree, the identity length of a gzip stream and refusal of
 * anything that is not exactly one; CouchDB's compressible_types matching;
 * and db_doc_finish_atts, the last step of every write path: compressible
 * data gzip'd with its identity length kept, data pointing outside the
 * document copied in, stubs and already-encoded data left alone, a
 * "follows" attachment without data refused with a 400.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "db/att_codec.h"
#include "db/db.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void test_gzip_roundtrip(void **state)
{
    (void)state;
    tu_rng rng = {tu_seed("test_gzip_roundtrip")};
    for (int it = 0; it < 50; it++) {
        size_t n = tu_rand_below(&rng, it < 5 ? 10 : 300000);
        uint8_t *p = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            p[i] = it % 2 ? (uint8_t)tu_rand(&rng) : (uint8_t)"abcab"[tu_rand_below(&rng, 5)];
        buf_t z = BUF_INIT, z2 = BUF_INIT, back = BUF_INIT;
        assert_int_equal(db_gzip(p, n, 8, &z), DV_OK);
        assert_int_equal(db_gzip(p, n, 8, &z2), DV_OK);
        assert_int_equal(z.len, z2.len); /* deterministic: equal digests for equal data */
        assert_memory_equal(z.data, z2.data, z.len);
        assert_int_equal(db_gunzip(z.data, z.len, &back), DV_OK);
        assert_int_equal(back.len, n);
        if (n)
            assert_memory_equal(back.data, p, n);
        uint64_t size = 0;
        assert_int_equal(db_gunzip_size(z.data, z.len, &size), DV_OK);
        assert_int_equal(size, n);
        /* truncated, or followed by anything: not one gzip stream */
        assert_int_equal(db_gunzip_size(z.data, z.len - 1, &size), DV_ERR_CORRUPT);
        buf_append_byte(&z, 0);
        assert_int_equal(db_gunzip_size(z.data, z.len, &size), DV_ERR_CORRUPT);
        buf_free(&z);
        buf_free(&z2);
        buf_free(&back);
        free(p);
    }
    uint64_t size;
    assert_int_equal(db_gunzip_size((const uint8_t *)"plain text", 10, &size), DV_ERR_CORRUPT);
    assert_int_equal(db_gunzip_size(NULL, 0, &size), DV_ERR_CORRUPT);
}

static void test_compressible(void **state)
{
    (void)state;
    const char *d = DB_ATT_COMPRESSIBLE_DEFAULT;
    assert_true(db_att_type_compressible(d, "text/plain"));
    assert_true(db_att_type_compressible(d, "TEXT/HTML; charset=utf-8"));
    assert_true(db_att_type_compressible(d, "text/plain;charset=utf-8"));
    assert_true(db_att_type_compressible(d, "application/json"));
    assert_true(db_att_type_compressible(d, " application/javascript "));
    assert_true(db_att_type_compressible(d, "application/xml"));
    assert_false(db_att_type_compressible(d, "application/octet-stream"));
    assert_false(db_att_type_compressible(d, "image/png"));
    assert_false(db_att_type_compressible(d, "application/jsonx"));
    assert_false(db_att_type_compressible(d, "xtext/plain"));
    assert_true(db_att_type_compressible("image/*,foo/b*r", "image/png"));
    assert_true(db_att_type_compressible("image/*,foo/b*r", "foo/bar"));
    assert_true(db_att_type_compressible("image/*,foo/b*r", "foo/br"));
    assert_false(db_att_type_compressible("image/*,foo/b*r", "foo/bas"));
    assert_true(db_att_type_compressible("*", "anything/at-all"));
    assert_false(db_att_type_compressible("", "text/plain"));
    assert_false(db_att_type_compressible(" , ,", "text/plain"));
    assert_false(db_att_type_compressible(NULL, "text/plain"));
}

/* A document with: 0 text in its own buffer, 1 binary pointing outside,
 * 2 a stub, 3 text already gzip-encoded by the client. */
static void make_doc(db_doc *d, const uint8_t *outside, size_t on, const buf_t *gz)
{
    db_doc_init(d);
    d->natts = 4;
    d->atts = calloc(4, sizeof *d->atts);
    d->att_off = calloc(4, sizeof *d->att_off);
    d->att_follows = calloc(4, sizeof *d->att_follows);
    static const char text[] = "hello hello hello hello hello hello hello";
    buf_append(&d->attdata, text, sizeof text - 1);
    d->atts[0] = (store_att_in){strdup("a.txt"), strdup("text/plain"), NULL, 0, 0, d->attdata.data, sizeof text - 1, 0};
    d->atts[1] = (store_att_in){strdup("b.bin"), strdup("application/octet-stream"), NULL, 0, 0, outside, on, 0};
    d->atts[2] = (store_att_in){strdup("c"), NULL, NULL, 0, 1, NULL, 0, 0};
    d->atts[3] = (store_att_in){strdup("d.txt"), strdup("text/plain"), strdup("gzip"), 5, 0, gz->data, gz->len, 0};
}

static void test_finish_atts(void **state)
{
    (void)state;
    uint8_t outside[1000];
    for (size_t i = 0; i < sizeof outside; i++)
        outside[i] = (uint8_t)(i * 7);
    buf_t gz = BUF_INIT;
    assert_int_equal(db_gzip((const uint8_t *)"hello", 5, 1, &gz), DV_OK);
    db_att_gzip_opts o = {DB_ATT_COMPRESSIBLE_DEFAULT, DB_ATT_COMPRESSION_LEVEL_DEFAULT};
    db_doc d;
    db_err e;
    make_doc(&d, outside, sizeof outside, &gz);
    assert_int_equal(db_doc_finish_atts(&d, &o, &e), DV_OK);
    const uint8_t *own = d.attdata.data, *end = own + d.attdata.len;
    /* 0: compressed, identity length kept, inflates back */
    assert_string_equal(d.atts[0].encoding, "gzip");
    assert_int_equal(d.atts[0].decoded_length, 41);
    assert_true(d.atts[0].data >= own && d.atts[0].data + d.atts[0].len <= end);
    buf_t back = BUF_INIT;
    assert_int_equal(db_gunzip(d.atts[0].data, d.atts[0].len, &back), DV_OK);
    assert_int_equal(back.len, 41);
    buf_free(&back);
    /* 1: copied in, unchanged */
    assert_null(d.atts[1].encoding);
    assert_int_equal(d.atts[1].len, sizeof outside);
    assert_true(d.atts[1].data >= own && d.atts[1].data + d.atts[1].len <= end);
    assert_memory_equal(d.atts[1].data, outside, sizeof outside);
    /* 2: a stub stays a stub; 3: already encoded, not compressed again */
    assert_int_equal(d.atts[2].stub, 1);
    assert_null(d.atts[2].data);
    assert_int_equal(d.atts[3].len, gz.len);
    assert_memory_equal(d.atts[3].data, gz.data, gz.len);
    assert_int_equal(d.atts[3].decoded_length, 5);
    db_doc_free(&d);

    /* level 0 turns compression off; outside data is still copied */
    o.level = 0;
    make_doc(&d, outside, sizeof outside, &gz);
    assert_int_equal(db_doc_finish_atts(&d, &o, &e), DV_OK);
    assert_null(d.atts[0].encoding);
    assert_int_equal(d.atts[0].len, 41);
    assert_memory_equal(d.atts[1].data, outside, sizeof outside);
    assert_true(d.atts[1].data >= d.attdata.data && d.atts[1].data < d.attdata.data + d.attdata.len);
    db_doc_free(&d);

    /* a follows attachment nobody gave data to */
    make_doc(&d, outside, sizeof outside, &gz);
    d.att_follows[1] = 1;
    assert_int_equal(db_doc_finish_atts(&d, &o, &e), DV_ERR_INVALID);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.error, "bad_request");
    db_doc_free(&d);
    buf_free(&gz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gzip_roundtrip),
        cmocka_unit_test(test_compressible),
        cmocka_unit_test(test_finish_atts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
