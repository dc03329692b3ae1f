#define LOG_PREFIX "scratch: "
#include "proc/scratch.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const tops[] = { "/tmp", "/dev/shm" };

/* What the children do, prepared here: they may not allocate, and a
 * vfork-style child shares this memory, so a plan is never changed once
 * published: scratch_keep publishes a new one, and the old stays until the
 * next scratch_configure (at most SCRATCH_MAX_KEEP of them). */
struct plan {
	struct plan *older; /* the one it replaced, freed by scratch_configure */
	char opts[64];
	unsigned n_keep;
	char keep[SCRATCH_MAX_KEEP][PATH_MAX];
	char cwd[PATH_MAX];
};
static struct plan *_Atomic plan;
static _Atomic unsigned generation;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char real_tops[2][PATH_MAX];

/* path lies strictly under top (a folder, no trailing slash). */
static bool under(const char *path, const char *top)
{
	size_t n = strlen(top);
	return !strncmp(path, top, n) && path[n] == '/';
}

/* Whether p binds back path (absolute, resolved): it lies under /tmp or
 * /dev/shm and in or under a kept folder. 0: it does; 1: it need not (not
 * under those); -1: it does not. */
static int covers(const struct plan *p, const char *path)
{
	if (!under(path, real_tops[0]) && !under(path, real_tops[1]))
		return 1;
	for (unsigned i = 0; i < p->n_keep; i++)
		if (!strcmp(path, p->keep[i]) || under(path, p->keep[i]))
			return 0;
	return -1;
}

/* Adds path to p (not published): kept folders inside it go. */
static void keep_one(struct plan *p, const char *path)
{
	for (int t = 0; t < 2; t++)
		if (!strcmp(path, real_tops[t])) {
			pr_warn("%s is %s itself: it cannot be bound back, instances get a fresh one",
				path, tops[t]);
			return;
		}
	if (covers(p, path) >= 0)
		return;
	unsigned k = 0;
	for (unsigned i = 0; i < p->n_keep; i++)
		if (!under(p->keep[i], path))
			memmove(p->keep[k++], p->keep[i], PATH_MAX);
	p->n_keep = k;
	if (p->n_keep == SCRATCH_MAX_KEEP) {
		pr_warn("%s: more than %d folders to bind back; left out", path, SCRATCH_MAX_KEEP);
		return;
	}
	snprintf(p->keep[p->n_keep++], PATH_MAX, "%s", path);
}

/* path resolved, or as written when it is not there yet (it is taken at
 * each start, when it may be); NULL when neither (relative). Freed by the
 * caller. */
static char *resolved(const char *path)
{
	char *r = realpath(path, NULL);
	return r ? r : path[0] == '/' ? strdup(path) : NULL;
}

int scratch_configure(unsigned size_mb, const char *const *keep)
{
	/* before any instance starts: no child reads these */
	for (struct plan *q = atomic_exchange(&plan, NULL), *o; q; q = o) {
		o = q->older;
		free(q);
	}
	atomic_fetch_add(&generation, 1); /* namespaces made ahead are stale */
	if (!size_mb)
		return 0;
	for (int t = 0; t < 2; t++)
		if (!realpath(tops[t], real_tops[t])) {
			int err = -errno;
			pr_warn("%s: %s; instances share the daemon's /tmp and /dev/shm", tops[t],
				strerror(errno));
			return err;
		}
	struct plan *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; keep && keep[i]; i++) {
		char *r = resolved(keep[i]);
		if (r)
			keep_one(p, r);
		free(r);
	}
	if (!getcwd(p->cwd, sizeof(p->cwd)))
		p->cwd[0] = '\0';
	snprintf(p->opts, sizeof(p->opts), "mode=1777,size=%um", size_mb);
	/* try it once, so that a place that forbids it (no CAP_SYS_ADMIN, a
	 * seccomp or LSM refusing mounts) says so here, not in every start */
	atomic_store(&plan, p);
	pid_t pid = fork();
	if (pid == 0)
		_exit(scratch_enter(NULL));
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int err = pid < 0 ? errno : WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
	if (err) {
		atomic_store(&plan, NULL);
		free(p);
		pr_warn("private scratch off: a mount namespace with its own /tmp and /dev/shm: %s; "
			"instances share the daemon's", strerror(err));
		return -err;
	}
	return 0;
}

bool scratch_on(void)
{
	return atomic_load(&plan) != NULL;
}

unsigned scratch_generation(void)
{
	return atomic_load(&generation);
}

void scratch_keep(const char *path)
{
	struct plan *old = atomic_load(&plan);
	char *r = old && path ? resolved(path) : NULL;
	if (!r)
		return;
	pthread_mutex_lock(&lock);
	old = atomic_load(&plan);
	if (covers(old, r) < 0) {
		struct plan *p = malloc(sizeof(*p));
		if (p) {
			memcpy(p, old, sizeof(*p));
			p->older = old;
			keep_one(p, r);
			atomic_store(&plan, p);
			atomic_fetch_add(&generation, 1);
			pr_info("instances see %s too (bound back into their /tmp or /dev/shm)", r);
		}
	}
	pthread_mutex_unlock(&lock);
	free(r);
}

/* mkdir -p, in a child: no allocation. */
static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
		return ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return errno;
		if (!c)
			return 0;
		*p = c;
	}
}

/* An empty file to mount a kept file on, and its folders. */
static int mkfile_p(const char *path)
{
	char dir[PATH_MAX];
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] != '/')
		n--;
	if (n >= sizeof(dir))
		return ENAMETOOLONG;
	memcpy(dir, path, n);
	dir[n > 1 ? n - 1 : 1] = '\0';
	int err = mkdir_p(dir);
	if (err)
		return err;
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

int scratch_setup(void)
{
	const struct plan *p = atomic_load(&plan);
	int fds[SCRATCH_MAX_KEEP], err = 0;
	unsigned n = 0;
	if (!p)
		return EINVAL;
	/* nothing mounted here may reach the daemon's namespace */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return errno;
	/* the kept folders, taken before the tmpfs hide them (one removed
	 * since the start is left out) */
	for (; n < p->n_keep; n++) {
		fds[n] = open_tree(AT_FDCWD, p->keep[n],
				   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
		if (fds[n] < 0 && errno != ENOENT) {
			err = errno;
			goto out;
		}
	}
	for (int t = 0; t < 2; t++)
		if (mount("thaw-scratch", tops[t], "tmpfs", MS_NOSUID | MS_NODEV, p->opts)) {
			err = errno;
			goto out;
		}
	for (unsigned i = 0; i < n; i++) {
		struct stat st;
		if (fds[i] < 0 || fstat(fds[i], &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			if ((err = mkdir_p(p->keep[i])))
				goto out;
		} else if ((err = mkfile_p(p->keep[i]))) {
			goto out;
		}
		if (move_mount(fds[i], "", AT_FDCWD, p->keep[i], MOVE_MOUNT_F_EMPTY_PATH)) {
			err = errno;
			goto out;
		}
	}
	/* the working folder by its path again: kept, or the fresh /tmp (or
	 * the root, when it went away) */
	if (p->cwd[0] && chdir(p->cwd) && chdir("/"))
		err = errno;
out:
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return err;
}

int scratch_enter(void *arg)
{
	(void)arg;
	if (unshare(CLONE_NEWNS))
		return errno;
	return scratch_setup();
}

int scratch_join(void *arg)
{
	const struct plan *p = atomic_load(&plan);
	if (setns(*(int *)arg, CLONE_NEWNS))
		return errno;
	/* setns put us at its root; the working folder again where it is
	 * there (as scratch_setup does) */
	if (p && p->cwd[0] && chdir(p->cwd) && chdir("/"))
		return errno;
	return 0;
}

/* Whether st lies on one of the two scratch mounts (devices). */
static bool on_scratch(const struct stat *st, const dev_t dev[2])
{
	return st->st_dev == dev[0] || st->st_dev == dev[1];
}

/* Looks through /proc/PID/SUB (fd/ or map_files/) for an entry on dev;
 * names the first in what. */
static bool entries_on(pid_t pid, const char *sub, const dev_t dev[2], char *what, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, sub);
	DIR *d = opendir(path);
	if (!d)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0))
			continue;
		if ((found = on_scratch(&st, dev))) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
			target[n > 0 ? n : 0] = '\0';
			snprintf(what, len, "pid %d %s %s", (int)pid,
				 sub[0] == 'f' ? "keeps open" : "maps", target);
		}
	}
	closedir(d);
	return found;
}

bool scratch_in_use(pid_t root, char *what, size_t len)
{
	char path[64];
	dev_t dev[2];
	for (int t = 0; t < 2; t++) {
		struct stat st;
		snprintf(path, sizeof(path), "/proc/%d/root%s", (int)root, tops[t]);
		if (stat(path, &st))
			return false;
		dev[t] = st.st_dev;
	}
	enum { MAX_PIDS = 4096 };
	pid_t *todo = malloc(MAX_PIDS * sizeof(pid_t));
	if (!todo)
		return false;
	size_t n = 0;
	bool found = false;
	todo[n++] = root;
	while (n && !found) {
		pid_t pid = todo[--n];
		struct stat st;
		snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
		if (!stat(path, &st) && on_scratch(&st, dev)) {
			snprintf(what, len, "pid %d works in its own /tmp or /dev/shm", (int)pid);
			found = true;
			break;
		}
		found = entries_on(pid, "fd", dev, what, len) ||
			entries_on(pid, "map_files", dev, what, len);
		/* its children, thread by thread */
		snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
		DIR *d = opendir(path);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char kids[320], buf[4096];
			snprintf(kids, sizeof(kids), "/proc/%d/task/%s/children", (int)pid, e->d_name);
			int fd = e->d_name[0] == '.' ? -1 : open(kids, O_RDONLY | O_CLOEXEC);
			ssize_t got = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
			if (fd >= 0)
				close(fd);
			buf[got > 0 ? got : 0] = '\0';
			for (char *s = buf, *end; *s && n < MAX_PIDS; s = end) {
				long kid = strtol(s, &end, 10);
				if (end == s)
					break;
				todo[n++] = (pid_t)kid;
			}
		}
		if (d)
			closedir(d);
	}
	free(todo);
	return found;
}
