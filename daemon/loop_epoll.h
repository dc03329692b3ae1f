/*
 * The loop's operations run by readiness, for hosts where io_uring is
 * refused (container runtimes' default seccomp profiles: io_uring_setup
 * fails with EPERM; kernel.io_uring_disabled). The loop and its clients
 * still prepare io_uring SQEs (shard_sqe) and get io_uring CQEs
 * (op->cb(op, cqe)): nothing above the loop knows which backend runs.
 *
 * SQEs come from an array; at submit each is interpreted: the syscall is
 * tried without blocking and, when it would block, the op waits for its
 * fd's readiness in epoll (one EPOLLONESHOT registration per fd, re-armed
 * with the events its waiting ops need). Completions are queued and run
 * by loop_epoll_reap, never from inside a submit: an op that completes at
 * once when a callback submits it does not recurse into that callback.
 *
 * The vocabulary (what thaw's loop and its clients use), with io_uring's
 * results:
 *   ACCEPT: multishot (IORING_ACCEPT_MULTISHOT) completes once per
 *     connection with IORING_CQE_F_MORE; the listening fd is made
 *     non-blocking (other loops may share it);
 *   RECV, SEND: MSG_WAITALL honoured, else a short count completes (as
 *     io_uring's); RECV with IOSQE_BUFFER_SELECT takes the next buffer of
 *     the ring given to loop_epoll_provide, single or multishot
 *     (IORING_RECV_MULTISHOT, IORING_CQE_F_MORE until EOF, an error or
 *     -ENOBUFS), the buffer id in the CQE's flags as io_uring puts it;
 *   READ: pipes, eventfds, regular files (offset -1: the file position);
 *   CONNECT: 0 or -errno once the connection is made or refused;
 *   POLL_ADD: single shot, res = the ready events;
 *   TIMEOUT: CLOCK_MONOTONIC, relative or IORING_TIMEOUT_ABS, -ETIME when
 *     it fires (no completion count);
 *   ASYNC_CANCEL by user_data: the target completes -ECANCELED and the
 *     cancel 0, or the cancel -ENOENT;
 *   NOP; IOSQE_CQE_SKIP_SUCCESS.
 * Anything else completes with -EINVAL. An fd must stay open while an op
 * waits on it (the loop's clients shut a socket down and wait for their
 * ops before closing it, as io_uring needs too).
 */
#ifndef THAW_LOOP_EPOLL_H
#define THAW_LOOP_EPOLL_H

#include <liburing.h>
#include <stdint.h>

struct loop_epoll;

/* Makes the backend (its epoll fd). Returns 0 or -errno. */
int loop_epoll_new(struct loop_epoll **out);
/* Frees it; ops still waiting are dropped without completing. */
void loop_epoll_free(struct loop_epoll *ep);

/* A zeroed SQE, valid until the next submit; when the array is full the
 * SQEs before it are submitted first. Never NULL. */
struct io_uring_sqe *loop_epoll_sqe(struct loop_epoll *ep);
/* Starts the SQEs handed out so far, in order; completions are queued
 * (nothing is called back). Returns how many were started. */
unsigned loop_epoll_submit(struct loop_epoll *ep);
/* Submits, then waits for readiness until the earliest TIMEOUT op or
 * timeout_ns (-1: no limit), at once when completions are queued. Returns
 * 0 or -errno (-EINTR: a signal). */
int loop_epoll_wait(struct loop_epoll *ep, int64_t timeout_ns);
/* Calls fn with each completion queued before the call, oldest first
 * (those with user_data 0 too). Returns how many. */
typedef void (*loop_epoll_cqe_fn)(struct io_uring_cqe *cqe);
unsigned loop_epoll_reap(struct loop_epoll *ep, loop_epoll_cqe_fn fn);
/* Provided buffers for IOSQE_BUFFER_SELECT recv in group bgid: br is a
 * ring of entries (a power of two) that its owner fills and refills with
 * liburing's io_uring_buf_ring_add/advance, as for a registered ring; not
 * owned. */
void loop_epoll_provide(struct loop_epoll *ep, uint16_t bgid, struct io_uring_buf_ring *br,
			unsigned entries);
/* Ops started and not yet completed (the tests' view). */
unsigned loop_epoll_waiting(const struct loop_epoll *ep);

#endif
