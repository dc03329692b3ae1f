#define LOG_PREFIX "pool: "
#include "pool.h"
#include "pool_internal.h"
#include "channel.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "reslimit.h"

#include <errno.h>
#include <math.h>
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


struct pool *pool_get(struct shard *sh, struct function *fn)
{
	struct pool *p = sh->pools[fn->index];
	if (!p) {
		p = xcalloc(1, sizeof(*p));
		p->sh = sh;
		p->fn = fn;
		p->load_at = p->tick_at = p->last_request_ns = now_ns();
		autoscale_init(&p->as, &fn->cfg.scaling);
		sh->pools[fn->index] = p;
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
		return in->inflight ? INST_BUSY : INST_IDLE;
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
	io_uring_sqe_set_data64(sqe, OP_DATA(in, OP_INST_RECV));
	in->recv_armed = true;
	in->ops++;
}

static void arm_log(struct instance *in)
{
	struct io_uring_sqe *sqe = shard_sqe(in->pool->sh);
	io_uring_prep_read(sqe, in->proc.log_fd, in->log + in->log_len,
			   sizeof(in->log) - in->log_len, 0);
	io_uring_sqe_set_data64(sqe, OP_DATA(in, OP_INST_LOG));
	in->log_armed = true;
	in->ops++;
}

static void arm_send(struct instance *in)
{
	struct io_uring_sqe *sqe = shard_sqe(in->pool->sh);
	io_uring_prep_send(sqe, in->proc.channel_fd, in->out.data + in->out_sent,
			   in->out.len - in->out_sent, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, OP_DATA(in, OP_INST_SEND));
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

void pool__maybe_free(struct instance *in)
{
	if (in->state != I_DEAD || in->ops)
		return;
	instance_destroy(&in->proc);
	reslimit_release(&in->cgroups);
	buf_free(&in->in);
	buf_free(&in->out);
	buf_free(&in->pending);
	free(in->slots);
	in->pool->sh->n_instances--;
	free(in);
}

/* --- starting ----------------------------------------------------------- */

static void init_timeout(struct timer *t)
{
	struct instance *in = (struct instance *)((char *)t - offsetof(struct instance, init_timer));
	char msg[128];
	snprintf(msg, sizeof(msg), "init did not finish in %u s", server.opt.init_timeout_s);
	function_set_failed(in->pool->fn, msg);
	in->pool->last_fail_ns = now_ns();
	pool__kill_instance(in, 503, msg);
}

void pool__watch_instance(struct instance *in)
{
	arm_recv(in);
	arm_log(in);
	timer_set(&in->pool->sh->timers, &in->init_timer,
		  now_ns() + (int64_t)server.opt.init_timeout_s * 1000000000, init_timeout);
}

void pool_warm(struct pool *p)
{
	if (p->n_live == 0)
		pool__start_instance(p);
}

static void on_ready(struct instance *in, const char *payload, size_t len)
{
	struct pool *p = in->pool;
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
			"criu %.1f, back to loop %.1f, on_restore and channel %.2f",
			p->fn->cfg.name, in->id, in->proc.pid, (double)took / 1e6,
			(double)(in->job_start_ns - in->started_ns) / 1e6, in->verify_ms, in->criu_ms,
			(double)(in->restored_ns - in->job_end_ns) / 1e6,
			(double)(now_ns() - in->restored_ns) / 1e6);
	else
		pr_info("%s: instance %s (pid %d) ready in %.1f ms", p->fn->cfg.name, in->id,
			in->proc.pid, (double)took / 1e6);
	if (pool__take_snapshot(in))
		return; /* ready once a copy of the snapshot serves */
	function_mark_ready(p->fn);
	pool__drain_queue(p);
}

static void on_init_failed(struct instance *in, const char *payload, size_t len)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "init failed: %.*s", (int)len, payload);
	pr_err("%s: %s", in->pool->fn->cfg.name, msg);
	function_set_failed(in->pool->fn, msg);
	in->pool->last_fail_ns = now_ns();
	pool__kill_instance(in, 503, msg);
}

/* --- requests ----------------------------------------------------------- */

/* Headers the handler does not get: hop-by-hop ones, the admin token
 * (X-Thaw-Token always, Authorization when it was the function's
 * credential), which would hand a sandboxed handler the admin API, and the
 * platform's x-fc-* (the request id is added back with the daemon's value). */
static bool not_forwarded(const char *name, size_t len, bool auth_function)
{
	static const char *const skip[] = { "connection", "keep-alive", "transfer-encoding",
					    "upgrade", "te", "expect", "content-length",
					    "x-thaw-token" };
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (strlen(skip[i]) == len && strncasecmp(name, skip[i], len) == 0)
			return true;
	if (auth_function && len == 13 && strncasecmp(name, "authorization", 13) == 0)
		return true;
	return len > 5 && strncasecmp(name, "x-fc-", 5) == 0;
}

static int64_t realtime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_on(struct instance *in, struct conn *c)
{
	unsigned slot = 0;
	while (in->slots[slot].id)
		slot++;
	int before = pool__category(in);
	uint64_t id = ++in->next_id;
	in->slots[slot] = (struct inst_slot){ .id = id, .conn = c };
	in->inflight++;
	pool__gauge_move(in, before);
	c->inst = in;
	c->slot = slot;
	pool__account(in->pool);
	/* header views are not NUL-terminated: copy names and values once */
	struct http_req *r = &c->req;
	struct buf hb = { 0 };
	struct channel_kv kv[HTTP_MAX_HEADERS + 1];
	size_t offs[HTTP_MAX_HEADERS][2];
	uint32_t n = 0;
	bool auth_function = !strcmp(in->pool->fn->cfg.auth_type, "function");
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		if (not_forwarded(http_span_ptr(r, h->name), h->name.len, auth_function))
			continue;
		offs[n][0] = hb.len;
		buf_append(&hb, http_span_ptr(r, h->name), h->name.len);
		buf_append(&hb, "", 1);
		offs[n][1] = hb.len;
		buf_append(&hb, http_span_ptr(r, h->value), h->value.len);
		buf_append(&hb, "", 1);
		n++;
	}
	for (uint32_t i = 0; i < n; i++)
		kv[i] = (struct channel_kv){ hb.data + offs[i][0], hb.data + offs[i][1] };
	/* the id the daemon uses (and answers with), not one it refused */
	kv[n++] = (struct channel_kv){ "x-fc-request-id", c->request_id };
	const char *url = http_span_ptr(r, r->url);
	const char *q = memchr(url, '?', r->url.len);
	size_t qlen = q ? r->url.len - (size_t)(q - url) - 1 : 0;
	int64_t left_ms = (c->deadline.at_ns - now_ns()) / 1000000;
	channel_put_request(&in->pending, id, http_req_method(r), c->sub, c->sub_len,
			    q ? q + 1 : "", qlen, c->request_id, realtime_ms() + left_ms, kv, n,
			    r->body.data ? r->body.data : "", r->body.len);
	buf_free(&hb);
	pool__flush(in);
}

static struct instance *free_instance(struct pool *p)
{
	struct instance *best = NULL;
	for (struct instance *in = p->instances; in; in = in->next)
		if (in->state == I_READY && !in->snapshotting &&
		    in->inflight < p->fn->cfg.instance_concurrency &&
		    (!best || in->inflight < best->inflight))
			best = in;
	return best;
}

static void enqueue(struct pool *p, struct conn *c)
{
	c->qnext = NULL;
	c->qprev = p->q_tail;
	if (p->q_tail)
		p->q_tail->qnext = c;
	else
		p->q_head = c;
	p->q_tail = c;
	c->queued = true;
	p->q_len++;
	atomic_fetch_add(&p->fn->metrics.queue_depth, 1);
	pool__account(p);
}

static void dequeue(struct pool *p, struct conn *c)
{
	if (c->qprev)
		c->qprev->qnext = c->qnext;
	else
		p->q_head = c->qnext;
	if (c->qnext)
		c->qnext->qprev = c->qprev;
	else
		p->q_tail = c->qprev;
	c->queued = false;
	p->q_len--;
	atomic_fetch_sub(&p->fn->metrics.queue_depth, 1);
	pool__account(p);
}

void pool__drain_queue(struct pool *p)
{
	struct instance *in;
	while (p->q_head && (in = free_instance(p))) {
		struct conn *c = p->q_head;
		dequeue(p, c);
		run_on(in, c);
	}
}

static void deadline_fired(struct timer *t)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, deadline));
	pool_cancel(c, true);
}

/* Seconds from an X-Timeout header ("2.5", "2.5s", "300ms"), or -1. */
static double header_timeout(struct http_req *r)
{
	struct http_span v;
	if (!http_req_header(r, "x-timeout", &v) || v.len == 0 || v.len > 31)
		return -1;
	char s[32];
	memcpy(s, http_span_ptr(r, v), v.len);
	s[v.len] = '\0';
	char *end;
	double x = strtod(s, &end);
	if (end == s || !isfinite(x) || x <= 0)
		return -1;
	if (strcmp(end, "ms") == 0)
		return x / 1000;
	return (*end == '\0' || strcmp(end, "s") == 0) ? x : -1;
}

/* Failed a moment ago (starts wait RETRY_AFTER_FAIL_NS), or never starts. */
static bool failed_recently(struct pool *p)
{
	return p->fn->broken || (atomic_load(&p->fn->state) == FN_FAILED &&
				 now_ns() - p->last_fail_ns < RETRY_AFTER_FAIL_NS);
}

void pool_submit(struct pool *p, struct conn *c)
{
	struct function *fn = p->fn;
	p->last_request_ns = c->start_ns;
	double secs = fn->cfg.timeout_s, h = header_timeout(&c->req);
	if (h > 0 && h < secs)
		secs = h;
	timer_set(&p->sh->timers, &c->deadline, c->start_ns + (int64_t)(secs * 1e9), deadline_fired);
	struct instance *in = free_instance(p);
	if (in) {
		run_on(in, c);
		return;
	}
	if (p->n_ready == 0 && failed_recently(p)) {
		char msg[512];
		function_error(fn, msg, sizeof(msg));
		conn_respond_error(c, 503, "function %s is unavailable: %s", fn->cfg.name, msg);
		return;
	}
	if (p->q_len >= fn->cfg.scaling.max_queue) {
		conn_respond_error(c, 429, "function %s is busy: %u requests queued", fn->cfg.name,
				   p->q_len);
		return;
	}
	enqueue(p, c);
	pool__scale_up(p);
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
			struct conn *c = p->q_head;
			char msg[512];
			dequeue(p, c);
			function_error(p->fn, msg, sizeof(msg));
			conn_respond_error(c, 503, "function %s is unavailable: %s",
					   p->fn->cfg.name, msg);
		}
}

void pool_cancel(struct conn *c, bool deadline)
{
	struct function *fn = c->fn;
	struct pool *p = fn ? c->sh->pools[fn->index] : NULL;
	if (!p)
		return;
	timer_cancel(&c->sh->timers, &c->deadline);
	if (!deadline && (c->queued || c->inst))
		atomic_fetch_add_explicit(&fn->metrics.cancelled, 1, memory_order_relaxed);
	if (c->queued)
		dequeue(p, c);
	struct instance *in = c->inst;
	if (in) {
		in->slots[c->slot].conn = NULL;
		c->inst = NULL;
		/* the client went away: the handler may stop (a deadline
		 * recycles the instance below instead) */
		if (!deadline)
			instance_cancel(&in->proc, in->slots[c->slot].id);
	}
	if (!deadline)
		return;
	conn_respond_error(c, 504, "function %s did not answer within its deadline", fn->cfg.name);
	if (in) /* the handler is stuck on it: recycle the instance */
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
	struct conn *c = in->slots[i].conn;
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
		pool__start_dump(in);
		return;
	}
	struct channel_response r;
	if (channel_decode_response(payload, len, &r) < 0) {
		if (c) {
			c->inst = NULL;
			conn_respond_error(c, 502, "instance sent a malformed response");
		}
		pool__kill_instance(in, 502, "instance sent a malformed response");
		return;
	}
	if (c) {
		c->inst = NULL;
		conn_respond_channel(c, &r);
	}
	pool__drain_queue(in->pool);
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
	/* the channel closes a moment before the process turns zombie */
	for (int i = 0; i < 20 && !si.si_pid; i++)
		if (waitid(P_PID, (id_t)in->proc.pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
		    (!si.si_pid && usleep(250)))
			break;
	if (si.si_pid) {
		if (si.si_code == CLD_EXITED)
			snprintf(buf, len, "instance exited with status %d", si.si_status);
		else
			snprintf(buf, len, "instance killed by signal %s", strsignal(si.si_status));
		return buf;
	}
	return "instance closed its channel";
}

void instance_on_recv(struct instance *in, int res)
{
	in->recv_armed = false;
	in->ops--;
	if (in->state == I_DEAD) {
		pool__maybe_free(in);
		return;
	}
	if (res <= 0) {
		char why[160];
		if (in->snapshotting) /* criu stops the process it dumped */
			pool__kill_instance(in, 503, "checkpointed");
		else
			pool__kill_instance(in, 502, describe_exit(in, why, sizeof(why)));
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
	arm_recv(in);
}

void instance_on_send(struct instance *in, int res)
{
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

void instance_on_log(struct instance *in, int res)
{
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
	in->state = I_DEAD;
	pool__gauge_move(in, before);
	timer_cancel(&p->sh->timers, &in->init_timer);
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
		struct conn *c = in->slots[i].conn;
		if (!c)
			continue;
		in->slots[i].conn = NULL;
		c->inst = NULL;
		conn_respond_error(c, status, "function %s: %s", p->fn->cfg.name, why);
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

/* A removed function's pool: idle instances stop now, busy ones when done;
 * the queue fails (nothing new starts). */
static void tick_removed(struct pool *p)
{
	struct instance *in = p->instances, *next;
	for (; in; in = next) {
		next = in->next;
		if (in->state == I_READY && !in->inflight && !in->snapshotting)
			pool__kill_instance(in, 503, "function removed");
	}
	pool__scale_up(p); /* with nothing live, fails what is queued */
	show_scaling(p, 0, false);
	function_removed_gc(p->fn);
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
	pool__account(p);
	double concurrency = now > p->tick_at ? p->load_area / (double)(now - p->tick_at) : 0;
	p->load_area = 0;
	p->tick_at = now;
	unsigned want = autoscale_tick(&p->as, s, concurrency, p->n_ready, now);
	show_scaling(p, want, p->as.panic);
	/* out: restores (or cold starts) up to what the load asks for */
	while (!p->sh->stopping && p->n_live < want && pool__start_instance(p))
		;
	/* in: idle instances beyond it; the last one only after the grace period */
	int64_t grace = (int64_t)s->scale_to_zero_grace_s * 1000000000;
	struct instance *in = p->instances, *next;
	for (; in && !p->q_len; in = next) {
		next = in->next;
		if (p->n_live <= want || (p->n_live == 1 && now - p->last_request_ns <= grace))
			break;
		if (in->state == I_READY && !in->inflight && !in->snapshotting &&
		    now - in->idle_since_ns > 1000000000)
			pool__kill_instance(in, 503, "scaled in");
	}
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
		struct conn *c = p->q_head;
		dequeue(p, c);
		conn_respond_error(c, 503, "daemon shutting down");
	}
	while (p->instances)
		pool__kill_instance(p->instances, 503, "daemon shutting down");
}
