#define LOG_PREFIX "fnlog: "
#include "daemon/fnlog.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ROTATE (8ull << 20)
#define MAX_READ (64ull << 20) /* bound on what one read scans */

static uint64_t rotate_bytes = DEFAULT_ROTATE;
static char logs_dir[PATH_MAX]; /* STATE/logs */

static void path_of(char *out, size_t len, const char *name, const char *suffix)
{
	if (snprintf(out, len, "%s/%s.log%s", logs_dir, name, suffix) >= (int)len)
		out[0] = '\0'; /* too long a state folder: no file (an open fails) */
}

void fnlog_setup(const char *state_dir)
{
	const char *env = getenv("THAW_LOG_ROTATE_BYTES");
	if (env && *env) {
		char *end;
		unsigned long long v = strtoull(env, &end, 10);
		if (*end || v < 1024)
			pr_warn("THAW_LOG_ROTATE_BYTES=%s ignored (bytes, at least 1024)", env);
		else
			rotate_bytes = v;
	}
	snprintf(logs_dir, sizeof(logs_dir), "%s/logs", state_dir);
	if (mkdir(logs_dir, 0700) < 0 && errno != EEXIST)
		pr_perror("function logs: %s", logs_dir);
}

void fnlog_init_name(struct fnlog *l)
{
	pthread_mutex_init(&l->lock, NULL);
	l->fd = -1;
}

static int open_current(struct fnlog *l, const char *name)
{
	char path[PATH_MAX];
	path_of(path, sizeof(path), name, "");
	l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (l->fd < 0) {
		int err = -errno;
		if (!l->failed)
			pr_perror("%s (its lines are dropped until it opens)", path);
		l->failed = true;
		return err;
	}
	struct stat st;
	l->size = fstat(l->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	return 0;
}

static void rotate(struct fnlog *l, const char *name)
{
	char cur[PATH_MAX], old[PATH_MAX];
	path_of(cur, sizeof(cur), name, "");
	path_of(old, sizeof(old), name, ".1");
	close(l->fd);
	l->fd = -1;
	if (rename(cur, old) < 0)
		pr_perror("rotating %s", cur);
	open_current(l, name);
}

void fnlog_write(struct fnlog *l, const char *name, unsigned version, int pid,
		 const char *line, size_t len)
{
	char head[96];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int hn = snprintf(head, sizeof(head), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ v%u pid %d: ",
			  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			  tm.tm_sec, ts.tv_nsec / 1000000, version, pid);
	char out[sizeof(head) + 4096 + 1];
	if (len > sizeof(out) - (size_t)hn - 1)
		len = sizeof(out) - (size_t)hn - 1;
	memcpy(out, head, (size_t)hn);
	memcpy(out + hn, line, len);
	size_t n = (size_t)hn + len;
	out[n++] = '\n';
	pthread_mutex_lock(&l->lock);
	if (l->closed || (l->fd < 0 && open_current(l, name)))
		goto unlock;
	ssize_t w = write(l->fd, out, n);
	if (w != (ssize_t)n) {
		if (!l->failed)
			pr_perror("%s: writing its log (lines are dropped until writes work)", name);
		l->failed = true;
	} else {
		l->failed = false;
	}
	if (w > 0)
		l->size += (uint64_t)w;
	if (l->size >= rotate_bytes)
		rotate(l, name);
unlock:
	pthread_mutex_unlock(&l->lock);
}

bool fnlog_echo(struct fnlog *l, uint64_t *dropped)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	*dropped = 0;
	pthread_mutex_lock(&l->lock);
	if (ts.tv_sec != l->echo_second) {
		*dropped = l->echo_dropped;
		l->echo_second = ts.tv_sec;
		l->echo_lines = 0;
		l->echo_dropped = 0;
	}
	bool ok = l->echo_lines < FNLOG_ECHO_LINES;
	if (ok)
		l->echo_lines++;
	else
		l->echo_dropped++;
	pthread_mutex_unlock(&l->lock);
	return ok;
}

void fnlog_close(struct fnlog *l)
{
	pthread_mutex_lock(&l->lock);
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->closed = true;
	pthread_mutex_unlock(&l->lock);
}

static bool matches(const char *line, size_t len, const char *grep, size_t glen)
{
	if (!glen)
		return true;
	return len >= glen && memmem(line, len, grep, glen) != NULL;
}

/* The newest `tail` lines of path after byte offset that match, appended to
 * out; *found counts them, *size is the file's size up to its last whole
 * line. A missing file reads as empty. */
static int read_tail(const char *path, size_t tail, const char *grep, uint64_t offset,
		     struct buf *out, uint64_t *size, size_t *found)
{
	*size = 0;
	*found = 0;
	int ret = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto close_fd;
	}
	*size = (uint64_t)st.st_size;
	if (offset > *size)
		offset = *size;
	/* only whole lines: the scan stops at the last '\n' */
	uint64_t from = offset;
	if (*size - from > MAX_READ)
		from = *size - MAX_READ;
	size_t want = (size_t)(*size - from);
	char *data = xmalloc(want + 1);
	size_t got = 0;
	while (got < want) {
		ssize_t r = pread(fd, data + got, want - got, (off_t)(from + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	/* a partial last line is left for the next read */
	while (got && data[got - 1] != '\n')
		got--;
	*size = from + got;
	/* walk back from the end for the newest `tail` matches */
	size_t glen = grep ? strlen(grep) : 0, n = 0, start = got;
	size_t end = got;
	while (end > 0 && n < tail) {
		size_t b = end - 1; /* the '\n' of this line */
		while (b > 0 && data[b - 1] != '\n')
			b--;
		if (matches(data + b, end - 1 - b, grep, glen)) {
			n++;
			start = b;
		}
		end = b;
	}
	*found = n;
	/* emit matching lines from start, in order */
	for (size_t p = start; p < got && n;) {
		char *nl = memchr(data + p, '\n', got - p);
		size_t e = (size_t)(nl - data);
		if (matches(data + p, e - p, grep, glen)) {
			buf_append(out, data + p, e - p + 1);
			n--;
		}
		p = e + 1;
	}
	free(data);
close_fd:
	close(fd);
	return ret;
}

int fnlog_read(const char *name, size_t tail, const char *grep, uint64_t offset,
	       struct buf *out, uint64_t *size)
{
	char cur[PATH_MAX], old[PATH_MAX];
	path_of(cur, sizeof(cur), name, "");
	path_of(old, sizeof(old), name, ".1");
	/* an offset past the current file: it was rotated since, and the lines
	 * not read yet are at the end of the rotated file */
	struct stat st;
	bool rotated = offset > (stat(cur, &st) == 0 ? (uint64_t)st.st_size : 0);
	struct buf newer = { 0 };
	size_t found, n;
	uint64_t old_size;
	int ret = read_tail(cur, tail, grep, rotated ? 0 : offset, &newer, size, &found);
	if (!ret && found < tail && (rotated || offset == 0))
		ret = read_tail(old, tail - found, grep, rotated ? offset : 0, out, &old_size, &n);
	if (!ret && newer.len)
		buf_append(out, newer.data, newer.len);
	buf_free(&newer);
	return ret;
}
