/*
 * The one way thaw runs an external program (criu): spawn it with an argv
 * (no shell), hand it chosen fds at chosen numbers, capture its stdout and
 * stderr together, kill it when it runs past its time, and always reap it.
 *
 * The child gets stdin on /dev/null, stdout+stderr on a pipe read by
 * subproc_run, the fds of `fds` at their `target` numbers (>= 3), and no other
 * fd. It inherits the caller's environment. posix_spawn (vfork-style) keeps
 * the cost independent of the daemon's size.
 */
#ifndef THAW_SUBPROC_H
#define THAW_SUBPROC_H

#include <stddef.h>
#include <sys/types.h>

/* Keep at most this much output: the start and, more useful, the tail. */
#define SUBPROC_OUT_MAX (64u << 10)

struct subproc_fd {
	int fd;     /* the caller's fd; left open for the caller */
	int target; /* its number in the child, >= 3 */
};

struct subproc_result {
	int status;   /* waitpid status; meaningful when the child ran */
	char *out;    /* NUL-terminated tail of stdout+stderr; the caller frees
		       * it with subproc_result_fini (NULL when nothing came) */
	size_t out_len;
	double ms;    /* spawn to exit, wall time */
};

/* Runs argv[0] (a path, not searched on PATH) with argv. Returns 0 when it
 * exited with status 0; -EIO when it ran and failed (exit code or signal in
 * res->status); -ETIMEDOUT when it ran past timeout_ms and was killed;
 * -ENOENT/-EACCES/... when it could not be started. In every case the child
 * has been reaped and res is filled as far as it got (fini it). */
int subproc_run(char *const argv[], const struct subproc_fd *fds, unsigned n_fds, int timeout_ms,
	      struct subproc_result *res);

/* Where the child is put before it execs argv[0]. */
struct subproc_in {
	/* cgroup folders (v1 or v2, NULL-terminated) whose cgroup.procs it
	 * writes "0" to, so argv[0] and everything it forks start inside those
	 * groups and are charged there from their first page (criu restore:
	 * the copy is born under its limits; cgroup v1 has no
	 * CLONE_INTO_CGROUP); NULL for none */
	const char *const *join;
	/* then, when set, enter(arg) in the child: raw system calls only (it
	 * shares the caller's memory); 0 or an errno (proc/scratch.h's) */
	int (*enter)(void *arg);
	void *arg;
};

/* As subproc_run, with the child first put where in says. A group that
 * cannot be joined, or an enter that fails, fails the call (-errno) before
 * argv[0] runs. in NULL or empty: exactly subproc_run. The child is made
 * with clone(CLONE_VM|CLONE_VFORK), as posix_spawn does, so its cost does
 * not grow with the daemon's size either; it does not share the caller's
 * filesystem context, so enter may change namespaces. */
int subproc_run_in(char *const argv[], const struct subproc_fd *fds, unsigned n_fds,
		   const struct subproc_in *in, int timeout_ms, struct subproc_result *res);

/* A child started by subproc_start and not yet reaped: the caller talks to
 * it (criu swrk), then subproc_wait collects its output and reaps it. */
struct subproc {
	pid_t pid;
	int pidfd;
	int out_fd; /* read end of its stdout+stderr, non-blocking */
	double start_ms;
	char name[64]; /* argv[0], for log lines */
};

/* The first half of subproc_run_in: starts argv as it does and returns
 * without waiting. 0, or -errno with nothing started (sp holds nothing). */
int subproc_start(char *const argv[], const struct subproc_fd *fds, unsigned n_fds,
		  const struct subproc_in *in, struct subproc *sp);
/* The second half: waits for the exit (killing it after timeout_ms),
 * keeps its output in res and reaps it; returns as subproc_run does. sp
 * holds nothing after. */
int subproc_wait(struct subproc *sp, int timeout_ms, struct subproc_result *res);

/* Logs "WHAT failed (how); its output ends:" and the tail of res->out, for
 * ret, the failed return of subproc_run/subproc_wait. */
void subproc_log_failure(const char *what, int ret, const struct subproc_result *res);

/* The last non-empty line of the output that does not contain skip (may be
 * NULL), copied into line; empty when there is none. */
void subproc_last_line(const struct subproc_result *res, const char *skip, char *line, size_t len);

void subproc_result_fini(struct subproc_result *res);

#endif
