/*
 * A bounded time series per function, for charts without a Prometheus: a
 * ring of SERIES_POINTS points, one per SERIES_STEP_S seconds (an hour), in
 * fixed memory (61 KB a function name). Each point is computed from two
 * readings of the function's cumulative metrics (metrics.h): rates and
 * latency quantiles over the step between them, gauges as read.
 *
 * Pure: no thread, no clock, no registry; console.c samples and serves it.
 */
#ifndef THAW_SERIES_H
#define THAW_SERIES_H

#include <pthread.h>
#include <stdint.h>

#include "common/buf.h"
#include "daemon/metrics.h"

#define SERIES_STEP_S 5
#define SERIES_POINTS 720

/* The values of one point. Rates are per second over the step; quantiles
 * and means are in milliseconds over what finished in the step (NaN, shown
 * as null, when nothing did); gauges are as read at the end of the step. */
enum series_field {
	SERIES_RPS_2XX, /* status < 300 */
	SERIES_RPS_3XX,
	SERIES_RPS_4XX,
	SERIES_RPS_5XX,
	SERIES_P50_MS,
	SERIES_P90_MS,
	SERIES_P99_MS,
	SERIES_STARTING, /* instances by state */
	SERIES_IDLE,
	SERIES_BUSY,
	SERIES_SPARE, /* restored copies kept ahead of demand, not serving yet */
	SERIES_QUEUE,
	SERIES_COLD_STARTS, /* instances started in the step, by kind */
	SERIES_RESTORES,
	SERIES_INIT_MS,    /* mean init of the cold starts that finished in the step */
	SERIES_RESTORE_MS, /* mean restore */
	SERIES_CANCELLED,  /* requests per second whose client went away */
	SERIES_MEM_MB,       /* MiB per instance: the mean of those with a memory
			      * group (NaN when none has one: unknown, not 0) */
	SERIES_MEM_TOTAL_MB, /* MiB of those instances together (NaN likewise) */
	SERIES_FIELDS
};

/* The JSON names of the fields, in enum order. */
extern const char *const series_field_names[SERIES_FIELDS];

/* A reading of a function's cumulative metrics, its versions summed. */
struct series_counters {
	uint64_t req_class[4]; /* 2xx (and below), 3xx, 4xx, 5xx */
	uint64_t dur[METRICS_BUCKETS + 1];
	uint64_t init_n, init_us, restore_n, restore_us;
	uint64_t starts[START_KINDS];
	uint64_t cancelled;
	int instances[INST_STATES];
	int queue;
	uint64_t mem_bytes; /* of mem_instances live instances (metrics.h) */
	int mem_instances;
};

struct series {
	pthread_mutex_t lock; /* the sampler's push against a reader's render */
	int64_t t_ms[SERIES_POINTS];      /* unix ms of the end of each step */
	float v[SERIES_POINTS][SERIES_FIELDS];
	unsigned head; /* next slot written */
	unsigned n;    /* points held, up to SERIES_POINTS */
	/* the sampler's own: the reading the next point is computed from */
	struct series_counters last;
	int64_t last_ms; /* 0: no reading yet */
};

/* Sums the metrics of a function's versions ms[0..n) into out. */
void series_read(const struct fn_metrics *const *ms, unsigned n, struct series_counters *out);

/* The q-quantile (0..1) in seconds of histogram counts d[0..METRICS_BUCKETS]
 * (the last is +Inf), interpolated linearly inside the bucket the rank falls
 * in as Prometheus' histogram_quantile does; the largest finite bound when
 * it falls in +Inf; NaN when d is all zero. */
double series_quantile(const uint64_t *d, double q);

/* The point between readings a (older) and b taken dt_s seconds apart into
 * v[SERIES_FIELDS]. A counter that went down (cannot, short of a wrap)
 * counts as 0. */
void series_point(const struct series_counters *a, const struct series_counters *b, double dt_s,
		  float *v);

/* Initialises s empty; series_fini destroys its lock. */
void series_init(struct series *s);
void series_fini(struct series *s);

/* Takes reading c at unix ms now: from the second reading on, appends the
 * point since the one before (the oldest point goes once the ring is full).
 * A reading less than half a step after the one before is ignored. Takes
 * s->lock for the append only. */
void series_sample(struct series *s, const struct series_counters *c, int64_t now_ms);

/* Appends s as JSON to out, oldest first, only points after since_ms:
 * {"step_s":5,"points":N,"t":[unix ms...],"rps_2xx":[...],...} with one
 * array per field (series_field_names), null where a value is NaN. */
void series_render(struct series *s, int64_t since_ms, struct buf *out);

#endif
