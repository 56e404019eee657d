/*
 * test_validate.c — views/validate.c against a real database and the real
 * divan-js: which design documents make the set, that the cached set is
 * reused while they are unchanged and replaced when one changes, and what
 * vdu_run / vdu_run_batch answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "db/db.h"
#include "json/json.h"
#include "testutil.h"
#include "views/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    char *dir;
    db_server *dbs;
    db_t *db;
    qserver *qs;
    views *v;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_mkdtemp("validate");
    db_server_opts o = {0};
    o.dir = f->dir;
    assert_int_equal(db_server_open(&o, &f->dbs), DV_OK);
    assert_int_equal(db_create(f->dbs, "vdb", &f->db), DV_OK);
    qserver_config qc = {0};
    qc.pool_size = 1;
    qc.timeout_ms = 1000;
    assert_int_equal(qserver_open(&qc, &f->qs), DV_OK);
    views_opts vo = {0};
    vo.qs = f->qs;
    assert_int_equal(views_open(&vo, &f->v), DV_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    views_close(f->v);
    qserver_close(f->qs);
    db_release(f->db);
    db_server_close(f->dbs);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Writes one document (JSON with _id, and _rev for an update). */
static void put(fixture *f, const char *json)
{
    json_doc jd = JSON_DOC_INIT;
    db_doc d;
    db_err e;
    db_doc_init(&d);
    assert_int_equal(json_doc_parse(&jd, json, strlen(json), 0, NULL), DV_OK);
    assert_int_equal(db_doc_from_json(json_doc_root(&jd), NULL, 0, DB_DOC_NEW_EDITS, &d, &e), DV_OK);
    store_doc_update u;
    db_doc_to_update(&d, 1, &u);
    store_write w;
    memset(&w, 0, sizeof w);
    w.docs = &u;
    w.ndocs = 1;
    assert_int_equal(db_write(f->db, &w), DV_OK);
    assert_int_equal(u.status, DV_OK);
    db_doc_free(&d);
    json_doc_free(&jd);
}

/* The current rev of id as "N-hex" into out. */
static void rev_of(fixture *f, const char *id, char *out, size_t cap)
{
    store_snap *s;
    store_docinfo di;
    store_docinfo_init(&di);
    assert_int_equal(db_snapshot(f->db, &s), DV_OK);
    assert_int_equal(store_snap_get_doc(s, (const uint8_t *)id, strlen(id), &di), DV_OK);
    buf_t b = BUF_INIT;
    assert_int_equal(store_rev_format(&di.tree.nodes[revtree_winner(&di.tree)].rev, &b), DV_OK);
    snprintf(out, cap, "%.*s", (int)b.len, (const char *)b.data);
    buf_free(&b);
    store_docinfo_free(&di);
    store_snap_release(s);
}

static vdu_set *lookup(fixture *f)
{
    store_snap *s;
    vdu_set *set;
    assert_int_equal(db_snapshot(f->db, &s), DV_OK);
    assert_int_equal(vdu_lookup(f->v, f->db, s, &set), DV_OK);
    store_snap_release(s);
    return set;
}

static void test_set_follows_design_documents(void **state)
{
    fixture *f = *state;
    assert_null(lookup(f)); /* no design document */
    put(f, "{\"_id\":\"a\"}");
    put(f, "{\"_id\":\"_design/views\",\"views\":{\"x\":{\"map\":\"function(d){}\"}}}");
    assert_null(lookup(f)); /* design documents, none validating */
    put(f, "{\"_id\":\"_design/coffee\",\"language\":\"coffeescript\",\"validate_doc_update\":\"-> 1\"}");
    assert_null(lookup(f)); /* another language: ignored */
    put(f, "{\"_id\":\"_design/v1\",\"validate_doc_update\":\"function(n){ if (n.a) throw({forbidden:'a'}); }\"}");
    vdu_set *s1 = lookup(f);
    assert_non_null(s1);
    assert_int_equal(vdu_set_count(s1), 1);
    vdu_set *again = lookup(f);
    assert_ptr_equal(again, s1); /* unchanged: the cached set */
    vdu_set_release(again);
    put(f, "{\"_id\":\"b\"}"); /* an ordinary write does not change the set */
    again = lookup(f);
    assert_ptr_equal(again, s1);
    vdu_set_release(again);
    put(f, "{\"_id\":\"_design/v2\",\"validate_doc_update\":\"function(n){ if (n.b) throw({unauthorized:'b'}); }\"}");
    vdu_set *s2 = lookup(f);
    assert_ptr_not_equal(s2, s1);
    assert_int_equal(vdu_set_count(s2), 2);
    /* the old set still works for whoever holds it */
    vdu_result res;
    vdu_result_init(&res);
    const char *args = "[{\"_id\":\"x\",\"a\":1},null,{\"db\":\"vdb\",\"name\":null,\"roles\":[]},{}]";
    assert_int_equal(vdu_run(f->v, s1, args, strlen(args), &res), DV_ERR_INVALID);
    assert_int_equal(res.status, 403);
    assert_string_equal(res.error, "forbidden");
    vdu_set_release(s1);
    /* both functions run, in id order */
    args = "[{\"_id\":\"x\",\"b\":1},null,{},{}]";
    assert_int_equal(vdu_run(f->v, s2, args, strlen(args), &res), DV_ERR_INVALID);
    assert_int_equal(res.status, 401);
    assert_int_equal((int)res.reason.len, 3);
    assert_memory_equal(res.reason.data, "\"b\"", 3);
    args = "[{\"_id\":\"x\"},null,{},{}]";
    assert_int_equal(vdu_run(f->v, s2, args, strlen(args), &res), DV_OK);
    vdu_set_release(s2);
    /* editing v1 to accept everything replaces it */
    char rev[80], doc[300];
    rev_of(f, "_design/v1", rev, sizeof rev);
    snprintf(doc, sizeof doc, "{\"_id\":\"_design/v1\",\"_rev\":\"%s\",\"validate_doc_update\":\"function(){}\"}", rev);
    put(f, doc);
    vdu_set *s3 = lookup(f);
    assert_int_equal(vdu_set_count(s3), 2);
    args = "[{\"_id\":\"x\",\"a\":1},null,{},{}]";
    assert_int_equal(vdu_run(f->v, s3, args, strlen(args), &res), DV_OK);
    vdu_set_release(s3);
    vdu_result_free(&res);
}

static void test_run_batch(void **state)
{
    fixture *f = *state;
    put(f, "{\"_id\":\"_design/a\",\"validate_doc_update\":\"function(n){ if (n.i % 3 === 0) throw({forbidden: n.i}); }\"}");
    put(f, "{\"_id\":\"_design/b\",\"validate_doc_update\":\"function(n){ if (n.i % 2 === 0) throw('even'); if (n.i === 7) null.x; }\"}");
    vdu_set *s = lookup(f);
    assert_non_null(s);
    enum { N = 200 };
    char *args[N];
    const char *ap[N];
    size_t lens[N];
    vdu_result res[N];
    int refused[N];
    for (int i = 0; i < N; i++) {
        char b[100];
        snprintf(b, sizeof b, "[{\"_id\":\"d%d\",\"i\":%d},null,{},{}]", i, i);
        args[i] = strdup(b);
        assert_non_null(args[i]);
        ap[i] = args[i];
        lens[i] = strlen(b);
        vdu_result_init(&res[i]);
        refused[i] = i == 1; /* already refused elsewhere: skipped */
    }
    assert_int_equal(vdu_run_batch(f->v, s, ap, lens, N, res, refused), DV_OK);
    for (int i = 0; i < N; i++) {
        if (i == 1) {
            assert_int_equal(res[i].status, 0);
        } else if (i % 3 == 0) {
            assert_true(refused[i]);
            assert_int_equal(res[i].status, 403);
            char want[16];
            snprintf(want, sizeof want, "%d", i);
            assert_int_equal(res[i].reason.len, strlen(want));
            assert_memory_equal(res[i].reason.data, want, strlen(want));
        } else if (i % 2 == 0) {
            assert_true(refused[i]);
            assert_int_equal(res[i].status, 500);
            assert_string_equal(res[i].error, "unknown_error");
        } else if (i == 7) {
            assert_true(refused[i]);
            assert_int_equal(res[i].status, 500);
            assert_string_equal(res[i].error, "TypeError");
        } else {
            assert_false(refused[i]);
        }
        vdu_result_free(&res[i]);
        free(args[i]);
    }
    vdu_set_release(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_follows_design_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_batch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
