/* thaw: the command line. `thaw serve` runs the daemon. */
#define LOG_PREFIX ""
#include "daemon/console.h"
#include "daemon/loop.h"
#include "common/log.h"
#include "daemon/proxy.h"
#include "daemon/serve.h"
#include "daemon/server.h"
#include "builder/builder.h"
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_serve[] =
	"usage: thaw serve [options]\n"
	"  --listen ADDR         address to listen on (default 0.0.0.0)\n"
	"  --port N              port (default 9000; HTTP/1.1 and gRPC over h2c)\n"
	"  --grpc-port N         a port for gRPC too, as TF Serving's (default 8500; 0 = off;\n"
	"                        taken by another process: a warning, no gRPC port)\n"
	"  --threads N           event loops, one per core (default: cores)\n"
	"  --loop KIND           what the loops run on: auto (default, or $THAW_LOOP):\n"
	"                        io_uring, epoll where io_uring is refused (seccomp);\n"
	"                        io_uring (never epoll); epoll\n"
	"  --functions DIR       load every DIR/*/fc.yaml at start\n"
	"  --state-dir DIR       state (default /var/lib/thaw; $XDG_STATE_HOME/thaw when not root)\n"
	"  --max-header-bytes N  431 past it (default 8192)\n"
	"  --header-timeout MS   408 when the request head takes longer (default 10000)\n"
	"  --body-timeout MS     408 when the body takes longer, counted from the end of\n"
	"                        the head, plus 1 s per 64 KiB received (default 60000)\n"
	"  --idle-timeout MS     close idle keep-alive connections (default 60000)\n"
	"  --send-timeout MS     close a connection whose client reads nothing of its\n"
	"                        response for that long (default 60000)\n"
	"  --max-buffered BYTES  503 for invocations while the responses waiting for\n"
	"                        their clients hold more (default: RAM/4, >= 256 MiB)\n"
	"  --max-connections N   503 past it (default 20000)\n"
	"  --no-access-log       no JSON line per request\n"
	"  --no-snapshots        never checkpoint: every instance cold starts\n"
	"  --proxy-ports LIST    ports /proxy/{port}/ may reach on 127.0.0.1 (e.g. 8080,9001)\n"
	"  --proxy-timeout MS    504 (or close, once relaying) when the proxied server sends\n"
	"                        nothing for that long (default 30000)\n"
	"  --snapshot-dir DIR    snapshot images, this daemon's alone: folders no version\n"
	"                        uses are deleted at start (default /dev/shm/thaw-mem/thaw-<id>)\n"
	"  --snapshot-from DIR   snapshots that came with the image: DIR/<function name>,\n"
	"                        restored when they fit this node (default /snapshot;\n"
	"                        \"\" for none; see docs/kubernetes.md)\n"
	"  --instance-user USER  run instances as USER (e.g. nobody), not as root\n"
	"  --scratch-mb N        each instance's own /tmp and /dev/shm: tmpfs of N MiB\n"
	"                        each, counted in memorySize (default 512; 0 = share\n"
	"                        the daemon's)\n"
	"  --verbose             debug logging\n";

static int parse_uint(const char *s, const char *what, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || v > 0xffffffffUL) {
		fprintf(stderr, "thaw serve: %s: not a number: %s\n", what, s);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	struct server_options *o = &server.opt;
	server_options_default(o);
	static const struct option opts[] = {
		{ "listen", required_argument, 0, 'l' },
		{ "port", required_argument, 0, 'p' },
		{ "grpc-port", required_argument, 0, 'g' },
		{ "threads", required_argument, 0, 't' },
		{ "functions", required_argument, 0, 'f' },
		{ "state-dir", required_argument, 0, 's' },
		{ "max-header-bytes", required_argument, 0, 'H' },
		{ "header-timeout", required_argument, 0, 'T' },
		{ "body-timeout", required_argument, 0, 'B' },
		{ "idle-timeout", required_argument, 0, 'I' },
		{ "send-timeout", required_argument, 0, 'W' },
		{ "max-buffered", required_argument, 0, 'M' },
		{ "max-connections", required_argument, 0, 'C' },
		{ "no-access-log", no_argument, 0, 'q' },
		{ "no-snapshots", no_argument, 0, 'N' },
		{ "proxy-ports", required_argument, 0, 'P' },
		{ "proxy-timeout", required_argument, 0, 'X' },
		{ "snapshot-dir", required_argument, 0, 'D' },
		{ "snapshot-from", required_argument, 0, 'F' },
		{ "instance-user", required_argument, 0, 'U' },
		{ "scratch-mb", required_argument, 0, 'S' },
		{ "verbose", no_argument, 0, 'v' },
		{ "loop", required_argument, 0, 'L' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c, bad = 0;
	unsigned v;
	enum loop_backend lb = LOOP_AUTO;
	const char *env_loop = getenv("THAW_LOOP");
	if (env_loop && *env_loop && loop_backend_parse(env_loop, &lb)) {
		fprintf(stderr, "thaw serve: THAW_LOOP: expected auto, io_uring or epoll: %s\n", env_loop);
		bad = 1;
	}
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': o->listen = optarg; break;
		case 'p': bad |= parse_uint(optarg, "--port", &o->port) || !o->port || o->port > 65535; break;
		case 'g': bad |= parse_uint(optarg, "--grpc-port", &o->grpc_port) || o->grpc_port > 65535; break;
		case 't': bad |= parse_uint(optarg, "--threads", &o->threads) || !o->threads || o->threads > MAX_SHARDS; break;
		case 'f': o->functions_dir = optarg; break;
		case 's': o->state_dir = optarg; break;
		case 'H': bad |= parse_uint(optarg, "--max-header-bytes", &v); o->max_header_bytes = v; break;
		case 'T': bad |= parse_uint(optarg, "--header-timeout", &o->header_timeout_ms); break;
		case 'B': bad |= parse_uint(optarg, "--body-timeout", &o->body_timeout_ms); break;
		case 'I': bad |= parse_uint(optarg, "--idle-timeout", &o->idle_timeout_ms); break;
		case 'W': bad |= parse_uint(optarg, "--send-timeout", &o->send_timeout_ms) || !o->send_timeout_ms; break;
		case 'M': {
			char *end;
			unsigned long long b = strtoull(optarg, &end, 10);
			if (!*optarg || *end || !b || optarg[0] == '-') {
				fprintf(stderr, "thaw serve: --max-buffered: expected bytes: %s\n", optarg);
				bad = 1;
			}
			o->max_buffered = b;
			break;
		}
		case 'C': bad |= parse_uint(optarg, "--max-connections", &o->max_connections); break;
		case 'q': o->access_log = false; break;
		case 'N': o->no_snapshots = true; break;
		case 'P':
			if (proxy_set_ports(optarg)) {
				fprintf(stderr, "thaw serve: --proxy-ports: expected ports like 8080,9001\n");
				bad = 1;
			}
			break;
		case 'X': bad |= parse_uint(optarg, "--proxy-timeout", &o->proxy_timeout_ms) || !o->proxy_timeout_ms; break;
		case 'D': o->snapshot_dir = optarg; break;
		case 'F': o->snapshot_from = optarg; break;
		case 'U': o->instance_user = optarg; break;
		case 'S': bad |= parse_uint(optarg, "--scratch-mb", &o->scratch_mb); break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'L':
			if (loop_backend_parse(optarg, &lb)) {
				fprintf(stderr, "thaw serve: --loop: expected auto, io_uring or epoll: %s\n", optarg);
				bad = 1;
			}
			break;
		case 'h': fputs(usage_serve, stdout); return 0;
		default: bad = 1;
		}
	}
	if (bad || optind != argc) {
		fputs(usage_serve, stderr);
		return 2;
	}
	loop_set_backend(lb);
	console_start(); /* the history the console charts; logged if it fails */
	return server_run() ? 1 : 0;
}

static const char usage[] = "usage: thaw <command> [options]\n"
			    "commands:\n"
			    "  serve     run the daemon (thaw serve --help)\n"
			    "  build     package a function folder into an OCI image\n"
			    "  deploy    build, upload and deploy a function folder, wait until it serves\n"
			    "  dev       run a function folder as a debug server, rebuilt on change\n"
			    "  ls        list functions\n"
			    "  invoke    call a function, print its answer\n"
			    "  history   list a function's versions and what changed\n"
			    "  rollback  switch a function back to an older version\n"
			    "  logs      print (or follow) a function's log lines\n"
			    "  rm        remove a function\n"
			    "  top       live requests/s, latency and instances per function\n"
			    "  k8s       print a Knative Service (or Deployment) for a function folder\n"
			    "  snapshot  write a function's snapshot into a folder, for build --snapshot\n"
			    "  version   print the version\n"
			    "thaw COMMAND --help for each; docs/cli.md\n";

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "build"))
		return builder_main(argc - 1, argv + 1);
	if (cli_is_command(argv[1]))
		return cli_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version")) {
		puts("thaw 0.1.0");
		return 0;
	}
	fprintf(stderr, "thaw: unknown command '%s'\n%s", argv[1], usage);
	return 2;
}
