/*
 * A function version's instances and request queue: one pool per version
 * for the whole daemon, owned by one loop (the version's index modulo the
 * loops), so maxInstances, minInstances and the autoscaler are per
 * function. Invocations arrive from any loop (pool_submit hands them over
 * with shard_post, no lock) and their answers go back the same way.
 *
 * pool_submit() runs an invocation on a free instance, or queues it (bounded:
 * 429 past maxQueueLength) and starts another instance if the function may
 * have more. Deadlines cover queueing: a queued request past its deadline
 * gets 504 and leaves the queue; a running one gets 504 and its instance is
 * killed and replaced. An instance that dies fails only its own requests
 * (502). An init failure marks the function failed (503 with the handler's
 * message) and is retried no more often than every 5 s.
 */
#ifndef THAW_POOL_H
#define THAW_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <stdatomic.h>

#include "daemon/autoscale.h"
#include "common/buf.h"
#include "proc/instance.h"
#include "daemon/jobs.h"
#include "daemon/loop.h"
#include "proc/reslimit.h"
#include "common/timer.h"

struct shard;
struct function;
struct invocation;

enum inst_state { I_STARTING, I_READY, I_DEAD };

struct inst_slot {
	uint64_t id;             /* 0: free */
	struct invocation *inv;  /* NULL: the warmup, or the client went away */
};

struct instance {
	struct pool *pool;
	struct instance_proc proc;
	enum inst_state state;
	bool restored;
	bool snapshotting;  /* being dumped: takes no requests */
	bool checkpoint_asked; /* CH_CHECKPOINT sent: its CH_READY starts the dump */
	bool stopping;      /* told to stop (a custom runtime's preStop): takes none */
	bool populate_sent; /* a restored custom runtime asked to populate (its first response) */
	uint64_t warmup_id; /* the fc.yaml warmup request in flight, or 0 */
	struct job job;     /* the restore or dump under way (counted in ops) */
	int job_ret;
	double verify_ms, criu_ms; /* where a restore's time went */
	bool criu_ahead; /* a criu started ahead served it (criu_swrk.h) */
	int64_t job_start_ns, job_end_ns;
	/* moving a process into a cgroup takes ~9 ms (cgroup v1): done off
	 * the start path, by a job of its own (counted in ops) */
	struct job limit_job;
	/* the groups the restore or the limit job made: the job writes them,
	 * its done() makes them cgroups on the loop (which reads cgroups
	 * while jobs run) */
	struct reslimit_groups job_groups;
	int64_t restored_ns;       /* criu done: CH_RESTORED sent */
	unsigned ops; /* io_uring operations in flight */
	struct loop_op recv_op, send_op, log_op, exit_op;
	bool closed; /* its channel closed: waiting for the process to end */
	bool spare;  /* a restored copy kept ahead of demand, not serving yet */
	/* taken as a spare: the next one is restored once this one answered
	 * its first request, not while it serves it (2 cores) */
	bool refill_spares;
	struct timer exit_timer;
	/* reads of its channel wait while clients hold more than
	 * --max-buffered of responses (counted in ops while armed) */
	struct timer recv_pause_timer;
	bool recv_armed, send_inflight, log_armed;
	struct buf in, out;
	size_t out_sent;
	struct buf pending; /* frames queued while a send is in flight */
	char log[4096];
	size_t log_len;
	unsigned inflight;
	struct inst_slot *slots; /* instanceConcurrency of them */
	uint64_t next_id;
	int64_t started_ns, idle_since_ns;
	struct timer init_timer;
	struct instance *next;
	char id[17];
	struct reslimit_groups cgroups; /* its memory and cpu groups */
	int mem_fd; /* its memory group's usage file, opened at the first tick; -1 */
	/* a custom runtime's HTTP channel (custom.h) instead of frames; its
	 * exit is watched by a poll on the pidfd through recv_op */
	struct custom *custom;
};

struct pool {
	struct shard *sh; /* the loop it runs on */
	struct function *fn;
	struct instance *instances;
	unsigned n_live, n_starting, n_ready;
	unsigned n_spares;   /* spare instances, starting or ready (in n_live) */
	int64_t traffic_ns;  /* the last invocation's arrival, 0: none yet */
	struct invocation *q_head, *q_tail;
	unsigned q_len;
	int64_t last_fail_ns;
	int64_t last_request_ns;
	/* load = requests running + queued, integrated over time for the autoscaler */
	unsigned load;
	double load_area;
	int64_t load_at, tick_at;
	struct autoscaler as;
	unsigned desired_shown; /* this pool's share of the metric gauges */
	bool panic_shown;
	struct loop_op warm_op;
	atomic_bool warm_posted;
};

/* fn's pool, made on first use (from any thread). */
struct pool *pool_of(struct function *fn);
/* Starts the function's first instance unless one is live (from any
 * thread: the pool's loop does it). */
void pool_warm(struct pool *p);
/* Runs inv (made by invocation_new, frame and deadline set) on fn's pool;
 * its answer comes through inv->on_done on the calling loop. From a loop
 * thread. */
void pool_submit(struct invocation *inv);
/* Housekeeping once a second, on the pool's loop: retries, scale-in. */
void pool_tick(struct pool *p, int64_t now);
/* Kills every instance (shutdown); their memory goes as their operations
 * complete. */
void pool_shutdown(struct pool *p);
/* Frees an empty pool. */
void pool_free(struct pool *p);

#endif
