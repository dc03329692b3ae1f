/*
 * Deadline timers of one loop: a binary min-heap of timers embedded in their
 * owners (connections, requests, instances). The loop arms one io_uring
 * timeout for the earliest; timer_run() fires the expired ones.
 */
#ifndef THAW_TIMER_H
#define THAW_TIMER_H

#include <stdint.h>

struct timer;
typedef void (*timer_fn)(struct timer *t);

struct timer {
	int64_t at_ns;  /* CLOCK_MONOTONIC */
	unsigned idx;   /* 1-based heap slot, 0 when not armed */
	timer_fn fire;
};

struct timer_heap {
	struct timer **v;
	unsigned n, cap;
};

int64_t now_ns(void);
/* (Re)arms t to fire at at_ns. */
void timer_set(struct timer_heap *h, struct timer *t, int64_t at_ns, timer_fn fire);
void timer_cancel(struct timer_heap *h, struct timer *t);
/* Earliest deadline, or -1 when empty. */
int64_t timer_next(const struct timer_heap *h);
/* Fires every timer due at now; a fired timer is disarmed before its fn runs. */
void timer_run(struct timer_heap *h, int64_t now);
void timer_heap_free(struct timer_heap *h);

#endif
