#define LOG_PREFIX "loop: "
#include "daemon/loop.h"
#include "daemon/loop_epoll.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RING_ENTRIES 4096
#define BUF_GROUP 1
#define NBUFS 1024
#define BUF_SIZE 16384

_Thread_local struct shard *shard_self;
static struct shard_hooks hooks;
/* IORING_OP_MSG_RING works here (probed by the first shard_init) */
static int have_msg_ring = -1;
/* set before the loops start; AUTO turns into what the first shard got */
static enum loop_backend backend = LOOP_AUTO;

void loop_set_backend(enum loop_backend b)
{
	backend = b;
}

const char *loop_backend_name(void)
{
	return backend == LOOP_EPOLL ? "epoll" : "io_uring";
}

int loop_backend_parse(const char *s, enum loop_backend *out)
{
	if (!strcmp(s, "io_uring"))
		*out = LOOP_IO_URING;
	else if (!strcmp(s, "epoll"))
		*out = LOOP_EPOLL;
	else if (!strcmp(s, "auto"))
		*out = LOOP_AUTO;
	else
		return -EINVAL;
	return 0;
}

void shard_set_hooks(const struct shard_hooks *h)
{
	hooks = *h;
}

struct io_uring_sqe *shard_sqe(struct shard *sh)
{
	if (sh->ep)
		return loop_epoll_sqe(sh->ep);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
	while (!sqe) {
		io_uring_submit(&sh->ring);
		sqe = io_uring_get_sqe(&sh->ring);
	}
	return sqe;
}

static void shard_wake(struct shard *sh)
{
	uint64_t one = 1;
	if (write(sh->wake_fd, &one, sizeof(one)) < 0)
		pr_perror("waking loop %u", sh->id);
}

static void post_locked(struct shard *to, struct loop_op *op, int res)
{
	op->res = res;
	pthread_mutex_lock(&to->post_lock);
	op->next = to->posted;
	to->posted = op;
	pthread_mutex_unlock(&to->post_lock);
	shard_wake(to);
}

/* user_data of our own completion of a MSG_RING: the op, tagged. Only a
 * failure completes (IOSQE_CQE_SKIP_SUCCESS): then the list takes it. */
#define POST_TAG 1u

void shard_post(struct shard *to, struct loop_op *op, int res)
{
	struct shard *from = shard_self;
	op->post_to = to;
	if (!from || from == to || !have_msg_ring || from->ep || to->ep) {
		post_locked(to, op, res);
		return;
	}
	struct io_uring_sqe *sqe = shard_sqe(from);
	io_uring_prep_msg_ring(sqe, to->ring.ring_fd, (unsigned)res, (uint64_t)(uintptr_t)op, 0);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	op->res = res;
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | POST_TAG);
}

/* Ops posted through the list, oldest first. */
void shard_run_posted(struct shard *sh)
{
	pthread_mutex_lock(&sh->post_lock);
	struct loop_op *op = sh->posted, *rev = NULL;
	sh->posted = NULL;
	pthread_mutex_unlock(&sh->post_lock);
	while (op) {
		struct loop_op *next = op->next;
		op->next = rev;
		rev = op;
		op = next;
	}
	for (op = rev; op;) {
		struct loop_op *next = op->next;
		struct io_uring_cqe cqe = { .user_data = (uint64_t)(uintptr_t)op, .res = op->res };
		op->cb(op, &cqe);
		op = next;
	}
}

static void probe_msg_ring(struct io_uring *ring)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	have_msg_ring = p && io_uring_opcode_supported(p, IORING_OP_MSG_RING);
	if (p)
		io_uring_free_probe(p);
	if (!have_msg_ring)
		pr_info("no IORING_OP_MSG_RING: loops hand work over through an eventfd");
}

/* Provided buffers let one multishot recv serve every connection without a
 * buffer per idle connection; kernels before 5.19 fall back to plain recv.
 * The epoll backend takes buffers from the same ring, unregistered. */
static void setup_buf_ring(struct shard *sh)
{
	const char *e = getenv("THAW_BUF_RING"); /* "0": the old kernels' path, for tests */
	if (e && !strcmp(e, "0")) {
		pr_info("provided buffer rings off (THAW_BUF_RING=0): single-shot recv");
		return;
	}
	sh->nbufs = NBUFS;
	sh->buf_size = BUF_SIZE;
	size_t ring_bytes = sh->nbufs * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED)
		return;
	struct io_uring_buf_reg reg = { .ring_addr = (uint64_t)(uintptr_t)mem,
					.ring_entries = sh->nbufs,
					.bgid = BUF_GROUP };
	if (sh->ep)
		loop_epoll_provide(sh->ep, BUF_GROUP, mem, sh->nbufs);
	else if (io_uring_register_buf_ring(&sh->ring, &reg, 0) < 0) {
		munmap(mem, ring_bytes);
		pr_info("provided buffer rings unavailable: single-shot recv");
		return;
	}
	sh->br = mem;
	io_uring_buf_ring_init(sh->br);
	sh->bufs = xmalloc((size_t)sh->nbufs * sh->buf_size);
	for (unsigned i = 0; i < sh->nbufs; i++)
		io_uring_buf_ring_add(sh->br, sh->bufs + (size_t)i * sh->buf_size, sh->buf_size, i,
				      io_uring_buf_ring_mask(sh->nbufs), (int)i);
	io_uring_buf_ring_advance(sh->br, (int)sh->nbufs);
	sh->use_buf_ring = true;
}

void shard_recycle_buf(struct shard *sh, unsigned bid)
{
	io_uring_buf_ring_add(sh->br, sh->bufs + (size_t)bid * sh->buf_size, sh->buf_size, bid,
			      io_uring_buf_ring_mask(sh->nbufs), 0);
	io_uring_buf_ring_advance(sh->br, 1);
}

static void on_accept(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_accept2(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_wake(struct loop_op *op, struct io_uring_cqe *cqe);
static void on_timeout(struct loop_op *op, struct io_uring_cqe *cqe);

int shard_init(struct shard *sh, unsigned id, int listen_fd)
{
	memset(sh, 0, sizeof(*sh));
	sh->id = id;
	sh->timeout_at = -1;
	sh->listen_fd = listen_fd;
	sh->accept_op.cb = on_accept;
	sh->accept2_op.cb = on_accept2;
	sh->listen2_fd = -1;
	sh->wake_op.cb = on_wake;
	sh->timeout_op.cb = on_timeout;
	/* one thread submits and reaps: completions run only when it waits
	 * (6.1+); fall back flag by flag on older kernels */
	static const unsigned flag_sets[] = {
		/* disabled until the loop thread enables it: it is the single issuer */
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			IORING_SETUP_R_DISABLED,
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;
	for (unsigned i = 0; i < 3 && ret == -EINVAL && backend != LOOP_EPOLL; i++) {
		struct io_uring_params p = { .flags = flag_sets[i] };
		ret = io_uring_queue_init_params(RING_ENTRIES, &sh->ring, &p);
		sh->ring_disabled = i == 0;
	}
	if (backend == LOOP_AUTO && (ret == -EPERM || ret == -EACCES || ret == -ENOSYS)) {
		pr_warn("io_uring_setup: %s (a seccomp profile, kernel.io_uring_disabled or an old "
			"kernel): the loops run on epoll",
			strerror(-ret));
		backend = LOOP_EPOLL;
	} else if (backend == LOOP_EPOLL && id == 0) {
		pr_info("the loops run on epoll, as asked (--loop epoll or THAW_LOOP=epoll)");
	}
	if (backend == LOOP_EPOLL) {
		sh->ring_disabled = false;
		ret = loop_epoll_new(&sh->ep);
		if (ret < 0)
			pr_err("epoll_create1: %s", strerror(-ret));
	} else if (ret < 0) {
		pr_err("io_uring_queue_init: %s", strerror(-ret));
	} else if (backend == LOOP_AUTO) {
		backend = LOOP_IO_URING;
	}
	if (ret < 0) {
		close(listen_fd);
		return ret;
	}
	if (!sh->ep && have_msg_ring < 0)
		probe_msg_ring(&sh->ring);
	sh->wake_fd = eventfd(0, EFD_CLOEXEC);
	pthread_mutex_init(&sh->post_lock, NULL);
	setup_buf_ring(sh);
	return 0;
}

static void arm_accept(struct shard *sh)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_multishot_accept(sqe, sh->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	loop_op_prep(sqe, &sh->accept_op);
	sh->accept_armed = true;
}

static void arm_accept2(struct shard *sh)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_multishot_accept(sqe, sh->listen2_fd, NULL, NULL, SOCK_CLOEXEC);
	loop_op_prep(sqe, &sh->accept2_op);
	sh->accept2_armed = true;
}

static void arm_wake(struct shard *sh)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_read(sqe, sh->wake_fd, &sh->wake_val, sizeof(sh->wake_val), 0);
	loop_op_prep(sqe, &sh->wake_op);
}

static void accept_resume(struct timer *t)
{
	struct shard *sh = container_of(t, struct shard, accept_timer);
	sh->accept_paused = false; /* the loop re-arms it */
}

/* Out of fds (EMFILE, ENFILE) or memory: waiting clients stay in the
 * backlog while the loop waits 10 ms, doubling to 1 s, and says so once
 * per 10 s. */
static void accept_failed(struct shard *sh, int err)
{
	bool resource = err == -EMFILE || err == -ENFILE || err == -ENOMEM || err == -ENOBUFS;
	int64_t now = now_ns();
	sh->accept_unlogged++;
	if (now - sh->accept_warned_ns >= 10000000000LL) {
		pr_warn("accept: %s (%u time(s) in the last 10 s)%s", strerror(-err),
			sh->accept_unlogged,
			resource ? "; new connections wait: raise the open file limit or lower "
				   "--max-connections" : "");
		sh->accept_warned_ns = now;
		sh->accept_unlogged = 0;
	}
	if (!resource || sh->accept_armed)
		return;
	sh->accept_backoff_ms = sh->accept_backoff_ms ? sh->accept_backoff_ms * 2 : 10;
	if (sh->accept_backoff_ms > 1000)
		sh->accept_backoff_ms = 1000;
	sh->accept_paused = true;
	timer_set(&sh->timers, &sh->accept_timer, now + (int64_t)sh->accept_backoff_ms * 1000000,
		  accept_resume);
}

static void on_accept(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct shard *sh = container_of(op, struct shard, accept_op);
	if (!(cqe->flags & IORING_CQE_F_MORE))
		sh->accept_armed = false;
	if (cqe->res < 0) {
		/* -ECANCELED: start_drain's cancel, not a failure */
		if (cqe->res != -EINTR && cqe->res != -ECONNABORTED &&
		    !(cqe->res == -ECANCELED && sh->draining))
			accept_failed(sh, cqe->res);
		return;
	}
	sh->accept_backoff_ms = 0;
	hooks.accept(sh, cqe->res);
}

static void on_accept2(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct shard *sh = container_of(op, struct shard, accept2_op);
	if (!(cqe->flags & IORING_CQE_F_MORE))
		sh->accept2_armed = false;
	if (cqe->res < 0) {
		if (cqe->res != -EINTR && cqe->res != -ECONNABORTED && cqe->res != -EAGAIN &&
		    !(cqe->res == -ECANCELED && sh->draining))
			pr_warn("accept: %s", strerror(-cqe->res));
		return;
	}
	hooks.accept(sh, cqe->res);
}

/* Drain: stop accepting; report once nothing is under way here. */
static void start_drain(struct shard *sh)
{
	sh->draining = true;
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_cancel(sqe, &sh->accept_op, 0);
	io_uring_sqe_set_data64(sqe, 0);
	shutdown(sh->listen_fd, SHUT_RD);
	if (sh->listen2_fd >= 0) { /* shared: only stop this loop's accept */
		sqe = shard_sqe(sh);
		io_uring_prep_cancel(sqe, &sh->accept2_op, 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
}

void shard_drain(struct shard *sh, atomic_uint *drained)
{
	sh->drained = drained;
	atomic_store(&sh->drain_req, true);
	shard_wake(sh);
}

void shard_stop(struct shard *sh)
{
	atomic_store(&sh->stop_req, true);
	shard_wake(sh);
}

static void on_wake(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct shard *sh = container_of(op, struct shard, wake_op);
	(void)cqe;
	shard_run_posted(sh);
	if (atomic_load(&sh->stop_req))
		sh->stopping = true;
	else
		arm_wake(sh);
	if (atomic_load(&sh->drain_req) && !sh->draining)
		start_drain(sh);
}

static void on_timeout(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct shard *sh = container_of(op, struct shard, timeout_op);
	(void)cqe;
	/* any completion of an armed timeout (fired or not) frees its slot */
	sh->timeout_at = -1;
}

static void tick(struct timer *t)
{
	struct shard *sh = container_of(t, struct shard, tick);
	int64_t now = now_ns();
	hooks.tick(sh, now);
	timer_set(&sh->timers, &sh->tick, now + 1000000000LL, tick);
}

/* Keeps one io_uring timeout armed for the earliest timer. */
static void arm_timeout(struct shard *sh)
{
	int64_t next = timer_next(&sh->timers);
	if (next < 0 || next == sh->timeout_at)
		return;
	if (sh->timeout_at >= 0 && sh->timeout_at <= next)
		return; /* the armed one fires first and re-arms */
	sh->timeout_at = next;
	sh->timeout_ts.tv_sec = next / 1000000000;
	sh->timeout_ts.tv_nsec = next % 1000000000;
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_timeout(sqe, &sh->timeout_ts, 0, IORING_TIMEOUT_ABS);
	loop_op_prep(sqe, &sh->timeout_op);
}

static void run_cqe(struct io_uring_cqe *cqe)
{
	struct loop_op *op = (struct loop_op *)(uintptr_t)cqe->user_data;
	if (op)
		op->cb(op, cqe);
}

static void reap_cqes(struct shard *sh)
{
	if (sh->ep) { /* no MSG_RING there: no tagged user_data */
		loop_epoll_reap(sh->ep, run_cqe);
		return;
	}
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&sh->ring, head, cqe)
	{
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		struct loop_op *op = (struct loop_op *)(uintptr_t)(ud & ~(uint64_t)POST_TAG);
		if (ud & POST_TAG) /* a post that did not go through: the slow way */
			post_locked(op->post_to, op, op->res);
		else if (op)
			op->cb(op, cqe);
		n++;
	}
	io_uring_cq_advance(&sh->ring, n);
}

/* Closes everything through the hook, then runs the ring until nothing
 * of it is left (at most 2 s): other loops may still hand work back. */
static void shutdown_all(struct shard *sh)
{
	hooks.shutdown(sh);
	int64_t end = now_ns() + 2000000000LL;
	while (hooks.alive(sh) && now_ns() < end) {
		struct __kernel_timespec ts = { 0, 20000000 };
		struct io_uring_cqe *cqe;
		if (sh->ep)
			loop_epoll_wait(sh->ep, 20000000);
		else
			io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
		reap_cqes(sh);
		shard_run_posted(sh); /* restores finishing now are stopped at once */
		timer_run(&sh->timers, now_ns());
	}
	if (hooks.alive(sh))
		pr_warn("loop %u: %u connections and %u instances still closing at exit", sh->id,
			sh->n_conns, sh->n_instances);
}

void *shard_main(void *arg)
{
	struct shard *sh = arg;
	shard_self = sh;
	/* Debian's liburing 2.3 declares io_uring_enable_rings but lacks it */
	if (sh->ring_disabled &&
	    syscall(__NR_io_uring_register, sh->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
		pr_perror("enabling the ring");
	arm_accept(sh);
	arm_wake(sh);
	timer_set(&sh->timers, &sh->tick, now_ns() + 1000000000LL, tick);
	hooks.start(sh);
	while (!sh->stopping) {
		if (!sh->accept_armed && !sh->accept_paused && !sh->draining)
			arm_accept(sh);
		if (sh->listen2_fd >= 0 && !sh->accept2_armed && !sh->draining)
			arm_accept2(sh);
		if (sh->draining && !sh->drained_reported && !hooks.active(sh)) {
			sh->drained_reported = true;
			atomic_fetch_add(sh->drained, 1);
		}
		arm_timeout(sh);
		int ret = sh->ep ? loop_epoll_wait(sh->ep, -1) : io_uring_submit_and_wait(&sh->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY) {
			pr_err("%s: %s", sh->ep ? "epoll_wait" : "io_uring_submit_and_wait", strerror(-ret));
			break;
		}
		reap_cqes(sh);
		timer_run(&sh->timers, now_ns());
	}
	shutdown_all(sh);
	return NULL;
}

void shard_fini(struct shard *sh)
{
	close(sh->listen_fd);
	close(sh->wake_fd);
	if (sh->ep)
		loop_epoll_free(sh->ep);
	else
		io_uring_queue_exit(&sh->ring);
	timer_heap_free(&sh->timers);
	free(sh->bufs);
}
