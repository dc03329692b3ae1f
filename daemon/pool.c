#define LOG_PREFIX "pool: "
#include "daemon/pool.h"
#include "daemon/pool_internal.h"
#include "common/channel.h"
#include "daemon/custom.h"
#include "daemon/invocation.h"
#include "daemon/lifecycle.h"
#include "common/log.h"
#include "daemon/loop.h"
#include "common/mem.h"
#include "proc/reslimit.h"
#include "daemon/server.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RETRY_AFTER_FAIL_NS (5 * 1000000000LL)
#define RECV_CHUNK 65536


static void warm_posted(struct loop_op *op, struct io_uring_cqe *cqe);

struct pool *pool_of(struct function *fn)
{
	struct pool *p = atomic_load(&fn->pool);
	if (p)
		return p;
	p = xcalloc(1, sizeof(*p));
	p->sh = server.shards[fn->index % server.n_shards];
	p->fn = fn;
	p->load_at = p->tick_at = p->last_request_ns = now_ns();
	p->warm_op.cb = warm_posted;
	autoscale_init(&p->as, &fn->cfg.scaling);
	struct pool *none = NULL;
	if (!atomic_compare_exchange_strong(&fn->pool, &none, p)) {
		autoscale_fini(&p->as); /* another loop made it first */
		free(p);
		return none;
	}
	return p;
}

/* Integrates the pool's load up to now, then takes its new value. */
void pool__account(struct pool *p)
{
	int64_t now = now_ns();
	p->load_area += (double)(now - p->load_at) * p->load;
	p->load_at = now;
	unsigned load = p->q_len;
	for (struct instance *in = p->instances; in; in = in->next)
		load += in->inflight;
	p->load = load;
}

/* Gauge category of an instance: starting, idle, busy, or none when dead. */
int pool__category(const struct instance *in)
{
	if (in->state == I_STARTING)
		return INST_STARTING;
	if (in->state == I_READY)
		return in->spare ? INST_SPARE : in->inflight ? INST_BUSY : INST_IDLE;
	return -1;
}

void pool__gauge_move(struct instance *in, int before)
{
	int after = pool__category(in);
	struct fn_metrics *m = &in->pool->fn->metrics;
	if (before == after)
		return;
	if (before >= 0)
		atomic_fetch_sub(&m->instances[before], 1);
	if (after >= 0)
		atomic_fetch_add(&m->instances[after], 1);
}

/* --- channel I/O -------------------------------------------------------- */

static void arm_recv(struct instance *in)
{
	buf_reserve(&in->in, RECV_CHUNK);
	struct io_uring_sqe *sqe = shard_sqe(in->pool->sh);
	io_uring_prep_recv(sqe, in->proc.channel_fd, in->in.data + in->in.len,
			   in->in.cap - in->in.len, 0);
	loop_op_prep(sqe, &in->recv_op);
	in->recv_armed = true;
	in->ops++;
}

/* How often a paused channel looks again at the daemon's buffered bytes. */
#define RECV_PAUSE_NS 20000000LL

static void recv_pause_over(struct timer *t);

/* Back-pressure: while the responses clients have not read (and request
 * bodies held) pass --max-buffered, the daemon reads no more from
 * instances; what they answer waits in their socket and in them, not in
 * the daemon. Their requests' deadlines still run. */
static bool recv_paused(struct instance *in)
{
	if (atomic_load(&server.metrics.buffered) <= server.opt.max_buffered)
		return false;
	if (!in->recv_pause_timer.idx) {
		atomic_fetch_add(&server.metrics.channel_pauses, 1);
		in->ops++;
	}
	timer_set(&in->pool->sh->timers, &in->recv_pause_timer, now_ns() + RECV_PAUSE_NS,
		  recv_pause_over);
	return true;
}

static void recv_pause_over(struct timer *t)
{
	struct instance *in = container_of(t, struct instance, recv_pause_timer);
	if (in->state != I_DEAD && recv_paused(in))
		return;
	in->ops--;
	if (in->state == I_DEAD) {
		pool__maybe_free(in);
		return;
	}
	arm_recv(in);
}

static void arm_log(struct instance *in)
{
	struct io_uring_sqe *sqe = shard_sqe(in->pool->sh);
	io_uring_prep_read(sqe, in->proc.log_fd, in->log + in->log_len,
			   sizeof(in->log) - in->log_len, 0);
	loop_op_prep(sqe, &in->log_op);
	in->log_armed = true;
	in->ops++;
}

static void arm_send(struct instance *in)
{
	struct io_uring_sqe *sqe = shard_sqe(in->pool->sh);
	io_uring_prep_send(sqe, in->proc.channel_fd, in->out.data + in->out_sent,
			   in->out.len - in->out_sent, MSG_NOSIGNAL);
	loop_op_prep(sqe, &in->send_op);
	in->send_inflight = true;
	in->ops++;
}

/* Frames are built in pending; they move to out when no send is in flight
 * (out must not move under the kernel while it sends). */
void pool__flush(struct instance *in)
{
	if (in->send_inflight || in->state == I_DEAD || !in->pending.len)
		return;
	struct buf t = in->out;
	in->out = in->pending;
	in->pending = t;
	buf_reset(&in->pending);
	in->out_sent = 0;
	arm_send(in);
}

/* Reaping a process and removing its cgroups wait on the kernel (a large
 * process takes a while to exit): a job does both, off the loop. */
struct reap_job {
	struct job job;
	struct instance_proc proc;
	struct reslimit_groups cgroups;
};

static void reap_run(struct job *j)
{
	struct reap_job *r = container_of(j, struct reap_job, job);
	instance_destroy(&r->proc);
	reslimit_release(&r->cgroups);
}

static void reap_done(struct job *j)
{
	free(container_of(j, struct reap_job, job));
}

void pool__maybe_free(struct instance *in)
{
	if (in->state != I_DEAD || in->ops)
		return;
	struct reap_job *r = xcalloc(1, sizeof(*r));
	*r = (struct reap_job){ .job = { .run = reap_run, .done = reap_done },
				.proc = in->proc, .cgroups = in->cgroups };
	if (in->mem_fd >= 0)
		close(in->mem_fd);
	jobs_submit(&r->job);
	buf_free(&in->in);
	buf_free(&in->out);
	buf_free(&in->pending);
	free(in->slots);
	in->pool->sh->n_instances--;
	free(in);
}

static void on_recv(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_send(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_log(struct loop_op *op, struct io_uring_cqe *cqe);

void pool__init_ops(struct instance *in)
{
	in->recv_op.cb = on_recv;
	in->send_op.cb = on_send;
	in->log_op.cb = on_log;
}

/* --- starting ----------------------------------------------------------- */

static void init_timeout(struct timer *t)
{
	struct instance *in = (struct instance *)((char *)t - offsetof(struct instance, init_timer));
	char msg[128];
	snprintf(msg, sizeof(msg), "init did not finish in %u s", server.opt.init_timeout_s);
	lifecycle_failed(in->pool->fn, msg);
	in->pool->last_fail_ns = now_ns();
	pool__kill_instance(in, 503, msg);
}

static void custom_watch(struct instance *in);

void pool__watch_instance(struct instance *in)
{
	if (in->pool->fn->cfg.custom)
		custom_watch(in);
	else
		arm_recv(in);
	arm_log(in);
	timer_set(&in->pool->sh->timers, &in->init_timer,
		  now_ns() + (int64_t)server.opt.init_timeout_s * 1000000000, init_timeout);
}

static void warm_posted(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct pool *p = container_of(op, struct pool, warm_op);
	(void)cqe;
	atomic_store(&p->warm_posted, false);
	if (p->n_live == 0 && !p->sh->stopping)
		pool__start_instance(p);
}

void pool_warm(struct pool *p)
{
	if (p->sh == shard_self) {
		if (p->n_live == 0)
			pool__start_instance(p);
	} else if (!atomic_exchange(&p->warm_posted, true)) {
		shard_post(p->sh, &p->warm_op, 0);
	}
}

static void on_ready(struct instance *in, const char *payload, size_t len)
{
	struct pool *p = in->pool;
	if (in->checkpoint_asked) {
		pool__checkpoint_answered(in, true, NULL, 0);
		return;
	}
	if (in->state != I_STARTING)
		return;
	int before = pool__category(in);
	timer_cancel(&p->sh->timers, &in->init_timer);
	in->state = I_READY;
	p->n_starting--;
	p->n_ready++;
	pool__gauge_move(in, before);
	snprintf(in->id, sizeof(in->id), "%.*s", (int)len, payload);
	int64_t took = now_ns() - in->started_ns;
	histogram_observe(in->restored ? &p->fn->metrics.restore : &p->fn->metrics.init, took);
	double zero = 0;
	atomic_compare_exchange_strong(in->restored ? &p->fn->restore_ms : &p->fn->init_ms, &zero,
				       (double)took / 1e6);
	in->idle_since_ns = now_ns();
	if (in->restored)
		pr_info("%s: instance %s (pid %d) restored in %.1f ms: queue %.1f, verify %.1f, "
			"criu %.1f, back to loop %.1f, on_restore and channel %.2f%s",
			p->fn->cfg.name, in->id, in->proc.pid, (double)took / 1e6,
			(double)(in->job_start_ns - in->started_ns) / 1e6, in->verify_ms, in->criu_ms,
			(double)(in->restored_ns - in->job_end_ns) / 1e6,
			(double)(now_ns() - in->restored_ns) / 1e6,
			in->criu_ahead ? "; criu started ahead" : "");
	else
		pr_info("%s: instance %s (pid %d) ready in %.1f ms", p->fn->cfg.name, in->id,
			in->proc.pid, (double)took / 1e6);
	if (pool__take_snapshot(in))
		return; /* ready once a copy of the snapshot serves */
	lifecycle_ready(p->fn);
	pool__drain_queue(p);
	pool__keep_spares(p);
}

static void on_init_failed(struct instance *in, const char *payload, size_t len)
{
	char msg[512];
	if (in->checkpoint_asked) {
		pool__checkpoint_answered(in, false, payload, len);
		return;
	}
	snprintf(msg, sizeof(msg), "init failed: %.*s", (int)len, payload);
	pr_err("%s: %s", in->pool->fn->cfg.name, msg);
	lifecycle_failed(in->pool->fn, msg);
	in->pool->last_fail_ns = now_ns();
	pool__kill_instance(in, 503, msg);
}

/* --- requests ----------------------------------------------------------- */

static void run_on(struct instance *in, struct invocation *inv)
{
	unsigned slot = 0;
	while (in->slots[slot].id)
		slot++;
	int before = pool__category(in);
	uint64_t id = ++in->next_id;
	in->slots[slot] = (struct inst_slot){ .id = id, .inv = inv };
	in->inflight++;
	pool__gauge_move(in, before);
	inv->state = INV_RUNNING;
	inv->inst = in;
	inv->slot = slot;
	pool__account(in->pool);
	/* the frame is whole: number it, and hand it over without a copy
	 * when nothing else waits to be sent */
	memcpy(inv->frame.data + offsetof(struct channel_hdr, id), &id, sizeof(id));
	if (in->custom) {
		custom_send(in->custom, slot, id, inv->frame.data, inv->frame.len);
		return;
	}
	if (!in->pending.len) {
		struct buf t = in->pending;
		in->pending = inv->frame;
		inv->frame = t;
	} else {
		buf_append(&in->pending, inv->frame.data, inv->frame.len);
	}
	pool__flush(in);
}

/* A spare starts serving: a hand-over, no start on the request's path. */
static struct instance *take_spare(struct pool *p, struct instance *in)
{
	int before = pool__category(in);
	in->spare = false;
	in->refill_spares = true;
	p->n_spares--;
	pool__gauge_move(in, before);
	atomic_fetch_add_explicit(&p->fn->metrics.spares_taken, 1, memory_order_relaxed);
	return in;
}

/* The least loaded serving instance with a free slot, else a ready spare. */
static struct instance *free_instance(struct pool *p)
{
	struct instance *best = NULL, *spare = NULL;
	for (struct instance *in = p->instances; in; in = in->next) {
		if (in->state != I_READY || in->snapshotting || in->closed || in->stopping)
			continue;
		if (in->spare)
			spare = spare ? spare : in;
		else if (in->inflight < p->fn->cfg.instance_concurrency &&
			 (!best || in->inflight < best->inflight))
			best = in;
	}
	return best ? best : spare ? take_spare(p, spare) : NULL;
}

void pool__keep_spares(struct pool *p)
{
	const struct config_scaling *s = &p->fn->cfg.scaling;
	int64_t now = now_ns();
	bool recent = p->traffic_ns &&
		      now - p->traffic_ns <= (int64_t)s->scale_to_zero_grace_s * 1000000000;
	unsigned want = recent && atomic_load(&p->fn->snap_state) == SNAP_READY &&
					!function_removed(p->fn)
				? s->spare_instances
				: 0;
	struct instance *in;
	while (!p->sh->stopping && p->n_spares < want && p->n_live < s->max_instances &&
	       (in = pool__start_instance(p))) {
		in->spare = true;
		p->n_spares++;
	}
	while (p->n_spares > want) {
		struct instance *idle = NULL;
		for (in = p->instances; in && !idle; in = in->next)
			if (in->spare && in->state == I_READY)
				idle = in;
		if (!idle)
			break; /* the others are still starting */
		pool__kill_instance(idle, 503, "spare no longer needed");
	}
}

static void enqueue(struct pool *p, struct invocation *c)
{
	c->qnext = NULL;
	c->qprev = p->q_tail;
	if (p->q_tail)
		p->q_tail->qnext = c;
	else
		p->q_head = c;
	p->q_tail = c;
	c->state = INV_QUEUED;
	p->q_len++;
	atomic_fetch_add(&p->fn->metrics.queue_depth, 1);
	pool__account(p);
}

static void dequeue(struct pool *p, struct invocation *c)
{
	if (c->qprev)
		c->qprev->qnext = c->qnext;
	else
		p->q_head = c->qnext;
	if (c->qnext)
		c->qnext->qprev = c->qprev;
	else
		p->q_tail = c->qprev;
	c->state = INV_NEW;
	p->q_len--;
	atomic_fetch_sub(&p->fn->metrics.queue_depth, 1);
	pool__account(p);
}

void pool__drain_queue(struct pool *p)
{
	struct instance *in;
	while (p->q_head && (in = free_instance(p))) {
		struct invocation *inv = p->q_head;
		dequeue(p, inv);
		run_on(in, inv);
	}
}

static void cancel(struct pool *p, struct invocation *inv, bool deadline);

static void deadline_fired(struct timer *t)
{
	struct invocation *inv = container_of(t, struct invocation, deadline);
	cancel(pool_of(inv->fn), inv, true);
}

/* Failed a moment ago (starts wait RETRY_AFTER_FAIL_NS), or never starts. */
static bool failed_recently(struct pool *p)
{
	return p->fn->broken || (atomic_load(&p->fn->state) == FN_FAILED &&
				 now_ns() - p->last_fail_ns < RETRY_AFTER_FAIL_NS);
}

/* On the pool's loop: runs inv, queues it, or answers it at once. */
static void take(struct pool *p, struct invocation *inv)
{
	struct function *fn = p->fn;
	if (atomic_load(&inv->cancelled)) {
		invocation_fail(inv, INVOCATION_CANCELLED, "the client went away");
		return;
	}
	p->last_request_ns = p->traffic_ns = inv->start_ns;
	timer_set(&p->sh->timers, &inv->deadline, inv->deadline_ns, deadline_fired);
	struct instance *in = free_instance(p);
	if (in) {
		run_on(in, inv);
		return;
	}
	if (p->n_ready == 0 && failed_recently(p)) {
		char msg[512];
		function_error(fn, msg, sizeof(msg));
		timer_cancel(&p->sh->timers, &inv->deadline);
		invocation_fail(inv, 503, "function %s is unavailable: %s", fn->cfg.name, msg);
		return;
	}
	if (p->q_len >= fn->cfg.scaling.max_queue) {
		timer_cancel(&p->sh->timers, &inv->deadline);
		invocation_fail(inv, 429, "function %s is busy: %u requests queued", fn->cfg.name,
				p->q_len);
		return;
	}
	enqueue(p, inv);
	pool__scale_up(p);
}

static void submit_posted(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct invocation *inv = container_of(op, struct invocation, submit_op);
	(void)cqe;
	invocation_handed_over(inv);
	take(pool_of(inv->fn), inv);
}

static void cancel_posted(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct invocation *inv = container_of(op, struct invocation, cancel_op);
	(void)cqe;
	cancel(pool_of(inv->fn), inv, false);
	invocation_put(inv);
}

void pool_submit(struct invocation *inv)
{
	struct pool *p = pool_of(inv->fn);
	inv->runs_on = p->sh;
	inv->cancel_op.cb = cancel_posted;
	if (p->sh == shard_self) {
		take(p, inv);
		return;
	}
	inv->submit_op.cb = submit_posted;
	invocation_post(inv, p->sh, &inv->submit_op);
}

void pool__scale_up(struct pool *p)
{
	unsigned conc = p->fn->cfg.instance_concurrency;
	unsigned max = p->fn->cfg.scaling.max_instances;
	if (p->sh->stopping)
		return;
	/* one more instance for each instanceConcurrency queued requests */
	while (!failed_recently(p) && p->q_len > p->n_starting * conc && p->n_live < max)
		if (!pool__start_instance(p))
			break;
	/* nothing can start: fail the queue (unless a snapshot being taken
	 * will start instances when it is done) */
	if (!p->n_live && p->q_len && atomic_load(&p->fn->snap_state) != SNAP_TAKING)
		while (p->q_head) {
			struct invocation *inv = p->q_head;
			char msg[512];
			dequeue(p, inv);
			timer_cancel(&p->sh->timers, &inv->deadline);
			function_error(p->fn, msg, sizeof(msg));
			invocation_fail(inv, 503, "function %s is unavailable: %s",
					p->fn->cfg.name, msg);
		}
}

/* The origin gave up on inv, or its deadline passed: it leaves the queue
 * or its instance (which a deadline recycles: the handler is stuck on it). */
static void cancel(struct pool *p, struct invocation *inv, bool deadline)
{
	struct function *fn = p->fn;
	if (inv->state == INV_NEW || inv->state == INV_DONE)
		return; /* not here yet (take() sees the flag), or answered */
	timer_cancel(&p->sh->timers, &inv->deadline);
	if (!deadline)
		atomic_fetch_add_explicit(&fn->metrics.cancelled, 1, memory_order_relaxed);
	if (inv->state == INV_QUEUED)
		dequeue(p, inv);
	struct instance *in = inv->inst;
	if (in) {
		in->slots[inv->slot].inv = NULL;
		inv->inst = NULL;
		/* the client went away: the handler may stop (a custom
		 * runtime's connection closes: its slot is free at once) */
		if (!deadline && in->custom)
			custom_cancel(in->custom, inv->slot);
		else if (!deadline)
			instance_cancel(&in->proc, in->slots[inv->slot].id);
	}
	if (!deadline) {
		invocation_fail(inv, INVOCATION_CANCELLED, "the client went away");
		return;
	}
	invocation_fail(inv, 504, "function %s did not answer within its deadline", fn->cfg.name);
	if (in)
		pool__kill_instance(in, 502, "instance recycled after a request passed its deadline");
}

static void on_response(struct instance *in, uint64_t id, const char *payload, size_t len)
{
	unsigned conc = in->pool->fn->cfg.instance_concurrency, i = 0;
	while (i < conc && in->slots[i].id != id)
		i++;
	if (i == conc) {
		pool__kill_instance(in, 502, "instance answered an unknown request");
		return;
	}
	struct invocation *inv = in->slots[i].inv;
	int before = pool__category(in);
	in->slots[i] = (struct inst_slot){ 0 };
	in->inflight--;
	pool__gauge_move(in, before);
	pool__account(in->pool);
	if (!in->inflight)
		in->idle_since_ns = now_ns();
	if (id == in->warmup_id) {
		in->warmup_id = 0;
		struct channel_response wr;
		if (channel_decode_response(payload, len, &wr) == 0)
			pr_info("%s: warmup answered %u", in->pool->fn->cfg.name, wr.status);
		pool__ask_checkpoint(in);
		return;
	}
	struct channel_response r;
	if (channel_decode_response(payload, len, &r) < 0) {
		if (inv) {
			inv->inst = NULL;
			timer_cancel(&in->pool->sh->timers, &inv->deadline);
			invocation_fail(inv, 502, "instance sent a malformed response");
		}
		pool__kill_instance(in, 502, "instance sent a malformed response");
		return;
	}
	if (inv) {
		inv->inst = NULL;
		timer_cancel(&in->pool->sh->timers, &inv->deadline);
		invocation_answer(inv, payload, len);
	}
	pool__drain_queue(in->pool);
	if (in->refill_spares) { /* answered as a spare taken: restore the next */
		in->refill_spares = false;
		pool__keep_spares(in->pool);
	}
}

static void handle_frame(struct instance *in, const struct channel_hdr *h, const char *payload)
{
	switch (h->type) {
	case CH_READY:
		on_ready(in, payload, h->len);
		break;
	case CH_INIT_FAILED:
		on_init_failed(in, payload, h->len);
		break;
	case CH_RESPONSE:
		on_response(in, h->id, payload, h->len);
		break;
	default:
		pool__kill_instance(in, 502, "instance sent an unexpected frame");
	}
}

/* Why an instance's channel closed: out of memory, a signal, an exit. */
static const char *describe_exit(struct instance *in, char *buf, size_t len)
{
	if (reslimit_oom_killed(&in->cgroups)) {
		snprintf(buf, len, "instance killed: out of memory (memorySize %u MB)",
			 in->pool->fn->cfg.memory_mb);
		return buf;
	}
	siginfo_t si = { 0 };
	if (waitid(P_PID, (id_t)in->proc.pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid) {
		if (si.si_code == CLD_EXITED)
			snprintf(buf, len, "instance exited with status %d", si.si_status);
		else
			snprintf(buf, len, "instance killed by signal %s", strsignal(si.si_status));
		return buf;
	}
	return "instance closed its channel";
}

/* The channel closed a moment before the process turns zombie: wait for
 * that (its pidfd polls readable) to say why, at most EXIT_WAIT_NS, without
 * blocking the loop; meanwhile the instance takes no request. */
#define EXIT_WAIT_NS 100000000LL

static void exited(struct instance *in)
{
	char why[160];
	if (in->state != I_DEAD)
		pool__kill_instance(in, 502, describe_exit(in, why, sizeof(why)));
}

static void on_exit_poll(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct instance *in = container_of(op, struct instance, exit_op);
	(void)cqe;
	in->ops--;
	timer_cancel(&in->pool->sh->timers, &in->exit_timer);
	exited(in);
	pool__maybe_free(in);
}

static void exit_wait_over(struct timer *t)
{
	struct instance *in = container_of(t, struct instance, exit_timer);
	struct io_uring_sqe *sqe = shard_sqe(in->pool->sh);
	io_uring_prep_cancel(sqe, &in->exit_op, 0); /* the poll completes, then in goes */
	io_uring_sqe_set_data64(sqe, 0);
	exited(in);
}

static void channel_closed(struct instance *in)
{
	if (in->proc.pidfd < 0) {
		exited(in);
		return;
	}
	in->closed = true;
	in->exit_op.cb = on_exit_poll;
	struct io_uring_sqe *sqe = shard_sqe(in->pool->sh);
	io_uring_prep_poll_add(sqe, in->proc.pidfd, POLLIN);
	loop_op_prep(sqe, &in->exit_op);
	in->ops++;
	timer_set(&in->pool->sh->timers, &in->exit_timer, now_ns() + EXIT_WAIT_NS, exit_wait_over);
}

static void on_recv(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct instance *in = container_of(op, struct instance, recv_op);
	int res = cqe->res;
	in->recv_armed = false;
	in->ops--;
	if (in->state == I_DEAD) {
		pool__maybe_free(in);
		return;
	}
	if (res <= 0) {
		char why[160];
		if (in->checkpoint_asked) { /* died in before_checkpoint: no snapshot */
			const char *w = describe_exit(in, why, sizeof(why));
			pool__checkpoint_answered(in, false, w, strlen(w));
		} else if (in->snapshotting) /* criu stops the process it dumped */
			pool__kill_instance(in, 503, "checkpointed");
		else
			channel_closed(in);
		return;
	}
	in->in.len += (size_t)res;
	size_t off = 0;
	long n;
	while (in->state != I_DEAD &&
	       (n = channel_frame_complete(in->in.data + off, in->in.len - off)) > 0) {
		struct channel_hdr h;
		memcpy(&h, in->in.data + off, sizeof(h));
		handle_frame(in, &h, in->in.data + off + sizeof(h));
		off += (size_t)n;
	}
	if (n < 0) {
		pool__kill_instance(in, 502, "instance broke the channel protocol");
		return;
	}
	if (in->state == I_DEAD) {
		pool__maybe_free(in);
		return;
	}
	buf_consume(&in->in, off);
	if (!recv_paused(in))
		arm_recv(in);
}

static void on_send(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct instance *in = container_of(op, struct instance, send_op);
	int res = cqe->res;
	in->send_inflight = false;
	in->ops--;
	if (in->state == I_DEAD) {
		pool__maybe_free(in);
		return;
	}
	if (res < 0) {
		pool__kill_instance(in, 502, "instance channel failed");
		return;
	}
	in->out_sent += (size_t)res;
	if (in->out_sent < in->out.len) {
		arm_send(in);
		return;
	}
	buf_reset(&in->out);
	pool__flush(in);
}

/* Handler stdout/stderr: one daemon log line per line, tagged. */
/* To the daemon's log and to the function's own file (fnlog.h). */
static void log_line(struct instance *in, const char *line, size_t len)
{
	struct function *fn = in->pool->fn;
	uint64_t dropped;
	bool echo = fnlog_echo(&fn->name->log, &dropped);
	if (dropped)
		pr_warn("%s: %llu line(s) of output not copied here in a second (over %d a "
			"second); all are in its log (thaw logs %s)",
			fn->cfg.name, (unsigned long long)dropped, FNLOG_ECHO_LINES, fn->cfg.name);
	if (echo)
		pr_info("%s[%d]: %.*s%s", fn->cfg.name, in->proc.pid,
			(int)(len > FNLOG_ECHO_BYTES ? FNLOG_ECHO_BYTES : len), line,
			len > FNLOG_ECHO_BYTES ? " [cut]" : "");
	fnlog_write(&fn->name->log, fn->cfg.name, fn->version, in->proc.pid, line, len);
}

static void on_log(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct instance *in = container_of(op, struct instance, log_op);
	int res = cqe->res;
	in->log_armed = false;
	in->ops--;
	if (res > 0)
		in->log_len += (size_t)res;
	char *start = in->log, *end = in->log + in->log_len, *nl;
	while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
		log_line(in, start, (size_t)(nl - start));
		start = nl + 1;
	}
	if (start == in->log && in->log_len == sizeof(in->log)) { /* a line too long */
		log_line(in, in->log, in->log_len);
		start = end;
	}
	in->log_len = (size_t)(end - start);
	memmove(in->log, start, in->log_len);
	if (res > 0)
		arm_log(in);
	else
		pool__maybe_free(in);
}

/* --- custom runtimes (custom.h): HTTP instead of frames ------------------ */

static void custom_ready(void *owner)
{
	struct instance *in = owner;
	char id[17];
	snprintf(id, sizeof(id), "%08x%08x", (unsigned)in->proc.pid,
		 (unsigned)(now_ns() & 0xffffffff));
	on_ready(in, id, strlen(id));
}

static void custom_init_failed(void *owner, const char *why)
{
	on_init_failed(owner, why, strlen(why));
}

static void custom_response(void *owner, uint64_t id, const char *payload, size_t len)
{
	struct instance *in = owner;
	const struct config *c = &in->pool->fn->cfg;
	/* snapshotMemory.populate: a copy's first response is its agent's cue */
	if (in->restored && !in->populate_sent && c->snapshot_memory.populate &&
	    c->snapshot_memory.mapped) {
		in->populate_sent = true;
		int ret = instance_agent_populate(&in->proc);
		if (ret)
			pr_warn("%s: populate: pid %d: %s", c->name, in->proc.pid,
				ret == -ENOENT ? "no agent loaded" : strerror(-ret));
	}
	on_response(owner, id, payload, len);
}

static void custom_frozen(void *owner)
{
	pool__dump_now(owner);
}

/* A piece of a streamed response: on to the client. */
static void custom_stream(void *owner, uint64_t id, enum custom_piece piece, const char *data,
			  size_t len)
{
	struct instance *in = owner;
	unsigned conc = in->pool->fn->cfg.instance_concurrency, i = 0;
	while (i < conc && in->slots[i].id != id)
		i++;
	struct invocation *inv = i < conc ? in->slots[i].inv : NULL;
	if (!inv)
		return; /* the warmup, or the client went away */
	if (piece == CUSTOM_END) {
		inv->stream_ok = true; /* the answer that follows ends it */
		return;
	}
	inv->streamed = true;
	invocation_stream(inv, piece == CUSTOM_HEAD, data, len);
}

static void custom_stopped(void *owner)
{
	struct instance *in = owner;
	pool__kill_instance(in, 503, "stopped after its preStop hook");
}

/* Stops an idle instance; a custom runtime with a preStop hook first gets
 * GET /pre-stop (it takes no requests meanwhile). */
static void stop_idle(struct instance *in, const char *why)
{
	if (in->stopping)
		return;
	if (in->custom && custom_pre_stop(in->custom)) {
		in->stopping = true;
		return;
	}
	pool__kill_instance(in, 503, why);
}

static const struct custom_hooks custom_hooks = {
	.stopped = custom_stopped,
	.stream = custom_stream,
	.ready = custom_ready,
	.init_failed = custom_init_failed,
	.response = custom_response,
	.frozen = custom_frozen,
};

/* The server's process exited (pidfd readable): as a native channel's EOF. */
static void on_custom_exit(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct instance *in = container_of(op, struct instance, recv_op);
	(void)cqe;
	in->recv_armed = false;
	in->ops--;
	if (in->state == I_DEAD) {
		pool__maybe_free(in);
		return;
	}
	char why[160];
	if (in->snapshotting) /* criu stops the process it dumped */
		pool__kill_instance(in, 503, "checkpointed");
	else
		pool__kill_instance(in, 502, describe_exit(in, why, sizeof(why)));
}

/* A custom runtime's instance: watch its exit, open its network namespace
 * and start talking HTTP to it. */
static void custom_watch(struct instance *in)
{
	struct io_uring_sqe *sqe = shard_sqe(in->pool->sh);
	io_uring_prep_poll_add(sqe, in->proc.pidfd, POLLIN);
	in->recv_op.cb = on_custom_exit;
	loop_op_prep(sqe, &in->recv_op);
	in->recv_armed = true;
	in->ops++;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)in->proc.pid);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "cannot open the instance's network namespace: %s",
			 strerror(errno));
		on_init_failed(in, msg, strlen(msg));
		return;
	}
	in->custom = custom_new(in->pool->sh, &in->pool->fn->cfg, ns, in->restored, &custom_hooks, in);
}

/* --- ending ------------------------------------------------------------- */

void pool__kill_instance(struct instance *in, int status, const char *why)
{
	if (in->state == I_DEAD)
		return;
	struct pool *p = in->pool;
	int before = pool__category(in);
	if (in->state == I_STARTING)
		p->n_starting--;
	else
		p->n_ready--;
	p->n_live--;
	if (in->spare)
		p->n_spares--;
	in->state = I_DEAD;
	pool__gauge_move(in, before);
	timer_cancel(&p->sh->timers, &in->init_timer);
	timer_cancel(&p->sh->timers, &in->exit_timer);
	custom_free(in->custom); /* its connections close; no more hooks */
	in->custom = NULL;
	for (struct instance **pp = &p->instances; *pp; pp = &(*pp)->next)
		if (*pp == in) {
			*pp = in->next;
			break;
		}
	pool__account(p);
	if (in->proc.pid > 0)
		kill(in->proc.pid, SIGKILL);
	/* only this instance's own requests fail */
	for (unsigned i = 0; i < p->fn->cfg.instance_concurrency; i++) {
		struct invocation *inv = in->slots[i].inv;
		if (!inv)
			continue;
		in->slots[i].inv = NULL;
		inv->inst = NULL;
		timer_cancel(&p->sh->timers, &inv->deadline);
		invocation_fail(inv, status, "function %s: %s", p->fn->cfg.name, why);
	}
	if (status == 503)
		pr_info("%s: instance pid %d stopped: %s", p->fn->cfg.name, in->proc.pid, why);
	else
		pr_warn("%s: instance pid %d stopped: %s", p->fn->cfg.name, in->proc.pid, why);
	/* the recv and log reads complete with EOF now; the last one frees in */
	unsigned keep = p->fn->cfg.scaling.min_instances ? p->fn->cfg.scaling.min_instances : 1;
	if (status != 503 && !p->sh->stopping && p->n_live < keep && !failed_recently(p))
		pool__start_instance(p); /* replace a crashed or recycled instance */
	pool__scale_up(p);
	pool__drain_queue(p);
}

/* Publishes this pool's share of the function's autoscaler gauges. */
static void show_scaling(struct pool *p, unsigned desired, bool panic)
{
	struct fn_metrics *m = &p->fn->metrics;
	atomic_fetch_add(&m->desired, (int)desired - (int)p->desired_shown);
	atomic_fetch_add(&m->panic, (int)panic - (int)p->panic_shown);
	p->desired_shown = desired;
	p->panic_shown = panic;
}

/* Publishes the memory of the live instances that have a memory group
 * (their groups' usage, one pread each: cgroup files answer from the
 * kernel's counters, nothing waits) and how many were measured; one
 * without a group is unknown, not 0. */
static void measure_memory(struct pool *p)
{
	uint64_t bytes = 0;
	int n = 0;
	for (struct instance *in = p->instances; in; in = in->next) {
		if (in->state == I_DEAD || !in->cgroups.mem[0])
			continue;
		if (in->mem_fd < 0)
			in->mem_fd = reslimit_memory_open(&in->cgroups);
		int64_t v = in->mem_fd >= 0 ? reslimit_memory_read(in->mem_fd) : in->mem_fd;
		if (v < 0)
			continue;
		bytes += (uint64_t)v;
		n++;
	}
	struct fn_metrics *m = &p->fn->metrics;
	atomic_store_explicit(&m->mem_bytes, bytes, memory_order_relaxed);
	atomic_store_explicit(&m->mem_instances, n, memory_order_relaxed);
}

/* A removed function's pool: idle instances stop now, busy ones when done;
 * the queue fails (nothing new starts). */
static void tick_removed(struct pool *p)
{
	struct instance *in = p->instances, *next;
	for (; in; in = next) {
		next = in->next;
		if (in->state == I_READY && !in->inflight && !in->snapshotting)
			stop_idle(in, "function removed");
	}
	pool__scale_up(p); /* with nothing live, fails what is queued */
	show_scaling(p, 0, false);
	measure_memory(p);
	lifecycle_removed_gc(p->fn);
}

void pool_tick(struct pool *p, int64_t now)
{
	struct config_scaling *s = &p->fn->cfg.scaling;
	if (function_removed(p->fn)) {
		tick_removed(p);
		return;
	}
	if (p->q_len && !p->n_live && now - p->last_fail_ns >= RETRY_AFTER_FAIL_NS)
		pool__scale_up(p);
	pool__retry_snapshot(p, now);
	measure_memory(p);
	pool__account(p);
	double concurrency = now > p->tick_at ? p->load_area / (double)(now - p->tick_at) : 0;
	p->load_area = 0;
	p->tick_at = now;
	unsigned ready_spares = 0;
	for (struct instance *in = p->instances; in; in = in->next)
		ready_spares += in->spare && in->state == I_READY;
	unsigned want = autoscale_tick(&p->as, s, concurrency, p->n_ready - ready_spares, now);
	show_scaling(p, want, p->as.panic);
	/* out: restores (or cold starts) up to what the load asks for; spares
	 * are kept apart (pool__keep_spares) */
	while (!p->sh->stopping && p->n_live - p->n_spares < want && pool__start_instance(p))
		;
	/* in: idle instances beyond it; the last one only after the grace period */
	int64_t grace = (int64_t)s->scale_to_zero_grace_s * 1000000000;
	struct instance *in = p->instances, *next;
	unsigned live = p->n_live - p->n_spares; /* serving, not yet stopping */
	for (struct instance *i = p->instances; i; i = i->next)
		live -= i->stopping && !i->spare;
	for (; in && !p->q_len; in = next) {
		next = in->next;
		if (live <= want || (live == 1 && now - p->last_request_ns <= grace))
			break;
		if (in->state == I_READY && !in->spare && !in->inflight && !in->snapshotting &&
		    !in->stopping && now - in->idle_since_ns > 1000000000) {
			stop_idle(in, "scaled in");
			live--;
		}
	}
	pool__keep_spares(p);
}

void pool_free(struct pool *p)
{
	autoscale_fini(&p->as);
	free(p);
}

void pool_shutdown(struct pool *p)
{
	show_scaling(p, 0, false);
	while (p->q_head) {
		struct invocation *inv = p->q_head;
		dequeue(p, inv);
		timer_cancel(&p->sh->timers, &inv->deadline);
		invocation_fail(inv, 503, "daemon shutting down");
	}
	while (p->instances)
		pool__kill_instance(p->instances, 503, "daemon shutting down");
}
