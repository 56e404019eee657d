/*
 * test_qserver.c — the query-server client (views/qserver.c) driving the
 * real divan-js binary built next to this test: what map, reduce, filter
 * and validate functions see and answer (CouchDB's JavaScript
 * environment), and what happens when a child misbehaves (a throwing
 * function, a compile error, an endless loop, a killed process, a memory
 * hog), with no descriptor or zombie left behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "js/qproto.h"
#include "json/json.h"
#include "views/qserver.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static qserver *open_pool(unsigned pool, unsigned timeout_ms, uint64_t mem)
{
    qserver_config cfg = {0};
    cfg.pool_size = pool;
    cfg.timeout_ms = timeout_ms;
    cfg.memory_limit = mem;
    qserver *qs;
    assert_int_equal(qserver_open(&cfg, &qs), DV_OK);
    return qs;
}

/* Collected per-document answers of one qserver_map call. */
typedef struct rows {
    size_t n;
    char **text;     /* rows JSON or "FAILED:<reason>" */
    size_t *index;
} rows;

static int collect(void *ctx, size_t i, const char *r, size_t len, const char *failure)
{
    rows *c = ctx;
    c->text = realloc(c->text, (c->n + 1) * sizeof *c->text);
    c->index = realloc(c->index, (c->n + 1) * sizeof *c->index);
    assert_non_null(c->text);
    assert_non_null(c->index);
    char *s;
    if (r) {
        s = malloc(len + 1);
        assert_non_null(s);
        memcpy(s, r, len);
        s[len] = 0;
    } else {
        size_t n = strlen(failure) + 8;
        s = malloc(n);
        assert_non_null(s);
        snprintf(s, n, "FAILED:%s", failure);
    }
    c->text[c->n] = s;
    c->index[c->n++] = i;
    return 0;
}

static void rows_free(rows *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->text[i]);
    free(c->text);
    free(c->index);
    memset(c, 0, sizeof *c);
}

/* Maps NUL-terminated docs; checks one answer per document, in order. */
static void map_docs(qserver_proc *p, const char *handle, const char *const *docs, size_t n, rows *out)
{
    size_t *lens = malloc((n ? n : 1) * sizeof *lens);
    assert_non_null(lens);
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(docs[i]);
    qserver_error err;
    memset(out, 0, sizeof *out);
    int rc = qserver_map(p, handle, docs, lens, n, collect, out, &err);
    if (rc != DV_OK)
        fail_msg("qserver_map: %s (%s: %s)", dv_strerror(rc), err.error, err.reason);
    free(lens);
    assert_int_equal(out->n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(out->index[i], i);
}

static void define_ok(qserver_proc *p, const char *handle, const char *def)
{
    buf_t errors = BUF_INIT;
    qserver_error err;
    int rc = qserver_define(p, handle, def, strlen(def), &errors, &err);
    if (rc != DV_OK)
        fail_msg("define %s: %s (%s: %s)", handle, dv_strerror(rc), err.error, err.reason);
    if (errors.len != 2 || memcmp(errors.data, "[]", 2) != 0)
        fail_msg("define %s: compile errors %.*s", handle, (int)errors.len, (const char *)errors.data);
    buf_free(&errors);
}

static void assert_str(const char *got, const char *want)
{
    if (strcmp(got, want) != 0)
        fail_msg("got  %s\nwant %s", got, want);
}

static void assert_buf_str(const buf_t *b, const char *want)
{
    if (b->len != strlen(want) || (b->len && memcmp(b->data, want, b->len) != 0))
        fail_msg("got  %.*s\nwant %s", (int)b->len, (const char *)b->data, want);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifndef UNDER_ASAN
/* The value of a "Name:" line of /proc/PID/<file>, or "" (static buffer). */
static const char *proc_field(int pid, const char *file, const char *name)
{
    static char val[256];
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    val[0] = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, strlen(name)) == 0) {
            const char *v = line + strlen(name);
            while (*v == ' ' || *v == '\t' || *v == ':')
                v++;
            snprintf(val, sizeof val, "%s", v);
            val[strcspn(val, "\n")] = 0;
            break;
        }
    }
    fclose(f);
    return val;
}
#endif

/* ---- map ----------------------------------------------------------------- */

static void test_emit_types(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "t",
              "{\"views\":[{\"name\":\"all\",\"map\":\"function(doc){ if (!doc.emit) return;"
              " emit(null, true); emit(false, 0); emit(-1.5, 1e21); emit('s\\u00e9\\\\\\\"', [1,[2],{}]);"
              " emit({a:{b:null}}, undefined); emit([NaN, Infinity], function(){}); emit(doc._id, doc.u);"
              " emit(0.1, 123456789012345680000); }\"}]}");
    const char *docs[] = {
        "{\"_id\":\"a\",\"emit\":true,\"u\":\"\\ud83d\\ude00 \xf0\x9f\x98\x80 \\u0000\"}",
        "{\"_id\":\"b\"}",
    };
    rows r;
    map_docs(p, "t", docs, 2, &r);
#ifndef UNDER_ASAN
    /* The sandbox is on: seccomp filter mode, no new privileges. */
    assert_string_equal(proc_field(qserver_proc_pid(p), "status", "Seccomp"), "2");
    assert_string_equal(proc_field(qserver_proc_pid(p), "status", "NoNewPrivs"), "1");
#endif
    assert_str(r.text[0], "[[[null,true],[false,0],[-1.5,1e+21],[\"s\xc3\xa9\\\"\",[1,[2],{}]],"
                          "[{\"a\":{\"b\":null}},null],[[null,null],null],"
                          "[\"a\",\"\xf0\x9f\x98\x80 \xf0\x9f\x98\x80 \\u0000\"],[0.1,123456789012345680000]]]");
    assert_str(r.text[1], "[[]]"); /* no rows */
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

static void test_views_and_errors(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    /* Three views, the second throws for one document, the third does not
     * compile; documents are frozen between views as in CouchDB. */
    const char *def = "{\"views\":["
                      "{\"name\":\"v1\",\"map\":\"function(doc){ doc.n = 99; emit(doc.n, 1); }\"},"
                      "{\"name\":\"v2\",\"map\":\"function(doc){ if (doc.n == 2) throw new Error('boom ' + doc._id);"
                      " emit(doc._id, doc.n * 10); }\"},"
                      "{\"name\":\"v3\",\"map\":\"function(doc){ emit( }\"},"
                      "{\"name\":\"v4\",\"map\":\"function(doc){ if (doc.n == 3) throw {why: 'object'}; emit(1) }\"}]}";
    buf_t errors = BUF_INIT;
    qserver_error err;
    assert_int_equal(qserver_define(p, "v", def, strlen(def), &errors, &err), DV_OK);
    json_doc jd = JSON_DOC_INIT;
    assert_int_equal(json_doc_parse(&jd, errors.data, errors.len, 0, NULL), DV_OK);
    const json_val *e0 = json_array_get(json_doc_root(&jd), 0);
    assert_non_null(e0);
    assert_null(json_array_get(json_doc_root(&jd), 1));
    assert_true(json_str_eq(json_object_get_cstr(e0, "where"), "views.v3.map"));
    assert_true(json_str_eq(json_object_get_cstr(e0, "error"), "compilation_error"));
    size_t rl;
    const char *reason = json_str(json_object_get_cstr(e0, "reason"), &rl);
    assert_non_null(strstr(reason, "SyntaxError"));
    assert_non_null(strstr(reason, "(function(doc){ emit( })")); /* CouchDB appends the source */
    json_doc_free(&jd);

    const char *docs[] = {"{\"_id\":\"d1\",\"n\":1}", "{\"_id\":\"d2\",\"n\":2}", "{\"_id\":\"d3\",\"n\":3}"};
    rows r;
    map_docs(p, "v", docs, 3, &r);
    const char *v3err = strstr(r.text[0], "{\"error\":\"compilation_error\"");
    assert_non_null(v3err);
    /* v1 could not change the document: frozen, the assignment is ignored */
    assert_non_null(strstr(r.text[0], "[[[1,1]],[[\"d1\",10]],{\"error\":\"compilation_error\""));
    assert_non_null(strstr(r.text[1], "[[[2,1]],{\"error\":\"Error\",\"reason\":\"Error: boom d2\"},"));
    assert_non_null(strstr(r.text[1], "[[1,null]]]"));
    assert_non_null(strstr(r.text[2], "[[[3,1]],[[\"d3\",30]],"));
    assert_non_null(strstr(r.text[2], "{\"error\":\"exception\",\"reason\":\"{\\\"why\\\":\\\"object\\\"}\"}]"));
    rows_free(&r);
    buf_free(&errors);

    /* A source that evaluates to something else than a function. */
    const char *def2 = "{\"views\":[{\"map\":\"42\"},{\"map\":\"(function(doc){ emit(1, 2) })\"}]}";
    assert_int_equal(qserver_define(p, "v2", def2, strlen(def2), &errors, &err), DV_OK);
    assert_non_null(strstr((const char *)errors.data, "Expression does not eval to a function. (42)"));
    buf_free(&errors);
    const char *one[] = {"{}"};
    map_docs(p, "v2", one, 1, &r);
    assert_non_null(strstr(r.text[0], ",[[1,2]]]"));
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

typedef struct logs {
    char buf[4096];
    size_t len;
    int n;
} logs;

static void log_collect(void *ctx, const char *handle, const char *msg, size_t len)
{
    logs *l = ctx;
    int w = snprintf(l->buf + l->len, sizeof l->buf - l->len, "%s:%.*s|", handle, (int)len, msg);
    if (w > 0)
        l->len += (size_t)w;
    l->n++;
}

static void test_log(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    logs l = {{0}, 0, 0};
    qserver_set_log(p, log_collect, &l);
    define_ok(p, "lg", "{\"views\":[{\"map\":\"function(doc){ log('doc ' + doc._id); log({a:[1]}); emit(1); }\"}]}");
    const char *docs[] = {"{\"_id\":\"x\"}", "{\"_id\":\"y\"}"};
    rows r;
    map_docs(p, "lg", docs, 2, &r);
    assert_str(l.buf, "lg:doc x|lg:{\"a\":[1]}|lg:doc y|lg:{\"a\":[1]}|");
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

static void test_require(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "rq",
              "{\"views\":["
              "{\"map\":\"function(doc){ var m = require('views/lib/math/ops'); emit(m.twice(doc.n), m.calls()); }\"},"
              "{\"map\":\"function(doc){ emit(require('views/lib/nope').x, 1); }\"},"
              "{\"map\":\"function(doc){ emit(require('views/lib/broken'), 1); }\"},"
              "{\"map\":\"function(doc){ emit(require('views/lib/math').x, 1); }\"}],"
              "\"lib\":{"
              "\"math\":{\"ops\":\"var u = require('./util'); var n = 0;"
              " exports.twice = function(x){ n++; return u.mul(x, require('../consts').two); };"
              " exports.calls = function(){ return n; };\","
              "\"util\":\"exports.mul = function(a, b){ return a * b; };\"},"
              "\"consts\":\"exports.two = 2;\","
              "\"broken\":\"throw new Error('bad module');\"}}");
    const char *docs[] = {"{\"n\":1}", "{\"n\":5}"};
    rows r;
    map_docs(p, "rq", docs, 2, &r);
    /* The module is evaluated once: its counter keeps counting. */
    assert_non_null(strstr(r.text[0], "[[[2,1]],"));
    assert_non_null(strstr(r.text[1], "[[[10,2]],"));
    assert_non_null(strstr(r.text[0], "{\"error\":\"invalid_require_path\",\"reason\":\"Object has no property "
                                      "\\\"nope\\\"."));
    assert_non_null(strstr(r.text[0], "{\"error\":\"compilation_error\",\"reason\":\"Module require('views/lib/broken')"
                                      " raised error Error: bad module\"}"));
    assert_non_null(strstr(r.text[0], "{\"error\":\"invalid_require_path\",\"reason\":\"Must require a JavaScript "
                                      "string, not: object\"}]"));
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

static void test_helpers(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "h",
              "{\"views\":[{\"map\":\"function(doc){ emit(sum([1, 2, 3.5]), toJSON({a:[1,'x']}));"
              " emit(isArray([]), isArray({length: 0})); emit(JSON.parse('{\\\"x\\\":[1]}').x, JSON.stringify(doc));"
              " emit(typeof Duktape, typeof require); emit(doc.s.length, doc.s.charCodeAt(0));"
              " emit(new Date(0).toISOString(), typeof print); }\"}]}");
    const char *docs[] = {"{\"_id\":\"j\",\"s\":\"\xf0\x9f\x98\x80\"}"};
    rows r;
    map_docs(p, "h", docs, 1, &r);
    /* The emoji is two UTF-16 units to JavaScript, as in CouchDB. */
    assert_str(r.text[0], "[[[6.5,\"{\\\"a\\\":[1,\\\"x\\\"]}\"],[true,false],[[1],"
                          "\"{\\\"_id\\\":\\\"j\\\",\\\"s\\\":\\\"\xf0\x9f\x98\x80\\\"}\"],"
                          "[\"undefined\",\"function\"],[2,55357],[\"1970-01-01T00:00:00.000Z\",\"undefined\"]]]");
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

/* ---- failures -------------------------------------------------------------- */

static void test_endless_loop(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 300, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "loop", "{\"views\":[{\"map\":\"function(doc){ if (doc.loop) while (true) {} emit(doc._id, 1); }\"}]}");
    int pid0 = qserver_proc_pid(p);
    const char *docs[] = {"{\"_id\":\"a\"}", "{\"_id\":\"b\",\"loop\":true}", "{\"_id\":\"c\"}", "{\"_id\":\"d\"}"};
    rows r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    map_docs(p, "loop", docs, 4, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_str(r.text[0], "[[[\"a\",1]]]");
    assert_str(r.text[1], "FAILED:timeout");
    assert_str(r.text[2], "[[[\"c\",1]]]");
    assert_str(r.text[3], "[[[\"d\",1]]]");
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs < 3.0);
    int pid1 = qserver_proc_pid(p);
    assert_true(pid1 != 0 && pid1 != pid0);
    /* The old child is gone and reaped. */
    assert_int_equal(kill(pid0, 0), -1);
    assert_int_equal(errno, ESRCH);
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

typedef struct killer {
    qserver_proc *p;
    int killed;
} killer;

static void *kill_later(void *arg)
{
    killer *k = arg;
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    int pid = qserver_proc_pid(k->p);
    if (pid > 0 && kill(pid, SIGKILL) == 0)
        k->killed = pid;
    return NULL;
}

/* CPU time of a process so far, ms (utime + stime of /proc/PID/stat). */
static long cpu_ms(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (long)((utime + stime) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

/* Kills the working child twice: each child once it has spent 400 ms of
 * CPU (so inside the document's busy loop, not starting or compiling). */
static void *kill_twice(void *arg)
{
    killer *k = arg;
    int last = 0, kills = 0;
    for (int i = 0; i < 1000 && kills < 2; i++) { /* 10 s at most */
        int pid = qserver_proc_pid(k->p);
        if (pid > 0 && pid != last && cpu_ms(pid) >= 400 && kill(pid, SIGKILL) == 0) {
            last = pid;
            kills++;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    k->killed = kills;
    return NULL;
}

/* A document whose child dies on it twice is skipped (not tried forever);
 * the next document is mapped by a third child. */
static void test_process_dies_twice(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 10000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "ex2", "{\"views\":[{\"map\":\"function(doc){ if (doc.wait) { var t = Date.now();"
                        " while (Date.now() - t < 1500) {} } emit(doc._id, 1); }\"}]}");
    const char *docs[] = {"{\"_id\":\"b\",\"wait\":true}", "{\"_id\":\"c\"}"};
    killer k = {p, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, kill_twice, &k), 0);
    rows r;
    map_docs(p, "ex2", docs, 2, &r);
    pthread_join(th, NULL);
    assert_int_equal(k.killed, 2);
    assert_str(r.text[0], "FAILED:process exited");
    assert_str(r.text[1], "[[[\"c\",1]]]");
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

static void test_process_exits(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "ex", "{\"views\":[{\"map\":\"function(doc){ if (doc.wait) { var t = Date.now();"
                       " while (Date.now() - t < 600) {} } emit(doc._id, 1); }\"}]}");

    /* Killed while idle: the next batch loses nothing. */
    int pid0 = qserver_proc_pid(p);
    assert_int_equal(kill(pid0, SIGKILL), 0);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    const char *docs[] = {"{\"_id\":\"a\"}", "{\"_id\":\"b\",\"wait\":true}", "{\"_id\":\"c\"}"};
    rows r;
    map_docs(p, "ex", docs + 2, 1, &r);
    assert_str(r.text[0], "[[[\"c\",1]]]");
    rows_free(&r);
    assert_true(qserver_proc_pid(p) != pid0);

    /* Killed from outside while working on a document (600 ms of work; the
     * kill comes at 200 ms, or earlier in the batch on a loaded machine):
     * the document is given to a new process (which got the definition
     * again) and nothing is lost. */
    killer k = {p, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, kill_later, &k), 0);
    map_docs(p, "ex", docs, 3, &r);
    pthread_join(th, NULL);
    assert_true(k.killed > 0);
    assert_str(r.text[0], "[[[\"a\",1]]]");
    assert_str(r.text[1], "[[[\"b\",1]]]");
    assert_str(r.text[2], "[[[\"c\",1]]]");
    assert_true(qserver_proc_pid(p) != k.killed);
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

static void test_memory_hog(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 20000, 256ull << 20);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "mem", "{\"views\":[{\"map\":\"function(doc){ if (doc.hog) { var a = [], s = 'x';"
                        " for (var i = 0; i < 20; i++) s = s + s;"
                        " while (true) a.push(s + a.length); } emit(doc._id, 1); }\"}]}");
    const char *docs[] = {"{\"_id\":\"a\"}", "{\"_id\":\"hog\",\"hog\":true}", "{\"_id\":\"c\"}"};
    rows r;
#ifndef UNDER_ASAN
    assert_int_equal(qserver_proc_pid(p) > 0, 1);
    assert_non_null(strstr(proc_field(qserver_proc_pid(p), "limits", "Max address space"), "268435456"));
#endif
    map_docs(p, "mem", docs, 3, &r);
    assert_str(r.text[0], "[[[\"a\",1]]]");
    /* Duktape's allocation fails inside the function: an error for this
     * document, the process lives on. */
    if (strstr(r.text[1], "alloc failed") == NULL)
        fail_msg("hog: %s", r.text[1]);
    assert_str(r.text[2], "[[[\"c\",1]]]");
    rows_free(&r);
    qserver_release(qs, p);
    qserver_close(qs);
}

/* ---- reduce, filter, validate ---------------------------------------------- */

static void test_reduce(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "r",
              "{\"views\":["
              "{\"map\":\"function(doc){}\",\"reduce\":\"function(keys, values, rereduce){ return sum(values); }\"},"
              "{\"map\":\"function(doc){}\",\"reduce\":\"function(keys, values, rereduce){"
              " if (rereduce) return {re: true, keys: keys, n: values.length};"
              " return keys.map(function(k){ return k[1] + ':' + k[0]; }).join(','); }\"},"
              "{\"map\":\"function(doc){}\",\"reduce\":\"function(){ throw new Error('red'); }\"},"
              "{\"map\":\"function(doc){}\",\"reduce\":\"_count\"},"
              "{\"map\":\"function(doc){}\",\"reduce\":\"function(k, v){ var s = []; for (var i = 0; i < 2000; i++)"
              " s.push(v[0]); return s; }\"}]}");
    logs l = {{0}, 0, 0};
    qserver_set_log(p, log_collect, &l);
    buf_t res = BUF_INIT;
    qserver_error err;
    const char *kvs = "[[[\"a\",\"id1\"],1],[[\"b\",\"id2\"],2.5],[[[1,2],\"id3\"],3]]";
    unsigned v012[] = {0, 1, 2};
    assert_int_equal(qserver_reduce(p, "r", v012, 3, kvs, strlen(kvs), &res, &err), DV_OK);
    assert_buf_str(&res, "[6.5,\"id1:a,id2:b,id3:1,2\",null]");
    assert_non_null(strstr(l.buf, "function raised exception {\"error\":\"Error\",\"reason\":\"Error: red\"}"));
    const char *vals = "[1,2,40]";
    assert_int_equal(qserver_rereduce(p, "r", v012, 2, vals, strlen(vals), &res, &err), DV_OK);
    assert_buf_str(&res, "[43,{\"re\":true,\"keys\":null,\"n\":3}]");
    /* A built-in reduce is not the query server's. */
    unsigned v3[] = {3};
    assert_int_equal(qserver_reduce(p, "r", v3, 1, kvs, strlen(kvs), &res, &err), DV_ERR_INVALID);
    /* reduce_limit: output must shrink. */
    unsigned v4[] = {4};
    const char *big = "[[[\"a\",\"id1\"],\"0123456789\"]]";
    assert_int_equal(qserver_reduce(p, "r", v4, 1, big, strlen(big), &res, &err), DV_ERR_INVALID);
    assert_string_equal(err.error, "reduce_overflow_error");
    assert_non_null(strstr(err.reason, "Reduce output must shrink more rapidly: input size:"));
    buf_free(&res);
    qserver_release(qs, p);
    qserver_close(qs);
}

static void test_filter_validate(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "dd",
              "{\"filters\":{\"by_type\":\"function(doc, req){ return doc.type == req.query.type && this._id == "
              "'_design/x'; }\",\"bad\":\"function(doc){ return doc.a.b; }\"},"
              "\"validate_doc_update\":\"function(newDoc, oldDoc, userCtx, secObj){"
              " if (newDoc.forbid) throw({forbidden: 'no ' + userCtx.name});"
              " if (newDoc.auth) throw({unauthorized: 'login first'});"
              " if (newDoc.str) throw 'just a string';"
              " if (newDoc.err) throw new TypeError('oops');"
              " if (oldDoc && secObj.admins) return; }\","
              "\"ddoc\":{\"_id\":\"_design/x\"}}");
    buf_t res = BUF_INIT;
    qserver_error err;
    const char *docs = "[{\"type\":\"a\"},{\"type\":\"b\"},{}]";
    const char *req = "{\"query\":{\"type\":\"a\"}}";
    assert_int_equal(qserver_filter(p, "dd", "by_type", docs, strlen(docs), req, strlen(req), &res, &err), DV_OK);
    assert_buf_str(&res, "[true,false,false]");
    assert_int_equal(qserver_filter(p, "dd", "bad", docs, strlen(docs), req, strlen(req), &res, &err),
                     DV_ERR_INVALID);
    assert_string_equal(err.error, "TypeError");

    static const struct {
        const char *args;
        enum qserver_verdict v;
        const char *msg;
    } cases[] = {
        {"[{\"ok\":1},null,{\"name\":\"bob\"},{}]", QSERVER_VALID, ""},
        {"[{\"forbid\":1},null,{\"name\":\"bob\"},{}]", QSERVER_FORBIDDEN, "\"no bob\""},
        {"[{\"auth\":1},{},{\"name\":null},{}]", QSERVER_UNAUTHORIZED, "\"login first\""},
        {"[{\"str\":1},null,{},{}]", QSERVER_OTHER, "\"just a string\""},
    };
    buf_t msg = BUF_INIT;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum qserver_verdict v;
        buf_reset(&msg);
        assert_int_equal(qserver_validate(p, "dd", cases[i].args, strlen(cases[i].args), &v, &msg, &err), DV_OK);
        assert_int_equal(v, cases[i].v);
        assert_buf_str(&msg, cases[i].msg);
    }
    enum qserver_verdict v;
    const char *args = "[{\"err\":1},null,{},{}]";
    assert_int_equal(qserver_validate(p, "dd", args, strlen(args), &v, &msg, &err), DV_ERR_INVALID);
    assert_string_equal(err.error, "TypeError");
    assert_string_equal(err.reason, "TypeError: oops");

    /* a batch: one answer per document, a TypeError is that document's own */
    const char *batch = "[[{\"ok\":1},null,{\"name\":\"bob\"},{}],[{\"err\":1},null,{},{}],"
                        "[{\"forbid\":1},null,{\"name\":\"amy\"},{}],[{\"str\":1},null,{},{}]]";
    enum qserver_verdict vs[4];
    buf_t msgs[4];
    for (int i = 0; i < 4; i++)
        buf_init(&msgs[i]);
    assert_int_equal(qserver_validate_batch(p, "dd", batch, strlen(batch), 4, vs, msgs, &err), DV_OK);
    assert_int_equal(vs[0], QSERVER_VALID);
    assert_int_equal(vs[1], QSERVER_ERROR);
    assert_buf_str(&msgs[1], "{\"error\":\"TypeError\",\"reason\":\"TypeError: oops\"}");
    assert_int_equal(vs[2], QSERVER_FORBIDDEN);
    assert_buf_str(&msgs[2], "\"no amy\"");
    assert_int_equal(vs[3], QSERVER_OTHER);
    assert_buf_str(&msgs[3], "\"just a string\"");
    /* a count that does not match the answer is a bad reply (the process is replaced) */
    assert_int_equal(qserver_validate_batch(p, "dd", batch, strlen(batch), 3, vs, msgs, &err), DV_ERR_IO);
    for (int i = 0; i < 4; i++)
        buf_free(&msgs[i]);
    static const char *const bad[] = {"[{\"ok\":true}]", "[{\"error\":1,\"reason\":\"x\"}]", "{}", "[1]", "[{}]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(qserver_parse_verdicts((const uint8_t *)bad[i], strlen(bad[i]), i ? 1 : 2, vs, NULL),
                         DV_ERR_CORRUPT);
    buf_free(&msg);
    buf_free(&res);
    qserver_release(qs, p);
    qserver_close(qs);
}

/* ---- volume, resources -------------------------------------------------- */

static int count_ok(void *ctx, size_t i, const char *r, size_t len, const char *failure)
{
    size_t *n = ctx;
    char want[64];
    int w = snprintf(want, sizeof want, "[[[%zu,null]]]", i);
    if (!r || len != (size_t)w || memcmp(r, want, len) != 0)
        fail_msg("doc %zu: %.*s %s", i, (int)len, r ? r : "", failure ? failure : "");
    (*n)++;
    return 0;
}

static void test_batch_10000(void **state)
{
    (void)state;
    qserver *qs = open_pool(1, 5000, 0);
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "b", "{\"views\":[{\"map\":\"function(doc){ emit(doc.x, null); }\"}]}");
    enum { N = 10000 };
    char **docs = malloc(N * sizeof *docs);
    size_t *lens = malloc(N * sizeof *lens);
    assert_non_null(docs);
    assert_non_null(lens);
    for (size_t i = 0; i < N; i++) {
        char buf[1100];
        int n = snprintf(buf, sizeof buf, "{\"_id\":\"doc%06zu\",\"_rev\":\"1-abc\",\"x\":%zu,\"pad\":\"", i, i);
        while (n < 1000)
            buf[n++] = 'a' + (char)(i % 26);
        memcpy(buf + n, "\"}", 3);
        docs[i] = strdup(buf);
        assert_non_null(docs[i]);
        lens[i] = strlen(buf);
    }
    size_t seen = 0;
    qserver_error err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(qserver_map(p, "b", (const char *const *)docs, lens, N, count_ok, &seen, &err), DV_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(seen, N);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "10000 docs of 1 KiB mapped in %.3f s (%.0f docs/s)\n", secs, N / secs);
    for (size_t i = 0; i < N; i++)
        free(docs[i]);
    free(docs);
    free(lens);
    qserver_release(qs, p);
    qserver_close(qs);
}

/* Several threads share a pool of two processes; then every descriptor
 * and child is gone once the pool is closed. */
typedef struct worker {
    qserver *qs;
    int id;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char handle[16], doc[64];
    snprintf(handle, sizeof handle, "w%d", w->id % 2);
    for (int round = 0; round < 20; round++) {
        qserver_proc *p;
        assert_int_equal(qserver_acquire(w->qs, handle, &p), DV_OK);
        define_ok(p, handle, "{\"views\":[{\"map\":\"function(doc){ emit(doc.i, doc.t); }\"}]}");
        snprintf(doc, sizeof doc, "{\"i\":%d,\"t\":%d}", round, w->id);
        const char *docs[] = {doc};
        rows r;
        map_docs(p, handle, docs, 1, &r);
        char want[64];
        snprintf(want, sizeof want, "[[[%d,%d]]]", round, w->id);
        assert_str(r.text[0], want);
        rows_free(&r);
        qserver_release(w->qs, p);
    }
    return NULL;
}

static void test_pool_no_leaks(void **state)
{
    (void)state;
    int fds0 = count_fds();
    qserver *qs = open_pool(2, 300, 0);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){qs, i};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    /* A timeout too, so a kill-and-replace is part of the count. */
    qserver_proc *p;
    assert_int_equal(qserver_acquire(qs, NULL, &p), DV_OK);
    define_ok(p, "t", "{\"views\":[{\"map\":\"function(doc){ while (true) {} }\"}]}");
    const char *docs[] = {"{}"};
    rows r;
    map_docs(p, "t", docs, 1, &r);
    assert_str(r.text[0], "FAILED:timeout");
    rows_free(&r);
    qserver_release(qs, p);
    assert_true(count_fds() > fds0); /* the children's sockets */
    qserver_close(qs);
    assert_int_equal(count_fds(), fds0);
    /* No child left, zombie or not. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

/* ---- frame decoder ----------------------------------------------------------- */

static void test_qframe_decode(void **state)
{
    (void)state;
    qframe f;
    uint8_t b[16] = {3, 0, 0, 0, QP_OK, '[', ']', ' ', 9};
    assert_int_equal(qframe_decode(b, 4, 100, &f), QFRAME_MORE);
    assert_int_equal(qframe_decode(b, 7, 100, &f), QFRAME_MORE);
    assert_int_equal(qframe_decode(b, 9, 100, &f), QFRAME_OK);
    assert_int_equal(f.type, QP_OK);
    assert_int_equal(f.len, 3);
    assert_int_equal(f.consumed, 8);
    assert_int_equal(qframe_decode(b, 9, 2, &f), DV_ERR_CORRUPT); /* over the limit */
    b[4] = QP_DEFINE;                                             /* a request type from a child */
    assert_int_equal(qframe_decode(b, 9, 100, &f), DV_ERR_CORRUPT);
    uint8_t huge[5] = {0xff, 0xff, 0xff, 0xff, QP_MAP_ROW};
    assert_int_equal(qframe_decode(huge, 5, QP_MAX_PAYLOAD, &f), DV_ERR_CORRUPT);

    qserver_error e;
    const char *ej = "{\"error\":\"x\",\"reason\":{\"a\":1}}";
    qserver_parse_error((const uint8_t *)ej, strlen(ej), &e);
    assert_string_equal(e.error, "x");
    assert_string_equal(e.reason, "{\"a\":1}");
    qserver_parse_error((const uint8_t *)"nope", 4, &e);
    assert_string_equal(e.error, "bad_reply");
    enum qserver_verdict v;
    assert_int_equal(qserver_parse_verdict((const uint8_t *)"{\"ok\":true}", 11, &v, NULL), DV_OK);
    assert_int_equal(v, QSERVER_VALID);
    assert_int_equal(qserver_parse_verdict((const uint8_t *)"[1]", 3, &v, NULL), DV_ERR_CORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qframe_decode),
        cmocka_unit_test(test_emit_types),
        cmocka_unit_test(test_views_and_errors),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_require),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_endless_loop),
        cmocka_unit_test(test_process_exits),
        cmocka_unit_test(test_process_dies_twice),
        cmocka_unit_test(test_memory_hog),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_filter_validate),
        cmocka_unit_test(test_batch_10000),
        cmocka_unit_test(test_pool_no_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
