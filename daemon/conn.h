/*
 * A client connection, HTTP/1.1 only: reads requests (keep-alive,
 * pipelining, chunked bodies, limits and read timeouts) and writes their
 * answers. What a request means is the front end's (front.h), called
 * through conn_hooks. One request of a connection is handled at a time;
 * pipelined requests wait in the read buffer, so responses keep their
 * order.
 */
#ifndef THAW_CONN_H
#define THAW_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/channel.h"
#include "common/http.h"
#include "common/timer.h"

#include "daemon/loop.h"
#include "common/request.h"
#include "common/router.h"

struct function;
struct invocation;
struct imagestore_upload;
struct snapexport;

enum conn_state { CONN_READING, CONN_WAITING, CONN_WRITING, CONN_CLOSING };

struct conn {
	int fd;
	struct shard *sh;
	enum conn_state state;
	unsigned ops;         /* io_uring operations in flight */
	struct loop_op recv_op, send_op;
	bool recv_armed, send_inflight, close_after_send;
	/* where a plain recv (no provided buffers: kernels before 5.19) lands;
	 * never req.in, which process() moves while the next recv is armed */
	char *recv_buf;
	struct http_req req;
	struct buf out;
	size_t out_sent;
	size_t out_counted; /* of out, in server.metrics.buffered */
	size_t body_counted; /* of req.body, in server.metrics.buffered */
	struct timer rtimer;  /* header/body read or keep-alive idle */
	int64_t body_start_ns; /* the head was complete: the body's deadline runs */
	/* the request under way */
	int64_t start_ns;
	char request_id[REQUEST_ID_MAX + 1];
	struct function *fn;     /* the function it invokes: metrics, access log */
	struct invocation *inv;  /* at a pool, or NULL */
	struct route route;      /* routed at the head (front.h) */
	const char *route_base;  /* the target's address then: views move with it */
	struct proxy *proxy;   /* a /proxy relay under way */
	struct imagestore_upload *upload; /* PUT /admin/blobs/... being stored */
	/* a streamed answer (conn_stream_*): chunks wait in pending while a
	 * send is in flight (out must not move under the kernel) */
	bool streaming, stream_ended;
	struct buf pending;
	/* a producer that gives the next piece when the last went out (NULL:
	 * pieces come as they come) */
	void (*stream_drained)(struct conn *c);
	struct snapexport *snapexport; /* GET /admin/functions/NAME/snapshot */
	struct h2 *h2;         /* HTTP/2 (h2.h) since the preface, or NULL */
	struct conn *next_conn, *prev_conn; /* the shard's list */
};

/* What requests mean: set once, before the loops start. headers runs when a
 * request's head is in (set the body limit, refuse early), request when it
 * is whole (answer it, now or later, with conn_respond*), closed when c
 * closes (its operations may still complete; nothing more is read). */
struct conn_hooks {
	void (*headers)(struct conn *c);
	void (*request)(struct conn *c);
	void (*closed)(struct conn *c);
};
void conn_set_hooks(const struct conn_hooks *h);

/* Takes a freshly accepted fd (503 and closed past --max-connections). */
void conn_accept(struct shard *sh, int fd);
/* Answers the invocation of c (from the pool): a whole response. */
void conn_respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
		  const struct channel_kv *headers, unsigned n_headers);
void conn_respond_error(struct conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Answers from an instance's decoded CH_RESPONSE. */
void conn_respond_channel(struct conn *c, const struct channel_response *r);
/* Streams the answer of c (a custom runtime's chunked or event-stream
 * response): the head of r now, with chunked transfer coding, then pieces
 * of body as they come, then the end (the connection then reads its next
 * request). Past the head nothing else may answer c: an error then can
 * only close it (conn_close). More than CONN_STREAM_MAX bytes waiting for
 * a slow client close it too. */
#define CONN_STREAM_MAX (64u << 20)
void conn_stream_head(struct conn *c, const struct channel_response *r);
void conn_stream_data(struct conn *c, const char *data, size_t len);
void conn_stream_end(struct conn *c);
/* Closes c: its invocation is cancelled; memory goes once no operation of
 * c is in flight. */
void conn_close(struct conn *c);
/* Closes every connection of sh (shutdown). */
void conn_close_all(struct shard *sh);
/* For h2.c: sends what the HTTP/2 session has to send (when no send is
 * in flight), or closes c once the session wants nothing more. */
void conn__h2_flush(struct conn *c);
/* An operation counted in c->ops by another module completed. */
void conn_op_done(struct conn *c);

#endif
