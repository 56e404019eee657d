/*
 * handlers_doc.c — one document: GET/HEAD/PUT/DELETE/COPY /{db}/{docid},
 * _design/ and _local/ ids included (CouchDB 3's chttpd_db:db_doc_req).
 *
 * Reads run inline on the loop thread against one snapshot (a by-id lookup
 * and one body read: O(log n) node reads, usually cached).  Writes parse
 * and validate on the loop thread, then wait for the commit through
 * http_db_write; nothing blocks the loop (validate_doc_update functions,
 * when the database has any, run on a worker first: http_doc_submit).
 *
 * Revisions a write names come from the body's _rev, ?rev= and If-Match;
 * when more than one is given they must agree (400 otherwise), as CouchDB.
 */
#include "base/log.h"
#include "base/status.h"
#include "http/doc_util.h"
#include "http/handlers.h"
#include "http/hutil.h"
#include "http/users.h"
#include "http/stats.h"

#include <h2o.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_local_id(const http_str_t *id)
{
    return id->n > 7 && !memcmp(id->p, "_local/", 7);
}

static void send_not_found(http_req_t *r, const char *reason)
{
    http_send_error(r, 404, "not_found", reason);
}

/* ---- GET ------------------------------------------------------------------ */

/* Revisions named by open_revs=[...] (JSON array of rev strings).  *all
 * for open_revs=all. */
static int parse_open_revs(http_req_t *r, store_rev **revs, size_t *n, int *all)
{
    const http_str_t *v = http_qs(r, "open_revs");
    *revs = NULL;
    *n = 0;
    *all = 0;
    if (!v)
        return DV_OK;
    if (v->n == 3 && !memcmp(v->p, "all", 3)) {
        *all = 1;
        return DV_OK;
    }
    json_doc jd = JSON_DOC_INIT;
    const json_val *arr;
    int rc = http_qs_json(r, "open_revs", &jd, &arr);
    if (rc == DV_OK)
        rc = http_parse_rev_array(r, arr, revs, n);
    json_doc_free(&jd);
    return rc;
}

/* GET ?open_revs=: a JSON array of {"ok": doc} / {"missing": rev}. */
static void get_open_revs(http_req_t *r, store_snap *snap, const http_str_t *id, const db_render_opts *o,
                          int latest)
{
    store_rev *revs = NULL;
    size_t nrevs = 0;
    int all;
    store_docinfo di;
    store_docinfo_init(&di);
    buf_t b = BUF_INIT;
    uint32_t *idx = NULL;
    if (parse_open_revs(r, &revs, &nrevs, &all) != DV_OK)
        goto done;
    int rc = store_snap_get_doc(snap, (const uint8_t *)id->p, id->n, &di);
    if (rc != DV_OK && rc != DV_ERR_NOTFOUND) {
        http_send_internal(r, rc);
        goto done;
    }
    int found = rc == DV_OK;
    if (all && !found) {
        send_not_found(r, "missing");
        goto done;
    }
    if (http_wants_multipart_mixed(r)) {
        http_send_open_revs_multipart(r, snap, found ? &di : NULL, revs, nrevs, all, latest, o);
        goto done;
    }
    json_writer w;
    json_writer_init(&w, &b);
    json_write_begin_array(&w);
    idx = malloc(sizeof *idx * (di.tree.n + 1));
    if (!idx) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto done;
    }
    rc = DV_OK;
    if (all) {
        uint32_t nl;
        revtree_leaves(&di.tree, idx, &nl);
        for (uint32_t i = 0; rc == DV_OK && i < nl; i++)
            rc = http_write_open_rev(snap, &di, idx[i], NULL, o, &w);
    } else {
        for (size_t i = 0; rc == DV_OK && i < nrevs; i++) {
            uint32_t k = found ? revtree_find(&di.tree, &revs[i]) : REVTREE_NONE;
            if (k != REVTREE_NONE && latest) {
                uint32_t nl = http_leaves_below(&di.tree, k, idx);
                for (uint32_t j = 0; rc == DV_OK && j < nl; j++)
                    rc = http_write_open_rev(snap, &di, idx[j], NULL, o, &w);
                continue;
            }
            rc = http_write_open_rev(snap, &di, k, &revs[i], o, &w);
        }
    }
    json_write_end_array(&w);
    if (rc == DV_OK)
        rc = w.err;
    if (rc == DV_OK) {
        http_stat_inc(STAT_DB_READS);
        http_send_json(r, 200, &b);
    } else {
        http_send_internal(r, rc);
    }
done:
    free(idx);
    free(revs);
    buf_free(&b);
    store_docinfo_free(&di);
}

static void get_local(http_req_t *r, store_snap *snap, const http_str_t *id)
{
    uint64_t rev;
    buf_t body = BUF_INIT, b = BUF_INIT;
    int rc = store_snap_get_local(snap, (const uint8_t *)id->p, id->n, &rev, &body);
    if (rc == DV_ERR_NOTFOUND) {
        send_not_found(r, "missing");
    } else if (rc != DV_OK) {
        http_send_internal(r, rc);
    } else {
        json_writer w;
        char rs[32];
        snprintf(rs, sizeof rs, "0-%llu", (unsigned long long)rev);
        json_writer_init(&w, &b);
        json_write_begin_object(&w);
        json_write_key_cstr(&w, "_id");
        json_write_string(&w, id->p, id->n);
        json_write_key_cstr(&w, "_rev");
        json_write_cstr(&w, rs);
        if (body.len >= 2)
            json_write_members_raw(&w, (const char *)body.data, body.len);
        json_write_end_object(&w);
        if (w.err)
            http_send_internal(r, w.err);
        else
            http_send_json(r, 200, &b);
    }
    buf_free(&body);
    buf_free(&b);
}

static void doc_get(http_req_t *r, db_t *db)
{
    const http_str_t *id = &r->match.docid;
    store_snap *snap = NULL;
    store_docinfo di;
    store_docinfo_init(&di);
    store_rev *since = NULL;
    buf_t b = BUF_INIT;
    int rc = db_snapshot(db, &snap);
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        goto done;
    }
    if (is_local_id(id)) {
        get_local(r, snap, id);
        goto done;
    }
    db_render_opts o;
    int latest = 0, want_deleted = 0, has_rev = 0;
    store_rev rev;
    size_t nsince = 0;
    if (http_parse_doc_opts(r, &o, &latest) != DV_OK || http_parse_rev_param(r, "rev", &rev, &has_rev) != DV_OK ||
        http_parse_atts_since(r, &since, &nsince) != DV_OK)
        goto done;
    http_qs_true(r, "deleted", &want_deleted);
    if (nsince) {
        o.atts_since = since;
        o.natts_since = nsince;
    }
    /* Another user's _users document: its public fields only (users.h),
     * never through the multipart or open_revs answers. */
    int public_only = http_users_public_only(r, db);
    if (public_only && http_qs(r, "open_revs")) {
        send_not_found(r, "missing");
        goto done;
    }
    if (http_qs(r, "open_revs")) {
        get_open_revs(r, snap, id, &o, latest);
        goto done;
    }
    rc = store_snap_get_doc(snap, (const uint8_t *)id->p, id->n, &di);
    if (rc == DV_ERR_NOTFOUND) {
        send_not_found(r, "missing");
        goto done;
    }
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        goto done;
    }
    uint32_t idx;
    if (has_rev && !latest) {
        idx = revtree_find(&di.tree, &rev);
        if (idx == REVTREE_NONE || !di.tree.nodes[idx].has_body) {
            send_not_found(r, "missing");
            goto done;
        }
    } else {
        idx = revtree_winner(&di.tree);
        if (di.tree.nodes[idx].deleted && !want_deleted) {
            send_not_found(r, "deleted");
            goto done;
        }
    }
    /* CouchDB sends an ETag (and honours If-None-Match) only when the
     * answer carries no meta members, which may change without the rev;
     * nor does divan for a public view, which public_fields changes. */
    int meta = o.revs_info || o.conflicts || o.deleted_conflicts || o.local_seq || public_only;
    char etag[STORE_REV_ID_MAX + 28];
    if (!meta) {
        char rs[STORE_REV_ID_MAX + 24];
        http_rev_str(&di.tree.nodes[idx].rev, rs, sizeof rs);
        snprintf(etag, sizeof etag, "\"%s\"", rs);
        http_add_header(r, "ETag", etag);
        const char *inm = http_req_header(r, "if-none-match");
        if (inm && !strcmp(inm, etag)) {
            http_send_not_modified(r);
            goto done;
        }
    }
    /* atts_since implies attachments, as CouchDB's send_doc options. */
    if ((o.attachments || o.natts_since) && http_wants_multipart_related(r) && !public_only) {
        http_send_doc_multipart(r, snap, &di, idx, &o);
        goto done;
    }
    json_writer w;
    json_writer_init(&w, &b);
    size_t npublic = 1;
    rc = public_only ? http_users_render_public(http_server_opts(r->server)->auth, snap, &di, idx, &o, 1, &w, &npublic)
                     : db_render_doc(snap, &di, idx, &o, &w, NULL);
    if (rc == DV_OK && npublic == 0) {
        send_not_found(r, "missing"); /* CouchDB: nothing public is not found */
    } else if (rc == DV_OK) {
        http_stat_inc(STAT_DB_READS);
        http_send_json(r, 200, &b);
    } else {
        http_send_internal(r, rc);
    }
done:
    free(since);
    buf_free(&b);
    store_docinfo_free(&di);
    if (snap)
        store_snap_release(snap);
}

/* ---- writes ------------------------------------------------------------- */

/* Parses a JSON document body for PUT (or a multipart's JSON part) into
 * c->doc, reconciling its _rev with ?rev= and If-Match. */
int http_doc_from_body(http_req_t *r, http_doc_ctx *c, const void *p, size_t n, int new_edits)
{
    const http_str_t *id = &r->match.docid;
    json_doc jd = JSON_DOC_INIT;
    const json_val *root;
    db_err e;
    int rc = http_json_parse(r, p, n, &jd, &root);
    if (rc != DV_OK)
        goto done;
    c->local = is_local_id(id);
    /* The rev may still come from ?rev= or If-Match: required below. */
    int flags = DB_DOC_NEW_EDITS | DB_DOC_LOCAL_OK;
    if ((rc = db_doc_from_json(root, id->p, id->n, flags, &c->doc, &e)) != DV_OK) {
        if (rc == DV_ERR_INVALID)
            http_send_db_err(r, &e);
        else
            http_send_internal(r, rc);
        goto done;
    }
    if ((rc = http_reconcile_rev(r, &c->doc, c->local)) == DV_OK && !new_edits &&
        (rc = db_doc_require_rev(&c->doc, &e)) != DV_OK)
        http_send_db_err(r, &e);
done:
    json_doc_free(&jd);
    return rc;
}

static void doc_put(http_req_t *r, db_t *db)
{
    int new_edits = 1;
    const http_str_t *ne = http_qs(r, "new_edits");
    if (ne && ne->n == 5 && !memcmp(ne->p, "false", 5))
        new_edits = 0;
    http_doc_ctx *c = http_doc_ctx_new(r, db);
    if (!c) {
        db_release(db);
        return;
    }
    const char *ct = http_req_header(r, "content-type");
    int rc;
    if (ct && !strncasecmp(ct, "multipart/related", 17)) {
        rc = http_doc_from_multipart(r, c, ct, new_edits);
    } else {
        size_t n;
        const uint8_t *p = http_req_body(r, &n);
        rc = http_doc_from_body(r, c, p, n, new_edits);
    }
    if (rc != DV_OK)
        goto fail;
    if (!http_doc_size_ok(r, &c->doc))
        goto fail;
    if (c->doc.deleted)
        c->status_ok = 200;
    http_doc_submit(r, c, new_edits);
    return;
fail:
    http_doc_ctx_free(c);
}

static void doc_delete(http_req_t *r, db_t *db)
{
    const http_str_t *id = &r->match.docid;
    http_doc_ctx *c = http_doc_ctx_new(r, db);
    if (!c) {
        db_release(db);
        return;
    }
    c->local = is_local_id(id);
    c->status_ok = 200;
    db_err e;
    if (buf_append(&c->doc.id, id->p, id->n) != DV_OK || buf_append_str(&c->doc.body, "{}") != DV_OK) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    if (db_docid_check((const uint8_t *)id->p, id->n, 1, &e) != DV_OK) {
        http_send_db_err(r, &e);
        goto fail;
    }
    c->doc.deleted = 1;
    if (http_reconcile_rev(r, &c->doc, c->local) != DV_OK)
        goto fail;
    if (!c->local && !c->doc.has_rev) {
        /* CouchDB opens the current doc first: absent or deleted is 404. */
        store_snap *snap;
        store_docinfo di;
        store_docinfo_init(&di);
        int rc = db_snapshot(db, &snap);
        if (rc == DV_OK) {
            rc = store_snap_get_doc(snap, (const uint8_t *)id->p, id->n, &di);
            store_snap_release(snap);
        }
        int deleted = rc == DV_OK && di.deleted;
        store_docinfo_free(&di);
        if (rc == DV_ERR_NOTFOUND || deleted) {
            send_not_found(r, deleted ? "deleted" : "missing");
            goto fail;
        }
        if (rc != DV_OK) {
            http_send_internal(r, rc);
            goto fail;
        }
    }
    http_doc_submit(r, c, 1);
    return;
fail:
    http_doc_ctx_free(c);
}

/* COPY /{db}/{docid} with Destination: target-id[?rev=X]. */
static void doc_copy(http_req_t *r, db_t *db)
{
    const http_str_t *id = &r->match.docid;
    const char *dest = http_req_header(r, "destination");
    store_snap *snap = NULL;
    store_docinfo di;
    store_docinfo_init(&di);
    store_docbody body;
    store_docbody_init(&body);
    http_doc_ctx *c = NULL;
    db_err e;
    if (!dest || !*dest) {
        http_send_error(r, 400, "bad_request", "Destination header is mandatory for COPY.");
        goto fail;
    }
    c = http_doc_ctx_new(r, db);
    if (!c)
        goto fail;
    db = NULL; /* c owns the reference now */
    if (http_parse_destination(r, dest, &c->doc) != DV_OK)
        goto fail;
    if (db_docid_check(c->doc.id.data, c->doc.id.len, 0, &e) != DV_OK) {
        http_send_db_err(r, &e);
        goto fail;
    }
    int has_rev = 0;
    store_rev rev;
    if (http_parse_rev_param(r, "rev", &rev, &has_rev) != DV_OK)
        goto fail;
    int rc = db_snapshot(c->db, &snap);
    if (rc == DV_OK)
        rc = store_snap_get_doc(snap, (const uint8_t *)id->p, id->n, &di);
    uint32_t idx = REVTREE_NONE;
    if (rc == DV_OK)
        idx = has_rev ? revtree_find(&di.tree, &rev) : revtree_winner(&di.tree);
    if (rc == DV_ERR_NOTFOUND || (rc == DV_OK && (idx == REVTREE_NONE || !di.tree.nodes[idx].has_body ||
                                                  (!has_rev && di.tree.nodes[idx].deleted)))) {
        send_not_found(r, rc == DV_OK && idx != REVTREE_NONE && di.tree.nodes[idx].deleted ? "deleted" : "missing");
        goto fail;
    }
    if (rc == DV_OK)
        rc = store_snap_read_body(snap, di.tree.nodes[idx].body, &body);
    if (rc == DV_OK)
        rc = http_doc_copy_atts(snap, &body, &c->doc);
    if (rc != DV_OK) {
        http_send_internal(r, rc);
        goto fail;
    }
    if (buf_append(&c->doc.body, body.body.data, body.body.len) != DV_OK) {
        http_send_internal(r, DV_ERR_NOMEM);
        goto fail;
    }
    store_docbody_free(&body);
    store_docinfo_free(&di);
    store_snap_release(snap);
    http_doc_submit(r, c, 1);
    return;
fail:
    store_docbody_free(&body);
    store_docinfo_free(&di);
    if (snap)
        store_snap_release(snap);
    if (c)
        http_doc_ctx_free(c);
    else if (db)
        db_release(db);
}

void http_handle_doc(http_req_t *r)
{
    db_t *db = http_open_db(r);
    if (!db)
        return;
    switch (r->method) {
    case HTTP_GET:
    case HTTP_HEAD:
        doc_get(r, db);
        db_release(db);
        break;
    case HTTP_PUT:
        doc_put(r, db);
        break;
    case HTTP_DELETE:
        doc_delete(r, db);
        break;
    case HTTP_COPY:
        doc_copy(r, db);
        break;
    default:
        db_release(db);
        http_send_method_not_allowed(r, "DELETE,GET,HEAD,POST,PUT,COPY");
    }
}
