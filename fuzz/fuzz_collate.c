/*
 * fuzz_collate.c — libFuzzer target for json/collate.c, the view key compare.
 *
 * Input: byte 0 and byte 1 give the lengths of parts a and b (modulo what is
 * left); part c is the rest.  Checked on every input, for both collations:
 *   - the text form on the raw bytes: a result in {-1, 0, 1}, x vs x is 0,
 *     and swapping the sides swaps the sign (valid JSON or not);
 *   - the string compare on the raw bytes matches ICU called as CouchDB
 *     calls it (uiter_setUTF8 + ucol_strcollIter), ill-formed UTF-8 included,
 *     which checks the ICU-free ASCII path on whatever the fuzzer finds;
 *   - parts that parse as JSON: DOM compares are antisymmetric and
 *     reflexive, the text form over their canonical serialisation gives the
 *     DOM's answer, and the three values are ordered transitively.
 * ASan/UBSan catch reads past the given lengths.
 */
#include "base/status.h"
#include "json/collate.h"
#include "json/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unicode/ucol.h>
#include <unicode/uiter.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static UCollator *ref;

static void check_text(json_collation c, const uint8_t *x, size_t xn, const uint8_t *y, size_t yn)
{
    int r1 = json_collate_text_as(c, x, xn, y, yn), r2 = json_collate_text_as(c, y, yn, x, xn);
    if (r1 < -1 || r1 > 1 || r1 != -r2 || json_collate_text_as(c, x, xn, x, xn) != 0)
        abort();
}

static void check_strings(const uint8_t *x, size_t xn, const uint8_t *y, size_t yn)
{
    if (!ref) {
        UErrorCode st = U_ZERO_ERROR;
        ref = ucol_open("", &st);
        if (U_FAILURE(st))
            abort();
    }
    UCharIterator ix, iy;
    UErrorCode st = U_ZERO_ERROR;
    uiter_setUTF8(&ix, (const char *)x, (int32_t)xn);
    uiter_setUTF8(&iy, (const char *)y, (int32_t)yn);
    int want = ucol_strcollIter(ref, &ix, &iy, &st);
    if (U_FAILURE(st) || json_collate_strings((const char *)x, xn, (const char *)y, yn) != want)
        abort();
}

typedef struct val {
    json_doc doc;
    buf_t canon;
    bool ok;
} val;

static int dom(json_collation c, const val *x, const val *y)
{
    return json_collate_as(c, json_doc_root(&x->doc), json_doc_root(&y->doc));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 4096)
        return 0;
    size_t rest = size - 2, an = data[0] % (rest + 1), bn = data[1] % (rest - an + 1);
    const uint8_t *p[3] = {data + 2, data + 2 + an, data + 2 + an + bn};
    size_t n[3] = {an, bn, rest - an - bn};

    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 3; i++)
            for (int j = i; j < 3; j++)
                check_text((json_collation)c, p[i], n[i], p[j], n[j]);
    check_strings(p[0], n[0], p[1], n[1]);

    val v[3];
    for (int i = 0; i < 3; i++) {
        json_doc_init(&v[i].doc);
        buf_init(&v[i].canon);
        v[i].ok = json_doc_parse(&v[i].doc, p[i], n[i], 64, NULL) == DV_OK;
        if (v[i].ok) {
            json_writer w;
            json_writer_init(&w, &v[i].canon);
            if (json_write_value(&w, json_doc_root(&v[i].doc)) != DV_OK)
                abort();
        }
    }
    for (int c = 0; c < 2; c++) {
        json_collation cc = (json_collation)c;
        for (int i = 0; i < 3; i++) {
            if (!v[i].ok)
                continue;
            if (dom(cc, &v[i], &v[i]) != 0)
                abort();
            for (int j = 0; j < 3; j++) {
                if (!v[j].ok)
                    continue;
                int r = dom(cc, &v[i], &v[j]);
                if (r != -dom(cc, &v[j], &v[i]) ||
                    r != json_collate_text_as(cc, v[i].canon.data, v[i].canon.len, v[j].canon.data,
                                              v[j].canon.len))
                    abort();
                for (int k = 0; k < 3; k++) {
                    if (!v[k].ok)
                        continue;
                    int s = dom(cc, &v[j], &v[k]), t = dom(cc, &v[i], &v[k]);
                    if (r <= 0 && s <= 0 && (t > 0 || (t == 0 && (r < 0 || s < 0))))
                        abort(); /* i <= j <= k must give i <= k, strictly if either is */
                }
            }
        }
    }
    for (int i = 0; i < 3; i++) {
        json_doc_free(&v[i].doc);
        buf_free(&v[i].canon);
    }
    return 0;
}
