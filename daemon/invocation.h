/*
 * An invocation: one call of a function, from the front end that took it
 * (an HTTP/1 request or a gRPC call) to the pool that runs it, and its
 * answer back. It owns the request as a CH_REQUEST frame (request.h), so it
 * can cross loops and outlive the connection's read buffer.
 *
 * Threads: the origin loop makes it and gets its answer (on_done, always on
 * the origin loop); the pool's loop runs it. The pool answers every
 * invocation exactly once (invocation_answer/_fail). The origin may give up
 * at any time (invocation_cancel): the pool then answers it 499 soon, and
 * on_done still runs once. Memory: counted references, one the origin's
 * (dropped right after on_done), one per cancel in flight.
 */
#ifndef THAW_INVOCATION_H
#define THAW_INVOCATION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "daemon/loop.h"
#include "common/request.h"
#include "common/timer.h"

struct function;
struct instance;

/* The status an invocation gets when its origin gave up (nginx's). */
#define INVOCATION_CANCELLED 499

enum inv_state { INV_NEW, INV_QUEUED, INV_RUNNING, INV_DONE };

struct invocation;
/* The answer, on the origin's loop: payload is a CH_RESPONSE payload that
 * channel_decode_response accepts, valid during the call. */
typedef void (*invocation_done_fn)(struct invocation *inv, const char *payload, size_t len);
/* A streamed answer's head (head: a CH_RESPONSE payload, its body empty) or
 * a piece of its body, on the origin's loop, in order, before on_done. */
typedef void (*invocation_stream_fn)(struct invocation *inv, bool head, const char *data,
				     size_t len);

struct invocation {
	/* the origin's: set before the pool gets it, then read-only */
	struct function *fn;
	struct buf frame; /* CH_REQUEST; the pool sets the id in its header */
	char request_id[REQUEST_ID_MAX + 1];
	int64_t start_ns, deadline_ns; /* CLOCK_MONOTONIC */
	struct shard *origin;
	invocation_done_fn on_done;
	void *ctx; /* the origin's (its connection); NULL once it went away */
	atomic_bool cancelled;
	atomic_int refs;
	/* streaming (optional): the origin sets on_stream to take answers in
	 * pieces; stream_ok (set by the pool before its answer) says the
	 * stream ended well, else on_done's answer came after a broken one */
	invocation_stream_fn on_stream;
	bool stream_ok;
	bool streamed;   /* the pool's: it sent a head */
	bool delivered;  /* the origin's: on_done ran */
	pthread_mutex_t slock; /* the pieces on their way to the origin */
	struct buf shead, sdata;
	atomic_bool spost;
	struct loop_op stream_op;
	/* the pool's, touched on its loop only */
	struct shard *runs_on; /* set before the pool gets it */
	enum inv_state state;
	struct timer deadline;
	struct invocation *qnext, *qprev;
	struct instance *inst;
	unsigned slot;
	/* crossing loops: each op is used at most once */
	struct loop_op submit_op, cancel_op, done_op;
	int64_t posted_ns; /* the last hand-over's start */
	struct buf answer;
};

/* A new invocation of fn made on origin's loop; the caller fills frame,
 * request_id, start_ns and deadline_ns, then hands it to pool_submit. */
struct invocation *invocation_new(struct shard *origin, struct function *fn,
				  invocation_done_fn on_done, void *ctx);
/* Origin: frees an invocation that was never submitted. */
void invocation_free(struct invocation *inv);
/* Origin: gives up on inv (the client went away). on_done still runs. */
void invocation_cancel(struct invocation *inv);

/* Pool: the answer, once. payload must pass channel_decode_response. */
void invocation_answer(struct invocation *inv, const char *payload, size_t len);
/* Pool, streaming (only when inv->on_stream is set): the head once, then
 * pieces of body; then the one answer as always, after setting
 * inv->stream_ok when the stream ended well (its body is ignored). An
 * invocation_fail after a head tells the origin the stream broke. */
void invocation_stream(struct invocation *inv, bool head, const char *data, size_t len);
/* Pool: an error answer {"error": "..."} with status (Retry-After: 1 for
 * 429 and 503). */
void invocation_fail(struct invocation *inv, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Invocations not yet freed, daemon-wide (a stopping loop waits for none:
 * another loop may still answer or cancel one through it). */
unsigned invocation_alive(void);
/* Hands inv to another loop through op (one of its own); the hand-over is
 * timed into /metrics (invocation_handed_over, on the other loop). */
void invocation_post(struct invocation *inv, struct shard *to, struct loop_op *op);
void invocation_handed_over(struct invocation *inv);
/* Pool: done with a cancel posted to it (drops that reference). */
void invocation_put(struct invocation *inv);

#endif
