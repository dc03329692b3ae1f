/*
 * The CLI's HTTP client: one blocking request at a time with libcurl.
 * Every request has a connect timeout and a total deadline; answers are
 * bounded in size.
 */
#ifndef THAW_CLI_HTTP_H
#define THAW_CLI_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cli_http_req {
	const char *method;     /* "GET", "POST", ... */
	const char *url;        /* absolute */
	const char *body;       /* NULL: none */
	size_t body_len;
	const char *const *headers; /* "Name: value", n_headers of them */
	unsigned n_headers;
	unsigned timeout_ms;    /* whole request; 0: 30 s */
	size_t max_body;        /* answer bodies past it fail; 0: 64 MiB */
	const char *want_header; /* lower case: its value lands in res->header */
	FILE *upload;           /* PUT this file (body NULL): no total deadline,
				   but failing when nothing moves for 60 s */
	uint64_t upload_size;
	void (*progress)(void *ctx, uint64_t sent, uint64_t total); /* NULL: none */
	void *progress_ctx;
	/* A 2xx answer's body goes here as it comes, not into res->body
	 * (other answers still do): returns false to stop (cli_http_do then
	 * fails with -ECANCELED). No total deadline, but failing when nothing
	 * moves for 60 s. NULL: none. */
	bool (*stream)(void *ctx, const char *data, size_t len);
	void *stream_ctx;
};

struct cli_http_res {
	long status;
	char *body; /* owned, NUL-terminated (len excludes the NUL) */
	size_t len;
	char err[256]; /* why, when cli_http_do fails */
	char header[256]; /* req->want_header's value, "" when absent */
};

/* Sends req and reads the whole answer into res (free with
 * cli_http_res_fini, also after an error). Returns 0 when the server
 * answered (any status), -ECONNREFUSED when it could not be reached (no
 * connection, reset, closed without an answer), -ETIMEDOUT when it was
 * reached but did not answer within the deadline, -EINVAL for a bad URL,
 * -EFBIG for an answer over max_body, -ECANCELED when req->stream stopped
 * it, -EIO otherwise; res->err says why. */
int cli_http_do(const struct cli_http_req *req, struct cli_http_res *res);

void cli_http_res_fini(struct cli_http_res *res);

#endif
