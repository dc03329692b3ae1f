/* `thaw dev [DIR]`: build the function in DIR, run it in the foreground as a
 * plain HTTP debug server (`thaw-instance --http`, host/http_front.h)
 * on a loopback port, and rebuild and restart it whenever a file in DIR
 * changes. No daemon, no snapshot; the daemon reaches it through
 * /proxy/PORT/ (docs/dev.md).
 *
 * The handler is compiled with the builder's compile_handler (what `thaw
 * build` runs) into DIR/.thaw/build/NAME.so.new, renamed over NAME.so only
 * when it compiled, so a compile error leaves the running server alone. The
 * previous .so is kept as NAME.so.prev and served again when the new one
 * fails its init().
 *
 * The server is a foreground child (its output goes to the terminal), not
 * run through the subproc wrapper, which captures output and waits for the
 * end. Signals (SIGINT, SIGTERM, SIGCHLD) come through a signalfd; inotify
 * watches DIR and its sub-folders (not dotfiles, not .thaw/). */
#include "builder/compile.h"
#include "cli/cli.h"
#include "common/config.h"
#include "common/fnenv.h"
#include "common/mem.h"
#include "daemon/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT 8080
#define DEBOUNCE_MS 200
#define STOP_GRACE_MS 3000     /* SIGTERM, then SIGKILL */
#define READY_TIMEOUT_MS 300000 /* init() may load a model: serve's init timeout */
#define MAX_WATCHES 4096
#define MAX_DEPTH 16

extern char **environ;

static const char usage[] =
	"usage: thaw dev [DIR] [options]\n"
	"Builds the function in DIR (default: the current folder; it holds fc.yaml)\n"
	"and runs it in the foreground as a plain HTTP debug server on a loopback\n"
	"port: no daemon, no snapshot, one connection at a time. When a file in DIR\n"
	"changes it rebuilds and restarts the server; a compile error leaves the\n"
	"running one alone. Ctrl-C stops it. The daemon reaches it at\n"
	"/proxy/PORT/ when started with `thaw serve --proxy-ports PORT`.\n"
	"  --port P          the port to serve on (default 8080)\n"
	"  --host ADDR       the loopback address to serve on (default 127.0.0.1)\n"
	"  --once            build and serve, but do not watch for changes\n"
	"  --url URL         the daemon, for the /proxy URL printed (default $THAW_URL,\n"
	"                    else http://127.0.0.1:9000)\n"
	"  --help            this text\n"
	"exit: 0 stopped by Ctrl-C or SIGTERM, 1 the first build or start failed,\n"
	"2 usage\n";

struct dev {
	struct cli *cli;
	const char *dir;    /* as given */
	char host[64];
	unsigned port;
	bool once;
	char instance_bin[4096];
	struct config cfg;  /* of the server running; name NULL before the first build */
	char *so;           /* the .so it serves; owned */
	bool compiled;      /* so is ours (DIR/.thaw/build), not the user's */
	pid_t child;        /* -1: none */
	int sigfd, ino;
	struct {
		int wd;
		char *path;
	} watches[MAX_WATCHES];
	unsigned n_watches;
	bool stop;          /* SIGINT or SIGTERM seen */
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (!strcmp(host, "localhost"))
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Whether something accepts connections on host:port now. */
static bool listening(const struct dev *d)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	const char *h = strcmp(d->host, "localhost") ? d->host : "127.0.0.1";
	if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)d->port);
		len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)d->port);
		len = sizeof(*a6);
	} else {
		return false;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool ok = connect(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return ok;
}

/* --- building ------------------------------------------------------------ */

/* Loads fc.yaml and compiles the handler into DIR/.thaw/build/NAME.so.new
 * (*so_out, owned) or takes the .so it names. Returns 0, or -errno after
 * saying why (the compiler's own output is already on stderr). */
static int build(struct dev *d, struct config *cfg, char **so_out, bool *compiled)
{
	char err[1024], *fc = xasprintf("%s/fc.yaml", d->dir);
	int rc = config_load(fc, cfg, err, sizeof(err));
	free(fc);
	if (rc < 0) {
		cli_fail(d->cli, CLI_FAILED, "%s", err);
		return rc;
	}
	if (cfg->custom) { /* nothing to build: the command is the server */
		*compiled = false;
		*so_out = xstrdup("");
		return 0;
	}
	*compiled = compile_is_source(cfg->dir, cfg->handler);
	if (!*compiled) {
		*so_out = cfg->handler[0] == '/' ? xstrdup(cfg->handler)
						 : xasprintf("%s/%s", cfg->dir, cfg->handler);
		return 0;
	}
	char *bdir = xasprintf("%s/.thaw", cfg->dir);
	if (mkdir(bdir, 0755) < 0 && errno != EEXIST)
		goto mkdir_failed;
	free(bdir);
	bdir = xasprintf("%s/.thaw/build", cfg->dir);
	if (mkdir(bdir, 0755) < 0 && errno != EEXIST)
		goto mkdir_failed;
	*so_out = xasprintf("%s/%s.so.new", bdir, cfg->name);
	free(bdir);
	rc = compile_handler(cfg->dir, cfg->handler, *so_out, stderr, err, sizeof(err));
	if (rc < 0) {
		cli_fail(d->cli, CLI_FAILED, "%s", err);
		free(*so_out);
		*so_out = NULL;
		config_free(cfg);
	}
	return rc;
mkdir_failed:
	rc = -errno;
	cli_fail(d->cli, CLI_FAILED, "%s: %s", bdir, strerror(errno));
	free(bdir);
	config_free(cfg);
	return rc;
}

/* --- the server ---------------------------------------------------------- */

/* Forks thaw-instance --http for cfg and so (a custom runtime: its command,
 * in its folder, told the port by FC_SERVER_PORT). Returns 0 or -errno. */
static int start_server(struct dev *d, const struct config *cfg, const char *so)
{
	char **custom_argv = NULL;
	if (cfg->custom) {
		custom_argv = xcalloc(cfg->n_command + cfg->n_args + 1, sizeof(char *));
		memcpy(custom_argv, cfg->command, cfg->n_command * sizeof(char *));
		if (cfg->n_args)
			memcpy(custom_argv + cfg->n_command, cfg->args, cfg->n_args * sizeof(char *));
	}
	char listen[96], timeout[16], max_body[32];
	bool v6 = strchr(d->host, ':') != NULL;
	snprintf(listen, sizeof(listen), "%s%s%s:%u", v6 ? "[" : "", d->host, v6 ? "]" : "", d->port);
	snprintf(timeout, sizeof(timeout), "%u", cfg->timeout_s);
	snprintf(max_body, sizeof(max_body), "%llu", (unsigned long long)cfg->max_body_bytes);
	char *argv[] = { d->instance_bin, "--http", listen, "--function-dir", cfg->dir,
			 "--name", cfg->name, "--timeout", timeout, "--max-body", max_body,
			 (char *)so, NULL };
	char **env = fnenv_build(cfg, so, environ);
	/* a custom runtime: the port is dev's, not fc.yaml's */
	for (char **e = env; cfg->custom && *e; e++) {
		const char *key = !strncmp(*e, "FC_SERVER_PORT=", 15)	     ? "FC_SERVER_PORT"
				  : !strncmp(*e, "FC_CUSTOM_LISTEN_PORT=", 22) ? "FC_CUSTOM_LISTEN_PORT"
									       : NULL;
		if (key) {
			free(*e);
			*e = xasprintf("%s=%u", key, d->port);
		}
	}
	pid_t parent = getpid();
	sigset_t none;
	sigemptyset(&none);
	pid_t pid = fork();
	if (pid < 0) {
		int err = -errno;
		fnenv_free(env);
		free(custom_argv);
		cli_fail(d->cli, CLI_FAILED, "fork: %s", strerror(-err));
		return err;
	}
	if (pid == 0) {
		/* the server must not outlive thaw dev, even a SIGKILLed one */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		if (custom_argv) {
			if (chdir(cfg->dir) == 0)
				execvpe(custom_argv[0], custom_argv, env);
			fprintf(stderr, "thaw dev: cannot run %s: %s\n", custom_argv[0],
				strerror(errno));
			_exit(127);
		}
		execve(argv[0], argv, env);
		fprintf(stderr, "thaw dev: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	fnenv_free(env);
	free(custom_argv);
	d->child = pid;
	return 0;
}

/* Reaps the server if it has exited and says how, followed by then (NULL:
 * quietly, the server was asked to stop). */
static void reap(struct dev *d, const char *then)
{
	int st;
	if (d->child < 0 || waitpid(d->child, &st, WNOHANG) != d->child)
		return;
	d->child = -1;
	if (!then)
		return;
	if (WIFSIGNALED(st))
		fprintf(stderr, "thaw dev: the server died of signal %d (%s)%s\n", WTERMSIG(st),
			strsignal(WTERMSIG(st)), then);
	else
		fprintf(stderr, "thaw dev: the server exited with status %d%s\n", WEXITSTATUS(st),
			then);
}

/* Drains the signalfd: SIGINT and SIGTERM set stop, SIGCHLD reaps. */
static void take_signals(struct dev *d, const char *then)
{
	struct signalfd_siginfo si;
	while (read(d->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			reap(d, then);
		else
			d->stop = true;
	}
}

/* SIGTERM, up to STOP_GRACE_MS for the handler's shutdown(), then SIGKILL. */
static void stop_server(struct dev *d)
{
	if (d->child < 0)
		return;
	kill(d->child, SIGTERM);
	int64_t until = now_ms() + STOP_GRACE_MS;
	while (d->child >= 0 && now_ms() < until) {
		reap(d, NULL);
		if (d->child >= 0)
			poll(NULL, 0, 10);
	}
	if (d->child >= 0) {
		kill(d->child, SIGKILL);
		while (waitpid(d->child, NULL, 0) < 0 && errno == EINTR)
			;
		d->child = -1;
	}
}

/* Waits until the server accepts connections. Returns 0, -ECHILD when it
 * exited first (its own error is on the terminal), -EINTR on a stop
 * signal, -ETIMEDOUT. */
static int wait_ready(struct dev *d)
{
	int64_t until = now_ms() + READY_TIMEOUT_MS;
	for (;;) {
		take_signals(d, " before it listened");
		if (d->stop)
			return -EINTR;
		if (d->child < 0)
			return -ECHILD;
		if (listening(d))
			return 0;
		if (now_ms() > until) {
			cli_fail(d->cli, CLI_FAILED, "the server did not listen within %d s",
				 READY_TIMEOUT_MS / 1000);
			stop_server(d);
			return -ETIMEDOUT;
		}
		struct pollfd p = { .fd = d->sigfd, .events = POLLIN };
		poll(&p, 1, 20);
	}
}

/* Builds and (re)starts. At the first start a failure is final; later a
 * compile error keeps the old server, and a new version whose init fails
 * gives way to the previous .so. Returns 0 or -errno. */
static int rebuild(struct dev *d)
{
	bool first = !d->cfg.name;
	int64_t t0 = now_ms();
	struct config cfg;
	char *so_new = NULL;
	bool compiled;
	if (!first)
		fprintf(stderr, "thaw dev: change seen, rebuilding\n");
	int rc = build(d, &cfg, &so_new, &compiled);
	if (rc < 0) {
		if (!first)
			fprintf(stderr, "thaw dev: build failed; %s\n",
				d->child >= 0 ? "the old server keeps running" : "no server running");
		return rc;
	}
	int64_t build_ms = now_ms() - t0;
	/* NAME.so.new -> NAME.so; the old NAME.so (still mapped by the old
	 * server) stays as NAME.so.prev for a fallback */
	char *so = so_new, *prev = NULL;
	if (compiled) {
		so = xstrndup(so_new, strlen(so_new) - 4);
		prev = xasprintf("%s.prev", so);
		if (rename(so, prev) < 0) {
			free(prev);
			prev = NULL;
		}
		if (rename(so_new, so) < 0) {
			rc = -errno;
			cli_fail(d->cli, CLI_FAILED, "rename %s: %s", so_new, strerror(errno));
			config_free(&cfg);
			goto out;
		}
	}
	stop_server(d);
	if ((rc = start_server(d, &cfg, so)) < 0 || (rc = wait_ready(d)) < 0)
		goto start_failed;
	if (!first)
		printf("thaw dev: rebuilt in %lld ms, restarted\n", (long long)build_ms);
	fflush(stdout);
	config_free(&d->cfg);
	d->cfg = cfg;
	free(d->so);
	d->so = so;
	d->compiled = compiled;
	so = NULL;
	goto out;
start_failed:
	config_free(&cfg);
	if (rc == -EINTR || first)
		goto out;
	if (!prev || rename(prev, so) < 0) {
		fprintf(stderr, "thaw dev: the new version did not start; no server until the next "
				"good build\n");
		goto out;
	}
	fprintf(stderr, "thaw dev: the new version did not start; serving the previous one again\n");
	if (start_server(d, &d->cfg, so) == 0)
		wait_ready(d);
out:
	if (so != so_new)
		free(so);
	free(so_new);
	free(prev);
	return rc;
}

/* --- watching ------------------------------------------------------------ */

static bool ignored(const char *name)
{
	return name[0] == '.'; /* dotfiles, editor swap files, .thaw/ */
}

/* Watches path and its sub-folders, up to MAX_DEPTH deep. */
static void watch_tree(struct dev *d, const char *path, int depth)
{
	if (d->n_watches == MAX_WATCHES) {
		fprintf(stderr, "thaw dev: more than %d folders; not watching %s\n", MAX_WATCHES,
			path);
		return;
	}
	int wd = inotify_add_watch(d->ino, path,
				   IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
					   IN_DELETE | IN_ONLYDIR | IN_DONT_FOLLOW);
	if (wd < 0) {
		fprintf(stderr, "thaw dev: cannot watch %s: %s\n", path, strerror(errno));
		return;
	}
	bool known = false;
	for (unsigned i = 0; i < d->n_watches; i++)
		known |= d->watches[i].wd == wd;
	if (!known) {
		d->watches[d->n_watches].wd = wd;
		d->watches[d->n_watches++].path = xstrdup(path);
	}
	DIR *dir = depth < MAX_DEPTH ? opendir(path) : NULL;
	if (!dir)
		return;
	struct dirent *e;
	while ((e = readdir(dir))) {
		if (ignored(e->d_name) || e->d_type != DT_DIR)
			continue;
		char *sub = xasprintf("%s/%s", path, e->d_name);
		watch_tree(d, sub, depth + 1);
		free(sub);
	}
	closedir(dir);
}

static const char *watch_path(const struct dev *d, int wd)
{
	for (unsigned i = 0; i < d->n_watches; i++)
		if (d->watches[i].wd == wd)
			return d->watches[i].path;
	return NULL;
}

/* Reads the pending events; returns whether one of them is a change that
 * matters. New folders get watched. */
static bool take_events(struct dev *d)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;
	ssize_t n;
	while ((n = read(d->ino, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				changed = true;
				continue;
			}
			if (!ev->len || ignored(ev->name))
				continue;
			changed = true;
			const char *parent = watch_path(d, ev->wd);
			if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)) && parent) {
				char *sub = xasprintf("%s/%s", parent, ev->name);
				watch_tree(d, sub, 1);
				free(sub);
			}
		}
	}
	return changed;
}

static void watch_loop(struct dev *d)
{
	int64_t due = -1; /* when to rebuild: DEBOUNCE_MS after the last change */
	while (!d->stop) {
		struct pollfd p[2] = { { .fd = d->sigfd, .events = POLLIN },
				       { .fd = d->ino, .events = POLLIN } };
		int64_t now = now_ms();
		int timeout = due < 0 ? -1 : due > now ? (int)(due - now) : 0;
		if (poll(p, 2, timeout) < 0 && errno != EINTR) {
			cli_fail(d->cli, CLI_FAILED, "poll: %s", strerror(errno));
			return;
		}
		take_signals(d, "; it starts again on the next change");
		if (d->stop)
			return;
		if (p[1].revents && take_events(d))
			due = now_ms() + DEBOUNCE_MS;
		if (due >= 0 && now_ms() >= due) {
			due = -1;
			rebuild(d);
		}
	}
}

/* --- the command --------------------------------------------------------- */

int cli_dev(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, 0, 'p' },
		{ "host", required_argument, 0, 'H' },
		{ "once", no_argument, 0, '1' },
		CLI_COMMON_OPTIONS,
		{ 0, 0, 0, 0 },
	};
	struct dev d = { .cli = cli, .dir = ".", .port = DEFAULT_PORT, .child = -1,
			 .sigfd = -1, .ino = -1 };
	strcpy(d.host, "127.0.0.1");
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == CLI_OPT_JSON || c == CLI_OPT_STATE_DIR) {
			bad = cli_fail(cli, CLI_USAGE, "--%s: not an option of dev",
				       c == CLI_OPT_JSON ? "json" : "state-dir");
			continue;
		}
		int r = cli_common_opt(cli, c, optarg, usage);
		if (r < 0)
			return CLI_OK;
		if (r > 0)
			continue;
		char *end;
		unsigned long v;
		switch (c) {
		case 'p':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || errno || v < 1 || v > 65535)
				bad = cli_fail(cli, CLI_USAGE, "--port: expected 1..65535: %s", optarg);
			d.port = (unsigned)v;
			break;
		case 'H':
			if (strlen(optarg) >= sizeof(d.host) || !loopback(optarg))
				bad = cli_fail(cli, CLI_USAGE,
					       "--host: only a loopback address (127.0.0.1, ::1, "
					       "localhost): %s",
					       optarg);
			else
				strcpy(d.host, optarg);
			break;
		case '1': d.once = true; break;
		default: bad = 1;
		}
	}
	if (bad || argc - optind > 1) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	if (optind < argc)
		d.dir = argv[optind];
	struct stat st;
	char *fc = xasprintf("%s/fc.yaml", d.dir);
	int fc_ok = stat(fc, &st);
	free(fc);
	if (fc_ok < 0)
		return cli_fail(cli, CLI_USAGE, "%s: no fc.yaml there (%s)", d.dir, strerror(errno));
	struct server_options so;
	server_options_default(&so);
	snprintf(d.instance_bin, sizeof(d.instance_bin), "%s", so.instance_bin);
	if (access(d.instance_bin, X_OK) < 0)
		return cli_fail(cli, CLI_FAILED, "%s: %s (it is built beside thaw)", d.instance_bin,
				strerror(errno));
	if (listening(&d))
		return cli_fail(cli, CLI_FAILED, "%s:%u is in use; pick another with --port", d.host,
				d.port);

	int ret = CLI_FAILED;
	sigset_t mask, old;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, &old);
	d.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (d.sigfd < 0) {
		cli_fail(cli, CLI_FAILED, "signalfd: %s", strerror(errno));
		goto out;
	}
	int rc = rebuild(&d);
	if (rc == -EINTR) {
		ret = CLI_OK;
		goto out;
	}
	if (rc < 0) {
		if (rc == -ECHILD)
			cli_fail(cli, CLI_FAILED, "the server did not start (its error is above)");
		goto out;
	}
	bool v6 = strchr(d.host, ':') != NULL;
	printf("thaw dev: %s on http://%s%s%s:%u/ ; through the daemon: %s/proxy/%u/ with the admin "
	       "token (X-Thaw-Token), once it runs with --proxy-ports %u\n",
	       d.cfg.name, v6 ? "[" : "", d.host, v6 ? "]" : "", d.port, cli->url, d.port, d.port);
	fflush(stdout);
	if (!d.once) {
		d.ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
		if (d.ino < 0) {
			cli_fail(cli, CLI_FAILED, "inotify: %s", strerror(errno));
			goto out;
		}
		watch_tree(&d, d.cfg.dir, 0);
		watch_loop(&d);
	} else {
		while (!d.stop && d.child >= 0) {
			struct pollfd p = { .fd = d.sigfd, .events = POLLIN };
			poll(&p, 1, -1);
			take_signals(&d, "");
		}
	}
	ret = d.stop ? CLI_OK : CLI_FAILED;
out:
	stop_server(&d);
	if (d.ino >= 0)
		close(d.ino);
	for (unsigned i = 0; i < d.n_watches; i++)
		free(d.watches[i].path);
	if (d.sigfd >= 0)
		close(d.sigfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (d.cfg.name)
		config_free(&d.cfg);
	free(d.so);
	return ret;
}
