#define LOG_PREFIX "snapshot memory: "
#include "snapshot/snapmem.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define REPORT_MAX 8192
#define TMPFS_MAGIC_ 0x01021994

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int snapshot__mem_request(const char *path, const char *dir, const struct snapshot_mem_opts *o)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "dir %s\nmin %" PRIu64 "\npopulate %d\n", dir, o->mapped ? o->min_bytes : 0,
		o->populate ? 1 : 0);
	int ret = fclose(f) ? -errno : 0;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

/* Reads the instance's report from fifo until its writer closes it. */
static int read_report(int fifo, int pidfd, char *buf, size_t cap)
{
	size_t len = 0;
	double deadline = now_ms() + SNAPSHOT_MEM_TIMEOUT_MS;
	for (;;) {
		int left = (int)(deadline - now_ms());
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pf[2] = { { .fd = fifo, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };
		int n = poll(pf, pidfd >= 0 ? 2 : 1, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (pf[0].revents & (POLLIN | POLLHUP)) {
			ssize_t k = read(fifo, buf + len, cap - 1 - len);
			if (k > 0) {
				len += (size_t)k;
				if (len < cap - 1)
					continue;
			}
			if (k < 0 && errno != EAGAIN && errno != EINTR)
				return -errno;
			if (k == 0 || len >= cap - 1) {
				buf[len] = '\0';
				return 0;
			}
		}
		if (pidfd >= 0 && (pf[1].revents & POLLIN))
			return -ESRCH; /* the instance died */
	}
}

int snapshot_mem_move(const struct instance_proc *p, const char *dir,
		      const struct snapshot_mem_opts *o, struct snapshot_mem_info *info)
{
	double t0 = now_ms();
	*info = (struct snapshot_mem_info){ 0 };
	char req[128], ack[128], adir[PATH_MAX];
	unsigned long long ino = (unsigned long long)p->channel_ino;
	if (!realpath(dir, adir))
		return -errno;
	if (!p->channel_ino) { /* a custom runtime: its agents (snapmem_agent.c) */
		int ret = snapshot__mem_move_tree(p, adir, o, info);
		info->ms = now_ms() - t0;
		return ret;
	}
	snprintf(req, sizeof(req), CHANNEL_MEMREQ_FMT, ino);
	snprintf(ack, sizeof(ack), CHANNEL_MEMACK_FMT, ino);
	unlink(ack);
	int ret = 0, fifo = -1;
	if (mkfifo(ack, 0600) || (fifo = open(ack, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		ret = -errno;
		pr_perror("fifo %s", ack);
		goto out;
	}
	if ((ret = snapshot__mem_request(req, adir, o))) {
		pr_err("write %s: %s", req, strerror(-ret));
		goto out;
	}
	siginfo_t si = { 0 };
	si.si_signo = CHANNEL_MEM_SIGNAL;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	if (syscall(SYS_pidfd_send_signal, p->pidfd, CHANNEL_MEM_SIGNAL, &si, 0) < 0) {
		ret = -errno;
		pr_perror("signal pid %d", (int)p->pid);
		goto out;
	}
	char *rep = xmalloc(REPORT_MAX);
	ret = read_report(fifo, p->pidfd, rep, REPORT_MAX);
	if (ret) {
		pr_err("pid %d gave no report: %s; its memory is copied by CRIU", (int)p->pid,
		       strerror(-ret));
		free(rep);
		goto out;
	}
	int ok = 0;
	char *save = NULL;
	for (char *line = strtok_r(rep, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "ok ", 3) &&
		    sscanf(line + 3, "%u %" SCNu64, &info->moved, &info->bytes) == 2) {
			ok = 1;
		} else if (!strncmp(line, "skip ", 5)) {
			info->skipped++;
			pr_warn("pid %d: mapping %s stays anonymous (CRIU copies it)", (int)p->pid,
				line + 5);
		} else {
			pr_err("pid %d: %s", (int)p->pid, line);
		}
	}
	free(rep);
	if (!ok)
		ret = -EBADMSG;
	char huge[64];
	if (!o->mapped)
		pr_info("pid %d: snapshotMemory.mapped is false: CRIU copies its anonymous memory",
			(int)p->pid);
	else if (info->moved && !snapshot_mem_huge(adir, huge, sizeof(huge)))
		pr_info("%s is not on a tmpfs with huge pages: memory files use 4 KiB pages "
			"(first touch after a restore is slower)", adir);
out:
	if (fifo >= 0)
		close(fifo);
	unlink(ack);
	unlink(req);
	info->ms = now_ms() - t0;
	return ret;
}

/* The mount options of the file system dir is on (from mountinfo: the
 * longest mount point that is a prefix of dir's real path), or -1. */
static int mount_opts(const char *dir, char *fstype, size_t ftlen, char *opts, size_t olen)
{
	char real[PATH_MAX];
	if (!realpath(dir, real))
		return -errno;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0, best = 0;
	int found = -ENOENT;
	while (getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX], ft[64], src[PATH_MAX], so[1024];
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
		    sscanf(dash + 3, "%63s %4095s %1023s", ft, src, so) != 3)
			continue;
		size_t n = strlen(mp);
		bool prefix = !strcmp(mp, "/") ||
			      (!strncmp(real, mp, n) && (real[n] == '/' || real[n] == '\0'));
		if (!prefix || n < best)
			continue;
		best = n;
		snprintf(fstype, ftlen, "%s", ft);
		snprintf(opts, olen, "%s", so);
		found = 0;
	}
	free(line);
	fclose(f);
	return found;
}

const char *snapshot_mem_huge(const char *dir, char *buf, size_t len)
{
	char ft[64], opts[1024];
	if (mount_opts(dir, ft, sizeof(ft), opts, sizeof(opts)) || strcmp(ft, "tmpfs"))
		return NULL;
	char *h = strstr(opts, "huge=");
	if (!h || !strncmp(h, "huge=never", 10) || !strncmp(h, "huge=deny", 9))
		return NULL;
	size_t n = strcspn(h, ",");
	snprintf(buf, len, "%.*s", (int)n, h);
	return buf;
}

int snapshot_mem_mount(char *why, size_t len)
{
	const char *mnt = CHANNEL_MEM_TMPFS;
	struct statfs sf;
	struct stat st, parent;
	if (mkdir(mnt, 0700) && errno != EEXIST) {
		int err = errno;
		snprintf(why, len, "mkdir %s: %s", mnt, strerror(err));
		return -err;
	}
	if (!stat(mnt, &st) && !stat("/dev/shm", &parent) && st.st_dev != parent.st_dev &&
	    !statfs(mnt, &sf) && sf.f_type == TMPFS_MAGIC_) {
		char h[64];
		const char *huge = snapshot_mem_huge(mnt, h, sizeof(h));
		snprintf(why, len, "%s already mounted (%s)", mnt, huge ? huge : "4 KiB pages");
		return 0;
	}
	/* size: tmpfs's default, half of RAM, would refuse a large state that
	 * fits in memory; pages are only used when written */
	if (!mount("thaw-mem", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=90%,huge=within_size")) {
		snprintf(why, len, "mounted a tmpfs at %s with huge=within_size", mnt);
		return 0;
	}
	int err = errno;
	if (err == EINVAL && !mount("thaw-mem", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=90%")) {
		snprintf(why, len,
			 "mounted a tmpfs at %s without huge pages (huge=within_size refused: %s): "
			 "4 KiB pages, first touch after a restore is slower",
			 mnt, strerror(err));
		return 0;
	}
	snprintf(why, len, "cannot mount a tmpfs at %s: %s", mnt, strerror(err));
	return -err;
}
