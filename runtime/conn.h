/*
 * A client connection: reads requests (HTTP/1.1, keep-alive, pipelining),
 * answers built-in endpoints itself and hands invocations to a pool. One
 * request of a connection is handled at a time; pipelined requests wait in
 * the read buffer, so responses keep their order.
 */
#ifndef THAW_CONN_H
#define THAW_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "channel.h"
#include "http.h"
#include "timer.h"

struct shard;
struct io_uring_cqe;
struct function;
struct instance;
struct imagestore_upload;

enum conn_state { CONN_READING, CONN_WAITING, CONN_WRITING, CONN_CLOSING };

struct conn {
	int fd;
	struct shard *sh;
	enum conn_state state;
	unsigned ops;         /* io_uring operations in flight */
	bool recv_armed, send_inflight, close_after_send;
	struct http_req req;
	struct buf out;
	size_t out_sent;
	size_t out_counted; /* of out, in server.metrics.buffered */
	struct timer rtimer;  /* header/body read or keep-alive idle */
	int64_t body_start_ns; /* the head was complete: the body's deadline runs */
	/* the invocation under way */
	struct function *fn;
	struct timer deadline;
	int64_t start_ns;
	char request_id[65];
	struct instance *inst; /* running on, or NULL */
	unsigned slot;
	struct conn *qnext, *qprev; /* pool queue links */
	bool queued;
	const char *sub;       /* handler path view */
	size_t sub_len;
	struct proxy *proxy;   /* a /proxy relay under way */
	struct imagestore_upload *upload; /* PUT /admin/blobs/... being stored */
	struct conn *next_conn, *prev_conn; /* the shard's list */
};

/* Takes a freshly accepted fd. */
void conn_accept(struct shard *sh, int fd);
/* io_uring completions. */
void conn_on_recv(struct conn *c, struct io_uring_cqe *cqe);
void conn_on_send(struct conn *c, int res);
/* Answers the invocation of c (from the pool): a whole response. */
void conn_respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
		  const struct channel_kv *headers, unsigned n_headers);
void conn_respond_error(struct conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Answers from an instance's decoded CH_RESPONSE. */
void conn_respond_channel(struct conn *c, const struct channel_response *r);
/* Closes c: in-flight work is detached; memory goes once no operation of
 * c is in flight. */
void conn_close(struct conn *c);
/* An operation counted in c->ops by another module completed. */
void conn_op_done(struct conn *c);

#endif
