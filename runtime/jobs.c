#include "jobs.h"
#include "fsutil.h"
#include "mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <unistd.h>

#define MAX_WORKERS 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct job *queue_head, *queue_tail;
static bool stopping;
static pthread_t workers[MAX_WORKERS];
static unsigned n_workers;

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&lock);
		while (!queue_head && !stopping)
			pthread_cond_wait(&cond, &lock);
		struct job *j = queue_head;
		if (!j) {
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		queue_head = j->next;
		if (!queue_head)
			queue_tail = NULL;
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
	for (; n_workers < n && n_workers < MAX_WORKERS; n_workers++)
		if (pthread_create(&workers[n_workers], NULL, worker, NULL))
			return -EAGAIN;
	return 0;
}

void jobs_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	n_workers = 0;
}

void jobs_submit(struct job *j)
{
	j->next = NULL;
	j->op.cb = job_done;
	pthread_mutex_lock(&lock);
	if (queue_tail)
		queue_tail->next = j;
	else
		queue_head = j;
	queue_tail = j;
	pthread_cond_signal(&cond);
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
