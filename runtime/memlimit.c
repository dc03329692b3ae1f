#define LOG_PREFIX "memlimit: "
#include "memlimit.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool v2, initialized;
static char parent[2048]; /* empty: no cgroup, use rlimits */

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

/* The daemon's own group in hierarchy `controller` ("" for v2). */
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
		if (!strcmp(a + 1, controller)) {
			snprintf(out, len, "%s", b + 1);
			found = true;
		}
	}
	fclose(f);
	return found;
}

bool memlimit_init(void)
{
	char rel[1024], buf[256];
	initialized = true;
	if (read_file("/sys/fs/cgroup", "cgroup.controllers", buf, sizeof(buf)) > 0 &&
	    strstr(buf, "memory") && own_group("", rel, sizeof(rel))) {
		v2 = true;
		snprintf(parent, sizeof(parent), "/sys/fs/cgroup%s/thaw-%d", rel, (int)getpid());
	} else if (own_group("memory", rel, sizeof(rel))) {
		snprintf(parent, sizeof(parent), "/sys/fs/cgroup/memory%s/thaw-%d",
			 strcmp(rel, "/") ? rel : "", (int)getpid());
	}
	if (parent[0] && mkdir(parent, 0755) < 0 && errno != EEXIST) {
		pr_info("memory limits by RLIMIT_DATA: cannot make %s: %s", parent, strerror(errno));
		parent[0] = '\0';
	}
	if (parent[0] && v2)
		write_file(parent, "cgroup.subtree_control", "+memory");
	if (parent[0])
		pr_info("memory limits by cgroup %s: %s", v2 ? "v2" : "v1", parent);
	else
		pr_info("memory limits by RLIMIT_DATA: no memory cgroup");
	return parent[0] != '\0';
}

bool memlimit_use_rlimit(void)
{
#ifdef __SANITIZE_ADDRESS__
	return false; /* ASan's shadow mappings count against RLIMIT_DATA */
#else
	return initialized && parent[0] == '\0';
#endif
}

int memlimit_apply(pid_t pid, uint32_t memory_mb, char *path, size_t len)
{
	path[0] = '\0';
	if (!parent[0])
		return 0;
	char dir[PATH_MAX], v[32];
	snprintf(dir, sizeof(dir), "%s/i%d", parent, (int)pid);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(v, sizeof(v), "%llu", (unsigned long long)memory_mb << 20);
	int ret = write_file(dir, v2 ? "memory.max" : "memory.limit_in_bytes", v);
	if (!ret && v2)
		write_file(dir, "memory.swap.max", "0");
	snprintf(v, sizeof(v), "%d", (int)pid);
	if (!ret)
		ret = write_file(dir, "cgroup.procs", v);
	if (ret) {
		pr_warn("cgroup %s: %s: instance %d runs without a memory limit", dir, strerror(-ret),
			(int)pid);
		rmdir(dir);
		return ret;
	}
	snprintf(path, len, "%s", dir);
	return 0;
}

bool memlimit_oom_killed(const char *path)
{
	char buf[512];
	if (!path[0])
		return false;
	if (v2) {
		if (read_file(path, "memory.events", buf, sizeof(buf)) <= 0)
			return false;
		const char *k = strstr(buf, "oom_kill ");
		return k && atol(k + 9) > 0;
	}
	if (read_file(path, "memory.oom_control", buf, sizeof(buf)) <= 0)
		return false;
	const char *k = strstr(buf, "oom_kill ");
	return k && atol(k + 9) > 0;
}

void memlimit_release(const char *path)
{
	if (path[0] && rmdir(path) < 0 && errno != ENOENT)
		pr_debug("rmdir %s: %s", path, strerror(errno));
}

void memlimit_fini(void)
{
	if (parent[0])
		rmdir(parent);
}
