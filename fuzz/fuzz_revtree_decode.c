/*
 * fuzz_revtree_decode.c — libFuzzer target for revtree_decode.
 *
 * Any byte string must either be refused with DV_ERR_CORRUPT or decode to a
 * tree that satisfies the invariants; a decoded tree re-encodes to exactly
 * the input (the encoding is canonical) and decodes again to the same tree.
 * The tree is then exercised (winner, leaves, stem, a merge), since a
 * corrupt tree accepted by decode would show up as a crash there.
 * Seed corpus: fuzz/corpus/fuzz_revtree_decode/.
 */
#include "base/status.h"
#include "store/revtree.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    revtree t, u;
    revtree_init(&t);
    revtree_init(&u);
    buf_t b = BUF_INIT;
    int rc = revtree_decode(&t, data, size);
    if (rc != DV_OK) {
        if (rc != DV_ERR_CORRUPT)
            abort();
        goto done;
    }
    if (revtree_encode(&t, &b) != DV_OK || b.len != size || memcmp(b.data, data, size) != 0)
        abort();
    if (revtree_decode(&u, b.data, b.len) != DV_OK || !revtree_equal(&t, &u))
        abort();
    for (uint32_t i = 0; i < t.n; i++)
        if (t.nodes[i].parent != REVTREE_NONE &&
            (t.nodes[i].parent >= i || t.nodes[t.nodes[i].parent].rev.pos + 1 != t.nodes[i].rev.pos))
            abort();

    uint32_t *idx = malloc(((size_t)t.n + 1) * sizeof *idx);
    if (!idx)
        goto done;
    uint32_t n = 0;
    revtree_leaves(&t, idx, &n);
    if ((t.n == 0) != (n == 0) || (n && idx[0] != revtree_winner(&t)))
        abort();
    if (t.n && revtree_path(&t, t.n - 1, idx) == 0)
        abort();
    if (t.n) {
        /* Extend the winner by a replicated edit, then stem. */
        store_rev path[2];
        path[1] = t.nodes[revtree_winner(&t)].rev;
        path[0] = path[1];
        if (path[0].pos < UINT64_MAX) {
            path[0].pos++;
            int added;
            int existed = revtree_find(&t, &path[0]) != REVTREE_NONE;
            if (revtree_merge_path(&t, path, 2, NULL, &added, NULL) != DV_OK || added == existed)
                abort();
        }
    }
    if (revtree_stem(&t, 1 + size % 4) != DV_OK)
        abort();
    free(idx);
done:
    buf_free(&b);
    revtree_free(&t);
    revtree_free(&u);
    return 0;
}
