/*
 * Blocking work off the event loops: CRIU dumps and restores take
 * milliseconds to seconds and must not stall a loop. A job's run() executes
 * on one of a few worker threads; then its done() runs on the loop of the
 * shard that submitted it (woken through the shard's eventfd).
 */
#ifndef THAW_JOBS_H
#define THAW_JOBS_H

#include <stdbool.h>

struct shard;

struct job {
	void (*run)(struct job *j);  /* worker thread: touch only the job's own data */
	void (*done)(struct job *j); /* the shard's loop: may free j */
	struct shard *sh;
	struct job *next;
	/* may take seconds to minutes (an image unpack): runs on workers of
	 * its own, so restores and limits never wait behind it */
	bool slow;
};

/* Workers for slow jobs, besides the n of jobs_start. */
#define JOBS_SLOW_WORKERS 2

/* Starts n worker threads, and JOBS_SLOW_WORKERS for slow jobs. Returns 0
 * or -errno. */
int jobs_start(unsigned n);
/* Stops the workers after the queued jobs ran (their done() is not called). */
void jobs_stop(void);
void jobs_submit(struct job *j);
/* On the shard's loop, after its eventfd fired: runs finished jobs' done(). */
void jobs_complete(struct shard *sh);

#endif
