/*
 * h2: HTTP/2 for gRPC over libnghttp2, driven by the connection (h2.h).
 */
#define LOG_PREFIX "h2: "
#include "daemon/conn_h2.h"
#include "common/buf.h"
#include "daemon/conn.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <pthread.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_STREAMS 128
#define MAX_HEADER_BYTES (16u << 10)

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static struct h2_hooks hooks;

struct h2_stream {
	struct h2 *h;
	int32_t id;
	char path[256];
	char ctype[64];
	char token[128];      /* h2_call.token: 2 = from x-thaw-token, 1 = bearer */
	size_t token_len;
	int token_from;
	int64_t timeout_ms;
	size_t header_bytes;
	struct buf body;      /* the framed request message */
	bool too_big, called, answered;
	void *ctx;            /* the front end's, while the call is under way */
	/* the answer */
	struct buf resp;      /* framed message */
	size_t resp_off;
	int status;
	char message[256];
	struct h2_stream *next, *prev;
};

struct h2 {
	nghttp2_session *s;
	struct conn *c;
	struct h2_stream *streams;
	bool freeing, in_feed;
};

void h2_set_hooks(const struct h2_hooks *h)
{
	hooks = *h;
}

int h2_preface(const char *data, size_t len)
{
	size_t n = len < sizeof(preface) - 1 ? len : sizeof(preface) - 1;
	if (memcmp(data, preface, n))
		return -1;
	return n == sizeof(preface) - 1 ? 1 : 0;
}

static void stream_free(struct h2_stream *st)
{
	struct h2 *h = st->h;
	if (st->called && !st->answered && hooks.cancel)
		hooks.cancel(st, st->ctx);
	if (st->prev)
		st->prev->next = st->next;
	else
		h->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	buf_free(&st->body);
	buf_free(&st->resp);
	free(st);
}

/* grpc-timeout: 1-8 digits and a unit (H M S m u n) -> ms, or -1. */
static int64_t parse_timeout(const uint8_t *v, size_t n)
{
	int64_t x = 0;
	if (n < 2 || n > 9)
		return -1;
	for (size_t i = 0; i + 1 < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	switch (v[n - 1]) {
	case 'H': return x * 3600000;
	case 'M': return x * 60000;
	case 'S': return x * 1000;
	case 'm': return x;
	case 'u': return (x + 999) / 1000;
	case 'n': return (x + 999999) / 1000000;
	}
	return -1;
}

/* --- nghttp2 callbacks ------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2 *h = ud;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct h2_stream *st = xcalloc(1, sizeof(*st));
	st->h = h;
	st->id = f->hd.stream_id;
	st->timeout_ms = -1;
	st->next = h->streams;
	if (h->streams)
		h->streams->prev = st;
	h->streams = st;
	nghttp2_session_set_stream_user_data(s, st->id, st);
	return 0;
}

/* x-thaw-token wins over authorization, as in auth.c; a value too long
 * for a token is kept empty, so it matches none. */
static void keep_token(struct h2_stream *st, int from, const uint8_t *v, size_t vl)
{
	if (from < st->token_from)
		return;
	st->token_from = from;
	st->token_len = vl < sizeof(st->token) ? vl : 0;
	memcpy(st->token, v, st->token_len);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	(void)flags, (void)ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!st || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	st->header_bytes += nl + vl;
	if (st->header_bytes > MAX_HEADER_BYTES)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
	if (nl == 5 && !memcmp(name, ":path", 5) && vl < sizeof(st->path)) {
		memcpy(st->path, value, vl);
		st->path[vl] = '\0';
	} else if (nl == 12 && !memcmp(name, "content-type", 12) && vl < sizeof(st->ctype)) {
		memcpy(st->ctype, value, vl);
		st->ctype[vl] = '\0';
	} else if (nl == 12 && !memcmp(name, "grpc-timeout", 12)) {
		st->timeout_ms = parse_timeout(value, vl);
	} else if (nl == 12 && !memcmp(name, "x-thaw-token", 12)) {
		keep_token(st, 2, value, vl);
	} else if (nl == 13 && !memcmp(name, "authorization", 13) && vl >= 7 &&
		   !strncasecmp((const char *)value, "Bearer ", 7)) {
		keep_token(st, 1, value + 7, vl - 7);
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	(void)flags, (void)ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);
	if (!st || st->too_big)
		return 0;
	if (st->body.len + len > H2_MAX_MESSAGE + 5) {
		st->too_big = true; /* what comes later is dropped as it arrives */
		buf_free(&st->body);
		return 0;
	}
	buf_append(&st->body, data, len);
	return 0;
}

/* The request is whole: check the framing and hand it to the front end. */
static void dispatch(struct h2_stream *st)
{
	const unsigned char *b = (const unsigned char *)st->body.data;
	st->called = true;
	if (st->too_big) {
		h2_answer_error(st, 8, "message larger than the limit of %u bytes", H2_MAX_MESSAGE);
		return;
	}
	if (strncmp(st->ctype, "application/grpc", 16)) {
		h2_answer_error(st, 3, "content-type must be application/grpc");
		return;
	}
	if (st->body.len < 5 || st->body.len - 5 != ((size_t)b[1] << 24 | (size_t)b[2] << 16 |
						    (size_t)b[3] << 8 | b[4])) {
		h2_answer_error(st, 13, "a unary call takes exactly one length-prefixed message");
		return;
	}
	if (b[0]) {
		h2_answer_error(st, 12, "compressed messages are not supported");
		return;
	}
	struct h2_call call = { .path = st->path, .msg = st->body.data + 5,
				.msg_len = st->body.len - 5, .timeout_ms = st->timeout_ms,
				.content_type = st->ctype,
				.token = st->token_from ? st->token : NULL,
				.token_len = st->token_len };
	hooks.call(st, &call);
	/* the front end copied what it keeps (the invocation's frame): the
	 * request is not held twice for the life of the call. TODO: build the
	 * frame from the DATA frames as they come, to save that copy too */
	buf_free(&st->body);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	(void)ud;
	if ((f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (st && !st->called)
		dispatch(st);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
	(void)err, (void)ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);
	if (st)
		stream_free(st); /* RST_STREAM before the answer: cancels the call */
	return 0;
}

/* --- the session ------------------------------------------------------------------ */

int h2_start(struct conn *c)
{
	static nghttp2_session_callbacks *cb;
	if (!cb) { /* once per process; read-only after */
		static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
		pthread_mutex_lock(&lock);
		if (!cb && nghttp2_session_callbacks_new(&cb) == 0) {
			nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
			nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
			nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
			nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
			nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
		}
		pthread_mutex_unlock(&lock);
		if (!cb)
			return -ENOMEM;
	}
	struct h2 *h = xcalloc(1, sizeof(*h));
	h->c = c;
	if (nghttp2_session_server_new(&h->s, cb, h)) {
		free(h);
		return -ENOMEM;
	}
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20 },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES },
	};
	nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	c->h2 = h;
	return 0;
}

int h2_feed(struct h2 *h, const char *data, size_t len)
{
	h->in_feed = true;
	ssize_t n = nghttp2_session_mem_recv(h->s, (const uint8_t *)data, len);
	h->in_feed = false;
	if (n < 0) {
		pr_debug("closing: %s", nghttp2_strerror((int)n));
		return -EPROTO;
	}
	return 0;
}

size_t h2_pending(struct h2 *h, const uint8_t **data)
{
	ssize_t n = nghttp2_session_mem_send(h->s, data);
	return n > 0 ? (size_t)n : 0;
}

void h2_goaway(struct h2 *h)
{
	nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
}

int h2_busy(const struct h2 *h)
{
	return h->streams != NULL;
}

int h2_done(struct h2 *h)
{
	return !nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s);
}

void h2_free(struct h2 *h)
{
	h->freeing = true;
	while (h->streams)
		stream_free(h->streams);
	nghttp2_session_del(h->s);
	free(h);
}

/* --- answers ------------------------------------------------------------------------- */

const char *h2_stream_path(const struct h2_stream *st)
{
	return st->path;
}

struct shard *h2_stream_shard(const struct h2_stream *st)
{
	return st->h->c->sh;
}

void h2_stream_set_ctx(struct h2_stream *st, void *ctx)
{
	st->ctx = ctx;
}

/* grpc-message is percent-encoded; out has 3 x the message's size. */
static size_t encode_message(const char *m, char *out, size_t size)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)m; *p && o + 4 < size; p++)
		o += (size_t)(*p >= 0x20 && *p < 0x7f && *p != '%'
				      ? snprintf(out + o, size - o, "%c", *p)
				      : snprintf(out + o, size - o, "%%%02X", *p));
	return o;
}

static void submit_trailers(struct h2_stream *st)
{
	char code[12], msg[3 * sizeof(st->message)];
	snprintf(code, sizeof(code), "%d", st->status);
	size_t o = encode_message(st->message, msg, sizeof(msg));
	nghttp2_nv tr[] = {
		{ (uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"grpc-message", (uint8_t *)msg, 12, o, NGHTTP2_NV_FLAG_NONE },
	};
	nghttp2_submit_trailer(st->h->s, st->id, tr, st->status ? 2 : 1);
}

static ssize_t read_resp(nghttp2_session *s, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	(void)s, (void)id, (void)ud;
	struct h2_stream *st = src->ptr;
	size_t n = st->resp.len - st->resp_off;
	if (n > len)
		n = len;
	memcpy(out, st->resp.data + st->resp_off, n);
	st->resp_off += n;
	if (st->resp_off == st->resp.len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		submit_trailers(st);
	}
	return (ssize_t)n;
}

static void respond(struct h2_stream *st)
{
	static const nghttp2_nv head[] = {
		{ (uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE },
	};
	st->answered = true;
	st->ctx = NULL;
	if (st->h->freeing)
		return;
	if (st->status) { /* trailers-only */
		char code[12], msg[3 * sizeof(st->message)];
		snprintf(code, sizeof(code), "%d", st->status);
		size_t o = encode_message(st->message, msg, sizeof(msg));
		nghttp2_nv nv[] = {
			head[0], head[1],
			{ (uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), NGHTTP2_NV_FLAG_NONE },
			{ (uint8_t *)"grpc-message", (uint8_t *)msg, 12, o, NGHTTP2_NV_FLAG_NONE },
		};
		nghttp2_submit_response(st->h->s, st->id, nv, 4, NULL);
	} else {
		nghttp2_data_provider dp = { .source.ptr = st, .read_callback = read_resp };
		nghttp2_submit_response(st->h->s, st->id, head, 2, &dp);
	}
	if (!st->h->in_feed) /* nghttp2 is not re-entrant: feed's caller flushes */
		conn__h2_flush(st->h->c);
}

void h2_answer(struct h2_stream *st, const char *msg, size_t len)
{
	unsigned char pre[5] = { 0, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
				 (unsigned char)(len >> 8), (unsigned char)len };
	buf_reserve(&st->resp, len + 5);
	buf_append(&st->resp, pre, 5);
	buf_append(&st->resp, msg, len);
	st->status = 0;
	respond(st);
}

void h2_answer_error(struct h2_stream *st, int grpc_status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
	st->status = grpc_status ? grpc_status : 2;
	respond(st);
}
