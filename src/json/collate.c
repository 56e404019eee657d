/*
 * collate.c — CouchDB's view collation (see collate.h for the rules and
 * docs/collation.md for the CouchDB evidence behind each one).
 *
 * Layout: numbers, then strings (ASCII model + ICU), then the two walkers
 * (DOM, recursive; text, an iterative lockstep tokenizer), then the API.
 *
 * Invariants the code relies on:
 *   - every compare returns -1, 0 or 1 and is antisymmetric: each step treats
 *     its two sides identically, so swapping them swaps the sign, including
 *     on the fallback paths (malformed text, failed allocation, ICU error);
 *   - numbers map to exact real values (an integer text to its integer, any
 *     other text to the double nearest to it) and compare exactly, so the
 *     number order is transitive across integer/double mixes;
 *   - the ASCII tables are a model of ICU, never a replacement: they are
 *     derived from the running ICU at init and any character whose collation
 *     does not fit the model (several collation elements, contractions,
 *     primary-ignorable with weights) is left to ICU.
 */
#include "json/collate.h"

#include "base/status.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicode/ucol.h>
#include <unicode/ucoleitr.h>
#include <unicode/uset.h>
#include <unicode/uvernum.h>

/* CouchDB refuses older ICU: its max-key sentinel needs ICU >= 59. */
#if U_ICU_VERSION_MAJOR_NUM < 59
#error "divan's collation follows CouchDB 3, which requires libicu >= 59"
#endif

static int sgn(int v) { return (v > 0) - (v < 0); }

/* ======================================================================== */
/* Numbers                                                                  */
/* ======================================================================== */

/* A number text cut into its parts.  The text is assumed to follow RFC 8259
 * (a json_val's or a validated token's); anything else still never reads
 * outside [s, s+n) and yields some fixed value. */
typedef struct num {
    bool neg, is_int, eneg;
    const char *ip, *fp, *ep; /* integer, fraction and exponent digits */
    size_t in, fn, en;
} num;

static size_t digits(const char *s, size_t i, size_t n)
{
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

static void num_split(const char *s, size_t n, num *x)
{
    memset(x, 0, sizeof *x);
    size_t i = 0, j;
    if (i < n && s[i] == '-') {
        x->neg = true;
        i++;
    }
    j = digits(s, i, n);
    x->ip = s + i;
    x->in = j - i;
    i = j;
    if (i < n && s[i] == '.') {
        j = digits(s, i + 1, n);
        x->fp = s + i + 1;
        x->fn = j - i - 1;
        i = j;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            x->eneg = s[i++] == '-';
        j = digits(s, i, n);
        x->ep = s + i;
        x->en = j - i;
        i = j;
    }
    /* jiffy's rule: no '.' and no exponent means an integer (a bignum when
     * it does not fit 64 bits); "1e5" and "1.0" are floats. */
    x->is_int = x->fp == NULL && x->ep == NULL;
    while (x->in > 1 && x->ip[0] == '0') { /* not JSON, but keep it total */
        x->ip++;
        x->in--;
    }
}

/* Sign and magnitude order of two integer texts: exact for any length. */
static int int_cmp(const num *x, const num *y)
{
    int sx = (x->in == 0 || (x->in == 1 && x->ip[0] == '0')) ? 0 : (x->neg ? -1 : 1);
    int sy = (y->in == 0 || (y->in == 1 && y->ip[0] == '0')) ? 0 : (y->neg ? -1 : 1);
    if (sx != sy)
        return sx < sy ? -1 : 1;
    if (sx == 0)
        return 0;
    int mag = x->in != y->in ? (x->in < y->in ? -1 : 1) : sgn(memcmp(x->ip, y->ip, x->in));
    return sx > 0 ? mag : -mag;
}

/* Digit k of the integer digits followed by the fraction digits. */
static inline char num_digit(const num *x, size_t k)
{
    return k < x->in ? x->ip[k] : x->fp[k - x->in];
}

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Significant digits kept for strtod: any halfway point between two doubles
 * has at most 767 significant digits, so 780 digits plus a sticky '1' for a
 * longer tail round exactly like the full text. */
#define NUM_MAX_SIG 780

/* The double nearest to a number text (round-half-even, as strtod and
 * jiffy's strtod/list_to_float); beyond the double range, +-infinity, below
 * it, +-0.  Allocation-free for any text length. */
static double num_to_double(const num *x)
{
    size_t total = x->in + x->fn, first = 0, last;
    while (first < total && num_digit(x, first) == '0')
        first++;
    if (first == total)
        return x->neg ? -0.0 : 0.0;
    last = total - 1;
    while (num_digit(x, last) == '0')
        last--;
    size_t nsig = last - first + 1;

    /* Decimal exponent of the digit run first..last read as an integer.
     * Saturating: past +-1e9 the value is infinite or zero anyway. */
    int64_t e = 0;
    for (size_t k = 0; k < x->en; k++) {
        if (e < 1000000000)
            e = e * 10 + (x->ep[k] - '0');
    }
    e = (x->eneg ? -e : e) - (int64_t)x->fn + (int64_t)(total - 1 - last);

    double d;
    if (nsig <= 19) {
        uint64_t w = 0;
        for (size_t k = first; k <= last; k++)
            w = w * 10 + (uint64_t)(num_digit(x, k) - '0');
        /* Clinger's fast path: both operands exact, one correctly rounded op. */
        if (w <= (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
            d = e >= 0 ? (double)w * pow10_exact[e] : (double)w / pow10_exact[-e];
            return x->neg ? -d : d;
        }
    }
    char buf[NUM_MAX_SIG + 32];
    size_t o = 0, keep = nsig > NUM_MAX_SIG ? NUM_MAX_SIG : nsig;
    if (x->neg)
        buf[o++] = '-';
    for (size_t k = 0; k < keep; k++)
        buf[o++] = num_digit(x, first + k);
    if (keep < nsig) { /* the dropped tail ends in a nonzero digit: sticky */
        buf[o++] = '1';
        e += (int64_t)(nsig - keep) - 1;
    }
    if (e > 100000)
        e = 100000;
    if (e < -100000)
        e = -100000;
    snprintf(buf + o, sizeof buf - o, "e%lld", (long long)e);
    return strtod(buf, NULL); /* ERANGE gives +-HUGE_VAL or 0: what we want */
}

/* Exact order of an integer text against a double (Erlang compares a bignum
 * and a float exactly too). */
static int int_dbl_cmp(const num *x, double d)
{
    if (isinf(d))
        return d > 0 ? -1 : 1;
    if (x->in <= 18) { /* |x| < 1e18 < 2^63 */
        int64_t i = 0;
        for (size_t k = 0; k < x->in; k++)
            i = i * 10 + (x->ip[k] - '0');
        if (x->neg)
            i = -i;
        if (d >= 9223372036854775808.0)
            return -1;
        if (d < -9223372036854775808.0)
            return 1;
        int64_t t = (int64_t)d; /* truncation: exact, d is in range */
        if (i != t)
            return i < t ? -1 : 1;
        double frac = d - (double)t; /* exact */
        return frac > 0 ? -1 : (frac < 0 ? 1 : 0);
    }
    /* |x| >= 1e18 (no leading zeros), and 1e18 is an exact double. */
    if (fabs(d) < 1e18)
        return x->neg ? -1 : 1;
    /* |d| >= 1e18 > 2^53, so d is an integer: print it exactly (glibc's %f
     * is exact) and compare decimal texts. */
    char buf[400];
    int len = snprintf(buf, sizeof buf, "%.0f", fabs(d));
    if (len <= 0 || (size_t)len >= sizeof buf)
        return x->neg ? -1 : 1; /* cannot happen: |d| < 1.8e308 */
    num y;
    memset(&y, 0, sizeof y);
    y.neg = d < 0;
    y.is_int = true;
    y.ip = buf;
    y.in = (size_t)len;
    return int_cmp(x, &y);
}

/* "-"? digits: how views mostly see numbers (JavaScript prints integral
 * doubles below 1e21 that way).  Fills x for int_cmp when it is. */
static inline bool plain_int(const char *s, size_t n, num *x)
{
    size_t i = n && s[0] == '-';
    if (i == n)
        return false;
    for (size_t k = i; k < n; k++)
        if ((unsigned)(s[k] - '0') > 9)
            return false;
    x->neg = i;
    x->ip = s + i;
    x->in = n - i;
    while (x->in > 1 && x->ip[0] == '0') {
        x->ip++;
        x->in--;
    }
    return true;
}

int json_collate_numbers(const char *a, size_t alen, const char *b, size_t blen)
{
    num x, y;
    if (plain_int(a, alen, &x) && plain_int(b, blen, &y))
        return int_cmp(&x, &y);
    if (alen == blen && memcmp(a, b, alen) == 0)
        return 0;
    num_split(a, alen, &x);
    num_split(b, blen, &y);
    if (x.is_int && y.is_int)
        return int_cmp(&x, &y);
    if (x.is_int)
        return int_dbl_cmp(&x, num_to_double(&y));
    if (y.is_int)
        return -int_dbl_cmp(&y, num_to_double(&x));
    double dx = num_to_double(&x), dy = num_to_double(&y);
    return dx < dy ? -1 : (dx > dy ? 1 : 0); /* -0.0 == 0.0, as Erlang's == */
}

/* ======================================================================== */
/* Strings                                                                  */
/* ======================================================================== */

int json_collate_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = n ? memcmp(a, b, n) : 0;
    if (r)
        return sgn(r);
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

/* ASCII model flags. */
#define AF_FAST 1u /* one context-free collation element, or completely ignorable */
#define AF_CTX 2u  /* starts an ICU contraction whose other code points are not ASCII */

static struct {
    pthread_once_t once;
    int status;
    UCollator *coll;     /* ICU root, default attributes: CouchDB's ucol_open("") */
    uint8_t prim[128];   /* primary rank, 0 for a completely ignorable character */
    uint8_t tert[128];   /* tertiary rank; orders characters of one primary */
    uint8_t flags[128];  /* AF_* */
    bool all_fast;       /* every ASCII character has AF_FAST */
} C = {PTHREAD_ONCE_INIT, DV_ERR_IO, NULL, {0}, {0}, {0}, false};

static int icu_cmp1(const UCollator *coll, const char *a, int32_t an, const char *b, int32_t bn)
{
    UErrorCode st = U_ZERO_ERROR;
    UCollationResult r = ucol_strcollUTF8(coll, a, an, b, bn, &st);
    return U_FAILURE(st) ? 2 : (int)r;
}

/* Collation elements of one ASCII character, not counting continuations
 * (the second half of a long primary) and ignorable ones; -1 on error. */
static int ce_count(const UCollator *coll, char c)
{
    UErrorCode st = U_ZERO_ERROR;
    UChar u = (UChar)c;
    UCollationElements *it = ucol_openElements(coll, &u, 1, &st);
    if (U_FAILURE(st) || !it)
        return -1;
    int n = 0;
    for (;;) {
        int32_t ce = ucol_next(it, &st);
        if (U_FAILURE(st)) {
            n = -1;
            break;
        }
        if (ce == UCOL_NULLORDER)
            break;
        if (ce != 0 && ((uint32_t)ce & 0xC0u) != 0xC0u)
            n++;
    }
    ucol_closeElements(it);
    return n;
}

/* Marks ASCII characters that start a contraction (root has "l·", "L·"),
 * and drops from the model any all-ASCII contraction's characters. */
static int mark_contractions(const UCollator *coll, uint8_t *flags)
{
    UErrorCode st = U_ZERO_ERROR;
    USet *set = uset_openEmpty();
    if (!set)
        return DV_ERR_NOMEM;
    ucol_getContractionsAndExpansions(coll, set, NULL, true, &st);
    int rc = U_FAILURE(st) ? DV_ERR_IO : DV_OK;
    int32_t items = rc == DV_OK ? uset_getItemCount(set) : 0;
    for (int32_t i = 0; i < items && rc == DV_OK; i++) {
        UChar s[64];
        UChar32 lo, hi;
        UErrorCode st2 = U_ZERO_ERROR;
        int32_t len = uset_getItem(set, i, &lo, &hi, s, (int32_t)(sizeof s / sizeof s[0]), &st2);
        if (U_FAILURE(st2)) {
            rc = DV_ERR_IO; /* a string we cannot see: give the model up */
            break;
        }
        if (len == 0) { /* a range of single code points */
            for (UChar32 c = lo; c <= hi && c < 0x80; c++)
                flags[c] = 0;
            continue;
        }
        if (s[0] >= 0x80)
            continue; /* starts outside ASCII: the model bails there first */
        bool all_ascii = true;
        for (int32_t k = 0; k < len; k++)
            all_ascii = all_ascii && s[k] < 0x80;
        if (all_ascii) {
            for (int32_t k = 0; k < len; k++)
                flags[s[k]] = 0;
        } else {
            flags[s[0]] |= AF_CTX;
        }
    }
    uset_close(set);
    return rc;
}

/* Builds the ASCII model from ICU itself: a character is in it when it is
 * completely ignorable or has exactly one collation element; its primary
 * rank and tertiary rank come from sorting the characters with ICU.  The
 * model then requires that characters sharing a primary share a secondary,
 * which makes an all-ASCII compare: primaries in order (ignorables skipped,
 * shorter first), then the first tertiary difference. */
static int derive_ascii(const UCollator *coll)
{
    uint8_t prim[128] = {0}, tert[128] = {0}, flags[128] = {0}, order[128];
    int n = 0, rc = DV_OK;
    UErrorCode st = U_ZERO_ERROR;
    UCollator *p = ucol_open("", &st), *s = ucol_open("", &st);
    if (U_FAILURE(st) || !p || !s) {
        rc = DV_ERR_IO;
        goto done;
    }
    ucol_setStrength(p, UCOL_PRIMARY);
    ucol_setStrength(s, UCOL_SECONDARY);
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        if (icu_cmp1(coll, &ch, 1, "", 0) == 0) {
            flags[c] = AF_FAST; /* completely ignorable: prim 0 */
            continue;
        }
        if (icu_cmp1(p, &ch, 1, "", 0) == 0 || ce_count(coll, ch) != 1)
            continue; /* left to ICU */
        order[n++] = (uint8_t)c;
    }
    for (int i = 1; i < n; i++) { /* insertion sort with ICU, ~100 characters */
        uint8_t v = order[i];
        int j = i;
        while (j > 0 && icu_cmp1(coll, (const char *)&order[j - 1], 1, (const char *)&v, 1) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    int pr = 0, tr = 0;
    for (int i = 0; i < n; i++) {
        const char *cur = (const char *)&order[i], *prev = (const char *)&order[i - (i > 0)];
        /* 1 where cur sorts after prev at that strength, 0 where equal */
        int dp = i ? icu_cmp1(p, cur, 1, prev, 1) : 1, ds = i ? icu_cmp1(s, cur, 1, prev, 1) : 1,
            dt = i ? icu_cmp1(coll, cur, 1, prev, 1) : 1;
        if (dp > 1 || ds > 1 || dt > 1 || dp < 0 || dt < 0 || (dp == 0 && ds != 0) || pr >= 255) {
            rc = DV_ERR_IO; /* ICU errors, or an order the model cannot express */
            goto done;
        }
        pr += dp != 0;
        tr += dt != 0;
        prim[order[i]] = (uint8_t)pr;
        tert[order[i]] = (uint8_t)(tr & 0xFF);
        flags[order[i]] = AF_FAST;
    }
    if (tr > 255) {
        rc = DV_ERR_IO;
        goto done;
    }
    rc = mark_contractions(coll, flags);
done:
    if (p)
        ucol_close(p);
    if (s)
        ucol_close(s);
    if (rc == DV_OK) {
        memcpy(C.prim, prim, sizeof prim);
        memcpy(C.tert, tert, sizeof tert);
        memcpy(C.flags, flags, sizeof flags);
        C.all_fast = true;
        for (int c = 0; c < 128; c++)
            C.all_fast = C.all_fast && (flags[c] & AF_FAST);
    }
    return rc;
}

static void init_once(void)
{
    UErrorCode st = U_ZERO_ERROR;
    UCollator *coll = ucol_open("", &st);
    if (U_FAILURE(st) || !coll) {
        if (coll)
            ucol_close(coll);
        C.status = DV_ERR_IO;
        return;
    }
    /* A failed derivation only costs speed: every flag stays 0, so every
     * string goes to ICU. */
    (void)derive_ascii(coll);
    C.coll = coll; /* shared, const use only; lives as long as the process */
    C.status = DV_OK;
}

int json_collate_init(void)
{
    int rc = pthread_once(&C.once, init_once);
    return rc ? DV_ERR_IO : C.status;
}

#define UNDECIDED 2

/* The next character at or after i that has a primary weight (n if none);
 * SIZE_MAX when a character outside the model comes first. */
static inline size_t next_primary(const uint8_t *s, size_t n, size_t i)
{
    for (; i < n; i++) {
        uint8_t ch = s[i];
        if (ch >= 0x80 || !(C.flags[ch] & AF_FAST))
            return SIZE_MAX;
        if (C.prim[ch])
            break;
    }
    return i;
}

/* True when s[i] may contract with the non-ASCII code point after it. */
static inline bool may_contract(const uint8_t *s, size_t n, size_t i)
{
    return i < n && (C.flags[s[i]] & AF_CTX) && i + 1 < n && s[i + 1] >= 0x80;
}

/* ICU's root order for the common case, without ICU.  Decides only what the
 * model proves: a primary difference between two ASCII characters that no
 * later code point can contract with, the end of one side's primaries, or,
 * when both sides are entirely ASCII, the first tertiary (case) difference.
 * Anything else is UNDECIDED and goes to ICU with the whole strings. */
static int ascii_coll(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    /* A common prefix of modelled ASCII bytes weighs the same on both sides
     * (a contraction across its end needs a non-ASCII byte next, where the
     * loop below gives up), so skip it, 8 bytes at a time when it can. */
    size_t i = 0, j, n = an < bn ? an : bn;
    if (C.all_fast) {
        for (; i + 8 <= n; i += 8) {
            uint64_t x, y;
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y || (x & UINT64_C(0x8080808080808080)))
                break;
        }
    }
    while (i < n && a[i] == b[i] && a[i] < 0x80 && (C.flags[a[i]] & AF_FAST))
        i++;
    j = i;
    int tert = 0;
    for (;; i++, j++) {
        i = next_primary(a, an, i);
        j = next_primary(b, bn, j);
        if (i == SIZE_MAX || j == SIZE_MAX)
            return UNDECIDED;
        if (i == an || j == bn || C.prim[a[i]] != C.prim[b[j]])
            break;
        if (!tert && C.tert[a[i]] != C.tert[b[j]])
            tert = C.tert[a[i]] < C.tert[b[j]] ? -1 : 1;
    }
    if (i == an && j == bn)
        return tert; /* both all ASCII, same primaries, same secondaries */
    if (may_contract(a, an, i) || may_contract(b, bn, j))
        return UNDECIDED;
    if (i == an)
        return -1; /* fewer primaries */
    if (j == bn)
        return 1;
    return C.prim[a[i]] < C.prim[b[j]] ? -1 : 1;
}

int json_collate_strings(const char *a, size_t alen, const char *b, size_t blen)
{
    if (pthread_once(&C.once, init_once) != 0 || !C.coll)
        return json_collate_bytes(a, alen, b, blen);
    int r = ascii_coll((const uint8_t *)a, alen, (const uint8_t *)b, blen);
    if (r != UNDECIDED)
        return r;
    if (alen == blen && memcmp(a, b, alen) == 0)
        return 0;
    if (alen > INT32_MAX || blen > INT32_MAX)
        return json_collate_bytes(a, alen, b, blen);
    /* ucol_strcollUTF8 is CouchDB's ucol_strcollIter over uiter_setUTF8,
     * 2-4x faster; test_collate checks they agree, ill-formed UTF-8
     * included.  An ICU error (out of memory) falls back to bytes. */
    r = icu_cmp1(C.coll, a, (int32_t)alen, b, (int32_t)blen);
    return r == 2 ? json_collate_bytes(a, alen, b, blen) : r;
}

static inline int str_cmp(json_collation c, const char *a, size_t an, const char *b, size_t bn)
{
    return c == JSON_COLLATION_RAW ? json_collate_bytes(a, an, b, bn)
                                   : json_collate_strings(a, an, b, bn);
}

/* ======================================================================== */
/* Type order                                                               */
/* ======================================================================== */

/* Rank of each json_type (NULL, FALSE, TRUE, NUMBER, STRING, ARRAY, OBJECT).
 * UCA: couch_ejson_compare's atoms (null, false, true) < numbers < binaries
 * < lists < {props}.  RAW: Erlang's term order, number < atom (compared by
 * name: false < null < true) < tuple ({props}) < list < binary. */
static const uint8_t type_rank[2][7] = {
    {0, 1, 2, 3, 4, 5, 6},
    {2, 1, 3, 0, 6, 5, 4},
};

static inline int rank_cmp(json_collation c, json_type ta, json_type tb)
{
    return type_rank[c][ta] < type_rank[c][tb] ? -1 : 1;
}

/* ======================================================================== */
/* DOM walker                                                               */
/* ======================================================================== */

/* Recursion depth is the values' nesting, bounded by the parse depth limit
 * (JSON_DEFAULT_MAX_DEPTH, 512, a few dozen bytes of stack per level). */
static int dom_cmp(json_collation c, const json_val *a, const json_val *b)
{
    json_type ta = json_typeof(a), tb = json_typeof(b);
    if (ta != tb)
        return rank_cmp(c, ta, tb);
    json_iter ia = json_iter_begin(a), ib = json_iter_begin(b);
    const json_val *ka, *kb, *va, *vb;
    bool ha, hb;
    int r;
    switch (ta) {
    case JSON_NUMBER:
        return json_collate_numbers(a->str, a->len, b->str, b->len);
    case JSON_STRING:
        return str_cmp(c, a->str, a->len, b->str, b->len);
    case JSON_ARRAY:
        for (;;) {
            ha = json_iter_elem(&ia, &va);
            hb = json_iter_elem(&ib, &vb);
            if (!ha || !hb)
                return ha == hb ? 0 : (ha ? 1 : -1);
            if ((r = dom_cmp(c, va, vb)) != 0)
                return r;
        }
    case JSON_OBJECT:
        for (;;) {
            ha = json_iter_member(&ia, &ka, &va);
            hb = json_iter_member(&ib, &kb, &vb);
            if (!ha || !hb)
                return ha == hb ? 0 : (ha ? 1 : -1);
            if ((r = str_cmp(c, ka->str, ka->len, kb->str, kb->len)) != 0)
                return r;
            if ((r = dom_cmp(c, va, vb)) != 0)
                return r;
        }
    default: /* null, false, true */
        return 0;
    }
}

/* ======================================================================== */
/* Text walker                                                              */
/* ======================================================================== */

/* Tokens of one serialised value, in document order.  Both sides of a
 * compare are read in lockstep: as long as they are equal they are in the
 * same state (depth, container kinds, position), so each step reads one
 * token from each and never needs to look back.  Nothing is recursive and
 * nothing is allocated: a container's kind is one bit per depth. */
typedef enum tkind {
    TK_ERR = 0,
    TK_END, /* ']' or '}' */
    TK_KEY, /* a member name, its ':' consumed */
    TK_VAL, /* a value; its json_type in tok.type */
} tkind;

enum { S_VALUE, S_FIRST, S_AFTER }; /* what the cursor reads next */

typedef struct tcur {
    const uint8_t *p, *end;
    uint32_t depth;
    int state;
    uint8_t is_obj[JSON_COLLATE_TEXT_MAX_DEPTH / 8]; /* bit d: depth d is an object */
} tcur;

typedef struct tok {
    json_type type;
    const uint8_t *s; /* string contents (between the quotes) or number text */
    size_t n;
    bool esc; /* string has backslash escapes */
} tok;

static inline void skip_ws(tcur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static inline int hexv(uint8_t h)
{
    if (h >= '0' && h <= '9')
        return h - '0';
    h |= 0x20;
    return h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1;
}

/* Four hex digits at p (bounds checked by the caller); -1 if not hex. */
static int32_t hex4(const uint8_t *p)
{
    int32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexv(p[k]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Bytes that end a run of plain string bytes: '"', '\\', controls. */
static const uint8_t str_stop[256] = {[0 ... 0x1F] = 1, ['"'] = 1, ['\\'] = 1};

/* True when none of the 8 bytes in x is '"', '\\' or a control (SWAR:
 * exact for "any byte", the only question asked). */
static inline bool plain8(uint64_t x)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    return !((((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x)) & high);
}

/* A string at c->p ('"'): checks escapes (surrogates must pair, as the
 * parser requires) and raw control characters; bytes are not UTF-8 checked
 * (ICU reads ill-formed UTF-8 as U+FFFD). */
static bool scan_string(tcur *c, tok *t)
{
    const uint8_t *p = c->p + 1, *end = c->end;
    t->type = JSON_STRING;
    t->s = p;
    t->esc = false;
    for (;;) {
        for (uint64_t x; end - p >= 8 && (memcpy(&x, p, 8), plain8(x));)
            p += 8;
        while (p < end && !str_stop[*p])
            p++;
        if (p >= end || *p < 0x20)
            return false;
        if (*p == '"')
            break;
        t->esc = true;
        if (end - p < 2 || !memchr("\"\\/bfnrtu", p[1], 9))
            return false;
        if (p[1] != 'u') {
            p += 2;
            continue;
        }
        if (end - p < 6)
            return false;
        int32_t u = hex4(p + 2);
        if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF))
            return false;
        p += 6;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                return false;
            int32_t lo = hex4(p + 2);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return false;
            p += 6;
        }
    }
    t->n = (size_t)(p - t->s);
    c->p = p + 1;
    return true;
}

/* RFC 8259 number at c->p. */
static bool scan_number(tcur *c, tok *t)
{
    const uint8_t *p = c->p, *end = c->end;
    t->type = JSON_NUMBER;
    t->s = p;
    t->esc = false;
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    t->n = (size_t)(p - t->s);
    c->p = p;
    return true;
}

static bool scan_literal(tcur *c, const char *lit, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return false;
    c->p += n;
    return true;
}

static inline bool obj_at(const tcur *c, uint32_t d)
{
    return (c->is_obj[d >> 3] >> (d & 7)) & 1;
}

static tkind next_tok(tcur *c, tok *t)
{
    skip_ws(c);
    if (c->state != S_VALUE) { /* inside a container (depth >= 1) */
        if (c->p >= c->end)
            return TK_ERR;
        bool in_obj = obj_at(c, c->depth);
        if (*c->p == (in_obj ? '}' : ']')) {
            c->p++;
            c->depth--;
            c->state = S_AFTER;
            return TK_END;
        }
        if (c->state == S_AFTER) {
            if (*c->p != ',')
                return TK_ERR;
            c->p++;
            skip_ws(c);
        }
        if (in_obj) {
            if (c->p >= c->end || *c->p != '"' || !scan_string(c, t))
                return TK_ERR;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return TK_ERR;
            c->p++;
            c->state = S_VALUE;
            return TK_KEY;
        }
    }
    c->state = S_AFTER;
    if (c->p >= c->end)
        return TK_ERR;
    t->s = c->p;
    t->n = 0;
    t->esc = false;
    switch (*c->p) {
    case '"':
        return scan_string(c, t) ? TK_VAL : TK_ERR;
    case '[':
    case '{':
        if (c->depth + 1 >= JSON_COLLATE_TEXT_MAX_DEPTH)
            return TK_ERR;
        t->type = *c->p == '{' ? JSON_OBJECT : JSON_ARRAY;
        c->depth++;
        if (t->type == JSON_OBJECT)
            c->is_obj[c->depth >> 3] |= (uint8_t)(1u << (c->depth & 7));
        else
            c->is_obj[c->depth >> 3] &= (uint8_t)~(1u << (c->depth & 7));
        c->p++;
        c->state = S_FIRST;
        return TK_VAL;
    case 'n':
        t->type = JSON_NULL;
        return scan_literal(c, "null", 4) ? TK_VAL : TK_ERR;
    case 't':
        t->type = JSON_TRUE;
        return scan_literal(c, "true", 4) ? TK_VAL : TK_ERR;
    case 'f':
        t->type = JSON_FALSE;
        return scan_literal(c, "false", 5) ? TK_VAL : TK_ERR;
    default:
        return scan_number(c, t) ? TK_VAL : TK_ERR;
    }
}

static size_t put_utf8(uint8_t *d, uint32_t cp)
{
    if (cp < 0x80) {
        d[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (uint8_t)(0xC0 | cp >> 6);
        d[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (uint8_t)(0xE0 | cp >> 12);
        d[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (uint8_t)(0xF0 | cp >> 18);
    d[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Unescapes a string token that scan_string accepted into d (which holds at
 * least t->n bytes: no escape grows).  Returns the length. */
static size_t unescape(uint8_t *d, const tok *t)
{
    const uint8_t *p = t->s, *e = t->s + t->n;
    size_t o = 0;
    while (p < e) {
        if (*p != '\\') {
            d[o++] = *p++;
            continue;
        }
        uint8_t k = p[1];
        p += 2;
        switch (k) {
        case 'b': d[o++] = '\b'; continue;
        case 'f': d[o++] = '\f'; continue;
        case 'n': d[o++] = '\n'; continue;
        case 'r': d[o++] = '\r'; continue;
        case 't': d[o++] = '\t'; continue;
        case 'u': break;
        default: d[o++] = k; continue; /* '"', '\\', '/' */
        }
        uint32_t cp = (uint32_t)hex4(p);
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)hex4(p + 2) - 0xDC00);
            p += 6;
        }
        o += put_utf8(d + o, cp);
    }
    return o;
}

#define UNESC_STACK 1024

/* Out of line: its 2 KiB of buffers stay off the common path's stack. */
static __attribute__((noinline)) int tok_str_cmp_escaped(json_collation c, const tok *x, const tok *y)
{
    uint8_t sx[UNESC_STACK], sy[UNESC_STACK];
    uint8_t *bx = x->n <= sizeof sx ? sx : malloc(x->n), *by = y->n <= sizeof sy ? sy : malloc(y->n);
    int r;
    if (!bx || !by) {
        r = json_collate_bytes(x->s, x->n, y->s, y->n);
        goto done;
    }
    size_t nx = unescape(bx, x), ny = unescape(by, y);
    r = str_cmp(c, (const char *)bx, nx, (const char *)by, ny);
done:
    if (bx != sx)
        free(bx);
    if (by != sy)
        free(by);
    return r;
}

static inline int tok_str_cmp(json_collation c, const tok *x, const tok *y)
{
    if (!x->esc && !y->esc)
        return str_cmp(c, (const char *)x->s, x->n, (const char *)y->s, y->n);
    return tok_str_cmp_escaped(c, x, y);
}

static int text_cmp(json_collation c, const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    tcur A, B;
    A.p = a;
    A.end = a + an;
    B.p = b;
    B.end = b + bn;
    A.depth = B.depth = 0;
    A.state = B.state = S_VALUE;
    for (;;) {
        tok ta, tb;
        tkind ka = next_tok(&A, &ta), kb = next_tok(&B, &tb);
        int r;
        if (ka == TK_ERR || kb == TK_ERR)
            goto malformed;
        if (ka == TK_END || kb == TK_END) {
            if (ka != kb)
                return ka == TK_END ? -1 : 1; /* the shorter container first */
        } else if (ka == TK_KEY || kb == TK_KEY) {
            if (ka != kb)
                goto malformed; /* unreachable while both sides are in step */
            if ((r = tok_str_cmp(c, &ta, &tb)) != 0)
                return r;
            continue; /* its value comes next */
        } else if (ta.type != tb.type) {
            return rank_cmp(c, ta.type, tb.type);
        } else if (ta.type == JSON_NUMBER) {
            if ((r = json_collate_numbers((const char *)ta.s, ta.n, (const char *)tb.s, tb.n)) != 0)
                return r;
        } else if (ta.type == JSON_STRING) {
            if ((r = tok_str_cmp(c, &ta, &tb)) != 0)
                return r;
        }
        if (A.depth == 0) { /* both top-level values complete and equal */
            skip_ws(&A);
            skip_ws(&B);
            if (A.p != A.end || B.p != B.end)
                goto malformed;
            return 0;
        }
    }
malformed:
    return json_collate_bytes(a, an, b, bn);
}

/* ======================================================================== */
/* API                                                                      */
/* ======================================================================== */

int json_collate_as(json_collation c, const json_val *a, const json_val *b)
{
    return dom_cmp(c == JSON_COLLATION_RAW ? JSON_COLLATION_RAW : JSON_COLLATION_UCA, a, b);
}

int json_collate(const json_val *a, const json_val *b) { return dom_cmp(JSON_COLLATION_UCA, a, b); }

int json_collate_raw(const json_val *a, const json_val *b) { return dom_cmp(JSON_COLLATION_RAW, a, b); }

int json_collate_text_as(json_collation c, const void *a, size_t alen, const void *b, size_t blen)
{
    return text_cmp(c == JSON_COLLATION_RAW ? JSON_COLLATION_RAW : JSON_COLLATION_UCA, a, alen, b, blen);
}

int json_collate_text(const void *a, size_t alen, const void *b, size_t blen)
{
    return text_cmp(JSON_COLLATION_UCA, a, alen, b, blen);
}

int json_collate_text_raw(const void *a, size_t alen, const void *b, size_t blen)
{
    return text_cmp(JSON_COLLATION_RAW, a, alen, b, blen);
}

int json_collate_collator_version(uint8_t version[4])
{
    int rc = json_collate_init();
    if (rc != DV_OK)
        return rc;
    UVersionInfo v;
    ucol_getVersion(C.coll, v);
    memcpy(version, v, 4);
    return DV_OK;
}

int json_collate_ascii_modelled(void)
{
    if (json_collate_init() != DV_OK)
        return 0;
    int n = 0;
    for (int c = 0; c < 128; c++)
        n += (C.flags[c] & AF_FAST) != 0;
    return n;
}

json_collation json_collation_of(const json_val *options)
{
    const json_val *v = options ? json_object_get_cstr(options, "collation") : NULL;
    return v && json_str_eq(v, "raw") ? JSON_COLLATION_RAW : JSON_COLLATION_UCA;
}
