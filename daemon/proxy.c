#define LOG_PREFIX "proxy: "
#include "daemon/proxy.h"
#include "daemon/conn.h"
#include "daemon/auth.h"
#include "common/headers.h"
#include "common/log.h"
#include "daemon/loop.h"
#include "common/mem.h"
#include "common/router.h"
#include "daemon/server.h"
#include "common/timer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PORTS 64
#define RELAY_BUF 65536

static unsigned allowed[MAX_PORTS], n_allowed;

struct proxy {
	struct conn *c; /* NULL once the client is gone */
	struct shard *sh;
	int fd;
	unsigned port;
	struct sockaddr_in addr;
	struct buf req;
	size_t req_sent;
	char relay[RELAY_BUF]; /* upstream bytes on their way to the client */
	size_t relay_len, relay_sent;
	unsigned ops;
	struct loop_op connect_op, send_op, recv_op, client_send_op;
	struct conn *sending; /* the client whose fd a send of ours uses */
	bool sent_any;
	struct timer timer; /* armed while waiting on the upstream */
};

int proxy_set_ports(const char *list)
{
	n_allowed = 0;
	const char *p = list;
	while (*p) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);
		if (end == p || v == 0 || v > 65535 || n_allowed == MAX_PORTS ||
		    (*end && *end != ','))
			return -EINVAL;
		allowed[n_allowed++] = (unsigned)v;
		p = *end ? end + 1 : end;
	}
	return 0;
}

static bool port_allowed(unsigned port)
{
	for (unsigned i = 0; i < n_allowed; i++)
		if (allowed[i] == port)
			return true;
	return false;
}

/* Encoded '/', '\\' and '.' could smuggle a path the router did not see. */
static bool sneaky(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\\')
			return true;
		if (p[i] == '%' && i + 2 < len) {
			char h[3] = { p[i + 1], p[i + 2], 0 };
			if (!strcasecmp(h, "2f") || !strcasecmp(h, "5c") || !strcasecmp(h, "2e") ||
			    !strcasecmp(h, "00"))
				return true;
		}
	}
	return false;
}

static void build_request(struct proxy *px, const struct route *rt)
{
	struct http_req *r = &px->c->req;
	const char *url = http_span_ptr(r, r->url);
	const char *q = memchr(url, '?', r->url.len);
	size_t qlen = q ? r->url.len - (size_t)(q - url) : 0;
	buf_printf(&px->req, "%s %.*s%.*s HTTP/1.1\r\nhost: 127.0.0.1:%u\r\n", http_req_method(r),
		   (int)rt->sub_len, rt->sub, (int)qlen, q ? q : "", px->port);
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		if (!header_passes(HOP_TO_UPSTREAM, r, http_span_ptr(r, h->name), h->name.len))
			continue;
		buf_printf(&px->req, "%.*s: %.*s\r\n", (int)h->name.len, http_span_ptr(r, h->name),
			   (int)h->value.len, http_span_ptr(r, h->value));
	}
	/* jupyter-server-proxy's headers: where the app is mounted */
	buf_printf(&px->req,
		   "x-forwarded-context: /proxy/%u\r\nx-proxycontextpath: /proxy/%u\r\n"
		   "x-fc-request-id: %s\r\nconnection: close\r\ncontent-length: %zu\r\n\r\n",
		   px->port, px->port, px->c->request_id, r->body.len);
	buf_append(&px->req, r->body.data, r->body.len);
}

static void on_connect(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_send(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_recv(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_client_send(struct loop_op *op, struct io_uring_cqe *cqe);

static void submit(struct proxy *px, struct io_uring_sqe *sqe, struct loop_op *op)
{
	loop_op_prep(sqe, op);
	px->ops++;
}

static void maybe_free(struct proxy *px)
{
	if (px->ops || px->c)
		return;
	timer_cancel(&px->sh->timers, &px->timer);
	close(px->fd);
	buf_free(&px->req);
	free(px);
}

/* Relay over: the client connection closes (its response had no length). */
static void finish(struct proxy *px)
{
	struct conn *c = px->c;
	px->c = NULL;
	if (c) {
		c->proxy = NULL;
		conn_close(c);
	}
	shutdown(px->fd, SHUT_RDWR);
	maybe_free(px);
}

static void fail(struct proxy *px, int status, const char *what, int err)
{
	pr_info("port %u: %s: %s", px->port, what, strerror(-err));
	struct conn *c = px->c;
	if (c && !px->sent_any) {
		px->c = NULL;
		c->proxy = NULL;
		conn_respond_error(c, status, "proxy: port %u: %s: %s", px->port, what, strerror(-err));
	}
	finish(px);
}

/* The upstream sent nothing for --proxy-timeout: 504, or the relay ends. */
static void upstream_timeout(struct timer *t)
{
	struct proxy *px = (struct proxy *)((char *)t - offsetof(struct proxy, timer));
	if (px->c)
		fail(px, 504, "no answer in time", -ETIMEDOUT);
}

/* A wait on the upstream starts: it has --proxy-timeout to make progress. */
static void arm_timer(struct proxy *px)
{
	timer_set(&px->sh->timers, &px->timer,
		  now_ns() + (int64_t)server.opt.proxy_timeout_ms * 1000000, upstream_timeout);
}

/* Answers 401 or 403 and returns true when c may not use the proxy. */
static bool refused(struct conn *c, const struct route *rt)
{
	if (!auth_admin(&c->req)) {
		conn_respond_error(c, 401, "proxy: needs the admin token (X-Thaw-Token or Authorization: Bearer)");
		return true;
	}
	if (!port_allowed(rt->port)) {
		conn_respond_error(c, 403, "proxy: port %u is not in the allow-list", rt->port);
		return true;
	}
	return false;
}

void proxy_on_headers(struct conn *c, const struct route *rt)
{
	/* a refusal comes before the body is read: with the body unread the
	 * connection cannot carry another request, so it closes */
	c->close_after_send = true;
	if (refused(c, rt))
		return;
	c->close_after_send = false;
	c->req.body_limit = PROXY_MAX_BODY;
}

void proxy_start(struct conn *c, const struct route *rt)
{
	if (refused(c, rt))
		return;
	const char *url = http_span_ptr(&c->req, c->req.url);
	if (sneaky(url, c->req.url.len)) {
		conn_respond_error(c, 400, "proxy: encoded slashes, dots or backslashes refused");
		return;
	}
	struct proxy *px = xcalloc(1, sizeof(*px));
	px->connect_op.cb = on_connect;
	px->send_op.cb = on_send;
	px->recv_op.cb = on_recv;
	px->client_send_op.cb = on_client_send;
	px->c = c;
	px->sh = c->sh;
	px->port = rt->port;
	px->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (px->fd < 0) {
		free(px);
		conn_respond_error(c, 503, "proxy: no socket: %s", strerror(errno));
		return;
	}
	c->proxy = px;
	build_request(px, rt);
	px->addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)rt->port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct io_uring_sqe *sqe = shard_sqe(px->sh);
	io_uring_prep_connect(sqe, px->fd, (struct sockaddr *)&px->addr, sizeof(px->addr));
	submit(px, sqe, &px->connect_op);
	arm_timer(px);
}

static void send_upstream(struct proxy *px)
{
	struct io_uring_sqe *sqe = shard_sqe(px->sh);
	io_uring_prep_send(sqe, px->fd, px->req.data + px->req_sent, px->req.len - px->req_sent,
			   MSG_NOSIGNAL);
	submit(px, sqe, &px->send_op);
	arm_timer(px);
}

static void recv_upstream(struct proxy *px)
{
	struct io_uring_sqe *sqe = shard_sqe(px->sh);
	io_uring_prep_recv(sqe, px->fd, px->relay, sizeof(px->relay), 0);
	submit(px, sqe, &px->recv_op);
	arm_timer(px);
}

/* The client took nothing of a chunk for --send-timeout: the relay ends
 * and its connection closes, rather than hold the upstream and both
 * sockets for as long as the client likes. */
static void client_timeout(struct timer *t)
{
	struct proxy *px = (struct proxy *)((char *)t - offsetof(struct proxy, timer));
	pr_info("port %u: the client read nothing for %u ms: relay dropped", px->port,
		(unsigned)server.opt.send_timeout_ms);
	finish(px);
}

static void send_client(struct proxy *px)
{
	/* the client's pace now, not the upstream's: --send-timeout per send */
	timer_set(&px->sh->timers, &px->timer,
		  now_ns() + (int64_t)server.opt.send_timeout_ms * 1000000, client_timeout);
	struct io_uring_sqe *sqe = shard_sqe(px->sh);
	io_uring_prep_send(sqe, px->c->fd, px->relay + px->relay_sent,
			   px->relay_len - px->relay_sent, MSG_NOSIGNAL);
	submit(px, sqe, &px->client_send_op);
	px->sending = px->c;
	px->c->ops++; /* the client's fd must outlive this send */
}

static void on_connect(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct proxy *px = container_of(op, struct proxy, connect_op);
	int res = cqe->res;
	px->ops--;
	if (!px->c)
		return maybe_free(px);
	if (res < 0)
		return fail(px, 502, "connect", res);
	send_upstream(px);
}

static void on_send(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct proxy *px = container_of(op, struct proxy, send_op);
	int res = cqe->res;
	px->ops--;
	if (!px->c)
		return maybe_free(px);
	if (res < 0)
		return fail(px, 502, "send", res);
	px->req_sent += (size_t)res;
	if (px->req_sent < px->req.len)
		send_upstream(px);
	else
		recv_upstream(px);
}

static void on_recv(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct proxy *px = container_of(op, struct proxy, recv_op);
	int res = cqe->res;
	px->ops--;
	if (!px->c)
		return maybe_free(px);
	if (res < 0)
		return fail(px, 502, "receive", res);
	if (res == 0) {
		if (!px->sent_any)
			return fail(px, 502, "upstream closed without answering", -ECONNRESET);
		return finish(px);
	}
	px->sent_any = true;
	px->relay_len = (size_t)res;
	px->relay_sent = 0;
	send_client(px);
}

static void on_client_send(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct proxy *px = container_of(op, struct proxy, client_send_op);
	int res = cqe->res;
	px->ops--;
	struct conn *sent_on = px->sending;
	px->sending = NULL;
	conn_op_done(sent_on); /* frees it if it closed meanwhile */
	if (!px->c)
		return maybe_free(px);
	if (res < 0)
		return finish(px);
	px->relay_sent += (size_t)res;
	if (px->relay_sent < px->relay_len)
		send_client(px);
	else
		recv_upstream(px); /* next chunk only once this one is out: backpressure */
}

void proxy_detach(struct proxy *px)
{
	px->c = NULL;
	shutdown(px->fd, SHUT_RDWR);
	maybe_free(px);
}
