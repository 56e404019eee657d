/*
 * vfs.h — the one small layer all file I/O in store/ goes through.
 *
 * As SQLite's VFS, it exists so that tests can replace the operating system:
 * the fault-injecting VFS (tests/store/faultvfs.h) keeps unsynced writes
 * apart from synced ones and, on a simulated power loss, drops or tears them,
 * or fails a chosen write or sync.  Production uses store_vfs_posix().
 *
 * Contract every implementation keeps:
 *   - pread returns exactly len bytes or DV_ERR_IO / DV_ERR_CORRUPT (short read
 *     past end of file is DV_ERR_CORRUPT: a pointer that points past the end).
 *   - pwrite writes all len bytes or returns DV_ERR_IO.
 *   - Data written is durable only after sync returns DV_OK.
 *   - A new name (create, rename) is durable only after sync_dir of its folder.
 *   - Functions are safe to call from several threads on the same file
 *     (pread concurrently with pwrite to other offsets).
 *   - map is optional (NULL: store_file reads with pread only).  It maps
 *     [0, len) of the file read-only and shared, len possibly beyond the end
 *     of the file: the caller touches only bytes that were written (pwrite)
 *     to the file before, and sees them as pread would (one page cache).
 *     The mapping stays valid until unmap, whatever is appended meanwhile.
 */
#ifndef DV_STORE_VFS_H
#define DV_STORE_VFS_H

#include <stddef.h>
#include <stdint.h>

typedef struct store_vfs store_vfs;
typedef struct store_vfs_file store_vfs_file;

enum {
    STORE_VFS_CREATE = 1,    /* create if missing                        */
    STORE_VFS_EXCL = 2,      /* with CREATE: fail with DV_ERR_EXISTS if present */
    STORE_VFS_READONLY = 4,
};

struct store_vfs {
    int (*open)(store_vfs *vfs, const char *path, int flags, store_vfs_file **out);
    int (*close)(store_vfs_file *f);
    int (*pread)(store_vfs_file *f, void *buf, size_t len, uint64_t off);
    int (*pwrite)(store_vfs_file *f, const void *buf, size_t len, uint64_t off);
    int (*sync)(store_vfs_file *f);                 /* fdatasync */
    int (*size)(store_vfs_file *f, uint64_t *out);
    int (*truncate)(store_vfs_file *f, uint64_t size);
    int (*rename)(store_vfs *vfs, const char *from, const char *to);
    int (*unlink)(store_vfs *vfs, const char *path); /* DV_ERR_NOTFOUND if absent */
    int (*sync_dir)(store_vfs *vfs, const char *dir);
    int (*exists)(store_vfs *vfs, const char *path); /* 1, 0, or <0 error */
    int (*map)(store_vfs_file *f, uint64_t len, const void **out); /* optional */
    int (*unmap)(store_vfs_file *f, const void *p, uint64_t len);
    /* optional: drops the process's resident pages of a mapping (the page
     * cache keeps them; the next touch maps them again). */
    int (*trim)(store_vfs_file *f, const void *p, uint64_t len);
};

/* The process-wide POSIX implementation (open/pread/pwrite/fdatasync). */
store_vfs *store_vfs_posix(void);

#endif
