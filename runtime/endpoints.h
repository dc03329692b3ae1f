/*
 * The daemon's own endpoints: /healthz, /readyz, /metrics, /v2 (KServe
 * server metadata), /admin/... (bearer token) and /proxy/{port}/...
 */
#ifndef THAW_ENDPOINTS_H
#define THAW_ENDPOINTS_H

struct conn;
struct route;

#include <stdbool.h>

/* True when c carries the admin token (Authorization: Bearer, or
 * X-Thaw-Token). */
bool endpoints_authorized(const struct conn *c);
/* The token that invokes function name (httpTrigger.authType: function)
 * and nothing else: HMAC-SHA256 of "thaw-invoke:NAME" keyed with the admin
 * token, 64 hex digits. Listed by the admin API (invoke_token); the same
 * after a restart, new when the admin token is. */
void endpoints_invoke_token(const char *name, char out[65]);
/* True when c carries name's invoke token, or the admin token. */
bool endpoints_invoke_authorized(const struct conn *c, const char *name);
/* At the head of a request (before its body): starts streaming an
 * upload (PUT /admin/blobs/DIGEST) to disk, or refuses it at once. */
void endpoints_on_headers(struct conn *c, const struct route *rt);
/* c is being freed: drops an upload it left half done. */
void endpoints_conn_closed(struct conn *c);
/* Answers c's request for a non-function route. */
void endpoints_handle(struct conn *c, const struct route *rt);

#endif
