/*
 * tool_crash_kill.c — the long SIGKILL crash run for `make crash-long`
 * (DIVAN_ITERATIONS=1000): the same runner as test_crash_kill, with
 * durability ALWAYS (N kills), NEVER and PERIODIC (N/4 kills each), and
 * concurrent compaction.  Exit status 0 on success, 1 on any violation (the
 * seed to reproduce is printed).
 */
#include "store/crashutil.h"

#include <stdio.h>

int main(void)
{
    long n = tu_iterations(1000);
    cu_kill_opts always = {n, STORE_DURABLE_ALWAYS, 3, 1, tu_seed("tool_crash_kill always")};
    if (cu_run_kill(&always))
        return 1;
    cu_kill_opts never = {n / 4 > 0 ? n / 4 : 1, STORE_DURABLE_NEVER, 3, 1, tu_seed("tool_crash_kill never")};
    if (cu_run_kill(&never))
        return 1;
    cu_kill_opts periodic = {n / 4 > 0 ? n / 4 : 1, STORE_DURABLE_PERIODIC, 3, 1, tu_seed("tool_crash_kill periodic")};
    if (cu_run_kill(&periodic))
        return 1;
    fprintf(stderr, "tool_crash_kill: OK\n");
    return 0;
}
