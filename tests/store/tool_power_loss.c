/*
 * tool_power_loss.c — the long power-loss run for `make crash-long`
 * (DIVAN_ITERATIONS=1000): fault-VFS power cuts and I/O failures, then
 * real files cut at random offsets (one database per 10 iterations, 10-20
 * cuts each).  Exit status 0 on success, 1 on any violation.
 */
#include "store/crashutil.h"

#include <stdio.h>

int main(void)
{
    long n = tu_iterations(1000);
    cu_power_opts p = {n, tu_seed("tool_power_loss")};
    if (cu_run_power(&p))
        return 1;
    cu_power_opts t = {n / 10 > 0 ? n / 10 : 1, tu_seed("tool_power_loss truncate")};
    if (cu_run_truncate(&t))
        return 1;
    fprintf(stderr, "tool_power_loss: OK\n");
    return 0;
}
