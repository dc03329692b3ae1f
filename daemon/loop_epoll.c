#include "daemon/loop_epoll.h"
#include "common/mem.h"
#include "common/timer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SQ_ENTRIES 256
#define MAX_EVENTS 256
/* connections one multishot accept takes per readiness: the rest wait for
 * the next round, so one busy listener cannot starve the loop */
#define ACCEPT_BATCH 64
/* and receives one multishot recv makes per readiness */
#define RECV_BATCH 16

/* An op that would block: waits on its fd (or, a TIMEOUT, on the clock). */
struct wait {
	struct io_uring_sqe sqe;   /* the op as submitted */
	struct wait *fd_next;      /* next op on the same fd, or next timeout */
	struct wait *prev, *next;  /* every waiting op: what cancel searches */
	size_t done;               /* MSG_WAITALL: bytes moved so far */
	int64_t deadline;          /* TIMEOUT: CLOCK_MONOTONIC ns */
	bool connecting;           /* CONNECT in progress: SO_ERROR tells */
};

/* The ops waiting on one fd and what its epoll registration asks for. */
struct fdstate {
	struct wait *head;
	uint32_t armed;  /* events of the armed registration, 0 after it fired */
	bool added;      /* in the epoll set (may be stale after a close) */
};

struct cqe_rec {
	uint64_t user_data;
	int32_t res;
	uint32_t flags;
};

struct loop_epoll {
	int epfd;
	struct io_uring_sqe sq[SQ_ENTRIES];
	unsigned sq_n;
	struct fdstate *fds; /* indexed by fd */
	unsigned nfds;
	struct wait *all;      /* every waiting op, newest first */
	struct wait *timeouts; /* TIMEOUT ops, through fd_next */
	struct wait *free;     /* recycled records */
	unsigned n_waiting;
	struct cqe_rec *cq;
	unsigned cq_n, cq_cap;
	bool no_pwait2; /* epoll_pwait2 absent: millisecond waits */
	/* the provided-buffer ring (loop_epoll_provide): the owner adds at
	 * its tail, this backend takes at head, as the kernel would */
	struct io_uring_buf_ring *br;
	unsigned br_mask;
	uint16_t br_head, bgid;
};

int loop_epoll_new(struct loop_epoll **out)
{
	int fd = epoll_create1(EPOLL_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct loop_epoll *ep = xcalloc(1, sizeof(*ep));
	ep->epfd = fd;
	*out = ep;
	return 0;
}

void loop_epoll_free(struct loop_epoll *ep)
{
	if (!ep)
		return;
	for (struct wait *w = ep->all, *n; w; w = n) {
		n = w->next;
		free(w);
	}
	for (struct wait *w = ep->free, *n; w; w = n) {
		n = w->next;
		free(w);
	}
	close(ep->epfd);
	free(ep->fds);
	free(ep->cq);
	free(ep);
}

void loop_epoll_provide(struct loop_epoll *ep, uint16_t bgid, struct io_uring_buf_ring *br,
			unsigned entries)
{
	ep->br = br;
	ep->br_mask = entries - 1;
	ep->br_head = 0;
	ep->bgid = bgid;
}

unsigned loop_epoll_waiting(const struct loop_epoll *ep)
{
	return ep->n_waiting;
}

struct io_uring_sqe *loop_epoll_sqe(struct loop_epoll *ep)
{
	if (ep->sq_n == SQ_ENTRIES)
		loop_epoll_submit(ep);
	struct io_uring_sqe *sqe = &ep->sq[ep->sq_n++];
	memset(sqe, 0, sizeof(*sqe));
	return sqe;
}

/* --- completions ---------------------------------------------------------- */

static void post(struct loop_epoll *ep, const struct io_uring_sqe *sqe, int res, uint32_t flags)
{
	if ((sqe->flags & IOSQE_CQE_SKIP_SUCCESS) && res >= 0)
		return;
	if (ep->cq_n == ep->cq_cap) {
		ep->cq_cap = ep->cq_cap ? ep->cq_cap * 2 : 64;
		ep->cq = xrealloc(ep->cq, ep->cq_cap * sizeof(*ep->cq));
	}
	ep->cq[ep->cq_n++] = (struct cqe_rec){ sqe->user_data, res, flags };
}

unsigned loop_epoll_reap(struct loop_epoll *ep, loop_epoll_cqe_fn fn)
{
	/* callbacks may queue more (a full SQ array submits): those run next time */
	unsigned n = ep->cq_n;
	for (unsigned i = 0; i < n; i++) {
		struct cqe_rec r = ep->cq[i];
		struct io_uring_cqe cqe = { .user_data = r.user_data, .res = r.res, .flags = r.flags };
		fn(&cqe);
	}
	memmove(ep->cq, ep->cq + n, (ep->cq_n - n) * sizeof(*ep->cq));
	ep->cq_n -= n;
	return n;
}

/* --- trying an op --------------------------------------------------------- */

/* The events an op on an fd waits for. */
static uint32_t needs(const struct io_uring_sqe *sqe)
{
	switch (sqe->opcode) {
	case IORING_OP_SEND:
	case IORING_OP_CONNECT:
		return EPOLLOUT;
	case IORING_OP_POLL_ADD:
		return sqe->poll32_events & (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP);
	default:
		return EPOLLIN;
	}
}

/* Ready for events without blocking (pipes and eventfds have no
 * MSG_DONTWAIT; regular files are always ready). */
static int ready(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n = poll(&p, 1, 0);
	if (n < 0)
		return -errno;
	if (p.revents & POLLNVAL)
		return -EBADF;
	return n > 0 ? p.revents : 0;
}

static int try_read(struct wait *w)
{
	const struct io_uring_sqe *s = &w->sqe;
	int r = ready(s->fd, POLLIN);
	if (r <= 0)
		return r ? r : -EAGAIN;
	void *buf = (void *)(uintptr_t)s->addr;
	ssize_t n;
	do {
		if (s->off == (uint64_t)-1)
			n = read(s->fd, buf, s->len);
		else if ((n = pread(s->fd, buf, s->len, (off_t)s->off)) < 0 && errno == ESPIPE)
			n = read(s->fd, buf, s->len); /* pipes, eventfds: no offset */
	} while (n < 0 && errno == EINTR);
	return n < 0 ? (errno == EAGAIN ? -EAGAIN : -errno) : (int)n;
}

/* recv or send; MSG_WAITALL goes on until len (or EOF, or an error). */
static int try_xfer(struct wait *w)
{
	const struct io_uring_sqe *s = &w->sqe;
	char *buf = (char *)(uintptr_t)s->addr;
	bool all = s->msg_flags & MSG_WAITALL;
	int flags = (int)(s->msg_flags & ~(unsigned)MSG_WAITALL) | MSG_DONTWAIT;
	for (;;) {
		ssize_t n = s->opcode == IORING_OP_RECV
				    ? recv(s->fd, buf + w->done, s->len - w->done, flags)
				    : send(s->fd, buf + w->done, s->len - w->done, flags);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -EAGAIN;
		if (n < 0)
			return w->done ? (int)w->done : -errno;
		w->done += (size_t)n;
		if (!all || n == 0 || w->done == s->len)
			return (int)w->done;
	}
}

static int try_connect(struct wait *w)
{
	const struct io_uring_sqe *s = &w->sqe;
	if (w->connecting) {
		int r = ready(s->fd, POLLOUT);
		if (r <= 0)
			return r ? r : -EAGAIN;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			return -errno;
		return -err;
	}
	/* non-blocking for the call only: the fd stays as its owner made it,
	 * and a connection under way goes on either way */
	int fl = fcntl(s->fd, F_GETFL);
	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK))
		fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
	int ret = connect(s->fd, (const struct sockaddr *)(uintptr_t)s->addr, (socklen_t)s->off);
	int err = ret < 0 ? errno : 0;
	if (!(fl & O_NONBLOCK))
		fcntl(s->fd, F_SETFL, fl);
	if (err == EINPROGRESS || err == EALREADY) {
		w->connecting = true;
		return -EAGAIN;
	}
	return err == EAGAIN ? -EAGAIN : -err; /* EAGAIN (AF_UNIX backlog): try again */
}

static int try_poll(struct wait *w)
{
	short ev = (short)(w->sqe.poll32_events & 0xffff);
	int r = ready(w->sqe.fd, ev);
	if (r < 0)
		return r;
	r &= ev | POLLERR | POLLHUP;
	return r ? r : -EAGAIN;
}

/* One accept4, on a listening fd start() made non-blocking (another loop
 * may take the connection between readiness and accept). */
static int try_accept1(const struct io_uring_sqe *s)
{
	int fd;
	do
		fd = accept4(s->fd, (struct sockaddr *)(uintptr_t)s->addr,
			     (socklen_t *)(uintptr_t)s->addr2, (int)s->accept_flags);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? (errno == EWOULDBLOCK ? -EAGAIN : -errno) : fd;
}

/* RECV with IOSQE_BUFFER_SELECT into the provided ring's next buffer;
 * multishot (IORING_RECV_MULTISHOT) goes on with IORING_CQE_F_MORE until
 * EOF, an error or no buffer left (-ENOBUFS), as io_uring's. A buffer is
 * taken only for bytes received. */
static bool run_recv_select(struct loop_epoll *ep, struct wait *w)
{
	const struct io_uring_sqe *s = &w->sqe;
	bool multi = s->ioprio & IORING_RECV_MULTISHOT;
	int flags = (int)s->msg_flags | MSG_DONTWAIT;
	for (unsigned i = 0; i < RECV_BATCH; i++) {
		uint16_t tail = __atomic_load_n(&ep->br->tail, __ATOMIC_ACQUIRE);
		if (tail == ep->br_head) {
			/* as io_uring's: a buffer is picked when bytes (or EOF)
			 * come, so an empty ring fails only a readable socket */
			int r = ready(s->fd, POLLIN);
			if (!r)
				return false;
			post(ep, s, r < 0 ? r : -ENOBUFS, 0);
			return true;
		}
		struct io_uring_buf *b = &ep->br->bufs[ep->br_head & ep->br_mask];
		size_t len = s->len && s->len < b->len ? s->len : b->len;
		ssize_t n = recv(s->fd, (void *)(uintptr_t)b->addr, len, flags);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (n <= 0) {
			post(ep, s, n < 0 ? -errno : 0, 0);
			return true;
		}
		ep->br_head++;
		uint32_t cf = ((uint32_t)b->bid << IORING_CQE_BUFFER_SHIFT) | IORING_CQE_F_BUFFER;
		if (!multi) {
			post(ep, s, (int)n, cf);
			return true;
		}
		post(ep, s, (int)n, cf | IORING_CQE_F_MORE);
	}
	return false;
}

/* Runs w once more: true when it is over (its last completion queued),
 * false when it waits for its fd again. */
static bool run(struct loop_epoll *ep, struct wait *w)
{
	const struct io_uring_sqe *s = &w->sqe;
	int res;
	switch (s->opcode) {
	case IORING_OP_ACCEPT: {
		bool multi = s->ioprio & IORING_ACCEPT_MULTISHOT;
		for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
			res = try_accept1(s);
			if (res == -EAGAIN)
				return false;
			if (!multi || res < 0) {
				post(ep, s, res, 0);
				return true;
			}
			post(ep, s, res, IORING_CQE_F_MORE);
		}
		return false;
	}
	case IORING_OP_RECV:
		if (s->flags & IOSQE_BUFFER_SELECT)
			return run_recv_select(ep, w);
		res = try_xfer(w);
		break;
	case IORING_OP_SEND: res = try_xfer(w); break;
	case IORING_OP_READ: res = try_read(w); break;
	case IORING_OP_CONNECT: res = try_connect(w); break;
	case IORING_OP_POLL_ADD: res = try_poll(w); break;
	default: res = -EINVAL;
	}
	if (res == -EAGAIN)
		return false;
	post(ep, s, res, 0);
	return true;
}

/* --- waiting ---------------------------------------------------------------- */

static struct wait *wait_new(struct loop_epoll *ep, const struct wait *tmp)
{
	struct wait *w = ep->free;
	if (w)
		ep->free = w->next;
	else
		w = xmalloc(sizeof(*w));
	*w = *tmp;
	w->fd_next = NULL;
	w->prev = NULL;
	w->next = ep->all;
	if (ep->all)
		ep->all->prev = w;
	ep->all = w;
	ep->n_waiting++;
	return w;
}

/* Out of the list of all (its fd's list or the timeouts: the caller's). */
static void wait_free(struct loop_epoll *ep, struct wait *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		ep->all = w->next;
	if (w->next)
		w->next->prev = w->prev;
	ep->n_waiting--;
	w->next = ep->free;
	ep->free = w;
}

static struct fdstate *fdstate(struct loop_epoll *ep, int fd)
{
	if ((unsigned)fd >= ep->nfds) {
		unsigned n = ep->nfds ? ep->nfds : 64;
		while (n <= (unsigned)fd)
			n *= 2;
		ep->fds = xrealloc(ep->fds, n * sizeof(*ep->fds));
		memset(ep->fds + ep->nfds, 0, (n - ep->nfds) * sizeof(*ep->fds));
		ep->nfds = n;
	}
	return &ep->fds[fd];
}

static int ctl(struct loop_epoll *ep, int fd, struct fdstate *f, uint32_t events)
{
	struct epoll_event ev = { .events = events | EPOLLONESHOT, .data.fd = fd };
	int op = f->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	int ret = epoll_ctl(ep->epfd, op, fd, &ev);
	/* the fd number was closed and reused, or added by an owner before */
	if (ret < 0 && errno == ENOENT && op == EPOLL_CTL_MOD)
		ret = epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev);
	else if (ret < 0 && errno == EEXIST && op == EPOLL_CTL_ADD)
		ret = epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &ev);
	if (ret < 0)
		return -errno;
	f->added = true;
	f->armed = events;
	return 0;
}

/* Arms fd's registration for what its ops wait for; an fd epoll refuses
 * fails them. */
static void rearm(struct loop_epoll *ep, int fd)
{
	struct fdstate *f = &ep->fds[fd];
	uint32_t want = 0;
	for (struct wait *w = f->head; w; w = w->fd_next)
		want |= needs(&w->sqe);
	if (!f->head && f->armed) {
		/* nothing waits (cancelled): out of the set, so that a close and
		 * a new fd of the same number start clean */
		epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, NULL);
		f->added = false;
		f->armed = 0;
		return;
	}
	if (!f->head || (want & ~f->armed) == 0)
		return;
	int ret = ctl(ep, fd, f, want | f->armed);
	if (!ret)
		return;
	while (f->head) {
		struct wait *w = f->head;
		f->head = w->fd_next;
		post(ep, &w->sqe, ret, 0);
		wait_free(ep, w);
	}
}

static void wait_on_fd(struct loop_epoll *ep, struct wait *w)
{
	struct fdstate *f = fdstate(ep, w->sqe.fd);
	struct wait **pp = &f->head;
	while (*pp) /* in order: ops on one fd are retried oldest first */
		pp = &(*pp)->fd_next;
	*pp = w;
	rearm(ep, w->sqe.fd);
}

/* The fd is ready for events: its ops that wait for them run again. */
static void on_ready(struct loop_epoll *ep, int fd, uint32_t events)
{
	if ((unsigned)fd >= ep->nfds)
		return;
	struct fdstate *f = &ep->fds[fd];
	f->armed = 0; /* one shot: fired */
	for (struct wait **pp = &f->head; *pp;) {
		struct wait *w = *pp;
		if (!(events & (needs(&w->sqe) | EPOLLERR | EPOLLHUP)) || !run(ep, w)) {
			pp = &w->fd_next;
			continue;
		}
		*pp = w->fd_next;
		wait_free(ep, w);
	}
	rearm(ep, fd);
}

/* --- timeouts and cancel ------------------------------------------------------ */

static void start_timeout(struct loop_epoll *ep, const struct io_uring_sqe *s)
{
	const struct __kernel_timespec *ts = (const void *)(uintptr_t)s->addr;
	if (s->off || (s->timeout_flags & ~IORING_TIMEOUT_ABS) || !ts) {
		post(ep, s, -EINVAL, 0); /* completion counts, other clocks: not here */
		return;
	}
	int64_t at = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
	struct wait tmp = { .sqe = *s, .deadline = s->timeout_flags & IORING_TIMEOUT_ABS ? at : now_ns() + at };
	struct wait *w = wait_new(ep, &tmp);
	w->fd_next = ep->timeouts;
	ep->timeouts = w;
}

/* Fires the timeouts due at now; returns the earliest left, or -1. */
static int64_t expire(struct loop_epoll *ep, int64_t now)
{
	int64_t next = -1;
	for (struct wait **pp = &ep->timeouts; *pp;) {
		struct wait *w = *pp;
		if (w->deadline > now) {
			if (next < 0 || w->deadline < next)
				next = w->deadline;
			pp = &w->fd_next;
			continue;
		}
		*pp = w->fd_next;
		post(ep, &w->sqe, -ETIME, 0);
		wait_free(ep, w);
	}
	return next;
}

static int cancel(struct loop_epoll *ep, const struct io_uring_sqe *s)
{
	if (s->cancel_flags)
		return -EINVAL; /* by user_data, the first match: all the loop uses */
	struct wait *w = ep->all;
	while (w && w->sqe.user_data != s->addr)
		w = w->next;
	if (!w)
		return -ENOENT;
	int fd = w->sqe.fd;
	bool on_fd = w->sqe.opcode != IORING_OP_TIMEOUT;
	struct wait **pp = on_fd ? &ep->fds[fd].head : &ep->timeouts;
	while (*pp != w)
		pp = &(*pp)->fd_next;
	*pp = w->fd_next;
	post(ep, &w->sqe, -ECANCELED, 0);
	wait_free(ep, w);
	if (on_fd)
		rearm(ep, fd);
	return 0;
}

/* --- submit and wait ------------------------------------------------------------ */

static void start(struct loop_epoll *ep, const struct io_uring_sqe *s)
{
	switch (s->opcode) {
	case IORING_OP_NOP: post(ep, s, 0, 0); return;
	case IORING_OP_TIMEOUT: start_timeout(ep, s); return;
	case IORING_OP_ASYNC_CANCEL: post(ep, s, cancel(ep, s), 0); return;
	case IORING_OP_ACCEPT: {
		int fl = fcntl(s->fd, F_GETFL);
		if (fl >= 0 && !(fl & O_NONBLOCK))
			fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
		break;
	}
	case IORING_OP_RECV:
	case IORING_OP_SEND:
	case IORING_OP_READ:
	case IORING_OP_CONNECT:
	case IORING_OP_POLL_ADD: break;
	default: post(ep, s, -EINVAL, 0); return;
	}
	/* provided buffers only for recv from the group given; no fixed files,
	 * multishot poll, links */
	bool select = s->flags & IOSQE_BUFFER_SELECT;
	if (select && (s->opcode != IORING_OP_RECV || !ep->br || s->buf_group != ep->bgid)) {
		post(ep, s, -ENOBUFS, 0); /* io_uring's answer for an unknown group */
		return;
	}
	if (s->fd < 0 || (s->flags & ~(IOSQE_CQE_SKIP_SUCCESS | IOSQE_BUFFER_SELECT)) ||
	    (s->opcode != IORING_OP_ACCEPT && s->ioprio &&
	     !(select && s->ioprio == IORING_RECV_MULTISHOT)) ||
	    (s->opcode == IORING_OP_POLL_ADD && s->len)) {
		post(ep, s, s->fd < 0 ? -EBADF : -EINVAL, 0);
		return;
	}
	struct wait tmp = { .sqe = *s };
	if (!run(ep, &tmp))
		wait_on_fd(ep, wait_new(ep, &tmp));
}

unsigned loop_epoll_submit(struct loop_epoll *ep)
{
	unsigned n = 0;
	/* a TIMEOUT or CANCEL refers to what came before it: in order */
	while (n < ep->sq_n) {
		struct io_uring_sqe s = ep->sq[n++];
		start(ep, &s);
	}
	ep->sq_n = 0;
	return n;
}

int loop_epoll_wait(struct loop_epoll *ep, int64_t timeout_ns)
{
	loop_epoll_submit(ep);
	int64_t now = now_ns();
	int64_t next = expire(ep, now);
	int64_t wait = timeout_ns;
	if (next >= 0 && (wait < 0 || next - now < wait))
		wait = next - now;
	if (ep->cq_n)
		wait = 0;
	struct epoll_event ev[MAX_EVENTS];
	int n = -1;
	if (!ep->no_pwait2) {
		struct timespec ts = { wait / 1000000000, wait % 1000000000 };
		n = epoll_pwait2(ep->epfd, ev, MAX_EVENTS, wait < 0 ? NULL : &ts, NULL);
		if (n < 0 && (errno == ENOSYS || errno == EPERM))
			ep->no_pwait2 = true; /* before 5.11, or a seccomp profile's */
	}
	if (ep->no_pwait2) /* rounded up: a timer never fires early */
		n = epoll_wait(ep->epfd, ev, MAX_EVENTS, wait < 0 ? -1 : (int)((wait + 999999) / 1000000));
	int err = n < 0 ? errno : 0;
	for (int i = 0; i < n; i++)
		on_ready(ep, ev[i].data.fd, ev[i].events);
	expire(ep, now_ns());
	return n < 0 ? -err : 0;
}
