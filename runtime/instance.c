#define LOG_PREFIX "instance: "
#include "instance.h"
#include "channel.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "netns.h"
#include "reslimit.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* No mount namespace: a restored copy then has no mount tree for CRIU to
 * rebuild, which is a third of a small restore (docs/criu.md: 5.7 vs 9.0 ms
 * to the first response). It isolated nothing that matters here: instances
 * mount nothing, and a root instance could leave one anyway. */
int instance_clone_flags = CLONE_NEWPID | CLONE_NEWIPC;

static bool drop_user;
static uid_t run_uid;
static gid_t run_gid;
static const char *run_cwd;

void instance_set_user(uid_t uid, gid_t gid, const char *cwd)
{
	drop_user = true;
	run_uid = uid;
	run_gid = gid;
	run_cwd = cwd;
}

static char **build_env(const struct config *cfg, const char *handler)
{
	size_t n = 0, cap = cfg->n_env + 16;
	char **env = xcalloc(cap, sizeof(char *));
	static const char *const keep[] = { "PATH", "HOME", "LANG", "TZ", "LD_LIBRARY_PATH",
					    "ASAN_OPTIONS", "UBSAN_OPTIONS", NULL };
	for (const char *const *k = keep; *k; k++) {
		const char *v = getenv(*k);
		if (v)
			env[n++] = xasprintf("%s=%s", *k, v);
	}
	env[n++] = xasprintf("THAW_FUNCTION_NAME=%s", cfg->name);
	env[n++] = xasprintf("THAW_FUNCTION_DIR=%s", cfg->dir);
	env[n++] = xasprintf("THAW_HANDLER=%s", handler);
	env[n++] = xasprintf("THAW_INSTANCE_CONCURRENCY=%u", cfg->instance_concurrency);
	env[n++] = xasprintf("FC_FUNCTION_NAME=%s", cfg->name);
	env[n++] = xasprintf("FC_FUNCTION_MEMORY_SIZE=%u", cfg->memory_mb);
	env[n++] = xasprintf("FC_FUNCTION_TIMEOUT=%u", cfg->timeout_s);
	if (cfg->custom) {
		/* Function Compute's custom-runtime variables */
		env[n++] = xasprintf("FC_SERVER_PORT=%u", cfg->port);
		env[n++] = xasprintf("FC_CUSTOM_LISTEN_PORT=%u", cfg->port);
		env[n++] = xasprintf("FC_RUNTIME=custom");
		env[n++] = xasprintf("FC_FUNC_CODE_PATH=%s", cfg->dir);
		env[n++] = xasprintf("FC_INSTANCE_CONCURRENCY=%u", cfg->instance_concurrency);
	}
	for (size_t i = 0; i < cfg->n_env && n + 1 < cap; i++)
		env[n++] = xasprintf("%s=%s", cfg->env[i].key, cfg->env[i].value);
	env[n] = NULL;
	return env;
}

static void free_env(char **env)
{
	for (char **e = env; *e; e++)
		free(*e);
	free(env);
}

static uint64_t inode_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* In the child: PID 1 of the new pid namespace. Only async-signal-safe calls.
 * A custom runtime (argv set) gets its own network namespace with loopback
 * up, works in its function folder, has no channel and runs argv. */
static void child(int chan, int log_w, const char *host, char **env, uint64_t data_limit,
		  char **argv_custom, const char *dir)
{
	setsid();
	if (argv_custom && (netns_lo_up() || chdir(dir)))
		_exit(125);
	/* --instance-user: CRIU dumps an unprivileged task only with a /proc of
	 * its own pid namespace, so mount one in its own mount namespace; then
	 * groups, gid, uid by raw syscalls (glibc's wrappers would signal
	 * threads this child of a multi-threaded daemon does not have) */
	if (drop_user &&
	    (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	     mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) ||
	     chdir(run_cwd) || syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setgid, run_gid) ||
	     syscall(SYS_setuid, run_uid)))
		_exit(126);
	if (data_limit) {
		struct rlimit r = { data_limit, data_limit };
		setrlimit(RLIMIT_DATA, &r);
	}
	int null = open("/dev/null", O_RDONLY);
	if (null < 0 || dup2(null, 0) < 0 || dup2(log_w, 1) < 0 || dup2(log_w, 2) < 0 ||
	    (!argv_custom && dup2(chan, CHANNEL_FD) < 0))
		_exit(127);
	/* no stray fd may reach the instance: CRIU refuses to dump them */
	syscall(SYS_close_range, argv_custom ? 3 : CHANNEL_FD + 1, ~0U, 0);
	if (argv_custom) {
		execvpe(argv_custom[0], argv_custom, env);
		_exit(127);
	}
	char *argv[] = { (char *)host, NULL };
	execve(host, argv, env);
	_exit(127);
}

int instance_cancel(const struct instance_proc *p, uint64_t id)
{
	siginfo_t si = { 0 };
	si.si_signo = CHANNEL_CANCEL_SIGNAL;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_ptr = (void *)(uintptr_t)id;
	/* by pidfd: a reaped instance's pid may be another process's by now */
	if (p->pidfd < 0 ||
	    syscall(SYS_pidfd_send_signal, p->pidfd, CHANNEL_CANCEL_SIGNAL, &si, 0) < 0)
		return p->pidfd < 0 ? -EBADF : -errno;
	return 0;
}

int instance_fds_new(int sv[2], int lp[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		pr_perror("socketpair");
		return -errno;
	}
	if (pipe2(lp, O_CLOEXEC) < 0) {
		int err = -errno;
		pr_perror("pipe");
		close(sv[0]);
		close(sv[1]);
		return err;
	}
	return 0;
}

void instance_proc_adopt(struct instance_proc *out, pid_t pid, int pidfd, const int sv[2],
			 const int lp[2])
{
	out->pid = pid;
	out->pidfd = pidfd;
	out->channel_fd = sv[0];
	out->log_fd = lp[0];
	out->channel_ino = inode_of(sv[1]);
	out->log_ino = inode_of(lp[1]);
	close(sv[1]);
	close(lp[1]);
}

int instance_spawn(const char *host_path, const struct config *cfg, struct instance_proc *out)
{
	int sv[2] = { -1, -1 }, lp[2] = { -1, -1 }, ret;
	*out = (struct instance_proc){ .pid = 0, .pidfd = -1, .channel_fd = -1, .log_fd = -1 };
	char *handler = cfg->handler[0] == '/' ? xstrdup(cfg->handler)
					       : xasprintf("%s/%s", cfg->dir, cfg->handler);
	char **env = build_env(cfg, handler);
	/* a custom runtime: command + args, in a network namespace of its own */
	char **argv = NULL;
	uint64_t netns = 0;
	if (cfg->custom) {
		argv = xcalloc(cfg->n_command + cfg->n_args + 1, sizeof(char *));
		memcpy(argv, cfg->command, cfg->n_command * sizeof(char *));
		if (cfg->n_args)
			memcpy(argv + cfg->n_command, cfg->args, cfg->n_args * sizeof(char *));
		netns = CLONE_NEWNET;
	}
	if ((ret = instance_fds_new(sv, lp)))
		goto free_env;
	int pidfd = -1;
	struct clone_args args = {
		.flags = (uint64_t)(instance_clone_flags | (drop_user ? CLONE_NEWNS : 0)) | CLONE_PIDFD |
			 netns,
		.pidfd = (uint64_t)(uintptr_t)&pidfd,
		.exit_signal = SIGCHLD,
	};
	long pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		ret = -errno;
		pr_perror("clone3 of %s (namespaces need root)", host_path);
		goto close_lp;
	}
	if (pid == 0)
		child(sv[1], lp[1], host_path, env,
		      reslimit_use_rlimit() ? (uint64_t)cfg->memory_mb << 20 : 0, argv, cfg->dir);
	instance_proc_adopt(out, (pid_t)pid, pidfd, sv, lp);
	if (argv) { /* no channel: the daemon speaks HTTP to it (custom.h) */
		close(out->channel_fd);
		out->channel_fd = -1;
		out->channel_ino = 0;
	}
	free(argv);
	free_env(env);
	free(handler);
	return 0;
close_lp:
	close(lp[0]);
	close(lp[1]);
	close(sv[0]);
	close(sv[1]);
free_env:
	free(argv);
	free_env(env);
	free(handler);
	return ret;
}

void instance_destroy(struct instance_proc *p)
{
	if (p->pid > 0) {
		if (p->pidfd >= 0)
			syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
		else
			kill(p->pid, SIGKILL);
		while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
			;
		p->pid = 0;
	}
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->channel_fd >= 0)
		close(p->channel_fd);
	if (p->log_fd >= 0)
		close(p->log_fd);
	p->pidfd = p->channel_fd = p->log_fd = -1;
}
