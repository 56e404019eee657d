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
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "store/crashutil.h"

#include "base/status.h"

static void test_kill_durable_always(void **state)
{
    (void)state;
    cu_kill_opts o = {tu_iterations(24), STORE_DURABLE_ALWAYS, 3, 1, tu_seed("crash_kill_always")};
    assert_int_equal(cu_run_kill(&o), 0);
}

/* A process crash loses nothing the OS accepted: NEVER owes the same. */
static void test_kill_durable_never(void **state)
{
    (void)state;
    cu_kill_opts o = {tu_iterations(12), STORE_DURABLE_NEVER, 2, 1, tu_seed("crash_kill_never")};
    assert_int_equal(cu_run_kill(&o), 0);
}

static void test_kill_durable_periodic(void **state)
{
    (void)state;
    cu_kill_opts o = {tu_iterations(6), STORE_DURABLE_PERIODIC, 2, 1, tu_seed("crash_kill_periodic")};
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

/* The verifier is what every crash test rests on: it must reject a lost
 * acknowledged write, a version never written, and a lost local doc. */
static void test_verifier_detects_violations(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("crash-verifier");
    char *path = tu_path(dir, "db.couch");
    store_dbfile_options o = {0};
    o.create = 1;
    store_dbfile *db = NULL;
    cu_model m;
    cu_state st;
    assert_int_equal(cu_model_init(&m, 20, 4), DV_OK);
    assert_int_equal(cu_state_init(&st, 20, 4), DV_OK);
    assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
    cu_writer w;
    cu_writer_init_model(&w, db, &st, 42, &m, "selftest");
    for (int i = 0; i < 30; i++)
        assert_int_equal(cu_writer_step(&w), DV_OK);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    assert_int_equal(cu_verify(path, NULL, &m, "selftest"), 0);
    uint32_t k = 0;
    while (!m.acked_v[k])
        k++;
    /* claims a later version was acknowledged: that version is "lost" */
    m.acked_v[k]++;
    m.attempted_v[k]++;
    fprintf(stderr, "expected violations follow:\n");
    assert_int_not_equal(cu_verify(path, NULL, &m, "selftest lost"), 0);
    m.acked_v[k] -= 2;
    m.attempted_v[k] -= 2;
    assert_int_not_equal(cu_verify(path, NULL, &m, "selftest phantom"), 0);
    m.acked_v[k]++;
    m.attempted_v[k]++;
    m.acked_rev[k].id[0] ^= 1;
    assert_int_not_equal(cu_verify(path, NULL, &m, "selftest wrong rev"), 0);
    m.acked_rev[k].id[0] ^= 1;
    uint32_t l = 0;
    while (l < 4 && !m.acked_l[l])
        l++;
    if (l < 4) {
        m.acked_l[l]++;
        m.attempted_l[l]++;
        assert_int_not_equal(cu_verify(path, NULL, &m, "selftest local"), 0);
        m.acked_l[l]--;
        m.attempted_l[l]--;
    }
    m.max_acked_seq += 1000;
    assert_int_not_equal(cu_verify(path, NULL, &m, "selftest seq"), 0);
    m.max_acked_seq -= 1000;
    assert_int_equal(cu_verify(path, NULL, &m, "selftest restored"), 0);
    cu_model_free(&m);
    cu_state_free(&st);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_checksum),
        cmocka_unit_test(test_verifier_detects_violations),
        cmocka_unit_test(test_kill_durable_always),
        cmocka_unit_test(test_kill_durable_never),
        cmocka_unit_test(test_kill_durable_periodic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
