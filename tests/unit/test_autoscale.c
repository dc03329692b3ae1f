/* Autoscaler decisions: stable average, panic on bursts, bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "daemon/autoscale.h"
#include "common/config.h"

#define SEC 1000000000LL

static struct config_scaling scaling(void)
{
	struct config c;
	config_defaults(&c);
	struct config_scaling s = c.scaling;
	config_free(&c);
	s.min_instances = 0;
	s.max_instances = 50;
	s.target_concurrency = 1;
	s.stable_window_s = 10; /* 10 samples; panic window 1 sample */
	return s;
}

static void test_steady_load_asks_load_over_target(void **state)
{
	(void)state;
	struct config_scaling s = scaling();
	struct autoscaler a;
	autoscale_init(&a, &s);
	unsigned want = 0;
	for (int t = 0; t < 10; t++)
		want = autoscale_tick(&a, &s, 4.0, 4, t * SEC);
	assert_int_equal(want, 4);
	assert_false(a.panic);
	s.target_concurrency = 0.7; /* Knative's 70% utilisation */
	want = autoscale_tick(&a, &s, 4.0, 4, 10 * SEC);
	assert_int_equal(want, 6);
	autoscale_fini(&a);
}

static void test_burst_enters_panic_and_never_scales_down_in_it(void **state)
{
	(void)state;
	struct config_scaling s = scaling();
	struct autoscaler a;
	autoscale_init(&a, &s);
	for (int t = 0; t < 10; t++)
		autoscale_tick(&a, &s, 1.0, 1, t * SEC);
	unsigned want = autoscale_tick(&a, &s, 20.0, 1, 10 * SEC);
	assert_true(a.panic);
	assert_int_equal(want, 20); /* the short window, not the 10 s average (~3) */
	want = autoscale_tick(&a, &s, 0.0, 20, 11 * SEC);
	assert_true(a.panic);
	assert_int_equal(want, 20); /* no scale-down while panicking */
	for (int t = 12; t < 22; t++)
		want = autoscale_tick(&a, &s, 0.0, 20, t * SEC);
	assert_false(a.panic); /* a stable window after the last burst */
	assert_int_equal(want, 0);
	autoscale_fini(&a);
}

static void test_bounds(void **state)
{
	(void)state;
	struct config_scaling s = scaling();
	s.min_instances = 2;
	s.max_instances = 5;
	struct autoscaler a;
	autoscale_init(&a, &s);
	assert_int_equal(autoscale_tick(&a, &s, 0.0, 2, 0), 2);
	for (int t = 1; t < 12; t++)
		autoscale_tick(&a, &s, 100.0, 5, t * SEC);
	assert_int_equal(autoscale_tick(&a, &s, 100.0, 5, 12 * SEC), 5);
	autoscale_fini(&a);
}

static void test_no_ready_instances_is_not_a_panic_divisor(void **state)
{
	(void)state;
	struct config_scaling s = scaling();
	struct autoscaler a;
	autoscale_init(&a, &s);
	unsigned want = autoscale_tick(&a, &s, 3.0, 0, 0);
	assert_false(a.panic);
	assert_int_equal(want, 3); /* mean of one sample */
	autoscale_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steady_load_asks_load_over_target),
		cmocka_unit_test(test_burst_enters_panic_and_never_scales_down_in_it),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_no_ready_instances_is_not_a_panic_divisor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
