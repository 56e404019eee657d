/*
 * routes.c — the route table (see handlers.h and router.h for the pattern
 * language).  chttpd dispatches server-level handlers on the first path
 * segment alone, so "/_uuids/anything" is still _uuids: hence "{any}".
 * Every other first segment is a database name.
 */
#include "http/handlers.h"

const http_route_t http_routes[] = {
    {HTTP_GET, "/", "GET,HEAD", (void *)http_handle_welcome, HTTP_ACCESS_PUBLIC},
    {HTTP_GET, "/_up/{any}", "GET,HEAD", (void *)http_handle_up, HTTP_ACCESS_PUBLIC},
    {HTTP_GET, "/_uuids/{any}", "GET", (void *)http_handle_uuids, HTTP_ACCESS_PUBLIC},
    {HTTP_GET | HTTP_POST | HTTP_DELETE, "/_session/{any}", "GET,HEAD,POST,DELETE", (void *)http_handle_session,
     HTTP_ACCESS_PUBLIC},
    {HTTP_GET, "/_all_dbs/{any}", "GET,HEAD", (void *)http_handle_all_dbs, HTTP_ACCESS_ALL_DBS},
    {HTTP_GET | HTTP_POST, "/_dbs_info/{any}", "GET,HEAD,POST", (void *)http_handle_dbs_info, HTTP_ACCESS_ALL_DBS},
    {HTTP_GET, "/_active_tasks/{any}", "GET,HEAD", (void *)http_handle_active_tasks, HTTP_ACCESS_SERVER_ADMIN},
    {HTTP_GET, "/_node/{db}/_stats/{any}", "GET,HEAD", (void *)http_handle_stats, HTTP_ACCESS_PUBLIC},
    {HTTP_ANY, "/_node/{db}/_config/{any}", "GET,HEAD,PUT,DELETE,POST", (void *)http_handle_config,
     HTTP_ACCESS_SERVER_ADMIN},
    {HTTP_ANY, "/{db}", "DELETE,GET,HEAD,POST,PUT", (void *)http_handle_db, HTTP_ACCESS_DB},
    {HTTP_POST, "/{db}/_compact", "POST", (void *)http_handle_compact, HTTP_ACCESS_DB_ADMIN},
    {HTTP_POST, "/{db}/_compact/{rest}", "POST", (void *)http_handle_compact_views, HTTP_ACCESS_DB_ADMIN},
    {HTTP_POST, "/{db}/_view_cleanup", "POST", (void *)http_handle_view_cleanup, HTTP_ACCESS_DB_ADMIN},
    {HTTP_POST, "/{db}/_ensure_full_commit", "POST", (void *)http_handle_ensure_full_commit, HTTP_ACCESS_DB_MEMBER},
    {HTTP_GET | HTTP_PUT, "/{db}/_revs_limit", "PUT,GET", (void *)http_handle_revs_limit, HTTP_ACCESS_DB_META},
    {HTTP_GET | HTTP_PUT, "/{db}/_security", "PUT,GET", (void *)http_handle_security, HTTP_ACCESS_DB_META},
    {HTTP_POST, "/{db}/_bulk_docs", "POST", (void *)http_handle_bulk_docs, HTTP_ACCESS_DB_MEMBER},
    {HTTP_GET | HTTP_POST, "/{db}/_changes", "GET,POST,HEAD", (void *)http_handle_changes, HTTP_ACCESS_DB_MEMBER},
    {HTTP_POST, "/{db}/_bulk_get", "POST", (void *)http_handle_bulk_get, HTTP_ACCESS_DB_MEMBER},
    {HTTP_POST, "/{db}/_revs_diff", "POST", (void *)http_handle_revs_diff, HTTP_ACCESS_DB_MEMBER},
    {HTTP_POST, "/{db}/_missing_revs", "POST", (void *)http_handle_missing_revs, HTTP_ACCESS_DB_MEMBER},
    {HTTP_POST, "/{db}/_purge", "POST", (void *)http_handle_purge, HTTP_ACCESS_SERVER_ADMIN},
    {HTTP_GET | HTTP_POST, "/{db}/_all_docs", "GET,HEAD,POST", (void *)http_handle_all_docs, HTTP_ACCESS_DB_MEMBER},
    {HTTP_GET | HTTP_POST, "/{db}/_design_docs", "GET,HEAD,POST", (void *)http_handle_all_docs, HTTP_ACCESS_DB_MEMBER},
    {HTTP_GET | HTTP_POST, "/{db}/_local_docs", "GET,HEAD,POST", (void *)http_handle_all_docs, HTTP_ACCESS_DB_MEMBER},
    {HTTP_POST, "/{db}/_all_docs/queries", "POST", (void *)http_handle_all_docs_queries, HTTP_ACCESS_DB_MEMBER},
    {HTTP_POST, "/{db}/_design_docs/queries", "POST", (void *)http_handle_all_docs_queries, HTTP_ACCESS_DB_MEMBER},
    {HTTP_POST, "/{db}/_local_docs/queries", "POST", (void *)http_handle_all_docs_queries, HTTP_ACCESS_DB_MEMBER},
    {HTTP_GET | HTTP_POST, "/{db}/{docid}/_view/{rest}", "GET,HEAD,POST", (void *)http_handle_view, HTTP_ACCESS_DB_MEMBER},
    {HTTP_GET, "/{db}/{docid}/_info", "GET,HEAD", (void *)http_handle_design_info, HTTP_ACCESS_DB_MEMBER},
    {HTTP_ANY, "/{db}/{docid}", "DELETE,GET,HEAD,POST,PUT,COPY", (void *)http_handle_doc, HTTP_ACCESS_DB_MEMBER},
    {HTTP_ANY, "/{db}/{docid}/{rest}", "DELETE,GET,HEAD,PUT", (void *)http_handle_attachment, HTTP_ACCESS_DB_MEMBER},
};
const size_t http_nroutes = sizeof http_routes / sizeof http_routes[0];
