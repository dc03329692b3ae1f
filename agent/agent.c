/* The custom-runtime agent (agent.h): loaded by LD_PRELOAD, moves the
 * process's large anonymous memory into memory files before a dump. */
#include "agent/agent.h"
#include "common/channel.h"
#include "common/memfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define THREAD_STACK (256u << 10) /* below any sane threshold: never moved */
#define MAX_STACKS 1024

/* One stop of the world. Lives in a static: the agent thread is the only
 * writer of everything but the parked flags and counter. */
static struct world {
	atomic_int stopping;	 /* 1 while the agent stops threads */
	atomic_int release;	 /* futex word: bumped to release */
	atomic_int inside;	 /* threads in the park handler */
	_Atomic unsigned n;	 /* read by the handler */
	pid_t tid[AGENT_MAX_THREADS];
	atomic_bool parked[AGENT_MAX_THREADS];
	bool gone[AGENT_MAX_THREADS];
} world;

static pid_t agent_tid;
static bool park_installed;
/* What the move did, kept in the memory every restored copy has. */
static struct memfile_area moved[MEMFILE_MAX_AREAS];
static unsigned n_moved;
static bool populate_wanted;

static void note(const char *msg)
{
	ssize_t w = write(2, msg, strlen(msg)); /* the function's log */
	(void)w;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long futex(atomic_int *word, int op, int val, const struct timespec *t)
{
	return syscall(SYS_futex, (int *)word, op, val, t, NULL, 0);
}

/* --- stopping the world ---------------------------------------------------- */

/* AGENT_PARK_SIGNAL's handler: parks until released (agent.h). */
static void park(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	int saved = errno;
	if (si->si_code != SI_TKILL || si->si_pid != getpid() || !atomic_load(&world.stopping)) {
		errno = saved;
		return; /* not ours, or late: nothing to stop for */
	}
	atomic_fetch_add(&world.inside, 1);
	int gen = atomic_load(&world.release);
	pid_t me = (pid_t)syscall(SYS_gettid);
	for (unsigned i = 0; i < world.n && i < AGENT_MAX_THREADS; i++)
		if (world.tid[i] == me)
			atomic_store(&world.parked[i], true);
	struct timespec t = { 1, 0 }; /* re-checks: a lost wake-up costs a second */
	while (atomic_load(&world.stopping) && atomic_load(&world.release) == gen)
		futex(&world.release, FUTEX_WAIT_PRIVATE, gen, &t);
	atomic_fetch_sub(&world.inside, 1);
	errno = saved;
}

static int install_park(void)
{
	if (park_installed)
		return 0;
	struct sigaction sa = { 0 };
	sa.sa_sigaction = park;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask); /* no handler of the server runs while parked */
	if (sigaction(AGENT_PARK_SIGNAL, &sa, NULL))
		return -errno;
	/* never uninstalled: a signal still pending after an aborted stop
	 * must find this handler, not the default action (termination) */
	park_installed = true;
	return 0;
}

static bool known(pid_t tid)
{
	for (unsigned i = 0; i < world.n; i++)
		if (world.tid[i] == tid)
			return true;
	return false;
}

/* The thread /proc calls tid (the pid namespace of /proc's mount: the
 * host's, for a custom runtime) as its own pid namespace numbers it (the
 * last NSpid field), which tgkill and gettid use; 0 when gone. */
static pid_t ns_tid(const char *tid)
{
	char path[64], text[4096];
	snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t k = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (k <= 0)
		return 0;
	text[k] = '\0';
	char *line = strstr(text, "\nNSpid:");
	if (!line)
		return (pid_t)strtol(tid, NULL, 10); /* no pid namespaces here */
	char *end = strchr(line + 1, '\n'), *last = NULL;
	for (char *c = line + 7; c < (end ? end : text + k); c++)
		if (*c >= '0' && *c <= '9' && (c[-1] == '\t' || c[-1] == ' '))
			last = c;
	return last ? (pid_t)strtol(last, NULL, 10) : 0;
}

struct signalling {
	pid_t self;
	int fresh;
};

static int signal_if_new(const char *name, void *arg)
{
	struct signalling *sg = arg;
	pid_t tid = ns_tid(name);
	if (!tid || tid == sg->self || known(tid))
		return 0;
	if (world.n == AGENT_MAX_THREADS)
		return -E2BIG;
	unsigned i = world.n;
	world.tid[i] = tid;
	atomic_store(&world.parked[i], false);
	world.gone[i] = false;
	world.n++; /* before the signal: the handler looks itself up */
	if (syscall(SYS_tgkill, getpid(), tid, AGENT_PARK_SIGNAL))
		world.gone[i] = true; /* exited meanwhile */
	sg->fresh++;
	return 0;
}

/* Signals every thread not signalled yet; how many were new, or -errno. */
static int signal_new(pid_t self)
{
	struct signalling sg = { self, 0 };
	int ret = memfile_each_thread(signal_if_new, &sg);
	return ret ? ret : sg.fresh;
}

/* Threads signalled, alive, not parked yet. */
static unsigned not_parked(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < world.n; i++) {
		if (world.gone[i] || atomic_load(&world.parked[i]))
			continue;
		if (syscall(SYS_tgkill, getpid(), world.tid[i], 0)) {
			world.gone[i] = true;
			continue;
		}
		n++;
	}
	return n;
}

static void release_world(void)
{
	atomic_store(&world.stopping, 0);
	atomic_fetch_add(&world.release, 1);
	futex(&world.release, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	/* out of the handler before the dump, as far as a second allows */
	double until = now_ms() + 1000;
	while (atomic_load(&world.inside) && now_ms() < until) {
		struct timespec t = { 0, 100000 };
		nanosleep(&t, NULL);
	}
	world.n = 0;
}

/* Every other thread parked: 0, or -errno with the world released and a
 * line in r. */
static int stop_world(struct memfile_report *r)
{
	int ret = install_park();
	if (ret) {
		memfile_say(r, "error: sigaction: %s\n", strerror(-ret));
		return ret;
	}
	pid_t self = (pid_t)syscall(SYS_gettid);
	world.n = 0;
	atomic_store(&world.stopping, 1);
	double deadline = now_ms() + AGENT_STOP_MS;
	for (;;) {
		/* parked first, then listed: a thread made by one that had not
		 * parked yet is in this listing, since its maker is parked now */
		unsigned left = not_parked();
		int fresh = signal_new(self);
		if (fresh < 0) {
			memfile_say(r, "error: stopping threads: %s\n", strerror(-fresh));
			ret = fresh;
			break;
		}
		if (!fresh && !left) {
			unsigned parked = 0;
			for (unsigned i = 0; i < world.n; i++)
				parked += atomic_load(&world.parked[i]);
			memfile_say(r, "stopped %u threads in %.1f ms\n", parked,
				    now_ms() - (deadline - AGENT_STOP_MS));
			return 0;
		}
		if (now_ms() > deadline) {
			memfile_say(r, "error: %u of %u threads did not stop in %d ms "
				       "(signal %d blocked?): memory left as it is\n",
				    left, world.n, AGENT_STOP_MS, AGENT_PARK_SIGNAL);
			ret = -ETIMEDOUT;
			break;
		}
		struct timespec t = { 0, 200000 };
		nanosleep(&t, NULL);
	}
	release_world();
	return ret;
}

/* --- the request ------------------------------------------------------------ */

static void serve(int key)
{
	char req[128], ack[128], dir[PATH_MAX];
	pid_t pid = getpid();
	snprintf(req, sizeof(req), CHANNEL_AGENTREQ_FMT, key);
	snprintf(ack, sizeof(ack), CHANNEL_AGENTACK_FMT, key, (int)pid);
	/* static, not on this small stack; one request at a time */
	static struct memfile_report r;
	r.len = 0;
	uint64_t min = 0;
	int populate = 0;
	int ret = memfile_read_request(req, dir, sizeof(dir), &min, &populate);
	if (ret) {
		memfile_say(&r, "error: request file %s: %s\n", req, strerror(-ret));
		goto answer;
	}
	uintptr_t *sp = mmap(NULL, MAX_STACKS * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sp == MAP_FAILED) {
		memfile_say(&r, "error: out of memory\n");
		goto answer;
	}
	if (!stop_world(&r)) {
		char tag[24];
		snprintf(tag, sizeof(tag), "%d-", (int)pid);
		struct memfile_request rq = { .dir = dir, .tag = tag, .min_bytes = min, .sp = sp };
		/* every other thread is parked in a futex wait: /proc shows
		 * each one's stack pointer */
		rq.n_sp = memfile_stack_points(sp, MAX_STACKS);
		memfile_move_all(&rq, &r, moved, &n_moved);
		populate_wanted = populate != 0;
		release_world();
	}
	munmap(sp, MAX_STACKS * sizeof(uintptr_t));
answer:
	if ((ret = memfile_answer(ack, &r))) {
		char msg[256];
		snprintf(msg, sizeof(msg), "thaw-agent: pid %d: answer %s: %s\n", (int)pid, ack,
			 strerror(-ret));
		note(msg);
	}
}

/* --- the agent thread --------------------------------------------------------- */

static void *agent_main(void *arg)
{
	(void)arg;
	agent_tid = (pid_t)syscall(SYS_gettid);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, CHANNEL_MEM_SIGNAL);
	for (;;) {
		siginfo_t si;
		if (sigwaitinfo(&set, &si) < 0)
			continue; /* EINTR, e.g. across a restore */
		if (si.si_code != SI_QUEUE)
			continue;
		if (si.si_value.sival_int > 0)
			serve(si.si_value.sival_int);
		else if (si.si_value.sival_int == CHANNEL_AGENT_POPULATE && populate_wanted)
			memfile_populate(moved, n_moved);
	}
	return NULL;
}

/* CHANNEL_MEM_SIGNAL reached a thread that unblocked it: to the agent
 * thread, which has it blocked and waits for it. */
static void forward(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int saved = errno;
	if (agent_tid > 0)
		syscall(SYS_rt_tgsigqueueinfo, getpid(), agent_tid, sig, si);
	errno = saved;
}

static void start(void)
{
	agent_tid = 0;
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int e = pthread_create(&t, &attr, agent_main, NULL);
	pthread_attr_destroy(&attr);
	if (e) {
		char msg[160];
		snprintf(msg, sizeof(msg), "thaw-agent: pid %d: pthread_create: %s; "
			 "its snapshot will copy its memory\n", (int)getpid(), strerror(e));
		note(msg);
	}
}

/* fork(): only the forking thread lives on in the child */
static void after_fork(void)
{
	world.n = 0;
	atomic_store(&world.stopping, 0);
	atomic_store(&world.inside, 0);
	start();
}

__attribute__((constructor)) static void agent_init(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, CHANNEL_MEM_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct sigaction sa = { 0 };
	sa.sa_sigaction = forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(CHANNEL_MEM_SIGNAL, &sa, NULL);
	pthread_atfork(NULL, NULL, after_fork);
	start();
}
