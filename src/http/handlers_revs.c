/*
 * handlers_revs.c — POST /{db}/_revs_diff and POST /{db}/_missing_revs, the
 * replicator's "which of these revisions do you lack" (CouchDB 3's
 * chttpd_db over couch_db:get_missing_revs).
 *
 * Body {"id": ["N-x", ...], ...}.  A revision is missing when the
 * document's tree does not hold it (a stemmed-away or bodiless revision
 * that is still in the tree is not missing, as in couch_key_tree); every
 * revision of an unknown document is missing.  Only ids with missing
 * revisions are answered, in request order.  _revs_diff adds
 * possible_ancestors when there are any: CouchDB's possible_ancestors, the
 * document's leaves (deleted ones too, winner order) whose pos is below
 * the highest pos among the missing revisions.
 *
 * The answer is built in memory: it is never larger than the request
 * (plus the ancestors, at most the leaves of the named documents).  Reads
 * run inline against one snapshot: one by-id lookup per id.
 */
#include "base/status.h"
#include "http/doc_util.h"
#include "http/handlers.h"
#include "http/hutil.h"

#include <stdlib.h>
#include <string.h>

/* Missing revs of one id into missing[] (a subset of revs, in order);
 * possible ancestors into anc[] (leaf indices of di). */
static int diff_one(const store_snap *snap, const uint8_t *id, size_t idlen, const store_rev *revs, size_t n,
                    store_docinfo *di, size_t *nmissing, int *missing, uint32_t **anc, uint32_t *nanc)
{
    int rc = idlen ? store_snap_get_doc(snap, id, idlen, di) : DV_ERR_NOTFOUND;
    uint64_t maxpos = 0;
    *nmissing = 0;
    *nanc = 0;
    if (rc != DV_OK && rc != DV_ERR_NOTFOUND)
        return rc;
    int found = rc == DV_OK && di->tree.n > 0;
    for (size_t i = 0; i < n; i++) {
        missing[i] = !found || revtree_find(&di->tree, &revs[i]) == REVTREE_NONE;
        if (missing[i]) {
            (*nmissing)++;
            if (revs[i].pos > maxpos)
                maxpos = revs[i].pos;
        }
    }
    if (!found || !*nmissing)
        return DV_OK;
    uint32_t *leaves = realloc(*anc, sizeof *leaves * di->tree.n);
    if (!leaves)
        return DV_ERR_NOMEM;
    *anc = leaves;
    uint32_t nl, k = 0;
    revtree_leaves(&di->tree, leaves, &nl);
    for (uint32_t i = 0; i < nl; i++)
        if (di->tree.nodes[leaves[i]].rev.pos < maxpos)
            leaves[k++] = leaves[i];
    *nanc = k;
    return DV_OK;
}

static void revs_req(http_req_t *r, int with_ancestors)
{
    json_doc jd = JSON_DOC_INIT;
    const json_val *root, *k, *v;
    store_snap *snap = NULL;
    store_docinfo di;
    store_docinfo_init(&di);
    buf_t out = BUF_INIT;
    store_rev *revs = NULL;
    int *missing = NULL;
    uint32_t *anc = NULL;
    db_t *db = http_open_db(r);
    if (!db)
        return;
    int rc = http_require_ctype(r, "application/json");
    if (rc != DV_OK || (rc = http_json_body_obj(r, &jd, &root)) != DV_OK)
        goto done;
    if ((rc = db_snapshot(db, &snap)) != DV_OK)
        goto fail;
    json_writer w;
    json_writer_init(&w, &out);
    json_write_begin_object(&w);
    if (!with_ancestors) {
        json_write_key_cstr(&w, "missing_revs");
        json_write_begin_object(&w);
    }
    json_iter it = json_iter_begin(root);
    while (json_iter_member(&it, &k, &v)) {
        size_t n, idlen, nmissing;
        uint32_t nanc;
        const char *id = json_str(k, &idlen);
        free(revs);
        revs = NULL;
        if (http_parse_rev_array(r, v, &revs, &n) != DV_OK)
            goto done;
        int *m = realloc(missing, sizeof *m * (n ? n : 1));
        if (!m) {
            rc = DV_ERR_NOMEM;
            goto fail;
        }
        missing = m;
        rc = diff_one(snap, (const uint8_t *)id, idlen, revs, n, &di, &nmissing, missing, &anc, &nanc);
        if (rc != DV_OK)
            goto fail;
        if (!nmissing)
            continue;
        json_write_key(&w, id, idlen);
        if (with_ancestors) {
            json_write_begin_object(&w);
            json_write_key_cstr(&w, "missing");
        }
        json_write_begin_array(&w);
        for (size_t i = 0; i < n; i++)
            if (missing[i])
                http_write_rev(&w, &revs[i]);
        json_write_end_array(&w);
        if (with_ancestors && nanc) {
            json_write_key_cstr(&w, "possible_ancestors");
            json_write_begin_array(&w);
            for (uint32_t i = 0; i < nanc; i++)
                http_write_rev(&w, &di.tree.nodes[anc[i]].rev);
            json_write_end_array(&w);
        }
        if (with_ancestors)
            json_write_end_object(&w);
    }
    if (!with_ancestors)
        json_write_end_object(&w);
    json_write_end_object(&w);
    if ((rc = w.err) != DV_OK)
        goto fail;
    http_send_json(r, 200, &out);
    goto done;
fail:
    http_send_internal(r, rc);
done:
    free(revs);
    free(missing);
    free(anc);
    buf_free(&out);
    json_doc_free(&jd);
    store_docinfo_free(&di);
    if (snap)
        store_snap_release(snap);
    db_release(db);
}

void http_handle_revs_diff(http_req_t *r)
{
    revs_req(r, 1);
}

void http_handle_missing_revs(http_req_t *r)
{
    revs_req(r, 0);
}
