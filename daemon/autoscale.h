/*
 * Concurrency-based autoscaling in the manner of Knative's autoscaler:
 * instances wanted = average concurrency / target concurrency per instance,
 * averaged over a stable window (60 s), and over a short panic window (10%
 * of it) to catch bursts. When the panic window asks for at least
 * panicThresholdPercentage of the ready instances, panic mode holds for a
 * stable window: it scales up on the short average and never scales down.
 * Pure computation: the pool feeds samples and acts on the answer.
 */
#ifndef THAW_AUTOSCALE_H
#define THAW_AUTOSCALE_H

#include <stdbool.h>
#include <stdint.h>

struct config_scaling;

struct autoscaler {
	double *samples;  /* average concurrency of each tick, a ring */
	unsigned cap, n, head;
	bool panic;
	int64_t panic_until_ns;
	unsigned desired;
};

/* Sized for the stable window at one sample per tick. */
void autoscale_init(struct autoscaler *a, const struct config_scaling *s);
void autoscale_fini(struct autoscaler *a);
/* One tick's average concurrency (requests running + queued); ready is the
 * instances serving now. Returns the instances wanted, within
 * [minInstances, maxInstances]. */
unsigned autoscale_tick(struct autoscaler *a, const struct config_scaling *s, double concurrency,
			unsigned ready, int64_t now_ns);

#endif
