/*
 * handlers_changes.c — GET/POST /{db}/_changes, CouchDB 3's changes feed
 * (chttpd_db:handle_changes_req, couch_changes, fabric_view_changes).
 *
 * A feed is a sequence of passes.  A pass reads one snapshot: either the
 * by-seq tree from `since` (one entry per document, its latest change), or
 * — for _doc_ids with at most LOOKUP_MAX ids and for _design — a list of
 * (seq, id) found by id lookups and sorted by seq, as CouchDB's lookup
 * optimisation does.  feed=normal is one pass.  longpoll, continuous and
 * eventsource (the waiting feeds) run a pass, then wait for the database to
 * change, then run the next pass from where the last one ended.
 *
 * Cost and invariants:
 *   - Rows stream as they are read: each fill appends rows until the part
 *     reaches CHUNK bytes (one row may exceed it: a document is rendered
 *     whole), so memory is O(CHUNK + one row) whatever the feed's length.
 *     A pass keeps its snapshot (and a reference on the database) until it
 *     ends, so a long feed sees one consistent state (DESIGN.md).
 *   - A waiting feed holds no thread, no snapshot and no database
 *     reference: it is a WAITing stream registered with
 *     http_stream_watch_db, woken by the commit hook (also run when the
 *     database is deleted) or by its timer.  Each wake costs one db_open
 *     by name and one snapshot to compare update_seq.  A wake for a
 *     database that is gone or re-created (another instance) ends the feed
 *     with its last_seq, as CouchDB's does when its listener dies.
 *   - Before a feed waits it compares update_seq with the last pass's
 *     snapshot (seen_seq), its watch already registered, so a commit
 *     published while a part was being sent is never missed: either the
 *     check sees it or its wake arrives later.
 *   - A client that hangs up while its feed waits is noticed at the feed's
 *     next write (h2o does not read the socket meanwhile): its heartbeat,
 *     or its end at timeout (at most 60 s), as in CouchDB before 3.3.
 *   - Timers aim at a deadline; the server rounds each wait down to its
 *     fixed ladder of durations (http_stream_wake_after), so a deadline is
 *     reached in a few wakes and every wake re-checks the clock.
 *   - last_seq/pending: after a complete ascending pass last_seq is the
 *     snapshot's update_seq (or since, when larger) and the next pass starts
 *     there; after a pass cut by limit it is the last row's seq.  pending
 *     is the number of by-seq entries after last_seq (before it, for
 *     descending), counted from subtree counts in O(log n).
 *
 * Shapes (byte for byte CouchDB 3's chttpd changes_callback):
 *   normal, longpoll  {"results":[\n ROW ,\r\n ROW \n],\n"last_seq":S,"pending":N}\n
 *   continuous        ROW\n ... {"last_seq":S,"pending":N}\n
 *   eventsource       data: ROW\nid: SEQ\n\n ... (heartbeat: event: heartbeat\ndata: \n\n)
 * A heartbeat is "\n" except for eventsource; a feed about to wait that has
 * sent nothing yet sends one "\n" first (CouchDB's waiting_for_updates),
 * which also gets the response headers to the client at once.
 *
 * filter={ddoc}/{name} and filter=_view run in the JavaScript query server,
 * which blocks, so never here: a pass hands candidates BATCH at a time to
 * a worker (changes_filter.h) and fill returns WAIT until the verdicts are
 * back (a channel wakes the stream); waiting for commits stays as above.
 * Such a feed starts its response only when it has something to send
 * (feed_kick, CouchDB's delayed response), so a function that throws
 * before any row gets a real error status; after, the feed ends with
 * CouchDB's error line.  A pass that ends while a batch is out (a stop, a
 * client gone) lends its snapshot to the batch, which releases it.
 */
#include "base/digest.h"
#include "base/status.h"
#include "http/changes_filter.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CHUNK (32 * 1024)
#define MAX_WAIT_MS 60000LL               /* [chttpd] changes_timeout: caps heartbeat and timeout */
#define DEFAULT_LIMIT 1000000000000000LL  /* #changes_args.limit: seq_interval counts from it */
#define LOOKUP_MAX 1000                   /* [couchdb] changes_doc_ids_optimization_threshold */
#define BATCH 100                         /* candidates per query-server batch (JS and _view filters) */

enum { FEED_NORMAL, FEED_LONGPOLL, FEED_CONTINUOUS, FEED_EVENTSOURCE };
enum { FILTER_NONE, FILTER_DOC_IDS, FILTER_DESIGN, FILTER_QS };
enum { ST_SCAN, ST_WAIT, ST_END };
enum { PASS_MORE = 0, PASS_COMPLETE = 1, PASS_LIMIT = 2, PASS_WAIT = 3, PASS_FAILED = 4 };

typedef struct id_span {
    size_t off, len; /* into a buf of ids back to back */
} id_span;

typedef struct id_ref {
    const uint8_t *p;
    size_t n;
} id_ref;

typedef struct lookup_row {
    uint64_t seq;
    id_span id;
} lookup_row;

typedef struct changes_feed {
    /* the request */
    int feed;
    int descending;
    int all_docs;           /* style=all_docs: every leaf in "changes" */
    int include_docs;
    int filter;
    db_render_opts ropts;   /* conflicts, attachments, att_encoding_info */
    long long limit;        /* rows still allowed; negative never reaches 0 (CouchDB) */
    long long seq_interval; /* 0: every row carries its seq */
    long long heartbeat_ms; /* 0: none; the feed then ends after timeout_ms without news */
    long long timeout_ms;
    char dbname[256];
    uint64_t instance;      /* the database incarnation the feed follows */
    buf_t idbuf;            /* _doc_ids, back to back */
    id_ref *ids;            /* into idbuf, sorted by bytes, unique */
    size_t nids;
    /* progress */
    uint64_t since;         /* the next ascending pass reads seqs > since */
    uint64_t last_seq;
    uint64_t pending;
    uint64_t seen_seq;      /* update_seq of the last pass's snapshot */
    int started;            /* normal, longpoll: "{"results":[" written */
    long long nrows;        /* rows sent */
    int sent_any;           /* a row or a heartbeat went out */
    int state;
    int counted;            /* in clients_requesting_changes */
    int watching;
    long long deadline_ms;  /* heartbeat: next one due; else: the end */
    /* the open pass */
    db_t *db;
    store_snap *snap;
    uint64_t snap_seq;
    int pass_desc;
    store_seq_cursor *cur;
    lookup_row *list;       /* lookup passes: rows in seq order */
    size_t nlist, ilist, caplist;
    buf_t listids;
    uint64_t examined;      /* seq of the last entry looked at in this pass */
    store_change ch;
    store_docinfo di;
    int di_fresh;           /* di is ch's document, read by this pass */
    uint32_t *lbuf;         /* revtree_leaves scratch */
    size_t lcap;
    /* JavaScript and _view filters (FILTER_QS) */
    cfilter *cf;
    int batch_eof;          /* the pass's cursor is used up */
    int streaming;          /* the response started (else a failure still gets its status) */
    int failed;             /* the filter failed: cfilter_error says why */
    buf_t pre;              /* what the feed produced before its response started */
    int pre_rc;             /* and what fill said then; -1: nothing held */
} changes_feed;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- pass lifetime ----------------------------------------------------------- */

static void pass_close(changes_feed *f)
{
    store_seq_cursor_close(f->cur);
    f->cur = NULL;
    if (f->cf && f->snap && cfilter_adopt(f->cf, f->db, f->snap)) {
        f->snap = NULL; /* a batch still reads them: released when it is back */
        f->db = NULL;
    }
    if (f->snap)
        store_snap_release(f->snap);
    f->snap = NULL;
    if (f->db)
        db_release(f->db);
    f->db = NULL;
    f->nlist = f->ilist = 0;
    buf_reset(&f->listids);
}

static void feed_free(changes_feed *f)
{
    pass_close(f);
    cfilter_free(f->cf);
    buf_free(&f->pre);
    if (f->counted)
        http_stat_add(STAT_CHANGES_CLIENTS, -1);
    buf_free(&f->idbuf);
    buf_free(&f->listids);
    free(f->ids);
    free(f->list);
    free(f->lbuf);
    store_change_free(&f->ch);
    store_docinfo_free(&f->di);
    free(f);
}

static void feed_dispose(void *ctx) { feed_free(ctx); }

/* Takes a reference and a snapshot of the feed's database.  DV_ERR_NOTFOUND
 * when the name is gone or now names another incarnation. */
static int feed_attach(changes_feed *f, db_server *dbs)
{
    db_t *db;
    int rc = db_open(dbs, f->dbname, &db);
    if (rc != DV_OK)
        return rc;
    if (db_instance(db) != f->instance) {
        db_release(db);
        return DV_ERR_NOTFOUND;
    }
    store_snap *snap;
    if ((rc = db_snapshot(db, &snap)) != DV_OK) {
        db_release(db);
        return rc;
    }
    store_dbinfo in;
    store_snap_info(snap, &in);
    f->db = db;
    f->snap = snap;
    f->snap_seq = in.update_seq;
    return DV_OK;
}

/* ---- filters --------------------------------------------------------------------- */

static int bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t m = an < bn ? an : bn;
    int c = m ? memcmp(a, b, m) : 0;
    return c ? c : (an < bn ? -1 : an > bn);
}

static int has_id(const changes_feed *f, const uint8_t *p, size_t n)
{
    size_t lo = 0, hi = f->nids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = bytes_cmp(f->ids[mid].p, f->ids[mid].n, p, n);
        if (c == 0)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int is_design(const uint8_t *p, size_t n) { return n >= 8 && !memcmp(p, "_design/", 8); }

static int passes(const changes_feed *f, const uint8_t *id, size_t n)
{
    switch (f->filter) {
    case FILTER_DOC_IDS: return has_id(f, id, n);
    case FILTER_DESIGN: return is_design(id, n);
    default: return 1;
    }
}

/* ---- rows ----------------------------------------------------------------------- */

static void write_seq_value(json_writer *w, uint64_t seq, int with_seq)
{
    if (with_seq)
        http_write_seq(w, seq);
    else
        json_write_null(w);
}

/* Appends the row for f->ch (leaves winner first) in the feed's framing.
 * include_docs renders the winning revision of f->di: read here unless
 * the lookup pass just read it (di_fresh). */
static int write_row(changes_feed *f, buf_t *out)
{
    const store_change *ch = &f->ch;
    /* fabric_view_changes: the seq goes out when the remaining limit is a
     * multiple of seq_interval (counted down from 10^15 without limit). */
    int with_seq = f->seq_interval == 0 || f->limit % f->seq_interval == 0;
    int rc, have_doc = 0;
    if (f->include_docs) {
        rc = f->di_fresh ? DV_OK : store_snap_get_doc(f->snap, ch->id.data, ch->id.len, &f->di);
        if (rc != DV_OK && rc != DV_ERR_NOTFOUND)
            return rc;
        have_doc = rc == DV_OK && f->di.tree.n > 0;
    }
    if (f->feed == FEED_EVENTSOURCE)
        rc = buf_append_str(out, "data: ");
    else if ((f->feed == FEED_NORMAL || f->feed == FEED_LONGPOLL) && f->nrows > 0)
        rc = buf_append_str(out, ",\r\n");
    else
        rc = DV_OK;
    if (rc != DV_OK)
        return rc;
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "seq");
    write_seq_value(&w, ch->seq, with_seq);
    json_write_key_cstr(&w, "id");
    json_write_string(&w, (const char *)ch->id.data, ch->id.len);
    json_write_key_cstr(&w, "changes");
    json_write_begin_array(&w);
    for (size_t i = 0; i < (f->all_docs || ch->nleaves == 0 ? ch->nleaves : 1); i++) {
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "rev");
        http_write_rev(&w, &ch->leaves[i].rev);
        json_write_end_object(&w);
    }
    json_write_end_array(&w);
    if (ch->deleted) {
        json_write_key_cstr(&w, "deleted");
        json_write_bool(&w, true);
    }
    if (f->include_docs) {
        json_write_key_cstr(&w, "doc");
        uint32_t idx = have_doc ? revtree_winner(&f->di.tree) : REVTREE_NONE;
        if (idx == REVTREE_NONE) {
            json_write_null(&w);
        } else if ((rc = db_render_doc(f->snap, &f->di, idx, &f->ropts, &w, NULL)) != DV_OK) {
            return rc;
        }
    }
    json_write_end_object(&w);
    if (w.err != DV_OK)
        return w.err;
    if (f->feed == FEED_CONTINUOUS) {
        rc = buf_append_byte(out, '\n');
    } else if (f->feed == FEED_EVENTSOURCE) {
        rc = buf_append_str(out, "\nid: ");
        json_writer_init(&w, out);
        if (rc == DV_OK)
            write_seq_value(&w, ch->seq, with_seq);
        if (rc == DV_OK && (rc = w.err) == DV_OK)
            rc = buf_append_str(out, "\n\n");
    }
    if (rc != DV_OK)
        return rc;
    f->nrows++;
    f->limit--;
    f->sent_any = 1;
    return DV_OK;
}

/* Fills f->ch from a document's tree: leaves in winner order. */
static int change_from_docinfo(changes_feed *f, uint64_t seq)
{
    const revtree *t = &f->di.tree;
    if (t->n > f->lcap) {
        uint32_t *nb = realloc(f->lbuf, t->n * sizeof *nb);
        if (!nb)
            return DV_ERR_NOMEM;
        f->lbuf = nb;
        f->lcap = t->n;
    }
    uint32_t n = 0;
    revtree_leaves(t, f->lbuf, &n);
    if (n > f->ch.cap) {
        store_change_leaf *nl = realloc(f->ch.leaves, n * sizeof *nl);
        if (!nl)
            return DV_ERR_NOMEM;
        f->ch.leaves = nl;
        f->ch.cap = n;
    }
    for (uint32_t i = 0; i < n; i++) {
        const revtree_node *x = &t->nodes[f->lbuf[i]];
        f->ch.leaves[i].rev = x->rev;
        f->ch.leaves[i].deleted = x->deleted;
        f->ch.leaves[i].body = x->body;
    }
    f->ch.nleaves = n;
    f->ch.deleted = n ? f->ch.leaves[0].deleted : 0;
    f->ch.seq = seq;
    buf_reset(&f->ch.id);
    return buf_append(&f->ch.id, f->di.id.data, f->di.id.len);
}

/* ---- lookup passes (_doc_ids, _design) --------------------------------------------- */

static int list_push(changes_feed *f, uint64_t seq, const uint8_t *id, size_t n)
{
    if (f->nlist == f->caplist) {
        size_t nc = f->caplist ? f->caplist * 2 : 16;
        lookup_row *nl = realloc(f->list, nc * sizeof *nl);
        if (!nl)
            return DV_ERR_NOMEM;
        f->list = nl;
        f->caplist = nc;
    }
    lookup_row *row = &f->list[f->nlist++];
    row->seq = seq;
    row->id = (id_span){f->listids.len, n};
    return buf_append(&f->listids, id, n);
}

static int cmp_seq_asc(const void *a, const void *b)
{
    uint64_t x = ((const lookup_row *)a)->seq, y = ((const lookup_row *)b)->seq;
    return x < y ? -1 : x > y;
}

static int cmp_seq_desc(const void *a, const void *b) { return cmp_seq_asc(b, a); }

/* Whether a document belongs in this pass (ascending: changed after since). */
static int in_pass(const changes_feed *f, uint64_t seq) { return f->pass_desc || seq > f->since; }

/* Builds the pass's row list.  *fits = 0 when there are more than
 * LOOKUP_MAX design documents: the pass then scans by-seq instead. */
static int list_build(changes_feed *f, int *fits)
{
    *fits = 1;
    int rc = DV_OK;
    if (f->filter == FILTER_DOC_IDS) {
        for (size_t i = 0; i < f->nids && rc == DV_OK; i++) {
            rc = store_snap_get_doc(f->snap, f->ids[i].p, f->ids[i].n, &f->di);
            if (rc == DV_ERR_NOTFOUND) {
                rc = DV_OK;
                continue;
            }
            if (rc == DV_OK && in_pass(f, f->di.seq))
                rc = list_push(f, f->di.seq, f->ids[i].p, f->ids[i].n);
        }
    } else {
        store_btree_range range = STORE_BTREE_RANGE_ALL;
        range.has_start = 1;
        range.start = (store_slice){(const uint8_t *)"_design/", 8};
        range.has_end = 1;
        range.end_inclusive = 0;
        range.end = (store_slice){(const uint8_t *)"_design0", 8};
        store_id_cursor *c;
        if ((rc = store_snap_iter_ids(f->snap, &range, &c)) != DV_OK)
            return rc;
        size_t seen = 0;
        while ((rc = store_id_cursor_next(c, &f->di)) == 1) {
            if (++seen > LOOKUP_MAX) {
                *fits = 0;
                break;
            }
            if (in_pass(f, f->di.seq) && (rc = list_push(f, f->di.seq, f->di.id.data, f->di.id.len)) != DV_OK)
                break;
        }
        store_id_cursor_close(c);
        if (rc > 0)
            rc = DV_OK;
    }
    if (rc == DV_OK && *fits && f->nlist > 1)
        qsort(f->list, f->nlist, sizeof *f->list, f->pass_desc ? cmp_seq_desc : cmp_seq_asc);
    return rc;
}

/* ---- passes ------------------------------------------------------------------------ */

/* Starts a pass over f->snap (taken by the caller). */
static int pass_begin(http_req_t *r, changes_feed *f, int descending)
{
    f->pass_desc = descending;
    f->seen_seq = f->snap_seq;
    f->examined = 0;
    f->nlist = f->ilist = 0;
    buf_reset(&f->listids);
    int fits = 0;
    if (f->cf) {
        int rc = cfilter_pass(f->cf, r, f->db, f->snap);
        if (rc != DV_OK)
            return rc;
        f->batch_eof = 0;
        f->deadline_ms = now_ms() + f->heartbeat_ms; /* heartbeats while nothing passes */
    }
    if (f->filter == FILTER_DESIGN || (f->filter == FILTER_DOC_IDS && f->nids <= LOOKUP_MAX)) {
        int rc = list_build(f, &fits);
        if (rc != DV_OK)
            return rc;
        if (fits)
            return DV_OK;
        f->nlist = 0;
    }
    return store_snap_iter_changes(f->snap, f->since, descending, &f->cur);
}

/* Next entry of the pass into f->ch (and f->di for lookups): 1, 0 at the
 * end, or an error. */
static int pass_next(changes_feed *f)
{
    if (!f->cur) {
        if (f->ilist == f->nlist)
            return 0;
        const lookup_row *row = &f->list[f->ilist++];
        int rc = store_snap_get_doc(f->snap, f->listids.data + row->id.off, row->id.len, &f->di);
        if (rc == DV_OK)
            rc = change_from_docinfo(f, row->seq);
        f->di_fresh = rc == DV_OK;
        return rc == DV_OK ? 1 : rc;
    }
    int rc;
    f->di_fresh = 0;
    while ((rc = store_seq_cursor_next(f->cur, &f->ch)) == 1) {
        f->examined = f->ch.seq;
        if (passes(f, f->ch.id.data, f->ch.id.len))
            return 1;
    }
    return rc;
}

/* Ends the pass: last_seq, pending and the next pass's since (see the file
 * comment); releases the snapshot and the database reference. */
static int pass_end(changes_feed *f, int complete)
{
    int rc = DV_OK;
    uint64_t end, n = 0, total = 0;
    if (!f->pass_desc) {
        end = f->examined ? f->examined : f->since;
        if (complete && f->snap_seq > end)
            end = f->snap_seq;
        rc = store_snap_count_changes_since(f->snap, end, &n);
        f->since = end;
    } else {
        end = f->examined ? f->examined : f->snap_seq;
        rc = store_snap_count_changes_since(f->snap, 0, &total);
        if (rc == DV_OK && f->examined)
            rc = store_snap_count_changes_since(f->snap, end - 1, &n);
        n = total - n; /* entries below end; all of them when none was read */
        f->since = f->snap_seq; /* live changes after a descending pass go forward */
    }
    f->last_seq = end;
    f->pending = n;
    if (f->cf)
        cfilter_drop(f->cf); /* verdicts past a limit */
    pass_close(f);
    return rc;
}

/* pass_run through a JavaScript or _view filter: candidates go to a
 * worker BATCH at a time (PASS_WAIT while one is out; the channel wakes
 * the stream).  examined only moves over candidates whose verdict was
 * used, so a pass cut short (limit, stop) never skips an untested one. */
static int pass_run_qs(http_req_t *r, changes_feed *f, buf_t *out)
{
    while (out->len < CHUNK) {
        if (f->limit == 0)
            return PASS_LIMIT;
        int st = cfilter_state(f->cf), rc = 1;
        if (st == CF_OUT)
            return PASS_WAIT;
        if (st == CF_FAILED)
            return PASS_FAILED;
        if (st == CF_READY) {
            uint64_t last = 0;
            if ((rc = cfilter_next(f->cf, &f->ch, &last)) < 0)
                return rc;
            if (rc == 0) {
                f->examined = last;
                if (f->batch_eof)
                    return PASS_COMPLETE;
                continue;
            }
            f->examined = f->ch.seq;
            f->di_fresh = 0;
            if ((rc = write_row(f, out)) != DV_OK)
                return rc;
            continue;
        }
        uint64_t examined = f->examined;
        int more = 1;
        while (cfilter_count(f->cf) < BATCH && (more = pass_next(f)) == 1)
            if ((rc = cfilter_add(f->cf, &f->ch)) != DV_OK)
                return rc;
        if (more < 0)
            return more;
        f->batch_eof = more == 0;
        f->examined = examined;
        if (cfilter_count(f->cf) == 0)
            return PASS_COMPLETE;
        if ((rc = cfilter_submit(f->cf, r, f->snap)) != DV_OK)
            return rc;
    }
    return PASS_MORE;
}

/* Appends rows until the part is full (PASS_MORE) or the pass ends
 * (PASS_COMPLETE, PASS_LIMIT), or returns an error; with a query-server
 * filter also PASS_WAIT (a batch is out) or PASS_FAILED. */
static int pass_run(http_req_t *r, changes_feed *f, buf_t *out)
{
    if (f->cf)
        return pass_run_qs(r, f, out);
    while (out->len < CHUNK) {
        if (f->limit == 0)
            return PASS_LIMIT;
        int rc = pass_next(f);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return PASS_COMPLETE;
        if (!f->cur)
            f->examined = f->ch.seq;
        if ((rc = write_row(f, out)) != DV_OK)
            return rc;
    }
    return PASS_MORE;
}

/* ---- framing ---------------------------------------------------------------------- */

static int write_end(changes_feed *f, buf_t *out)
{
    f->state = ST_END;
    pass_close(f);
    char seq[24];
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)f->last_seq);
    switch (f->feed) {
    case FEED_NORMAL:
    case FEED_LONGPOLL:
        return buf_printf(out, "\n],\n\"last_seq\":\"%s\",\"pending\":%llu}\n", seq,
                          (unsigned long long)f->pending);
    case FEED_CONTINUOUS:
        return buf_printf(out, "{\"last_seq\":\"%s\",\"pending\":%llu}\n", seq, (unsigned long long)f->pending);
    default:
        return DV_OK; /* eventsource just ends */
    }
}

static int write_heartbeat(changes_feed *f, buf_t *out)
{
    f->sent_any = 1;
    return buf_append_str(out, f->feed == FEED_EVENTSOURCE ? "event: heartbeat\ndata: \n\n" : "\n");
}

/* Sets the stream's timer toward f->deadline_ms (the server rounds it
 * down to its ladder; an early wake re-arms for the time left). */
static void arm_timer(http_req_t *r, const changes_feed *f, long long now)
{
    long long left = f->deadline_ms - now;
    http_stream_wake_after(r, left > 0 ? (uint64_t)left : 1);
}

/* ---- the stream --------------------------------------------------------------------- */

static int feed_done(changes_feed *f, buf_t *out)
{
    int rc = write_end(f, out);
    return rc == DV_OK ? HTTP_STREAM_DONE : rc;
}

/* One step of a waiting feed: decides between scanning (news), a
 * heartbeat, the end, or more waiting.  Returns an HTTP_STREAM_* or -1 to
 * go on scanning in the caller's loop. */
static int wait_step(http_req_t *r, changes_feed *f, buf_t *out)
{
    if (http_server_stopping(r))
        return feed_done(f, out);
    int rc;
    if (!f->watching) {
        if ((rc = http_stream_watch_db(r, f->dbname)) != DV_OK)
            return rc;
        f->watching = 1;
    }
    rc = feed_attach(f, http_dbs(r));
    if (rc == DV_ERR_NOTFOUND)
        return feed_done(f, out); /* deleted: the feed ends as CouchDB's does */
    if (rc != DV_OK)
        return rc;
    if (f->snap_seq > f->seen_seq) {
        if ((rc = pass_begin(r, f, 0)) != DV_OK)
            return rc;
        f->state = ST_SCAN;
        return -1;
    }
    pass_close(f);
    long long now = now_ms();
    if (now >= f->deadline_ms) {
        if (!f->heartbeat_ms)
            return feed_done(f, out);
        if ((rc = write_heartbeat(f, out)) != DV_OK)
            return rc;
        f->deadline_ms = now + f->heartbeat_ms;
    }
    arm_timer(r, f, now);
    return HTTP_STREAM_WAIT;
}

/* A scan waits for a batch of verdicts.  Waiting feeds with a heartbeat
 * keep it while nothing passes (CouchDB's maybe_heartbeat); the timer
 * wakes fill for it, which finds the batch still out and waits again. */
static int scan_wait(http_req_t *r, changes_feed *f, buf_t *out)
{
    if (f->feed == FEED_NORMAL || !f->heartbeat_ms)
        return HTTP_STREAM_WAIT;
    long long now = now_ms();
    if (now >= f->deadline_ms) {
        int rc = write_heartbeat(f, out);
        if (rc != DV_OK)
            return rc;
        f->deadline_ms = now + f->heartbeat_ms;
    }
    arm_timer(r, f, now);
    return HTTP_STREAM_WAIT;
}

/* The filter failed (it threw, or the query server did).  Before the
 * response started the caller answers with the error's status; after,
 * CouchDB's send_chunked_error: a last line {"code","error","reason"}. */
static int feed_failed(changes_feed *f, buf_t *out)
{
    int status;
    const char *error, *reason;
    cfilter_error(f->cf, &status, &error, &reason);
    f->failed = 1;
    f->state = ST_END;
    pass_close(f);
    if (!f->streaming)
        return DV_ERR_INVALID;
    int rc = buf_append_str(out, f->feed == FEED_EVENTSOURCE ? "event: error\ndata: " : "\n");
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "code");
    json_write_i64(&w, status);
    json_write_key_cstr(&w, "error");
    json_write_cstr(&w, error);
    json_write_key_cstr(&w, "reason");
    json_write_cstr(&w, reason);
    json_write_end_object(&w);
    if (rc == DV_OK)
        rc = w.err;
    if (rc == DV_OK)
        rc = buf_append_str(out, f->feed == FEED_EVENTSOURCE ? "\n\n" : "\n");
    return rc == DV_OK ? HTTP_STREAM_DONE : rc;
}

static int changes_fill(http_req_t *r, void *ctx, buf_t *out)
{
    changes_feed *f = ctx;
    int rc;
    if (f->pre_rc >= 0) {
        /* the first part, produced before the response started */
        rc = buf_append(out, f->pre.data, f->pre.len);
        buf_free(&f->pre);
        int then = f->pre_rc;
        f->pre_rc = -1;
        return rc != DV_OK ? rc : then;
    }
    if (!f->started && (f->feed == FEED_NORMAL || f->feed == FEED_LONGPOLL) &&
        (rc = buf_append_str(out, "{\"results\":[\n")) != DV_OK)
        return rc;
    f->started = 1;
    for (;;) {
        if (f->state == ST_END)
            return HTTP_STREAM_DONE;
        if (f->state == ST_WAIT) {
            rc = wait_step(r, f, out);
            if (rc != -1)
                return rc;
            continue;
        }
        /* ST_SCAN: a waiting feed stops at once when the server does. */
        if (f->feed != FEED_NORMAL && http_server_stopping(r)) {
            if ((rc = pass_end(f, 0)) != DV_OK)
                return rc;
            return feed_done(f, out);
        }
        long long nrows = f->nrows;
        rc = pass_run(r, f, out);
        if (rc < 0)
            return rc;
        if (f->cf && f->nrows > nrows && f->heartbeat_ms)
            f->deadline_ms = now_ms() + f->heartbeat_ms; /* rows count as a heartbeat */
        if (rc == PASS_MORE)
            return HTTP_STREAM_MORE;
        if (rc == PASS_WAIT)
            return scan_wait(r, f, out);
        if (rc == PASS_FAILED)
            return feed_failed(f, out);
        if ((rc = pass_end(f, rc == PASS_COMPLETE)) != DV_OK)
            return rc;
        /* keep_sending_changes: when the feed ends after a pass. */
        if (f->feed == FEED_NORMAL || (f->feed == FEED_LONGPOLL && f->nrows > 0) ||
            (f->feed != FEED_LONGPOLL && f->limit <= 0))
            return feed_done(f, out);
        if (!f->sent_any && (rc = buf_append_byte(out, '\n')) != DV_OK)
            return rc;
        f->sent_any = 1;
        f->state = ST_WAIT;
        long long now = now_ms();
        f->deadline_ms = now + (f->heartbeat_ms ? f->heartbeat_ms : f->timeout_ms);
        /* Loop: wait_step re-checks for news with the watch registered. */
        if (out->len)
            return HTTP_STREAM_MORE; /* the check runs when this part is sent */
    }
}

/* ---- parameters --------------------------------------------------------------------- */

/* CouchDB folds over the query string with lower-cased keys, so the last
 * occurrence of a key wins and "Since" is "since". */
static const http_str_t *qs_last(http_req_t *r, const char *name)
{
    const http_str_t *v = NULL;
    size_t n = strlen(name);
    for (size_t i = 0; i < r->target.nparam; i++) {
        const http_str_t *k = &r->target.param[i].key;
        if (k->n == n && !strncasecmp(k->p, name, n))
            v = &r->target.param[i].value;
    }
    return v;
}

static int is_true(const http_str_t *v) { return v && v->n == 4 && !memcmp(v->p, "true", 4); }

/* Erlang's list_to_integer: optional sign, decimal digits, no overflow. */
static int parse_int(const http_str_t *v, long long *out)
{
    size_t i = 0;
    int neg = 0;
    if (v->n && (v->p[0] == '-' || v->p[0] == '+'))
        neg = v->p[i++] == '-';
    if (i == v->n || v->n - i > 18)
        return DV_ERR_INVALID;
    long long x = 0;
    for (; i < v->n; i++) {
        if (v->p[i] < '0' || v->p[i] > '9')
            return DV_ERR_INVALID;
        x = x * 10 + (v->p[i] - '0');
    }
    *out = neg ? -x : x;
    return DV_OK;
}

/* Answers status {"error", "reason": formatted}; returns DV_ERR_INVALID. */
__attribute__((format(printf, 4, 5))) static int send_err(http_req_t *r, int status, const char *error,
                                                           const char *fmt, ...)
{
    char reason[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    http_send_error(r, status, error, reason);
    return DV_ERR_INVALID;
}

static int bad_request(http_req_t *r, const char *reason) { return send_err(r, 400, "bad_request", "%s", reason); }

static int bad_int(http_req_t *r, const char *name)
{
    return send_err(r, 400, "query_parse_error", "Invalid value for integer: \"%s\"", name);
}

static int parse_feed(http_req_t *r, changes_feed *f)
{
    const http_str_t *v = qs_last(r, "feed");
    static const struct {
        const char *name;
        int feed;
    } feeds[] = {{"normal", FEED_NORMAL},         {"longpoll", FEED_LONGPOLL},       {"continuous", FEED_CONTINUOUS},
                 {"live", FEED_CONTINUOUS},       {"eventsource", FEED_EVENTSOURCE}};
    f->feed = FEED_NORMAL;
    if (!v)
        return DV_OK;
    for (size_t i = 0; i < sizeof feeds / sizeof feeds[0]; i++)
        if (v->n == strlen(feeds[i].name) && !memcmp(v->p, feeds[i].name, v->n)) {
            f->feed = feeds[i].feed;
            return DV_OK;
        }
    return bad_request(r, "Supported `feed` types: normal, continuous, live, longpoll, eventsource");
}

static int parse_params(http_req_t *r, changes_feed *f)
{
    const http_str_t *v;
    long long x;
    f->descending = is_true(qs_last(r, "descending"));
    f->include_docs = is_true(qs_last(r, "include_docs"));
    f->ropts.conflicts = is_true(qs_last(r, "conflicts"));
    f->ropts.attachments = is_true(qs_last(r, "attachments"));
    f->ropts.att_encoding_info = is_true(qs_last(r, "att_encoding_info"));
    f->limit = DEFAULT_LIMIT;
    if ((v = qs_last(r, "limit")) && parse_int(v, &f->limit) != DV_OK)
        return bad_int(r, "limit");
    if ((v = qs_last(r, "style"))) {
        if (v->n == 8 && !memcmp(v->p, "all_docs", 8))
            f->all_docs = 1;
        else if (!(v->n == 9 && !memcmp(v->p, "main_only", 9)))
            return bad_request(r, "Supported `style` values: main_only, all_docs");
    }
    if ((v = qs_last(r, "heartbeat"))) {
        if (is_true(v))
            f->heartbeat_ms = MAX_WAIT_MS;
        else if (parse_int(v, &x) != DV_OK)
            return bad_request(r, "Invalid heartbeat value. Expecting a positive integer value (in milliseconds).");
        else if (x <= 0)
            return bad_request(r, "The heartbeat value should be a positive integer (in milliseconds).");
        else
            f->heartbeat_ms = x < MAX_WAIT_MS ? x : MAX_WAIT_MS;
    }
    f->timeout_ms = MAX_WAIT_MS;
    if ((v = qs_last(r, "timeout"))) {
        if (parse_int(v, &x) != DV_OK || x < 0)
            return bad_int(r, "timeout");
        f->timeout_ms = x < MAX_WAIT_MS ? x : MAX_WAIT_MS;
    }
    if ((v = qs_last(r, "seq_interval")) && (parse_int(v, &f->seq_interval) != DV_OK || f->seq_interval <= 0))
        return bad_request(r, "invalid_seq_interval");
    return parse_feed(r, f);
}

/* since: a seq token, 0 or "now" (resolved later).  The later of the
 * since and last-event-id parameters wins, and for eventsource the
 * Last-Event-ID header wins over both (a reconnecting browser). */
static int parse_since(http_req_t *r, changes_feed *f, int *now)
{
    const char *p = NULL;
    size_t n = 0;
    *now = 0;
    for (size_t i = 0; i < r->target.nparam; i++) {
        const http_str_t *k = &r->target.param[i].key;
        if ((k->n == 5 && !strncasecmp(k->p, "since", 5)) || (k->n == 13 && !strncasecmp(k->p, "last-event-id", 13))) {
            p = r->target.param[i].value.p;
            n = r->target.param[i].value.n;
        }
    }
    const char *h = f->feed == FEED_EVENTSOURCE ? http_req_header(r, "last-event-id") : NULL;
    if (h) {
        p = h;
        n = strlen(h);
    }
    f->since = 0;
    if (!p)
        return DV_OK;
    if (n == 3 && !memcmp(p, "now", 3)) {
        *now = 1;
        return DV_OK;
    }
    if (http_parse_seq(p, n, &f->since) != DV_OK)
        return bad_request(r, "Malformed sequence supplied in 'since' parameter.");
    return DV_OK;
}

static int ref_cmp(const void *a, const void *b)
{
    const id_ref *x = a, *y = b;
    return bytes_cmp(x->p, x->n, y->p, y->n);
}

/* _doc_ids: a JSON array of strings (CouchDB's check_docids). */
static int set_doc_ids(http_req_t *r, changes_feed *f, const json_val *arr)
{
    static const char msg[] = "`doc_ids` filter parameter is not a list of doc ids.";
    if (!arr || !json_is_array(arr))
        return bad_request(r, msg);
    size_t n = json_len(arr);
    /* Offsets first: idbuf may move while it grows. */
    id_span *spans = calloc(n ? n : 1, sizeof *spans);
    if (!spans || !(f->ids = calloc(n ? n : 1, sizeof *f->ids))) {
        free(spans);
        goto nomem;
    }
    json_iter it = json_iter_begin(arr);
    const json_val *x;
    size_t k = 0;
    while (json_iter_elem(&it, &x)) {
        size_t len;
        const char *s = json_str(x, &len);
        if (!json_is_string(x)) {
            free(spans);
            return bad_request(r, msg);
        }
        spans[k++] = (id_span){f->idbuf.len, len};
        if (buf_append(&f->idbuf, s, len) != DV_OK) {
            free(spans);
            goto nomem;
        }
    }
    for (size_t i = 0; i < k; i++)
        f->ids[i] = (id_ref){f->idbuf.data ? f->idbuf.data + spans[i].off : (const uint8_t *)"", spans[i].len};
    free(spans);
    if (k > 1)
        qsort(f->ids, k, sizeof *f->ids, ref_cmp);
    f->nids = 0;
    for (size_t i = 0; i < k; i++)
        if (f->nids == 0 || ref_cmp(&f->ids[f->nids - 1], &f->ids[i]) != 0)
            f->ids[f->nids++] = f->ids[i];
    return DV_OK;
nomem:
    http_send_internal(r, DV_ERR_NOMEM);
    return DV_ERR_NOMEM;
}

/* A design document member, as couch_changes:check_member_exists: 404
 * missing / deleted / "missing json key: K".  DV_OK when it exists. */
static int ddoc_member(http_req_t *r, store_snap *snap, const char *ddoc, const char *section, const char *name)
{
    char id[512];
    int n = snprintf(id, sizeof id, "_design/%s", ddoc);
    store_docinfo di;
    store_docbody body;
    json_doc jd = JSON_DOC_INIT;
    store_docinfo_init(&di);
    store_docbody_init(&body);
    int rc = n > 0 && (size_t)n < sizeof id ? store_snap_get_doc(snap, (const uint8_t *)id, (size_t)n, &di)
                                            : DV_ERR_NOTFOUND;
    uint32_t win = rc == DV_OK ? revtree_winner(&di.tree) : REVTREE_NONE;
    if (rc == DV_ERR_NOTFOUND || (rc == DV_OK && (win == REVTREE_NONE || di.deleted))) {
        http_send_error(r, 404, "not_found", rc == DV_OK ? "deleted" : "missing");
        rc = DV_ERR_NOTFOUND;
        goto out;
    }
    if (rc == DV_OK && di.tree.nodes[win].has_body)
        rc = store_snap_read_body(snap, di.tree.nodes[win].body, &body);
    if (rc == DV_OK && json_doc_parse(&jd, body.body.len ? (const char *)body.body.data : "{}",
                                      body.body.len ? body.body.len : 2, JSON_DEPTH_STORED, NULL) != DV_OK)
        rc = DV_ERR_CORRUPT;
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        goto out;
    }
    const json_val *v = json_doc_root(&jd);
    const char *path[2] = {section, name};
    for (int i = 0; i < 2 && rc == DV_OK; i++) {
        if (!json_is_object(v))
            rc = send_err(r, 404, "not_found", "%s", "json_mismatch");
        else if (!(v = json_object_get_cstr(v, path[i])))
            rc = send_err(r, 404, "not_found", "missing json key: %s", path[i]);
    }
out:
    json_doc_free(&jd);
    store_docbody_free(&body);
    store_docinfo_free(&di);
    return rc;
}

/* "ddoc/name" → two unquoted, non-empty parts (string:tokens on '/'
 * drops empty ones).  Returns the number of parts found (up to 3). */
static int split_name(const char *s, size_t n, char *a, char *b, size_t cap)
{
    int parts = 0;
    size_t i = 0;
    while (i < n && parts < 3) {
        while (i < n && s[i] == '/')
            i++;
        size_t j = i;
        while (j < n && s[j] != '/')
            j++;
        if (j > i) {
            char *dst = parts == 0 ? a : b;
            if (parts < 2) {
                if (j - i >= cap)
                    return 3;
                http_unquote(s + i, j - i, dst);
            }
            parts++;
        }
        i = j;
    }
    return parts;
}

static int not_implemented(http_req_t *r, const char *what)
{
    return send_err(r, 501, "not_implemented", "%s filters are not supported yet", what);
}

static void feed_batch_back(http_req_t *r, void *ctx);

/* A filter run by the query server (changes_filter.h). */
static int use_qs_filter(http_req_t *r, changes_feed *f, int kind, const char *ddoc, const char *name)
{
    f->filter = FILTER_QS;
    int rc = cfilter_new(r, kind, ddoc, name, f->all_docs, feed_batch_back, f, &f->cf);
    if (rc == DV_ERR_INVALID)
        return rc; /* answered */
    if (rc == DV_ERR_NOTFOUND)
        return send_err(r, 500, "os_process_error", "%s", "no JavaScript query server");
    if (rc != DV_OK)
        http_send_internal(r, rc);
    return rc;
}

/* configure_filter: the builtins, and design-document filters (404 as
 * CouchDB when the design document or the function is missing; Mango
 * selectors come later and get 501). */
static int parse_filter(http_req_t *r, changes_feed *f, const json_val *body)
{
    const http_str_t *v = qs_last(r, "filter");
    if (!v || v->n == 0)
        return DV_OK;
    if (v->n == 8 && !memcmp(v->p, "_doc_ids", 8)) {
        f->filter = FILTER_DOC_IDS;
        if (r->method == HTTP_POST)
            return set_doc_ids(r, f, body ? json_object_get_cstr(body, "doc_ids") : NULL);
        json_doc jd = JSON_DOC_INIT;
        const json_val *arr;
        int rc = http_qs_json(r, "doc_ids", &jd, &arr);
        if (rc == DV_OK)
            rc = set_doc_ids(r, f, arr);
        json_doc_free(&jd);
        return rc;
    }
    if (v->n == 7 && !memcmp(v->p, "_design", 7)) {
        f->filter = FILTER_DESIGN;
        return DV_OK;
    }
    if (v->n == 9 && !memcmp(v->p, "_selector", 9)) {
        if (r->method != HTTP_POST)
            return bad_request(r, "Selector must be specified in POST payload");
        const json_val *sel = body ? json_object_get_cstr(body, "selector") : NULL;
        if (!sel || !json_is_object(sel))
            return bad_request(r, "Selector error: expected a JSON object");
        return not_implemented(r, "_selector");
    }
    char a[256], b[256];
    if (v->n == 5 && !memcmp(v->p, "_view", 5)) {
        const http_str_t *view = http_qs(r, "view");
        if (!view || view->n == 0)
            return bad_request(r, "`view` filter parameter is not provided.");
        if (split_name(view->p, view->n, a, b, sizeof a) != 2)
            return bad_request(r, "`view` must be of the form `designname/viewname`");
        if (ddoc_member(r, f->snap, a, "views", b) != DV_OK)
            return DV_ERR_INVALID;
        return use_qs_filter(r, f, CFILTER_VIEW, a, b);
    }
    if (v->p[0] == '_')
        return bad_request(r, "unknown builtin filter name");
    int parts = split_name(v->p, v->n, a, b, sizeof a);
    if (parts == 0)
        return DV_OK;
    if (parts != 2)
        return bad_request(r, "`filter` must be of the form `designname/filtername`");
    if (ddoc_member(r, f->snap, a, "filters", b) != DV_OK)
        return DV_ERR_INVALID;
    return use_qs_filter(r, f, CFILTER_JS, a, b);
}

/* ---- the handler ----------------------------------------------------------------------- */

/* CouchDB's ETag of the normal feed: a digest of the database info
 * (chttpd:make_etag({Info, Suffix})), whatever the query. */
static void feed_etag(const store_dbinfo *in, uint64_t instance, char out[35])
{
    char text[200];
    int n = snprintf(text, sizeof text, "%s-%llx-%llu-%llu-%llu-%llu-%llu-%llu", in->uuid,
                     (unsigned long long)instance, (unsigned long long)in->update_seq,
                     (unsigned long long)in->purge_seq, (unsigned long long)in->doc_count,
                     (unsigned long long)in->del_count, (unsigned long long)in->file_size,
                     (unsigned long long)in->active_size);
    out[0] = '"';
    (void)dv_md5_hex(text, (size_t)n, out + 1);
    out[33] = '"';
    out[34] = 0;
}

/* couch_httpd:etag_match: If-None-Match split on commas and spaces. */
static int etag_matches(http_req_t *r, const char *etag)
{
    const char *h = http_req_header(r, "if-none-match");
    size_t n = strlen(etag);
    while (h && *h) {
        h += strspn(h, ", ");
        size_t k = strcspn(h, ", ");
        if (k == n && !memcmp(h, etag, n))
            return 1;
        h += k;
    }
    return 0;
}

/* A feed with a query-server filter starts its response only once it has
 * something to send (CouchDB's delayed response): until then a filter
 * that throws still gets its own status.  Runs again each time a batch is
 * back, until the stream takes over. */
static void feed_kick(http_req_t *r, changes_feed *f)
{
    int rc = changes_fill(r, f, &f->pre);
    if (rc == HTTP_STREAM_WAIT && !f->sent_any)
        return; /* a batch is out: feed_batch_back calls again */
    if (rc < 0) {
        int status;
        const char *error, *reason;
        if (f->failed) {
            cfilter_error(f->cf, &status, &error, &reason);
            http_send_error(r, status, error, reason);
        } else {
            http_send_internal(r, rc);
        }
        feed_free(f);
        return;
    }
    f->pre_rc = rc;
    f->streaming = 1;
    http_stream_start(r, 200, changes_fill, feed_dispose, f); /* may free f */
}

static void feed_batch_back(http_req_t *r, void *ctx)
{
    changes_feed *f = ctx;
    if (f->streaming) {
        if (r)
            http_stream_wake(r);
    } else if (!r) {
        feed_free(f); /* the client left before the response started */
    } else {
        feed_kick(r, f);
    }
}

void http_handle_changes(http_req_t *r)
{
    json_doc jd = JSON_DOC_INIT;
    const json_val *body = NULL;
    int now = 0;
    changes_feed *f = NULL;
    db_t *db = http_open_db(r);
    if (!db)
        return;
    if (r->method == HTTP_POST) {
        size_t len;
        if (http_require_ctype(r, "application/json") != DV_OK)
            goto fail;
        if (http_req_body(r, &len) && len > 0) {
            if (http_json_body(r, &jd, &body) != DV_OK)
                goto fail;
            if (!json_is_object(body)) {
                bad_request(r, "Request body must be a JSON object");
                goto fail;
            }
        }
    }
    if (!(f = calloc(1, sizeof *f))) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    store_change_init(&f->ch);
    store_docinfo_init(&f->di);
    f->pre_rc = -1;
    const http_str_t *name = &r->match.db;
    memcpy(f->dbname, name->p, name->n); /* http_open_db checked its length */
    f->dbname[name->n] = 0;
    f->instance = db_instance(db);
    f->db = db;
    db = NULL;
    int rc = db_snapshot(f->db, &f->snap);
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        goto fail;
    }
    store_dbinfo in;
    store_snap_info(f->snap, &in);
    f->snap_seq = in.update_seq;
    if (parse_params(r, f) != DV_OK || parse_filter(r, f, body) != DV_OK || parse_since(r, f, &now) != DV_OK)
        goto fail;
    json_doc_free(&jd);
    body = NULL;
    if (now)
        f->since = in.update_seq;
    f->last_seq = f->since;
    if (f->feed == FEED_NORMAL) {
        char etag[35];
        feed_etag(&in, f->instance, etag);
        if (etag_matches(r, etag)) {
            feed_free(f);
            http_add_header(r, "ETag", etag);
            http_send_not_modified(r);
            return;
        }
        http_add_header(r, "ETag", etag);
    } else {
        f->counted = 1;
        http_stat_inc(STAT_CHANGES_CLIENTS);
    }
    if (f->feed == FEED_EVENTSOURCE) {
        http_add_header(r, "Content-Type", "text/event-stream");
        http_add_header(r, "Cache-Control", "no-cache");
    }
    if ((rc = pass_begin(r, f, f->descending)) == DV_ERR_NOTFOUND && f->cf) {
        /* the member exists but holds no function source */
        send_err(r, 404, "not_found", "%s", "missing function on design doc");
        goto fail;
    }
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        goto fail;
    }
    f->state = ST_SCAN;
    if (f->cf) {
        feed_kick(r, f);
        return;
    }
    f->streaming = 1;
    http_stream_start(r, 200, changes_fill, feed_dispose, f);
    return;
fail:
    json_doc_free(&jd);
    if (f)
        feed_free(f);
    if (db)
        db_release(db);
}
