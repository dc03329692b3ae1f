/* Unit tests for daemon/loop_epoll.c: the loop's io_uring operations run by
 * readiness where io_uring is refused. Each case checks one io_uring
 * result the loop's clients rely on, on real sockets, pipes and clocks. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/timer.h"
#include "daemon/loop.h"
#include "daemon/loop_epoll.h"

#define MAXREC 64

/* An op that records its completions. */
struct rec {
	struct loop_op op;
	int n;
	int res[MAXREC];
	uint32_t flags[MAXREC];
};

static void record(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct rec *r = container_of(op, struct rec, op);
	if (r->n < MAXREC) {
		r->res[r->n] = cqe->res;
		r->flags[r->n] = cqe->flags;
	}
	r->n++;
}

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	r->op.cb = record;
}

/* What loop.c does with a completion: user_data is the op. */
static void run_cqe(struct io_uring_cqe *cqe)
{
	struct loop_op *op = (struct loop_op *)(uintptr_t)cqe->user_data;
	if (op)
		op->cb(op, cqe);
}

/* Runs the loop until r has n completions, at most 2 s. */
static void run_until(struct loop_epoll *ep, struct rec *r, int n)
{
	int64_t end = now_ns() + 2000000000LL;
	while (r->n < n && now_ns() < end) {
		loop_epoll_wait(ep, 20000000);
		loop_epoll_reap(ep, run_cqe);
	}
}

/* Runs the loop for ms milliseconds. */
static void run_for(struct loop_epoll *ep, int ms)
{
	int64_t end = now_ns() + (int64_t)ms * 1000000;
	while (now_ns() < end) {
		loop_epoll_wait(ep, 5000000);
		loop_epoll_reap(ep, run_cqe);
	}
}

static struct loop_epoll *new_ep(void)
{
	struct loop_epoll *ep;
	assert_int_equal(loop_epoll_new(&ep), 0);
	return ep;
}

static void prep_recv(struct loop_epoll *ep, int fd, void *buf, size_t len, int flags, struct rec *r)
{
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_recv(sqe, fd, buf, len, flags);
	loop_op_prep(sqe, &r->op);
}

static void prep_cancel(struct loop_epoll *ep, struct loop_op *target, struct rec *r)
{
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_cancel(sqe, target, 0);
	loop_op_prep(sqe, r ? &r->op : NULL);
}

static void test_recv_waits_for_data_then_completes(void **state)
{
	(void)state;
	struct loop_epoll *ep = new_ep();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct rec r;
	rec_init(&r);
	char buf[16];
	prep_recv(ep, sv[0], buf, sizeof(buf), 0, &r);
	run_for(ep, 30);
	assert_int_equal(r.n, 0);
	assert_int_equal(loop_epoll_waiting(ep), 1);
	assert_int_equal(write(sv[1], "hello", 5), 5);
	run_until(ep, &r, 1);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.res[0], 5);
	assert_memory_equal(buf, "hello", 5);
	/* MSG_WAITALL: one completion, when all of len came */
	rec_init(&r);
	prep_recv(ep, sv[0], buf, 6, MSG_WAITALL, &r);
	assert_int_equal(write(sv[1], "abc", 3), 3);
	run_for(ep, 30);
	assert_int_equal(r.n, 0);
	assert_int_equal(write(sv[1], "def", 3), 3);
	run_until(ep, &r, 1);
	assert_int_equal(r.res[0], 6);
	assert_memory_equal(buf, "abcdef", 6);
	/* EOF: 0 */
	rec_init(&r);
	prep_recv(ep, sv[0], buf, sizeof(buf), 0, &r);
	shutdown(sv[1], SHUT_WR);
	run_until(ep, &r, 1);
	assert_int_equal(r.res[0], 0);
	assert_int_equal(loop_epoll_waiting(ep), 0);
	close(sv[0]);
	close(sv[1]);
	loop_epoll_free(ep);
}

/* io_uring's send completes with the count sent, short when the socket
 * takes less; a send to a full socket waits until the peer reads. */
static void test_send_short_completes_with_count_sent(void **state)
{
	(void)state;
	struct loop_epoll *ep = new_ep();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	size_t len = 4u << 20;
	char *big = calloc(1, len);
	struct rec r;
	rec_init(&r);
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_send(sqe, sv[0], big, len, MSG_NOSIGNAL);
	loop_op_prep(sqe, &r.op);
	run_until(ep, &r, 1);
	assert_int_equal(r.n, 1);
	assert_true(r.res[0] > 0 && (size_t)r.res[0] < len);
	/* the socket is full now: the next send waits */
	rec_init(&r);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_send(sqe, sv[0], big, len, MSG_NOSIGNAL);
	loop_op_prep(sqe, &r.op);
	run_for(ep, 30);
	assert_int_equal(r.n, 0);
	char sink[65536];
	while (read(sv[1], sink, sizeof(sink)) == (ssize_t)sizeof(sink) && r.n == 0) {
		loop_epoll_wait(ep, 0);
		loop_epoll_reap(ep, run_cqe);
	}
	run_until(ep, &r, 1);
	assert_int_equal(r.n, 1);
	assert_true(r.res[0] > 0 && (size_t)r.res[0] < len);
	/* the peer gone: -EPIPE */
	close(sv[1]);
	rec_init(&r);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_send(sqe, sv[0], big, len, MSG_NOSIGNAL);
	loop_op_prep(sqe, &r.op);
	run_until(ep, &r, 1);
	assert_int_equal(r.res[0], -EPIPE);
	free(big);
	close(sv[0]);
	loop_epoll_free(ep);
}

/* Cancel by user_data: the target -ECANCELED, the cancel 0; again -ENOENT.
 * The fd's registration goes with its last op: a new fd of the same
 * number waits cleanly. */
static void test_cancel_completes_target_ecanceled(void **state)
{
	(void)state;
	struct loop_epoll *ep = new_ep();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct rec r, c1, c2;
	rec_init(&r);
	rec_init(&c1);
	rec_init(&c2);
	char buf[16];
	prep_recv(ep, sv[0], buf, sizeof(buf), 0, &r);
	run_for(ep, 10);
	prep_cancel(ep, &r.op, &c1);
	prep_cancel(ep, &r.op, &c2);
	run_until(ep, &c2, 1);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.res[0], -ECANCELED);
	assert_int_equal(r.flags[0] & IORING_CQE_F_MORE, 0);
	assert_int_equal(c1.res[0], 0);
	assert_int_equal(c2.res[0], -ENOENT);
	assert_int_equal(loop_epoll_waiting(ep), 0);
	/* data after the cancel goes to nobody */
	assert_int_equal(write(sv[1], "x", 1), 1);
	run_for(ep, 20);
	assert_int_equal(r.n, 1);
	/* close, and a new pair takes the same numbers: its recv completes */
	int old = sv[0];
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(sv[0], old);
	rec_init(&r);
	prep_recv(ep, sv[0], buf, sizeof(buf), 0, &r);
	run_for(ep, 10);
	assert_int_equal(r.n, 0);
	assert_int_equal(write(sv[1], "y", 1), 1);
	run_until(ep, &r, 1);
	assert_int_equal(r.res[0], 1);
	/* a cancelled timeout: -ECANCELED, never -ETIME */
	struct rec t;
	rec_init(&t);
	struct __kernel_timespec ts = { 0, 30000000 };
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_timeout(sqe, &ts, 0, 0);
	loop_op_prep(sqe, &t.op);
	rec_init(&c1);
	prep_cancel(ep, &t.op, &c1);
	run_for(ep, 60);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.res[0], -ECANCELED);
	assert_int_equal(c1.res[0], 0);
	close(sv[0]);
	close(sv[1]);
	loop_epoll_free(ep);
}

static int listener(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	socklen_t len = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &len);
	*port = ntohs(a.sin_port);
	return fd;
}

static int dial(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* One multishot accept: a completion per connection with
 * IORING_CQE_F_MORE; its cancel ends it without. */
static void test_multishot_accept_sets_more(void **state)
{
	(void)state;
	struct loop_epoll *ep = new_ep();
	uint16_t port;
	int lfd = listener(&port);
	struct rec a;
	rec_init(&a);
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	loop_op_prep(sqe, &a.op);
	run_for(ep, 10);
	assert_int_equal(a.n, 0);
	int cl[3];
	for (int i = 0; i < 3; i++)
		cl[i] = dial(port);
	run_until(ep, &a, 3);
	assert_int_equal(a.n, 3);
	for (int i = 0; i < 3; i++) {
		assert_true(a.res[i] >= 0);
		assert_true(a.flags[i] & IORING_CQE_F_MORE);
		/* as io_uring's: the accepted fd has SOCK_CLOEXEC, and blocks */
		assert_true(fcntl(a.res[i], F_GETFD) & FD_CLOEXEC);
		assert_false(fcntl(a.res[i], F_GETFL) & O_NONBLOCK);
	}
	int more = dial(port);
	run_until(ep, &a, 4);
	assert_int_equal(a.n, 4);
	assert_true(a.flags[3] & IORING_CQE_F_MORE);
	struct rec c;
	rec_init(&c);
	prep_cancel(ep, &a.op, &c);
	run_until(ep, &a, 5);
	assert_int_equal(a.res[4], -ECANCELED);
	assert_int_equal(a.flags[4] & IORING_CQE_F_MORE, 0);
	assert_int_equal(c.res[0], 0);
	for (int i = 0; i < 4; i++)
		close(a.res[i]);
	for (int i = 0; i < 3; i++)
		close(cl[i]);
	close(more);
	close(lfd);
	loop_epoll_free(ep);
}

static void test_timeout_fires_at_its_deadline(void **state)
{
	(void)state;
	struct loop_epoll *ep = new_ep();
	struct rec t1, t2;
	rec_init(&t1);
	rec_init(&t2);
	int64_t start = now_ns();
	struct __kernel_timespec abs = { (start + 200000000) / 1000000000, (start + 200000000) % 1000000000 };
	struct __kernel_timespec rel = { 0, 20000000 };
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_timeout(sqe, &abs, 0, IORING_TIMEOUT_ABS);
	loop_op_prep(sqe, &t1.op);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_timeout(sqe, &rel, 0, 0);
	loop_op_prep(sqe, &t2.op);
	/* no limit of its own: the wait ends at the earliest timeout */
	while (t2.n == 0 && now_ns() - start < 2000000000LL) {
		loop_epoll_wait(ep, -1);
		loop_epoll_reap(ep, run_cqe);
	}
	int64_t t2_at = now_ns() - start;
	assert_int_equal(t2.res[0], -ETIME);
	assert_int_equal(t1.n, 0);
	assert_true(t2_at >= 20000000);
	while (t1.n == 0 && now_ns() - start < 2000000000LL) {
		loop_epoll_wait(ep, -1);
		loop_epoll_reap(ep, run_cqe);
	}
	assert_int_equal(t1.res[0], -ETIME);
	assert_true(now_ns() - start >= 200000000);
	/* a completion count is not supported: refused, not run otherwise */
	rec_init(&t1);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_timeout(sqe, &rel, 1, 0);
	loop_op_prep(sqe, &t1.op);
	run_until(ep, &t1, 1);
	assert_int_equal(t1.res[0], -EINVAL);
	loop_epoll_free(ep);
}

/* A callback that submits an op completing at once is not called again
 * from inside itself: the completion waits for the next reap. */
struct chain {
	struct loop_op op;
	struct loop_epoll *ep;
	int fd;
	char buf[4];
	int depth, max_depth, runs;
};

static void chain_cb(struct loop_op *op, struct io_uring_cqe *cqe)
{
	struct chain *ch = container_of(op, struct chain, op);
	assert_int_equal(cqe->res, 1);
	ch->depth++;
	if (ch->depth > ch->max_depth)
		ch->max_depth = ch->depth;
	if (++ch->runs < 50) { /* the data is there: this recv completes at submit */
		struct io_uring_sqe *sqe = loop_epoll_sqe(ch->ep);
		io_uring_prep_recv(sqe, ch->fd, ch->buf, 1, 0);
		loop_op_prep(sqe, &ch->op);
		loop_epoll_submit(ch->ep);
	}
	ch->depth--;
}

static void test_completion_inside_callback_does_not_recurse(void **state)
{
	(void)state;
	struct loop_epoll *ep = new_ep();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	char data[64];
	memset(data, 'z', sizeof(data));
	assert_int_equal(write(sv[1], data, sizeof(data)), (ssize_t)sizeof(data));
	struct chain ch = { .op.cb = chain_cb, .ep = ep, .fd = sv[0] };
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_recv(sqe, sv[0], ch.buf, 1, 0);
	loop_op_prep(sqe, &ch.op);
	unsigned reaps = 0;
	for (int i = 0; i < 200 && ch.runs < 50; i++) {
		loop_epoll_wait(ep, 0);
		unsigned n = loop_epoll_reap(ep, run_cqe);
		assert_true(n <= 1);
		reaps += n;
	}
	assert_int_equal(ch.runs, 50);
	assert_int_equal(ch.max_depth, 1);
	assert_int_equal(reaps, 50);
	close(sv[0]);
	close(sv[1]);
	loop_epoll_free(ep);
}

/* Multishot recv with provided buffers, as conn.c arms it: each receive
 * takes the ring's next buffer (its id in the flags) with F_MORE; an empty
 * ring ends it with -ENOBUFS; EOF ends it with 0 and takes no buffer. */
static void test_multishot_recv_takes_provided_buffers(void **state)
{
	(void)state;
	struct loop_epoll *ep = new_ep();
	enum { NB = 2, SZ = 64 };
	size_t ring_bytes = NB * sizeof(struct io_uring_buf);
	struct io_uring_buf_ring *br =
		mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	assert_true(br != MAP_FAILED);
	static char bufs[NB][SZ];
	io_uring_buf_ring_init(br);
	for (int i = 0; i < NB; i++)
		io_uring_buf_ring_add(br, bufs[i], SZ, (unsigned short)i, io_uring_buf_ring_mask(NB), i);
	io_uring_buf_ring_advance(br, NB);
	loop_epoll_provide(ep, 1, br, NB);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct rec r;
	rec_init(&r);
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 1;
	loop_op_prep(sqe, &r.op);
	run_for(ep, 10);
	assert_int_equal(r.n, 0);
	assert_int_equal(write(sv[1], "one", 3), 3);
	run_until(ep, &r, 1);
	assert_int_equal(r.res[0], 3);
	assert_true(r.flags[0] & IORING_CQE_F_MORE);
	assert_true(r.flags[0] & IORING_CQE_F_BUFFER);
	unsigned bid0 = r.flags[0] >> IORING_CQE_BUFFER_SHIFT;
	assert_memory_equal(bufs[bid0], "one", 3);
	assert_int_equal(write(sv[1], "two", 3), 3);
	run_until(ep, &r, 2);
	unsigned bid1 = r.flags[1] >> IORING_CQE_BUFFER_SHIFT;
	assert_int_not_equal(bid0, bid1);
	assert_memory_equal(bufs[bid1], "two", 3);
	assert_true(r.flags[1] & IORING_CQE_F_MORE);
	/* both buffers held: the next bytes end it with -ENOBUFS */
	assert_int_equal(write(sv[1], "three", 5), 5);
	run_until(ep, &r, 3);
	assert_int_equal(r.res[2], -ENOBUFS);
	assert_int_equal(r.flags[2] & IORING_CQE_F_MORE, 0);
	/* one given back, armed again: it takes that one */
	io_uring_buf_ring_add(br, bufs[bid0], SZ, (unsigned short)bid0, io_uring_buf_ring_mask(NB), 0);
	io_uring_buf_ring_advance(br, 1);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 1;
	loop_op_prep(sqe, &r.op);
	run_until(ep, &r, 4);
	assert_int_equal(r.res[3], 5);
	assert_int_equal(r.flags[3] >> IORING_CQE_BUFFER_SHIFT, bid0);
	assert_memory_equal(bufs[bid0], "three", 5);
	/* a buffer is taken only for bytes: EOF ends it with 0 and none */
	io_uring_buf_ring_add(br, bufs[bid0], SZ, (unsigned short)bid0, io_uring_buf_ring_mask(NB), 0);
	io_uring_buf_ring_advance(br, 1);
	shutdown(sv[1], SHUT_WR);
	run_until(ep, &r, 5);
	assert_int_equal(r.res[4], 0);
	assert_int_equal(r.flags[4], 0);
	assert_int_equal(loop_epoll_waiting(ep), 0);
	close(sv[0]);
	close(sv[1]);
	munmap(br, ring_bytes);
	loop_epoll_free(ep);
}

/* read on a pipe and poll on it wait for bytes; connect completes 0, or
 * -ECONNREFUSED where nobody listens. */
static void test_read_poll_and_connect(void **state)
{
	(void)state;
	struct loop_epoll *ep = new_ep();
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	struct rec rd, pl;
	rec_init(&rd);
	rec_init(&pl);
	char buf[8];
	struct io_uring_sqe *sqe = loop_epoll_sqe(ep);
	io_uring_prep_poll_add(sqe, p[0], POLLIN);
	loop_op_prep(sqe, &pl.op);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_read(sqe, p[0], buf, sizeof(buf), 0);
	loop_op_prep(sqe, &rd.op);
	run_for(ep, 20);
	assert_int_equal(pl.n + rd.n, 0);
	assert_int_equal(write(p[1], "pipe", 4), 4);
	run_until(ep, &rd, 1);
	assert_true(pl.res[0] & POLLIN);
	assert_int_equal(rd.res[0], 4);
	assert_memory_equal(buf, "pipe", 4);
	close(p[0]);
	close(p[1]);

	uint16_t port;
	int lfd = listener(&port);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct rec cn;
	rec_init(&cn);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&a, sizeof(a));
	loop_op_prep(sqe, &cn.op);
	run_until(ep, &cn, 1);
	assert_int_equal(cn.res[0], 0);
	assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK); /* as its owner made it */
	close(fd);
	close(lfd); /* nobody listens on port now */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	rec_init(&cn);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&a, sizeof(a));
	loop_op_prep(sqe, &cn.op);
	run_until(ep, &cn, 1);
	assert_int_equal(cn.res[0], -ECONNREFUSED);
	close(fd);
	/* what this backend does not run is refused, not run otherwise */
	struct rec bad;
	rec_init(&bad);
	sqe = loop_epoll_sqe(ep);
	io_uring_prep_fsync(sqe, 0, 0);
	loop_op_prep(sqe, &bad.op);
	run_until(ep, &bad, 1);
	assert_int_equal(bad.res[0], -EINVAL);
	loop_epoll_free(ep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recv_waits_for_data_then_completes),
		cmocka_unit_test(test_send_short_completes_with_count_sent),
		cmocka_unit_test(test_cancel_completes_target_ecanceled),
		cmocka_unit_test(test_multishot_accept_sets_more),
		cmocka_unit_test(test_timeout_fires_at_its_deadline),
		cmocka_unit_test(test_completion_inside_callback_does_not_recurse),
		cmocka_unit_test(test_multishot_recv_takes_provided_buffers),
		cmocka_unit_test(test_read_poll_and_connect),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
