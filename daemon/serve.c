#define LOG_PREFIX "server: "
#include "daemon/serve.h"
#include "daemon/server.h"
#include "daemon/conn.h"
#include "daemon/front.h"
#include "common/http.h"
#include "daemon/invocation.h"
#include "daemon/jobs.h"
#include "daemon/fnsnap.h"
#include "common/fsutil.h"
#include "daemon/imagestore.h"
#include "proc/instance.h"
#include "daemon/lifecycle.h"
#include "common/log.h"
#include "daemon/loop.h"
#include "common/mem.h"
#include "daemon/pool.h"
#include "proc/reslimit.h"
#include "proc/scratch.h"
#include "daemon/travel.h"
#include "snapshot/snapshot.h"
#include "snapshot/snapmem.h"
#include "common/channel.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/* The admin token: made at first start, readable by the owner only. */
static int load_admin_token(void)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/admin.token", server.opt.state_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, server.admin_token, 64);
		close(fd);
		if (n == 64) {
			server.admin_token[64] = '\0';
			return 0;
		}
		pr_warn("%s is damaged: making a new token", path);
	}
	unsigned char raw[32];
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
		return -EIO;
	for (int i = 0; i < 32; i++)
		sprintf(server.admin_token + 2 * i, "%02x", raw[i]);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, server.admin_token, 64) != 64) {
		int err = -errno;
		pr_perror("writing %s", path);
		if (fd >= 0)
			close(fd);
		return err;
	}
	fchmod(fd, 0600);
	close(fd);
	pr_info("admin token written to %s", path);
	return 0;
}

static bool has_cap(int cap)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return false;
	return d[cap / 32].effective & (1u << (cap % 32));
}

/* Snapshot images live on a tmpfs, one folder per daemon state dir. */
static void probe_snapshots(void)
{
	static char dir[64];
	uint32_t h = 2166136261u; /* FNV-1a of the state dir */
	for (const char *p = server.opt.state_dir; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	bool default_dir = !server.opt.snapshot_dir;
	if (default_dir) {
		snprintf(dir, sizeof(dir), "/dev/shm/thaw-%08x", h);
		server.opt.snapshot_dir = dir;
	}
	if (server.opt.no_snapshots) {
		pr_info("snapshots off: --no-snapshots; instances cold start");
		return;
	}
	char why[256];
	if (snapshot_probe(why, sizeof(why))) {
		pr_warn("%s; instances cold start", why);
		return;
	}
	if (server.instance_uid && !has_cap(CAP_SYS_RESOURCE)) {
		/* criu reads the instance's rlimits with prlimit(), which another
		 * user's process allows only with that capability */
		pr_warn("snapshots off: instances run as %s, and criu can dump another user's "
			"process only with CAP_SYS_RESOURCE, which this daemon lacks; instances cold start",
			server.opt.instance_user);
		return;
	}
	server.snapshots = true;
	/* snapshot memory files want a tmpfs with huge pages: thaw's own */
	char huge[64];
	if (snapshot_mem_mount(why, sizeof(why)))
		pr_warn("snapshot memory: %s; default snapshot folder on /dev/shm", why);
	else if (default_dir)
		snprintf(dir, sizeof(dir), "%s/thaw-%08x", CHANNEL_MEM_TMPFS, h);
	mkdir(server.opt.snapshot_dir, 0700);
	const char *hp = snapshot_mem_huge(server.opt.snapshot_dir, huge, sizeof(huge));
	pr_info("snapshots on: images in %s (%s)", server.opt.snapshot_dir,
		hp ? hp : "4 KiB pages: no huge pages for memory files there");
}

/* Raises the open file limit to its hard limit, and keeps connections
 * below it: a connection cap equal to the fd limit never fired, accept
 * failed with EMFILE instead and clients got no answer. What is not a
 * connection (instances: channel, output pipe, pidfd, cgroup files; jobs,
 * logs, rings, listeners) gets 256 fds and an eighth of the limit. */
static void raise_fd_limit(void)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) != 0)
		return;
	if (r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &r) != 0)
			getrlimit(RLIMIT_NOFILE, &r);
	}
	if (r.rlim_cur == RLIM_INFINITY)
		return;
	rlim_t reserve = 256 + r.rlim_cur / 8;
	rlim_t cap = r.rlim_cur > 2 * reserve ? r.rlim_cur - reserve : r.rlim_cur / 2;
	if (cap < server.opt.max_connections) {
		pr_warn("at most %lu connections (503 past them), not %u: the open file limit is %lu",
			(unsigned long)cap, server.opt.max_connections, (unsigned long)r.rlim_cur);
		server.opt.max_connections = (unsigned)cap;
	}
}

/* The daemon holds every client's connection and buffers: under memory
 * pressure an instance must go first (instance.c raises theirs). Lowering
 * needs CAP_SYS_RESOURCE: without it the score stays, said once. */
static void lower_oom_score(void)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : write(fd, DAEMON_OOM_SCORE_ADJ, strlen(DAEMON_OOM_SCORE_ADJ));
	if (n < 0)
		pr_info("oom_score_adj stays (%s): the OOM killer may pick the daemon", strerror(errno));
	if (fd >= 0)
		close(fd);
}


/* --- what the loops do (loop.h's hooks) ---------------------------------- */

/* The pool of fn when sh runs it, else NULL. */
static struct pool *pool_here(struct shard *sh, struct function *fn)
{
	struct pool *p = atomic_load(&fn->pool);
	return p && p->sh == sh ? p : NULL;
}

/* Each loop warms the serving version of the functions it runs, and a newer
 * one still starting when the daemon stopped (it takes over once ready). */
static void loop_start(struct shard *sh)
{
	for (unsigned i = 0; i < atomic_load(&server.n_names); i++) {
		struct fn_name *nm = server.names[i];
		struct function *cur = atomic_load(&nm->current);
		struct function *last = fn_name_newest(nm);
		if (atomic_load(&nm->removed))
			continue;
		if (cur && pool_of(cur)->sh == sh)
			pool_warm(pool_of(cur));
		if (last != cur && atomic_load(&last->state) == FN_STARTING &&
		    pool_of(last)->sh == sh)
			pool_warm(pool_of(last));
	}
}

static void loop_tick(struct shard *sh, int64_t now)
{
	for (unsigned i = 0, n = atomic_load(&server.n_functions); i < n; i++) {
		struct pool *p = pool_here(sh, server.functions[i]);
		if (p)
			pool_tick(p, now);
	}
}

static bool loop_active(struct shard *sh)
{
	return sh->n_active > 0;
}

static void loop_shutdown(struct shard *sh)
{
	for (unsigned i = 0, n = atomic_load(&server.n_functions); i < n; i++) {
		struct pool *p = pool_here(sh, server.functions[i]);
		if (p)
			pool_shutdown(p);
	}
	conn_close_all(sh);
}

/* Another loop may still answer or cancel an invocation through this one. */
static bool loop_alive(struct shard *sh)
{
	return sh->n_conns || sh->n_instances || invocation_alive();
}

static int grpc_fd = -1; /* --grpc-port's listener, shared by the loops */

/* port's listener; reuse_port: one per loop (the main port), else one
 * shared by all (so that two daemons never split a port between them). */
static int listen_on(unsigned port, bool reuse_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, server.opt.listen, &a.sin_addr) != 1) {
		pr_err("--listen %s: not an IPv4 address", server.opt.listen);
		return -EINVAL;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuse_port)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
		int err = -errno;
		if (reuse_port)
			pr_perror("listen on %s:%u", server.opt.listen, port);
		close(fd);
		return err;
	}
	return fd;
}

/* One loop per thread, each with its own SO_REUSEPORT listener. */
static int start_loops(void)
{
	static const struct shard_hooks hooks = {
		.start = loop_start,
		.accept = conn_accept,
		.tick = loop_tick,
		.active = loop_active,
		.shutdown = loop_shutdown,
		.alive = loop_alive,
	};
	shard_set_hooks(&hooks);
	front_init();
	server.n_shards = server.opt.threads;
	if (server.opt.grpc_port && server.opt.grpc_port != server.opt.port) {
		grpc_fd = listen_on(server.opt.grpc_port, false);
		if (grpc_fd < 0) /* e.g. another daemon has it: gRPC stays on --port */
			pr_warn("gRPC port %s:%u: %s; gRPC only on port %u", server.opt.listen,
				server.opt.grpc_port, strerror(-grpc_fd), server.opt.port);
		else
			pr_info("gRPC (h2c) also on %s:%u", server.opt.listen, server.opt.grpc_port);
	}
	for (unsigned i = 0; i < server.n_shards; i++) {
		int fd = listen_on(server.opt.port, true), ret;
		if (fd < 0)
			return fd;
		server.shards[i] = xcalloc(1, sizeof(struct shard));
		if ((ret = shard_init(server.shards[i], i, fd)))
			return ret;
		server.shards[i]->listen2_fd = grpc_fd;
	}
	for (unsigned i = 0; i < server.n_shards; i++)
		pthread_create(&server.shards[i]->thread, NULL, shard_main, server.shards[i]);
	return 0;
}

/* Graceful stop: no new connections; requests under way and queued finish,
 * for at most the longest function timeout. A second signal stops at once. */
static void drain(const sigset_t *stop)
{
	unsigned longest = 1;
	for (unsigned i = 0; i < atomic_load(&server.n_functions); i++)
		if (server.functions[i]->cfg.timeout_s > longest)
			longest = server.functions[i]->cfg.timeout_s;
	pr_info("draining: finishing requests under way (at most %u s; signal again to stop now)",
		longest);
	atomic_store(&server.draining, true);
	for (unsigned i = 0; i < server.n_shards; i++)
		shard_drain(server.shards[i], &server.drained);
	int64_t end = now_ns() + (int64_t)longest * 1000000000 + 500000000;
	while (atomic_load(&server.drained) < server.n_shards && now_ns() < end) {
		struct timespec ts = { 0, 50000000 };
		if (sigtimedwait(stop, NULL, &ts) >= 0) {
			pr_info("second signal: stopping now");
			return;
		}
	}
	pr_info("drained: stopping");
}

/* Frees the disk of images no version uses any more (removed functions,
 * uploads never deployed): only now, before anything else uses the store. */
static void collect_images(void)
{
	unsigned n = atomic_load(&server.n_functions), k = 0;
	const char **live = xcalloc(n + 1, sizeof(*live));
	for (unsigned i = 0; i < n; i++)
		if (server.functions[i]->image && !function_removed(server.functions[i]))
			live[k++] = server.functions[i]->image->digest;
	imagestore_gc(live, k);
	free(live);
}

/* --instance-user: instances drop to that user and work in STATE/run,
 * theirs. The state folder then lets others through (0711, nothing listed)
 * to the images they run from; its own files (admin.token, the journal,
 * logs/) stay the daemon's alone. */
static int setup_instance_user(const char *name)
{
	static char run[PATH_MAX];
	struct passwd *pw = getpwnam(name);
	if (!pw) {
		pr_err("--instance-user %s: no such user", name);
		return -ENOENT;
	}
	if (pw->pw_uid == 0)
		return 0;
	snprintf(run, sizeof(run), "%s/run", server.opt.state_dir);
	if ((mkdir(run, 0700) < 0 && errno != EEXIST) || chown(run, pw->pw_uid, pw->pw_gid) < 0 ||
	    chmod(run, 0700) < 0 || chmod(server.opt.state_dir, 0711) < 0) {
		int err = -errno;
		pr_perror("--instance-user %s: preparing %s", name, run);
		return err;
	}
	instance_set_user(pw->pw_uid, pw->pw_gid, run);
	server.instance_uid = pw->pw_uid;
	pr_info("instances run as %s (uid %u, gid %u)", name, (unsigned)pw->pw_uid,
		(unsigned)pw->pw_gid);
	return 0;
}

/* path cut at its last slash, in place ("/" stays). */
static char *parent(char *path)
{
	char *slash = strrchr(path, '/');
	if (slash)
		slash[slash == path] = '\0';
	return path;
}

/* Each instance's own /tmp and /dev/shm (proc/scratch.h), with the
 * folders it and criu need bound back where they lie under those. */
static void setup_scratch(void)
{
	const struct server_options *o = &server.opt;
	if (!o->scratch_mb) {
		pr_info("private scratch off (--scratch-mb 0): instances share /tmp and /dev/shm");
		return;
	}
	/* the folder above thaw-instance's (a source tree's build/: its
	 * examples too) and the criu that runs in there */
	const char *criu = getenv("THAW_CRIU");
	char *tree = parent(parent(xstrdup(o->instance_bin)));
	char *criu_dir = parent(xstrdup(criu && *criu ? criu : SNAPSHOT_CRIU_DEFAULT));
	char cwd[PATH_MAX];
	const char *keep[10] = { o->state_dir, o->snapshot_dir, CHANNEL_MEM_TMPFS,
				 SNAPSHOT_CRIU_RUNDIR, tree, criu_dir };
	size_t n = 6;
	if (getcwd(cwd, sizeof(cwd)))
		keep[n++] = cwd;
	if (o->functions_dir)
		keep[n++] = o->functions_dir;
	keep[n++] = o->snapshot_from ? o->snapshot_from : TRAVEL_DEFAULT_FROM;
	if (scratch_configure(o->scratch_mb, keep) == 0)
		pr_info("private scratch: each instance gets its own /tmp and /dev/shm (tmpfs, %u MiB "
			"each, counted in memorySize)", o->scratch_mb);
	free(tree);
	free(criu_dir);
}

int server_run(void)
{
	struct server_options *o = &server.opt;
	server.start_ns = now_ns();
	int ret = fs_mkdir_p(o->state_dir, 0700);
	if (ret) {
		pr_err("state dir %s: %s", o->state_dir, strerror(-ret));
		return ret;
	}
	if ((ret = load_admin_token()) || (ret = imagestore_init(o->state_dir)))
		return ret;
	if (o->instance_user && (ret = setup_instance_user(o->instance_user)))
		return ret;
	if (access(o->instance_bin, X_OK) != 0) {
		pr_err("instance host %s: %s (build it with make)", o->instance_bin, strerror(errno));
		return -ENOENT;
	}
	http_set_max_header_size(o->max_header_bytes);
	fnlog_setup(o->state_dir);
	probe_snapshots();
	setup_scratch();
	reslimit_init();
	/* restores mostly wait for criu: a burst of them should not queue
	 * behind two workers (16 at once measured 8 rounds deep) */
	if ((ret = jobs_start(8)))
		return ret;
	raise_fd_limit();
	lower_oom_score();
	signal(SIGPIPE, SIG_IGN);
	if (o->functions_dir) {
		int n = lifecycle_load_dir(o->functions_dir);
		if (n < 0)
			return n;
		pr_info("loaded %d function(s) from %s", n, o->functions_dir);
	}
	int replayed = lifecycle_replay();
	if (replayed > 0)
		pr_info("replayed %d deploys and rollbacks of earlier runs", replayed);
	collect_images();
	fnsnap_sweep();
	/* block the stop signals in every thread; this one waits for them */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	if ((ret = start_loops()))
		return ret;
	pr_info("listening on %s:%u with %u loop(s), state in %s", o->listen, o->port,
		server.n_shards, o->state_dir);
	int sig;
	sigwait(&stop, &sig);
	drain(&stop);
	atomic_store(&server.stopping, true);
	for (unsigned i = 0; i < server.n_shards; i++)
		shard_stop(server.shards[i]);
	for (unsigned i = 0; i < server.n_shards; i++)
		pthread_join(server.shards[i]->thread, NULL);
	for (unsigned i = 0, n = atomic_load(&server.n_functions); i < n; i++) {
		struct pool *p = atomic_exchange(&server.functions[i]->pool, NULL);
		if (p)
			pool_free(p);
	}
	/* restores still under way end here: their done() kills the copies */
	jobs_stop();
	for (unsigned i = 0; i < server.n_shards; i++) {
		shard_run_posted(server.shards[i]);
		shard_fini(server.shards[i]);
	}
	if (grpc_fd >= 0)
		close(grpc_fd);
	grpc_fd = -1;
	reslimit_fini();
	return 0;
}
