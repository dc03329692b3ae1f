#define LOG_PREFIX "subproc: "
#include "proc/subproc.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Appends to the output, keeping the newest SUBPROC_OUT_MAX bytes. */
static void keep_output(struct subproc_result *res, const char *data, size_t n)
{
	if (!res->out)
		res->out = xmalloc(SUBPROC_OUT_MAX + 1);
	if (n > SUBPROC_OUT_MAX) {
		data += n - SUBPROC_OUT_MAX;
		n = SUBPROC_OUT_MAX;
	}
	if (res->out_len + n > SUBPROC_OUT_MAX) {
		size_t drop = res->out_len + n - SUBPROC_OUT_MAX;
		memmove(res->out, res->out + drop, res->out_len - drop);
		res->out_len -= drop;
	}
	memcpy(res->out + res->out_len, data, n);
	res->out_len += n;
	res->out[res->out_len] = '\0';
}

/* Reads what the pipe has; returns 0 on EOF, 1 when it may have more. */
static int drain(int fd, struct subproc_result *res)
{
	char chunk[8192];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n > 0) {
			keep_output(res, chunk, (size_t)n);
			continue;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		return 1; /* EAGAIN */
	}
}

/* The child's fd table, built in the order that survives every overlap of
 * source and target numbers: stage each source above every fd involved,
 * then stdout/stderr, then the targets, then close the rest. */
static int build_actions(posix_spawn_file_actions_t *fa, int out_w, const struct subproc_fd *fds,
			 unsigned n_fds)
{
	int top = out_w > 2 ? out_w : 2, r = 0;
	for (unsigned i = 0; i < n_fds; i++) {
		if (fds[i].target < 3 || fds[i].fd < 0)
			return -EINVAL;
		if (fds[i].fd > top)
			top = fds[i].fd;
		if (fds[i].target > top)
			top = fds[i].target;
	}
	int stage = top + 1, max_target = 2;
	for (unsigned i = 0; i < n_fds && !r; i++)
		r = posix_spawn_file_actions_adddup2(fa, fds[i].fd, stage + (int)i);
	if (!r)
		r = posix_spawn_file_actions_adddup2(fa, out_w, 1);
	if (!r)
		r = posix_spawn_file_actions_adddup2(fa, out_w, 2);
	for (unsigned i = 0; i < n_fds && !r; i++) {
		r = posix_spawn_file_actions_adddup2(fa, stage + (int)i, fds[i].target);
		if (fds[i].target > max_target)
			max_target = fds[i].target;
	}
	if (!r)
		r = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
	if (!r)
		r = posix_spawn_file_actions_addclosefrom_np(fa, max_target + 1);
	return -r;
}

/* The child of spawn_in, on its own stack, sharing the caller's memory
 * (the caller is suspended until it execs or exits): only raw system calls
 * and writes into its own struct. */
struct joined_child {
	char *const *argv;
	int out_w;
	const struct subproc_fd *fds;
	unsigned n_fds;
	const struct subproc_in *in;
	int err; /* errno of the step that failed before exec, 0 if none */
};

static int join_one(const char *dir)
{
	char path[PATH_MAX];
	size_t n = strlen(dir);
	if (n + sizeof("/cgroup.procs") > sizeof(path))
		return ENAMETOOLONG;
	memcpy(path, dir, n);
	memcpy(path + n, "/cgroup.procs", sizeof("/cgroup.procs"));
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int err = write(fd, "0", 1) == 1 ? 0 : errno ? errno : EIO;
	close(fd);
	return err;
}

static int joined_child_main(void *arg)
{
	struct joined_child *c = arg;
	for (const char *const *g = c->in->join; g && *g; g++)
		if ((c->err = join_one(*g)))
			_exit(127);
	if (c->in->enter && (c->err = c->in->enter(c->in->arg)))
		_exit(127);
	/* the daemon's handlers and mask are not criu's (posix_spawn's
	 * SETSIGDEF and SETSIGMASK); the table is this process's own copy */
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL); /* glibc's own signals: EINVAL, fine */
	/* the fd table in the order of build_actions */
	int top = c->out_w > 2 ? c->out_w : 2, max_target = 2;
	for (unsigned i = 0; i < c->n_fds; i++) {
		if (c->fds[i].fd > top)
			top = c->fds[i].fd;
		if (c->fds[i].target > top)
			top = c->fds[i].target;
	}
	for (unsigned i = 0; i < c->n_fds; i++)
		if (dup2(c->fds[i].fd, top + 1 + (int)i) < 0)
			goto fail;
	if (dup2(c->out_w, 1) < 0 || dup2(c->out_w, 2) < 0)
		goto fail;
	for (unsigned i = 0; i < c->n_fds; i++) {
		if (dup2(top + 1 + (int)i, c->fds[i].target) < 0)
			goto fail;
		if (c->fds[i].target > max_target)
			max_target = c->fds[i].target;
	}
	int null = open("/dev/null", O_RDONLY);
	if (null < 0 || (null != 0 && dup2(null, 0) < 0))
		goto fail;
	syscall(SYS_close_range, (unsigned)max_target + 1, ~0U, 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(c->argv[0], c->argv, environ);
fail:
	c->err = errno ? errno : EIO;
	_exit(127);
}

/* posix_spawn with the steps of in before the exec: *pid, or -errno (the
 * child, if one ran, reaped). */
static int spawn_in(char *const argv[], int out_w, const struct subproc_fd *fds,
		    unsigned n_fds, const struct subproc_in *in, pid_t *pid)
{
	for (unsigned i = 0; i < n_fds; i++)
		if (fds[i].target < 3 || fds[i].fd < 0)
			return -EINVAL;
	enum { STACK = 64 << 10 };
	char *stack = xmalloc(STACK);
	struct joined_child c = { argv, out_w, fds, n_fds, in, 0 };
	sigset_t all, old;
	sigfillset(&all);
	/* no handler of ours may run on the child's stack before it resets them */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t p = clone(joined_child_main, stack + STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
	int err = p < 0 ? errno : 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	free(stack);
	if (p < 0)
		return -err;
	if (c.err) { /* it never ran argv[0] */
		int status;
		while (waitpid(p, &status, 0) < 0 && errno == EINTR)
			;
		return -c.err;
	}
	*pid = p;
	return 0;
}

static void kill_and_reap(pid_t pid, int *status)
{
	kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

int subproc_run(char *const argv[], const struct subproc_fd *fds, unsigned n_fds, int timeout_ms,
	      struct subproc_result *res)
{
	return subproc_run_in(argv, fds, n_fds, NULL, timeout_ms, res);
}

int subproc_start(char *const argv[], const struct subproc_fd *fds, unsigned n_fds,
		  const struct subproc_in *in, struct subproc *sp)
{
	int out[2], ret;
	*sp = (struct subproc){ .pid = -1, .pidfd = -1, .out_fd = -1, .start_ms = now_ms() };
	if (pipe2(out, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	ret = build_actions(&fa, out[1], fds, n_fds);
	if (ret) {
		pr_err("file actions for %s: %s", argv[0], strerror(-ret));
		goto destroy;
	}
	/* the daemon ignores SIGPIPE and may block signals; the child must not */
	sigset_t all, none;
	sigfillset(&all);
	sigemptyset(&none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

	pid_t pid;
	bool special = in && ((in->join && in->join[0]) || in->enter);
	if (special)
		ret = spawn_in(argv, out[1], fds, n_fds, in, &pid);
	else
		ret = -posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
	if (ret) {
		pr_err("cannot run %s%s: %s", argv[0], special ? " where it belongs" : "",
		       strerror(-ret));
		goto destroy;
	}
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		ret = -errno;
		pr_perror("pidfd_open(%d) for %s", (int)pid, argv[0]);
		int status;
		kill_and_reap(pid, &status);
		goto destroy;
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	sp->pid = pid;
	sp->pidfd = pidfd;
	sp->out_fd = out[0];
	out[0] = -1;
	snprintf(sp->name, sizeof(sp->name), "%s", argv[0]);
destroy:
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	if (out[0] >= 0)
		close(out[0]);
	return ret;
}

int subproc_wait(struct subproc *sp, int timeout_ms, struct subproc_result *res)
{
	int ret = 0;
	*res = (struct subproc_result){ .status = -1 };
	/* Wait for the exit, not for EOF: something the child started may
	 * keep the pipe open after it is gone. */
	double deadline = now_ms() + timeout_ms;
	int exited = 0, open_out = 1;
	while (!exited) {
		double left = deadline - now_ms();
		if (left <= 0) {
			pr_err("%s ran past %d ms; killed", sp->name, timeout_ms);
			kill_and_reap(sp->pid, &res->status);
			ret = -ETIMEDOUT;
			goto done;
		}
		struct pollfd pfd[2] = { { .fd = sp->pidfd, .events = POLLIN },
					 { .fd = open_out ? sp->out_fd : -1, .events = POLLIN } };
		int n = poll(pfd, 2, (int)left + 1);
		if (n < 0 && errno != EINTR) {
			ret = -errno;
			pr_perror("poll on %s", sp->name);
			kill_and_reap(sp->pid, &res->status);
			goto done;
		}
		if (n > 0 && pfd[1].revents)
			open_out = drain(sp->out_fd, res);
		if (n > 0 && pfd[0].revents)
			exited = 1;
	}
	if (open_out)
		drain(sp->out_fd, res);
	while (waitpid(sp->pid, &res->status, 0) < 0) {
		if (errno == EINTR)
			continue;
		ret = -errno;
		pr_perror("waitpid for %s (does someone else reap our children?)", sp->name);
		goto done;
	}
	ret = WIFEXITED(res->status) && WEXITSTATUS(res->status) == 0 ? 0 : -EIO;
done:
	res->ms = now_ms() - sp->start_ms;
	close(sp->pidfd);
	close(sp->out_fd);
	*sp = (struct subproc){ .pid = -1, .pidfd = -1, .out_fd = -1 };
	return ret;
}

int subproc_run_in(char *const argv[], const struct subproc_fd *fds, unsigned n_fds,
		   const struct subproc_in *in, int timeout_ms, struct subproc_result *res)
{
	struct subproc sp;
	int ret = subproc_start(argv, fds, n_fds, in, &sp);
	if (ret) {
		*res = (struct subproc_result){ .status = -1 };
		return ret;
	}
	return subproc_wait(&sp, timeout_ms, res);
}

void subproc_log_failure(const char *what, int ret, const struct subproc_result *res)
{
	const char *out = res->out ? res->out : "";
	size_t n = strlen(out);
	const char *tail = n > 2000 ? out + n - 2000 : out;
	char how[64];
	if (ret == -EIO && WIFSIGNALED(res->status))
		snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(res->status));
	else if (ret == -EIO)
		snprintf(how, sizeof(how), "exit status %d", WEXITSTATUS(res->status));
	else
		snprintf(how, sizeof(how), "%s", strerror(-ret));
	pr_err("%s failed (%s); its output ends:\n%s", what, how, tail);
}

void subproc_last_line(const struct subproc_result *res, const char *skip, char *line, size_t len)
{
	if (!len)
		return;
	line[0] = '\0';
	if (!res->out)
		return;
	const char *end = res->out + res->out_len;
	while (end > res->out) {
		while (end > res->out && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
			end--;
		const char *start = end;
		while (start > res->out && start[-1] != '\n')
			start--;
		size_t n = (size_t)(end - start);
		if (n >= len)
			n = len - 1;
		memcpy(line, start, n);
		line[n] = '\0';
		if (n && !(skip && strstr(line, skip)))
			return;
		line[0] = '\0';
		end = start;
	}
}

void subproc_result_fini(struct subproc_result *res)
{
	free(res->out);
	res->out = NULL;
	res->out_len = 0;
}
