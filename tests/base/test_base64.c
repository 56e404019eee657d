/*
 * test_base64.c — RFC 4648 test vectors both ways, missing padding
 * accepted (Erlang's decoder does), stray characters rejected, a random
 * round trip; base64url (no padding, url-safe alphabet, canonical) for JWS
 * and cookies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/base64.h"
#include "base/status.h"
#include "testutil.h"

#include <string.h>

static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

static void test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < 7; i++) {
        buf_t e = BUF_INIT, d = BUF_INIT;
        assert_int_equal(base64_encode(plain[i], strlen(plain[i]), &e), DV_OK);
        assert_int_equal(e.len, strlen(coded[i]));
        assert_memory_equal(e.data ? (const char *)e.data : "", coded[i], e.len);
        assert_int_equal(base64_decode(coded[i], strlen(coded[i]), &d), DV_OK);
        assert_int_equal(d.len, strlen(plain[i]));
        if (d.len)
            assert_memory_equal(d.data, plain[i], d.len);
        buf_free(&e);
        buf_free(&d);
    }
}

static void test_unpadded_and_bad(void **state)
{
    (void)state;
    buf_t d = BUF_INIT;
    assert_int_equal(base64_decode("Zm9vYg", 6, &d), DV_OK);
    assert_int_equal(d.len, 4);
    assert_memory_equal(d.data, "foob", 4);
    buf_reset(&d);
    static const char *const bad[] = {"Z", "Zm9v!", "Zm 9v", "Zm9vY===", "=Zm9", "Zg=a", "Zm9vYg=\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(base64_decode(bad[i], strlen(bad[i]), &d), DV_ERR_INVALID);
    assert_int_equal(d.len, 0);
    buf_free(&d);
}

static void test_round_trip(void **state)
{
    (void)state;
    tu_rng rng = {tu_seed("test_base64")};
    uint8_t src[300];
    for (long it = 0; it < tu_iterations(2000); it++) {
        size_t n = (size_t)tu_rand_below(&rng, sizeof src);
        for (size_t i = 0; i < n; i++)
            src[i] = (uint8_t)tu_rand(&rng);
        buf_t e = BUF_INIT, d = BUF_INIT;
        assert_int_equal(base64_encode(src, n, &e), DV_OK);
        assert_int_equal(e.len, (n + 2) / 3 * 4);
        assert_int_equal(base64_decode((const char *)e.data, e.len, &d), DV_OK);
        assert_int_equal(d.len, n);
        if (n)
            assert_memory_equal(d.data, src, n);
        buf_free(&e);
        buf_free(&d);
    }
}

static void test_url(void **state)
{
    (void)state;
    /* bytes whose standard encoding uses '+' and '/' */
    static const uint8_t raw[] = {0xfb, 0xff, 0xbf, 0xfe};
    buf_t e = BUF_INIT, d = BUF_INIT;
    assert_int_equal(base64url_encode(raw, sizeof raw, &e), DV_OK);
    assert_int_equal(e.len, 6);
    assert_memory_equal(e.data, "-_-__g", 6);
    assert_int_equal(base64url_decode((const char *)e.data, e.len, &d), DV_OK);
    assert_int_equal(d.len, sizeof raw);
    assert_memory_equal(d.data, raw, sizeof raw);
    buf_reset(&d);
    assert_int_equal(base64url_encode("", 0, &e), DV_OK); /* appends nothing */
    assert_int_equal(e.len, 6);
    /* padding, the standard alphabet, an impossible length, leftover bits */
    static const char *const bad[] = {"Zg==", "+_-_", "/w", "Zm9vY", "Zh", "Zm9vYh"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(base64url_decode(bad[i], strlen(bad[i]), &d), DV_ERR_INVALID);
    assert_int_equal(d.len, 0);
    assert_int_equal(base64url_decode("Zg", 2, &d), DV_OK);
    assert_int_equal(d.len, 1);
    assert_int_equal(d.data[0], 'f');
    buf_free(&e);
    buf_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_unpadded_and_bad),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
