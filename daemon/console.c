#define LOG_PREFIX "console: "
#include "daemon/console.h"
#include "daemon/conn.h"
#include "daemon/gpu.h"
#include "common/log.h"
#include "common/mem.h"
#include "daemon/series.h"
#include "daemon/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A series per name slot of the registry (names are never freed while the
 * daemon runs), made by the sampler when it first sees the name. Written
 * by the sampler only; a pointer, once published, stays. */
static _Atomic(struct series *) series_of[MAX_NAMES];

static int64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sample_all(void)
{
	int64_t now = unix_ms();
	unsigned n = atomic_load(&server.n_names);
	for (unsigned i = 0; i < n && i < MAX_NAMES; i++) {
		struct fn_name *nm = server.names[i];
		if (!nm || atomic_load(&nm->removed))
			continue;
		struct series *s = atomic_load(&series_of[i]);
		if (!s) {
			s = xmalloc(sizeof(*s));
			series_init(s);
			/* its metrics began at zero when the name was made, under
			 * a step ago: the first point counts from there */
			struct series_counters zero = { 0 };
			series_sample(s, &zero, now - SERIES_STEP_S * 1000);
			atomic_store(&series_of[i], s);
		}
		const struct fn_metrics *ms[MAX_VERSIONS];
		unsigned nv = atomic_load(&nm->n_versions) - nm->first + 1;
		for (unsigned k = 0; k < nv; k++)
			ms[k] = &nm->versions[k]->metrics;
		struct series_counters c;
		series_read(ms, nv, &c);
		series_sample(s, &c, now);
	}
}

/* Every SERIES_STEP_S seconds on the monotonic clock, whatever sampling took;
 * the GPUs (gpu.h) at the same pace. */
static void *sampler(void *arg)
{
	(void)arg;
	/* /metrics has GPU figures where NVML answers; THAW_NVML_LIB: another
	 * library (the tests' fake NVML) */
	const char *lib = getenv("THAW_NVML_LIB");
	gpu_open(lib && *lib ? lib : GPU_NVML_LIB);
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		sample_all();
		gpu_sample(unix_ms());
		next.tv_sec += SERIES_STEP_S;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
	return NULL;
}

int console_start(void)
{
	static atomic_bool started;
	if (atomic_exchange(&started, true))
		return 0;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 256 * 1024 + sizeof(const struct fn_metrics *) * MAX_VERSIONS);
	int ret = pthread_create(&t, &a, sampler, NULL);
	pthread_attr_destroy(&a);
	if (ret) {
		pr_err("cannot start the history sampler: %s", strerror(ret));
		return -ret;
	}
	pthread_setname_np(t, "thaw-history");
	return 0;
}

void console_history(struct conn *c, struct fn_name *nm)
{
	struct series *s = NULL;
	unsigned n = atomic_load(&server.n_names);
	for (unsigned i = 0; i < n && i < MAX_NAMES; i++)
		if (server.names[i] == nm)
			s = atomic_load(&series_of[i]);
	/* ?since=MS: digits only, else the whole hour */
	int64_t since = 0;
	const char *url = http_span_ptr(&c->req, c->req.url);
	const char *q = memmem(url, c->req.url.len, "?since=", 7);
	if (q)
		for (const char *p = q + 7; p < url + c->req.url.len && *p >= '0' && *p <= '9' &&
					    since < INT64_MAX / 10 - 10;
		     p++)
			since = since * 10 + (*p - '0');
	struct buf b = { 0 };
	if (s) {
		series_render(s, since, &b);
	} else { /* not sampled yet: the same shape, empty */
		struct series *empty = xmalloc(sizeof(*empty));
		series_init(empty);
		series_render(empty, 0, &b);
		series_fini(empty);
		free(empty);
	}
	/* and the figures as of now, so that a table needs no /metrics */
	const struct fn_metrics *ms[MAX_VERSIONS];
	unsigned nv = atomic_load(&nm->n_versions) - nm->first + 1;
	for (unsigned k = 0; k < nv; k++)
		ms[k] = &nm->versions[k]->metrics;
	struct series_counters now;
	series_read(ms, nv, &now);
	b.len--; /* the closing brace */
	buf_printf(&b,
		   ",\"now\":{\"requests_2xx\":%llu,\"requests_3xx\":%llu,\"requests_4xx\":%llu,"
		   "\"requests_5xx\":%llu,\"cold_starts\":%llu,\"restores\":%llu,"
		   "\"starting\":%d,\"idle\":%d,\"busy\":%d,\"spare\":%d,\"queue\":%d,"
		   "\"memory_instances\":%d,\"memory_bytes\":",
		   (unsigned long long)now.req_class[0], (unsigned long long)now.req_class[1],
		   (unsigned long long)now.req_class[2], (unsigned long long)now.req_class[3],
		   (unsigned long long)now.starts[START_COLD],
		   (unsigned long long)now.starts[START_RESTORE], now.instances[INST_STARTING],
		   now.instances[INST_IDLE], now.instances[INST_BUSY], now.instances[INST_SPARE],
		   now.queue, now.mem_instances);
	/* unknown (no instance with a memory group) is null, not 0 */
	if (now.mem_instances > 0)
		buf_printf(&b, "%llu}}", (unsigned long long)now.mem_bytes);
	else
		buf_append_str(&b, "null}}");
	conn_respond(c, 200, "application/json", b.data, b.len, NULL, 0);
	buf_free(&b);
}

void console_render_metrics(struct buf *out)
{
	static const char *const head[] = {
		"# HELP thaw_function_max_instances maxInstances of the serving version.\n"
		"# TYPE thaw_function_max_instances gauge\n",
		"# HELP thaw_function_timeout_seconds timeout of the serving version.\n"
		"# TYPE thaw_function_timeout_seconds gauge\n",
		"# HELP thaw_function_init_failed 1 when the newest version failed to initialize.\n"
		"# TYPE thaw_function_init_failed gauge\n",
	};
	static const char *const name[] = { "thaw_function_max_instances",
					    "thaw_function_timeout_seconds",
					    "thaw_function_init_failed" };
	unsigned n = atomic_load(&server.n_names);
	for (unsigned k = 0; k < 3; k++) {
		buf_append_str(out, head[k]);
		for (unsigned i = 0; i < n; i++) {
			struct fn_name *nm = server.names[i];
			if (atomic_load(&nm->removed))
				continue;
			struct function *cur = atomic_load(&nm->current), *last = fn_name_newest(nm);
			struct function *fn = cur ? cur : last;
			unsigned v = k == 0   ? fn->cfg.scaling.max_instances
				     : k == 1 ? fn->cfg.timeout_s
					      : atomic_load(&last->state) == FN_FAILED;
			buf_printf(out, "%s{function=\"%s\"} %u\n", name[k], nm->name, v);
		}
	}
}

void console_gpus(struct conn *c)
{
	struct buf b = { 0 };
	gpu_render_history(&b);
	conn_respond(c, 200, "application/json", b.data, b.len, NULL, 0);
	buf_free(&b);
}

static const char *content_type(const char *name)
{
	const char *dot = strrchr(name, '.');
	if (dot && !strcmp(dot, ".html"))
		return "text/html; charset=utf-8";
	if (dot && !strcmp(dot, ".js"))
		return "text/javascript; charset=utf-8";
	if (dot && !strcmp(dot, ".css"))
		return "text/css; charset=utf-8";
	if (dot && !strcmp(dot, ".svg"))
		return "image/svg+xml";
	return "application/octet-stream";
}

/* No request of the page may leave the daemon's origin, and no script but
 * the console's own runs (the logs it shows are text, never markup). */
static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
			  "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
			  "form-action 'none'; frame-ancestors 'none'";

void console_serve(struct conn *c, const char *rest, size_t len)
{
	const char *m = http_req_method(&c->req);
	if (strcmp(m, "GET") && strcmp(m, "HEAD")) {
		conn_respond_error(c, 405, "use GET");
		return;
	}
	if (len == 0) {
		struct channel_kv h = { "location", "/console/" };
		conn_respond(c, 301, "text/plain", "", 0, &h, 1);
		return;
	}
	const char *name = len == 1 ? "index.html" : rest + 1;
	size_t nlen = len == 1 ? strlen(name) : len - 1;
	for (unsigned i = 0; i < console_n_assets; i++) {
		const struct console_asset *a = &console_assets[i];
		if (strlen(a->name) != nlen || memcmp(a->name, name, nlen))
			continue;
		struct channel_kv h[] = {
			{ "content-security-policy", csp },
			{ "x-content-type-options", "nosniff" },
			{ "referrer-policy", "no-referrer" },
			{ "cache-control", "no-cache" },
		};
		conn_respond(c, 200, content_type(a->name), (const char *)a->data, a->len, h, 4);
		return;
	}
	conn_respond_error(c, 404, "no console file %.*s", (int)(len > 80 ? 80 : len), rest);
}
