/*
 * doc.c — documents from their JSON form into edits (db_doc), CouchDB's
 * couch_doc:from_json_obj_validate rules, and the errors it answers.
 *
 * A document object's members starting with '_' are CouchDB's: _id, _rev,
 * _deleted, _revisions and _attachments are taken out and interpreted;
 * _revs_info, _conflicts, _deleted_conflicts and _local_seq (what a GET can
 * add) are dropped; the replicator's _replication_* fields stay in the body;
 * any other '_' member is rejected (doc_validation).  What remains is the
 * body, stored as minified JSON bytes.
 *
 * Cost: one pass over the members plus one filtered serialisation of the
 * body (O(size of the document)); inline attachment data is base64-decoded
 * into one buffer.
 */
#include "db/db_int.h"

#include "base/base64.h"
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void db_err_set(db_err *e, int status, const char *error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->buf, sizeof e->buf, fmt, ap);
    va_end(ap);
    e->status = status;
    e->error = error;
    e->reason = e->buf;
}

void db_doc_init(db_doc *d)
{
    memset(d, 0, sizeof *d);
}

void db_doc_free(db_doc *d)
{
    buf_free(&d->id);
    buf_free(&d->body);
    buf_free(&d->attdata);
    free(d->path);
    for (size_t i = 0; i < d->natts; i++) {
        free((char *)d->atts[i].name);
        free((char *)d->atts[i].type);
        free((char *)d->atts[i].encoding);
    }
    free(d->atts);
    free(d->att_off);
    free(d->att_follows);
    memset(d, 0, sizeof *d);
}

static int has_prefix(const uint8_t *s, size_t n, const char *p)
{
    size_t k = strlen(p);
    return n >= k && !memcmp(s, p, k);
}

int db_docid_check(const uint8_t *id, size_t n, int local_ok, db_err *e)
{
    if (n == 0) {
        db_err_set(e, 400, "illegal_docid", "Document id must not be empty");
        return DV_ERR_INVALID;
    }
    if (!json_utf8_valid(id, n)) {
        db_err_set(e, 400, "bad_request", "Document id must be valid UTF-8");
        return DV_ERR_INVALID;
    }
    if (n > 65535) {
        db_err_set(e, 400, "illegal_docid", "Document id is too long");
        return DV_ERR_INVALID;
    }
    if (id[0] != '_')
        return DV_OK;
    if (has_prefix(id, n, "_design/") && n > 8)
        return DV_OK;
    if (local_ok && has_prefix(id, n, "_local/") && n > 7)
        return DV_OK;
    if (has_prefix(id, n, "_design/") || has_prefix(id, n, "_local/"))
        db_err_set(e, 400, "illegal_docid", "Illegal document id `%.*s`", (int)n, (const char *)id);
    else
        db_err_set(e, 400, "illegal_docid", "Only reserved document ids may start with underscore.");
    return DV_ERR_INVALID;
}

/* _revisions: {"start": N, "ids": ["newest", …]} → path, newest first. */
static int parse_revisions(const json_val *v, db_doc *d, db_err *e)
{
    const json_val *start = json_is_object(v) ? json_object_get_cstr(v, "start") : NULL;
    const json_val *ids = json_is_object(v) ? json_object_get_cstr(v, "ids") : NULL;
    int64_t pos;
    if (!start || json_get_i64(start, &pos) != DV_OK || pos < 1) {
        db_err_set(e, 400, "doc_validation", "_revisions.start isn't an integer.");
        return DV_ERR_INVALID;
    }
    if (!ids || !json_is_array(ids) || json_len(ids) == 0) {
        db_err_set(e, 400, "doc_validation", "_revisions.ids isn't a array.");
        return DV_ERR_INVALID;
    }
    size_t n = json_len(ids);
    if ((uint64_t)pos < n) {
        db_err_set(e, 400, "doc_validation", "_revisions.start is smaller than the number of ids.");
        return DV_ERR_INVALID;
    }
    d->path = calloc(n, sizeof *d->path);
    if (!d->path)
        return DV_ERR_NOMEM;
    json_iter it = json_iter_begin(ids);
    const json_val *x;
    while (json_iter_elem(&it, &x)) {
        size_t len;
        const char *s = json_str(x, &len);
        if (!json_is_string(x) || !store_rev_id_valid(s, len)) {
            db_err_set(e, 400, "doc_validation", "RevId isn't a string");
            return DV_ERR_INVALID;
        }
        store_rev *r = &d->path[d->path_len++];
        r->pos = (uint64_t)pos - (d->path_len - 1);
        r->len = (uint8_t)len;
        memcpy(r->id, s, len);
    }
    return DV_OK;
}

static char *dup_n(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

/* One member of _attachments. */
static int parse_att(const json_val *k, const json_val *v, db_doc *d, size_t i, db_err *e)
{
    size_t nlen;
    const char *name = json_str(k, &nlen);
    store_att_in *a = &d->atts[i];
    if (nlen == 0 || memchr(name, 0, nlen)) {
        db_err_set(e, 400, "bad_request", "Attachment name can't be empty");
        return DV_ERR_INVALID;
    }
    if (name[0] == '_') {
        db_err_set(e, 400, "bad_request", "Attachment name '%.*s' starts with prohibited character '_'",
                   (int)(nlen > 100 ? 100 : nlen), name);
        return DV_ERR_INVALID;
    }
    if (!json_is_object(v)) {
        db_err_set(e, 400, "bad_request", "Bad attachment %.*s: not an object", (int)(nlen > 100 ? 100 : nlen),
                   name);
        return DV_ERR_INVALID;
    }
    if (!(a->name = dup_n(name, nlen)))
        return DV_ERR_NOMEM;
    const json_val *stub = json_object_get_cstr(v, "stub");
    const json_val *follows = json_object_get_cstr(v, "follows");
    const json_val *data = json_object_get_cstr(v, "data");
    const json_val *type = json_object_get_cstr(v, "content_type");
    const json_val *enc = json_object_get_cstr(v, "encoding");
    const json_val *revpos = json_object_get_cstr(v, "revpos");
    const json_val *length = json_object_get_cstr(v, "length");
    int64_t n64;
    if (revpos && json_get_i64(revpos, &n64) == DV_OK && n64 > 0)
        a->revpos = (uint64_t)n64;
    if (type) {
        size_t tl;
        const char *t = json_str(type, &tl);
        if (!json_is_string(type) || memchr(t, 0, tl)) {
            db_err_set(e, 400, "bad_request", "Attachment %s: content_type must be a string", a->name);
            return DV_ERR_INVALID;
        }
        if (!(a->type = dup_n(t, tl)))
            return DV_ERR_NOMEM;
    }
    if (enc && json_is_string(enc)) {
        size_t el;
        const char *s = json_str(enc, &el);
        if (!(el == 8 && !memcmp(s, "identity", 8))) {
            if (memchr(s, 0, el) || !(a->encoding = dup_n(s, el)))
                return memchr(s, 0, el) ? DV_ERR_INVALID : DV_ERR_NOMEM;
        }
    }
    if (stub && json_is_true(stub)) {
        a->stub = 1;
        return DV_OK;
    }
    if (follows && json_is_true(follows)) {
        d->att_follows[i] = 1;
        if (length && json_get_i64(length, &n64) == DV_OK && n64 >= 0)
            a->len = (size_t)n64;
        const json_val *elen = json_object_get_cstr(v, "encoded_length");
        if (a->encoding && elen && json_get_i64(elen, &n64) == DV_OK && n64 >= 0) {
            a->decoded_length = a->len;
            a->len = (size_t)n64;
        }
        return DV_OK;
    }
    if (!data || !json_is_string(data)) {
        db_err_set(e, 400, "bad_request", "Attachment %s has no data, stub or follows", a->name);
        return DV_ERR_INVALID;
    }
    size_t dl;
    const char *s = json_str(data, &dl);
    d->att_off[i] = d->attdata.len;
    int rc = base64_decode(s, dl, &d->attdata);
    if (rc == DV_ERR_INVALID) {
        db_err_set(e, 400, "bad_request", "Invalid attachment data for %s", a->name);
        return rc;
    }
    if (rc)
        return rc;
    a->len = d->attdata.len - d->att_off[i];
    if (a->encoding) {
        a->decoded_length = a->len;
        if (length && json_get_i64(length, &n64) == DV_OK && n64 >= 0)
            a->decoded_length = (uint64_t)n64;
    }
    return DV_OK;
}

static int parse_atts(const json_val *v, db_doc *d, db_err *e)
{
    if (!json_is_object(v)) {
        db_err_set(e, 400, "bad_request", "_attachments must be an object");
        return DV_ERR_INVALID;
    }
    size_t n = json_len(v);
    if (n == 0)
        return DV_OK;
    d->atts = calloc(n, sizeof *d->atts);
    d->att_off = calloc(n, sizeof *d->att_off);
    d->att_follows = calloc(n, sizeof *d->att_follows);
    if (!d->atts || !d->att_off || !d->att_follows)
        return DV_ERR_NOMEM;
    json_iter it = json_iter_begin(v);
    const json_val *k, *x;
    while (json_iter_member(&it, &k, &x)) {
        int rc = parse_att(k, x, d, d->natts++, e);
        if (rc)
            return rc;
    }
    /* Data pointers are set last: attdata moved while it grew. */
    for (size_t i = 0; i < d->natts; i++)
        if (!d->atts[i].stub && !d->att_follows[i])
            d->atts[i].data = d->attdata.data ? d->attdata.data + d->att_off[i] : (const uint8_t *)"";
    return DV_OK;
}

/* Body members to drop when storing: every '_' member but the
 * replicator's own fields. */
static bool skip_member(const char *name, size_t len, void *ctx)
{
    (void)ctx;
    return len > 0 && name[0] == '_' && !(len > 13 && !memcmp(name, "_replication_", 13));
}

static int key_is(const json_val *k, const char *s)
{
    size_t n;
    const char *p = json_str(k, &n);
    return n == strlen(s) && !memcmp(p, s, n);
}

int db_doc_from_json(const json_val *obj, const char *id, size_t idlen, int flags, db_doc *d, db_err *e)
{
    int rc = DV_ERR_INVALID;
    if (!json_is_object(obj)) {
        db_err_set(e, 400, "bad_request", "Document must be a JSON object");
        return DV_ERR_INVALID;
    }
    const json_val *jid = NULL, *jrev = NULL, *jrevs = NULL, *jatts = NULL;
    json_iter it = json_iter_begin(obj);
    const json_val *k, *v;
    while (json_iter_member(&it, &k, &v)) {
        size_t kl;
        const char *ks = json_str(k, &kl);
        if (kl == 0 || ks[0] != '_')
            continue;
        if (key_is(k, "_id"))
            jid = v;
        else if (key_is(k, "_rev"))
            jrev = v;
        else if (key_is(k, "_revisions"))
            jrevs = v;
        else if (key_is(k, "_attachments"))
            jatts = v;
        else if (key_is(k, "_deleted")) {
            if (!json_is_bool(v)) {
                db_err_set(e, 400, "doc_validation", "Bad special document member: _deleted");
                return DV_ERR_INVALID;
            }
            d->deleted = json_is_true(v);
        } else if (!key_is(k, "_revs_info") && !key_is(k, "_conflicts") && !key_is(k, "_deleted_conflicts") &&
                   !key_is(k, "_local_seq") && skip_member(ks, kl, NULL)) {
            db_err_set(e, 400, "doc_validation", "Bad special document member: %.*s",
                       (int)(kl > 100 ? 100 : kl), ks);
            return DV_ERR_INVALID;
        }
    }
    /* id: the URL's wins (CouchDB ignores a body _id on PUT /db/id). */
    const uint8_t *idp = (const uint8_t *)id;
    size_t idn = idlen;
    if (!id && jid) {
        if (!json_is_string(jid)) {
            db_err_set(e, 400, "illegal_docid", "Document id must be a string");
            return DV_ERR_INVALID;
        }
        idp = (const uint8_t *)json_str(jid, &idn);
    }
    if (idp) {
        if ((rc = db_docid_check(idp, idn, flags & DB_DOC_LOCAL_OK, e)) != DV_OK)
            return rc;
        if ((rc = buf_append(&d->id, idp, idn)) != DV_OK)
            return rc;
    } else if (flags & DB_DOC_ID_REQUIRED) {
        db_err_set(e, 400, "illegal_docid", "Document id must not be empty");
        return DV_ERR_INVALID;
    }
    int local = db_docid_is_local(d->id.data, d->id.len);
    if (jrev) {
        size_t rl;
        const char *rs = json_str(jrev, &rl);
        if (!json_is_string(jrev) || (local ? db_local_rev_parse(rs, rl, &d->rev) : store_rev_parse(rs, rl, &d->rev))) {
            db_err_set(e, 400, "bad_request", "Invalid rev format");
            return DV_ERR_INVALID;
        }
        d->has_rev = 1;
    }
    if (local)
        jrevs = NULL; /* local docs have no history */
    if (jrevs && (rc = parse_revisions(jrevs, d, e)) != DV_OK)
        return rc;
    if (d->path_len) {
        /* _revisions wins over _rev, as in couch_doc:transfer_fields. */
        d->rev = d->path[0];
        d->has_rev = 1;
    }
    if (!(flags & DB_DOC_NEW_EDITS) && (rc = db_doc_require_rev(d, e)) != DV_OK)
        return rc;
    if (jatts && (rc = parse_atts(jatts, d, e)) != DV_OK)
        return rc;
    json_writer w;
    json_writer_init(&w, &d->body);
    return json_write_object_filtered(&w, obj, skip_member, NULL);
}

int db_doc_require_rev(const db_doc *d, db_err *e)
{
    if (d->has_rev || db_docid_is_local(d->id.data, d->id.len))
        return DV_OK;
    db_err_set(e, 400, "bad_request", "When `new_edits: false`, the document needs `_rev` or `_revisions` specified");
    return DV_ERR_INVALID;
}

int db_docid_is_local(const uint8_t *id, size_t n)
{
    return n > 7 && !memcmp(id, "_local/", 7);
}

int db_local_rev_parse(const char *s, size_t n, store_rev *out)
{
    if (n < 3 || s[0] != '0' || s[1] != '-' || n - 2 > 20)
        return DV_ERR_INVALID;
    uint64_t v = 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return DV_ERR_INVALID;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    memset(out, 0, sizeof *out);
    out->len = (uint8_t)(n - 2);
    memcpy(out->id, s + 2, n - 2);
    return DV_OK;
}

void db_doc_to_local_update(db_doc *d, store_local_update *u)
{
    memset(u, 0, sizeof *u);
    u->id = d->id.data;
    u->idlen = d->id.len;
    u->deleted = d->deleted;
    u->body = d->body.data;
    u->body_len = d->body.len;
    if (d->has_rev) {
        /* digits only, checked by db_local_rev_parse */
        u->has_rev = 1;
        for (size_t i = 0; i < d->rev.len; i++)
            u->rev = u->rev * 10 + (uint64_t)(d->rev.id[i] - '0');
    }
}

void db_doc_to_update(db_doc *d, int new_edits, store_doc_update *u)
{
    memset(u, 0, sizeof *u);
    u->id = d->id.data;
    u->idlen = d->id.len;
    u->deleted = d->deleted;
    u->body = d->body.data;
    u->body_len = d->body.len;
    u->atts = d->atts;
    u->natts = d->natts;
    if (new_edits) {
        u->mode = STORE_EDIT;
        u->has_parent = d->has_rev;
        if (d->has_rev) {
            /* new_edits=true names the parent: with _revisions, its head. */
            u->parent = d->rev;
        }
    } else {
        u->mode = STORE_REPLICATE;
        if (d->path_len) {
            u->path = d->path;
            u->path_len = d->path_len;
        } else {
            u->path = &d->rev;
            u->path_len = 1;
        }
    }
}

void db_err_from_status(db_err *e, int status, const uint8_t *id, size_t idlen)
{
    switch (status) {
    case DV_ERR_CONFLICT:
        db_err_set(e, 409, "conflict", "Document update conflict.");
        break;
    case DV_ERR_MISSING_STUB:
        db_err_set(e, 412, "missing_stub", "Invalid attachment stub in %.*s", (int)(idlen > 100 ? 100 : idlen),
                   (const char *)id);
        break;
    case DV_ERR_NOTFOUND:
        db_err_set(e, 404, "not_found", "missing");
        break;
    case DV_ERR_INVALID:
        db_err_set(e, 400, "bad_request", "Invalid document");
        break;
    case DV_ERR_TOO_LARGE:
        db_err_set(e, 413, "document_too_large", "%.*s", (int)(idlen > 100 ? 100 : idlen), (const char *)id);
        break;
    default:
        db_err_set(e, 500, "unknown_error", "%s", dv_strerror(status));
        break;
    }
}
