/*
 * The front end: what an HTTP request asks for. It routes a request once,
 * at its head, and hands it to the status endpoints and admin API
 * (endpoints.h), the dev proxy (proxy.h) or a function's pool, as an
 * invocation (invocation.h) whose answer comes back to the connection.
 */
#ifndef THAW_FRONT_H
#define THAW_FRONT_H

/* Installs the front end as the connections' hooks (conn_set_hooks). */
void front_init(void);

#endif
