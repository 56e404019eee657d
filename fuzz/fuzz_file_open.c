/*
 * fuzz_file_open.c — libFuzzer target: the input is the bytes of a database
 * file.  store_file_open must either refuse it (DV_ERR_CORRUPT) or open it,
 * and then every read at a pointer taken from the input must return a
 * verified record or an error: never crash, hang, leak or return garbage.
 *
 * The bytes live in a memfd reached through /proc/self/fd, so the real POSIX
 * VFS is exercised with no disk I/O.  After the reads, an append and a commit
 * check that a file opened from arbitrary bytes stays writable and readable.
 */
#include "base/buf.h"
#include "base/log.h"
#include "base/status.h"
#include "store/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_fd = -1;
static char fuzz_path[64];

static void read_at(store_file *f, uint64_t off, uint32_t len, buf_t *out)
{
    int rc = store_file_read(f, (store_ptr){off, len}, out);
    if (rc == DV_OK && out->len != len)
        abort(); /* a successful read returns exactly the pointer's size */
    if (rc != DV_OK && out->len != 0)
        abort(); /* a failed read returns nothing */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_fd < 0) {
        fuzz_fd = memfd_create("fuzz_file_open", 0);
        if (fuzz_fd < 0)
            abort();
        snprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d", fuzz_fd);
        log_set_level(LOG_NONE);
    }
    if (ftruncate(fuzz_fd, 0) != 0 || (size && pwrite(fuzz_fd, data, size, 0) != (ssize_t)size))
        abort();

    store_file *f = NULL;
    buf_t h = BUF_INIT, out = BUF_INIT;
    if (store_file_open(store_vfs_posix(), fuzz_path, 0, &f, &h) != DV_OK)
        goto done;
    uint64_t committed = store_file_committed_size(f);
    if (committed > size || store_file_size(f) != committed)
        abort(); /* open never invents bytes */

    /* Walk the records from the prologue on, using the stored lengths. */
    for (uint64_t off = 64; off + 12 <= committed;) {
        uint32_t len = dv_load_u32le(data + off);
        read_at(f, off, len, &out);
        if (out.len != len)
            break;
        off += 12 + (uint64_t)len;
    }
    /* Pointers made of input bytes, near and far. */
    for (size_t i = 0; i + 12 <= size && i < 12 * 64; i += 12) {
        uint64_t off = dv_load_u64le(data + i);
        uint32_t len = dv_load_u32le(data + i + 8);
        read_at(f, off, len, &out);
        read_at(f, off % (committed + 16), len % 4096, &out);
    }
    /* The opened file accepts new records and commits. */
    store_ptr p;
    if (store_file_append(f, data, size < 100 ? size : 100, &p) != DV_OK ||
        store_file_commit(f, "fuzz", 4, 0) != DV_OK)
        abort();
    read_at(f, p.off, p.size, &out);
    if (out.len != p.size || (p.size && memcmp(out.data, data, p.size) != 0))
        abort();
    if (store_file_close(f) != DV_OK)
        abort();
    f = NULL;
    /* ... and reopening finds that commit. */
    if (store_file_open(store_vfs_posix(), fuzz_path, 0, &f, &h) != DV_OK || h.len != 4 ||
        memcmp(h.data, "fuzz", 4) != 0)
        abort();
done:
    if (f)
        store_file_close(f);
    buf_free(&h);
    buf_free(&out);
    return 0;
}
