/* The front end's routing table (daemon/front.c) driven through a real
 * connection (daemon/conn.c, #included to reach process()) on a real loop
 * ring that never runs: each request's bytes are fed to the connection, the
 * front end routes it once, and the answer it wrote waits in the
 * connection's output buffer, where the test reads the status and body. No
 * instance starts: the one function that reaches a pool is a broken version,
 * which the pool answers at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../daemon/conn.c"

#include "daemon/front.h"
#include "common/fsutil.h"
#include "daemon/lifecycle.h"
#include "daemon/registry.h"

#include <sys/socket.h>

static struct shard *sh;
static char root[] = "/tmp/thaw-test-front.XXXXXX";

/* Feeds req to a fresh connection; returns what it answered (status line
 * to body), NUL-terminated, the caller's to free. */
static char *exchange(const char *req)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	conn_accept(sh, sv[0]);
	struct conn *c = sh->conns;
	assert_non_null(c);
	http_req_feed(&c->req, req, strlen(req));
	process(c);
	char *out = strndup(c->out.data ? c->out.data : "", c->out.len);
	conn_close(c); /* its queued operations never complete: it stays allocated */
	close(sv[1]);
	return out;
}

static int status_of(const char *resp)
{
	int st = 0;
	return sscanf(resp, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

static const char *body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");
	return b ? b + 4 : "";
}

static const struct {
	const char *req;
	int status;
	const char *body_has; /* NULL: any */
} table[] = {
	{ "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200, "\"ok\"" },
	{ "GET /v2/health/live HTTP/1.1\r\n\r\n", 200, "\"ok\"" },
	{ "GET /v2 HTTP/1.1\r\n\r\n", 200, "\"extensions\"" },
	{ "GET /metrics HTTP/1.1\r\n\r\n", 200, "thaw_connections" },
	{ "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, NULL },
	{ "GET /readyz HTTP/1.1\r\n\r\n", 503, "\"ready\":false" },
	{ "GET /admin/functions HTTP/1.1\r\n\r\n", 401, NULL },
	{ "GET /admin/functions HTTP/1.1\r\nX-Thaw-Token: wrong\r\n\r\n", 401, NULL },
	{ "GET /admin/functions HTTP/1.1\r\nX-Thaw-Token: " "test-token-0123456789" "\r\n\r\n", 200,
	  "\"broken\"" },
	{ "GET /proxy/8080/x HTTP/1.1\r\n\r\n", 401, "admin token" },
	{ "POST /nosuch/ HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 404, "function not found: nosuch" },
	{ "POST /v1/models/broken/versions/9:predict HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 404,
	  "has no version 9" },
	{ "POST /broken/ HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 503,
	  "function broken is unavailable: init failed: on purpose" },
	{ "POST /invoke/broken HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 503, "unavailable" },
	{ "POST /v2/models/broken/infer HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 503,
	  "unavailable" },
	{ "POST /guarded/ HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 401, "needs a token" },
	{ "POST /guarded/ HTTP/1.1\r\nX-Thaw-Token: wrong\r\nContent-Length: 2\r\n\r\nhi", 401, NULL },
	{ "GET /a/../healthz HTTP/1.1\r\n\r\n", 400, "invalid request path" },
	{ "GET / HTTP/1.1\r\n\r\n", 404, NULL },
};

static void test_routes_once_to_the_right_place(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		char *resp = exchange(table[i].req);
		if (status_of(resp) != table[i].status ||
		    (table[i].body_has && !strstr(body_of(resp), table[i].body_has)))
			fail_msg("case %zu: %s\nwanted %d%s%s, got:\n%s", i, table[i].req, table[i].status,
				 table[i].body_has ? " with " : "",
				 table[i].body_has ? table[i].body_has : "", resp);
		free(resp);
	}
}

/* A sane client request id comes back as it was; one the daemon refuses is
 * replaced, and never echoed. */
static void test_request_id_comes_back(void **state)
{
	(void)state;
	char *resp = exchange("POST /broken/ HTTP/1.1\r\nx-fc-request-id: abc-123\r\n"
			      "Content-Length: 0\r\n\r\n");
	assert_non_null(strstr(resp, "x-fc-request-id: abc-123\r\n"));
	free(resp);
	resp = exchange("POST /broken/ HTTP/1.1\r\nx-fc-request-id: bad\"id\r\nContent-Length: 0\r\n\r\n");
	assert_null(strstr(resp, "bad\"id"));
	assert_non_null(strstr(resp, "x-fc-request-id: "));
	free(resp);
}

static void add(const char *name, const char *auth)
{
	struct config cfg;
	struct function *fn;
	config_defaults(&cfg);
	cfg.name = xstrdup(name);
	cfg.handler = xstrdup("/nonexistent/handler.so");
	cfg.dir = xstrdup(root);
	free(cfg.auth_type);
	cfg.auth_type = xstrdup(auth);
	cfg.snapshot = false;
	assert_int_equal(registry_add(&cfg, NULL, 0, NULL, &fn), 0);
	fn->broken = true; /* its pool answers at once: nothing starts */
	registry_fail(fn, "init failed: on purpose");
}

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(root));
	server_options_default(&server.opt);
	server.opt.state_dir = root;
	server.opt.access_log = false;
	snprintf(server.admin_token, sizeof(server.admin_token), "test-token-0123456789");
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sh = xcalloc(1, sizeof(*sh));
	assert_int_equal(shard_init(sh, 0, lfd), 0);
	shard_self = sh;
	server.shards[0] = sh;
	server.n_shards = 1;
	front_init();
	add("broken", "anonymous");
	add("guarded", "function");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fs_rm_rf(root);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes_once_to_the_right_place),
		cmocka_unit_test(test_request_id_comes_back),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
