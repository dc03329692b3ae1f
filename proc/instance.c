#define LOG_PREFIX "instance: "
#include "proc/instance.h"
#include "common/channel.h"
#include "common/config.h"
#include "common/log.h"
#include "common/fnenv.h"
#include "common/fsutil.h"
#include "common/mem.h"
#include "proc/netns.h"
#include "proc/reslimit.h"
#include "proc/scratch.h"

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
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The mount namespace comes with private scratch (scratch.h), one CRIU
 * never rebuilds; one it rebuilds is a third of a small restore
 * (docs/criu.md: 5.7 vs 9.0 ms to the first response). */
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

/* What an instance keeps of the daemon's environment. */
static char **kept_env(void)
{
	static const char *const keep[] = { "PATH", "HOME", "LANG", "TZ", "LD_LIBRARY_PATH",
					    "ASAN_OPTIONS", "UBSAN_OPTIONS" };
	size_t n = 0, k = sizeof(keep) / sizeof(keep[0]);
	char **env = xcalloc(k + 1, sizeof(char *));
	for (size_t i = 0; i < k; i++) {
		const char *v = getenv(keep[i]);
		if (v)
			env[n++] = xasprintf("%s=%s", keep[i], v);
	}
	return env;
}

/* env with the agent (CHANNEL_AGENT_SO beside host_path) first in
 * LD_PRELOAD, before what fc.yaml put there; env itself without it (one log
 * line) when it is not there. Takes env, returns the one to use. */
static char **with_agent(char **env, const char *host_path)
{
	const char *slash = strrchr(host_path, '/');
	char *so = xasprintf("%.*s/%s", slash ? (int)(slash - host_path) : 1,
			     slash ? host_path : ".", CHANNEL_AGENT_SO);
	if (access(so, R_OK)) {
		pr_warn("%s: %s; a custom runtime's memory is copied by CRIU (make builds it)", so,
			strerror(errno));
		free(so);
		return env;
	}
	size_t n = 0;
	while (env[n] && strncmp(env[n], "LD_PRELOAD=", 11))
		n++;
	if (env[n]) { /* the function's own preloads come after */
		char *e = xasprintf("LD_PRELOAD=%s%s%s", so, env[n][11] ? ":" : "", env[n] + 11);
		free(env[n]);
		env[n] = e;
		free(so);
		return env;
	}
	env = xrealloc(env, (n + 2) * sizeof(char *));
	env[n] = xasprintf("LD_PRELOAD=%s", so);
	env[n + 1] = NULL;
	free(so);
	return env;
}

static uint64_t inode_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* In the child: PID 1 of the new pid namespace. Only async-signal-safe calls.
 * A custom runtime (argv set) gets its own network namespace with loopback
 * up, works in its function folder, has no channel and runs argv. */
/* Moves the calling process into the group dir (its cgroup.procs takes
 * "0" for "me"); async-signal-safe. */
static int join_cgroup(const char *dir)
{
	char path[RESLIMIT_PATH_MAX + 16];
	size_t n = strlen(dir);
	if (n + sizeof("/cgroup.procs") > sizeof(path))
		return -1;
	memcpy(path, dir, n);
	memcpy(path + n, "/cgroup.procs", sizeof("/cgroup.procs"));
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	int ok = fd >= 0 && write(fd, "0", 1) == 1;
	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

static void child(int chan, int log_w, const char *host, char **env, uint64_t data_limit,
		  const struct reslimit_groups *join, char **argv_custom, const char *dir)
{
	setsid();
	/* its own /tmp and /dev/shm, before anything could write there */
	if (scratch_on() && scratch_setup())
		_exit(125);
	if (argv_custom && (netns_lo_up() || chdir(dir)))
		_exit(125);
	/* under memorySize and cpu before the host runs: the groups were
	 * made (reslimit_prepare) with the limits written */
	if (join && ((join->mem[0] && join_cgroup(join->mem)) ||
		     (join->cpu[0] && join_cgroup(join->cpu))))
		_exit(125);
	/* the daemon lowered its own OOM score (server.c): an instance is what
	 * the OOM killer should pick, so it takes a high one (raising needs no
	 * privilege; CRIU keeps it in copies) */
	int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (adj >= 0) {
		ssize_t w = write(adj, INSTANCE_OOM_SCORE_ADJ, sizeof(INSTANCE_OOM_SCORE_ADJ) - 1);
		(void)w;
		close(adj);
	}
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
	/* dies with the daemon (kill -9 included) instead of living on under
	 * init with nothing reading its channel; after the credentials change
	 * above, which clears it. The parent is the daemon thread that spawned
	 * it (a loop), which lives as long as the daemon. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
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

/* Whether pid has a handler for sig (SigCgt of /proc/PID/status): the
 * agent's; without one the signal would kill it. */
static bool catches(pid_t pid, int sig)
{
	char path[64], text[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fs_read_text(path, text, sizeof(text));
	const char *c = strstr(text, "SigCgt:");
	return c && (strtoull(c + 7, NULL, 16) >> (sig - 1)) & 1;
}

int instance_agent_populate(const struct instance_proc *p)
{
	if (p->pid <= 0 || !catches(p->pid, CHANNEL_MEM_SIGNAL))
		return -ENOENT; /* no agent there (a static program) */
	siginfo_t si = { 0 };
	si.si_signo = CHANNEL_MEM_SIGNAL;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = CHANNEL_AGENT_POPULATE;
	if (p->pidfd < 0 ||
	    syscall(SYS_pidfd_send_signal, p->pidfd, CHANNEL_MEM_SIGNAL, &si, 0) < 0)
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
	out->scratch = false;
	close(sv[1]);
	close(lp[1]);
}

int instance_spawn(const char *host_path, const struct config *cfg, struct instance_proc *out)
{
	return instance_spawn_in(host_path, cfg, NULL, out);
}

int instance_spawn_in(const char *host_path, const struct config *cfg,
		      const struct reslimit_groups *join, struct instance_proc *out)
{
	int sv[2] = { -1, -1 }, lp[2] = { -1, -1 }, ret;
	*out = (struct instance_proc){ .pid = 0, .pidfd = -1, .channel_fd = -1, .log_fd = -1 };
	char *handler = cfg->handler[0] == '/' ? xstrdup(cfg->handler)
					       : xasprintf("%s/%s", cfg->dir, cfg->handler);
	char **kept = kept_env();
	char **env = fnenv_build(cfg, handler, kept);
	fnenv_free(kept);
	if (cfg->custom && cfg->snapshot && cfg->snapshot_memory.mapped)
		env = with_agent(env, host_path);
	/* what it runs from must be there in its own /tmp (scratch.h) */
	if (scratch_on()) {
		char *dirs[] = { handler, cfg->custom && cfg->n_command ? cfg->command[0] : NULL };
		scratch_keep(cfg->dir);
		for (size_t i = 0; i < 2; i++) {
			char *slash = dirs[i] && dirs[i][0] == '/' ? strrchr(dirs[i], '/') : NULL;
			if (slash && slash != dirs[i]) {
				char *d = xstrndup(dirs[i], (size_t)(slash - dirs[i]));
				scratch_keep(d);
				free(d);
			}
		}
	}
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
	bool newns = drop_user || scratch_on();
	struct clone_args args = {
		.flags = (uint64_t)(instance_clone_flags | (newns ? CLONE_NEWNS : 0)) | CLONE_PIDFD |
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
		      reslimit_use_rlimit() ? (uint64_t)cfg->memory_mb << 20 : 0, join, argv, cfg->dir);
	instance_proc_adopt(out, (pid_t)pid, pidfd, sv, lp);
	out->scratch = scratch_on() && !drop_user; /* drop_user mounts its own /proc */
	if (argv) { /* no channel: the daemon speaks HTTP to it (custom.h) */
		close(out->channel_fd);
		out->channel_fd = -1;
		out->channel_ino = 0;
	}
	free(argv);
	fnenv_free(env);
	free(handler);
	return 0;
close_lp:
	close(lp[0]);
	close(lp[1]);
	close(sv[0]);
	close(sv[1]);
free_env:
	free(argv);
	fnenv_free(env);
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
