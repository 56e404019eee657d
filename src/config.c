/*
 * config.c — ini files, command-line flags, persisted state.
 *
 * The store is a flat array of entries searched linearly: a server has a few
 * dozen keys, read at start-up, so a hash table would buy nothing.  Every
 * string is owned by its entry.  Plain admin passwords are wiped from memory
 * (explicit_bzero) as soon as they are replaced by their hash.
 *
 * Writing back is line-based so that a user's comments and layout survive:
 * config_file_update changes or appends exactly one `key = value` line (and
 * config_file_remove drops one key's lines) and replaces the file atomically
 * (temporary file + fsync + rename + fsync of the directory), so a crash
 * leaves either the old or the new file, never a torn one.
 *
 * Locking (see config.h): `lock` is a reader/writer lock over the entry
 * array; readers after start-up hold it shared while they use returned
 * pointers.  `api_mu` serialises the changes made at run time (config_api_*,
 * config_reload) so that a file write and the memory change it goes with
 * are never interleaved with another change; the slow parts (PBKDF2, fsync)
 * run under api_mu only, and `lock` is held exclusively just for the
 * in-memory swap, so request threads reading the config wait microseconds,
 * never for a disk.
 */
#include "config.h"
#include "base/buf.h"
#include "base/digest.h"
#include "base/log.h"
#include "base/passwd.h"
#include "base/status.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct config_entry {
    char *section;
    char *key;
    char *value;
    char *origin; /* file the value came from, or NULL */
} config_entry_t;

struct config {
    config_entry_t *e;
    size_t n;
    size_t cap;
    pthread_rwlock_t lock;  /* over e/n/cap once threads run */
    pthread_mutex_t api_mu; /* one run-time change at a time */
    char **files;           /* every file loaded, in order (for reload and delete) */
    size_t nfiles;
    char *local;            /* DATA/.divan.ini once config_setup ran */
    struct config *flags;   /* values given as flags: re-applied by reload */
};

int config_new(config_t **out)
{
    config_t *c = calloc(1, sizeof *c);
    if (!c)
        return DV_ERR_NOMEM;
    if (pthread_rwlock_init(&c->lock, NULL) != 0) {
        free(c);
        return DV_ERR_NOMEM;
    }
    if (pthread_mutex_init(&c->api_mu, NULL) != 0) {
        pthread_rwlock_destroy(&c->lock);
        free(c);
        return DV_ERR_NOMEM;
    }
    *out = c;
    return DV_OK;
}

void config_rdlock(const config_t *c) { pthread_rwlock_rdlock(&((config_t *)c)->lock); }
void config_unlock(const config_t *c) { pthread_rwlock_unlock(&((config_t *)c)->lock); }

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void entry_free(config_entry_t *e)
{
    free(e->section);
    free(e->key);
    wipe_free(e->value);
    free(e->origin);
}

static void entries_free(config_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        entry_free(&e[i]);
    free(e);
}

void config_free(config_t *c)
{
    if (!c)
        return;
    entries_free(c->e, c->n);
    for (size_t i = 0; i < c->nfiles; i++)
        free(c->files[i]);
    free(c->files);
    free(c->local);
    config_free(c->flags);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->api_mu);
    free(c);
}

static config_entry_t *find(const config_t *c, const char *section, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].section, section) == 0 && strcmp(c->e[i].key, key) == 0)
            return &c->e[i];
    return NULL;
}

int config_set(config_t *c, const char *section, const char *key, const char *value, const char *origin)
{
    char *v = strdup(value);
    char *o = origin ? strdup(origin) : NULL;
    if (!v || (origin && !o))
        goto nomem;
    config_entry_t *e = find(c, section, key);
    if (e) {
        wipe_free(e->value);
        free(e->origin);
        e->value = v;
        e->origin = o;
        return DV_OK;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        config_entry_t *ne = realloc(c->e, cap * sizeof *ne);
        if (!ne)
            goto nomem;
        c->e = ne;
        c->cap = cap;
    }
    e = &c->e[c->n];
    e->section = strdup(section);
    e->key = strdup(key);
    if (!e->section || !e->key) {
        free(e->section);
        free(e->key);
        goto nomem;
    }
    e->value = v;
    e->origin = o;
    c->n++;
    return DV_OK;
nomem:
    wipe_free(v);
    free(o);
    return DV_ERR_NOMEM;
}

void config_unset(config_t *c, const char *section, const char *key)
{
    config_entry_t *e = find(c, section, key);
    if (!e)
        return;
    entry_free(e);
    size_t i = (size_t)(e - c->e);
    memmove(&c->e[i], &c->e[i + 1], (c->n - i - 1) * sizeof *e);
    c->n--;
}

const char *config_get(const config_t *c, const char *section, const char *key)
{
    const config_entry_t *e = find(c, section, key);
    return e ? e->value : NULL;
}

const char *config_origin(const config_t *c, const char *section, const char *key)
{
    const config_entry_t *e = find(c, section, key);
    return e ? e->origin : NULL;
}

const char *config_get_str(const config_t *c, const char *section, const char *key, const char *dflt)
{
    const char *v = config_get(c, section, key);
    return v ? v : dflt;
}

int config_get_int(const config_t *c, const char *section, const char *key, long long dflt, long long min,
                   long long max, long long *out)
{
    const char *v = config_get(c, section, key);
    *out = dflt;
    if (!v)
        return DV_OK;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < min || x > max) {
        log_error("config: [%s] %s = %s is not an integer in [%lld, %lld]", section, key, v, min, max);
        return DV_ERR_INVALID;
    }
    *out = x;
    return DV_OK;
}

int config_get_bool(const config_t *c, const char *section, const char *key, int dflt, int *out)
{
    const char *v = config_get(c, section, key);
    *out = dflt;
    if (!v)
        return DV_OK;
    if (strcmp(v, "true") == 0)
        *out = 1;
    else if (strcmp(v, "false") == 0)
        *out = 0;
    else {
        log_error("config: [%s] %s = %s is not true or false", section, key, v);
        return DV_ERR_INVALID;
    }
    return DV_OK;
}

void config_foreach(const config_t *c, const char *section, config_iter_fn fn, void *ctx)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].section, section) == 0)
            fn(ctx, c->e[i].key, c->e[i].value);
}

void config_foreach_all(const config_t *c, config_iter_all_fn fn, void *ctx)
{
    for (size_t i = 0; i < c->n; i++)
        fn(ctx, c->e[i].section, c->e[i].key, c->e[i].value);
}

size_t config_count(const config_t *c, const char *section)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        n += strcmp(c->e[i].section, section) == 0;
    return n;
}

/* ---- reading files -------------------------------------------------- */

/* Remembers path (once) as one of the files the configuration is made of. */
static int note_file(config_t *c, const char *path)
{
    for (size_t i = 0; i < c->nfiles; i++)
        if (strcmp(c->files[i], path) == 0)
            return DV_OK;
    char **nf = realloc(c->files, (c->nfiles + 1) * sizeof *nf);
    if (!nf)
        return DV_ERR_NOMEM;
    c->files = nf;
    if (!(c->files[c->nfiles] = strdup(path)))
        return DV_ERR_NOMEM;
    c->nfiles++;
    return DV_OK;
}

static const char *trim(const char *p, const char **end);
static int read_file(const char *path, buf_t *b, mode_t *mode);

/* One line of an ini file, CouchDB's rules (config.erl): `[section]`;
 * `;` or `#` starts a comment line; `key = value` splits at the FIRST '='
 * (so keys such as `rsa:kid` in [jwt_keys] keep their colon), the value
 * loses an inline comment starting with " ;" or "\t;" and surrounding
 * blanks; an empty value deletes the key (how a later file removes an
 * earlier file's setting); a line starting with a blank continues the
 * previous value (joined with one space).  Lines have no length limit:
 * PEM keys in [jwt_keys] are long. */
struct load_ctx {
    config_t *c;
    const char *path;
    char *section;
    char *key; /* last key set in this file, for continuation lines */
};

static int set_current(struct load_ctx *lc, const char *k, size_t kn)
{
    free(lc->key);
    lc->key = strndup(k, kn);
    return lc->key ? DV_OK : DV_ERR_NOMEM;
}

static int load_line(struct load_ctx *lc, const char *p, const char *le)
{
    const char *te = le, *t = trim(p, &te);
    if (t == te || *t == ';' || *t == '#')
        return DV_OK;
    if (*t == '[') {
        const char *close = memchr(t, ']', (size_t)(te - t));
        if (!close)
            return DV_ERR_INVALID;
        const char *ne = close, *ns = trim(t + 1, &ne);
        free(lc->section);
        free(lc->key);
        lc->key = NULL;
        lc->section = strndup(ns, (size_t)(ne - ns));
        return lc->section ? DV_OK : DV_ERR_NOMEM;
    }
    if (!lc->section)
        return DV_ERR_INVALID;
    const char *eq = memchr(t, '=', (size_t)(te - t));
    if (!eq) {
        /* A continuation line: starts with a blank, follows a value. */
        if (!(*p == ' ' || *p == '\t') || !lc->key)
            return DV_ERR_INVALID;
        const char *prev = config_get(lc->c, lc->section, lc->key);
        buf_t b = BUF_INIT;
        int rc = buf_printf(&b, "%s %.*s", prev ? prev : "", (int)(te - t), t);
        if (rc == DV_OK)
            rc = buf_append_byte(&b, '\0');
        if (rc == DV_OK)
            rc = config_set(lc->c, lc->section, lc->key, (const char *)b.data, lc->path);
        if (b.data)
            explicit_bzero(b.data, b.len);
        buf_free(&b);
        return rc;
    }
    const char *ke = eq, *ks = trim(t, &ke);
    if (ks == ke)
        return DV_ERR_INVALID;
    const char *vs = eq + 1, *ve = te;
    for (const char *q = vs; q + 1 < ve; q++)
        if ((q[0] == ' ' || q[0] == '\t') && q[1] == ';') {
            ve = q;
            break;
        }
    vs = trim(vs, &ve);
    int rc = set_current(lc, ks, (size_t)(ke - ks));
    if (rc != DV_OK)
        return rc;
    if (vs == ve) {
        config_unset(lc->c, lc->section, lc->key);
        return DV_OK;
    }
    char *v = strndup(vs, (size_t)(ve - vs));
    if (!v)
        return DV_ERR_NOMEM;
    rc = config_set(lc->c, lc->section, lc->key, v, lc->path);
    explicit_bzero(v, strlen(v));
    free(v);
    return rc;
}

int config_load_file(config_t *c, const char *path)
{
    int rc = note_file(c, path);
    if (rc != DV_OK)
        return rc;
    buf_t in = BUF_INIT;
    mode_t mode;
    rc = read_file(path, &in, &mode);
    if (rc == DV_ERR_NOTFOUND)
        return rc;
    if (rc != DV_OK) {
        log_error("config: cannot read %s: %s", path, strerror(errno));
        buf_free(&in);
        return rc;
    }
    struct load_ctx lc = {c, path, NULL, NULL};
    const char *p = (const char *)in.data, *end = p + in.len;
    for (int line = 1; p && p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (memchr(p, '\0', (size_t)(le - p)))
            rc = DV_ERR_INVALID;
        else
            rc = load_line(&lc, p, le);
        if (rc != DV_OK) {
            if (rc == DV_ERR_INVALID)
                log_error("config: %s:%d: syntax error", path, line);
            break;
        }
        p = nl ? nl + 1 : end;
    }
    free(lc.section);
    free(lc.key);
    if (in.data)
        explicit_bzero(in.data, in.len); /* may hold a clear-text password */
    buf_free(&in);
    return rc;
}

/* ---- writing one value back ----------------------------------------- */

/* Trims [p, *end) of spaces and tabs; returns the new start. */
static const char *trim(const char *p, const char **end)
{
    while (p < *end && (*p == ' ' || *p == '\t'))
        p++;
    while (*end > p && ((*end)[-1] == ' ' || (*end)[-1] == '\t' || (*end)[-1] == '\r'))
        (*end)--;
    return p;
}

/* Reads a whole file into b; DV_ERR_NOTFOUND when absent. */
static int read_file(const char *path, buf_t *b, mode_t *mode)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? DV_ERR_NOTFOUND : DV_ERR_IO;
    int rc = DV_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = DV_ERR_IO;
        goto done;
    }
    *mode = st.st_mode & 07777;
    for (;;) {
        if ((rc = buf_reserve(b, 4096)) != DV_OK)
            goto done;
        ssize_t r = read(fd, b->data + b->len, b->cap - b->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = DV_ERR_IO;
            goto done;
        }
        if (r == 0)
            break;
        b->len += (size_t)r;
    }
done:
    close(fd);
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return DV_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return DV_OK;
}

/* Writes data to path atomically: path.tmp, fsync, rename, fsync(dir). */
static int replace_file(const char *path, const buf_t *data, mode_t mode)
{
    int rc = DV_ERR_IO, fd = -1, dfd = -1;
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n), *dircopy = strdup(path);
    if (!tmp || !dircopy) {
        rc = DV_ERR_NOMEM;
        goto fail;
    }
    snprintf(tmp, n, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        goto fail;
    if (fchmod(fd, mode) != 0 || write_all(fd, data->data, data->len) != DV_OK || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        goto fail;
    rc = DV_OK;
fail:
    if (rc != DV_OK) {
        log_error("config: cannot write %s: %s", path, strerror(errno));
        if (tmp)
            unlink(tmp);
    }
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    free(tmp);
    free(dircopy);
    return rc;
}

/* Rewrites the file with `key = value` set in section, or (value NULL)
 * with every `key` line of section dropped; *changed says whether the
 * file was rewritten (a removal that finds nothing writes nothing). */
static int file_edit(const char *path, const char *section, const char *key, const char *value, int *changed)
{
    buf_t in = BUF_INIT, out = BUF_INIT;
    mode_t mode = 0600;
    *changed = 0;
    int rc = read_file(path, &in, &mode);
    if (rc == DV_ERR_NOTFOUND) {
        rc = DV_OK;
        if (!value)
            goto done;
    }
    if (rc != DV_OK) {
        log_error("config: cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    if ((value && (strchr(value, '\n') || strchr(value, '\r'))) || strchr(key, '\n') || strchr(section, '\n') ||
        strchr(section, ']')) {
        rc = DV_ERR_INVALID;
        goto done;
    }
    /* Walk the lines, tracking the section; replace the first `key` line
     * of the section, remember where the section's last entry ends so a new
     * key goes there. */
    const char *p = (const char *)in.data, *end = p + in.len;
    int in_section = 0, done_write = 0, removed = 0;
    size_t section_end = SIZE_MAX; /* offset in `out` after the section's last line */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *next = nl ? nl + 1 : end;
        const char *te = le, *t = trim(p, &te);
        int replaced = 0;
        if (t < te && *t == '[') {
            const char *close = memchr(t, ']', (size_t)(te - t));
            if (close) {
                const char *ne = close, *ns = trim(t + 1, &ne);
                in_section = (size_t)(ne - ns) == strlen(section) && memcmp(ns, section, (size_t)(ne - ns)) == 0;
            }
        } else if (in_section && t < te && *t != ';' && *t != '#') {
            const char *sep = t;
            while (sep < te && *sep != '=') /* the first '=', as load_line */
                sep++;
            const char *ke = sep, *ks = trim(t, &ke);
            if (sep < te && (size_t)(ke - ks) == strlen(key) && memcmp(ks, key, (size_t)(ke - ks)) == 0) {
                if (!value) {
                    replaced = removed = 1; /* the line is dropped */
                } else if (!done_write) {
                    if ((rc = buf_printf(&out, "%s = %s\n", key, value)) != DV_OK)
                        goto done;
                    replaced = done_write = 1;
                }
            }
        }
        if (!replaced) {
            if ((rc = buf_append(&out, p, (size_t)(le - p))) != DV_OK || (rc = buf_append_byte(&out, '\n')) != DV_OK)
                goto done;
        }
        if (in_section && t < te)
            section_end = out.len;
        p = next;
    }
    if (!value && !removed)
        goto done;
    if (value && !done_write) {
        buf_t line = BUF_INIT;
        if (section_end == SIZE_MAX)
            rc = buf_printf(&line, "%s[%s]\n%s = %s\n", out.len ? "\n" : "", section, key, value);
        else
            rc = buf_printf(&line, "%s = %s\n", key, value);
        if (rc == DV_OK) {
            size_t at = section_end == SIZE_MAX ? out.len : section_end;
            rc = buf_reserve(&out, line.len);
            if (rc == DV_OK) {
                memmove(out.data + at + line.len, out.data + at, out.len - at);
                memcpy(out.data + at, line.data, line.len);
                out.len += line.len;
            }
        }
        buf_free(&line);
        if (rc != DV_OK)
            goto done;
    }
    rc = replace_file(path, &out, mode);
    *changed = rc == DV_OK;
done:
    if (in.data)
        explicit_bzero(in.data, in.len); /* may hold a clear-text password */
    if (out.data)
        explicit_bzero(out.data, out.len);
    buf_free(&in);
    buf_free(&out);
    return rc;
}

int config_file_update(const char *path, const char *section, const char *key, const char *value)
{
    int changed;
    return file_edit(path, section, key, value, &changed);
}

int config_file_remove(const char *path, const char *section, const char *key, int *removed)
{
    return file_edit(path, section, key, NULL, removed);
}

/* ---- command line ---------------------------------------------------- */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--config FILE]... [--data DIR] [--bind ADDR] [--port N] [--admin NAME:PASSWORD]... "
            "[--first-admin NAME]\n",
            prog);
}

int config_parse_args(int argc, char **argv, config_args_t *out)
{
    memset(out, 0, sizeof *out);
    out->config_files = calloc((size_t)argc + 1, sizeof *out->config_files);
    out->admins = calloc((size_t)argc + 1, sizeof *out->admins);
    if (!out->config_files || !out->admins) {
        config_args_free(out);
        return DV_ERR_NOMEM;
    }
    for (int i = 1; i < argc; i += 2) { /* every option takes one value */
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0)
            goto bad;
        if (!val)
            goto bad;
        if (strcmp(opt, "--config") == 0)
            out->config_files[out->nconfig++] = val;
        else if (strcmp(opt, "--data") == 0)
            out->data_dir = val;
        else if (strcmp(opt, "--bind") == 0)
            out->bind = val;
        else if (strcmp(opt, "--port") == 0)
            out->port = val;
        else if (strcmp(opt, "--admin") == 0) {
            const char *colon = strchr(val, ':');
            if (!colon || colon == val || !colon[1]) {
                fprintf(stderr, "%s: --admin wants NAME:PASSWORD\n", argv[0]);
                goto bad;
            }
            out->admins[out->nadmins++] = val;
        } else if (strcmp(opt, "--first-admin") == 0)
            out->first_admin = val;
        else
            goto bad;
    }
    return DV_OK;
bad:
    usage(argv[0]);
    config_args_free(out);
    return DV_ERR_INVALID;
}

void config_args_free(config_args_t *a)
{
    free(a->config_files);
    free(a->admins);
    memset(a, 0, sizeof *a);
}

/* ---- start-up -------------------------------------------------------- */

const char *config_data_dir(const config_t *c) { return config_get_str(c, "couchdb", "database_dir", "./data"); }
const char *config_bind_address(const config_t *c) { return config_get_str(c, "chttpd", "bind_address", "127.0.0.1"); }
const char *config_uuid(const config_t *c) { return config_get(c, "couchdb", "uuid"); }

/* mkdir -p */
static int make_dirs(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return DV_ERR_NOMEM;
    int rc = DV_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char saved = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                log_error("cannot create data directory %s: %s", p, strerror(errno));
                rc = DV_ERR_IO;
                break;
            }
            *s = saved;
            if (!saved)
                break;
        }
    }
    free(p);
    return rc;
}

static int load_files(config_t *c, const config_args_t *a)
{
    for (size_t i = 0; i < a->nconfig; i++) {
        int rc = config_load_file(c, a->config_files[i]);
        if (rc == DV_ERR_NOTFOUND)
            log_error("config: %s does not exist", a->config_files[i]);
        if (rc != DV_OK)
            return rc;
    }
    return DV_OK;
}

static int hash_settings(const config_t *c, const char **prf, long *iterations)
{
    long long it;
    const char *scheme = config_get_str(c, "chttpd_auth", "password_scheme", "pbkdf2");
    if (strcmp(scheme, "pbkdf2") != 0)
        log_warn("config: [chttpd_auth] password_scheme = %s is not supported; using pbkdf2", scheme);
    *prf = config_get_str(c, "chttpd_auth", "pbkdf2_prf", PASSWD_DEFAULT_PRF);
    int rc = config_get_int(c, "chttpd_auth", "iterations", PASSWD_DEFAULT_ITERATIONS, 1, 1000000000, &it);
    *iterations = (long)it;
    return rc;
}

struct name_list {
    char **names;
    size_t n;
    int rc;
};

static void collect_plain(void *ctx, const char *key, const char *value)
{
    struct name_list *l = ctx;
    if (l->rc != DV_OK || passwd_is_hashed(value))
        return;
    char *k = strdup(key);
    if (!k) {
        l->rc = DV_ERR_NOMEM;
        return;
    }
    l->names[l->n++] = k;
}

/* Hashes every plain [admins] value and writes the hash back to the file it
 * came from (or to the local file when it came from no file). */
static int hash_plain_admins(config_t *c, const char *local, const char *prf, long iterations)
{
    struct name_list l = {calloc(config_count(c, "admins") + 1, sizeof(char *)), 0, DV_OK};
    if (!l.names)
        return DV_ERR_NOMEM;
    config_foreach(c, "admins", collect_plain, &l);
    int rc = l.rc;
    for (size_t i = 0; rc == DV_OK && i < l.n; i++) {
        const char *name = l.names[i];
        char *hash = NULL;
        rc = passwd_hash(config_get(c, "admins", name), prf, iterations, &hash);
        if (rc != DV_OK) {
            log_error("config: cannot hash the password of admin %s: %s", name, dv_strerror(rc));
            break;
        }
        const char *origin = config_origin(c, "admins", name);
        const char *target = origin ? origin : local;
        char *target_copy = strdup(target);
        if (!target_copy) {
            free(hash);
            rc = DV_ERR_NOMEM;
            break;
        }
        rc = config_set(c, "admins", name, hash, target_copy);
        if (rc == DV_OK) {
            if (config_file_update(target_copy, "admins", name, hash) == DV_OK)
                log_info("config: hashed the password of admin %s in %s", name, target_copy);
            else
                log_warn("config: the password of admin %s stays in clear text in %s (file not writable)", name,
                         target_copy);
        }
        free(target_copy);
        free(hash);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.names[i]);
    free(l.names);
    return rc;
}

/* --admin NAME:PASSWORD: kept when the stored hash already matches (so a
 * restart with the same flag changes nothing), else hashed and persisted. */
static int apply_admin_flag(config_t *c, const char *arg, const char *local, const char *prf, long iterations)
{
    const char *colon = strchr(arg, ':');
    size_t nlen = (size_t)(colon - arg);
    char *name = strndup(arg, nlen);
    char *hash = NULL;
    int rc = DV_ERR_NOMEM;
    if (!name)
        goto done;
    rc = DV_ERR_INVALID;
    if (strpbrk(name, "=:[]; \t\r\n#")) {
        log_error("config: admin name %s may not contain spaces or any of =:[];#", name);
        goto done;
    }
    const char *stored = config_get(c, "admins", name);
    if (stored && passwd_is_hashed(stored) && passwd_verify(stored, colon + 1) == DV_OK) {
        rc = DV_OK;
        goto done;
    }
    if ((rc = passwd_hash(colon + 1, prf, iterations, &hash)) != DV_OK)
        goto done;
    if ((rc = config_file_update(local, "admins", name, hash)) != DV_OK)
        goto done;
    rc = config_set(c, "admins", name, hash, local);
    log_info("config: admin %s stored (hashed) in %s", name, local);
done:
    free(name);
    free(hash);
    return rc;
}

/* A value of 128 random bits (hex) generated on the first start and
 * persisted to the local file, unless some file already sets it. */
static int ensure_random_hex(config_t *c, const char *local, const char *section, const char *key)
{
    const char *s = config_get(c, section, key);
    if (s && *s)
        return DV_OK;
    char hex[33];
    int rc = dv_random_hex(hex, 16);
    if (rc != DV_OK)
        return rc;
    rc = config_file_update(local, section, key, hex);
    if (rc == DV_OK)
        rc = config_set(c, section, key, hex, local);
    OPENSSL_cleanse(hex, sizeof hex);
    return rc;
}

/* [chttpd_auth] secret, the AuthSession cookies' HMAC key: persisted, so
 * cookies survive a restart. */
static int ensure_secret(config_t *c, const char *local) { return ensure_random_hex(c, local, "chttpd_auth", "secret"); }

/* --first-admin NAME: when no admin exists at all, creates NAME with a
 * random password, prints it once on stderr and keeps only its hash (in
 * DATA/.divan.ini).  With admins configured it does nothing. */
static int first_admin(config_t *c, const char *name, const char *local, const char *prf, long iterations)
{
    if (!name || config_count(c, "admins") > 0)
        return DV_OK;
    if (!*name || strpbrk(name, "=:[]; \t\r\n#")) {
        log_error("config: admin name %s may not be empty or contain spaces or any of =:[];#", name);
        return DV_ERR_INVALID;
    }
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    unsigned char raw[20];
    char pw[21];
    char *hash = NULL;
    if (RAND_bytes(raw, sizeof raw) != 1)
        return DV_ERR_IO;
    for (size_t i = 0; i < sizeof raw; i++)
        pw[i] = alphabet[raw[i] % (sizeof alphabet - 1)];
    pw[sizeof raw] = 0;
    int rc = passwd_hash(pw, prf, iterations, &hash);
    if (rc == DV_OK && (rc = config_file_update(local, "admins", name, hash)) == DV_OK &&
        (rc = config_set(c, "admins", name, hash, local)) == DV_OK)
        fprintf(stderr,
                "divan: created the server admin \"%s\" with password %s\n"
                "divan: it is shown only this once; only its hash is kept, in %s\n",
                name, pw, local);
    OPENSSL_cleanse(pw, sizeof pw);
    OPENSSL_cleanse(raw, sizeof raw);
    free(hash);
    return rc;
}

/* [couchdb] uuid, the server's identity in GET /. */
static int ensure_uuid(config_t *c, const char *local) { return ensure_random_hex(c, local, "couchdb", "uuid"); }

/* Sets every flag value (kept in c->flags) over what the files said. */
static int apply_flags(config_t *c)
{
    for (size_t i = 0; c->flags && i < c->flags->n; i++) {
        const config_entry_t *f = &c->flags->e[i];
        int rc = config_set(c, f->section, f->key, f->value, NULL);
        if (rc != DV_OK)
            return rc;
    }
    return DV_OK;
}

int config_setup(const config_args_t *a, config_t **out)
{
    config_t *pre = NULL, *c = NULL;
    char *local = NULL;
    *out = NULL;
    /* Pass 1 finds the data directory, which holds the first file to load. */
    int rc = config_new(&pre);
    if (rc != DV_OK || (rc = load_files(pre, a)) != DV_OK)
        goto fail;
    const char *data = a->data_dir ? a->data_dir : config_data_dir(pre);
    if (!*data) {
        log_error("config: empty data directory");
        rc = DV_ERR_INVALID;
        goto fail;
    }
    if ((rc = make_dirs(data)) != DV_OK)
        goto fail;
    size_t n = strlen(data) + sizeof(CONFIG_LOCAL_FILE) + 2;
    if (!(local = malloc(n))) {
        rc = DV_ERR_NOMEM;
        goto fail;
    }
    snprintf(local, n, "%s/%s", data, CONFIG_LOCAL_FILE);

    /* Pass 2: persisted state, then the user's files, then flags. */
    if ((rc = config_new(&c)) != DV_OK)
        goto fail;
    rc = config_load_file(c, local);
    if (rc != DV_OK && rc != DV_ERR_NOTFOUND)
        goto fail;
    if ((rc = config_new(&c->flags)) != DV_OK || !(c->local = strdup(local))) {
        rc = rc != DV_OK ? rc : DV_ERR_NOMEM;
        goto fail;
    }
    if ((rc = load_files(c, a)) != DV_OK || (rc = config_set(c->flags, "couchdb", "database_dir", data, NULL)) != DV_OK)
        goto fail;
    if (a->bind && (rc = config_set(c->flags, "chttpd", "bind_address", a->bind, NULL)) != DV_OK)
        goto fail;
    if (a->port && (rc = config_set(c->flags, "chttpd", "port", a->port, NULL)) != DV_OK)
        goto fail;
    if ((rc = apply_flags(c)) != DV_OK)
        goto fail;
    const char *level = config_get(c, "log", "level");
    if (level && log_level_parse(level) < 0) {
        log_error("config: [log] level = %s is not one of debug, info, notice, warning, error, none", level);
        rc = DV_ERR_INVALID;
        goto fail;
    }
    const char *prf;
    long iterations;
    if ((rc = hash_settings(c, &prf, &iterations)) != DV_OK || (rc = ensure_uuid(c, local)) != DV_OK ||
        (rc = ensure_secret(c, local)) != DV_OK || (rc = hash_plain_admins(c, local, prf, iterations)) != DV_OK)
        goto fail;
    for (size_t i = 0; i < a->nadmins; i++)
        if ((rc = apply_admin_flag(c, a->admins[i], local, prf, iterations)) != DV_OK)
            goto fail;
    if ((rc = first_admin(c, a->first_admin, local, prf, iterations)) != DV_OK)
        goto fail;
    *out = c;
    c = NULL;
fail:
    config_free(pre);
    config_free(c);
    free(local);
    return rc;
}

/* ---- changes at run time (the config API) ------------------------------
 * Only these functions change entries once threads run, and each holds
 * api_mu throughout, so they read entries without the rwlock and take it
 * exclusively only around the in-memory change. */

const char *config_local_file(const config_t *c) { return c->local; }

int config_api_set(config_t *c, const char *section, const char *key, const char *value, int persist, char **old)
{
    char *hash = NULL, *target = NULL;
    int rc = DV_OK;
    *old = NULL;
    pthread_mutex_lock(&c->api_mu);
    const char *cur = config_get(c, section, key);
    if (cur && !(*old = strdup(cur))) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    if (strcmp(section, "admins") == 0 && !passwd_is_hashed(value)) {
        const char *prf;
        long iterations;
        if ((rc = hash_settings(c, &prf, &iterations)) != DV_OK ||
            (rc = passwd_hash(value, prf, iterations, &hash)) != DV_OK)
            goto done;
        value = hash;
    }
    if (persist) {
        /* The file the value came from, so that it still wins after a
         * restart; a value from a flag or set in code goes to the local
         * file (the flag wins again at the next start). */
        const char *origin = config_origin(c, section, key);
        const char *file = origin ? origin : c->local;
        if (!file) {
            rc = DV_ERR_IO;
            goto done;
        }
        if (!(target = strdup(file))) {
            rc = DV_ERR_NOMEM;
            goto done;
        }
        if ((rc = config_file_update(target, section, key, value)) != DV_OK)
            goto done;
    }
    pthread_rwlock_wrlock(&c->lock);
    rc = config_set(c, section, key, value, target);
    pthread_rwlock_unlock(&c->lock);
done:
    pthread_mutex_unlock(&c->api_mu);
    if (rc != DV_OK) {
        wipe_free(*old);
        *old = NULL;
    }
    wipe_free(hash);
    free(target);
    return rc;
}

int config_api_delete(config_t *c, const char *section, const char *key, int persist, char **old)
{
    int rc = DV_OK;
    *old = NULL;
    pthread_mutex_lock(&c->api_mu);
    const char *cur = config_get(c, section, key);
    if (!cur) {
        rc = DV_ERR_NOTFOUND;
        goto done;
    }
    if (!(*old = strdup(cur))) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    /* Every file that sets the key loses it: removing it only from the
     * file the value came from would let an earlier file's value come
     * back at the next start. */
    for (size_t i = 0; persist && i < c->nfiles; i++) {
        int removed;
        if ((rc = config_file_remove(c->files[i], section, key, &removed)) != DV_OK)
            goto done;
    }
    pthread_rwlock_wrlock(&c->lock);
    config_unset(c, section, key);
    pthread_rwlock_unlock(&c->lock);
done:
    pthread_mutex_unlock(&c->api_mu);
    if (rc != DV_OK) {
        wipe_free(*old);
        *old = NULL;
    }
    return rc;
}

int config_reload(config_t *c)
{
    config_t *t = NULL;
    pthread_mutex_lock(&c->api_mu);
    int rc = config_new(&t);
    for (size_t i = 0; rc == DV_OK && i < c->nfiles; i++) {
        rc = config_load_file(t, c->files[i]);
        if (rc == DV_ERR_NOTFOUND)
            rc = DV_OK;
    }
    if (rc != DV_OK)
        goto done;
    t->flags = c->flags; /* borrowed for apply_flags */
    rc = apply_flags(t);
    t->flags = NULL;
    const char *prf;
    long iterations;
    if (rc != DV_OK || (rc = hash_settings(t, &prf, &iterations)) != DV_OK ||
        (c->local && (rc = hash_plain_admins(t, c->local, prf, iterations)) != DV_OK))
        goto done;
    /* Swap the entry arrays: t leaves with the old ones and frees them. */
    pthread_rwlock_wrlock(&c->lock);
    config_entry_t *e = c->e;
    size_t n = c->n, cap = c->cap;
    c->e = t->e;
    c->n = t->n;
    c->cap = t->cap;
    t->e = e;
    t->n = n;
    t->cap = cap;
    pthread_rwlock_unlock(&c->lock);
done:
    pthread_mutex_unlock(&c->api_mu);
    config_free(t);
    return rc;
}
