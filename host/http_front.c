/*
 * thaw-instance --http: the handler behind a plain HTTP/1.1 debug server
 * (contract in http_front.h). Requests are parsed with the daemon's
 * http-parser glue (common/http.c) and handed to the handler as the same
 * struct thaw_request the daemon's channel delivers; the answer goes back
 * with content-length, keep-alive unless the client or an error says close.
 *
 * Deliberately simple: one connection at a time on the main thread, blocking
 * sockets with poll() for the timeouts. A stop signal (SIGTERM, SIGINT) is
 * seen through a self-pipe; a second one exits at once, for a handler stuck
 * in invoke().
 */
#define LOG_PREFIX "http: "
#include "host/http_front.h"
#include "host/host.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/request.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER_BYTES 8192        /* the daemon's default (Function Compute's) */
#define DEFAULT_MAX_BODY (32ull << 20) /* fc.yaml maxRequestBodySize's default */
#define DEFAULT_TIMEOUT_S 3
#define REQUEST_TIMEOUT_MS 30000 /* first byte to last byte of one request */
#define IDLE_TIMEOUT_MS 60000    /* keep-alive wait when nobody else waits */
#define WRITE_TIMEOUT_S 10       /* a client that stops reading */
#define READ_CHUNK (64u << 10)

static const char usage[] =
	"usage: thaw-instance --http HOST:PORT [options] HANDLER.so\n"
	"Loads HANDLER.so, runs its init() and serves it as a plain HTTP/1.1 debug\n"
	"server on HOST:PORT (a loopback address), one connection at a time, until\n"
	"SIGTERM or Ctrl-C. Without --http it serves the daemon's channel on fd 3.\n"
	"  --function-dir DIR  the function's folder (default $THAW_FUNCTION_DIR, else .)\n"
	"  --name NAME         the function's name (default $THAW_FUNCTION_NAME, else\n"
	"                      the .so's name)\n"
	"  --timeout S         each request's deadline in seconds (default\n"
	"                      $FC_FUNCTION_TIMEOUT, else 3); informative: the handler\n"
	"                      reads it with thaw_time_left_ms(), nothing is cut off\n"
	"  --max-body BYTES    request bodies past it get 413 (default 32 MiB)\n";

/* --- the command line ---------------------------------------------------- */

/* HOST:PORT with HOST 127.x.y.z, localhost, ::1 or [::1]. */
static int parse_listen(const char *arg, struct http_front_options *o)
{
	const char *colon = strrchr(arg, ':');
	if (!colon || colon == arg)
		return -EINVAL;
	size_t hlen = (size_t)(colon - arg);
	const char *host = arg;
	if (host[0] == '[' && hlen >= 2 && host[hlen - 1] == ']')
		host++, hlen -= 2;
	if (hlen >= sizeof(o->listen_host))
		return -EINVAL;
	memcpy(o->listen_host, host, hlen);
	o->listen_host[hlen] = '\0';
	if (!strcmp(o->listen_host, "localhost"))
		strcpy(o->listen_host, "127.0.0.1");
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port < 1 || port > 65535)
		return -EINVAL;
	o->port = (uint16_t)port;
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, o->listen_host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127 ? 0 : -EPERM;
	if (inet_pton(AF_INET6, o->listen_host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ? 0 : -EPERM;
	return -EINVAL;
}

static int bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "thaw-instance: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return -EINVAL;
}

int http_front_parse_args(int argc, char **argv, struct http_front_options *o)
{
	static const struct option opts[] = {
		{ "http", required_argument, 0, 'l' },
		{ "function-dir", required_argument, 0, 'd' },
		{ "name", required_argument, 0, 'n' },
		{ "timeout", required_argument, 0, 't' },
		{ "max-body", required_argument, 0, 'b' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	memset(o, 0, sizeof(*o));
	if (argc < 2)
		return 0;
	const char *fto = getenv("FC_FUNCTION_TIMEOUT");
	o->timeout_s = fto && atoi(fto) > 0 ? (uint32_t)atoi(fto) : DEFAULT_TIMEOUT_S;
	o->max_body = DEFAULT_MAX_BODY;
	bool have_listen = false;
	int c, r;
	char *end;
	unsigned long long v;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			r = parse_listen(optarg, o);
			if (r == -EPERM)
				return bad_usage("--http %s: only a loopback address (127.0.0.1, ::1, "
						 "localhost): this is a debug server", optarg);
			if (r < 0)
				return bad_usage("--http: expected HOST:PORT, got '%s'", optarg);
			have_listen = true;
			break;
		case 'd': o->function_dir = optarg; break;
		case 'n': o->name = optarg; break;
		case 't':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (!*optarg || *end || errno || v < 1 || v > 86400)
				return bad_usage("--timeout: expected seconds in 1..86400, got '%s'", optarg);
			o->timeout_s = (uint32_t)v;
			break;
		case 'b':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (!*optarg || *end || errno || v < 1 || v > (1ull << 30))
				return bad_usage("--max-body: expected bytes in 1..1073741824, got '%s'",
						 optarg);
			o->max_body = v;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			fputs(usage, stderr);
			return -EINVAL;
		}
	}
	if (!have_listen || argc - optind != 1) {
		fputs(usage, stderr);
		return -EINVAL;
	}
	char *so = realpath(argv[optind], NULL);
	if (!so)
		return bad_usage("%s: no such handler .so", argv[optind]);
	o->handler = so;
	if (!o->function_dir)
		o->function_dir = getenv("THAW_FUNCTION_DIR");
	if (!o->name)
		o->name = getenv("THAW_FUNCTION_NAME");
	if (!o->name || !*o->name) {
		const char *base = strrchr(so, '/') + 1;
		const char *dot = strstr(base, ".so");
		o->name = xstrndup(base, dot ? (size_t)(dot - base) : strlen(base));
	}
	return 1;
}

/* --- stop signals -------------------------------------------------------- */

static int stop_pipe[2] = { -1, -1 };
static volatile sig_atomic_t stopping;

static void on_stop_signal(int sig)
{
	/* a second Ctrl-C: the handler may be stuck in invoke(). (thaw dev's
	 * SIGTERM after the terminal's SIGINT stays graceful.) */
	if (stopping && sig == SIGINT)
		_exit(128 + sig);
	stopping = 1;
	int saved = errno;
	ssize_t n = write(stop_pipe[1], "x", 1);
	(void)n;
	errno = saved;
}

static int watch_stop_signals(void)
{
	if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	struct sigaction sa = { .sa_handler = on_stop_signal }; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	return 0;
}

/* --- one connection ------------------------------------------------------ */

struct front {
	const struct http_front_options *o;
	int lfd;
	struct http_req req;
	struct thaw_response res; /* reused across requests */
	struct buf frame;         /* the request as the daemon's channel carries it */
	struct thaw_header *hdrs; /* views into frame */
	uint32_t hdrs_cap;
	struct buf head;          /* the response's status line and headers */
	uint64_t salt, seq;       /* request ids */
	char rbuf[READ_CHUNK];
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t realtime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends all of data; SO_SNDTIMEO bounds each wait. */
static int send_all(int fd, const char *data, size_t len, int flags)
{
	while (len) {
		ssize_t n = send(fd, data, len, flags | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_answer(struct front *f, int fd, const char *body, size_t len)
{
	int r = send_all(fd, f->head.data, f->head.len, len ? MSG_MORE : 0);
	if (!r && len)
		r = send_all(fd, body, len, 0);
	if (r && r != -EPIPE && r != -ECONNRESET)
		pr_warn("writing the answer: %s", r == -EAGAIN ? "client not reading" : strerror(-r));
	return r;
}

/* An error of the front itself, in the house format {"error": "..."}. */
static int send_error(struct front *f, int fd, int status, const char *msg, bool keep)
{
	struct buf body = { 0 };
	buf_append_json_error(&body, msg);
	buf_reset(&f->head);
	buf_printf(&f->head,
		   "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\ncontent-type: application/json\r\n%s\r\n",
		   status, http_status_text(status), body.len, keep ? "" : "connection: close\r\n");
	int r = send_answer(f, fd, body.data, body.len);
	buf_free(&body);
	fprintf(stderr, "(refused) %d %s\n", status, msg);
	return r;
}

/* Hands the parsed request to the handler and writes its answer. Returns 0,
 * or -errno when the connection is no longer usable. */
static int answer(struct front *f, int fd, bool keep)
{
	struct http_req *r = &f->req;
	int64_t t0 = mono_ms();
	const char *url = http_span_ptr(r, r->url);
	if (!r->url.len || url[0] != '/')
		return send_error(f, fd, 400, "request target must be a path (origin-form)", keep);

	/* the same conversion as the daemon's (request.h): the handler sees
	 * what it would see behind thaw serve */
	const char *q = memchr(url, '?', r->url.len);
	char rid[REQUEST_ID_MAX + 1];
	request_pick_id(r, f->salt, &f->seq, rid);
	buf_reset(&f->frame);
	request_encode(&f->frame, r, url, q ? (size_t)(q - url) : r->url.len, rid,
		       realtime_ms() + (int64_t)f->o->timeout_s * 1000, HOP_TO_HANDLER);
	struct channel_request cr;
	struct thaw_request req;
	if (channel_decode_request(f->frame.data + sizeof(struct channel_hdr),
				   f->frame.len - sizeof(struct channel_hdr), &cr))
		return send_error(f, fd, 400, "request cannot be encoded", keep);
	host__request_view(&cr, &f->hdrs, &f->hdrs_cap, &req);

	host__invoke(&req, &f->res);
	struct thaw_response *res = &f->res;
	uint32_t nkv = host__response_finish(res);
	bool head_only = r->parser.method == HTTP_HEAD;
	buf_reset(&f->head);
	buf_printf(&f->head, "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\nx-fc-request-id: %s\r\n",
		   res->status, http_status_text(res->status), res->body_len, rid);
	for (uint32_t i = 0; i < nkv; i++)
		buf_printf(&f->head, "%s: %s\r\n", res->kv[i].name, res->kv[i].value);
	buf_append_str(&f->head, keep ? "\r\n" : "connection: close\r\n\r\n");
	int ret = send_answer(f, fd, res->body ? res->body : "", head_only ? 0 : res->body_len);
	fprintf(stderr, "%s %s%s%s %d %zu bytes %lld ms\n", req.method, req.path, *req.query ? "?" : "",
		req.query, res->status, res->body_len, (long long)(mono_ms() - t0));
	return ret;
}

enum wake { WAKE_DATA, WAKE_NEXT_CLIENT, WAKE_STOP, WAKE_TIMEOUT };

/* Waits for bytes on fd, a stop signal, timeout_ms, or (when idle) another
 * client at the listening socket. */
static enum wake wait_for(struct front *f, int fd, bool idle, int timeout_ms)
{
	struct pollfd p[3] = {
		{ .fd = fd, .events = POLLIN },
		{ .fd = stop_pipe[0], .events = POLLIN },
		{ .fd = idle ? f->lfd : -1, .events = POLLIN },
	};
	int64_t until = mono_ms() + timeout_ms;
	for (;;) {
		if (stopping)
			return WAKE_STOP;
		int left = (int)(until - mono_ms());
		int n = poll(p, 3, left > 0 ? left : 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pr_perror("poll");
			return WAKE_STOP;
		}
		if (stopping || p[1].revents)
			return WAKE_STOP;
		if (p[0].revents)
			return WAKE_DATA;
		if (p[2].revents)
			return WAKE_NEXT_CLIENT;
		if (n == 0)
			return WAKE_TIMEOUT;
	}
}

/* 100 Continue when the client waits for it and the body will fit. */
static void maybe_continue(struct front *f, int fd)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct http_req *r = &f->req;
	if (r->expect_continue && r->body.len == 0 &&
	    (r->parser.content_length == ULLONG_MAX || r->parser.content_length <= r->body_limit))
		send_all(fd, cont, sizeof(cont) - 1, 0);
}

/* Serves requests on fd until the client closes, an error or timeout, a
 * stop signal, or another client connecting while this one idles. Closes
 * fd. */
static void serve_conn(struct front *f, int fd)
{
	struct timeval tv = { .tv_sec = WRITE_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	http_req_init(&f->req, f->o->max_body);
	int64_t deadline = 0; /* when the request under way must be whole; 0: none */
	for (;;) {
		enum http_step st = http_req_parse(&f->req);
		if (st == HTTP_HEADERS) {
			maybe_continue(f, fd);
			continue;
		}
		if (st == HTTP_ERROR) {
			send_error(f, fd, f->req.error_status, f->req.error_msg, false);
			break;
		}
		if (st == HTTP_DONE) {
			bool keep = http_req_keep_alive(&f->req) && !stopping;
			if (answer(f, fd, keep) < 0 || !keep)
				break;
			http_req_next(&f->req);
			deadline = 0;
			continue;
		}
		bool idle = f->req.in.len == 0; /* nothing of a next request yet */
		int64_t now = mono_ms();
		if (!idle && !deadline)
			deadline = now + REQUEST_TIMEOUT_MS;
		enum wake w = wait_for(f, fd, idle,
				       idle ? IDLE_TIMEOUT_MS : (int)(deadline > now ? deadline - now : 0));
		if (w == WAKE_TIMEOUT && !idle)
			send_error(f, fd, 408, "request not received in time", false);
		if (w != WAKE_DATA)
			break;
		ssize_t n = recv(fd, f->rbuf, sizeof(f->rbuf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* closed or reset: nobody to answer */
		http_req_feed(&f->req, f->rbuf, (size_t)n);
	}
	http_req_fini(&f->req);
	close(fd);
}

/* --- listening ----------------------------------------------------------- */

static int listen_on(const struct http_front_options *o)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t slen;
	int family;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, o->listen_host, &a4->sin_addr) == 1) {
		family = a4->sin_family = AF_INET;
		a4->sin_port = htons(o->port);
		slen = sizeof(*a4);
	} else if (inet_pton(AF_INET6, o->listen_host, &a6->sin6_addr) == 1) {
		family = a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(o->port);
		slen = sizeof(*a6);
	} else {
		return -EINVAL;
	}
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* a restarted server (thaw dev) takes the port back from TIME_WAIT */
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, 64) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int http_front_run(const struct http_front_options *o)
{
	int r = watch_stop_signals();
	if (r < 0) {
		pr_err("pipe: %s", strerror(-r));
		return r;
	}
	int lfd = listen_on(o);
	if (lfd < 0) {
		pr_err("cannot listen on %s:%u: %s", o->listen_host, o->port, strerror(-lfd));
		return lfd;
	}
	http_set_max_header_size(MAX_HEADER_BYTES);
	struct front *f = xcalloc(1, sizeof(*f));
	f->o = o;
	f->lfd = lfd;
	if (getrandom(&f->salt, sizeof(f->salt), GRND_NONBLOCK) != sizeof(f->salt))
		f->salt = (uint64_t)realtime_ms() ^ (uint64_t)getpid() << 40;
	bool v6 = strchr(o->listen_host, ':') != NULL;
	printf("thaw-instance: %s serving %s on http://%s%s%s:%u/ (pid %d, one connection at a "
	       "time)\n",
	       thaw_function_name(), o->handler, v6 ? "[" : "", o->listen_host, v6 ? "]" : "",
	       o->port, (int)getpid());
	while (!stopping) {
		struct pollfd p[2] = { { .fd = lfd, .events = POLLIN },
				       { .fd = stop_pipe[0], .events = POLLIN } };
		int n = poll(p, 2, -1);
		if (n < 0 && errno != EINTR) {
			pr_perror("poll");
			break;
		}
		if (n <= 0 || stopping || !p[0].revents)
			continue;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
				pr_perror("accept");
				poll(NULL, 0, 100); /* a moment for fds to come back */
			}
			continue; /* EINTR, ECONNABORTED, ... */
		}
		serve_conn(f, fd);
	}
	close(lfd);
	host__response_fini(&f->res);
	buf_free(&f->frame);
	free(f->hdrs);
	buf_free(&f->head);
	free(f);
	return 0;
}
