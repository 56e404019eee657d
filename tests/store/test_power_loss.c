/*
 * test_power_loss.c — power loss and I/O failures through the fault VFS,
 * and real files cut at random byte offsets (see powerloss.c).  Short run
 * here; `make crash-long` runs tool_power_loss.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/crashutil.h"

static void test_power_cuts_and_io_failures(void **state)
{
    (void)state;
    cu_power_opts o = {tu_iterations(200), tu_seed("power_loss")};
    assert_int_equal(cu_run_power(&o), 0);
}

static void test_truncated_files(void **state)
{
    (void)state;
    cu_power_opts o = {tu_iterations(6), tu_seed("power_loss_truncate")};
    assert_int_equal(cu_run_truncate(&o), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_power_cuts_and_io_failures),
        cmocka_unit_test(test_truncated_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
