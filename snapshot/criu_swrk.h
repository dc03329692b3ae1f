/*
 * criu processes started ahead of the restores that will use them.
 *
 * `criu swrk FD` is CRIU's RPC worker: it starts, then waits for one request
 * on the socket FD. A restore that finds one ready sends its request there
 * instead of exec'ing criu, so the exec and dynamic linking of criu (~1.5 ms
 * of a ~7 ms echo restore here, docs/benchmarks.md) are paid off the request
 * path. Each worker serves one restore and exits; a thread of this module
 * keeps criu_swrk_spare() of them started, starts a new one for each taken
 * and reaps the used ones.
 *
 * The copy's fresh channel socketpair and log pipe are made with the worker,
 * which holds their [1] ends at CRIU_FD_CHANNEL and CRIU_FD_LOG, the numbers
 * the request's inherit-fd entries name (as the command line path's are).
 * Workers are children of the daemon; the copies they restore with
 * rst_sibling are too.
 */
#ifndef THAW_CRIU_SWRK_H
#define THAW_CRIU_SWRK_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proc/reslimit.h"
#include "proc/subproc.h"

/* The fd numbers a restoring criu has the copy's fresh channel and log
 * pipe at (both paths), and a custom runtime's network namespace at. */
#define CRIU_FD_CHANNEL 3
#define CRIU_FD_LOG 4
#define CRIU_FD_NETNS 5
#define CRIU_FD_RPC 6 /* a worker's request socket */
#define CRIU_FD_IMAGES 7 /* a dump's images folder, when criu runs in the instance's namespace */
/* The key a custom runtime's network namespace is known by in its images:
 * declared external at dump, a fresh one handed in per restore. */
#define CRIU_NETNS_KEY "thaw-net"

struct criu_worker {
	struct subproc proc; /* criu swrk CRIU_FD_RPC */
	int rpc;	     /* our end of its request socket */
	int sv[2], lp[2];    /* the copy's channel and log pipe */
	int netns;	     /* the copy's network namespace (custom runtimes), or -1 */
	unsigned scratch_gen; /* scratch_generation() its mount namespace was made for */
	/* the groups it was born in (reslimit_prepare_open), where the copy it
	 * restores is born too: none to move at restore ("" without cgroups) */
	struct reslimit_groups groups;
};

/* What a restore asks for (the command line's -D, --inherit-fd, --root /
 * --external mnt[], and for a network namespace --network-lock skip
 * --tcp-close; the rest is fixed: -d -S --manage-cgroups=ignore). */
struct criu_swrk_restore {
	const char *dir;
	uint64_t channel_ino; /* 0: the snapshot has no channel */
	uint64_t log_ino;
	bool mntns;
	bool netns; /* into the worker's fresh network namespace */
	uint32_t memory_mb; /* the limit the worker's own groups get first (0: none) */
};

/* How many workers are kept started: $THAW_CRIU_WORKERS as it was at the
 * first call (0 turns them off, at most 16), else 2. A restore made while
 * it is "0" execs criu, so benchmarks and tests can compare both ways in
 * one process. */
unsigned criu_swrk_spare(void);

/* A started worker for the criu binary at criu, with a fresh network
 * namespace when netns (made ahead too: workers of that kind are kept from
 * the first such request on), or -ENOENT when none is ready (then one is
 * started for the next restore: the caller runs criu itself this time).
 * Workers start in a fresh private-scratch mount namespace when
 * scratch_on() (proc/scratch.h): scratch says whether the snapshot wants
 * one, and a snapshot that does not match gets -ENOENT. */
int criu_swrk_take(const char *criu, bool netns, bool scratch, struct criu_worker *w);

/* Puts the worker under rq->memory_mb in the groups it was born in, or
 * where it has none moves it into the cgroup folders of join
 * (NULL-terminated, may be NULL), sends rq, and waits at most timeout_ms
 * for criu's answer: the copy's pid, or -errno with criu's output tail
 * logged. The worker is used up either way (reaped by this module, its
 * netns fd closed, its groups removed on failure); w->sv, w->lp and on
 * success w->groups (the copy's now) are the caller's. *ms gets the time
 * from the limit or move to the answer. */
int criu_swrk_restore(struct criu_worker *w, const struct criu_swrk_restore *rq,
		      const char *const *join, int timeout_ms, pid_t *pid, double *ms);

#endif
