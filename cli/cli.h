/*
 * The client commands of `thaw`: deploy, ls, invoke, rollback, history, top,
 * logs, rm and snapshot talk to a running daemon over its HTTP API
 * (docs/http-api.md) at $THAW_URL (default http://127.0.0.1:9000). Admin
 * calls carry the token from $THAW_TOKEN, else STATE_DIR/admin.token.
 *
 * Exit codes, the same for every command (docs/cli.md):
 *   0 ok, 1 failure reported by the daemon or the function, 2 usage,
 *   3 daemon unreachable, 4 unauthorized (no token, or a wrong one).
 */
#ifndef THAW_CLI_H
#define THAW_CLI_H

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
	CLI_OK = 0,
	CLI_FAILED = 1,
	CLI_USAGE = 2,
	CLI_UNREACHABLE = 3,
	CLI_UNAUTHORIZED = 4,
};

/* What every command shares; filled by cli_main and the common options. */
struct cli {
	const char *cmd;       /* "deploy", ... for messages */
	char url[1024];        /* daemon base URL, no trailing '/' */
	const char *state_dir; /* NULL: serve's default */
	char token[256];       /* loaded by cli_admin on first use */
	char token_from[1100]; /* "$THAW_TOKEN" or the file, for messages */
	bool json;             /* --json: machine output on stdout */
	unsigned admin_timeout_ms; /* admin calls' deadline; 0: 30 s */
};

/* The options every command takes; append to a command's getopt table.
 * cli_common_opt handles their codes. */
#define CLI_OPT_URL 0x100
#define CLI_OPT_STATE_DIR 0x101
#define CLI_OPT_JSON 0x102
#define CLI_OPT_HELP 'h'
#define CLI_COMMON_OPTIONS                                              \
	{ "url", required_argument, 0, CLI_OPT_URL },                   \
	{ "state-dir", required_argument, 0, CLI_OPT_STATE_DIR },       \
	{ "json", no_argument, 0, CLI_OPT_JSON },                       \
	{ "help", no_argument, 0, CLI_OPT_HELP }
#define CLI_COMMON_USAGE                                                                     \
	"  --url URL         the daemon (default $THAW_URL, else http://127.0.0.1:9000)\n"      \
	"  --state-dir DIR   where admin.token is, when $THAW_TOKEN is not set\n"             \
	"                    (default: serve's, /var/lib/thaw or $XDG_STATE_HOME/thaw)\n"     \
	"  --json            machine-readable output on stdout\n"                             \
	"  --help            this text\n"                                                     \
	"exit: 0 ok, 1 failed, 2 usage, 3 daemon unreachable, 4 unauthorized\n"

/* Handles a common option's code c. Returns 1 when handled, 0 when c is
 * not a common option or its argument is bad (said on stderr), -1 for
 * --help (usage printed to stdout). */
int cli_common_opt(struct cli *cli, int c, const char *arg, const char *usage);

/* Whether name is a client command; cli_main runs it: argv[0] is the
 * command. Returns the exit code. */
bool cli_is_command(const char *name);
int cli_main(int argc, char **argv);

/* The commands, argv[0] being the command's name. */
int cli_deploy(struct cli *cli, int argc, char **argv);
int cli_ls(struct cli *cli, int argc, char **argv);
int cli_history(struct cli *cli, int argc, char **argv);
int cli_rollback(struct cli *cli, int argc, char **argv);
int cli_invoke(struct cli *cli, int argc, char **argv);
int cli_top(struct cli *cli, int argc, char **argv);
int cli_logs(struct cli *cli, int argc, char **argv);
int cli_rm(struct cli *cli, int argc, char **argv);
int cli_dev(struct cli *cli, int argc, char **argv);
int cli_k8s(struct cli *cli, int argc, char **argv); /* cli/k8s.c: no daemon involved */
int cli_snapshot(struct cli *cli, int argc, char **argv);

/* An admin API call: method on cli->url + path with an optional JSON body.
 * On a 2xx answer returns CLI_OK and, when out is not NULL, the parsed JSON
 * in *out (the caller frees it with cJSON_Delete). Otherwise prints why to
 * stderr ("thaw CMD: ...", the daemon's {"error"} when it sent one) and
 * returns the exit code: CLI_FAILED, CLI_UNREACHABLE or CLI_UNAUTHORIZED. */
int cli_admin(struct cli *cli, const char *method, const char *path, const char *body,
	      cJSON **out);

/* PUT of a file to admin path, with progress as bytes go out: CLI_OK or
 * the exit code as cli_admin. */
int cli_admin_upload(struct cli *cli, const char *path, FILE *f, uint64_t size,
		     void (*progress)(void *ctx, uint64_t sent, uint64_t total), void *ctx);
/* GET of admin path whose 2xx answer goes to sink as it comes (sink
 * returns false to stop: then CLI_FAILED, with only sink's own word):
 * CLI_OK or the exit code as cli_admin. */
int cli_admin_stream(struct cli *cli, const char *path,
		     bool (*sink)(void *ctx, const char *data, size_t len), void *ctx);
/* GET of admin path: CLI_OK with *exists false on 404, true on 2xx; else
 * the exit code as cli_admin. */
int cli_admin_exists(struct cli *cli, const char *path, bool *exists);

struct cli_http_res;
/* A GET of admin path answering text: CLI_OK with the answer in *res (the
 * caller frees it with cli_http_res_fini, whatever the result), else the
 * exit code as cli_admin. want_header (lower case, or NULL) lands in
 * res->header. */
int cli_admin_text(struct cli *cli, const char *path, const char *want_header,
		   struct cli_http_res *res);

/* Prints "thaw CMD: msg" to stderr; returns code. */
int cli_fail(const struct cli *cli, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The exit code and message for a cli_http_do failure. */
int cli_transport_error(const struct cli *cli, int ret, const char *why);

/* JSON field helpers: a number (0 when absent), a string ("" when absent). */
double cli_num(const cJSON *obj, const char *key);
const char *cli_str(const cJSON *obj, const char *key);
/* s as a number of digits only (no sign or space, which strtoul takes, no
 * wrap past 2^64) from min to max into *out; false otherwise. */
bool cli_parse_count(const char *s, unsigned long min, unsigned long max, unsigned long *out);
/* Function names as the daemon accepts them: [A-Za-z_][A-Za-z0-9_-]{0,63}. */
bool cli_valid_name(const char *s);
/* "12.3 MiB" and the like into out. */
void cli_format_bytes(double bytes, char *out, size_t len);
/* Milliseconds with one decimal, or "-" when zero (not measured). */
void cli_format_ms(double ms, char *out, size_t len);

#endif
