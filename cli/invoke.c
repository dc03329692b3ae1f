/* `thaw invoke FN`: one request to a function, its body on stdout. */
#include "cli/cli.h"
#include "cli/http.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HEADERS 64
#define MAX_DATA (256u << 20)
#define MAX_ANSWER (1u << 30)
#define DEFAULT_WAIT_S 900

static const char usage[] =
	"usage: thaw invoke FN [options]\n"
	"Sends one request to function FN and prints the body of its answer. Exits 1\n"
	"when the answer's status is 400 or more (the status goes to stderr).\n"
	"  -d, --data DATA      request body; @FILE reads a file, @- standard input\n"
	"                       (the method is then POST unless -X says otherwise)\n"
	"  -X, --request METHOD HTTP method (default GET, or POST with --data)\n"
	"  --path /SUB          the path the handler sees (default /)\n"
	"  -H, --header 'K: V'  a request header (repeatable)\n"
	"  --timeout S          deadline in seconds, sent as X-Timeout (default: the\n"
	"                       function's own timeout)\n"
	"  --url URL            the daemon (default $THAW_URL, else http://127.0.0.1:9000)\n"
	"  --help               this text\n"
	"exit: 0 ok, 1 failed (status >= 400), 2 usage, 3 daemon unreachable\n";

/* Reads all of fd into *out, up to MAX_DATA. Returns 0 or -errno. */
static int read_all(int fd, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *p = xmalloc(cap);
	for (;;) {
		if (n == cap) {
			if (cap >= MAX_DATA) {
				free(p);
				return -EFBIG;
			}
			cap *= 2;
			p = xrealloc(p, cap);
		}
		ssize_t r = read(fd, p + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = -errno;
			free(p);
			return err;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = p;
	*len = n;
	return 0;
}

/* DATA, @FILE or @-: the body into *out (owned). Returns an exit code. */
static int load_data(struct cli *cli, const char *arg, char **out, size_t *len)
{
	if (arg[0] != '@') {
		*len = strlen(arg);
		*out = xstrdup(arg);
		return CLI_OK;
	}
	const char *file = arg + 1;
	int fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
	if (fd < 0)
		return cli_fail(cli, CLI_USAGE, "%s: %s", file, strerror(errno));
	int ret = read_all(fd, out, len);
	if (fd != STDIN_FILENO)
		close(fd);
	if (ret)
		return cli_fail(cli, CLI_USAGE, "%s: %s", file,
				ret == -EFBIG ? "larger than 256 MiB" : strerror(-ret));
	return CLI_OK;
}

int cli_invoke(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, 0, 'd' },
		{ "request", required_argument, 0, 'X' },
		{ "path", required_argument, 0, 'p' },
		{ "header", required_argument, 0, 'H' },
		{ "timeout", required_argument, 0, 't' },
		CLI_COMMON_OPTIONS,
		{ 0, 0, 0, 0 },
	};
	const char *data = NULL, *method = NULL, *sub = "/", *headers[MAX_HEADERS + 1];
	unsigned n_headers = 0;
	double timeout_s = 0;
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "hd:X:H:", opts, NULL)) != -1) {
		if (c == CLI_OPT_JSON) {
			bad = cli_fail(cli, CLI_USAGE, "--json: invoke prints the function's body as it is");
			continue;
		}
		int r = cli_common_opt(cli, c, optarg, usage);
		if (r < 0)
			return CLI_OK;
		if (r > 0)
			continue;
		char *end;
		switch (c) {
		case 'd': data = optarg; break;
		case 'X': method = optarg; break;
		case 'p': sub = optarg; break;
		case 'H':
			if (n_headers == MAX_HEADERS || !strchr(optarg, ':') || strpbrk(optarg, "\r\n"))
				bad = cli_fail(cli, CLI_USAGE, "-H: expected 'Name: value' (at most %d): %s",
					       MAX_HEADERS, optarg);
			else
				headers[n_headers++] = optarg;
			break;
		case 't':
			timeout_s = strtod(optarg, &end);
			if (!*optarg || *end || !(timeout_s > 0 && timeout_s <= 86400))
				bad = cli_fail(cli, CLI_USAGE, "--timeout: expected seconds: %s", optarg);
			break;
		default: bad = 1;
		}
	}
	if (bad || argc - optind != 1) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	const char *fn = argv[optind];
	if (!cli_valid_name(fn))
		return cli_fail(cli, CLI_USAGE, "not a function name: '%s'", fn);
	if (method && (!*method || strpbrk(method, " \t\r\n/")))
		return cli_fail(cli, CLI_USAGE, "-X: not a method: '%s'", method);

	char *body = NULL, *url = NULL, xt[64];
	size_t body_len = 0;
	int ret = data ? load_data(cli, data, &body, &body_len) : CLI_OK;
	if (ret)
		return ret;
	if (timeout_s > 0) {
		snprintf(xt, sizeof(xt), "X-Timeout: %gs", timeout_s);
		headers[n_headers++] = xt;
	}
	url = xasprintf("%s/%s%s%s", cli->url, fn, sub[0] == '/' ? "" : "/", sub);
	struct cli_http_req req = {
		.method = method ? method : data ? "POST" : "GET",
		.url = url, .body = body, .body_len = body_len,
		.headers = headers, .n_headers = n_headers,
		.timeout_ms = (unsigned)((timeout_s > 0 ? timeout_s + 5 : DEFAULT_WAIT_S) * 1000),
		.max_body = MAX_ANSWER,
	};
	struct cli_http_res res;
	ret = cli_http_do(&req, &res);
	if (ret) {
		ret = cli_transport_error(cli, ret, res.err);
		goto out;
	}
	if (fwrite(res.body, 1, res.len, stdout) != res.len || fflush(stdout)) {
		ret = cli_fail(cli, CLI_FAILED, "writing the answer: %s", strerror(errno));
		goto out;
	}
	if (res.status >= 400)
		ret = cli_fail(cli, CLI_FAILED, "%s answered HTTP %ld", fn, res.status);
out:
	cli_http_res_fini(&res);
	free(url);
	free(body);
	return ret;
}
