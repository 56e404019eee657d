/*
 * test_doc.c — documents from JSON (db/doc.c): CouchDB's rules for ids,
 * special members, _rev/_revisions, _attachments (data, stubs, follows),
 * the stored body, and the errors each bad input gets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "db/db.h"

#include <string.h>

typedef struct parsed {
    json_doc jd;
    db_doc d;
    db_err e;
    int rc;
} parsed;

static void parse(parsed *p, const char *json, const char *url_id, int flags)
{
    memset(p, 0, sizeof *p);
    json_doc_init(&p->jd);
    db_doc_init(&p->d);
    assert_int_equal(json_doc_parse(&p->jd, json, strlen(json), 0, NULL), DV_OK);
    p->rc = db_doc_from_json(json_doc_root(&p->jd), url_id, url_id ? strlen(url_id) : 0, flags, &p->d, &p->e);
}

static void done(parsed *p)
{
    db_doc_free(&p->d);
    json_doc_free(&p->jd);
}

static void expect_error(const char *json, int flags, int status, const char *error, const char *reason)
{
    parsed p;
    parse(&p, json, NULL, flags);
    assert_int_equal(p.rc, DV_ERR_INVALID);
    assert_int_equal(p.e.status, status);
    assert_string_equal(p.e.error, error);
    if (reason)
        assert_string_equal(p.e.reason, reason);
    done(&p);
}

static void test_body_and_fields(void **state)
{
    (void)state;
    parsed p;
    parse(&p, "{\"_id\":\"x\",\"a\":1.50,\"_rev\":\"2-ab\",\"_conflicts\":[],\"_replication_state\":\"done\","
              "\"_deleted\":true,\"b\":{\"_c\":1}}",
          NULL, DB_DOC_NEW_EDITS);
    assert_int_equal(p.rc, DV_OK);
    assert_int_equal(p.d.id.len, 1);
    assert_int_equal(p.d.has_rev, 1);
    assert_int_equal(p.d.rev.pos, 2);
    assert_int_equal(p.d.deleted, 1);
    const char *want = "{\"a\":1.50,\"_replication_state\":\"done\",\"b\":{\"_c\":1}}";
    assert_int_equal(p.d.body.len, strlen(want));
    assert_memory_equal(p.d.body.data, want, strlen(want));
    done(&p);
    /* the URL id wins over the body's */
    parse(&p, "{\"_id\":\"body\"}", "url", DB_DOC_NEW_EDITS);
    assert_int_equal(p.rc, DV_OK);
    assert_memory_equal(p.d.id.data, "url", 3);
    done(&p);
}

static void test_revisions(void **state)
{
    (void)state;
    parsed p;
    parse(&p, "{\"_id\":\"x\",\"_rev\":\"1-zz\",\"_revisions\":{\"start\":3,\"ids\":[\"c\",\"b\",\"a\"]}}", NULL, 0);
    assert_int_equal(p.rc, DV_OK);
    assert_int_equal(p.d.path_len, 3);
    assert_int_equal(p.d.path[0].pos, 3);
    assert_int_equal(p.d.path[2].pos, 1);
    assert_int_equal(p.d.rev.pos, 3); /* _revisions wins */
    store_doc_update u;
    db_doc_to_update(&p.d, 0, &u);
    assert_int_equal(u.mode, STORE_REPLICATE);
    assert_int_equal(u.path_len, 3);
    done(&p);
    expect_error("{\"_revisions\":{\"start\":\"3\",\"ids\":[\"a\"]}}", 0, 400, "doc_validation",
                 "_revisions.start isn't an integer.");
    expect_error("{\"_revisions\":{\"start\":3,\"ids\":\"a\"}}", 0, 400, "doc_validation",
                 "_revisions.ids isn't a array.");
    expect_error("{\"_revisions\":{\"start\":1,\"ids\":[\"a\",\"b\"]}}", 0, 400, "doc_validation", NULL);
    expect_error("{\"_revisions\":{\"start\":2,\"ids\":[\"a\",3]}}", 0, 400, "doc_validation", "RevId isn't a string");
    expect_error("{\"_id\":\"x\"}", 0, 400, "bad_request", NULL); /* new_edits=false needs a rev */
}

static void test_ids(void **state)
{
    (void)state;
    expect_error("{\"_id\":\"_foo\"}", DB_DOC_NEW_EDITS, 400, "illegal_docid",
                 "Only reserved document ids may start with underscore.");
    expect_error("{\"_id\":\"\"}", DB_DOC_NEW_EDITS, 400, "illegal_docid", "Document id must not be empty");
    expect_error("{\"_id\":5}", DB_DOC_NEW_EDITS, 400, "illegal_docid", "Document id must be a string");
    expect_error("{\"_id\":\"_design/\"}", DB_DOC_NEW_EDITS, 400, "illegal_docid", "Illegal document id `_design/`");
    expect_error("{\"_id\":\"_local/x\"}", DB_DOC_NEW_EDITS, 400, "illegal_docid", NULL);
    expect_error("{}", DB_DOC_NEW_EDITS | DB_DOC_ID_REQUIRED, 400, "illegal_docid", NULL);
    parsed p;
    parse(&p, "{\"_id\":\"_local/x\"}", NULL, DB_DOC_NEW_EDITS | DB_DOC_LOCAL_OK);
    assert_int_equal(p.rc, DV_OK);
    done(&p);
    parse(&p, "{\"_id\":\"_design/app\"}", NULL, DB_DOC_NEW_EDITS);
    assert_int_equal(p.rc, DV_OK);
    done(&p);
    db_err e;
    assert_int_equal(db_docid_check((const uint8_t *)"a\xff", 2, 0, &e), DV_ERR_INVALID);
}

static void test_special_members(void **state)
{
    (void)state;
    expect_error("{\"_foo\":1}", DB_DOC_NEW_EDITS, 400, "doc_validation", "Bad special document member: _foo");
    expect_error("{\"_deleted\":1}", DB_DOC_NEW_EDITS, 400, "doc_validation", "Bad special document member: _deleted");
    expect_error("{\"_rev\":\"x\"}", DB_DOC_NEW_EDITS, 400, "bad_request", "Invalid rev format");
    expect_error("[1]", DB_DOC_NEW_EDITS, 400, "bad_request", "Document must be a JSON object");
}

static void test_attachments(void **state)
{
    (void)state;
    parsed p;
    parse(&p, "{\"_attachments\":{\"a.txt\":{\"content_type\":\"text/plain\",\"data\":\"aGVsbG8=\"},"
              "\"s\":{\"stub\":true,\"revpos\":2},\"f\":{\"follows\":true,\"length\":7},"
              "\"z\":{\"data\":\"AAEC\",\"encoding\":\"gzip\",\"length\":99}}}",
          NULL, DB_DOC_NEW_EDITS);
    assert_int_equal(p.rc, DV_OK);
    assert_int_equal(p.d.natts, 4);
    assert_string_equal(p.d.atts[0].name, "a.txt");
    assert_string_equal(p.d.atts[0].type, "text/plain");
    assert_int_equal(p.d.atts[0].len, 5);
    assert_memory_equal(p.d.atts[0].data, "hello", 5);
    assert_int_equal(p.d.atts[1].stub, 1);
    assert_int_equal(p.d.atts[1].revpos, 2);
    assert_int_equal(p.d.att_follows[2], 1);
    assert_int_equal(p.d.atts[2].len, 7);
    assert_string_equal(p.d.atts[3].encoding, "gzip");
    assert_int_equal(p.d.atts[3].len, 3);
    assert_int_equal(p.d.atts[3].decoded_length, 99);
    assert_memory_equal(p.d.atts[3].data, "\x00\x01\x02", 3);
    done(&p);
    expect_error("{\"_attachments\":{\"_x\":{\"data\":\"\"}}}", DB_DOC_NEW_EDITS, 400, "bad_request",
                 "Attachment name '_x' starts with prohibited character '_'");
    expect_error("{\"_attachments\":{\"x\":{\"data\":\"***\"}}}", DB_DOC_NEW_EDITS, 400, "bad_request",
                 "Invalid attachment data for x");
    expect_error("{\"_attachments\":{\"x\":{}}}", DB_DOC_NEW_EDITS, 400, "bad_request", NULL);
    expect_error("{\"_attachments\":[]}", DB_DOC_NEW_EDITS, 400, "bad_request", NULL);
    expect_error("{\"_attachments\":{\"x\":5}}", DB_DOC_NEW_EDITS, 400, "bad_request", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_and_fields), cmocka_unit_test(test_revisions), cmocka_unit_test(test_ids),
        cmocka_unit_test(test_special_members), cmocka_unit_test(test_attachments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
