/*
 * tool_file_corpus.c — writes small valid store files into a directory, as
 * the seed corpus of fuzz/fuzz_file_open.c:
 *   empty.dvn    a prologue only
 *   synced.dvn   records and two synced commits
 *   unsynced.dvn a synced commit, two unsynced ones and a torn tail
 * Usage: tool_file_corpus DIR
 */
#include "base/buf.h"
#include "base/status.h"
#include "store/file.h"

#include <stdio.h>
#include <string.h>

static int check(int rc, const char *what)
{
    if (rc != DV_OK)
        fprintf(stderr, "tool_file_corpus: %s: %s\n", what, dv_strerror(rc));
    return rc;
}

static int make(const char *dir, const char *name, int kind)
{
    char path[4096];
    store_file *f;
    store_ptr p;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (check(store_file_open(store_vfs_posix(), path, STORE_FILE_CREATE | STORE_FILE_EXCL, &f, NULL), path))
        return 1;
    int rc = DV_OK;
    for (int c = 0; c < kind * 2 && rc == DV_OK; c++) {
        char rec[64], hdr[32];
        for (int r = 0; r < 3 && rc == DV_OK; r++) {
            int n = snprintf(rec, sizeof(rec), "record %d of commit %d", r, c);
            rc = store_file_append(f, rec, (size_t)(n * r / 2), &p);
        }
        int n = snprintf(hdr, sizeof(hdr), "header %d", c);
        if (rc == DV_OK)
            rc = store_file_commit(f, hdr, (size_t)n, kind == 1 || c == 0);
    }
    if (rc == DV_OK && kind == 2 && (rc = store_file_append(f, "torn tail", 9, &p)) == DV_OK)
        rc = store_file_sync(f); /* written but never committed */
    check(rc, path);
    store_file_close(f);
    return rc != DV_OK;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    return make(argv[1], "empty.dvn", 0) | make(argv[1], "synced.dvn", 1) | make(argv[1], "unsynced.dvn", 2);
}
