/*
 * test_dbfile_compact.c — online compaction.
 *
 *   - a quiet database: after compaction every doc, leaf body, attachment
 *     (with stubs still sharing one stream), local doc, setting and counter
 *     is unchanged, the file is smaller, a snapshot taken before is still
 *     readable, non-leaf bodies are gone, and it all survives a reopen;
 *   - a busy one: writers (edits, deletes, locals, purges) and a reader run
 *     while it compacts twice; afterwards the data equals what the writers
 *     were acknowledged;
 *   - progress reports, DV_ERR_BUSY for a second compaction, and removal of
 *     a stale ".compact" at open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "store/dbfile.h"
#include "store/dbfile_tutil.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t fsize(const char *p)
{
    struct stat st;
    return stat(p, &st) ? 0 : (uint64_t)st.st_size;
}

static store_dbfile *open_db(const char *path, int create)
{
    store_dbfile_options o = {.create = create, .durability = STORE_DURABLE_NEVER,
                              .compression = STORE_COMPRESS_LZ4};
    store_dbfile *db = NULL;
    assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
    return db;
}

typedef struct prog {
    store_dbfile *db;
    int calls;
    uint64_t last_done, last_total;
    int busy_seen;
    int write; /* write from the callback: forces catch-up work */
    store_rev cb_rev[3];
    int cb_state[3]; /* 0 absent, 1 live, 2 purged */
    int cb_failures;
} prog;

/* Writes made while the copy runs: an edit chain, a purge, a local doc. */
static void progress_writes(prog *p)
{
    char id[16], prev[96];
    int k = p->calls % 3;
    snprintf(id, sizeof id, "cb-%d", k);
    if (p->cb_state[k] == 1 && p->calls % 4 == 0) {
        store_purge pu = {.id = (const uint8_t *)id, .idlen = strlen(id), .revs = &p->cb_rev[k], .nrevs = 1};
        store_write w = {.purges = &pu, .npurges = 1};
        if (store_dbfile_write(p->db, &w) || pu.npurged != 1)
            p->cb_failures++;
        p->cb_state[k] = 2;
    } else {
        const char *parent = p->cb_state[k] == 1 ? dt_rev_str(&p->cb_rev[k], prev) : NULL;
        if (dt_edit(p->db, id, parent, "{\"cb\":1}", 0, &p->cb_rev[k]))
            p->cb_failures++;
        p->cb_state[k] = 1;
    }
    store_local_update l = {.id = (const uint8_t *)"_local/cb", .idlen = 9, .body = (const uint8_t *)"{}",
                            .body_len = 2};
    store_write w = {.locals = &l, .nlocals = 1};
    if (p->calls == 1 && store_dbfile_write(p->db, &w))
        p->cb_failures++;
}

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
    prog *p = arg;
    p->calls++;
    if (p->write)
        progress_writes(p);
    p->last_done = done;
    p->last_total = total;
    if (done > total)
        p->busy_seen = -1000; /* reported below as a failure */
    if (p->calls == 1 && store_dbfile_compact(p->db, NULL, NULL) == DV_ERR_BUSY)
        p->busy_seen++;
}

/* Compares everything a client sees of two snapshots. */
static void same_content(store_snap *a, store_snap *b)
{
    store_dbinfo ia, ib;
    store_snap_info(a, &ia);
    store_snap_info(b, &ib);
    assert_int_equal(ia.update_seq, ib.update_seq);
    assert_int_equal(ia.purge_seq, ib.purge_seq);
    assert_int_equal(ia.doc_count, ib.doc_count);
    assert_int_equal(ia.del_count, ib.del_count);
    assert_int_equal(ia.revs_limit, ib.revs_limit);
    assert_int_equal(ia.external_size, ib.external_size);
    assert_string_equal(ia.uuid, ib.uuid);
    buf_t sa = BUF_INIT, sb = BUF_INIT;
    assert_int_equal(store_snap_security(a, &sa), DV_OK);
    assert_int_equal(store_snap_security(b, &sb), DV_OK);
    assert_int_equal(sa.len, sb.len);
    assert_memory_equal(sa.data, sb.data, sa.len);
    buf_free(&sa);
    buf_free(&sb);

    store_id_cursor *ca, *cb;
    store_docinfo da, db;
    store_docbody ba, bb;
    buf_t xa = BUF_INIT, xb = BUF_INIT;
    store_docinfo_init(&da);
    store_docinfo_init(&db);
    store_docbody_init(&ba);
    store_docbody_init(&bb);
    assert_int_equal(store_snap_iter_ids(a, NULL, &ca), DV_OK);
    assert_int_equal(store_snap_iter_ids(b, NULL, &cb), DV_OK);
    int ra, rb;
    while ((ra = store_id_cursor_next(ca, &da)) == 1) {
        rb = store_id_cursor_next(cb, &db);
        assert_int_equal(rb, 1);
        assert_int_equal(da.id.len, db.id.len);
        assert_memory_equal(da.id.data, db.id.data, da.id.len);
        assert_int_equal(da.seq, db.seq);
        assert_int_equal(da.deleted, db.deleted);
        assert_int_equal(da.tree.n, db.tree.n);
        for (uint32_t i = 0; i < da.tree.n; i++) {
            assert_true(store_rev_equal(&da.tree.nodes[i].rev, &db.tree.nodes[i].rev));
            if (!revtree_is_leaf(&da.tree, i) || !da.tree.nodes[i].has_body)
                continue;
            assert_true(db.tree.nodes[i].has_body);
            assert_int_equal(store_snap_read_body(a, da.tree.nodes[i].body, &ba), DV_OK);
            assert_int_equal(store_snap_read_body(b, db.tree.nodes[i].body, &bb), DV_OK);
            assert_int_equal(ba.body.len, bb.body.len);
            assert_memory_equal(ba.body.data, bb.body.data, ba.body.len);
            assert_int_equal(ba.natts, bb.natts);
            for (size_t k = 0; k < ba.natts; k++) {
                assert_string_equal(ba.atts[k].name, bb.atts[k].name);
                assert_string_equal(ba.atts[k].digest, bb.atts[k].digest);
                assert_int_equal(ba.atts[k].revpos, bb.atts[k].revpos);
                buf_reset(&xa);
                buf_reset(&xb);
                assert_int_equal(store_snap_read_att(a, &ba.atts[k], 0, UINT64_MAX, &xa), DV_OK);
                assert_int_equal(store_snap_read_att(b, &bb.atts[k], 0, UINT64_MAX, &xb), DV_OK);
                assert_int_equal(xa.len, xb.len);
                assert_memory_equal(xa.data, xb.data, xa.len);
            }
        }
    }
    assert_int_equal(ra, 0);
    assert_int_equal(store_id_cursor_next(cb, &db), 0);
    store_id_cursor_close(ca);
    store_id_cursor_close(cb);

    store_seq_cursor *sa2, *sb2;
    store_change cha, chb;
    store_change_init(&cha);
    store_change_init(&chb);
    assert_int_equal(store_snap_iter_changes(a, 0, 0, &sa2), DV_OK);
    assert_int_equal(store_snap_iter_changes(b, 0, 0, &sb2), DV_OK);
    while ((ra = store_seq_cursor_next(sa2, &cha)) == 1) {
        assert_int_equal(store_seq_cursor_next(sb2, &chb), 1);
        assert_int_equal(cha.seq, chb.seq);
        assert_int_equal(cha.nleaves, chb.nleaves);
        assert_int_equal(cha.id.len, chb.id.len);
        assert_memory_equal(cha.id.data, chb.id.data, cha.id.len);
        for (size_t i = 0; i < cha.nleaves; i++)
            assert_true(store_rev_equal(&cha.leaves[i].rev, &chb.leaves[i].rev));
    }
    assert_int_equal(ra, 0);
    assert_int_equal(store_seq_cursor_next(sb2, &chb), 0);
    store_seq_cursor_close(sa2);
    store_seq_cursor_close(sb2);
    store_change_free(&cha);
    store_change_free(&chb);

    store_local_cursor *la, *lb;
    buf_t ida = BUF_INIT, idb = BUF_INIT;
    uint64_t reva, revb;
    assert_int_equal(store_snap_iter_local(a, NULL, &la), DV_OK);
    assert_int_equal(store_snap_iter_local(b, NULL, &lb), DV_OK);
    while ((ra = store_local_cursor_next(la, &ida, &reva, &xa)) == 1) {
        assert_int_equal(store_local_cursor_next(lb, &idb, &revb, &xb), 1);
        assert_int_equal(ida.len, idb.len);
        assert_memory_equal(ida.data, idb.data, ida.len);
        assert_int_equal(reva, revb);
        assert_int_equal(xa.len, xb.len);
        assert_memory_equal(xa.data, xb.data, xa.len);
    }
    assert_int_equal(ra, 0);
    assert_int_equal(store_local_cursor_next(lb, &idb, &revb, &xb), 0);
    store_local_cursor_close(la);
    store_local_cursor_close(lb);
    buf_free(&ida);
    buf_free(&idb);
    buf_free(&xa);
    buf_free(&xb);
    store_docbody_free(&ba);
    store_docbody_free(&bb);
    store_docinfo_free(&da);
    store_docinfo_free(&db);
}

static void test_quiet_compaction(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("dbfile-compact");
    char *path = tu_path(dir, "c.couch");
    char *cpath = tu_path(dir, "c.couch.compact");
    /* a stale .compact is removed at open */
    FILE *fp = fopen(cpath, "w");
    fputs("junk", fp);
    fclose(fp);
    store_dbfile *db = open_db(path, 1);
    assert_int_not_equal(access(cpath, F_OK), 0);

    char body[600], prev[96];
    store_rev r;
    for (int d = 0; d < 40; d++) {
        char id[16];
        snprintf(id, sizeof id, "doc%02d", d);
        for (int k = 0; k < 15; k++) {
            snprintf(body, sizeof body, "{\"d\":%d,\"k\":%d,\"pad\":\"%0500d\"}", d, k, d * k);
            assert_int_equal(dt_edit(db, id, k ? prev : NULL, body, 0, &r), DV_OK);
            dt_rev_str(&r, prev);
        }
        if (d % 10 == 3)
            assert_int_equal(dt_edit(db, id, prev, "{}", 1, NULL), DV_OK);
    }
    /* conflicts sharing an attachment through stubs */
    uint8_t data[150000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 13);
    store_att_in att = {.name = "a.bin", .type = "application/octet-stream", .data = data, .len = sizeof data};
    store_doc_update u;
    memset(&u, 0, sizeof u);
    u.id = (const uint8_t *)"att";
    u.idlen = 3;
    u.body = (const uint8_t *)"{}";
    u.body_len = 2;
    u.atts = &att;
    u.natts = 1;
    store_write w = {.docs = &u, .ndocs = 1};
    assert_int_equal(store_dbfile_write(db, &w), DV_OK);
    assert_int_equal(u.status, DV_OK);
    store_rev base = u.rev, path2[2];
    store_att_in stub = {.name = "a.bin", .stub = 1};
    u.mode = STORE_REPLICATE;
    u.atts = &stub;
    path2[1] = base;
    for (int k = 0; k < 2; k++) {
        char s[40];
        snprintf(s, sizeof s, "2-%s", k ? "bbbb" : "aaaa");
        path2[0] = dt_rev(s);
        u.path = path2;
        u.path_len = 2;
        assert_int_equal(store_dbfile_write(db, &w), DV_OK);
        assert_int_equal(u.status, DV_OK);
    }
    /* locals, purge history, settings */
    store_local_update l = {.id = (const uint8_t *)"_local/x", .idlen = 8, .body = (const uint8_t *)"{\"c\":1}",
                            .body_len = 7};
    store_rev pr = dt_rev(prev);
    store_purge p = {.id = (const uint8_t *)"doc39", .idlen = 5, .revs = &pr, .nrevs = 1};
    store_write w2 = {.locals = &l, .nlocals = 1, .purges = &p, .npurges = 1, .set_revs_limit = 1,
                      .revs_limit = 50, .set_security = 1, .security = (const uint8_t *)"{\"m\":1}",
                      .security_len = 7};
    assert_int_equal(store_dbfile_write(db, &w2), DV_OK);
    assert_int_equal(l.status, DV_OK);
    assert_int_equal(p.npurged, 1);

    store_snap *before;
    assert_int_equal(store_dbfile_snapshot(db, &before), DV_OK);
    store_dbinfo ib;
    store_snap_info(before, &ib);
    uint64_t size_before = fsize(path);
    prog pg = {.db = db};
    assert_int_equal(store_dbfile_compact(db, on_progress, &pg), DV_OK);
    assert_true(pg.calls > 0);
    assert_int_equal(pg.busy_seen, 1);
    assert_int_equal(pg.last_done, ib.doc_count + ib.del_count);
    assert_int_not_equal(access(cpath, F_OK), 0);
    uint64_t size_after = fsize(path);
    fprintf(stderr, "[test_dbfile_compact] file %llu -> %llu bytes\n", (unsigned long long)size_before,
            (unsigned long long)size_after);
    assert_true(size_after < size_before / 3);

    store_snap *after;
    assert_int_equal(store_dbfile_snapshot(db, &after), DV_OK);
    store_dbinfo ia;
    store_snap_info(after, &ia);
    /* sizes.file is the end of the last commit; the file may go on with
     * the zeros written ahead of small commits (at most 1 MiB). */
    assert_true(ia.file_size <= size_after && size_after <= ia.file_size + (1u << 20));
    assert_true(ia.active_size <= ia.file_size);
    assert_false(ia.compact_running);
    /* the old snapshot reads the old (unlinked) file */
    same_content(before, after);
    /* stubs still share one stream; non-leaf bodies are gone */
    store_docinfo d;
    store_docbody b1, b2;
    store_docinfo_init(&d);
    store_docbody_init(&b1);
    store_docbody_init(&b2);
    assert_int_equal(store_snap_get_doc(after, (const uint8_t *)"att", 3, &d), DV_OK);
    uint32_t ia1 = revtree_find(&d.tree, &path2[0]);
    path2[0] = dt_rev("2-aaaa");
    uint32_t ia0 = revtree_find(&d.tree, &path2[0]);
    assert_int_equal(store_snap_read_body(after, d.tree.nodes[ia0].body, &b1), DV_OK);
    assert_int_equal(store_snap_read_body(after, d.tree.nodes[ia1].body, &b2), DV_OK);
    assert_int_equal(b1.atts[0].stream.off, b2.atts[0].stream.off);
    assert_false(d.tree.nodes[revtree_find(&d.tree, &base)].has_body);
    store_docbody_free(&b1);
    store_docbody_free(&b2);
    store_docinfo_free(&d);
    store_snap_release(before);

    /* writes go to the new file; everything survives a reopen */
    assert_int_equal(dt_edit(db, "post", NULL, "{\"after\":1}", 0, NULL), DV_OK);
    store_snap_release(after);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    db = open_db(path, 0);
    store_dbinfo ir = dt_info(db);
    assert_int_equal(ir.update_seq, ib.update_seq + 1);
    assert_int_equal(ir.doc_count, ib.doc_count + 1);
    assert_int_equal(ir.del_count, ib.del_count);
    assert_string_equal(ir.uuid, ib.uuid);
    buf_t got = BUF_INIT;
    char rev[96];
    assert_int_equal(dt_winner(db, "doc07", rev, &got, NULL), DV_OK);
    snprintf(body, sizeof body, "{\"d\":%d,\"k\":%d,\"pad\":\"%0500d\"}", 7, 14, 7 * 14);
    assert_int_equal(got.len, strlen(body));
    assert_memory_equal(got.data, body, got.len);
    assert_int_equal(dt_winner(db, "doc39", rev, NULL, NULL), DV_ERR_NOTFOUND);
    buf_free(&got);
    /* compacting again (nothing changed much) works too */
    assert_int_equal(store_dbfile_compact(db, NULL, NULL), DV_OK);
    assert_int_equal(dt_info(db).doc_count, ir.doc_count);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    tu_rmtree(dir);
    free(dir);
    free(path);
    free(cpath);
}

/* ---- compaction under load ------------------------------------------- */

#define NW 4
#define DOCS_PER 25

typedef struct wst {
    store_dbfile *db;
    int t;
    atomic_int *stop;
    store_rev rev[DOCS_PER];
    int has[DOCS_PER];   /* 1 live, 2 deleted, 3 purged away */
    int val[DOCS_PER];
    uint64_t local_rev;
    int local_body;
    int failures;
    long writes;
} wst;

static void *load_writer(void *arg)
{
    wst *c = arg;
    tu_rng rng = {(uint64_t)c->t * 7777 + 1};
    while (!atomic_load(c->stop) || c->writes < 200) {
        int k = (int)tu_rand_below(&rng, DOCS_PER);
        char id[16], body[64], prev[96];
        snprintf(id, sizeof id, "w%d-%02d", c->t, k);
        uint64_t op = tu_rand_below(&rng, 20);
        c->writes++;
        if (op == 0 && c->has[k] && c->has[k] != 3) { /* purge the doc's only leaf */
            store_purge p = {.id = (const uint8_t *)id, .idlen = strlen(id), .revs = &c->rev[k], .nrevs = 1};
            store_write w = {.purges = &p, .npurges = 1};
            if (store_dbfile_write(c->db, &w) || p.npurged != 1)
                c->failures++;
            c->has[k] = 3;
            continue;
        }
        if (op == 1) { /* local doc */
            char lid[24];
            snprintf(lid, sizeof lid, "_local/w%d", c->t);
            snprintf(body, sizeof body, "{\"l\":%ld}", c->writes);
            store_local_update l = {.id = (const uint8_t *)lid, .idlen = strlen(lid), .has_rev = 1,
                                    .rev = c->local_rev, .body = (const uint8_t *)body, .body_len = strlen(body)};
            store_write w = {.locals = &l, .nlocals = 1};
            if (store_dbfile_write(c->db, &w) || l.status)
                c->failures++;
            c->local_rev = l.new_rev;
            c->local_body = (int)c->writes;
            continue;
        }
        int del = op == 2 && c->has[k] == 1;
        int v = (int)c->writes;
        snprintf(body, sizeof body, "{\"v\":%d}", v);
        const char *parent = c->has[k] == 1 || c->has[k] == 2 ? dt_rev_str(&c->rev[k], prev) : NULL;
        if (dt_edit(c->db, id, parent, body, del, &c->rev[k])) {
            c->failures++;
            continue;
        }
        c->has[k] = del ? 2 : 1;
        c->val[k] = v;
    }
    return NULL;
}

static void *load_reader(void *arg)
{
    wst *c = arg; /* uses db, stop, failures */
    while (!atomic_load(c->stop)) {
        store_snap *s;
        store_dbinfo info;
        store_seq_cursor *sc;
        store_change ch;
        if (store_dbfile_snapshot(c->db, &s)) {
            c->failures++;
            continue;
        }
        store_snap_info(s, &info);
        store_change_init(&ch);
        uint64_t n = 0;
        int rc;
        if (store_snap_iter_changes(s, 0, 0, &sc) == DV_OK) {
            while ((rc = store_seq_cursor_next(sc, &ch)) == 1) {
                store_docbody b;
                store_docbody_init(&b);
                if (!ch.leaves[0].deleted && store_snap_read_body(s, ch.leaves[0].body, &b))
                    c->failures++;
                store_docbody_free(&b);
                n++;
            }
            if (rc)
                c->failures++;
            store_seq_cursor_close(sc);
        }
        if (n != info.doc_count + info.del_count)
            c->failures++;
        store_change_free(&ch);
        store_snap_release(s);
        c->writes++;
    }
    return NULL;
}

static void test_compaction_under_load(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("dbfile-compact-load");
    char *path = tu_path(dir, "l.couch");
    store_dbfile *db = open_db(path, 1);
    atomic_int stop = 0;
    wst w[NW + 1];
    pthread_t th[NW + 1];
    memset(w, 0, sizeof w);
    for (int i = 0; i <= NW; i++) {
        w[i].db = db;
        w[i].t = i;
        w[i].stop = &stop;
        assert_int_equal(pthread_create(&th[i], NULL, i < NW ? load_writer : load_reader, &w[i]), 0);
    }
    usleep(20000);
    int rounds = (int)tu_iterations(3);
    for (int r = 0; r < rounds; r++) {
        prog pg = {.db = db, .write = 1};
        assert_int_equal(store_dbfile_compact(db, on_progress, &pg), DV_OK);
        assert_true(pg.busy_seen >= 0);
        assert_int_equal(pg.cb_failures, 0);
        for (int k = 0; k < 3; k++) {
            char id[16], rev[96], want[96];
            snprintf(id, sizeof id, "cb-%d", k);
            int rc = dt_winner(db, id, rev, NULL, NULL);
            if (pg.cb_state[k] == 1) {
                assert_int_equal(rc, DV_OK);
                assert_string_equal(rev, dt_rev_str(&pg.cb_rev[k], want));
            } else {
                assert_int_equal(rc, DV_ERR_NOTFOUND);
            }
            /* leave nothing behind for the final counts */
            if (rc == DV_OK) {
                store_purge pu = {.id = (const uint8_t *)id, .idlen = strlen(id), .revs = &pg.cb_rev[k], .nrevs = 1};
                store_write pw = {.purges = &pu, .npurges = 1};
                assert_int_equal(store_dbfile_write(db, &pw), DV_OK);
                assert_int_equal(pu.npurged, 1);
            }
        }
        usleep(10000);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i <= NW; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(w[NW].failures, 0);
    assert_true(w[NW].writes > 0);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t live = 0, dead = 0;
        for (int t = 0; t < NW; t++) {
            assert_int_equal(w[t].failures, 0);
            for (int k = 0; k < DOCS_PER; k++) {
                char id[16], rev[96], want[96];
                buf_t body = BUF_INIT;
                int deleted = 0;
                snprintf(id, sizeof id, "w%d-%02d", t, k);
                int rc = dt_winner(db, id, rev, &body, &deleted);
                if (w[t].has[k] == 0 || w[t].has[k] == 3) {
                    assert_int_equal(rc, DV_ERR_NOTFOUND);
                } else {
                    assert_int_equal(rc, DV_OK);
                    assert_string_equal(rev, dt_rev_str(&w[t].rev[k], want));
                    assert_int_equal(deleted, w[t].has[k] == 2);
                    char vb[64];
                    snprintf(vb, sizeof vb, "{\"v\":%d}", w[t].val[k]);
                    assert_int_equal(body.len, strlen(vb));
                    assert_memory_equal(body.data, vb, body.len);
                    if (w[t].has[k] == 1)
                        live++;
                    else
                        dead++;
                }
                buf_free(&body);
            }
            if (w[t].local_rev) {
                char lid[24], lb[64];
                uint64_t rev;
                buf_t body = BUF_INIT;
                store_snap *s;
                snprintf(lid, sizeof lid, "_local/w%d", t);
                snprintf(lb, sizeof lb, "{\"l\":%d}", w[t].local_body);
                assert_int_equal(store_dbfile_snapshot(db, &s), DV_OK);
                assert_int_equal(store_snap_get_local(s, (const uint8_t *)lid, strlen(lid), &rev, &body), DV_OK);
                assert_int_equal(rev, w[t].local_rev);
                assert_int_equal(body.len, strlen(lb));
                assert_memory_equal(body.data, lb, body.len);
                store_snap_release(s);
                buf_free(&body);
            }
        }
        store_dbinfo i = dt_info(db);
        assert_int_equal(i.doc_count, live);
        assert_int_equal(i.del_count, dead);
        /* changes: one entry per doc */
        store_snap *s;
        store_seq_cursor *sc;
        store_change ch;
        store_change_init(&ch);
        assert_int_equal(store_dbfile_snapshot(db, &s), DV_OK);
        assert_int_equal(store_snap_iter_changes(s, 0, 0, &sc), DV_OK);
        uint64_t n = 0;
        while (store_seq_cursor_next(sc, &ch) == 1)
            n++;
        assert_int_equal(n, live + dead);
        store_seq_cursor_close(sc);
        store_change_free(&ch);
        store_snap_release(s);
        assert_int_equal(store_dbfile_close(db), DV_OK);
        db = open_db(path, 0);
    }
    assert_int_equal(store_dbfile_close(db), DV_OK);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quiet_compaction),
        cmocka_unit_test(test_compaction_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
