/*
 * test_passwd.c — CouchDB admin password hashes: published PBKDF2 vectors
 * (RFC 6070 for SHA-1, the common SHA-256 vectors), legacy "-hashed-"
 * (reference value from Python's hashlib), round trips and malformed forms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/passwd.h"
#include "base/status.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static void test_published_vectors(void **state)
{
    (void)state;
    /* RFC 6070: P="password", S="salt", c=2, SHA-1 */
    assert_int_equal(passwd_verify("-pbkdf2-ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957,salt,2", "password"), DV_OK);
    /* same, CouchDB 3.4's explicit spelling */
    assert_int_equal(passwd_verify("-pbkdf2:sha-ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957,salt,2", "password"), DV_OK);
    /* SHA-256, c=2 */
    assert_int_equal(
        passwd_verify("-pbkdf2:sha256-ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43,salt,2",
                      "password"),
        DV_OK);
    /* upper-case hex from other tools is accepted */
    assert_int_equal(passwd_verify("-pbkdf2-EA6C014DC72D6F8CCD1ED92ACE1D41F0D8DE8957,salt,2", "password"), DV_OK);
    /* legacy simple scheme: sha1(password ++ salt) */
    assert_int_equal(passwd_verify("-hashed-c88e9c67041a74e0357befdff93f87dde0904214,salt", "password"), DV_OK);
    assert_int_equal(passwd_verify("-hashed-c88e9c67041a74e0357befdff93f87dde0904214,salt", "Password"),
                     DV_ERR_CONFLICT);
    /* wrong password, wrong iteration count */
    assert_int_equal(passwd_verify("-pbkdf2-ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957,salt,2", "passwor"),
                     DV_ERR_CONFLICT);
    assert_int_equal(passwd_verify("-pbkdf2-ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957,salt,3", "password"),
                     DV_ERR_CONFLICT);
}

static void check_shape(const char *h, const char *prefix, size_t keyhex, const char *iters)
{
    size_t pl = strlen(prefix);
    assert_memory_equal(h, prefix, pl);
    const char *p = h + pl;
    for (size_t i = 0; i < keyhex; i++)
        assert_true(isxdigit((unsigned char)p[i]) && !isupper((unsigned char)p[i]));
    assert_int_equal(p[keyhex], ',');
    p += keyhex + 1;
    for (size_t i = 0; i < 32; i++)
        assert_true(isxdigit((unsigned char)p[i]));
    assert_int_equal(p[32], ',');
    assert_string_equal(p + 33, iters);
}

static void test_hash_round_trip(void **state)
{
    (void)state;
    char *h1 = NULL, *h2 = NULL, *h3 = NULL;
    assert_int_equal(passwd_hash("s3cret pass", "sha256", 100, &h1), DV_OK);
    check_shape(h1, "-pbkdf2:sha256-", 64, "100");
    assert_true(passwd_is_hashed(h1));
    assert_null(strstr(h1, "s3cret"));
    assert_int_equal(passwd_verify(h1, "s3cret pass"), DV_OK);
    assert_int_equal(passwd_verify(h1, "s3cret pas"), DV_ERR_CONFLICT);
    /* a fresh salt each time */
    assert_int_equal(passwd_hash("s3cret pass", "sha256", 100, &h2), DV_OK);
    assert_string_not_equal(h1, h2);
    assert_int_equal(passwd_verify(h2, "s3cret pass"), DV_OK);
    assert_int_equal(passwd_hash("x", "sha", 3, &h3), DV_OK);
    check_shape(h3, "-pbkdf2:sha-", 40, "3");
    assert_int_equal(passwd_verify(h3, "x"), DV_OK);
    free(h1);
    free(h2);
    free(h3);
}

static void test_bad_input(void **state)
{
    (void)state;
    char *h = NULL;
    assert_int_equal(passwd_hash("x", "md5", 10, &h), DV_ERR_INVALID);
    assert_null(h);
    assert_int_equal(passwd_hash("x", "sha256", 0, &h), DV_ERR_INVALID);
    const char *bad[] = {
        "plain",
        "-pbkdf2-",
        "-pbkdf2-abc",
        "-pbkdf2-abc,salt",
        "-pbkdf2-abc,salt,0",
        "-pbkdf2-abc,salt,-5",
        "-pbkdf2-abc,salt,12x",
        "-pbkdf2-abc,salt,99999999999999999999",
        "-pbkdf2-,salt,2",
        "-pbkdf2-abc,,2",
        "-pbkdf2:md5-abc,salt,2",
        "-pbkdf2:sha256abc,salt,2",
        "-hashed-abc",
        "-hashed-abc,salt,3",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(passwd_verify(bad[i], "x"), DV_ERR_INVALID);
    assert_false(passwd_is_hashed("plain"));
    assert_false(passwd_is_hashed("-pbkdf"));
    assert_true(passwd_is_hashed("-hashed-x,y"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_vectors),
        cmocka_unit_test(test_hash_round_trip),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
