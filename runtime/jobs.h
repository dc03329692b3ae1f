/*
 * Blocking work off the event loops: CRIU dumps and restores take
 * milliseconds to seconds and must not stall a loop. A job's run() executes
 * on one of a few worker threads; then its done() runs on the loop of the
 * shard that submitted it (woken through the shard's eventfd).
 */
#ifndef THAW_JOBS_H
#define THAW_JOBS_H

struct shard;

struct job {
	void (*run)(struct job *j);  /* worker thread: touch only the job's own data */
	void (*done)(struct job *j); /* the shard's loop: may free j */
	struct shard *sh;
	struct job *next;
};

/* Starts n worker threads. Returns 0 or -errno. */
int jobs_start(unsigned n);
/* Stops the workers after the queued jobs ran (their done() is not called). */
void jobs_stop(void);
void jobs_submit(struct job *j);
/* On the shard's loop, after its eventfd fired: runs finished jobs' done(). */
void jobs_complete(struct shard *sh);

#endif
