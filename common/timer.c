#include "common/timer.h"
#include "common/mem.h"

#include <stdlib.h>
#include <time.h>

int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void place(struct timer_heap *h, unsigned i, struct timer *t)
{
	h->v[i - 1] = t;
	t->idx = i;
}

static void sift_up(struct timer_heap *h, unsigned i)
{
	struct timer *t = h->v[i - 1];
	while (i > 1 && h->v[i / 2 - 1]->at_ns > t->at_ns) {
		place(h, i, h->v[i / 2 - 1]);
		i /= 2;
	}
	place(h, i, t);
}

static void sift_down(struct timer_heap *h, unsigned i)
{
	struct timer *t = h->v[i - 1];
	for (;;) {
		unsigned c = 2 * i;
		if (c > h->n)
			break;
		if (c < h->n && h->v[c]->at_ns < h->v[c - 1]->at_ns)
			c++;
		if (h->v[c - 1]->at_ns >= t->at_ns)
			break;
		place(h, i, h->v[c - 1]);
		i = c;
	}
	place(h, i, t);
}

void timer_cancel(struct timer_heap *h, struct timer *t)
{
	if (!t->idx)
		return;
	unsigned i = t->idx;
	struct timer *last = h->v[--h->n];
	t->idx = 0;
	if (last == t)
		return;
	place(h, i, last);
	sift_up(h, i);
	sift_down(h, last->idx);
}

void timer_set(struct timer_heap *h, struct timer *t, int64_t at_ns, timer_fn fire)
{
	timer_cancel(h, t);
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 64;
		h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
	}
	t->at_ns = at_ns;
	t->fire = fire;
	h->n++;
	place(h, h->n, t);
	sift_up(h, h->n);
}

int64_t timer_next(const struct timer_heap *h)
{
	return h->n ? h->v[0]->at_ns : -1;
}

void timer_run(struct timer_heap *h, int64_t now)
{
	/* bounded: each iteration removes one timer; fired fns may re-arm for later */
	while (h->n && h->v[0]->at_ns <= now) {
		struct timer *t = h->v[0];
		timer_cancel(h, t);
		t->fire(t);
	}
}

void timer_heap_free(struct timer_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
