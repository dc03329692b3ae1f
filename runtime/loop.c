#define LOG_PREFIX "loop: "
#include "loop.h"
#include "conn.h"
#include "jobs.h"
#include "log.h"
#include "mem.h"
#include "pool.h"
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RING_ENTRIES 4096
#define BUF_GROUP 1
#define NBUFS 1024
#define BUF_SIZE 16384

struct io_uring_sqe *shard_sqe(struct shard *sh)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
	while (!sqe) {
		io_uring_submit(&sh->ring);
		sqe = io_uring_get_sqe(&sh->ring);
	}
	return sqe;
}

static int listen_socket(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(server.opt.port) };
	if (inet_pton(AF_INET, server.opt.listen, &a.sin_addr) != 1) {
		pr_err("--listen %s: not an IPv4 address", server.opt.listen);
		return -EINVAL;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
		int err = -errno;
		pr_perror("listen on %s:%u", server.opt.listen, server.opt.port);
		close(fd);
		return err;
	}
	return fd;
}

/* Provided buffers let one multishot recv serve every connection without a
 * buffer per idle connection; kernels before 5.19 fall back to plain recv. */
static void setup_buf_ring(struct shard *sh)
{
	sh->nbufs = NBUFS;
	sh->buf_size = BUF_SIZE;
	size_t ring_bytes = sh->nbufs * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED)
		return;
	struct io_uring_buf_reg reg = { .ring_addr = (uint64_t)(uintptr_t)mem,
					.ring_entries = sh->nbufs,
					.bgid = BUF_GROUP };
	if (io_uring_register_buf_ring(&sh->ring, &reg, 0) < 0) {
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

int shard_init(struct shard *sh, unsigned id)
{
	memset(sh, 0, sizeof(*sh));
	sh->id = id;
	sh->timeout_at = -1;
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
	for (unsigned i = 0; i < 3 && ret == -EINVAL; i++) {
		struct io_uring_params p = { .flags = flag_sets[i] };
		ret = io_uring_queue_init_params(RING_ENTRIES, &sh->ring, &p);
		sh->ring_disabled = i == 0;
	}
	if (ret < 0) {
		pr_err("io_uring_queue_init: %s", strerror(-ret));
		return ret;
	}
	sh->listen_fd = listen_socket();
	if (sh->listen_fd < 0) {
		ret = sh->listen_fd;
		io_uring_queue_exit(&sh->ring);
		return ret;
	}
	sh->wake_fd = eventfd(0, EFD_CLOEXEC);
	pthread_mutex_init(&sh->done_lock, NULL);
	setup_buf_ring(sh);
	return 0;
}

static void arm_accept(struct shard *sh)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_multishot_accept(sqe, sh->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, OP_DATA(sh, OP_ACCEPT));
	sh->accept_armed = true;
}

static void arm_wake(struct shard *sh)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_read(sqe, sh->wake_fd, &sh->wake_val, sizeof(sh->wake_val), 0);
	io_uring_sqe_set_data64(sqe, OP_DATA(sh, OP_WAKE));
}

static void accept_resume(struct timer *t)
{
	struct shard *sh = (struct shard *)((char *)t - offsetof(struct shard, accept_timer));
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

static void on_accept(struct shard *sh, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		sh->accept_armed = false;
	if (cqe->res < 0) {
		if (cqe->res != -EINTR && cqe->res != -ECONNABORTED)
			accept_failed(sh, cqe->res);
		return;
	}
	sh->accept_backoff_ms = 0;
	int fd = cqe->res;
	unsigned total = 0;
	for (unsigned i = 0; i < server.n_shards; i++)
		total += server.shards[i]->n_conns;
	if (total >= server.opt.max_connections) {
		static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: "
					   "application/json\r\ncontent-length: 39\r\nconnection: "
					   "close\r\n\r\n{\"error\": \"too many open connections\"}";
		ssize_t r = send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)r;
		close(fd);
		atomic_fetch_add(&server.metrics.http_errors[503], 1);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_accept(sh, fd);
}

/* SIGTERM: stop accepting; the loop ends once nothing is under way here. */
static void start_drain(struct shard *sh)
{
	sh->draining = true;
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_cancel64(sqe, OP_DATA(sh, OP_ACCEPT), 0);
	io_uring_sqe_set_data64(sqe, 0);
	shutdown(sh->listen_fd, SHUT_RD);
}

static void check_drained(struct shard *sh)
{
	bool queued = false;
	for (unsigned i = 0, n = atomic_load(&server.n_functions); i < n && !queued; i++)
		queued = sh->pools[i] && sh->pools[i]->q_len;
	if (!sh->n_active && !queued) {
		sh->drained_reported = true;
		atomic_fetch_add(&server.drained, 1);
	}
}

static void tick(struct timer *t)
{
	struct shard *sh = (struct shard *)((char *)t - offsetof(struct shard, tick));
	int64_t now = now_ns();
	for (unsigned i = 0, n = atomic_load(&server.n_functions); i < n; i++)
		if (sh->pools[i])
			pool_tick(sh->pools[i], now);
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
	io_uring_sqe_set_data64(sqe, OP_DATA(sh, OP_TIMEOUT));
}

static void dispatch(struct shard *sh, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	if (!ud)
		return;
	void *ptr = (void *)(uintptr_t)(ud & ~OP_TAG_MASK);
	switch ((enum op_tag)(ud & OP_TAG_MASK)) {
	case OP_TIMEOUT:
		/* any completion of an armed timeout (fired or not) frees its slot */
		sh->timeout_at = -1;
		break;
	case OP_ACCEPT:
		on_accept(sh, cqe);
		break;
	case OP_CONN_RECV:
		conn_on_recv(ptr, cqe);
		break;
	case OP_CONN_SEND:
		conn_on_send(ptr, cqe->res);
		break;
	case OP_INST_RECV:
		instance_on_recv(ptr, cqe->res);
		break;
	case OP_INST_SEND:
		instance_on_send(ptr, cqe->res);
		break;
	case OP_INST_LOG:
		instance_on_log(ptr, cqe->res);
		break;
	case OP_PROXY_CONNECT:
		proxy_on_connect(ptr, cqe->res);
		break;
	case OP_PROXY_SEND:
		proxy_on_send(ptr, cqe->res);
		break;
	case OP_PROXY_RECV:
		proxy_on_recv(ptr, cqe->res);
		break;
	case OP_PROXY_CLIENT_SEND:
		proxy_on_client_send(ptr, cqe->res);
		break;
	case OP_WAKE:
		jobs_complete(sh);
		if (atomic_load(&server.stopping))
			sh->stopping = true;
		else
			arm_wake(sh);
		if (atomic_load(&server.draining) && !sh->draining)
			start_drain(sh);
		break;
	}
}

static void reap_cqes(struct shard *sh)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&sh->ring, head, cqe)
	{
		dispatch(sh, cqe);
		n++;
	}
	io_uring_cq_advance(&sh->ring, n);
}

/* Closes every connection and instance, then runs the ring until their
 * operations have completed and their memory is freed (at most 2 s). */
static void shutdown_all(struct shard *sh)
{
	for (unsigned i = 0, n = atomic_load(&server.n_functions); i < n; i++)
		if (sh->pools[i])
			pool_shutdown(sh->pools[i]);
	for (struct conn *c = sh->conns, *next; c; c = next) {
		next = c->next_conn;
		conn_close(c);
	}
	int64_t end = now_ns() + 2000000000LL;
	while ((sh->n_conns || sh->n_instances) && now_ns() < end) {
		struct __kernel_timespec ts = { 0, 50000000 };
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
		reap_cqes(sh);
		jobs_complete(sh); /* restores finishing now are stopped at once */
	}
	if (sh->n_conns || sh->n_instances)
		pr_warn("loop %u: %u connections and %u instances still closing at exit", sh->id,
			sh->n_conns, sh->n_instances);
	for (unsigned i = 0, n = atomic_load(&server.n_functions); i < n; i++)
		if (sh->pools[i]) {
			pool_free(sh->pools[i]);
			sh->pools[i] = NULL;
		}
}

void *shard_main(void *arg)
{
	struct shard *sh = arg;
	/* Debian's liburing 2.3 declares io_uring_enable_rings but lacks it */
	if (sh->ring_disabled &&
	    syscall(__NR_io_uring_register, sh->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
		pr_perror("enabling the ring");
	arm_accept(sh);
	arm_wake(sh);
	timer_set(&sh->timers, &sh->tick, now_ns() + 1000000000LL, tick);
	/* shard 0 warms each function's serving version, and a newer one that
	 * was still starting when the daemon stopped (it takes over once ready) */
	for (unsigned i = 0; sh->id == 0 && i < atomic_load(&server.n_names); i++) {
		struct fn_name *nm = server.names[i];
		struct function *cur = atomic_load(&nm->current);
		struct function *last = fn_name_newest(nm);
		if (atomic_load(&nm->removed))
			continue;
		if (cur)
			pool_warm(pool_get(sh, cur));
		if (last != cur && atomic_load(&last->state) == FN_STARTING)
			pool_warm(pool_get(sh, last));
	}
	while (!sh->stopping) {
		if (!sh->accept_armed && !sh->accept_paused && !sh->draining)
			arm_accept(sh);
		if (sh->draining && !sh->drained_reported)
			check_drained(sh);
		arm_timeout(sh);
		int ret = io_uring_submit_and_wait(&sh->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY) {
			pr_err("io_uring_submit_and_wait: %s", strerror(-ret));
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
	io_uring_queue_exit(&sh->ring);
	timer_heap_free(&sh->timers);
	free(sh->bufs);
}
