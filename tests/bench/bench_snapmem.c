/*
 * bench_snapmem: mapped snapshot memory (docs/snapshots.md), measured on the
 * snapshot API itself (no daemon: its own share is in restore.py's figures).
 *
 * For echo and the bigstate handler with BENCH_SNAPMEM_SIZES MiB of
 * anonymous state (default "0,1024,4096"; 0 is echo):
 *   cold      instance_spawn -> READY -> first response (GET /), n times
 *   dump      memory moved into files (snapshot_mem_move), criu dump,
 *             manifest; image size without the memory files; the files' size
 *   restore   snapshot_restore -> CH_RESTORED -> READY -> first response,
 *             BENCH_SNAPMEM_N (20) times one at a time with a criu started
 *             ahead (the default) and as many with criu exec'd per restore
 *             (THAW_CRIU_WORKERS=0), alternating; then 4 at once
 *   pass      a full pass over the state (GET /pass): warm instance vs the
 *             first request of a restored copy, and the same after
 *             MADV_POPULATE_READ in the background (snapshotMemory.populate:
 *             GET / first, /pass 300 ms later)
 *   memory    4 restored copies alive, each having run /check (full pass and
 *             a write per MiB): Pss and Private per copy
 * The snapshot folder is on a tmpfs mounted for the run with huge=within_size
 * (BENCH_SNAPMEM_HUGE=0: without).
 *
 * Needs root, the CRIU of make deps and $THAW_BUILD (default build); exit 77
 * otherwise. Prints one table in the form docs/benchmarks.md uses.
 */
#include "tests/unit/chanio.h"
#include "common/channel.h"
#include "common/config.h"
#include "proc/instance.h"
#include "common/mem.h"
#include "snapshot/snapmem.h"
#include "snapshot/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 120000
#define MAXN 64
#define COPIES 4

static char root[64], host[128], so_echo[128], so_big[128];

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_snapmem: %s\n", what);
	exit(1);
}

static void send_buf(int fd, struct buf *b)
{
	if (chan_write(fd, b))
		die("write to instance");
	buf_free(b);
}

static char *read_frame(int fd, struct channel_hdr *h)
{
	char *payload = chan_read(fd, h, WAIT_MS);
	if (!payload)
		die("instance silent, or its channel closed or malformed");
	return payload;
}

static void wait_ready(int fd)
{
	struct channel_hdr h;
	char *pl = read_frame(fd, &h);
	if (h.type != CH_READY) {
		fprintf(stderr, "expected READY: %s\n", pl);
		exit(1);
	}
	free(pl);
}

/* GET path; returns the body (caller frees). */
static char *get(int fd, const char *path)
{
	struct buf b = { 0 };
	channel_put_request(&b, 1, "GET", path, strlen(path), "", 0, "bench", 0, NULL, 0, NULL, 0);
	send_buf(fd, &b);
	struct channel_hdr h;
	char *pl = read_frame(fd, &h);
	struct channel_response res;
	if (h.type != CH_RESPONSE || channel_decode_response(pl, h.len, &res) || res.status != 200)
		die("bad response");
	char *body = xstrdup(res.body);
	free(pl);
	return body;
}

static double pass_ms(int fd)
{
	char *b = get(fd, "/pass");
	char *p = strstr(b, "\"pass_ms\":");
	if (!strstr(b, "\"sum_ok\":true") || !p)
		die("state checksum wrong");
	double v = strtod(p + 10, NULL);
	free(b);
	return v;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, int n, int p)
{
	qsort(v, (size_t)n, sizeof(double), cmp);
	int i = (p * n + 99) / 100 - 1;
	return v[i < 0 ? 0 : i];
}

static void spawn(const struct config *cfg, struct instance_proc *p)
{
	if (instance_spawn(host, cfg, p))
		die("instance_spawn");
	wait_ready(p->channel_fd);
}

/* Returns whether a criu started ahead served it (criu_swrk.h). */
static int restore(const char *img, struct instance_proc *c, double *criu)
{
	struct snapshot_timing t;
	if (snapshot_restore(img, c, &t))
		die("snapshot_restore");
	struct buf b = { 0 };
	channel_put_hdr(&b, CH_RESTORED, 0, 0);
	send_buf(c->channel_fd, &b);
	wait_ready(c->channel_fd);
	if (criu)
		*criu = t.criu_ms;
	return t.criu_ahead;
}

static void sizes(const char *dir, uint64_t *img, uint64_t *mem)
{
	*img = *mem = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0))
			continue;
		if (!strncmp(e->d_name, SNAPSHOT_MEM_PREFIX, strlen(SNAPSHOT_MEM_PREFIX)))
			*mem += (uint64_t)st.st_size;
		else
			*img += (uint64_t)st.st_size;
	}
	if (d)
		closedir(d);
}

static void smaps(pid_t pid, double *pss, double *priv)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "re");
	*pss = *priv = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long kb;
		if (sscanf(line, "Pss: %lu", &kb) == 1)
			*pss = kb / 1024.0;
		else if (sscanf(line, "Private_Clean: %lu", &kb) == 1 ||
			 sscanf(line, "Private_Dirty: %lu", &kb) == 1)
			*priv += kb / 1024.0;
	}
	if (f)
		fclose(f);
}

struct par {
	const char *img;
	struct instance_proc c;
	double ms;
};

/* A restored copy keeps the parent-death signal of the instance (SIGKILL,
 * proc/instance.h), tied to the thread that started criu: each restoring
 * thread waits here until its copy was destroyed. */
static pthread_barrier_t measured, released;

static void *par_restore(void *arg)
{
	struct par *p = arg;
	double t0 = now_ms();
	restore(p->img, &p->c, NULL);
	free(get(p->c.channel_fd, "/"));
	p->ms = now_ms() - t0;
	pthread_barrier_wait(&measured);
	pthread_barrier_wait(&released);
	return NULL;
}

static void bench(long mb, int n)
{
	char img[160], env_mb[32], label[64];
	struct config_kv env[1] = { { "STATE_MB", env_mb } };
	snprintf(env_mb, sizeof(env_mb), "%ld", mb);
	struct config cfg = { .name = mb ? "bigstate" : "echo", .dir = root,
			      .handler = mb ? so_big : so_echo, .instance_concurrency = 1,
			      .memory_mb = (uint32_t)(mb * 2 + 512), .timeout_s = 60,
			      .env = mb ? env : NULL, .n_env = mb ? 1 : 0 };
	snprintf(label, sizeof(label), mb ? "bigstate %ld MiB" : "echo", mb);
	snprintf(img, sizeof(img), "%s/img-%ld", root, mb);
	if (mkdir(img, 0700))
		die("mkdir img");

	/* cold starts: a few for big states (each builds the whole state) */
	int n_cold = mb >= 1024 ? 3 : n;
	double cold[MAXN];
	for (int i = 0; i < n_cold; i++) {
		struct instance_proc p;
		double t0 = now_ms();
		spawn(&cfg, &p);
		free(get(p.channel_fd, "/"));
		cold[i] = now_ms() - t0;
		instance_destroy(&p);
	}

	/* the warmed instance: warm pass, then the snapshot */
	struct instance_proc w;
	spawn(&cfg, &w);
	double warm = 0;
	if (mb) {
		pass_ms(w.channel_fd);
		warm = pass_ms(w.channel_fd);
	}
	struct snapshot_mem_opts mo = { .mapped = true, .min_bytes = 2u << 20, .populate = true };
	struct snapshot_info si;
	if (snapshot_dump(&w, img, &mo, &si))
		die("snapshot_dump");
	struct snapshot_mem_info mi = si.mem;
	instance_destroy(&w);
	uint64_t isz, msz;
	sizes(img, &isz, &msz);

	/* restores one at a time, alternating: criu exec'd (THAW_CRIU_WORKERS=0
	 * at the time) and started ahead, the default (docs/criu.md) */
	double first[2][MAXN], criu[2][MAXN];
	int k[2] = { 0, 0 };
	for (int i = 0; k[0] < n || k[1] < n; i++) {
		int ahead = !(i % 2); /* first: THAW_CRIU_WORKERS is read at the first take */
		if (k[ahead] == n || i > 4 * n)
			break;
		if (ahead)
			unsetenv("THAW_CRIU_WORKERS");
		else
			setenv("THAW_CRIU_WORKERS", "0", 1);
		struct instance_proc c;
		double t0 = now_ms(), cm;
		int served = restore(img, &c, &cm);
		free(get(c.channel_fd, "/"));
		double ms = now_ms() - t0;
		instance_destroy(&c);
		if (served == ahead) {
			first[ahead][k[ahead]] = ms;
			criu[ahead][k[ahead]++] = cm;
		}
		usleep(3000); /* the worker that served it is replaced */
	}
	unsetenv("THAW_CRIU_WORKERS");
	if (!k[0] || !k[1])
		die("no restore of one kind");
	/* 4 at once */
	struct par par[COPIES];
	pthread_t th[COPIES];
	double conc[COPIES];
	pthread_barrier_init(&measured, NULL, COPIES + 1);
	pthread_barrier_init(&released, NULL, COPIES + 1);
	for (int i = 0; i < COPIES; i++) {
		par[i].img = img;
		pthread_create(&th[i], NULL, par_restore, &par[i]);
	}
	pthread_barrier_wait(&measured);
	for (int i = 0; i < COPIES; i++)
		conc[i] = par[i].ms;
	/* first pass after restore; and with populate; memory per copy */
	double after = 0, populated = 0, pss = 0, priv = 0;
	if (mb) {
		struct instance_proc c;
		restore(img, &c, NULL);
		after = pass_ms(c.channel_fd);
		instance_destroy(&c);
		restore(img, &c, NULL);
		free(get(c.channel_fd, "/")); /* populate starts after this response */
		usleep(300000);
		populated = pass_ms(c.channel_fd);
		instance_destroy(&c);
		double ps[COPIES], pv[COPIES];
		for (int i = 0; i < COPIES; i++) {
			free(get(par[i].c.channel_fd, "/check"));
			smaps(par[i].c.pid, &ps[i], &pv[i]);
		}
		pss = pct(ps, COPIES, 50);
		priv = pct(pv, COPIES, 50);
	}
	for (int i = 0; i < COPIES; i++)
		instance_destroy(&par[i].c);
	pthread_barrier_wait(&released);
	for (int i = 0; i < COPIES; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&measured);
	pthread_barrier_destroy(&released);

	printf("| %s | %.1f / %.1f (n=%d) | %.1f / %.1f (n=%d) | %.1f / %.1f (n=%d) | %.1f / %.1f | "
	       "%.1f / %.1f | %.2gx | %.2f MiB | %.0f MiB | %.0f + %.0f + %.0f ms |",
	       label, pct(cold, n_cold, 50), pct(cold, n_cold, 99), n_cold, pct(first[1], k[1], 50),
	       pct(first[1], k[1], 99), k[1], pct(first[0], k[0], 50), pct(first[0], k[0], 99), k[0],
	       pct(criu[1], k[1], 50), pct(criu[0], k[0], 50), pct(conc, COPIES, 50),
	       pct(conc, COPIES, 99), pct(cold, n_cold, 50) / pct(first[1], k[1], 50),
	       (double)isz / 1048576.0,
	       (double)msz / 1048576.0, mi.ms, si.dump_ms, si.manifest_ms);
	if (mb)
		printf(" %.1f / %.1f / %.1f ms | %.1f / %.2f MiB |\n", warm, after, populated, pss, priv);
	else
		printf(" - | - |\n");
	fflush(stdout);
}

static void cleanup(void)
{
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s/* 2>/dev/null", root);
	if (system(cmd)) {
	}
	umount2(root, MNT_DETACH);
	rmdir(root);
}

int main(void)
{
	char why[256];
	signal(SIGPIPE, SIG_IGN); /* a dead instance: die() says where */
	if (snapshot_probe(why, sizeof(why))) {
		printf("bench_snapmem: skipped: %s\n", why);
		return 77;
	}
	const char *build = getenv("THAW_BUILD") ? getenv("THAW_BUILD") : "build";
	const char *sizes_s = getenv("BENCH_SNAPMEM_SIZES") ? getenv("BENCH_SNAPMEM_SIZES") : "0,1024,4096";
	int n = getenv("BENCH_SNAPMEM_N") ? atoi(getenv("BENCH_SNAPMEM_N")) : 20;
	bool huge = !getenv("BENCH_SNAPMEM_HUGE") || strcmp(getenv("BENCH_SNAPMEM_HUGE"), "0");
	if (n < 1 || n > MAXN)
		n = 20;
	snprintf(root, sizeof(root), "/tmp/thaw-bench-snapmem-XXXXXX");
	if (!mkdtemp(root))
		die("mkdtemp");
	if (mount("thaw-bench", root, "tmpfs", 0, huge ? "mode=0700,size=90%,huge=within_size" : "mode=0700,size=90%"))
		die("mount tmpfs");
	atexit(cleanup);
	snprintf(host, sizeof(host), "%s/thaw-instance", root);
	snprintf(so_echo, sizeof(so_echo), "%s/echo.so", root);
	snprintf(so_big, sizeof(so_big), "%s/bigstate.so", root);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp %s/thaw-instance %s/handlers/echo.so %s/handlers/bigstate.so %s/",
		 build, build, build, root);
	if (system(cmd))
		die("copy the build");
	printf("bench_snapmem: snapshot folder on a tmpfs %s; n=%d restores per handler; times in ms\n\n",
	       huge ? "with huge=within_size" : "with 4 KiB pages", n);
	printf("| handler | cold p50 / p99 | restore -> first response p50 / p99 | "
	       "the same, criu exec'd | criu restore p50: ahead / exec'd | "
	       "4 at once p50 / p99 | cold/restore | image (without memory files) | memory files | "
	       "dump: move + criu + manifest | full pass: warm / first after restore / after populate | "
	       "per copy (4 alive): Pss / Private |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (const char *s = sizes_s; *s;) {
		long mb = strtol(s, (char **)&s, 10);
		bench(mb, n);
		if (*s == ',')
			s++;
		else
			break;
	}
	return 0;
}
