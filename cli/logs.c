/* thaw logs: a function's log lines (GET /admin/functions/NAME/logs), and
 * thaw rm: removing a function (DELETE /admin/functions/NAME). */
#include "cli/cli.h"
#include "cli/http.h"
#include "daemon/fnlog.h"

#include <errno.h>
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
	"stdout and stderr, each as \"TIME vVERSION pid PID: line\"; with --json, as one\n"
	"JSON object a line: {\"time\", \"version\", \"pid\", \"line\"}.\n"
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

/* The length of the well-formed UTF-8 sequence at p (n bytes left; no
 * overlongs, surrogates or code points past U+10FFFF), 0 when there is none. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/* s[0..len) as a JSON string: control characters escaped, and bytes that
 * are not UTF-8 (a line is whatever the instance wrote) as U+FFFD, so
 * every output line parses. */
static void put_json_string(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	putchar('"');
	for (size_t i = 0; i < len;) {
		unsigned char ch = p[i];
		size_t n = utf8_seq(p + i, len - i);
		if (!n) {
			fputs("\\ufffd", stdout);
			i++;
		} else if (ch == '"' || ch == '\\') {
			printf("\\%c", ch);
			i++;
		} else if (ch < 0x20 || ch == 0x7f) {
			printf("\\u%04x", ch);
			i++;
		} else {
			fwrite(p + i, 1, n, stdout);
			i += n;
		}
	}
	putchar('"');
}

/* Up to 10 digits at *p (before end) into *out, *p moved past them: 0 or
 * -EINVAL. */
static int take_number(const char **p, const char *end, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *s = *p;
	while (s < end && *s >= '0' && *s <= '9' && s - *p < 10)
		v = v * 10 + (unsigned long long)(*s++ - '0');
	if (s == *p)
		return -EINVAL;
	*p = s;
	*out = v;
	return 0;
}

/* One line as the daemon keeps it, "TIME vVERSION pid PID: text", as a JSON
 * object {"time","version","pid","line"}; a line in another shape (cut at
 * 4 KiB inside its head) keeps all its text in "line", the rest null. */
static void put_json_line(const char *s, size_t len)
{
	const char *end = s + len, *sp = memchr(s, ' ', len), *p = sp;
	unsigned long long version = 0, pid = 0;
	bool ok = sp && end - p > 2 && p[1] == 'v';
	if (ok) {
		p += 2;
		ok = !take_number(&p, end, &version) && end - p >= 5 && !memcmp(p, " pid ", 5);
	}
	if (ok) {
		p += 5;
		ok = !take_number(&p, end, &pid) && end - p >= 2 && !memcmp(p, ": ", 2);
	}
	if (!ok) {
		fputs("{\"time\":null,\"version\":null,\"pid\":null,\"line\":", stdout);
		put_json_string(s, len);
		fputs("}\n", stdout);
		return;
	}
	p += 2;
	fputs("{\"time\":", stdout);
	put_json_string(s, (size_t)(sp - s));
	printf(",\"version\":%llu,\"pid\":%llu,\"line\":", version, pid);
	put_json_string(p, (size_t)(end - p));
	fputs("}\n", stdout);
}

/* The daemon's answer (whole lines, each ending in '\n') on stdout: as it
 * is, or with --json one JSON object per line (JSON Lines). */
static void print_lines(const struct cli *cli, const char *body, size_t len)
{
	if (!cli->json) {
		fwrite(body, 1, len, stdout);
		return;
	}
	for (size_t p = 0; p < len;) {
		const char *nl = memchr(body + p, '\n', len - p);
		size_t e = nl ? (size_t)(nl - body) : len;
		put_json_line(body + p, e - p);
		p = e + 1;
	}
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
		print_lines(cli, res.body, res.len);
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
			if (!cli_parse_count(optarg, 1, MAX_TAIL, &tail)) {
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
