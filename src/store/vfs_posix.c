/*
 * vfs_posix.c — the production store_vfs: thin wrappers over POSIX calls.
 *
 * Everything here maps one VFS call to one system call (or a loop of them),
 * keeping the contract of vfs.h:
 *   - pread returns all bytes or fails; reaching end of file before len bytes
 *     is DV_ERR_CORRUPT (a pointer past the end), any other failure DV_ERR_IO.
 *   - pwrite loops over short writes and EINTR until every byte is written.
 *   - sync is fdatasync: enough for data and for the file size (which Linux
 *     flushes with fdatasync when it changed), not for the directory entry;
 *     sync_dir opens the directory and fsyncs it for that.
 *   - No state is shared between handles beyond the kernel's, so every call
 *     is safe from any thread (pread/pwrite carry their own offset).
 *   - map is mmap(PROT_READ, MAP_SHARED): Linux has one page cache, so a
 *     mapping sees every pwrite at once.  The cost of reading through it
 *     instead of pread: an I/O error on a mapped page is SIGBUS, not EIO
 *     (see docs/durability.md).
 * Unexpected errors are logged once here with the path and errno text, so
 * callers only need to propagate the status code.
 */
#include "store/vfs.h"

#include "base/log.h"
#include "base/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct posix_file {
    int fd;
    char path[]; /* for log messages only */
} posix_file;

static posix_file *pf(store_vfs_file *f) { return (posix_file *)(void *)f; }

static int posix_open(store_vfs *vfs, const char *path, int flags, store_vfs_file **out)
{
    (void)vfs;
    int oflags = O_CLOEXEC | ((flags & STORE_VFS_READONLY) ? O_RDONLY : O_RDWR);
    if (flags & STORE_VFS_CREATE)
        oflags |= O_CREAT;
    if ((flags & STORE_VFS_CREATE) && (flags & STORE_VFS_EXCL))
        oflags |= O_EXCL;
    size_t plen = strlen(path);
    posix_file *f = malloc(sizeof(*f) + plen + 1);
    if (!f)
        return DV_ERR_NOMEM;
    memcpy(f->path, path, plen + 1);
    /* O_NOATIME: with relatime every read still asked whether the access
     * time was due (touch_atime, 2% of a random point read served by
     * pread).  Only the file's owner may ask for it (EPERM otherwise, e.g.
     * a data directory copied in by another user): then without. */
    int fd, noatime = O_NOATIME;
    for (;;) {
        fd = open(path, oflags | noatime, 0644);
        if (fd >= 0)
            break;
        if (errno == EPERM && noatime)
            noatime = 0;
        else if (errno != EINTR)
            break;
    }
    if (fd < 0) {
        int e = errno;
        free(f);
        if (e == ENOENT)
            return DV_ERR_NOTFOUND;
        if (e == EEXIST)
            return DV_ERR_EXISTS;
        log_error("vfs: open %s: %s", path, strerror(e));
        return DV_ERR_IO;
    }
    f->fd = fd;
    *out = (store_vfs_file *)(void *)f;
    return DV_OK;
}

static int posix_close(store_vfs_file *vf)
{
    posix_file *f = pf(vf);
    int rc = DV_OK;
    /* close() is not retried on EINTR: on Linux the descriptor is gone. */
    if (close(f->fd) != 0 && errno != EINTR) {
        log_error("vfs: close %s: %s", f->path, strerror(errno));
        rc = DV_ERR_IO;
    }
    free(f);
    return rc;
}

static int posix_pread(store_vfs_file *vf, void *buf, size_t len, uint64_t off)
{
    posix_file *f = pf(vf);
    uint8_t *p = buf;
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return DV_ERR_CORRUPT;
    while (len > 0) {
        ssize_t n = pread(f->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("vfs: pread %s at %llu: %s", f->path, (unsigned long long)off, strerror(errno));
            return DV_ERR_IO;
        }
        if (n == 0)
            return DV_ERR_CORRUPT; /* past end of file */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return DV_OK;
}

static int posix_pwrite(store_vfs_file *vf, const void *buf, size_t len, uint64_t off)
{
    posix_file *f = pf(vf);
    const uint8_t *p = buf;
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return DV_ERR_IO;
    while (len > 0) {
        ssize_t n = pwrite(f->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("vfs: pwrite %s at %llu: %s", f->path, (unsigned long long)off, strerror(errno));
            return DV_ERR_IO;
        }
        if (n == 0) {
            log_error("vfs: pwrite %s at %llu wrote nothing", f->path, (unsigned long long)off);
            return DV_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return DV_OK;
}

static int posix_sync(store_vfs_file *vf)
{
    posix_file *f = pf(vf);
    int r;
    do {
        r = fdatasync(f->fd);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        log_error("vfs: fdatasync %s: %s", f->path, strerror(errno));
        return DV_ERR_IO;
    }
    return DV_OK;
}

static int posix_size(store_vfs_file *vf, uint64_t *out)
{
    posix_file *f = pf(vf);
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        log_error("vfs: fstat %s: %s", f->path, strerror(errno));
        return DV_ERR_IO;
    }
    *out = (uint64_t)st.st_size;
    return DV_OK;
}

static int posix_truncate(store_vfs_file *vf, uint64_t size)
{
    posix_file *f = pf(vf);
    int r;
    if (size > (uint64_t)INT64_MAX)
        return DV_ERR_IO;
    do {
        r = ftruncate(f->fd, (off_t)size);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        log_error("vfs: ftruncate %s to %llu: %s", f->path, (unsigned long long)size, strerror(errno));
        return DV_ERR_IO;
    }
    return DV_OK;
}

static int posix_rename(store_vfs *vfs, const char *from, const char *to)
{
    (void)vfs;
    if (rename(from, to) != 0) {
        if (errno == ENOENT)
            return DV_ERR_NOTFOUND;
        log_error("vfs: rename %s to %s: %s", from, to, strerror(errno));
        return DV_ERR_IO;
    }
    return DV_OK;
}

static int posix_unlink(store_vfs *vfs, const char *path)
{
    (void)vfs;
    if (unlink(path) != 0) {
        if (errno == ENOENT)
            return DV_ERR_NOTFOUND;
        log_error("vfs: unlink %s: %s", path, strerror(errno));
        return DV_ERR_IO;
    }
    return DV_OK;
}

static int posix_sync_dir(store_vfs *vfs, const char *dir)
{
    (void)vfs;
    if (!dir || !*dir)
        dir = ".";
    int fd;
    do {
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == ENOENT)
            return DV_ERR_NOTFOUND;
        log_error("vfs: open directory %s: %s", dir, strerror(errno));
        return DV_ERR_IO;
    }
    int rc = DV_OK;
    int r;
    do {
        r = fsync(fd);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        log_error("vfs: fsync directory %s: %s", dir, strerror(errno));
        rc = DV_ERR_IO;
    }
    close(fd);
    return rc;
}

static int posix_exists(store_vfs *vfs, const char *path)
{
    (void)vfs;
    struct stat st;
    if (stat(path, &st) == 0)
        return 1;
    if (errno == ENOENT || errno == ENOTDIR)
        return 0;
    log_error("vfs: stat %s: %s", path, strerror(errno));
    return DV_ERR_IO;
}

static int posix_map(store_vfs_file *vf, uint64_t len, const void **out)
{
    posix_file *f = pf(vf);
    if (len == 0 || len > (uint64_t)SIZE_MAX)
        return DV_ERR_INVALID;
    /* At a 2 MiB-aligned address: a fault maps an aligned window (64 KiB
     * fault-around) or the whole folio around it, aligned in the address
     * space, so only an aligned mapping keeps what one fault maps inside
     * one 256 KiB granule of the file (what store/file.c counts against
     * its budget).  Address space is reserved with slack, the file mapped
     * over its aligned part, the slack returned. */
    size_t align = 2u << 20, reserve = (size_t)len + align;
    if (reserve < len)
        return DV_ERR_INVALID;
    uint8_t *r = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    void *p = MAP_FAILED;
    if (r != MAP_FAILED) {
        uint8_t *a = (uint8_t *)(((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1));
        p = mmap(a, (size_t)len, PROT_READ, MAP_SHARED | MAP_FIXED, f->fd, 0);
        if (p == MAP_FAILED) {
            (void)munmap(r, reserve);
        } else {
            if (a > r) /* slack of our own reservation: unmapping it cannot fail */
                (void)munmap(r, (size_t)(a - r));
            /* the mapping covers whole pages: the slack starts at the next page */
            size_t page = (size_t)sysconf(_SC_PAGESIZE);
            uint8_t *end = a + (((size_t)len + page - 1) & ~(page - 1));
            if (r + reserve > end)
                (void)munmap(end, (size_t)(r + reserve - end));
        }
    }
    if (p == MAP_FAILED) {
        log_warn("vfs: mmap %s (%llu bytes): %s; reading with pread", f->path, (unsigned long long)len,
                 strerror(errno));
        return DV_ERR_NOMEM;
    }
    *out = p;
    return DV_OK;
}

static int posix_unmap(store_vfs_file *vf, const void *p, uint64_t len)
{
    if (munmap((void *)p, (size_t)len) != 0) {
        log_error("vfs: munmap %s: %s", pf(vf)->path, strerror(errno));
        return DV_ERR_IO;
    }
    return DV_OK;
}

static int posix_trim(store_vfs_file *vf, const void *p, uint64_t len)
{
    (void)vf;
    /* On a shared read-only file mapping this only drops page-table entries:
     * the pages stay in the page cache, a later read faults them back (a
     * minor fault).  Readers touching the range meanwhile are safe. */
    return madvise((void *)p, (size_t)len, MADV_DONTNEED) == 0 ? DV_OK : DV_ERR_IO;
}

static store_vfs posix_vfs = {
    .open = posix_open,
    .close = posix_close,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .sync = posix_sync,
    .size = posix_size,
    .truncate = posix_truncate,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .sync_dir = posix_sync_dir,
    .exists = posix_exists,
    .map = posix_map,
    .unmap = posix_unmap,
    .trim = posix_trim,
};

store_vfs *store_vfs_posix(void) { return &posix_vfs; }
