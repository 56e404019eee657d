/*
 * file.h — an append-only file of checksummed records and commit headers.
 *
 * Layout:
 *   offset 0      prologue (64 bytes): magic "DIVANDB1", format version,
 *                 a random 64-bit seed, checksum.  Written once at creation.
 *   then          records and headers, appended, never overwritten.
 *
 * Record:  u32le payload length | u64le checksum | payload
 *          checksum = XXH3_64(payload) seeded with (seed ^ offset ^ len), so a
 *          pointer to the wrong offset, a wrong length, a torn or flipped byte
 *          all fail verification with DV_ERR_CORRUPT.
 * Header:  8-byte magic "DVHEADER" | u32le payload length | u64le own offset |
 *          u64le previous header's offset | u64le synced_upto | u64le checksum
 *          of the bytes since the previous header | u64le checksum of the
 *          fields so far | payload | u64le checksum over everything before it,
 *          all seeded with the file's seed.  The extra fields let open verify
 *          commits made without sync (see file.c).  The seed is secret (never leaves the file), so bytes
 *          stored by a user (an attachment containing a copy of a database
 *          file) cannot forge a header; the own-offset field stops a copied
 *          header from validating at any other position.
 *
 * Invariants:
 *   1. Bytes below the committed end are never written again.
 *   2. Commit = append everything, sync, append the header, sync.  When
 *      store_file_commit returns DV_OK the header and everything it points to
 *      is durable.
 *   3. Open finds the last valid header by scanning backwards from the end
 *      for the header magic (O(torn tail), never a full scan), verifying each
 *      candidate; appends resume right after that header, so a torn tail is
 *      ignored and overwritten.
 *   4. Every read is verified; a bad checksum or an impossible pointer is
 *      DV_ERR_CORRUPT, logged once with file name and offset.
 *
 * Concurrency: one appender (the database's writer thread) at a time; any
 * number of concurrent readers, which only ever read below an offset they
 * learnt from a committed header or from their own appends.
 */
#ifndef DV_STORE_FILE_H
#define DV_STORE_FILE_H

#include "base/buf.h"
#include "store/vfs.h"

#include <stdint.h>

typedef struct store_file store_file;

/* Limits: a larger append or commit is DV_ERR_TOO_LARGE; a stored length
 * beyond them is corruption. */
#define STORE_FILE_MAX_RECORD (1u << 30)   /* 1 GiB per record        */
#define STORE_FILE_MAX_HEADER (16u << 20)  /* 16 MiB per header payload */

/* Location of a record: where it starts and how many payload bytes it has. */
typedef struct store_ptr {
    uint64_t off;  /* 0 means "no record" (the prologue lives at 0) */
    uint32_t size; /* payload length */
} store_ptr;

#define STORE_PTR_NULL ((store_ptr){0, 0})
static inline int store_ptr_is_null(store_ptr p) { return p.off == 0; }

enum {
    STORE_FILE_CREATE = 1, /* create if missing */
    STORE_FILE_EXCL = 2,   /* fail with DV_ERR_EXISTS if it exists */
};

/* Opens (or creates) path.  On success *header holds the payload of the last
 * valid header (empty, len 0, for a file with no commit yet).  A file whose
 * prologue is missing or invalid gives DV_ERR_CORRUPT (with CREATE, a file
 * shorter than the prologue or a prologue of zeros, both left by a crash
 * during creation, is initialised).  header may be NULL.  Open truncates
 * whatever follows the last valid commit (a torn tail) and syncs that. */
int store_file_open(store_vfs *vfs, const char *path, int flags, store_file **out, buf_t *header);
/* Same, ignoring everything at or after limit (0: no limit): for reopening
 * after a failed commit, with limit = the old handle's committed size.  A
 * commit whose sync failed may be complete in the page cache yet never reach
 * the disk (a failed fsync can leave its pages marked clean), so it must not
 * be taken up again: it is truncated away and overwritten by new commits. */
int store_file_open_limit(store_vfs *vfs, const char *path, int flags, uint64_t limit, store_file **out,
                          buf_t *header);
/* Does not commit; frees.  Cuts the zeros this handle wrote ahead (see
 * file.c), unless the handle was poisoned or superseded. */
int store_file_close(store_file *f);
/* Another handle now writes this file (a reopen after a failed commit,
 * while readers still hold this one): its close leaves the file as it is,
 * since cutting it at this handle's last commit would cut off the commits
 * made through the new one.  Call before opening the new handle. */
void store_file_supersede(store_file *f);

/* Appends a record; *ptr receives its location.  Not durable until commit.
 * Appends are buffered in memory (up to a few hundred KiB) and written in
 * large pwrites; store_file_read sees buffered records too. */
int store_file_append(store_file *f, const void *data, size_t len, store_ptr *ptr);
/* Reads and verifies the record at ptr into out (replacing its contents). */
int store_file_read(store_file *f, store_ptr ptr, buf_t *out);
/* Same without a copy where possible: *p points at the verified payload,
 * either inside the file's read mapping (valid until the file is closed) or
 * inside scratch (valid until scratch changes).  For readers that decode or
 * decompress the record at once: a mapped read costs no system call. */
int store_file_read_ref(store_file *f, store_ptr ptr, buf_t *scratch, const uint8_t **p);
/* Length of a file's first read mapping (then doubled as it grows); tests
 * lower it to make mappings grow under concurrent readers. */
extern uint64_t store_file_map_min;
/* Resident budget of a file's read mappings (see file.c; default
 * STORE_FILE_MAP_TRIM_DEFAULT): mapped reads stay cheap without the file
 * becoming resident memory of the process. */
#define STORE_FILE_MAP_TRIM_DEFAULT (16u << 20)
extern uint64_t store_file_map_trim;
/* Records of this size or more are read with pread, never mapped
 * (default 32 KiB: attachment chunks). */
extern uint32_t store_file_map_max_record;
/* A synced commit with more unsynced bytes than this syncs its data before
 * writing its header (two syncs instead of one), which bounds what open
 * verifies behind the newest commit; 4 MiB.  Tests vary it. */
extern uint64_t store_file_sync_ahead_max;

/* Appends the header payload after everything appended so far and, with
 * sync == STORE_COMMIT_SYNC, makes it all durable with one fdatasync (two
 * for a commit of more than store_file_sync_ahead_max bytes: data first).
 * STORE_COMMIT_NOSYNC syncs nothing (the durability settings "never" / "every
 * N ms"; store_file_sync later makes it durable).  STORE_COMMIT_SYNC_LATER
 * writes the commit as SYNC would but leaves its last fdatasync to
 * store_file_sync_to from another thread (a pipelined durable commit).  On
 * error the file is poisoned: later appends/commits return DV_ERR_IO until
 * it is reopened, since what reached the disk is unknown. */
enum { STORE_COMMIT_NOSYNC = 0, STORE_COMMIT_SYNC = 1, STORE_COMMIT_SYNC_LATER = 2 };
int store_file_commit(store_file *f, const void *header, size_t len, int sync);
/* Syncs whatever has been written (for the periodic-durability mode). */
int store_file_sync(store_file *f);
/* For a thread other than the appender (a database's syncer): one
 * fdatasync, after which every byte below upto is durable.  upto must be
 * at most what the appender has handed to the OS, e.g. the committed size
 * after an unsynced commit.  Headers the appender writes afterwards name
 * upto as synced.  A failure poisons the file as for the appender. */
int store_file_sync_to(store_file *f, uint64_t upto);

uint64_t store_file_size(const store_file *f);        /* end of appended data */
uint64_t store_file_committed_size(const store_file *f); /* end of last header */
const char *store_file_path(const store_file *f);

#endif
