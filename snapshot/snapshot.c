#define LOG_PREFIX "snapshot: "
#include "snapshot/snapshot.h"
#include "common/log.h"
#include "snapshot/criu_swrk.h"
#include "snapshot/cuda_ckpt.h"
#include "snapshot/manifest.h"
#include "snapshot/snapmem.h"
#include "common/mem.h"
#include "common/fsutil.h"
#include "proc/netns.h"
#include "proc/scratch.h"
#include "proc/subproc.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_TIMEOUT_MS 20000
#define DUMP_TIMEOUT_MS 300000 /* ~1 s per GiB of dirty memory, and margin */
#define RESTORE_TIMEOUT_MS 60000
/* criu prints this on every run here; it is harmless and says nothing */
#define CRIU_NOISE "RLIMIT_NOFILE"
#define PROC_MOUNTPOINT "proc.crtools" /* criu/pie/parasite.c */
#define STALE_PROC_MOUNT_MS 1000
#define CRIU_CGROUP_IMG "cgroup.img"
#ifndef CAP_CHECKPOINT_RESTORE
#define CAP_CHECKPOINT_RESTORE 40
#endif

/* What snapshot_dump records for restores. */
struct fds_file {
	uint64_t channel_ino;
	uint64_t log_ino;
	int mntns; /* the instance had its own mount namespace */
	int netns; /* ...its own network namespace (a custom runtime; no channel) */
	int scratch; /* ...a private-scratch one criu joined: restored in a fresh one */
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const char *criu_path(void)
{
	const char *p = getenv("THAW_CRIU");
	return p && *p ? p : SNAPSHOT_CRIU_DEFAULT;
}

/* Runs criu with argv (argv[0] is replaced by the binary's path); logs the
 * tail of its output on failure. */
static int run_criu_in(const char *what, char **argv, const struct subproc_fd *fds,
		       unsigned n_fds, const struct subproc_in *in, int timeout_ms,
		       struct subproc_result *res)
{
	argv[0] = (char *)criu_path();
	int ret = subproc_run_in(argv, fds, n_fds, in, timeout_ms, res);
	if (ret) {
		char name[32];
		snprintf(name, sizeof(name), "criu %s", what);
		subproc_log_failure(name, ret, res);
	}
	return ret;
}

static void ensure_rundir(void)
{
	if (mkdir(SNAPSHOT_CRIU_RUNDIR, 0700) && errno != EEXIST)
		pr_perror("mkdir %s (criu's kernel-feature cache)", SNAPSHOT_CRIU_RUNDIR);
}

static int privileged(void)
{
	if (geteuid() == 0)
		return 1;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data))
		return 0;
	return !!(data[CAP_CHECKPOINT_RESTORE / 32].effective &
		  (1u << (CAP_CHECKPOINT_RESTORE % 32)));
}

/* Whether criu check failed only on what a container lacks and thaw does
 * not use: ns_last_pid cannot be written because /proc/sys is mounted
 * read-only, as container runtimes mount it (podman, containerd, CRI-O,
 * unless privileged), and /dev/net/tun is absent (CRIU's kernel probe
 * opens it once). CRIU >= 3.15 on kernels >= 5.5 restores pids with
 * clone3(set_tid) and never writes ns_last_pid, and instances hold no tun
 * device, so dump and restore work there: seen in a podman container with
 * the capabilities of the k8s manifests (tests/e2e/test_podman.py). */
static bool only_container_errors(const char *out)
{
	int errors = 0, known = 0;
	for (const char *l = out ? out : ""; *l && errors < 1000;) {
		const char *end = strchr(l, '\n');
		size_t n = end ? (size_t)(end - l) : strlen(l);
		if (!strncmp(l, "Error (", 7)) {
			errors++;
			if ((memmem(l, n, "ns_last_pid", 11) &&
			     memmem(l, n, "Read-only file system", 21)) ||
			    memmem(l, n, "tun: Unable to create tun", 25))
				known++;
		}
		l += n + (end ? 1 : 0);
	}
	return errors > 0 && errors == known;
}

static int probe_uncached(const char *path, char *why, size_t len)
{
	if (access(path, X_OK)) {
		if (errno == ENOENT)
			snprintf(why, len, "snapshots off: criu not found at %s; run make deps",
				 path);
		else
			snprintf(why, len, "snapshots off: cannot run criu at %s: %s", path,
				 strerror(errno));
		return -ENOTSUP;
	}
	if (!privileged()) {
		snprintf(why, len,
			 "snapshots off: not root (CRIU needs root or CAP_CHECKPOINT_RESTORE)");
		return -ENOTSUP;
	}
	ensure_rundir();
	char *argv[] = { NULL, "check", NULL };
	struct subproc_result res;
	int ret = subproc_run((argv[0] = (char *)path, argv), NULL, 0, CHECK_TIMEOUT_MS, &res);
	if (ret == -EIO && only_container_errors(res.out)) {
		pr_info("criu check: /proc/sys is read-only (a container): ns_last_pid "
			"cannot be written, which restores do not need (CRIU gives restored "
			"tasks their pids with clone3's set_tid); snapshots stay on");
		ret = 0;
	}
	if (ret) {
		char line[200];
		subproc_last_line(&res, CRIU_NOISE, line, sizeof(line));
		/* "Does not look good." says nothing: name the last error instead */
		const char *err = res.out ? strstr(res.out, "Error (") : NULL;
		for (const char *e = err; e; e = strstr(e + 1, "Error ("))
			err = e;
		if (err)
			snprintf(line, sizeof(line), "%.*s", (int)strcspn(err, "\n"), err);
		if (!line[0] && ret == -EIO && WIFEXITED(res.status))
			snprintf(line, sizeof(line), "%s exited with status %d, no output", path,
				 WEXITSTATUS(res.status));
		else if (!line[0] && ret == -EIO && WIFSIGNALED(res.status))
			snprintf(line, sizeof(line), "%s killed by signal %d", path,
				 WTERMSIG(res.status));
		else if (!line[0])
			snprintf(line, sizeof(line), "%s", strerror(-ret));
		snprintf(why, len, "snapshots off: criu check failed: %s", line);
		subproc_result_fini(&res);
		return -ENOTSUP;
	}
	subproc_result_fini(&res);
	why[0] = '\0';
	return 0;
}

int snapshot_probe(char *why, size_t len)
{
	/* Cached per criu path: tests switch THAW_CRIU between calls. */
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char cached_path[PATH_MAX], cached_why[256];
	static int cached_ret;
	const char *path = criu_path();

	pthread_mutex_lock(&lock);
	if (strcmp(cached_path, path)) {
		cached_ret = probe_uncached(path, cached_why, sizeof(cached_why));
		snprintf(cached_path, sizeof(cached_path), "%s", path);
	}
	int ret = cached_ret;
	if (len)
		snprintf(why, len, "%s", cached_why);
	pthread_mutex_unlock(&lock);
	return ret;
}

int snapshot_criu_version(char *out, size_t len)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char cached_path[PATH_MAX], cached[64];
	static int cached_ret;
	const char *path = criu_path();

	pthread_mutex_lock(&lock);
	if (strcmp(cached_path, path)) {
		char *argv[] = { (char *)path, "--version", NULL };
		struct subproc_result res;
		cached[0] = '\0';
		cached_ret = subproc_run(argv, NULL, 0, CHECK_TIMEOUT_MS, &res);
		const char *v = res.out ? strstr(res.out, "Version: ") : NULL;
		if (!cached_ret && v)
			snprintf(cached, sizeof(cached), "%.*s", (int)strcspn(v + 9, " \n"), v + 9);
		else if (!cached_ret)
			cached_ret = -EPROTO;
		subproc_result_fini(&res);
		snprintf(cached_path, sizeof(cached_path), "%s", path);
	}
	int ret = cached_ret;
	snprintf(out, len, "%s", cached);
	pthread_mutex_unlock(&lock);
	return ret;
}

static int ns_differs(pid_t pid, const char *ns)
{
	char path[64], self[64];
	struct stat a, b;
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns);
	snprintf(self, sizeof(self), "/proc/self/ns/%s", ns);
	if (stat(path, &a) || stat(self, &b))
		return 0;
	return a.st_ino != b.st_ino || a.st_dev != b.st_dev;
}

static int write_fds_file(const char *dir, const struct fds_file *ff)
{
	char *path = xasprintf("%s/%s", dir, SNAPSHOT_FDS_NAME);
	int ret = 0;
	FILE *f = fopen(path, "we");
	if (!f) {
		ret = -errno;
		pr_perror("create %s", path);
		goto out;
	}
	fprintf(f, "channel_ino %" PRIu64 "\nlog_ino %" PRIu64 "\nmntns %d\nnetns %d\nscratch %d\n",
		ff->channel_ino, ff->log_ino, ff->mntns, ff->netns, ff->scratch);
	if (fclose(f)) {
		ret = -errno;
		pr_perror("write %s", path);
	}
out:
	free(path);
	return ret;
}

static int read_fds_file(const char *dir, struct fds_file *ff)
{
	char *path = xasprintf("%s/%s", dir, SNAPSHOT_FDS_NAME);
	int ret = 0;
	FILE *f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		pr_perror("open %s (not a thaw snapshot?)", path);
		goto out;
	}
	/* absent from snapshots of before custom runtimes, private scratch */
	ff->netns = ff->scratch = 0;
	if (fscanf(f, "channel_ino %" SCNu64 " log_ino %" SCNu64 " mntns %d netns %d scratch %d",
		   &ff->channel_ino, &ff->log_ino, &ff->mntns, &ff->netns, &ff->scratch) < 3 ||
	    (!ff->channel_ino && !ff->netns) || !ff->log_ino) {
		ret = -EBADMSG;
		pr_err("%s: malformed", path);
	}
	fclose(f);
out:
	free(path);
	return ret;
}

/* The plugins, in the order their pre_dump runs (post_restore: reversed). */
static const struct snapshot_plugin *const plugins[] = { &cuda_ckpt_plugin };
#define N_PLUGINS (sizeof(plugins) / sizeof(plugins[0]))

/* Appends note to out ("a; b"). */
static void add_note(char *out, size_t len, const char *note)
{
	size_t n = strlen(out);
	if (*note && n + 3 < len)
		snprintf(out + n, len - n, "%s%s", n ? "; " : "", note);
}

/* Runs every plugin's pre_dump on pid; the names of those that acted go to
 * DIR/thaw-plugins (a line each). 0 or the first -errno. */
static int plugins_pre_dump(pid_t pid, const char *dir, char *notes, size_t len)
{
	char names[256] = "";
	for (size_t i = 0; i < N_PLUGINS; i++) {
		char note[160] = "";
		int ret = plugins[i]->pre_dump(pid, note, sizeof(note));
		if (ret == -ENOTSUP)
			continue;
		if (ret) {
			pr_err("dump: plugin %s: %s", plugins[i]->name, strerror(-ret));
			return ret;
		}
		add_note(notes, len, note);
		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s\n",
			 plugins[i]->name);
	}
	if (!*names)
		return 0;
	char *path = xasprintf("%s/%s", dir, SNAPSHOT_PLUGINS_NAME);
	int ret = 0, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, names, strlen(names)) != (ssize_t)strlen(names))
		ret = errno ? -errno : -EIO;
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}

/* After a restore of dir's snapshot into pid: post_restore of the plugins
 * its dump used, last first. 0 or the first -errno. */
static int plugins_post_restore(pid_t pid, const char *dir, char *notes, size_t len)
{
	char *path = xasprintf("%s/%s", dir, SNAPSHOT_PLUGINS_NAME), names[256];
	ssize_t n = fs_read_text(path, names, sizeof(names));
	free(path);
	if (n < 0)
		return n == -ENOENT ? 0 : (int)n;
	for (size_t i = N_PLUGINS; i-- > 0;) {
		char want[80];
		snprintf(want, sizeof(want), "%s\n", plugins[i]->name);
		if (!strstr(names, want))
			continue;
		char note[160] = "";
		int ret = plugins[i]->post_restore(pid, note, sizeof(note));
		if (ret && ret != -ENOTSUP) {
			pr_err("restore: plugin %s: %s", plugins[i]->name, strerror(-ret));
			return ret;
		}
		add_note(notes, len, note);
	}
	return 0;
}

/* criu's parasite mounts a proc at `proc.crtools` in the task's working
 * directory (its /proc is not of the task's pid namespace) and removes it
 * after; a dump killed in between leaves the folder, and every later dump
 * of a task with that cwd fails (`Can't create a directory (-17)`): seen
 * when a daemon stopped during its first dumps and the next daemon with the
 * same cwd dumped within seconds. One older than the parasite holds it (it
 * makes, mounts, opens and removes it in one step; dumps in one daemon
 * take turns: pool_start.c) is removed, unmounted first where a proc is
 * still on it. */
static void clear_stale_proc_mount(pid_t pid)
{
	char cwd[64], path[PATH_MAX];
	snprintf(cwd, sizeof(cwd), "/proc/%d/cwd", (int)pid);
	int dfd = open(cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	struct stat st;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (fstatat(dfd, PROC_MOUNTPOINT, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
	    (now.tv_sec - st.st_mtim.tv_sec) * 1000 + (now.tv_nsec - st.st_mtim.tv_nsec) / 1000000 >
		    STALE_PROC_MOUNT_MS) {
		snprintf(path, sizeof(path), "%s/" PROC_MOUNTPOINT, cwd);
		if (unlinkat(dfd, PROC_MOUNTPOINT, AT_REMOVEDIR) && errno == EBUSY)
			if (umount2(path, MNT_DETACH) == 0)
				unlinkat(dfd, PROC_MOUNTPOINT, AT_REMOVEDIR);
		if (fstatat(dfd, PROC_MOUNTPOINT, &st, AT_SYMLINK_NOFOLLOW) == 0)
			pr_warn("dump of pid %d: a stale %s in its cwd stays (%s): the dump will fail",
				(int)pid, PROC_MOUNTPOINT, strerror(errno));
		else
			pr_warn("dump of pid %d: removed a stale %s an interrupted dump left in its cwd",
				(int)pid, PROC_MOUNTPOINT);
	}
	close(dfd);
}

int snapshot_dump(const struct instance_proc *p, const char *dir,
		  const struct snapshot_mem_opts *mem, struct snapshot_info *info)
{
	char why[256];
	int ret = snapshot_probe(why, sizeof(why));
	if (ret) {
		pr_err("%s", why);
		return ret;
	}
	*info = (struct snapshot_info){ 0 };
	struct fds_file ff = { .channel_ino = p->channel_ino,
			       .log_ino = p->log_ino,
			       .mntns = !p->scratch && ns_differs(p->pid, "mnt"),
			       .netns = ns_differs(p->pid, "net"),
			       .scratch = p->scratch };
	if (p->pid <= 0 || (!ff.channel_ino && !ff.netns) || !ff.log_ino) {
		pr_err("dump: instance without pid or channel/log inodes");
		return -EINVAL;
	}
	/* a manifest left from an earlier dump into dir must not vouch for
	 * the images this one writes (or half-writes) */
	char *stale = xasprintf("%s/%s", dir, MANIFEST_NAME);
	if (unlink(stale) && errno != ENOENT)
		pr_perror("unlink %s", stale);
	free(stale);
	clear_stale_proc_mount(p->pid);
	char busy[PATH_MAX + 64];
	if (ff.scratch && scratch_in_use(p->pid, busy, sizeof(busy))) {
		pr_err("dump: %s: an instance's own /tmp and /dev/shm are not carried into copies, so "
		       "they could not be restored; close it before the checkpoint (before_checkpoint, "
		       "/pre-freeze) or run thaw serve --scratch-mb 0", busy);
		return -EBUSY;
	}
	if ((ret = plugins_pre_dump(p->pid, dir, info->plugins, sizeof(info->plugins))))
		return ret;
	/* after the plugins: a GPU's state parked in host memory moves too */
	if (mem)
		snapshot_mem_move(p, dir, mem, &info->mem);

	char pid_s[24], unix_s[48], net_s[64];
	snprintf(pid_s, sizeof(pid_s), "%d", (int)p->pid);
	/* the channel's peer is the daemon: external, re-attached at restore */
	snprintf(unix_s, sizeof(unix_s), "unix[%" PRIu64 "]", ff.channel_ino);
	char *argv[24] = { NULL, "dump", "-t", pid_s, "-D", (char *)dir, "-o", "-", "-v2" };
	int argc = 9;
	if (ff.channel_ino) {
		argv[argc++] = "--external";
		argv[argc++] = unix_s;
	}
	if (ff.netns) {
		/* a custom runtime: its namespace is made anew per restore (no
		 * `ip` execs), nothing to lock (no traffic but ours), and the
		 * daemon's connections, closed before the dump, may linger in
		 * the server: they come back closed (--tcp-close at restore) */
		struct stat st;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)p->pid);
		if (stat(path, &st)) {
			ret = -errno;
			pr_perror("stat %s", path);
			return ret;
		}
		snprintf(net_s, sizeof(net_s), "net[%" PRIu64 "]:" CRIU_NETNS_KEY, (uint64_t)st.st_ino);
		argv[argc++] = "--external";
		argv[argc++] = net_s;
		argv[argc++] = "--network-lock";
		argv[argc++] = "skip";
		argv[argc++] = "--tcp-established";
	}
	if (ff.mntns) {
		/* every mount of the instance is a bind of one of ours */
		argv[argc++] = "--external";
		argv[argc++] = "mnt[]";
	}
	argv[argc] = NULL;

	/* private scratch: criu dumps from inside the instance's namespace,
	 * which is then its own and not one to rebuild at restore. It gets
	 * the images folder as an fd: the instance's view of the path is as
	 * old as the instance (the folder may have been made since). */
	int mnt = -1, images = -1;
	struct subproc_in in = { .enter = scratch_join, .arg = &mnt };
	struct subproc_fd images_fd = { -1, CRIU_FD_IMAGES };
	char images_s[32];
	if (ff.scratch) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)p->pid);
		if ((mnt = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
		    (images = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			ret = -errno;
			pr_perror("open %s", mnt < 0 ? path : dir);
			if (mnt >= 0)
				close(mnt);
			return ret;
		}
		images_fd.fd = images;
		snprintf(images_s, sizeof(images_s), "/proc/self/fd/%d", CRIU_FD_IMAGES);
		argv[5] = images_s;
	}
	struct subproc_result res;
	ret = run_criu_in("dump", argv, ff.scratch ? &images_fd : NULL, ff.scratch, ff.scratch ? &in : NULL,
			  DUMP_TIMEOUT_MS, &res);
	if (mnt >= 0) {
		close(mnt);
		close(images);
	}
	if (ret == -EPERM && ff.scratch)
		pr_err("dump: criu cannot enter the instance's mount namespace: setns needs "
		       "CAP_SYS_ADMIN and CAP_SYS_CHROOT (thaw serve --scratch-mb 0 does without)");
	info->dump_ms = res.ms;
	subproc_result_fini(&res);
	if (ret)
		return ret;

	/* restores run with --manage-cgroups=ignore (the copy is born in the
	 * groups criu runs in), yet criu reads this image and starts its
	 * cgroupd helper for it: 1.6 ms of a 7.7 ms restore here. Without it
	 * criu restores as for a task that shared its cgroups. */
	char *cg = xasprintf("%s/%s", dir, CRIU_CGROUP_IMG);
	if (unlink(cg) && errno != ENOENT)
		pr_perror("unlink %s", cg);
	free(cg);
	ret = write_fds_file(dir, &ff);
	if (ret)
		return ret;
	double t0 = now_ms();
	ret = manifest_write(dir, &info->image_bytes, &info->n_files);
	info->manifest_ms = now_ms() - t0;
	return ret;
}

int snapshot_verify(const char *dir, char *why, size_t len)
{
	return manifest_verify(dir, why, len);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

int snapshot_fingerprint(const char *dir, uint64_t *out)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	uint64_t h = 0;
	struct dirent *e;
	/* order-independent sum of per-file hashes: readdir order may vary */
	while ((e = readdir(d))) {
		struct stat st;
		/* what the manifest covers: criu rewrites its stats-* files per run */
		size_t n = strlen(e->d_name);
		bool covered = (n > 4 && !strcmp(e->d_name + n - 4, ".img")) ||
			       !strncmp(e->d_name, SNAPSHOT_MEM_PREFIX, strlen(SNAPSHOT_MEM_PREFIX)) ||
			       !strcmp(e->d_name, SNAPSHOT_FDS_NAME) || !strcmp(e->d_name, MANIFEST_NAME);
		if (!covered || fstatat(dirfd(d), e->d_name, &st, 0) < 0)
			continue;
		uint64_t f = 1469598103934665603ULL;
		for (const char *c = e->d_name; *c; c++)
			f = (f ^ (unsigned char)*c) * 1099511628211ULL;
		f = mix(f, (uint64_t)st.st_size);
		f = mix(f, (uint64_t)st.st_ino);
		f = mix(f, (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec);
		f = mix(f, (uint64_t)st.st_ctim.tv_sec * 1000000000ULL + (uint64_t)st.st_ctim.tv_nsec);
		h += f;
	}
	closedir(d);
	*out = h;
	return 0;
}


static pid_t read_pidfile(const char *path)
{
	char buf[32];
	ssize_t n = fs_read_text(path, buf, sizeof(buf));
	if (n < 0)
		return (pid_t)n;
	long v = strtol(buf, NULL, 10);
	return v > 0 && v < INT_MAX ? (pid_t)v : -EBADMSG;
}

/* The copy pid runs: makes it out's, as instance_spawn would, then the
 * plugins' post-restore step. sv and lp are consumed. */
static int adopt_copy(pid_t pid, int sv[2], int lp[2], const struct fds_file *ff, const char *dir,
		      struct instance_proc *out, struct snapshot_timing *t, double t0)
{
	int ret;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		ret = -errno;
		pr_perror("pidfd_open(%d) of a restored copy", (int)pid);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0); /* our child (--restore-sibling) */
		for (int i = 0; i < 2; i++) {
			close(sv[i]);
			close(lp[i]);
		}
		return ret;
	}
	instance_proc_adopt(out, pid, pidfd, sv, lp);
	out->scratch = ff->scratch;
	if (ff->netns) { /* a custom runtime: HTTP in its namespace, no channel */
		close(out->channel_fd);
		out->channel_fd = -1;
		out->channel_ino = 0;
	}
	char notes[160] = "";
	if ((ret = plugins_post_restore(pid, dir, notes, sizeof(notes)))) {
		instance_destroy(out);
		return ret;
	}
	if (t) {
		snprintf(t->plugins, sizeof(t->plugins), "%s", notes);
		t->total_ms = now_ms() - t0;
	}
	return 0;
}

/* Groups made now with both limits, for a criu that was not born in any:
 * join gets the memory group criu runs in ("" none could be made). */
static void make_groups(struct snapshot_groups *g, const char *join[2])
{
	join[0] = join[1] = NULL;
	if (!g)
		return;
	if (reslimit_prepare(g->memory_mb, g->cpu, &g->groups)) {
		reslimit_release(&g->groups);
		g->groups = (struct reslimit_groups){ 0 };
	}
	join[0] = g->groups.mem[0] ? g->groups.mem : NULL;
}

/* The restore through a criu started ahead (criu_swrk.h). */
static int restore_swrk(struct criu_worker *w, const char *dir, const struct fds_file *ff,
			struct snapshot_groups *g, struct instance_proc *out,
			struct snapshot_timing *t, double t0)
{
	struct criu_swrk_restore rq = { .dir = dir, .channel_ino = ff->channel_ino,
					.log_ino = ff->log_ino, .mntns = ff->mntns,
					.netns = ff->netns, .memory_mb = g ? g->memory_mb : 0 };
	pid_t pid = 0;
	double ms = 0;
	const char *join[2] = { NULL, NULL };
	if (!w->groups.mem[0]) /* born in none: moved into some made now */
		make_groups(g, join);
	int ret = criu_swrk_restore(w, &rq, join, RESTORE_TIMEOUT_MS, &pid, &ms);
	if (!ret && g && w->groups.mem[0]) {
		g->groups = w->groups;
		g->born = true;
	}
	if (t) {
		t->criu_ms = ms;
		t->criu_ahead = 1;
	}
	if (ret) {
		for (int i = 0; i < 2; i++) {
			close(w->sv[i]);
			close(w->lp[i]);
		}
		return ret;
	}
	return adopt_copy(pid, w->sv, w->lp, ff, dir, out, t, t0);
}

int snapshot_restore(const char *dir, struct instance_proc *out, struct snapshot_timing *t)
{
	return snapshot_restore_in(dir, NULL, out, t);
}

int snapshot_restore_in(const char *dir, struct snapshot_groups *g, struct instance_proc *out,
			struct snapshot_timing *t)
{
	if (g) {
		g->groups = (struct reslimit_groups){ 0 };
		g->born = false;
	}
	static unsigned long counter; /* unique pidfile names */
	double t0 = now_ms();
	struct fds_file ff;
	int sv[2] = { -1, -1 }, lp[2] = { -1, -1 }, ret, netns_fd = -1;
	*out = (struct instance_proc){ .pid = 0, .pidfd = -1, .channel_fd = -1, .log_fd = -1 };
	if (t)
		*t = (struct snapshot_timing){ 0 };

	char why[256];
	ret = snapshot_probe(why, sizeof(why));
	if (ret) {
		pr_err("%s", why);
		return ret;
	}
	ret = read_fds_file(dir, &ff);
	if (ret)
		return ret;
	ensure_rundir(); /* the pidfile goes there; cheap if it exists */
	/* a criu started ahead, where one is ready */
	struct criu_worker w;
	if (criu_swrk_take(criu_path(), ff.netns, ff.scratch, &w) == 0)
		return restore_swrk(&w, dir, &ff, g, out, t, t0);
	if ((ret = instance_fds_new(sv, lp)))
		return ret;
	const char *join[2];
	make_groups(g, join);

	char pidfile[PATH_MAX], chan_s[64], log_s[64];
	snprintf(pidfile, sizeof(pidfile), "%s/restore-%d-%lu.pid", SNAPSHOT_CRIU_RUNDIR,
		 (int)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
	unlink(pidfile); /* criu refuses an existing one */
	snprintf(chan_s, sizeof(chan_s), "fd[%d]:socket:[%" PRIu64 "]", CRIU_FD_CHANNEL,
		 ff.channel_ino);
	snprintf(log_s, sizeof(log_s), "fd[%d]:pipe:[%" PRIu64 "]", CRIU_FD_LOG, ff.log_ino);
	/* -d: criu returns once the copy runs; -S (--restore-sibling): the copy
	 * is our child, see snapshot.h. The pid namespace recorded in the image
	 * is created anew for each copy. */
	/* cgroups: criu leaves them alone; it runs in the join groups (its own
	 * or, with join NULL, ours) and the copy it forks is born there */
	char *argv[32] = { NULL, "restore", "-D", (char *)dir, "-o", "-", "-v2", "-d", "-S",
			   "--pidfile", pidfile, "--inherit-fd", log_s, "--manage-cgroups=ignore" };
	int argc = 14;
	struct subproc_fd fds[3] = { { lp[1], CRIU_FD_LOG } };
	unsigned n_fds = 1;
	if (ff.channel_ino) {
		argv[argc++] = "--inherit-fd";
		argv[argc++] = chan_s;
		fds[n_fds++] = (struct subproc_fd){ sv[1], CRIU_FD_CHANNEL };
	}
	char net_s[64];
	if (ff.netns) {
		if ((ret = netns_new(&netns_fd))) {
			pr_err("restore: a network namespace for the copy: %s", strerror(-ret));
			goto close_lp;
		}
		snprintf(net_s, sizeof(net_s), "fd[%d]:" CRIU_NETNS_KEY, CRIU_FD_NETNS);
		argv[argc++] = "--inherit-fd";
		argv[argc++] = net_s;
		argv[argc++] = "--network-lock";
		argv[argc++] = "skip";
		argv[argc++] = "--tcp-close";
		fds[n_fds++] = (struct subproc_fd){ netns_fd, CRIU_FD_NETNS };
	}
	if (ff.mntns) {
		argv[argc++] = "--root";
		argv[argc++] = "/";
		argv[argc++] = "--external";
		argv[argc++] = "mnt[]";
	}
	argv[argc] = NULL;

	struct subproc_result res;
	/* into the memory groups, and into a namespace with fresh scratch */
	struct subproc_in in = { .join = join, .enter = ff.scratch ? scratch_enter : NULL };
	ret = run_criu_in("restore", argv, fds, n_fds, &in, RESTORE_TIMEOUT_MS, &res);
	if (netns_fd >= 0) /* the copy holds it now */
		close(netns_fd);
	netns_fd = -1;
	if (t)
		t->criu_ms = res.ms;
	subproc_result_fini(&res);
	if (ret) {
		unlink(pidfile);
		goto close_lp;
	}
	pid_t pid = read_pidfile(pidfile);
	unlink(pidfile);
	if (pid < 0) {
		ret = pid;
		pr_err("restore: no pid in %s: %s", pidfile, strerror(-ret));
		goto close_lp;
	}
	return adopt_copy(pid, sv, lp, &ff, dir, out, t, t0);
close_lp:
	close(lp[0]);
	close(lp[1]);
	close(sv[0]);
	close(sv[1]);
	return ret;
}
