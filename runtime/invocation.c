#define LOG_PREFIX "invocation: "
#include "invocation.h"
#include "channel.h"
#include "log.h"
#include "mem.h"
#include "server.h"

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
	atomic_fetch_add(&alive, 1);
	return inv;
}

void invocation_free(struct invocation *inv)
{
	buf_free(&inv->frame);
	buf_free(&inv->answer);
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

static void deliver(struct invocation *inv, const char *payload, size_t len)
{
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
	struct buf body = { 0 }, frame = { 0 };
	buf_append_str(&body, "{\"error\": ");
	buf_append_json_string(&body, msg, strlen(msg));
	buf_append_str(&body, "}");
	struct channel_kv h[] = { { "content-type", "application/json" }, { "retry-after", "1" } };
	channel_put_response(&frame, 0, (uint32_t)status, h, status == 429 || status == 503 ? 2 : 1,
			     body.data, body.len);
	invocation_answer(inv, frame.data + sizeof(struct channel_hdr),
			  frame.len - sizeof(struct channel_hdr));
	buf_free(&frame);
	buf_free(&body);
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
