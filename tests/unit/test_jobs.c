/* Unit tests for daemon/jobs.c. Issue 16 item 3: with 8 large image
 * unpacks running, restores and the jobs that put instances under their
 * limits waited 45 s behind them on the same 8 workers; slow jobs now have
 * workers of their own. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/jobs.h"
#include "daemon/loop.h"

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static atomic_int quick_ran, slow_ran;

/* A slow job: holds its worker until the gate opens (at most 10 s). */
static void slow_run(struct job *j)
{
	(void)j;
	struct timespec end;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += 10;
	pthread_mutex_lock(&gate_lock);
	while (!gate_open && pthread_cond_timedwait(&gate_cond, &gate_lock, &end) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&gate_lock);
	atomic_fetch_add(&slow_ran, 1);
}

static void quick_run(struct job *j)
{
	(void)j;
	atomic_fetch_add(&quick_ran, 1);
}

static void done_nothing(struct job *j)
{
	(void)j;
}

static void test_quick_jobs_never_wait_behind_slow_ones(void **state)
{
	(void)state;
	struct shard *sh = calloc(1, sizeof(*sh));
	pthread_mutex_init(&sh->post_lock, NULL);
	sh->wake_fd = eventfd(0, EFD_CLOEXEC);
	assert_true(sh->wake_fd >= 0);
	assert_int_equal(jobs_start(8), 0);
	enum { SLOW = 12, QUICK = 16 };
	struct job slow[SLOW], quick[QUICK];
	for (int i = 0; i < SLOW; i++) {
		slow[i] = (struct job){ .run = slow_run, .done = done_nothing, .sh = sh, .slow = true };
		jobs_submit(&slow[i]);
	}
	for (int i = 0; i < QUICK; i++) {
		quick[i] = (struct job){ .run = quick_run, .done = done_nothing, .sh = sh };
		jobs_submit(&quick[i]);
	}
	/* every quick job runs while the slow ones still hold their workers */
	for (int i = 0; i < 200 && atomic_load(&quick_ran) < QUICK; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&quick_ran), QUICK);
	assert_int_equal(atomic_load(&slow_ran), 0);
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	jobs_stop(); /* after the queued jobs ran */
	assert_int_equal(atomic_load(&slow_ran), SLOW);
	shard_run_posted(sh); /* the jobs' done() */
	close(sh->wake_fd);
	free(sh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quick_jobs_never_wait_behind_slow_ones),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
