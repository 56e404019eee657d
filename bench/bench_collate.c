/*
 * bench_collate.c — compares per second of the view key collation
 * (json/collate.h) on typical view keys, against ICU's ucol_strcollIter
 * alone, which is what CouchDB's NIF spends on each string compare.
 *
 *   build/bench_collate            BENCH_SECONDS (per cell, default 0.5)
 *
 * Prints one markdown table; times are this thread's CPU time, so a busy
 * machine slows the figures less than wall time would.  Keys are canonical JSON texts (as a view file
 * stores them) and their DOMs; each cell compares random pairs of one key
 * set for the given time.  Not a test: nothing fails on a slow figure.
 */
#include "base/status.h"
#include "json/collate.h"
#include "json/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unicode/ucol.h>
#include <unicode/uiter.h>

#define NKEYS 4096
#define NPAIRS 65536

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % n;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); /* CPU time: other processes share the cores */
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const char *const words[] = {"alice", "bob", "Carol", "dave", "Eve", "mallory", "trent",
                                    "peggy", "victor", "walter", "oscar", "Sybil"};
static const char *const uwords[] = {"Zoë", "Ångström", "東京", "Müller", "Mueller", "Ærø",
                                     "São Paulo", "naïve", "Øresund", "İstanbul", "Łódź", "😀 smile"};

static void key_text(int kind, char *out, size_t cap)
{
    switch (kind) {
    case 0: /* ASCII ids */
        snprintf(out, cap, "\"user:%06u\"", (unsigned)rnd(1000000));
        break;
    case 1: /* ASCII words, mixed case */
        snprintf(out, cap, "\"%s %s\"", words[rnd(12)], words[rnd(12)]);
        break;
    case 2: /* non-ASCII names */
        snprintf(out, cap, "\"%s %s\"", uwords[rnd(12)], words[rnd(12)]);
        break;
    case 3: /* integers */
        snprintf(out, cap, "%lld", (long long)rnd(10000000) - 5000000);
        break;
    case 4: /* compound [date, name, n] */
        snprintf(out, cap, "[\"2024-%02u-%02u\",\"%s\",%u]", (unsigned)rnd(12) + 1,
                 (unsigned)rnd(28) + 1, words[rnd(12)], (unsigned)rnd(100));
        break;
    default: /* object */
        snprintf(out, cap, "{\"type\":\"%s\",\"n\":%u.%u}", words[rnd(4)], (unsigned)rnd(100),
                 (unsigned)rnd(10));
        break;
    }
}

typedef struct keyset {
    json_doc doc[NKEYS];
    buf_t text[NKEYS];
    const char *str[NKEYS]; /* string keys: unescaped bytes */
    size_t len[NKEYS];
    char *src[NKEYS]; /* the parsed texts (the DOM points into them) */
    bool strings;
} keyset;

static uint32_t pa[NPAIRS], pb[NPAIRS];
static volatile int sink;

static int load(keyset *ks, int kind)
{
    char tmp[256];
    ks->strings = kind <= 2;
    for (int i = 0; i < NKEYS; i++) {
        key_text(kind, tmp, sizeof tmp);
        json_doc_init(&ks->doc[i]);
        buf_init(&ks->text[i]);
        json_writer w;
        json_writer_init(&w, &ks->text[i]);
        ks->src[i] = strdup(tmp);
        if (!ks->src[i] || json_doc_parse(&ks->doc[i], ks->src[i], strlen(tmp), 0, NULL) != DV_OK ||
            json_write_value(&w, json_doc_root(&ks->doc[i])) != DV_OK)
            return -1;
        ks->str[i] = json_str(json_doc_root(&ks->doc[i]), &ks->len[i]);
    }
    return 0;
}

typedef int (*cell_fn)(const keyset *ks, uint32_t a, uint32_t b);

static UCollator *icu;

static int c_text(const keyset *ks, uint32_t a, uint32_t b)
{
    return json_collate_text(ks->text[a].data, ks->text[a].len, ks->text[b].data, ks->text[b].len);
}
static int c_dom(const keyset *ks, uint32_t a, uint32_t b)
{
    return json_collate(json_doc_root(&ks->doc[a]), json_doc_root(&ks->doc[b]));
}
static int c_icu(const keyset *ks, uint32_t a, uint32_t b)
{
    UCharIterator ia, ib;
    UErrorCode st = U_ZERO_ERROR;
    uiter_setUTF8(&ia, ks->str[a], (int32_t)ks->len[a]);
    uiter_setUTF8(&ib, ks->str[b], (int32_t)ks->len[b]);
    return ucol_strcollIter(icu, &ia, &ib, &st);
}

static double rate(const keyset *ks, cell_fn f, double secs)
{
    long n = 0;
    int acc = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < NPAIRS; i++)
            acc += f(ks, pa[i], pb[i]);
        n += NPAIRS;
        t = now();
    } while (t - t0 < secs);
    sink = acc;
    return (double)n / (t - t0);
}

int main(void)
{
    const char *s = getenv("BENCH_SECONDS");
    double secs = s ? atof(s) : 0.5;
    if (secs <= 0)
        secs = 0.5;
    UErrorCode st = U_ZERO_ERROR;
    icu = ucol_open("", &st);
    if (U_FAILURE(st) || json_collate_init() != DV_OK) {
        fprintf(stderr, "bench_collate: ICU root collator unavailable\n");
        return 1;
    }
    static const char *const names[] = {"ASCII ids \"user:000123\"", "ASCII words \"alice Bob\"",
                                        "non-ASCII \"Zoë alice\"", "integers", "[\"2024-05-17\",\"bob\",7]",
                                        "{\"type\":\"bob\",\"n\":1.5}"};
    for (int i = 0; i < NPAIRS; i++) {
        pa[i] = (uint32_t)rnd(NKEYS);
        pb[i] = (uint32_t)rnd(NKEYS);
    }
    printf("| keys (random pairs of %d) | text compare, M/s | DOM compare, M/s | ICU strcollIter alone, M/s | text / ICU |\n",
           NKEYS);
    printf("| --- | ---: | ---: | ---: | ---: |\n");
    static keyset ks;
    for (int kind = 0; kind < 6; kind++) {
        if (load(&ks, kind) != 0) {
            fprintf(stderr, "bench_collate: key generation failed\n");
            return 1;
        }
        double t = rate(&ks, c_text, secs), d = rate(&ks, c_dom, secs);
        if (ks.strings) {
            double u = rate(&ks, c_icu, secs);
            printf("| %s | %.1f | %.1f | %.1f | %.1fx |\n", names[kind], t / 1e6, d / 1e6, u / 1e6, t / u);
        } else {
            printf("| %s | %.1f | %.1f | n/a | n/a |\n", names[kind], t / 1e6, d / 1e6);
        }
        for (int i = 0; i < NKEYS; i++) {
            json_doc_free(&ks.doc[i]);
            free(ks.src[i]);
            buf_free(&ks.text[i]);
        }
    }
    ucol_close(icu);
    return 0;
}
