/*
 * One io_uring event loop ("shard"): listener, client connections, instance
 * channels and timers of one thread. Loop shape: submit_and_wait ->
 * for_each_cqe -> dispatch on the tag packed into user_data -> cq_advance.
 */
#ifndef THAW_LOOP_H
#define THAW_LOOP_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "server.h"
#include "timer.h"

struct job;

/* user_data = pointer | tag. */
enum op_tag {
	OP_TIMEOUT = 0, /* ptr: shard; user_data 0 = ignore */
	OP_ACCEPT,      /* ptr: shard */
	OP_CONN_RECV,   /* ptr: conn */
	OP_CONN_SEND,   /* ptr: conn */
	OP_INST_RECV,   /* ptr: instance */
	OP_INST_SEND,   /* ptr: instance */
	OP_INST_LOG,    /* ptr: instance */
	OP_WAKE,        /* ptr: shard (eventfd: stop, or jobs done) */
	OP_PROXY_CONNECT, /* ptr: proxy */
	OP_PROXY_SEND,
	OP_PROXY_RECV,
	OP_PROXY_CLIENT_SEND,
};
/* objects come from malloc: 16-byte aligned, so 4 tag bits */
#define OP_TAG_MASK 15ULL
#define OP_DATA(ptr, tag) ((uint64_t)(uintptr_t)(ptr) | (uint64_t)(tag))

struct pool;

struct shard {
	unsigned id;
	struct io_uring ring;
	int listen_fd;
	int wake_fd; /* eventfd: stop (server.stopping) or finished jobs */
	pthread_mutex_t done_lock;
	struct job *done_jobs; /* finished jobs whose done() is due here */
	uint64_t wake_val;
	bool accept_armed;
	/* accept failed for want of fds or memory: re-armed by accept_timer
	 * after accept_backoff_ms, not at once (that spun at 100 % CPU) */
	bool accept_paused;
	unsigned accept_backoff_ms;
	struct timer accept_timer;
	int64_t accept_warned_ns; /* the last "accept: ..." line: one per 10 s */
	unsigned accept_unlogged; /* failures since */
	bool ring_disabled; /* made with R_DISABLED: the loop thread enables it */
	/* provided buffers for multishot recv (when the kernel has them) */
	struct io_uring_buf_ring *br;
	char *bufs;
	unsigned nbufs, buf_size;
	bool use_buf_ring;
	struct timer_heap timers;
	struct __kernel_timespec timeout_ts;
	int64_t timeout_at; /* deadline of the armed io_uring timeout, -1 none */
	struct pool *pools[MAX_FUNCTIONS];
	unsigned n_conns;
	struct conn *conns;     /* every open connection, for shutdown */
	unsigned n_instances;   /* instance objects not yet freed */
	unsigned n_active; /* requests between their last byte and their response sent */
	bool draining, drained_reported;
	bool stopping;
	pthread_t thread;
	struct timer tick; /* 1 s housekeeping: retries, scale-in */
};

/* Creates the ring and listener of shard id. Returns 0 or -errno. */
int shard_init(struct shard *sh, unsigned id);
/* Runs until stopped through wake_fd. */
void *shard_main(void *arg);
void shard_fini(struct shard *sh);

/* Gets an SQE, submitting when the ring is full. Never NULL. */
struct io_uring_sqe *shard_sqe(struct shard *sh);

/* Provided-buffer recv helpers (used by conn.c). */
void shard_recycle_buf(struct shard *sh, unsigned bid);

#endif
