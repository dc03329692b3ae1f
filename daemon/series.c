#include "daemon/series.h"

#include <math.h>
#include <string.h>

#define GET(a) atomic_load_explicit((a), memory_order_relaxed)

const char *const series_field_names[SERIES_FIELDS] = {
	[SERIES_RPS_2XX] = "rps_2xx",	    [SERIES_RPS_3XX] = "rps_3xx",
	[SERIES_RPS_4XX] = "rps_4xx",	    [SERIES_RPS_5XX] = "rps_5xx",
	[SERIES_P50_MS] = "p50_ms",	    [SERIES_P90_MS] = "p90_ms",
	[SERIES_P99_MS] = "p99_ms",	    [SERIES_STARTING] = "starting",
	[SERIES_IDLE] = "idle",		    [SERIES_BUSY] = "busy",
	[SERIES_SPARE] = "spare",	    [SERIES_QUEUE] = "queue",
	[SERIES_COLD_STARTS] = "cold_starts", [SERIES_RESTORES] = "restores",
	[SERIES_INIT_MS] = "init_ms",	    [SERIES_RESTORE_MS] = "restore_ms",
	[SERIES_CANCELLED] = "cancelled_ps", [SERIES_MEM_MB] = "mem_mb",
	[SERIES_MEM_TOTAL_MB] = "mem_total_mb",
};

void series_read(const struct fn_metrics *const *ms, unsigned n, struct series_counters *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned k = 0; k < n; k++) {
		const struct fn_metrics *m = ms[k];
		for (unsigned code = 0; code < 600; code++) {
			uint64_t c = GET(&m->requests[code]);
			if (c)
				out->req_class[code < 300 ? 0 : code / 100 - 2] += c;
		}
		for (unsigned i = 0; i <= METRICS_BUCKETS; i++)
			out->dur[i] += GET(&m->duration.count[i]);
		for (unsigned i = 0; i <= METRICS_BUCKETS; i++) {
			out->init_n += GET(&m->init.count[i]);
			out->restore_n += GET(&m->restore.count[i]);
		}
		out->init_us += GET(&m->init.sum_us);
		out->restore_us += GET(&m->restore.sum_us);
		for (unsigned i = 0; i < START_KINDS; i++)
			out->starts[i] += GET(&m->starts[i]);
		out->cancelled += GET(&m->cancelled);
		for (unsigned i = 0; i < INST_STATES; i++)
			out->instances[i] += atomic_load_explicit(&m->instances[i], memory_order_relaxed);
		out->queue += atomic_load_explicit(&m->queue_depth, memory_order_relaxed);
		out->mem_bytes += GET(&m->mem_bytes);
		out->mem_instances += atomic_load_explicit(&m->mem_instances, memory_order_relaxed);
	}
}

double series_quantile(const uint64_t *d, double q)
{
	uint64_t total = 0;
	for (unsigned i = 0; i <= METRICS_BUCKETS; i++)
		total += d[i];
	if (!total)
		return NAN;
	double rank = q * (double)total, cum = 0;
	for (unsigned i = 0; i <= METRICS_BUCKETS; i++) {
		if (!d[i] || cum + (double)d[i] < rank) {
			cum += (double)d[i];
			continue;
		}
		if (i == METRICS_BUCKETS)
			return metrics_bucket_bound(METRICS_BUCKETS - 1);
		double lo = i ? metrics_bucket_bound(i - 1) : 0, hi = metrics_bucket_bound(i);
		return lo + (hi - lo) * (rank - cum) / (double)d[i];
	}
	return metrics_bucket_bound(METRICS_BUCKETS - 1); /* rounding: q = 1 */
}

static uint64_t delta(uint64_t a, uint64_t b)
{
	return b > a ? b - a : 0;
}

void series_point(const struct series_counters *a, const struct series_counters *b, double dt_s,
		  float *v)
{
	if (dt_s <= 0)
		dt_s = SERIES_STEP_S;
	for (unsigned i = 0; i < 4; i++)
		v[SERIES_RPS_2XX + i] = (float)((double)delta(a->req_class[i], b->req_class[i]) / dt_s);
	uint64_t d[METRICS_BUCKETS + 1];
	for (unsigned i = 0; i <= METRICS_BUCKETS; i++)
		d[i] = delta(a->dur[i], b->dur[i]);
	v[SERIES_P50_MS] = (float)(series_quantile(d, 0.5) * 1e3);
	v[SERIES_P90_MS] = (float)(series_quantile(d, 0.9) * 1e3);
	v[SERIES_P99_MS] = (float)(series_quantile(d, 0.99) * 1e3);
	v[SERIES_STARTING] = (float)b->instances[INST_STARTING];
	v[SERIES_IDLE] = (float)b->instances[INST_IDLE];
	v[SERIES_BUSY] = (float)b->instances[INST_BUSY];
	v[SERIES_SPARE] = (float)b->instances[INST_SPARE];
	v[SERIES_QUEUE] = (float)b->queue;
	v[SERIES_COLD_STARTS] = (float)delta(a->starts[START_COLD], b->starts[START_COLD]);
	v[SERIES_RESTORES] = (float)delta(a->starts[START_RESTORE], b->starts[START_RESTORE]);
	uint64_t n = delta(a->init_n, b->init_n);
	v[SERIES_INIT_MS] = n ? (float)((double)delta(a->init_us, b->init_us) / 1e3 / (double)n) : NAN;
	n = delta(a->restore_n, b->restore_n);
	v[SERIES_RESTORE_MS] =
		n ? (float)((double)delta(a->restore_us, b->restore_us) / 1e3 / (double)n) : NAN;
	v[SERIES_CANCELLED] = (float)((double)delta(a->cancelled, b->cancelled) / dt_s);
	double mib = (double)b->mem_bytes / 1048576;
	v[SERIES_MEM_MB] = b->mem_instances > 0 ? (float)(mib / b->mem_instances) : NAN;
	v[SERIES_MEM_TOTAL_MB] = b->mem_instances > 0 ? (float)mib : NAN;
}

void series_init(struct series *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
}

void series_fini(struct series *s)
{
	pthread_mutex_destroy(&s->lock);
}

void series_sample(struct series *s, const struct series_counters *c, int64_t now_ms)
{
	if (s->last_ms && now_ms - s->last_ms < SERIES_STEP_S * 500)
		return;
	if (s->last_ms) {
		float v[SERIES_FIELDS];
		series_point(&s->last, c, (double)(now_ms - s->last_ms) / 1e3, v);
		pthread_mutex_lock(&s->lock);
		s->t_ms[s->head] = now_ms;
		memcpy(s->v[s->head], v, sizeof(v));
		s->head = (s->head + 1) % SERIES_POINTS;
		if (s->n < SERIES_POINTS)
			s->n++;
		pthread_mutex_unlock(&s->lock);
	}
	s->last = *c;
	s->last_ms = now_ms;
}

static void render_value(struct buf *out, float f)
{
	if (isnan(f) || isinf(f))
		buf_append_str(out, "null");
	else if (f == (float)(int64_t)f && fabsf(f) < 1e9f)
		buf_printf(out, "%lld", (long long)f);
	else
		buf_printf(out, "%.4g", (double)f);
}

void series_render(struct series *s, int64_t since_ms, struct buf *out)
{
	pthread_mutex_lock(&s->lock);
	unsigned first = (s->head + SERIES_POINTS - s->n) % SERIES_POINTS, skip = 0;
	while (skip < s->n && s->t_ms[(first + skip) % SERIES_POINTS] <= since_ms)
		skip++;
	unsigned n = s->n - skip;
	first = (first + skip) % SERIES_POINTS;
	buf_printf(out, "{\"step_s\":%d,\"points\":%u,\"t\":[", SERIES_STEP_S, n);
	for (unsigned i = 0; i < n; i++)
		buf_printf(out, "%s%lld", i ? "," : "", (long long)s->t_ms[(first + i) % SERIES_POINTS]);
	buf_append_str(out, "]");
	for (unsigned f = 0; f < SERIES_FIELDS; f++) {
		buf_printf(out, ",\"%s\":[", series_field_names[f]);
		for (unsigned i = 0; i < n; i++) {
			if (i)
				buf_append_str(out, ",");
			render_value(out, s->v[(first + i) % SERIES_POINTS][f]);
		}
		buf_append_str(out, "]");
	}
	buf_append_str(out, "}");
	pthread_mutex_unlock(&s->lock);
}
