/* `thaw ls`, `thaw history FN`, `thaw rollback FN [VERSION]`: the admin
 * API's function list, version table and rollback, for people and scripts. */
#include "cli/cli.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage_ls[] =
	"usage: thaw ls [options]\n"
	"Lists the deployed functions: the version serving, its state, how many\n"
	"versions there are, and the measured cold start (init) and restore times.\n"
	CLI_COMMON_USAGE;

static const char usage_history[] =
	"usage: thaw history FN [options]\n"
	"Lists every version of FN: when it was deployed (UTC), its state, its image\n"
	"digest (or folder), what changed from the version before (settings of\n"
	"fc.yaml, image layers) and, for a failed one, why. '*' marks the version\n"
	"serving.\n" CLI_COMMON_USAGE;

static const char usage_rollback[] =
	"usage: thaw rollback FN [VERSION] [options]\n"
	"Switches FN's traffic to VERSION (default: the newest ready version older than\n"
	"the one serving). Requests already running finish on the version they started on.\n"
	CLI_COMMON_USAGE;

/* Parses the common options only; leaves the operands at argv[optind..].
 * Returns -1 to go on, else the exit code. */
static int parse_common(struct cli *cli, int argc, char **argv, const char *usage,
			int min_args, int max_args)
{
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0, 0, 0, 0 } };
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int r = cli_common_opt(cli, c, optarg, usage);
		if (r < 0)
			return CLI_OK;
		bad |= r == 0;
	}
	int n = argc - optind;
	if (bad || n < min_args || n > max_args) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	return -1;
}

static void print_json(const cJSON *doc)
{
	char *s = cJSON_Print(doc);
	puts(s);
	free(s);
}

/* The state column: the serving version's, and the newest's when that one
 * is another (a deploy starting, or one that failed). */
static void state_of(const cJSON *fn, char *out, size_t len)
{
	const cJSON *vs = cJSON_GetObjectItemCaseSensitive(fn, "versions");
	const cJSON *last = cJSON_GetArrayItem(vs, cJSON_GetArraySize(vs) - 1);
	unsigned cur = (unsigned)cli_num(fn, "current"), newest = (unsigned)cli_num(last, "version");
	if (last && newest != cur && cur)
		snprintf(out, len, "%s (v%u %s)", cli_str(fn, "state"), newest, cli_str(last, "state"));
	else
		snprintf(out, len, "%s", cli_str(fn, "state"));
}

int cli_ls(struct cli *cli, int argc, char **argv)
{
	int ret = parse_common(cli, argc, argv, usage_ls, 0, 0);
	if (ret >= 0)
		return ret;
	cJSON *fns;
	if ((ret = cli_admin(cli, "GET", "/admin/functions", NULL, &fns)))
		return ret;
	if (cli->json) {
		print_json(fns);
		goto out;
	}
	int w = 4;
	const cJSON *fn;
	cJSON_ArrayForEach(fn, fns)
		if ((int)strlen(cli_str(fn, "name")) > w)
			w = (int)strlen(cli_str(fn, "name"));
	if (!cJSON_GetArraySize(fns)) {
		puts("no functions (add one with: thaw deploy DIR)");
		goto out;
	}
	printf("%-*s  %-7s  %-22s  %-8s  %-8s  %s\n", w, "NAME", "CURRENT", "STATE", "VERSIONS",
	       "INIT_MS", "RESTORE_MS");
	cJSON_ArrayForEach(fn, fns) {
		char cur[16] = "-", state[64], init[32], restore[32];
		if (cli_num(fn, "current") > 0)
			snprintf(cur, sizeof(cur), "%u", (unsigned)cli_num(fn, "current"));
		state_of(fn, state, sizeof(state));
		cli_format_ms(cli_num(fn, "init_ms"), init, sizeof(init));
		cli_format_ms(cli_num(fn, "restore_ms"), restore, sizeof(restore));
		printf("%-*s  %-7s  %-22s  %-8d  %-8s  %s\n", w, cli_str(fn, "name"), cur, state,
		       cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(fn, "versions")), init,
		       restore);
	}
out:
	cJSON_Delete(fns);
	return CLI_OK;
}

static void iso_time(double unix_s, char *out, size_t len)
{
	time_t t = (time_t)unix_s;
	struct tm tm;
	if (unix_s <= 0 || !gmtime_r(&t, &tm) || !strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, len, "-");
}

int cli_history(struct cli *cli, int argc, char **argv)
{
	int ret = parse_common(cli, argc, argv, usage_history, 1, 1);
	if (ret >= 0)
		return ret;
	const char *name = argv[optind];
	if (!cli_valid_name(name))
		return cli_fail(cli, CLI_USAGE, "not a function name: '%s'", name);
	char path[128];
	snprintf(path, sizeof(path), "/admin/functions/%s", name);
	cJSON *fn;
	if ((ret = cli_admin(cli, "GET", path, NULL, &fn)))
		return ret;
	if (cli->json) {
		print_json(fn);
		goto out;
	}
	unsigned cur = (unsigned)cli_num(fn, "current");
	printf("  %-7s  %-8s  %-20s  %-8s  %-10s  %s\n", "VERSION", "STATE", "DEPLOYED", "INIT_MS",
	       "RESTORE_MS", "IMAGE");
	const cJSON *v;
	cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(fn, "versions")) {
		unsigned n = (unsigned)cli_num(v, "version");
		char when[32], init[32], restore[32];
		iso_time(cli_num(v, "deployed_at"), when, sizeof(when));
		cli_format_ms(cli_num(v, "init_ms"), init, sizeof(init));
		cli_format_ms(cli_num(v, "restore_ms"), restore, sizeof(restore));
		/* a folder deploy has "image": null, an item all the same */
		const cJSON *img = cJSON_GetObjectItemCaseSensitive(v, "image"), *ch;
		if (!cJSON_IsObject(img))
			img = NULL;
		printf("%c %-7u  %-8s  %-20s  %-8s  %-10s  %.19s%s\n", n == cur ? '*' : ' ', n,
		       cli_str(v, "state"), when, init, restore,
		       img ? cli_str(img, "digest") : "folder ", img ? "" : cli_str(v, "dir"));
		cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(v, "changes"))
			if (cJSON_IsString(ch))
				printf("           %s\n", ch->valuestring);
		if (*cli_str(v, "error"))
			printf("           error: %s\n", cli_str(v, "error"));
	}
out:
	cJSON_Delete(fn);
	return CLI_OK;
}

int cli_rollback(struct cli *cli, int argc, char **argv)
{
	int ret = parse_common(cli, argc, argv, usage_rollback, 1, 2);
	if (ret >= 0)
		return ret;
	const char *name = argv[optind];
	if (!cli_valid_name(name))
		return cli_fail(cli, CLI_USAGE, "not a function name: '%s'", name);
	char body[64] = "", path[128];
	if (optind + 1 < argc) {
		const char *arg = argv[optind + 1];
		unsigned long v;
		if (!cli_parse_count(arg, 1, UINT32_MAX, &v))
			return cli_fail(cli, CLI_USAGE, "not a version number (1 or more): '%s'", arg);
		snprintf(body, sizeof(body), "{\"version\": %lu}", v);
	}
	snprintf(path, sizeof(path), "/admin/functions/%s/rollback", name);
	cJSON *fn;
	if ((ret = cli_admin(cli, "POST", path, body[0] ? body : NULL, &fn)))
		return ret;
	if (cli->json)
		print_json(fn);
	else
		printf("%s: version %u serves\n", name, (unsigned)cli_num(fn, "current"));
	cJSON_Delete(fn);
	return CLI_OK;
}
