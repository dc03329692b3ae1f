/*
 * Prometheus metrics. Counters are relaxed atomics updated by every loop
 * thread; /metrics renders a consistent-enough snapshot in text format 0.0.4.
 */
#ifndef THAW_METRICS_H
#define THAW_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/buf.h"

#define METRICS_BUCKETS 16

struct histogram {
	atomic_uint_least64_t count[METRICS_BUCKETS + 1]; /* last: +Inf */
	atomic_uint_least64_t sum_us;
};

/* spare: restored, idle, kept ahead of demand (not counted as serving) */
enum instance_state_gauge { INST_STARTING, INST_IDLE, INST_BUSY, INST_SPARE, INST_STATES };
enum start_kind { START_COLD, START_RESTORE, START_KINDS };

/* Per function; lives as long as the function. */
/* How a request reached its function (thaw_requests_by_protocol_total). */
enum metrics_protocol {
	PROTO_HTTP,            /* /{fn}/..., /invoke/{fn} */
	PROTO_TFSERVING_REST,  /* /v1/models/... */
	PROTO_KSERVE_REST,     /* /v2/... */
	PROTO_KSERVE_GRPC,     /* inference.GRPCInferenceService */
	PROTO_TFSERVING_GRPC,  /* tensorflow.serving.* */
	PROTO_GRPC_OTHER,
	METRICS_PROTOCOLS
};
/* The protocol of an HTTP/1 request by its path. */
enum metrics_protocol metrics_protocol_of_path(const char *path, size_t len);

struct fn_metrics {
	atomic_uint_least64_t requests[600]; /* by status code */
	atomic_uint_least64_t by_protocol[METRICS_PROTOCOLS];
	struct histogram duration;
	struct histogram init;
	struct histogram restore;
	atomic_int instances[INST_STATES];
	atomic_uint_least64_t starts[START_KINDS];
	atomic_uint_least64_t cancelled; /* requests whose client went away */
	atomic_uint_least64_t spares_taken; /* requests that found a spare instance */
	atomic_uint_least64_t snapshot_failures[2]; /* [0] dumps, [1] restores */
	atomic_int queue_depth;
	/* the live instances' memory (their memory groups' usage) and how many
	 * of them that is: those without a memory group are not counted
	 * (unknown, not 0); set by the pool's tick once a second */
	atomic_uint_least64_t mem_bytes;
	atomic_int mem_instances;
	atomic_int desired;
	atomic_int panic; /* pools in panic mode */
};

/* Daemon-wide. */
struct server_metrics {
	atomic_uint_least64_t http_errors[600]; /* answered before reaching a function */
	atomic_int connections;
	atomic_uint_least64_t connections_total;
	/* invocations and answers handed from one loop to another, and the
	 * time from the post to its callback on the other loop */
	atomic_uint_least64_t handovers, handover_ns;
	atomic_uint_least64_t buffered; /* response bytes not yet sent and request
					 * bodies held, all connections */
	atomic_uint_least64_t channel_pauses; /* instance channel reads held back */
};

void histogram_observe(struct histogram *h, int64_t ns);
/* The upper bound in seconds of bucket i (0 <= i < METRICS_BUCKETS). */
double metrics_bucket_bound(unsigned i);

/* Appends the text of one function's metrics (HELP/TYPE lines are written by
 * metrics_render_head once). */
void metrics_render_head(struct buf *out);
/* The versions of one function (ms[0..n)) are summed into its series. */
void metrics_render_fn(struct buf *out, const char *fn, const struct fn_metrics *const *ms,
		       unsigned n);
void metrics_render_server(struct buf *out, const struct server_metrics *m);

#endif
