/*
 * Who may do what: the admin token (made at the first start, STATE/
 * admin.token) opens the admin API, the dev proxy and functions with
 * httpTrigger.authType: function. Below admin, proxy and the front end.
 */
#ifndef THAW_AUTH_H
#define THAW_AUTH_H

#include <stdbool.h>

struct http_req;

/* True when r carries the admin token: Authorization: Bearer TOKEN, or
 * X-Thaw-Token: TOKEN. Compared in a time that does not depend on where a
 * wrong token differs. */
bool auth_admin(const struct http_req *r);

#endif
