/*
 * config.h — CouchDB-style ini configuration.
 *
 * A config is an ordered set of (section, key) → value entries.  Files are
 * read with libinih; a later file or config_set() replaces an earlier value,
 * as CouchDB's chain of ini files does.  Start-up (config_setup) fixes the
 * order: DATA/.divan.ini (state divan persists: the server uuid and admins
 * created with --admin), then every --config file in command-line order,
 * then command-line flags.  Explicit user settings therefore always win over
 * persisted state.
 *
 * Invariant: after config_setup returns DV_OK no [admins] value in memory is
 * a plain password, and none was logged.  A plain password found in a file is
 * hashed (PBKDF2, CouchDB's format, see base/passwd.h) and written back into
 * that same file, so the clear text does not stay on disk.
 *
 * Getters return CouchDB's defaults for absent keys.  Not thread-safe for
 * writes: configure before the server threads start, read-only afterwards.
 */
#ifndef DV_CONFIG_H
#define DV_CONFIG_H

#include <stddef.h>

typedef struct config config_t;

/* Name of the file under the data directory that holds persisted state. */
#define CONFIG_LOCAL_FILE ".divan.ini"

int config_new(config_t **out);
void config_free(config_t *c);

/* Reads one ini file; its values replace earlier ones.  DV_ERR_NOTFOUND when
 * the file does not exist, DV_ERR_INVALID (logged with file:line) on a syntax
 * error, DV_ERR_IO when it cannot be read. */
int config_load_file(config_t *c, const char *path);
/* Sets one value (copied); origin is the file it came from or NULL. */
int config_set(config_t *c, const char *section, const char *key, const char *value, const char *origin);
/* Removes one value; no-op when absent. */
void config_unset(config_t *c, const char *section, const char *key);

/* NULL when absent. */
const char *config_get(const config_t *c, const char *section, const char *key);
/* The file the current value came from (NULL: a flag or set in code). */
const char *config_origin(const config_t *c, const char *section, const char *key);
const char *config_get_str(const config_t *c, const char *section, const char *key, const char *dflt);
/* Decimal integer in [min, max]; DV_ERR_INVALID (logged) when present but
 * malformed or out of range, *out = dflt when absent. */
int config_get_int(const config_t *c, const char *section, const char *key, long long dflt, long long min,
                   long long max, long long *out);
/* "true"/"false"; DV_ERR_INVALID (logged) for anything else. */
int config_get_bool(const config_t *c, const char *section, const char *key, int dflt, int *out);

/* Calls fn for every key of a section, in insertion order. */
typedef void (*config_iter_fn)(void *ctx, const char *key, const char *value);
void config_foreach(const config_t *c, const char *section, config_iter_fn fn, void *ctx);
size_t config_count(const config_t *c, const char *section);

/* Replaces (or adds) `key = value` in `section` of the ini file at `path`
 * keeping every other line, then swaps the file in atomically (write a
 * temporary file, fsync, rename, fsync the directory).  Creates the file
 * (mode 0600) when missing. */
int config_file_update(const char *path, const char *section, const char *key, const char *value);

/* Command-line options, parsed by config_parse_args. */
typedef struct config_args {
    const char **config_files; /* --config FILE, in order (argv pointers) */
    size_t nconfig;
    const char *data_dir;      /* --data */
    const char *bind;          /* --bind */
    const char *port;          /* --port */
    const char **admins;       /* --admin NAME:PASSWORD (argv pointers) */
    size_t nadmins;
    const char *first_admin;   /* --first-admin NAME: created with a random
                                * password when no admin exists */
} config_args_t;

/* Parses argv; DV_ERR_INVALID (message on stderr) on unknown or incomplete
 * options.  Arrays are malloc'd: release with config_args_free. */
int config_parse_args(int argc, char **argv, config_args_t *out);
void config_args_free(config_args_t *a);

/* Builds the running configuration: files, flags, data directory (created),
 * persisted uuid and [chttpd_auth] secret (generated when absent), hashed
 * admins, the --first-admin when no admin exists.  On success *out is
 * the config and the data directory exists. */
int config_setup(const config_args_t *args, config_t **out);

/* Typed views with CouchDB's defaults. */
const char *config_data_dir(const config_t *c);   /* [couchdb] database_dir, "./data" */
const char *config_bind_address(const config_t *c); /* [chttpd] bind_address, "127.0.0.1" */
const char *config_uuid(const config_t *c);       /* [couchdb] uuid (set by config_setup) */

#endif
