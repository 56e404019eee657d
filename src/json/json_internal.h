/*
 * json_internal.h — byte-level helpers shared by the JSON parser and writer.
 *
 * Kept inline because both hot loops (string scanning when parsing, string
 * escaping when writing) spend most of their time here.  The SWAR helpers
 * test eight bytes at once for "anything that stops a plain run": a quote, a
 * backslash, a control character or (for the parser) a non-ASCII byte.  A
 * flagged byte above the first real stop may be a false one (a borrow of the
 * subtraction runs upward from a real one), but none below it: bytes below
 * the first real stop see no borrow, so each formula is exact there, and a
 * real stop is always flagged.  So the LOWEST flagged byte is the first real
 * stop, and the parser jumps straight to it (json__first_flagged) instead of
 * stepping byte by byte: a key shorter than 8 bytes costs one test instead of
 * one per byte.  Were the argument wrong, landing on a plain byte would cost
 * a step of the byte loop, never correctness: no real stop is jumped over.
 */
#ifndef DV_JSON_INTERNAL_H
#define DV_JSON_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define JSON__ONES 0x0101010101010101ULL
#define JSON__HIGHS 0x8080808080808080ULL

static inline uint64_t json__load64(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}
/* Non-zero iff some byte of x is zero. */
static inline uint64_t json__has_zero(uint64_t x) { return (x - JSON__ONES) & ~x & JSON__HIGHS; }
/* Non-zero iff some byte of x is '"', '\\' or below 0x20 (bytes >= 0x80 are
 * not flagged: the writer copies valid UTF-8 through). */
static inline uint64_t json__needs_escape8(uint64_t x)
{
    uint64_t lt20 = (x - JSON__ONES * 0x20) & ~x & JSON__HIGHS;
    return lt20 | json__has_zero(x ^ (JSON__ONES * '"')) | json__has_zero(x ^ (JSON__ONES * '\\'));
}
/* Same plus any byte >= 0x80 (the parser must validate UTF-8 there). */
static inline uint64_t json__string_stop8(uint64_t x) { return json__needs_escape8(x) | (x & JSON__HIGHS); }
/* Index (0..7) in memory order of the first real stop byte of a non-zero
 * mask from the helpers above.  Big-endian: borrows run towards LOWER
 * addresses there, so the argument above fails; 0 lets the byte loop find it. */
static inline size_t json__first_flagged(uint64_t mask)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(mask) >> 3;
#else
    (void)mask;
    return 0;
#endif
}

/* Length (2..4) of the well-formed UTF-8 sequence at p (p[0] >= 0x80), or 0.
 * Unicode 15 table 3-7: rejects overlongs (C0, C1, E0 80..9F, F0 80..8F),
 * surrogates (ED A0..BF) and code points above U+10FFFF (F4 90.., F5..FF). */
static inline size_t json__utf8_seq(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF)
        return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3)
            return 0;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4)
            return 0;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

static inline int json__is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* Scans an RFC 8259 number starting at p.  Returns the end of the number, or
 * NULL with *bad set to the offending position and *why to a reason. */
static inline const uint8_t *json__scan_number(const uint8_t *p, const uint8_t *end,
                                               const uint8_t **bad, const char **why)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end || !json__is_digit(*p)) {
        *bad = p;
        *why = "invalid number: digit expected";
        return NULL;
    }
    if (*p == '0') {
        p++;
        if (p < end && json__is_digit(*p)) {
            *bad = p;
            *why = "invalid number: leading zero";
            return NULL;
        }
    } else {
        while (p < end && json__is_digit(*p))
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !json__is_digit(*p)) {
            *bad = p;
            *why = "invalid number: digit expected after '.'";
            return NULL;
        }
        while (p < end && json__is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !json__is_digit(*p)) {
            *bad = p;
            *why = "invalid number: digit expected in exponent";
            return NULL;
        }
        while (p < end && json__is_digit(*p))
            p++;
    }
    return p;
}

#endif
