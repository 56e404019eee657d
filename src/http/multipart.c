/*
 * multipart.c — MIME multipart forms of documents.  PLACEHOLDER: being
 * written (PUT multipart/related, GET multipart/related and
 * multipart/mixed); until then these answer as a CouchDB without the
 * feature would: JSON only.
 */
#include "http/doc_util.h"

#include "base/status.h"
#include "http/hutil.h"

int http_wants_multipart_mixed(http_req_t *r)
{
    (void)r;
    return 0;
}

int http_wants_multipart_related(http_req_t *r)
{
    (void)r;
    return 0;
}

int http_doc_from_multipart(http_req_t *r, http_doc_ctx *c, const char *content_type, int new_edits)
{
    (void)c;
    (void)content_type;
    (void)new_edits;
    http_send_error(r, 415, "bad_content_type", "Content-Type must be application/json");
    return DV_ERR_INVALID;
}

void http_send_doc_multipart(http_req_t *r, const store_snap *snap, const store_docinfo *di, uint32_t idx,
                             const db_render_opts *o)
{
    (void)r, (void)snap, (void)di, (void)idx, (void)o;
}

void http_send_open_revs_multipart(http_req_t *r, const store_snap *snap, const store_docinfo *di,
                                   const store_rev *revs, size_t nrevs, int all, int latest,
                                   const db_render_opts *o)
{
    (void)r, (void)snap, (void)di, (void)revs, (void)nrevs, (void)all, (void)latest, (void)o;
}
