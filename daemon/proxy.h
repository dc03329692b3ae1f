/*
 * Dev-pod proxy: /proxy/{port}/... forwards to 127.0.0.1:{port}, so a
 * developer can call a debug server through the gateway. Never an open
 * proxy: the destination host is always loopback, the port must be in
 * --proxy-ports, the caller must present the admin token, and paths with
 * encoded slashes, backslashes or dots are refused.
 *
 * The request body may be up to PROXY_MAX_BODY. Hop-by-hop headers (also
 * those the client's Connection header names), the token, and client copies
 * of the headers the proxy sets (X-Forwarded-*, X-ProxyContextPath,
 * x-fc-request-id, Forwarded) are not forwarded.
 *
 * The upstream's response is relayed byte for byte as it arrives
 * (streaming), headers included: no header of it is parsed or copied; the
 * upstream request says Connection: close, and the client connection closes
 * after the relay. An upstream that connects, takes or sends nothing for
 * --proxy-timeout gets the client a 504 (or, once bytes were relayed, the
 * connection closes).
 */
#ifndef THAW_PROXY_H
#define THAW_PROXY_H

#include <stddef.h>

struct conn;
struct proxy;
struct route;

/* Function Compute's limit for a synchronous call's body, and fc.yaml's
 * maxRequestBodySize default: what a function takes, the proxy passes. */
#define PROXY_MAX_BODY (32ull << 20)

/* Headers of a /proxy request are in: 401/403 now, before the body is read
 * (the connection then closes), else the body limit is PROXY_MAX_BODY. */
void proxy_on_headers(struct conn *c, const struct route *rt);
/* Answers c's /proxy request: an error, or starts the relay. */
void proxy_start(struct conn *c, const struct route *rt);
/* The client connection is closing. */
void proxy_detach(struct proxy *px);
/* Parses --proxy-ports "8080,9001"; 0 or -EINVAL. */
int proxy_set_ports(const char *list);

#endif
