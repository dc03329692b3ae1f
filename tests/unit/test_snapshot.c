/*
 * snapshot/: checkpoint a READY echo instance with CRIU, restore copies of
 * it, check that each copy serves its own channel, and that the manifest
 * catches corruption. zdtm shape: set up state -> dump/restore -> verify.
 *
 * The CRIU cases need root and the CRIU of `make deps` (each is a counted
 * skip otherwise); the subprocess and "criu missing" cases run everywhere.
 * Needs $THAW_BUILD/thaw-instance with $THAW_BUILD/handlers/echo.so. Both are
 * copied to a private folder first: an image names the binaries it maps and
 * checks their sizes, so a parallel rebuild must not pull them away.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include "testutil.h"

#include "tests/unit/chanio.h"
#include "common/channel.h"
#include "common/config.h"
#include "proc/instance.h"
#include "common/mem.h"
#include "snapshot/manifest.h"
#include "snapshot/snapshot.h"
#include "proc/scratch.h"
#include "proc/subproc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define COPIES 4
#define TIMING_RUNS 20
#define WAIT_MS 10000

static struct {
	char root[64];   /* private folder on /dev/shm */
	char host[128];  /* copy of thaw-instance */
	char so[128];    /* copy of echo.so */
	char img[128];   /* the snapshot */
	char ready_id[128]; /* instance id the original reported */
} fx;

/* --- channel helpers ----------------------------------------------------- */

static void send_all(int fd, const struct buf *b)
{
	assert_int_equal(chan_write(fd, b), 0);
}

static void send_ctl(int fd, uint32_t type)
{
	struct buf b = { 0 };
	channel_put_hdr(&b, type, 0, 0);
	send_all(fd, &b);
	buf_free(&b);
}

/* Reads one frame (deadline WAIT_MS); returns its payload (NUL-terminated,
 * caller frees) and fills h. */
static char *read_frame(int fd, struct channel_hdr *h)
{
	char *payload = chan_read(fd, h, WAIT_MS);
	assert_non_null(payload);
	return payload;
}

/* Waits for CH_READY; copies the instance id. */
static void wait_ready(int fd, char *id, size_t len)
{
	struct channel_hdr h;
	char *payload = read_frame(fd, &h);
	if (h.type != CH_READY)
		fail_msg("expected CH_READY, got type %u: %s", h.type, payload);
	snprintf(id, len, "%s", payload);
	free(payload);
}

/* POST /json with body; checks the echoed body and the instance id. */
static void check_request(int fd, uint64_t rid, const char *body, const char *iid)
{
	struct buf b = { 0 };
	channel_put_request(&b, rid, "POST", "/json", 5, "", 0, "req", 0, NULL, 0, body,
			    strlen(body));
	send_all(fd, &b);
	buf_free(&b);

	struct channel_hdr h;
	char *payload = read_frame(fd, &h);
	assert_int_equal(h.type, CH_RESPONSE);
	assert_int_equal(h.id, rid);
	struct channel_response res;
	assert_int_equal(channel_decode_response(payload, h.len, &res), 0);
	assert_int_equal(res.status, 200);
	char want[256];
	snprintf(want, sizeof(want), "\"body\":\"%s\"", body);
	if (!strstr(res.body, want))
		fail_msg("response %s lacks %s", res.body, want);
	snprintf(want, sizeof(want), "\"instance_id\":\"%s\"", iid);
	if (!strstr(res.body, want))
		fail_msg("response %s lacks %s", res.body, want);
	free(payload);
}

/* Inode of /proc/PID/ns/NS (pid 0: ourselves). */
static ino_t ns_of(pid_t pid, const char *ns)
{
	char path[64];
	struct stat st;
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns);
	else
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns);
	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* --- fixture ------------------------------------------------------------- */

static int copy_file(const char *from, const char *to)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	return system(cmd) == 0 ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static char no_criu[256]; /* why snapshots cannot work here; "" when they can */

static int group_setup(void **state)
{
	(void)state;
	if (no_criu[0])
		return 0; /* the CRIU cases skip; the others need no fixture */
	const char *build = getenv("THAW_BUILD") ? getenv("THAW_BUILD") : "build";
	char host[256], so[256];
	snprintf(host, sizeof(host), "%s/thaw-instance", build);
	snprintf(so, sizeof(so), "%s/handlers/echo.so", build);
	snprintf(fx.root, sizeof(fx.root), "/dev/shm/thaw-test-snapshot-XXXXXX");
	if (!mkdtemp(fx.root))
		return -1;
	snprintf(fx.host, sizeof(fx.host), "%s/thaw-instance", fx.root);
	snprintf(fx.so, sizeof(fx.so), "%s/echo.so", fx.root);
	snprintf(fx.img, sizeof(fx.img), "%s/img", fx.root);
	if (copy_file(host, fx.host) || copy_file(so, fx.so) || mkdir(fx.img, 0700))
		return -1;

	struct config cfg = { .name = "echo", .dir = fx.root, .handler = fx.so,
			      .instance_concurrency = 1, .memory_mb = 512, .timeout_s = 3 };
	struct instance_proc p;
	if (instance_spawn(fx.host, &cfg, &p))
		return -1;
	wait_ready(p.channel_fd, fx.ready_id, sizeof(fx.ready_id));
	check_request(p.channel_fd, 1, "before-dump", fx.ready_id);

	struct snapshot_info info;
	int r = snapshot_dump(&p, fx.img, NULL, &info);
	instance_destroy(&p);
	if (r) {
		fprintf(stderr, "snapshot_dump: %s\n", strerror(-r));
		return -1;
	}
	printf("dump: %.1f ms, %u files, %.1f KiB, manifest %.1f ms\n", info.dump_ms,
	       info.n_files, (double)info.image_bytes / 1024, info.manifest_ms);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (getenv("THAW_TEST_KEEP")) { /* for poking at the images by hand */
		printf("kept %s\n", fx.root);
		return 0;
	}
	if (fx.root[0])
		nftw(fx.root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* --- tests --------------------------------------------------------------- */

static void test_verify_accepts_fresh_snapshot(void **state)
{
	(void)state;
	char why[256];
	int r = snapshot_verify(fx.img, why, sizeof(why));
	if (r)
		fail_msg("verify: %s", why);
}

/* Four copies restored at once, each in its own pid namespace: each gets its
 * own id after CH_RESTORED and answers its own request on its own channel. */
struct restore_job {
	struct instance_proc c;
	struct snapshot_timing t;
	int ret;
};

/* A copy dies with the thread that restored it (instances have
 * PR_SET_PDEATHSIG, which CRIU restores; the daemon restores on its
 * long-lived job threads): each thread waits until its copy was used. */
static pthread_barrier_t restored, released;

static void *restore_thread(void *arg)
{
	struct restore_job *j = arg;
	j->ret = snapshot_restore(fx.img, &j->c, &j->t);
	pthread_barrier_wait(&restored);
	pthread_barrier_wait(&released);
	return NULL;
}

static void test_restore_copies_serve_own_channel(void **state)
{
	(void)state;
	struct restore_job jobs[COPIES];
	pthread_t th[COPIES];
	char ids[COPIES][128];
	pthread_barrier_init(&restored, NULL, COPIES + 1);
	pthread_barrier_init(&released, NULL, COPIES + 1);
	for (int i = 0; i < COPIES; i++)
		assert_int_equal(pthread_create(&th[i], NULL, restore_thread, &jobs[i]), 0);
	pthread_barrier_wait(&restored);
	for (int i = 0; i < COPIES; i++) {
		if (jobs[i].ret)
			fail_msg("restore %d: %s", i, strerror(-jobs[i].ret));
		printf("copy %d: pid %d, criu %.1f ms (4 at once)\n", i, (int)jobs[i].c.pid,
		       jobs[i].t.criu_ms);
	}
	for (int i = 0; i < COPIES; i++) {
		send_ctl(jobs[i].c.channel_fd, CH_RESTORED);
		wait_ready(jobs[i].c.channel_fd, ids[i], sizeof(ids[i]));
		assert_string_not_equal(ids[i], fx.ready_id);
		/* its own pid namespace; its own mount namespace when instances
		 * get one */
		assert_int_not_equal(ns_of(jobs[i].c.pid, "pid"), ns_of(0, "pid"));
		if (instance_clone_flags & CLONE_NEWNS)
			assert_int_not_equal(ns_of(jobs[i].c.pid, "mnt"), ns_of(0, "mnt"));
		for (int j = 0; j < i; j++) {
			assert_string_not_equal(ids[i], ids[j]);
			assert_int_not_equal(jobs[i].c.pid, jobs[j].c.pid);
			assert_int_not_equal(ns_of(jobs[i].c.pid, "pid"), ns_of(jobs[j].c.pid, "pid"));
		}
	}
	for (int i = COPIES - 1; i >= 0; i--) { /* answer in another order */
		char body[32];
		snprintf(body, sizeof(body), "copy-%d", i);
		check_request(jobs[i].c.channel_fd, 100 + (uint64_t)i, body, ids[i]);
	}
	for (int i = 0; i < COPIES; i++)
		instance_destroy(&jobs[i].c);
	pthread_barrier_wait(&released);
	for (int i = 0; i < COPIES; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	pthread_barrier_destroy(&restored);
	pthread_barrier_destroy(&released);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Restore latency, one at a time: criu exec->exit, and restore call to the
 * copy's CH_READY (after CH_RESTORED) and its first response. */
/* TIMING_RUNS restores of img each way, alternating: criu exec'd per
 * restore (THAW_CRIU_WORKERS=0 at the time) and a criu started ahead
 * (criu_swrk.h); both served, and the figures side by side. */
static void measure_restores(const char *img, const char *label)
{
	double criu[2][TIMING_RUNS], ready[2][TIMING_RUNS], first[2][TIMING_RUNS];
	unsigned n[2] = { 0, 0 };
	for (int i = 0; i < 2 * TIMING_RUNS; i++) {
		int ahead = !(i % 2); /* first: THAW_CRIU_WORKERS is read at the first take */
		if (ahead)
			unsetenv("THAW_CRIU_WORKERS");
		else
			setenv("THAW_CRIU_WORKERS", "0", 1);
		struct instance_proc c;
		struct snapshot_timing t;
		char id[128];
		double t0 = now_ms();
		assert_int_equal(snapshot_restore(img, &c, &t), 0);
		send_ctl(c.channel_fd, CH_RESTORED);
		wait_ready(c.channel_fd, id, sizeof(id));
		double r = now_ms() - t0;
		check_request(c.channel_fd, 7, "timing", id);
		double f = now_ms() - t0;
		instance_destroy(&c);
		if (!ahead)
			assert_int_equal(t.criu_ahead, 0);
		else if (!t.criu_ahead) /* none was ready yet (the first one) */
			continue;
		unsigned k = n[t.criu_ahead]++;
		criu[t.criu_ahead][k] = t.criu_ms;
		ready[t.criu_ahead][k] = r;
		first[t.criu_ahead][k] = f;
		usleep(3000); /* the worker that served it is replaced */
	}
	unsetenv("THAW_CRIU_WORKERS");
	/* started ahead, they serve nearly every restore */
	assert_true(n[1] >= TIMING_RUNS - 2);
	for (int a = 0; a < 2; a++) {
		qsort(criu[a], n[a], sizeof(double), cmp_double);
		qsort(ready[a], n[a], sizeof(double), cmp_double);
		qsort(first[a], n[a], sizeof(double), cmp_double);
		printf("restore x%u, %s, %s, images on /dev/shm: criu p50 %.1f ms (min %.1f, max %.1f); "
		       "to CH_READY p50 %.1f ms; to first response p50 %.1f ms (max %.1f)\n",
		       n[a], label, a ? "criu started ahead" : "criu exec'd", criu[a][n[a] / 2],
		       criu[a][0], criu[a][n[a] - 1], ready[a][n[a] / 2], first[a][n[a] / 2],
		       first[a][n[a] - 1]);
	}
}

/* Starts a new echo instance (with the caller's instance_clone_flags and
 * cwd), waits for READY and dumps it into img. Returns snapshot_dump's. */
static int dump_new_echo(const char *img, struct snapshot_info *info)
{
	struct config cfg = { .name = "echo", .dir = fx.root, .handler = fx.so,
			      .instance_concurrency = 1, .memory_mb = 512, .timeout_s = 3 };
	struct instance_proc p;
	int r = instance_spawn(fx.host, &cfg, &p);
	if (r)
		return r;
	char id[128];
	wait_ready(p.channel_fd, id, sizeof(id));
	r = snapshot_dump(&p, img, NULL, info);
	instance_destroy(&p);
	return r;
}

static const char *mntns_label(int flags)
{
	return flags & CLONE_NEWNS ? "own mount namespace" : "no mount namespace";
}

static void test_restore_timing(void **state)
{
	(void)state;
	measure_restores(fx.img, mntns_label(instance_clone_flags));
}

/* The same with the other choice of mount namespace (instances have none
 * by default; with one, CRIU re-creates its mount tree): snapshots work
 * either way, and the figures show what the choice costs. */
static void test_restore_timing_other_mntns(void **state)
{
	(void)state;
	char img[160];
	snprintf(img, sizeof(img), "%s/img-other-mnt", fx.root);
	assert_int_equal(mkdir(img, 0700), 0);
	int saved = instance_clone_flags;
	instance_clone_flags ^= CLONE_NEWNS;
	const char *label = mntns_label(instance_clone_flags);
	struct snapshot_info info;
	int r = dump_new_echo(img, &info);
	instance_clone_flags = saved;
	assert_int_equal(r, 0);
	printf("dump, %s: %.1f ms\n", label, info.dump_ms);
	measure_restores(img, label);
}

/* st_dev of path as pid sees it (through /proc/PID/root), or 0. */
static dev_t dev_seen_by(pid_t pid, const char *path)
{
	char p[128];
	struct stat st;
	snprintf(p, sizeof(p), "/proc/%d/root%s", (int)pid, path);
	return stat(p, &st) ? 0 : st.st_dev;
}

/* Private scratch (proc/scratch.h): an instance with its own /tmp and
 * /dev/shm is dumped by a criu that joins its namespace, and each copy is
 * restored into a fresh one of its own (not the daemon's, not another
 * copy's) with no mount tree rebuilt: the figures show what it costs
 * against test_restore_timing's. */
static void test_restore_timing_scratch(void **state)
{
	(void)state;
	char img[160];
	snprintf(img, sizeof(img), "%s/img-scratch", fx.root);
	assert_int_equal(mkdir(img, 0700), 0);
	char cwd[PATH_MAX]; /* as the daemon keeps its own (a checkout under /tmp in CI) */
	const char *keep[] = { fx.root, SNAPSHOT_CRIU_RUNDIR, getcwd(cwd, sizeof(cwd)), NULL };
	if (scratch_configure(64, keep))
		skip(); /* said why: mounts refused here */
	struct snapshot_info info;
	int r = dump_new_echo(img, &info);
	assert_int_equal(r, 0);
	printf("dump, private scratch: %.1f ms\n", info.dump_ms);
	struct instance_proc a, b;
	assert_int_equal(snapshot_restore(img, &a, NULL), 0);
	assert_int_equal(snapshot_restore(img, &b, NULL), 0);
	dev_t ours = dev_seen_by(getpid(), "/tmp"), da = dev_seen_by(a.pid, "/tmp"),
	      db = dev_seen_by(b.pid, "/tmp");
	assert_true(a.scratch && b.scratch);
	assert_true(da && db && da != ours && db != ours && da != db);
	instance_destroy(&a);
	instance_destroy(&b);
	measure_restores(img, "private scratch");
	assert_int_equal(scratch_configure(0, NULL), 0);
}

/* A copy of the snapshot with one byte flipped, one file missing, or no
 * manifest is rejected with a reason. */
static void test_verify_rejects_corruption(void **state)
{
	(void)state;
	char dir[160], cmd[400], why[256], victim[256] = "";
	snprintf(dir, sizeof(dir), "%s/bad", fx.root);
	snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", fx.img, dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(snapshot_verify(dir, why, sizeof(why)), 0);

	/* flip a byte in the middle of the biggest pages image */
	snprintf(cmd, sizeof(cmd), "ls -S '%s' | grep '^pages-' | head -n 1", dir);
	FILE *ls = popen(cmd, "r");
	assert_non_null(ls);
	assert_non_null(fgets(victim, sizeof(victim), ls));
	pclose(ls);
	victim[strcspn(victim, "\n")] = '\0';
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, victim);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	unsigned char byte;
	off_t at = st.st_size / 2;
	assert_int_equal(pread(fd, &byte, 1, at), 1);
	byte ^= 0x40;
	assert_int_equal(pwrite(fd, &byte, 1, at), 1);
	close(fd);
	assert_int_equal(snapshot_verify(dir, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, victim));
	printf("corrupt byte: %s\n", why);

	/* a missing image file */
	byte ^= 0x40;
	fd = open(path, O_RDWR);
	assert_int_equal(pwrite(fd, &byte, 1, at), 1);
	close(fd);
	assert_int_equal(snapshot_verify(dir, why, sizeof(why)), 0);
	snprintf(path, sizeof(path), "%s/inventory.img", dir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(snapshot_verify(dir, why, sizeof(why)), -EBADMSG);
	printf("missing file: %s\n", why);

	/* no manifest: a dump that never finished */
	snprintf(path, sizeof(path), "%s/%s", dir, MANIFEST_NAME);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(snapshot_verify(dir, why, sizeof(why)), -EBADMSG);
	printf("no manifest: %s\n", why);
}

/* A proc.crtools left in the instance's cwd by a dump that was killed
 * (criu's parasite makes it there) is removed before the next dump, which
 * then succeeds; on main before this it failed with EEXIST for good. */
static void test_dump_clears_stale_proc_mount(void **state)
{
	(void)state;
	char cwd[PATH_MAX], img[200], stale[200];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(img, sizeof(img), "%s/img-stale", fx.root);
	snprintf(stale, sizeof(stale), "%s/proc.crtools", fx.root);
	assert_int_equal(mkdir(img, 0700), 0);
	assert_int_equal(mkdir(stale, 0700), 0);
	struct timespec old[2] = { { time(NULL) - 60, 0 }, { time(NULL) - 60, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, stale, old, 0), 0);
	assert_int_equal(chdir(fx.root), 0); /* the instance's cwd is ours */
	struct snapshot_info info;
	int r = dump_new_echo(img, &info);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(r, 0);
	assert_int_equal(access(stale, F_OK), -1);
}

/* The copy's stdout/stderr reach the fresh log pipe: a malformed frame makes
 * the host log an error there and exit. */
static void test_restored_copy_logs_to_new_pipe(void **state)
{
	(void)state;
	struct instance_proc c;
	assert_int_equal(snapshot_restore(fx.img, &c, NULL), 0);
	struct channel_hdr h = { .type = 99, .len = 0, .id = 0 };
	assert_int_equal(write(c.channel_fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	char log[4096];
	size_t got = 0;
	while (got < sizeof(log) - 1) { /* until EOF: the copy exits */
		struct pollfd pfd = { .fd = c.log_fd, .events = POLLIN };
		assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
		ssize_t n = read(c.log_fd, log + got, sizeof(log) - 1 - got);
		assert_true(n >= 0);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	log[got] = '\0';
	if (!strstr(log, "malformed frame"))
		fail_msg("log of the copy: '%s'", log);
	instance_destroy(&c);
}

/* Children of this process other than the criu swrk workers that
 * criu_swrk.c keeps started (each "criu swrk N"), counted through
 * /proc/self/task/.../children. */
static int other_children(void)
{
	int n = 0;
	DIR *tasks = opendir("/proc/self/task");
	assert_non_null(tasks);
	struct dirent *t;
	while ((t = readdir(tasks))) {
		if (t->d_name[0] == '.')
			continue;
		char path[300];
		snprintf(path, sizeof(path), "/proc/self/task/%s/children", t->d_name);
		FILE *f = fopen(path, "r");
		int pid;
		while (f && fscanf(f, "%d", &pid) == 1) {
			char cmd[PATH_MAX] = "";
			snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
			int fd = open(path, O_RDONLY);
			ssize_t len = fd >= 0 ? read(fd, cmd, sizeof(cmd) - 1) : -1;
			if (fd >= 0)
				close(fd);
			/* argv[1] follows argv[0]'s NUL */
			size_t a0 = len > 0 ? strnlen(cmd, (size_t)len) : 0;
			if (len <= 0 || (ssize_t)a0 + 5 > len || strcmp(cmd + a0 + 1, "swrk"))
				n++;
		}
		if (f)
			fclose(f);
	}
	closedir(tasks);
	return n;
}

/* A restore that criu refuses returns its error, leaves out empty and no
 * process behind. */
static void test_failed_restore_unwinds(void **state)
{
	(void)state;
	char dir[160], cmd[700];
	snprintf(dir, sizeof(dir), "%s/broken", fx.root);
	snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s' && rm '%s/pstree.img'", fx.img, dir, dir);
	assert_int_equal(system(cmd), 0);
	struct instance_proc c;
	assert_int_equal(snapshot_restore(dir, &c, NULL), -EIO);
	assert_int_equal(c.pid, 0);
	assert_int_equal(c.pidfd, -1);
	assert_int_equal(c.channel_fd, -1);
	assert_int_equal(other_children(), 0); /* no child left */
}

/* The subproc wrapper kills and reaps a child past its deadline, and keeps
 * the tail of what it printed. */
static void test_subproc_kills_on_timeout(void **state)
{
	(void)state;
	char *argv[] = { "/bin/sh", "-c", "echo started; exec sleep 10", NULL };
	struct subproc_result res;
	double t0 = now_ms();
	assert_int_equal(subproc_run(argv, NULL, 0, 200, &res), -ETIMEDOUT);
	assert_true(now_ms() - t0 < 2000);
	assert_true(WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGKILL);
	char line[64];
	subproc_last_line(&res, NULL, line, sizeof(line));
	assert_string_equal(line, "started");
	subproc_result_fini(&res);

	char *missing[] = { "/nonexistent/criu", NULL };
	assert_int_equal(subproc_run(missing, NULL, 0, 200, &res), -ENOENT);
	subproc_result_fini(&res);
}

/* The memory cgroup folder of this process (v1's memory line, else v2's),
 * in root, or "" when there is none. */
static void own_memory_group(char *out, size_t len)
{
	char line[512];
	out[0] = '\0';
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = '\0';
		if (!strcmp(a + 1, "memory") && !access("/sys/fs/cgroup/memory", F_OK))
			snprintf(out, len, "/sys/fs/cgroup/memory%s", b + 1);
		else if (!a[1] && !out[0])
			snprintf(out, len, "/sys/fs/cgroup%s", b + 1);
	}
	fclose(f);
}

/* subproc_run_in: the child joins the groups before it execs (what criu
 * restores is born there), keeps the fds it is handed, and a group it
 * cannot join fails the call before the program runs. */
static void test_subproc_joins_cgroup(void **state)
{
	(void)state;
	struct subproc_result res;
	char *argv[] = { "/bin/sh", "-c", "echo ran >&5; cat /proc/self/cgroup", NULL };
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	const struct subproc_fd fds[] = { { p[1], 5 } };
	const char *bad[] = { "/nonexistent/cgroup", NULL };
	const struct subproc_in bad_in = { .join = bad };
	assert_int_equal(subproc_run_in(argv, fds, 1, &bad_in, 2000, &res), -ENOENT);
	subproc_result_fini(&res);
	assert_int_equal(other_children(), 0); /* reaped */

	char parent[400], dir[480];
	own_memory_group(parent, sizeof(parent));
	snprintf(dir, sizeof(dir), "%s/thaw-test-join-%d", parent, (int)getpid());
	if (!parent[0] || mkdir(dir, 0755)) {
		close(p[0]);
		close(p[1]);
		skip(); /* no memory cgroup to make here */
	}
	const char *join[] = { dir, NULL };
	const struct subproc_in in = { .join = join };
	int ret = subproc_run_in(argv, fds, 1, &in, 5000, &res);
	char out[16] = "";
	ssize_t n = read(p[0], out, sizeof(out) - 1);
	assert_int_equal(ret, 0);
	assert_true(n == 4 && !strcmp(out, "ran\n"));
	assert_non_null(res.out);
	assert_non_null(strstr(res.out, strrchr(dir, '/'))); /* cat ran inside it */
	subproc_result_fini(&res);
	assert_int_equal(rmdir(dir), 0); /* empty again: the child is gone */
	close(p[0]);
	close(p[1]);
}

static void test_missing_criu_is_reported(void **state)
{
	(void)state;
	char why[256];
	setenv("THAW_CRIU", "/nonexistent", 1);
	assert_int_equal(snapshot_probe(why, sizeof(why)), -ENOTSUP);
	assert_string_equal(why, "snapshots off: criu not found at /nonexistent; run make deps");
	struct instance_proc c;
	assert_int_equal(snapshot_restore("/nonexistent/img", &c, NULL), -ENOTSUP);
	assert_int_equal(c.pidfd, -1);
	unsetenv("THAW_CRIU");
	if (!no_criu[0]) /* decided before the test from the environment */
		assert_int_equal(snapshot_probe(why, sizeof(why)), 0);
}

static void skip_no_criu(void **state)
{
	(void)state;
	SKIP_BECAUSE("%s", no_criu);
}

int main(void)
{
	/* where snapshots cannot work (no root, no CRIU) the CRIU cases skip,
	 * counted; the others still run */
	if (!snapshot_probe(no_criu, sizeof(no_criu)))
		no_criu[0] = '\0';
	const char *build = getenv("THAW_BUILD") ? getenv("THAW_BUILD") : "build";
	char need[2][256];
	snprintf(need[0], sizeof(need[0]), "%s/thaw-instance", build);
	snprintf(need[1], sizeof(need[1]), "%s/handlers/echo.so", build);
	for (int i = 0; i < 2; i++)
		if (access(need[i], R_OK)) {
			printf("%s missing: run make\n", need[i]);
			return 1;
		}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify_accepts_fresh_snapshot),
		cmocka_unit_test(test_restore_copies_serve_own_channel),
		cmocka_unit_test(test_restore_timing),
		cmocka_unit_test(test_restore_timing_other_mntns),
		cmocka_unit_test(test_restore_timing_scratch),
		cmocka_unit_test(test_verify_rejects_corruption),
		cmocka_unit_test(test_restored_copy_logs_to_new_pipe),
		cmocka_unit_test(test_dump_clears_stale_proc_mount),
		cmocka_unit_test(test_failed_restore_unwinds),
		cmocka_unit_test(test_subproc_kills_on_timeout),
		cmocka_unit_test(test_subproc_joins_cgroup),
		cmocka_unit_test(test_missing_criu_is_reported),
	};
	size_t n_criu = sizeof(tests) / sizeof(tests[0]) - 2; /* all but the last two */
	for (size_t i = 0; no_criu[0] && i < n_criu; i++)
		tests[i].test_func = skip_no_criu;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
