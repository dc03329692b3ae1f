/*
 * HTTP/1.1 request parsing: glue around Debian's http-parser (nodejs's
 * http_parser 2.9). Incremental and zero-copy for the request line and
 * headers: the request keeps the raw bytes and hands out views into them.
 * The body is de-chunked into its own buffer. Pipelined bytes stay in the
 * buffer for the next message.
 *
 * Use: http_req_feed() the bytes read, then http_req_parse() until it
 * returns HTTP_PARTIAL (read more), HTTP_HEADERS (headers complete: route,
 * set the body limit, and call parse again), HTTP_DONE (a whole request:
 * answer it, then http_req_next()) or HTTP_ERROR (answer error_status and
 * close).
 */
#ifndef THAW_HTTP_H
#define THAW_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_URL 4096

enum http_step { HTTP_PARTIAL, HTTP_HEADERS, HTTP_DONE, HTTP_ERROR };

struct http_span {
	uint32_t off, len;
};

struct http_header_ref {
	struct http_span name, value;
};

struct http_req {
	http_parser parser;
	struct buf in;  /* raw bytes: this message's head, then pipelined data */
	size_t parsed;  /* bytes of in consumed by the parser */
	size_t head_end; /* after HTTP_HEADERS: end of the head in in */
	struct http_span url;
	struct http_header_ref headers[HTTP_MAX_HEADERS];
	unsigned n_headers;
	bool in_value;   /* last header callback was a value */
	struct buf body;
	uint64_t body_limit;
	/* Set after HTTP_HEADERS to stream the body elsewhere (an upload to
	 * disk) instead of into body; a non-zero return fails the request with
	 * 507. Cleared by http_req_next. */
	int (*sink)(void *ctx, const char *data, size_t len);
	void *sink_ctx;
	uint64_t sunk; /* body bytes given to sink */
	bool headers_done, message_done, expect_continue;
	int error_status;       /* HTTP_ERROR: 400, 413, 414, 431, 501 */
	const char *error_msg;  /* static text */
};

/* Sets the largest header section accepted (431 past it); process-wide. */
void http_set_max_header_size(uint32_t bytes);

void http_req_init(struct http_req *r, uint64_t body_limit);
void http_req_fini(struct http_req *r);
void http_req_feed(struct http_req *r, const char *data, size_t len);
enum http_step http_req_parse(struct http_req *r);
/* Drops the finished message, keeps pipelined bytes, resets for the next. */
void http_req_next(struct http_req *r);

/* Views (valid until http_req_next or the next feed). */
const char *http_req_method(const struct http_req *r);
static inline const char *http_span_ptr(const struct http_req *r, struct http_span s)
{
	return r->in.data + s.off;
}
/* Case-insensitive header lookup; returns the value span or a len 0 span
 * with found false. */
bool http_req_header(const struct http_req *r, const char *name, struct http_span *value);
bool http_req_keep_alive(const struct http_req *r);
/* Bytes received but not yet parsed (a pipelined next request). */
static inline size_t http_req_pending(const struct http_req *r)
{
	return r->in.len - r->parsed;
}

/* Whether a response with this status carries a body (RFC 9110 6.4.1):
 * not 1xx, 204 or 304. A HEAD request's response never does either. */
bool http_status_has_body(int status);

/* Reason phrase for a status code. */
const char *http_status_text(int status);

#endif
