/* Unit tests for common/timer.c: the deadline min-heap. Random deadlines
 * come from a fixed-seed generator, so a failure reproduces. After every
 * operation the heap property and the idx back-pointers are checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/timer.h"

#define N 1000

struct item {
	struct timer t;
	int id;
	int fired;
	int64_t fired_at; /* the deadline it had when it fired */
};

#define ITEM(tp) ((struct item *)((char *)(tp) - offsetof(struct item, t)))

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* Fired order, for the tests that look at it. */
static struct item *order[4 * N];
static unsigned n_order;

static void record(struct timer *t)
{
	struct item *it = ITEM(t);
	assert_int_equal(t->idx, 0); /* disarmed before its fn runs */
	it->fired++;
	it->fired_at = t->at_ns;
	assert_true(n_order < sizeof(order) / sizeof(order[0]));
	order[n_order++] = it;
}

static void check_heap(const struct timer_heap *h)
{
	assert_true(h->n <= h->cap);
	for (unsigned i = 1; i <= h->n; i++) {
		assert_int_equal(h->v[i - 1]->idx, i);
		if (i > 1)
			assert_true(h->v[i / 2 - 1]->at_ns <= h->v[i - 1]->at_ns);
	}
	assert_int_equal(timer_next(h), h->n ? h->v[0]->at_ns : -1);
}

static int64_t min_armed(struct item *items, int n)
{
	int64_t m = -1;
	for (int i = 0; i < n; i++)
		if (items[i].t.idx && (m < 0 || items[i].t.at_ns < m))
			m = items[i].t.at_ns;
	return m;
}

static void setup_items(struct item *items, int n)
{
	memset(items, 0, sizeof(*items) * (size_t)n);
	for (int i = 0; i < n; i++)
		items[i].id = i;
	n_order = 0;
}

static void test_empty_heap(void **state)
{
	(void)state;
	struct timer_heap h = { 0 };
	assert_int_equal(timer_next(&h), -1);
	timer_run(&h, INT64_MAX); /* nothing to fire */
	struct item it = { 0 };
	timer_cancel(&h, &it.t); /* not armed: no-op */
	assert_int_equal(h.n, 0);
	timer_heap_free(&h);
	timer_heap_free(&h); /* twice is fine */
}

static void test_random_deadlines_fire_in_order(void **state)
{
	(void)state;
	static struct item items[N];
	struct timer_heap h = { 0 };
	setup_items(items, N);
	rng_state = 0x1234567887654321ull;
	for (int i = 0; i < N; i++) {
		/* small range: plenty of equal deadlines */
		timer_set(&h, &items[i].t, (int64_t)(rnd() % 500), record);
		assert_int_not_equal(items[i].t.idx, 0);
		check_heap(&h);
	}
	assert_int_equal(h.n, N);
	assert_int_equal(timer_next(&h), min_armed(items, N));
	timer_run(&h, INT64_MAX);
	assert_int_equal(h.n, 0);
	assert_int_equal(n_order, N);
	for (unsigned i = 0; i < n_order; i++) {
		assert_int_equal(order[i]->fired, 1);
		if (i)
			assert_true(order[i - 1]->fired_at <= order[i]->fired_at);
	}
	timer_heap_free(&h);
}

static void test_cancel_arbitrary_entries(void **state)
{
	(void)state;
	static struct item items[N];
	static bool cancelled[N];
	struct timer_heap h = { 0 };
	setup_items(items, N);
	memset(cancelled, 0, sizeof(cancelled));
	rng_state = 0xdeadbeefcafef00dull;
	for (int i = 0; i < N; i++)
		timer_set(&h, &items[i].t, (int64_t)(rnd() % 100000), record);
	/* cancel a random half, in random order, including the root and the last slot */
	timer_cancel(&h, h.v[0]);
	timer_cancel(&h, h.v[h.n - 1]);
	for (int k = 0; k < N / 2; k++)
		timer_cancel(&h, &items[rnd() % N].t);
	for (int i = 0; i < N; i++)
		cancelled[i] = items[i].t.idx == 0;
	check_heap(&h);
	unsigned armed = 0;
	for (int i = 0; i < N; i++)
		armed += !cancelled[i];
	assert_int_equal(h.n, armed);
	assert_int_equal(timer_next(&h), min_armed(items, N));
	/* cancelling again is a no-op */
	for (int i = 0; i < N; i++)
		if (cancelled[i])
			timer_cancel(&h, &items[i].t);
	assert_int_equal(h.n, armed);
	/* cancel one by one, checking the heap each time */
	for (int k = 0; k < 50; k++) {
		int i = (int)(rnd() % N);
		if (!cancelled[i]) {
			timer_cancel(&h, &items[i].t);
			cancelled[i] = true;
			armed--;
			check_heap(&h);
			assert_int_equal(timer_next(&h), min_armed(items, N));
		}
	}
	timer_run(&h, INT64_MAX);
	assert_int_equal(n_order, armed);
	for (int i = 0; i < N; i++)
		assert_int_equal(items[i].fired, cancelled[i] ? 0 : 1);
	for (unsigned i = 1; i < n_order; i++)
		assert_true(order[i - 1]->fired_at <= order[i]->fired_at);
	timer_heap_free(&h);
}

static void test_rearm_moves_the_timer(void **state)
{
	(void)state;
	static struct item items[N];
	struct timer_heap h = { 0 };
	setup_items(items, N);
	rng_state = 0x0badc0ffee0ddf00ull;
	for (int i = 0; i < N; i++)
		timer_set(&h, &items[i].t, 1000 + (int64_t)(rnd() % 100000), record);
	/* re-arm random entries earlier and later: count stays, order holds */
	for (int k = 0; k < 2 * N; k++) {
		int i = (int)(rnd() % N);
		timer_set(&h, &items[i].t, (int64_t)(rnd() % 200000), record);
		assert_int_equal(h.n, N);
	}
	check_heap(&h);
	/* the earliest, moved to the far future, is no longer first */
	struct item *first = ITEM(h.v[0]);
	timer_set(&h, &first->t, INT64_MAX - 1, record);
	check_heap(&h);
	assert_true(h.v[0] != &first->t);
	assert_int_equal(timer_next(&h), min_armed(items, N));
	/* and one moved before everything is */
	struct item *early = first == &items[7] ? &items[8] : &items[7];
	timer_set(&h, &early->t, -5, record);
	assert_ptr_equal(h.v[0], &early->t);
	assert_int_equal(timer_next(&h), -5);
	timer_run(&h, INT64_MAX);
	assert_int_equal(n_order, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(items[i].fired, 1);
	assert_ptr_equal(order[0], early);
	assert_ptr_equal(order[N - 1], first);
	timer_heap_free(&h);
}

static void test_run_fires_only_due(void **state)
{
	(void)state;
	static struct item items[5];
	static const int64_t at[5] = { 30, 10, 20, 10, 40 };
	struct timer_heap h = { 0 };
	setup_items(items, 5);
	for (int i = 0; i < 5; i++)
		timer_set(&h, &items[i].t, at[i], record);
	static const struct {
		int64_t now;
		unsigned fired_total;
		int64_t next;
	} steps[] = {
		{ 9, 0, 10 }, { 10, 2, 20 }, /* a deadline equal to now is due */
		{ 19, 2, 20 }, { 25, 3, 30 }, { 29, 3, 30 }, { 40, 5, -1 }, { 1000, 5, -1 },
	};
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		timer_run(&h, steps[s].now);
		assert_int_equal(n_order, steps[s].fired_total);
		assert_int_equal(timer_next(&h), steps[s].next);
		for (unsigned i = 0; i < n_order; i++)
			assert_true(order[i]->fired_at <= steps[s].now);
		for (int i = 0; i < 5; i++)
			if (!items[i].fired)
				assert_true(items[i].t.at_ns > steps[s].now);
		check_heap(&h);
	}
	for (int i = 0; i < 5; i++)
		assert_int_equal(items[i].fired, 1);
	timer_heap_free(&h);
}

/* A fired fn may re-arm itself for later and cancel others (a connection
 * closing cancels its other timers). */
static struct timer_heap *cb_heap;
static struct item cb_items[3];

static void rearm_later(struct timer *t)
{
	record(t);
	if (ITEM(t)->fired < 3)
		timer_set(cb_heap, t, t->at_ns + 100, rearm_later);
}

static void cancel_other(struct timer *t)
{
	record(t);
	timer_cancel(cb_heap, &cb_items[2].t);
}

static void test_fire_may_rearm_and_cancel(void **state)
{
	(void)state;
	struct timer_heap h = { 0 };
	cb_heap = &h;
	setup_items(cb_items, 3);
	timer_set(&h, &cb_items[0].t, 10, rearm_later);
	timer_set(&h, &cb_items[1].t, 20, cancel_other);
	timer_set(&h, &cb_items[2].t, 21, record); /* due, but cancelled first */
	timer_run(&h, 50);
	/* 0 fired once and is re-armed at 110; 1 fired and cancelled 2 */
	assert_int_equal(cb_items[0].fired, 1);
	assert_int_equal(cb_items[1].fired, 1);
	assert_int_equal(cb_items[2].fired, 0);
	assert_int_equal(cb_items[2].t.idx, 0);
	assert_int_equal(h.n, 1);
	assert_int_equal(timer_next(&h), 110);
	timer_run(&h, 10000);
	assert_int_equal(cb_items[0].fired, 3);
	assert_int_equal(cb_items[0].fired_at, 210);
	assert_int_equal(h.n, 0);
	timer_heap_free(&h);
}

static void test_heap_grows_past_initial_capacity(void **state)
{
	(void)state;
	static struct item items[5000];
	struct timer_heap h = { 0 };
	setup_items(items, 5000);
	for (int i = 0; i < 5000; i++)
		timer_set(&h, &items[i].t, 5000 - i, record);
	assert_true(h.cap >= 5000);
	check_heap(&h);
	assert_int_equal(timer_next(&h), 1);
	timer_run(&h, 2500);
	assert_int_equal(h.n, 2500);
	check_heap(&h);
	timer_heap_free(&h);
	assert_null(h.v);
	assert_int_equal(h.n, 0);
}

static void test_now_ns_monotonic(void **state)
{
	(void)state;
	int64_t prev = now_ns();
	assert_true(prev > 0);
	for (int i = 0; i < 1000; i++) {
		int64_t t = now_ns();
		assert_true(t >= prev);
		prev = t;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_heap),
		cmocka_unit_test(test_random_deadlines_fire_in_order),
		cmocka_unit_test(test_cancel_arbitrary_entries),
		cmocka_unit_test(test_rearm_moves_the_timer),
		cmocka_unit_test(test_run_fires_only_due),
		cmocka_unit_test(test_fire_may_rearm_and_cancel),
		cmocka_unit_test(test_heap_grows_past_initial_capacity),
		cmocka_unit_test(test_now_ns_monotonic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
