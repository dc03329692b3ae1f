/* The client commands: dispatch, common options, the admin token, admin
 * API calls and small formatting helpers. */
#include "cli/cli.h"
#include "cli/http.h"
#include "daemon/server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_URL "http://127.0.0.1:9000"
#define ADMIN_TIMEOUT_MS 30000

static const struct {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
} commands[] = {
	{ "deploy", cli_deploy },	{ "ls", cli_ls },	{ "history", cli_history },
	{ "rollback", cli_rollback }, { "invoke", cli_invoke }, { "top", cli_top },
	{ "logs", cli_logs },	{ "rm", cli_rm },		{ "dev", cli_dev },
	{ "k8s", cli_k8s },	{ "snapshot", cli_snapshot },
};

bool cli_is_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return true;
	return false;
}

static int set_url(struct cli *cli, const char *url)
{
	size_t n = strlen(url);
	while (n && url[n - 1] == '/')
		n--;
	if (!n || n >= sizeof(cli->url))
		return cli_fail(cli, CLI_USAGE, "bad daemon URL: '%s'", url);
	memcpy(cli->url, url, n);
	cli->url[n] = '\0';
	return CLI_OK;
}

int cli_main(int argc, char **argv)
{
	struct cli cli = { .cmd = argv[0] };
	const char *url = getenv("THAW_URL");
	int ret = set_url(&cli, url && *url ? url : DEFAULT_URL);
	if (ret)
		return ret;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, argv[0]))
			return commands[i].run(&cli, argc, argv);
	return cli_fail(&cli, CLI_USAGE, "unknown command");
}

int cli_common_opt(struct cli *cli, int c, const char *arg, const char *usage)
{
	switch (c) {
	case CLI_OPT_URL:
		return set_url(cli, arg) ? 0 : 1;
	case CLI_OPT_STATE_DIR:
		cli->state_dir = arg;
		return 1;
	case CLI_OPT_JSON:
		cli->json = true;
		return 1;
	case CLI_OPT_HELP:
		fputs(usage, stdout);
		return -1;
	default:
		return 0;
	}
}

int cli_fail(const struct cli *cli, int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "thaw %s: ", cli->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int cli_transport_error(const struct cli *cli, int ret, const char *why)
{
	switch (ret) {
	case -ECONNREFUSED:
		return cli_fail(cli, CLI_UNREACHABLE, "daemon unreachable at %s: %s (is `thaw serve` running?)",
				cli->url, why);
	case -EINVAL:
		return cli_fail(cli, CLI_USAGE, "bad URL %s: %s", cli->url, why);
	case -ETIMEDOUT:
		return cli_fail(cli, CLI_FAILED, "no answer from %s in time: %s", cli->url, why);
	default:
		return cli_fail(cli, CLI_FAILED, "%s", why);
	}
}

/* $THAW_TOKEN, else the first line of STATE_DIR/admin.token. */
static int load_token(struct cli *cli)
{
	const char *env = getenv("THAW_TOKEN");
	if (env && *env) {
		if (strlen(env) >= sizeof(cli->token))
			return cli_fail(cli, CLI_UNAUTHORIZED, "$THAW_TOKEN is too long");
		strcpy(cli->token, env);
		strcpy(cli->token_from, "$THAW_TOKEN");
		return CLI_OK;
	}
	const char *dir = cli->state_dir;
	struct server_options o;
	if (!dir) {
		server_options_default(&o);
		dir = o.state_dir;
	}
	snprintf(cli->token_from, sizeof(cli->token_from), "%s/admin.token", dir);
	int fd = open(cli->token_from, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cli_fail(cli, CLI_UNAUTHORIZED,
				"no admin token: %s: %s (set $THAW_TOKEN, or --state-dir as given to serve)",
				cli->token_from, strerror(errno));
	ssize_t n = read(fd, cli->token, sizeof(cli->token) - 1);
	close(fd);
	if (n < 0)
		return cli_fail(cli, CLI_UNAUTHORIZED, "%s: %s", cli->token_from, strerror(errno));
	cli->token[n] = '\0';
	cli->token[strcspn(cli->token, " \t\r\n")] = '\0';
	if (!cli->token[0])
		return cli_fail(cli, CLI_UNAUTHORIZED, "%s is empty", cli->token_from);
	return CLI_OK;
}

/* The admin call itself: CLI_OK with a 2xx answer in *res (also filled on
 * errors: the caller finishes it), else the exit code (said on stderr). A
 * 404 with allow_404 is CLI_FAILED without a word. */
static int admin_do(struct cli *cli, struct cli_http_req *req, const char *path,
		    bool allow_404, struct cli_http_res *res)
{
	memset(res, 0, sizeof(*res));
	if (!cli->token[0]) {
		int ret = load_token(cli);
		if (ret)
			return ret;
	}
	char url[2048], auth[300];
	snprintf(url, sizeof(url), "%s%s", cli->url, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cli->token);
	const char *hdrs[] = { auth, "Content-Type: application/json" };
	req->url = url;
	req->headers = hdrs;
	req->n_headers = req->body ? 2 : 1;
	if (!req->timeout_ms)
		req->timeout_ms = cli->admin_timeout_ms ? cli->admin_timeout_ms : ADMIN_TIMEOUT_MS;
	int ret = cli_http_do(req, res);
	if (ret == -ECANCELED) /* the stream's receiver stopped it and said why */
		return CLI_FAILED;
	if (ret)
		return cli_transport_error(cli, ret, res->err);
	if (res->status == 401 || res->status == 403)
		return cli_fail(cli, CLI_UNAUTHORIZED,
				"unauthorized: the daemon refused the admin token from %s", cli->token_from);
	if (res->status == 404 && allow_404)
		return CLI_FAILED;
	if (res->status < 200 || res->status > 299) {
		cJSON *doc = cJSON_ParseWithLength(res->body, res->len);
		const char *msg = cli_str(doc, "error");
		ret = cli_fail(cli, CLI_FAILED, "%s (HTTP %ld)", *msg ? msg : res->body, res->status);
		cJSON_Delete(doc);
		return ret;
	}
	return CLI_OK;
}

int cli_admin_upload(struct cli *cli, const char *path, FILE *f, uint64_t size,
		     void (*progress)(void *ctx, uint64_t sent, uint64_t total), void *ctx)
{
	struct cli_http_req req = { .method = "PUT", .upload = f, .upload_size = size,
				    .progress = progress, .progress_ctx = ctx };
	struct cli_http_res res;
	int ret = admin_do(cli, &req, path, false, &res);
	cli_http_res_fini(&res);
	return ret;
}

int cli_admin_stream(struct cli *cli, const char *path,
		     bool (*sink)(void *ctx, const char *data, size_t len), void *ctx)
{
	struct cli_http_req req = { .method = "GET", .stream = sink, .stream_ctx = ctx };
	struct cli_http_res res;
	int ret = admin_do(cli, &req, path, false, &res);
	cli_http_res_fini(&res);
	return ret;
}

int cli_admin_exists(struct cli *cli, const char *path, bool *exists)
{
	struct cli_http_req req = { .method = "GET" };
	struct cli_http_res res;
	int ret = admin_do(cli, &req, path, true, &res);
	bool gone = ret == CLI_FAILED && res.status == 404;
	cli_http_res_fini(&res);
	*exists = ret == CLI_OK;
	return gone ? CLI_OK : ret;
}

int cli_admin_text(struct cli *cli, const char *path, const char *want_header,
		   struct cli_http_res *res)
{
	struct cli_http_req req = { .method = "GET", .want_header = want_header };
	return admin_do(cli, &req, path, false, res);
}

int cli_admin(struct cli *cli, const char *method, const char *path, const char *body,
	      cJSON **out)
{
	if (out)
		*out = NULL;
	struct cli_http_res res;
	struct cli_http_req req = { .method = method, .body = body,
				    .body_len = body ? strlen(body) : 0 };
	int ret = admin_do(cli, &req, path, false, &res);
	if (ret)
		goto out;
	cJSON *doc = cJSON_ParseWithLength(res.body, res.len);
	if (out && !doc) {
		ret = cli_fail(cli, CLI_FAILED, "the daemon answered %s with something not JSON", path);
	} else if (out) {
		*out = doc;
		doc = NULL;
	}
	cJSON_Delete(doc);
out:
	cli_http_res_fini(&res);
	return ret;
}

bool cli_parse_count(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	size_t i = 0;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned long d = (unsigned long)(s[i] - '0');
		if (d > max || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (!i || s[i] || v < min)
		return false;
	*out = v;
	return true;
}

double cli_num(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

const char *cli_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

bool cli_valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 64 || !(s[0] == '_' || ((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z')))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = s[i];
		if (!(c == '_' || c == '-' || (c >= '0' && c <= '9') ||
		      ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
			return false;
	}
	return true;
}

void cli_format_bytes(double bytes, char *out, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 0;
	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

void cli_format_ms(double ms, char *out, size_t len)
{
	if (ms <= 0)
		snprintf(out, len, "-");
	else
		snprintf(out, len, "%.1f", ms);
}
