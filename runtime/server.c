#define LOG_PREFIX "server: "
#include "server.h"
#include "http.h"
#include "jobs.h"
#include "fnsnap.h"
#include "history.h"
#include "imagestore.h"
#include "instance.h"
#include "journal.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "reslimit.h"
#include "snapshot/snapshot.h"

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

struct server server = { .registry_lock = PTHREAD_MUTEX_INITIALIZER };

void server_options_default(struct server_options *o)
{
	memset(o, 0, sizeof(*o));
	o->listen = "0.0.0.0";
	o->port = 9000;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	o->threads = cores > 0 && cores <= MAX_SHARDS ? (unsigned)cores : 1;
	o->max_header_bytes = 8192;
	o->header_timeout_ms = 10000;
	o->body_timeout_ms = 60000;
	o->idle_timeout_ms = 60000;
	o->send_timeout_ms = 60000;
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	o->max_buffered = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize / 4 : 0;
	if (o->max_buffered < (256ull << 20))
		o->max_buffered = 256ull << 20;
	o->proxy_timeout_ms = 30000;
	o->max_connections = 20000;
	o->init_timeout_s = 300;
	o->access_log = true;
	static char state[PATH_MAX];
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	if (geteuid() == 0)
		snprintf(state, sizeof(state), "/var/lib/thaw");
	else if (xdg && *xdg)
		snprintf(state, sizeof(state), "%s/thaw", xdg);
	else
		snprintf(state, sizeof(state), "%s/.local/state/thaw", home ? home : "/tmp");
	o->state_dir = state;
	/* thaw-instance lives beside the thaw binary */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	char *slash = strrchr(self, '/');
	size_t dir_len = slash ? (size_t)(slash - self) : 0;
	if (dir_len > sizeof(o->instance_bin) - 20)
		dir_len = 0;
	memcpy(o->instance_bin, self, dir_len);
	strcpy(o->instance_bin + dir_len, "/thaw-instance");
}

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, mode) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

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

struct fn_name *server_find_name(const char *name, size_t len)
{
	unsigned n = atomic_load(&server.n_names);
	for (unsigned i = 0; i < n; i++) {
		struct fn_name *nm = server.names[i];
		if (!atomic_load(&nm->removed) && strlen(nm->name) == len && memcmp(nm->name, name, len) == 0)
			return nm;
	}
	return NULL;
}

struct function *server_find_function(const char *name, size_t len)
{
	struct fn_name *nm = server_find_name(name, len);
	if (!nm)
		return NULL;
	struct function *cur = atomic_load(&nm->current);
	return cur ? cur : fn_name_newest(nm);
}

struct function *server_find_version(const char *name, size_t len, unsigned v)
{
	struct fn_name *nm = server_find_name(name, len);
	return nm ? fn_name_version(nm, v) : NULL;
}

void function_mark_ready(struct function *fn)
{
	atomic_store(&fn->state, FN_READY);
	pthread_mutex_lock(&server.registry_lock);
	struct fn_name *nm = fn->name;
	bool first = !fn->promoted;
	unsigned replaced = 0;
	if (first && !nm->pinned && fn_name_newest(nm) == fn) {
		struct function *old = atomic_load(&nm->current);
		if (!old || old->version < fn->version) {
			atomic_store(&nm->current, fn);
			pr_info("%s: version %u serves", nm->name, fn->version);
			replaced = old ? old->version : 0;
		}
	}
	fn->promoted = true;
	pthread_mutex_unlock(&server.registry_lock);
	if (replaced && !journal_replaying())
		fnsnap_drop_others(nm, fn->version, replaced);
	if (first && atomic_load(&fn->journaled))
		journal_ready(nm->name, fn->version);
}

int server_rollback(struct fn_name *nm, unsigned v, struct function **out)
{
	pthread_mutex_lock(&server.registry_lock);
	int ret = 0;
	struct function *cur = atomic_load(&nm->current), *to = NULL;
	unsigned nv = atomic_load(&nm->n_versions);
	if (v == 0) { /* the newest ready version older than the current one */
		for (unsigned i = cur ? cur->version - 1 : nv; i >= nm->first && !to; i--)
			if (atomic_load(&fn_name_version(nm, i)->state) == FN_READY)
				to = fn_name_version(nm, i);
		if (!to)
			ret = -ENOENT;
	} else if (!(to = fn_name_version(nm, v))) {
		ret = -ENOENT;
	} else if (atomic_load(&to->state) == FN_FAILED) {
		ret = -EAGAIN;
	}
	if (!ret) {
		atomic_store(&nm->current, to);
		nm->pinned = true;
		pr_info("%s: rolled back to version %u", nm->name, to->version);
		*out = to;
	}
	pthread_mutex_unlock(&server.registry_lock);
	return ret;
}

void server_rm_rf(const char *dir)
{
	char *argv[] = { "rm", "-rf", "--", (char *)dir, NULL };
	pid_t pid = fork();
	if (pid == 0) {
		execv("/bin/rm", argv);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

static int live_instances(struct function *fn)
{
	int n = 0;
	for (int s = 0; s < INST_STATES; s++)
		n += atomic_load(&fn->metrics.instances[s]);
	return n;
}

/* A removed version's snapshot folder is moved aside at once (a new deploy
 * of the name reuses the folder name) and deleted when its instances are. */
static void removed_snap_dir(struct function *fn, char *out, size_t len)
{
	snprintf(out, len, "%s.removed-%u", fn->snap_dir, fn->index);
}

void function_removed_gc(struct function *fn)
{
	if (live_instances(fn) || atomic_load(&fn->snap_dropped) ||
	    atomic_exchange(&fn->snap_dropped, true))
		return;
	char dir[sizeof(fn->snap_dir) + 32];
	removed_snap_dir(fn, dir, sizeof(dir));
	if (access(dir, F_OK) == 0) {
		server_rm_rf(dir);
		pr_info("%s: version %u's snapshot %s deleted", fn->cfg.name, fn->version, dir);
	}
}

int server_remove(struct fn_name *nm)
{
	pthread_mutex_lock(&server.registry_lock);
	if (atomic_exchange(&nm->removed, true)) {
		pthread_mutex_unlock(&server.registry_lock);
		return -ENOENT;
	}
	pthread_mutex_unlock(&server.registry_lock);
	fnlog_close(&nm->log);
	unsigned nv = atomic_load(&nm->n_versions) - nm->first + 1;
	for (unsigned k = 0; k < nv; k++) {
		struct function *fn = nm->versions[k];
		char dir[sizeof(fn->snap_dir) + 32];
		atomic_store(&fn->snap_state, SNAP_OFF);
		removed_snap_dir(fn, dir, sizeof(dir));
		if (access(fn->snap_dir, F_OK) == 0 && rename(fn->snap_dir, dir) < 0)
			pr_perror("%s: moving %s aside", nm->name, fn->snap_dir);
		function_removed_gc(fn);
	}
	pr_info("%s removed (%u version(s))", nm->name, nv);
	return 0;
}

/* server_add_function, journaling the deploy first when journal is set:
 * under the registry lock, after the bounds are checked and before anything
 * is published, so a deploy that cannot be journaled leaves nothing. */
static int add_function(struct config *cfg, const struct imagestore_image *image,
			unsigned version, bool journal, int *journal_err, struct function **out)
{
	pthread_mutex_lock(&server.registry_lock);
	int ret = 0;
	unsigned n = atomic_load(&server.n_functions);
	struct fn_name *nm = server_find_name(cfg->name, strlen(cfg->name));
	if (n == MAX_FUNCTIONS || (!nm && atomic_load(&server.n_names) == MAX_NAMES) ||
	    (nm && atomic_load(&nm->n_versions) - nm->first + 1 == MAX_VERSIONS)) {
		ret = -ENOSPC;
		goto unlock;
	}
	int64_t now = (int64_t)time(NULL);
	if (journal) {
		unsigned next = nm ? atomic_load(&nm->n_versions) + 1 : version ? version : 1;
		*journal_err = journal_deploy(cfg->name, next, cfg->dir,
					      image ? image->digest : NULL, now);
		if (*journal_err) {
			ret = *journal_err;
			goto unlock;
		}
	}
	bool new_name = !nm;
	if (new_name) { /* published below, with its first version */
		nm = xcalloc(1, sizeof(*nm));
		snprintf(nm->name, sizeof(nm->name), "%s", cfg->name);
		fnlog_init_name(&nm->log);
		nm->first = version ? version : 1;
		atomic_store(&nm->n_versions, nm->first - 1);
	}
	struct function *fn = xcalloc(1, sizeof(*fn));
	fn->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	fn->handler_path = fn->cfg.handler[0] == '/'
				   ? xstrdup(fn->cfg.handler)
				   : xasprintf("%s/%s", fn->cfg.dir, fn->cfg.handler);
	if (image) {
		fn->image = xmalloc(sizeof(*image));
		*fn->image = *image;
	}
	fn->index = n;
	fn->name = nm;
	fn->version = atomic_load(&nm->n_versions) + 1;
	/* what changed since the newest version that could be loaded */
	struct function *prev = NULL;
	for (unsigned v = fn->version - 1; v >= nm->first && !prev; v--)
		prev = fn_name_version(nm, v)->broken ? NULL : fn_name_version(nm, v);
	fn->changes = history_changes(prev, fn);
	fn->deployed_at = now;
	pthread_mutex_init(&fn->lock, NULL);
	atomic_store(&fn->state, FN_STARTING);
	fnsnap_init(fn);
	server.functions[n] = fn;
	nm->versions[fn->version - nm->first] = fn;
	nm->pinned = false; /* a new deploy takes over once ready */
	/* publish after the slots are filled */
	atomic_store(&nm->n_versions, fn->version);
	atomic_store(&server.n_functions, n + 1);
	if (new_name) {
		server.names[atomic_load(&server.n_names)] = nm;
		atomic_fetch_add(&server.n_names, 1);
	}
	if (journal)
		atomic_store(&fn->journaled, true);
	if (out)
		*out = fn;
unlock:
	pthread_mutex_unlock(&server.registry_lock);
	return ret;
}

int server_add_function(struct config *cfg, const struct imagestore_image *image,
			unsigned version, struct function **out)
{
	return add_function(cfg, image, version, false, NULL, out);
}

int server_deploy(struct config *cfg, const struct imagestore_image *image,
		  struct function **out, char *why, size_t why_len)
{
	int journal_err = 0;
	int ret = add_function(cfg, image, 0, true, &journal_err, out);
	if (ret && journal_err)
		snprintf(why, why_len,
			 "cannot record the deploy in %s/deployments.jsonl: %s; nothing was deployed",
			 server.opt.state_dir, strerror(-journal_err));
	else if (ret)
		server_full_why(cfg->name, why, why_len);
	return ret;
}

void server_full_why(const char *name, char *out, size_t len)
{
	struct fn_name *nm = server_find_name(name, strlen(name));
	if (nm && atomic_load(&nm->n_versions) - nm->first + 1 >= MAX_VERSIONS)
		snprintf(out, len, "function %s has %u versions, the most a name keeps: thaw rm %s frees them",
			 name, MAX_VERSIONS, name);
	else if (!nm && atomic_load(&server.n_names) >= MAX_NAMES)
		snprintf(out, len, "the daemon holds %u function names, the most it keeps (removed ones count until it restarts)",
			 MAX_NAMES);
	else
		snprintf(out, len, "the daemon holds %u versions, the most it keeps (those of removed functions count until it restarts)",
			 MAX_FUNCTIONS);
}

int server_add_placeholder(const char *name, const char *dir, const char *why,
			   unsigned version, struct function **out)
{
	struct config cfg;
	config_defaults(&cfg);
	cfg.name = xstrdup(name);
	cfg.handler = xstrdup("");
	cfg.dir = xstrdup(dir ? dir : "");
	cfg.snapshot = false;
	struct function *fn;
	int ret = server_add_function(&cfg, NULL, version, &fn);
	if (ret) {
		config_free(&cfg);
		return ret;
	}
	fn->broken = true;
	free(fn->changes);
	fn->changes = xstrdup("[]");
	function_set_failed(fn, why);
	*out = fn;
	return 0;
}

int server_load_functions_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		int err = -errno;
		pr_perror("--functions %s", dir);
		return err;
	}
	int loaded = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[PATH_MAX], err[512];
		snprintf(path, sizeof(path), "%s/%s/fc.yaml", dir, e->d_name);
		if (access(path, F_OK) != 0)
			continue;
		struct config cfg;
		if (config_load(path, &cfg, err, sizeof(err))) {
			pr_err("%s", err);
			continue;
		}
		if (server_find_name(cfg.name, strlen(cfg.name))) {
			pr_err("%s: a function named %s is loaded already", path, cfg.name);
			config_free(&cfg);
			continue;
		}
		if (server_add_function(&cfg, NULL, 0, NULL)) {
			char why[200];
			server_full_why(cfg.name, why, sizeof(why));
			pr_err("%s: %s", path, why);
			config_free(&cfg);
			continue;
		}
		loaded++;
	}
	closedir(d);
	return loaded;
}

void function_set_failed(struct function *fn, const char *msg)
{
	pthread_mutex_lock(&fn->lock);
	snprintf(fn->init_error, sizeof(fn->init_error), "%s", msg);
	pthread_mutex_unlock(&fn->lock);
	/* a function with a working instance elsewhere stays ready */
	int ready = atomic_load(&fn->metrics.instances[INST_IDLE]) +
		    atomic_load(&fn->metrics.instances[INST_BUSY]);
	if (ready)
		return;
	atomic_store(&fn->state, FN_FAILED);
	/* a version that never was ready: a restart should know it failed */
	pthread_mutex_lock(&server.registry_lock);
	bool note = atomic_load(&fn->journaled) && !fn->promoted && !fn->fail_journaled;
	fn->fail_journaled = true;
	pthread_mutex_unlock(&server.registry_lock);
	if (note)
		journal_failed(fn->cfg.name, fn->version, msg);
}

void function_error(struct function *fn, char *out, size_t len)
{
	pthread_mutex_lock(&fn->lock);
	snprintf(out, len, "%s", fn->init_error[0] ? fn->init_error : "no instance available");
	pthread_mutex_unlock(&fn->lock);
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
	if (!server.opt.snapshot_dir) {
		uint32_t h = 2166136261u; /* FNV-1a of the state dir */
		for (const char *p = server.opt.state_dir; *p; p++)
			h = (h ^ (unsigned char)*p) * 16777619u;
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
	pr_info("snapshots on: images in %s", server.opt.snapshot_dir);
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

static void wake_shards(void)
{
	for (unsigned i = 0; i < server.n_shards; i++) {
		uint64_t one = 1;
		if (write(server.shards[i]->wake_fd, &one, sizeof(one)) < 0)
			pr_perror("wake");
	}
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
	wake_shards();
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

int server_run(void)
{
	struct server_options *o = &server.opt;
	server.start_ns = now_ns();
	int ret = mkdir_p(o->state_dir, 0700);
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
	fnlog_setup();
	probe_snapshots();
	reslimit_init();
	/* restores mostly wait for criu: a burst of them should not queue
	 * behind two workers (16 at once measured 8 rounds deep) */
	if ((ret = jobs_start(8)))
		return ret;
	raise_fd_limit();
	lower_oom_score();
	signal(SIGPIPE, SIG_IGN);
	if (o->functions_dir) {
		int n = server_load_functions_dir(o->functions_dir);
		if (n < 0)
			return n;
		pr_info("loaded %d function(s) from %s", n, o->functions_dir);
	}
	int replayed = journal_replay();
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
	server.n_shards = o->threads;
	for (unsigned i = 0; i < server.n_shards; i++) {
		server.shards[i] = xcalloc(1, sizeof(struct shard));
		if ((ret = shard_init(server.shards[i], i)))
			return ret;
	}
	for (unsigned i = 0; i < server.n_shards; i++)
		pthread_create(&server.shards[i]->thread, NULL, shard_main, server.shards[i]);
	pr_info("listening on %s:%u with %u loop(s), state in %s", o->listen, o->port,
		server.n_shards, o->state_dir);
	int sig;
	sigwait(&stop, &sig);
	drain(&stop);
	atomic_store(&server.stopping, true);
	wake_shards();
	for (unsigned i = 0; i < server.n_shards; i++)
		pthread_join(server.shards[i]->thread, NULL);
	/* restores still under way end here: their done() kills the copies */
	jobs_stop();
	for (unsigned i = 0; i < server.n_shards; i++) {
		jobs_complete(server.shards[i]);
		shard_fini(server.shards[i]);
	}
	reslimit_fini();
	return 0;
}
