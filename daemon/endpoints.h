/*
 * The daemon's own endpoints: /healthz, /readyz, /metrics, /v2 (KServe
 * server metadata), /admin/... (bearer token) and /proxy/{port}/...
 */
#ifndef THAW_ENDPOINTS_H
#define THAW_ENDPOINTS_H

struct conn;
struct route;

#include <stdbool.h>

/* At the head of a request (before its body): starts streaming an
 * upload (PUT /admin/blobs/DIGEST) to disk, or refuses it at once. */
void endpoints_on_headers(struct conn *c, const struct route *rt);
/* c is being freed: drops an upload it left half done. */
void endpoints_conn_closed(struct conn *c);
/* Answers c's request for a non-function route. */
void endpoints_handle(struct conn *c, const struct route *rt);

#endif
