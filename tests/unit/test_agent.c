/*
 * agent/agent.c (libthaw-agent.so): this test re-runs itself with the agent
 * in LD_PRELOAD, as the daemon starts a custom runtime, then asks its own
 * agent (the protocol of common/channel.h) to move 64 MiB that a thread of
 * its own keeps incrementing, one page after the other, all along. Every
 * increment must be there after the move: had the writer not been stopped
 * while pages were copied and remapped, those made in between would be lost.
 * A thread that blocks the park signal makes the agent give up: nothing
 * moves. Needs $THAW_BUILD/libthaw-agent.so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/agent.h"
#include "common/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE (64ul << 20)
#define PAGE 4096ul
#define PAGES (STATE / PAGE)
#define WAIT_MS 20000

static char root[64];

struct writer {
	uint64_t *buf;
	atomic_bool stop;
	atomic_uint_fast64_t done; /* writes so far */
	bool deaf;		   /* blocks the park signal */
};

/* Adds 1 to the counter at the start of page k % PAGES, k = 0, 1, 2, ...:
 * an increment made to a page after it was copied and before it was
 * remapped would be lost for good (later laps cannot hide it). */
static void *write_loop(void *arg)
{
	struct writer *w = arg;
	if (w->deaf) {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, AGENT_PARK_SIGNAL);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
	}
	uint64_t k = 0;
	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		w->buf[(k % PAGES) * (PAGE / sizeof(uint64_t))]++;
		k++;
		atomic_store_explicit(&w->done, k, memory_order_release);
	}
	return NULL;
}

/* Every page counted every increment made to it. */
static void assert_no_write_lost(const struct writer *w)
{
	uint64_t n = atomic_load(&w->done), bad = 0;
	for (uint64_t j = 0; j < PAGES; j++) {
		uint64_t want = j < n ? (n - 1 - j) / PAGES + 1 : 0;
		bad += w->buf[j * (PAGE / sizeof(uint64_t))] != want;
	}
	if (bad)
		fail_msg("%" PRIu64 " of %lu pages lost a write (%" PRIu64 " writes)", bad, PAGES, n);
}

/* Asks this process's agent to move into dir; its report (static). */
static const char *ask_agent(const char *dir)
{
	static char rep[8192];
	char req[128], ack[128];
	int key = (int)getpid();
	snprintf(req, sizeof(req), CHANNEL_AGENTREQ_FMT, key);
	snprintf(ack, sizeof(ack), CHANNEL_AGENTACK_FMT, key, key);
	FILE *f = fopen(req, "we");
	assert_non_null(f);
	fprintf(f, "dir %s\nmin %lu\npopulate 0\n", dir, 2ul << 20);
	assert_int_equal(fclose(f), 0);
	unlink(ack);
	assert_int_equal(mkfifo(ack, 0600), 0);
	int fd = open(ack, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(fd >= 0);
	union sigval v = { .sival_int = key };
	assert_int_equal(sigqueue(getpid(), CHANNEL_MEM_SIGNAL, v), 0);
	size_t len = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		long left = WAIT_MS - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		assert_true(left > 0);
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		ssize_t k = read(fd, rep + len, sizeof(rep) - 1 - len);
		if (k > 0)
			len += (size_t)k;
		if (k == 0 || len == sizeof(rep) - 1)
			break;
	}
	rep[len] = '\0';
	close(fd);
	unlink(ack);
	unlink(req);
	return rep;
}

/* Bytes of [a, a + len) that /proc/self/maps shows backed by a thaw-mem file. */
static uint64_t file_backed(const void *a, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	assert_non_null(f);
	char line[1024];
	uint64_t n = 0, s0 = (uintptr_t)a, e0 = s0 + len;
	while (fgets(line, sizeof(line), f)) {
		uintptr_t s, e;
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &s, &e) == 2 && strstr(line, "/thaw-mem-") &&
		    s < e0 && e > s0)
			n += (e < e0 ? e : e0) - (s > s0 ? s : s0);
	}
	fclose(f);
	return n;
}

static void run_writer(bool deaf, const char *sub, const char **rep, struct writer *w)
{
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/%s", root, sub);
	assert_int_equal(mkdir(dir, 0700), 0);
	w->buf = mmap(NULL, STATE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(w->buf != MAP_FAILED);
	w->deaf = deaf;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, write_loop, w), 0);
	while (atomic_load(&w->done) < 4 * PAGES) /* every page written, several times */
		sched_yield();
	*rep = ask_agent(dir);
	uint64_t at = atomic_load(&w->done);
	while (atomic_load(&w->done) < at + PAGES) /* it goes on after */
		sched_yield();
	atomic_store(&w->stop, true);
	pthread_join(t, NULL);
}

static void test_stopped_writer_loses_nothing(void **state)
{
	(void)state;
	struct writer w = { 0 };
	const char *rep;
	run_writer(false, "moved", &rep, &w);
	unsigned stopped = 0, moved = 0;
	uint64_t bytes = 0;
	const char *s = strstr(rep, "stopped ");
	assert_non_null(s);
	assert_int_equal(sscanf(s, "stopped %u threads", &stopped), 1);
	assert_true(stopped >= 1); /* the writer at least */
	const char *o = strstr(rep, "ok ");
	assert_non_null(o);
	assert_int_equal(sscanf(o, "ok %u %" SCNu64, &moved, &bytes), 2);
	assert_true(moved >= 1 && bytes >= STATE);
	assert_int_equal(file_backed(w.buf, STATE), STATE);
	assert_no_write_lost(&w);
	munmap(w.buf, STATE);
}

static void test_thread_that_cannot_stop_moves_nothing(void **state)
{
	(void)state;
	struct writer w = { 0 };
	const char *rep;
	run_writer(true, "deaf", &rep, &w);
	assert_non_null(strstr(rep, "error: 1 of"));
	assert_non_null(strstr(rep, "did not stop"));
	assert_null(strstr(rep, "ok "));
	assert_int_equal(file_backed(w.buf, STATE), 0);
	assert_no_write_lost(&w);
	munmap(w.buf, STATE);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	chmod(path, 0700);
	return remove(path);
}

int main(int argc, char **argv)
{
	(void)argc;
	if (!getenv("THAW_TEST_AGENT_CHILD")) {
		/* the agent is loaded at start or not at all: again, with it */
		const char *build = getenv("THAW_BUILD") ? getenv("THAW_BUILD") : "build";
		char so[4096];
		snprintf(so, sizeof(so), "%s/%s", build, CHANNEL_AGENT_SO);
		if (access(so, R_OK)) {
			printf("FAIL: %s: %s (make builds it)\n", so, strerror(errno));
			return 1;
		}
		if ((mkdir("/dev/shm/thaw-criu", 0700) && errno != EEXIST) ||
		    access("/dev/shm/thaw-criu", W_OK)) {
			printf("skip: /dev/shm/thaw-criu is not writable here (snapshots need root)\n");
			return 77;
		}
		setenv("LD_PRELOAD", so, 1);
		/* under make asan: the agent comes before the ASan runtime */
		const char *asan = getenv("ASAN_OPTIONS");
		char opts[1024];
		snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
			 asan && *asan ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
		setenv("THAW_TEST_AGENT_CHILD", "1", 1);
		execv("/proc/self/exe", argv);
		perror("exec");
		return 1;
	}
	snprintf(root, sizeof(root), "/dev/shm/thaw-test-agent-XXXXXX");
	if (!mkdtemp(root))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stopped_writer_loses_nothing),
		cmocka_unit_test(test_thread_that_cannot_stop_moves_nothing),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return ret;
}
