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

/* Header names lowercased (HTTP/1 is case-insensitive), then escaped. */
static int put_name(struct thaw_response *res, const char *s, size_t len)
{
	char tmp[256];
	int r = 0;
	for (size_t off = 0; off < len && !r; off += sizeof(tmp)) {
		size_t n = len - off < sizeof(tmp) ? len - off : sizeof(tmp);
		for (size_t i = 0; i < n; i++)
			tmp[i] = (char)(s[off + i] >= 'A' && s[off + i] <= 'Z' ? s[off + i] + 32
									     : s[off + i]);
		r = thaw_response_write_json(res, tmp, n);
	}
	return r;
}

#define W(lit) thaw_response_write(res, lit, sizeof(lit) - 1)

static int put_field(struct thaw_response *res, const char *key_lit, size_t key_len,
		     const char *v, size_t vlen)
{
	int r = thaw_response_write(res, key_lit, key_len);
	r = r ? r : thaw_response_write_json(res, v, vlen);
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
		r = r ? r : put_name(res, name, strlen(name));
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
