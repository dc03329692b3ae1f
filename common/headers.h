/*
 * The header policy: one table of the header names the daemon, the instance
 * host and the dev proxy treat specially, and where each may go (h2o's
 * token->proxy_should_drop). Lookups are case-insensitive; names come as
 * views (not NUL-terminated).
 */
#ifndef THAW_HEADERS_H
#define THAW_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

struct http_req;

enum header_hop {
	HOP_TO_HANDLER, /* a client's request header, on its way to a handler */
	HOP_TO_TOKEN_HANDLER, /* the same, for a function called with the admin
			       * token (authType: function) */
	HOP_TO_UPSTREAM, /* a client's request header, through /proxy/{port}/ */
	HOP_FROM_HANDLER, /* a handler's response header, on its way to the client */
};

/* Whether header name (len bytes) of request r (NULL for a response) may
 * pass at hop. Never: hop-by-hop and framing headers, and those a Connection
 * header of r names; to handlers: the platform's x-fc-* (the daemon sets
 * x-fc-request-id itself) and X-Thaw-Token (Authorization too where the
 * function takes the admin token); through the proxy: both, Host and the
 * forwarding headers the proxy sets. */
bool header_passes(enum header_hop hop, const struct http_req *r, const char *name, size_t len);

#endif
