/*
 * echo: returns the request. The benchmark handler, so it allocates nothing
 * and copies each byte once into the response.
 *
 *   /json or ?format=json  200 application/json
 *                          {"method","path","query","headers":{name: value},
 *                           "body","request_id","instance_id"}
 *                          (header names lowercased)
 *   anything else          200, the body verbatim with the request's
 *                          content type (default application/octet-stream),
 *                          plus x-echo-method, x-echo-path, x-echo-query
 */
#include "thaw/handler.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static const char hexdig[] = "0123456789abcdef";

/* Appends s[0..len) as the inside of a JSON string. Quotes, backslashes and
 * controls are escaped; bytes that are not well-formed UTF-8 become \u00XX so
 * the document stays valid for any body. lower: ASCII-lowercase as well. */
static int put_json(struct thaw_response *res, const char *s, size_t len, bool lower)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
	char tmp[256];
	size_t nt = 0;
	int r = 0;
	if (lower) { /* header names: short, lowercased through tmp */
		for (; p < end && !r; p++) {
			unsigned char c = *p;
			if (nt + 6 > sizeof(tmp)) {
				r = thaw_response_write(res, tmp, nt);
				nt = 0;
			}
			if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
				tmp[nt++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			} else {
				memcpy(tmp + nt, "\\u00", 4);
				tmp[nt + 4] = hexdig[c >> 4];
				tmp[nt + 5] = hexdig[c & 15];
				nt += 6;
			}
		}
		return r ? r : thaw_response_write(res, tmp, nt);
	}
	while (p < end && !r) {
		unsigned char c = *p;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			p++;
			continue;
		}
		size_t seq = 0;
		if (c >= 0xc2 && c <= 0xf4) {
			size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
			if ((size_t)(end - p) >= want) {
				seq = want;
				for (size_t i = 1; i < want; i++)
					if ((p[i] & 0xc0) != 0x80)
						seq = 0;
				if (seq == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)))
					seq = 0;
				if (seq == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)))
					seq = 0;
			}
		}
		if (seq) {
			p += seq;
			continue;
		}
		r = thaw_response_write(res, run, (size_t)(p - run));
		char esc[6] = { '\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 15] };
		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
			r = r ? r : thaw_response_write(res, esc, 2);
		} else if (c == '\n') {
			r = r ? r : thaw_response_write(res, "\\n", 2);
		} else {
			r = r ? r : thaw_response_write(res, esc, 6);
		}
		run = ++p;
	}
	return r ? r : thaw_response_write(res, run, (size_t)(p - run));
}

#define W(lit) thaw_response_write(res, lit, sizeof(lit) - 1)

static int put_field(struct thaw_response *res, const char *key_lit, size_t key_len,
		     const char *v, size_t vlen)
{
	int r = thaw_response_write(res, key_lit, key_len);
	r = r ? r : put_json(res, v, vlen, false);
	return r ? r : W("\"");
}

#define FIELD(lit, v, n) put_field(res, lit, sizeof(lit) - 1, v, n)

static bool want_json(const struct thaw_request *req)
{
	if (!strcmp(req->path, "/json"))
		return true;
	for (const char *q = req->query; *q;) {
		const char *amp = strchr(q, '&');
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		if (n == 11 && !memcmp(q, "format=json", 11))
			return true;
		if (!amp)
			break;
		q = amp + 1;
	}
	return false;
}

static int echo_json(const struct thaw_request *req, struct thaw_response *res)
{
	const char *rid = req->request_id ? req->request_id : "";
	const char *iid = thaw_instance_id();
	thaw_response_status(res, 200);
	int r = thaw_response_header(res, "content-type", "application/json");
	r = r ? r : FIELD("{\"method\":\"", req->method, strlen(req->method));
	r = r ? r : FIELD(",\"path\":\"", req->path, strlen(req->path));
	r = r ? r : FIELD(",\"query\":\"", req->query, strlen(req->query));
	r = r ? r : W(",\"headers\":{");
	for (size_t i = 0; i < req->n_headers && !r; i++) {
		const char *name = req->headers[i].name, *value = req->headers[i].value;
		r = i ? W(",\"") : W("\"");
		r = r ? r : put_json(res, name, strlen(name), true);
		r = r ? r : FIELD("\":\"", value, strlen(value));
	}
	r = r ? r : W("}");
	r = r ? r : FIELD(",\"body\":\"", req->body, req->body_len);
	r = r ? r : FIELD(",\"request_id\":\"", rid, strlen(rid));
	r = r ? r : FIELD(",\"instance_id\":\"", iid, strlen(iid));
	return r ? r : W("}");
}

static int invoke(const struct thaw_request *req, struct thaw_response *res)
{
	if (want_json(req))
		return echo_json(req, res);
	const char *ct = thaw_request_header(req, "content-type");
	int r = thaw_respond(res, 200, ct && *ct ? ct : "application/octet-stream", req->body,
			     req->body_len);
	if (r == -EINVAL) /* a content type we may not send back */
		r = thaw_respond(res, 200, "application/octet-stream", req->body, req->body_len);
	if (r)
		return r;
	/* -EINVAL (a value with control bytes) only drops that header */
	thaw_response_header(res, "x-echo-method", req->method);
	thaw_response_header(res, "x-echo-path", req->path);
	thaw_response_header(res, "x-echo-query", req->query);
	return 0;
}

THAW_HANDLER(.name = "echo", .invoke = invoke);
