/*
 * snapshot/snapmem.c with host/snapmem.c: a bigstate instance is
 * asked to move its memory into files (no CRIU involved), then checked from
 * outside (/proc/PID/maps, the files) and from inside (its state checksum,
 * its writes). Needs $THAW_BUILD/thaw-instance and handlers/bigstate.so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/chanio.h"
#include "common/channel.h"
#include "common/config.h"
#include "proc/instance.h"
#include "common/mem.h"
#include "snapshot/snapmem.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 20000

static char root[64], host[256], so[256];

static void send_buf(int fd, struct buf *b)
{
	assert_int_equal(chan_write(fd, b), 0);
	buf_free(b);
}

static char *read_frame(int fd, struct channel_hdr *h)
{
	char *payload = chan_read(fd, h, WAIT_MS);
	assert_non_null(payload);
	return payload;
}

/* GET path; the body (caller frees). */
static char *get(int fd, const char *path)
{
	struct buf b = { 0 };
	channel_put_request(&b, 1, "GET", path, strlen(path), "", 0, "t", 0, NULL, 0, NULL, 0);
	send_buf(fd, &b);
	struct channel_hdr h;
	char *pl = read_frame(fd, &h);
	struct channel_response res;
	assert_int_equal(h.type, CH_RESPONSE);
	assert_int_equal(channel_decode_response(pl, h.len, &res), 0);
	assert_int_equal(res.status, 200);
	char *body = xstrdup(res.body);
	free(pl);
	return body;
}

/* A READY bigstate instance with mb MiB of state (alloc: NULL, "sdk"). */
static void start(struct instance_proc *p, const char *mb, const char *alloc)
{
	struct config_kv env[2] = { { "STATE_MB", (char *)mb }, { "STATE_ALLOC", (char *)alloc } };
	struct config cfg = { .name = "bigstate", .dir = root, .handler = so,
			      .instance_concurrency = 1, .memory_mb = 512, .timeout_s = 10,
			      .env = env, .n_env = alloc ? 2 : 1 };
	assert_int_equal(instance_spawn(host, &cfg, p), 0);
	struct channel_hdr h;
	char *pl = read_frame(p->channel_fd, &h);
	if (h.type != CH_READY)
		fail_msg("instance not ready: %s", pl);
	free(pl);
}

/* Lines of /proc/PID/maps naming a memory file. */
static int mapped_files(pid_t pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "/" SNAPSHOT_MEM_PREFIX) != NULL;
	fclose(f);
	return n;
}

/* Number and total size of memory files in dir; each must be read-only. */
static int files_in(const char *dir, uint64_t *bytes)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	*bytes = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (strncmp(e->d_name, SNAPSHOT_MEM_PREFIX, strlen(SNAPSHOT_MEM_PREFIX)))
			continue;
		assert_int_equal(fstatat(dirfd(d), e->d_name, &st, 0), 0);
		assert_int_equal(st.st_mode & 0777, 0400);
		*bytes += (uint64_t)st.st_size;
		n++;
	}
	closedir(d);
	return n;
}

static char *new_dir(const char *name)
{
	char *dir = xasprintf("%s/%s", root, name);
	assert_int_equal(mkdir(dir, 0700), 0);
	return dir;
}

static void check_state(int fd)
{
	char *body = get(fd, "/check");
	if (!strstr(body, "\"sum_ok\":true") || !strstr(body, "\"own_ok\":true"))
		fail_msg("state wrong after the move: %s", body);
	free(body);
}

static void test_move_makes_state_file_backed(void **state)
{
	(void)state;
	struct instance_proc p;
	start(&p, "16", NULL);
	char *dir = new_dir("moved");
	struct snapshot_mem_opts o = { .mapped = true, .min_bytes = 2u << 20 };
	struct snapshot_mem_info mi;
	assert_int_equal(snapshot_mem_move(&p, dir, &o, &mi), 0);
	assert_true(mi.moved >= 1);
	assert_true(mi.bytes >= 16u << 20);
	assert_int_equal(mi.skipped, 0);
	uint64_t bytes;
	assert_true(files_in(dir, &bytes) >= 1);
	assert_true(bytes >= 16u << 20);
	assert_true(mapped_files(p.pid) >= 1);
	check_state(p.channel_fd); /* the instance serves on, same state */
	check_state(p.channel_fd);
	instance_destroy(&p);
	free(dir);
}

static void test_switch_off_moves_nothing(void **state)
{
	(void)state;
	struct instance_proc p;
	start(&p, "16", NULL);
	char *dir = new_dir("off");
	struct snapshot_mem_opts o = { .mapped = false, .min_bytes = 2u << 20 };
	struct snapshot_mem_info mi;
	assert_int_equal(snapshot_mem_move(&p, dir, &o, &mi), 0);
	assert_int_equal(mi.moved, 0);
	uint64_t bytes;
	assert_int_equal(files_in(dir, &bytes), 0);
	assert_int_equal(mapped_files(p.pid), 0);
	check_state(p.channel_fd);
	instance_destroy(&p);
	free(dir);
}

static void test_mappings_below_threshold_stay(void **state)
{
	(void)state;
	struct instance_proc p;
	start(&p, "16", NULL);
	char *dir = new_dir("small");
	struct snapshot_mem_opts o = { .mapped = true, .min_bytes = 64u << 20 };
	struct snapshot_mem_info mi;
	assert_int_equal(snapshot_mem_move(&p, dir, &o, &mi), 0);
	assert_int_equal(mi.moved, 0);
	assert_int_equal(mapped_files(p.pid), 0);
	instance_destroy(&p);
	free(dir);
}

static void test_state_alloc_moves_with_switch_off(void **state)
{
	(void)state;
	struct instance_proc p;
	start(&p, "8", "sdk");
	char *dir = new_dir("sdk");
	struct snapshot_mem_opts o = { .mapped = false };
	struct snapshot_mem_info mi;
	assert_int_equal(snapshot_mem_move(&p, dir, &o, &mi), 0);
	assert_int_equal(mi.moved, 1);
	assert_int_equal(mi.bytes, 8u << 20);
	assert_int_equal(mapped_files(p.pid), 1);
	check_state(p.channel_fd);
	instance_destroy(&p);
	free(dir);
}

static void test_dead_instance_gives_no_report(void **state)
{
	(void)state;
	struct instance_proc p;
	start(&p, "4", NULL);
	kill(p.pid, SIGKILL);
	char *dir = new_dir("dead");
	struct snapshot_mem_opts o = { .mapped = true, .min_bytes = 2u << 20 };
	struct snapshot_mem_info mi;
	int r = snapshot_mem_move(&p, dir, &o, &mi);
	assert_true(r == -ESRCH || r == -EPERM);
	assert_true(mi.ms < 5000);
	instance_destroy(&p);
	free(dir);
}

static void test_huge_pages_detected_from_mount_options(void **state)
{
	(void)state;
	char buf[64];
	assert_null(snapshot_mem_huge("/proc", buf, sizeof(buf))); /* not a tmpfs */
	/* root (of this test's tmpfs under /dev/shm) says what /dev/shm says:
	 * this only checks the answer is well formed */
	const char *h = snapshot_mem_huge(root, buf, sizeof(buf));
	assert_true(!h || !strncmp(h, "huge=", 5));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	chmod(path, 0700);
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	const char *build = getenv("THAW_BUILD") ? getenv("THAW_BUILD") : "build";
	snprintf(host, sizeof(host), "%s/thaw-instance", build);
	snprintf(so, sizeof(so), "%s/handlers/bigstate.so", build);
	if (access(host, X_OK) || access(so, R_OK)) {
		fprintf(stderr, "needs %s and %s\n", host, so);
		return -1;
	}
	snprintf(root, sizeof(root), "/dev/shm/thaw-test-snapmem-XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (root[0])
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

int main(void)
{
	/* the request file and FIFO live in CRIU's run folder, root's */
	if ((mkdir("/dev/shm/thaw-criu", 0700) && errno != EEXIST) ||
	    access("/dev/shm/thaw-criu", W_OK)) {
		printf("skip: /dev/shm/thaw-criu is not writable here (snapshots need root)\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_move_makes_state_file_backed),
		cmocka_unit_test(test_switch_off_moves_nothing),
		cmocka_unit_test(test_mappings_below_threshold_stay),
		cmocka_unit_test(test_state_alloc_moves_with_switch_off),
		cmocka_unit_test(test_dead_instance_gives_no_report),
		cmocka_unit_test(test_huge_pages_detected_from_mount_options),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
