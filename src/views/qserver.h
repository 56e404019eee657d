/*
 * qserver.h — the server's side of the JavaScript query server: a pool of
 * divan-js processes and the framed protocol to them (src/js/qproto.h,
 * docs/views.md "Query server protocol").
 *
 * BLOCKING API.  Every call here waits for a child process (up to the
 * deadline).  Call it from view-indexer / background worker threads, never
 * from an h2o event-loop thread.  The pool itself is thread-safe; one
 * acquired process (qserver_proc) is used by one thread at a time.
 *
 * Life of a call: qserver_acquire() a process, qserver_define() the
 * function set it needs under a handle (a no-op when that process already
 * compiled the same definition), then map / reduce / rereduce / filter /
 * validate, then qserver_release().  Each process remembers the
 * definitions it was given; after a restart they are compiled again in the
 * new child before the next call that needs them.
 *
 * Failures:
 *   - a user function that throws is not a failure of the process: map
 *     rows carry {"error","reason"} for that view, a reduce yields null
 *     (and a log line), filter/validate answer QSERVER_E_USER with the
 *     child's {"error","reason"};
 *   - a deadline missed ([couchdb] os_process_timeout, per document for
 *     maps, per call otherwise), a child that exits or sends a malformed
 *     frame: the child is killed (SIGKILL to its process group), reaped,
 *     and replaced on next use.  A map batch reports the document being
 *     processed as failed (the caller skips and logs it) and goes on with
 *     the next one in a fresh process; other calls return DV_ERR_TIMEOUT
 *     or DV_ERR_IO.
 *
 * Resources: each child is spawned with a socketpair as its stdin/stdout
 * (so a dead child never raises SIGPIPE here: writes use MSG_NOSIGNAL),
 * inherits stderr, closes every other descriptor, and runs in its own
 * process group with default signal dispositions.  Every child is waited
 * for: no zombies; qserver_close() stops them all.
 */
#ifndef DV_VIEWS_QSERVER_H
#define DV_VIEWS_QSERVER_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct qserver_config {
    const char *path;        /* divan-js; NULL: "divan-js" next to this executable */
    unsigned pool_size;      /* processes; 0: number of CPUs */
    unsigned timeout_ms;     /* [couchdb] os_process_timeout; 0: 5000 */
    uint64_t memory_limit;   /* [query_server_config] os_process_memory_limit, bytes; 0: none */
    const char *reduce_limit; /* [query_server_config] reduce_limit: "true" (NULL), "false", "log" */
    int no_seccomp;          /* 1: ask divan-js not to install its seccomp filter */
} qserver_config;

typedef struct qserver qserver;
typedef struct qserver_proc qserver_proc;

/* Error details of a failed call: the child's {"error","reason"}, or
 * divan's own ("os_process_error", "timeout") when the process failed. */
typedef struct qserver_error {
    char error[64];
    char reason[512];
} qserver_error;

/* Starts nothing yet: processes are spawned on first use.  The path is
 * checked (DV_ERR_NOTFOUND when not executable). */
int qserver_open(const qserver_config *cfg, qserver **out);
/* Stops every process (EOF on its stdin, then SIGKILL after 1 s) and
 * reaps it.  Every process must have been released. */
void qserver_close(qserver *qs);
/* A new [couchdb] os_process_timeout (0: 5000 ms) for the calls that start
 * from now on, from any thread (an atomic store; calls read it once each,
 * as CouchDB reads it at use). */
void qserver_set_timeout(qserver *qs, unsigned timeout_ms);
/* [query_server_config] reduce_limit: "false" → QS_RL_OFF, "log" →
 * QS_RL_LOG, anything else (NULL included) → QS_RL_ON, CouchDB's default.
 * It is an argument of divan-js: after qserver_set_reduce_limit (any
 * thread) each child started under another value is replaced before its
 * next call, which then compiles its functions again. */
enum { QS_RL_OFF = 0, QS_RL_ON = 1, QS_RL_LOG = 2 };
int qserver_reduce_limit_parse(const char *v);
const char *qserver_reduce_limit_name(int mode);
void qserver_set_reduce_limit(qserver *qs, int mode);

/* Waits for a free process.  `handle` (may be NULL) is a hint: a free
 * process that already compiled it is preferred. */
int qserver_acquire(qserver *qs, const char *handle, qserver_proc **out);
/* Gives the process back (its log callback is reset). */
void qserver_release(qserver *qs, qserver_proc *p);

/* log() lines of user code arrive here, in order, before the result of
 * the document or call that logged them.  Default (fn NULL): log_info
 * with the handle's name. */
typedef void (*qserver_log_fn)(void *ctx, const char *handle, const char *msg, size_t len);
void qserver_set_log(qserver_proc *p, qserver_log_fn fn, void *ctx);

/* Defines (or redefines) the function set `handle` on p.  def is a JSON
 * object text with any of: "views":[{"name","map","reduce"}...] (index i
 * of this array is view i below), "lib" (views.lib), "filters":{name:src},
 * "validate_doc_update":src, "ddoc" (the design document: `this` and the
 * require() root for filters and validate).  Compile errors do not fail
 * the call: *errors (when not NULL) gets a JSON array text of
 * {"where","error":"compilation_error","reason"} (empty "[]" when all
 * compiled); a view whose map did not compile answers every document with
 * that error.  Handles are at most 200 bytes. */
int qserver_define(qserver_proc *p, const char *handle, const char *def, size_t def_len, buf_t *errors,
                   qserver_error *err);

/* Called once per document, in order.  On success rows is the JSON array
 * text (valid JSON, checked) with one element per view: the list of
 * [key, value] the view emitted, or {"error","reason"} when the function
 * threw for this document (CouchDB skips the document for that view).  On
 * failure rows is NULL and failure says why ("timeout", "process exited",
 * "bad reply"): the document is to be skipped and logged.  A non-zero
 * return stops the batch (the process is then restarted) and is returned
 * by qserver_map. */
typedef int (*qserver_map_fn)(void *ctx, size_t i, const char *rows, size_t len, const char *failure);

/* Maps docs[0..n) (JSON object texts) with the views of handle.  Returns
 * DV_OK once every document was reported, the callback's non-zero value,
 * DV_ERR_NOTFOUND (handle never defined on p) or DV_ERR_IO (no process
 * could be started; err says why). */
int qserver_map(qserver_proc *p, const char *handle, const char *const *docs, const size_t *lens, size_t n,
                qserver_map_fn cb, void *cb_ctx, qserver_error *err);

/* JavaScript reduce of views[0..nviews) over kvs, a JSON array text
 * [[[key, docid], value], ...]; rereduce over values, a JSON array text.
 * *result gets a JSON array text, one reduction per view (null where the
 * function threw).  DV_ERR_INVALID with err set when the child refused
 * (reduce_overflow_error, a view without a JavaScript reduce),
 * DV_ERR_TIMEOUT / DV_ERR_IO when the process failed. */
int qserver_reduce(qserver_proc *p, const char *handle, const unsigned *views, size_t nviews, const char *kvs,
                   size_t kvs_len, buf_t *result, qserver_error *err);
int qserver_rereduce(qserver_proc *p, const char *handle, const unsigned *views, size_t nviews,
                     const char *values, size_t values_len, buf_t *result, qserver_error *err);

/* Filter `name` over docs (JSON array text) with req (JSON object text):
 * *result gets a JSON array of booleans.  A throwing filter: DV_ERR_INVALID
 * with the child's error in err. */
int qserver_filter(qserver_proc *p, const char *handle, const char *name, const char *docs, size_t docs_len,
                   const char *req, size_t req_len, buf_t *result, qserver_error *err);

/* validate_doc_update(newDoc, oldDoc, userCtx, secObj); args is the JSON
 * array text of those four.  Outcome in *verdict; for a refusal *message
 * gets the thrown message as JSON text (usually a string). */
enum qserver_verdict { QSERVER_VALID = 0, QSERVER_FORBIDDEN, QSERVER_UNAUTHORIZED, QSERVER_OTHER, QSERVER_ERROR };
int qserver_validate(qserver_proc *p, const char *handle, const char *args, size_t args_len,
                     enum qserver_verdict *verdict, buf_t *message, qserver_error *err);
/* The same for n documents in one round trip: batch is the JSON array text
 * of n argument arrays; verdicts[i] and messages[i] (n of each) get each
 * one's answer.  A function that raised a JavaScript error for document
 * i gives QSERVER_ERROR with messages[i] the {"error","reason"} object
 * text (the other documents still ran).  The call has one deadline (keep
 * batches small); DV_ERR_TIMEOUT / DV_ERR_IO as for every call. */
int qserver_validate_batch(qserver_proc *p, const char *handle, const char *batch, size_t batch_len, size_t n,
                           enum qserver_verdict *verdicts, buf_t *messages, qserver_error *err);

/* ---- exposed for tests and the fuzz target ------------------------------- */

/* One frame decoded from the front of an untrusted byte buffer. */
typedef struct qframe {
    int type;
    const uint8_t *payload;
    size_t len;
    size_t consumed; /* header + payload */
} qframe;

enum { QFRAME_OK = 0, QFRAME_MORE = 1 };
/* DV_ERR_CORRUPT (length over max_payload, or a type the server never
 * expects), QFRAME_MORE (incomplete: read more), or QFRAME_OK. */
int qframe_decode(const uint8_t *buf, size_t len, size_t max_payload, qframe *f);
/* Fills err from an error payload {"error","reason"}; anything malformed
 * gives error "bad_reply".  Texts are cut to fit, always valid UTF-8. */
void qserver_parse_error(const uint8_t *payload, size_t len, qserver_error *err);
/* Reads a validate answer; DV_ERR_CORRUPT when it is none of the forms. */
int qserver_parse_verdict(const uint8_t *payload, size_t len, enum qserver_verdict *verdict, buf_t *message);
/* Reads a batch validate answer: an array of exactly n answers, each a
 * validate answer or {"error","reason"} (QSERVER_ERROR, messages[i] the
 * object's text); DV_ERR_CORRUPT otherwise. */
int qserver_parse_verdicts(const uint8_t *payload, size_t len, size_t n, enum qserver_verdict *verdicts,
                           buf_t *messages);

/* The pid of p's current child (0 when none is running); for tests. */
int qserver_proc_pid(const qserver_proc *p);

#endif
