/*
 * config.h — CouchDB-style ini configuration.
 *
 * A config is an ordered set of (section, key) → value entries.  Files are
 * read by config.c itself, with CouchDB's rules (libinih, as Debian builds it,
 * cuts lines at 200 bytes and splits keys at ":", which breaks [jwt_keys]
 * PEM values and "rsa:kid" names); a later file or config_set() replaces an earlier value,
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
 * Getters return CouchDB's defaults for absent keys.
 *
 * Threads.  Before the server threads start, one thread builds and reads
 * the config freely.  Afterwards the config API (/_node/{node}/_config)
 * changes it through config_api_set / config_api_delete / config_reload,
 * which lock internally, and every other reader brackets its reads with
 * config_rdlock / config_unlock: the strings the getters return belong to
 * the entries and are valid only while the read lock is held (a change
 * frees the old value), so a reader copies what it keeps.  The read lock is
 * a pthread rwlock held for microseconds by both sides: a change does its
 * slow work (PBKDF2, file writes with fsync) before taking it.
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

/* Shared lock for readers once threads run (see above); not recursive
 * with respect to a writer waiting, so never take it twice. */
void config_rdlock(const config_t *c);
void config_unlock(const config_t *c);

/* Calls fn for every entry, in insertion order. */
typedef void (*config_iter_all_fn)(void *ctx, const char *section, const char *key, const char *value);
void config_foreach_all(const config_t *c, config_iter_all_fn fn, void *ctx);

/* Calls fn for every key of a section, in insertion order. */
typedef void (*config_iter_fn)(void *ctx, const char *key, const char *value);
void config_foreach(const config_t *c, const char *section, config_iter_fn fn, void *ctx);
size_t config_count(const config_t *c, const char *section);

/* Replaces (or adds) `key = value` in `section` of the ini file at `path`
 * keeping every other line, then swaps the file in atomically (write a
 * temporary file, fsync, rename, fsync the directory).  Creates the file
 * (mode 0600) when missing. */
int config_file_update(const char *path, const char *section, const char *key, const char *value);

/* Removes every `key` line of `section` in the ini file at `path` (same
 * atomic swap); *removed says whether there was one.  A missing file has
 * nothing to remove. */
int config_file_remove(const char *path, const char *section, const char *key, int *removed);

/* ---- changes at run time (the config API; any thread, may block) ------
 * Each takes the locks it needs and may block on PBKDF2 and fsync: call
 * from a worker thread, never from an event loop. */

/* Sets a value.  In [admins] a plain password is replaced by its PBKDF2
 * hash first (CouchDB's behaviour).  persist: the value is written to the
 * file the current value came from, else DATA/.divan.ini, before memory
 * changes (a failed write changes nothing: DV_ERR_IO).  *old: the previous
 * value (malloc'd) or NULL when there was none. */
int config_api_set(config_t *c, const char *section, const char *key, const char *value, int persist, char **old);
/* Removes a value: DV_ERR_NOTFOUND when absent.  persist: the key is
 * removed from every file loaded, so it does not come back at the next
 * start (a flag still sets its key at every start). */
int config_api_delete(config_t *c, const char *section, const char *key, int persist, char **old);
/* Re-reads every file loaded at start-up (in the same order) and re-applies
 * the flags, dropping values set without persisting; plain [admins]
 * passwords found are hashed as at start-up.  On failure the config is
 * unchanged. */
int config_reload(config_t *c);
/* DATA/.divan.ini (NULL for a config not built by config_setup). */
const char *config_local_file(const config_t *c);

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
