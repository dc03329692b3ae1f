/* Unit tests for daemon/series.c: the per-function history ring. Points
 * are computed from two readings of cumulative metrics; quantiles are
 * interpolated inside a bucket like Prometheus' histogram_quantile; the
 * ring keeps the newest SERIES_POINTS in order; the JSON has null for
 * "nothing finished in the step" and for memory no instance measured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "daemon/series.h"

static void test_quantile_interpolates_inside_bucket(void **state)
{
	(void)state;
	uint64_t d[METRICS_BUCKETS + 1] = { 0 };
	assert_true(isnan(series_quantile(d, 0.5)));
	/* 10 requests in (1 ms, 2.5 ms]: the median is halfway, 1.75 ms */
	d[4] = 10;
	assert_float_equal(series_quantile(d, 0.5), 0.00175, 1e-9);
	/* 90 more in the first bucket (<= 100 us): p50 is inside it, p99 in d[4] */
	d[0] = 90;
	assert_float_equal(series_quantile(d, 0.5), 0.0001 * 50 / 90, 1e-9);
	assert_float_equal(series_quantile(d, 0.99), 0.001 + 0.0015 * 9 / 10, 1e-9);
	/* past the last bound: the largest finite bound, not infinity */
	memset(d, 0, sizeof(d));
	d[METRICS_BUCKETS] = 3;
	assert_float_equal(series_quantile(d, 0.99), 60, 1e-9);
}

static void test_read_sums_versions_and_classes(void **state)
{
	(void)state;
	static struct fn_metrics m1, m2;
	const struct fn_metrics *ms[2] = { &m1, &m2 };
	atomic_store(&m1.requests[200], 5);
	atomic_store(&m2.requests[204], 2);
	atomic_store(&m2.requests[302], 1);
	atomic_store(&m1.requests[404], 3);
	atomic_store(&m2.requests[504], 4);
	atomic_store(&m1.instances[INST_BUSY], 2);
	atomic_store(&m2.instances[INST_IDLE], 1);
	atomic_store(&m2.queue_depth, 7);
	histogram_observe(&m1.restore, 3000000); /* 3 ms */
	histogram_observe(&m2.restore, 5000000);
	atomic_store(&m1.starts[START_RESTORE], 2);
	atomic_store(&m1.instances[INST_SPARE], 1);
	atomic_store(&m2.instances[INST_SPARE], 2);
	atomic_store(&m1.mem_bytes, 3 << 20);
	atomic_store(&m1.mem_instances, 1);
	atomic_store(&m2.mem_bytes, 5 << 20);
	atomic_store(&m2.mem_instances, 1);
	struct series_counters c;
	series_read(ms, 2, &c);
	assert_int_equal(c.req_class[0], 7);
	assert_int_equal(c.req_class[1], 1);
	assert_int_equal(c.req_class[2], 3);
	assert_int_equal(c.req_class[3], 4);
	assert_int_equal(c.instances[INST_BUSY], 2);
	assert_int_equal(c.instances[INST_IDLE], 1);
	assert_int_equal(c.queue, 7);
	assert_int_equal(c.restore_n, 2);
	assert_int_equal(c.restore_us, 8000);
	assert_int_equal(c.starts[START_RESTORE], 2);
	assert_int_equal(c.instances[INST_SPARE], 3);
	assert_int_equal(c.mem_bytes, 8 << 20);
	assert_int_equal(c.mem_instances, 2);
}

static char *render(struct series *s, int64_t since);

static void test_point_has_spares_and_memory_per_instance(void **state)
{
	(void)state;
	struct series_counters a = { 0 }, b = { 0 };
	b.instances[INST_SPARE] = 2;
	b.instances[INST_IDLE] = 1;
	b.mem_bytes = 30ull << 20; /* 3 instances measured, 30 MiB together */
	b.mem_instances = 3;
	float v[SERIES_FIELDS];
	series_point(&a, &b, 5.0, v);
	assert_float_equal(v[SERIES_SPARE], 2, 0);
	assert_float_equal(v[SERIES_IDLE], 1, 0); /* spares are not idle */
	assert_float_equal(v[SERIES_MEM_MB], 10, 1e-6);
	assert_float_equal(v[SERIES_MEM_TOTAL_MB], 30, 1e-6);
	/* instances but none with a memory group: unknown (null), not 0 */
	b.mem_bytes = 0;
	b.mem_instances = 0;
	series_point(&a, &b, 5.0, v);
	assert_true(isnan(v[SERIES_MEM_MB]));
	assert_true(isnan(v[SERIES_MEM_TOTAL_MB]));
	struct series *s = malloc(sizeof(*s));
	series_init(s);
	series_sample(s, &a, 1000000);
	series_sample(s, &b, 1005000);
	b.mem_bytes = 1536ull << 20; /* 1.5 GiB in one */
	b.mem_instances = 1;
	series_sample(s, &b, 1010000);
	char *js = render(s, 0);
	assert_non_null(strstr(js, "\"spare\":[2,2]"));
	assert_non_null(strstr(js, "\"mem_mb\":[null,1536]"));
	assert_non_null(strstr(js, "\"mem_total_mb\":[null,1536]"));
	free(js);
	series_fini(s);
	free(s);
}

static void test_point_is_rates_over_the_step(void **state)
{
	(void)state;
	struct series_counters a = { 0 }, b = { 0 };
	a.req_class[0] = 100;
	b.req_class[0] = 150; /* 50 in 5 s */
	b.req_class[3] = 5;
	b.dur[4] = 55;
	b.instances[INST_IDLE] = 2;
	b.queue = 3;
	b.starts[START_COLD] = 1;
	b.init_n = 1;
	b.init_us = 250000;
	a.cancelled = 9; /* went down: counts as 0, not a huge number */
	float v[SERIES_FIELDS];
	series_point(&a, &b, 5.0, v);
	assert_float_equal(v[SERIES_RPS_2XX], 10, 1e-6);
	assert_float_equal(v[SERIES_RPS_5XX], 1, 1e-6);
	assert_float_equal(v[SERIES_RPS_4XX], 0, 1e-6);
	assert_float_equal(v[SERIES_P50_MS], 1.75, 1e-4);
	assert_float_equal(v[SERIES_IDLE], 2, 0);
	assert_float_equal(v[SERIES_QUEUE], 3, 0);
	assert_float_equal(v[SERIES_COLD_STARTS], 1, 0);
	assert_float_equal(v[SERIES_INIT_MS], 250, 1e-4);
	assert_true(isnan(v[SERIES_RESTORE_MS])); /* none finished: null, not 0 */
	assert_float_equal(v[SERIES_CANCELLED], 0, 0);
}

static char *render(struct series *s, int64_t since)
{
	struct buf b = { 0 };
	series_render(s, since, &b);
	buf_append(&b, "", 1);
	return b.data;
}

static void test_ring_keeps_newest_in_order(void **state)
{
	(void)state;
	struct series *s = malloc(sizeof(*s));
	series_init(s);
	struct series_counters c = { 0 };
	int64_t t = 1000000;
	series_sample(s, &c, t); /* the first reading makes no point */
	assert_int_equal(s->n, 0);
	series_sample(s, &c, t + 1000); /* under half a step: ignored */
	assert_int_equal(s->n, 0);
	for (unsigned i = 1; i <= SERIES_POINTS + 10; i++) {
		c.req_class[0] += 5 * i; /* i requests per second in step i */
		series_sample(s, &c, t + (int64_t)i * 5000);
	}
	assert_int_equal(s->n, SERIES_POINTS);
	/* the oldest kept is step 11; they run in time order */
	unsigned first = (s->head + SERIES_POINTS - s->n) % SERIES_POINTS;
	assert_int_equal(s->t_ms[first], t + 11 * 5000);
	assert_float_equal(s->v[first][SERIES_RPS_2XX], 11, 1e-6);
	for (unsigned i = 1; i < s->n; i++)
		assert_true(s->t_ms[(first + i) % SERIES_POINTS] >
			    s->t_ms[(first + i - 1) % SERIES_POINTS]);
	/* since: only the last two points */
	char *js = render(s, t + (int64_t)(SERIES_POINTS + 8) * 5000);
	assert_non_null(strstr(js, "\"points\":2,"));
	char want[128];
	snprintf(want, sizeof(want), "\"t\":[%lld,%lld]", (long long)(t + (SERIES_POINTS + 9) * 5000LL),
		 (long long)(t + (SERIES_POINTS + 10) * 5000LL));
	assert_non_null(strstr(js, want));
	snprintf(want, sizeof(want), "\"rps_2xx\":[%u,%u]", SERIES_POINTS + 9, SERIES_POINTS + 10);
	assert_non_null(strstr(js, want));
	assert_non_null(strstr(js, "\"p50_ms\":[null,null]"));
	free(js);
	series_fini(s);
	free(s);
}

static void test_render_empty_has_every_field(void **state)
{
	(void)state;
	struct series *s = malloc(sizeof(*s));
	series_init(s);
	char *js = render(s, 0);
	assert_non_null(strstr(js, "{\"step_s\":5,\"points\":0,\"t\":[]"));
	for (unsigned f = 0; f < SERIES_FIELDS; f++) {
		char want[64];
		snprintf(want, sizeof(want), "\"%s\":[]", series_field_names[f]);
		assert_non_null(strstr(js, want));
	}
	free(js);
	series_fini(s);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quantile_interpolates_inside_bucket),
		cmocka_unit_test(test_read_sums_versions_and_classes),
		cmocka_unit_test(test_point_is_rates_over_the_step),
		cmocka_unit_test(test_point_has_spares_and_memory_per_instance),
		cmocka_unit_test(test_ring_keeps_newest_in_order),
		cmocka_unit_test(test_render_empty_has_every_field),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
