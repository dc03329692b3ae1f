/*
 * thaw-instance: loads a handler .so, runs its init(), reports READY on the
 * channel (fd CHANNEL_FD) and serves framed requests until EOF or
 * CH_SHUTDOWN.
 *
 * Threads: the main thread reads and dispatches frames. With a concurrency
 * of 1 it also runs invoke() itself (no hand-off latency, frames processed in
 * order); above 1 it queues each request for THAW_INSTANCE_CONCURRENCY
 * workers. Responses are written whole under a mutex so frames of different
 * workers never interleave.
 *
 * Exit codes: 0 on EOF or CH_SHUTDOWN, 1 when loading or init fails (after
 * CH_INIT_FAILED), 2 on a protocol error (a malformed frame).
 *
 * `thaw-instance --http HOST:PORT ... HANDLER.so` (http_front.h) runs the
 * same handler without a channel, as a plain HTTP debug server.
 */
#define LOG_PREFIX "host: "
#include "host.h"
#include "http_front.h"
#include "log.h"
#include "mem.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONCURRENCY 1024
#define READ_CHUNK (64u << 10)

static const struct thaw_handler *handler;
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

/* What one invoking thread owns, reused across its requests. */
struct worker {
	struct thaw_response res;
	struct thaw_header *hdrs;
	uint32_t hdrs_cap;
	struct buf out;
};

static void serve(struct worker *w, uint64_t id, const struct channel_request *cr)
{
	if (cr->n_headers > w->hdrs_cap) {
		w->hdrs_cap = cr->n_headers < 32 ? 32 : cr->n_headers;
		free(w->hdrs);
		w->hdrs = xmalloc(w->hdrs_cap * sizeof(*w->hdrs));
	}
	const char *cursor = cr->headers;
	for (uint32_t i = 0; i < cr->n_headers; i++) {
		struct channel_kv kv;
		channel_next_header(&cursor, &kv);
		w->hdrs[i].name = kv.name;
		w->hdrs[i].value = kv.value;
	}
	const struct thaw_request req = {
		.method = cr->method,
		.path = cr->path,
		.query = cr->query,
		.headers = w->hdrs,
		.n_headers = cr->n_headers,
		.body = cr->body,
		.body_len = cr->body_len,
		.request_id = cr->request_id,
		.deadline_ms = cr->deadline_ms,
	};
	host__invoke(&req, &w->res);
	host__response_encode(&w->res, id, &w->out);
	send_frame(&w->out);
}

void host__invoke(const struct thaw_request *req, struct thaw_response *res)
{
	host__response_reset(res);
	host__set_current(req);
	int r = handler->invoke(req, res);
	host__set_current(NULL);
	if (r < 0 && !res->touched)
		thaw_respond_error(res, 500, "handler failed: %s", strerror(-r));
}

/* Requests waiting for a worker (concurrency > 1 only). A job is the frame's
 * payload, allocated by the reader, freed by the worker. */
struct job {
	struct job *next;
	uint64_t id;
	struct channel_request req; /* views into payload */
	char payload[];
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t more, idle;
	struct job *head, **tail;
	unsigned busy;
} queue = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
	    NULL, &queue.head, 0 };

static void *worker_main(void *arg)
{
	(void)arg;
	struct worker w = { 0 };
	for (;;) {
		pthread_mutex_lock(&queue.lock);
		while (!queue.head)
			pthread_cond_wait(&queue.more, &queue.lock);
		struct job *j = queue.head;
		queue.head = j->next;
		if (!queue.head)
			queue.tail = &queue.head;
		queue.busy++;
		pthread_mutex_unlock(&queue.lock);

		serve(&w, j->id, &j->req);
		free(j);

		pthread_mutex_lock(&queue.lock);
		if (!--queue.busy && !queue.head)
			pthread_cond_broadcast(&queue.idle);
		pthread_mutex_unlock(&queue.lock);
	}
	return NULL;
}

static void enqueue(struct job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&queue.lock);
	*queue.tail = j;
	queue.tail = &j->next;
	pthread_cond_signal(&queue.more);
	pthread_mutex_unlock(&queue.lock);
}

/* Waits until no request is queued or running (before shutdown). */
static void drain(void)
{
	pthread_mutex_lock(&queue.lock);
	while (queue.head || queue.busy)
		pthread_cond_wait(&queue.idle, &queue.lock);
	pthread_mutex_unlock(&queue.lock);
}

/* --- channel input ------------------------------------------------------- */

struct reader {
	char *data; /* READ_CHUNK bytes */
	size_t start, end;
};

/* Reads more into r; returns bytes read, 0 on EOF. */
static size_t fill(struct reader *r)
{
	if (r->start == r->end)
		r->start = r->end = 0;
	if (r->end == READ_CHUNK) {
		memmove(r->data, r->data + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
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

/* --- lifecycle ----------------------------------------------------------- */

/* Reports a failed init()/on_restore() with the handler's thaw_set_error()
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
	if (handler->abi_version != THAW_ABI_VERSION ||
	    handler->size < sizeof(struct thaw_handler)) {
		snprintf(msg, sizeof(msg), "%s: handler ABI %u (size %u), host speaks %u (size %zu)",
			 path, handler->abi_version, handler->size, THAW_ABI_VERSION,
			 sizeof(struct thaw_handler));
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
}

static void __attribute__((noreturn)) on_shutdown(int concurrency)
{
	if (concurrency > 1)
		drain();
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

static void start_workers(int n)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < n; i++) {
		pthread_t t;
		int r = pthread_create(&t, &attr, worker_main, NULL);
		if (r) {
			pr_err("pthread_create: %s", strerror(r));
			if (!i)
				_exit(1);
			break; /* serve with fewer workers */
		}
	}
	pthread_attr_destroy(&attr);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	/* handler log lines go to a pipe: line-buffer stdout for printf users */
	setvbuf(stdout, NULL, _IOLBF, 0);

	static struct http_front_options http; /* lives as long as the process */
	int mode = http_front_parse_args(argc, argv, &http);
	if (mode < 0)
		return 2;
	no_channel = mode > 0;
	if (no_channel)
		host__set_identity(http.name, http.function_dir);
	else
		host__set_identity(getenv("THAW_FUNCTION_NAME"), getenv("THAW_FUNCTION_DIR"));
	int concurrency = parse_concurrency();
	load_handler(no_channel ? http.handler : getenv("THAW_HANDLER"));
	host__new_instance_id();
	if (handler->init) {
		int r = handler->init();
		if (r < 0)
			init_failed("init", r);
	}
	if (no_channel) {
		int r = http_front_run(&http);
		if (handler->shutdown)
			handler->shutdown();
		fflush(NULL);
		return r < 0 ? 1 : 0;
	}
	send_msg(CH_READY, thaw_instance_id());

	if (concurrency > 1)
		start_workers(concurrency);

	struct reader rd = { .data = xmalloc(READ_CHUNK) };
	struct worker inline_w = { 0 };
	struct buf frame = { 0 }; /* payloads served inline and control frames */
	for (;;) {
		struct channel_hdr h;
		read_hdr(&rd, &h);
		struct job *job = NULL;
		char *payload;
		if (h.type == CH_REQUEST && concurrency > 1) {
			job = xmalloc(sizeof(*job) + h.len);
			payload = job->payload;
		} else {
			buf_reset(&frame);
			buf_reserve(&frame, h.len + 1);
			payload = frame.data;
		}
		read_payload(&rd, payload, h.len);

		switch (h.type) {
		case CH_REQUEST: {
			struct channel_request cr;
			if (channel_decode_request(payload, h.len, &cr))
				protocol_error("undecodable request");
			if (!job) {
				serve(&inline_w, h.id, &cr);
				break;
			}
			job->id = h.id;
			job->req = cr;
			enqueue(job);
			break;
		}
		case CH_RESTORED:
			on_restored();
			break;
		case CH_SHUTDOWN:
			on_shutdown(concurrency);
		default:
			protocol_error("unexpected frame type");
		}
		if (frame.cap > (4u << 20))
			buf_free(&frame);
	}
}
