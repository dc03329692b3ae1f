#include "daemon/metrics.h"

#include <string.h>

#include <stddef.h>

/* Upper bounds in seconds: from 100 us (gateway overhead) to a minute (cold
 * init of a big model). */
static const double bounds[METRICS_BUCKETS] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
						0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
						1,      2.5,     10,     60 };

#define ADD(a, v) atomic_fetch_add_explicit((a), (v), memory_order_relaxed)
#define GET(a) atomic_load_explicit((a), memory_order_relaxed)

double metrics_bucket_bound(unsigned i)
{
	return i < METRICS_BUCKETS ? bounds[i] : bounds[METRICS_BUCKETS - 1];
}

void histogram_observe(struct histogram *h, int64_t ns)
{
	double s = (double)ns / 1e9;
	unsigned i = 0;
	while (i < METRICS_BUCKETS && s > bounds[i])
		i++;
	ADD(&h->count[i], 1);
	ADD(&h->sum_us, (uint64_t)(ns > 0 ? ns / 1000 : 0));
}

/* The versions of one function are summed into one series. */
#define SUM(expr)                                                              \
	({                                                                     \
		uint64_t s_ = 0;                                               \
		for (unsigned v_ = 0; v_ < n; v_++) {                          \
			const struct fn_metrics *m = ms[v_];                   \
			s_ += (uint64_t)(expr);                                \
		}                                                              \
		s_;                                                            \
	})

static void render_histogram(struct buf *out, const char *name, const char *fn,
			     const struct fn_metrics *const *ms, unsigned n, size_t off)
{
#define HIST(m) ((const struct histogram *)((const char *)(m) + off))
	uint64_t cum = 0;
	for (unsigned i = 0; i <= METRICS_BUCKETS; i++) {
		cum += SUM(GET(&HIST(m)->count[i]));
		if (i < METRICS_BUCKETS)
			buf_printf(out, "%s_bucket{function=\"%s\",le=\"%g\"} %lu\n", name, fn,
				   bounds[i], (unsigned long)cum);
		else
			buf_printf(out, "%s_bucket{function=\"%s\",le=\"+Inf\"} %lu\n", name, fn,
				   (unsigned long)cum);
	}
	buf_printf(out, "%s_sum{function=\"%s\"} %.6f\n", name, fn,
		   (double)SUM(GET(&HIST(m)->sum_us)) / 1e6);
#undef HIST
	buf_printf(out, "%s_count{function=\"%s\"} %lu\n", name, fn, (unsigned long)cum);
}

enum metrics_protocol metrics_protocol_of_path(const char *path, size_t len)
{
	if (len >= 10 && !memcmp(path, "/v1/models", 10))
		return PROTO_TFSERVING_REST;
	if (len >= 4 && !memcmp(path, "/v2/", 4))
		return PROTO_KSERVE_REST;
	return PROTO_HTTP;
}

void metrics_render_head(struct buf *out)
{
	buf_append_str(out,
		       "# HELP thaw_requests_total Invocations answered, by function and status code.\n"
		       "# TYPE thaw_requests_total counter\n"
		       "# HELP thaw_requests_by_protocol_total Invocations answered, by function and the protocol they came in.\n"
		       "# TYPE thaw_requests_by_protocol_total counter\n"
		       "# HELP thaw_request_duration_seconds Time from a whole request to its response, queueing included.\n"
		       "# TYPE thaw_request_duration_seconds histogram\n"
		       "# HELP thaw_init_duration_seconds Cold start: process start to READY (handler init).\n"
		       "# TYPE thaw_init_duration_seconds histogram\n"
		       "# HELP thaw_restore_duration_seconds Snapshot restore: criu start to READY after on_restore.\n"
		       "# TYPE thaw_restore_duration_seconds histogram\n"
		       "# HELP thaw_instances Instances by state.\n"
		       "# TYPE thaw_instances gauge\n"
		       "# HELP thaw_instance_memory_bytes Memory of the live instances, summed: their memory cgroups' usage (memory.current; v1 memory.usage_in_bytes), read once a second. Absent while no instance has a memory cgroup (unknown, not 0).\n"
		       "# TYPE thaw_instance_memory_bytes gauge\n"
		       "# HELP thaw_instance_memory_instances Live instances whose memory is in thaw_instance_memory_bytes (those with a memory cgroup): divide for the mean per instance.\n"
		       "# TYPE thaw_instance_memory_instances gauge\n"
		       "# HELP thaw_instance_starts_total Instances started, by kind (cold or restore).\n"
		       "# TYPE thaw_instance_starts_total counter\n"
		       "# HELP thaw_requests_cancelled_total Requests whose client went away while queued or running.\n"
		       "# TYPE thaw_requests_cancelled_total counter\n"
		       "# HELP thaw_spares_taken_total Requests that found a spare (restored, idle) instance instead of waiting for a start.\n"
		       "# TYPE thaw_spares_taken_total counter\n"
		       "# HELP thaw_snapshot_failures_total Snapshot dumps and restores that failed (instances cold start meanwhile).\n"
		       "# TYPE thaw_snapshot_failures_total counter\n"
		       "# HELP thaw_queue_depth Requests waiting for a free instance.\n"
		       "# TYPE thaw_queue_depth gauge\n"
		       "# HELP thaw_desired_instances Instances the autoscaler wants.\n"
		       "# TYPE thaw_desired_instances gauge\n"
		       "# HELP thaw_panic_mode Loops whose autoscaler is in panic mode (a burst).\n"
		       "# TYPE thaw_panic_mode gauge\n");
}

void metrics_render_fn(struct buf *out, const char *fn, const struct fn_metrics *const *ms,
		       unsigned n)
{
	for (int code = 100; code < 600; code++) {
		uint64_t c = SUM(GET(&m->requests[code]));
		if (c)
			buf_printf(out, "thaw_requests_total{function=\"%s\",code=\"%d\"} %lu\n", fn,
				   code, (unsigned long)c);
	}
	static const char *const protocols[METRICS_PROTOCOLS] = {
		"http", "tfserving_rest", "kserve_rest", "kserve_grpc", "tfserving_grpc", "grpc"
	};
	for (int p = 0; p < METRICS_PROTOCOLS; p++) {
		uint64_t c = SUM(GET(&m->by_protocol[p]));
		if (c)
			buf_printf(out, "thaw_requests_by_protocol_total{function=\"%s\",protocol=\"%s\"} %lu\n",
				   fn, protocols[p], (unsigned long)c);
	}
	render_histogram(out, "thaw_request_duration_seconds", fn, ms, n,
			 offsetof(struct fn_metrics, duration));
	render_histogram(out, "thaw_init_duration_seconds", fn, ms, n,
			 offsetof(struct fn_metrics, init));
	render_histogram(out, "thaw_restore_duration_seconds", fn, ms, n,
			 offsetof(struct fn_metrics, restore));
	static const char *const states[INST_STATES] = { "starting", "idle", "busy", "spare" };
	for (int s = 0; s < INST_STATES; s++)
		buf_printf(out, "thaw_instances{function=\"%s\",state=\"%s\"} %ld\n", fn, states[s],
			   (long)SUM(GET(&m->instances[s])));
	uint64_t mem_n = SUM(GET(&m->mem_instances));
	if (mem_n)
		buf_printf(out, "thaw_instance_memory_bytes{function=\"%s\"} %lu\n", fn,
			   (unsigned long)SUM(GET(&m->mem_bytes)));
	buf_printf(out, "thaw_instance_memory_instances{function=\"%s\"} %lu\n", fn,
		   (unsigned long)mem_n);
	buf_printf(out, "thaw_instance_starts_total{function=\"%s\",kind=\"cold\"} %lu\n", fn,
		   (unsigned long)SUM(GET(&m->starts[START_COLD])));
	buf_printf(out, "thaw_instance_starts_total{function=\"%s\",kind=\"restore\"} %lu\n", fn,
		   (unsigned long)SUM(GET(&m->starts[START_RESTORE])));
	buf_printf(out, "thaw_requests_cancelled_total{function=\"%s\"} %lu\n", fn,
		   (unsigned long)SUM(GET(&m->cancelled)));
	buf_printf(out, "thaw_spares_taken_total{function=\"%s\"} %lu\n", fn,
		   (unsigned long)SUM(GET(&m->spares_taken)));
	buf_printf(out, "thaw_snapshot_failures_total{function=\"%s\",op=\"dump\"} %lu\n", fn,
		   (unsigned long)SUM(GET(&m->snapshot_failures[0])));
	buf_printf(out, "thaw_snapshot_failures_total{function=\"%s\",op=\"restore\"} %lu\n", fn,
		   (unsigned long)SUM(GET(&m->snapshot_failures[1])));
	buf_printf(out, "thaw_queue_depth{function=\"%s\"} %ld\n", fn,
		   (long)SUM(GET(&m->queue_depth)));
	buf_printf(out, "thaw_desired_instances{function=\"%s\"} %ld\n", fn,
		   (long)SUM(GET(&m->desired)));
	buf_printf(out, "thaw_panic_mode{function=\"%s\"} %ld\n", fn, (long)SUM(GET(&m->panic)));
}

void metrics_render_server(struct buf *out, const struct server_metrics *m)
{
	buf_append_str(out, "# HELP thaw_http_errors_total Requests refused before reaching a function.\n"
			    "# TYPE thaw_http_errors_total counter\n");
	for (int code = 100; code < 600; code++) {
		uint64_t n = GET(&m->http_errors[code]);
		if (n)
			buf_printf(out, "thaw_http_errors_total{code=\"%d\"} %lu\n", code,
				   (unsigned long)n);
	}
	buf_printf(out,
		   "# HELP thaw_connections Open client connections.\n# TYPE thaw_connections gauge\n"
		   "thaw_connections %d\n"
		   "# HELP thaw_connections_total Client connections accepted.\n"
		   "# TYPE thaw_connections_total counter\nthaw_connections_total %lu\n",
		   GET(&m->connections), (unsigned long)GET(&m->connections_total));
	buf_printf(out,
		   "# HELP thaw_loop_handover_seconds Invocations and answers handed from one "
		   "event loop to another (the function's pool runs on one loop), post to callback.\n"
		   "# TYPE thaw_loop_handover_seconds summary\n"
		   "thaw_loop_handover_seconds_sum %.9f\nthaw_loop_handover_seconds_count %lu\n",
		   (double)GET(&m->handover_ns) / 1e9, (unsigned long)GET(&m->handovers));
	buf_printf(out,
		   "# HELP thaw_buffered_response_bytes Response bytes waiting for their clients to read them, and request bodies held (bounded by --max-buffered).\n"
		   "# TYPE thaw_buffered_response_bytes gauge\nthaw_buffered_response_bytes %lu\n"
		   "# HELP thaw_channel_pauses_total Times the daemon stopped reading an instance's channel while over --max-buffered.\n"
		   "# TYPE thaw_channel_pauses_total counter\nthaw_channel_pauses_total %lu\n",
		   (unsigned long)GET(&m->buffered), (unsigned long)GET(&m->channel_pauses));
}
