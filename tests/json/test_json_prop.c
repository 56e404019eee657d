/*
 * test_json_prop.c — seeded property tests for the JSON codec.
 *
 * 1. Random values are rendered twice by the generator: canonically through
 *    json_writer, and "noisily" by hand (random RFC whitespace, random choice
 *    of raw UTF-8 / short escape / \u escape with either hex case / surrogate
 *    pairs, escaped '/').  Parsing either rendering and serialising must give
 *    the canonical bytes, and the canonical bytes must be a fixed point.
 * 2. Random mutations of valid documents: the DOM parser and the validator
 *    must agree on acceptance and error offset, and anything accepted must
 *    serialise to something that parses back to the same serialisation.
 * 3. json_write_object_filtered, which copies input text when it can, writes
 *    what a member-by-member serialisation writes.
 *
 * Reproduce a failure with DIVAN_SEED=<printed seed>; scale the run with
 * DIVAN_ITERATIONS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "json/json.h"
#include "testutil.h"

typedef struct gen {
    tu_rng rng;
    json_writer w; /* canonical */
    buf_t noisy;
    bool dups;     /* allow duplicate member names (canonical then differs) */
    bool plain;    /* strings need no escaping (canonically written as read) */
} gen;

static uint64_t rnd(gen *g, uint64_t n) { return tu_rand_below(&g->rng, n); }

static void ws(gen *g)
{
    static const char sp[] = " \t\n\r";
    while (rnd(g, 4) == 0)
        buf_append_byte(&g->noisy, (uint8_t)sp[rnd(g, 4)]);
}

static uint32_t random_cp(gen *g)
{
    if (g->plain) {
        uint32_t c = rnd(g, 4) ? 0x20 + (uint32_t)rnd(g, 0x5F) : 0x80 + (uint32_t)rnd(g, 0x780);
        return c == '"' || c == '\\' ? 'x' : c;
    }
    switch (rnd(g, 8)) {
    case 0: return (uint32_t)rnd(g, 0x20);              /* control */
    case 1: return "\"\\/"[rnd(g, 3)];
    case 2: return 0x80 + (uint32_t)rnd(g, 0x780);      /* 2-byte */
    case 3: {                                           /* 3-byte, no surrogates */
        uint32_t c = 0x800 + (uint32_t)rnd(g, 0x10000 - 0x800 - 0x800);
        return c >= 0xD800 ? c + 0x800 : c;
    }
    case 4: return 0x10000 + (uint32_t)rnd(g, 0x100000); /* astral */
    case 5: {                                           /* edge code points */
        static const uint32_t edge[] = {0, 0x7F, 0x2028, 0x2029, 0xFFFE, 0xFFFF, 0x10FFFF};
        return edge[rnd(g, sizeof edge / sizeof edge[0])];
    }
    default: return 0x20 + (uint32_t)rnd(g, 0x5F);      /* printable ASCII */
    }
}

static size_t utf8_encode(uint32_t cp, char *d)
{
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) { d[0] = (char)(0xC0 | cp >> 6); d[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | cp >> 12); d[1] = (char)(0x80 | ((cp >> 6) & 63));
        d[2] = (char)(0x80 | (cp & 63)); return 3;
    }
    d[0] = (char)(0xF0 | cp >> 18); d[1] = (char)(0x80 | ((cp >> 12) & 63));
    d[2] = (char)(0x80 | ((cp >> 6) & 63)); d[3] = (char)(0x80 | (cp & 63)); return 4;
}

static void noisy_u(gen *g, uint32_t u)
{
    char tmp[8];
    snprintf(tmp, sizeof tmp, rnd(g, 2) ? "\\u%04X" : "\\u%04x", u);
    buf_append(&g->noisy, tmp, 6);
}

/* Random string: canonical bytes into *raw, noisy rendering appended. */
static void random_string(gen *g, buf_t *raw, const char *suffix)
{
    buf_reset(raw);
    buf_append_byte(&g->noisy, '"');
    size_t n = rnd(g, 4) == 0 ? rnd(g, 40) : rnd(g, 6);
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = random_cp(g);
        char enc[4];
        size_t k = utf8_encode(cp, enc);
        buf_append(raw, enc, k);
        const char *shortesc = NULL;
        switch (cp) {
        case '"': shortesc = "\\\""; break;
        case '\\': shortesc = "\\\\"; break;
        case '/': shortesc = rnd(g, 2) ? "\\/" : "/"; break;
        case '\b': shortesc = "\\b"; break;
        case '\f': shortesc = "\\f"; break;
        case '\n': shortesc = "\\n"; break;
        case '\r': shortesc = "\\r"; break;
        case '\t': shortesc = "\\t"; break;
        }
        bool must_escape = cp < 0x20 || cp == '"' || cp == '\\';
        if (rnd(g, 3) == 0 || (must_escape && !shortesc)) {
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                noisy_u(g, 0xD800 | (v >> 10));
                noisy_u(g, 0xDC00 | (v & 0x3FF));
            } else {
                noisy_u(g, cp);
            }
        } else if (shortesc) {
            buf_append_str(&g->noisy, shortesc);
        } else {
            buf_append(&g->noisy, enc, k);
        }
    }
    if (suffix) {
        buf_append_str(raw, suffix);
        buf_append_str(&g->noisy, suffix);
    }
    buf_append_byte(&g->noisy, '"');
}

static void random_number(gen *g)
{
    char t[80];
    size_t n = 0;
    if (rnd(g, 3) == 0)
        t[n++] = '-';
    if (rnd(g, 4) == 0) {
        t[n++] = '0';
    } else {
        size_t digits = 1 + (rnd(g, 5) == 0 ? rnd(g, 30) : rnd(g, 5));
        t[n++] = (char)('1' + rnd(g, 9));
        for (size_t i = 1; i < digits; i++)
            t[n++] = (char)('0' + rnd(g, 10));
    }
    if (rnd(g, 3) == 0) {
        t[n++] = '.';
        size_t digits = 1 + rnd(g, 8);
        for (size_t i = 0; i < digits; i++)
            t[n++] = (char)('0' + rnd(g, 10));
    }
    if (rnd(g, 4) == 0) {
        t[n++] = rnd(g, 2) ? 'e' : 'E';
        if (rnd(g, 2))
            t[n++] = rnd(g, 2) ? '+' : '-';
        size_t digits = 1 + rnd(g, 3);
        for (size_t i = 0; i < digits; i++)
            t[n++] = (char)('0' + rnd(g, 10));
    }
    assert_int_equal(json_write_number_text(&g->w, t, n), DV_OK);
    buf_append(&g->noisy, t, n);
}

static void random_value(gen *g, int depth)
{
    buf_t raw = BUF_INIT;
    ws(g);
    int kind = (int)rnd(g, depth > 6 ? 5 : 7);
    switch (kind) {
    case 0: json_write_null(&g->w); buf_append_str(&g->noisy, "null"); break;
    case 1: {
        bool b = rnd(g, 2);
        json_write_bool(&g->w, b);
        buf_append_str(&g->noisy, b ? "true" : "false");
        break;
    }
    case 2:
    case 3: random_number(g); break;
    case 4:
        random_string(g, &raw, NULL);
        assert_int_equal(json_write_string(&g->w, (char *)raw.data, raw.len), DV_OK);
        break;
    case 5: {
        size_t n = rnd(g, 6);
        json_write_begin_array(&g->w);
        buf_append_byte(&g->noisy, '[');
        ws(g);
        for (size_t i = 0; i < n; i++) {
            if (i) {
                buf_append_byte(&g->noisy, ',');
            }
            random_value(g, depth + 1);
            ws(g);
        }
        json_write_end_array(&g->w);
        buf_append_byte(&g->noisy, ']');
        break;
    }
    default: {
        size_t n = rnd(g, 6);
        json_write_begin_object(&g->w);
        buf_append_byte(&g->noisy, '{');
        ws(g);
        for (size_t i = 0; i < n; i++) {
            char suffix[24];
            snprintf(suffix, sizeof suffix, "#%zu", i); /* unique names unless dups */
            if (i)
                buf_append_byte(&g->noisy, ',');
            ws(g);
            random_string(g, &raw, g->dups ? NULL : suffix);
            assert_int_equal(json_write_key(&g->w, (char *)raw.data, raw.len), DV_OK);
            ws(g);
            buf_append_byte(&g->noisy, ':');
            random_value(g, depth + 1);
            ws(g);
        }
        json_write_end_object(&g->w);
        buf_append_byte(&g->noisy, '}');
        break;
    }
    }
    ws(g);
    buf_free(&raw);
}

static void parse_serialize(json_doc *doc, const buf_t *in, buf_t *out, const char *what, uint64_t seed,
                            long iter)
{
    json_error e = {0, NULL};
    int rc = json_doc_parse(doc, in->data, in->len, 0, &e);
    if (rc)
        fail_msg("seed %llu iter %ld: %s rejected (%s at %zu): %.*s", (unsigned long long)seed, iter,
                 what, e.reason, e.offset, (int)in->len, (char *)in->data);
    assert_int_equal(json_validate(in->data, in->len, 0, NULL), DV_OK);
    buf_reset(out);
    assert_int_equal(json_serialize(json_doc_root(doc), out), DV_OK);
}

static void assert_same(const buf_t *a, const buf_t *b, const char *what, uint64_t seed, long iter)
{
    if (a->len != b->len || memcmp(a->data, b->data, a->len) != 0)
        fail_msg("seed %llu iter %ld: %s\n  %.*s\n  %.*s", (unsigned long long)seed, iter, what,
                 (int)a->len, (char *)a->data, (int)b->len, (char *)b->data);
}

static void test_generated_round_trip(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("json_generated_round_trip");
    long iters = tu_iterations(3000);
    gen g = {{seed}, {0}, BUF_INIT, false, false};
    buf_t canon = BUF_INIT, a = BUF_INIT, b = BUF_INIT;
    json_doc doc = JSON_DOC_INIT;
    for (long it = 0; it < iters; it++) {
        buf_reset(&canon);
        buf_reset(&g.noisy);
        g.dups = it % 4 == 3;
        json_writer_init(&g.w, &canon);
        random_value(&g, 0);
        assert_int_equal(g.w.err, DV_OK);
        parse_serialize(&doc, &canon, &a, "canonical", seed, it);
        parse_serialize(&doc, &g.noisy, &b, "noisy", seed, it);
        if (!g.dups) {
            assert_same(&canon, &a, "canonical output is not a fixed point", seed, it);
            assert_same(&canon, &b, "noisy input did not canonicalise", seed, it);
        } else {
            /* duplicates collapse, identically for both renderings */
            assert_same(&a, &b, "renderings disagree", seed, it);
            parse_serialize(&doc, &a, &b, "deduplicated", seed, it);
            assert_same(&a, &b, "deduplicated output is not a fixed point", seed, it);
        }
    }
    json_doc_free(&doc);
    buf_free(&canon);
    buf_free(&a);
    buf_free(&b);
    buf_free(&g.noisy);
}

static void test_mutations_parser_agrees_with_validator(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("json_mutations");
    long iters = tu_iterations(20000);
    gen g = {{seed}, {0}, BUF_INIT, false, false};
    buf_t canon = BUF_INIT, m = BUF_INIT, a = BUF_INIT, b = BUF_INIT;
    json_doc doc = JSON_DOC_INIT;
    static const uint8_t interesting[] = {'"', '\\', '[', ']', '{', '}', ',', ':', '0', '-', '.', 'e',
                                          ' ', 0, 0x1F, 0x80, 0xC0, 0xED, 0xF4, 0xFF, 'u', 'D'};
    long accepted = 0;
    for (long it = 0; it < iters; it++) {
        if (it % 50 == 0) {
            buf_reset(&canon);
            buf_reset(&g.noisy);
            json_writer_init(&g.w, &canon);
            random_value(&g, 0);
        }
        const buf_t *src = rnd(&g, 2) ? &canon : &g.noisy;
        buf_reset(&m);
        buf_append(&m, src->data, src->len);
        int nmut = 1 + (int)rnd(&g, 3);
        for (int k = 0; k < nmut && m.len; k++) {
            size_t pos = rnd(&g, m.len);
            uint8_t c = interesting[rnd(&g, sizeof interesting)];
            switch (rnd(&g, 4)) {
            case 0: m.data[pos] = c; break;
            case 1: memmove(m.data + pos, m.data + pos + 1, m.len - pos - 1); m.len--; break;
            case 2:
                buf_append_byte(&m, 0);
                memmove(m.data + pos + 1, m.data + pos, m.len - pos - 1);
                m.data[pos] = c;
                break;
            default: m.len = pos; break;
            }
        }
        json_error e1 = {0, NULL}, e2 = {0, NULL};
        int r1 = json_doc_parse(&doc, m.data, m.len, 0, &e1);
        int r2 = json_validate(m.data, m.len, 0, &e2);
        if (r1 != r2 || (r1 && e1.offset != e2.offset))
            fail_msg("seed %llu iter %ld: parse %d@%zu validate %d@%zu", (unsigned long long)seed, it,
                     r1, e1.offset, r2, e2.offset);
        if (r1) {
            assert_true(e1.offset <= m.len);
            continue;
        }
        accepted++;
        buf_reset(&a);
        assert_int_equal(json_serialize(json_doc_root(&doc), &a), DV_OK);
        parse_serialize(&doc, &a, &b, "serialised mutation", seed, it);
        assert_same(&a, &b, "mutation output is not a fixed point", seed, it);
    }
    assert_true(accepted > 0);
    json_doc_free(&doc);
    buf_free(&canon);
    buf_free(&m);
    buf_free(&a);
    buf_free(&b);
    buf_free(&g.noisy);
}

static bool skip_underscore(const char *name, size_t len, void *ctx)
{
    (void)ctx;
    return len > 0 && name[0] == '_';
}

/* [null, obj minus the skipped members] through the public writer calls, one
 * member at a time: what json_write_object_filtered must write, whether it
 * copies the input (write_members_verbatim) or re-serialises. */
static void filtered_oracle(const json_val *obj, json_key_pred pred, buf_t *out)
{
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_array(&w);
    json_write_null(&w);
    json_write_begin_object(&w);
    json_iter it = json_iter_begin(obj);
    const json_val *k, *v;
    while (json_iter_member(&it, &k, &v)) {
        size_t n;
        const char *s = json_str(k, &n);
        if (pred && pred(s, n, NULL))
            continue;
        json_write_key(&w, s, n);
        json_write_value(&w, v);
    }
    json_write_end_object(&w);
    json_write_end_array(&w);
    assert_int_equal(w.err, DV_OK);
}

static void filtered_actual(const json_val *obj, json_key_pred pred, buf_t *out)
{
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_array(&w);
    json_write_null(&w);
    assert_int_equal(json_write_object_filtered(&w, obj, pred, NULL), DV_OK);
    json_write_end_array(&w);
    assert_int_equal(w.err, DV_OK);
}

/* Parses in and compares json_write_object_filtered with the oracle, with
 * and without skipping '_' members. */
static void check_filtered(json_doc *doc, const buf_t *in, uint64_t seed, long it)
{
    json_error e = {0, NULL};
    if (json_doc_parse(doc, in->data, in->len, 0, &e) != DV_OK)
        fail_msg("seed %llu iter %ld: rejected (%s): %.*s", (unsigned long long)seed, it, e.reason, (int)in->len,
                 (char *)in->data);
    buf_t want = BUF_INIT, got = BUF_INIT;
    for (int k = 0; k < 2; k++) {
        json_key_pred pred = k ? skip_underscore : NULL;
        buf_reset(&want);
        buf_reset(&got);
        filtered_oracle(json_doc_root(doc), pred, &want);
        filtered_actual(json_doc_root(doc), pred, &got);
        assert_same(&want, &got, "filtered copy differs from the oracle", seed, it);
    }
    buf_free(&want);
    buf_free(&got);
}

/* 3. json_write_object_filtered copies the input text when it is already
 * the output.  Random objects, canonical (copied) and noisy (re-serialised)
 * renderings, half of them with strings that need no escaping, with
 * CouchDB-style '_' members in front (skipped, then the copy starts after
 * them), behind (no copy) or none, must all give what the member-by-member
 * oracle writes. */
static void test_filtered_copy_agrees(void **state)
{
    (void)state;
    static const char *const front[] = {"", "\"_id\":\"d\",", "\"_id\":\"d\",\"_rev\":\"1-a\","};
    uint64_t seed = tu_seed("json_filtered_copy");
    gen g = {{seed}, {0}, BUF_INIT, false, false};
    buf_t canon = BUF_INIT, in = BUF_INIT;
    json_doc doc = JSON_DOC_INIT;
    for (long it = 0, iters = tu_iterations(3000); it < iters; it++) {
        do {
            buf_reset(&canon);
            buf_reset(&g.noisy);
            g.dups = it % 5 == 4;
            g.plain = it % 2 == 0;
            json_writer_init(&g.w, &canon);
            random_value(&g, 0);
        } while (canon.len < 3 || canon.data[0] != '{');
        for (int r = 0; r < 2; r++) {
            const buf_t *src = r ? &g.noisy : &canon;
            const uint8_t *body = memchr(src->data, '{', src->len) + 1; /* noisy may open with whitespace */
            size_t rest = src->len - (size_t)(body - src->data);
            for (int f = 0; f < 4; f++) {
                buf_reset(&in);
                buf_append_byte(&in, '{');
                if (f < 3)
                    buf_append_str(&in, front[f]);
                buf_append(&in, body, rest);
                if (f == 3) { /* a skipped member last: no copy */
                    while (in.len && in.data[in.len - 1] != '}')
                        in.len--;
                    in.len--;
                    buf_append_str(&in, ",\"_z\":1}");
                }
                check_filtered(&doc, &in, seed, it);
            }
        }
    }
    json_doc_free(&doc);
    buf_free(&canon);
    buf_free(&in);
    buf_free(&g.noisy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_round_trip),
        cmocka_unit_test(test_mutations_parser_agrees_with_validator),
        cmocka_unit_test(test_filtered_copy_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
