#define LOG_PREFIX "host: snapshot memory: "
#include "host/snapmem.h"
#include "common/channel.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define HUGE_SIZE (2ul << 20)
/* copied, then remapped: the extra memory at a time, on top of the state
 * (the instance's memory limit counts the file's pages as they are written) */
#define CHUNK (16ul << 20)
#define GUARD_MAX (64u << 10) /* a PROT_NONE neighbour this small: a stack guard */
#define MAX_AREAS 256		/* moved mappings remembered for populate */
#define MAX_STATE 64		/* thaw_state_alloc() regions */
#define MAX_STACKS 1024
#define MAPS_MAX (4u << 20)	/* bound on /proc/self/maps */
#define THREAD_STACK (256u << 10) /* below any sane threshold: never moved */
#define POPULATE_VALUE 1	/* sival of the self-sent populate request */

struct area {
	uintptr_t start, end;
};

/* What the checkpoint moved; kept in the memory every restored copy has. */
static struct area moved[MAX_AREAS];
static unsigned n_moved;
static atomic_bool populate_wanted, populate_pending;
static pthread_t mem_thread;
static bool have_thread;

/* thaw_state_alloc() regions: file-backed (MAP_SHARED, unlinked) until the
 * checkpoint links and remaps them privately. */
static struct state_region {
	uintptr_t start, end;
	int fd;
} state[MAX_STATE];
static unsigned n_state;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;

/* --- report to the daemon ------------------------------------------------- */

struct report {
	char buf[8192];
	size_t len;
};

static void say(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct report *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(r->buf + r->len, sizeof(r->buf) - r->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len += (size_t)n < sizeof(r->buf) - r->len ? (size_t)n : sizeof(r->buf) - r->len - 1;
}

/* --- the request ---------------------------------------------------------- */

struct request {
	char dir[PATH_MAX];
	uint64_t min_bytes;
	int populate;
};

static int read_request(unsigned long long ino, struct request *rq)
{
	char path[128], text[PATH_MAX + 128];
	snprintf(path, sizeof(path), CHANNEL_MEMREQ_FMT, ino);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -EBADMSG;
	text[n] = '\0';
	*rq = (struct request){ .min_bytes = HUGE_SIZE };
	char *save = NULL; /* strtok_r: handler threads may be in strtok */
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "dir ", 4))
			snprintf(rq->dir, sizeof(rq->dir), "%s", line + 4);
		else if (!strncmp(line, "min ", 4))
			rq->min_bytes = strtoull(line + 4, NULL, 10);
		else if (!strncmp(line, "populate ", 9))
			rq->populate = atoi(line + 9);
	}
	return rq->dir[0] == '/' ? 0 : -EBADMSG;
}

/* --- what may move --------------------------------------------------------- */

/* One address inside each live thread's stack: the stack pointer that
 * /proc/self/task/TID/syscall shows for a blocked thread (its next to last
 * field), and the calling thread's own. */
static unsigned thread_stack_points(uintptr_t *out, unsigned cap)
{
	unsigned n = 0;
	volatile char here;
	out[n++] = (uintptr_t)&here;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return n;
	struct dirent *e;
	while ((e = readdir(d)) && n < cap) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], line[512];
		snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t k = read(fd, line, sizeof(line) - 1);
		close(fd);
		if (k <= 0)
			continue;
		line[k] = '\0';
		/* "NR a1 .. a6 SP PC" or "-1 SP PC"; "running" for ourselves */
		char *f[10];
		int nf = 0;
		char *save = NULL;
		for (char *t = strtok_r(line, " \n", &save); t && nf < 10;
		     t = strtok_r(NULL, " \n", &save))
			f[nf++] = t;
		if (nf >= 3)
			out[n++] = (uintptr_t)strtoull(f[nf - 2], NULL, 16);
	}
	closedir(d);
	return n;
}

static bool holds_stack(uintptr_t s, uintptr_t e, const uintptr_t *sp, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (sp[i] >= s && sp[i] < e)
			return true;
	return false;
}

static int state_index(uintptr_t s)
{
	for (unsigned i = 0; i < n_state; i++)
		if (state[i].start == s)
			return (int)i;
	return -1;
}

/* --- moving one mapping ----------------------------------------------------- */

/* The raw syscall: the memory copied may hold what a sanitizer's pwrite
 * interceptor calls unaddressable (malloc redzones) and refuses. */
static int write_all_at(int fd, const char *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = syscall(SYS_pwrite64, fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Resident bytes of [s, e): what the file will need. Without swap,
 * mincore's "present" is every page that holds data; with swap a page out
 * there is not present but holds data, so then every page is copied.
 * vec gets (e - s) / page flags, bit 0 set for the pages to copy. */
static uint64_t resident(uintptr_t s, uintptr_t e, unsigned char *vec, size_t page)
{
	struct sysinfo si;
	if (sysinfo(&si) || si.totalswap || mincore((void *)s, e - s, vec)) {
		memset(vec, 1, (e - s) / page); /* unknown: copy every page */
		return e - s;
	}
	uint64_t n = 0;
	for (size_t i = 0; i < (e - s) / page; i++)
		n += vec[i] & 1;
	return n * page;
}

static bool granule_used(const unsigned char *vec, uintptr_t s, uintptr_t e, uintptr_t g0,
			 size_t page)
{
	uintptr_t a = g0 < s ? s : g0, b = g0 + HUGE_SIZE > e ? e : g0 + HUGE_SIZE;
	for (size_t i = (a - s) / page; i < (b - s) / page; i++)
		if (vec[i] & 1)
			return true;
	return false;
}

/* Copies the resident pages of [s, e) into dir/thaw-mem-<s> at offset
 * a - base for address a (base: s rounded down to 2 MiB, so the file's huge
 * pages line up with the mapping's) and maps the file over the 2 MiB
 * granules that hold data, at most CHUNK bytes at a time so the extra
 * memory stays small. Granules never touched stay anonymous: read there,
 * a hole of the file would take a page of the tmpfs in every copy. Returns
 * bytes now file-backed, or -errno with nothing moved. A failure half way
 * leaves the moved part file-backed (it stays valid) and the rest
 * anonymous; a "skip" line in r says so. */
static int64_t move_area(const char *dir, uintptr_t s, uintptr_t e, int prot, unsigned char *vec,
			 size_t page, struct report *r)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/thaw-mem-%012" PRIxPTR, dir, s);
	uintptr_t base = s & ~(HUGE_SIZE - 1);
	if (!resident(s, e, vec, page))
		return 0;
	/* every page of a used granule gets allocated (fallocate below): a
	 * copy that reads a hole of the file would otherwise allocate it
	 * then, and get SIGBUS on a full tmpfs */
	uint64_t need = 0;
	for (uintptr_t g = base; g < e; g += HUGE_SIZE)
		if (granule_used(vec, s, e, g, page))
			need += HUGE_SIZE;
	struct statvfs vfs;
	if (!statvfs(dir, &vfs) &&
	    (uint64_t)vfs.f_bavail * vfs.f_bsize < need + need / 64 + 2 * HUGE_SIZE) {
		say(r, "skip %" PRIxPTR "-%" PRIxPTR " tmpfs full (%" PRIu64 " MiB free, %" PRIu64
		       " MiB needed)\n", s, e, (uint64_t)vfs.f_bavail * vfs.f_bsize >> 20, need >> 20);
		return -ENOSPC;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = errno;
		say(r, "skip %" PRIxPTR "-%" PRIxPTR " create %s: %s\n", s, e, path, strerror(err));
		return -err;
	}
	/* mapped through a read-only fd: CRIU records the mapped file's open
	 * flags and reopens it so at restore, and a 0400 file opened for
	 * writing needs CAP_DAC_OVERRIDE, which a pod does not have (private
	 * mappings of a read-only fd may still be written: copy-on-write) */
	int rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0) {
		int err = errno;
		say(r, "skip %" PRIxPTR "-%" PRIxPTR " reopen %s: %s\n", s, e, path, strerror(err));
		unlink(path);
		close(fd);
		return -err;
	}
	int64_t done = 0;
	int ret = 0;
	if (ftruncate(fd, (off_t)(e - base))) {
		ret = -errno;
		goto fail;
	}
	for (uintptr_t g = base; g < e;) {
		if (!granule_used(vec, s, e, g, page)) {
			g += HUGE_SIZE;
			continue;
		}
		uintptr_t h = g + HUGE_SIZE; /* a run of used granules, at most CHUNK */
		while (h < e && h - g < CHUNK && granule_used(vec, s, e, h, page))
			h += HUGE_SIZE;
		uintptr_t rs = g < s ? s : g, re = h > e ? e : h;
		if (fallocate(fd, 0, (off_t)(rs - base), (off_t)(re - rs))) {
			ret = -errno;
			goto fail;
		}
		for (size_t i = (rs - s) / page, last = (re - s) / page; i < last;) {
			if (!(vec[i] & 1)) {
				i++;
				continue;
			}
			size_t j = i;
			while (j < last && (vec[j] & 1))
				j++;
			uintptr_t a = s + i * page;
			ret = write_all_at(fd, (const char *)a, (j - i) * page, (off_t)(a - base));
			if (ret)
				goto fail;
			i = j;
		}
		void *m = mmap((void *)rs, re - rs, prot, MAP_PRIVATE | MAP_FIXED, rfd, (off_t)(rs - base));
		if (m == MAP_FAILED) {
			ret = -errno;
			goto fail;
		}
		(void)madvise(m, re - rs, MADV_HUGEPAGE); /* for huge=advise mounts */
		done += (int64_t)(re - rs);
		g = h;
	}
	fchmod(fd, 0400); /* never written again: every copy maps it */
	close(rfd);
	close(fd);
	return done;
fail:
	say(r, "skip %" PRIxPTR "-%" PRIxPTR " %s after %" PRId64 " MiB moved: %s\n", s, e,
	    ret == -ENOSPC ? "tmpfs full" : "write failed", done >> 20, strerror(-ret));
	if (!done)
		unlink(path);
	close(rfd);
	close(fd);
	return done ? done : ret;
}

/* A thaw_state_alloc() region: its file already holds the bytes; link it
 * into dir and map it privately in place. No copy. */
static int64_t move_state(const char *dir, struct state_region *st, int prot, struct report *r)
{
	char path[PATH_MAX + 64], fdpath[64];
	snprintf(path, sizeof(path), "%s/thaw-mem-%012" PRIxPTR, dir, st->start);
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", st->fd);
	if (linkat(AT_FDCWD, fdpath, AT_FDCWD, path, AT_SYMLINK_FOLLOW)) {
		int err = errno;
		if (err != EXDEV) {
			say(r, "skip %" PRIxPTR "-%" PRIxPTR " link %s: %s\n", st->start, st->end,
			    path, strerror(err));
			return -err;
		}
		return 0; /* another file system: the caller copies it like anonymous memory */
	}
	/* the mapping holds the file from now on; an open fd would make CRIU
	 * dump it. Mapped through a read-only fd, as in write_region. */
	int rfd = open(path, O_RDONLY | O_CLOEXEC);
	void *m = rfd < 0 ? MAP_FAILED
			  : mmap((void *)st->start, st->end - st->start, prot,
				 MAP_PRIVATE | MAP_FIXED, rfd, 0);
	if (rfd >= 0)
		close(rfd);
	if (m == MAP_FAILED) {
		int err = errno;
		unlink(path);
		say(r, "skip %" PRIxPTR "-%" PRIxPTR " remap: %s\n", st->start, st->end, strerror(err));
		return -err;
	}
	fchmod(st->fd, 0400);
	close(st->fd);
	st->fd = -1;
	return (int64_t)(st->end - st->start);
}

/* --- the checkpoint request -------------------------------------------------- */

/* One line of /proc/self/maps. */
struct vma {
	uintptr_t s, e;
	char perms[8];
	bool anon;	  /* no file: plain, [heap] or [anon:NAME] */
	bool after_guard; /* right above a small PROT_NONE mapping */
};

/* What the whole scan needs to judge a mapping. */
struct scan {
	const struct request *rq;
	char *maps;	  /* /proc/self/maps, read before anything moves */
	uintptr_t *sp;	  /* one address in each live thread's stack */
	unsigned n_sp;
	uintptr_t ram;	  /* physical memory */
	size_t page;
};

static int parse_vma(const char *line, uintptr_t guard_end, struct vma *v)
{
	char name[PATH_MAX] = "";
	unsigned long long off, inode;
	unsigned maj, min;
	if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %llx %x:%x %llu %4095[^\n]", &v->s, &v->e,
		   v->perms, &off, &maj, &min, &inode, name) < 7)
		return -1;
	const char *nm = name;
	while (*nm == ' ')
		nm++;
	v->anon = inode == 0 && (!*nm || !strcmp(nm, "[heap]") || !strncmp(nm, "[anon:", 6));
	v->after_guard = guard_end == v->s;
	return 0;
}

/* Whether v is state to move (si: its thaw_state_alloc() region, or -1). */
static bool movable(const struct scan *sc, const struct vma *v, int si)
{
	uintptr_t s = v->s, e = v->e;
	if ((si < 0 && v->perms[3] != 'p') || (v->perms[0] != 'r' && v->perms[1] != 'w'))
		return false; /* shared, or a PROT_NONE reservation */
	if (((uintptr_t)sc->maps >= s && (uintptr_t)sc->maps < e) ||
	    ((uintptr_t)sc->sp >= s && (uintptr_t)sc->sp < e))
		return false; /* the scan's own buffers */
	if (si >= 0)
		return true;
	if (!v->anon || !sc->rq->min_bytes || e - s < sc->rq->min_bytes)
		return false;
	/* larger than RAM: an address-space reservation (a sanitizer's
	 * shadow, a runtime's arena), not state; it stays as it is */
	if (e - s > sc->ram)
		return false;
	/* a thread's stack: its stack pointer is in it, or (a running thread
	 * shows none in /proc) it sits right above its guard */
	return !v->after_guard && !holds_stack(s, e, sc->sp, sc->n_sp);
}

/* Moves v into a memory file; returns bytes now file-backed, 0 or -errno. */
static int64_t move_one(const struct scan *sc, const struct vma *v, int si, struct report *r)
{
	uintptr_t s = v->s, e = v->e;
	int prot = (v->perms[0] == 'r' ? PROT_READ : 0) | (v->perms[1] == 'w' ? PROT_WRITE : 0) |
		   (v->perms[2] == 'x' ? PROT_EXEC : 0);
	int64_t got = 0;
	if (si >= 0 && state[si].fd >= 0)
		got = move_state(sc->rq->dir, &state[si], prot, r);
	if (got)
		return got;
	/* NORESERVE: never merged with a mapping still to move */
	size_t n = (e - s) / sc->page + 1;
	unsigned char *vec = mmap(NULL, n, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vec == MAP_FAILED) {
		say(r, "skip %" PRIxPTR "-%" PRIxPTR " out of memory\n", s, e);
		return -ENOMEM;
	}
	got = move_area(sc->rq->dir, s, e, prot, vec, sc->page, r);
	munmap(vec, n);
	if (got > 0 && si >= 0) { /* copied: the old file goes */
		close(state[si].fd);
		state[si].fd = -1;
	}
	return got;
}

static size_t read_maps(char *buf, size_t cap)
{
	size_t len = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	while (fd >= 0 && len < cap - 1) {
		ssize_t k = read(fd, buf + len, cap - 1 - len);
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	if (fd >= 0)
		close(fd);
	buf[len] = '\0';
	return len;
}

/* Every movable mapping into a file; the totals into r. */
static void move_all(struct scan *sc, struct report *r)
{
	uint64_t bytes = 0;
	unsigned count = 0;
	sc->n_sp = thread_stack_points(sc->sp, MAX_STACKS);
	read_maps(sc->maps, MAPS_MAX); /* all of it first: moving changes it */
	n_moved = 0;
	uintptr_t guard_end = 0; /* end of the last small PROT_NONE mapping */
	for (char *line = sc->maps, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		struct vma v;
		if (parse_vma(line, guard_end, &v))
			continue;
		guard_end = !strncmp(v.perms, "---", 3) && v.e - v.s <= GUARD_MAX ? v.e : 0;
		int si = state_index(v.s);
		if (!movable(sc, &v, si))
			continue;
		int64_t got = move_one(sc, &v, si, r);
		if (got <= 0)
			continue;
		bytes += (uint64_t)got;
		count++;
		if (n_moved < MAX_AREAS)
			moved[n_moved++] = (struct area){ v.s, v.e };
	}
	say(r, "ok %u %" PRIu64 "\n", count, bytes);
}

static void answer(unsigned long long ino, const struct report *r)
{
	char ack[128];
	snprintf(ack, sizeof(ack), CHANNEL_MEMACK_FMT, ino);
	int afd = open(ack, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (afd < 0) {
		pr_perror("open %s (the daemon stopped waiting?)", ack);
		return;
	}
	for (size_t off = 0; off < r->len;) {
		ssize_t k = write(afd, r->buf + off, r->len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) {
			usleep(1000);
			continue;
		}
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	close(afd);
}

static void checkpoint(void)
{
	struct stat cst;
	if (fstat(CHANNEL_FD, &cst))
		return;
	unsigned long long ino = (unsigned long long)cst.st_ino;
	struct request rq;
	struct report r = { .len = 0 };
	int ret = read_request(ino, &rq);
	if (ret) {
		say(&r, "error: request file: %s\n", strerror(-ret));
		answer(ino, &r);
		return;
	}
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	/* no malloc here: a new arena would stay in the snapshot */
	struct scan sc = {
		.rq = &rq,
		.page = page,
		.ram = (uintptr_t)sysconf(_SC_PHYS_PAGES) * page,
		.maps = mmap(NULL, MAPS_MAX, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
		.sp = mmap(NULL, MAX_STACKS * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
	};
	if (sc.maps == MAP_FAILED || sc.sp == MAP_FAILED)
		say(&r, "error: out of memory\n");
	else
		move_all(&sc, &r);
	atomic_store(&populate_wanted, rq.populate != 0);
	if (sc.maps != MAP_FAILED)
		munmap(sc.maps, MAPS_MAX);
	if (sc.sp != MAP_FAILED)
		munmap(sc.sp, MAX_STACKS * sizeof(uintptr_t));
	answer(ino, &r);
}

static void populate(void)
{
	for (unsigned i = 0; i < n_moved; i++)
		(void)madvise((void *)moved[i].start, moved[i].end - moved[i].start,
			      MADV_POPULATE_READ);
}

static void *mem_thread_main(void *arg)
{
	(void)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, CHANNEL_MEM_SIGNAL);
	for (;;) {
		siginfo_t si;
		if (sigwaitinfo(&set, &si) < 0)
			continue; /* EINTR, e.g. across a restore */
		if (si.si_code == SI_QUEUE && si.si_value.sival_int == POPULATE_VALUE &&
		    si.si_pid == getpid())
			populate();
		else
			checkpoint();
	}
	return NULL;
}

void host__snapmem_init(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, CHANNEL_MEM_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int r = pthread_create(&mem_thread, &attr, mem_thread_main, NULL);
	pthread_attr_destroy(&attr);
	if (r)
		pr_err("pthread_create: %s; snapshots will copy memory", strerror(r));
	have_thread = !r;
}

void host__snapmem_restored(void)
{
	if (have_thread && n_moved && atomic_load(&populate_wanted))
		atomic_store(&populate_pending, true);
}

void host__snapmem_after_response(void)
{
	if (!atomic_exchange(&populate_pending, false))
		return;
	union sigval v = { .sival_int = POPULATE_VALUE };
	pthread_sigqueue(mem_thread, CHANNEL_MEM_SIGNAL, v);
}

void *host__snapmem_state_alloc(size_t len)
{
	if (!len)
		return NULL;
	len = (len + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
	int fd = -1;
	/* thaw's own tmpfs (huge pages, where snapshots live by default), else /dev/shm */
	static const char *const dirs[] = { CHANNEL_MEM_TMPFS, "/dev/shm" };
	for (unsigned i = 0; i < 2 && fd < 0; i++)
		fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)len)) {
		pr_perror("state memory file");
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	/* a 2 MiB aligned address, so the file's huge pages map whole */
	char *res = mmap(NULL, len + HUGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	uintptr_t a = ((uintptr_t)res + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
	void *m = mmap((void *)a, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	if (m == MAP_FAILED) {
		munmap(res, len + HUGE_SIZE);
		close(fd);
		return NULL;
	}
	if (a > (uintptr_t)res)
		munmap(res, a - (uintptr_t)res);
	if ((uintptr_t)res + len + HUGE_SIZE > a + len)
		munmap((void *)(a + len), (uintptr_t)res + len + HUGE_SIZE - (a + len));
	(void)madvise(m, len, MADV_HUGEPAGE);
	pthread_mutex_lock(&state_lock);
	if (n_state == MAX_STATE) {
		pthread_mutex_unlock(&state_lock);
		munmap(m, len);
		close(fd);
		pr_err("thaw_state_alloc: more than %d regions", MAX_STATE);
		return NULL;
	}
	state[n_state++] = (struct state_region){ a, a + len, fd };
	pthread_mutex_unlock(&state_lock);
	return m;
}
