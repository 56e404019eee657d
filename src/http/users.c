/*
 * users.c — the _users database's rules (see users.h).
 *
 * The validation follows CouchDB's _design/_auth validate_doc_update
 * function step by step, with the same forbidden reasons, so clients that
 * show those messages keep working.  Every check is on the loop thread
 * and costs one read of the current document (pread on committed data);
 * only the PBKDF2 of a new password runs on the worker pool, because it
 * takes tens of milliseconds at the configured iteration count.
 */
#include "http/users.h"
#include "http/hutil.h"
#include "base/base64.h"
#include "base/passwd.h"
#include "base/status.h"
#include "base/workers.h"
#include "http/auth.h"
#include "http/authz.h"
#include "http/handlers.h"
#include "json/json.h"
#include "store/dbfile.h"
#include "store/revtree.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

static size_t prefix_len(void) { return strlen(HTTP_AUTH_USER_PREFIX); }

/* Whether id is org.couchdb.user:NAME for this user. */
static int own_id(const http_user_ctx_t *u, const char *id, size_t n)
{
    size_t pl = prefix_len();
    if (!u || !u->name || n < pl || memcmp(id, HTTP_AUTH_USER_PREFIX, pl) != 0)
        return 0;
    return strlen(u->name) == n - pl && memcmp(u->name, id + pl, n - pl) == 0;
}

/* Server admin or admin of _users (its _security). */
static int users_admin(http_req_t *r, db_t *db)
{
    if (http_user_has_role(r->user, "_admin"))
        return 1;
    store_snap *snap;
    buf_t sec = BUF_INIT;
    int ok = 0;
    if (db_snapshot(db, &snap) == DV_OK) {
        if (store_snap_security(snap, &sec) == DV_OK)
            ok = http_authz_is_db_admin(r->user, (const char *)sec.data, sec.len);
        store_snap_release(snap);
    }
    buf_free(&sec);
    return ok;
}

int http_users_authz_doc(http_req_t *r)
{
    if (http_user_has_role(r->user, "_admin"))
        return 1;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD)
        return 1; /* writes: http_users_submit */
    db_t *db;
    if (db_open(http_dbs(r), HTTP_AUTH_USERS_DB, &db) != DV_OK)
        return 1; /* the handler answers 404 */
    int admin = users_admin(r, db);
    db_release(db);
    if (admin || own_id(r->user, r->match.docid.p, r->match.docid.n))
        return 1;
    /* Another user's document: with [chttpd_auth] public_fields set, an
     * authenticated user sees those fields of it (the handler filters it,
     * http_users_public_only); never a design document or an attachment. */
    const http_auth_t *a = http_server_opts(r->server)->auth;
    const http_str_t *id = &r->match.docid;
    if (r->user && a && http_auth_public_fields_set(a) && r->route->handler == (void *)http_handle_doc &&
        !(id->n >= 8 && !memcmp(id->p, "_design/", 8)))
        return 1;
    http_send_error(r, 404, "not_found", "missing");
    return 0;
}

int http_users_public_only(http_req_t *r, db_t *db)
{
    return !strcmp(db_name(db), HTTP_AUTH_USERS_DB) && !own_id(r->user, r->match.docid.p, r->match.docid.n) &&
           !users_admin(r, db);
}

typedef struct public_filter {
    const char *fields; /* [chttpd_auth] public_fields, read once per document */
    int keep_meta;
    size_t npublic;
} public_filter;

static bool skip_private(const char *name, size_t n, void *ctx)
{
    public_filter *f = ctx;
    if (f->keep_meta && n > 0 && name[0] == '_')
        return false;
    if (!http_auth_list_has(f->fields, name, n))
        return true;
    f->npublic++;
    return false;
}

int http_users_render_public(const http_auth_t *a, const store_snap *s, const store_docinfo *di, uint32_t idx,
                             const db_render_opts *o, int keep_meta, json_writer *w, size_t *npublic)
{
    buf_t b = BUF_INIT;
    json_doc jd = JSON_DOC_INIT;
    json_writer tw;
    public_filter f = {a ? http_auth_public_fields(a) : NULL, keep_meta, 0};
    json_writer_init(&tw, &b);
    int rc = db_render_doc(s, di, idx, o, &tw, NULL);
    if (rc == DV_OK)
        rc = tw.err;
    if (rc == DV_OK)
        rc = json_doc_parse(&jd, b.data, b.len, JSON_DEPTH_STORED, NULL);
    if (rc == DV_OK && !a)
        rc = DV_ERR_INVALID; /* no settings, nothing public: not reached, authz refuses first */
    if (rc == DV_OK)
        rc = json_write_object_filtered(w, json_doc_root(&jd), skip_private, &f);
    *npublic = f.npublic;
    json_doc_free(&jd);
    buf_free(&b);
    return rc;
}

/* ---- the _auth validation ---------------------------------------------------- */

static int truthy(const json_val *v)
{
    if (!v)
        return 0;
    switch (json_typeof(v)) {
    case JSON_NULL:
    case JSON_FALSE:
        return 0;
    case JSON_STRING:
        return json_len(v) > 0;
    case JSON_NUMBER: {
        double d;
        return json_get_double(v, &d) == DV_OK && d != 0;
    }
    default:
        return 1;
    }
}

static int cmp_str(const void *a, const void *b)
{
    const json_val *x = *(const json_val *const *)a, *y = *(const json_val *const *)b;
    size_t xn, yn;
    const char *xs = json_str(x, &xn), *ys = json_str(y, &yn);
    int c = memcmp(xs, ys, xn < yn ? xn : yn);
    return c ? c : (xn > yn) - (xn < yn);
}

/* Same multiset of role strings. */
static int same_roles(const json_val *a, const json_val *b)
{
    size_t na = a && json_is_array(a) ? json_len(a) : 0, nb = json_len(b);
    if (na != nb)
        return 0;
    if (na == 0)
        return 1;
    const json_val **x = calloc(na, sizeof *x), **y = calloc(nb, sizeof *y);
    int ok = x && y;
    for (size_t i = 0; ok && i < na; i++) {
        x[i] = json_array_get(a, i);
        y[i] = json_array_get(b, i);
        ok = json_is_string(x[i]) && json_is_string(y[i]);
    }
    if (ok) {
        qsort(x, na, sizeof *x, cmp_str);
        qsort(y, nb, sizeof *y, cmp_str);
        for (size_t i = 0; ok && i < na; i++)
            ok = cmp_str(&x[i], &y[i]) == 0;
    }
    free(x);
    free(y);
    return ok;
}

static int str_eq_val(const json_val *a, const json_val *b)
{
    if (!a || !b || !json_is_string(a) || !json_is_string(b))
        return a == b;
    size_t an, bn;
    const char *as = json_str(a, &an), *bs = json_str(b, &bn);
    return an == bn && memcmp(as, bs, an) == 0;
}

const char *http_users_validate(const json_val *newdoc, const char *id, size_t idlen, int deleted,
                                const json_val *olddoc, const http_user_ctx_t *user, int is_admin)
{
    const json_val *oldname = olddoc ? json_object_get_cstr(olddoc, "name") : NULL;
    if (deleted) {
        if (is_admin)
            return NULL;
        size_t on;
        const char *os = oldname && json_is_string(oldname) ? json_str(oldname, &on) : NULL;
        if (user && user->name && os && strlen(user->name) == on && memcmp(user->name, os, on) == 0)
            return NULL;
        return "Only admins may delete other user docs.";
    }
    const json_val *type = json_object_get_cstr(newdoc, "type");
    if (!type || !json_str_eq(type, "user"))
        return "doc.type must be user";
    const json_val *name = json_object_get_cstr(newdoc, "name");
    if (!truthy(name))
        return "doc.name is required";
    const json_val *roles = json_object_get_cstr(newdoc, "roles");
    if (!truthy(roles))
        return "doc.roles must exist";
    if (!json_is_array(roles))
        return "doc.roles must be an array";
    for (size_t i = 0; i < json_len(roles); i++)
        if (!json_is_string(json_array_get(roles, i)))
            return "doc.roles can only contain strings";
    size_t nn = 0;
    const char *ns = json_is_string(name) ? json_str(name, &nn) : NULL;
    size_t pl = prefix_len();
    if (!ns || idlen != pl + nn || memcmp(id, HTTP_AUTH_USER_PREFIX, pl) != 0 || memcmp(id + pl, ns, nn) != 0)
        return "Doc ID must be of the form org.couchdb.user:name";
    if (olddoc && !str_eq_val(oldname, name))
        return "Usernames can not be changed.";
    if (truthy(json_object_get_cstr(newdoc, "password_sha")) && !truthy(json_object_get_cstr(newdoc, "salt")))
        return "Users with password_sha must have a salt.";
    if (!is_admin) {
        if (olddoc) {
            if (!user || !user->name || strlen(user->name) != nn || memcmp(user->name, ns, nn) != 0)
                return "You may only update your own user document.";
            if (!same_roles(json_object_get_cstr(olddoc, "roles"), roles))
                return "Only _admin may edit roles";
        } else if (json_len(roles) > 0) {
            return "Only _admin may set roles";
        }
    }
    for (size_t i = 0; i < json_len(roles); i++) {
        size_t rn;
        const char *rs = json_str(json_array_get(roles, i), &rn);
        if (rn > 0 && rs[0] == '_')
            return "No system roles (starting with underscore) in users db.";
    }
    if (ns[0] == '_')
        return "Username may not start with underscore.";
    if (memchr(ns, ':', nn))
        return "Character `:` is not allowed in usernames.";
    return NULL;
}

/* ---- the write path ------------------------------------------------------------ */

typedef struct users_job {
    http_async_t *async;
    http_doc_ctx *c;
    int new_edits;
    http_users_cont_fn cont;
    char *password; /* cleansed and freed after hashing */
    size_t pw_len;
    char *prf;
    long iterations;
    char *hash; /* passwd_hash's output */
    int rc;
} users_job;

static void users_job_free(users_job *j)
{
    if (j->password) {
        OPENSSL_cleanse(j->password, j->pw_len);
        free(j->password);
    }
    free(j->prf);
    free(j->hash);
    free(j);
}

static const char *const HASH_FIELDS[] = {"password", "password_scheme", "pbkdf2_prf", "iterations",
                                          "derived_key", "salt"};

/* Rewrites d's body: the password members replaced by the hash's. */
static int apply_hash(db_doc *d, const char *hash)
{
    /* hash: -pbkdf2:PRF-KEY,SALT,ITERATIONS */
    const char *prf = hash + 8, *dash = strchr(prf, '-');
    const char *c1 = dash ? strchr(dash + 1, ',') : NULL, *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    if (!c2)
        return DV_ERR_INVALID;
    json_doc jd = JSON_DOC_INIT;
    buf_t out = BUF_INIT;
    json_writer w;
    int rc = json_doc_parse(&jd, d->body.data, d->body.len, JSON_DEPTH_STORED, NULL);
    if (rc != DV_OK)
        goto done;
    json_writer_init(&w, &out);
    if ((rc = json_write_object_without(&w, json_doc_root(&jd), HASH_FIELDS, 6)) != DV_OK)
        goto done;
    out.len--; /* drop '}' */
    int empty = out.len == 1;
    rc = buf_printf(&out, "%s\"password_scheme\":\"pbkdf2\",\"pbkdf2_prf\":\"%.*s\",\"iterations\":%s,"
                          "\"derived_key\":\"%.*s\",\"salt\":\"%.*s\"}",
                    empty ? "" : ",", (int)(dash - prf), prf, c2 + 1, (int)(c1 - dash - 1), dash + 1,
                    (int)(c2 - c1 - 1), c1 + 1);
    if (rc != DV_OK)
        goto done;
    OPENSSL_cleanse(d->body.data, d->body.len); /* it held the clear password */
    buf_free(&d->body);
    d->body = out;
    out = (buf_t)BUF_INIT;
done:
    buf_free(&out);
    json_doc_free(&jd);
    return rc;
}

static void hash_work(void *arg)
{
    users_job *j = arg;
    j->rc = passwd_hash(j->password, j->prf, j->iterations, &j->hash);
    OPENSSL_cleanse(j->password, j->pw_len);
    http_async_post(j->async);
}

static void hash_done(http_req_t *r, void *arg)
{
    users_job *j = arg;
    http_doc_ctx *c = j->c;
    if (!r) {
        http_doc_ctx_free(c);
        users_job_free(j);
        return;
    }
    int rc = j->rc == DV_OK ? apply_hash(&c->doc, j->hash) : j->rc;
    http_users_cont_fn cont = j->cont;
    int new_edits = j->new_edits;
    users_job_free(j);
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        http_doc_ctx_free(c);
        return;
    }
    cont(r, c, new_edits);
}

/* The current winning body of id in db, or NULL: parsed into jd from the
 * bytes kept in *text (the DOM points into them; the caller frees both). */
static const json_val *read_old(db_t *db, const buf_t *id, json_doc *jd, buf_t *text)
{
    store_snap *snap;
    store_docinfo di;
    store_docbody body;
    const json_val *res = NULL;
    if (db_snapshot(db, &snap) != DV_OK)
        return NULL;
    store_docinfo_init(&di);
    store_docbody_init(&body);
    if (store_snap_get_doc(snap, id->data, id->len, &di) == DV_OK) {
        uint32_t win = revtree_winner(&di.tree);
        if (win != REVTREE_NONE && !di.tree.nodes[win].deleted && di.tree.nodes[win].has_body &&
            store_snap_read_body(snap, di.tree.nodes[win].body, &body) == DV_OK &&
            buf_append(text, body.body.data, body.body.len) == DV_OK &&
            json_doc_parse(jd, text->data, text->len, JSON_DEPTH_STORED, NULL) == DV_OK)
            res = json_doc_root(jd);
    }
    store_docbody_free(&body);
    store_docinfo_free(&di);
    store_snap_release(snap);
    return res;
}

int http_users_check(http_req_t *r, db_t *db, const db_doc *d, int admin, db_err *e, char **password,
                     size_t *pw_len)
{
    json_doc nd = JSON_DOC_INIT, od = JSON_DOC_INIT;
    buf_t old_text = BUF_INIT;
    const char *id = (const char *)d->id.data;
    size_t idlen = d->id.len;
    int rc = DV_ERR_INVALID;
    *password = NULL;
    *pw_len = 0;
    /* couch_users_db:before_doc_update: others' documents do not exist. */
    if (!admin && r->user && r->user->name && !own_id(r->user, id, idlen)) {
        db_err_set(e, 404, "not_found", "missing");
        goto done;
    }
    if (db_docid_is_local(d->id.data, d->id.len) || http_doc_is_design(d)) {
        rc = DV_OK; /* design docs: db admins, checked by the caller */
        goto done;
    }
    if (json_doc_parse(&nd, d->body.data, d->body.len, JSON_DEPTH_STORED, NULL) != DV_OK) {
        db_err_set(e, 400, "bad_request", "invalid UTF-8 JSON");
        goto done;
    }
    const json_val *root = json_doc_root(&nd);
    const json_val *old = read_old(db, &d->id, &od, &old_text);
    const char *bad = http_users_validate(root, id, idlen, d->deleted, old, r->user, admin);
    if (bad) {
        db_err_set(e, 403, "forbidden", "%s", bad);
        goto done;
    }
    const json_val *pw = d->deleted ? NULL : json_object_get_cstr(root, "password");
    if (pw && !json_is_null(pw)) {
        if (!json_is_string(pw)) {
            db_err_set(e, 400, "bad_request", "password must be a string");
            goto done;
        }
        size_t pn;
        const char *ps = json_str(pw, &pn);
        if (!(*password = malloc(pn + 1))) {
            db_err_set(e, 500, "unknown_error", "out of memory");
            rc = DV_ERR_NOMEM;
            goto done;
        }
        memcpy(*password, ps, pn);
        (*password)[pn] = 0;
        *pw_len = pn;
    }
    rc = DV_OK;
done:
    json_doc_free(&nd);
    json_doc_free(&od);
    buf_free(&old_text);
    return rc;
}

int http_users_hash(db_doc *d, const char *password, const char *prf, long iterations)
{
    char *hash = NULL;
    int rc = passwd_hash(password, prf, iterations, &hash);
    if (rc == DV_OK)
        rc = apply_hash(d, hash);
    free(hash);
    return rc;
}

int http_users_is_admin(http_req_t *r, db_t *db) { return users_admin(r, db); }

void http_users_submit(http_req_t *r, http_doc_ctx *c, int new_edits, http_users_cont_fn cont)
{
    db_err e;
    char *pw;
    size_t pn;
    int rc = http_users_check(r, c->db, &c->doc, users_admin(r, c->db), &e, &pw, &pn);
    if (rc != DV_OK) {
        if (rc == DV_ERR_NOMEM)
            http_send_internal(r, rc);
        else
            http_send_db_err(r, &e);
        http_doc_ctx_free(c);
        return;
    }
    if (!pw) {
        cont(r, c, new_edits);
        return;
    }
    const http_auth_t *a = http_server_opts(r->server)->auth;
    const char *prf = PASSWD_DEFAULT_PRF;
    long iterations = PASSWD_DEFAULT_ITERATIONS;
    if (a)
        http_auth_users_hash(a, &prf, &iterations);
    users_job *j = calloc(1, sizeof *j);
    if (!j || !(j->prf = strdup(prf)) ||
        !(j->async = http_async_new(r, hash_done, j))) {
        if (j)
            free(j->prf);
        free(j);
        OPENSSL_cleanse(pw, pn);
        free(pw);
        http_send_internal(r, DV_ERR_NOMEM);
        http_doc_ctx_free(c);
        return;
    }
    j->password = pw;
    j->pw_len = pn;
    j->iterations = iterations;
    j->c = c;
    j->new_edits = new_edits;
    j->cont = cont;
    if (workers_submit(http_server_workers(r->server), hash_work, j) != DV_OK)
        hash_work(j);
}
