/* The CLI's HTTP client on libcurl's easy interface. */
#include "cli/http.h"
#include "common/mem.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_BODY (64u << 20)
#define CONNECT_TIMEOUT_MS 5000

/* One handle for the process, so that repeated requests (deploy's polling,
 * top's frames) reuse the connection. The CLI is single-threaded. */
static CURL *handle;

struct sink {
	struct cli_http_res *res;
	size_t cap, max;
	bool too_big, stopped;
	const struct cli_http_req *req;
	CURL *h;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = size * n;
	long status = 0;
	if (s->req->stream && !curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status) &&
	    status / 100 == 2) {
		s->stopped = !s->req->stream(s->req->stream_ctx, p, len);
		return s->stopped ? 0 : len;
	}
	if (s->res->len + len > s->max) {
		s->too_big = true;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	if (s->res->len + len + 1 > s->cap) {
		s->cap = (s->res->len + len + 1) * 2;
		s->res->body = xrealloc(s->res->body, s->cap);
	}
	memcpy(s->res->body + s->res->len, p, len);
	s->res->len += len;
	s->res->body[s->res->len] = '\0';
	return len;
}

struct header_sink {
	const char *want;
	struct cli_http_res *res;
};

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct header_sink *s = arg;
	size_t len = size * n, wl = strlen(s->want);
	if (len > wl + 1 && !strncasecmp(p, s->want, wl) && p[wl] == ':') {
		const char *v = p + wl + 1, *end = p + len;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
			end--;
		snprintf(s->res->header, sizeof(s->res->header), "%.*s", (int)(end - v), v);
	}
	return len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	const struct cli_http_req *req = arg;
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	req->progress(req->progress_ctx, (uint64_t)ulnow, req->upload_size);
	return 0;
}

static CURL *get_handle(void)
{
	if (!handle) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT))
			return NULL;
		handle = curl_easy_init();
	} else {
		curl_easy_reset(handle);
	}
	return handle;
}

/* What a curl failure means to a script: no daemon, a slow one, or else. */
static int map_error(CURL *h, CURLcode rc, const struct sink *s)
{
	if (s->too_big)
		return -EFBIG;
	if (s->stopped)
		return -ECANCELED;
	switch (rc) {
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT: {
		curl_off_t connected = 0;
		curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connected);
		return connected ? -ETIMEDOUT : -ECONNREFUSED;
	}
	default:
		return -EIO;
	}
}

int cli_http_do(const struct cli_http_req *req, struct cli_http_res *res)
{
	memset(res, 0, sizeof(*res));
	res->body = xmalloc(1);
	res->body[0] = '\0';
	CURL *h = get_handle();
	if (!h) {
		snprintf(res->err, sizeof(res->err), "libcurl did not initialize");
		return -EIO;
	}
	struct sink sink = { .res = res, .cap = 1, .req = req, .h = h,
			     .max = req->max_body ? req->max_body : DEFAULT_MAX_BODY };
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	/* no "Expect: 100-continue" round trip for large bodies */
	hdrs = curl_slist_append(hdrs, "Expect:");
	for (unsigned i = 0; i < req->n_headers; i++)
		hdrs = curl_slist_append(hdrs, req->headers[i]);

	curl_easy_setopt(h, CURLOPT_URL, req->url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
			 (long)(req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "thaw-cli/0.1.0");
	struct header_sink hs = { .want = req->want_header, .res = res };
	if (req->want_header) {
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &hs);
	}
	const char *body = req->body;
	bool bodyless = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD") ||
			!strcmp(req->method, "DELETE") || !strcmp(req->method, "OPTIONS");
	if (!body && !bodyless)
		body = ""; /* a POST without a body still says Content-Length: 0 */
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	}
	if (req->progress) {
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)req);
	}
	if (req->upload || req->stream) {
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 0L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
	}
	if (req->upload) { /* a PUT */
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READDATA, req->upload);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->upload_size);
	} else if (!strcmp(req->method, "HEAD") && !body)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	else if (!strcmp(req->method, "GET") && !body)
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	else if (strcmp(req->method, "POST") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);

	CURLcode rc = curl_easy_perform(h);
	curl_slist_free_all(hdrs);
	/* the handle is kept: do not leave it pointing at our stack */
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	if (rc != CURLE_OK) {
		int ret = map_error(h, rc, &sink);
		if (ret == -ECANCELED)
			snprintf(res->err, sizeof(res->err), "stopped by the receiver");
		else if (ret == -EFBIG)
			snprintf(res->err, sizeof(res->err), "answer larger than %zu bytes", sink.max);
		else
			snprintf(res->err, sizeof(res->err), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return ret;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
	return 0;
}

void cli_http_res_fini(struct cli_http_res *res)
{
	free(res->body);
	res->body = NULL;
	res->len = 0;
}
