#define LOG_PREFIX "criu swrk: "
#include "snapshot/criu_swrk.h"
#include "common/log.h"
#include "proc/instance.h"
#include "proc/netns.h"
#include "proc/reslimit.h"
#include "proc/scratch.h"

#include "criu/rpc.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SPARE 16
#define MAX_USED 64		/* used workers waiting to be reaped */
#define REAP_TIMEOUT_MS 5000	/* a used worker exits right after answering */
#define ANSWER_MAX (64u << 10)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
/* ready workers of both kinds: without ([0]) and with ([1]) a network
 * namespace; the second kind is kept only once one was asked for */
static struct criu_worker ready[2][MAX_SPARE];
static unsigned n_ready[2];
static bool netns_wanted;
static char ready_path[PATH_MAX]; /* the criu binary the ready ones run */
/* a worker of ready_path of that kind could not start or exited before it
 * was used: start no more of them (a criu that cannot serve swrk, no
 * network namespaces here; restores exec criu as before) */
static bool broken[2];
/* workers to reap, and the groups of those that never restored */
static struct used {
	struct subproc sp;
	struct reslimit_groups groups;
} used[MAX_USED];
static unsigned n_used;
static bool keeper_running;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static unsigned spare; /* read once: the keeper works from it */

static void spare_init(void)
{
	const char *e = getenv("THAW_CRIU_WORKERS");
	long v = e && *e ? strtol(e, NULL, 10) : 2;
	spare = v < 0 ? 0 : v > MAX_SPARE ? MAX_SPARE : (unsigned)v;
}

unsigned criu_swrk_spare(void)
{
	pthread_once(&spare_once, spare_init);
	return spare;
}

static void close_fds(struct criu_worker *w)
{
	int *fds[] = { &w->rpc, &w->sv[0], &w->sv[1], &w->lp[0], &w->lp[1], &w->netns };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
}

static int worker_start(const char *criu, bool netns, struct criu_worker *w)
{
	int sk[2], ret;
	*w = (struct criu_worker){ .rpc = -1, .sv = { -1, -1 }, .lp = { -1, -1 }, .netns = -1 };
	reslimit_prepare_open(&w->groups); /* "" without cgroups: moved at restore */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sk) < 0)
		return -errno;
	w->rpc = sk[0];
	if ((ret = instance_fds_new(w->sv, w->lp)) || (netns && (ret = netns_new(&w->netns)))) {
		close(sk[1]);
		close_fds(w);
		return ret;
	}
	char fd_s[16];
	snprintf(fd_s, sizeof(fd_s), "%d", CRIU_FD_RPC);
	char *argv[] = { (char *)criu, "swrk", fd_s, NULL };
	struct subproc_fd fds[] = { { sk[1], CRIU_FD_RPC },
				    { w->sv[1], CRIU_FD_CHANNEL },
				    { w->lp[1], CRIU_FD_LOG },
				    { w->netns, CRIU_FD_NETNS } };
	/* born in its groups, with private scratch in a fresh namespace:
	 * where the copy is born too */
	w->scratch_gen = scratch_generation();
	const char *join[] = { w->groups.mem[0] ? w->groups.mem : NULL,
			       w->groups.cpu[0] ? w->groups.cpu : NULL, NULL };
	struct subproc_in in = { .join = join, .enter = scratch_on() ? scratch_enter : NULL };
	ret = subproc_start(argv, fds, netns ? 4 : 3, &in, &w->proc);
	close(sk[1]);
	if (ret) {
		close_fds(w);
		reslimit_release(&w->groups);
	}
	return ret;
}

/* Called with the lock held: hands the process to the keeper to reap,
 * and then to remove groups (NULL: none left to it). */
static void retire_locked(struct subproc *sp, const struct reslimit_groups *groups)
{
	struct used u = { .sp = *sp };
	if (groups)
		u.groups = *groups;
	if (n_used == MAX_USED) { /* the keeper is far behind: reap here */
		struct subproc_result res;
		subproc_wait(&u.sp, REAP_TIMEOUT_MS, &res);
		subproc_result_fini(&res);
		reslimit_release(&u.groups);
		return;
	}
	used[n_used++] = u;
	pthread_cond_signal(&wake);
}

/* Kills an unused worker and closes everything it had. Lock held. */
static void discard_locked(struct criu_worker *w)
{
	kill(w->proc.pid, SIGKILL);
	close_fds(w);
	retire_locked(&w->proc, &w->groups);
}

/* The kind of worker the keeper starts next, or -1 when both are stocked. */
static int kind_short_locked(void)
{
	unsigned want = ready_path[0] ? criu_swrk_spare() : 0;
	if (!broken[0] && n_ready[0] < want)
		return 0;
	if (!broken[1] && netns_wanted && n_ready[1] < want)
		return 1;
	return -1;
}

/* The keeper: reaps used workers and keeps criu_swrk_spare() started. */
static void *keeper_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		int kind = kind_short_locked();
		if (!n_used && kind < 0) {
			pthread_cond_wait(&wake, &lock);
			continue;
		}
		if (n_used) {
			struct used u = used[--n_used];
			pthread_mutex_unlock(&lock);
			struct subproc_result res;
			subproc_wait(&u.sp, REAP_TIMEOUT_MS, &res);
			subproc_result_fini(&res);
			reslimit_release(&u.groups);
			pthread_mutex_lock(&lock);
			continue;
		}
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s", ready_path);
		pthread_mutex_unlock(&lock);
		struct criu_worker w;
		int ret = worker_start(path, kind, &w);
		pthread_mutex_lock(&lock);
		if (ret) {
			pr_err("cannot start %s swrk%s (%s): restores exec criu", path,
			       kind ? " with a network namespace" : "", strerror(-ret));
			broken[kind] = true;
		} else if (strcmp(path, ready_path) || n_ready[kind] == MAX_SPARE) {
			discard_locked(&w);
		} else {
			ready[kind][n_ready[kind]++] = w;
		}
	}
	return NULL;
}

static bool exited(const struct subproc *sp)
{
	struct pollfd p = { .fd = sp->pidfd, .events = POLLIN };
	return poll(&p, 1, 0) > 0;
}

int criu_swrk_take(const char *criu, bool netns, bool scratch, struct criu_worker *w)
{
	const char *off = getenv("THAW_CRIU_WORKERS"); /* read each time: see .h */
	if (!criu_swrk_spare() || (off && !strcmp(off, "0")) || scratch != scratch_on())
		return -ENOENT;
	int ret = -ENOENT;
	pthread_mutex_lock(&lock);
	if (strcmp(criu, ready_path)) { /* tests switch $THAW_CRIU */
		for (int k = 0; k < 2; k++)
			while (n_ready[k])
				discard_locked(&ready[k][--n_ready[k]]);
		snprintf(ready_path, sizeof(ready_path), "%s", criu);
		broken[0] = broken[1] = false;
	}
	netns_wanted |= netns;
	while (n_ready[netns] && ret) {
		*w = ready[netns][--n_ready[netns]];
		if (w->scratch_gen != scratch_generation()) { /* its namespace lacks a folder */
			discard_locked(w);
			continue;
		}
		if (!exited(&w->proc)) {
			ret = 0;
			break;
		}
		pr_err("%s swrk exited before it was used: restores exec criu", criu);
		broken[netns] = true;
		discard_locked(w);
	}
	if (!keeper_running) {
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		/* the keeper blocks no signal the daemon handles elsewhere */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		keeper_running = pthread_create(&t, &attr, keeper_main, NULL) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
	}
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	return ret;
}

/* Sends the request and reads criu's answer; 0 with *pid, or -errno. */
static int ask(struct criu_worker *w, const struct criu_swrk_restore *rq, int timeout_ms,
	       pid_t *pid, char *why, size_t len)
{
	char chan_key[48], log_key[48];
	snprintf(chan_key, sizeof(chan_key), "socket:[%" PRIu64 "]", rq->channel_ino);
	snprintf(log_key, sizeof(log_key), "pipe:[%" PRIu64 "]", rq->log_ino);
	ThawCriu__InheritFd inh[3] = { THAW_CRIU__INHERIT_FD__INIT, THAW_CRIU__INHERIT_FD__INIT,
				       THAW_CRIU__INHERIT_FD__INIT };
	ThawCriu__InheritFd *inh_p[3] = { &inh[0], &inh[1], &inh[2] };
	size_t n_inh = 0;
	inh[n_inh].key = log_key;
	inh[n_inh++].fd = CRIU_FD_LOG;
	if (rq->channel_ino) {
		inh[n_inh].key = chan_key;
		inh[n_inh++].fd = CRIU_FD_CHANNEL;
	}
	if (rq->netns) {
		inh[n_inh].key = CRIU_NETNS_KEY;
		inh[n_inh++].fd = CRIU_FD_NETNS;
	}
	char *mnt_ext[] = { "mnt[]" };

	ThawCriu__Opts o = THAW_CRIU__OPTS__INIT;
	o.images_dir = (char *)rq->dir;
	o.has_log_level = 1;
	o.log_level = 2;
	o.has_log_to_stderr = 1;
	o.log_to_stderr = 1;
	o.has_rst_sibling = 1; /* the copy is our child, see snapshot.h */
	o.rst_sibling = 1;
	o.has_manage_cgroups_mode = 1;
	o.manage_cgroups_mode = THAW_CRIU__CG_MODE__IGNORE;
	o.n_inherit_fd = n_inh;
	o.inherit_fd = inh_p;
	if (rq->netns) { /* as snapshot.c's command line says why */
		o.has_network_lock = 1;
		o.network_lock = THAW_CRIU__NETWORK_LOCK_METHOD__SKIP;
		o.has_tcp_close = 1;
		o.tcp_close = 1;
	}
	if (rq->mntns) {
		o.root = "/";
		o.n_external = 1;
		o.external = mnt_ext;
	}
	ThawCriu__Req req = THAW_CRIU__REQ__INIT;
	req.type = THAW_CRIU__REQ_TYPE__RESTORE;
	req.opts = &o;

	uint8_t buf[4096];
	size_t n = thaw_criu__req__get_packed_size(&req);
	if (n > sizeof(buf)) {
		snprintf(why, len, "request of %zu bytes", n);
		return -E2BIG;
	}
	thaw_criu__req__pack(&req, buf);
	if (send(w->rpc, buf, n, MSG_NOSIGNAL) != (ssize_t)n) {
		snprintf(why, len, "send: %s", strerror(errno));
		return -EIO;
	}
	struct pollfd p = { .fd = w->rpc, .events = POLLIN };
	int r;
	while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (r == 0) {
		snprintf(why, len, "no answer in %d ms", timeout_ms);
		return -ETIMEDOUT;
	}
	uint8_t *ans = malloc(ANSWER_MAX);
	if (!ans)
		return -ENOMEM;
	ssize_t got = recv(w->rpc, ans, ANSWER_MAX, MSG_TRUNC);
	if (got <= 0 || got > (ssize_t)ANSWER_MAX) {
		snprintf(why, len, "%s", got < 0 ? strerror(errno) : got ? "answer too long" : "no answer: criu exited");
		free(ans);
		return -EIO;
	}
	ThawCriu__Resp *resp = thaw_criu__resp__unpack(NULL, (size_t)got, ans);
	free(ans);
	if (!resp) {
		snprintf(why, len, "an answer that does not parse");
		return -EBADMSG;
	}
	int ret = 0;
	if (!resp->success) {
		snprintf(why, len, "%s", resp->cr_errmsg ? resp->cr_errmsg : "failed");
		ret = resp->has_cr_errno && resp->cr_errno > 0 ? -resp->cr_errno : -EIO;
	} else if (!resp->restore || resp->restore->pid <= 0) {
		snprintf(why, len, "success without a pid");
		ret = -EBADMSG;
	} else {
		*pid = resp->restore->pid;
	}
	thaw_criu__resp__free_unpacked(resp, NULL);
	return ret;
}

int criu_swrk_restore(struct criu_worker *w, const struct criu_swrk_restore *rq,
		      const char *const *join, int timeout_ms, pid_t *pid, double *ms)
{
	double t0 = now_ms();
	char why[256] = "";
	int ret = 0;
	if (w->groups.mem[0]) { /* born there: only the limit, before any page */
		if (rq->memory_mb && (ret = reslimit_limit_memory(&w->groups, rq->memory_mb)))
			snprintf(why, sizeof(why), "memory limit in %.200s: %s", w->groups.mem,
				 strerror(-ret));
	} else {
		for (const char *const *g = join; g && *g && !ret; g++)
			if ((ret = reslimit_move(w->proc.pid, *g)))
				snprintf(why, sizeof(why), "joining %.200s: %s", *g, strerror(-ret));
	}
	if (!ret)
		ret = ask(w, rq, timeout_ms, pid, why, sizeof(why));
	*ms = now_ms() - t0;
	close(w->rpc); /* criu exits after its answer (and on EOF) */
	w->rpc = -1;
	if (w->netns >= 0) { /* the copy holds it now */
		close(w->netns);
		w->netns = -1;
	}
	if (ret) {
		if (ret == -ETIMEDOUT)
			kill(w->proc.pid, SIGKILL);
		struct subproc_result res;
		int wret = subproc_wait(&w->proc, REAP_TIMEOUT_MS, &res);
		pr_err("restore of %s failed: %s", rq->dir, why);
		subproc_log_failure("criu swrk", wret ? wret : -EIO, &res);
		subproc_result_fini(&res);
		reslimit_release(&w->groups); /* what criu left there is dead (-S: our children) */
		return ret;
	}
	pthread_mutex_lock(&lock);
	retire_locked(&w->proc, NULL); /* its groups are the copy's */
	pthread_mutex_unlock(&lock);
	return 0;
}
