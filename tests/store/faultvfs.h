/*
 * faultvfs.h — an in-memory store_vfs for tests that simulates power loss
 * and I/O failures, as SQLite's test VFS does.
 *
 * Every file keeps two images: what is durable (reached the "platter" by a
 * sync) and the writes made since the last sync, in order.  A simulated
 * power loss (faultvfs_crash) resolves the unsynced writes by the chosen
 * mode and forgets directory changes (create, rename, unlink) not made
 * durable by sync_dir.  A "power cut" armed with faultvfs_cut_after makes the
 * Nth next mutating operation and everything after it fail with DV_ERR_IO,
 * freezing the state at an exact moment, e.g. between a commit's data sync
 * and its header write.
 *
 * Thread-safe: one mutex around everything (tests are not about VFS speed).
 */
#ifndef DV_TESTS_STORE_FAULTVFS_H
#define DV_TESTS_STORE_FAULTVFS_H

#include "base/buf.h"
#include "store/vfs.h"

#include <stdint.h>

typedef struct faultvfs faultvfs;

faultvfs *faultvfs_new(uint64_t seed);
/* Frees every file.  Handles must have been closed. */
void faultvfs_free(faultvfs *v);
store_vfs *faultvfs_vfs(faultvfs *v);

enum {
    FAULTVFS_DROP_UNSYNCED = 0, /* every unsynced write is lost                 */
    FAULTVFS_KEEP_RANDOM = 1,   /* each unsynced write independently kept,
                                   lost, or torn (a random prefix kept), with
                                   later writes possibly kept while earlier ones
                                   are lost (the disk reorders)                 */
    FAULTVFS_TEAR_LAST = 2,     /* all unsynced writes kept but the last, which
                                   keeps only a random prefix                   */
    FAULTVFS_KEEP_ALL = 3,      /* a process crash: the OS keeps every write    */
};

/* Power loss.  Afterwards every handle opened before is dead: operations on it
 * return DV_ERR_IO, close frees it.  The cut (if any) is disarmed. */
void faultvfs_crash(faultvfs *v, int mode);

/* Arms a power cut: the n-th next mutating operation (pwrite, sync, truncate,
 * rename, unlink, sync_dir, create; n = 1 is the very next) and every
 * operation after it fail with DV_ERR_IO, without effect.  0 disarms. */
void faultvfs_cut_after(faultvfs *v, uint64_t n);
/* 1 once an armed cut has happened. */
int faultvfs_cut_happened(faultvfs *v);

/* Single failures (the system goes on working afterwards): the n-th next
 * pwrite / sync returns DV_ERR_IO without effect.  0 disarms. */
void faultvfs_fail_write_after(faultvfs *v, uint64_t n);
void faultvfs_fail_sync_after(faultvfs *v, uint64_t n);

/* Count of mutating operations so far (to pick cut points at random). */
uint64_t faultvfs_op_count(faultvfs *v);

/* Raw access to a file's current (not crash-resolved) contents, for
 * corruption tests: read it, flip bytes, write it back (durably). */
int faultvfs_read_file(faultvfs *v, const char *path, buf_t *out);
int faultvfs_write_file(faultvfs *v, const char *path, const void *data, size_t len);

#endif
