/*
 * js_alloc.h — Duktape's allocator in divan-js: size-class free lists and a
 * heap budget.
 *
 * Why: a map pass allocates and frees tens of small blocks per document
 * (interned strings, property tables); glibc malloc/free were a quarter of
 * the profile.  Blocks of up to JS_ALLOC_SMALL bytes come from per-class
 * free lists carved out of 64 KiB slabs and are never returned to the
 * system (the process is recycled instead); larger ones go to malloc.
 *
 * The budget: when live bytes (slabs + large blocks) would exceed it, the
 * allocator returns NULL.  Duktape then runs an emergency collection and
 * retries, and finally throws a RangeError inside the user function, which
 * the caller reports as an error for that document — the process lives on.
 * RLIMIT_AS (js_sandbox) is the hard stop behind it; the budget is set
 * below it so that Duktape, not the kernel, sees the failure first.
 *
 * Under AddressSanitizer every block is a plain malloc (with the same
 * accounting) so that ASan still sees overruns.  Single-threaded.
 */
#ifndef DV_JS_ALLOC_H
#define DV_JS_ALLOC_H

#include <stddef.h>

/* 0 = unlimited. */
void js_alloc_set_budget(size_t bytes);
size_t js_alloc_in_use(void);
/* How many allocations were refused for the budget since the last call. */
unsigned long js_alloc_take_refusals(void);

void *js_alloc(void *udata, size_t size);
void *js_realloc(void *udata, void *ptr, size_t size);
void js_free(void *udata, void *ptr);

#endif
