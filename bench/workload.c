/*
 * workload.c — the documents, ids and file accounting shared by every
 * engine in the storage benchmark.
 *
 * A document is a plausible order record: a few typed fields, an item list
 * and a free-text note of words from a 64-word vocabulary, padded to exactly
 * BENCH_DOC_LEN bytes.  The vocabulary makes bodies compressible (lz4 takes
 * one to about 710 bytes), like real JSON.  Ids and bodies depend only on
 * (seed, n), so a reader can recompute any id the loader wrote without
 * keeping a list of them.
 */
#define _XOPEN_SOURCE 700
#include "engine.h"

#include <assert.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const words[64] = {
    "alpha",   "bravo",   "charlie", "delta",   "echo",    "foxtrot", "golf",    "hotel",   "india",   "juliet",
    "kilo",    "lima",    "mike",    "november", "oscar",  "papa",    "quebec",  "romeo",   "sierra",  "tango",
    "uniform", "victor",  "whiskey", "xray",    "yankee",  "zulu",    "amber",   "basalt",  "cedar",   "dune",
    "ember",   "fjord",   "granite", "harbor",  "island",  "jasper",  "kelp",    "lagoon",  "meadow",  "nectar",
    "orchard", "prairie", "quartz",  "river",   "summit",  "tundra",  "upland",  "valley",  "willow",  "yarrow",
    "zephyr",  "parcel",  "invoice", "courier", "express", "fragile", "returns", "pending", "shipped", "delivered",
    "customer", "warehouse", "priority", "standard",
};

uint64_t bench_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void bench_make_id(uint64_t seed, uint64_t n, uint8_t out[BENCH_ID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = bench_mix(seed ^ bench_mix(n));
    for (int i = 0; i < BENCH_ID_LEN; i++)
        out[i] = (uint8_t)hex[(v >> (60 - 4 * i)) & 15];
}

void bench_make_doc(uint64_t seed, uint64_t n, uint8_t out[BENCH_DOC_LEN])
{
    char tmp[BENCH_DOC_LEN + 128];
    uint64_t r = bench_mix(seed * 31 + n);
    int len = snprintf(tmp, sizeof tmp,
                       "{\"type\":\"order\",\"number\":%llu,\"customer\":{\"name\":\"%s %s\",\"city\":\"%s\","
                       "\"tier\":\"%s\"},\"status\":\"%s\",\"items\":[",
                       (unsigned long long)(n % 100000000u), words[r & 63], words[(r >> 6) & 63],
                       words[(r >> 12) & 63], words[60 + ((r >> 18) & 3)], words[55 + ((r >> 20) & 3)]);
    assert(len > 0 && len < (int)sizeof tmp);
    int items = 1 + (int)((r >> 24) % 4);
    for (int i = 0; i < items; i++) {
        uint64_t q = bench_mix(r + (uint64_t)i);
        len += snprintf(tmp + len, sizeof tmp - (size_t)len,
                        "%s{\"sku\":\"SKU-%05u\",\"qty\":%u,\"price\":%u.%02u}", i ? "," : "",
                        (unsigned)(q % 100000), (unsigned)(1 + (q >> 20) % 9), (unsigned)((q >> 24) % 500),
                        (unsigned)((q >> 34) % 100));
    }
    len += snprintf(tmp + len, sizeof tmp - (size_t)len, "],\"note\":\"");
    /* Note words until the closing "} fits exactly; pad with spaces. */
    const int close_len = 2;
    uint64_t w = r;
    for (int i = 0; len < BENCH_DOC_LEN - close_len; i++) {
        if ((i & 7) == 0)
            w = bench_mix(w);
        const char *word = words[(w >> (8 * (i & 7))) & 63];
        size_t wl = strlen(word);
        if (len + (int)wl + 1 > BENCH_DOC_LEN - close_len) {
            memset(tmp + len, ' ', (size_t)(BENCH_DOC_LEN - close_len - len));
            len = BENCH_DOC_LEN - close_len;
            break;
        }
        memcpy(tmp + len, word, wl);
        tmp[len + (int)wl] = ' ';
        len += (int)wl + 1;
    }
    memcpy(tmp + len, "\"}", 2);
    len += close_len;
    assert(len == BENCH_DOC_LEN);
    memcpy(out, tmp, BENCH_DOC_LEN);
}

static uint64_t dir_bytes_sum;

static int dir_bytes_visit(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)path;
    (void)f;
    if (type == FTW_F)
        dir_bytes_sum += (uint64_t)st->st_size;
    return 0;
}

uint64_t bench_dir_bytes(const char *dir)
{
    dir_bytes_sum = 0;
    if (nftw(dir, dir_bytes_visit, 16, FTW_PHYS) != 0)
        return 0;
    return dir_bytes_sum;
}

static int rmtree_visit(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)st;
    (void)f;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void bench_rmtree(const char *dir) { nftw(dir, rmtree_visit, 16, FTW_DEPTH | FTW_PHYS); }

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
