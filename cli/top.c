/* `thaw top`: a frame a second per function from /metrics (requests/s,
 * latency quantiles from the histogram, instances by state) and
 * /admin/functions (the version serving, its state). */
#include "cli/cli.h"
#include "cli/http.h"
#include "cli/prom.h"
#include "common/mem.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define INTERVAL_MS 1000
#define MAX_SECONDS 31536000

static const char usage[] =
	"usage: thaw top [options]\n"
	"Shows every function once a second: the version serving and its state,\n"
	"requests/s, p50 and p99 latency over the last second (from the histogram\n"
	"buckets, so approximate), instances starting/idle/busy and queued requests.\n"
	"Quit with q (or Ctrl-C).\n"
	"  --once            print one frame (after one interval) and exit\n"
	"  --seconds N       exit after N seconds\n" CLI_COMMON_USAGE;

/* Set by SIGINT/SIGTERM so that the loop ends and the terminal is restored. */
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct sample {
	struct prom_sample m;
	cJSON *fns; /* /admin/functions, owned */
	double t;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int take_sample(struct cli *cli, struct sample *s)
{
	cJSON_Delete(s->fns);
	s->fns = NULL;
	int ret = cli_admin(cli, "GET", "/admin/functions", NULL, &s->fns);
	if (ret)
		return ret;
	char url[1200];
	snprintf(url, sizeof(url), "%s/metrics", cli->url);
	struct cli_http_req req = { .method = "GET", .url = url, .timeout_ms = 10000 };
	struct cli_http_res res;
	ret = cli_http_do(&req, &res);
	s->t = now_s();
	if (ret)
		ret = cli_transport_error(cli, ret, res.err);
	else if (res.status != 200)
		ret = cli_fail(cli, CLI_FAILED, "/metrics answered HTTP %ld", res.status);
	else if (prom_parse(res.body, res.len, &s->m))
		ret = cli_fail(cli, CLI_FAILED, "/metrics: malformed series");
	cli_http_res_fini(&res);
	return ret;
}

struct row {
	const char *name, *state;
	unsigned current;
	double rps, p50, p99, p50_all;
	const struct prom_fn *m;
};

static void row_of(const cJSON *fn, const struct sample *now, const struct sample *before,
		   struct row *r)
{
	static const struct prom_fn none;
	r->name = cli_str(fn, "name");
	r->state = cli_str(fn, "state");
	r->current = (unsigned)cli_num(fn, "current");
	const struct prom_fn *m = prom_find(&now->m, r->name), *b = prom_find(&before->m, r->name);
	r->m = m ? m : &none;
	double dt = now->t - before->t;
	r->rps = m && b && dt > 0 ? (m->requests - b->requests) / dt : 0;
	if (r->rps < 0) /* the daemon restarted */
		r->rps = 0;
	r->p50 = m ? prom_quantile(m, b, 0.5) * 1e3 : -1;
	r->p99 = m ? prom_quantile(m, b, 0.99) * 1e3 : -1;
	r->p50_all = m ? prom_quantile(m, NULL, 0.5) * 1e3 : -1;
}

static void add_ms(cJSON *o, const char *key, double ms)
{
	if (ms < 0)
		cJSON_AddNullToObject(o, key);
	else
		cJSON_AddNumberToObject(o, key, ms);
}

static void frame_json(const struct cli *cli, const struct sample *now, const struct sample *before)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "url", cli->url);
	cJSON_AddNumberToObject(doc, "time", (double)time(NULL));
	cJSON_AddNumberToObject(doc, "interval_s", now->t - before->t);
	cJSON *arr = cJSON_AddArrayToObject(doc, "functions");
	const cJSON *fn;
	cJSON_ArrayForEach(fn, now->fns) {
		struct row r;
		row_of(fn, now, before, &r);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", r.name);
		if (r.current)
			cJSON_AddNumberToObject(o, "current", r.current);
		else
			cJSON_AddNullToObject(o, "current");
		cJSON_AddStringToObject(o, "state", r.state);
		cJSON_AddNumberToObject(o, "requests_total", r.m->requests);
		cJSON_AddNumberToObject(o, "rps", r.rps);
		add_ms(o, "p50_ms", r.p50);
		add_ms(o, "p99_ms", r.p99);
		add_ms(o, "p50_ms_all", r.p50_all);
		cJSON *in = cJSON_AddObjectToObject(o, "instances");
		cJSON_AddNumberToObject(in, "starting", r.m->instances[PROM_STARTING]);
		cJSON_AddNumberToObject(in, "idle", r.m->instances[PROM_IDLE]);
		cJSON_AddNumberToObject(in, "busy", r.m->instances[PROM_BUSY]);
		cJSON_AddNumberToObject(o, "queue", r.m->queue);
		cJSON_AddItemToArray(arr, o);
	}
	char *s = cJSON_PrintUnformatted(doc);
	puts(s);
	free(s);
	cJSON_Delete(doc);
}

static void fmt_ms(double ms, char *out, size_t len)
{
	if (ms < 0)
		snprintf(out, len, "-");
	else
		snprintf(out, len, ms < 10 ? "%.2f" : "%.1f", ms);
}

static void frame_text(const struct cli *cli, const struct sample *now, const struct sample *before,
		       bool tty)
{
	char clock[16];
	time_t t = time(NULL);
	struct tm tm;
	strftime(clock, sizeof(clock), "%H:%M:%S", localtime_r(&t, &tm));
	if (tty)
		fputs("\033[H\033[2J", stdout);
	printf("thaw top  %s  %s%s\n", cli->url, clock, tty ? "  (q quits)" : "");
	int w = 8;
	const cJSON *fn;
	cJSON_ArrayForEach(fn, now->fns)
		if ((int)strlen(cli_str(fn, "name")) > w)
			w = (int)strlen(cli_str(fn, "name"));
	printf("%-*s  %4s  %-8s  %8s  %8s  %8s  %5s  %5s  %5s  %5s\n", w, "FUNCTION", "VER", "STATE",
	       "REQ/S", "P50_MS", "P99_MS", "START", "IDLE", "BUSY", "QUEUE");
	cJSON_ArrayForEach(fn, now->fns) {
		struct row r;
		row_of(fn, now, before, &r);
		char ver[16] = "-", p50[32], p99[32];
		if (r.current)
			snprintf(ver, sizeof(ver), "%u", r.current);
		fmt_ms(r.p50, p50, sizeof(p50));
		fmt_ms(r.p99, p99, sizeof(p99));
		printf("%-*s  %4s  %-8s  %8.1f  %8s  %8s  %5.0f  %5.0f  %5.0f  %5.0f\n", w, r.name, ver,
		       r.state, r.rps, p50, p99, r.m->instances[PROM_STARTING],
		       r.m->instances[PROM_IDLE], r.m->instances[PROM_BUSY], r.m->queue);
	}
	if (!cJSON_GetArraySize(now->fns))
		puts("(no functions)");
	if (!tty)
		putchar('\n');
	fflush(stdout);
}

/* Waits up to ms; true when q was typed (keys is the terminal, or -1). */
static bool wait_or_quit(int keys, unsigned ms)
{
	double end = now_s() + ms / 1e3;
	while (!stop) {
		double left = end - now_s();
		if (left <= 0)
			return false;
		struct pollfd p = { .fd = keys, .events = POLLIN };
		int n = poll(&p, keys >= 0 ? 1 : 0, (int)(left * 1e3) + 1);
		if (n > 0) {
			char c;
			ssize_t r = read(keys, &c, 1);
			if (r <= 0)
				keys = -1; /* EOF: only the timer and signals from now on */
			else if (c == 'q' || c == 'Q')
				return true;
		}
	}
	return true;
}

int cli_top(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "once", no_argument, 0, 'o' },
		{ "seconds", required_argument, 0, 's' },
		CLI_COMMON_OPTIONS,
		{ 0, 0, 0, 0 },
	};
	bool once = false;
	unsigned long seconds = 0;
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int r = cli_common_opt(cli, c, optarg, usage);
		if (r < 0)
			return CLI_OK;
		if (r > 0)
			continue;
		char *end;
		if (c == 'o') {
			once = true;
		} else if (c == 's') {
			seconds = strtoul(optarg, &end, 10);
			if (!*optarg || *end || !seconds || seconds > MAX_SECONDS)
				bad = cli_fail(cli, CLI_USAGE, "--seconds: expected a count: %s", optarg);
		} else {
			bad = 1;
		}
	}
	if (bad || optind != argc) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}

	bool tty = isatty(STDOUT_FILENO) && !cli->json;
	int keys = -1;
	struct termios saved;
	if (!once && isatty(STDIN_FILENO) && !tcgetattr(STDIN_FILENO, &saved)) {
		struct termios raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		if (!tcsetattr(STDIN_FILENO, TCSANOW, &raw))
			keys = STDIN_FILENO;
	}
	struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	struct sample *a = xcalloc(1, sizeof(*a)), *b = xcalloc(1, sizeof(*b));
	double start = now_s();
	int ret = take_sample(cli, a);
	while (!ret) {
		if (wait_or_quit(keys, INTERVAL_MS))
			break;
		if ((ret = take_sample(cli, b)))
			break;
		if (cli->json)
			frame_json(cli, b, a);
		else
			frame_text(cli, b, a, tty);
		fflush(stdout);
		struct sample *t = a;
		a = b;
		b = t;
		if (once || (seconds && now_s() - start >= (double)seconds))
			break;
	}
	if (keys >= 0)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	cJSON_Delete(a->fns);
	cJSON_Delete(b->fns);
	free(a);
	free(b);
	return ret;
}
