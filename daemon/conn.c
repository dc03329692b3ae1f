#define LOG_PREFIX "conn: "
#include "daemon/conn.h"
#include "common/headers.h"
#include "daemon/conn_h2.h"
#include "daemon/invocation.h"
#include "common/log.h"
#include "daemon/loop.h"
#include "common/mem.h"
#include "daemon/server.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <strings.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

/* Pipelined bytes buffered while a request runs; past it the client is
 * flooding us and is closed. */
#define MAX_PENDING_INPUT (4u << 20)
/* Bytes per second a request body must average past --body-timeout: a
 * large upload may take longer than the timeout, a trickle may not. */
#define BODY_MIN_RATE (64u << 10)
/* Body limit for requests that reach no function. */
#define BUILTIN_BODY_LIMIT (1u << 20)

#define COUNT(arr, code) atomic_fetch_add_explicit(&(arr)[(code) % 600], 1, memory_order_relaxed)

static void process(struct conn *c);
static void arm_recv(struct conn *c);
static void on_recv(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_send(struct loop_op *op, struct io_uring_cqe *cqe);
static unsigned answer_headers(const struct channel_response *r, struct channel_kv *hs,
			       const char **ctype);
static void put_head(struct conn *c, int status, const char *ctype, size_t len,
		     const struct channel_kv *headers, unsigned n_headers);
static void count_out(struct conn *c);

static struct conn_hooks hooks;

void conn_set_hooks(const struct conn_hooks *h)
{
	hooks = *h;
}

/* c's response bytes in the daemon-wide count drop by n (all: SIZE_MAX). */
static void uncount(struct conn *c, size_t n)
{
	if (n > c->out_counted)
		n = c->out_counted;
	c->out_counted -= n;
	atomic_fetch_sub(&server.metrics.buffered, n);
}

/* The request body c holds counts against --max-buffered as responses do:
 * brings c's share of server.metrics.buffered to req.body's length. */
static void count_body(struct conn *c)
{
	size_t now = c->req.body.len;
	if (now > c->body_counted)
		atomic_fetch_add(&server.metrics.buffered, now - c->body_counted);
	else
		atomic_fetch_sub(&server.metrics.buffered, c->body_counted - now);
	c->body_counted = now;
}

static void maybe_free(struct conn *c)
{
	if (c->state != CONN_CLOSING || c->ops)
		return;
	close(c->fd);
	uncount(c, SIZE_MAX);
	atomic_fetch_sub(&server.metrics.buffered, c->body_counted);
	c->body_counted = 0;
	http_req_fini(&c->req);
	buf_free(&c->out);
	buf_free(&c->pending);
	free(c->recv_buf);
	if (c->prev_conn)
		c->prev_conn->next_conn = c->next_conn;
	else
		c->sh->conns = c->next_conn;
	if (c->next_conn)
		c->next_conn->prev_conn = c->prev_conn;
	c->sh->n_conns--;
	atomic_fetch_sub(&server.metrics.connections, 1);
	free(c);
}

void conn_op_done(struct conn *c)
{
	c->ops--;
	maybe_free(c);
}

void conn_close(struct conn *c)
{
	if (c->state == CONN_CLOSING)
		return;
	if (c->state == CONN_WAITING || c->state == CONN_WRITING)
		c->sh->n_active--;
	if (c->inv) { /* its answer, when it comes, finds nobody */
		c->inv->ctx = NULL;
		invocation_cancel(c->inv);
		c->inv = NULL;
	}
	if (c->h2) /* cancels the calls under way */
		h2_free(c->h2);
	c->h2 = NULL;
	hooks.closed(c);
	timer_cancel(&c->sh->timers, &c->rtimer);
	c->state = CONN_CLOSING;
	/* wakes the armed recv (it completes with 0) so ops drains */
	shutdown(c->fd, SHUT_RDWR);
	maybe_free(c);
}

void conn_close_all(struct shard *sh)
{
	for (struct conn *c = sh->conns, *next; c; c = next) {
		next = c->next_conn;
		conn_close(c);
	}
}

static void read_timeout(struct timer *t)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, rtimer));
	if (c->h2) { /* HTTP/2: idle = no call under way and nothing received */
		if (h2_busy(c->h2)) {
			timer_set(&c->sh->timers, &c->rtimer,
				  now_ns() + (int64_t)server.opt.idle_timeout_ms * 1000000, read_timeout);
		} else { /* GOAWAY first, so the client reconnects instead of failing a call */
			h2_goaway(c->h2);
			conn__h2_flush(c); /* closes once it is sent */
		}
		return;
	}
	if (c->req.in.len == 0 && !c->req.headers_done) { /* idle keep-alive */
		conn_close(c);
		return;
	}
	c->close_after_send = true;
	COUNT(server.metrics.http_errors, 408);
	conn_respond_error(c, 408, "timed out reading the request");
}

static void arm_read_timer(struct conn *c)
{
	/* the body's deadline runs from the end of the head (on_headers), not
	 * from the last read, or a byte every few seconds would hold the
	 * connection for good; a large upload earns time at BODY_MIN_RATE */
	if (c->req.headers_done && c->rtimer.idx && c->rtimer.fire == read_timeout) {
		uint64_t got = c->req.body.len + c->req.sunk;
		int64_t at = c->body_start_ns + (int64_t)server.opt.body_timeout_ms * 1000000 +
			     (int64_t)(got / (BODY_MIN_RATE / 1000)) * 1000000;
		if (at > c->rtimer.at_ns)
			timer_set(&c->sh->timers, &c->rtimer, at, read_timeout);
		return;
	}
	unsigned ms = server.opt.idle_timeout_ms;
	if (c->req.headers_done)
		ms = server.opt.body_timeout_ms;
	else if (c->req.in.len)
		ms = server.opt.header_timeout_ms;
	/* a request's header timer runs from its first byte: don't push it out */
	if (c->rtimer.idx && c->req.in.len && !c->req.headers_done &&
	    ms == server.opt.header_timeout_ms && c->rtimer.fire == read_timeout &&
	    c->rtimer.at_ns <= now_ns() + (int64_t)ms * 1000000)
		return;
	timer_set(&c->sh->timers, &c->rtimer, now_ns() + (int64_t)ms * 1000000, read_timeout);
}

void conn_accept(struct shard *sh, int fd)
{
	unsigned total = 0;
	for (unsigned i = 0; i < server.n_shards; i++)
		total += server.shards[i]->n_conns;
	if (total >= server.opt.max_connections) {
		static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: "
					   "application/json\r\ncontent-length: 39\r\nconnection: "
					   "close\r\n\r\n{\"error\": \"too many open connections\"}";
		ssize_t r = send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)r;
		close(fd);
		atomic_fetch_add(&server.metrics.http_errors[503], 1);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct conn *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->sh = sh;
	c->recv_op.cb = on_recv;
	c->send_op.cb = on_send;
	c->state = CONN_READING;
	http_req_init(&c->req, BUILTIN_BODY_LIMIT);
	c->next_conn = sh->conns;
	if (sh->conns)
		sh->conns->prev_conn = c;
	sh->conns = c;
	sh->n_conns++;
	atomic_fetch_add(&server.metrics.connections, 1);
	atomic_fetch_add(&server.metrics.connections_total, 1);
	arm_recv(c);
	arm_read_timer(c);
}

#define PLAIN_RECV_SIZE 16384

static void arm_recv(struct conn *c)
{
	struct shard *sh = c->sh;
	struct io_uring_sqe *sqe = shard_sqe(sh);
	if (sh->use_buf_ring) {
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	} else {
		if (!c->recv_buf)
			c->recv_buf = xmalloc(PLAIN_RECV_SIZE);
		io_uring_prep_recv(sqe, c->fd, c->recv_buf, PLAIN_RECV_SIZE, 0);
	}
	if (sh->use_buf_ring) {
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = 1;
	}
	loop_op_prep(sqe, &c->recv_op);
	c->recv_armed = true;
	c->ops++;
}

static void on_recv(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct conn *c = container_of(op, struct conn, recv_op);
	struct shard *sh = c->sh;
	bool more = sh->use_buf_ring && (cqe->flags & IORING_CQE_F_MORE);
	if (!more) {
		c->recv_armed = false;
		c->ops--;
	}
	int res = cqe->res;
	if (res > 0 && sh->use_buf_ring) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (c->state != CONN_CLOSING)
			http_req_feed(&c->req, sh->bufs + (size_t)bid * sh->buf_size, (size_t)res);
		shard_recycle_buf(sh, bid);
	} else if (res > 0 && c->state != CONN_CLOSING) {
		http_req_feed(&c->req, c->recv_buf, (size_t)res);
	}
	if (c->state == CONN_CLOSING) {
		maybe_free(c);
		return;
	}
	if (res == -ENOBUFS) { /* out of provided buffers: try again */
		if (!c->recv_armed)
			arm_recv(c);
		return;
	}
	if (res <= 0) {
		conn_close(c);
		return;
	}
	if (!c->recv_armed)
		arm_recv(c);
	if (c->state == CONN_READING) {
		if (!c->h2)
			arm_read_timer(c);
		else /* --idle-timeout from the last bytes, while no call is under way */
			timer_set(&c->sh->timers, &c->rtimer,
				  now_ns() + (int64_t)server.opt.idle_timeout_ms * 1000000, read_timeout);
		process(c);
		count_body(c);
	} else if (http_req_pending(&c->req) > MAX_PENDING_INPUT) {
		conn_close(c);
	}
}

static void arm_send(struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->sh);
	io_uring_prep_send(sqe, c->fd, c->out.data + c->out_sent, c->out.len - c->out_sent,
			   MSG_NOSIGNAL);
	loop_op_prep(sqe, &c->send_op);
	c->send_inflight = true;
	c->ops++;
}

static void start_send(struct conn *c)
{
	if (!c->send_inflight && c->out_sent < c->out.len)
		arm_send(c);
}

/* What a connection keeps of its buffers between requests. */
#define CONN_KEEP_BYTES (64u << 10)

/* A client that stops reading its response: the bytes wait in c->out;
 * with no progress for --send-timeout the connection closes and they go. */
static void send_timeout(struct timer *t)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, rtimer));
	conn_close(c);
}

static void arm_send_timer(struct conn *c)
{
	timer_set(&c->sh->timers, &c->rtimer,
		  now_ns() + (int64_t)server.opt.send_timeout_ms * 1000000, send_timeout);
}

/* The response is out: next request, or close. */
static void request_done(struct conn *c)
{
	timer_cancel(&c->sh->timers, &c->rtimer);
	uncount(c, SIZE_MAX);
	buf_reset(&c->out);
	buf_shrink(&c->out, CONN_KEEP_BYTES);
	c->out_sent = 0;
	c->sh->n_active--;
	c->state = CONN_READING;
	if (c->close_after_send) {
		conn_close(c);
		return;
	}
	http_req_next(&c->req);
	count_body(c);
	/* a large request or response leaves no capacity behind */
	buf_shrink(&c->req.body, CONN_KEEP_BYTES);
	buf_shrink(&c->req.in, CONN_KEEP_BYTES);
	c->state = CONN_READING;
	arm_read_timer(c);
	process(c);
	count_body(c);
}

/* Moves what waits in pending to out and sends it, unless a send is in
 * flight (its completion comes back here). */
static void stream_flush(struct conn *c)
{
	if (c->send_inflight || c->out_sent < c->out.len || !c->pending.len)
		return;
	struct buf t = c->out;
	c->out = c->pending;
	c->pending = t;
	buf_reset(&c->pending);
	c->out_sent = 0;
	arm_send(c);
}

static void on_send(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct conn *c = container_of(op, struct conn, send_op);
	int res = cqe->res;
	c->send_inflight = false;
	c->ops--;
	if (c->state == CONN_CLOSING) {
		maybe_free(c);
		return;
	}
	if (res < 0) {
		conn_close(c);
		return;
	}
	c->out_sent += (size_t)res;
	uncount(c, (size_t)res);
	if (c->out_sent < c->out.len) {
		arm_send_timer(c); /* progress: the client reads */
		arm_send(c);
		return;
	}
	if (c->h2) {
		conn__h2_flush(c);
		return;
	}
	if (c->streaming) {
		buf_reset(&c->out);
		c->out_sent = 0;
		if (c->pending.len) {
			stream_flush(c);
			return;
		}
		if (!c->stream_ended) {
			if (c->stream_drained) /* it may send, end or close */
				c->stream_drained(c);
			return; /* else the next piece sends */
		}
		c->streaming = c->stream_ended = false;
		c->stream_drained = NULL;
	}
	request_done(c);
}

static void access_log(struct conn *c, int status, int64_t dur_ns)
{
	struct access_entry e = {
		.request_id = c->request_id,
		.function = c->fn ? c->fn->cfg.name : NULL,
		.method = http_req_method(&c->req),
		.path = http_span_ptr(&c->req, c->req.url),
		.path_len = c->req.url.len,
		.status = status,
		.dur_ns = dur_ns,
	};
	server_access_log(&e);
}

void conn_respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
		  const struct channel_kv *headers, unsigned n_headers)
{
	if (c->state == CONN_CLOSING || c->state == CONN_WRITING)
		return;
	if (c->state == CONN_READING) /* answered without reaching on_request */
		c->sh->n_active++;
	timer_cancel(&c->sh->timers, &c->rtimer);
	if (!c->req.headers_done || !http_req_keep_alive(&c->req) ||
	    atomic_load(&server.draining))
		c->close_after_send = true;
	int64_t dur = now_ns() - (c->start_ns ? c->start_ns : now_ns());
	if (c->fn) {
		COUNT(c->fn->metrics.requests, status);
		COUNT(c->fn->metrics.by_protocol,
		      metrics_protocol_of_path(http_span_ptr(&c->req, c->req.url), c->req.url.len));
		histogram_observe(&c->fn->metrics.duration, dur);
	}
	access_log(c, status, dur);
	buf_reset(&c->out);
	c->out_sent = 0;
	/* no body after 1xx, 204, 304 or for HEAD, or the client would read it
	 * as the next response; HEAD keeps the length GET would have */
	bool head = c->req.headers_done && c->req.parser.method == HTTP_HEAD;
	put_head(c, status, ctype, len, headers, n_headers);
	if (!http_status_has_body(status) || head)
		len = 0;
	buf_append(&c->out, body, len);
	c->state = CONN_WRITING;
	c->fn = NULL;
	count_out(c);
	start_send(c);
}

/* out's bytes count in the daemon's buffered bound until sent; the send
 * timer runs. */
static void count_out(struct conn *c)
{
	uncount(c, SIZE_MAX);
	c->out_counted = c->out.len;
	atomic_fetch_add(&server.metrics.buffered, c->out_counted);
	arm_send_timer(c);
}

/* The response head into out: status line, content-length (or chunked
 * transfer coding when len is SIZE_MAX; neither for a status without a
 * body), content-type, request id, headers. */
static void put_head(struct conn *c, int status, const char *ctype, size_t len,
		     const struct channel_kv *headers, unsigned n_headers)
{
	buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
	if (!http_status_has_body(status))
		;
	else if (len == SIZE_MAX)
		buf_append_str(&c->out, "transfer-encoding: chunked\r\n");
	else
		buf_printf(&c->out, "content-length: %zu\r\n", len);
	if (ctype)
		buf_printf(&c->out, "content-type: %s\r\n", ctype);
	if (c->request_id[0])
		buf_printf(&c->out, "x-fc-request-id: %s\r\n", c->request_id);
	for (unsigned i = 0; i < n_headers; i++)
		buf_printf(&c->out, "%s: %s\r\n", headers[i].name, headers[i].value);
	if (c->close_after_send)
		buf_append_str(&c->out, "connection: close\r\n");
	buf_append(&c->out, "\r\n", 2);
}

void conn_stream_head(struct conn *c, const struct channel_response *r)
{
	if (c->state != CONN_WAITING)
		return;
	struct channel_kv hs[64];
	const char *ctype;
	unsigned n = answer_headers(r, hs, &ctype);
	timer_cancel(&c->sh->timers, &c->rtimer);
	if (!http_req_keep_alive(&c->req) || atomic_load(&server.draining))
		c->close_after_send = true;
	int64_t dur = now_ns() - (c->start_ns ? c->start_ns : now_ns());
	if (c->fn) {
		COUNT(c->fn->metrics.requests, (int)r->status);
		histogram_observe(&c->fn->metrics.duration, dur);
	}
	access_log(c, (int)r->status, dur);
	buf_reset(&c->out);
	c->out_sent = 0;
	buf_reset(&c->pending);
	put_head(c, (int)r->status, ctype, SIZE_MAX, hs, n);
	c->state = CONN_WRITING;
	c->streaming = true;
	c->stream_ended = false;
	c->fn = NULL;
	count_out(c);
	start_send(c);
}

void conn_stream_data(struct conn *c, const char *data, size_t len)
{
	if (!c->streaming || c->stream_ended || c->state == CONN_CLOSING || !len)
		return;
	if (c->pending.len + len > CONN_STREAM_MAX) {
		conn_close(c); /* the client does not keep up */
		return;
	}
	buf_printf(&c->pending, "%zx\r\n", len);
	buf_append(&c->pending, data, len);
	buf_append(&c->pending, "\r\n", 2);
	stream_flush(c);
}

void conn_stream_end(struct conn *c)
{
	if (!c->streaming || c->stream_ended || c->state == CONN_CLOSING)
		return;
	buf_append_str(&c->pending, "0\r\n\r\n");
	c->stream_ended = true;
	stream_flush(c);
}

void conn_respond_error(struct conn *c, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct buf b = { 0 };
	buf_append_json_error(&b, msg);
	struct channel_kv retry = { "retry-after", "1" };
	conn_respond(c, status, "application/json", b.data, b.len, &retry,
		     status == 429 || status == 503 ? 1 : 0);
	buf_free(&b);
}

/* The headers of an instance's answer that reach its client (the header
 * policy's HOP_FROM_HANDLER), at most 64, and its content type apart. */
static unsigned answer_headers(const struct channel_response *r, struct channel_kv *hs,
			       const char **ctype)
{
	unsigned n = 0;
	const char *cur = r->headers;
	*ctype = NULL;
	for (uint32_t i = 0; i < r->n_headers; i++) {
		struct channel_kv kv;
		channel_next_header(&cur, &kv);
		size_t nl = strlen(kv.name);
		if (nl == 12 && !strncasecmp(kv.name, "content-type", 12))
			*ctype = kv.value;
		else if (header_passes(HOP_FROM_HANDLER, NULL, kv.name, nl) && n < 64)
			hs[n++] = kv;
	}
	return n;
}

void conn_respond_channel(struct conn *c, const struct channel_response *r)
{
	struct channel_kv hs[64];
	const char *ctype;
	unsigned n = answer_headers(r, hs, &ctype);
	conn_respond(c, (int)r->status, ctype ? ctype : "application/json", r->body, r->body_len,
		     hs, n);
}

void conn__h2_flush(struct conn *c)
{
	const uint8_t *d;
	size_t n;
	if (c->state == CONN_CLOSING || c->send_inflight)
		return;
	if (c->out_sent == c->out.len) {
		buf_reset(&c->out);
		c->out_sent = 0;
	}
	/* bounded: at most ~1 MiB per send; the rest on its completion */
	while (c->out.len < (1u << 20) && (n = h2_pending(c->h2, &d)))
		buf_append(&c->out, d, n);
	if (c->out_sent < c->out.len)
		arm_send(c);
	else if (h2_done(c->h2))
		conn_close(c);
}

/* HTTP/2: the connection's input goes to the session as it comes. Before
 * that, a connection whose first bytes are the preface turns into one. */
static bool h2_input(struct conn *c)
{
	if (!c->h2) {
		if (c->req.parsed || c->req.headers_done || !c->req.in.len)
			return false;
		int p = h2_preface(c->req.in.data, c->req.in.len);
		if (p < 0)
			return false;
		if (p == 0)
			return true; /* a prefix: wait for more */
		if (h2_start(c) < 0) {
			conn_close(c);
			return true;
		}
		timer_set(&c->sh->timers, &c->rtimer,
			  now_ns() + (int64_t)server.opt.idle_timeout_ms * 1000000, read_timeout);
	}
	int rc = h2_feed(c->h2, c->req.in.data, c->req.in.len);
	c->req.in.len = 0;
	if (rc < 0) {
		conn_close(c);
		return true;
	}
	conn__h2_flush(c);
	return true;
}

static void process(struct conn *c)
{
	if (h2_input(c))
		return;
	/* bounded: each turn consumes input or changes state */
	while (c->state == CONN_READING) {
		enum http_step s = http_req_parse(&c->req);
		if (s == HTTP_PARTIAL) {
			return;
		} else if (s == HTTP_HEADERS) {
			/* the body's deadline runs from the end of the head */
			c->body_start_ns = now_ns();
			timer_set(&c->sh->timers, &c->rtimer,
				  c->body_start_ns + (int64_t)server.opt.body_timeout_ms * 1000000,
				  read_timeout);
			hooks.headers(c);
		} else if (s == HTTP_DONE) {
			timer_cancel(&c->sh->timers, &c->rtimer);
			c->start_ns = now_ns();
			c->state = CONN_WAITING;
			c->sh->n_active++;
			hooks.request(c);
		} else {
			c->close_after_send = true;
			c->start_ns = now_ns();
			COUNT(server.metrics.http_errors, c->req.error_status);
			conn_respond_error(c, c->req.error_status, "%s", c->req.error_msg);
			return;
		}
	}
}
