/*
 * js_sandbox.h — what divan-js gives up before it reads its first request:
 * address space (RLIMIT_AS) and, where the kernel allows, every system call
 * but the few a Duktape heap over two pipes needs (seccomp).
 *
 * Duktape itself has no file, network or process bindings; the seccomp
 * filter is defence in depth against a bug in Duktape or in divan-js being
 * turned into more than a crash.  It is skipped under AddressSanitizer (the
 * sanitizer's runtime makes calls of its own: LSan's exit-time scan stops
 * the world with clone/ptrace).
 */
#ifndef DV_JS_SANDBOX_H
#define DV_JS_SANDBOX_H

#include <stddef.h>

/* RLIMIT_AS = bytes (0: leave as is).  0 or -1 (errno set).  Not applied
 * under ASan, which reserves terabytes of shadow address space. */
int js_sandbox_limit_memory(size_t bytes);

/* Installs the seccomp filter (no_new_privs first).  0 when installed, 1
 * when not available on this build or kernel (not an error: logged by the
 * caller), -1 on failure. */
int js_sandbox_seccomp(void);

#endif
