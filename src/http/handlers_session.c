/*
 * handlers_session.c — /_session (CouchDB's couch_httpd_auth
 * handle_session_req): POST logs in (form or JSON name/password) and sets
 * the AuthSession cookie, GET reports the request's user context, DELETE
 * clears the cookie.  `next` (and `fail` on a failed login) answer 302 to
 * that location instead, as CouchDB does for browser forms.
 *
 * The password check itself is http_auth_login (cached, PBKDF2 off the
 * loop); nothing here keeps the password beyond the request.
 */
#include "base/status.h"
#include "http/auth.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "json/json.h"

#include <h2o.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

static void write_roles(json_writer *w, const http_user_ctx_t *u)
{
    json_write_begin_array(w);
    for (size_t i = 0; u && i < u->nroles; i++)
        json_write_cstr(w, u->roles[i]);
    json_write_end_array(w);
}

/* couch_httpd:absolute_uri for a path; anything else is used as given. */
static const char *absolute(http_req_t *r, const http_str_t *loc)
{
    if (loc->n == 0 || loc->p[0] != '/')
        return loc->p;
    h2o_req_t *req = r->h2o; /* h2o keeps Host as the request's authority */
    buf_t b = BUF_INIT;
    if (buf_printf(&b, "http://%.*s%s", (int)req->authority.len, req->authority.base, loc->p) != DV_OK) {
        buf_free(&b);
        return loc->p;
    }
    http_add_header(r, "Location", (const char *)b.data); /* copied into the pool */
    buf_free(&b);
    return NULL;
}

static void redirect_or(http_req_t *r, const char *param, int status, const buf_t *body)
{
    const http_str_t *loc = http_qs(r, param);
    if (loc) {
        const char *plain = absolute(r, loc);
        if (plain)
            http_add_header(r, "Location", plain);
        status = 302;
    }
    http_send_json(r, status, body);
}

typedef struct login_ctx {
    char *buf; /* name and password, cleansed when done */
    size_t len;
} login_ctx;

static void login_free(login_ctx *l)
{
    if (l->buf) {
        OPENSSL_cleanse(l->buf, l->len);
        free(l->buf);
    }
    free(l);
}

static void login_done(http_req_t *r, const http_user_ctx_t *user, int locked, void *arg)
{
    login_free(arg);
    if (!r)
        return;
    if (locked) {
        http_auth_send_locked(r);
        return;
    }
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    const char *cookie = user ? http_auth_session_cookie(r, user->name) : NULL;
    if (!cookie) {
        http_add_header(r, "Set-Cookie", "AuthSession=; Version=1; Path=/; HttpOnly");
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "error");
        json_write_cstr(&w, "unauthorized");
        json_write_key_cstr(&w, "reason");
        json_write_cstr(&w, "Name or password is incorrect.");
        json_write_end_object(&w);
        if (w.err == DV_OK)
            redirect_or(r, "fail", 401, &b);
        else
            http_send_internal(r, w.err);
        buf_free(&b);
        return;
    }
    http_add_header(r, "Set-Cookie", cookie);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "ok");
    json_write_bool(&w, true);
    json_write_key_cstr(&w, "name");
    json_write_cstr(&w, user->name);
    json_write_key_cstr(&w, "roles");
    write_roles(&w, user);
    json_write_end_object(&w);
    if (w.err == DV_OK)
        redirect_or(r, "next", 200, &b);
    else
        http_send_internal(r, w.err);
    buf_free(&b);
}

/* name=…&password=… (mochiweb_util:parse_qs: '&' or ';', '+' is space). */
static void form_field(const char *body, size_t n, const char *key, buf_t *out)
{
    size_t kl = strlen(key);
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && body[j] != '&' && body[j] != ';')
            j++;
        const char *eq = memchr(body + i, '=', j - i);
        size_t klen = eq ? (size_t)(eq - body - i) : j - i;
        char *k = malloc(klen + 1);
        if (k) {
            size_t dk = http_unquote(body + i, klen, k);
            if (dk == kl && memcmp(k, key, kl) == 0 && out->len == 0) {
                const char *v = eq ? eq + 1 : body + j;
                size_t vn = (size_t)(body + j - v);
                if (buf_reserve(out, vn + 1) == DV_OK)
                    out->len = http_unquote(v, vn, (char *)out->data);
            }
            free(k);
        }
        i = j + 1;
    }
}

static void json_field(const json_val *root, const char *key, buf_t *out)
{
    const json_val *v = root && json_is_object(root) ? json_object_get_cstr(root, key) : NULL;
    size_t n;
    const char *s = v && json_is_string(v) ? json_str(v, &n) : NULL;
    if (s)
        buf_append(out, s, n);
}

static void session_post(http_req_t *r)
{
    const char *ct = http_req_header(r, "content-type");
    size_t blen;
    const char *body = (const char *)http_req_body(r, &blen);
    buf_t name = BUF_INIT, pw = BUF_INIT;
    if (ct && !strncasecmp(ct, "application/x-www-form-urlencoded", 33)) {
        form_field(body ? body : "", blen, "name", &name);
        form_field(body ? body : "", blen, "password", &pw);
    } else if (ct && !strncasecmp(ct, "application/json", 16)) {
        json_doc jd = JSON_DOC_INIT;
        const json_val *root;
        if (http_json_body(r, &jd, &root) != DV_OK)
            return;
        json_field(root, "name", &name);
        json_field(root, "password", &pw);
        json_doc_free(&jd);
    }
    login_ctx *l = calloc(1, sizeof *l);
    if (!l || !(l->buf = malloc(name.len + pw.len + 2))) {
        free(l);
        OPENSSL_cleanse(pw.data, pw.len);
        buf_free(&name);
        buf_free(&pw);
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    l->len = name.len + pw.len + 2;
    if (name.len)
        memcpy(l->buf, name.data, name.len);
    l->buf[name.len] = 0;
    if (pw.len)
        memcpy(l->buf + name.len + 1, pw.data, pw.len);
    l->buf[name.len + 1 + pw.len] = 0;
    size_t nl = name.len, pl = pw.len;
    if (pw.data)
        OPENSSL_cleanse(pw.data, pw.len);
    buf_free(&name);
    buf_free(&pw);
    http_auth_login(r, l->buf, nl, l->buf + nl + 1, pl, login_done, l);
}

static void session_get(http_req_t *r)
{
    const http_user_ctx_t *u = r->user;
    const http_str_t *basic = http_qs(r, "basic");
    if (!u && basic && !strcmp(basic->p, "true")) {
        http_send_error(r, 401, "unauthorized", "Please login.");
        return;
    }
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "ok");
    json_write_bool(&w, true);
    json_write_key_cstr(&w, "userCtx");
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "name");
    if (u && u->name)
        json_write_cstr(&w, u->name);
    else
        json_write_null(&w);
    json_write_key_cstr(&w, "roles");
    write_roles(&w, u);
    json_write_end_object(&w);
    json_write_key_cstr(&w, "info");
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "authentication_handlers");
    json_write_begin_array(&w);
    const char *names[4];
    size_t nn = http_auth_handler_names(http_server_opts(r->server)->auth, names, 4);
    for (size_t i = 0; i < nn; i++)
        json_write_cstr(&w, names[i]);
    json_write_end_array(&w);
    if (u && u->handler) {
        json_write_key_cstr(&w, "authenticated");
        json_write_cstr(&w, u->handler);
    }
    json_write_end_object(&w);
    json_write_end_object(&w);
    if (w.err == DV_OK)
        http_send_json(r, 200, &b);
    else
        http_send_internal(r, w.err);
    buf_free(&b);
}

static void session_delete(http_req_t *r)
{
    buf_t b = BUF_INIT;
    http_add_header(r, "Set-Cookie", http_auth_clear_cookie(r));
    if (buf_append_str(&b, "{\"ok\":true}") != DV_OK) {
        http_send_internal(r, DV_ERR_NOMEM);
        return;
    }
    redirect_or(r, "next", 200, &b);
    buf_free(&b);
}

void http_handle_session(http_req_t *r)
{
    switch (r->method) {
    case HTTP_POST:
        session_post(r);
        break;
    case HTTP_GET:
    case HTTP_HEAD:
        session_get(r);
        break;
    case HTTP_DELETE:
        session_delete(r);
        break;
    default:
        http_send_method_not_allowed(r, "GET,HEAD,POST,DELETE");
        break;
    }
}
