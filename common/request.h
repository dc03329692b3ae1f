/*
 * An HTTP request as a handler sees it: the one conversion from a parsed
 * HTTP/1 request to the channel's CH_REQUEST frame, used by the daemon (an
 * invocation) and by the instance host's debug server (thaw dev), so both
 * hand handlers the same method, path, query, headers, body, request id and
 * deadline.
 */
#ifndef THAW_REQUEST_H
#define THAW_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/headers.h"

struct http_req;

/* Longest request id accepted from a client (x-fc-request-id). */
#define REQUEST_ID_MAX 64

/* The client's x-fc-request-id when it is a sane token (1..REQUEST_ID_MAX of
 * [A-Za-z0-9-_.:]), else "SALT-SEQ" with ++*seq. out has REQUEST_ID_MAX + 1
 * bytes. */
void request_pick_id(const struct http_req *r, uint64_t salt, uint64_t *seq, char *out);

/* Appends to frame a CH_REQUEST frame (request id 0 in its header: the pool
 * numbers it) of r: method, path (path_len bytes: what the handler sees),
 * r's query, the headers that pass hop plus x-fc-request-id: request_id,
 * deadline (unix ms) and the body. */
void request_encode(struct buf *frame, const struct http_req *r, const char *path,
		    size_t path_len, const char *request_id, int64_t deadline_unix_ms,
		    enum header_hop hop);

#endif
