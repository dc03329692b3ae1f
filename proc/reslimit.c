#define LOG_PREFIX "reslimit: "
#include "proc/reslimit.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool v2, initialized;
/* the daemon's parent groups; "" where that limit is off. With v2 both
 * name the same group. */
static char mem_parent[RESLIMIT_PATH_MAX - 16], cpu_parent[RESLIMIT_PATH_MAX - 16];

static int write_file(const char *dir, const char *name, const char *value)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, value, strlen(value));
	int err = n < 0 ? -errno : 0;
	close(fd);
	return err;
}

static ssize_t read_file(const char *dir, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n;
}

/* Whether word is one of the items of list, separated by any of seps. */
static bool has_word(const char *list, const char *word, const char *seps)
{
	size_t wl = strlen(word);
	for (const char *s = list; *s; s += strcspn(s, seps), s += strspn(s, seps))
		if (strcspn(s, seps) == wl && !strncmp(s, word, wl))
			return true;
	return false;
}

/* The daemon's own group in the hierarchy of controller ("" for v2); a v1
 * hierarchy may carry several ("cpu,cpuacct"). */
static bool own_group(const char *controller, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return false;
	char line[PATH_MAX];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = '\0';
		b[strcspn(b + 1, "\n") + 1] = '\0';
		if (controller[0] ? has_word(a + 1, controller, ",") : !a[1]) {
			snprintf(out, len, "%s", strcmp(b + 1, "/") ? b + 1 : "");
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* Kills what is in group dir (a dead daemon's instance, now an orphan) and
 * removes it once empty (a killed task leaves its group a moment later:
 * up to ~1 s). True when it is gone. */
static bool sweep_group(const char *dir)
{
	char procs[4096];
	for (int tries = 0; tries < 20; tries++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return true;
		if (read_file(dir, "cgroup.procs", procs, sizeof(procs)) < 0)
			return false;
		for (char *p = procs; *p;) {
			long pid = strtol(p, &p, 10);
			if (pid > 1)
				kill((pid_t)pid, SIGKILL);
			p += strspn(p, "\n");
			if (*p && (*p < '0' || *p > '9'))
				break;
		}
		usleep(50000);
	}
	return false;
}

/* Groups beside ours that a daemon killed without cleaning up (kill -9)
 * left: thaw-PID where no process PID exists any more. Their instances
 * (orphans under init) are killed and the groups removed, so neither pile
 * up over restarts. A live daemon's group is never touched. */
static void sweep_dead_daemons(const char *ours)
{
	char dir[RESLIMIT_PATH_MAX], sub[RESLIMIT_PATH_MAX + 256];
	snprintf(dir, sizeof(dir), "%s", ours);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return;
	*slash = '\0';
	DIR *d = opendir(dir);
	if (!d)
		return;
	unsigned swept = 0, examined = 0;
	struct dirent *e;
	while ((e = readdir(d)) && examined < 4096) {
		char *end;
		if (strncmp(e->d_name, "thaw-", 5))
			continue;
		examined++;
		long pid = strtol(e->d_name + 5, &end, 10);
		if (*end || pid <= 0 || pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
		DIR *g = opendir(sub);
		if (g) {
			struct dirent *i;
			char inst[sizeof(sub) + 256];
			while ((i = readdir(g)))
				if (i->d_type == DT_DIR && i->d_name[0] != '.') {
					snprintf(inst, sizeof(inst), "%s/%s", sub, i->d_name);
					sweep_group(inst);
				}
			closedir(g);
		}
		swept += sweep_group(sub);
	}
	closedir(d);
	if (swept)
		pr_info("removed %u cgroup(s) of daemons that died without cleaning up, with the "
			"instances left in them, beside %s", swept, ours);
}

/* Makes the daemon's group under hierarchy root; parent gets it or "". */
static void make_parent(const char *root, const char *controller, char *parent, size_t len)
{
	char rel[512];
	parent[0] = '\0';
	if (!own_group(controller, rel, sizeof(rel)))
		return;
	int n = snprintf(parent, len, "%s%s/thaw-%d", root, rel, (int)getpid());
	if (n < 0 || (size_t)n >= len) {
		pr_info("cgroup path too long: %s%s", root, rel);
		parent[0] = '\0';
	} else if (mkdir(parent, 0755) < 0 && errno != EEXIST) {
		pr_info("cannot make cgroup %s: %s", parent, strerror(errno));
		parent[0] = '\0';
	}
}

bool reslimit_init(void)
{
	char ctl[256];
	initialized = true;
	if (read_file("/sys/fs/cgroup", "cgroup.controllers", ctl, sizeof(ctl)) > 0 &&
	    has_word(ctl, "memory", " \n")) {
		v2 = true;
		make_parent("/sys/fs/cgroup", "", mem_parent, sizeof(mem_parent));
		if (mem_parent[0] && write_file(mem_parent, "cgroup.subtree_control", "+memory"))
			mem_parent[0] = '\0';
		if (mem_parent[0] && has_word(ctl, "cpu", " \n") &&
		    !write_file(mem_parent, "cgroup.subtree_control", "+cpu"))
			snprintf(cpu_parent, sizeof(cpu_parent), "%s", mem_parent);
	} else {
		make_parent("/sys/fs/cgroup/memory", "memory", mem_parent, sizeof(mem_parent));
		make_parent("/sys/fs/cgroup/cpu", "cpu", cpu_parent, sizeof(cpu_parent));
	}
	if (mem_parent[0])
		sweep_dead_daemons(mem_parent);
	if (cpu_parent[0] && strcmp(cpu_parent, mem_parent))
		sweep_dead_daemons(cpu_parent);
	const char *v = v2 ? "v2" : "v1";
	if (mem_parent[0])
		pr_info("memory limits by cgroup %s: %s", v, mem_parent);
	else
		pr_info("memory limits by RLIMIT_DATA: no memory cgroup");
	if (cpu_parent[0])
		pr_info("cpu limits by cgroup %s: %s", v, cpu_parent);
	else
		pr_warn("cpu limits off: no cpu cgroup controller; instances are not throttled to "
			"fc.yaml cpu");
	return mem_parent[0] != '\0';
}

bool reslimit_use_rlimit(void)
{
#ifdef __SANITIZE_ADDRESS__
	return false; /* ASan's shadow mappings count against RLIMIT_DATA */
#else
	return initialized && mem_parent[0] == '\0';
#endif
}

uint64_t reslimit_cpu_quota_us(double cpu)
{
	uint64_t q = (uint64_t)llround(cpu * RESLIMIT_CPU_PERIOD_US);
	return q < 1000 ? 1000 : q; /* the kernel's smallest quota */
}

struct setting {
	const char *file, *value; /* value NULL: skipped */
	bool optional;		  /* a failed write is not an error */
};

/* Makes parent/iPID with the settings written and moves pid into it, or
 * for pid 0 parent/cN that an instance about to start joins itself; out
 * gets its path. Returns 0 or -errno, the group then removed. */
static int join_group(const char *parent, pid_t pid, const struct setting *s, size_t n,
		      char out[RESLIMIT_PATH_MAX])
{
	static atomic_uint seq;
	char dir[RESLIMIT_PATH_MAX], v[16];
	int ret = 0;
	if (pid)
		snprintf(dir, sizeof(dir), "%s/i%d", parent, (int)pid);
	else
		snprintf(dir, sizeof(dir), "%s/c%u", parent, atomic_fetch_add(&seq, 1));
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		ret = -errno;
	for (size_t i = 0; i < n && !ret; i++)
		if (s[i].value && (ret = write_file(dir, s[i].file, s[i].value)) && s[i].optional)
			ret = 0;
	snprintf(v, sizeof(v), "%d", (int)pid);
	if (!ret && pid)
		ret = write_file(dir, "cgroup.procs", v);
	if (ret) {
		pr_warn("cgroup %s: %s: instance %d runs without this limit", dir, strerror(-ret),
			(int)pid);
		rmdir(dir);
		return ret;
	}
	memcpy(out, dir, sizeof(dir));
	return 0;
}

int reslimit_apply(pid_t pid, uint32_t memory_mb, double cpu, struct reslimit_groups *g)
{
	char mem[32], quota[48];
	int ret = 0;
	g->mem[0] = g->cpu[0] = '\0';
	snprintf(mem, sizeof(mem), "%llu", (unsigned long long)memory_mb << 20);
	if (v2) {
		snprintf(quota, sizeof(quota), "%llu %d",
			 (unsigned long long)reslimit_cpu_quota_us(cpu), RESLIMIT_CPU_PERIOD_US);
		const struct setting s[] = {{"memory.max", mem, false},
					    {"memory.swap.max", "0", true},
					    {"cpu.max", cpu_parent[0] ? quota : NULL, false}};
		return mem_parent[0] ? join_group(mem_parent, pid, s, 3, g->mem) : 0;
	}
	if (mem_parent[0]) {
		const struct setting s[] = {{"memory.limit_in_bytes", mem, false}};
		ret = join_group(mem_parent, pid, s, 1, g->mem);
	}
	if (cpu_parent[0]) {
		char period[16];
		snprintf(period, sizeof(period), "%d", RESLIMIT_CPU_PERIOD_US);
		snprintf(quota, sizeof(quota), "%llu",
			 (unsigned long long)reslimit_cpu_quota_us(cpu));
		const struct setting s[] = {{"cpu.cfs_period_us", period, false},
					    {"cpu.cfs_quota_us", quota, false}};
		int err = join_group(cpu_parent, pid, s, 2, g->cpu);
		ret = ret ? ret : err;
	}
	return ret;
}

int reslimit_prepare(uint32_t memory_mb, double cpu, struct reslimit_groups *g)
{
	return reslimit_apply(0, memory_mb, cpu, g);
}

static void remove_group(const char *path);

int reslimit_prepare_open(struct reslimit_groups *g)
{
	g->mem[0] = g->cpu[0] = '\0';
	if (!mem_parent[0])
		return -ENOENT;
	int ret = join_group(mem_parent, 0, NULL, 0, g->mem);
	if (!ret && cpu_parent[0] && strcmp(cpu_parent, mem_parent) &&
	    (ret = join_group(cpu_parent, 0, NULL, 0, g->cpu))) {
		remove_group(g->mem);
		g->mem[0] = '\0';
	}
	return ret;
}

int reslimit_limit_memory(const struct reslimit_groups *g, uint32_t memory_mb)
{
	char mem[32];
	snprintf(mem, sizeof(mem), "%llu", (unsigned long long)memory_mb << 20);
	if (!g->mem[0])
		return -ENOENT;
	int ret = write_file(g->mem, v2 ? "memory.max" : "memory.limit_in_bytes", mem);
	if (!ret && v2)
		write_file(g->mem, "memory.swap.max", "0"); /* optional, as in reslimit_apply */
	return ret;
}

int reslimit_limit_cpu(const struct reslimit_groups *g, double cpu)
{
	char quota[48], period[16];
	unsigned long long q = (unsigned long long)reslimit_cpu_quota_us(cpu);
	if (v2) {
		if (!cpu_parent[0] || !g->mem[0])
			return cpu_parent[0] ? -ENOENT : 0;
		snprintf(quota, sizeof(quota), "%llu %d", q, RESLIMIT_CPU_PERIOD_US);
		return write_file(g->mem, "cpu.max", quota);
	}
	if (!g->cpu[0])
		return cpu_parent[0] ? -ENOENT : 0;
	snprintf(period, sizeof(period), "%d", RESLIMIT_CPU_PERIOD_US);
	snprintf(quota, sizeof(quota), "%llu", q);
	int ret = write_file(g->cpu, "cpu.cfs_period_us", period);
	return ret ? ret : write_file(g->cpu, "cpu.cfs_quota_us", quota);
}

int reslimit_move(pid_t pid, const char *dir)
{
	char v[16];
	snprintf(v, sizeof(v), "%d", (int)pid);
	return write_file(dir, "cgroup.procs", v);
}

bool reslimit_oom_killed(const struct reslimit_groups *g)
{
	char buf[512];
	if (!g->mem[0])
		return false;
	if (read_file(g->mem, v2 ? "memory.events" : "memory.oom_control", buf, sizeof(buf)) <= 0)
		return false;
	const char *k = strstr(buf, "oom_kill ");
	return k && atol(k + 9) > 0;
}

int reslimit_memory_open(const struct reslimit_groups *g)
{
	char path[PATH_MAX];
	if (!g->mem[0])
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/%s", g->mem,
		 v2 ? "memory.current" : "memory.usage_in_bytes");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int64_t reslimit_memory_read(int fd)
{
	char buf[32];
	/* at offset 0 the cgroup file is produced afresh on each read */
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (end == buf || errno || v < 0)
		return -EINVAL;
	return v;
}

static void remove_group(const char *path)
{
	if (path[0] && rmdir(path) < 0 && errno != ENOENT)
		pr_debug("rmdir %s: %s", path, strerror(errno));
}

void reslimit_release(const struct reslimit_groups *g)
{
	remove_group(g->mem);
	remove_group(g->cpu);
}

void reslimit_fini(void)
{
	if (mem_parent[0])
		rmdir(mem_parent);
	if (cpu_parent[0] && strcmp(cpu_parent, mem_parent))
		rmdir(cpu_parent);
}
