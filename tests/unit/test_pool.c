/* The pool (daemon/pool.c, #included to reach its statics) with fake
 * invocations and fake instances: instances made here, ready, whose channel
 * is a socketpair nobody reads (the loop's ring never runs: the frames the
 * pool sends stay in the instance's buffers, where the test reads them), and
 * answers handed to the pool as if read from the channel. No process, no
 * loop thread: queueing, placement, the queue bound, deadlines, cancels,
 * spares and bad answers, each checked by what every invocation is
 * answered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../daemon/pool.c"

#include "common/fsutil.h"

#include <sys/socket.h>

static struct shard *sh;
static struct function *fn;
/* the fake instances of a case and their channels' far ends */
static struct instance *fakes[8];
static int far_ends[8];
static unsigned n_fakes;

/* What each fake invocation was answered: status and body. */
struct answer {
	int status;
	char body[256];
	bool done;
};

static void on_done(struct invocation *inv, const char *payload, size_t len)
{
	struct answer *a = inv->ctx;
	struct channel_response r;
	if (!a)
		return;
	assert_int_equal(channel_decode_response(payload, len, &r), 0);
	a->status = (int)r.status;
	snprintf(a->body, sizeof(a->body), "%.*s", (int)r.body_len, r.body);
	a->done = true;
}

/* A request for fn, deadline secs from now, answered into a. */
static struct invocation *request(struct answer *a, double secs)
{
	struct invocation *inv = invocation_new(sh, fn, on_done, a);
	inv->start_ns = now_ns();
	inv->deadline_ns = inv->start_ns + (int64_t)(secs * 1e9);
	snprintf(inv->request_id, sizeof(inv->request_id), "req");
	struct channel_kv h = { "x-fc-request-id", "req" };
	channel_put_request(&inv->frame, 0, "POST", "/", 1, "", 0, "req", 0, &h, 1, "x", 1);
	*a = (struct answer){ 0 };
	return inv;
}

/* A ready instance of fn's pool, its channel a socketpair end. */
static struct instance *fake_instance(void)
{
	struct pool *p = pool_of(fn);
	struct instance *in = xcalloc(1, sizeof(*in));
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_true(n_fakes < 8);
	fakes[n_fakes] = in;
	far_ends[n_fakes++] = sv[1];
	in->pool = p;
	in->slots = xcalloc(fn->cfg.instance_concurrency, sizeof(*in->slots));
	in->proc = (struct instance_proc){ .pid = 0, .pidfd = -1, .channel_fd = sv[0], .log_fd = -1 };
	in->mem_fd = -1;
	pool__init_ops(in);
	in->state = I_READY;
	in->next = p->instances;
	p->instances = in;
	p->n_live++;
	p->n_ready++;
	sh->n_instances++;
	pool__gauge_move(in, -1);
	return in;
}

/* The ids of the requests sent to in so far (frames in its buffers). */
static unsigned sent_ids(struct instance *in, uint64_t *ids, unsigned max)
{
	unsigned n = 0;
	const struct buf *bufs[] = { &in->out, &in->pending };
	for (unsigned b = 0; b < 2; b++) {
		size_t off = 0;
		while (off < bufs[b]->len && n < max) {
			struct channel_hdr h;
			memcpy(&h, bufs[b]->data + off, sizeof(h));
			assert_int_equal(h.type, CH_REQUEST);
			ids[n++] = h.id;
			off += sizeof(h) + h.len;
		}
	}
	return n;
}

/* The instance answers request id with status and body. */
static void respond(struct instance *in, uint64_t id, int status, const char *body)
{
	struct buf f = { 0 };
	channel_put_response(&f, id, (uint32_t)status, NULL, 0, body, strlen(body));
	on_response(in, id, f.data + sizeof(struct channel_hdr), f.len - sizeof(struct channel_hdr));
	buf_free(&f);
}

/* The send in flight completes whole, as the loop would report it. */
static void sent(struct instance *in)
{
	struct io_uring_cqe cqe = { .res = (int)(in->out.len - in->out_sent) };
	if (in->send_inflight)
		on_send(&in->send_op, &cqe);
}

/* Ends the case: every instance killed, and freed as the loop would once
 * its operations completed (these have none in flight). */
static void kill_all(void)
{
	struct pool *p = pool_of(fn);
	while (p->instances)
		pool__kill_instance(p->instances, 503, "test over");
	for (unsigned i = 0; i < n_fakes; i++) {
		struct io_uring_cqe cqe = { .res = -ECANCELED };
		if (fakes[i]->send_inflight) /* completes after the kill: the last op frees it */
			on_send(&fakes[i]->send_op, &cqe);
		else
			pool__maybe_free(fakes[i]);
		close(far_ends[i]);
	}
	n_fakes = 0;
}

static void test_queue_then_place_in_order(void **state)
{
	(void)state;
	struct instance *a = fake_instance(), *b = fake_instance();
	struct answer r[3];
	struct invocation *inv[3];
	for (int i = 0; i < 3; i++)
		pool_submit(inv[i] = request(&r[i], 10));
	struct pool *p = pool_of(fn);
	assert_int_equal(p->q_len, 1); /* two instances, one slot each */
	uint64_t ids[4];
	assert_int_equal(sent_ids(a, ids, 4), 1);
	uint64_t a_first = ids[0];
	assert_int_equal(sent_ids(b, ids, 4), 1);
	sent(a);
	respond(a, a_first, 200, "one");
	assert_true(r[0].done || r[1].done);
	assert_int_equal(p->q_len, 0); /* the queued one went to a at once */
	assert_int_equal(sent_ids(a, ids, 4), 1);
	respond(a, ids[0], 201, "three");
	assert_true(r[2].done);
	assert_int_equal(r[2].status, 201);
	assert_string_equal(r[2].body, "three");
	assert_false(r[0].done && r[1].done);
	uint64_t bid;
	sent_ids(b, &bid, 1);
	respond(b, bid, 200, "two");
	assert_true(r[0].done && r[1].done);
	kill_all();
}

static void test_queue_bound_answers_429(void **state)
{
	(void)state;
	fake_instance();
	fn->cfg.scaling.max_queue = 1;
	struct answer r[3];
	for (int i = 0; i < 3; i++)
		pool_submit(request(&r[i], 10));
	assert_false(r[0].done); /* running */
	assert_false(r[1].done); /* queued */
	assert_true(r[2].done);
	assert_int_equal(r[2].status, 429);
	assert_non_null(strstr(r[2].body, "busy"));
	fn->cfg.scaling.max_queue = 100;
	kill_all(); /* the running one fails with its instance, the queued one with the pool */
	assert_true(r[0].done && r[0].status == 503);
}

static void test_deadline_leaves_the_queue_or_recycles(void **state)
{
	(void)state;
	struct instance *a = fake_instance();
	struct answer run, queued;
	pool_submit(request(&run, 0.05));
	pool_submit(request(&queued, 0.01));
	struct pool *p = pool_of(fn);
	assert_int_equal(p->q_len, 1);
	timer_run(&sh->timers, now_ns() + 20000000); /* 20 ms on: the queued one is late */
	assert_true(queued.done);
	assert_int_equal(queued.status, 504);
	assert_int_equal(p->q_len, 0);
	assert_false(run.done);
	assert_int_equal(a->state, I_READY);
	timer_run(&sh->timers, now_ns() + 100000000); /* the running one is late: recycled */
	assert_true(run.done);
	assert_int_equal(run.status, 504);
	assert_int_equal(a->state, I_DEAD);
	kill_all();
}

static void test_cancel_answers_499_and_drops_the_late_answer(void **state)
{
	(void)state;
	struct instance *a = fake_instance();
	struct answer run, queued;
	struct invocation *i1 = request(&run, 10), *i2 = request(&queued, 10);
	pool_submit(i1);
	pool_submit(i2);
	uint64_t id;
	sent_ids(a, &id, 1);
	i2->ctx = NULL; /* the client went away: its answer finds nobody */
	invocation_cancel(i2);
	assert_int_equal(pool_of(fn)->q_len, 0);
	i1->ctx = NULL;
	invocation_cancel(i1);
	assert_null(a->slots[0].inv); /* the slot forgets it */
	sent(a);
	respond(a, id, 200, "late"); /* dropped: nobody waits */
	assert_false(run.done || queued.done);
	assert_int_equal(a->inflight, 0);
	assert_int_equal(a->state, I_READY);
	kill_all();
}

static void test_a_spare_is_taken_when_serving_ones_are_busy(void **state)
{
	(void)state;
	struct instance *a = fake_instance(), *s = fake_instance();
	struct pool *p = pool_of(fn);
	atomic_store(&fn->snap_state, SNAP_READY); /* spares are restores */
	fn->cfg.scaling.spare_instances = 1;
	int before = pool__category(s);
	s->spare = true;
	p->n_spares++;
	pool__gauge_move(s, before);
	uint64_t taken = atomic_load(&fn->metrics.spares_taken);
	struct answer r1, r2;
	pool_submit(request(&r1, 10));
	uint64_t ids[2];
	assert_int_equal(sent_ids(a, ids, 2), 1); /* the serving one first */
	assert_true(s->spare);
	pool_submit(request(&r2, 10));
	assert_false(s->spare); /* the spare serves now */
	assert_int_equal(sent_ids(s, ids, 2), 1);
	assert_int_equal(atomic_load(&fn->metrics.spares_taken), taken + 1);
	/* the next spare is restored once it answered, not while it serves
	 * (this pool starts nothing: fn->broken; test_spares sees the start) */
	assert_true(s->refill_spares);
	respond(s, ids[0], 200, "from the spare");
	assert_true(r2.done);
	assert_false(s->refill_spares);
	atomic_store(&fn->snap_state, SNAP_OFF);
	kill_all();
}

static void test_a_bad_answer_is_502_and_recycles(void **state)
{
	(void)state;
	struct instance *a = fake_instance();
	struct answer r;
	pool_submit(request(&r, 10));
	uint64_t id;
	sent_ids(a, &id, 1);
	on_response(a, id, "\x01\x02", 2); /* not a CH_RESPONSE payload */
	assert_true(r.done);
	assert_int_equal(r.status, 502);
	assert_int_equal(a->state, I_DEAD);
	struct answer r2;
	struct instance *b = fake_instance();
	pool_submit(request(&r2, 10));
	sent_ids(b, &id, 1);
	on_response(b, id + 1000, "x", 1); /* an id it was never sent */
	assert_true(r2.done && r2.status == 502);
	kill_all();
}

static int setup(void **state)
{
	(void)state;
	server_options_default(&server.opt);
	server.opt.access_log = false;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sh = xcalloc(1, sizeof(*sh));
	assert_int_equal(shard_init(sh, 0, lfd), 0);
	shard_self = sh;
	server.shards[0] = sh;
	server.n_shards = 1;
	struct config cfg;
	config_defaults(&cfg);
	cfg.name = xstrdup("fn");
	cfg.handler = xstrdup("/nonexistent/handler.so");
	cfg.dir = xstrdup("/nonexistent");
	cfg.snapshot = false;
	cfg.scaling.max_instances = 1000;
	assert_int_equal(registry_add(&cfg, NULL, 0, NULL, &fn), 0);
	fn->broken = true; /* the pool never starts an instance itself */
	atomic_store(&fn->state, FN_READY);
	return jobs_start(1); /* freed instances are reaped by a job */
}

static int teardown(void **state)
{
	(void)state;
	jobs_stop();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_then_place_in_order),
		cmocka_unit_test(test_queue_bound_answers_429),
		cmocka_unit_test(test_deadline_leaves_the_queue_or_recycles),
		cmocka_unit_test(test_cancel_answers_499_and_drops_the_late_answer),
		cmocka_unit_test(test_a_spare_is_taken_when_serving_ones_are_busy),
		cmocka_unit_test(test_a_bad_answer_is_502_and_recycles),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
