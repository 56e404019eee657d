/*
 * fuzz_dbfile_open.c — libFuzzer target: the input is a database file.
 *
 * The bytes are placed in an in-memory fault VFS (tests/store/faultvfs.c is
 * compiled into the fuzz targets, so no disk I/O) and opened with
 * store_dbfile_open.  If it opens, everything a client could ask for is
 * read: info, security object, every doc (all leaves' bodies and every
 * attachment's bytes), the changes feed both ways, local docs, id counts.
 * Errors are fine; a crash, a leak, a sanitizer report or a hang is a bug.
 *
 * Raw mutations almost never get past the checksums, so each input is also
 * tried a second time after "fixing" it: every record checksum, header sum
 * and the prologue sum are recomputed (with the file's own seed, taken from
 * its prologue) for the layout documented in src/store/file.c.  That lets
 * the fuzzer reach the decoders of B+tree nodes, doc infos, rev trees,
 * bodies and attachment indexes with well-framed but hostile contents.  If
 * file.c's format changes, the fix-up merely becomes less effective.
 *
 * Limits keep every input fast: at most FZ_ROWS rows per cursor and
 * FZ_ATT_BYTES bytes per attachment are read.
 */
#include "base/buf.h"
#include "base/log.h"
#include "base/status.h"
#include "store/dbfile.h"
#include "store/faultvfs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_PATH "/fuzz/db.couch"
#define FZ_ROWS 2000
#define FZ_ATT_BYTES (256u * 1024u)

/* ---- checksum fix-up (mirrors src/store/file.c's layout) ---------------- */

#define FX_PROLOGUE 64
#define FX_REC_FRAME 12
#define FX_HDR_FIXED 52
#define FX_HDR_OVERHEAD 60
#define FX_SEED_FIXED 0x5a1c0ffee0ddf00dULL
#define FX_SEED_GAP 0x3c6ef372fe94f82bULL

static uint64_t fx_rec_seed(uint64_t seed, uint64_t off, uint32_t len)
{
    return seed ^ (off * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)len * 0xc2b2ae3d27d4eb4fULL);
}

static void fx_fixup(uint8_t *p, size_t n)
{
    if (n < FX_PROLOGUE)
        return;
    dv_store_u64le(p + 56, XXH3_64bits(p, 56));
    uint64_t seed = dv_load_u64le(p + 16);
    size_t off = FX_PROLOGUE, gap_start = FX_PROLOGUE;
    while (off + FX_REC_FRAME <= n) {
        uint32_t len;
        if (memcmp(p + off, "DVHEADER", 8) == 0) {
            len = dv_load_u32le(p + off + 8);
            if (off + FX_HDR_OVERHEAD > n || len > n - off - FX_HDR_OVERHEAD)
                return;
            uint8_t *h = p + off;
            dv_store_u64le(h + 12, off);
            dv_store_u64le(h + 36, XXH3_64bits_withSeed(p + gap_start, off - gap_start, seed ^ FX_SEED_GAP));
            dv_store_u64le(h + 44, XXH3_64bits_withSeed(h, 44, seed ^ FX_SEED_FIXED));
            dv_store_u64le(h + FX_HDR_FIXED + len, XXH3_64bits_withSeed(h, FX_HDR_FIXED + len, seed));
            off += FX_HDR_OVERHEAD + len;
            gap_start = off;
            continue;
        }
        len = dv_load_u32le(p + off);
        if (len > n - off - FX_REC_FRAME)
            return;
        dv_store_u64le(p + off + 4, XXH3_64bits_withSeed(p + off + FX_REC_FRAME, len, fx_rec_seed(seed, off, len)));
        off += FX_REC_FRAME + len;
    }
}

/* ---- reading everything ------------------------------------------------ */

static void fz_read_body(const store_snap *s, store_ptr body)
{
    store_docbody b;
    store_docbody_init(&b);
    if (store_snap_read_body(s, body, &b) == DV_OK) {
        buf_t out = BUF_INIT;
        for (size_t i = 0; i < b.natts; i++) {
            uint64_t len = b.atts[i].length < FZ_ATT_BYTES ? b.atts[i].length : FZ_ATT_BYTES;
            for (uint64_t off = 0; off < len; off += 65536) {
                buf_reset(&out);
                if (store_snap_read_att(s, &b.atts[i], off, 65536, &out) != DV_OK)
                    break;
            }
        }
        buf_free(&out);
    }
    store_docbody_free(&b);
}

static void fz_read_all(store_dbfile *db)
{
    store_snap *s = NULL;
    if (store_dbfile_snapshot(db, &s) != DV_OK)
        return;
    store_dbinfo info;
    store_snap_info(s, &info);
    buf_t sec = BUF_INIT, id = BUF_INIT, body = BUF_INIT;
    (void)store_snap_security(s, &sec);

    store_btree_range all = STORE_BTREE_RANGE_ALL;
    store_id_cursor *ic = NULL;
    store_docinfo d;
    store_docinfo_init(&d);
    if (store_snap_iter_ids(s, &all, &ic) == DV_OK) {
        for (int n = 0; n < FZ_ROWS && store_id_cursor_next(ic, &d) == 1; n++) {
            for (uint32_t i = 0; i < d.tree.n; i++)
                if (d.tree.nodes[i].has_body)
                    fz_read_body(s, d.tree.nodes[i].body);
            store_docinfo dd;
            store_docinfo_init(&dd);
            (void)store_snap_get_doc(s, d.id.data, d.id.len, &dd);
            store_docinfo_free(&dd);
            uint64_t before;
            (void)store_snap_count_ids_before(s, d.id.data, d.id.len, n & 1, &before);
        }
        store_id_cursor_close(ic);
    }
    store_btree_range desc = STORE_BTREE_RANGE_ALL;
    desc.descending = 1;
    if (store_snap_iter_ids(s, &desc, &ic) == DV_OK) {
        (void)store_id_cursor_skip(ic, 3);
        for (int n = 0; n < FZ_ROWS && store_id_cursor_next(ic, &d) == 1; n++)
            ;
        store_id_cursor_close(ic);
    }
    store_docinfo_free(&d);

    store_change ch;
    store_change_init(&ch);
    for (int descending = 0; descending < 2; descending++) {
        store_seq_cursor *sc = NULL;
        if (store_snap_iter_changes(s, 0, descending, &sc) != DV_OK)
            continue;
        for (int n = 0; n < FZ_ROWS && store_seq_cursor_next(sc, &ch) == 1; n++)
            ;
        store_seq_cursor_close(sc);
    }
    store_change_free(&ch);

    store_local_cursor *lc = NULL;
    if (store_snap_iter_local(s, &all, &lc) == DV_OK) {
        uint64_t rev;
        for (int n = 0; n < FZ_ROWS && store_local_cursor_next(lc, &id, &rev, &body) == 1; n++)
            ;
        store_local_cursor_close(lc);
    }
    buf_free(&sec);
    buf_free(&id);
    buf_free(&body);
    store_snap_release(s);
}

static void fz_open(const uint8_t *data, size_t size)
{
    faultvfs *fv = faultvfs_new(1);
    if (!fv)
        return;
    store_dbfile *db = NULL;
    store_dbfile_options o = {0};
    o.vfs = faultvfs_vfs(fv);
    o.durability = STORE_DURABLE_NEVER;
    o.cache_bytes = 1u << 20;
    if (faultvfs_write_file(fv, FZ_PATH, data, size) == DV_OK && store_dbfile_open(FZ_PATH, &o, &db) == DV_OK) {
        fz_read_all(db);
        store_dbfile_close(db);
    }
    faultvfs_free(fv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_set_level(LOG_NONE); /* corruption is reported on every input */
        init = 1;
    }
    fz_open(data, size);
    if (size >= FX_PROLOGUE && size <= (1u << 22)) {
        uint8_t *copy = malloc(size);
        if (copy) {
            memcpy(copy, data, size);
            fx_fixup(copy, size);
            fz_open(copy, size);
            free(copy);
        }
    }
    return 0;
}
