#include "jobs.h"
#include "loop.h"
#include "mem.h"

#include <errno.h>
#include <pthread.h>
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
		/* hand it back to its shard */
		struct shard *sh = j->sh;
		pthread_mutex_lock(&sh->done_lock);
		j->next = sh->done_jobs;
		sh->done_jobs = j;
		pthread_mutex_unlock(&sh->done_lock);
		uint64_t one = 1;
		ssize_t r = write(sh->wake_fd, &one, sizeof(one));
		(void)r;
	}
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
	pthread_mutex_lock(&lock);
	if (queue_tail)
		queue_tail->next = j;
	else
		queue_head = j;
	queue_tail = j;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
}

void jobs_complete(struct shard *sh)
{
	pthread_mutex_lock(&sh->done_lock);
	struct job *j = sh->done_jobs;
	sh->done_jobs = NULL;
	pthread_mutex_unlock(&sh->done_lock);
	while (j) {
		struct job *next = j->next;
		j->done(j);
		j = next;
	}
}
