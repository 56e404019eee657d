/*
 * testutil.h — helpers shared by the C unit tests.
 *
 * Tests write only below a fresh temporary directory (under $DIVAN_TEST_TMP
 * when ctest sets it, else $TMPDIR or /tmp) and remove it when they pass.
 * Property tests take their seed from $DIVAN_SEED when set (to reproduce a
 * failure) and print the seed they used.
 */
#ifndef DV_TESTS_TESTUTIL_H
#define DV_TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Creates a new empty directory; returns its path (static storage per call
 * is NOT used: the caller frees the result with free()). */
char *tu_mkdtemp(const char *tag);
/* Removes a directory tree (best effort). */
void tu_rmtree(const char *path);
/* path = dir + "/" + name, malloc'd. */
char *tu_path(const char *dir, const char *name);
/* Seed from $DIVAN_SEED or the clock; printed to stderr with the test name. */
uint64_t tu_seed(const char *test_name);
/* Iteration count: default, scaled by $DIVAN_ITERATIONS when set. */
long tu_iterations(long dflt);

/* Small, fast, reproducible PRNG (splitmix64). */
typedef struct tu_rng { uint64_t s; } tu_rng;
static inline uint64_t tu_rand(tu_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline uint64_t tu_rand_below(tu_rng *r, uint64_t n) { return n ? tu_rand(r) % n : 0; }

#endif
