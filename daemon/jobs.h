/*
 * Blocking work off the event loops: CRIU dumps and restores take
 * milliseconds to seconds, unpacks and folder removals longer, and must not
 * stall a loop. A job's run() executes on one of a few worker threads; then
 * its done() runs on the loop of the shard that submitted it (shard_post),
 * or, for a job without a shard, on the worker right after run().
 */
#ifndef THAW_JOBS_H
#define THAW_JOBS_H

#include "daemon/loop.h"
#include <stdbool.h>

struct job {
	void (*run)(struct job *j);  /* worker thread: touch only the job's own data */
	void (*done)(struct job *j); /* the shard's loop (or the worker): may free j */
	struct shard *sh;            /* NULL: done() runs on the worker */
	struct job *next;
	struct loop_op op;
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
/* rm -rf dir on a worker (nothing waits for it). */
void jobs_rm_rf(const char *dir);

#endif
