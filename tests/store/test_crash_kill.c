/*
 * test_crash_kill.c — a child process writes (several threads, durability
 * ALWAYS or NEVER, compaction running concurrently) and is killed with
 * SIGKILL at random moments; every reopen must succeed and hold every
 * acknowledged write, with nothing partially written visible (see
 * crashkill.c).  Short run here; `make crash-long` runs tool_crash_kill.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/crashutil.h"

#include "base/status.h"

static void test_kill_durable_always(void **state)
{
    (void)state;
    cu_kill_opts o = {tu_iterations(16), STORE_DURABLE_ALWAYS, 3, 1, tu_seed("crash_kill_always")};
    assert_int_equal(cu_run_kill(&o), 0);
}

/* A process crash loses nothing the OS accepted: NEVER owes the same. */
static void test_kill_durable_never(void **state)
{
    (void)state;
    cu_kill_opts o = {tu_iterations(10), STORE_DURABLE_NEVER, 2, 1, tu_seed("crash_kill_never")};
    assert_int_equal(cu_run_kill(&o), 0);
}

/* The workload itself: bodies are self-checking and a torn one is caught. */
static void test_body_checksum(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    int kind;
    uint32_t k;
    uint64_t v;
    for (uint32_t kk = 0; kk < 50; kk++) {
        for (uint64_t vv = 1; vv < 40; vv++) {
            assert_int_equal(cu_body(kk, vv, &b), DV_OK);
            assert_int_equal(cu_body_check(b.data, b.len, &kind, &k, &v), DV_OK);
            assert_int_equal(kind, CU_DOC);
            assert_int_equal(k, kk);
            assert_int_equal(v, vv);
            /* any torn prefix fails */
            assert_int_not_equal(cu_body_check(b.data, b.len - 1 - (vv % (b.len - 1)), &kind, &k, &v), DV_OK);
            b.data[b.len / 2] ^= 1;
            assert_int_not_equal(cu_body_check(b.data, b.len, &kind, &k, &v), DV_OK);
            if (cu_att_mode(kk, vv) == 2)
                assert_int_not_equal(cu_att_mode(kk, vv - 1), 0);
        }
    }
    assert_int_equal(cu_local_body(3, 7, &b), DV_OK);
    assert_int_equal(cu_body_check(b.data, b.len, &kind, &k, &v), DV_OK);
    assert_int_equal(kind, CU_LOCAL);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_checksum),
        cmocka_unit_test(test_kill_durable_always),
        cmocka_unit_test(test_kill_durable_never),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
