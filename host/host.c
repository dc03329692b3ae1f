/*
 * thaw-instance: loads a handler .so, runs its init(), reports READY on the
 * channel (fd CHANNEL_FD) and serves framed requests until EOF or
 * CH_SHUTDOWN.
 *
 * Threads: with a concurrency of 1 the main thread reads frames and runs
 * invoke() itself, in order. Above 1, THAW_INSTANCE_CONCURRENCY threads (the
 * main one included) each take the next frame and run it themselves (shared
 * reading, below). Responses are written whole under a mutex so frames of
 * different threads never interleave.
 *
 * Exit codes: 0 on EOF or CH_SHUTDOWN, 1 when loading or init fails (after
 * CH_INIT_FAILED), 2 on a protocol error (a malformed frame).
 *
 * `thaw-instance --http HOST:PORT ... HANDLER.so` (http_front.h) runs the
 * same handler without a channel, as a plain HTTP debug server.
 */
#define LOG_PREFIX "host: "
#include "host/host.h"
#include "host/grpc.h"
#include "host/kserve.h"
#include "host/tfserving.h"
#include "host/snapmem.h"
#include "common/log.h"
#include "common/mem.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONCURRENCY 1024
#define READ_CHUNK (64u << 10)

static const struct thaw_handler *handler;
/* The descriptor as the first ABI had it; later hooks are read only where
 * the handler's size covers them (one built against an older header). */
#define HANDLER_SIZE_V1 offsetof(struct thaw_handler, before_checkpoint)
#define HANDLER_HAS(hook)                                                                       \
	(handler->size >= offsetof(struct thaw_handler, hook) + sizeof(handler->hook) &&          \
	 handler->hook)
static bool no_channel; /* --http: nobody to send frames to */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* --- channel output ------------------------------------------------------ */

/* Writes all of data; a gone daemon (EPIPE, ECONNRESET) ends the instance
 * quietly, as EOF does. */
static void write_all(const char *data, size_t len)
{
	static int is_socket = 1;
	while (len) {
		ssize_t n = is_socket ? send(CHANNEL_FD, data, len, MSG_NOSIGNAL)
				      : write(CHANNEL_FD, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ENOTSOCK && is_socket) {
			is_socket = 0;
			continue;
		}
		if (n < 0) {
			if (errno != EPIPE && errno != ECONNRESET)
				pr_perror("write to channel");
			fflush(NULL);
			_exit(errno == EPIPE || errno == ECONNRESET ? 0 : 2);
		}
		data += n;
		len -= (size_t)n;
	}
}

static void send_frame(struct buf *out)
{
	pthread_mutex_lock(&write_lock);
	write_all(out->data, out->len);
	pthread_mutex_unlock(&write_lock);
	buf_reset(out);
	if (out->cap > (4u << 20))
		buf_free(out);
}

static void send_msg(uint32_t type, const char *payload)
{
	if (no_channel)
		return;
	struct buf out = { 0 };
	size_t len = strlen(payload);
	channel_put_hdr(&out, type, 0, len);
	buf_append(&out, payload, len);
	send_frame(&out);
	buf_free(&out);
}

/* --- serving ------------------------------------------------------------- */

/* The request each serving thread runs, for CHANNEL_CANCEL_SIGNAL: written
 * by that thread, read by the signal handler (lock-free atomics). */
static struct running {
	_Atomic uint64_t id; /* 0: none */
	atomic_bool cancelled;
} running[MAX_CONCURRENCY];
static unsigned n_running;

static void on_cancel_signal(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	uint64_t id = (uint64_t)(uintptr_t)si->si_value.sival_ptr;
	for (unsigned i = 0; id && i < n_running; i++)
		if (atomic_load(&running[i].id) == id)
			atomic_store(&running[i].cancelled, true);
}

/* What one invoking thread owns, reused across its requests. */
struct worker {
	unsigned slot; /* its entry in running[] */
	struct thaw_response res;
	struct thaw_header *hdrs;
	uint32_t hdrs_cap;
	struct buf out;
};

void host__request_view(const struct channel_request *cr, struct thaw_header **hdrs,
			uint32_t *cap, struct thaw_request *out)
{
	if (cr->n_headers > *cap) {
		*cap = cr->n_headers < 32 ? 32 : cr->n_headers;
		free(*hdrs);
		*hdrs = xmalloc(*cap * sizeof(**hdrs));
	}
	const char *cursor = cr->headers;
	for (uint32_t i = 0; i < cr->n_headers; i++) {
		struct channel_kv kv;
		channel_next_header(&cursor, &kv);
		(*hdrs)[i] = (struct thaw_header){ kv.name, kv.value };
	}
	*out = (struct thaw_request){
		.method = cr->method,
		.path = cr->path,
		.query = cr->query,
		.headers = *hdrs,
		.n_headers = cr->n_headers,
		.body = cr->body,
		.body_len = cr->body_len,
		.request_id = cr->request_id,
		.deadline_ms = cr->deadline_ms,
	};
}

static void serve(struct worker *w, uint64_t id, const struct channel_request *cr)
{
	struct thaw_request req;
	host__request_view(cr, &w->hdrs, &w->hdrs_cap, &req);
	struct running *run = &running[w->slot];
	atomic_store(&run->cancelled, false);
	atomic_store(&run->id, id);
	host__set_cancel_flag(&run->cancelled);
	host__invoke(&req, &w->res);
	host__set_cancel_flag(NULL);
	atomic_store(&run->id, 0);
	host__response_encode(&w->res, id, &w->out);
	send_frame(&w->out);
	host__snapmem_after_response();
}

void host__invoke(const struct thaw_request *req, struct thaw_response *res)
{
	host__response_reset(res);
	host__set_current(req);
	int r = -ENOTSUP;
	if (HANDLER_HAS(infer)) { /* protocols the host speaks for tensor handlers */
		r = grpc_handle(handler->infer, req, res);
		if (r == -ENOTSUP)
			r = tfserving_handle(handler->infer, req, res);
		if (r == -ENOTSUP)
			r = kserve_handle(handler->infer, req, res);
	}
	if (r == -ENOTSUP)
		r = handler->invoke(req, res);
	host__set_current(NULL);
	if (r < 0 && !res->touched)
		thaw_respond_error(res, 500, "handler failed: %s", strerror(-r));
}

/* --- channel input ------------------------------------------------------- */

struct reader {
	char *data; /* READ_CHUNK bytes */
	size_t start, end;
};

/* Makes room at r's end: moves what is unread to the front when full. */
static void make_room(struct reader *r)
{
	if (r->start == r->end)
		r->start = r->end = 0;
	if (r->end == READ_CHUNK) {
		memmove(r->data, r->data + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
}

/* Reads more into r; returns bytes read, 0 on EOF. */
static size_t fill(struct reader *r)
{
	make_room(r);
	for (;;) {
		ssize_t n = read(CHANNEL_FD, r->data + r->end, READ_CHUNK - r->end);
		if (n >= 0) {
			r->end += (size_t)n;
			return (size_t)n;
		}
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			return 0;
		pr_perror("read from channel");
		fflush(NULL);
		_exit(2);
	}
}

/* EOF: the daemon is gone; mid-frame it is a broken channel, not a bad one. */
static void __attribute__((noreturn)) on_eof(struct reader *r)
{
	if (r->end != r->start)
		pr_warn("channel closed inside a frame");
	fflush(NULL);
	_exit(0);
}

static void __attribute__((noreturn)) protocol_error(const char *what)
{
	pr_err("malformed frame from daemon: %s", what);
	fflush(NULL);
	_exit(2);
}

/* Reads the next frame header into h. */
static void read_hdr(struct reader *r, struct channel_hdr *h)
{
	while (r->end - r->start < sizeof(*h))
		if (!fill(r))
			on_eof(r);
	if (channel_frame_complete(r->data + r->start, sizeof(*h)) < 0)
		protocol_error("bad type or length");
	memcpy(h, r->data + r->start, sizeof(*h));
	r->start += sizeof(*h);
}

/* Reads len payload bytes into dst: what is buffered, then straight from the
 * socket so a large body is not staged twice. */
static void read_payload(struct reader *r, char *dst, size_t len)
{
	size_t have = r->end - r->start;
	size_t n = have < len ? have : len;
	memcpy(dst, r->data + r->start, n);
	r->start += n;
	while (n < len) {
		ssize_t k = read(CHANNEL_FD, dst + n, len - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno != ECONNRESET) {
			pr_perror("read from channel");
			fflush(NULL);
			_exit(2);
		}
		if (k <= 0)
			on_eof(r);
		n += (size_t)k;
	}
}

/* --- shared reading (concurrency > 1) ------------------------------------
 *
 * THAW_INSTANCE_CONCURRENCY threads (the main one included) each read and
 * serve: a thread takes the next frame out of the shared reader under
 * read_lock and runs the request itself, so no request is handed from a
 * reader thread to a worker (a futex wake-up, and a wait for a core on a busy
 * machine, per request). Idle threads sleep in epoll_wait() on the channel
 * with EPOLLEXCLUSIVE, each on its own epoll set, so the kernel wakes one of
 * them when a frame arrives, not all, and while one thread serves a slow
 * request the others are already waiting on the socket: up to `concurrency`
 * requests run at once, as before. When a thread leaves frames in the buffer
 * (they came in one read) it posts `more` (a semaphore eventfd in every
 * set), which wakes one more thread per frame. Control frames (CH_RESTORED,
 * CH_SHUTDOWN) are handled under read_lock once no request runs, so they
 * keep their place in the stream. */
static struct reader shared_rd; /* under read_lock */
static pthread_mutex_t read_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t busy_done = PTHREAD_COND_INITIALIZER;
static unsigned busy; /* requests running, under busy_lock */
static int more_fd = -1;  /* eventfd (EFD_SEMAPHORE): frames left in shared_rd */
static bool channel_is_socket = true;

/* Reads what the channel has without blocking: bytes read, 0 on EOF,
 * -EAGAIN when nothing is there. */
static ssize_t try_fill(struct reader *r)
{
	make_room(r);
	for (;;) {
		ssize_t n;
		if (channel_is_socket) {
			n = recv(CHANNEL_FD, r->data + r->end, READ_CHUNK - r->end, MSG_DONTWAIT);
			if (n < 0 && errno == ENOTSOCK) {
				channel_is_socket = false;
				continue;
			}
		} else {
			struct pollfd pfd = { .fd = CHANNEL_FD, .events = POLLIN };
			if (poll(&pfd, 1, 0) == 0)
				return -EAGAIN;
			n = read(CHANNEL_FD, r->data + r->end, READ_CHUNK - r->end);
		}
		if (n >= 0) {
			r->end += (size_t)n;
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		if (errno == ECONNRESET)
			return 0;
		pr_perror("read from channel");
		fflush(NULL);
		_exit(2);
	}
}

static void post_more(void)
{
	uint64_t one = 1;
	while (write(more_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void busy_add(int d)
{
	pthread_mutex_lock(&busy_lock);
	busy += (unsigned)d;
	if (!busy)
		pthread_cond_broadcast(&busy_done);
	pthread_mutex_unlock(&busy_lock);
}

/* Waits until no request is running (before a control frame; the caller
 * holds read_lock, so nothing new starts). */
static void drain(void)
{
	pthread_mutex_lock(&busy_lock);
	while (busy)
		pthread_cond_wait(&busy_done, &busy_lock);
	pthread_mutex_unlock(&busy_lock);
}

static void handle_control(const struct channel_hdr *h);

/* Takes the next frame into frame (its payload; header in h): what the
 * buffer holds, else what the channel has, else sleeps on ep until the
 * channel or `more` wakes this thread. */
static void next_frame(int ep, struct channel_hdr *h, struct buf *frame)
{
	struct reader *r = &shared_rd;
	pthread_mutex_lock(&read_lock);
	while (r->end - r->start < sizeof(*h)) {
		ssize_t n = try_fill(r);
		if (n == 0)
			on_eof(r);
		if (n > 0)
			continue;
		pthread_mutex_unlock(&read_lock);
		struct epoll_event ev[2];
		int k = epoll_wait(ep, ev, 2, -1);
		for (int i = 0; i < k; i++)
			if (ev[i].data.fd == more_fd) {
				uint64_t v;
				(void)!read(more_fd, &v, sizeof(v)); /* EAGAIN: another took it */
			}
		if (k < 0 && errno != EINTR) {
			pr_perror("epoll_wait");
			fflush(NULL);
			_exit(2);
		}
		pthread_mutex_lock(&read_lock);
	}
	read_hdr(r, h);
	buf_reset(frame);
	buf_reserve(frame, h->len + 1);
	read_payload(r, frame->data, h->len);
	if (h->type == CH_REQUEST) {
		if (r->end != r->start)
			post_more();
		busy_add(1);
		pthread_mutex_unlock(&read_lock);
		return;
	}
	/* control frames run alone, after the requests before them */
	drain();
	handle_control(h);
	if (r->end != r->start)
		post_more();
	pthread_mutex_unlock(&read_lock);
	h->type = 0; /* handled */
}

static void *worker_main(void *arg)
{
	struct worker w = { .slot = (unsigned)(uintptr_t)arg };
	struct buf frame = { 0 }; /* this thread's copy of the request */
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event in = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = CHANNEL_FD };
	struct epoll_event more = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = more_fd };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, CHANNEL_FD, &in) < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, more_fd, &more) < 0) {
		pr_perror("epoll set-up");
		fflush(NULL);
		_exit(1);
	}
	for (;;) {
		struct channel_hdr h;
		next_frame(ep, &h, &frame);
		if (h.type != CH_REQUEST)
			continue;
		struct channel_request cr;
		if (channel_decode_request(frame.data, h.len, &cr))
			protocol_error("undecodable request");
		serve(&w, h.id, &cr);
		busy_add(-1);
		if (frame.cap > (4u << 20))
			buf_free(&frame);
	}
	return NULL;
}

/* --- lifecycle ----------------------------------------------------------- */

/* Reports a failed init()/on_restore()/before_checkpoint() with the handler's thaw_set_error()
 * message, or one naming the return code, and exits. */
static void __attribute__((noreturn)) init_failed(const char *hook, int rc)
{
	char msg[1200];
	host__error_message(msg, sizeof(msg));
	if (!msg[0])
		snprintf(msg, sizeof(msg), "%s failed: %s (rc=%d)", hook, strerror(-rc), rc);
	pr_err("%s", msg);
	send_msg(CH_INIT_FAILED, msg);
	fflush(NULL);
	_exit(1);
}

static void load_handler(const char *path)
{
	char msg[1024];
	/* a bare name would make dlopen search the library path */
	if (!path || !strchr(path, '/')) {
		snprintf(msg, sizeof(msg), "THAW_HANDLER must be the path of the handler .so");
		goto fail;
	}
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		snprintf(msg, sizeof(msg), "dlopen: %s", dlerror());
		goto fail;
	}
	handler = dlsym(dl, "thaw_handler_v1");
	if (!handler) {
		snprintf(msg, sizeof(msg), "%s: no thaw_handler_v1 (define it with THAW_HANDLER)",
			 path);
		goto fail;
	}
	if (handler->abi_version != THAW_ABI_VERSION || handler->size < HANDLER_SIZE_V1) {
		snprintf(msg, sizeof(msg), "%s: handler ABI %u (size %u), host speaks %u (size >= %zu)",
			 path, handler->abi_version, handler->size, THAW_ABI_VERSION,
			 HANDLER_SIZE_V1);
		goto fail;
	}
	if (!handler->invoke) {
		snprintf(msg, sizeof(msg), "%s: handler has no invoke hook", path);
		goto fail;
	}
	return;
fail:
	pr_err("%s", msg);
	send_msg(CH_INIT_FAILED, msg);
	fflush(NULL);
	_exit(1);
}

/* CH_CHECKPOINT: the dump comes next (handler.h, before_checkpoint). */
static void on_checkpoint(void)
{
	host__clear_error();
	if (HANDLER_HAS(before_checkpoint)) {
		int r = handler->before_checkpoint();
		if (r < 0)
			init_failed("before_checkpoint", r);
	}
	send_msg(CH_READY, thaw_instance_id());
}

static void on_restored(void)
{
	host__new_instance_id();
	host__clear_error();
	if (handler->on_restore) {
		int r = handler->on_restore();
		if (r < 0)
			init_failed("on_restore", r);
	}
	send_msg(CH_READY, thaw_instance_id());
	host__snapmem_restored();
}

static void __attribute__((noreturn)) on_shutdown(void)
{
	/* with concurrency > 1 the caller drained the running requests */
	if (handler->shutdown)
		handler->shutdown();
	fflush(NULL);
	_exit(0);
}

static int parse_concurrency(void)
{
	const char *s = getenv("THAW_INSTANCE_CONCURRENCY");
	if (!s || !*s)
		return 1;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < 1 || v > MAX_CONCURRENCY) {
		pr_warn("THAW_INSTANCE_CONCURRENCY=%s out of range 1..%d, using 1", s,
			MAX_CONCURRENCY);
		return 1;
	}
	return (int)v;
}

/* The frames other than requests. */
static void handle_control(const struct channel_hdr *h)
{
	switch (h->type) {
	case CH_RESTORED:
		on_restored();
		break;
	case CH_CHECKPOINT:
		on_checkpoint();
		break;
	case CH_SHUTDOWN:
		on_shutdown();
	default:
		protocol_error("unexpected frame type");
	}
}

/* Starts n - 1 more serving threads; the calling thread is the n-th. */
static void start_workers(int n)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 1; i < n; i++) {
		pthread_t t;
		int r = pthread_create(&t, &attr, worker_main, (void *)(uintptr_t)i);
		if (r) {
			pr_err("pthread_create: %s", strerror(r));
			break; /* serve with fewer threads */
		}
	}
	pthread_attr_destroy(&attr);
}

void host__start(const char *handler_path, bool without_channel)
{
	no_channel = without_channel;
	load_handler(handler_path);
	host__new_instance_id();
	if (handler->init) {
		int r = handler->init();
		if (r < 0)
			init_failed("init", r);
	}
}

void host__stop(void)
{
	if (handler->shutdown)
		handler->shutdown();
	fflush(NULL);
}

void host__serve_channel(void)
{
	int concurrency = parse_concurrency();
	/* before READY: a cancel can only come for a request */
	n_running = (unsigned)concurrency;
	struct sigaction sa = { .sa_sigaction = on_cancel_signal, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(CHANNEL_CANCEL_SIGNAL, &sa, NULL);
	send_msg(CH_READY, thaw_instance_id());

	if (concurrency > 1) {
		shared_rd.data = xmalloc(READ_CHUNK);
		more_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
		if (more_fd < 0) {
			pr_perror("eventfd");
			fflush(NULL);
			_exit(1);
		}
		start_workers(concurrency);
		worker_main((void *)0); /* slot 0; does not return */
	}

	struct reader rd = { .data = xmalloc(READ_CHUNK) };
	struct worker inline_w = { .slot = 0 };
	struct buf frame = { 0 }; /* payloads served inline and control frames */
	for (;;) {
		struct channel_hdr h;
		read_hdr(&rd, &h);
		buf_reset(&frame);
		buf_reserve(&frame, h.len + 1);
		read_payload(&rd, frame.data, h.len);
		if (h.type != CH_REQUEST) {
			handle_control(&h);
			continue;
		}
		struct channel_request cr;
		if (channel_decode_request(frame.data, h.len, &cr))
			protocol_error("undecodable request");
		serve(&inline_w, h.id, &cr);
		if (frame.cap > (4u << 20))
			buf_free(&frame);
	}
}
