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

extern const http_route_t http_routes[];
extern const size_t http_nroutes;

void http_handle_welcome(http_req_t *r);
void http_handle_up(http_req_t *r);
void http_handle_uuids(http_req_t *r);
void http_handle_db_missing(http_req_t *r);

#endif
