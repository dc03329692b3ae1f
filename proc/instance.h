/*
 * Instance processes: start one, or adopt one restored from a snapshot.
 *
 * An instance is build/thaw-instance running a handler .so. It is PID 1 of
 * its own pid namespace (so many restored copies of one snapshot can
 * coexist), session leader inside it, in its own ipc namespace and, with
 * private scratch on (proc/scratch.h), its own mount namespace,
 * with stdin on /dev/null, stdout+stderr on a pipe the daemon reads (the
 * function's log), the channel socket on fd CHANNEL_FD and no other fd.
 *
 * A custom runtime's instance (cfg->custom) is instead its fc.yaml command
 * + args, run in the function's folder, in a network namespace of its own
 * as well (loopback up), with no channel: channel_fd is -1 and channel_ino
 * 0, and the daemon talks HTTP to it (custom.h). Its environment adds
 * FC_SERVER_PORT, FC_CUSTOM_LISTEN_PORT, FC_RUNTIME, FC_FUNC_CODE_PATH and
 * FC_INSTANCE_CONCURRENCY, and with snapshots and snapshotMemory.mapped on
 * (the default) LD_PRELOAD starts with the agent (CHANNEL_AGENT_SO beside
 * host_path, agent/agent.h) that moves its memory before a dump.
 */
#ifndef THAW_INSTANCE_H
#define THAW_INSTANCE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct config;

/* OOM scores (/proc/PID/oom_score_adj, -1000..1000): the daemon takes
 * DAEMON's (when it may lower its own: root), each instance INSTANCE's,
 * so that memory pressure kills an instance, never the daemon. */
#define DAEMON_OOM_SCORE_ADJ "-900"
#define INSTANCE_OOM_SCORE_ADJ "500"

/* The OS side of one instance; the daemon owns every fd here. */
struct instance_proc {
	pid_t pid;      /* host pid */
	int pidfd;      /* readable when the process exits */
	int channel_fd; /* daemon's end of the socketpair */
	int log_fd;     /* read end of the stdout/stderr pipe */
	uint64_t channel_ino; /* inode of the instance's end (for CRIU) */
	uint64_t log_ino;     /* inode of the log pipe (for CRIU) */
	/* in a private-scratch mount namespace (proc/scratch.h) that has the
	 * daemon's /proc: the criu that dumps it joins that namespace */
	bool scratch;
};

/* Makes the channel socketpair (sv) and the log pipe (lp) of a new
 * instance, close-on-exec. Returns 0 or -errno (nothing left open). */
int instance_fds_new(int sv[2], int lp[2]);

/* Fills out for a started process whose ends of sv and lp (index 1) it
 * holds, and closes those ends here: the daemon keeps sv[0] and lp[0]. */
void instance_proc_adopt(struct instance_proc *out, pid_t pid, int pidfd, const int sv[2],
			 const int lp[2]);

/* Namespace flags new instances get (CLONE_NEW*): a pid namespace each (so
 * copies of one snapshot coexist) and an ipc one; tests may add
 * CLONE_NEWNS, which snapshots also handle. */
extern int instance_clone_flags;

/* Instances from now on drop to uid and gid (no supplementary groups)
 * before the host starts, working in cwd (a folder that user may write:
 * CRIU's dump makes its proc.crtools there); without a call they keep the
 * daemon's user (root) and working folder. cwd must outlive the instances. */
void instance_set_user(uid_t uid, gid_t gid, const char *cwd);

/* Starts host_path (build/thaw-instance) for the function cfg. The environment
 * is cfg's environmentVariables plus THAW_FUNCTION_NAME, THAW_FUNCTION_DIR,
 * THAW_HANDLER (absolute .so path), THAW_INSTANCE_CONCURRENCY, FC_FUNCTION_NAME,
 * FC_FUNCTION_MEMORY_SIZE and FC_INSTANCE_ID-style ids. Returns 0 and fills out,
 * or -errno (nothing left running, nothing to close). */
int instance_spawn(const char *host_path, const struct config *cfg, struct instance_proc *out);
struct reslimit_groups;
/* instance_spawn into the groups of join (reslimit_prepare; NULL: none):
 * the child joins them before it execs, so the host and handler run under
 * their limits from the start; a child that cannot join exits 125. */
int instance_spawn_in(const char *host_path, const struct config *cfg,
		      const struct reslimit_groups *join, struct instance_proc *out);

/* Tells the instance that request id's client went away (it queues
 * CHANNEL_CANCEL_SIGNAL with id as its value); the handler may stop early,
 * its answer is dropped anyway. 0 or -errno. */
int instance_cancel(const struct instance_proc *p, uint64_t id);

/* A restored custom runtime's first response is out: asks the agent of
 * its first process (CHANNEL_AGENT_POPULATE) to fault the memory it moved
 * in from the page cache, when the snapshot asked for populate. 0, -ENOENT
 * when that process has no handler for the signal (no agent: it would
 * die of it), or -errno. */
int instance_agent_populate(const struct instance_proc *p);

/* SIGKILLs the instance (its whole pid namespace dies with it), reaps it and
 * closes every fd in p. Safe on a half-filled p (fds of -1, pid 0). */
void instance_destroy(struct instance_proc *p);

#endif
