/*
 * fuzz_query_args.c — libFuzzer target for the view query parameters
 * (http/query_args.c) in both forms.
 *
 * Input: first byte 'J' = the rest is a JSON body whose members are read as
 * decoded parameters; anything else = the rest is a query string.  Checked
 * on every input: parsing either succeeds or fails with a 4xx/5xx db_err
 * whose texts are valid UTF-8 without control characters (however the bad
 * value looked, and wherever a long one was cut); once validated, keys are
 * a JSON array, keys and bounds re-parse as JSON, string bounds carry their
 * bytes; a deep copy frees independently.  ASan catches any overrun.
 */
#include "base/status.h"
#include "http/query_args.h"
#include "http/router.h"
#include "json/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s)
{
    if (!json_utf8_valid(s, strlen(s)))
        abort();
    for (; *s; s++)
        if ((unsigned char)*s < 32)
            abort();
}

static void check_json(const buf_t *b)
{
    if (b->len && json_validate(b->data, b->len, 0, NULL) != DV_OK)
        abort();
}

static void check_ok(query_args *a)
{
    check_json(&a->start_key.json);
    check_json(&a->end_key.json);
    check_json(&a->keys);
    if (a->has_keys && (!a->keys.len || a->keys.data[0] != '['))
        abort();
    if (a->start_key.set && a->start_key.is_string && a->start_key.json.data[0] != '"')
        abort();
    query_args c;
    if (query_args_copy(&c, a) != DV_OK)
        return;
    query_args_free(a);
    check_json(&c.keys);
    query_args_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    query_args a;
    db_err e;
    int rc;
    if (size < 1)
        return 0;
    query_args_init(&a);
    if (data[0] == 'J') {
        json_doc jd = JSON_DOC_INIT;
        if (json_doc_parse(&jd, data + 1, size - 1, 0, NULL) != DV_OK || !json_is_object(json_doc_root(&jd))) {
            json_doc_free(&jd);
            return 0;
        }
        rc = query_args_from_object(&a, json_doc_root(&jd), &e);
        json_doc_free(&jd); /* the args must not point into the body */
    } else {
        char *target = malloc(size + 16);
        if (!target)
            return 0;
        memcpy(target, "/db/_all_docs?", 14);
        memcpy(target + 14, data + 1, size - 1);
        http_target_t t;
        if (http_target_parse(target, size + 13, &t) != DV_OK)
            abort();
        rc = query_args_from_target(&a, &t, 64, &e);
        http_target_free(&t);
        free(target);
    }
    if (rc == DV_OK)
        rc = query_args_validate(&a, data[size - 1] & 1 ? QUERY_VIEW_REDUCE : QUERY_VIEW_MAP, &e);
    if (rc == DV_OK) {
        check_ok(&a);
    } else if (rc == DV_ERR_INVALID) {
        if (e.status < 400 || e.status > 599)
            abort();
        check_text(e.error);
        check_text(e.reason);
    } else if (rc != DV_ERR_NOMEM) {
        abort();
    }
    query_args_free(&a);
    return 0;
}
