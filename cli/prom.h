/*
 * The few series of the daemon's /metrics (Prometheus text format) that
 * `thaw top` shows, per function: requests, the request duration
 * histogram, instances by state, queue depth.
 */
#ifndef THAW_CLI_PROM_H
#define THAW_CLI_PROM_H

#include <stddef.h>

#define PROM_MAX_FNS 256
#define PROM_MAX_BUCKETS 64

enum { PROM_STARTING, PROM_IDLE, PROM_BUSY, PROM_STATES };

struct prom_fn {
	char name[65];
	double requests;                  /* thaw_requests_total, all codes */
	double le[PROM_MAX_BUCKETS];      /* thaw_request_duration_seconds bounds, +Inf last */
	double cum[PROM_MAX_BUCKETS];     /* cumulative counts per bound */
	unsigned n_buckets;
	double instances[PROM_STATES];    /* thaw_instances by state */
	double queue;                     /* thaw_queue_depth */
};

struct prom_sample {
	struct prom_fn fns[PROM_MAX_FNS];
	unsigned n_fns;
};

/* Parses text (len bytes) into out, which it clears first. Series of other
 * names, and functions past PROM_MAX_FNS, are skipped. Returns 0, or
 * -EINVAL when a line of a series it reads is malformed. */
int prom_parse(const char *text, size_t len, struct prom_sample *out);

/* The function called name in s, or NULL. */
const struct prom_fn *prom_find(const struct prom_sample *s, const char *name);

/* The q-quantile (0..1) of the request durations in seconds, interpolated
 * linearly inside a bucket like Prometheus' histogram_quantile; of the
 * observations since `before` when it is not NULL (a rate), else of all.
 * Returns -1 when there is no observation. */
double prom_quantile(const struct prom_fn *now, const struct prom_fn *before, double q);

#endif
