/*
 * fuzz_doc_json.c — libFuzzer target for documents arriving as JSON
 * (db/doc.c: db_doc_from_json, the id rule, _revisions, _attachments with
 * base64 data) — every PUT, POST and _bulk_docs body goes through it.
 *
 * Input: first byte picks the flags (new_edits, id required, local ok) and
 * whether a URL id is given; the rest is the body.  Checked on every input:
 * a rejected document sets a 4xx error with a reason; an accepted one has a
 * body that is a valid JSON object without '_' members (but the
 * replicator's), a valid id, attachments whose data lies inside the decoded
 * buffer and re-encodes to base64 that decodes to the same bytes, and a
 * store update that points at all of it.  ASan catches overruns and leaks.
 */
#include "base/base64.h"
#include "base/status.h"
#include "db/db.h"
#include "json/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_accepted(const db_doc *d, int flags)
{
    json_doc jd = JSON_DOC_INIT;
    if (json_doc_parse(&jd, d->body.data ? (const char *)d->body.data : "", d->body.len, 0, NULL) != DV_OK)
        abort();
    const json_val *root = json_doc_root(&jd);
    if (!json_is_object(root))
        abort();
    json_iter it = json_iter_begin(root);
    const json_val *k, *v;
    while (json_iter_member(&it, &k, &v)) {
        size_t n;
        const char *s = json_str(k, &n);
        if (n && s[0] == '_' && !(n > 13 && !memcmp(s, "_replication_", 13)))
            abort();
    }
    json_doc_free(&jd);
    db_err e;
    if (d->id.len && db_docid_check(d->id.data, d->id.len, (flags & DB_DOC_LOCAL_OK) != 0, &e) != DV_OK)
        abort();
    for (size_t i = 0; i < d->natts; i++) {
        const store_att_in *a = &d->atts[i];
        if (!a->name || !a->name[0] || a->name[0] == '_')
            abort();
        if (a->stub || d->att_follows[i])
            continue;
        if (a->len && (a->data < d->attdata.data || a->data + a->len > d->attdata.data + d->attdata.len))
            abort();
        buf_t enc = BUF_INIT, dec = BUF_INIT;
        if (base64_encode(a->data, a->len, &enc) != DV_OK ||
            base64_decode((const char *)enc.data, enc.len, &dec) != DV_OK || dec.len != a->len ||
            (a->len && memcmp(dec.data, a->data, a->len)))
            abort();
        buf_free(&enc);
        buf_free(&dec);
    }
    for (size_t i = 1; i < d->path_len; i++)
        if (d->path[i].pos + 1 != d->path[i - 1].pos)
            abort();
    store_doc_update u;
    db_doc_to_update((db_doc *)d, flags & DB_DOC_NEW_EDITS, &u);
    if (u.body != d->body.data || u.natts != d->natts)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int flags = data[0] & (DB_DOC_NEW_EDITS | DB_DOC_ID_REQUIRED | DB_DOC_LOCAL_OK);
    int url_id = data[0] & 0x80;
    json_doc jd = JSON_DOC_INIT;
    if (json_doc_parse(&jd, data + 1, size - 1, 64, NULL) != DV_OK) {
        json_doc_free(&jd);
        return 0;
    }
    db_doc d;
    db_doc_init(&d);
    db_err e;
    int rc = db_doc_from_json(json_doc_root(&jd), url_id ? "urlid" : NULL, url_id ? 5 : 0, flags, &d, &e);
    if (rc == DV_OK)
        check_accepted(&d, flags);
    else if (rc == DV_ERR_INVALID && (e.status < 400 || e.status > 499 || !e.error || !e.reason))
        abort();
    db_doc_free(&d);
    json_doc_free(&jd);
    return 0;
}
