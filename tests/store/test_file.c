/*
 * test_file.c — the append-only record file (src/store/file.c) on real files
 * and on the fault-injecting VFS.
 *
 * What a user of store_file relies on and what these tests check:
 *   - every appended record reads back byte for byte, before and after
 *     commit and after reopening;
 *   - reopen yields the last committed header, whatever torn or garbage tail
 *     follows it, and drops the uncommitted tail;
 *   - any flipped byte or wrong pointer is DV_ERR_CORRUPT, never garbage;
 *   - a header copied into user data is never taken for a header;
 *   - after a power loss in any durability mode the newest synced commit
 *     survives and whatever commit is found has intact records behind it;
 *   - a failed write or sync poisons the handle;
 *   - reads through the mapping keep at most the resident budget mapped,
 *     and a hot set within it is never dropped;
 *   - the zeros written ahead of small synced commits are never taken for
 *     data, and a closed file ends at its last commit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/status.h"
#include "store/file.h"
#include "store/faultvfs.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------- */

static void fill_random(tu_rng *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)tu_rand(r);
}

static void slurp(const char *path, buf_t *out)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    buf_reset(out);
    uint8_t tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
        assert_int_equal(buf_append(out, tmp, n), DV_OK);
    fclose(fp);
}

static void spit(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static uint64_t disk_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static void expect_record(store_file *f, store_ptr p, const void *want, size_t len)
{
    buf_t b = BUF_INIT;
    assert_int_equal(store_file_read(f, p, &b), DV_OK);
    assert_int_equal(b.len, len);
    if (len)
        assert_memory_equal(b.data, want, len);
    buf_free(&b);
}

static void expect_corrupt(store_file *f, store_ptr p)
{
    buf_t b = BUF_INIT;
    assert_int_equal(buf_append(&b, "junk", 4), DV_OK);
    assert_int_equal(store_file_read(f, p, &b), DV_ERR_CORRUPT);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

typedef struct fixture {
    char *dir;
    char *path;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    fx->dir = tu_mkdtemp("test_file");
    fx->path = tu_path(fx->dir, "db.dvn");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    tu_rmtree(fx->dir);
    free(fx->dir);
    free(fx->path);
    free(fx);
    log_set_level(LOG_INFO);
    return 0;
}

/* ---- basic behaviour on real files ------------------------------------ */

static void test_open_errors(void **state)
{
    fixture *fx = *state;
    store_vfs *vfs = store_vfs_posix();
    store_file *f = NULL;
    buf_t h = BUF_INIT;

    assert_int_equal(store_file_open(vfs, fx->path, 0, &f, &h), DV_ERR_NOTFOUND);
    assert_int_equal(store_file_open(vfs, fx->path, STORE_FILE_CREATE | STORE_FILE_EXCL, &f, &h), DV_OK);
    assert_int_equal(h.len, 0);
    assert_int_equal(store_file_committed_size(f), store_file_size(f));
    assert_string_equal(store_file_path(f), fx->path);
    assert_int_equal(store_file_close(f), DV_OK);
    assert_int_equal(store_file_open(vfs, fx->path, STORE_FILE_CREATE | STORE_FILE_EXCL, &f, &h), DV_ERR_EXISTS);
    /* A file that is not ours, or lost its prologue. */
    log_set_level(LOG_NONE);
    spit(fx->path, "hello, this is not a divan database file at all; no, not at all", 64);
    assert_int_equal(store_file_open(vfs, fx->path, STORE_FILE_CREATE, &f, &h), DV_ERR_CORRUPT);
    spit(fx->path, "", 0);
    assert_int_equal(store_file_open(vfs, fx->path, 0, &f, &h), DV_ERR_CORRUPT);
    /* A prologue of zeros (size reached the disk, data did not) is refused
     * without CREATE and re-initialised with it. */
    uint8_t zeros[64] = {0};
    spit(fx->path, zeros, sizeof(zeros));
    assert_int_equal(store_file_open(vfs, fx->path, 0, &f, &h), DV_ERR_CORRUPT);
    assert_int_equal(store_file_open(vfs, fx->path, STORE_FILE_CREATE, &f, &h), DV_OK);
    assert_int_equal(store_file_close(f), DV_OK);
    assert_int_equal(store_file_open(vfs, fx->path, 0, &f, &h), DV_OK);
    assert_int_equal(store_file_close(f), DV_OK);
    spit(fx->path, "", 0);
    /* An empty file with CREATE is initialised (a crash during creation). */
    assert_int_equal(store_file_open(vfs, fx->path, STORE_FILE_CREATE, &f, &h), DV_OK);
    assert_int_equal(store_file_close(f), DV_OK);
    assert_int_equal(store_file_open(vfs, fx->path, 0, &f, &h), DV_OK);
    assert_int_equal(store_file_close(f), DV_OK);
    buf_free(&h);
}

static void test_roundtrip_sizes(void **state)
{
    fixture *fx = *state;
    static const size_t sizes[] = {0, 1, 2, 11, 12, 13, 100, 4095, 4096, 4097, 65536,
                                   256 * 1024 - 12, 256 * 1024, 1 << 20, 3 * (1 << 20) + 5};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    tu_rng rng = {tu_seed("test_roundtrip_sizes")};
    uint8_t *data[N];
    store_ptr ptrs[N];
    store_file *f;
    buf_t h = BUF_INIT;

    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, &h), DV_OK);
    for (int i = 0; i < N; i++) {
        data[i] = malloc(sizes[i] + 1);
        fill_random(&rng, data[i], sizes[i]);
        uint64_t before = store_file_size(f);
        assert_int_equal(store_file_append(f, data[i], sizes[i], &ptrs[i]), DV_OK);
        assert_int_equal(ptrs[i].off, before);
        assert_int_equal(ptrs[i].size, sizes[i]);
        assert_true(store_file_size(f) > before + sizes[i]);
        expect_record(f, ptrs[i], data[i], sizes[i]); /* before any commit */
    }
    for (int i = 0; i < N; i++)
        expect_record(f, ptrs[i], data[i], sizes[i]);
    assert_int_equal(store_file_commit(f, "one", 3, 1), DV_OK);
    assert_int_equal(store_file_committed_size(f), store_file_size(f));
    for (int i = 0; i < N; i++)
        expect_record(f, ptrs[i], data[i], sizes[i]);
    uint64_t committed = store_file_committed_size(f);
    assert_int_equal(store_file_close(f), DV_OK);
    assert_int_equal(disk_size(fx->path), committed);

    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
    assert_int_equal(h.len, 3);
    assert_memory_equal(h.data, "one", 3);
    assert_int_equal(store_file_committed_size(f), committed);
    for (int i = 0; i < N; i++)
        expect_record(f, ptrs[i], data[i], sizes[i]);
    assert_int_equal(store_file_close(f), DV_OK);
    for (int i = 0; i < N; i++)
        free(data[i]);
    buf_free(&h);
}

/* Records smaller than the write buffer stay in memory until commit, and
 * reads see them there. */
static void test_buffered_reads(void **state)
{
    fixture *fx = *state;
    store_file *f;
    store_ptr ptrs[200];
    char rec[64];

    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, NULL), DV_OK);
    uint64_t start = disk_size(fx->path);
    for (int i = 0; i < 200; i++) {
        int n = snprintf(rec, sizeof(rec), "record number %d", i);
        assert_int_equal(store_file_append(f, rec, (size_t)n, &ptrs[i]), DV_OK);
    }
    assert_int_equal(disk_size(fx->path), start); /* nothing written yet */
    for (int i = 199; i >= 0; i--) {
        int n = snprintf(rec, sizeof(rec), "record number %d", i);
        expect_record(f, ptrs[i], rec, (size_t)n);
    }
    /* Uncommitted records do not survive a reopen. */
    assert_int_equal(store_file_close(f), DV_OK);
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, NULL), DV_OK);
    assert_int_equal(store_file_size(f), start);
    log_set_level(LOG_NONE);
    expect_corrupt(f, ptrs[0]);
    assert_int_equal(store_file_close(f), DV_OK);
}

static void test_reopen_finds_last_header(void **state)
{
    fixture *fx = *state;
    tu_rng rng = {tu_seed("test_reopen_finds_last_header")};
    store_file *f;
    buf_t h = BUF_INIT;
    char hdr[64];
    store_ptr last = STORE_PTR_NULL;
    uint8_t payload[3000];

    for (int round = 0; round < 20; round++) {
        assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, &h), DV_OK);
        if (round == 0) {
            assert_int_equal(h.len, 0);
        } else {
            int n = snprintf(hdr, sizeof(hdr), "header %d", round - 1);
            assert_int_equal(h.len, (size_t)n);
            assert_memory_equal(h.data, hdr, (size_t)n);
            expect_record(f, last, payload, last.size);
        }
        /* Several commits per round, with both sync modes; only the last counts. */
        for (int c = 0; c < 3; c++) {
            size_t len = (size_t)tu_rand_below(&rng, sizeof(payload));
            fill_random(&rng, payload, len);
            assert_int_equal(store_file_append(f, payload, len, &last), DV_OK);
            int n = snprintf(hdr, sizeof(hdr), "header %d", round);
            assert_int_equal(store_file_commit(f, hdr, (size_t)n, (int)(tu_rand(&rng) & 1)), DV_OK);
        }
        assert_int_equal(store_file_close(f), DV_OK);
    }
    buf_free(&h);
}

/* The last commit torn at every byte: reopen finds the previous commit. */
static void test_torn_tail_every_offset(void **state)
{
    fixture *fx = *state;
    tu_rng rng = {tu_seed("test_torn_tail_every_offset")};
    store_file *f;
    buf_t h = BUF_INIT, image = BUF_INIT, torn = BUF_INIT;
    store_ptr a1, a2, b1;
    uint8_t garbage[200];

    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, NULL), DV_OK);
    assert_int_equal(store_file_append(f, "alpha", 5, &a1), DV_OK);
    assert_int_equal(store_file_append(f, "", 0, &a2), DV_OK);
    assert_int_equal(store_file_commit(f, "commit A", 8, 1), DV_OK);
    uint64_t end_a = store_file_committed_size(f);
    assert_int_equal(store_file_append(f, "bravo bravo", 11, &b1), DV_OK);
    assert_int_equal(store_file_commit(f, "commit B, a longer header payload", 33, 1), DV_OK);
    uint64_t end_b = store_file_committed_size(f);
    assert_int_equal(store_file_close(f), DV_OK);
    slurp(fx->path, &image);
    assert_int_equal(image.len, end_b);

    log_set_level(LOG_NONE);
    for (uint64_t cut = end_a; cut < end_b; cut++) {
        for (int variant = 0; variant < 3; variant++) {
            buf_reset(&torn);
            assert_int_equal(buf_append(&torn, image.data, cut), DV_OK);
            if (variant == 1) { /* garbage after the cut */
                size_t n = 1 + tu_rand_below(&rng, sizeof(garbage));
                fill_random(&rng, garbage, n);
                /* Garbage that starts with the byte cut off could restore
                 * commit B (1 run in 256 at the last offset): it must differ. */
                if (garbage[0] == image.data[cut])
                    garbage[0] ^= 0xff;
                assert_int_equal(buf_append(&torn, garbage, n), DV_OK);
            } else if (variant == 2) { /* zeros after the cut, as a lost block */
                memset(garbage, 0, sizeof(garbage));
                assert_int_equal(buf_append(&torn, garbage, end_b - cut + 10), DV_OK);
            }
            spit(fx->path, torn.data, torn.len);
            assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
            assert_int_equal(h.len, 8);
            assert_memory_equal(h.data, "commit A", 8);
            assert_int_equal(store_file_committed_size(f), end_a);
            expect_record(f, a1, "alpha", 5);
            expect_record(f, a2, "", 0);
            expect_corrupt(f, b1); /* its bytes are gone */
            /* Appending continues right after commit A. */
            store_ptr n1;
            assert_int_equal(store_file_append(f, "charlie", 7, &n1), DV_OK);
            assert_int_equal(n1.off, end_a);
            assert_int_equal(store_file_commit(f, "commit C", 8, 1), DV_OK);
            assert_int_equal(store_file_close(f), DV_OK);
            assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
            assert_int_equal(h.len, 8);
            assert_memory_equal(h.data, "commit C", 8);
            expect_record(f, n1, "charlie", 7);
            expect_record(f, a1, "alpha", 5);
            assert_int_equal(store_file_close(f), DV_OK);
        }
    }
    /* The whole of B plus garbage: B is found. */
    buf_reset(&torn);
    assert_int_equal(buf_append(&torn, image.data, image.len), DV_OK);
    fill_random(&rng, garbage, sizeof(garbage));
    assert_int_equal(buf_append(&torn, garbage, sizeof(garbage)), DV_OK);
    spit(fx->path, torn.data, torn.len);
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
    assert_int_equal(h.len, 33);
    expect_record(f, b1, "bravo bravo", 11);
    assert_int_equal(store_file_close(f), DV_OK);
    assert_int_equal(disk_size(fx->path), end_b); /* the garbage was dropped */
    buf_free(&h);
    buf_free(&image);
    buf_free(&torn);
}

static void test_flipped_bytes_and_bad_pointers(void **state)
{
    fixture *fx = *state;
    store_file *f;
    buf_t h = BUF_INIT, image = BUF_INIT;
    store_ptr p0, p1, p2, p3;
    const char *msg = "the quick brown fox jumps over the lazy dog";

    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, NULL), DV_OK);
    assert_int_equal(store_file_append(f, "first", 5, &p0), DV_OK);
    assert_int_equal(store_file_commit(f, "A", 1, 1), DV_OK);
    uint64_t end_a = store_file_committed_size(f);
    assert_int_equal(store_file_append(f, msg, strlen(msg), &p1), DV_OK);
    assert_int_equal(store_file_append(f, "x", 1, &p2), DV_OK);
    assert_int_equal(store_file_commit(f, "B", 1, 1), DV_OK);
    uint64_t end_b = store_file_committed_size(f);
    assert_int_equal(store_file_append(f, "last", 4, &p3), DV_OK);
    assert_int_equal(store_file_commit(f, "C", 1, 1), DV_OK);
    assert_int_equal(store_file_close(f), DV_OK);
    slurp(fx->path, &image);

    log_set_level(LOG_NONE);
    /* Every bit of record p1 (frame and payload), in a commit that a later
     * synced commit covers (C's header names B's end as synced): open takes
     * C, and reading p1 is DV_ERR_CORRUPT. */
    for (uint64_t off = p1.off; off < p1.off + 12 + p1.size; off++) {
        for (int bit = 0; bit < 8; bit += 3) {
            image.data[off] ^= (uint8_t)(1 << bit);
            spit(fx->path, image.data, image.len);
            assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
            assert_int_equal(h.len, 1);
            assert_int_equal(h.data[0], 'C');
            expect_corrupt(f, p1);
            expect_record(f, p2, "x", 1);
            assert_int_equal(store_file_close(f), DV_OK);
            image.data[off] ^= (uint8_t)(1 << bit);
        }
    }
    /* A bit of the newest commit's own record: a one-sync commit whose
     * data does not match its header's gap_sum is what a power loss during
     * its sync leaves, so open falls back to B (and drops C). */
    for (uint64_t off = p3.off; off < p3.off + 12 + p3.size; off += 5) {
        image.data[off] ^= 0x10; /* a page the disk never got reads as other bytes */
        spit(fx->path, image.data, image.len);
        assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
        assert_int_equal(h.len, 1);
        assert_int_equal(h.data[0], 'B');
        assert_int_equal(store_file_committed_size(f), end_b);
        expect_record(f, p1, msg, strlen(msg));
        assert_int_equal(store_file_close(f), DV_OK);
        image.data[off] ^= 0x10;
    }
    spit(fx->path, image.data, image.len);

    /* Pointers that do not point at a record. */
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
    expect_record(f, p1, msg, strlen(msg));
    store_ptr bad[] = {
        {p1.off + 1, p1.size},  {p1.off - 1, p1.size},   {p1.off, p1.size - 1}, {p1.off, p1.size + 1},
        {p1.off, 0},            {p2.off, p1.size},       {0, 5},                {12, 5},
        {63, 0},                {image.len, 0},          {image.len - 12, 0},   {image.len + 100, 1},
        {p1.off, UINT32_MAX},   {UINT64_MAX - 4, 10},    {UINT64_MAX, UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_corrupt(f, bad[i]);
    assert_int_equal(store_file_close(f), DV_OK);

    /* A flipped byte in the newest header: the previous commit is used. */
    image.data[image.len - 3] ^= 0x40;
    spit(fx->path, image.data, image.len);
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
    assert_int_equal(h.len, 1);
    assert_int_equal(h.data[0], 'B');
    assert_int_equal(store_file_committed_size(f), end_b);
    expect_record(f, p0, "first", 5);
    assert_int_equal(store_file_close(f), DV_OK);
    (void)end_a;

    /* A flipped prologue byte: the file is refused, not repaired. */
    image.data[image.len - 3] ^= 0x40;
    image.data[20] ^= 1;
    spit(fx->path, image.data, image.len);
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_ERR_CORRUPT);
    buf_free(&h);
    buf_free(&image);
}

/* A user stores the bytes of a real header (say, an attachment holding a
 * copy of a database file): it must never be taken for a commit. */
static void test_header_copy_is_not_a_header(void **state)
{
    fixture *fx = *state;
    store_file *f;
    buf_t h = BUF_INIT, image = BUF_INIT;
    store_ptr pa, pcopy;

    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, NULL), DV_OK);
    assert_int_equal(store_file_append(f, "a", 1, &pa), DV_OK);
    uint64_t hdr_a = store_file_size(f);
    assert_int_equal(store_file_commit(f, "header A", 8, 1), DV_OK);
    uint64_t end_a = store_file_committed_size(f);
    assert_int_equal(store_file_close(f), DV_OK);
    slurp(fx->path, &image);
    assert_int_equal(image.len, end_a);

    /* Copy header A (and a forged one claiming the copy's own offset) into
     * records, with nothing committed after them. */
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, NULL), DV_OK);
    assert_int_equal(store_file_append(f, image.data + hdr_a, end_a - hdr_a, &pcopy), DV_OK);
    uint8_t forged[256];
    memcpy(forged, image.data + hdr_a, end_a - hdr_a);
    uint64_t forged_off = store_file_size(f) + 12;
    dv_store_u64le(forged + 12, forged_off);
    store_ptr pf;
    assert_int_equal(store_file_append(f, forged, end_a - hdr_a, &pf), DV_OK);
    assert_int_equal(store_file_sync(f), DV_OK);
    uint64_t written = store_file_size(f);
    assert_int_equal(store_file_close(f), DV_OK);
    /* close does not commit: the synced records are a tail after A, as
     * after a crash before the next commit's header. */
    assert_int_equal(disk_size(fx->path), written);

    log_set_level(LOG_NONE);
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &h), DV_OK);
    assert_int_equal(h.len, 8);
    assert_memory_equal(h.data, "header A", 8);
    assert_int_equal(store_file_committed_size(f), end_a);
    assert_int_equal(store_file_close(f), DV_OK);
    buf_free(&h);
    buf_free(&image);
}

/* Readers of committed records run while the appender appends and commits:
 * the first records, and the newest committed ones as they are published. */
enum { FIRST = 500, BIG = 5000, LATER = 2000 };
typedef struct reader_arg {
    store_file *f;
    store_ptr *ptrs;                /* FIRST records "rec-<i>" */
    store_ptr *later;               /* LATER records of 'z' * (i * 7 % BIG) */
    _Atomic int *published;         /* how many of later are committed */
    int failures;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *a = p;
    buf_t b = BUF_INIT;
    uint8_t big[BIG];
    memset(big, 'z', sizeof(big));
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < FIRST; i++) {
            char want[32];
            int n = snprintf(want, sizeof(want), "rec-%d", i);
            if (store_file_read(a->f, a->ptrs[i], &b) != DV_OK || b.len != (size_t)n ||
                memcmp(b.data, want, (size_t)n) != 0)
                a->failures++;
        }
        int np = atomic_load(a->published);
        for (int i = np > 200 ? np - 200 : 0; i < np; i++) {
            size_t n = (size_t)(i * 7) % BIG;
            if (store_file_read(a->f, a->later[i], &b) != DV_OK || b.len != n || (n && memcmp(b.data, big, n) != 0))
                a->failures++;
        }
    }
    buf_free(&b);
    return NULL;
}

/* Readers of committed records while the appender goes on: through the read
 * mapping, which is replaced by larger ones (from 4 KiB, so about ten times
 * here) while they read, and through pread on a VFS that cannot map. */
static void test_concurrent_readers(void **state)
{
    fixture *fx = *state;
    static store_ptr ptrs[FIRST], later[LATER];
    char rec[32];
    uint64_t map_min = store_file_map_min;
    store_vfs nomap = *store_vfs_posix();
    nomap.map = NULL;
    store_file_map_min = 4096;
    for (int pass = 0; pass < 2; pass++) {
        store_file *f;
        _Atomic int published = 0;
        unlink(fx->path);
        assert_int_equal(store_file_open(pass ? &nomap : store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, NULL),
                         DV_OK);
        for (int i = 0; i < FIRST; i++) {
            int n = snprintf(rec, sizeof(rec), "rec-%d", i);
            assert_int_equal(store_file_append(f, rec, (size_t)n, &ptrs[i]), DV_OK);
        }
        assert_int_equal(store_file_commit(f, "h", 1, 0), DV_OK);
        reader_arg args[2] = {{f, ptrs, later, &published, 0}, {f, ptrs, later, &published, 0}};
        pthread_t th[2];
        for (int t = 0; t < 2; t++)
            assert_int_equal(pthread_create(&th[t], NULL, reader_main, &args[t]), 0);
        uint8_t big[BIG];
        memset(big, 'z', sizeof(big));
        for (int i = 0; i < LATER; i++) {
            size_t n = (size_t)(i * 7) % BIG;
            assert_int_equal(store_file_append(f, big, n, &later[i]), DV_OK);
            expect_record(f, later[i], big, n);
            if (i % 100 == 99) {
                assert_int_equal(store_file_commit(f, "h", 1, 0), DV_OK);
                atomic_store(&published, i + 1);
            }
        }
        for (int t = 0; t < 2; t++) {
            assert_int_equal(pthread_join(th[t], NULL), 0);
            assert_int_equal(args[t].failures, 0);
        }
        for (int i = 0; i < LATER; i++)
            expect_record(f, later[i], big, (size_t)(i * 7) % BIG);
        assert_int_equal(store_file_close(f), DV_OK);
    }
    store_file_map_min = map_min;
}

/* ---- zeros written ahead of small synced commits ----------------------- */

/* Small synced commits leave zeros after the last commit while the file is
 * open; a copy taken then (what a crash leaves) opens at the last commit
 * with every record, and a closed file ends at its last commit. */
static void test_zeros_ahead(void **state)
{
    fixture *fx = *state;
    enum { N = 40 };
    store_ptr p[N];
    char rec[64], *copy = tu_path(fx->dir, "copy.dvn");
    buf_t image = BUF_INIT, hdr = BUF_INIT;
    store_file *f;
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, NULL), DV_OK);
    for (int i = 0; i < N; i++) {
        int n = snprintf(rec, sizeof rec, "small commit %d", i);
        assert_int_equal(store_file_append(f, rec, (size_t)n, &p[i]), DV_OK);
        assert_int_equal(store_file_commit(f, rec, (size_t)n, STORE_COMMIT_SYNC), DV_OK);
    }
    uint64_t committed = store_file_committed_size(f);
    slurp(fx->path, &image);
    assert_true(image.len >= committed + (16u << 10)); /* the zeros ahead: at least half of 64 KiB, less a commit */
    for (size_t i = committed; i < image.len; i++)
        if (image.data[i])
            fail_msg("byte %zu after the last commit is %u, not zero", i, image.data[i]);
    spit(copy, image.data, image.len);
    store_file *c;
    assert_int_equal(store_file_open(store_vfs_posix(), copy, 0, &c, &hdr), DV_OK);
    assert_int_equal(store_file_committed_size(c), committed);
    assert_int_equal(hdr.len, strlen("small commit 39"));
    assert_memory_equal(hdr.data, "small commit 39", hdr.len);
    for (int i = 0; i < N; i++) {
        int n = snprintf(rec, sizeof rec, "small commit %d", i);
        expect_record(c, p[i], rec, (size_t)n);
    }
    assert_int_equal(store_file_close(c), DV_OK);
    assert_int_equal(disk_size(copy), committed); /* open dropped the zeros */
    assert_int_equal(store_file_close(f), DV_OK);
    assert_int_equal(disk_size(fx->path), committed);
    buf_free(&image);
    buf_free(&hdr);
    free(copy);
}

/* A database writer that reopens its file after a failed commit leaves the
 * old handle to the readers still holding it.  When they let go, its close
 * must not cut the file at its own last commit: the commits made through
 * the new handle since would go (they did, before store_file_supersede). */
static void test_superseded_handle_closes_without_truncating(void **state)
{
    fixture *fx = *state;
    char rec[64];
    store_ptr p[6];
    buf_t hdr = BUF_INIT;
    store_file *old, *cur;
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &old, NULL), DV_OK);
    for (int i = 0; i < 3; i++) {
        int n = snprintf(rec, sizeof rec, "through the old handle %d", i);
        assert_int_equal(store_file_append(old, rec, (size_t)n, &p[i]), DV_OK);
        assert_int_equal(store_file_commit(old, rec, (size_t)n, STORE_COMMIT_SYNC), DV_OK);
    }
    assert_true(disk_size(fx->path) > store_file_committed_size(old)); /* zeros ahead to cut at close */
    store_file_supersede(old);
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &cur, &hdr), DV_OK);
    for (int i = 3; i < 6; i++) {
        int n = snprintf(rec, sizeof rec, "through the new handle %d", i);
        assert_int_equal(store_file_append(cur, rec, (size_t)n, &p[i]), DV_OK);
        assert_int_equal(store_file_commit(cur, rec, (size_t)n, STORE_COMMIT_SYNC), DV_OK);
    }
    uint64_t committed = store_file_committed_size(cur);
    assert_int_equal(store_file_close(old), DV_OK); /* the last reader of the old handle */
    assert_true(disk_size(fx->path) >= committed);
    assert_int_equal(store_file_close(cur), DV_OK);
    store_file *f;
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, 0, &f, &hdr), DV_OK);
    assert_int_equal(store_file_committed_size(f), committed);
    for (int i = 0; i < 6; i++) {
        int n = snprintf(rec, sizeof rec, i < 3 ? "through the old handle %d" : "through the new handle %d", i);
        expect_record(f, p[i], rec, (size_t)n);
    }
    assert_int_equal(store_file_close(f), DV_OK);
    buf_free(&hdr);
}

/* ---- the mapped-read resident budget ----------------------------------- */

/* Resident bytes of the mapping that holds addr, from /proc/self/smaps (what
 * the kernel counts in the process's RSS for it); -1 when not found. */
static long mapping_rss(const void *addr)
{
    FILE *fp = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0;
    long rss = -1;
    uintptr_t a = (uintptr_t)addr;
    if (!fp)
        return -1;
    while (fgets(line, sizeof line, fp)) {
        unsigned long lo, hi;
        long kb;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = a >= lo && a < hi;
        else if (inside && sscanf(line, "Rss: %ld kB", &kb) == 1) {
            rss = kb * 1024;
            break;
        }
    }
    fclose(fp);
    return rss;
}

/* With a 1 MiB budget: a hot set inside the budget stays mapped however
 * often it is read (reads of mapped granules cost nothing), and random reads
 * over an 8 MiB file never hold more than the budget (plus a granule), every
 * record still reading back intact. */
static void test_mapped_reads_stay_within_budget(void **state)
{
    fixture *fx = *state;
    enum { REC = 4000, N = 2048, HOT = 128 }; /* HOT records: the first ~512 KiB */
    uint64_t budget = store_file_map_trim;
    static store_ptr ptrs[N];
    uint8_t rec[REC];
    buf_t b = BUF_INIT;
    store_file *f;
    tu_rng rng = {7};
    store_file_map_trim = 1u << 20;
    assert_int_equal(store_file_open(store_vfs_posix(), fx->path, STORE_FILE_CREATE, &f, NULL), DV_OK);
    for (int i = 0; i < N; i++) {
        memset(rec, 'a' + i % 26, sizeof rec);
        assert_int_equal(store_file_append(f, rec, sizeof rec, &ptrs[i]), DV_OK);
    }
    assert_int_equal(store_file_commit(f, "h", 1, STORE_COMMIT_SYNC), DV_OK);

    const uint8_t *p = NULL;
    assert_int_equal(store_file_read_ref(f, ptrs[0], &b, &p), DV_OK);
    assert_true(p != b.data); /* read through the mapping */
    for (int pass = 0; pass < 20; pass++) {
        for (int i = 0; i < HOT; i++) {
            memset(rec, 'a' + i % 26, sizeof rec);
            expect_record(f, ptrs[i], rec, sizeof rec);
        }
        long rss = mapping_rss(p);
        if (rss < (long)(HOT - 8) * REC) /* still mapped: not trimmed */
            fail_msg("pass %d: the hot set's mapping holds %ld bytes", pass, rss);
    }
    for (int i = 0; i < 20000; i++) {
        int k = (int)tu_rand_below(&rng, N);
        memset(rec, 'a' + k % 26, sizeof rec);
        expect_record(f, ptrs[k], rec, sizeof rec);
        if (i % 500 == 499) {
            long rss = mapping_rss(p);
            assert_true(rss >= 0);
            if ((uint64_t)rss > store_file_map_trim + (256u << 10)) /* the budget and one granule */
                fail_msg("after %d random reads the mapping holds %ld bytes", i + 1, rss);
        }
    }
    assert_int_equal(store_file_close(f), DV_OK);
    buf_free(&b);
    store_file_map_trim = budget;
}

/* ---- unsynced commits: the chain of headers ---------------------------- */

/* Builds A (synced), B and C (unsynced, optionally with a store_file_sync
 * between them) and returns the record pointers and the image. */
static void build_abc(const char *path, int sync_b, int sync_between, store_ptr p[3], buf_t *image)
{
    store_file *f;
    assert_int_equal(store_file_open(store_vfs_posix(), path, STORE_FILE_CREATE, &f, NULL), DV_OK);
    assert_int_equal(store_file_append(f, "record of A", 11, &p[0]), DV_OK);
    assert_int_equal(store_file_commit(f, "A", 1, 1), DV_OK);
    assert_int_equal(store_file_append(f, "record of B", 11, &p[1]), DV_OK);
    assert_int_equal(store_file_commit(f, "B", 1, sync_b), DV_OK);
    if (sync_between)
        assert_int_equal(store_file_sync(f), DV_OK);
    assert_int_equal(store_file_append(f, "record of C", 11, &p[2]), DV_OK);
    assert_int_equal(store_file_commit(f, "C", 1, sync_b), DV_OK);
    assert_int_equal(store_file_close(f), DV_OK);
    slurp(path, image);
}

static char reopen_header(const char *path, const void *image, size_t len, store_file **f)
{
    buf_t h = BUF_INIT;
    spit(path, image, len);
    assert_int_equal(store_file_open(store_vfs_posix(), path, 0, f, &h), DV_OK);
    assert_int_equal(h.len, 1);
    char c = (char)h.data[0];
    buf_free(&h);
    return c;
}

static void test_unsynced_chain(void **state)
{
    fixture *fx = *state;
    store_ptr p[3];
    buf_t image = BUF_INIT;
    store_file *f;
    log_set_level(LOG_NONE);

    /* Unsynced B and C: damage under B's data means neither B nor C may be
     * used (C's chain runs through B); damage under C falls back to B. */
    build_abc(fx->path, 0, 0, p, &image);
    assert_int_equal(reopen_header(fx->path, image.data, image.len, &f), 'C');
    expect_record(f, p[1], "record of B", 11);
    assert_int_equal(store_file_close(f), DV_OK);
    image.data[p[1].off + 15] ^= 1;
    assert_int_equal(reopen_header(fx->path, image.data, image.len, &f), 'A');
    expect_record(f, p[0], "record of A", 11);
    expect_corrupt(f, p[1]);
    assert_int_equal(store_file_close(f), DV_OK);
    image.data[p[1].off + 15] ^= 1;
    image.data[p[2].off + 3] ^= 0x80; /* C's length field */
    assert_int_equal(reopen_header(fx->path, image.data, image.len, &f), 'B');
    expect_record(f, p[1], "record of B", 11);
    assert_int_equal(store_file_close(f), DV_OK);
    image.data[p[2].off + 3] ^= 0x80;
    /* Header B itself lost (zeroed): C cannot be verified either. */
    uint64_t hb = p[1].off + 12 + 11;
    uint8_t saved[20];
    memcpy(saved, image.data + hb, sizeof(saved));
    memset(image.data + hb, 0, sizeof(saved));
    assert_int_equal(reopen_header(fx->path, image.data, image.len, &f), 'A');
    assert_int_equal(store_file_close(f), DV_OK);
    memcpy(image.data + hb, saved, sizeof(saved));

    /* With a store_file_sync after B, C's chain stops at the synced point:
     * damage under B is then bit rot in durable data, reported on read. */
    build_abc(fx->path, 0, 1, p, &image);
    image.data[p[1].off + 15] ^= 1;
    assert_int_equal(reopen_header(fx->path, image.data, image.len, &f), 'C');
    expect_corrupt(f, p[1]);
    expect_record(f, p[2], "record of C", 11);
    assert_int_equal(store_file_close(f), DV_OK);

    /* Synced commits: the same damage is reported on read, never hidden by
     * falling back to an older commit. */
    build_abc(fx->path, 1, 0, p, &image);
    image.data[p[1].off + 15] ^= 1;
    assert_int_equal(reopen_header(fx->path, image.data, image.len, &f), 'C');
    expect_corrupt(f, p[1]);
    assert_int_equal(store_file_close(f), DV_OK);
    buf_free(&image);
}

/* A VFS over POSIX that counts the bytes read, to check open's cost. */
static uint64_t counted_bytes;
static int counting_pread(store_vfs_file *f, void *buf, size_t len, uint64_t off)
{
    counted_bytes += len;
    return store_vfs_posix()->pread(f, buf, len, off);
}

static void test_open_cost_is_tail_only(void **state)
{
    fixture *fx = *state;
    store_vfs counting = *store_vfs_posix();
    counting.pread = counting_pread;
    store_file *f;
    store_ptr p;
    static uint8_t big[1 << 20];
    memset(big, 'b', sizeof(big));

    assert_int_equal(store_file_open(&counting, fx->path, STORE_FILE_CREATE, &f, NULL), DV_OK);
    for (int i = 0; i < 8; i++)
        assert_int_equal(store_file_append(f, big, sizeof(big), &p), DV_OK);
    assert_int_equal(store_file_commit(f, "synced", 6, 1), DV_OK);
    /* Many small unsynced commits after the big synced one. */
    for (int i = 0; i < 50; i++) {
        assert_int_equal(store_file_append(f, big, 1000, &p), DV_OK);
        assert_int_equal(store_file_commit(f, "unsynced", 8, 0), DV_OK);
    }
    uint64_t unsynced_bytes = store_file_size(f) - (8 * ((1 << 20) + 12) + 64 + 66);
    assert_int_equal(store_file_close(f), DV_OK);
    counted_bytes = 0;
    assert_int_equal(store_file_open(&counting, fx->path, 0, &f, NULL), DV_OK);
    /* The prologue, the scan window and the unsynced bytes, not the 8 MiB. */
    assert_true(counted_bytes < 64 * 1024 + 3 * unsynced_bytes);
    assert_int_equal(store_file_close(f), DV_OK);
}

/* ---- failures and power loss on faultvfs ------------------------------ */

static void test_failures_poison_the_handle(void **state)
{
    (void)state;
    static uint8_t big[300 * 1024];
    buf_t h = BUF_INIT;
    store_ptr pa, pb;
    log_set_level(LOG_NONE);
    /* which: 0 a commit's one sync fails, 1 its write (data and header
     * together) fails, 2 the header sync of a commit above 4 MiB (its data
     * synced first) fails, 3 flush of buffered data in an unsynced commit
     * fails, 4 a direct write of a big record fails, 5 store_file_sync
     * fails. */
    for (int which = 0; which < 6; which++) {
        faultvfs *v = faultvfs_new((uint64_t)which);
        store_vfs *vfs = faultvfs_vfs(v);
        store_file *f;
        assert_int_equal(store_file_open(vfs, "db", STORE_FILE_CREATE, &f, NULL), DV_OK);
        assert_int_equal(store_file_append(f, "a", 1, &pa), DV_OK);
        assert_int_equal(store_file_commit(f, "A", 1, 1), DV_OK);
        int rc;
        switch (which) {
        case 0: faultvfs_fail_sync_after(v, 1); break;
        case 1: faultvfs_fail_write_after(v, 1); break;
        case 2: faultvfs_fail_sync_after(v, 2); break;
        case 3: faultvfs_fail_write_after(v, 1); break;
        case 4: faultvfs_fail_write_after(v, 2); break;
        default: faultvfs_fail_sync_after(v, 1); break;
        }
        if (which == 4) {
            rc = store_file_append(f, big, sizeof(big), &pb);
        } else if (which == 2) {
            for (int i = 0; i < 16; i++)
                assert_int_equal(store_file_append(f, big, sizeof(big), &pb), DV_OK);
            rc = store_file_commit(f, "B", 1, 1);
        } else {
            assert_int_equal(store_file_append(f, "b", 1, &pb), DV_OK);
            rc = which == 5 ? store_file_sync(f) : store_file_commit(f, "B", 1, which != 3);
        }
        assert_int_equal(rc, DV_ERR_IO);
        /* Poisoned: nothing more is accepted, committed data still reads. */
        assert_int_equal(store_file_append(f, "c", 1, &pb), DV_ERR_IO);
        assert_int_equal(store_file_commit(f, "C", 1, 1), DV_ERR_IO);
        assert_int_equal(store_file_commit(f, "C", 1, 0), DV_ERR_IO);
        assert_int_equal(store_file_sync(f), DV_ERR_IO);
        expect_record(f, pa, "a", 1);
        assert_int_equal(store_file_close(f), DV_OK);
        faultvfs_crash(v, FAULTVFS_DROP_UNSYNCED);
        assert_int_equal(store_file_open(vfs, "db", 0, &f, &h), DV_OK);
        assert_int_equal(h.len, 1);
        assert_int_equal(h.data[0], 'A');
        expect_record(f, pa, "a", 1);
        assert_int_equal(store_file_close(f), DV_OK);
        faultvfs_free(v);
    }
    buf_free(&h);
}

typedef struct exp_rec {
    store_ptr p;
    uint64_t seed;
    int commit;
} exp_rec;

static size_t pick_size(tu_rng *r)
{
    uint64_t k = tu_rand_below(r, 100);
    if (k < 70)
        return (size_t)tu_rand_below(r, 200);
    if (k < 96)
        return (size_t)tu_rand_below(r, 6000);
    return 200000 + (size_t)tu_rand_below(r, 150000); /* bigger than the write buffer */
}

/* One random workload, a power loss at a random moment in a random mode,
 * then the checks a database relies on. */
static void power_loss_once(uint64_t seed, uint8_t *scratch)
{
    tu_rng rng = {seed};
    uint64_t sync_ahead = store_file_sync_ahead_max;
    /* Half the runs make synced commits of more than a few KiB sync their
     * data first (two syncs), so both commit paths meet power losses. */
    if (tu_rand(&rng) & 1)
        store_file_sync_ahead_max = tu_rand_below(&rng, 64 * 1024);
    faultvfs *v = faultvfs_new(seed ^ 0x5eed);
    store_vfs *vfs = faultvfs_vfs(v);
    store_file *f = NULL;
    buf_t h = BUF_INIT, got = BUF_INIT;
    exp_rec recs[64];
    int nrecs = 0, acked = -1, durable = -1, attempted = -1;
    const char *path = (tu_rand(&rng) & 1) ? "dir/db.dvn" : "db.dvn";

    if (tu_rand_below(&rng, 4) != 0)
        faultvfs_cut_after(v, 1 + tu_rand_below(&rng, 40));
    if (store_file_open(vfs, path, STORE_FILE_CREATE, &f, &h) == DV_OK) {
        int ncommits = 1 + (int)tu_rand_below(&rng, 8);
        for (int c = 0; c < ncommits; c++) {
            int nr = (int)tu_rand_below(&rng, 5);
            int ok = 1;
            for (int r = 0; r < nr && ok && nrecs < 64; r++) {
                exp_rec *e = &recs[nrecs];
                size_t len = pick_size(&rng);
                e->seed = tu_rand(&rng);
                e->commit = c;
                tu_rng d = {e->seed};
                fill_random(&d, scratch, len);
                ok = store_file_append(f, scratch, len, &e->p) == DV_OK;
                nrecs += ok;
            }
            if (!ok)
                break;
            uint8_t hdr[200];
            size_t hlen = 4 + (size_t)tu_rand_below(&rng, sizeof(hdr) - 4);
            fill_random(&rng, hdr, hlen);
            dv_store_u32le(hdr, (uint32_t)c);
            int sync = (int)(tu_rand(&rng) & 1);
            attempted = c;
            if (store_file_commit(f, hdr, hlen, sync) != DV_OK)
                break;
            acked = c;
            if (sync)
                durable = c;
            if (tu_rand_below(&rng, 6) == 0) {
                if (store_file_sync(f) != DV_OK)
                    break;
                durable = c;
            }
        }
        assert_int_equal(store_file_close(f), DV_OK);
    }
    int mode = (int)tu_rand_below(&rng, 4);
    faultvfs_crash(v, mode);

    assert_int_equal(store_file_open(vfs, path, STORE_FILE_CREATE, &f, &h), DV_OK);
    int found = h.len == 0 ? -1 : (int)dv_load_u32le(h.data);
    assert_true(h.len == 0 || h.len >= 4);
    if (found < durable || found > attempted || (mode == FAULTVFS_KEEP_ALL && found < acked))
        fail_msg("seed %llu mode %d: found commit %d, durable %d, acked %d, attempted %d",
                 (unsigned long long)seed, mode, found, durable, acked, attempted);
    for (int i = 0; i < nrecs && recs[i].commit <= found; i++) {
        tu_rng d = {recs[i].seed};
        fill_random(&d, scratch, recs[i].p.size);
        assert_int_equal(store_file_read(f, recs[i].p, &got), DV_OK);
        assert_int_equal(got.len, recs[i].p.size);
        assert_memory_equal(got.data, scratch, got.len);
    }
    /* Life goes on after the crash: a new synced commit survives the next. */
    store_ptr np;
    assert_int_equal(store_file_append(f, "after", 5, &np), DV_OK);
    assert_int_equal(store_file_commit(f, "after crash", 11, 1), DV_OK);
    assert_int_equal(store_file_close(f), DV_OK);
    faultvfs_crash(v, FAULTVFS_KEEP_RANDOM);
    assert_int_equal(store_file_open(vfs, path, 0, &f, &h), DV_OK);
    assert_int_equal(h.len, 11);
    assert_memory_equal(h.data, "after crash", 11);
    expect_record(f, np, "after", 5);
    assert_int_equal(store_file_close(f), DV_OK);
    faultvfs_free(v);
    buf_free(&h);
    buf_free(&got);
    store_file_sync_ahead_max = sync_ahead;
}

static void test_power_loss_property(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("test_power_loss_property");
    long n = tu_iterations(2000);
    uint8_t *scratch = malloc(400 * 1024);
    log_set_level(LOG_NONE);
    for (long i = 0; i < n; i++)
        power_loss_once(seed + (uint64_t)i * 0x9e3779b97f4a7c15ULL, scratch);
    free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffered_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_finds_last_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_bytes_and_bad_pointers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_copy_is_not_a_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mapped_reads_stay_within_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zeros_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_superseded_handle_closes_without_truncating, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsynced_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_cost_is_tail_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures_poison_the_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_loss_property, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
