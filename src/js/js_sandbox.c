/*
 * js_sandbox.c — RLIMIT_AS and the seccomp allow-list of divan-js.
 *
 * The filter allows: read on fd 0; write on fds 1 and 2; memory management
 * (brk, mmap and mprotect without PROT_EXEC, munmap, mremap, madvise);
 * futex; the clock calls Date needs when the vDSO falls back to a syscall;
 * exiting; signal return/masking and tgkill to oneself (abort()).  Anything
 * else fails with EPERM rather than killing the process: an unexpected libc
 * call degrades into an error the caller reports, and nothing reaches files,
 * sockets or processes either way.  A foreign syscall ABI (x32 on x86-64,
 * another audit arch) kills the process.
 */
#include "js/js_sandbox.h"

#include <errno.h>
#include <stddef.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#define JS_HAVE_SECCOMP 1
#endif

#if defined(__SANITIZE_ADDRESS__)
#define JS_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JS_UNDER_ASAN 1
#endif
#endif

int js_sandbox_limit_memory(size_t bytes)
{
#ifdef JS_UNDER_ASAN
    (void)bytes;
    return 0;
#else
    if (!bytes)
        return 0;
    struct rlimit rl = {bytes, bytes};
    return setrlimit(RLIMIT_AS, &rl);
#endif
}

#if defined(JS_HAVE_SECCOMP) && !defined(JS_UNDER_ASAN)

#if defined(__x86_64__)
#define JS_AUDIT_ARCH AUDIT_ARCH_X86_64
#else
#define JS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define ARG_LO(n) (offsetof(struct seccomp_data, args) + (n) * 8u) /* little-endian low word */
#define LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define ALLOW RET(SECCOMP_RET_ALLOW)
#define DENY RET(SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
/* if (A == nr) fall through to the next instruction, else skip `skip` */
#define IF_NR(nr, skip) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, (skip))

int js_sandbox_seccomp(void)
{
    unsigned pid = (unsigned)getpid();
    struct sock_filter f[] = {
        LD(offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, JS_AUDIT_ARCH, 1, 0),
        RET(SECCOMP_RET_KILL_PROCESS),
        LD(offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u /* __X32_SYSCALL_BIT */, 0, 1),
        RET(SECCOMP_RET_KILL_PROCESS),
#endif
        /* read(0, ...) */
        IF_NR(SYS_read, 4), LD(ARG_LO(0)), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), ALLOW, DENY,
        /* write(1 | 2, ...) */
        IF_NR(SYS_write, 5), LD(ARG_LO(0)), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 1), ALLOW, DENY,
        /* mmap / mprotect without PROT_EXEC */
        IF_NR(SYS_mmap, 4), LD(ARG_LO(2)), BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1), DENY, ALLOW,
        IF_NR(SYS_mprotect, 4), LD(ARG_LO(2)), BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1), DENY,
        ALLOW,
        /* tgkill(own pid, ...) for abort() */
        IF_NR(SYS_tgkill, 4), LD(ARG_LO(0)), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, pid, 0, 1), ALLOW, DENY,
        /* the rest, by number alone (A still holds nr) */
        IF_NR(SYS_brk, 1), ALLOW,
        IF_NR(SYS_munmap, 1), ALLOW,
        IF_NR(SYS_mremap, 1), ALLOW,
        IF_NR(SYS_madvise, 1), ALLOW,
        IF_NR(SYS_futex, 1), ALLOW,
        IF_NR(SYS_clock_gettime, 1), ALLOW,
        IF_NR(SYS_gettimeofday, 1), ALLOW,
        IF_NR(SYS_exit_group, 1), ALLOW,
        IF_NR(SYS_exit, 1), ALLOW,
        IF_NR(SYS_rt_sigreturn, 1), ALLOW,
        IF_NR(SYS_rt_sigprocmask, 1), ALLOW,
        IF_NR(SYS_getpid, 1), ALLOW,
        IF_NR(SYS_gettid, 1), ALLOW,
        DENY,
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
        return errno == EINVAL ? 1 : -1; /* EINVAL: kernel without seccomp filters */
    return 0;
}

#else

int js_sandbox_seccomp(void) { return 1; }

#endif
