/*
 * crashutil.h — the workload model, the verifier and the runners shared by
 * the crash tests (test_crash_kill, test_power_loss) and their long-running
 * tools (tool_crash_kill, tool_power_loss).
 *
 * The workload: documents "d<k>" (k < ndocs) edited again and again, and
 * local documents "_local/l<k>".  Everything a reader finds is a pure
 * function of (k, version), so a verifier needs no copy of the data:
 *   - doc d<k> at version v (= its rev pos) has body cu_body(k, v), is
 *     deleted iff cu_deleted(k, v), and carries attachment "a.bin" whose
 *     bytes are cu_att_data(k, revpos) where revpos = cu_att_revpos(k, v);
 *   - a body also carries its own checksum, so a partially written or
 *     mixed-up body is recognised even without knowing what was expected.
 *
 * The "acknowledged log" is a cu_model: per doc the highest version whose
 * store_dbfile_write returned DV_OK (acked, with its rev), and the highest
 * version ever submitted (attempted).  After a crash a database is correct
 * when every doc is at a version in [acked, attempted], with exactly the
 * bytes that version must have, and the by-seq index, counts and
 * update_seq agree with the documents.
 */
#ifndef DV_TESTS_STORE_CRASHUTIL_H
#define DV_TESTS_STORE_CRASHUTIL_H

#include "base/buf.h"
#include "store/dbfile.h"
#include "testutil.h"

#include <stddef.h>
#include <stdint.h>

#define CU_REVS_LIMIT 10 /* set at creation; keeps rev trees short in long runs */

enum { CU_DOC = 0, CU_LOCAL = 1 };

/* ---- deterministic content ------------------------------------------- */

int cu_deleted(uint32_t k, uint64_t v);
/* 0: no attachment, 1: new data at this version, 2: stub kept from parent. */
int cu_att_mode(uint32_t k, uint64_t v);
/* Version whose data the attachment of version v carries (0: none). */
uint64_t cu_att_revpos(uint32_t k, uint64_t v);
int cu_body(uint32_t k, uint64_t v, buf_t *out);
int cu_att_data(uint32_t k, uint64_t revpos, buf_t *out);
int cu_local_body(uint32_t k, uint64_t rev, buf_t *out);
/* Parses a body written by cu_body/cu_local_body and verifies its embedded
 * checksum; DV_ERR_CORRUPT when it fails.  *kind (CU_DOC / CU_LOCAL), *k and
 * *v receive its identity. */
int cu_body_check(const uint8_t *p, size_t n, int *kind, uint32_t *k, uint64_t *v);
void cu_doc_id(uint32_t k, char out[16]);
void cu_local_id(uint32_t k, char out[24]);

/* ---- the acknowledged log ------------------------------------------- */

typedef struct cu_model {
    uint32_t ndocs, nlocals;
    uint64_t *acked_v;      /* per doc: highest acknowledged version, 0 none  */
    store_rev *acked_rev;   /* rev of acked_v                                 */
    uint64_t *attempted_v;  /* highest version ever submitted                 */
    uint64_t *acked_l;      /* per local doc: acknowledged rev counter        */
    uint64_t *attempted_l;
    uint64_t max_acked_seq; /* highest seq an acknowledged write reported    */
    int revs_limit_acked;   /* CU_REVS_LIMIT was acknowledged                */
} cu_model;

int cu_model_init(cu_model *m, uint32_t ndocs, uint32_t nlocals);
void cu_model_free(cu_model *m);
int cu_model_copy(cu_model *dst, const cu_model *src);

void cu_model_attempt(cu_model *m, int kind, uint32_t k, uint64_t v);
void cu_model_ack(cu_model *m, int kind, uint32_t k, uint64_t v, const store_rev *rev, uint64_t seq);

/* Creates the database at path (durability ALWAYS) and sets its revs_limit
 * to CU_REVS_LIMIT; m->revs_limit_acked is set when that write was
 * acknowledged.  Returns the first error (open, write or close). */
int cu_create(const char *path, store_vfs *vfs, cu_model *m);

/* Opens path (create == 0) through vfs (NULL: POSIX), checks the database
 * against m (see the file comment), closes it.  On success the model is
 * reset to what was found (acked == attempted == found), the baseline of
 * the next round.  On failure returns nonzero and prints why to stderr,
 * prefixed with ctx.  A model whose acked == attempted demands that exact
 * state. */
int cu_verify(const char *path, store_vfs *vfs, cu_model *m, const char *ctx);
/* The same checks on an already open database (no model reset). */
int cu_verify_db(store_dbfile *db, cu_model *m, int reset_model, const char *ctx);
/* Lowers the store's log level to quiet (expected I/O errors and torn
 * tails are logged on every round) unless $DIVAN_VERBOSE is set; returns
 * the previous level for restoring. */
int cu_quiet_logs(int quiet);
/* Prints "[ctx] VIOLATION: ..." to stderr. */
void cu_violation(const char *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the writer ------------------------------------------------------ */

/* Notified around every write: attempt before store_dbfile_write is called,
 * ack after it returned DV_OK with the item's status DV_OK. */
typedef struct cu_events {
    void (*attempt)(void *arg, int kind, uint32_t k, uint64_t v);
    void (*ack)(void *arg, int kind, uint32_t k, uint64_t v, const store_rev *rev, uint64_t seq);
    void *arg;
} cu_events;

/* A writer owns the docs and locals k with k % stride == offset; several
 * writers with different offsets share one cu_state. */
typedef struct cu_state {
    uint32_t ndocs, nlocals;
    uint64_t *v;      /* current version per doc (as the writer believes) */
    store_rev *rev;
    uint64_t *lrev;   /* current rev counter per local doc */
} cu_state;

int cu_state_init(cu_state *s, uint32_t ndocs, uint32_t nlocals);
void cu_state_free(cu_state *s);
/* Reads every doc's and local doc's current version from a snapshot. */
int cu_state_load(cu_state *s, store_dbfile *db);
/* The same for the docs of a stride/offset share only. */
int cu_state_load_share(cu_state *s, store_dbfile *db, uint32_t stride, uint32_t offset);

typedef struct cu_writer {
    store_dbfile *db;
    cu_state *st;
    uint32_t stride, offset;
    tu_rng rng;
    cu_events ev;
    const char *ctx;  /* prefix of violation messages */
} cu_writer;

/* Re-reads the versions of the writer's own docs (after a failed write,
 * which may or may not have reached the file). */
int cu_writer_resync(cu_writer *w);
/* A single writer over all docs (stride 1) whose events update m directly
 * (under a lock: several such writers may share m with other strides). */
void cu_writer_init_model(cu_writer *w, store_dbfile *db, cu_state *st, uint64_t seed, cu_model *m,
                          const char *ctx);

#define CU_VIOLATION 1
/* One store_dbfile_write of 1..4 doc edits (sometimes a local doc too).
 * Returns DV_OK when acknowledged, the write's error (< 0) when it failed
 * (also DV_ERR_IO when an item reported an I/O error: the items that
 * reported DV_OK are still acknowledged), or CU_VIOLATION (printed) when
 * the database refused an edit the model says is valid or reported an
 * impossible rev / seq. */
int cu_writer_step(cu_writer *w);

/* ---- runners (the tests and the tools are thin wrappers) ------------- */

typedef struct cu_kill_opts {
    long iterations;
    int durability;  /* STORE_DURABLE_*: a process kill loses nothing in any mode */
    int threads;     /* writer threads in the child */
    int compact;     /* run compaction concurrently in the child */
    uint64_t seed;
} cu_kill_opts;
/* SIGKILL test (see test_crash_kill.c).  0 on success. */
int cu_run_kill(const cu_kill_opts *o);

typedef struct cu_power_opts {
    long iterations;
    uint64_t seed;
} cu_power_opts;
/* Power loss and I/O failure through faultvfs.  0 on success. */
int cu_run_power(const cu_power_opts *o);
/* Truncation of real files at random byte offsets, plus garbage tails. */
int cu_run_truncate(const cu_power_opts *o);

#endif
