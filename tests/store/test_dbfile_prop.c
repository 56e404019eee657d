/*
 * test_dbfile_prop.c — seeded random operation sequences against an
 * in-memory model of a database, compared after every operation.
 *
 * The model keeps, per doc id, a revision tree built with revtree.h (whose
 * own tests establish the CouchDB rules) plus the doc's latest seq; bodies
 * are numbered and the number is kept in the model node's body.off.  It
 * checks what the store adds: persistence across reopen, update/purge
 * sequences, one changes entry per doc at its latest seq, leaf lists,
 * bodies, counts and external sizes, locals, security, revs_limit, and
 * that compaction at random points changes none of it.
 * Reproduce a failure with DIVAN_SEED=<printed seed>.
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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NIDS 50
#define NLOCAL 5

typedef struct mdoc {
    int present;
    revtree tree; /* body.off = body number (1-based), size = body length */
    uint64_t seq;
} mdoc;

typedef struct mlocal {
    int present;
    uint64_t rev;
    char body[32];
} mlocal;

typedef struct model {
    mdoc docs[NIDS];
    mlocal locals[NLOCAL];
    uint64_t update_seq, purge_seq, revs_limit;
    char security[32];
    uint64_t nbody;
} model;

static void doc_id(int k, char out[16]) { snprintf(out, 16, "doc%03d", k); }
static void local_id(int k, char out[24]) { snprintf(out, 24, "_local/l%d", k); }
static void body_of(uint64_t n, char out[32]) { snprintf(out, 32, "{\"n\":%llu}", (unsigned long long)n); }

/* ---- model operations (mirror the store's documented semantics) ---- */

static int model_edit(model *m, int k, const store_rev *parent, int deleted, uint64_t bodyn, store_rev *out)
{
    mdoc *d = &m->docs[k];
    char body[32];
    body_of(bodyn, body);
    const store_rev *prev = parent;
    store_rev implicit;
    if (!parent) {
        uint32_t ip = revtree_implicit_parent(&d->tree);
        if (ip != REVTREE_NONE)
            implicit = d->tree.nodes[ip].rev; /* copied: add_edit may move nodes */
        prev = ip == REVTREE_NONE ? NULL : &implicit;
    }
    char rid[33];
    revtree_compute_rev_id(deleted, prev, (const uint8_t *)body, strlen(body), NULL, 0, rid);
    revtree_node proto = {.deleted = (uint8_t)deleted, .has_body = 1, .body = {bodyn, 0}, .size = strlen(body)};
    int rc = revtree_add_edit(&d->tree, parent, rid, 32, &proto, NULL);
    if (out) {
        out->pos = prev ? prev->pos + 1 : 1;
        out->len = 32;
        memcpy(out->id, rid, 32);
    }
    if (rc)
        return rc;
    assert_int_equal(revtree_stem(&d->tree, m->revs_limit), DV_OK);
    d->present = 1;
    d->seq = ++m->update_seq;
    return DV_OK;
}

static void model_replicate(model *m, int k, const store_rev *path, size_t n, int deleted, uint64_t bodyn)
{
    mdoc *d = &m->docs[k];
    if (revtree_find(&d->tree, &path[0]) != REVTREE_NONE)
        return;
    char body[32];
    body_of(bodyn, body);
    revtree_node proto = {.deleted = (uint8_t)deleted, .has_body = 1, .body = {bodyn, 0}, .size = strlen(body)};
    int added = 0;
    assert_int_equal(revtree_merge_path(&d->tree, path, n, &proto, &added, NULL), DV_OK);
    assert_true(added);
    assert_int_equal(revtree_stem(&d->tree, m->revs_limit), DV_OK);
    d->present = 1;
    d->seq = ++m->update_seq;
}

static size_t model_purge(model *m, int k, const store_rev *revs, size_t n)
{
    mdoc *d = &m->docs[k];
    size_t purged = 0;
    if (!d->present)
        return 0;
    assert_int_equal(revtree_purge(&d->tree, revs, n, &purged), DV_OK);
    if (!purged)
        return 0;
    m->purge_seq++;
    if (d->tree.n == 0)
        d->present = 0;
    else
        d->seq = ++m->update_seq;
    return purged;
}

/* ---- comparison ------------------------------------------------------- */

static void check_tree(const revtree *got, const revtree *want)
{
    assert_int_equal(got->n, want->n);
    for (uint32_t i = 0; i < got->n; i++) {
        assert_true(store_rev_equal(&got->nodes[i].rev, &want->nodes[i].rev));
        assert_int_equal(got->nodes[i].parent, want->nodes[i].parent);
        assert_int_equal(got->nodes[i].deleted, want->nodes[i].deleted);
    }
}

static void check_all(store_dbfile *db, const model *m, tu_rng *rng)
{
    store_snap *s;
    store_dbinfo info;
    assert_int_equal(store_dbfile_snapshot(db, &s), DV_OK);
    store_snap_info(s, &info);
    assert_int_equal(info.update_seq, m->update_seq);
    assert_int_equal(info.purge_seq, m->purge_seq);
    assert_int_equal(info.revs_limit, m->revs_limit);
    uint64_t live = 0, dead = 0, ext = 0;
    for (int k = 0; k < NIDS; k++) {
        const mdoc *d = &m->docs[k];
        if (!d->present)
            continue;
        uint32_t w = revtree_winner(&d->tree);
        if (d->tree.nodes[w].deleted)
            dead++;
        else
            live++;
        uint32_t idx[256], n;
        assert_true(d->tree.n <= 256);
        revtree_leaves(&d->tree, idx, &n);
        for (uint32_t i = 0; i < n; i++)
            ext += d->tree.nodes[idx[i]].size;
    }
    assert_int_equal(info.doc_count, live);
    assert_int_equal(info.del_count, dead);
    assert_int_equal(info.external_size, ext);
    assert_true(info.active_size <= info.file_size);

    /* by id: every present doc, in order, same tree, seq and leaf bodies */
    store_id_cursor *ic;
    store_docinfo di;
    store_docbody b;
    store_docinfo_init(&di);
    store_docbody_init(&b);
    assert_int_equal(store_snap_iter_ids(s, NULL, &ic), DV_OK);
    for (int k = 0; k < NIDS; k++) {
        const mdoc *d = &m->docs[k];
        if (!d->present)
            continue;
        char id[16];
        doc_id(k, id);
        assert_int_equal(store_id_cursor_next(ic, &di), 1);
        assert_int_equal(di.id.len, strlen(id));
        assert_memory_equal(di.id.data, id, di.id.len);
        check_tree(&di.tree, &d->tree);
        assert_int_equal(di.seq, d->seq);
        uint32_t w = revtree_winner(&d->tree);
        assert_int_equal(di.deleted, d->tree.nodes[w].deleted);
        /* bodies: the winner always, other nodes at random */
        for (uint32_t i = 0; i < d->tree.n; i++) {
            if (!d->tree.nodes[i].has_body || (i != w && tu_rand_below(rng, 4)))
                continue;
            assert_true(di.tree.nodes[i].has_body);
            char want[32];
            body_of(d->tree.nodes[i].body.off, want);
            assert_int_equal(store_snap_read_body(s, di.tree.nodes[i].body, &b), DV_OK);
            assert_int_equal(b.body.len, strlen(want));
            assert_memory_equal(b.body.data, want, b.body.len);
        }
    }
    assert_int_equal(store_id_cursor_next(ic, &di), 0);
    store_id_cursor_close(ic);

    /* changes: one entry per present doc at its seq, leaves winner first */
    store_seq_cursor *c;
    store_change ch;
    store_change_init(&ch);
    int seen[NIDS] = {0}, rc;
    uint64_t last = 0;
    size_t count = 0;
    assert_int_equal(store_snap_iter_changes(s, 0, 0, &c), DV_OK);
    while ((rc = store_seq_cursor_next(c, &ch)) == 1) {
        assert_true(ch.seq > last);
        last = ch.seq;
        int k = atoi((const char *)ch.id.data + 3);
        assert_true(k >= 0 && k < NIDS);
        const mdoc *d = &m->docs[k];
        assert_true(d->present);
        assert_false(seen[k]);
        seen[k] = 1;
        count++;
        assert_int_equal(ch.seq, d->seq);
        uint32_t idx[256], n;
        revtree_leaves(&d->tree, idx, &n);
        assert_int_equal(ch.nleaves, n);
        for (uint32_t i = 0; i < n; i++) {
            assert_true(store_rev_equal(&ch.leaves[i].rev, &d->tree.nodes[idx[i]].rev));
            assert_int_equal(ch.leaves[i].deleted, d->tree.nodes[idx[i]].deleted);
        }
        assert_int_equal(ch.deleted, d->tree.nodes[idx[0]].deleted);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(count, live + dead);
    store_seq_cursor_close(c);
    store_change_free(&ch);

    /* locals */
    for (int k = 0; k < NLOCAL; k++) {
        char id[24];
        uint64_t rev;
        buf_t body = BUF_INIT;
        local_id(k, id);
        rc = store_snap_get_local(s, (const uint8_t *)id, strlen(id), &rev, &body);
        if (!m->locals[k].present) {
            assert_int_equal(rc, DV_ERR_NOTFOUND);
        } else {
            assert_int_equal(rc, DV_OK);
            assert_int_equal(rev, m->locals[k].rev);
            assert_int_equal(body.len, strlen(m->locals[k].body));
            assert_memory_equal(body.data, m->locals[k].body, body.len);
        }
        buf_free(&body);
    }
    buf_t sec = BUF_INIT;
    assert_int_equal(store_snap_security(s, &sec), DV_OK);
    assert_int_equal(sec.len, strlen(m->security));
    assert_memory_equal(sec.data, m->security, sec.len);
    buf_free(&sec);
    store_docbody_free(&b);
    store_docinfo_free(&di);
    store_snap_release(s);
}

/* ---- random operations ------------------------------------------------ */

static void rand_revid(tu_rng *rng, store_rev *r, uint64_t pos)
{
    static const char hex[] = "0123456789abcdef";
    memset(r, 0, sizeof *r);
    r->pos = pos;
    r->len = 8;
    for (int i = 0; i < 8; i++)
        r->id[i] = hex[tu_rand_below(rng, 16)];
}

/* One random edit of doc k with a valid parent (when the doc has a live
 * leaf), filling u; returns the model's expected status. */
static void fill_edit(tu_rng *rng, model *m, int k, int kind, store_doc_update *u, char *idbuf, char *bodybuf,
                      int *expect, store_rev *expect_rev)
{
    mdoc *d = &m->docs[k];
    doc_id(k, idbuf);
    memset(u, 0, sizeof *u);
    u->id = (const uint8_t *)idbuf;
    u->idlen = strlen(idbuf);
    u->mode = STORE_EDIT;
    u->deleted = kind == 2;
    uint64_t bn = ++m->nbody;
    body_of(bn, bodybuf);
    u->body = (const uint8_t *)bodybuf;
    u->body_len = strlen(bodybuf);
    if (d->tree.n) {
        uint32_t idx[256], n;
        revtree_leaves(&d->tree, idx, &n);
        uint32_t pick = idx[tu_rand_below(rng, 3) ? 0 : tu_rand_below(rng, n)];
        if (kind == 1) { /* stale: a non-leaf, a made-up rev, or none */
            uint32_t r = (uint32_t)tu_rand_below(rng, d->tree.n);
            if (!revtree_is_leaf(&d->tree, r)) {
                u->has_parent = 1;
                u->parent = d->tree.nodes[r].rev;
            } else if (tu_rand_below(rng, 2)) {
                u->has_parent = 1;
                rand_revid(rng, &u->parent, 1 + tu_rand_below(rng, 3));
            }
        } else if (!d->tree.nodes[pick].deleted || tu_rand_below(rng, 2)) {
            u->has_parent = 1;
            u->parent = d->tree.nodes[pick].rev;
        }
    }
    *expect = model_edit(m, k, u->has_parent ? &u->parent : NULL, u->deleted, bn, expect_rev);
}

static void run_sequence(const char *dir, uint64_t seed, int nops)
{
    tu_rng rng = {seed};
    char *path = tu_path(dir, "prop.couch");
    model *m = calloc(1, sizeof *m);
    m->revs_limit = 1000;
    strcpy(m->security, "{}");
    for (int k = 0; k < NIDS; k++)
        revtree_init(&m->docs[k].tree);
    store_dbfile_options o = {.create = 1, .durability = STORE_DURABLE_NEVER,
                              .compression = (int)tu_rand_below(&rng, 3)};
    store_dbfile *db;
    assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
    for (int op = 0; op < nops; op++) {
        uint64_t r = tu_rand_below(&rng, 100);
        int k = (int)tu_rand_below(&rng, NIDS);
        char id[16], body[32];
        if (r < 55) { /* edits: good (0), stale (1), delete (2) */
            int kind = r < 35 ? 0 : r < 45 ? 1 : 2;
            store_doc_update u;
            int expect;
            store_rev er;
            fill_edit(&rng, m, k, kind, &u, id, body, &expect, &er);
            store_write w = {.docs = &u, .ndocs = 1};
            assert_int_equal(store_dbfile_write(db, &w), DV_OK);
            assert_int_equal(u.status, expect);
            if (!expect) {
                assert_true(store_rev_equal(&u.rev, &er));
                assert_int_equal(u.seq, m->update_seq);
            }
        } else if (r < 70) { /* replicated path */
            mdoc *d = &m->docs[k];
            store_rev rpath[8];
            size_t n = 0;
            int deleted = tu_rand_below(&rng, 5) == 0;
            uint64_t bn = ++m->nbody;
            uint32_t base = d->tree.n && tu_rand_below(&rng, 4) ? (uint32_t)tu_rand_below(&rng, d->tree.n)
                                                               : REVTREE_NONE;
            if (base != REVTREE_NONE && revtree_is_leaf(&d->tree, base) && tu_rand_below(&rng, 3) == 0) {
                /* re-send a known leaf: no change */
                uint32_t anc[256];
                uint32_t na = revtree_path(&d->tree, base, anc);
                for (uint32_t i = 0; i < na && n < 8; i++)
                    rpath[n++] = d->tree.nodes[anc[i]].rev;
            } else {
                size_t ext = 1 + tu_rand_below(&rng, 3);
                uint64_t pos0 = base == REVTREE_NONE ? 1 + tu_rand_below(&rng, 3) : d->tree.nodes[base].rev.pos + 1;
                for (size_t i = 0; i < ext; i++)
                    rand_revid(&rng, &rpath[i], pos0 + ext - 1 - i);
                n = ext;
                if (base != REVTREE_NONE) {
                    uint32_t anc[256];
                    uint32_t na = revtree_path(&d->tree, base, anc);
                    for (uint32_t i = 0; i < na && n < 8; i++)
                        rpath[n++] = d->tree.nodes[anc[i]].rev;
                }
            }
            doc_id(k, id);
            body_of(bn, body);
            store_doc_update u;
            memset(&u, 0, sizeof u);
            u.id = (const uint8_t *)id;
            u.idlen = strlen(id);
            u.mode = STORE_REPLICATE;
            u.path = rpath;
            u.path_len = n;
            u.deleted = deleted;
            u.body = (const uint8_t *)body;
            u.body_len = strlen(body);
            store_write w = {.docs = &u, .ndocs = 1};
            assert_int_equal(store_dbfile_write(db, &w), DV_OK);
            assert_int_equal(u.status, DV_OK);
            model_replicate(m, k, rpath, n, deleted, bn);
        } else if (r < 78) { /* locals */
            int l = k % NLOCAL;
            mlocal *ml = &m->locals[l];
            char lid[24];
            local_id(l, lid);
            store_local_update u;
            memset(&u, 0, sizeof u);
            u.id = (const uint8_t *)lid;
            u.idlen = strlen(lid);
            u.deleted = tu_rand_below(&rng, 4) == 0;
            u.has_rev = tu_rand_below(&rng, 4) != 0;
            u.rev = tu_rand_below(&rng, 5) ? (ml->present ? ml->rev : 0) : tu_rand_below(&rng, 4);
            snprintf(body, sizeof body, "{\"l\":%llu}", (unsigned long long)op);
            u.body = (const uint8_t *)body;
            u.body_len = strlen(body);
            store_write w = {.locals = &u, .nlocals = 1};
            assert_int_equal(store_dbfile_write(db, &w), DV_OK);
            uint64_t cur = ml->present ? ml->rev : 0;
            int expect = (u.has_rev ? u.rev != cur : ml->present) ? DV_ERR_CONFLICT
                         : u.deleted && !ml->present                ? DV_ERR_NOTFOUND
                                                                    : DV_OK;
            assert_int_equal(u.status, expect);
            if (!expect && u.deleted) {
                ml->present = 0;
            } else if (!expect) {
                ml->present = 1;
                ml->rev = cur + 1;
                strcpy(ml->body, body);
                assert_int_equal(u.new_rev, ml->rev);
            }
        } else if (r < 85) { /* purge a random leaf (and maybe a non-leaf) */
            mdoc *d = &m->docs[k];
            store_rev revs[2];
            size_t n = 0;
            if (d->tree.n) {
                uint32_t idx[256], nl;
                revtree_leaves(&d->tree, idx, &nl);
                revs[n++] = d->tree.nodes[idx[tu_rand_below(&rng, nl)]].rev;
                if (tu_rand_below(&rng, 3) == 0)
                    revs[n++] = d->tree.nodes[tu_rand_below(&rng, d->tree.n)].rev;
                if (n == 2 && store_rev_equal(&revs[0], &revs[1]))
                    n = 1;
            } else {
                rand_revid(&rng, &revs[n++], 1);
            }
            doc_id(k, id);
            store_purge p = {.id = (const uint8_t *)id, .idlen = strlen(id), .revs = revs, .nrevs = n};
            store_write w = {.purges = &p, .npurges = 1};
            assert_int_equal(store_dbfile_write(db, &w), DV_OK);
            assert_int_equal(p.status, DV_OK);
            assert_int_equal(p.npurged, model_purge(m, k, revs, n));
        } else if (r < 88) {
            uint64_t lim = tu_rand_below(&rng, 3) ? 2 + tu_rand_below(&rng, 6) : 1000;
            store_write w = {.set_revs_limit = 1, .revs_limit = lim};
            assert_int_equal(store_dbfile_write(db, &w), DV_OK);
            m->revs_limit = lim;
        } else if (r < 94) { /* a batch of edits, some on the same doc */
            store_doc_update u[5];
            char ids[5][16], bodies[5][32];
            int expect[5];
            store_rev er[5];
            size_t n = 2 + tu_rand_below(&rng, 4);
            for (size_t i = 0; i < n; i++) {
                int kk = tu_rand_below(&rng, 3) ? (int)tu_rand_below(&rng, NIDS) : k;
                fill_edit(&rng, m, kk, (int)tu_rand_below(&rng, 3), &u[i], ids[i], bodies[i], &expect[i], &er[i]);
            }
            store_write w = {.docs = u, .ndocs = n};
            assert_int_equal(store_dbfile_write(db, &w), DV_OK);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(u[i].status, expect[i]);
                if (!expect[i])
                    assert_true(store_rev_equal(&u[i].rev, &er[i]));
            }
        } else if (r < 95) { /* compaction: non-leaf revs lose their bodies */
            assert_int_equal(store_dbfile_compact(db, NULL, NULL), DV_OK);
            for (int d = 0; d < NIDS; d++)
                for (uint32_t i = 0; i < m->docs[d].tree.n; i++)
                    if (!revtree_is_leaf(&m->docs[d].tree, i))
                        m->docs[d].tree.nodes[i].has_body = 0;
        } else if (r < 97) {
            assert_int_equal(store_dbfile_close(db), DV_OK);
            o.create = 0;
            o.compression = (int)tu_rand_below(&rng, 3);
            assert_int_equal(store_dbfile_open(path, &o, &db), DV_OK);
        } else {
            snprintf(m->security, sizeof m->security, "{\"s\":%d}", op);
            store_write w = {.set_security = 1, .security = (const uint8_t *)m->security,
                             .security_len = strlen(m->security)};
            assert_int_equal(store_dbfile_write(db, &w), DV_OK);
        }
        check_all(db, m, &rng);
    }
    assert_int_equal(store_dbfile_close(db), DV_OK);
    for (int k = 0; k < NIDS; k++)
        revtree_free(&m->docs[k].tree);
    free(m);
    remove(path);
    free(path);
}

static void test_model(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("test_dbfile_prop");
    char *dir = tu_mkdtemp("dbfile-prop");
    long seqs = tu_iterations(40);
    for (long i = 0; i < seqs; i++) {
        uint64_t s = seed + (uint64_t)i * 0x9e3779b97f4a7c15ULL;
        run_sequence(dir, s, 120);
    }
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
