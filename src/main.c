/*
 * main.c — process start-up.
 *
 * Until the HTTP layer lands (issue 3) the server only parses its
 * command line, prepares the data directory and reports that it has no
 * HTTP listener yet.
 */
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    const char *data = "./data";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            data = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--data DIR]\n", argv[0]);
            return 2;
        }
    }
    if (mkdir(data, 0755) != 0 && errno != EEXIST) {
        log_error("cannot create data directory %s: %s", data, strerror(errno));
        return 1;
    }
    log_info("data directory %s ready; the HTTP API is not built yet", data);
    return 0;
}
