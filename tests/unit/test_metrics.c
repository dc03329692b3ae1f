/* Unit tests for daemon/metrics.c: what /metrics says of a function's
 * instances' memory. The sum is there only when some instance was
 * measured (absent, not 0, when none has a memory cgroup), the count of
 * measured instances always, both summed over the function's versions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/metrics.h"

static char *render(const struct fn_metrics *const *ms, unsigned n)
{
	struct buf b = { 0 };
	metrics_render_fn(&b, "fn", ms, n);
	buf_append(&b, "", 1);
	return b.data;
}

static void test_memory_absent_when_no_instance_measured(void **state)
{
	(void)state;
	static struct fn_metrics m;
	const struct fn_metrics *ms[1] = { &m };
	atomic_store(&m.instances[INST_IDLE], 2); /* live, but without memory groups */
	char *text = render(ms, 1);
	assert_null(strstr(text, "thaw_instance_memory_bytes"));
	assert_non_null(strstr(text, "thaw_instance_memory_instances{function=\"fn\"} 0\n"));
	free(text);
}

static void test_memory_summed_over_versions(void **state)
{
	(void)state;
	static struct fn_metrics m1, m2;
	const struct fn_metrics *ms[2] = { &m1, &m2 };
	atomic_store(&m1.mem_bytes, 3 << 20);
	atomic_store(&m1.mem_instances, 1);
	atomic_store(&m2.mem_bytes, 5 << 20);
	atomic_store(&m2.mem_instances, 2);
	char *text = render(ms, 2);
	assert_non_null(strstr(text, "thaw_instance_memory_bytes{function=\"fn\"} 8388608\n"));
	assert_non_null(strstr(text, "thaw_instance_memory_instances{function=\"fn\"} 3\n"));
	free(text);
	struct buf head = { 0 };
	metrics_render_head(&head);
	buf_append(&head, "", 1);
	assert_non_null(strstr(head.data, "# TYPE thaw_instance_memory_bytes gauge\n"));
	assert_non_null(strstr(head.data, "# TYPE thaw_instance_memory_instances gauge\n"));
	buf_free(&head);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory_absent_when_no_instance_measured),
		cmocka_unit_test(test_memory_summed_over_versions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
