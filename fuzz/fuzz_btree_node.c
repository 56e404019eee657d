/*
 * fuzz_btree_node.c — libFuzzer target: arbitrary bytes as B+tree node
 * records and roots.  The decoder must accept them or say DV_ERR_CORRUPT,
 * and every tree operation over a file built from them (get, cursors both
 * ways with skips, range reduce, modify, then a scan of the result) must
 * return rows or an error: never crash, leak, or loop.
 *
 * Input: u8 flags | u8 nrec | nrec x (u16le len | len bytes) | tail.
 * The records are appended in order to a fresh store_file (in a memfd, via
 * the real POSIX VFS), so an inner record can point at earlier ones.  The
 * root is built from the last record (its level and count, so the root's
 * claims match) or, with flag bit 0, taken raw from the tail.  The tail also
 * supplies the probe keys.  Flags: bit 1 reverse order, bit 2 a sum
 * reduction, bit 3 a node cache.
 */
#include "base/buf.h"
#include "base/log.h"
#include "base/status.h"
#include "store/btree.h"
#include "store/btree_node.h"
#include "store/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_fd = -1;
static char fuzz_path[64];
static uint8_t prologue[64]; /* of a freshly created file, reused per input */

/* store_file creation syncs the directory, which /proc/self/fd has not:
 * create one real file once and keep its prologue. */
static void make_prologue(void)
{
    char dir[] = "/tmp/fuzz_btree_XXXXXX", path[64];
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/t.db", dir);
    store_file *f;
    buf_t h = BUF_INIT;
    if (store_file_open(store_vfs_posix(), path, STORE_FILE_CREATE, &f, &h) != DV_OK || store_file_close(f) != DV_OK)
        abort();
    FILE *fp = fopen(path, "rb");
    if (!fp || fread(prologue, 1, sizeof prologue, fp) != sizeof prologue)
        abort();
    fclose(fp);
    unlink(path);
    rmdir(dir);
    buf_free(&h);
}

static int rev_cmp(void *ctx, store_slice a, store_slice b)
{
    (void)ctx;
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    return -(c ? c : (a.n < b.n ? -1 : a.n > b.n));
}

static int sum_reduce(void *ctx, const store_slice *k, const store_slice *v, size_t n, buf_t *out)
{
    (void)ctx;
    (void)k;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i].n;
    return buf_put_u64le(out, s);
}

static int sum_rereduce(void *ctx, const store_slice *r, size_t n, buf_t *out)
{
    (void)ctx;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].n != 8)
            return DV_ERR_CORRUPT; /* a stored reduction is input too */
        s += dv_load_u64le(r[i].p);
    }
    return buf_put_u64le(out, s);
}

static void scan(const store_btree *t, const uint8_t *root, size_t len, int desc, uint64_t skip_every)
{
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    r.descending = desc;
    store_btree_cursor *c;
    if (store_btree_cursor_open(t, root, len, &r, &c) != DV_OK)
        return;
    store_slice k, v;
    uint64_t rows = 0, limit = store_btree_root_count(root, len) + 1;
    int rc;
    while ((rc = store_btree_cursor_next(c, &k, &v)) == 1) {
        if (++rows > limit)
            abort(); /* more rows than the root counts: a loop */
        if (skip_every && rows % skip_every == 0 && store_btree_cursor_skip(c, skip_every) != DV_OK)
            break;
    }
    store_btree_cursor_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_fd < 0) {
        fuzz_fd = memfd_create("fuzz_btree_node", 0);
        if (fuzz_fd < 0)
            abort();
        snprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d", fuzz_fd);
        log_set_level(LOG_NONE);
        make_prologue();
    }
    if (size < 2)
        return 0;
    if (ftruncate(fuzz_fd, 0) != 0 || pwrite(fuzz_fd, prologue, sizeof prologue, 0) != (ssize_t)sizeof prologue)
        abort();
    uint8_t flags = data[0];
    size_t nrec = data[1] % 9, pos = 2;
    static const store_btree_ops rev_ops = {rev_cmp, NULL, NULL, NULL};
    static const store_btree_ops sum_ops = {NULL, sum_reduce, sum_rereduce, NULL};
    static const store_btree_ops rev_sum_ops = {rev_cmp, sum_reduce, sum_rereduce, NULL};
    const store_btree_ops *ops = (flags & 2) ? ((flags & 4) ? &rev_sum_ops : &rev_ops) : ((flags & 4) ? &sum_ops : NULL);

    store_file *f = NULL;
    store_btree_cache *cache = NULL;
    buf_t h = BUF_INIT, root = BUF_INIT, nr = BUF_INIT, val = BUF_INIT;
    if (store_file_open(store_vfs_posix(), fuzz_path, 0, &f, &h) != DV_OK)
        abort();
    if ((flags & 8) && store_btree_cache_new(1 << 16, &cache) != DV_OK)
        abort();
    store_btree t = {f, cache, ops, 256};

    store_ptr last = STORE_PTR_NULL;
    for (size_t i = 0; i < nrec && pos + 2 <= size; i++) {
        size_t len = data[pos] | (size_t)data[pos + 1] << 8;
        pos += 2;
        if (len > size - pos)
            len = size - pos;
        if (store_file_append(f, data + pos, len, &last) != DV_OK)
            abort();
        /* The decoder alone, at the record's real offset. */
        bt_node *nd = NULL;
        const char *why;
        if (bt_node_decode(data + pos, len, last.off, ops, &nd, &why) == DV_OK) {
            if (nd->n == 0 || nd->count == 0)
                abort();
            bt_node_release(nd);
        }
        pos += len;
    }
    store_slice tail = {data + pos, size - pos};
    if (flags & 1) {
        buf_append(&root, tail.p, tail.n);
    } else if (!store_ptr_is_null(last)) {
        buf_t rec = BUF_INIT;
        bt_node *nd = NULL;
        const char *why;
        if (store_file_read(f, last, &rec) == DV_OK &&
            bt_node_decode(rec.data, rec.len, last.off, ops, &nd, &why) == DV_OK) {
            bt_root_encode(&root, nd->level, last, nd->count, (store_slice){NULL, 0});
            bt_node_release(nd);
        }
        buf_free(&rec);
    }

    store_slice key = {tail.p, tail.n < 8 ? tail.n : 8};
    store_btree_get(&t, root.data, root.len, key, &val);
    scan(&t, root.data, root.len, 0, 0);
    scan(&t, root.data, root.len, 1, 3);
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    r.has_start = 1;
    r.start = key;
    r.descending = (flags >> 4) & 1;
    r.start_inclusive = (flags >> 5) & 1;
    uint64_t count;
    store_btree_reduce_range(&t, root.data, root.len, &r, &count, &val);

    /* Modifications of the decoded tree, then a scan of what they built
     * (a tree whose levels disagree undetectably may misplace rows, but
     * must still never crash). */
    store_btree_action put = {STORE_BTREE_PUT, key, tail};
    store_btree_action del = {STORE_BTREE_DEL, {tail.p, tail.n < 4 ? tail.n : 4}, {NULL, 0}};
    if (store_btree_modify(&t, root.data, root.len, &put, 1, &nr) == DV_OK) {
        scan(&t, nr.data, nr.len, 0, 2);
        buf_reset(&root);
        if (store_btree_modify(&t, nr.data, nr.len, &del, 1, &root) == DV_OK)
            scan(&t, root.data, root.len, 1, 0);
    }

    store_btree_cache_forget(cache, f);
    store_btree_cache_free(cache);
    store_file_close(f);
    buf_free(&h);
    buf_free(&root);
    buf_free(&nr);
    buf_free(&val);
    return 0;
}
