/*
 * doc_validate.c — validate_doc_update on the HTTP write paths: the
 * arguments CouchDB gives the functions (newDoc, oldDoc, userCtx, secObj)
 * and the answers for a refusal.  See doc_validate.h for where the hook
 * sits and which revision is oldDoc.
 *
 * Invariants: http_vdu_begin runs on the loop thread and only reads (a
 * snapshot, the by-id range of design documents, the security object);
 * http_vdu_check runs on a worker and never touches the request.  Every
 * refusal leaves the database unchanged: the caller queues only accepted
 * documents.
 *
 * Cost per validated document: one by-id lookup and one body read for
 * oldDoc, the JSON of both documents, and one query-server round trip per
 * validation function.
 */
#include "http/doc_validate.h"

#include "base/status.h"
#include "http/hutil.h"
#include "store/revtree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int http_vdu_user_ctx(const http_req_t *r, const char *dbname, buf_t *out)
{
    json_writer w;
    json_writer_init(&w, out);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "db");
    json_write_cstr(&w, dbname);
    json_write_key_cstr(&w, "name");
    if (r->user && r->user->name)
        json_write_cstr(&w, r->user->name);
    else
        json_write_null(&w);
    json_write_key_cstr(&w, "roles");
    json_write_begin_array(&w);
    for (size_t i = 0; r->user && i < r->user->nroles; i++)
        json_write_cstr(&w, r->user->roles[i]);
    json_write_end_array(&w);
    json_write_end_object(&w);
    return w.err;
}

int http_vdu_begin(http_req_t *r, db_t *db, http_vdu *v)
{
    memset(v, 0, sizeof *v);
    buf_init(&v->user_ctx);
    buf_init(&v->sec_obj);
    v->views = http_server_opts(r->server)->views;
    if (!v->views)
        return DV_OK; /* no query server: no JavaScript at all */
    int rc = db_snapshot(db, &v->snap);
    if (rc == DV_OK)
        rc = vdu_lookup(v->views, db, v->snap, &v->set);
    if (rc == DV_OK && v->set) {
        if ((rc = store_snap_security(v->snap, &v->sec_obj)) == DV_OK)
            rc = http_vdu_user_ctx(r, db_name(db), &v->user_ctx);
    }
    if (rc == DV_OK && !v->set && v->snap) {
        store_snap_release(v->snap); /* not needed: nothing to validate */
        v->snap = NULL;
    }
    if (rc != DV_OK) {
        http_vdu_end(v);
        http_send_internal(r, rc);
    }
    return rc;
}

void http_vdu_end(http_vdu *v)
{
    vdu_set_release(v->set);
    v->set = NULL;
    if (v->snap)
        store_snap_release(v->snap);
    v->snap = NULL;
    buf_free(&v->user_ctx);
    buf_free(&v->sec_obj);
}

static int is_prefix(const db_doc *d, const char *p, size_t n)
{
    return d->id.len > n && !memcmp(d->id.data, p, n);
}

static void write_rev(json_writer *w, const store_rev *rev)
{
    char rs[STORE_REV_ID_MAX + 24];
    http_rev_str(rev, rs, sizeof rs);
    json_write_cstr(w, rs);
}

/* newDoc as CouchDB's couch_doc:to_json_obj(Doc, [revs]) shows an edit:
 * _id, the _rev it names, the body, _deleted, _revisions, attachment
 * stubs (no data: functions see names, types and lengths). */
static int new_doc_json(const db_doc *d, json_writer *w)
{
    const store_rev *revs = d->path_len ? d->path : d->has_rev ? &d->rev : NULL;
    size_t nrevs = d->path_len ? d->path_len : d->has_rev ? 1 : 0;
    json_write_begin_object(w);
    json_write_key_cstr(w, "_id");
    json_write_string(w, (const char *)d->id.data, d->id.len);
    if (nrevs) {
        json_write_key_cstr(w, "_rev");
        write_rev(w, &revs[0]);
    }
    if (d->body.len > 2)
        json_write_members_raw(w, (const char *)d->body.data, d->body.len);
    if (d->deleted) {
        json_write_key_cstr(w, "_deleted");
        json_write_bool(w, true);
    }
    if (nrevs) {
        json_write_key_cstr(w, "_revisions");
        json_write_begin_object(w);
        json_write_key_cstr(w, "start");
        json_write_u64(w, revs[0].pos);
        json_write_key_cstr(w, "ids");
        json_write_begin_array(w);
        for (size_t i = 0; i < nrevs; i++)
            json_write_string(w, revs[i].id, revs[i].len);
        json_write_end_array(w);
        json_write_end_object(w);
    }
    if (d->natts) {
        json_write_key_cstr(w, "_attachments");
        json_write_begin_object(w);
        for (size_t i = 0; i < d->natts; i++) {
            const store_att_in *a = &d->atts[i];
            json_write_key_cstr(w, a->name);
            json_write_begin_object(w);
            if (a->type) {
                json_write_key_cstr(w, "content_type");
                json_write_cstr(w, a->type);
            }
            if (!a->stub) {
                json_write_key_cstr(w, "length");
                json_write_u64(w, a->encoding ? a->decoded_length : a->len);
            }
            if (a->revpos) {
                json_write_key_cstr(w, "revpos");
                json_write_u64(w, a->revpos);
            }
            json_write_key_cstr(w, "stub");
            json_write_bool(w, true);
            json_write_end_object(w);
        }
        json_write_end_object(w);
    }
    json_write_end_object(w);
    return w->err;
}

/* Which revision of di is oldDoc for edit d: *idx (REVTREE_NONE: null),
 * or *skip when the edit is not validated (a conflict for the writer to
 * answer, or a replicated revision already present). */
static void old_rev(const store_docinfo *di, int found, const db_doc *d, int new_edits, uint32_t *idx, int *skip)
{
    *idx = REVTREE_NONE;
    *skip = 0;
    if (new_edits) {
        if (d->has_rev) {
            uint32_t k = found ? revtree_find(&di->tree, &d->rev) : REVTREE_NONE;
            if (k == REVTREE_NONE || !revtree_is_leaf(&di->tree, k))
                *skip = 1; /* 409 from the writer */
            else if (di->tree.nodes[k].has_body)
                *idx = k;
        } else if (found && !di->deleted) {
            *skip = 1; /* 409 from the writer */
        }
        return;
    }
    const store_rev *revs = d->path_len ? d->path : &d->rev;
    size_t nrevs = d->path_len ? d->path_len : d->has_rev ? 1 : 0;
    if (!found || !nrevs)
        return;
    if (revtree_find(&di->tree, &revs[0]) != REVTREE_NONE) {
        *skip = 1; /* already stored: the writer does nothing */
        return;
    }
    for (size_t i = 1; i < nrevs; i++) {
        uint32_t k = revtree_find(&di->tree, &revs[i]);
        if (k != REVTREE_NONE && di->tree.nodes[k].has_body) {
            *idx = k;
            return;
        }
    }
}

/* The arguments [newDoc, oldDoc, userCtx, secObj] for d into args, or
 * *skip when d is not validated. */
static int vdu_args(http_vdu *v, const db_doc *d, int new_edits, buf_t *args, int *skip)
{
    *skip = 1;
    if (!v->set || is_prefix(d, "_local/", 7) || is_prefix(d, "_design/", 8))
        return DV_OK;
    store_docinfo di;
    store_docinfo_init(&di);
    int rc = store_snap_get_doc(v->snap, d->id.data, d->id.len, &di);
    int found = rc == DV_OK;
    if (rc == DV_ERR_NOTFOUND)
        rc = DV_OK;
    uint32_t idx = REVTREE_NONE;
    if (rc != DV_OK)
        goto done;
    old_rev(&di, found, d, new_edits, &idx, skip);
    if (*skip)
        goto done;
    json_writer w;
    json_writer_init(&w, args);
    json_write_begin_array(&w);
    if ((rc = new_doc_json(d, &w)) != DV_OK)
        goto done;
    if (idx == REVTREE_NONE) {
        json_write_null(&w);
    } else {
        db_render_opts o;
        memset(&o, 0, sizeof o);
        o.revs = 1;
        if ((rc = db_render_doc(v->snap, &di, idx, &o, &w, NULL)) != DV_OK)
            goto done;
    }
    json_write_raw(&w, (const char *)v->user_ctx.data, v->user_ctx.len);
    json_write_raw(&w, (const char *)v->sec_obj.data, v->sec_obj.len);
    json_write_end_array(&w);
    rc = w.err;
done:
    store_docinfo_free(&di);
    return rc;
}

/* A 500 for a failure of divan's own (store, memory) while validating. */
static void internal_refusal(vdu_result *res, int rc)
{
    res->status = 500;
    snprintf(res->error, sizeof res->error, "%s", "unknown_error");
    buf_reset(&res->reason);
    json_writer w;
    json_writer_init(&w, &res->reason);
    if (json_write_cstr(&w, dv_strerror(rc)) != DV_OK)
        res->reason.len = 0;
}

int http_vdu_check(http_vdu *v, const db_doc *d, int new_edits, vdu_result *res)
{
    buf_t args = BUF_INIT;
    int skip;
    int rc = vdu_args(v, d, new_edits, &args, &skip);
    if (rc == DV_OK && !skip)
        rc = vdu_run(v->views, v->set, (const char *)args.data, args.len, res);
    if (rc != DV_OK && rc != DV_ERR_INVALID)
        internal_refusal(res, rc);
    buf_free(&args);
    return rc;
}

int http_vdu_check_all(http_vdu *v, const db_doc *docs, size_t n, int new_edits, const int *exempt, vdu_result *res,
                       int *refused)
{
    buf_t *args = calloc(n ? n : 1, sizeof *args);
    const char **ap = calloc(n ? n : 1, sizeof *ap);
    size_t *lens = calloc(n ? n : 1, sizeof *lens);
    int *done = calloc(n ? n : 1, sizeof *done);
    int rc = DV_ERR_NOMEM;
    if (!args || !ap || !lens || !done)
        goto out;
    rc = DV_OK;
    for (size_t i = 0; i < n; i++) {
        int skip = 1;
        buf_init(&args[i]);
        if (!exempt[i]) {
            int r = vdu_args(v, &docs[i], new_edits, &args[i], &skip);
            if (r != DV_OK) {
                internal_refusal(&res[i], r);
                refused[i] = 1;
                skip = 1;
            }
        }
        done[i] = skip; /* vdu_run_batch passes over these */
        ap[i] = (const char *)args[i].data;
        lens[i] = args[i].len;
    }
    rc = vdu_run_batch(v->views, v->set, ap, lens, n, res, done);
    for (size_t i = 0; rc == DV_OK && i < n; i++)
        if (done[i] && args[i].len && !refused[i])
            refused[i] = 1; /* skipped documents have no args: only refusals are set here */
out:
    for (size_t i = 0; args && i < n; i++)
        buf_free(&args[i]);
    free(args);
    free(ap);
    free(lens);
    free(done);
    return rc;
}

void http_send_vdu_error(http_req_t *r, const vdu_result *res)
{
    buf_t b = BUF_INIT;
    json_writer w;
    json_writer_init(&w, &b);
    json_write_begin_object(&w);
    json_write_key_cstr(&w, "error");
    json_write_cstr(&w, res->error);
    json_write_key_cstr(&w, "reason");
    if (res->reason.len)
        json_write_raw(&w, (const char *)res->reason.data, res->reason.len);
    else
        json_write_null(&w);
    json_write_end_object(&w);
    if (w.err)
        http_send_internal(r, w.err);
    else
        http_send_json(r, res->status ? res->status : 500, &b);
    buf_free(&b);
}
