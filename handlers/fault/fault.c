/*
 * fault: the fault-injection handler the tests drive.
 *
 *   /sleep?ms=N&n=K sleeps N ms, 200 {"slept_ms":N,"n":K,"random":..,"instance_id":..}
 *   /work?ms=N      works N ms (N <= 60000) in 5 ms steps, stopping early when
 *                   the request is cancelled (its client went away): logs
 *                   "work cancelled after X ms", 200 {"worked_ms":X,"cancelled":B}
 *                   A gRPC call (path /inference.*) works FAULT_GRPC_WORK_MS.
 *   /hang           sleeps forever
 *   /spin?ms=N      busy-loops for N ms of wall time (N <= 60000),
 *                   200 {"spun_ms":N,"cpu_ms":<CPU time this thread got>}
 *   /crash          SIGSEGV (a write through NULL)
 *   /abort          abort()
 *   /exit?code=N    exit(N)
 *   /leak?mb=N      mallocs and touches N MiB and keeps it;
 *                   200 {"leaked_mb":<total>}
 *   /big?mb=N&ms=M  sleeps M ms, then answers N MiB (N <= 64) of 'b'
 *   /status?code=N  answers status N, {"status":N}
 *   /fail?errno=N   invoke returns -N having set nothing (host answers 500)
 *   /random         {"random":<u64>,"instance_id":"..."}; the PRNG is seeded
 *                   in init and re-seeded in on_restore, so restored copies
 *                   differ
 *   /id             {"instance_id":"..."}
 *   /hooks          {"before_checkpoint":N,"on_restore":N}: how often this
 *                   process (and the one it was restored from) ran them
 *   /env?name=K     {"name":K,"value":thaw_config(K) or null}
 *   /map?file=F     maps F (relative to the function dir) with thaw_map_file:
 *                   {"len":N,"sum":<byte sum>}; 404 when missing
 *   /header?name=H  {"name":H,"value":<request header H, any case, or null>}
 *   /whoami         {"uid":N,"gid":N}: who the instance runs as
 *   /open?path=P    opens P (absolute) for reading, then for writing:
 *                   {"read":0 or errno,"write":0 or errno}
 *   /write?path=P&mb=N
 *                   creates P (absolute) and writes N MiB (N <= 4096) into it,
 *                   stopping at the first error:
 *                   {"written_mb":M,"errno":0 or the error's}
 *   /log?n=N        thaw_log()s N lines "fault log line I of N" (N <= 100000),
 *                   200 {"logged":N}
 *   /sdk-check      runs the SDK's response-header validation and answers
 *                   the return codes as JSON, with header x-checked: 1
 *   /raw-response?status=S&name=N&value=V
 *                   plays a hostile instance: writes its own CH_RESPONSE
 *                   frame (status S, one header N: V, unchecked, body "raw")
 *                   on the channel, bypassing the SDK, for the request it
 *                   takes to be current (the count of requests this process
 *                   served: right for instanceConcurrency 1 without a
 *                   snapshot). The host's own answer follows with the same id.
 *   anything else   200, the body verbatim with the request's content type
 *
 * init() honours FAULT_INIT_SLEEP_MS=N (sleeps), FAULT_INIT_CRASH=1
 * (crashes), FAULT_INIT_FAIL=<message> (fails with that message) and
 * FAULT_INIT_WRITE=<path> (writes "init" there and closes it, or keeps it
 * open with FAULT_INIT_HOLD=1), in that order; before_checkpoint() crashes with FAULT_CHECKPOINT_CRASH=1 and fails
 * with FAULT_CHECKPOINT_FAIL=<message>.
 */
#include "thaw/handler.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static _Atomic uint64_t rng_state;
static _Atomic unsigned n_before_checkpoint, n_on_restore; /* /hooks */
static pthread_mutex_t leak_lock = PTHREAD_MUTEX_INITIALIZER;
static void *leaked; /* chain of leaked blocks: each starts with the next */
static uint64_t leaked_mb;

static void seed(void)
{
	uint64_t s;
	if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		s = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)getpid() << 48;
	}
	atomic_store(&rng_state, s);
}

/* splitmix64 on an atomic counter: thread-safe without a lock */
static uint64_t next_random(void)
{
	uint64_t z = atomic_fetch_add(&rng_state, 0x9e3779b97f4a7c15ull) + 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void __attribute__((noreturn)) crash(void)
{
	/* through a volatile pointer so the compiler cannot turn it into a trap */
	volatile int *volatile p = NULL;
	*p = 1;
	abort();
}

/* Value of key in a query string, percent-decoded into buf; NULL if absent. */
static const char *query_param(const char *query, const char *key, char *buf, size_t size)
{
	size_t klen = strlen(key);
	for (const char *q = query; q && *q;) {
		const char *amp = strchr(q, '&');
		const char *end = amp ? amp : q + strlen(q);
		if ((size_t)(end - q) > klen && !strncmp(q, key, klen) && q[klen] == '=') {
			size_t n = 0;
			for (const char *p = q + klen + 1; p < end && n + 1 < size; p++) {
				unsigned v;
				if (*p == '%' && end - p > 2 && sscanf(p + 1, "%2x", &v) == 1) {
					buf[n++] = (char)v;
					p += 2;
				} else {
					buf[n++] = *p == '+' ? ' ' : *p;
				}
			}
			buf[n] = '\0';
			return buf;
		}
		q = amp ? amp + 1 : NULL;
	}
	return NULL;
}

/* An integer query parameter, or def when absent or not a number. */
static long long int_param(const struct thaw_request *req, const char *key, long long def)
{
	char buf[32], *end;
	const char *v = query_param(req->query, key, buf, sizeof(buf));
	if (!v || !*v)
		return def;
	long long n = strtoll(v, &end, 10);
	return *end ? def : n;
}

/* Appends s as a JSON string with its quotes; escapes what JSON requires and
 * leaves other bytes alone (test values are ASCII). */
static int put_json_str(struct thaw_response *res, const char *s)
{
	int r = thaw_response_write(res, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p && !r; p++) {
		char esc[7];
		if (*p == '"' || *p == '\\')
			r = thaw_response_write(res, (char[]){ '\\', (char)*p }, 2);
		else if (*p < 0x20)
			snprintf(esc, sizeof(esc), "\\u%04x", *p),
				r = thaw_response_write(res, esc, 6);
		else
			r = thaw_response_write(res, p, 1);
	}
	return r ? r : thaw_response_write(res, "\"", 1);
}

static int json_printf(struct thaw_response *res, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int json_printf(struct thaw_response *res, int status, const char *fmt, ...)
{
	char body[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(body))
		return -EOVERFLOW;
	return thaw_respond(res, status, "application/json", body, (size_t)n);
}

static int do_leak(const struct thaw_request *req, struct thaw_response *res)
{
	long long mb = int_param(req, "mb", 1);
	if (mb < 0 || mb > (1 << 20))
		return thaw_respond_error(res, 400, "mb must be 0..%d", 1 << 20);
	size_t size = (size_t)mb << 20;
	void *p = NULL;
	if (size) {
		p = malloc(size);
		if (!p)
			return thaw_respond_error(res, 507, "cannot allocate %lld MiB", mb);
		memset(p, 0xa5, size); /* touch every page: make it resident */
	}
	pthread_mutex_lock(&leak_lock);
	if (p) {
		*(void **)p = leaked;
		leaked = p;
	}
	leaked_mb += (uint64_t)mb;
	uint64_t total = leaked_mb;
	pthread_mutex_unlock(&leak_lock);
	return json_printf(res, 200, "{\"leaked_mb\":%" PRIu64 "}", total);
}

static int do_env(const struct thaw_request *req, struct thaw_response *res)
{
	char name[256];
	if (!query_param(req->query, "name", name, sizeof(name)) || !*name)
		return thaw_respond_error(res, 400, "missing ?name=");
	const char *v = thaw_config(name);
	thaw_response_status(res, 200);
	int r = thaw_response_write(res, "{\"name\":", 8);
	r = r ? r : put_json_str(res, name);
	r = r ? r : thaw_response_write(res, ",\"value\":", 9);
	r = r ? r : v ? put_json_str(res, v) : thaw_response_write(res, "null", 4);
	return r ? r : thaw_response_write(res, "}", 1);
}

static int do_map(const struct thaw_request *req, struct thaw_response *res)
{
	char file[512];
	if (!query_param(req->query, "file", file, sizeof(file)) || !*file)
		return thaw_respond_error(res, 400, "missing ?file=");
	struct thaw_map m;
	int r = thaw_map_file(file, &m);
	if (r)
		return thaw_respond_error(res, r == -ENOENT ? 404 : 500, "map %s: %s", file,
					  strerror(-r));
	uint64_t sum = 0;
	for (size_t i = 0; i < m.len; i++)
		sum += ((const unsigned char *)m.data)[i];
	size_t len = m.len;
	thaw_unmap(&m);
	return json_printf(res, 200, "{\"len\":%zu,\"sum\":%" PRIu64 "}", len, sum);
}

static int do_header(const struct thaw_request *req, struct thaw_response *res)
{
	char name[256];
	if (!query_param(req->query, "name", name, sizeof(name)) || !*name)
		return thaw_respond_error(res, 400, "missing ?name=");
	const char *v = thaw_request_header(NULL, name); /* the current request */
	thaw_response_status(res, 200);
	int r = thaw_response_write(res, "{\"name\":", 8);
	r = r ? r : put_json_str(res, name);
	r = r ? r : thaw_response_write(res, ",\"value\":", 9);
	r = r ? r : v ? put_json_str(res, v) : thaw_response_write(res, "null", 4);
	return r ? r : thaw_response_write(res, "}", 1);
}

static int do_open(const struct thaw_request *req, struct thaw_response *res)
{
	char path[1024];
	if (!query_param(req->query, "path", path, sizeof(path)) || path[0] != '/')
		return thaw_respond_error(res, 400, "path=/absolute/path expected");
	int r = open(path, O_RDONLY | O_CLOEXEC), re = r < 0 ? errno : 0;
	if (r >= 0)
		close(r);
	int w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC), we = w < 0 ? errno : 0;
	if (w >= 0)
		close(w);
	return json_printf(res, 200, "{\"read\":%d,\"write\":%d}", re, we);
}

static int do_write(const struct thaw_request *req, struct thaw_response *res)
{
	char path[1024];
	long long mb = int_param(req, "mb", 0), done = 0;
	if (!query_param(req->query, "path", path, sizeof(path)) || path[0] != '/')
		return thaw_respond_error(res, 400, "path=/absolute/path expected");
	if (mb < 0 || mb > 4096)
		return thaw_respond_error(res, 400, "mb must be 0..4096");
	static char chunk[1 << 20];
	memset(chunk, 'w', sizeof(chunk));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), err = fd < 0 ? errno : 0;
	for (; fd >= 0 && done < mb; done++) {
		ssize_t w = write(fd, chunk, sizeof(chunk));
		if (w != (ssize_t)sizeof(chunk)) {
			err = w < 0 ? errno : ENOSPC;
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	return json_printf(res, 200, "{\"written_mb\":%lld,\"errno\":%d}", done, err);
}

static int do_work(const struct thaw_request *req, struct thaw_response *res)
{
	long long ms = int_param(req, "ms", 0), done = 0;
	const char *grpc_ms = thaw_config("FAULT_GRPC_WORK_MS");
	if (!strncmp(req->path, "/inference.", 11)) /* a gRPC call: no query string */
		ms = grpc_ms ? atoll(grpc_ms) : 0;
	if (ms < 0 || ms > 60000)
		return thaw_respond_error(res, 400, "ms must be 0..60000");
	while (done < ms && !thaw_cancelled(req)) {
		sleep_ms(5);
		done += 5;
	}
	bool cancelled = thaw_cancelled(req);
	if (cancelled)
		thaw_log(THAW_LOG_INFO, "work cancelled after %lld ms", done);
	return json_printf(res, 200, "{\"worked_ms\":%lld,\"cancelled\":%s}", done,
			   cancelled ? "true" : "false");
}

/* Burns CPU until ms of wall time passed: what it got shows the cpu limit. */
static int do_spin(const struct thaw_request *req, struct thaw_response *res)
{
	long long ms = int_param(req, "ms", 0);
	if (ms < 0 || ms > 60000)
		return thaw_respond_error(res, 400, "ms must be 0..60000");
	struct timespec t0, t, c0, c;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	volatile uint64_t x = 0;
	do {
		for (int i = 0; i < 10000; i++)
			x = x + (uint64_t)i;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
	return json_printf(res, 200, "{\"spun_ms\":%lld,\"cpu_ms\":%.1f}", ms,
			   (double)(c.tv_sec - c0.tv_sec) * 1e3 + (double)(c.tv_nsec - c0.tv_nsec) / 1e6);
}

static int do_sdk_check(struct thaw_response *res)
{
	int crlf = thaw_response_header(res, "x-a", "v\r\nset-cookie: x");
	int lf = thaw_response_header(res, "x-b", "v\nw");
	int bad_name = thaw_response_header(res, "x a:", "v");
	int empty = thaw_response_header(res, "", "v");
	int clen = thaw_response_header(res, "Content-Length", "5");
	int te = thaw_response_header(res, "transfer-encoding", "chunked");
	int conn = thaw_response_header(res, "Connection", "close");
	int good = thaw_response_header(res, "x-checked", "1");
	return json_printf(res, 200,
			   "{\"crlf\":%d,\"lf\":%d,\"bad_name\":%d,\"empty_name\":%d,"
			   "\"content_length\":%d,\"transfer_encoding\":%d,\"connection\":%d,"
			   "\"good\":%d,\"time_left_positive\":%s}",
			   crlf, lf, bad_name, empty, clen, te, conn, good,
			   thaw_time_left_ms(NULL) > 0 ? "true" : "false");
}

static _Atomic uint64_t served; /* requests this process took, warm-up included */

static void put_raw_field(char *out, size_t *off, const char *s, size_t len)
{
	uint32_t n = (uint32_t)len;
	memcpy(out + *off, &n, 4);
	memcpy(out + *off + 4, s, len);
	out[*off + 4 + len] = '\0';
	*off += 4 + len + 1;
}

/* The channel's frame layout (common/channel.h), written by hand as a
 * hostile handler would. */
static int do_raw_response(const struct thaw_request *req, struct thaw_response *res, uint64_t id)
{
	char name[256], value[256], frame[1024];
	if (!query_param(req->query, "name", name, sizeof(name)))
		strcpy(name, "x-raw");
	if (!query_param(req->query, "value", value, sizeof(value)))
		strcpy(value, "1");
	uint32_t status = (uint32_t)int_param(req, "status", 200), nh = 1;
	size_t off = 16;
	memcpy(frame + off, &status, 4);
	memcpy(frame + off + 4, &nh, 4);
	off += 8;
	put_raw_field(frame, &off, name, strlen(name));
	put_raw_field(frame, &off, value, strlen(value));
	put_raw_field(frame, &off, "raw", 3);
	uint32_t type = 4 /* CH_RESPONSE */, len = (uint32_t)(off - 16);
	memcpy(frame, &type, 4);
	memcpy(frame + 4, &len, 4);
	memcpy(frame + 8, &id, 8);
	if (write(3, frame, off) != (ssize_t)off)
		return -EIO;
	return thaw_respond(res, 200, "text/plain", "host", 4);
}

static int invoke(const struct thaw_request *req, struct thaw_response *res)
{
	const char *path = req->path;
	uint64_t id = atomic_fetch_add(&served, 1) + 1;
	if (!strcmp(path, "/raw-response"))
		return do_raw_response(req, res, id);
	if (!strcmp(path, "/sleep")) {
		long long ms = int_param(req, "ms", 0);
		if (ms < 0 || ms > 86400000)
			return thaw_respond_error(res, 400, "ms must be 0..86400000");
		sleep_ms(ms);
		return json_printf(res, 200,
				   "{\"slept_ms\":%lld,\"n\":%lld,\"random\":%" PRIu64
				   ",\"instance_id\":\"%s\"}",
				   ms, int_param(req, "n", -1), next_random(), thaw_instance_id());
	}
	if (!strcmp(path, "/hang"))
		for (;;)
			pause();
	if (!strcmp(path, "/crash"))
		crash();
	if (!strcmp(path, "/abort"))
		abort();
	if (!strcmp(path, "/exit")) {
		fflush(NULL);
		exit((int)int_param(req, "code", 0));
	}
	if (!strcmp(path, "/work") || !strncmp(path, "/inference.", 11))
		return do_work(req, res);
	if (!strcmp(path, "/whoami"))
		return json_printf(res, 200, "{\"uid\":%u,\"gid\":%u}", (unsigned)getuid(),
				   (unsigned)getgid());
	if (!strcmp(path, "/open"))
		return do_open(req, res);
	if (!strcmp(path, "/write"))
		return do_write(req, res);
	if (!strcmp(path, "/spin"))
		return do_spin(req, res);
	if (!strcmp(path, "/leak"))
		return do_leak(req, res);
	if (!strcmp(path, "/big")) {
		long long mb = int_param(req, "mb", 1), ms = int_param(req, "ms", 0);
		if (mb < 0 || mb > 64 || ms < 0 || ms > 60000)
			return thaw_respond_error(res, 400, "mb must be 0..64, ms 0..60000");
		sleep_ms(ms);
		char *b = malloc((size_t)mb << 20);
		if (!b)
			return thaw_respond_error(res, 500, "out of memory");
		memset(b, 'b', (size_t)mb << 20);
		int r = thaw_respond(res, 200, "application/octet-stream", b, (size_t)mb << 20);
		free(b);
		return r;
	}
	if (!strcmp(path, "/status")) {
		long long code = int_param(req, "code", 200);
		if (code < 100 || code > 599)
			return thaw_respond_error(res, 400, "code must be 100..599");
		return json_printf(res, (int)code, "{\"status\":%lld}", code);
	}
	if (!strcmp(path, "/fail")) {
		long long e = int_param(req, "errno", EIO);
		return e > 0 && e < 4096 ? -(int)e : -EIO;
	}
	if (!strcmp(path, "/random"))
		return json_printf(res, 200, "{\"random\":%" PRIu64 ",\"instance_id\":\"%s\"}",
				   next_random(), thaw_instance_id());
	if (!strcmp(path, "/id"))
		return json_printf(res, 200, "{\"instance_id\":\"%s\"}", thaw_instance_id());
	if (!strcmp(path, "/hooks"))
		return json_printf(res, 200, "{\"before_checkpoint\":%u,\"on_restore\":%u}",
				   atomic_load(&n_before_checkpoint), atomic_load(&n_on_restore));
	if (!strcmp(path, "/env"))
		return do_env(req, res);
	if (!strcmp(path, "/map"))
		return do_map(req, res);
	if (!strcmp(path, "/header"))
		return do_header(req, res);
	if (!strcmp(path, "/sdk-check"))
		return do_sdk_check(res);
	if (!strcmp(path, "/log")) {
		long long n = int_param(req, "n", 1);
		if (n < 0 || n > 100000)
			return thaw_respond_error(res, 400, "n must be 0..100000");
		for (long long i = 1; i <= n; i++)
			thaw_log(THAW_LOG_INFO, "fault log line %lld of %lld", i, n);
		return json_printf(res, 200, "{\"logged\":%lld}", n);
	}
	const char *ct = thaw_request_header(req, "content-type");
	if (!ct || thaw_respond(res, 200, ct, req->body, req->body_len))
		return thaw_respond(res, 200, "application/octet-stream", req->body, req->body_len);
	return 0;
}

/* Logs "<when> in memory cgroup <path>" (v1's memory line, else v2's): the
 * tests check that init, and a restored copy's first hook, already run
 * under memorySize. */
static void log_memory_cgroup(const char *when)
{
	char line[512], v2[512] = "";
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = '\0';
		if (!strcmp(a + 1, "memory") || strstr(a + 1, "memory,") || strstr(a + 1, ",memory")) {
			thaw_log(THAW_LOG_INFO, "%s in memory cgroup %s", when, b + 1);
			fclose(f);
			return;
		}
		if (!a[1])
			snprintf(v2, sizeof(v2), "%s", b + 1);
	}
	fclose(f);
	if (v2[0])
		thaw_log(THAW_LOG_INFO, "%s in memory cgroup %s", when, v2);
}

static int init(void)
{
	const char *v = thaw_config("FAULT_INIT_SLEEP_MS");
	if (v && atoll(v) > 0)
		sleep_ms(atoll(v));
	v = thaw_config("FAULT_INIT_CRASH");
	if (v && !strcmp(v, "1"))
		crash();
	v = thaw_config("FAULT_INIT_FAIL");
	if (v) {
		thaw_set_error("%s", v);
		return -EINVAL;
	}
	if ((v = thaw_config("FAULT_INIT_WRITE"))) {
		const char *hold = thaw_config("FAULT_INIT_HOLD");
		FILE *f = fopen(v, "we");
		bool ok = f && fputs("init", f) >= 0 && fflush(f) == 0;
		if (f && !(hold && !strcmp(hold, "1")) && fclose(f)) /* held: open for good */
			ok = false;
		if (!ok) {
			thaw_set_error("FAULT_INIT_WRITE %s: %s", v, strerror(errno));
			return -EIO;
		}
	}
	seed();
	thaw_log(THAW_LOG_INFO, "fault handler ready, instance %s", thaw_instance_id());
	log_memory_cgroup("init");
	return 0;
}

static int on_restore(void)
{
	seed();
	atomic_fetch_add(&n_on_restore, 1);
	log_memory_cgroup("on_restore"); /* before READY: no request, no job yet */
	return 0;
}

static int before_checkpoint(void)
{
	const char *v = thaw_config("FAULT_CHECKPOINT_CRASH");
	if (v && !strcmp(v, "1"))
		crash();
	v = thaw_config("FAULT_CHECKPOINT_FAIL");
	if (v) {
		thaw_set_error("%s", v);
		return -EIO;
	}
	atomic_fetch_add(&n_before_checkpoint, 1);
	thaw_log(THAW_LOG_INFO, "fault: before_checkpoint");
	return 0;
}

THAW_HANDLER(.name = "fault", .init = init, .invoke = invoke, .on_restore = on_restore,
	     .before_checkpoint = before_checkpoint);
