/* Tests for the thaw-instance host: spawns $THAW_BUILD/thaw-instance (default
 * "build") with a socketpair on fd 3 and the echo or fault handler, and
 * speaks the channel protocol to it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include "testutil.h"

#include "common/buf.h"
#include "common/channel.h"

#define HDR sizeof(struct channel_hdr)
#define TIMEOUT_MS 5000

static char build_dir[PATH_MAX];

/* Every instance a test started, so teardown can kill what a failed
 * assertion left behind. */
static struct {
	pid_t pid;
	int fd;
} live[8];

struct inst {
	pid_t pid;
	int fd; /* our end of the channel */
};

struct frame {
	struct channel_hdr h;
	char *payload; /* NUL-terminated copy, free() it */
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts the host with handler (a name under build/handlers, or a path) and
 * extra "K=V" environment entries (NULL-terminated). */
static void spawn(struct inst *in, const char *handler, const char *const *extra_env)
{
	char host[PATH_MAX + 32], so[PATH_MAX + 64];
	snprintf(host, sizeof(host), "%s/thaw-instance", build_dir);
	if (handler[0] == '/')
		snprintf(so, sizeof(so), "%s", handler);
	else
		snprintf(so, sizeof(so), "%s/handlers/%s.so", build_dir, handler);
	if (access(host, X_OK))
		fail_msg("%s missing: run make", host);

	char *env[32];
	int n = 0;
	char handler_env[sizeof(so) + 16];
	snprintf(handler_env, sizeof(handler_env), "THAW_HANDLER=%s", so);
	/* first, so they override the defaults below (getenv takes the first) */
	for (int i = 0; extra_env && extra_env[i] && n < 24; i++)
		env[n++] = (char *)extra_env[i];
	env[n++] = handler_env;
	env[n++] = "THAW_FUNCTION_NAME=testfn";
	env[n++] = "THAW_FUNCTION_DIR=/tmp";
	env[n++] = "PATH=/usr/bin:/bin";
	/* under `make asan`: let SIGSEGV kill the host as it would in production */
	env[n++] = "ASAN_OPTIONS=handle_segv=0:handle_abort=0";
	env[n] = NULL;

	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (sv[1] == CHANNEL_FD)
			fcntl(CHANNEL_FD, F_SETFD, 0);
		else if (dup2(sv[1], CHANNEL_FD) < 0)
			_exit(127);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		char *argv[] = { host, NULL };
		execve(host, argv, env);
		_exit(127);
	}
	close(sv[1]);
	in->pid = pid;
	in->fd = sv[0];
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (!live[i].pid) {
			live[i].pid = pid;
			live[i].fd = sv[0];
			break;
		}
}

static void forget(pid_t pid, int fd)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
		if (pid && live[i].pid == pid)
			live[i].pid = -1;
		if (fd >= 0 && live[i].fd == fd)
			live[i].fd = -1;
		if (live[i].pid == -1 && live[i].fd == -1)
			live[i].pid = 0;
	}
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
		if (live[i].pid > 0) {
			kill(live[i].pid, SIGKILL);
			waitpid(live[i].pid, NULL, 0);
		}
		if (live[i].pid && live[i].fd >= 0)
			close(live[i].fd);
		live[i].pid = 0;
		live[i].fd = -1;
	}
	return 0;
}

/* Reads exactly len bytes before deadline; returns 1, 0 on EOF, -ETIMEDOUT. */
static int read_full(int fd, void *dst, size_t len, int64_t deadline)
{
	size_t got = 0;
	while (got < len) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -ETIMEDOUT;
		ssize_t k = read(fd, (char *)dst + got, len - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return 0;
		got += (size_t)k;
	}
	return 1;
}

static int recv_frame(struct inst *in, struct frame *f, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	f->payload = NULL;
	int r = read_full(in->fd, &f->h, HDR, deadline);
	if (r <= 0)
		return r;
	f->payload = malloc(f->h.len + 1);
	r = read_full(in->fd, f->payload, f->h.len, deadline);
	f->payload[f->h.len] = '\0';
	return r;
}

static void expect_frame(struct inst *in, struct frame *f, uint32_t type)
{
	int r = recv_frame(in, f, TIMEOUT_MS);
	if (r != 1)
		fail_msg("waiting for frame type %u: %s", type, r ? "timeout" : "EOF");
	if (f->h.type != type)
		fail_msg("got frame type %u (%s), want %u", f->h.type, f->payload, type);
}

static void send_all(struct inst *in, const struct buf *b)
{
	size_t off = 0;
	while (off < b->len) {
		ssize_t k = write(in->fd, b->data + off, b->len - off);
		if (k < 0 && errno == EINTR)
			continue;
		assert_true(k > 0);
		off += (size_t)k;
	}
}

static void send_ctl(struct inst *in, uint32_t type)
{
	struct buf b = { 0 };
	channel_put_hdr(&b, type, 0, 0);
	send_all(in, &b);
	buf_free(&b);
}

static void send_request(struct inst *in, uint64_t id, const char *method, const char *path,
			 const char *query, const struct channel_kv *h, uint32_t nh,
			 const char *body, size_t body_len)
{
	struct buf b = { 0 };
	channel_put_request(&b, id, method, path, strlen(path), query, strlen(query), "req-1",
			    INT64_MAX, h, nh, body, body_len);
	send_all(in, &b);
	buf_free(&b);
}

static const char *resp_header(const struct channel_response *r, const char *name)
{
	const char *cur = r->headers;
	for (uint32_t i = 0; i < r->n_headers; i++) {
		struct channel_kv kv;
		channel_next_header(&cur, &kv);
		if (!strcasecmp(kv.name, name))
			return kv.value;
	}
	return NULL;
}

/* Receives a CH_RESPONSE and decodes it into r (views into f->payload). */
static void expect_response(struct inst *in, struct frame *f, struct channel_response *r)
{
	expect_frame(in, f, CH_RESPONSE);
	assert_int_equal(channel_decode_response(f->payload, f->h.len, r), 0);
}

/* Waits for the host to exit; returns its wait status. */
static int wait_exit(struct inst *in, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int status;
	for (;;) {
		pid_t r = waitpid(in->pid, &status, WNOHANG);
		if (r == in->pid) {
			forget(in->pid, -1);
			in->pid = 0;
			return status;
		}
		if (now_ms() > deadline)
			fail_msg("instance did not exit within %d ms", timeout_ms);
		usleep(5000);
	}
}

static void destroy(struct inst *in)
{
	if (in->pid > 0) {
		kill(in->pid, SIGKILL);
		waitpid(in->pid, NULL, 0);
		forget(in->pid, -1);
		in->pid = 0;
	}
	if (in->fd >= 0) {
		close(in->fd);
		forget(0, in->fd);
	}
	in->fd = -1;
}

static void expect_ready(struct inst *in, char id[17])
{
	struct frame f;
	expect_frame(in, &f, CH_READY);
	assert_int_equal(f.h.len, 16);
	assert_int_equal(strspn(f.payload, "0123456789abcdef"), 16);
	if (id)
		memcpy(id, f.payload, 17);
	free(f.payload);
}

/* --- tests --------------------------------------------------------------- */

static void test_ready_reports_instance_id(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "echo", NULL);
	expect_ready(&in, NULL);
	destroy(&in);
}

static void test_echo_round_trip(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "echo", NULL);
	expect_ready(&in, NULL);

	static const char body[] = "bin\0ary";
	const struct channel_kv h[] = { { "Content-Type", "text/plain" }, { "X-Test", "yes" } };
	send_request(&in, 77, "POST", "/hello", "x=1", h, 2, body, sizeof(body) - 1);
	struct frame f;
	struct channel_response r;
	expect_response(&in, &f, &r);
	assert_int_equal(f.h.id, 77);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, sizeof(body) - 1);
	assert_memory_equal(r.body, body, sizeof(body) - 1);
	assert_string_equal(resp_header(&r, "content-type"), "text/plain");
	assert_string_equal(resp_header(&r, "x-echo-method"), "POST");
	assert_string_equal(resp_header(&r, "x-echo-path"), "/hello");
	assert_string_equal(resp_header(&r, "x-echo-query"), "x=1");
	free(f.payload);

	/* no content type: application/octet-stream */
	send_request(&in, 78, "GET", "/", "", NULL, 0, "", 0);
	expect_response(&in, &f, &r);
	assert_int_equal(f.h.id, 78);
	assert_string_equal(resp_header(&r, "content-type"), "application/octet-stream");
	assert_int_equal(r.body_len, 0);
	free(f.payload);

	send_request(&in, 79, "POST", "/json", "", h, 2, "q\"\n", 3);
	expect_response(&in, &f, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "content-type"), "application/json");
	assert_non_null(strstr(r.body, "\"method\":\"POST\",\"path\":\"/json\",\"query\":\"\""));
	assert_non_null(strstr(r.body, "\"headers\":{\"content-type\":\"text/plain\","
					"\"x-test\":\"yes\"}"));
	assert_non_null(strstr(r.body, "\"body\":\"q\\\"\\n\""));
	assert_non_null(strstr(r.body, "\"request_id\":\"req-1\""));
	free(f.payload);
	destroy(&in);
}

static void test_concurrent_requests_overlap(void **state)
{
	(void)state;
	struct inst in;
	const char *env[] = { "THAW_INSTANCE_CONCURRENCY=4", NULL };
	spawn(&in, "fault", env);
	expect_ready(&in, NULL);
	int64_t start = now_ms();
	for (uint64_t id = 1; id <= 4; id++)
		send_request(&in, id, "GET", "/sleep", "ms=200", NULL, 0, "", 0);
	unsigned seen = 0;
	for (int i = 0; i < 4; i++) {
		struct frame f;
		struct channel_response r;
		expect_response(&in, &f, &r);
		assert_int_equal(r.status, 200);
		assert_non_null(strstr(r.body, "{\"slept_ms\":200,"));
		assert_true(f.h.id >= 1 && f.h.id <= 4);
		seen |= 1u << f.h.id;
		free(f.payload);
	}
	int64_t took = now_ms() - start;
	assert_int_equal(seen, 0x1e);
	if (took >= 600)
		fail_msg("4 x 200 ms with concurrency 4 took %lld ms", (long long)took);
	destroy(&in);
}

static void test_restored_takes_new_instance_id(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "fault", NULL);
	char id1[17], id2[17];
	expect_ready(&in, id1);
	send_ctl(&in, CH_RESTORED);
	expect_ready(&in, id2);
	assert_string_not_equal(id1, id2);

	send_request(&in, 5, "GET", "/id", "", NULL, 0, "", 0);
	struct frame f;
	struct channel_response r;
	expect_response(&in, &f, &r);
	char want[64];
	snprintf(want, sizeof(want), "{\"instance_id\":\"%s\"}", id2);
	assert_string_equal(r.body, want);
	free(f.payload);
	destroy(&in);
}

/* CH_CHECKPOINT runs before_checkpoint once and is answered CH_READY with
 * the same instance id; the hook's effect is there for the next request. */
static void test_checkpoint_runs_before_checkpoint(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "fault", NULL);
	char id1[17], id2[17];
	expect_ready(&in, id1);
	send_ctl(&in, CH_CHECKPOINT);
	expect_ready(&in, id2);
	assert_string_equal(id1, id2);

	send_request(&in, 7, "GET", "/hooks", "", NULL, 0, "", 0);
	struct frame f;
	struct channel_response r;
	expect_response(&in, &f, &r);
	assert_string_equal(r.body, "{\"before_checkpoint\":1,\"on_restore\":0}");
	free(f.payload);
	destroy(&in);
}

/* A failing before_checkpoint is reported like a failed init: its message
 * in CH_INIT_FAILED, exit 1 (the daemon then takes no snapshot). */
static void test_checkpoint_hook_failure_reported(void **state)
{
	(void)state;
	struct inst in;
	const char *env[] = { "FAULT_CHECKPOINT_FAIL=cannot release device weights", NULL };
	spawn(&in, "fault", env);
	expect_ready(&in, NULL);
	send_ctl(&in, CH_CHECKPOINT);
	struct frame f;
	expect_frame(&in, &f, CH_INIT_FAILED);
	assert_string_equal(f.payload, "cannot release device weights");
	free(f.payload);
	int st = wait_exit(&in, TIMEOUT_MS);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	destroy(&in);
}

static void test_init_failure_reports_message(void **state)
{
	(void)state;
	struct inst in;
	const char *env[] = { "FAULT_INIT_FAIL=weights missing: /models/x.bin", NULL };
	spawn(&in, "fault", env);
	struct frame f;
	expect_frame(&in, &f, CH_INIT_FAILED);
	assert_string_equal(f.payload, "weights missing: /models/x.bin");
	free(f.payload);
	int st = wait_exit(&in, TIMEOUT_MS);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	destroy(&in);
}

static void test_dlopen_failure_reported(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "/nonexistent/handler.so", NULL);
	struct frame f;
	expect_frame(&in, &f, CH_INIT_FAILED);
	assert_non_null(strstr(f.payload, "dlopen"));
	assert_non_null(strstr(f.payload, "/nonexistent/handler.so"));
	free(f.payload);
	int st = wait_exit(&in, TIMEOUT_MS);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	destroy(&in);
}

static void test_crash_closes_channel(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "fault", NULL);
	expect_ready(&in, NULL);
	send_request(&in, 1, "GET", "/crash", "", NULL, 0, "", 0);
	struct frame f;
	assert_int_equal(recv_frame(&in, &f, TIMEOUT_MS), 0); /* EOF, no response */
	free(f.payload);
	int st = wait_exit(&in, TIMEOUT_MS);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGSEGV);
	destroy(&in);
}

static void test_handler_failure_answers_500(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "fault", NULL);
	expect_ready(&in, NULL);
	send_request(&in, 3, "GET", "/fail", "errno=2", NULL, 0, "", 0);
	struct frame f;
	struct channel_response r;
	expect_response(&in, &f, &r);
	assert_int_equal(r.status, 500);
	assert_string_equal(resp_header(&r, "content-type"), "application/json");
	assert_string_equal(r.body, "{\"error\":\"handler failed: No such file or directory\"}");
	free(f.payload);

	send_request(&in, 4, "GET", "/status", "code=418", NULL, 0, "", 0);
	expect_response(&in, &f, &r);
	assert_int_equal(r.status, 418);
	assert_string_equal(r.body, "{\"status\":418}");
	free(f.payload);
	destroy(&in);
}

static void test_config_reaches_handler(void **state)
{
	(void)state;
	struct inst in;
	const char *env[] = { "MODEL_NAME=tiny \"q\"", NULL };
	spawn(&in, "fault", env);
	expect_ready(&in, NULL);
	send_request(&in, 1, "GET", "/env", "name=MODEL_NAME", NULL, 0, "", 0);
	struct frame f;
	struct channel_response r;
	expect_response(&in, &f, &r);
	assert_string_equal(r.body, "{\"name\":\"MODEL_NAME\",\"value\":\"tiny \\\"q\\\"\"}");
	free(f.payload);
	send_request(&in, 2, "GET", "/env", "name=NOPE", NULL, 0, "", 0);
	expect_response(&in, &f, &r);
	assert_string_equal(r.body, "{\"name\":\"NOPE\",\"value\":null}");
	free(f.payload);
	destroy(&in);
}

static char fn_dir[64];

static int rm_fn_dir(void **state)
{
	char path[128];
	static const char *const files[] = { "w.bin", "empty.bin" };
	for (int i = 0; i < 2 && fn_dir[0]; i++) {
		snprintf(path, sizeof(path), "%s/%s", fn_dir, files[i]);
		unlink(path);
	}
	if (fn_dir[0])
		rmdir(fn_dir);
	fn_dir[0] = '\0';
	return teardown(state);
}

static void get_body(struct inst *in, const char *path, const char *query,
		     const struct channel_kv *h, uint32_t nh, uint32_t want_status,
		     const char *want_body)
{
	send_request(in, 1, "GET", path, query, h, nh, "", 0);
	struct frame f;
	struct channel_response r;
	expect_response(in, &f, &r);
	if (r.status != want_status || (want_body && strcmp(r.body, want_body)))
		fail_msg("%s?%s: got %u %s, want %u %s", path, query, r.status, r.body,
			 want_status, want_body ? want_body : "(any)");
	free(f.payload);
}

static void test_sdk_files_headers_validation(void **state)
{
	(void)state;
	snprintf(fn_dir, sizeof(fn_dir), "/tmp/thaw-host-test-XXXXXX");
	assert_non_null(mkdtemp(fn_dir));
	char path[128], dir_env[96], abs_q[160];
	snprintf(path, sizeof(path), "%s/w.bin", fn_dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("abc", fp);
	fclose(fp);
	snprintf(abs_q, sizeof(abs_q), "file=%s", path);
	snprintf(path, sizeof(path), "%s/empty.bin", fn_dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);
	snprintf(dir_env, sizeof(dir_env), "THAW_FUNCTION_DIR=%s", fn_dir);

	struct inst in;
	const char *env[] = { dir_env, NULL };
	spawn(&in, "fault", env);
	expect_ready(&in, NULL);
	get_body(&in, "/map", "file=w.bin", NULL, 0, 200, "{\"len\":3,\"sum\":294}");
	get_body(&in, "/map", abs_q, NULL, 0, 200, "{\"len\":3,\"sum\":294}");
	get_body(&in, "/map", "file=empty.bin", NULL, 0, 200, "{\"len\":0,\"sum\":0}");
	get_body(&in, "/map", "file=missing.bin", NULL, 0, 404,
		 "{\"error\":\"map missing.bin: No such file or directory\"}");
	const struct channel_kv h[] = { { "X-Model-Version", "7" } };
	get_body(&in, "/header", "name=x-model-VERSION", h, 1, 200,
		 "{\"name\":\"x-model-VERSION\",\"value\":\"7\"}");
	get_body(&in, "/header", "name=x-none", h, 1, 200,
		 "{\"name\":\"x-none\",\"value\":null}");

	send_request(&in, 2, "GET", "/sdk-check", "", NULL, 0, "", 0);
	struct frame f;
	struct channel_response r;
	expect_response(&in, &f, &r);
	assert_string_equal(r.body, "{\"crlf\":-22,\"lf\":-22,\"bad_name\":-22,"
				    "\"empty_name\":-22,\"content_length\":-22,"
				    "\"transfer_encoding\":-22,\"connection\":-22,\"good\":0,"
				    "\"time_left_positive\":true}");
	assert_string_equal(resp_header(&r, "x-checked"), "1");
	assert_int_equal(r.n_headers, 2); /* x-checked and content-type, nothing else */
	free(f.payload);
	destroy(&in);
}

static void test_shutdown_exits_zero(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "fault", NULL);
	expect_ready(&in, NULL);
	send_ctl(&in, CH_SHUTDOWN);
	int st = wait_exit(&in, TIMEOUT_MS);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	destroy(&in);
}

static void test_eof_exits_zero(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "echo", NULL);
	expect_ready(&in, NULL);
	close(in.fd);
	forget(0, in.fd);
	in.fd = -1;
	int st = wait_exit(&in, TIMEOUT_MS);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	destroy(&in);
}

static void test_malformed_frame_exits_2(void **state)
{
	(void)state;
	for (int kind = 0; kind < 3; kind++) {
		struct inst in;
		spawn(&in, "echo", NULL);
		expect_ready(&in, NULL);
		struct buf b = { 0 };
		if (kind == 0) { /* unknown type */
			struct channel_hdr h = { 99, 0, 1 };
			buf_append(&b, &h, sizeof(h));
		} else if (kind == 1) { /* request payload that does not decode */
			channel_put_hdr(&b, CH_REQUEST, 1, 5);
			buf_append(&b, "junk!", 5);
		} else { /* a frame only the instance sends */
			channel_put_hdr(&b, CH_RESPONSE, 1, 0);
		}
		send_all(&in, &b);
		buf_free(&b);
		int st = wait_exit(&in, TIMEOUT_MS);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 2);
		destroy(&in);
	}
}

static void test_large_body_round_trip(void **state)
{
	(void)state;
	struct inst in;
	spawn(&in, "echo", NULL);
	expect_ready(&in, NULL);
	size_t len = 8u << 20;
	char *body = malloc(len);
	for (size_t i = 0; i < len; i++)
		body[i] = (char)(i * 131 >> 3);
	/* write and read at once: neither side may block the other */
	struct buf b = { 0 };
	channel_put_request(&b, 9, "POST", "/big", 4, "", 0, "r", INT64_MAX, NULL, 0, body, len);
	pid_t writer = fork();
	assert_true(writer >= 0);
	if (writer == 0) {
		send_all(&in, &b);
		_exit(0);
	}
	struct frame f;
	struct channel_response r;
	expect_response(&in, &f, &r);
	assert_int_equal(r.body_len, len);
	assert_memory_equal(r.body, body, len);
	waitpid(writer, NULL, 0);
	free(f.payload);
	free(body);
	buf_free(&b);
	destroy(&in);
}

int main(void)
{
	const char *b = getenv("THAW_BUILD");
	if (!realpath(b && *b ? b : "build", build_dir)) {
		fprintf(stderr, "no build dir %s: run make\n", b && *b ? b : "build");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_ready_reports_instance_id, teardown),
		cmocka_unit_test_teardown(test_echo_round_trip, teardown),
		cmocka_unit_test_teardown(test_concurrent_requests_overlap, teardown),
		cmocka_unit_test_teardown(test_restored_takes_new_instance_id, teardown),
		cmocka_unit_test_teardown(test_checkpoint_runs_before_checkpoint, teardown),
		cmocka_unit_test_teardown(test_checkpoint_hook_failure_reported, teardown),
		cmocka_unit_test_teardown(test_init_failure_reports_message, teardown),
		cmocka_unit_test_teardown(test_dlopen_failure_reported, teardown),
		cmocka_unit_test_teardown(test_crash_closes_channel, teardown),
		cmocka_unit_test_teardown(test_handler_failure_answers_500, teardown),
		cmocka_unit_test_teardown(test_config_reaches_handler, teardown),
		cmocka_unit_test_teardown(test_sdk_files_headers_validation, rm_fn_dir),
		cmocka_unit_test_teardown(test_shutdown_exits_zero, teardown),
		cmocka_unit_test_teardown(test_eof_exits_zero, teardown),
		cmocka_unit_test_teardown(test_malformed_frame_exits_2, teardown),
		cmocka_unit_test_teardown(test_large_body_round_trip, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
