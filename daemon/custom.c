/* A custom runtime's connections: requests out as HTTP/1.1, responses in
 * through http-parser, whole or streamed (custom.h). The start sequence and
 * the hooks are custom_start.c's. */
#define LOG_PREFIX "custom: "
#include "daemon/custom.h"
#include "daemon/custom_internal.h"
#include "common/channel.h"
#include "common/config.h"
#include "common/headers.h"
#include "common/log.h"
#include "daemon/loop.h"
#include "common/mem.h"
#include "proc/netns.h"
#include "common/timer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static http_parser_settings settings;
static void build_response(struct cconn *cc, const char *body, size_t len, struct buf *frame);
static bool wants_streaming(const struct cconn *cc);
static void conn_fail(struct cconn *cc, const char *why);

/* --- connections -------------------------------------------------------- */

void custom__conn_maybe_free(struct cconn *cc)
{
	if (cc->c || cc->ops)
		return;
	if (cc->fd >= 0)
		close(cc->fd);
	buf_free(&cc->out);
	buf_free(&cc->in);
	buf_free(&cc->hdrs);
	buf_free(&cc->body);
	free(cc);
}

/* Detaches cc from its custom and closes it (pending operations end). */
void custom__conn_orphan(struct cconn *cc)
{
	if (!cc)
		return;
	struct custom *c = cc->c;
	if (c && cc->slot >= 0 && c->slots[cc->slot] == cc)
		c->slots[cc->slot] = NULL;
	if (c && c->hook == cc)
		c->hook = NULL;
	cc->c = NULL;
	cc->dead = true;
	if (cc->fd >= 0)
		shutdown(cc->fd, SHUT_RDWR);
	custom__conn_maybe_free(cc);
}

static void on_connect(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_send(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_recv(struct loop_op *op, struct io_uring_cqe *cqe);

struct cconn *custom__conn_new(struct custom *c, int slot)
{
	struct cconn *cc = xcalloc(1, sizeof(*cc));
	cc->c = c;
	cc->sh = c->sh;
	cc->slot = slot;
	cc->fd = -1;
	cc->connect_op.cb = on_connect;
	cc->send_op.cb = on_send;
	cc->recv_op.cb = on_recv;
	int ret = netns_socket(c->netns_fd, &cc->fd);
	if (ret) {
		snprintf(c->last_error, sizeof(c->last_error), "socket in the instance's network namespace: %s",
			 strerror(-ret));
		cc->dead = true;
		return cc; /* the caller sees dead and fails */
	}
	int one = 1;
	setsockopt(cc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	cc->addr = (struct sockaddr_in){ .sin_family = AF_INET,
					 .sin_port = htons((uint16_t)c->cfg->port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct io_uring_sqe *sqe = shard_sqe(c->sh);
	io_uring_prep_connect(sqe, cc->fd, (struct sockaddr *)&cc->addr, sizeof(cc->addr));
	loop_op_prep(sqe, &cc->connect_op);
	cc->ops++;
	return cc;
}

static void arm_send(struct cconn *cc)
{
	if (cc->send_armed || cc->dead || !cc->connected || cc->out_sent >= cc->out.len)
		return;
	struct io_uring_sqe *sqe = shard_sqe(cc->sh);
	io_uring_prep_send(sqe, cc->fd, cc->out.data + cc->out_sent, cc->out.len - cc->out_sent,
			   MSG_NOSIGNAL);
	loop_op_prep(sqe, &cc->send_op);
	cc->send_armed = true;
	cc->ops++;
}

static void arm_recv(struct cconn *cc)
{
	if (cc->recv_armed || cc->dead || !cc->connected)
		return;
	buf_reserve(&cc->in, RECV_CHUNK);
	struct io_uring_sqe *sqe = shard_sqe(cc->sh);
	io_uring_prep_recv(sqe, cc->fd, cc->in.data + cc->in.len, cc->in.cap - cc->in.len, 0);
	loop_op_prep(sqe, &cc->recv_op);
	cc->recv_armed = true;
	cc->ops++;
}

static void start_response(struct cconn *cc)
{
	http_parser_init(&cc->hp, HTTP_RESPONSE);
	cc->hp.data = cc;
	cc->got_bytes = cc->done = cc->streaming = false;
	cc->hstate = 0;
	cc->n_hdrs = 0;
	buf_reset(&cc->hdrs);
	buf_reset(&cc->body);
	buf_reset(&cc->in);
}

/* Puts a request on cc (whole, in out) and sends it when connected. */
void custom__conn_request(struct cconn *cc, uint64_t id, bool head)
{
	cc->id = id;
	cc->busy = true;
	cc->head = head;
	cc->out_sent = 0;
	start_response(cc);
	arm_send(cc);
	arm_recv(cc);
}

static void on_connect(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct cconn *cc = container_of(op, struct cconn, connect_op);
	cc->ops--;
	if (!cc->c || cc->dead) {
		custom__conn_maybe_free(cc);
		return;
	}
	if (cqe->res < 0) {
		char why[96];
		snprintf(why, sizeof(why), "connect to port %u: %s", cc->c->cfg->port,
			 strerror(-cqe->res));
		conn_fail(cc, why);
		return;
	}
	cc->connected = true;
	if (cc->slot < 0 && cc->c->phase == PH_PORT) {
		custom__hook_done(cc->c, 0, NULL, 0, NULL); /* the port accepts */
		return;
	}
	arm_send(cc);
	arm_recv(cc);
}

static void on_send(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct cconn *cc = container_of(op, struct cconn, send_op);
	cc->ops--;
	cc->send_armed = false;
	if (!cc->c || cc->dead) {
		custom__conn_maybe_free(cc);
		return;
	}
	if (cqe->res < 0) {
		char why[96];
		snprintf(why, sizeof(why), "send to the server: %s", strerror(-cqe->res));
		conn_fail(cc, why);
		return;
	}
	cc->out_sent += (size_t)cqe->res;
	arm_send(cc);
}

/* --- the response ------------------------------------------------------- */

static int hp_field(http_parser *hp, const char *at, size_t len)
{
	struct cconn *cc = hp->data;
	if (cc->hstate == 2) {
		buf_append(&cc->hdrs, "", 1);
		cc->n_hdrs++;
	}
	if (cc->hstate != 1 && cc->n_hdrs >= MAX_RESPONSE_HEADERS)
		return 1;
	cc->hstate = 1;
	buf_append(&cc->hdrs, at, len);
	return cc->hdrs.len > MAX_HEADER_BYTES;
}

static int hp_value(http_parser *hp, const char *at, size_t len)
{
	struct cconn *cc = hp->data;
	if (cc->hstate == 1)
		buf_append(&cc->hdrs, "", 1);
	cc->hstate = 2;
	buf_append(&cc->hdrs, at, len);
	return cc->hdrs.len > MAX_HEADER_BYTES;
}

static int hp_headers_complete(http_parser *hp)
{
	struct cconn *cc = hp->data;
	if (cc->hstate == 2) {
		buf_append(&cc->hdrs, "", 1);
		cc->n_hdrs++;
	}
	cc->hstate = 0;
	if (cc->head)
		return 1; /* a response to HEAD has no body */
	if (cc->slot >= 0 && cc->c && hp->status_code >= 200 && wants_streaming(cc)) {
		struct buf frame = { 0 };
		cc->streaming = true;
		build_response(cc, "", 0, &frame);
		cc->c->hooks->stream(cc->c->owner, cc->id, CUSTOM_HEAD,
				     frame.data + sizeof(struct channel_hdr),
				     frame.len - sizeof(struct channel_hdr));
		buf_free(&frame);
	}
	return cc->c ? 0 : 1; /* orphaned meanwhile (the client went away): stop */
}

static int hp_body(http_parser *hp, const char *at, size_t len)
{
	struct cconn *cc = hp->data;
	if (cc->streaming) {
		if (cc->c)
			cc->c->hooks->stream(cc->c->owner, cc->id, CUSTOM_DATA, at, len);
		return cc->c ? 0 : 1;
	}
	if (cc->body.len + len > CHANNEL_MAX_PAYLOAD - MAX_HEADER_BYTES)
		return 1;
	buf_append(&cc->body, at, len);
	return 0;
}

static int hp_complete(http_parser *hp)
{
	struct cconn *cc = hp->data;
	cc->done = true;
	http_parser_pause(hp, 1);
	return 0;
}

static http_parser_settings settings = {
	.on_header_field = hp_field,
	.on_header_value = hp_value,
	.on_headers_complete = hp_headers_complete,
	.on_body = hp_body,
	.on_message_complete = hp_complete,
};

/* An error answer for request id: a CH_RESPONSE payload to the hook. */
static void answer_error(struct custom *c, uint64_t id, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void answer_error(struct custom *c, uint64_t id, int status, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct buf frame = { 0 };
	channel_put_error(&frame, id, (uint32_t)status, msg, false);
	c->hooks->response(c->owner, id, frame.data + sizeof(struct channel_hdr),
			   frame.len - sizeof(struct channel_hdr));
	buf_free(&frame);
}

/* A CH_RESPONSE frame of cc's response (headers minus hop-by-hop) with body. */
static void build_response(struct cconn *cc, const char *body, size_t len, struct buf *frame)
{
	struct channel_kv kv[MAX_RESPONSE_HEADERS];
	uint32_t n = 0;
	const char *p = cc->hdrs.data;
	for (uint32_t i = 0; i < cc->n_hdrs; i++) {
		const char *name = p, *value = name + strlen(name) + 1;
		p = value + strlen(value) + 1;
		if (header_passes(HOP_FROM_HANDLER, NULL, name, strlen(name)))
			kv[n++] = (struct channel_kv){ name, value };
	}
	channel_put_response(frame, cc->id, (uint32_t)cc->hp.status_code, kv, n, body, len);
}

/* A response to stream: chunked, or server-sent events. */
static bool wants_streaming(const struct cconn *cc)
{
	if (cc->hp.flags & F_CHUNKED)
		return true;
	const char *p = cc->hdrs.data;
	for (uint32_t i = 0; i < cc->n_hdrs; i++) {
		const char *name = p, *value = name + strlen(name) + 1;
		p = value + strlen(value) + 1;
		if (!strcasecmp(name, "content-type") &&
		    !strncasecmp(value, "text/event-stream", 17))
			return true;
	}
	return false;
}

/* The whole response of cc is in: to the pool, or to the start sequence. */
static void deliver(struct cconn *cc)
{
	struct custom *c = cc->c;
	int status = cc->hp.status_code;
	bool keep = http_should_keep_alive(&cc->hp);
	uint64_t id = cc->id;
	cc->busy = false;
	cc->reused = true;
	cc->retried = false;
	cc->idle_since = now_ns();
	if (cc->slot < 0) {
		buf_append(&cc->body, "", 1); /* hooks read it as text */
		custom__hook_done(c, status, cc->body.data, cc->body.len - 1, NULL);
		return;
	}
	struct buf frame = { 0 };
	bool streamed = cc->streaming;
	build_response(cc, streamed ? "" : (cc->body.data ? cc->body.data : ""),
		       streamed ? 0 : cc->body.len, &frame);
	if (!keep)
		custom__conn_orphan(cc); /* the next request of the slot gets a new one */
	if (streamed)
		c->hooks->stream(c->owner, id, CUSTOM_END, NULL, 0);
	c->hooks->response(c->owner, id, frame.data + sizeof(struct channel_hdr),
			   frame.len - sizeof(struct channel_hdr));
	buf_free(&frame);
}

/* The server closed a kept-alive connection as we sent on it: the request
 * most likely never reached it. Send it again, once, on a new connection,
 * if its method is idempotent (a POST may have run: it gets 502, as
 * nginx's proxy_next_upstream does; connections idle past KEEP_IDLE_NS are
 * replaced before use, which makes the race rare). */
static bool retry(struct cconn *cc)
{
	struct custom *c = cc->c;
	if (!cc->reused || cc->retried || cc->got_bytes || cc->slot < 0 || !cc->idempotent)
		return false;
	struct cconn *n = custom__conn_new(c, cc->slot);
	if (n->dead) {
		n->c = NULL;
		custom__conn_maybe_free(n);
		return false;
	}
	struct buf t = n->out;
	n->out = cc->out;
	cc->out = t;
	uint64_t id = cc->id;
	bool head = cc->head;
	custom__conn_orphan(cc); /* may free cc */
	c->slots[n->slot] = n;
	n->retried = true;
	n->idempotent = true;
	custom__conn_request(n, id, head);
	return true;
}

/* cc broke (connect, send, recv, parse): its request fails 502, or the
 * hook step sees the error; the connection goes. */
static void conn_fail(struct cconn *cc, const char *why)
{
	struct custom *c = cc->c;
	if (cc->busy && retry(cc))
		return;
	bool busy = cc->busy, hook = cc->slot < 0;
	uint64_t id = cc->id;
	custom__conn_orphan(cc);
	if (hook)
		custom__hook_done(c, 0, NULL, 0, why);
	else if (busy)
		answer_error(c, id, 502, "function %s: %s", c->cfg->name, why);
}

static void on_recv(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct cconn *cc = container_of(op, struct cconn, recv_op);
	cc->ops--;
	cc->recv_armed = false;
	if (!cc->c || cc->dead) {
		custom__conn_maybe_free(cc);
		return;
	}
	int res = cqe->res;
	if (res < 0 && res != -ECONNRESET) {
		char why[96];
		snprintf(why, sizeof(why), "recv from the server: %s", strerror(-res));
		conn_fail(cc, why);
		return;
	}
	if (!cc->busy) { /* idle: the server closed it (keep-alive timeout), or sent junk */
		custom__conn_orphan(cc);
		return;
	}
	if (res > 0)
		cc->got_bytes = true;
	size_t n = res > 0 ? (size_t)res : 0;
	const char *data = cc->in.data + cc->in.len;
	/* n == 0 tells the parser of the EOF (a body read until close ends).
	 * Streamed pieces reach the client from inside the parser's callbacks,
	 * which may end in cc's orphaning (the client went away): cc is held
	 * (an op) until the parser returns. */
	cc->ops++;
	size_t used = http_parser_execute(&cc->hp, &settings, data, n);
	cc->ops--;
	if (!cc->c || cc->dead) {
		custom__conn_maybe_free(cc);
		return;
	}
	enum http_errno e = HTTP_PARSER_ERRNO(&cc->hp);
	if (cc->done) {
		deliver(cc);
		return;
	}
	if ((e != HPE_OK && e != HPE_PAUSED) || used != n) {
		char why[160];
		snprintf(why, sizeof(why), "the server answered a malformed HTTP response (%s)",
			 http_errno_description(e));
		conn_fail(cc, why);
		return;
	}
	if (res <= 0) {
		conn_fail(cc, "the server closed the connection before its response ended");
		return;
	}
	arm_recv(cc); /* in holds nothing: the parser copied what it needs */
}

/* --- requests ----------------------------------------------------------- */

static void put_header(struct buf *b, const char *name, const char *value)
{
	buf_append_str(b, name);
	buf_append(b, ": ", 2);
	buf_append_str(b, value);
	buf_append(b, "\r\n", 2);
}

/* The HTTP/1.1 request of a decoded CH_REQUEST into out. */
static void encode(const struct custom *c, const struct channel_request *r, struct buf *out)
{
	buf_printf(out, "%s %s%s%s HTTP/1.1\r\n", r->method, r->path, r->query[0] ? "?" : "",
		   r->query);
	bool host = false;
	const char *cur = r->headers;
	for (uint32_t i = 0; i < r->n_headers; i++) {
		struct channel_kv kv;
		channel_next_header(&cur, &kv);
		host |= !strcasecmp(kv.name, "host");
		put_header(out, kv.name, kv.value);
	}
	if (!host)
		buf_printf(out, "host: 127.0.0.1:%u\r\n", c->cfg->port);
	put_header(out, "x-fc-function-name", c->cfg->name);
	buf_printf(out, "x-fc-function-memory: %u\r\nx-fc-function-timeout: %u\r\n",
		   c->cfg->memory_mb, c->cfg->timeout_s);
	if (r->deadline_ms > 0)
		buf_printf(out, "x-thaw-deadline-ms: %lld\r\n", (long long)r->deadline_ms);
	buf_printf(out, "content-length: %zu\r\n\r\n", r->body_len);
	buf_append(out, r->body, r->body_len);
}

void custom_send(struct custom *c, unsigned slot, uint64_t id, const char *frame, size_t len)
{
	struct channel_request r;
	if (len < sizeof(struct channel_hdr) ||
	    channel_decode_request(frame + sizeof(struct channel_hdr), len - sizeof(struct channel_hdr),
				   &r)) {
		answer_error(c, id, 500, "function %s: malformed request frame", c->cfg->name);
		return;
	}
	struct cconn *cc = c->slots[slot];
	if (cc && now_ns() - cc->idle_since > KEEP_IDLE_NS) {
		custom__conn_orphan(cc);
		cc = NULL;
	}
	if (!cc) {
		cc = custom__conn_new(c, (int)slot);
		if (cc->dead) {
			cc->c = NULL;
			custom__conn_maybe_free(cc);
			answer_error(c, id, 502, "function %s: %s", c->cfg->name, c->last_error);
			return;
		}
		c->slots[slot] = cc;
	}
	buf_reset(&cc->out);
	encode(c, &r, &cc->out);
	static const char *const idempotent[] = { "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE" };
	cc->idempotent = false;
	for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
		cc->idempotent |= !strcmp(r.method, idempotent[i]);
	custom__conn_request(cc, id, !strcmp(r.method, "HEAD"));
}

void custom_cancel(struct custom *c, unsigned slot)
{
	struct cconn *cc = c->slots[slot];
	if (!cc || !cc->busy)
		return;
	uint64_t id = cc->id;
	custom__conn_orphan(cc); /* the server sees its client go */
	answer_error(c, id, 499, "the client went away");
}

void custom_free(struct custom *c)
{
	if (!c)
		return;
	timer_cancel(&c->sh->timers, &c->timer);
	custom__conn_orphan(c->hook);
	for (unsigned i = 0; i < c->n_slots; i++)
		custom__conn_orphan(c->slots[i]);
	if (c->netns_fd >= 0)
		close(c->netns_fd);
	free(c->slots);
	free(c);
}
