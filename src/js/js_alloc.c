/*
 * js_alloc.c — size-class allocator with a budget for the Duktape heap.
 * See js_alloc.h.
 *
 * Layout: every block has a 16-byte header in front (keeps the 16-byte
 * alignment malloc gives) holding its usable size; small blocks are rounded
 * up to a multiple of 16 so the size also names the class.  Invariant:
 * in_use = bytes of slabs + bytes (with headers) of live large blocks.
 */
#include "js/js_alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define JS_ALLOC_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JS_ALLOC_PLAIN 1
#endif
#endif

#define HDR 16u
#define GRAIN 16u
#define JS_ALLOC_SMALL 512u
#define NCLASS (JS_ALLOC_SMALL / GRAIN)
#define SLAB (64u * 1024u)

typedef struct free_blk {
    struct free_blk *next;
} free_blk;

static struct {
    size_t budget, in_use;
    unsigned long refusals;
    free_blk *free[NCLASS + 1];
    char *slab_cur, *slab_end;
} A;

void js_alloc_set_budget(size_t bytes) { A.budget = bytes; }
size_t js_alloc_in_use(void) { return A.in_use; }

unsigned long js_alloc_take_refusals(void)
{
    unsigned long n = A.refusals;
    A.refusals = 0;
    return n;
}

static int over_budget(size_t more)
{
    if (A.budget && A.in_use + more > A.budget) {
        A.refusals++;
        return 1;
    }
    return 0;
}

static inline size_t *hdr_of(void *p) { return (size_t *)((char *)p - HDR); }

static void *alloc_large(size_t size)
{
    if (size > SIZE_MAX - HDR || over_budget(size + HDR))
        return NULL;
    char *b = malloc(size + HDR);
    if (!b)
        return NULL;
    A.in_use += size + HDR;
    *(size_t *)b = size;
    return b + HDR;
}

#ifdef JS_ALLOC_PLAIN
static inline int is_small(size_t size) { (void)size; return 0; }
static inline void *alloc_small(size_t size) { return alloc_large(size); }
static inline void free_small(void *p, size_t size) { (void)p; (void)size; }
#else
static inline int is_small(size_t size) { return size <= JS_ALLOC_SMALL; }

static void *alloc_small(size_t size)
{
    size_t cls = (size + GRAIN - 1) / GRAIN, bytes = cls * GRAIN;
    free_blk *f = A.free[cls];
    if (f) {
        A.free[cls] = f->next;
        return f;
    }
    if ((size_t)(A.slab_end - A.slab_cur) < bytes + HDR) {
        /* The slab's tail is wasted (at most JS_ALLOC_SMALL + HDR bytes). */
        if (over_budget(SLAB))
            return NULL;
        char *s = malloc(SLAB);
        if (!s)
            return NULL;
        A.in_use += SLAB;
        A.slab_cur = s;
        A.slab_end = s + SLAB;
    }
    char *b = A.slab_cur;
    A.slab_cur += bytes + HDR;
    *(size_t *)b = bytes;
    return b + HDR;
}

static void free_small(void *p, size_t bytes)
{
    free_blk *f = p;
    f->next = A.free[bytes / GRAIN];
    A.free[bytes / GRAIN] = f;
}
#endif

void *js_alloc(void *udata, size_t size)
{
    (void)udata;
    if (size == 0)
        size = 1;
    return is_small(size) ? alloc_small(size) : alloc_large(size);
}

void js_free(void *udata, void *ptr)
{
    (void)udata;
    if (!ptr)
        return;
    size_t size = *hdr_of(ptr);
    if (is_small(size)) {
        free_small(ptr, size);
    } else {
        A.in_use -= size + HDR;
        free(hdr_of(ptr));
    }
}

void *js_realloc(void *udata, void *ptr, size_t size)
{
    if (!ptr)
        return js_alloc(udata, size);
    if (size == 0) {
        js_free(udata, ptr);
        return NULL;
    }
    size_t old = *hdr_of(ptr);
    if (is_small(old) && size <= old)
        return ptr; /* same class or smaller: keep the block */
    if (!is_small(old) && !is_small(size)) {
        if (size > old && (size > SIZE_MAX - HDR || over_budget(size - old)))
            return NULL;
        char *b = realloc(hdr_of(ptr), size + HDR);
        if (!b)
            return NULL;
        A.in_use = A.in_use - old + size;
        *(size_t *)b = size;
        return b + HDR;
    }
    void *n = js_alloc(udata, size);
    if (!n)
        return NULL;
    memcpy(n, ptr, old < size ? old : size);
    js_free(udata, ptr);
    return n;
}
