/*
 * handlers.h — the route table and the handlers it names.
 *
 * One handler file per API area (handlers_server.c: /, /_up, /_uuids, and
 * the answer for database paths until db/ lands).  Order in the table
 * matters: the first route whose pattern and method match wins, so specific
 * patterns come before catch-alls.
 */
#ifndef DV_HTTP_HANDLERS_H
#define DV_HTTP_HANDLERS_H

#include "http/router.h"
#include "http/server.h"
#include "json/json.h"

extern const http_route_t http_routes[];
extern const size_t http_nroutes;

void http_handle_welcome(http_req_t *r);
void http_handle_up(http_req_t *r);
void http_handle_uuids(http_req_t *r);
void http_handle_all_dbs(http_req_t *r);
void http_handle_dbs_info(http_req_t *r);
void http_handle_active_tasks(http_req_t *r);
void http_handle_stats(http_req_t *r);
/* handlers_config.c: /_node/{node}/_config[/section[/key]], _reload */
void http_handle_config(http_req_t *r);

/* handlers_db.c */
void http_handle_db(http_req_t *r);

/* handlers_session.c: /_session */
void http_handle_session(http_req_t *r);
void http_handle_compact(http_req_t *r);
void http_handle_ensure_full_commit(http_req_t *r);
void http_handle_revs_limit(http_req_t *r);
void http_handle_security(http_req_t *r);
/* The info object of GET /{db} (also rows of /_dbs_info). */
int http_db_info_json(db_t *db, json_writer *w);

/* handlers_bulk_docs.c */
void http_handle_bulk_docs(http_req_t *r);

/* handlers_changes.c */
void http_handle_changes(http_req_t *r);

/* handlers_alldocs.c: _all_docs, _design_docs, _local_docs (by path) */
void http_handle_all_docs(http_req_t *r);
void http_handle_all_docs_queries(http_req_t *r);

/* handlers_bulk_get.c */
void http_handle_bulk_get(http_req_t *r);

/* handlers_revs.c, handlers_purge.c */
void http_handle_revs_diff(http_req_t *r);
void http_handle_missing_revs(http_req_t *r);
void http_handle_purge(http_req_t *r);

/* handlers_view.c */
void http_handle_view(http_req_t *r);
void http_handle_design_info(http_req_t *r);
void http_handle_compact_views(http_req_t *r);
void http_handle_view_cleanup(http_req_t *r);

/* handlers_doc.c */
void http_handle_doc(http_req_t *r);

/* handlers_att.c */
void http_handle_attachment(http_req_t *r);

#endif
