/*
 * Who may do what: the admin token (made at the first start, STATE/
 * admin.token) opens the admin API, the dev proxy and functions with
 * httpTrigger.authType: function; a function's own invoke token opens that
 * function alone. Below admin, proxy and the front end.
 */
#ifndef THAW_AUTH_H
#define THAW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct http_req;

/* True when r carries the admin token: Authorization: Bearer TOKEN, or
 * X-Thaw-Token: TOKEN. Compared in a time that does not depend on where a
 * wrong token differs. */
bool auth_admin(const struct http_req *r);
/* The token that invokes function name (httpTrigger.authType: function)
 * and nothing else: HMAC-SHA256 of "thaw-invoke:NAME" keyed with the admin
 * token, 64 hex digits. Listed by the admin API (invoke_token); the same
 * after a restart, new when the admin token is. */
void auth_invoke_token(const char *name, char out[65]);
/* True when r carries name's invoke token, or the admin token. */
bool auth_invoke(const struct http_req *r, const char *name);
/* The same check on a token already taken from a request (gRPC metadata:
 * x-thaw-token, or authorization without its "Bearer "): tok (len bytes,
 * NULL = none presented) is name's invoke token or the admin token. */
bool auth_invoke_token_ok(const char *tok, size_t len, const char *name);

#endif
