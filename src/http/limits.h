/*
 * limits.h — process-wide resource limits the HTTP server depends on.
 *
 * Called once at start-up, before the loop threads exist.  What each limit
 * protects and what it costs is in docs/security.md.
 */
#ifndef DV_HTTP_LIMITS_H
#define DV_HTTP_LIMITS_H

#include <stddef.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit (thousands of client
 * connections need as many descriptors) and returns the soft limit then
 * in force, or -1 when it cannot be read. */
long long http_limits_raise_nofile(void);

/* The largest max_connections that fits in `nofile` descriptors: half of
 * them, the rest kept for database and view files, the query servers'
 * pipes and the listener. */
long long http_limits_connections_for(long long nofile);

/* Request bytes h2o buffers for one connection beyond `threshold` go to an
 * unlinked temporary file in `dir` (mapped, so the kernel can page them
 * out) instead of anonymous memory.  DV_ERR_INVALID when dir is too long
 * for h2o's template. */
int http_limits_body_spill(const char *dir, size_t threshold);

#endif
