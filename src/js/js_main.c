/*
 * js_main.c — divan-js: the JavaScript query server (Duktape), one process
 * per pool slot of views/qserver.c.
 *
 * Reads request frames on stdin, answers on stdout (src/js/qproto.h, the
 * contract; docs/views.md, the prose), writes diagnostics to stderr.
 *
 *   divan-js [--memory-limit BYTES] [--reduce-limit true|false|log] [--progress-fd FD]
 *            [--no-seccomp]
 *
 * Shape: one Duktape heap; each function set ("handle", chosen by the
 * server) lives in its own thread with a fresh global environment, so two
 * design documents never see each other's globals.  A handle's functions,
 * its prelude helpers and its thread are kept alive by one array in the
 * heap stash; C keeps heap pointers into it.
 *
 * Invariants:
 *   - user code never kills the process: every call into it runs under
 *     duk_pcall/duk_safe_call and a throw becomes an error in the answer;
 *     only Duktape's fatal handler (a bug, or memory exhausted beyond the
 *     budget's reach) ends it, with exit status 70;
 *   - the server always knows which document a slow or crashing function
 *     was working on: the progress page (qproto.h) says so while MAP rows
 *     are buffered; without the page each row is written before the next
 *     document starts;
 *   - a request that fails part-way leaves nothing half-written: answers
 *     are built in `out` from a recorded offset and cut back on error.
 */
#include "js/js_alloc.h"
#include "js/js_json.h"
#include "js/js_prelude.js.h"
#include "js/js_sandbox.h"
#include "js/qproto.h"

#include <duktape.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 512u

/* ---- diagnostics ---------------------------------------------------------- */

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "divan-js[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m < sizeof line - (size_t)n - 1 ? (size_t)m : sizeof line - (size_t)n - 2);
    line[len++] = '\n';
    ssize_t w = write(2, line, len); /* best effort: nothing to do on failure */
    (void)w;
}

/* ---- output frames -------------------------------------------------------- */

/* `out` holds answer frames; `logs` holds the QP_LOG frames written while
 * an answer is being built.  A flush writes logs first, so log lines always
 * precede the answer of the document or call that logged them. */
typedef struct obuf {
    char *data;
    size_t len, cap;
} obuf;
static obuf out, logs;

/* Grows b; throws inside Duktape calls (ctx != NULL), exits outside. */
static void buf_grow(duk_context *ctx, obuf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        if (ctx)
            (void)duk_error(ctx, DUK_ERR_RANGE_ERROR, "alloc failed");
        diag("out of memory for output");
        _exit(70);
    }
    b->data = p;
    b->cap = cap;
}

static void out_reserve(duk_context *ctx, size_t more) { buf_grow(ctx, &out, more); }

static void out_put(duk_context *ctx, const void *p, size_t n)
{
    out_reserve(ctx, n);
    memcpy(out.data + out.len, p, n);
    out.len += n;
}

static void out_byte(duk_context *ctx, char c)
{
    out_reserve(ctx, 1);
    out.data[out.len++] = c;
}

/* Starts a frame; returns its offset for frame_end. */
static size_t frame_begin(duk_context *ctx, int type)
{
    size_t at = out.len;
    out_reserve(ctx, QP_HDR);
    memset(out.data + out.len, 0, 4);
    out.data[out.len + 4] = (char)type;
    out.len += QP_HDR;
    return at;
}

/* Finishes the frame started at `at`: makes the payload valid UTF-8 (see
 * js_utf8_fix) and writes its length. */
static void frame_end(size_t at)
{
    char *payload = out.data + at + QP_HDR;
    /* Log frames written while this answer was built go in front of it,
     * so that the order on the wire is the order of events. */
    if (logs.len && out.data[at + 4] != QP_LOG) {
        buf_grow(NULL, &out, logs.len);
        memmove(out.data + at + logs.len, out.data + at, out.len - at);
        memcpy(out.data + at, logs.data, logs.len);
        out.len += logs.len;
        at += logs.len;
        logs.len = 0;
        payload = out.data + at + QP_HDR;
    }
    size_t n = js_utf8_fix(payload, out.len - at - QP_HDR);
    out.len = at + QP_HDR + n;
    uint32_t len = (uint32_t)n;
    unsigned char *h = (unsigned char *)out.data + at;
    h[0] = (unsigned char)len;
    h[1] = (unsigned char)(len >> 8);
    h[2] = (unsigned char)(len >> 16);
    h[3] = (unsigned char)(len >> 24);
}

/* Appends a QP_LOG frame: prefix + text (Duktape bytes, fixed to UTF-8). */
static void log_frame(duk_context *ctx, const char *prefix, size_t pl, const char *text, size_t n)
{
    buf_grow(ctx, &logs, QP_HDR + pl + n);
    char *h = logs.data + logs.len;
    memcpy(h + QP_HDR, prefix, pl);
    memcpy(h + QP_HDR + pl, text, n);
    size_t len = pl + js_utf8_fix(h + QP_HDR + pl, n);
    h[0] = (char)len;
    h[1] = (char)(len >> 8);
    h[2] = (char)(len >> 16);
    h[3] = (char)(len >> 24);
    h[4] = (char)QP_LOG;
    logs.len += QP_HDR + len;
}

static void write_all(const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(1, p + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            _exit(errno == EPIPE ? 0 : 71); /* the server went away */
        }
        off += (size_t)w;
    }
}

static void out_flush(void)
{
    if (logs.len) {
        write_all(logs.data, logs.len);
        logs.len = 0;
    }
    write_all(out.data, out.len);
    out.len = 0;
    /* A huge answer should not pin its buffer for the life of the process. */
    if (out.cap > 16u * 1024 * 1024) {
        free(out.data);
        out.data = NULL;
        out.cap = 0;
    }
}

/* Appends the JSON of the value at idx (undefined, functions and symbols
 * become null, as inside an array).  May throw (cycles, toJSON throwing). */
static void out_json(duk_context *ctx, duk_idx_t idx)
{
    duk_dup(ctx, idx);
    const char *s = duk_json_encode(ctx, -1);
    size_t n;
    if (duk_is_string(ctx, -1)) {
        s = duk_get_lstring(ctx, -1, &n);
        out_put(ctx, s, n);
    } else {
        out_put(ctx, "null", 4);
    }
    duk_pop(ctx);
}

static void out_error_obj(duk_context *ctx, const char *err, size_t elen, const char *reason, size_t rlen, int fatal)
{
    /* The texts come from Duktape strings: escape them through the JSON
     * encoder rather than by hand. */
    out_put(ctx, "{\"error\":", 9);
    duk_push_lstring(ctx, err, elen);
    out_json(ctx, -1);
    duk_pop(ctx);
    out_put(ctx, ",\"reason\":", 10);
    duk_push_lstring(ctx, reason, rlen);
    out_json(ctx, -1);
    duk_pop(ctx);
    if (fatal)
        out_put(ctx, ",\"fatal\":true", 13);
    out_byte(ctx, '}');
}

/* An error frame outside any Duktape call (texts are plain ASCII). */
static void send_error(const char *err, const char *reason)
{
    size_t at = frame_begin(NULL, QP_ERROR);
    char buf[512];
    int n = snprintf(buf, sizeof buf, "{\"error\":\"%s\",\"reason\":\"%s\"}", err, reason);
    out_put(NULL, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    frame_end(at);
}

/* ---- state ---------------------------------------------------------------- */

typedef struct js_view {
    void *map, *reduce;   /* heap pointers (kept alive by the holder) or NULL */
    char *map_err;        /* error object JSON when map did not compile */
    size_t map_err_len;
} js_view;

typedef struct js_handle {
    char *name;
    size_t name_len;
    duk_context *ctx;     /* the handle's thread */
    void *helpers;        /* prelude object: describe, freeze, filter, validate */
    void *filters;        /* object name -> function */
    void *validate;       /* function or NULL */
    void *ddoc;           /* `this` of filters and validate */
    js_view *views;
    size_t nviews;
    struct js_handle *next;
} js_handle;

static struct {
    duk_context *ctx;     /* the heap's main thread: parses requests */
    js_handle *handles;
    void *emit_arr;       /* flat [k0, v0, k1, v1, ...] of the running map */
    duk_uarridx_t nemit;  /* values in emit_arr */
    js_scratch scratch;
    int reduce_limit;     /* 0 off, 1 error, 2 log */
    qp_progress *progress; /* shared with the server, or NULL */
    unsigned long generation; /* stash key counter */
} S;

static js_handle *handle_find(const char *name, size_t n)
{
    for (js_handle *h = S.handles; h; h = h->next)
        if (h->name_len == n && memcmp(h->name, name, n) == 0)
            return h;
    return NULL;
}

static void handle_free(js_handle *h)
{
    if (!h)
        return;
    /* Drop the holder from the stash: the thread and functions become
     * garbage. */
    duk_context *ctx = S.ctx;
    duk_push_heap_stash(ctx);
    duk_push_sprintf(ctx, "h:%s", h->name);
    duk_del_prop(ctx, -2);
    duk_pop(ctx);
    for (size_t i = 0; i < h->nviews; i++)
        free(h->views[i].map_err);
    free(h->views);
    free(h->name);
    free(h);
}

static void handle_forget(const char *name, size_t n)
{
    for (js_handle **pp = &S.handles; *pp; pp = &(*pp)->next) {
        if ((*pp)->name_len == n && memcmp((*pp)->name, name, n) == 0) {
            js_handle *h = *pp;
            *pp = h->next;
            handle_free(h);
            return;
        }
    }
}

/* ---- natives: emit, log --------------------------------------------------- */

static duk_ret_t js_emit(duk_context *ctx)
{
    if (!S.emit_arr)
        return 0;
    duk_push_heapptr(ctx, S.emit_arr);
    duk_dup(ctx, 0);
    duk_put_prop_index(ctx, -2, S.nemit);
    duk_dup(ctx, 1);
    duk_put_prop_index(ctx, -2, S.nemit + 1);
    S.nemit += 2;
    return 0;
}

static duk_ret_t js_log(duk_context *ctx)
{
    /* CouchDB: a non-string message is logged as its JSON. */
    if (!duk_is_string(ctx, 0)) {
        duk_dup(ctx, 0);
        duk_json_encode(ctx, -1);
        duk_replace(ctx, 0);
    }
    size_t n;
    const char *s = duk_safe_to_lstring(ctx, 0, &n);
    log_frame(ctx, "", 0, s, n);
    return 0;
}

/* ---- compiling ------------------------------------------------------------ */

/* Compiles src as a function in hctx and pushes it (returns 0), or pushes
 * CouchDB's compilation_error reason string (returns -1).  Accepted forms,
 * as CouchDB's: a function expression or declaration, optionally with
 * comments and a trailing ';'; failing that, a program whose value is a
 * function (e.g. "(function(doc){...})"). */
static duk_ret_t compile_try_program(duk_context *ctx, void *ud)
{
    (void)ud;
    /* [src name] */
    duk_compile(ctx, DUK_COMPILE_EVAL);
    duk_call(ctx, 0);
    return 1;
}

static int compile_fn(duk_context *hc, const char *src, size_t n, const char *name)
{
    duk_push_string(hc, name);
    if (duk_pcompile_lstring_filename(hc, DUK_COMPILE_FUNCTION, src, n) == 0)
        return 0;
    /* [err1]: kept, it names what is wrong with the usual form */
    duk_push_lstring(hc, src, n);
    duk_push_string(hc, name);
    int rc = duk_safe_call(hc, compile_try_program, NULL, 2, 1);
    /* [err1 value-or-err2] */
    if (rc == 0 && duk_is_function(hc, -1)) {
        duk_remove(hc, -2);
        return 0;
    }
    duk_pop(hc);
    if (rc == 0) {
        duk_pop(hc);
        duk_push_sprintf(hc, "Expression does not eval to a function. (%s)", src);
    } else {
        duk_push_sprintf(hc, "%s (%s)", duk_safe_to_string(hc, -1), src);
        duk_remove(hc, -2);
    }
    return -1;
}

/* ---- DEFINE --------------------------------------------------------------- */

/* Appends one {"where","error","reason"} entry to the errors array being
 * written; reason at the top of hctx's stack (popped). */
static void define_error(duk_context *ctx, int *first, const char *where, const char *err)
{
    if (!*first)
        out_byte(ctx, ',');
    *first = 0;
    out_put(ctx, "{\"where\":", 9);
    duk_push_string(ctx, where);
    out_json(ctx, -1);
    duk_pop(ctx);
    out_put(ctx, ",\"error\":", 9);
    duk_push_string(ctx, err);
    out_json(ctx, -1);
    duk_pop(ctx);
    out_put(ctx, ",\"reason\":", 10);
    out_json(ctx, -1);
    duk_pop(ctx);
    out_byte(ctx, '}');
}

/* A view whose map did not compile answers every document with the same
 * error object: kept as JSON text.  Reason at the top of ctx (kept). */
static void remember_map_err(duk_context *ctx, js_view *v, const char *err)
{
    size_t rl, save = out.len;
    const char *r = duk_get_lstring(ctx, -1, &rl);
    out_error_obj(ctx, err, strlen(err), r, rl, 0);
    v->map_err_len = out.len - save;
    v->map_err = malloc(v->map_err_len);
    if (!v->map_err)
        (void)duk_error(ctx, DUK_ERR_RANGE_ERROR, "alloc failed");
    memcpy(v->map_err, out.data + save, v->map_err_len);
    out.len = save;
}

/* Stash key of the handle being defined, for define_safe. */
typedef struct define_ctx {
    js_handle *h;
    size_t frame_at;
} define_ctx;

/* [req] on S.ctx.  Builds the handle; all Duktape calls may throw (memory),
 * and are then caught by the caller, which frees h. */
static duk_ret_t define_safe(duk_context *ctx, void *ud)
{
    define_ctx *dc = ud;
    js_handle *h = dc->h;
    duk_idx_t req = 0;

    /* holder = [thread, helpers, filters, validate, ddoc, map0, red0, ...],
     * in the stash before anything else can fail */
    duk_idx_t holder = duk_push_array(ctx);
    duk_push_heap_stash(ctx);
    duk_push_sprintf(ctx, "h:%s", h->name);
    duk_dup(ctx, holder);
    duk_put_prop(ctx, -3);
    duk_pop(ctx);
    duk_push_thread_new_globalenv(ctx);
    h->ctx = duk_get_context(ctx, -1);
    duk_put_prop_index(ctx, holder, 0);
    duk_context *hc = h->ctx;

    /* Globals: natives, then the prelude (which removes Duktape's extras). */
    duk_push_global_object(hc);
    duk_push_c_function(hc, js_emit, 2);
    duk_put_prop_string(hc, -2, "emit");
    duk_push_c_function(hc, js_log, 1);
    duk_put_prop_string(hc, -2, "log");
    duk_pop(hc);

    /* The require root: the design document when given, else {views:{lib}}. */
    if (duk_get_prop_string(ctx, req, "ddoc") && duk_is_object(ctx, -1)) {
        h->ddoc = duk_get_heapptr(ctx, -1);
    } else {
        duk_pop(ctx);
        duk_push_object(ctx);
        duk_push_object(ctx);
        duk_get_prop_string(ctx, req, "lib");
        duk_put_prop_string(ctx, -2, "lib");
        duk_put_prop_string(ctx, -2, "views");
        h->ddoc = duk_get_heapptr(ctx, -1);
    }
    duk_put_prop_index(ctx, holder, 4);

    duk_push_string(hc, JS_PRELUDE);
    duk_push_string(hc, "prelude");
    duk_compile(hc, DUK_COMPILE_EVAL);
    duk_call(hc, 0);
    duk_push_heapptr(hc, h->ddoc);
    duk_call(hc, 1);
    h->helpers = duk_get_heapptr(hc, -1);
    duk_push_heapptr(ctx, duk_get_heapptr(hc, -1));
    duk_put_prop_index(ctx, holder, 1);
    duk_pop(hc);

    frame_begin(ctx, QP_OK);
    out_put(ctx, "{\"errors\":[", 11);
    int first = 1;
    char where[256];

    /* views */
    duk_get_prop_string(ctx, req, "views");
    duk_size_t nviews = duk_is_array(ctx, -1) ? duk_get_length(ctx, -1) : 0;
    h->views = calloc(nviews ? nviews : 1, sizeof *h->views);
    if (!h->views)
        return duk_error(ctx, DUK_ERR_RANGE_ERROR, "alloc failed");
    h->nviews = nviews;
    for (duk_size_t i = 0; i < nviews; i++) {
        js_view *v = &h->views[i];
        duk_get_prop_index(ctx, -1, (duk_uarridx_t)i);
        duk_get_prop_string(ctx, -1, "name");
        const char *vname = duk_is_string(ctx, -1) ? duk_get_string(ctx, -1) : NULL;
        char label[128];
        if (vname)
            snprintf(label, sizeof label, "%s", vname);
        else
            snprintf(label, sizeof label, "%lu", (unsigned long)i);
        duk_pop(ctx);
        static const char *const kinds[2] = {"map", "reduce"};
        for (int k = 0; k < 2; k++) {
            size_t n;
            duk_get_prop_string(ctx, -1, kinds[k]);
            const char *src = duk_is_string(ctx, -1) ? duk_get_lstring(ctx, -1, &n) : NULL;
            snprintf(where, sizeof where, "views.%s.%s", label, kinds[k]);
            /* Built-in reduces ("_sum", ...) are the index engine's. */
            if (src && !(k == 1 && src[0] == '_')) {
                if (compile_fn(hc, src, n, where) == 0) {
                    void *fn = duk_get_heapptr(hc, -1);
                    duk_push_heapptr(ctx, fn);
                    duk_put_prop_index(ctx, holder, (duk_uarridx_t)(5 + 2 * i + (duk_size_t)k));
                    duk_pop(hc);
                    if (k == 0)
                        v->map = fn;
                    else
                        v->reduce = fn;
                } else {
                    duk_xmove_top(ctx, hc, 1);
                    if (k == 0)
                        remember_map_err(ctx, v, "compilation_error");
                    define_error(ctx, &first, where, "compilation_error");
                }
            } else if (k == 0) {
                duk_push_string(ctx, "missing function");
                remember_map_err(ctx, v, "not_found");
                define_error(ctx, &first, where, "not_found");
            }
            duk_pop(ctx);
        }
        duk_pop(ctx);
    }
    duk_pop(ctx);

    /* filters: {name: source} compiled into an object name -> function */
    duk_push_object(hc);
    h->filters = duk_get_heapptr(hc, -1);
    duk_push_heapptr(ctx, h->filters);
    duk_put_prop_index(ctx, holder, 2);
    if (duk_get_prop_string(ctx, req, "filters") && duk_is_object(ctx, -1)) {
        duk_enum(ctx, -1, DUK_ENUM_OWN_PROPERTIES_ONLY);
        while (duk_next(ctx, -1, 1)) {
            const char *fname = duk_safe_to_string(ctx, -2);
            size_t n;
            snprintf(where, sizeof where, "filters.%s", fname);
            if (duk_is_string(ctx, -1)) {
                const char *src = duk_get_lstring(ctx, -1, &n);
                if (compile_fn(hc, src, n, where) == 0) {
                    duk_put_prop_string(hc, -2, fname);
                } else {
                    duk_xmove_top(ctx, hc, 1);
                    define_error(ctx, &first, where, "compilation_error");
                }
            }
            duk_pop_2(ctx);
        }
        duk_pop(ctx);
    }
    duk_pop(ctx);
    duk_pop(hc);

    if (duk_get_prop_string(ctx, req, "validate_doc_update") && duk_is_string(ctx, -1)) {
        size_t n;
        const char *src = duk_get_lstring(ctx, -1, &n);
        if (compile_fn(hc, src, n, "validate_doc_update") == 0) {
            h->validate = duk_get_heapptr(hc, -1);
            duk_push_heapptr(ctx, h->validate);
            duk_put_prop_index(ctx, holder, 3);
            duk_pop(hc);
        } else {
            duk_xmove_top(ctx, hc, 1);
            define_error(ctx, &first, "validate_doc_update", "compilation_error");
        }
    }
    duk_pop(ctx);
    out_put(ctx, "]}", 2);
    return 0;
}

static void do_define(const char *payload, size_t n)
{
    duk_context *ctx = S.ctx;
    duk_set_top(ctx, 0);
    if (js_json_push(ctx, payload, n, MAX_DEPTH, &S.scratch) != 0 || !duk_is_object(ctx, -1)) {
        duk_set_top(ctx, 0);
        send_error("bad_request", "DEFINE payload is not a JSON object");
        return;
    }
    duk_get_prop_string(ctx, 0, "handle");
    size_t hn;
    const char *hname = duk_is_string(ctx, -1) ? duk_get_lstring(ctx, -1, &hn) : NULL;
    if (!hname || hn == 0 || hn > 200 || memchr(hname, 0, hn)) {
        duk_set_top(ctx, 0);
        send_error("bad_request", "DEFINE needs a handle string (1-200 bytes)");
        return;
    }
    handle_forget(hname, hn); /* a redefinition replaces */
    js_handle *h = calloc(1, sizeof *h);
    char *name = malloc(hn + 1);
    if (!h || !name) {
        free(h);
        free(name);
        duk_set_top(ctx, 0);
        send_error("os_error", "out of memory");
        return;
    }
    memcpy(name, hname, hn);
    name[hn] = 0;
    h->name = name;
    h->name_len = hn;
    duk_pop(ctx);
    define_ctx dc = {h, out.len};
    if (duk_safe_call(ctx, define_safe, &dc, 1, 1) != 0) {
        out.len = dc.frame_at;
        diag("define %s failed: %s", name, duk_safe_to_string(ctx, -1));
        handle_free(h);
        duk_set_top(ctx, 0);
        send_error("os_error", "out of memory while compiling");
        return;
    }
    frame_end(dc.frame_at);
    h->next = S.handles;
    S.handles = h;
    duk_set_top(ctx, 0);
}

/* ---- MAP ------------------------------------------------------------------ */

typedef struct map_ctx {
    js_handle *h;
    const char *doc;
    size_t doc_len;
    js_view *view;
} map_ctx;

/* [] -> [doc] */
static duk_ret_t map_parse_safe(duk_context *ctx, void *ud)
{
    map_ctx *mc = ud;
    if (js_json_push(ctx, mc->doc, mc->doc_len, MAX_DEPTH, &S.scratch) != 0)
        return duk_error(ctx, DUK_ERR_SYNTAX_ERROR, "document is not valid JSON");
    /* CouchDB seals the document: one map function cannot change what the
     * next one sees.  Only needed when there is a next one. */
    if (mc->h->nviews > 1 && duk_is_object(ctx, -1)) {
        duk_push_heapptr(ctx, mc->h->helpers);
        duk_get_prop_string(ctx, -1, "freeze");
        duk_dup(ctx, -3);
        duk_call(ctx, 1);
        duk_pop_2(ctx);
    }
    return 1;
}

/* [doc] -> [] ; appends the view's rows to out. */
static duk_ret_t map_view_safe(duk_context *ctx, void *ud)
{
    map_ctx *mc = ud;
    if (S.nemit) {
        duk_push_heapptr(ctx, S.emit_arr);
        duk_set_length(ctx, -1, 0);
        duk_pop(ctx);
        S.nemit = 0;
    }
    duk_push_heapptr(ctx, mc->view->map);
    duk_dup(ctx, -2);
    duk_call(ctx, 1);
    duk_pop(ctx);
    duk_uarridx_t n = S.nemit;
    duk_push_heapptr(ctx, S.emit_arr);
    out_byte(ctx, '[');
    for (duk_uarridx_t i = 0; i < n; i += 2) {
        out_put(ctx, i ? ",[" : "[", i ? 2 : 1);
        duk_get_prop_index(ctx, -1, i);
        out_json(ctx, -1);
        duk_pop(ctx);
        out_byte(ctx, ',');
        duk_get_prop_index(ctx, -1, i + 1);
        out_json(ctx, -1);
        duk_pop(ctx);
        out_byte(ctx, ']');
    }
    out_byte(ctx, ']');
    duk_pop(ctx);
    return 0;
}

/* [err] (top of ctx) -> appends {"error","reason"} via the prelude's
 * describe(); never throws. */
static duk_ret_t describe_safe(duk_context *ctx, void *ud)
{
    js_handle *h = ud;
    duk_idx_t err = duk_get_top(ctx) - 1; /* safe calls see the whole stack */
    duk_push_heapptr(ctx, h->helpers);
    duk_get_prop_string(ctx, -1, "describe");
    duk_dup(ctx, err);
    duk_call(ctx, 1);
    size_t el, rl;
    duk_get_prop_index(ctx, -1, 0);
    const char *e = duk_safe_to_lstring(ctx, -1, &el);
    duk_get_prop_index(ctx, -2, 1);
    const char *r = duk_safe_to_lstring(ctx, -1, &rl);
    duk_get_prop_index(ctx, -3, 2);
    int fatal = duk_to_boolean(ctx, -1);
    duk_pop(ctx);
    out_error_obj(ctx, e, el, r, rl, fatal);
    return 0;
}

/* Describes the thrown value at the top of ctx (popped). */
static void out_describe(duk_context *ctx, js_handle *h)
{
    size_t save = out.len;
    if (duk_safe_call(ctx, describe_safe, h, 1, 0) != 0) {
        out.len = save;
        static const char fallback[] = "{\"error\":\"exception\",\"reason\":\"(unprintable)\"}";
        out_put(NULL, fallback, sizeof fallback - 1);
    }
}

/* [err] -> []: a QP_LOG frame "function raised exception {error,reason}",
 * CouchDB's log line for a reduce that threw. */
static void log_exception(duk_context *ctx, js_handle *h)
{
    size_t at = out.len;
    out_describe(ctx, h); /* built in out, moved to logs */
    static const char pre[] = "function raised exception ";
    log_frame(NULL, pre, sizeof pre - 1, out.data + at, out.len - at);
    out.len = at;
}

static void do_map(const char *payload, size_t n)
{
    if (n < 4)
        goto bad;
    uint32_t hn = (uint32_t)(unsigned char)payload[0] | (uint32_t)(unsigned char)payload[1] << 8 |
                  (uint32_t)(unsigned char)payload[2] << 16 | (uint32_t)(unsigned char)payload[3] << 24;
    if (hn > n - 4)
        goto bad;
    js_handle *h = handle_find(payload + 4, hn);
    if (!h) {
        send_error("unknown_handle", "no function set defined under this handle");
        return;
    }
    duk_context *ctx = h->ctx;
    const char *p = payload + 4 + hn, *end = payload + n;
    unsigned long long ndone = 0;
    while (p < end) {
        if (end - p < 4)
            goto bad_late;
        uint32_t dl = (uint32_t)(unsigned char)p[0] | (uint32_t)(unsigned char)p[1] << 8 |
                      (uint32_t)(unsigned char)p[2] << 16 | (uint32_t)(unsigned char)p[3] << 24;
        p += 4;
        if (dl > (size_t)(end - p))
            goto bad_late;
        map_ctx mc = {h, p, dl, NULL};
        p += dl;
        if (S.progress) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            __atomic_store_n(&S.progress->started_ns, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec,
                             __ATOMIC_RELEASE);
        }
        size_t at = frame_begin(NULL, QP_MAP_ROW);
        out_byte(NULL, '[');
        duk_set_top(ctx, 0);
        int parsed = duk_safe_call(ctx, map_parse_safe, &mc, 0, 1) == 0;
        for (size_t i = 0; i < h->nviews; i++) {
            if (i)
                out_byte(NULL, ',');
            js_view *v = &h->views[i];
            if (!parsed) {
                duk_dup(ctx, 0);
                out_describe(ctx, h);
                continue;
            }
            if (!v->map) {
                out_put(NULL, v->map_err, v->map_err_len);
                continue;
            }
            mc.view = v;
            size_t save = out.len;
            duk_dup(ctx, 0);
            if (duk_safe_call(ctx, map_view_safe, &mc, 1, 1) != 0) {
                /* CouchDB: the document is skipped for this view only. */
                out.len = save;
                out_describe(ctx, h);
            } else {
                duk_pop(ctx);
            }
        }
        out_byte(NULL, ']');
        frame_end(at);
        ndone++;
        /* Rows go out in chunks (one write per 64 KiB, not per document:
         * per-document writes woke the server for every row); the
         * progress page tells the server where we are meanwhile.  Without
         * the page, every row is written at once. */
        if (S.progress)
            __atomic_store_n(&S.progress->done, ndone, __ATOMIC_RELEASE);
        if (!S.progress || out.len >= 64 * 1024)
            out_flush();
        if (js_alloc_take_refusals())
            duk_gc(ctx, 0); /* the budget was hit: give the next doc room */
    }
    duk_set_top(ctx, 0);
    frame_end(frame_begin(NULL, QP_MAP_END));
    return;
bad:
    send_error("bad_request", "malformed MAP payload");
    return;
bad_late:
    /* Rows already went out: the error frame ends the batch instead of
     * QP_MAP_END. */
    duk_set_top(h->ctx, 0);
    send_error("bad_request", "malformed MAP payload");
}

/* ---- JSON requests: REDUCE, REREDUCE, FILTER, VALIDATE, FORGET ------------ */

typedef struct call_ctx {
    js_handle *h;
    int type;
    size_t in_len;
} call_ctx;

/* Looks up req.handle; NULL when absent or unknown (error frame sent). */
static js_handle *req_handle(duk_context *ctx, duk_idx_t req)
{
    duk_get_prop_string(ctx, req, "handle");
    size_t n = 0;
    const char *s = duk_is_string(ctx, -1) ? duk_get_lstring(ctx, -1, &n) : NULL;
    js_handle *h = s ? handle_find(s, n) : NULL;
    duk_pop(ctx);
    if (!h)
        send_error("unknown_handle", "no function set defined under this handle");
    return h;
}

/* [req] on the handle's ctx.  Answers [r...], one per views[] entry. */
static duk_ret_t reduce_safe(duk_context *ctx, void *ud)
{
    call_ctx *cc = ud;
    js_handle *h = cc->h;
    int rereduce = cc->type == QP_REREDUCE;
    /* [req keys values] */
    if (rereduce) {
        duk_push_null(ctx);
        duk_get_prop_string(ctx, 0, "values");
    } else {
        duk_get_prop_string(ctx, 0, "kvs");
        duk_size_t n = duk_get_length(ctx, -1);
        duk_push_array(ctx);
        duk_push_array(ctx);
        for (duk_size_t i = 0; i < n; i++) {
            duk_get_prop_index(ctx, 1, (duk_uarridx_t)i);
            duk_get_prop_index(ctx, -1, 0);
            duk_put_prop_index(ctx, 2, (duk_uarridx_t)i);
            duk_get_prop_index(ctx, -1, 1);
            duk_put_prop_index(ctx, 3, (duk_uarridx_t)i);
            duk_pop(ctx);
        }
        duk_remove(ctx, 1);
    }
    duk_get_prop_string(ctx, 0, "views");
    duk_size_t nv = duk_get_length(ctx, -1);
    /* [req keys values views results]: every call first, so that log
     * frames (log() or a throw) all precede the answer frame. */
    duk_push_array(ctx);
    for (duk_size_t i = 0; i < nv; i++) {
        duk_get_prop_index(ctx, 3, (duk_uarridx_t)i);
        double vi = duk_get_number_default(ctx, -1, -1);
        duk_pop(ctx);
        if (!(vi >= 0 && vi < (double)h->nviews) || !h->views[(size_t)vi].reduce)
            return duk_error(ctx, DUK_ERR_TYPE_ERROR, "view %ld has no JavaScript reduce", (long)vi);
        duk_push_heapptr(ctx, h->views[(size_t)vi].reduce);
        duk_dup(ctx, 1);
        duk_dup(ctx, 2);
        duk_push_boolean(ctx, rereduce);
        if (duk_pcall(ctx, 3) != 0) {
            /* CouchDB: logged, and the reduction is null. */
            log_exception(ctx, h);
            duk_push_null(ctx);
        }
        duk_put_prop_index(ctx, 4, (duk_uarridx_t)i);
    }
    size_t at = frame_begin(ctx, QP_OK);
    out_json(ctx, 4);
    frame_end(at);
    return 0;
}

/* CouchDB's reduce_limit on the answer frame at `at`: output over 4096
 * bytes and more than half the input is an error (or a log line in "log"
 * mode).  Returns 1 when the answer was replaced by the error. */
static int check_reduce_limit(size_t at, size_t in_len)
{
    if (at + QP_HDR > out.len || out.data[at + 4] != QP_OK)
        return 0;
    size_t reduce_len = out.len - at - QP_HDR;
    if (!S.reduce_limit || reduce_len <= 4096 || reduce_len * 2 <= in_len)
        return 0;
    char msg[200];
    int n = snprintf(msg, sizeof msg, "Reduce output must shrink more rapidly: input size: %zu output size: %zu",
                     in_len, reduce_len);
    if (S.reduce_limit == 2) {
        static const char pre[] = "reduce_overflow_error: ";
        log_frame(NULL, pre, sizeof pre - 1, msg, (size_t)n);
        return 0;
    }
    out.len = at;
    send_error("reduce_overflow_error", msg);
    return 1;
}

static duk_ret_t filter_safe(duk_context *ctx, void *ud)
{
    call_ctx *cc = ud;
    js_handle *h = cc->h;
    /* [req] */
    duk_get_prop_string(ctx, 0, "filter");
    duk_push_heapptr(ctx, h->filters);
    duk_dup(ctx, 1);
    duk_get_prop(ctx, -2); /* [req name filters fn] */
    if (!duk_is_function(ctx, -1))
        return duk_error(ctx, DUK_ERR_REFERENCE_ERROR, "no filter named %s", duk_safe_to_string(ctx, 1));
    duk_push_heapptr(ctx, h->helpers);
    duk_get_prop_string(ctx, -1, "filter");
    duk_dup(ctx, -3);
    duk_push_heapptr(ctx, h->ddoc);
    duk_get_prop_string(ctx, 0, "docs");
    if (!duk_is_array(ctx, -1))
        return duk_error(ctx, DUK_ERR_TYPE_ERROR, "docs must be an array");
    duk_get_prop_string(ctx, 0, "req");
    duk_call(ctx, 4);
    size_t at = frame_begin(ctx, QP_OK);
    out_json(ctx, -1);
    frame_end(at);
    return 0;
}

static duk_ret_t validate_safe(duk_context *ctx, void *ud)
{
    call_ctx *cc = ud;
    js_handle *h = cc->h;
    if (!h->validate)
        return duk_error(ctx, DUK_ERR_REFERENCE_ERROR, "no validate_doc_update function");
    /* {"args":[...]}: one document; {"batch":[[...], ...]}: several, one
     * answer each (validateAll) */
    int batch = duk_has_prop_string(ctx, 0, "batch");
    duk_push_heapptr(ctx, h->helpers);
    duk_get_prop_string(ctx, -1, batch ? "validateAll" : "validate");
    duk_push_heapptr(ctx, h->validate);
    duk_push_heapptr(ctx, h->ddoc);
    duk_get_prop_string(ctx, 0, batch ? "batch" : "args");
    if (!duk_is_array(ctx, -1))
        return duk_error(ctx, DUK_ERR_TYPE_ERROR, batch ? "batch must be an array" : "args must be an array");
    duk_call(ctx, 3);
    size_t at = frame_begin(ctx, QP_OK);
    out_json(ctx, -1);
    frame_end(at);
    return 0;
}

static void do_json_call(int type, const char *payload, size_t n)
{
    duk_context *mctx = S.ctx;
    duk_set_top(mctx, 0);
    if (js_json_push(mctx, payload, n, MAX_DEPTH, &S.scratch) != 0 || !duk_is_object(mctx, -1)) {
        duk_set_top(mctx, 0);
        send_error("bad_request", "payload is not a JSON object");
        return;
    }
    if (type == QP_FORGET) {
        duk_get_prop_string(mctx, 0, "handle");
        size_t hn = 0;
        const char *s = duk_is_string(mctx, -1) ? duk_get_lstring(mctx, -1, &hn) : NULL;
        if (s)
            handle_forget(s, hn);
        duk_set_top(mctx, 0);
        size_t at = frame_begin(NULL, QP_OK);
        out_put(NULL, "{}", 2);
        frame_end(at);
        duk_gc(mctx, 0);
        return;
    }
    js_handle *h = req_handle(mctx, 0);
    if (!h) {
        duk_set_top(mctx, 0);
        return;
    }
    duk_context *ctx = h->ctx;
    duk_set_top(ctx, 0);
    duk_xmove_top(ctx, mctx, 1);
    call_ctx cc = {h, type, n};
    duk_safe_call_function fn = type == QP_FILTER ? filter_safe : type == QP_VALIDATE ? validate_safe : reduce_safe;
    size_t start = out.len;
    if (duk_safe_call(ctx, fn, &cc, 1, 1) != 0) {
        out.len = start;
        size_t at = frame_begin(NULL, QP_ERROR);
        out_describe(ctx, h);
        frame_end(at);
    } else if (type == QP_REDUCE || type == QP_REREDUCE) {
        check_reduce_limit(start, n);
    }
    duk_set_top(ctx, 0);
    if (js_alloc_take_refusals())
        duk_gc(ctx, 0);
}

/* ---- input ---------------------------------------------------------------- */

static struct {
    char *data;
    size_t len, cap, pos;
} in;

/* Makes at least `need` unread bytes available; 0, or -1 at EOF/error. */
static int in_fill(size_t need)
{
    if (in.len - in.pos >= need)
        return 0;
    if (in.pos) {
        memmove(in.data, in.data + in.pos, in.len - in.pos);
        in.len -= in.pos;
        in.pos = 0;
    }
    if (need > in.cap) {
        size_t cap = in.cap ? in.cap : 256 * 1024;
        while (cap < need)
            cap *= 2;
        char *p = realloc(in.data, cap);
        if (!p)
            return -1;
        in.data = p;
        in.cap = cap;
    }
    while (in.len < need) {
        ssize_t r = read(0, in.data + in.len, in.cap - in.len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        in.len += (size_t)r;
    }
    return 0;
}

static void fatal_handler(void *udata, const char *msg)
{
    (void)udata;
    diag("fatal: %s", msg ? msg : "(no message)");
    _exit(70);
}

static int parse_size(const char *s, size_t *out_v)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out_v = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    size_t mem_limit = 0;
    int use_seccomp = 1;
    S.reduce_limit = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--memory-limit") == 0 && i + 1 < argc) {
            if (parse_size(argv[++i], &mem_limit) != 0) {
                diag("bad --memory-limit %s", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--reduce-limit") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            S.reduce_limit = strcmp(v, "false") == 0 ? 0 : strcmp(v, "log") == 0 ? 2 : 1;
        } else if (strcmp(argv[i], "--progress-fd") == 0 && i + 1 < argc) {
            int fd = atoi(argv[++i]);
            void *pg = mmap(NULL, sizeof(qp_progress), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (pg == MAP_FAILED) {
                diag("cannot map the progress page: %s", strerror(errno));
                return 2;
            }
            close(fd);
            S.progress = pg;
        } else if (strcmp(argv[i], "--no-seccomp") == 0) {
            use_seccomp = 0;
        } else {
            diag("usage: divan-js [--memory-limit BYTES] [--reduce-limit true|false|log] [--progress-fd FD]"
                 " [--no-seccomp]");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    /* Date's local time: glibc re-reads /etc/localtime on every tzset()
     * when TZ is unset, which the sandbox forbids; naming the file makes
     * it read once, here. */
    setenv("TZ", ":/etc/localtime", 0);
    tzset();
    if (mem_limit) {
        if (js_sandbox_limit_memory(mem_limit) != 0)
            diag("setrlimit(RLIMIT_AS, %zu) failed: %s", mem_limit, strerror(errno));
        /* The budget leaves room for the stack, libraries and I/O buffers
         * under the hard limit. */
        size_t reserve = mem_limit / 8 > 32u * 1024 * 1024 ? 32u * 1024 * 1024 : mem_limit / 8;
        js_alloc_set_budget(mem_limit - reserve);
    }
    S.ctx = duk_create_heap(js_alloc, js_realloc, js_free, NULL, fatal_handler);
    if (!S.ctx) {
        diag("cannot create the JavaScript heap");
        return 70;
    }
    /* The emit buffer, reused by every map call. */
    duk_push_heap_stash(S.ctx);
    duk_push_array(S.ctx);
    S.emit_arr = duk_get_heapptr(S.ctx, -1);
    duk_put_prop_string(S.ctx, -2, "emit");
    duk_pop(S.ctx);
    /* Warm Date's time zone before the filter goes on. */
    duk_peval_string_noresult(S.ctx, "new Date(0).getTimezoneOffset()");
    if (use_seccomp) {
        int rc = js_sandbox_seccomp();
        if (rc < 0)
            diag("seccomp filter not installed: %s", strerror(errno));
    }

    for (;;) {
        if (in_fill(QP_HDR) != 0)
            break;
        const unsigned char *hp = (const unsigned char *)in.data + in.pos;
        uint32_t len = (uint32_t)hp[0] | (uint32_t)hp[1] << 8 | (uint32_t)hp[2] << 16 | (uint32_t)hp[3] << 24;
        int type = hp[4];
        if (len > QP_MAX_PAYLOAD) {
            diag("request frame of %u bytes refused", len);
            return 65;
        }
        if (in_fill(QP_HDR + len) != 0)
            break;
        const char *payload = in.data + in.pos + QP_HDR;
        in.pos += QP_HDR + len;
        switch (type) {
        case QP_DEFINE:
            do_define(payload, len);
            break;
        case QP_MAP:
            do_map(payload, len);
            break;
        case QP_FORGET:
        case QP_REDUCE:
        case QP_REREDUCE:
        case QP_FILTER:
        case QP_VALIDATE:
            do_json_call(type, payload, len);
            break;
        default:
            send_error("bad_request", "unknown request type");
            break;
        }
        out_flush();
    }
    /* EOF: the server closed our stdin.  Free everything (LSan checks). */
    while (S.handles) {
        js_handle *h = S.handles;
        S.handles = h->next;
        handle_free(h);
    }
    duk_destroy_heap(S.ctx);
    js_scratch_free(&S.scratch);
    free(in.data);
    free(out.data);
    return 0;
}
