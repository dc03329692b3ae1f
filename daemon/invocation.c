#define LOG_PREFIX "invocation: "
#include "daemon/invocation.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/mem.h"
#include "daemon/server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint alive;

unsigned invocation_alive(void)
{
	return atomic_load(&alive);
}

struct invocation *invocation_new(struct shard *origin, struct function *fn,
				  invocation_done_fn on_done, void *ctx)
{
	struct invocation *inv = xcalloc(1, sizeof(*inv));
	inv->origin = origin;
	inv->fn = fn;
	inv->on_done = on_done;
	inv->ctx = ctx;
	atomic_init(&inv->refs, 1);
	pthread_mutex_init(&inv->slock, NULL);
	atomic_fetch_add(&alive, 1);
	return inv;
}

void invocation_free(struct invocation *inv)
{
	buf_free(&inv->frame);
	buf_free(&inv->answer);
	buf_free(&inv->shead);
	buf_free(&inv->sdata);
	pthread_mutex_destroy(&inv->slock);
	free(inv);
	atomic_fetch_sub(&alive, 1);
}

void invocation_put(struct invocation *inv)
{
	if (atomic_fetch_sub(&inv->refs, 1) == 1)
		invocation_free(inv);
}

void invocation_post(struct invocation *inv, struct shard *to, struct loop_op *op)
{
	inv->posted_ns = now_ns();
	shard_post(to, op, 0);
}

void invocation_handed_over(struct invocation *inv)
{
	atomic_fetch_add_explicit(&server.metrics.handovers, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&server.metrics.handover_ns, (uint64_t)(now_ns() - inv->posted_ns),
				  memory_order_relaxed);
}

/* Origin: hands the pieces that crossed loops to on_stream. */
static void stream_drain(struct invocation *inv)
{
	struct buf head = { 0 }, data = { 0 }, t;
	pthread_mutex_lock(&inv->slock);
	t = inv->shead, inv->shead = head, head = t;
	t = inv->sdata, inv->sdata = data, data = t;
	pthread_mutex_unlock(&inv->slock);
	if (!inv->delivered && head.len)
		inv->on_stream(inv, true, head.data, head.len);
	if (!inv->delivered && data.len)
		inv->on_stream(inv, false, data.data, data.len);
	buf_free(&head);
	buf_free(&data);
}

static void stream_posted(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct invocation *inv = container_of(op, struct invocation, stream_op);
	(void)cqe;
	atomic_store(&inv->spost, false);
	stream_drain(inv);
	invocation_put(inv); /* the post's */
}

void invocation_stream(struct invocation *inv, bool head, const char *data, size_t len)
{
	if (!inv->on_stream)
		return;
	if (inv->origin == shard_self) {
		inv->on_stream(inv, head, data, len);
		return;
	}
	pthread_mutex_lock(&inv->slock);
	buf_append(head ? &inv->shead : &inv->sdata, data, len);
	pthread_mutex_unlock(&inv->slock);
	if (!atomic_exchange(&inv->spost, true)) {
		atomic_fetch_add(&inv->refs, 1);
		inv->stream_op.cb = stream_posted;
		shard_post(inv->origin, &inv->stream_op, 0);
	}
}

static void deliver(struct invocation *inv, const char *payload, size_t len)
{
	if (inv->on_stream)
		stream_drain(inv); /* pieces still on their way come first */
	inv->delivered = true;
	inv->on_done(inv, payload, len);
	invocation_put(inv); /* the origin's */
}

static void on_done_posted(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct invocation *inv = container_of(op, struct invocation, done_op);
	(void)cqe;
	invocation_handed_over(inv);
	deliver(inv, inv->answer.data, inv->answer.len);
}

void invocation_answer(struct invocation *inv, const char *payload, size_t len)
{
	inv->state = INV_DONE;
	if (inv->origin == shard_self) {
		deliver(inv, payload, len);
		return;
	}
	/* the payload lives in the instance's read buffer: keep a copy */
	buf_reset(&inv->answer);
	buf_append(&inv->answer, payload, len);
	inv->done_op.cb = on_done_posted;
	invocation_post(inv, inv->origin, &inv->done_op);
}

void invocation_fail(struct invocation *inv, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct buf frame = { 0 };
	channel_put_error(&frame, 0, (uint32_t)status, msg, status == 429 || status == 503);
	invocation_answer(inv, frame.data + sizeof(struct channel_hdr),
			  frame.len - sizeof(struct channel_hdr));
	buf_free(&frame);
}

void invocation_cancel(struct invocation *inv)
{
	if (atomic_exchange(&inv->cancelled, true))
		return;
	atomic_fetch_add(&inv->refs, 1); /* the cancel's, put by the pool */
	if (inv->runs_on == shard_self) {
		struct io_uring_cqe cqe = { 0 };
		inv->cancel_op.cb(&inv->cancel_op, &cqe);
	} else {
		shard_post(inv->runs_on, &inv->cancel_op, 0);
	}
}
