#include "daemon/autoscale.h"
#include "common/config.h"
#include "common/mem.h"

#include <math.h>
#include <stdlib.h>

#define TICK_S 1.0

void autoscale_init(struct autoscaler *a, const struct config_scaling *s)
{
	unsigned cap = (unsigned)(s->stable_window_s / TICK_S);
	a->cap = cap ? cap : 1;
	a->samples = xcalloc(a->cap, sizeof(double));
	a->n = a->head = 0;
	a->panic = false;
	a->desired = s->min_instances;
}

void autoscale_fini(struct autoscaler *a)
{
	free(a->samples);
	a->samples = NULL;
}

/* Mean of the newest k samples. */
static double mean(const struct autoscaler *a, unsigned k)
{
	if (k > a->n)
		k = a->n;
	if (!k)
		return 0;
	double sum = 0;
	for (unsigned i = 0; i < k; i++)
		sum += a->samples[(a->head + a->cap - 1 - i) % a->cap];
	return sum / k;
}

unsigned autoscale_tick(struct autoscaler *a, const struct config_scaling *s, double concurrency,
			unsigned ready, int64_t now_ns)
{
	a->samples[a->head] = concurrency;
	a->head = (a->head + 1) % a->cap;
	if (a->n < a->cap)
		a->n++;
	unsigned panic_ticks = (unsigned)ceil(a->cap * s->panic_window_pct / 100.0);
	double target = s->target_concurrency > 0 ? s->target_concurrency : 1;
	unsigned stable = (unsigned)ceil(mean(a, a->cap) / target - 1e-9);
	unsigned burst = (unsigned)ceil(mean(a, panic_ticks ? panic_ticks : 1) / target - 1e-9);
	if (ready && burst * 100.0 >= (double)ready * s->panic_threshold_pct) {
		a->panic = true;
		a->panic_until_ns = now_ns + (int64_t)s->stable_window_s * 1000000000;
	} else if (a->panic && now_ns >= a->panic_until_ns) {
		a->panic = false;
	}
	unsigned want = stable;
	if (a->panic) { /* up on the short average, never down */
		want = burst > stable ? burst : stable;
		if (want < a->desired)
			want = a->desired;
	}
	if (want < s->min_instances)
		want = s->min_instances;
	if (want > s->max_instances)
		want = s->max_instances;
	a->desired = want;
	return want;
}
