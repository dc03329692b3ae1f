/* `thaw deploy [DIR]`: build DIR into an image, upload the blobs the
 * daemon lacks, deploy the image as a new version, wait until it serves or
 * fails, report the invoke URL and the measured start times. */
#include "builder/builder.h"
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
#define UNPACK_TIMEOUT_MS 600000 /* the daemon unpacks the layers before it answers */

static const char usage[] =
	"usage: thaw deploy [DIR] [options]\n"
	"Builds the function in DIR (default: the current folder; it holds fc.yaml)\n"
	"into an image (thaw build), uploads what the daemon does not have yet,\n"
	"deploys it as a new version and waits until that version serves. A version\n"
	"that fails to start never serves: the previous one keeps serving, and\n"
	"deploy exits 1.\n"
	"  --timeout S       stop waiting after S seconds (default 300)\n" CLI_COMMON_USAGE;

struct deploy {
	struct cli *cli;
	char name[65];
	char digest[OCI_DIGEST_LEN + 1];
	uint64_t uploaded;  /* bytes sent */
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
	cJSON_AddStringToObject(o, "digest", d->digest);
	cJSON_AddNumberToObject(o, "uploaded_bytes", (double)d->uploaded);
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
	printf("  image        %s\n", d->digest);
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

/* thaw build, with the compiler's output on stderr. */
static int build(struct deploy *d, const char *dir, struct builder_result *res)
{
	char err[1024];
	struct builder_options o = { .dir = dir, .diag = stderr };
	if (builder_build(&o, res, err, sizeof(err)))
		return cli_fail(d->cli, CLI_FAILED, "build failed: %s", err);
	snprintf(d->digest, sizeof(d->digest), "%s", res->manifest.digest);
	if (!d->cli->json)
		printf("built %s %s (%.2f s)\n", res->name, res->manifest.digest, res->seconds);
	return CLI_OK;
}

struct upload {
	struct deploy *d;
	const char *what;
	double t0, shown;
};

static void upload_progress(void *ctx, uint64_t sent, uint64_t total)
{
	struct upload *u = ctx;
	double t = now_s();
	if (!u->d->tty || u->d->cli->json || t - u->shown < 0.1)
		return;
	u->shown = t;
	char a[32], b[32];
	cli_format_bytes((double)sent, a, sizeof(a));
	cli_format_bytes((double)total, b, sizeof(b));
	printf("\r\033[K  uploading %s  %s / %s  %.0f MB/s", u->what, a, b,
	       (double)sent / 1e6 / (t - u->t0 > 1e-3 ? t - u->t0 : 1e-3));
	fflush(stdout);
}

/* One blob of the image: nothing when the daemon has it, else a PUT. */
static int push_blob(struct deploy *d, const char *image, const char *what,
		     const struct oci_desc *b)
{
	char path[128], file[PATH_MAX + 128], size[32];
	bool have;
	snprintf(path, sizeof(path), "/admin/blobs/%s", b->digest);
	int ret = cli_admin_exists(d->cli, path, &have);
	if (ret)
		return ret;
	cli_format_bytes((double)b->size, size, sizeof(size));
	if (have) {
		if (!d->cli->json)
			printf("  %-12s %.19s  %10s  on the daemon already\n", what, b->digest, size);
		return CLI_OK;
	}
	snprintf(file, sizeof(file), "%s/blobs/sha256/%s", image, b->digest + 7);
	FILE *f = fopen(file, "rbe");
	if (!f)
		return cli_fail(d->cli, CLI_FAILED, "%s: %s", file, strerror(errno));
	struct upload u = { .d = d, .what = what, .t0 = now_s() };
	ret = cli_admin_upload(d->cli, path, f, b->size, upload_progress, &u);
	fclose(f);
	clear_progress(d);
	if (ret)
		return ret;
	d->uploaded += b->size;
	if (!d->cli->json)
		printf("  %-12s %.19s  %10s  uploaded in %.2f s\n", what, b->digest, size,
		       now_s() - u.t0);
	return CLI_OK;
}

/* Layers first, then config, then the manifest that names them. */
static int push(struct deploy *d, const struct builder_result *r)
{
	int ret = CLI_OK;
	for (size_t i = 0; !ret && i < r->n_layers; i++) {
		char what[32];
		snprintf(what, sizeof(what), "%s layer", r->layers[i].img.kind);
		ret = push_blob(d, r->image, what, &r->layers[i].img.desc);
	}
	if (!ret)
		ret = push_blob(d, r->image, "config", &r->config);
	if (!ret)
		ret = push_blob(d, r->image, "manifest", &r->manifest);
	return ret;
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
	struct builder_result built;
	int ret = build(&d, abs, &built);
	if (ret)
		return ret;
	ret = push(&d, &built);
	builder_result_fini(&built);
	if (ret)
		return ret;
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "image", d.digest);
	char *body = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	cJSON *added;
	cli->admin_timeout_ms = UNPACK_TIMEOUT_MS;
	ret = cli_admin(cli, "POST", "/admin/functions", body, &added);
	cli->admin_timeout_ms = 0;
	free(body);
	if (ret)
		return ret;
	snprintf(d.name, sizeof(d.name), "%s", cli_str(added, "name"));
	d.version = (unsigned)cli_num(added, "version");
	cJSON_Delete(added);
	if (!cli_valid_name(d.name) || !d.version)
		return cli_fail(cli, CLI_FAILED, "unexpected answer from the daemon (no name or version)");
	if (!cli->json && !d.tty)
		printf("deploying %s as %s version %u\n", d.digest, d.name, d.version);
	return wait_for(&d, timeout_s);
}
