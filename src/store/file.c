/*
 * file.c — the append-only file of checksummed records and commit headers
 * (see file.h for the record layout and the contract).
 *
 * On-disk layout (all integers little-endian):
 *
 *   prologue, 64 bytes at offset 0:
 *     "DIVANDB1" | u32 version | u32 0 | u64 seed | 32 zero bytes |
 *     u64 XXH3_64(bytes 0..56)
 *   record at off:
 *     u32 len | u64 XXH3_64_withSeed(payload, rec_seed(seed, off, len)) | payload
 *   header at off (60 + len bytes):
 *     0  "DVHEADER"
 *     8  u32 len            payload length
 *     12 u64 off            its own offset (a copy elsewhere fails)
 *     20 u64 prev           offset of the previous header, 0 for the first
 *     28 u64 synced_upto    every byte below was durable when this was written
 *     36 u64 gap_sum        XXH3 of the bytes between the previous header's
 *                           end (or the prologue's) and this header
 *     44 u64 fixed_sum      XXH3 of bytes 0..44, so that a false candidate is
 *                           rejected after reading 52 bytes, whatever its len
 *     52 payload
 *     52+len u64 sum        XXH3 of everything before it
 *   All header sums are seeded with the file's secret seed, so no byte string
 *   a user stores can pass for a header.
 *
 * Finding the last commit on open: scan backwards from the end of the file in
 * 64 KiB windows for the header magic; for each candidate (newest first) check
 * fixed_sum, own offset and the full sum.  A header written by a synced commit
 * (synced_upto == its offset) is accepted as is: everything it points to was
 * durable before it was written.  A header written by an unsynced commit
 * (store_file_commit with sync == 0) may have reached the disk while earlier
 * writes did not, because a power loss can reorder writes; so we walk back
 * through the prev chain, checking every header's sum and every gap_sum, until
 * the gap starts at or below synced_upto.  That costs the bytes written since
 * the last sync, never the whole file.  If a range fails, no header above it
 * can be trusted (each one's chain covers that range), so the scan resumes
 * below the bad range; the result is the newest header whose whole chain
 * verifies.  Everything after the chosen header (a torn tail, or unsynced
 * commits that lost data) is truncated away and the truncation synced before
 * anything new is written, so stale headers from before a crash can never
 * mix with headers written after it.
 *
 * A synced commit (sync == 1) is one fdatasync: its records and its header
 * are written together and synced together, so the header carries the
 * synced_upto of the previous sync (the end of the previous commit) and
 * open verifies the commit's own bytes against gap_sum before trusting it:
 * a power loss during that sync may leave the header on disk without some
 * of the data it covers, and then the previous commit is the last one.
 * Open therefore hashes the newest commit's bytes; a commit that would make
 * that more than store_file_sync_ahead_max (4 MiB) syncs its data first and
 * writes a header with synced_upto == its offset, taken as is (two syncs, as
 * every commit did before: for so much data the second sync is cheap).
 * Halving the syncs of small commits is what single-document latency is
 * made of (docs/benchmarks.md).
 *
 * Small synced commits overwrite zeros instead of growing the file.  An
 * fdatasync that must also record a new file size (a journal commit on
 * ext4) cost 1.4-2x one that only writes data blocks already allocated and
 * written (measured on the development VM: 4 KiB commits 300-630 us
 * appending, 190-250 us into zeros; bench/ and docs/benchmarks.md).  So
 * once a synced commit of at most 64 KiB finds less than half of "ahead"
 * zeros after it, it writes "ahead" zeros after its own bytes, synced by its
 * own sync; the next commits land in them.  "ahead" is an eighth of the
 * file, at least 64 KiB and at most 1 MiB (256 KiB and 1 MiB measured the
 * same), so that a small database is not doubled on disk by its zeros.
 * Zeros are not commits: open scans back through them like any torn tail
 * (at most about 1 MiB, 16 windows) and truncates them, and close
 * truncates them.  Larger commits append as before: for them the zeros
 * would double the bytes written (measured slower for 140 KB group
 * commits).
 *
 * Loss windows: with sync == 1 a commit that returned DV_OK is never lost.
 * With sync == 0 every commit since the last synced commit or store_file_sync
 * may be lost on power loss (never on a process crash: the kernel keeps the
 * writes); what survives is always a consistent prefix of commits.
 *
 * Appends go through a 256 KiB write buffer flushed with one pwrite; a record
 * larger than the buffer is written directly.  Readers of records still in
 * the buffer copy them under the mutex; records below flushed_end are read
 * without a lock.  The buffer's bytes between wlen and the capacity are only
 * touched by the appender, so the appender fills them unlocked and publishes
 * them by raising wlen under the mutex.
 *
 * Reads of flushed records go through a read-only shared mapping of the file
 * when the VFS can map (as LMDB reads): no system call and no copy, where a
 * pread costs a system call (measured 1.6 us for a 700-byte body on the
 * development VM, more than the rest of a point read together).  Bytes
 * below flushed_end are in the file, and only those are ever touched, so
 * the mapping may extend past the end of the file; it is replaced by a
 * larger one (at least double) when a read needs more, and the old ones stay
 * mapped until close because a reader may still hold a pointer into them.
 * Address space, not memory: the page cache backs them all.  Every record
 * is verified on every read, mapped or not.  Without a mapping (a VFS
 * without map, or mmap failed) a record is read with one pread of frame and
 * payload together.
 *
 * What a mapping makes resident is bounded by store_file_map_trim (the
 * resident budget).  The newest mapping keeps one bit per 256 KiB granule
 * that a read has faulted in since the last trim.  A granule, because one
 * fault maps more than the page it touches: a 64 KiB window (fault-around)
 * or, on recent kernels, the whole page-cache folio, and ext4 builds folios
 * as large as the writes that filled them, which the 256 KiB write buffer
 * bounds (measured on 6.18: one touch maps 64 KiB of a file written 4 KiB
 * at a time, 256 KiB of one written 256 KiB at a time, 1 MiB for 1 MiB
 * writes).  Records written directly, larger than the buffer, can make a
 * larger folio and let a neighbouring small record map more than its
 * granule: the budget is exact for files of small records, approximate
 * around large attachments.  The VFS maps at an aligned address so that
 * file granules are address-space granules.
 *
 * A read inside set granules is free; one that needs new granules maps
 * them while the budget has room, and is read with pread once it is full,
 * so a database smaller than the budget, or a hot set inside it, stays
 * mapped for good, and a larger one costs a pread per read outside the
 * mapped set instead of a fault (and an eventual trim) per read.  After
 * MAP_RESAMPLE (512) budgets' worth of such preads the mappings are trimmed
 * and the set is chosen again from the reads that follow (the workload may
 * have moved).  Each trim costs the set's faults again: 8 spent 40% of the
 * time re-faulting it, 64 about 12% of uniform random reads over a file
 * twelve times the 16 MiB budget (bench_ops, 600,000 reads: 27,500 page
 * faults, against 9,200 at 256 and 4,500 at 1,024, start-up included).
 * The bits are advisory: a reader racing a trim can leave one granule
 * counted but not resident, or resident but not counted, which moves the
 * bound by a granule per reader.
 */
#include "store/file.h"

#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#define PROLOGUE_SIZE 64
#define PROLOGUE_MAGIC "DIVANDB1"
#define FORMAT_VERSION 1
#define REC_FRAME 12      /* u32 len + u64 checksum */
#define HDR_FIXED 52      /* magic .. fixed_sum */
#define HDR_OVERHEAD 60   /* fixed part + trailing sum */
#define HDR_MAGIC "DVHEADER"
#define WBUF_CAP (256u * 1024u)
#define SCAN_WINDOW (64u * 1024u)
#define VERIFY_CHUNK (1024u * 1024u)

/* Seed tweaks so that the different sums never coincide. */
#define SEED_FIXED 0x5a1c0ffee0ddf00dULL
#define SEED_GAP 0x3c6ef372fe94f82bULL

uint64_t store_file_map_min = 64u << 20; /* first mapping: 64 MiB of address space */
/* Resident budget of a file's mappings (see the opening comment). */
uint64_t store_file_map_trim = STORE_FILE_MAP_TRIM_DEFAULT;
#define MAP_GRANULE (256u << 10) /* what one fault makes resident, at most (see the opening comment) */
#define MAP_RESAMPLE 512        /* budgets of preads between trims once the budget is full */
/* Records this large or larger (attachment chunks) are read with pread:
 * streaming a big attachment must not make its pages resident. */
uint32_t store_file_map_max_record = 32u << 10;
uint64_t store_file_sync_ahead_max = 4u << 20; /* a synced commit's bytes that open may have to verify */
#define ZERO_AHEAD_MIN (64u << 10)          /* zeros written ahead of small synced commits: */
#define ZERO_AHEAD_MAX (1u << 20)           /* an eighth of the file, within these bounds */
#define ZERO_AHEAD_MAX_COMMIT (64u << 10)   /* larger commits append */
static const uint8_t zero_chunk[64u << 10]; /* .bss: never written, never resident */

/* A read mapping of [0, len); older ones chain behind the newest. */
typedef struct file_map {
    const uint8_t *base;
    uint64_t len;
    struct file_map *older;
    _Atomic uint64_t *resident; /* a bit per MAP_GRANULE of [0, len) faulted in since the last trim */
} file_map;

struct store_file {
    store_vfs *vfs;
    store_vfs_file *fh;
    char *path;
    uint64_t seed;

    pthread_mutex_t mu; /* guards wbuf_off / wlen against readers */
    uint8_t *wbuf;
    size_t wlen;
    uint64_t wbuf_off;             /* file offset of wbuf[0] == flushed_end */
    _Atomic uint64_t flushed_end;  /* bytes below are in the OS file */
    _Atomic uint64_t end;          /* end of appended data (incl. buffer) */
    _Atomic uint64_t committed;    /* end of the last header */
    _Atomic(file_map *) map;       /* newest read mapping, NULL: none yet */
    _Atomic uint64_t map_resident; /* granules set in the newest mapping's bitmap */
    _Atomic uint64_t map_preads;   /* reads sent to pread by a full budget since the last trim */
    int map_failed;                /* mmap refused once: pread from then on (under mu) */

    /* Appender-only state, except that store_file_sync_to (another thread:
     * the database's syncer) raises synced_upto and may poison. */
    uint64_t last_hdr_off; /* 0 when no header yet */
    uint64_t zeroed_end;   /* end of the zeros this handle wrote ahead; 0: none */
    _Atomic uint64_t synced_upto; /* only grows (synced_raise) */
    XXH3_state_t *gap; /* hash of bytes since the last header's end */
    atomic_int poisoned;
    atomic_int superseded; /* store_file_supersede: close leaves the file alone */
};

typedef struct hdr_info {
    uint64_t off, prev, synced_upto, gap_sum;
    uint32_t len;
} hdr_info;

static uint64_t rec_seed(uint64_t seed, uint64_t off, uint32_t len)
{
    return seed ^ (off * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)len * 0xc2b2ae3d27d4eb4fULL);
}

static uint64_t hdr_end(const hdr_info *h) { return h->off + HDR_OVERHEAD + h->len; }

static int file_poison(store_file *f, int rc)
{
    if (!atomic_exchange(&f->poisoned, 1))
        log_error("store_file: %s: write failed (%s); handle poisoned until reopened", f->path,
                  dv_strerror(rc));
    return DV_ERR_IO;
}

/* Raises synced_upto to at least v (the appender and a syncer both may). */
static void synced_raise(store_file *f, uint64_t v)
{
    uint64_t cur = atomic_load(&f->synced_upto);
    while (cur < v && !atomic_compare_exchange_weak(&f->synced_upto, &cur, v))
        ;
}

/* ---- write path ------------------------------------------------------- */

static int file_flush(store_file *f)
{
    if (f->wlen == 0)
        return DV_OK;
    int rc = f->vfs->pwrite(f->fh, f->wbuf, f->wlen, f->wbuf_off);
    if (rc != DV_OK)
        return file_poison(f, rc);
    pthread_mutex_lock(&f->mu);
    f->wbuf_off += f->wlen;
    f->wlen = 0;
    atomic_store_explicit(&f->flushed_end, f->wbuf_off, memory_order_release);
    pthread_mutex_unlock(&f->mu);
    return DV_OK;
}

/* Appends a then b as one contiguous piece at the end of the file. */
static int file_write2(store_file *f, const void *a, size_t an, const void *b, size_t bn)
{
    size_t n = an + bn;
    int rc;
    if (n > WBUF_CAP - f->wlen && (rc = file_flush(f)) != DV_OK)
        return rc;
    if (n <= WBUF_CAP - f->wlen) {
        memcpy(f->wbuf + f->wlen, a, an);
        if (bn)
            memcpy(f->wbuf + f->wlen + an, b, bn);
        pthread_mutex_lock(&f->mu);
        f->wlen += n;
        atomic_store_explicit(&f->end, f->wbuf_off + f->wlen, memory_order_release);
        pthread_mutex_unlock(&f->mu);
        return DV_OK;
    }
    /* Larger than the buffer (which is empty now): write it directly. */
    assert(f->wlen == 0);
    uint64_t off = f->wbuf_off;
    if ((rc = f->vfs->pwrite(f->fh, a, an, off)) != DV_OK)
        return file_poison(f, rc);
    if (bn && (rc = f->vfs->pwrite(f->fh, b, bn, off + an)) != DV_OK)
        return file_poison(f, rc);
    pthread_mutex_lock(&f->mu);
    f->wbuf_off = off + n;
    atomic_store_explicit(&f->flushed_end, f->wbuf_off, memory_order_release);
    atomic_store_explicit(&f->end, f->wbuf_off, memory_order_release);
    pthread_mutex_unlock(&f->mu);
    return DV_OK;
}

int store_file_append(store_file *f, const void *data, size_t len, store_ptr *ptr)
{
    if (atomic_load_explicit(&f->poisoned, memory_order_relaxed))
        return DV_ERR_IO;
    if (len > STORE_FILE_MAX_RECORD)
        return DV_ERR_TOO_LARGE;
    uint64_t off = atomic_load_explicit(&f->end, memory_order_relaxed);
    uint8_t frame[REC_FRAME];
    dv_store_u32le(frame, (uint32_t)len);
    dv_store_u64le(frame + 4, XXH3_64bits_withSeed(data, len, rec_seed(f->seed, off, (uint32_t)len)));
    int rc = file_write2(f, frame, REC_FRAME, data, len);
    if (rc != DV_OK)
        return rc;
    (void)XXH3_64bits_update(f->gap, frame, REC_FRAME);
    if (len)
        (void)XXH3_64bits_update(f->gap, data, len);
    ptr->off = off;
    ptr->size = (uint32_t)len;
    return DV_OK;
}

static int file_sync_locked(store_file *f)
{
    int rc = file_flush(f);
    if (rc != DV_OK)
        return rc;
    if ((rc = f->vfs->sync(f->fh)) != DV_OK)
        return file_poison(f, rc);
    synced_raise(f, f->wbuf_off);
    return DV_OK;
}

int store_file_sync(store_file *f)
{
    if (atomic_load(&f->poisoned))
        return DV_ERR_IO;
    return file_sync_locked(f);
}

int store_file_sync_to(store_file *f, uint64_t upto)
{
    if (atomic_load(&f->poisoned))
        return DV_ERR_IO;
    /* Everything below upto was handed to the OS (the appender flushed it
     * before publishing upto), so one fdatasync makes it durable. */
    assert(upto <= atomic_load_explicit(&f->flushed_end, memory_order_acquire));
    int rc = f->vfs->sync(f->fh);
    if (rc != DV_OK)
        return file_poison(f, rc);
    synced_raise(f, upto);
    return DV_OK;
}

/* Writes zeros (an eighth of the file, 64 KiB to 1 MiB) after the commit
 * being made when it is small and the zeros ahead run short (see the
 * opening comment).  The appender's own bytes end at f->end and the zeros
 * start at or after it, so the two never overlap; the commit's sync makes
 * both durable. */
static int file_zero_ahead(store_file *f)
{
    uint64_t end = atomic_load_explicit(&f->end, memory_order_relaxed);
    uint64_t start = atomic_load_explicit(&f->committed, memory_order_relaxed);
    uint64_t ahead = end / 8;
    if (ahead < ZERO_AHEAD_MIN)
        ahead = ZERO_AHEAD_MIN;
    if (ahead > ZERO_AHEAD_MAX)
        ahead = ZERO_AHEAD_MAX;
    if (end - start > ZERO_AHEAD_MAX_COMMIT || (f->zeroed_end > end && f->zeroed_end - end >= ahead / 2))
        return DV_OK;
    uint64_t at = f->zeroed_end > end ? f->zeroed_end : end;
    while (at < end + ahead) {
        size_t n = sizeof zero_chunk < end + ahead - at ? sizeof zero_chunk : (size_t)(end + ahead - at);
        int rc = f->vfs->pwrite(f->fh, zero_chunk, n, at);
        if (rc != DV_OK)
            return file_poison(f, rc);
        at += n;
        f->zeroed_end = at;
    }
    return DV_OK;
}

int store_file_commit(store_file *f, const void *header, size_t len, int sync)
{
    buf_t h = BUF_INIT;
    int rc;
    if (atomic_load(&f->poisoned))
        return DV_ERR_IO;
    if (len > STORE_FILE_MAX_HEADER)
        return DV_ERR_TOO_LARGE;
    /* One sync per commit: data and header are written together and synced
     * once; the header's gap_sum lets open tell a header that reached the
     * disk without all of its data (see the file comment).  Only a commit
     * with more than store_file_sync_ahead_max unsynced bytes syncs its data
     * first, so that open never hashes more than that behind it. */
    uint64_t unsynced = atomic_load_explicit(&f->end, memory_order_relaxed) - atomic_load(&f->synced_upto);
    if (sync != STORE_COMMIT_NOSYNC && unsynced > store_file_sync_ahead_max && (rc = file_sync_locked(f)) != DV_OK)
        goto fail;

    uint64_t off = atomic_load_explicit(&f->end, memory_order_relaxed);
    if (buf_reserve(&h, HDR_OVERHEAD + len) != DV_OK) {
        rc = DV_ERR_NOMEM; /* nothing written yet for this header */
        goto fail;
    }
    uint8_t *p = h.data;
    memcpy(p, HDR_MAGIC, 8);
    dv_store_u32le(p + 8, (uint32_t)len);
    dv_store_u64le(p + 12, off);
    dv_store_u64le(p + 20, f->last_hdr_off);
    dv_store_u64le(p + 28, atomic_load(&f->synced_upto));
    dv_store_u64le(p + 36, XXH3_64bits_digest(f->gap));
    dv_store_u64le(p + 44, XXH3_64bits_withSeed(p, 44, f->seed ^ SEED_FIXED));
    if (len)
        memcpy(p + HDR_FIXED, header, len);
    dv_store_u64le(p + HDR_FIXED + len, XXH3_64bits_withSeed(p, HDR_FIXED + len, f->seed));
    h.len = HDR_OVERHEAD + len;

    if ((rc = file_write2(f, h.data, h.len, NULL, 0)) != DV_OK)
        goto fail;
    if (sync != STORE_COMMIT_NOSYNC && (rc = file_zero_ahead(f)) != DV_OK)
        goto fail;
    if (sync == STORE_COMMIT_SYNC) {
        if ((rc = file_sync_locked(f)) != DV_OK)
            goto fail;
    } else if ((rc = file_flush(f)) != DV_OK) {
        goto fail;
    }
    f->last_hdr_off = off;
    (void)XXH3_64bits_reset_withSeed(f->gap, f->seed ^ SEED_GAP);
    atomic_store_explicit(&f->committed, off + h.len, memory_order_release);
    buf_free(&h);
    return DV_OK;
fail:
    buf_free(&h);
    /* Whatever happened, what reached the disk is unknown. */
    atomic_store(&f->poisoned, 1);
    return rc == DV_ERR_NOMEM ? rc : DV_ERR_IO;
}

/* ---- read path -------------------------------------------------------- */

static int file_corrupt(const store_file *f, uint64_t off, const char *what)
{
    log_error("store_file: %s: corrupt data at offset %llu: %s", f->path, (unsigned long long)off, what);
    return DV_ERR_CORRUPT;
}

/* Reads [off, off+len) from the file or the write buffer. */
static int file_read_raw(store_file *f, void *dst, size_t len, uint64_t off)
{
    if (off + len > atomic_load_explicit(&f->flushed_end, memory_order_acquire)) {
        int in_buf = 0, straddles = 0;
        pthread_mutex_lock(&f->mu);
        if (off >= f->wbuf_off && off - f->wbuf_off <= f->wlen && len <= f->wlen - (off - f->wbuf_off)) {
            memcpy(dst, f->wbuf + (off - f->wbuf_off), len);
            in_buf = 1;
        } else if (off + len > f->wbuf_off) {
            straddles = 1;
        }
        pthread_mutex_unlock(&f->mu);
        if (in_buf)
            return DV_OK;
        if (straddles)
            return DV_ERR_CORRUPT;
        /* Flushed meanwhile: fall through to pread. */
    }
    return f->vfs->pread(f->fh, dst, len, off);
}

/* Words of the granule bitmap of a mapping of len bytes (a partial last
 * granule counts: mappings need not be granule multiples). */
static uint64_t map_words(uint64_t len) { return ((len + MAP_GRANULE - 1) / MAP_GRANULE + 63) / 64; }

/* Drops the resident pages of every mapping of f and empties the bitmap
 * (one reader does it; the others go on reading, faulting pages back as
 * they need them).  O(mapped length / 4 MiB) for the bitmap, plus the
 * kernel's work per resident page. */
static void file_map_trim(store_file *f)
{
    file_map *newest = atomic_load_explicit(&f->map, memory_order_acquire);
    if (!newest || !f->vfs->trim)
        return;
    for (uint64_t i = 0; i < map_words(newest->len); i++)
        atomic_store_explicit(&newest->resident[i], 0, memory_order_relaxed);
    atomic_store_explicit(&f->map_resident, 0, memory_order_relaxed);
    atomic_store_explicit(&f->map_preads, 0, memory_order_relaxed);
    for (const file_map *m = newest; m; m = m->older)
        (void)f->vfs->trim(f->fh, m->base, m->len);
}

/* Whether [off, end) may be read through m: yes when its granules are
 * already counted resident or the budget has room for them (they are
 * counted now), no when the budget is full (the caller preads).  A VFS
 * that cannot trim has no budget to keep. */
static int file_map_admit(store_file *f, file_map *m, uint64_t off, uint64_t end)
{
    uint64_t g0 = off / MAP_GRANULE, g1 = (end - 1) / MAP_GRANULE, fresh = 0;
    uint64_t budget = store_file_map_trim / MAP_GRANULE;
    if (!f->vfs->trim)
        return 1;
    for (uint64_t g = g0; g <= g1; g++)
        if (!(atomic_load_explicit(&m->resident[g / 64], memory_order_relaxed) & (1ull << (g % 64))))
            fresh++;
    if (!fresh)
        return 1;
    if (atomic_load_explicit(&f->map_resident, memory_order_relaxed) + fresh > budget) {
        /* ==, not >=: the one reader that reaches the mark trims (it resets
         * the count); readers past it before the reset do not trim again. */
        if (atomic_fetch_add_explicit(&f->map_preads, 1, memory_order_relaxed) + 1 == budget * MAP_RESAMPLE)
            file_map_trim(f);
        return 0;
    }
    for (uint64_t g = g0; g <= g1; g++)
        if (!(atomic_fetch_or_explicit(&m->resident[g / 64], 1ull << (g % 64), memory_order_relaxed) &
              (1ull << (g % 64))))
            atomic_fetch_add_explicit(&f->map_resident, 1, memory_order_relaxed);
    return 1;
}

/* The mapping to read [0, need) through, mapping a larger one when the
 * newest is too short; NULL when the VFS cannot map (pread instead).  need
 * is at most flushed_end, so every byte below it is in the file. */
static file_map *file_map_for(store_file *f, uint64_t need)
{
    file_map *m = atomic_load_explicit(&f->map, memory_order_acquire);
    if ((m && m->len >= need) || !f->vfs->map)
        return m && m->len >= need ? m : NULL;
    int grown = 0;
    pthread_mutex_lock(&f->mu);
    m = atomic_load_explicit(&f->map, memory_order_relaxed);
    if ((!m || m->len < need) && !f->map_failed) {
        uint64_t len = m ? m->len * 2 : store_file_map_min;
        while (len < need)
            len *= 2;
        file_map *nm = malloc(sizeof *nm);
        _Atomic uint64_t *bits = calloc((size_t)map_words(len), sizeof *bits);
        const void *base = NULL;
        if (nm && bits && f->vfs->map(f->fh, len, &base) == DV_OK) {
            *nm = (file_map){base, len, m, bits};
            atomic_store_explicit(&f->map, nm, memory_order_release);
            m = nm;
            grown = 1;
        } else {
            free(nm);
            free(bits);
            f->map_failed = 1; /* logged by the VFS; not retried on every read */
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (grown)
        file_map_trim(f); /* the older mappings' pages are not in the new bitmap */
    return m && m->len >= need ? m : NULL;
}

int store_file_read_ref(store_file *f, store_ptr ptr, buf_t *scratch, const uint8_t **out)
{
    uint64_t end = atomic_load_explicit(&f->end, memory_order_acquire);
    const uint8_t *rec;
    int rc;
    *out = NULL;
    if (ptr.off < PROLOGUE_SIZE || ptr.size > STORE_FILE_MAX_RECORD || ptr.off > end ||
        end - ptr.off < (uint64_t)REC_FRAME + ptr.size)
        return file_corrupt(f, ptr.off, "record pointer outside the file");
    uint64_t rec_end = ptr.off + REC_FRAME + ptr.size;
    file_map *m = NULL;
    if (ptr.size < store_file_map_max_record &&
        rec_end <= atomic_load_explicit(&f->flushed_end, memory_order_acquire)) {
        m = file_map_for(f, rec_end);
        if (m && !file_map_admit(f, m, ptr.off, rec_end))
            m = NULL;
    }
    if (m) {
        rec = m->base + ptr.off;
    } else {
        /* Frame and payload in one read: a pread each cost two system calls. */
        buf_reset(scratch);
        if ((rc = buf_reserve(scratch, REC_FRAME + (size_t)ptr.size)) != DV_OK)
            return rc;
        if ((rc = file_read_raw(f, scratch->data, REC_FRAME + (size_t)ptr.size, ptr.off)) != DV_OK)
            return rc == DV_ERR_CORRUPT ? file_corrupt(f, ptr.off, "record past end of file") : rc;
        scratch->len = REC_FRAME + (size_t)ptr.size;
        rec = scratch->data;
    }
    if (dv_load_u32le(rec) != ptr.size)
        return file_corrupt(f, ptr.off, "record length differs from pointer");
    if (dv_load_u64le(rec + 4) !=
        XXH3_64bits_withSeed(rec + REC_FRAME, ptr.size, rec_seed(f->seed, ptr.off, ptr.size)))
        return file_corrupt(f, ptr.off, "record checksum mismatch");
    *out = rec + REC_FRAME;
    return DV_OK;
}

int store_file_read(store_file *f, store_ptr ptr, buf_t *out)
{
    const uint8_t *p;
    int rc = store_file_read_ref(f, ptr, out, &p);
    if (rc) {
        out->len = 0;
        return rc;
    }
    if (out->len == REC_FRAME + (size_t)ptr.size && p == out->data + REC_FRAME) {
        memmove(out->data, p, ptr.size); /* read into out: drop the frame */
        out->len = ptr.size;
        return DV_OK;
    }
    buf_reset(out);
    return buf_append(out, p, ptr.size);
}

/* ---- open ------------------------------------------------------------- */

static int file_dirname(const char *path, char **out)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 1;
    if (slash == path)
        n = 1; /* "/x" lives in "/" */
    char *d = malloc(n + 1);
    if (!d)
        return DV_ERR_NOMEM;
    memcpy(d, slash ? path : ".", n);
    d[n] = 0;
    *out = d;
    return DV_OK;
}

static int file_init_prologue(store_file *f, uint64_t old_size)
{
    uint8_t p[PROLOGUE_SIZE] = {0};
    char *dir = NULL;
    int rc;
    if (getrandom(&f->seed, sizeof(f->seed), 0) != (ssize_t)sizeof(f->seed)) {
        log_error("store_file: %s: getrandom failed", f->path);
        return DV_ERR_IO;
    }
    memcpy(p, PROLOGUE_MAGIC, 8);
    dv_store_u32le(p + 8, FORMAT_VERSION);
    dv_store_u64le(p + 16, f->seed);
    dv_store_u64le(p + 56, XXH3_64bits(p, 56));
    /* The prologue is synced before any other byte is written, so a file
     * shorter than a prologue never held a commit and may be re-initialised. */
    if ((old_size && (rc = f->vfs->truncate(f->fh, 0)) != DV_OK) ||
        (rc = f->vfs->pwrite(f->fh, p, sizeof(p), 0)) != DV_OK || (rc = f->vfs->sync(f->fh)) != DV_OK ||
        (rc = file_dirname(f->path, &dir)) != DV_OK)
        goto done;
    rc = f->vfs->sync_dir(f->vfs, dir);
done:
    free(dir);
    return rc;
}

/* 1 when the file is a prologue's worth of zeros: a creation whose size
 * reached the disk but whose data did not (possible on some file systems). */
static int file_prologue_is_zero(store_file *f)
{
    uint8_t p[PROLOGUE_SIZE];
    int rc = f->vfs->pread(f->fh, p, sizeof(p), 0);
    if (rc != DV_OK)
        return rc;
    for (size_t i = 0; i < sizeof(p); i++)
        if (p[i])
            return 0;
    return 1;
}

static int file_load_prologue(store_file *f)
{
    uint8_t p[PROLOGUE_SIZE];
    int rc = f->vfs->pread(f->fh, p, sizeof(p), 0);
    if (rc != DV_OK)
        return rc == DV_ERR_CORRUPT ? file_corrupt(f, 0, "short prologue") : rc;
    if (memcmp(p, PROLOGUE_MAGIC, 8) != 0)
        return file_corrupt(f, 0, "not a divan file (bad magic)");
    if (dv_load_u64le(p + 56) != XXH3_64bits(p, 56))
        return file_corrupt(f, 0, "prologue checksum mismatch");
    if (dv_load_u32le(p + 8) != FORMAT_VERSION)
        return file_corrupt(f, 8, "unknown format version");
    f->seed = dv_load_u64le(p + 16);
    return DV_OK;
}

/* Checks a header candidate at off that must end at or below limit.  Returns
 * DV_OK (info and payload filled), DV_ERR_CORRUPT when it is not a valid
 * header, or another error (I/O) that must abort the open. */
static int file_try_header(store_file *f, uint64_t off, uint64_t limit, hdr_info *h, buf_t *payload)
{
    uint8_t fx[HDR_FIXED];
    int rc;
    if (off < PROLOGUE_SIZE || off > limit || limit - off < HDR_OVERHEAD)
        return DV_ERR_CORRUPT;
    if ((rc = f->vfs->pread(f->fh, fx, HDR_FIXED, off)) != DV_OK)
        return rc;
    if (memcmp(fx, HDR_MAGIC, 8) != 0 || dv_load_u64le(fx + 12) != off ||
        dv_load_u64le(fx + 44) != XXH3_64bits_withSeed(fx, 44, f->seed ^ SEED_FIXED))
        return DV_ERR_CORRUPT;
    h->off = off;
    h->len = dv_load_u32le(fx + 8);
    h->prev = dv_load_u64le(fx + 20);
    h->synced_upto = dv_load_u64le(fx + 28);
    h->gap_sum = dv_load_u64le(fx + 36);
    if (h->len > STORE_FILE_MAX_HEADER || limit - off - HDR_OVERHEAD < h->len ||
        (h->prev != 0 && (h->prev < PROLOGUE_SIZE || h->prev > off - HDR_OVERHEAD)) ||
        h->synced_upto < PROLOGUE_SIZE || h->synced_upto > off)
        return DV_ERR_CORRUPT;
    buf_reset(payload);
    if ((rc = buf_reserve(payload, HDR_OVERHEAD + h->len)) != DV_OK)
        return rc;
    if ((rc = f->vfs->pread(f->fh, payload->data, HDR_OVERHEAD + h->len, off)) != DV_OK)
        return rc;
    if (memcmp(payload->data, fx, HDR_FIXED) != 0 ||
        dv_load_u64le(payload->data + HDR_FIXED + h->len) !=
            XXH3_64bits_withSeed(payload->data, HDR_FIXED + h->len, f->seed))
        return DV_ERR_CORRUPT;
    memmove(payload->data, payload->data + HDR_FIXED, h->len);
    payload->len = h->len;
    return DV_OK;
}

/* Hashes [from, to) as the writer's gap hash does and compares with want. */
static int file_check_gap(store_file *f, uint64_t from, uint64_t to, uint64_t want, uint8_t *chunk,
                          XXH3_state_t *st)
{
    int rc;
    (void)XXH3_64bits_reset_withSeed(st, f->seed ^ SEED_GAP);
    while (from < to) {
        size_t n = to - from < VERIFY_CHUNK ? (size_t)(to - from) : VERIFY_CHUNK;
        if ((rc = f->vfs->pread(f->fh, chunk, n, from)) != DV_OK)
            return rc;
        (void)XXH3_64bits_update(st, chunk, n);
        from += n;
    }
    return XXH3_64bits_digest(st) == want ? DV_OK : DV_ERR_CORRUPT;
}

/* Verifies that everything between h->synced_upto and h is intact (see the
 * file comment).  On DV_ERR_CORRUPT *bad is the start of the failing range:
 * no header at or above it can be trusted. */
static int file_check_chain(store_file *f, const hdr_info *h, uint64_t *bad)
{
    hdr_info cur = *h, prev;
    buf_t scratch = BUF_INIT;
    uint8_t *chunk = NULL;
    XXH3_state_t *st = NULL;
    int rc = DV_OK;
    if (h->synced_upto >= h->off)
        return DV_OK;
    if (!(chunk = malloc(VERIFY_CHUNK)) || !(st = XXH3_createState())) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    for (;;) {
        uint64_t gap_start = PROLOGUE_SIZE;
        if (cur.prev) {
            rc = file_try_header(f, cur.prev, cur.off, &prev, &scratch);
            if (rc == DV_ERR_CORRUPT)
                *bad = cur.prev;
            if (rc != DV_OK)
                goto done;
            gap_start = hdr_end(&prev);
        }
        rc = file_check_gap(f, gap_start, cur.off, cur.gap_sum, chunk, st);
        if (rc == DV_ERR_CORRUPT)
            *bad = gap_start;
        if (rc != DV_OK || gap_start <= h->synced_upto || !cur.prev)
            goto done;
        cur = prev;
    }
done:
    free(chunk);
    if (st)
        XXH3_freeState(st);
    buf_free(&scratch);
    return rc;
}

/* Finds the newest header whose chain verifies, scanning back from size.
 * *found is 0 when the file holds no valid header. */
static int file_find_header(store_file *f, uint64_t size, hdr_info *out, int *found, buf_t *payload)
{
    uint8_t *win = malloc(SCAN_WINDOW + 8);
    uint64_t pos = size, limit = size;
    int rc = DV_OK;
    *found = 0;
    if (!win)
        return DV_ERR_NOMEM;
    while (pos > PROLOGUE_SIZE) {
        uint64_t start = pos - PROLOGUE_SIZE > SCAN_WINDOW ? pos - SCAN_WINDOW : PROLOGUE_SIZE;
        uint64_t wend = pos + 7 < limit ? pos + 7 : limit;
        uint64_t next = start;
        if (wend < start + 8) {
            pos = start;
            continue;
        }
        size_t wlen = (size_t)(wend - start);
        if ((rc = f->vfs->pread(f->fh, win, wlen, start)) != DV_OK)
            goto done;
        /* Candidates from the highest position down. */
        size_t i = wlen - 8 + 1;
        while (i > 0) {
            uint8_t *d = memrchr(win, 'D', i);
            if (!d)
                break;
            i = (size_t)(d - win);
            if (memcmp(d, HDR_MAGIC, 8) != 0)
                continue;
            uint64_t cand = start + i;
            hdr_info h;
            uint64_t bad = 0;
            rc = file_try_header(f, cand, limit, &h, payload);
            if (rc == DV_ERR_CORRUPT)
                continue;
            if (rc != DV_OK)
                goto done;
            rc = file_check_chain(f, &h, &bad);
            if (rc == DV_OK) {
                *out = h;
                *found = 1;
                goto done;
            }
            if (rc != DV_ERR_CORRUPT)
                goto done;
            log_warn("store_file: %s: header at %llu lost unsynced data at %llu; using an older commit",
                     f->path, (unsigned long long)cand, (unsigned long long)bad);
            limit = bad < cand ? bad : cand;
            if (limit < start) {
                next = limit;
                break;
            }
        }
        pos = next;
    }
    rc = DV_OK;
done:
    free(win);
    if (!*found)
        buf_reset(payload);
    return rc;
}

/* Unmaps every read mapping (only when no reader can use them: close). */
static void file_unmap(store_file *f)
{
    file_map *m = atomic_load(&f->map);
    atomic_store(&f->map, NULL);
    while (m) {
        file_map *older = m->older;
        (void)f->vfs->unmap(f->fh, m->base, m->len);
        free(m->resident);
        free(m);
        m = older;
    }
}

static void file_free(store_file *f)
{
    if (f->fh) {
        file_unmap(f);
        (void)f->vfs->close(f->fh);
    }
    if (f->gap)
        XXH3_freeState(f->gap);
    pthread_mutex_destroy(&f->mu);
    free(f->wbuf);
    free(f->path);
    free(f);
}

int store_file_open(store_vfs *vfs, const char *path, int flags, store_file **out, buf_t *header)
{
    return store_file_open_limit(vfs, path, flags, 0, out, header);
}

int store_file_open_limit(store_vfs *vfs, const char *path, int flags, uint64_t limit, store_file **out,
                          buf_t *header)
{
    store_file *f = calloc(1, sizeof(*f));
    buf_t hbuf = BUF_INIT;
    uint64_t size, disk_size, end = PROLOGUE_SIZE;
    hdr_info h = {0};
    int found = 0, rc;
    int vflags = 0;
    *out = NULL;
    if (!f)
        return DV_ERR_NOMEM;
    pthread_mutex_init(&f->mu, NULL);
    f->vfs = vfs;
    if (!(f->path = strdup(path)) || !(f->wbuf = malloc(WBUF_CAP)) || !(f->gap = XXH3_createState())) {
        rc = DV_ERR_NOMEM;
        goto fail;
    }
    if (flags & STORE_FILE_CREATE)
        vflags |= STORE_VFS_CREATE;
    if (flags & STORE_FILE_EXCL)
        vflags |= STORE_VFS_CREATE | STORE_VFS_EXCL;
    if ((rc = vfs->open(vfs, path, vflags, &f->fh)) != DV_OK) {
        f->fh = NULL;
        goto fail;
    }
    if ((rc = vfs->size(f->fh, &size)) != DV_OK)
        goto fail;
    rc = 0;
    if (size == PROLOGUE_SIZE && (vflags & STORE_VFS_CREATE) && (rc = file_prologue_is_zero(f)) < 0)
        goto fail;
    if (size < PROLOGUE_SIZE || (size == PROLOGUE_SIZE && rc == 1)) {
        if (!(vflags & STORE_VFS_CREATE)) {
            rc = file_corrupt(f, 0, "file shorter than its prologue");
            goto fail;
        }
        if ((rc = file_init_prologue(f, size)) != DV_OK)
            goto fail;
        size = PROLOGUE_SIZE;
    } else if ((rc = file_load_prologue(f)) != DV_OK) {
        goto fail;
    }
    disk_size = size;
    if (limit >= PROLOGUE_SIZE && limit < size)
        size = limit; /* a reopen after a failed commit: see file.h */
    if ((rc = file_find_header(f, size, &h, &found, &hbuf)) != DV_OK)
        goto fail;
    if (found) {
        end = hdr_end(&h);
        f->last_hdr_off = h.off;
    }
    /* Drop the torn tail (and any commit that lost data) durably before
     * anything new is appended after the chosen header. */
    if (disk_size > end) {
        log_warn("store_file: %s: ignoring %llu bytes after the last commit at %llu", path,
                 (unsigned long long)(disk_size - end), (unsigned long long)end);
        if ((rc = vfs->truncate(f->fh, end)) != DV_OK)
            goto fail;
    }
    if ((disk_size > end || (found && h.synced_upto < end)) && (rc = vfs->sync(f->fh)) != DV_OK)
        goto fail;
    atomic_store(&f->synced_upto, end);
    f->wbuf_off = end;
    atomic_store(&f->flushed_end, end);
    atomic_store(&f->end, end);
    atomic_store(&f->committed, end);
    (void)XXH3_64bits_reset_withSeed(f->gap, f->seed ^ SEED_GAP);
    if (header) {
        buf_reset(header);
        if (hbuf.len && (rc = buf_append(header, hbuf.data, hbuf.len)) != DV_OK)
            goto fail;
    }
    buf_free(&hbuf);
    *out = f;
    return DV_OK;
fail:
    buf_free(&hbuf);
    file_free(f);
    return rc;
}

int store_file_close(store_file *f)
{
    if (!f)
        return DV_OK;
    file_unmap(f);
    /* The zeros written ahead are not data: a file at rest ends at its last
     * commit (an unsynced truncation lost to a crash only leaves zeros that
     * open drops).  What follows the last commit is dropped by open anyway. */
    uint64_t committed = atomic_load(&f->committed);
    if (f->zeroed_end > committed && !atomic_load(&f->poisoned) && !atomic_load(&f->superseded))
        (void)f->vfs->truncate(f->fh, committed);
    int rc = f->vfs->close(f->fh);
    f->fh = NULL;
    file_free(f);
    return rc;
}

void store_file_supersede(store_file *f) { atomic_store(&f->superseded, 1); }

uint64_t store_file_size(const store_file *f)
{
    return atomic_load_explicit(&f->end, memory_order_acquire);
}

uint64_t store_file_committed_size(const store_file *f)
{
    return atomic_load_explicit(&f->committed, memory_order_acquire);
}


const char *store_file_path(const store_file *f) { return f->path; }
