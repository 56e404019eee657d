/*
 * handlers_config.c — /_node/{node}/_config, CouchDB 3's configuration API
 * (chttpd_node.erl): GET the whole config, a section or a key, PUT and
 * DELETE a key (both answer the previous value as a JSON string), and
 * POST .../_config/_reload.  Server admins only; {node} is "_local" or this
 * node's name ("nonode@nohost").
 *
 * Reads run on the event loop under the config's read lock (microseconds).
 * Changes run on a worker thread (config_api_* may hash a password with
 * PBKDF2, ~50 ms, and write an ini file with two fsyncs) and answer from
 * the loop through an http_async.  `X-Couch-Persist: false` changes memory
 * only; otherwise the file is written first and memory changes only when
 * the write succeeded.
 *
 * Applied at once: what is read per request from the live config
 * ([jwt_keys], [jwt_auth], [admins]); and, re-applied after a change
 * (apply_live), [log] level, the request limits (http/limits.h), CORS, the
 * authentication set (http_auth_live_t), [uuids], [attachments],
 * [vendor], [couchdb] max_dbs_open, default_security, os_process_timeout,
 * [query_server_config] reduce_limit.  The rest is read at start-up and
 * takes effect at the next start (docs/config.md).
 */
#include "base/log.h"
#include "base/status.h"
#include "base/workers.h"
#include "config.h"
#include "http/auth.h"
#include "http/cors.h"
#include "http/authz.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/limits.h"
#include "http/uuids.h"
#include "views/qserver.h"
#include "views/views.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sections CouchDB refuses to change over HTTP (couch_util's blacklist),
 * plus divan's setting that names a program to run. */
static const char *const BLACKLIST[] = {
    "daemons",          "external", "httpd_design_handlers", "httpd_db_handlers", "httpd_global_handlers",
    "native_query_servers", "os_daemons", "query_servers",   "feature_flags",
};

static int blacklisted(const char *section, const char *key)
{
    for (size_t i = 0; i < sizeof BLACKLIST / sizeof BLACKLIST[0]; i++)
        if (strcmp(section, BLACKLIST[i]) == 0)
            return 1;
    return key && strcmp(section, "divan") == 0 && strcmp(key, "query_server_path") == 0;
}

/* JSON strings must be UTF-8: a value that is not (a hand-edited file)
 * goes out with its non-ASCII bytes as '?', rather than not at all. */
static void write_lossy(json_writer *w, const char *s, int is_key)
{
    size_t n = strlen(s);
    if (json_utf8_valid(s, n)) {
        if (is_key)
            json_write_key(w, s, n);
        else
            json_write_string(w, s, n);
        return;
    }
    char *copy = strdup(s);
    if (!copy) {
        w->err = DV_ERR_NOMEM;
        return;
    }
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    if (is_key)
        json_write_key(w, copy, n);
    else
        json_write_string(w, copy, n);
    free(copy);
}

/* Whether a change of section/key (NULL section: a reload, anything) may
 * change the CORS settings.  A replaced set is kept until the server stops,
 * so only such changes build a new one. */
static int touches_cors(const char *section, const char *key)
{
    return !section || !strcmp(section, "cors") ||
           ((!strcmp(section, "chttpd") || !strcmp(section, "httpd")) && !strcmp(key, "enable_cors"));
}

/* Whether a change of section (NULL: a reload) may change the
 * authentication settings: only those build a new set (auth.c keeps
 * replaced ones until stop). */
static int touches_auth(const char *section)
{
    return !section || !strcmp(section, "chttpd") || !strcmp(section, "chttpd_auth") ||
           !strcmp(section, "chttpd_auth_lockout");
}

/* Whether a change of section (NULL: a reload) may concern `name`. */
static int touches(const char *section, const char *name) { return !section || !strcmp(section, name); }

/* The settings whose strings point into c while they are read: copied
 * into their new sets here, under the caller's read lock.  A group that
 * does not parse is logged and stays as it was. */
static void apply_copied(config_t *c, http_server_t *s, const char *section)
{
    http_vendor_field_t *vf;
    size_t nvf;
    if (touches(section, "vendor") && http_vendor_read(c, &vf, &nvf) == DV_OK) {
        (void)http_server_set_vendor(s, vf, nvf); /* out of memory: the old object stays */
        free(vf);
    }
    const char *att_types;
    int att_level;
    if (touches(section, "attachments") && http_att_conf_read(c, &att_types, &att_level) == DV_OK)
        (void)http_server_set_att_conf(s, att_types, att_level); /* out of memory: the old settings stay */
    /* [uuids]: a new state only when they may have changed (CouchDB starts
     * afresh on such a change). */
    http_uuids_conf_t uc;
    if (touches(section, "uuids") && http_uuids_conf_read(c, &uc) == DV_OK)
        (void)http_uuids_configure(http_server_uuids(s), &uc);
    http_auth_live_t live;
    http_auth_t *a = http_server_opts(s)->auth;
    int rc = DV_OK;
    if (a && touches_auth(section) && (rc = http_auth_live_read(c, &live)) == DV_OK)
        rc = http_auth_reconfigure(a, &live);
    if (rc != DV_OK)
        log_warn("config: the authentication settings stay as they were: %s", dv_strerror(rc));
}

/* Re-applies the settings that take effect without a restart and are not
 * read per request (docs/config.md lists them): [log] level, the request
 * limits, [couchdb] max_dbs_open, default_security, os_process_timeout,
 * [query_server_config] reduce_limit, CORS, and the sets of apply_copied.  A value that does not parse keeps the old setting
 * (and is logged): the change itself is already stored, as in CouchDB. */
static void apply_live(config_t *c, http_server_t *s, const char *section, const char *key)
{
    http_cors_t *cors = NULL;
    http_limits_live_t limits;
    const char *defsec = NULL;
    db_server *dbs = http_server_opts(s)->dbs;
    int rebuild_cors = touches_cors(section, key);
    config_rdlock(c);
    int l = log_level_parse(config_get_str(c, "log", "level", "info"));
    int cors_rc = rebuild_cors ? http_cors_new(c, &cors) : DV_OK;
    int limits_rc = http_limits_read(c, &limits);
    int apply_dbs = dbs && touches(section, "couchdb");
    int dbs_rc = apply_dbs ? http_auth_default_security(c, &defsec) : DV_OK;
    int reduce_limit = qserver_reduce_limit_parse(config_get(c, "query_server_config", "reduce_limit"));
    apply_copied(c, s, section);
    config_unlock(c);
    if (l >= 0)
        log_set_level((enum log_level)l);
    if (limits_rc == DV_OK)
        http_server_set_limits(s, &limits);
    if (apply_dbs && limits_rc == DV_OK && dbs_rc == DV_OK) /* defsec: a constant, not c's */
        (void)db_server_configure(dbs, (size_t)limits.max_dbs_open, defsec); /* out of memory: as they were */
    struct views *v = http_server_opts(s)->views;
    if (limits_rc == DV_OK && v)
        qserver_set_timeout(views_qserver(v), (unsigned)limits.os_process_timeout);
    if (v && touches(section, "query_server_config"))
        qserver_set_reduce_limit(views_qserver(v), reduce_limit);
    if (rebuild_cors && cors_rc == DV_OK)
        (void)http_server_set_cors(s, cors); /* out of memory: the old set stays */
    else if (cors_rc != DV_OK)
        log_warn("config: the CORS settings stay as they were: %s", dv_strerror(cors_rc));
}

/* ---- reads ---------------------------------------------------------------- */

struct sections {
    const char **names;
    size_t n, cap;
    int rc;
};

static void collect_section(void *ctx, const char *section, const char *key, const char *value)
{
    (void)key;
    (void)value;
    struct sections *s = ctx;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], section) == 0)
            return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        const char **nn = realloc(s->names, cap * sizeof *nn);
        if (!nn) {
            s->rc = DV_ERR_NOMEM;
            return;
        }
        s->names = nn;
        s->cap = cap;
    }
    s->names[s->n++] = section;
}

static void write_member(void *ctx, const char *key, const char *value)
{
    json_writer *w = ctx;
    write_lossy(w, key, 1);
    write_lossy(w, value, 0);
}

static void send_all(http_req_t *r, config_t *c)
{
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    struct sections s = {0};
    config_rdlock(c);
    config_foreach_all(c, collect_section, &s);
    json_write_begin_object(&w);
    for (size_t i = 0; s.rc == DV_OK && i < s.n; i++) {
        write_lossy(&w, s.names[i], 1);
        json_write_begin_object(&w);
        config_foreach(c, s.names[i], write_member, &w);
        json_write_end_object(&w);
    }
    json_write_end_object(&w);
    config_unlock(c);
    int rc = s.rc != DV_OK ? s.rc : w.err;
    if (rc == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, rc);
    free(s.names);
    buf_free(&b);
}

static void send_section(http_req_t *r, config_t *c, const char *section)
{
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    json_write_begin_object(&w);
    config_rdlock(c);
    config_foreach(c, section, write_member, &w);
    config_unlock(c);
    json_write_end_object(&w);
    if (w.err == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, w.err);
    buf_free(&b);
}

static void send_string(http_req_t *r, const char *s)
{
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    write_lossy(&w, s, 0);
    if (w.err == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, w.err);
    buf_free(&b);
}

static void send_key(http_req_t *r, config_t *c, const char *section, const char *key)
{
    char *v = NULL;
    int found = 0;
    config_rdlock(c);
    const char *cur = config_get(c, section, key);
    if (cur) {
        found = 1;
        v = strdup(cur);
    }
    config_unlock(c);
    if (!found)
        http_send_error(r, 404, "not_found", "unknown_config_value");
    else if (!v)
        http_send_internal(r, DV_ERR_NOMEM);
    else
        send_string(r, v);
    free(v);
}

/* ---- changes (on a worker) ------------------------------------------------ */

enum { OP_SET, OP_DELETE, OP_RELOAD };

typedef struct cfg_op {
    config_t *c;
    http_server_t *server;
    http_async_t *async;
    int kind;
    int persist;
    char *section, *key, *value;
    int rc;
    char *old;
} cfg_op;

static void op_free(cfg_op *op)
{
    free(op->section);
    free(op->key);
    if (op->value)
        explicit_bzero(op->value, strlen(op->value)); /* may be a password */
    free(op->value);
    if (op->old)
        explicit_bzero(op->old, strlen(op->old));
    free(op->old);
    free(op);
}

static void op_job(void *arg)
{
    cfg_op *op = arg;
    if (op->kind == OP_SET)
        op->rc = config_api_set(op->c, op->section, op->key, op->value, op->persist, &op->old);
    else if (op->kind == OP_DELETE)
        op->rc = config_api_delete(op->c, op->section, op->key, op->persist, &op->old);
    else
        op->rc = config_reload(op->c);
    if (op->rc == DV_OK)
        apply_live(op->c, op->server, op->kind == OP_RELOAD ? NULL : op->section, op->key);
    http_async_post(op->async);
}

static void op_done(http_req_t *r, void *arg)
{
    cfg_op *op = arg;
    if (!r) {
        op_free(op);
        return;
    }
    if (op->kind == OP_RELOAD) {
        if (op->rc == DV_OK)
            http_send_ok(r, 200);
        else if (op->rc == DV_ERR_NOMEM)
            http_send_internal(r, op->rc);
        else
            http_send_error(r, 400, "bad_request", "The configuration files could not be read again (see the log).");
    } else if (op->rc == DV_ERR_NOTFOUND) {
        http_send_error(r, 404, "not_found", "unknown_config_value");
    } else if (op->rc != DV_OK) {
        http_send_internal(r, op->rc);
    } else {
        send_string(r, op->old ? op->old : "");
    }
    op_free(op);
}

static void start_op(http_req_t *r, cfg_op *op)
{
    op->c = http_server_opts(r->server)->config;
    op->server = r->server;
    if (!(op->async = http_async_new(r, op_done, op))) {
        op_free(op);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    if (workers_submit(http_server_workers(r->server), op_job, op) != DV_OK) {
        op->rc = DV_ERR_CLOSED;
        http_async_post(op->async); /* answers 500 from the loop, frees op */
    }
}

/* A PUT (value: the new value, taken over; NULL when it could not be
 * copied: answered as out of memory) or DELETE of one key, honouring X-Couch-Persist. */
static void start_key_op(http_req_t *r, int kind, const http_str_t *section, const http_str_t *key, char *value)
{
    cfg_op *op = calloc(1, sizeof *op);
    if (op) {
        op->kind = kind;
        op->section = strdup(section->p);
        op->key = strdup(key->p);
        op->value = value;
        value = NULL;
    }
    if (!op || !op->section || !op->key || (kind == OP_SET && !op->value)) {
        if (value) { /* may be a password */
            explicit_bzero(value, strlen(value));
            free(value);
        }
        if (op)
            op_free(op);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    const char *p = http_req_header(r, "x-couch-persist");
    op->persist = !(p && strcmp(p, "false") == 0);
    start_op(r, op);
}

/* A section or key name that can round-trip through an ini file. */
static int name_ok(const http_str_t *s, int is_key)
{
    if (s->n == 0 || strlen(s->p) != s->n || strpbrk(s->p, "\r\n"))
        return 0;
    if (!is_key)
        return !strchr(s->p, ']');
    return !strchr(s->p, '=') && s->p[0] != ';' && s->p[0] != '#' && s->p[0] != '[' && s->p[0] != ' ' &&
           s->p[0] != '\t';
}

static void put_key(http_req_t *r, const http_str_t *section, const http_str_t *key)
{
    if (!name_ok(section, 0) || !name_ok(key, 1)) {
        http_send_error(r, 400, "bad_request", "Invalid section or key name.");
        return;
    }
    if (blacklisted(section->p, key->p)) {
        http_send_error(r, 403, "forbidden", "Config section blacklisted for modification over HTTP API.");
        return;
    }
    json_doc doc = JSON_DOC_INIT;
    const json_val *root;
    if (http_json_body(r, &doc, &root) != DV_OK)
        return;
    if (!json_is_string(root)) {
        json_doc_free(&doc);
        http_send_error(r, 400, "bad_request", "The value must be a JSON string.");
        return;
    }
    size_t n;
    const char *s = json_str(root, &n), *e = s + n;
    /* couch_util:trim: blanks and line breaks at both ends go. */
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    if (memchr(s, '\0', (size_t)(e - s)) || memchr(s, '\n', (size_t)(e - s)) || memchr(s, '\r', (size_t)(e - s))) {
        json_doc_free(&doc);
        http_send_error(r, 400, "bad_request", "A config value cannot span lines.");
        return;
    }
    /* " ;" (or a leading ';') would start a comment when the file is read
     * again: the value would come back cut.  Passwords are hashed first. */
    if (strcmp(section->p, "admins") != 0 && e > s &&
        (*s == ';' || memmem(s, (size_t)(e - s), " ;", 2) || memmem(s, (size_t)(e - s), "\t;", 2))) {
        json_doc_free(&doc);
        http_send_error(r, 400, "bad_request", "A config value cannot contain \" ;\": it starts a comment in ini files.");
        return;
    }
    char *value = strndup(s, (size_t)(e - s));
    json_doc_free(&doc);
    start_key_op(r, OP_SET, section, key, value);
}

static void delete_key(http_req_t *r, const http_str_t *section, const http_str_t *key)
{
    if (blacklisted(section->p, key->p)) {
        http_send_error(r, 403, "forbidden", "Config section blacklisted for modification over HTTP API.");
        return;
    }
    if (!name_ok(section, 0) || !name_ok(key, 1)) {
        http_send_error(r, 404, "not_found", "unknown_config_value");
        return;
    }
    start_key_op(r, OP_DELETE, section, key, NULL);
}

static void reload(http_req_t *r)
{
    cfg_op *op = calloc(1, sizeof *op);
    if (!op) {
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    op->kind = OP_RELOAD;
    start_op(r, op);
}

/* ---- dispatch --------------------------------------------------------------- */

void http_handle_config(http_req_t *r)
{
    if (!http_authz_server_admin(r))
        return;
    const http_str_t *node = &r->match.db;
    if (!((node->n == 6 && !memcmp(node->p, "_local", 6)) || (node->n == 13 && !memcmp(node->p, "nonode@nohost", 13)))) {
        char reason[160];
        snprintf(reason, sizeof reason, "no such node: %.*s", (int)(node->n > 100 ? 100 : node->n), node->p);
        for (char *p = reason; *p; p++) /* the reason goes out as JSON text */
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x80)
                *p = '?';
        http_send_error(r, 404, "not_found", reason);
        return;
    }
    config_t *c = http_server_opts(r->server)->config;
    if (!c) {
        http_send_internal(r, DV_ERR_CLOSED);
        return;
    }
    const http_str_t *seg = r->target.seg;
    int get = r->method == HTTP_GET || r->method == HTTP_HEAD;
    switch (r->target.nseg) {
    case 3:
        if (get)
            send_all(r, c);
        else
            http_send_method_not_allowed(r, "GET");
        return;
    case 4:
        if (seg[3].n == 7 && memcmp(seg[3].p, "_reload", 7) == 0) {
            if (r->method == HTTP_POST)
                reload(r);
            else
                http_send_method_not_allowed(r, "POST");
        } else if (get) {
            send_section(r, c, seg[3].p);
        } else {
            http_send_method_not_allowed(r, "GET");
        }
        return;
    case 5:
        if (get)
            send_key(r, c, seg[3].p, seg[4].p);
        else if (r->method == HTTP_PUT)
            put_key(r, &seg[3], &seg[4]);
        else if (r->method == HTTP_DELETE)
            delete_key(r, &seg[3], &seg[4]);
        else
            http_send_method_not_allowed(r, "GET,PUT,DELETE");
        return;
    default:
        http_send_error(r, 404, "not_found", "missing");
        return;
    }
}
