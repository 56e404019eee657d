/*
 * test_dbfile.c — behaviour of one database file through store/dbfile.h:
 * create/open/reopen, edits and conflicts, replicated conflicts and
 * winners, local docs, purge, stemming, security, attachments (digests,
 * stubs sharing streams, ranges), compression, info, cursors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "store/dbfile.h"
#include "store/dbfile_int.h" /* dbf_att_part_chunks */
#include "store/dbfile_tutil.h"
#include "testutil.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct fx {
    char *dir;
    char *path;
    store_dbfile *db;
} fx;

static store_dbfile *open_db(const char *path, int compression)
{
    store_dbfile_options o = {0};
    o.create = 1;
    o.compression = compression;
    store_dbfile *db = NULL;
    assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
    return db;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp("dbfile");
    f->path = tu_path(f->dir, "db.couch");
    f->db = open_db(f->path, STORE_COMPRESS_NONE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->db)
        assert_int_equal(store_dbfile_close(f->db), DV_OK);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void reopen(fx *f)
{
    assert_int_equal(store_dbfile_close(f->db), DV_OK);
    store_dbfile_options o = {0};
    f->db = NULL;
    assert_int_equal(store_dbfile_open(f->path, &o, &f->db), DV_OK);
}

static void test_create_open_reopen(void **state)
{
    fx *f = *state;
    store_dbinfo a = dt_info(f->db);
    assert_int_equal(strlen(a.uuid), 32);
    assert_int_equal(a.update_seq, 0);
    assert_int_equal(a.revs_limit, 1000);
    assert_int_equal(a.doc_count, 0);
    assert_int_equal(dt_edit(f->db, "a", NULL, "{\"x\":1}", 0, NULL), DV_OK);
    reopen(f);
    store_dbinfo b = dt_info(f->db);
    assert_string_equal(a.uuid, b.uuid);
    assert_int_equal(b.update_seq, 1);
    assert_int_equal(b.doc_count, 1);
    buf_t body = BUF_INIT;
    char rev[96];
    assert_int_equal(dt_winner(f->db, "a", rev, &body, NULL), DV_OK);
    assert_memory_equal(body.data, "{\"x\":1}", 7);
    buf_free(&body);

    /* excl on an existing file, and open without create of a missing one */
    store_dbfile_options o = {.create = 1, .excl = 1};
    store_dbfile *db2 = NULL;
    assert_int_equal(store_dbfile_open(f->path, &o, &db2), DV_ERR_EXISTS);
    char *missing = tu_path(f->dir, "missing.couch");
    store_dbfile_options o2 = {0};
    assert_int_not_equal(store_dbfile_open(missing, &o2, &db2), DV_OK);
    /* a fresh db has another uuid */
    store_dbfile *db3 = open_db(missing, 0);
    store_dbinfo c = dt_info(db3);
    assert_string_not_equal(c.uuid, a.uuid);
    assert_int_equal(store_dbfile_close(db3), DV_OK);
    free(missing);
}

static void test_edit_conflict_delete_recreate(void **state)
{
    fx *f = *state;
    store_rev r1, r2, r3, r4;
    char s1[96], s2[96], s3[96];
    assert_int_equal(dt_edit(f->db, "doc", NULL, "{\"v\":1}", 0, &r1), DV_OK);
    assert_int_equal(r1.pos, 1);
    assert_int_equal(r1.len, 32);
    dt_rev_str(&r1, s1);
    /* no parent while a live leaf exists: conflict */
    assert_int_equal(dt_edit(f->db, "doc", NULL, "{\"v\":2}", 0, NULL), DV_ERR_CONFLICT);
    assert_int_equal(dt_edit(f->db, "doc", s1, "{\"v\":2}", 0, &r2), DV_OK);
    assert_int_equal(r2.pos, 2);
    dt_rev_str(&r2, s2);
    /* stale parent */
    assert_int_equal(dt_edit(f->db, "doc", s1, "{\"v\":3}", 0, NULL), DV_ERR_CONFLICT);
    /* unknown parent */
    assert_int_equal(dt_edit(f->db, "doc", "1-abc", "{}", 0, NULL), DV_ERR_CONFLICT);
    assert_int_equal(dt_info(f->db).update_seq, 2);
    /* delete */
    assert_int_equal(dt_edit(f->db, "doc", s2, "{}", 1, &r3), DV_OK);
    dt_rev_str(&r3, s3);
    int deleted = 0;
    char w[96];
    assert_int_equal(dt_winner(f->db, "doc", w, NULL, &deleted), DV_OK);
    assert_true(deleted);
    assert_string_equal(w, s3);
    store_dbinfo i = dt_info(f->db);
    assert_int_equal(i.doc_count, 0);
    assert_int_equal(i.del_count, 1);
    /* recreate without a rev extends the deleted leaf */
    assert_int_equal(dt_edit(f->db, "doc", NULL, "{\"v\":4}", 0, &r4), DV_OK);
    assert_int_equal(r4.pos, 4);
    assert_int_equal(dt_winner(f->db, "doc", NULL, NULL, &deleted), DV_OK);
    assert_false(deleted);
    i = dt_info(f->db);
    assert_int_equal(i.doc_count, 1);
    assert_int_equal(i.del_count, 0);
    assert_int_equal(i.update_seq, 4);
    /* the same edit on another db gives the same rev (deterministic ids) */
    assert_int_equal(dt_edit(f->db, "other", NULL, "{\"v\":1}", 0, &r2), DV_OK);
    assert_string_equal(dt_rev_str(&r2, s2), s1);
    /* two edits of one doc in a single batch see each other */
    store_doc_update u[2];
    memset(u, 0, sizeof u);
    for (int k = 0; k < 2; k++) {
        u[k].id = (const uint8_t *)"pair";
        u[k].idlen = 4;
        u[k].body = (const uint8_t *)"{}";
        u[k].body_len = 2;
    }
    store_write wr = {.docs = u, .ndocs = 2};
    assert_int_equal(store_dbfile_write(f->db, &wr), DV_OK);
    assert_int_equal(u[0].status, DV_OK);
    assert_int_equal(u[1].status, DV_ERR_CONFLICT);
    u[1].has_parent = 1;
    u[1].parent = u[0].rev;
    u[0].has_parent = 0;
    u[0].id = (const uint8_t *)"pair2";
    u[0].idlen = 5;
    u[1].id = (const uint8_t *)"pair2";
    u[1].idlen = 5;
    assert_int_equal(store_dbfile_write(f->db, &wr), DV_OK);
    assert_int_equal(u[0].status, DV_OK);
    assert_int_equal(u[1].status, DV_OK);
    assert_int_equal(u[1].rev.pos, 2);
    assert_true(u[1].seq > u[0].seq);
}

static void test_replicated_conflicts(void **state)
{
    fx *f = *state;
    assert_int_equal(dt_replicate(f->db, "d", "2-aaa 1-root", "{\"b\":\"a\"}", 0), DV_OK);
    assert_int_equal(dt_replicate(f->db, "d", "3-bbb 2-bbb 1-root", "{\"b\":\"b\"}", 0), DV_OK);
    assert_int_equal(dt_replicate(f->db, "d", "2-zzz 1-root", "{\"b\":\"z\"}", 1), DV_OK);
    /* re-sending a known leaf changes nothing */
    uint64_t seq = dt_info(f->db).update_seq;
    assert_int_equal(dt_replicate(f->db, "d", "2-aaa 1-root", "{\"other\":1}", 0), DV_OK);
    assert_int_equal(dt_info(f->db).update_seq, seq);
    char w[96];
    buf_t body = BUF_INIT;
    assert_int_equal(dt_winner(f->db, "d", w, &body, NULL), DV_OK);
    assert_string_equal(w, "3-bbb");
    assert_int_equal(body.len, 9);
    assert_memory_equal(body.data, "{\"b\":\"b\"}", 9);
    buf_free(&body);
    /* leaves: 3-bbb (winner), 2-aaa (conflict), 2-zzz (deleted conflict) */
    store_snap *s;
    store_docinfo d;
    store_docinfo_init(&d);
    assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
    assert_int_equal(store_snap_get_doc(s, (const uint8_t *)"d", 1, &d), DV_OK);
    uint32_t idx[16], n = 0;
    assert_true(d.tree.n <= 16);
    revtree_leaves(&d.tree, idx, &n);
    assert_int_equal(n, 3);
    char r[96];
    assert_string_equal(dt_rev_str(&d.tree.nodes[idx[0]].rev, r), "3-bbb");
    assert_string_equal(dt_rev_str(&d.tree.nodes[idx[1]].rev, r), "2-aaa");
    assert_false(d.tree.nodes[idx[1]].deleted);
    assert_true(d.tree.nodes[idx[2]].deleted);
    /* the changes feed lists the doc once, with its three leaves */
    store_seq_cursor *c;
    store_change ch;
    store_change_init(&ch);
    assert_int_equal(store_snap_iter_changes(s, 0, 0, &c), DV_OK);
    assert_int_equal(store_seq_cursor_next(c, &ch), 1);
    assert_int_equal(ch.nleaves, 3);
    assert_int_equal(ch.seq, seq);
    assert_string_equal(dt_rev_str(&ch.leaves[0].rev, r), "3-bbb");
    assert_int_equal(store_seq_cursor_next(c, &ch), 0);
    store_seq_cursor_close(c);
    store_change_free(&ch);
    store_docinfo_free(&d);
    store_snap_release(s);
    /* a non-consecutive path is invalid */
    assert_int_equal(dt_replicate(f->db, "e", "3-x 1-y", "{}", 0), DV_ERR_INVALID);
}

static void test_locals(void **state)
{
    fx *f = *state;
    store_local_update l;
    memset(&l, 0, sizeof l);
    l.id = (const uint8_t *)"_local/cp";
    l.idlen = 9;
    l.body = (const uint8_t *)"{\"a\":1}";
    l.body_len = 7;
    store_write w = {.locals = &l, .nlocals = 1};
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(l.status, DV_OK);
    assert_int_equal(l.new_rev, 1);
    /* no rev while it exists: conflict; wrong rev: conflict */
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(l.status, DV_ERR_CONFLICT);
    l.has_rev = 1;
    l.rev = 7;
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(l.status, DV_ERR_CONFLICT);
    l.rev = 1;
    l.body = (const uint8_t *)"{\"a\":2}";
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(l.status, DV_OK);
    assert_int_equal(l.new_rev, 2);
    reopen(f);
    store_snap *s;
    uint64_t rev = 0;
    buf_t body = BUF_INIT, id = BUF_INIT;
    assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
    assert_int_equal(store_snap_get_local(s, (const uint8_t *)"_local/cp", 9, &rev, &body), DV_OK);
    assert_int_equal(rev, 2);
    assert_memory_equal(body.data, "{\"a\":2}", 7);
    store_local_cursor *c;
    assert_int_equal(store_snap_iter_local(s, NULL, &c), DV_OK);
    assert_int_equal(store_local_cursor_next(c, &id, &rev, &body), 1);
    assert_int_equal(id.len, 9);
    assert_int_equal(store_local_cursor_next(c, &id, &rev, &body), 0);
    store_local_cursor_close(c);
    /* locals are not documents: not counted, not in changes */
    store_dbinfo i;
    store_snap_info(s, &i);
    assert_int_equal(i.doc_count, 0);
    assert_int_equal(i.update_seq, 0);
    store_snap_release(s);
    /* delete with the right rev, then delete of an absent local */
    l.deleted = 1;
    l.rev = 2;
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(l.status, DV_OK);
    l.has_rev = 0;
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(l.status, DV_ERR_NOTFOUND);
    assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
    assert_int_equal(store_snap_get_local(s, (const uint8_t *)"_local/cp", 9, &rev, &body), DV_ERR_NOTFOUND);
    store_snap_release(s);
    buf_free(&body);
    buf_free(&id);
}

static void test_purge(void **state)
{
    fx *f = *state;
    assert_int_equal(dt_replicate(f->db, "p", "2-a 1-r", "{}", 0), DV_OK);
    assert_int_equal(dt_replicate(f->db, "p", "2-b 1-r", "{}", 0), DV_OK);
    assert_int_equal(dt_edit(f->db, "q", NULL, "{}", 0, NULL), DV_OK);
    store_rev revs[2] = {dt_rev("2-b"), dt_rev("1-r")};
    uint8_t flags[2];
    store_purge p = {.id = (const uint8_t *)"p", .idlen = 1, .revs = revs, .nrevs = 2, .purged = flags};
    store_write w = {.purges = &p, .npurges = 1};
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(p.status, DV_OK);
    assert_int_equal(p.npurged, 1); /* 1-r is not a leaf */
    assert_int_equal(flags[0], 1);
    assert_int_equal(flags[1], 0);
    store_dbinfo i = dt_info(f->db);
    assert_int_equal(i.purge_seq, 1);
    assert_int_equal(i.doc_count, 2);
    char win[96];
    assert_int_equal(dt_winner(f->db, "p", win, NULL, NULL), DV_OK);
    assert_string_equal(win, "2-a");
    /* purging the last leaf removes the doc everywhere */
    revs[0] = dt_rev("2-a");
    p.nrevs = 1;
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(p.npurged, 1);
    reopen(f);
    i = dt_info(f->db);
    assert_int_equal(i.purge_seq, 2);
    assert_int_equal(i.doc_count, 1);
    assert_int_equal(dt_winner(f->db, "p", win, NULL, NULL), DV_ERR_NOTFOUND);
    store_snap *s;
    store_seq_cursor *c;
    store_change ch;
    store_change_init(&ch);
    assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
    assert_int_equal(store_snap_iter_changes(s, 0, 0, &c), DV_OK);
    assert_int_equal(store_seq_cursor_next(c, &ch), 1);
    assert_memory_equal(ch.id.data, "q", 1);
    assert_int_equal(store_seq_cursor_next(c, &ch), 0);
    store_seq_cursor_close(c);
    store_change_free(&ch);
    store_snap_release(s);
    /* purge of an unknown doc: nothing */
    p.id = (const uint8_t *)"nope";
    p.idlen = 4;
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(p.npurged, 0);
    assert_int_equal(dt_info(f->db).purge_seq, 2);
}

static void test_revs_limit_and_security(void **state)
{
    fx *f = *state;
    store_write w = {.set_revs_limit = 1, .revs_limit = 3, .set_security = 1,
                     .security = (const uint8_t *)"{\"admins\":{}}", .security_len = 13};
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    store_rev r;
    char prev[96] = "";
    for (int k = 0; k < 10; k++) {
        char body[32];
        snprintf(body, sizeof body, "{\"k\":%d}", k);
        assert_int_equal(dt_edit(f->db, "s", k ? prev : NULL, body, 0, &r), DV_OK);
        dt_rev_str(&r, prev);
    }
    reopen(f);
    store_snap *s;
    store_docinfo d;
    buf_t sec = BUF_INIT;
    store_docinfo_init(&d);
    assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
    assert_int_equal(store_snap_get_doc(s, (const uint8_t *)"s", 1, &d), DV_OK);
    assert_int_equal(d.tree.n, 3);
    assert_int_equal(d.tree.nodes[revtree_winner(&d.tree)].rev.pos, 10);
    store_dbinfo i;
    store_snap_info(s, &i);
    assert_int_equal(i.revs_limit, 3);
    assert_int_equal(store_snap_security(s, &sec), DV_OK);
    assert_int_equal(sec.len, 13);
    assert_memory_equal(sec.data, "{\"admins\":{}}", 13);
    store_docinfo_free(&d);
    store_snap_release(s);
    buf_free(&sec);
}

static void md5_b64(const uint8_t *p, size_t n, char out[64])
{
    unsigned char md[16];
    unsigned len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    for (size_t off = 0; off < n; off += 1000) /* piecewise, unlike the store */
        EVP_DigestUpdate(ctx, p + off, n - off < 1000 ? n - off : 1000);
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    strcpy(out, "md5-");
    EVP_EncodeBlock((unsigned char *)out + 4, md, 16);
}

static void test_attachments(void **state)
{
    fx *f = *state;
    size_t n = 200000; /* several chunks */
    uint8_t *data = malloc(n);
    tu_rng rng = {42};
    for (size_t k = 0; k < n; k++)
        data[k] = (uint8_t)(k % 7 == 0 ? tu_rand(&rng) : 'a' + k % 13);
    store_att_in a[2];
    memset(a, 0, sizeof a);
    a[0].name = "big.bin";
    a[0].type = "application/octet-stream";
    a[0].data = data;
    a[0].len = n;
    a[1].name = "small.txt";
    a[1].type = "text/plain";
    a[1].data = (const uint8_t *)"hello";
    a[1].len = 5;
    store_doc_update u;
    memset(&u, 0, sizeof u);
    u.id = (const uint8_t *)"att";
    u.idlen = 3;
    u.body = (const uint8_t *)"{}";
    u.body_len = 2;
    u.atts = a;
    u.natts = 2;
    store_write w = {.docs = &u, .ndocs = 1};
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(u.status, DV_OK);
    store_rev r1 = u.rev;
    /* second rev: keep big.bin as a stub, drop small.txt */
    store_att_in stub = {.name = "big.bin", .stub = 1};
    u.atts = &stub;
    u.natts = 1;
    u.has_parent = 1;
    u.parent = r1;
    u.body = (const uint8_t *)"{\"v\":2}";
    u.body_len = 7;
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(u.status, DV_OK);
    store_rev r2 = u.rev;
    /* a stub naming nothing in the parent */
    store_att_in bad = {.name = "small.txt", .stub = 1};
    u.atts = &bad;
    u.parent = r2;
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(u.status, DV_ERR_MISSING_STUB);
    reopen(f);

    store_snap *s;
    store_docinfo d;
    store_docbody b1, b2;
    store_docinfo_init(&d);
    store_docbody_init(&b1);
    store_docbody_init(&b2);
    assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
    assert_int_equal(store_snap_get_doc(s, (const uint8_t *)"att", 3, &d), DV_OK);
    uint32_t i1 = revtree_find(&d.tree, &r1), i2 = revtree_find(&d.tree, &r2);
    assert_int_not_equal(i1, REVTREE_NONE);
    assert_int_not_equal(i2, REVTREE_NONE);
    assert_int_equal(store_snap_read_body(s, d.tree.nodes[i1].body, &b1), DV_OK);
    assert_int_equal(store_snap_read_body(s, d.tree.nodes[i2].body, &b2), DV_OK);
    assert_int_equal(b1.natts, 2);
    assert_int_equal(b2.natts, 1);
    assert_memory_equal(b2.body.data, "{\"v\":2}", 7);
    assert_string_equal(b2.atts[0].name, "big.bin");
    assert_string_equal(b1.atts[1].type, "text/plain");
    /* the stub shares the stream: same index record */
    assert_int_equal(b2.atts[0].stream.off, b1.atts[0].stream.off);
    assert_int_equal(b2.atts[0].revpos, 1);
    assert_int_equal(b2.atts[0].length, n);
    char md5[64];
    md5_b64(data, n, md5);
    assert_string_equal(b2.atts[0].digest, md5);
    md5_b64((const uint8_t *)"hello", 5, md5);
    assert_string_equal(b1.atts[1].digest, md5);
    /* Rev ids: r1's was computed before queueing (new attachments only),
     * r2's by the writer (a stub's digest comes from the parent): both are
     * the documented function of deleted, parent, body and digests. */
    char big_md5[64], rid[33];
    md5_b64(data, n, big_md5);
    const char *d1[2] = {big_md5, md5};
    revtree_compute_rev_id(0, NULL, (const uint8_t *)"{}", 2, d1, 2, rid);
    assert_int_equal(r1.pos, 1);
    assert_memory_equal(r1.id, rid, 32);
    revtree_compute_rev_id(0, &r1, (const uint8_t *)"{\"v\":2}", 7, d1, 1, rid);
    assert_int_equal(r2.pos, 2);
    assert_memory_equal(r2.id, rid, 32);
    /* whole and ranged reads, across chunk boundaries, clamped at the end */
    buf_t out = BUF_INIT;
    assert_int_equal(store_snap_read_att(s, &b2.atts[0], 0, n, &out), DV_OK);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, data, n);
    uint64_t offs[][2] = {{0, 1}, {65535, 2}, {65536, 65536}, {100, 150000}, {n - 10, 100}, {n, 5}};
    for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
        buf_reset(&out);
        assert_int_equal(store_snap_read_att(s, &b2.atts[0], offs[k][0], offs[k][1], &out), DV_OK);
        uint64_t want = offs[k][0] >= n ? 0 : (offs[k][1] < n - offs[k][0] ? offs[k][1] : n - offs[k][0]);
        assert_int_equal(out.len, want);
        if (want)
            assert_memory_equal(out.data, data + offs[k][0], want);
    }
    buf_free(&out);
    store_docbody_free(&b1);
    store_docbody_free(&b2);
    store_docinfo_free(&d);
    store_snap_release(s);
    free(data);
}

/* Attachments past one index part (lowered here from 1024 chunks to 3)
 * use a two-level index: ranged reads and compaction must see the same
 * bytes as with a flat one. */
static void test_two_level_attachment_index(void **state)
{
    fx *f = *state;
    size_t saved = dbf_att_part_chunks;
    dbf_att_part_chunks = 3;
    size_t n = 1000000; /* 16 chunks: 6 parts */
    uint8_t *data = malloc(n);
    tu_rng rng = {7};
    for (size_t k = 0; k < n; k++)
        data[k] = (uint8_t)(k % 3 ? 'x' : tu_rand(&rng));
    store_att_in a = {.name = "big", .type = "x/y", .data = data, .len = n};
    store_doc_update u;
    memset(&u, 0, sizeof u);
    u.id = (const uint8_t *)"big";
    u.idlen = 3;
    u.atts = &a;
    u.natts = 1;
    store_write w = {.docs = &u, .ndocs = 1};
    assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
    assert_int_equal(u.status, DV_OK);
    for (int pass = 0; pass < 2; pass++) {
        store_snap *s;
        store_docinfo d;
        store_docbody b;
        buf_t out = BUF_INIT;
        store_docinfo_init(&d);
        store_docbody_init(&b);
        assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
        assert_int_equal(store_snap_get_doc(s, (const uint8_t *)"big", 3, &d), DV_OK);
        assert_int_equal(store_snap_read_body(s, d.tree.nodes[0].body, &b), DV_OK);
        assert_int_equal(b.atts[0].length, n);
        assert_int_equal(store_snap_read_att(s, &b.atts[0], 0, UINT64_MAX, &out), DV_OK);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, data, n);
        for (int k = 0; k < 50; k++) {
            uint64_t off = tu_rand_below(&rng, n + 10), len = tu_rand_below(&rng, 300000);
            buf_reset(&out);
            assert_int_equal(store_snap_read_att(s, &b.atts[0], off, len, &out), DV_OK);
            uint64_t want = off >= n ? 0 : (len < n - off ? len : n - off);
            assert_int_equal(out.len, want);
            if (want)
                assert_memory_equal(out.data, data + off, want);
        }
        buf_free(&out);
        store_docbody_free(&b);
        store_docinfo_free(&d);
        store_snap_release(s);
        if (pass == 0) /* the copy rebuilds the index */
            assert_int_equal(store_dbfile_compact(f->db, NULL, NULL), DV_OK);
    }
    dbf_att_part_chunks = saved;
    free(data);
}

static void test_compression_modes(void **state)
{
    fx *f = *state;
    char body[8192];
    size_t len = 0;
    len += (size_t)snprintf(body, sizeof body, "{\"text\":\"");
    while (len < 7000)
        len += (size_t)snprintf(body + len, sizeof body - len, "lorem ipsum dolor %zu ", len % 10);
    len += (size_t)snprintf(body + len, sizeof body - len, "\"}");
    uint64_t sizes[3];
    for (int mode = 0; mode < 3; mode++) {
        char name[32];
        snprintf(name, sizeof name, "c%d.couch", mode);
        char *p = tu_path(f->dir, name);
        store_dbfile *db = open_db(p, mode);
        for (int k = 0; k < 20; k++) {
            char id[16];
            snprintf(id, sizeof id, "doc%d", k);
            assert_int_equal(dt_edit(db, id, NULL, body, 0, NULL), DV_OK);
        }
        buf_t got = BUF_INIT;
        assert_int_equal(dt_winner(db, "doc7", NULL, &got, NULL), DV_OK);
        assert_int_equal(got.len, len);
        assert_memory_equal(got.data, body, len);
        buf_free(&got);
        store_dbinfo i = dt_info(db);
        assert_true(i.external_size >= 20 * len);
        sizes[mode] = i.file_size;
        assert_int_equal(store_dbfile_close(db), DV_OK);
        /* readable after reopen whatever the option now says */
        store_dbfile *db2 = open_db(p, (mode + 1) % 3);
        assert_int_equal(dt_winner(db2, "doc19", NULL, &got, NULL), DV_OK);
        assert_int_equal(got.len, len);
        buf_free(&got);
        /* compaction under the new option rewrites the bodies with it (a
         * body stored with the current option is copied as stored) */
        assert_int_equal(store_dbfile_compact(db2, NULL, NULL), DV_OK);
        uint64_t compacted = dt_info(db2).file_size;
        assert_int_equal(store_dbfile_compact(db2, NULL, NULL), DV_OK);
        assert_int_equal(dt_info(db2).file_size, compacted); /* copied as stored: same bytes */
        assert_int_equal(dt_winner(db2, "doc3", NULL, &got, NULL), DV_OK);
        assert_int_equal(got.len, len);
        assert_memory_equal(got.data, body, len);
        buf_free(&got);
        if (mode == 0) /* none -> lz4 */
            assert_true(compacted < sizes[0] / 2);
        if (mode == 2) /* zstd -> none */
            assert_true(compacted > 20 * len);
        assert_int_equal(store_dbfile_close(db2), DV_OK);
        free(p);
    }
    assert_true(sizes[1] < sizes[0] / 2);
    assert_true(sizes[2] < sizes[0] / 2);
}

static void test_info_sizes(void **state)
{
    fx *f = *state;
    char body[1024];
    memset(body, 'x', sizeof body);
    body[0] = '"';
    body[sizeof body - 1] = 0;
    store_rev r;
    char prev[96];
    assert_int_equal(dt_edit(f->db, "a", NULL, body, 0, &r), DV_OK);
    store_dbinfo i1 = dt_info(f->db);
    assert_true(i1.external_size >= 1023);
    assert_true(i1.active_size >= 1023);
    assert_true(i1.active_size <= i1.file_size);
    /* overwriting keeps the live sizes, the file grows */
    for (int k = 0; k < 20; k++) {
        assert_int_equal(dt_edit(f->db, "a", dt_rev_str(&r, prev), body, 0, &r), DV_OK);
    }
    store_dbinfo i2 = dt_info(f->db);
    assert_int_equal(i2.external_size, i1.external_size);
    assert_true(i2.active_size < i1.active_size + 2048);
    assert_true(i2.file_size > i1.file_size + 20 * 1023);
    assert_int_equal(i2.doc_count, 1);
    assert_int_equal(i2.update_seq, 21);
    assert_int_equal(dt_edit(f->db, "a", dt_rev_str(&r, prev), "{}", 1, &r), DV_OK);
    store_dbinfo i3 = dt_info(f->db);
    assert_int_equal(i3.doc_count, 0);
    assert_int_equal(i3.del_count, 1);
    assert_true(i3.external_size < 100);
    assert_false(i3.compact_running);
}

static void test_cursors(void **state)
{
    fx *f = *state;
    /* 300 docs, each edited a few times: changes lists each doc once */
    store_rev revs[300];
    char id[32], prev[96];
    for (int round = 0; round < 3; round++) {
        store_doc_update u[300];
        memset(u, 0, sizeof u);
        char ids[300][16];
        for (int k = 0; k < 300; k++) {
            snprintf(ids[k], sizeof ids[k], "id%04d", (k * 7919) % 300);
            u[k].id = (const uint8_t *)ids[k];
            u[k].idlen = strlen(ids[k]);
            u[k].body = (const uint8_t *)"{}";
            u[k].body_len = 2;
            int num = (k * 7919) % 300;
            if (round) {
                u[k].has_parent = 1;
                u[k].parent = revs[num];
            }
        }
        if (round == 2) /* only the even ones in the last round */
            for (int k = 0; k < 300; k++)
                if (((k * 7919) % 300) % 2)
                    u[k].id = NULL, u[k].idlen = 0;
        store_write w = {.docs = u, .ndocs = 300};
        assert_int_equal(store_dbfile_write(f->db, &w), DV_OK);
        for (int k = 0; k < 300; k++) {
            int num = (k * 7919) % 300;
            if (round == 2 && num % 2) {
                assert_int_equal(u[k].status, DV_ERR_INVALID);
                continue;
            }
            assert_int_equal(u[k].status, DV_OK);
            revs[num] = u[k].rev;
        }
    }
    store_snap *s;
    assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
    store_dbinfo info;
    store_snap_info(s, &info);
    assert_int_equal(info.update_seq, 750);
    store_seq_cursor *c;
    store_change ch;
    store_change_init(&ch);
    assert_int_equal(store_snap_iter_changes(s, 0, 0, &c), DV_OK);
    int count = 0, rc;
    uint64_t last = 0;
    while ((rc = store_seq_cursor_next(c, &ch)) == 1) {
        assert_true(ch.seq > last);
        last = ch.seq;
        int num = atoi((const char *)ch.id.data + 2);
        /* the latest seq of each doc: odd ones changed in round 2 (600+) */
        if (num % 2)
            assert_true(ch.seq > 300 && ch.seq <= 600);
        else
            assert_true(ch.seq > 600);
        assert_true(store_rev_equal(&ch.leaves[0].rev, &revs[num]));
        count++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(count, 300);
    store_seq_cursor_close(c);
    /* since */
    assert_int_equal(store_snap_iter_changes(s, 700, 0, &c), DV_OK);
    count = 0;
    while (store_seq_cursor_next(c, &ch) == 1)
        count++;
    assert_int_equal(count, 50);
    store_seq_cursor_close(c);
    /* pending counts agree with the cursor, at and between entries */
    uint64_t pend = 0;
    assert_int_equal(store_snap_count_changes_since(s, 700, &pend), DV_OK);
    assert_int_equal(pend, 50);
    assert_int_equal(store_snap_count_changes_since(s, 0, &pend), DV_OK);
    assert_int_equal(pend, 300);
    assert_int_equal(store_snap_count_changes_since(s, 750, &pend), DV_OK);
    assert_int_equal(pend, 0);
    assert_int_equal(store_snap_count_changes_since(s, 749, &pend), DV_OK);
    assert_int_equal(pend, 1);
    assert_int_equal(store_snap_iter_changes(s, 0, 1, &c), DV_OK);
    assert_int_equal(store_seq_cursor_next(c, &ch), 1);
    assert_int_equal(ch.seq, 750);
    store_seq_cursor_close(c);
    store_change_free(&ch);

    /* id ranges */
    store_btree_range r = STORE_BTREE_RANGE_ALL;
    r.has_start = 1;
    r.start = (store_slice){(const uint8_t *)"id0100", 6};
    r.has_end = 1;
    r.end_inclusive = 0;
    r.end = (store_slice){(const uint8_t *)"id0200", 6};
    store_id_cursor *ic;
    store_docinfo d;
    store_docinfo_init(&d);
    assert_int_equal(store_snap_iter_ids(s, &r, &ic), DV_OK);
    assert_int_equal(store_id_cursor_skip(ic, 10), DV_OK);
    count = 0;
    while ((rc = store_id_cursor_next(ic, &d)) == 1) {
        snprintf(id, sizeof id, "id%04d", 110 + count);
        assert_int_equal(d.id.len, 6);
        assert_memory_equal(d.id.data, id, 6);
        assert_true(store_rev_equal(&d.tree.nodes[revtree_winner(&d.tree)].rev, &revs[110 + count]));
        count++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(count, 90);
    store_id_cursor_close(ic);
    uint64_t before = 0;
    assert_int_equal(store_snap_count_ids_before(s, (const uint8_t *)"id0100", 6, 0, &before), DV_OK);
    assert_int_equal(before, 100);
    assert_int_equal(store_snap_count_ids_before(s, (const uint8_t *)"id0100", 6, 1, &before), DV_OK);
    assert_int_equal(before, 199);
    assert_int_equal(store_snap_count_ids_before(s, (const uint8_t *)"id01005", 7, 0, &before), DV_OK);
    assert_int_equal(before, 101);
    (void)prev;
    store_docinfo_free(&d);
    store_snap_release(s);
}

/* store_snap_count_docs: live and deleted docs of a range, against counts
 * taken by walking the same range with a cursor. */
static void test_count_docs(void **state)
{
    fx *f = *state;
    char id[16];
    for (int i = 0; i < 300; i++) {
        store_rev rev;
        snprintf(id, sizeof id, "c%03d", i);
        assert_int_equal(dt_edit(f->db, id, NULL, "{}", 0, &rev), DV_OK);
        if (i % 3 == 0) {
            char rs[96];
            assert_int_equal(dt_edit(f->db, id, dt_rev_str(&rev, rs), "{}", 1, NULL), DV_OK);
        }
    }
    store_snap *s;
    assert_int_equal(store_dbfile_snapshot(f->db, &s), DV_OK);
    static const char *const bounds[][2] = {{NULL, NULL}, {"c000", "c299"}, {"c010", "c0999"}, {"c1", "c2"},
                                            {"c150", "c150"}, {"d", NULL}, {NULL, "b"}, {"c200", "c100"}};
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        for (int incl = 0; incl < 2; incl++) {
            store_btree_range r = STORE_BTREE_RANGE_ALL;
            if (bounds[b][0]) {
                r.has_start = 1;
                r.start = (store_slice){(const uint8_t *)bounds[b][0], strlen(bounds[b][0])};
            }
            if (bounds[b][1]) {
                r.has_end = 1;
                r.end_inclusive = incl;
                r.end = (store_slice){(const uint8_t *)bounds[b][1], strlen(bounds[b][1])};
            }
            uint64_t live = 99, del = 99, want_live = 0, want_del = 0;
            store_id_cursor *c;
            store_docinfo d;
            store_docinfo_init(&d);
            assert_int_equal(store_snap_iter_ids(s, &r, &c), DV_OK);
            while (store_id_cursor_next(c, &d) == 1)
                *(d.deleted ? &want_del : &want_live) += 1;
            store_id_cursor_close(c);
            store_docinfo_free(&d);
            assert_int_equal(store_snap_count_docs(s, &r, &live, &del), DV_OK);
            assert_int_equal(live, want_live);
            assert_int_equal(del, want_del);
        }
    }
    uint64_t live;
    assert_int_equal(store_snap_count_docs(s, NULL, &live, NULL), DV_OK);
    assert_int_equal(live, 200);
    store_snap_release(s);
}

static int async_calls;
static void on_done(void *arg, int status)
{
    *(int *)arg = status == DV_OK ? 1 : -1;
    __atomic_add_fetch(&async_calls, 1, __ATOMIC_SEQ_CST);
}

/* One write of thousands of docs: the caller and the writer share its
 * per-doc work (compression, rev ids) from both ends.  Every rev must be
 * the documented function of the edit and every body read back, for new
 * docs and for updates naming their parent, with lz4 bodies. */
static void test_big_batch_shared_work(void **state)
{
    fx *f = *state;
    enum { N = 3000 };
    char *p = tu_path(f->dir, "big.couch");
    store_dbfile *db = open_db(p, STORE_COMPRESS_LZ4);
    store_doc_update *u = calloc(N, sizeof *u);
    char (*ids)[16] = calloc(N, sizeof *ids);
    char (*bodies)[96] = calloc(N, sizeof *bodies);
    store_rev *revs = calloc(N, sizeof *revs);
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < N; k++) {
            snprintf(ids[k], sizeof ids[k], "doc%05d", k);
            snprintf(bodies[k], sizeof bodies[k], "{\"k\":%d,\"pass\":%d,\"pad\":\"abcabcabcabcabcabcabcabc\"}", k, pass);
            memset(&u[k], 0, sizeof u[k]);
            u[k].id = (const uint8_t *)ids[k];
            u[k].idlen = strlen(ids[k]);
            u[k].body = (const uint8_t *)bodies[k];
            u[k].body_len = strlen(bodies[k]);
            u[k].has_parent = pass > 0;
            u[k].parent = revs[k];
        }
        store_write w = {.docs = u, .ndocs = N};
        assert_int_equal(store_dbfile_write(db, &w), DV_OK);
        for (int k = 0; k < N; k++) {
            char rid[33];
            assert_int_equal(u[k].status, DV_OK);
            revtree_compute_rev_id(0, pass ? &revs[k] : NULL, u[k].body, u[k].body_len, NULL, 0, rid);
            assert_int_equal(u[k].rev.pos, (uint64_t)pass + 1);
            assert_memory_equal(u[k].rev.id, rid, 32);
            revs[k] = u[k].rev;
        }
    }
    for (int k = 0; k < N; k += 7) {
        char rev[96], want[96];
        buf_t got = BUF_INIT;
        assert_int_equal(dt_winner(db, ids[k], rev, &got, NULL), DV_OK);
        assert_string_equal(rev, dt_rev_str(&revs[k], want));
        assert_int_equal(got.len, strlen(bodies[k]));
        assert_memory_equal(got.data, bodies[k], got.len);
        buf_free(&got);
    }
    assert_int_equal(dt_info(db).doc_count, N);
    assert_int_equal(store_dbfile_close(db), DV_OK);
    free(u);
    free(ids);
    free(bodies);
    free(revs);
    free(p);
}

/* Async writes big enough to share their preparation: the caller queues,
 * then prepares from the last doc down while the writer applies from the
 * first up, and may still be at it when the writer completes the write.
 * Each write lives on the heap and its done callback checks the rev ids and
 * frees it at once, as an HTTP handler's context can be, so under ASan a
 * caller that touched the write (or the item) after completion would fail
 * here.  Writes of 16-200 docs, back to back, so the writer takes several
 * in one group and completes some while later ones are still prepared. */
typedef struct async_big {
    store_write w;
    store_doc_update *u;
    char (*ids)[32];
    char (*bodies)[80];
    int *ok; /* set by done: 1 every rev right, -1 not */
} async_big;

static void async_big_done(void *arg, int status)
{
    async_big *a = arg;
    int good = status == DV_OK;
    for (size_t k = 0; good && k < a->w.ndocs; k++) {
        char rid[33];
        revtree_compute_rev_id(0, NULL, a->u[k].body, a->u[k].body_len, NULL, 0, rid);
        good = a->u[k].status == DV_OK && a->u[k].rev.pos == 1 && !memcmp(a->u[k].rev.id, rid, 32);
    }
    *a->ok = good ? 1 : -1;
    free(a->u);
    free(a->ids);
    free(a->bodies);
    free(a);
    __atomic_add_fetch(&async_calls, 1, __ATOMIC_SEQ_CST);
}

static void test_async_big_writes_freed_in_done(void **state)
{
    fx *f = *state;
    enum { WRITES = 60 };
    tu_rng r = {tu_seed("test_async_big_writes_freed_in_done")};
    for (int mode = 0; mode < 2; mode++) {
        char name[32];
        snprintf(name, sizeof name, "ab%d.couch", mode);
        char *p = tu_path(f->dir, name);
        store_dbfile_options o = {.create = 1, .durability = mode ? STORE_DURABLE_NEVER : STORE_DURABLE_ALWAYS,
                                  .compression = STORE_COMPRESS_LZ4};
        store_dbfile *db;
        assert_int_equal(store_dbfile_open(p, &o, &db), DV_OK);
        int ok[WRITES] = {0};
        uint64_t total = 0;
        async_calls = 0;
        for (int i = 0; i < WRITES; i++) {
            size_t n = 16 + (size_t)tu_rand_below(&r, 185);
            async_big *a = calloc(1, sizeof *a);
            assert_non_null(a);
            a->u = calloc(n, sizeof *a->u);
            a->ids = calloc(n, sizeof *a->ids);
            a->bodies = calloc(n, sizeof *a->bodies);
            assert_true(a->u && a->ids && a->bodies);
            a->ok = &ok[i];
            for (size_t k = 0; k < n; k++) {
                snprintf(a->ids[k], sizeof a->ids[k], "w%02d-%04zu", i, k);
                snprintf(a->bodies[k], sizeof a->bodies[k], "{\"w\":%d,\"k\":%zu,\"pad\":\"xyzxyzxyzxyzxyz\"}", i, k);
                a->u[k].id = (const uint8_t *)a->ids[k];
                a->u[k].idlen = strlen(a->ids[k]);
                a->u[k].body = (const uint8_t *)a->bodies[k];
                a->u[k].body_len = strlen(a->bodies[k]);
            }
            a->w.docs = a->u;
            a->w.ndocs = n;
            total += n;
            assert_int_equal(store_dbfile_write_async(db, &a->w, async_big_done, a), DV_OK);
        }
        assert_int_equal(store_dbfile_close(db), DV_OK); /* finishes queued writes */
        assert_int_equal(async_calls, WRITES);
        for (int i = 0; i < WRITES; i++)
            assert_int_equal(ok[i], 1);
        o.create = 0;
        assert_int_equal(store_dbfile_open(p, &o, &db), DV_OK);
        assert_int_equal(dt_info(db).doc_count, total);
        char rev[96];
        buf_t got = BUF_INIT;
        assert_int_equal(dt_winner(db, "w07-0003", rev, &got, NULL), DV_OK);
        assert_int_equal(got.len, strlen("{\"w\":7,\"k\":3,\"pad\":\"xyzxyzxyzxyzxyz\"}"));
        assert_memory_equal(got.data, "{\"w\":7,\"k\":3,\"pad\":\"xyzxyzxyzxyzxyz\"}", got.len);
        buf_free(&got);
        assert_int_equal(store_dbfile_close(db), DV_OK);
        free(p);
    }
}

static void test_async_and_durability_modes(void **state)
{
    fx *f = *state;
    for (int mode = 0; mode < 3; mode++) {
        char name[32];
        snprintf(name, sizeof name, "m%d.couch", mode);
        char *p = tu_path(f->dir, name);
        store_dbfile_options o = {.create = 1, .durability = mode, .sync_interval_ms = 5};
        store_dbfile *db;
        assert_int_equal(store_dbfile_open(p, &o, &db), DV_OK);
        store_doc_update u[50];
        store_write w[50];
        int done[50];
        char ids[50][8];
        memset(u, 0, sizeof u);
        memset(w, 0, sizeof w);
        async_calls = 0;
        for (int k = 0; k < 50; k++) {
            snprintf(ids[k], sizeof ids[k], "a%d", k);
            u[k].id = (const uint8_t *)ids[k];
            u[k].idlen = strlen(ids[k]);
            u[k].body = (const uint8_t *)"{}";
            u[k].body_len = 2;
            w[k].docs = &u[k];
            w[k].ndocs = 1;
            done[k] = 0;
            assert_int_equal(store_dbfile_write_async(db, &w[k], on_done, &done[k]), DV_OK);
        }
        /* close finishes queued writes before it returns */
        assert_int_equal(store_dbfile_close(db), DV_OK);
        assert_int_equal(async_calls, 50);
        for (int k = 0; k < 50; k++) {
            assert_int_equal(done[k], 1);
            assert_int_equal(u[k].status, DV_OK);
        }
        o.create = 0;
        assert_int_equal(store_dbfile_open(p, &o, &db), DV_OK);
        store_dbinfo i = dt_info(db);
        assert_int_equal(i.doc_count, 50);
        assert_int_equal(store_dbfile_close(db), DV_OK);
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_open_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_conflict_delete_recreate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replicated_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revs_limit_and_security, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attachments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_level_attachment_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compression_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_docs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_and_durability_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_batch_shared_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_big_writes_freed_in_done, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
