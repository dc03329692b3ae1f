/* `thaw deploy [DIR]`: add DIR as a new version, wait until it serves or
 * fails, report the invoke URL and the measured start times. */
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 200
#define MAX_TIMEOUT_S 86400

static const char usage[] =
	"usage: thaw deploy [DIR] [options]\n"
	"Deploys the function in DIR (default: the current folder; it holds fc.yaml)\n"
	"as a new version and waits until that version serves. A version that fails\n"
	"to start never serves: the previous one keeps serving, and deploy exits 1.\n"
	"  --timeout S       stop waiting after S seconds (default 300)\n" CLI_COMMON_USAGE;

struct deploy {
	struct cli *cli;
	char name[65];
	unsigned version;
	bool tty;           /* progress line rewritten in place */
	const char *shown;  /* the state last printed (plain lines) */
	unsigned spin;
	double t0;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static const cJSON *find_version(const cJSON *fn, unsigned v)
{
	const cJSON *e;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(fn, "versions"))
		if ((unsigned)cli_num(e, "version") == v)
			return e;
	return NULL;
}

static void progress(struct deploy *d, const char *state)
{
	if (d->cli->json)
		return;
	if (d->tty) {
		static const char spinner[] = "|/-\\";
		printf("\r\033[K%c %s version %u: %s  %.1fs", spinner[d->spin++ % 4], d->name,
		       d->version, state, now_s() - d->t0);
	} else if (!d->shown || strcmp(d->shown, state)) {
		printf("%s version %u: %s\n", d->name, d->version, state);
		d->shown = state; /* a literal (state_literal) */
	}
	fflush(stdout);
}

static void clear_progress(const struct deploy *d)
{
	if (d->tty && !d->cli->json) {
		fputs("\r\033[K", stdout);
		fflush(stdout);
	}
}

/* The state names the daemon uses, as literals progress() may keep. */
static const char *state_literal(const char *s)
{
	static const char *const known[] = { "starting", "ready", "failed" };
	for (size_t i = 0; i < 3; i++)
		if (!strcmp(s, known[i]))
			return known[i];
	return "unknown";
}

static void report_json(const struct deploy *d, const cJSON *v, unsigned current, bool serves)
{
	cJSON *o = cJSON_CreateObject();
	char url[1200];
	snprintf(url, sizeof(url), "%s/%s/", d->cli->url, d->name);
	cJSON_AddStringToObject(o, "name", d->name);
	cJSON_AddNumberToObject(o, "version", d->version);
	cJSON_AddStringToObject(o, "state", v ? cli_str(v, "state") : "starting");
	cJSON_AddBoolToObject(o, "serving", serves);
	if (current)
		cJSON_AddNumberToObject(o, "current", current);
	else
		cJSON_AddNullToObject(o, "current");
	cJSON_AddStringToObject(o, "url", url);
	static const char *const nums[] = { "init_ms", "snapshot_bytes", "dump_ms", "restore_ms" };
	for (size_t i = 0; i < 4; i++)
		cJSON_AddNumberToObject(o, nums[i], v ? cli_num(v, nums[i]) : 0);
	if (v && *cli_str(v, "error"))
		cJSON_AddStringToObject(o, "error", cli_str(v, "error"));
	cJSON_AddNumberToObject(o, "seconds", now_s() - d->t0);
	char *s = cJSON_Print(o);
	puts(s);
	free(s);
	cJSON_Delete(o);
}

static int report_ready(const struct deploy *d, const cJSON *v)
{
	clear_progress(d);
	if (d->cli->json) {
		report_json(d, v, d->version, true);
		return CLI_OK;
	}
	char init[32], restore[32], dump[32], size[32];
	cli_format_ms(cli_num(v, "init_ms"), init, sizeof(init));
	cli_format_ms(cli_num(v, "restore_ms"), restore, sizeof(restore));
	cli_format_ms(cli_num(v, "dump_ms"), dump, sizeof(dump));
	cli_format_bytes(cli_num(v, "snapshot_bytes"), size, sizeof(size));
	printf("%s version %u serves (ready in %.1f s)\n", d->name, d->version, now_s() - d->t0);
	printf("  url          %s/%s/\n", d->cli->url, d->name);
	printf("  cold start   %s ms (handler init)\n", init);
	if (cli_num(v, "snapshot_bytes") > 0) {
		printf("  snapshot     %s (dump %s ms)\n", size, dump);
		printf("  restore      %s ms (each new instance starts from the snapshot)\n", restore);
	} else {
		printf("  snapshot     none: every instance cold starts\n");
	}
	return CLI_OK;
}

static int report_failed(const struct deploy *d, const cJSON *v, unsigned current)
{
	clear_progress(d);
	if (d->cli->json)
		report_json(d, v, current, false);
	cli_fail(d->cli, CLI_FAILED, "%s version %u failed: %s", d->name, d->version,
		 *cli_str(v, "error") ? cli_str(v, "error") : "(no error message)");
	if (current)
		cli_fail(d->cli, CLI_FAILED, "version %u keeps serving %s", current, d->name);
	else
		cli_fail(d->cli, CLI_FAILED, "no version of %s serves", d->name);
	return CLI_FAILED;
}

/* Polls the function until our version serves, fails, or the deadline. */
static int wait_for(struct deploy *d, unsigned timeout_s)
{
	char path[128];
	snprintf(path, sizeof(path), "/admin/functions/%s", d->name);
	double deadline = d->t0 + timeout_s;
	const char *state = "starting";
	for (;;) {
		cJSON *fn;
		int ret = cli_admin(d->cli, "GET", path, NULL, &fn);
		if (ret) {
			clear_progress(d);
			return ret;
		}
		const cJSON *v = find_version(fn, d->version);
		unsigned current = (unsigned)cli_num(fn, "current");
		unsigned newest = (unsigned)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(fn, "versions"));
		state = state_literal(v ? cli_str(v, "state") : "starting");
		if (!strcmp(state, "failed"))
			ret = report_failed(d, v, current);
		else if (!strcmp(state, "ready") && current == d->version)
			ret = report_ready(d, v);
		else if (!strcmp(state, "ready") && (current > d->version || newest > d->version))
			ret = cli_fail(d->cli, CLI_FAILED, "%s version %u is ready but a newer version was deployed meanwhile (serving: %u)",
				       d->name, d->version, current);
		else
			ret = -1; /* still starting, or ready an instant before it serves */
		cJSON_Delete(fn);
		if (ret >= 0)
			return ret;
		if (now_s() >= deadline)
			break;
		progress(d, state);
		sleep_ms(POLL_MS);
	}
	clear_progress(d);
	return cli_fail(d->cli, CLI_FAILED,
			"%s version %u still %s after %u s; it may serve later (thaw history %s)",
			d->name, d->version, state, timeout_s, d->name);
}

int cli_deploy(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, 0, 't' },
		CLI_COMMON_OPTIONS,
		{ 0, 0, 0, 0 },
	};
	unsigned timeout_s = 300;
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int r = cli_common_opt(cli, c, optarg, usage);
		if (r < 0)
			return CLI_OK;
		if (r > 0)
			continue;
		if (c == 't') {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || !v || v > MAX_TIMEOUT_S)
				bad = cli_fail(cli, CLI_USAGE, "--timeout: expected seconds, 1 to %u: %s",
					       MAX_TIMEOUT_S, optarg);
			timeout_s = (unsigned)v;
		} else {
			bad = 1;
		}
	}
	if (bad || argc - optind > 1) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	const char *dir = optind < argc ? argv[optind] : ".";
	char abs[PATH_MAX];
	struct stat st;
	if (!realpath(dir, abs))
		return cli_fail(cli, CLI_USAGE, "%s: %s", dir, strerror(errno));
	if (stat(abs, &st) < 0 || !S_ISDIR(st.st_mode))
		return cli_fail(cli, CLI_USAGE, "%s: not a folder (give the folder holding fc.yaml)", dir);

	struct deploy d = { .cli = cli, .tty = isatty(STDOUT_FILENO), .t0 = now_s() };
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "dir", abs);
	char *body = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	cJSON *added;
	int ret = cli_admin(cli, "POST", "/admin/functions", body, &added);
	free(body);
	if (ret)
		return ret;
	snprintf(d.name, sizeof(d.name), "%s", cli_str(added, "name"));
	d.version = (unsigned)cli_num(added, "version");
	cJSON_Delete(added);
	if (!cli_valid_name(d.name) || !d.version)
		return cli_fail(cli, CLI_FAILED, "unexpected answer from the daemon (no name or version)");
	if (!cli->json && !d.tty)
		printf("deploying %s as %s version %u\n", abs, d.name, d.version);
	return wait_for(&d, timeout_s);
}
