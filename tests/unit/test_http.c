/* Unit tests for common/http.c, the glue around http-parser.
 *
 * Most cases are a table of (input, expected transcript). The transcript is
 * what a caller sees driving http_req the way the daemon does: one line per
 * HTTP_HEADERS, a block per HTTP_DONE (method, url, keep-alive, expect
 * flag, every header view and the body, byte-exact) and the status of an
 * HTTP_ERROR. Every case is run with the input fed whole, one byte at a
 * time and in two pieces at every split point: all must give the same
 * transcript. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/http.h"

/* --- transcript driver --------------------------------------------------- */

struct drive {
	uint64_t body_limit;        /* given to http_req_init */
	uint64_t limit_after_head;  /* 0: keep; else set at HTTP_HEADERS, as the daemon does */
};

static bool span_inside(const struct http_req *r, struct http_span s)
{
	return (size_t)s.off + s.len <= r->in.len;
}

static void describe_done(const struct http_req *r, struct buf *out)
{
	buf_printf(out, "D %s %.*s ka=%d ec=%d\n", http_req_method(r), (int)r->url.len,
		   http_span_ptr(r, r->url), http_req_keep_alive(r), r->expect_continue);
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		assert_true(span_inside(r, h->name));
		assert_true(span_inside(r, h->value));
		buf_printf(out, "  [%.*s][%.*s]\n", (int)h->name.len, http_span_ptr(r, h->name),
			   (int)h->value.len, http_span_ptr(r, h->value));
	}
	buf_printf(out, "  body(%zu)[%.*s]\n", r->body.len, (int)r->body.len,
		   r->body.len ? r->body.data : "");
}

/* Parses until more input is needed; true once the request errored. */
static bool drain(struct http_req *r, const struct drive *d, struct buf *out)
{
	for (int guard = 0; guard < 10000; guard++) {
		enum http_step s = http_req_parse(r);
		switch (s) {
		case HTTP_PARTIAL:
			return false;
		case HTTP_HEADERS:
			assert_true(span_inside(r, r->url));
			buf_printf(out, "H %s %.*s\n", http_req_method(r), (int)r->url.len,
				   http_span_ptr(r, r->url));
			if (d->limit_after_head)
				r->body_limit = d->limit_after_head;
			break;
		case HTTP_DONE:
			describe_done(r, out);
			http_req_next(r);
			break;
		case HTTP_ERROR:
			buf_printf(out, "E %d\n", r->error_status);
			assert_non_null(r->error_msg);
			/* an error is sticky */
			assert_int_equal(http_req_parse(r), HTTP_ERROR);
			return true;
		}
	}
	fail_msg("parse loop did not settle");
	return true;
}

/* Feeds data cut at cuts[0..ncuts) (ascending) and records the transcript. */
static void transcript(const char *data, size_t len, const size_t *cuts, size_t ncuts,
		       const struct drive *d, struct buf *out)
{
	struct http_req r;
	http_req_init(&r, d->body_limit);
	size_t off = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		http_req_feed(&r, data + off, end - off);
		off = end;
		if (drain(&r, d, out))
			break;
	}
	http_req_fini(&r);
}

static unsigned mismatches;

/* Prints a mismatch and counts it, so one run shows every failing case. */
static bool same_transcript(const char *name, const char *how, const struct buf *got,
			    const char *want)
{
	size_t n = strlen(want);
	if (got->len == n && memcmp(got->data, want, n) == 0)
		return true;
	fprintf(stderr, "MISMATCH %s (%s):\n--- want\n%s--- got\n%.*s---\n", name, how, want,
		(int)got->len, got->data ? got->data : "");
	mismatches++;
	return false;
}

/* Whole, one byte at a time, and two pieces at every split point. */
static void check_all_splits(const char *name, const char *data, size_t len,
			     const struct drive *d, const char *want)
{
	struct buf got = { 0 };
	transcript(data, len, NULL, 0, d, &got);
	if (!same_transcript(name, "whole", &got, want))
		goto out;

	size_t *cuts = calloc(len + 1, sizeof(*cuts));
	for (size_t i = 1; i < len; i++)
		cuts[i - 1] = i;
	buf_reset(&got);
	transcript(data, len, cuts, len ? len - 1 : 0, d, &got);
	same_transcript(name, "byte by byte", &got, want);
	free(cuts);

	for (size_t k = 1; k < len; k++) {
		char how[64];
		snprintf(how, sizeof(how), "split at %zu", k);
		buf_reset(&got);
		transcript(data, len, &k, 1, d, &got);
		if (!same_transcript(name, how, &got, want))
			break;
	}
out:
	buf_free(&got);
}

/* --- generated inputs ---------------------------------------------------- */

static char *gen_headers(unsigned n)
{
	struct buf b = { 0 };
	buf_append_str(&b, "GET /many HTTP/1.1\r\n");
	for (unsigned i = 0; i < n; i++)
		buf_printf(&b, "X-H%u: v%u\r\n", i, i);
	buf_append_str(&b, "\r\n");
	buf_append(&b, "", 1);
	return b.data;
}

static char *gen_url(size_t url_len)
{
	struct buf b = { 0 };
	buf_append_str(&b, "GET /");
	for (size_t i = 1; i < url_len; i++)
		buf_append(&b, "a", 1);
	buf_append_str(&b, " HTTP/1.1\r\n\r\n");
	buf_append(&b, "", 1);
	return b.data;
}

static char *gen_want_headers(unsigned n)
{
	struct buf b = { 0 };
	buf_append_str(&b, "H GET /many\nD GET /many ka=1 ec=0\n");
	for (unsigned i = 0; i < n; i++)
		buf_printf(&b, "  [X-H%u][v%u]\n", i, i);
	buf_append_str(&b, "  body(0)[]\n");
	buf_append(&b, "", 1);
	return b.data;
}

static char *gen_want_url(size_t url_len)
{
	struct buf b = { 0 };
	struct buf u = { 0 };
	buf_append_str(&u, "/");
	for (size_t i = 1; i < url_len; i++)
		buf_append(&u, "a", 1);
	buf_printf(&b, "H GET %.*s\nD GET %.*s ka=1 ec=0\n  body(0)[]\n", (int)u.len, u.data,
		   (int)u.len, u.data);
	buf_append(&b, "", 1);
	buf_free(&u);
	return b.data;
}

/* --- the table ----------------------------------------------------------- */

struct http_case {
	const char *name;
	const char *input;          /* NULL: made by gen */
	char *(*gen)(void);
	uint64_t body_limit;        /* 0: 1 MiB */
	uint64_t limit_after_head;
	const char *want;           /* NULL: made by gen_want */
	char *(*gen_want)(void);
	size_t len;                 /* 0: strlen(input); set when it holds a NUL */
};

static char *gen_100_headers(void) { return gen_headers(HTTP_MAX_HEADERS); }
static char *gen_101_headers(void) { return gen_headers(HTTP_MAX_HEADERS + 1); }
static char *want_100_headers(void) { return gen_want_headers(HTTP_MAX_HEADERS); }
static char *gen_url_max(void) { return gen_url(HTTP_MAX_URL); }
static char *want_url_max(void) { return gen_want_url(HTTP_MAX_URL); }
static char *gen_url_over(void) { return gen_url(HTTP_MAX_URL + 1); }

static const struct http_case cases[] = {
	{ "simple GET", "GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", .want =
	  "H GET /hello?x=1\n"
	  "D GET /hello?x=1 ka=1 ec=0\n"
	  "  [Host][example.com]\n"
	  "  body(0)[]\n" },
	{ "leading empty lines are skipped", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", .want =
	  "H GET /\nD GET / ka=1 ec=0\n  body(0)[]\n" },
	{ "header views byte-exact",
	  "GET /h HTTP/1.1\r\n"
	  "Host: a.b:8080\r\n"
	  "X-Empty:\r\n"
	  "X-Ws: \t  v  v\t \r\n"
	  "Content-Type: application/json; charset=utf-8\r\n"
	  "x-fc-request-id: abc-123\r\n"
	  "X-Dup: 1\r\n"
	  "x-dup: 2\r\n"
	  "\r\n", .want =
	  "H GET /h\n"
	  "D GET /h ka=1 ec=0\n"
	  "  [Host][a.b:8080]\n"
	  "  [X-Empty][]\n"
	  "  [X-Ws][v  v]\n"
	  "  [Content-Type][application/json; charset=utf-8]\n"
	  "  [x-fc-request-id][abc-123]\n"
	  "  [X-Dup][1]\n"
	  "  [x-dup][2]\n"
	  "  body(0)[]\n" },
	{ "obsolete line folding is 400",
	  "GET / HTTP/1.1\r\nX-Fold: a\r\n b\r\nX-Next: c\r\n\r\n", .want = "E 400\n" },
	{ "three pipelined requests, the third partial",
	  "GET /a HTTP/1.1\r\n\r\n"
	  "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
	  "GET /c HTTP/1.1\r\nHo", .want =
	  "H GET /a\nD GET /a ka=1 ec=0\n  body(0)[]\n"
	  "H POST /b\nD POST /b ka=1 ec=0\n  [Content-Length][3]\n  body(3)[xyz]\n" },
	{ "three pipelined requests, all whole",
	  "GET /a HTTP/1.1\r\n\r\n"
	  "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
	  "DELETE /c HTTP/1.1\r\nConnection: close\r\n\r\n", .want =
	  "H GET /a\nD GET /a ka=1 ec=0\n  body(0)[]\n"
	  "H POST /b\nD POST /b ka=1 ec=0\n  [Transfer-Encoding][chunked]\n  body(2)[hi]\n"
	  "H DELETE /c\nD DELETE /c ka=0 ec=0\n  [Connection][close]\n  body(0)[]\n" },
	{ "content-length body", "PUT /f HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
	  .want = "H PUT /f\nD PUT /f ka=1 ec=0\n  [Content-Length][11]\n  body(11)[hello world]\n" },
	{ "content-length 0", "POST /f HTTP/1.1\r\nContent-Length: 0\r\n\r\n", .want =
	  "H POST /f\nD POST /f ka=1 ec=0\n  [Content-Length][0]\n  body(0)[]\n" },
	{ "content-length body incomplete", "POST /f HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
	  .want = "H POST /f\n" },
	{ "chunked body with extensions and trailers",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "5;ext=1\r\nhello\r\n"
	  "6;a;b=\"c\"\r\n world\r\n"
	  "A\r\n0123456789\r\n"
	  "0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n", .want =
	  "H POST /c\n"
	  "D POST /c ka=1 ec=0\n"
	  "  [Transfer-Encoding][chunked]\n"
	  "  body(21)[hello world0123456789]\n" },
	{ "chunked body then a pipelined request",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
	  "GET /n HTTP/1.1\r\nX: y\r\n\r\n", .want =
	  "H POST /c\nD POST /c ka=1 ec=0\n  [Transfer-Encoding][chunked]\n  body(3)[abc]\n"
	  "H GET /n\nD GET /n ka=1 ec=0\n  [X][y]\n  body(0)[]\n" },
	{ "body limit: content-length over it is 413",
	  "POST /f HTTP/1.1\r\nContent-Length: 9\r\n\r\n123456789", .body_limit = 8,
	  .want = "H POST /f\nE 413\n" },
	{ "body limit: content-length at it is fine",
	  "POST /f HTTP/1.1\r\nContent-Length: 8\r\n\r\n12345678", .body_limit = 8,
	  .want = "H POST /f\nD POST /f ka=1 ec=0\n  [Content-Length][8]\n  body(8)[12345678]\n" },
	{ "body limit: content-length checked before any body byte arrives",
	  "POST /f HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", .body_limit = 8,
	  .want = "H POST /f\nE 413\n" },
	{ "body limit: raised after HTTP_HEADERS applies to content-length",
	  "POST /f HTTP/1.1\r\nContent-Length: 12\r\n\r\nhello world!", .body_limit = 4,
	  .limit_after_head = 12, .want =
	  "H POST /f\nD POST /f ka=1 ec=0\n  [Content-Length][12]\n  body(12)[hello world!]\n" },
	{ "body limit: lowered after HTTP_HEADERS applies to content-length",
	  "POST /f HTTP/1.1\r\nContent-Length: 12\r\n\r\nhello world!", .body_limit = 100,
	  .limit_after_head = 11, .want = "H POST /f\nE 413\n" },
	{ "body limit: trailers cannot declare a content-length",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
	  "Transfer-Encoding: x\r\nContent-Length: 99999\r\nX: y\r\n\r\n", .body_limit = 8,
	  .want = "H POST /c\nD POST /c ka=1 ec=0\n  [Transfer-Encoding][chunked]\n  body(3)[abc]\n" },
	{ "body limit: chunked over it is 413",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n4\r\nabcd\r\n0\r\n\r\n",
	  .body_limit = 8, .want = "H POST /c\nE 413\n" },
	{ "body limit: chunked at it is fine",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
	  .body_limit = 8, .want =
	  "H POST /c\nD POST /c ka=1 ec=0\n  [Transfer-Encoding][chunked]\n  body(8)[helloabc]\n" },
	{ "100 headers are fine", .gen = gen_100_headers, .gen_want = want_100_headers },
	{ "101 headers is 431", .gen = gen_101_headers, .want = "E 431\n" },
	{ "URL at the limit is fine", .gen = gen_url_max, .gen_want = want_url_max },
	{ "URL over the limit is 414", .gen = gen_url_over, .want = "E 414\n" },
	{ "unknown method is 400", "FOO / HTTP/1.1\r\n\r\n", .want = "E 400\n" },
	{ "lower-case method is 400", "get / HTTP/1.1\r\n\r\n", .want = "E 400\n" },
	{ "HTTP/0.9 (no version) is 400", "GET /\r\n\r\n", .want = "E 400\n" },
	{ "HTTP/2 preface is 400", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", .want = "E 400\n" },
	{ "junk after the version is 400", "GET / HTTP/1.1 extra\r\n\r\n", .want = "E 400\n" },
	{ "no space before the version is 400", "GET /HTTP/1.1\r\n\r\n", .want = "E 400\n" },
	{ "space in header name is 400", "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
	  .want = "E 400\n" },
	{ "NUL in a header value is 400", "GET / HTTP/1.1\r\nX: \0v\r\n\r\n", .want = "E 400\n",
	  .len = 25 },
	{ "control byte in a header value is 400", "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
	  .want = "E 400\n" },
	{ "DEL in a header value is 400", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
	  .want = "E 400\n" },
	{ "tab and obs-text in a header value are fine", "GET / HTTP/1.1\r\nX: a\tb\xe9\r\n\r\n",
	  .want = "H GET /\nD GET / ka=1 ec=0\n  [X][a\tb\xe9]\n  body(0)[]\n" },
	{ "garbage bytes are 400", "\x01\x02\xff\xfe garbage\r\n\r\n", .want = "E 400\n" },
	{ "garbage after a good request is 400 after it",
	  "GET /ok HTTP/1.1\r\n\r\n\x16\x03\x01\x02\x00", .want =
	  "H GET /ok\nD GET /ok ka=1 ec=0\n  body(0)[]\nE 400\n" },
	{ "bad chunk size is 400",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
	  .want = "H POST /c\nE 400\n" },
	{ "bad content-length is 400", "POST /f HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
	  .want = "E 400\n" },
	{ "content-length and chunked together is 400",
	  "POST /f HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
	  .want = "E 400\n" },
	{ "Transfer-Encoding: chunked, chunked is 400",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
	  "3\r\nabc\r\n0\r\n\r\n", .want = "E 400\n" },
	{ "two Transfer-Encoding: chunked lines are 400",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "3\r\nabc\r\n0\r\n\r\n", .want = "E 400\n" },
	{ "a coding before chunked is 400",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
	  "3\r\nabc\r\n0\r\n\r\n", .want = "E 400\n" },
	{ "Transfer-Encoding: CHUNKED is chunked",
	  "POST /c HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	  .want = "H POST /c\nD POST /c ka=1 ec=0\n  [Transfer-Encoding][CHUNKED]\n  body(3)[abc]\n" },
	{ "CONNECT is 501", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
	  .want = "E 501\n" },
	{ "protocol upgrade is 501",
	  "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	  .want = "E 501\n" },
	{ "Expect: 100-continue sets the flag",
	  "POST /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", .want =
	  "H POST /f\nD POST /f ka=1 ec=1\n  [Expect][100-continue]\n  [Content-Length][2]\n"
	  "  body(2)[ok]\n" },
	{ "Expect is case-insensitive",
	  "POST /f HTTP/1.1\r\nEXPECT: 100-Continue\r\n\r\n", .want =
	  "H POST /f\nD POST /f ka=1 ec=1\n  [EXPECT][100-Continue]\n  body(0)[]\n" },
	{ "other Expect values do not", "POST /f HTTP/1.1\r\nExpect: 100-continuex\r\n\r\n",
	  .want = "H POST /f\nD POST /f ka=1 ec=0\n  [Expect][100-continuex]\n  body(0)[]\n" },
	{ "HTTP/1.1 keeps alive", "GET / HTTP/1.1\r\n\r\n",
	  .want = "H GET /\nD GET / ka=1 ec=0\n  body(0)[]\n" },
	{ "HTTP/1.1 Connection: close", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
	  .want = "H GET /\nD GET / ka=0 ec=0\n  [Connection][close]\n  body(0)[]\n" },
	{ "HTTP/1.1 Connection: CLOSE", "GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n",
	  .want = "H GET /\nD GET / ka=0 ec=0\n  [connection][CLOSE]\n  body(0)[]\n" },
	{ "HTTP/1.0 closes", "GET / HTTP/1.0\r\n\r\n",
	  .want = "H GET /\nD GET / ka=0 ec=0\n  body(0)[]\n" },
	{ "HTTP/1.0 Connection: keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	  .want = "H GET /\nD GET / ka=1 ec=0\n  [Connection][keep-alive]\n  body(0)[]\n" },
};

static void test_http_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct http_case *c = &cases[i];
		char *in = c->gen ? c->gen() : NULL, *want = c->gen_want ? c->gen_want() : NULL;
		const char *input = in ? in : c->input;
		struct drive d = { c->body_limit ? c->body_limit : 1u << 20, c->limit_after_head };
		size_t len = c->len ? c->len : strlen(input);
		check_all_splits(c->name, input, len, &d, want ? want : c->want);
		free(in);
		free(want);
	}
	assert_int_equal(mismatches, 0);
}

/* --- behaviours that need more than a transcript -------------------------- */

static void test_header_views_point_into_input(void **state)
{
	(void)state;
	static const char req[] = "POST /v HTTP/1.1\r\nHost: h\r\nX-A: aa\r\n\r\nbody";
	struct http_req r;
	http_req_init(&r, 100);
	http_req_feed(&r, req, sizeof(req) - 1);
	assert_int_equal(http_req_parse(&r), HTTP_HEADERS);
	assert_int_equal(r.n_headers, 2);
	/* views are offsets into the raw bytes, not copies */
	assert_int_equal(r.url.off, 5);
	assert_int_equal(r.url.len, 2);
	assert_int_equal(r.headers[0].name.off, strstr(req, "Host") - req);
	assert_int_equal(r.headers[0].value.off, strstr(req, " h\r") + 1 - req);
	assert_int_equal(r.headers[1].value.off, strstr(req, "aa") - req);
	assert_int_equal(r.headers[1].value.len, 2);
	assert_ptr_equal(http_span_ptr(&r, r.headers[1].name), r.in.data + r.headers[1].name.off);
	assert_true(r.head_end <= sizeof(req) - 1);
	for (unsigned i = 0; i < r.n_headers; i++)
		assert_true(r.headers[i].value.off + r.headers[i].value.len <= r.head_end);
	assert_string_equal(http_req_method(&r), "POST");
	/* no Content-Length: the request ends at the head; "body" is pending */
	assert_int_equal(http_req_parse(&r), HTTP_DONE);
	assert_int_equal(r.body.len, 0);
	assert_int_equal(http_req_pending(&r), 4);
	assert_int_equal(http_req_parse(&r), HTTP_DONE); /* until http_req_next */
	http_req_next(&r);
	assert_int_equal(r.in.len, 4);
	/* the leftover is parsed as the next request: "body" is no method */
	assert_int_equal(http_req_parse(&r), HTTP_ERROR);
	assert_int_equal(r.error_status, 400);
	http_req_fini(&r);
}

static void test_pipelined_partial_third_completes(void **state)
{
	(void)state;
	static const char part1[] = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nX: 2\r\n\r\nGET /3 HT";
	static const char part2[] = "TP/1.1\r\nX: 3\r\n\r\n";
	struct http_req r;
	http_req_init(&r, 100);
	http_req_feed(&r, part1, sizeof(part1) - 1);
	for (int i = 1; i <= 2; i++) {
		assert_int_equal(http_req_parse(&r), HTTP_HEADERS);
		assert_int_equal(http_req_parse(&r), HTTP_DONE);
		assert_int_equal(r.url.len, 2);
		assert_int_equal(http_span_ptr(&r, r.url)[1], '0' + i);
		assert_true(http_req_pending(&r) > 0);
		http_req_next(&r);
	}
	assert_int_equal(http_req_parse(&r), HTTP_PARTIAL);
	assert_int_equal(http_req_pending(&r), 0);
	http_req_feed(&r, part2, sizeof(part2) - 1);
	assert_int_equal(http_req_parse(&r), HTTP_HEADERS);
	assert_int_equal(http_req_parse(&r), HTTP_DONE);
	assert_memory_equal(http_span_ptr(&r, r.url), "/3", 2);
	struct http_span v;
	assert_true(http_req_header(&r, "x", &v));
	assert_memory_equal(http_span_ptr(&r, v), "3", 1);
	assert_int_equal(http_req_pending(&r), 0);
	http_req_next(&r);
	assert_int_equal(r.in.len, 0);
	assert_int_equal(http_req_parse(&r), HTTP_PARTIAL);
	http_req_fini(&r);
}

static void test_header_lookup_case_insensitive(void **state)
{
	(void)state;
	static const char req[] =
		"GET / HTTP/1.1\r\nX-Fc-Request-Id: R1\r\nCONTENT-TYPE: text/plain\r\n"
		"x-dup: first\r\nX-DUP: second\r\nX-Empty:\r\n\r\n";
	static const struct {
		const char *name;
		bool found;
		const char *value;
	} lookups[] = {
		{ "x-fc-request-id", true, "R1" },  { "X-FC-REQUEST-ID", true, "R1" },
		{ "content-type", true, "text/plain" }, { "Content-Type", true, "text/plain" },
		{ "x-dup", true, "first" },         { "x-empty", true, "" },
		{ "x-fc-request", false, "" },      { "x-fc-request-idx", false, "" },
		{ "", false, "" },                  { "host", false, "" },
	};
	struct http_req r;
	http_req_init(&r, 100);
	http_req_feed(&r, req, sizeof(req) - 1);
	assert_int_equal(http_req_parse(&r), HTTP_HEADERS);
	assert_int_equal(http_req_parse(&r), HTTP_DONE);
	for (size_t i = 0; i < sizeof(lookups) / sizeof(lookups[0]); i++) {
		struct http_span v = { 7, 7 };
		bool found = http_req_header(&r, lookups[i].name, &v);
		assert_int_equal(found, lookups[i].found);
		assert_int_equal(v.len, strlen(lookups[i].value));
		if (found)
			assert_memory_equal(http_span_ptr(&r, v), lookups[i].value, v.len);
		else
			assert_int_equal(v.off, 0);
	}
	http_req_fini(&r);
}

static void test_header_overflow_is_431(void **state)
{
	(void)state;
	struct buf b = { 0 };
	buf_append_str(&b, "GET / HTTP/1.1\r\nX-Big: ");
	for (int i = 0; i < 600; i++)
		buf_append(&b, "v", 1);
	buf_append_str(&b, "\r\n\r\n");
	struct drive d = { 1u << 20, 0 };

	http_set_max_header_size(512);
	check_all_splits("header section over 512 bytes", b.data, b.len, &d, "E 431\n");
	http_set_max_header_size(2048);
	struct buf want = { 0 };
	buf_printf(&want, "H GET /\nD GET / ka=1 ec=0\n  [X-Big][%.600s]\n  body(0)[]\n",
		   b.data + 23);
	buf_append(&want, "", 1);
	check_all_splits("header section under 2048 bytes", b.data, b.len, &d, want.data);
	http_set_max_header_size(HTTP_MAX_HEADER_SIZE);
	assert_int_equal(mismatches, 0);
	buf_free(&want);
	buf_free(&b);
}

static void test_error_status_text(void **state)
{
	(void)state;
	static const struct {
		int status;
		const char *text;
	} t[] = { { 400, "Bad Request" },
		  { 413, "Content Too Large" },
		  { 414, "URI Too Long" },
		  { 431, "Request Header Fields Too Large" },
		  { 501, "Not Implemented" },
		  { 299, "Unknown" } };
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_string_equal(http_status_text(t[i].status), t[i].text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_cases),
		cmocka_unit_test(test_header_views_point_into_input),
		cmocka_unit_test(test_pipelined_partial_third_completes),
		cmocka_unit_test(test_header_lookup_case_insensitive),
		cmocka_unit_test(test_header_overflow_is_431),
		cmocka_unit_test(test_error_status_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
