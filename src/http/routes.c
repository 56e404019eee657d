/*
 * routes.c — the route table (see handlers.h and router.h for the pattern
 * language).  chttpd dispatches server-level handlers on the first path
 * segment alone, so "/_uuids/anything" is still _uuids: hence "{any}".
 * Every other first segment is a database name.
 */
#include "http/handlers.h"

const http_route_t http_routes[] = {
    {HTTP_GET, "/", "GET,HEAD", (void *)http_handle_welcome},
    {HTTP_GET, "/_up/{any}", "GET,HEAD", (void *)http_handle_up},
    {HTTP_GET, "/_uuids/{any}", "GET", (void *)http_handle_uuids},
    {HTTP_ANY, "/{db}/{any}", "GET,HEAD,POST,PUT,DELETE,COPY", (void *)http_handle_db_missing},
};

const size_t http_nroutes = sizeof http_routes / sizeof http_routes[0];
