/*
 * One io_uring event loop ("shard") per thread: its listener, timers and
 * the operations of whatever lives on it. The loop knows no clients: every
 * operation embeds a `struct loop_op` whose callback it calls with the
 * completion (libuv's uv__io_t, redis's aeFileEvent).
 *
 * Loop shape: submit_and_wait -> for_each_cqe -> op->cb(op, cqe) ->
 * cq_advance. Other threads hand work to a loop with shard_post(): an
 * IORING_OP_MSG_RING completion on the target ring where the kernel has it
 * (5.18+), else (or when that fails) a locked list and the loop's eventfd.
 *
 * Where io_uring is refused (a container runtime's seccomp profile,
 * kernel.io_uring_disabled) the same operations run on epoll
 * (daemon/loop_epoll.h): the SQEs and CQEs stay, only the backend changes.
 */
#ifndef THAW_LOOP_H
#define THAW_LOOP_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/timer.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct loop_op;
/* cqe->res is the operation's result (for a posted op: the value posted). */
typedef void (*loop_op_fn)(struct loop_op *op, struct io_uring_cqe *cqe);

/* An operation in flight, embedded in its owner; user_data points at it. */
struct loop_op {
	loop_op_fn cb;
	struct loop_op *next; /* posted through the locked list */
	int res;              /* posted: the value */
	struct shard *post_to;
};

struct shard;
struct loop_epoll;

/* Which backend the loops run on. */
enum loop_backend {
	LOOP_AUTO,     /* io_uring; epoll when io_uring_setup is refused */
	LOOP_IO_URING, /* io_uring or nothing */
	LOOP_EPOLL,
};
/* Before the first shard_init. LOOP_AUTO falls back to epoll when
 * io_uring_setup fails with EPERM, EACCES or ENOSYS, saying so once. */
void loop_set_backend(enum loop_backend b);
/* What the loops run on: "io_uring" or "epoll" (known after shard_init). */
const char *loop_backend_name(void);
/* "--loop"'s words: "io_uring", "epoll" or "auto"; -EINVAL for others. */
int loop_backend_parse(const char *s, enum loop_backend *out);

/* What the layer above does with a loop; set once before the loops start. */
struct shard_hooks {
	void (*start)(struct shard *sh);          /* the loop thread began */
	void (*accept)(struct shard *sh, int fd); /* a new client connection */
	void (*tick)(struct shard *sh, int64_t now); /* once a second */
	bool (*active)(struct shard *sh); /* requests under way: drain waits */
	/* stop: close everything; the loop then runs until alive() is false */
	void (*shutdown)(struct shard *sh);
	bool (*alive)(struct shard *sh);
};
void shard_set_hooks(const struct shard_hooks *h);

struct shard {
	unsigned id;
	struct io_uring ring;   /* unused when ep is set */
	struct loop_epoll *ep;  /* the epoll backend, or NULL: io_uring */
	int listen_fd;
	int wake_fd; /* eventfd: stop, drain, ops posted through the list */
	pthread_mutex_t post_lock;
	struct loop_op *posted; /* ops posted without MSG_RING, newest first */
	uint64_t wake_val;
	struct loop_op accept_op, wake_op, timeout_op;
	bool accept_armed;
	/* accept failed for want of fds or memory: re-armed by accept_timer
	 * after accept_backoff_ms, not at once (that spun at 100 % CPU) */
	bool accept_paused;
	unsigned accept_backoff_ms;
	struct timer accept_timer;
	int64_t accept_warned_ns; /* the last "accept: ..." line: one per 10 s */
	unsigned accept_unlogged; /* failures since */
	/* a second listener every loop accepts on (--grpc-port), -1 none; not
	 * owned: set before the loop starts, closed by its owner after */
	int listen2_fd;
	struct loop_op accept2_op;
	bool accept2_armed;
	bool ring_disabled; /* made with R_DISABLED: the loop thread enables it */
	/* provided buffers for multishot recv (when the kernel has them) */
	struct io_uring_buf_ring *br;
	char *bufs;
	unsigned nbufs, buf_size;
	bool use_buf_ring;
	struct timer_heap timers;
	struct __kernel_timespec timeout_ts;
	int64_t timeout_at; /* deadline of the armed io_uring timeout, -1 none */
	struct conn *conns;   /* open client connections (conn.h's list) */
	unsigned n_conns;
	unsigned n_instances; /* instance objects not yet freed (the pools') */
	unsigned n_active; /* requests between their last byte and their response sent */
	atomic_bool stop_req, drain_req; /* set by shard_stop / shard_drain */
	atomic_uint *drained;
	bool draining, drained_reported;
	bool stopping;
	pthread_t thread;
	struct timer tick; /* 1 s housekeeping */
};

/* The shard whose loop runs on this thread, or NULL (main, job workers). */
extern _Thread_local struct shard *shard_self;

/* Creates the ring of shard id, serving listen_fd (taken: closed by
 * shard_fini). Returns 0 or -errno. */
int shard_init(struct shard *sh, unsigned id, int listen_fd);
/* Runs the loop until shard_stop. */
void *shard_main(void *arg);
void shard_fini(struct shard *sh);
/* From any thread: stop accepting and report drained once active() is false
 * (drained counts such shards)... */
void shard_drain(struct shard *sh, atomic_uint *drained);
/* ...or stop: hooks.shutdown, then the loop ends. */
void shard_stop(struct shard *sh);
/* After the loop ended: runs what was posted to it since (jobs that
 * finished late). */
void shard_run_posted(struct shard *sh);

/* Gets an SQE, submitting when the ring is full. Never NULL. */
struct io_uring_sqe *shard_sqe(struct shard *sh);
static inline void loop_op_prep(struct io_uring_sqe *sqe, struct loop_op *op)
{
	io_uring_sqe_set_data(sqe, op);
}
/* Runs op->cb(op, cqe with res) on to's loop. Callable from any thread;
 * op must stay valid until its callback ran. Never fails. */
void shard_post(struct shard *to, struct loop_op *op, int res);

/* Provided-buffer recv helpers (used by conn.c). */
void shard_recycle_buf(struct shard *sh, unsigned bid);

#endif
