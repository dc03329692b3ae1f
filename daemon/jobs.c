#include "daemon/jobs.h"
#include "common/fsutil.h"
#include "common/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <unistd.h>

#define MAX_WORKERS (16 + JOBS_SLOW_WORKERS)

/* Two queues: [0] the quick jobs (restores, dumps, limits), [1] the slow
 * ones (image unpacks), each with workers of its own. */
struct queue {
	struct job *head, *tail;
	pthread_cond_t cond;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct queue queues[2] = { { .cond = PTHREAD_COND_INITIALIZER },
				  { .cond = PTHREAD_COND_INITIALIZER } };
static bool stopping;
static pthread_t workers[MAX_WORKERS];
static unsigned n_workers;

static void *worker(void *arg)
{
	struct queue *q = arg;
	for (;;) {
		pthread_mutex_lock(&lock);
		while (!q->head && !stopping)
			pthread_cond_wait(&q->cond, &lock);
		struct job *j = q->head;
		if (!j) {
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
		pthread_mutex_unlock(&lock);
		j->run(j);
		if (j->sh)
			shard_post(j->sh, &j->op, 0); /* done() on its loop */
		else if (j->done)
			j->done(j);
	}
}

static void job_done(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct job *j = container_of(op, struct job, op);
	(void)cqe;
	j->done(j);
}

int jobs_start(unsigned n)
{
	if (n > MAX_WORKERS - JOBS_SLOW_WORKERS)
		n = MAX_WORKERS - JOBS_SLOW_WORKERS;
	stopping = false;
	for (unsigned i = 0; i < n + JOBS_SLOW_WORKERS; i++, n_workers++)
		if (pthread_create(&workers[n_workers], NULL, worker, &queues[i >= n]))
			return -EAGAIN;
	return 0;
}

void jobs_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_broadcast(&queues[0].cond);
	pthread_cond_broadcast(&queues[1].cond);
	pthread_mutex_unlock(&lock);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	n_workers = 0;
}

void jobs_submit(struct job *j)
{
	struct queue *q = &queues[j->slow ? 1 : 0];
	j->next = NULL;
	j->op.cb = job_done;
	pthread_mutex_lock(&lock);
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&lock);
}

struct rm_job {
	struct job job;
	char dir[];
};

static void rm_run(struct job *j)
{
	fs_rm_rf(((struct rm_job *)j)->dir);
}

static void rm_done(struct job *j)
{
	free(j);
}

void jobs_rm_rf(const char *dir)
{
	size_t len = strlen(dir) + 1;
	struct rm_job *r = xcalloc(1, sizeof(*r) + len);
	memcpy(r->dir, dir, len);
	r->job = (struct job){ .run = rm_run, .done = rm_done };
	jobs_submit(&r->job);
}
