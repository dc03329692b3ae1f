/* thaw logs: a function's log lines (GET /admin/functions/NAME/logs), and
 * thaw rm: removing a function (DELETE /admin/functions/NAME). */
#include "cli/cli.h"
#include "cli/http.h"
#include "fnlog.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FOLLOW_INTERVAL_MS 500
#define MAX_TAIL FNLOG_MAX_TAIL

static const char usage_logs[] =
	"usage: thaw logs FN [--grep WORD] [--tail N] [--follow] [options]\n"
	"Prints the newest N (default 100, at most 10000) lines FN's instances wrote to\n"
	"stdout and stderr, each as \"TIME vVERSION pid PID: line\".\n"
	"  --grep WORD       only lines containing WORD (a plain substring, at most 255 bytes)\n"
	"  --tail N          how many lines (default 100)\n"
	"  --follow, -f      then print new lines as they come, until Ctrl-C\n"
	CLI_COMMON_USAGE;

static const char usage_rm[] =
	"usage: thaw rm FN [options]\n"
	"Removes FN: it stops taking requests at once (those under way finish), its\n"
	"instances stop as they go idle and its snapshots are deleted. A later deploy\n"
	"of FN starts again at version 1.\n"
	CLI_COMMON_USAGE;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* %XX-escapes everything but unreserved characters. */
static void url_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (; *s && n + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			out[n++] = (char)ch;
		} else {
			out[n++] = '%';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		}
	}
	out[n] = '\0';
}

/* One GET; prints the lines and sets *offset from the answer. */
static int fetch(struct cli *cli, const char *name, unsigned long tail, const char *grep,
		 unsigned long long *offset, bool with_offset)
{
	char path[1200], q[800] = "";
	if (grep)
		url_escape(grep, q, sizeof(q));
	int n = snprintf(path, sizeof(path), "/admin/functions/%s/logs?tail=%lu", name, tail);
	if (grep)
		n += snprintf(path + n, sizeof(path) - (size_t)n, "&grep=%s", q);
	if (with_offset)
		snprintf(path + n, sizeof(path) - (size_t)n, "&offset=%llu", *offset);
	struct cli_http_res res;
	int ret = cli_admin_text(cli, path, "x-thaw-log-offset", &res);
	if (!ret) {
		fwrite(res.body, 1, res.len, stdout);
		fflush(stdout);
		*offset = strtoull(res.header, NULL, 10);
	}
	cli_http_res_fini(&res);
	return ret;
}

int cli_logs(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "grep", required_argument, 0, 'g' }, { "tail", required_argument, 0, 'n' },
		{ "follow", no_argument, 0, 'f' },     CLI_COMMON_OPTIONS,
		{ 0, 0, 0, 0 },
	};
	const char *grep = NULL;
	unsigned long tail = 100;
	bool follow = false, bad = false;
	int c;
	while ((c = getopt_long(argc, argv, "hfn:g:", opts, NULL)) != -1) {
		switch (c) {
		case 'g':
			grep = *optarg ? optarg : NULL;
			/* the daemon refuses a longer one; say so before asking */
			if (strlen(optarg) > FNLOG_MAX_GREP) {
				cli_fail(cli, CLI_USAGE, "--grep: at most %d bytes", FNLOG_MAX_GREP);
				bad = true;
			}
			break;
		case 'n':
			tail = strtoul(optarg, NULL, 10);
			/* digits only: strtoul takes " 5", "+5" and wraps "-1" */
			if (!*optarg || optarg[strspn(optarg, "0123456789")] || tail < 1 ||
			    tail > MAX_TAIL) {
				cli_fail(cli, CLI_USAGE, "--tail: expected 1 to %d lines", MAX_TAIL);
				bad = true;
			}
			break;
		case 'f':
			follow = true;
			break;
		default: {
			int r = cli_common_opt(cli, c, optarg, usage_logs);
			if (r < 0)
				return CLI_OK;
			bad |= r == 0;
		}
		}
	}
	if (bad || argc - optind != 1) {
		fputs(usage_logs, stderr);
		return CLI_USAGE;
	}
	const char *name = argv[optind];
	if (!cli_valid_name(name))
		return cli_fail(cli, CLI_USAGE, "not a function name: '%s'", name);
	unsigned long long offset = 0;
	int ret = fetch(cli, name, tail, grep, &offset, false);
	if (ret || !follow)
		return ret;
	struct sigaction sa = { .sa_handler = on_sigint };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!interrupted) {
		struct timespec ts = { 0, FOLLOW_INTERVAL_MS * 1000000L };
		nanosleep(&ts, NULL); /* a signal ends it early */
		if (interrupted)
			break;
		if ((ret = fetch(cli, name, MAX_TAIL, grep, &offset, true)))
			return ret;
	}
	return CLI_OK;
}

int cli_rm(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0, 0, 0, 0 } };
	int c;
	bool bad = false;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int r = cli_common_opt(cli, c, optarg, usage_rm);
		if (r < 0)
			return CLI_OK;
		bad |= r == 0;
	}
	if (bad || argc - optind != 1) {
		fputs(usage_rm, stderr);
		return CLI_USAGE;
	}
	const char *name = argv[optind];
	if (!cli_valid_name(name))
		return cli_fail(cli, CLI_USAGE, "not a function name: '%s'", name);
	char path[128];
	snprintf(path, sizeof(path), "/admin/functions/%s", name);
	cJSON *doc;
	int ret = cli_admin(cli, "DELETE", path, NULL, &doc);
	if (ret)
		return ret;
	if (cli->json) {
		char *s = cJSON_Print(doc);
		puts(s);
		free(s);
	} else {
		printf("%s: removed\n", name);
	}
	cJSON_Delete(doc);
	return CLI_OK;
}
