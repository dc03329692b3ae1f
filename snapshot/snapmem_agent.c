/* Mapped snapshot memory of a custom runtime (snapmem.h): every process of
 * the server's tree that loaded the agent (agent/agent.h) is asked at once
 * and the reports are read with one deadline. */
#define LOG_PREFIX "snapshot memory: "
#include "snapshot/snapmem.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64
#define REPORT_MAX 8192

/* One process of the tree. */
struct member {
	pid_t pid;   /* host pid */
	pid_t nspid; /* in the instance's pid namespace */
	char comm[32];
	bool agent;  /* libthaw-agent.so is mapped */
	int pidfd, fifo;
	char ack[128];
	char *rep;   /* its report so far */
	size_t len;
	bool done;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* pid's pid-namespace pid (the last NSpid field) and command name. */
static int read_status(pid_t pid, pid_t *nspid, char *comm, size_t len)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	*nspid = 0;
	while (getline(&line, &cap, f) > 0) {
		if (!strncmp(line, "Name:", 5)) {
			char *v = line + 5 + strspn(line + 5, " \t");
			snprintf(comm, len, "%.*s", (int)strcspn(v, "\n"), v);
		} else if (!strncmp(line, "NSpid:", 6)) {
			char *last = strrchr(line, '\t');
			*nspid = (pid_t)atoi(last ? last + 1 : line + 6);
		}
	}
	free(line);
	fclose(f);
	return *nspid > 0 ? 0 : -ENOENT;
}

static bool has_agent(pid_t pid)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	bool found = false;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0)
		found = strstr(line, "/" CHANNEL_AGENT_SO "\n") != NULL;
	free(line);
	fclose(f);
	return found;
}

/* The processes in root's pid namespace (all of its tree: an orphan there
 * is re-parented to root), root first. Returns how many went into m. */
static unsigned tree_of(pid_t root, struct member *m, unsigned cap)
{
	char path[64];
	struct stat ns, st;
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)root);
	if (stat(path, &ns))
		return 0;
	unsigned n = 0;
	m[n++] = (struct member){ .pid = root, .fifo = -1, .pidfd = -1 };
	DIR *d = opendir("/proc");
	if (!d)
		return n;
	struct dirent *e;
	while ((e = readdir(d)) && n < cap) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0 || pid == root)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/ns/pid", pid);
		if (!stat(path, &st) && st.st_ino == ns.st_ino && st.st_dev == ns.st_dev)
			m[n++] = (struct member){ .pid = (pid_t)pid, .fifo = -1, .pidfd = -1 };
	}
	closedir(d);
	return n;
}

/* Asks m (agent loaded) to move; 0 or -errno with nothing left open. */
static int ask(struct member *m, pid_t root)
{
	m->fifo = m->pidfd = -1;
	snprintf(m->ack, sizeof(m->ack), CHANNEL_AGENTACK_FMT, (int)root, (int)m->nspid);
	unlink(m->ack);
	if (mkfifo(m->ack, 0600) || (m->fifo = open(m->ack, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
		return -errno;
	if ((m->pidfd = (int)syscall(SYS_pidfd_open, m->pid, 0)) < 0)
		return -errno;
	siginfo_t si = { 0 };
	si.si_signo = CHANNEL_MEM_SIGNAL;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = (int)root;
	if (syscall(SYS_pidfd_send_signal, m->pidfd, CHANNEL_MEM_SIGNAL, &si, 0) < 0)
		return -errno;
	m->rep = xmalloc(REPORT_MAX);
	return 0;
}

/* Reads every asked member's report until each writer closes its FIFO, the
 * process dies, or the deadline passes; returns how many are not done. */
static unsigned read_reports(struct member *m, unsigned n)
{
	double deadline = now_ms() + SNAPSHOT_MEM_TIMEOUT_MS;
	for (;;) {
		struct pollfd pf[2 * MAX_PROCS];
		unsigned idx[2 * MAX_PROCS], k = 0, left = 0;
		for (unsigned i = 0; i < n; i++) {
			if (!m[i].rep || m[i].done)
				continue;
			left++;
			pf[k] = (struct pollfd){ .fd = m[i].fifo, .events = POLLIN };
			idx[k++] = i;
			pf[k] = (struct pollfd){ .fd = m[i].pidfd, .events = POLLIN };
			idx[k++] = i;
		}
		int wait = (int)(deadline - now_ms());
		if (!left || wait <= 0)
			return left;
		int got = poll(pf, k, wait);
		if (got < 0 && errno != EINTR)
			return left;
		for (unsigned j = 0; got > 0 && j < k; j++) {
			struct member *x = &m[idx[j]];
			if (x->done || !pf[j].revents)
				continue;
			if (pf[j].fd == x->pidfd) {
				x->done = true; /* died: what it said is all there is */
				x->rep[x->len] = '\0';
				snprintf(x->rep + x->len, REPORT_MAX - x->len, "error: the process died\n");
				continue;
			}
			ssize_t r = read(x->fifo, x->rep + x->len, REPORT_MAX - 1 - x->len);
			if (r > 0)
				x->len += (size_t)r;
			if (r == 0 || x->len >= REPORT_MAX - 1) {
				x->rep[x->len] = '\0';
				x->done = true;
			}
		}
	}
}

/* Adds m's report to info; logs its errors. Whether it said "ok". */
static bool take_report(struct member *m, struct snapshot_mem_info *info)
{
	bool ok = false;
	char *save = NULL;
	for (char *line = strtok_r(m->rep, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned moved;
		uint64_t bytes;
		if (!strncmp(line, "ok ", 3) && sscanf(line + 3, "%u %" SCNu64, &moved, &bytes) == 2) {
			info->moved += moved;
			info->bytes += bytes;
			ok = true;
		} else if (!strncmp(line, "stopped ", 8)) {
			pr_info("pid %d (%s): agent %s", (int)m->pid, m->comm, line);
		} else if (!strncmp(line, "skip ", 5)) {
			info->skipped++;
			pr_warn("pid %d (%s): mapping %s stays anonymous (CRIU copies it)",
				(int)m->pid, m->comm, line + 5);
		} else {
			pr_err("pid %d (%s): agent: %s; CRIU copies its memory", (int)m->pid, m->comm,
			       line);
		}
	}
	return ok;
}

int snapshot__mem_move_tree(const struct instance_proc *p, const char *adir,
			    const struct snapshot_mem_opts *o, struct snapshot_mem_info *info)
{
	struct member *m = xcalloc(MAX_PROCS, sizeof(*m));
	unsigned n = tree_of(p->pid, m, MAX_PROCS), with = 0, answered = 0;
	char req[128];
	snprintf(req, sizeof(req), CHANNEL_AGENTREQ_FMT, (int)p->pid);
	int ret = snapshot__mem_request(req, adir, o);
	if (ret) {
		pr_err("write %s: %s", req, strerror(-ret));
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		if (read_status(m[i].pid, &m[i].nspid, m[i].comm, sizeof(m[i].comm)))
			continue; /* gone */
		if (!(m[i].agent = has_agent(m[i].pid))) {
			pr_warn("pid %d (%s) has no %s loaded (static, or LD_PRELOAD cleared): "
				"CRIU copies its memory", (int)m[i].pid, m[i].comm, CHANNEL_AGENT_SO);
			continue;
		}
		with++;
		if ((ret = ask(&m[i], p->pid)))
			pr_err("pid %d (%s): cannot ask its agent: %s; CRIU copies its memory",
			       (int)m[i].pid, m[i].comm, strerror(-ret));
	}
	ret = 0;
	if (!with) {
		pr_err("no process of instance pid %d loaded %s: CRIU copies all its memory",
		       (int)p->pid, CHANNEL_AGENT_SO);
		ret = -ENOENT;
		goto out;
	}
	unsigned late = read_reports(m, n);
	for (unsigned i = 0; i < n; i++) {
		if (!m[i].rep)
			continue;
		if (!m[i].done) {
			pr_err("pid %d (%s): agent gave no report in %d s; CRIU copies what stayed "
			       "anonymous", (int)m[i].pid, m[i].comm, SNAPSHOT_MEM_TIMEOUT_MS / 1000);
			continue;
		}
		answered += take_report(&m[i], info);
	}
	if (late || answered < with)
		ret = late ? -ETIMEDOUT : -EBADMSG;
	pr_info("instance pid %d: %u of %u processes have the agent, %u moved their memory",
		(int)p->pid, with, n, answered);
out:
	for (unsigned i = 0; i < n; i++) {
		if (m[i].fifo >= 0)
			close(m[i].fifo);
		if (m[i].pidfd >= 0)
			close(m[i].pidfd);
		if (m[i].ack[0])
			unlink(m[i].ack);
		free(m[i].rep);
	}
	free(m);
	unlink(req);
	return ret;
}
