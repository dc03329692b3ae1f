#include "common/http.h"

#include <limits.h>
#include <stddef.h>
#include <strings.h>
#include <string.h>

#define REQ(p) ((struct http_req *)((char *)(p) - offsetof(struct http_req, parser)))

static int fail(struct http_req *r, int status, const char *msg)
{
	r->error_status = status;
	r->error_msg = msg;
	return -1;
}

static uint32_t off_of(struct http_req *r, const char *at)
{
	return (uint32_t)(at - r->in.data);
}

static int on_message_begin(http_parser *p)
{
	struct http_req *r = REQ(p);
	r->url.len = 0;
	r->n_headers = 0;
	r->in_value = false;
	return 0;
}

/* Pieces of one element arrive adjacent in in: extend the span. Returns
 * false when the piece is not adjacent: http-parser reports an obs-fold
 * continuation line as a second piece of the value, with CRLF SP between. */
static bool extend(struct http_req *r, struct http_span *s, const char *at, size_t len)
{
	if (s->len == 0)
		s->off = off_of(r, at);
	else if (off_of(r, at) != s->off + s->len)
		return false;
	s->len += (uint32_t)len;
	return true;
}

/* RFC 9110 tchar: http-parser (built lenient) lets a space through in names. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_req *r = REQ(p);
	if (!extend(r, &r->url, at, len))
		return fail(r, 400, "malformed request target");
	if (r->url.len > HTTP_MAX_URL)
		return fail(r, 414, "request target too long");
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_req *r = REQ(p);
	/* Chunked trailers come after the head; their bytes are dropped with
	 * the body, so views could not outlive them: trailers are ignored. */
	if (r->headers_done)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!is_tchar((unsigned char)at[i]))
			return fail(r, 400, "invalid character in header field name");
	if (r->in_value || r->n_headers == 0) {
		if (r->n_headers == HTTP_MAX_HEADERS)
			return fail(r, 431, "too many header fields");
		memset(&r->headers[r->n_headers++], 0, sizeof(r->headers[0]));
		r->in_value = false;
	}
	if (!extend(r, &r->headers[r->n_headers - 1].name, at, len))
		return fail(r, 400, "malformed header field name");
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_req *r = REQ(p);
	if (r->headers_done)
		return 0;
	/* http-parser lets a NUL (and other controls) through at the start of a
	 * value; values are handed on as C strings, so refuse them (RFC 9110 5.5) */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)at[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(r, 400, "invalid character in header field value");
	}
	r->in_value = true;
	if (!extend(r, &r->headers[r->n_headers - 1].value, at, len))
		return fail(r, 400, "obsolete header line folding");
	return 0;
}

/* http-parser takes any list whose last coding is chunked ("chunked,
 * chunked" included) and would de-chunk once; an intermediary that reads the
 * list differently would see another body. Only one coding is decoded here,
 * so the only framing accepted is a single "Transfer-Encoding: chunked"
 * (RFC 9112 6.1: chunked at most once, and last). */
static int check_transfer_encoding(struct http_req *r)
{
	unsigned seen = 0;
	struct http_span v = { 0, 0 };
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		if (h->name.len == 17 &&
		    strncasecmp(http_span_ptr(r, h->name), "transfer-encoding", 17) == 0) {
			seen++;
			v = h->value;
		}
	}
	if (seen == 0)
		return 0;
	if (seen > 1 || v.len != 7 || strncasecmp(http_span_ptr(r, v), "chunked", 7) != 0)
		return fail(r, 400, "unsupported Transfer-Encoding: only one \"chunked\" is accepted");
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_req *r = REQ(p);
	if (p->method == HTTP_CONNECT)
		return fail(r, 501, "CONNECT is not supported");
	/* HTTP/0.9 (no version) and 2.0 (a prior-knowledge preface) are not ours */
	if (p->http_major != 1)
		return fail(r, 400, "unsupported HTTP version");
	/* http-parser skips leading whitespace of a value but keeps trailing */
	for (unsigned i = 0; i < r->n_headers; i++) {
		struct http_span *v = &r->headers[i].value;
		while (v->len && (r->in.data[v->off + v->len - 1] == ' ' ||
				  r->in.data[v->off + v->len - 1] == '\t'))
			v->len--;
	}
	if (check_transfer_encoding(r))
		return -1;
	r->headers_done = true;
	struct http_span v;
	r->expect_continue = http_req_header(r, "expect", &v) && v.len == 12 &&
			     strncasecmp(http_span_ptr(r, v), "100-continue", 12) == 0;
	/* stop here so the caller can route and set the body limit */
	http_parser_pause(p, 1);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_req *r = REQ(p);
	if (r->body.len + r->sunk + len > r->body_limit)
		return fail(r, 413, "request body too large");
	if (r->sink) {
		r->sunk += len;
		return r->sink(r->sink_ctx, at, len) ? fail(r, 507, "cannot store the body") : 0;
	}
	buf_append(&r->body, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_req *r = REQ(p);
	r->message_done = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void http_set_max_header_size(uint32_t bytes)
{
	http_parser_set_max_header_size(bytes);
}

void http_req_init(struct http_req *r, uint64_t body_limit)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->parser, HTTP_REQUEST);
	r->body_limit = body_limit;
}

void http_req_fini(struct http_req *r)
{
	buf_free(&r->in);
	buf_free(&r->body);
}

void http_req_feed(struct http_req *r, const char *data, size_t len)
{
	buf_append(&r->in, data, len);
}

static enum http_step parser_error(struct http_req *r)
{
	if (r->error_status)
		return HTTP_ERROR;
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if (e == HPE_HEADER_OVERFLOW)
		fail(r, 431, "request header fields too large");
	else if (e == HPE_INVALID_METHOD)
		fail(r, 400, "malformed request line: unknown method");
	else
		fail(r, 400, http_errno_description(e));
	return HTTP_ERROR;
}

enum http_step http_req_parse(struct http_req *r)
{
	if (r->error_status)
		return HTTP_ERROR;
	if (r->message_done)
		return HTTP_DONE;
	/* After HTTP_HEADERS the caller may have changed body_limit: check the
	 * declared length against it before reading body bytes. content_length
	 * counts down what is left; body holds what was read. Once in chunked
	 * trailers (F_TRAILING) the flags are no longer the head's: Debian's
	 * http-parser clears F_CHUNKED on a trailer Transfer-Encoding, and a
	 * trailer Content-Length sets F_CONTENTLENGTH and content_length. */
	if (r->headers_done && (r->parser.flags & F_CONTENTLENGTH) &&
	    !(r->parser.flags & (F_CHUNKED | F_TRAILING)) &&
	    r->parser.content_length != ULLONG_MAX &&
	    (r->body.len > r->body_limit ||
	     r->parser.content_length > r->body_limit - r->body.len))
		return fail(r, 413, "request body too large"), HTTP_ERROR;
	if (HTTP_PARSER_ERRNO(&r->parser) == HPE_PAUSED)
		http_parser_pause(&r->parser, 0);
	bool had_headers = r->headers_done;
	size_t avail = r->in.len - r->parsed;
	size_t n = avail ? http_parser_execute(&r->parser, &settings, r->in.data + r->parsed, avail)
			 : 0;
	r->parsed += n;
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if (e != HPE_OK && e != HPE_PAUSED)
		return parser_error(r);
	if (r->parser.upgrade && !r->message_done)
		return fail(r, 501, "protocol upgrade is not supported"), HTTP_ERROR;
	if (r->headers_done && !had_headers) {
		r->head_end = r->parsed;
		return HTTP_HEADERS;
	}
	if (r->message_done)
		return HTTP_DONE;
	/* Body bytes already copied to body need not stay in in. */
	if (r->headers_done && r->parsed > r->head_end) {
		memmove(r->in.data + r->head_end, r->in.data + r->parsed, r->in.len - r->parsed);
		r->in.len -= r->parsed - r->head_end;
		r->parsed = r->head_end;
	}
	return HTTP_PARTIAL;
}

void http_req_next(struct http_req *r)
{
	buf_consume(&r->in, r->parsed);
	r->parsed = 0;
	r->head_end = 0;
	r->url.len = 0;
	r->n_headers = 0;
	r->in_value = false;
	buf_reset(&r->body);
	r->sink = NULL;
	r->sink_ctx = NULL;
	r->sunk = 0;
	r->headers_done = r->message_done = r->expect_continue = false;
	if (HTTP_PARSER_ERRNO(&r->parser) == HPE_PAUSED)
		http_parser_pause(&r->parser, 0);
}

const char *http_req_method(const struct http_req *r)
{
	return http_method_str((enum http_method)r->parser.method);
}

bool http_req_header(const struct http_req *r, const char *name, struct http_span *value)
{
	size_t n = strlen(name);
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		if (h->name.len == n && strncasecmp(http_span_ptr(r, h->name), name, n) == 0) {
			*value = h->value;
			return true;
		}
	}
	value->off = value->len = 0;
	return false;
}

bool http_req_keep_alive(const struct http_req *r)
{
	return http_should_keep_alive(&r->parser) && !r->parser.upgrade;
}

bool http_status_has_body(int status)
{
	return status >= 200 && status != 204 && status != 304;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}
