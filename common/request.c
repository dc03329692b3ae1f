#include "common/request.h"
#include "common/channel.h"
#include "common/http.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

void request_pick_id(const struct http_req *r, uint64_t salt, uint64_t *seq, char *out)
{
	struct http_span v;
	if (http_req_header(r, "x-fc-request-id", &v) && v.len > 0 && v.len <= REQUEST_ID_MAX) {
		const char *p = http_span_ptr(r, v);
		size_t i = 0;
		while (i < v.len && (isalnum((unsigned char)p[i]) || strchr("-_.:", p[i])))
			i++;
		if (i == v.len) {
			memcpy(out, p, v.len);
			out[v.len] = '\0';
			return;
		}
	}
	snprintf(out, REQUEST_ID_MAX + 1, "%016llx-%08llx", (unsigned long long)salt,
		 (unsigned long long)++*seq);
}

void request_encode(struct buf *frame, const struct http_req *r, const char *path,
		    size_t path_len, const char *request_id, int64_t deadline_unix_ms,
		    enum header_hop hop)
{
	/* header views are not NUL-terminated: copy names and values once */
	struct buf hb = { 0 };
	struct channel_kv kv[HTTP_MAX_HEADERS + 1];
	size_t offs[HTTP_MAX_HEADERS][2];
	uint32_t n = 0;
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		if (!header_passes(hop, r, http_span_ptr(r, h->name), h->name.len))
			continue;
		offs[n][0] = hb.len;
		buf_append(&hb, http_span_ptr(r, h->name), h->name.len);
		buf_append(&hb, "", 1);
		offs[n][1] = hb.len;
		buf_append(&hb, http_span_ptr(r, h->value), h->value.len);
		buf_append(&hb, "", 1);
		n++;
	}
	for (uint32_t i = 0; i < n; i++)
		kv[i] = (struct channel_kv){ hb.data + offs[i][0], hb.data + offs[i][1] };
	kv[n++] = (struct channel_kv){ "x-fc-request-id", request_id };
	const char *url = http_span_ptr(r, r->url);
	const char *q = memchr(url, '?', r->url.len);
	size_t qlen = q ? r->url.len - (size_t)(q - url) - 1 : 0;
	channel_put_request(frame, 0, http_req_method(r), path, path_len, q ? q + 1 : "", qlen,
			    request_id, deadline_unix_ms, kv, n, r->body.data ? r->body.data : "",
			    r->body.len);
	buf_free(&hb);
}
