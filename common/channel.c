#include "common/channel.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

void channel_put_hdr(struct buf *out, uint32_t type, uint64_t id, size_t payload_len)
{
	struct channel_hdr h = { .type = type, .len = (uint32_t)payload_len, .id = id };
	buf_append(out, &h, sizeof(h));
}

/* field = u32 length, bytes, NUL */
static size_t field_size(size_t len)
{
	return 4 + len + 1;
}

static void put_field(struct buf *out, const char *s, size_t len)
{
	buf_append_u32(out, (uint32_t)len);
	buf_append(out, s, len);
	buf_append(out, "", 1);
}

static size_t headers_size(const struct channel_kv *h, uint32_t n)
{
	size_t sz = 4;
	for (uint32_t i = 0; i < n; i++)
		sz += field_size(strlen(h[i].name)) + field_size(strlen(h[i].value));
	return sz;
}

static void put_headers(struct buf *out, const struct channel_kv *h, uint32_t n)
{
	buf_append_u32(out, n);
	for (uint32_t i = 0; i < n; i++) {
		put_field(out, h[i].name, strlen(h[i].name));
		put_field(out, h[i].value, strlen(h[i].value));
	}
}

void channel_put_request(struct buf *out, uint64_t id, const char *method, const char *path,
			 size_t path_len, const char *query, size_t query_len,
			 const char *request_id, int64_t deadline_ms,
			 const struct channel_kv *headers, uint32_t n_headers, const char *body,
			 size_t body_len)
{
	size_t len = field_size(strlen(method)) + field_size(path_len) + field_size(query_len) +
		     field_size(strlen(request_id)) + 8 + headers_size(headers, n_headers) +
		     field_size(body_len);
	buf_reserve(out, sizeof(struct channel_hdr) + len);
	channel_put_hdr(out, CH_REQUEST, id, len);
	put_field(out, method, strlen(method));
	put_field(out, path, path_len);
	put_field(out, query, query_len);
	put_field(out, request_id, strlen(request_id));
	buf_append_u64(out, (uint64_t)deadline_ms);
	put_headers(out, headers, n_headers);
	put_field(out, body, body_len);
}

void channel_put_response(struct buf *out, uint64_t id, uint32_t status,
			  const struct channel_kv *headers, uint32_t n_headers, const char *body,
			  size_t body_len)
{
	size_t len = 4 + headers_size(headers, n_headers) + field_size(body_len);
	buf_reserve(out, sizeof(struct channel_hdr) + len);
	channel_put_hdr(out, CH_RESPONSE, id, len);
	buf_append_u32(out, status);
	put_headers(out, headers, n_headers);
	put_field(out, body, body_len);
}

void channel_put_error(struct buf *out, uint64_t id, uint32_t status, const char *msg,
		       bool retry_after)
{
	struct buf body = { 0 };
	buf_append_json_error(&body, msg);
	struct channel_kv h[] = { { "content-type", "application/json" }, { "retry-after", "1" } };
	channel_put_response(out, id, status, h, retry_after ? 2 : 1, body.data, body.len);
	buf_free(&body);
}

long channel_frame_complete(const char *data, size_t len)
{
	struct channel_hdr h;
	if (len < sizeof(h))
		return 0;
	memcpy(&h, data, sizeof(h));
	if (h.type < CH_READY || h.type > CH_CHECKPOINT || h.len > CHANNEL_MAX_PAYLOAD)
		return -EPROTO;
	size_t total = sizeof(h) + h.len;
	return len >= total ? (long)total : 0;
}

/* A bounded reader over a payload. */
struct reader {
	const char *p, *end;
};

static int get_u32(struct reader *r, uint32_t *v)
{
	if (r->end - r->p < 4)
		return -EPROTO;
	memcpy(v, r->p, 4);
	r->p += 4;
	return 0;
}

static int get_field(struct reader *r, const char **s, size_t *len)
{
	uint32_t n;
	if (get_u32(r, &n) || (size_t)(r->end - r->p) < (size_t)n + 1 || r->p[n] != '\0')
		return -EPROTO;
	*s = r->p;
	if (len)
		*len = n;
	r->p += n + 1;
	return 0;
}

static int get_headers(struct reader *r, uint32_t *n, const char **start)
{
	if (get_u32(r, n))
		return -EPROTO;
	*start = r->p;
	/* each pair is at least 10 bytes: bound the count before walking */
	if (*n > (size_t)(r->end - r->p) / 10)
		return -EPROTO;
	for (uint32_t i = 0; i < 2 * *n; i++) {
		const char *s;
		size_t len;
		if (get_field(r, &s, &len) || memchr(s, '\0', len))
			return -EPROTO;
	}
	return 0;
}

int channel_decode_request(const char *payload, size_t len, struct channel_request *out)
{
	struct reader r = { payload, payload + len };
	uint64_t deadline;
	if (get_field(&r, &out->method, NULL) || get_field(&r, &out->path, NULL) ||
	    get_field(&r, &out->query, NULL) || get_field(&r, &out->request_id, NULL))
		return -EPROTO;
	if (r.end - r.p < 8)
		return -EPROTO;
	memcpy(&deadline, r.p, 8);
	r.p += 8;
	out->deadline_ms = (int64_t)deadline;
	if (get_headers(&r, &out->n_headers, &out->headers) ||
	    get_field(&r, &out->body, &out->body_len) || r.p != r.end)
		return -EPROTO;
	return 0;
}

/* RFC 9110 token characters */
static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A response's headers go to the client as "name: value" lines: a name of
 * token characters and a value without CR, LF or other controls (HTAB
 * allowed), or an instance could add headers or a whole second response.
 * The SDK checks the same inside the instance, which is not trusted. */
static bool headers_safe(const char *cur, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct channel_kv kv;
		channel_next_header(&cur, &kv);
		if (!*kv.name)
			return false;
		for (const char *p = kv.name; *p; p++)
			if (!is_tchar((unsigned char)*p))
				return false;
		for (const unsigned char *p = (const unsigned char *)kv.value; *p; p++)
			if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
				return false;
	}
	return true;
}

int channel_decode_response(const char *payload, size_t len, struct channel_response *out)
{
	struct reader r = { payload, payload + len };
	if (get_u32(&r, &out->status) || get_headers(&r, &out->n_headers, &out->headers) ||
	    get_field(&r, &out->body, &out->body_len) || r.p != r.end)
		return -EPROTO;
	/* a final status only: a 1xx would leave the client waiting for
	 * another response that never comes */
	if (out->status < 200 || out->status > 599)
		return -EPROTO;
	if (!headers_safe(out->headers, out->n_headers))
		return -EPROTO;
	return 0;
}

void channel_next_header(const char **cursor, struct channel_kv *kv)
{
	uint32_t n;
	memcpy(&n, *cursor, 4);
	kv->name = *cursor + 4;
	*cursor += 4 + n + 1;
	memcpy(&n, *cursor, 4);
	kv->value = *cursor + 4;
	*cursor += 4 + n + 1;
}
