/* Moving large private anonymous mappings into memory files, inside the
 * process that owns them (memfile.h). No malloc, stdio or locks here. */
#include "common/memfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
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

/* copied, then remapped: the extra memory at a time, on top of the state
 * (the instance's memory limit counts the file's pages as they are written) */
#define CHUNK (16ul << 20)
#define GUARD_MAX (64u << 10) /* a PROT_NONE neighbour this small: a stack guard */
#define MAPS_MAX (4u << 20)   /* bound on /proc/self/maps */

void memfile_say(struct memfile_report *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(r->buf + r->len, sizeof(r->buf) - r->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len += (size_t)n < sizeof(r->buf) - r->len ? (size_t)n : sizeof(r->buf) - r->len - 1;
}

/* --- what may move --------------------------------------------------------- */

/* The next field of s (space separated), or NULL; s moves past it. */
static char *next_field(char **s, char *end)
{
	char *p = *s;
	while (p < end && (*p == ' ' || *p == '\n'))
		p++;
	if (p >= end)
		return NULL;
	char *f = p;
	while (p < end && *p != ' ' && *p != '\n')
		p++;
	*p = '\0';
	*s = p < end ? p + 1 : end;
	return f;
}

static void add_stack_point(const char *tid, uintptr_t *out, unsigned *n)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t k = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (k <= 0)
		return;
	/* "NR a1 .. a6 SP PC" or "-1 SP PC"; "running" for ourselves */
	char *f[10], *cur = line, *end = line + k, *t;
	int nf = 0;
	while (nf < 10 && (t = next_field(&cur, end)))
		f[nf++] = t;
	if (nf >= 3)
		out[(*n)++] = (uintptr_t)strtoull(f[nf - 2], NULL, 16);
}

void memfile_populate(const struct memfile_area *moved, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		(void)madvise((void *)moved[i].start, moved[i].end - moved[i].start,
			      MADV_POPULATE_READ);
}

int memfile_each_thread(int (*fn)(const char *tid, void *arg), void *arg)
{
	/* getdents64, not opendir: no malloc */
	int dfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	char buf[4096] __attribute__((aligned(8)));
	int ret = 0;
	long k;
	while (!ret && (k = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < k && !ret;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + off);
			off += d->reclen;
			if (d->name[0] >= '0' && d->name[0] <= '9')
				ret = fn(d->name, arg);
		}
	}
	close(dfd);
	return ret;
}

struct stack_points {
	uintptr_t *out;
	unsigned n, cap;
};

static int stack_point_of(const char *tid, void *arg)
{
	struct stack_points *sp = arg;
	add_stack_point(tid, sp->out, &sp->n);
	return sp->n >= sp->cap;
}

unsigned memfile_stack_points(uintptr_t *out, unsigned cap)
{
	volatile char here;
	struct stack_points sp = { out, 0, cap };
	out[sp.n++] = (uintptr_t)&here;
	if (sp.n < cap)
		memfile_each_thread(stack_point_of, &sp);
	return sp.n;
}

static bool holds_stack(uintptr_t s, uintptr_t e, const uintptr_t *sp, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (sp[i] >= s && sp[i] < e)
			return true;
	return false;
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
	uintptr_t a = g0 < s ? s : g0, b = g0 + MEMFILE_HUGE > e ? e : g0 + MEMFILE_HUGE;
	for (size_t i = (a - s) / page; i < (b - s) / page; i++)
		if (vec[i] & 1)
			return true;
	return false;
}

/* Copies the resident pages of [s, e) into path at offset a - base for
 * address a (base: s rounded down to 2 MiB, so the file's huge pages line up
 * with the mapping's) and maps the file over the 2 MiB granules that hold
 * data, at most CHUNK bytes at a time so the extra memory stays small.
 * Granules never touched stay anonymous: read there, a hole of the file
 * would take a page of the tmpfs in every copy. Returns bytes now
 * file-backed, or -errno with nothing moved. A failure half way leaves the
 * moved part file-backed (it stays valid) and the rest anonymous; a "skip"
 * line in r says so. */
static int64_t move_area(const char *dir, const char *path, uintptr_t s, uintptr_t e, int prot,
			 unsigned char *vec, size_t page, struct memfile_report *r)
{
	uintptr_t base = s & ~(MEMFILE_HUGE - 1);
	if (!resident(s, e, vec, page))
		return 0;
	/* every page of a used granule gets allocated (fallocate below): a
	 * copy that reads a hole of the file would otherwise allocate it
	 * then, and get SIGBUS on a full tmpfs */
	uint64_t need = 0;
	for (uintptr_t g = base; g < e; g += MEMFILE_HUGE)
		if (granule_used(vec, s, e, g, page))
			need += MEMFILE_HUGE;
	struct statvfs vfs;
	if (!statvfs(dir, &vfs) &&
	    (uint64_t)vfs.f_bavail * vfs.f_bsize < need + need / 64 + 2 * MEMFILE_HUGE) {
		memfile_say(r, "skip %" PRIxPTR "-%" PRIxPTR " tmpfs full (%" PRIu64 " MiB free, %" PRIu64
			    " MiB needed)\n", s, e, (uint64_t)vfs.f_bavail * vfs.f_bsize >> 20, need >> 20);
		return -ENOSPC;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = errno;
		memfile_say(r, "skip %" PRIxPTR "-%" PRIxPTR " create %s: %s\n", s, e, path,
			    strerror(err));
		return -err;
	}
	/* mapped through a read-only fd: CRIU records the mapped file's open
	 * flags and reopens it so at restore, and a 0400 file opened for
	 * writing needs CAP_DAC_OVERRIDE, which a pod does not have (private
	 * mappings of a read-only fd may still be written: copy-on-write) */
	int rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0) {
		int err = errno;
		memfile_say(r, "skip %" PRIxPTR "-%" PRIxPTR " reopen %s: %s\n", s, e, path,
			    strerror(err));
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
			g += MEMFILE_HUGE;
			continue;
		}
		uintptr_t h = g + MEMFILE_HUGE; /* a run of used granules, at most CHUNK */
		while (h < e && h - g < CHUNK && granule_used(vec, s, e, h, page))
			h += MEMFILE_HUGE;
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
	memfile_say(r, "skip %" PRIxPTR "-%" PRIxPTR " %s after %" PRId64 " MiB moved: %s\n", s, e,
		    ret == -ENOSPC ? "tmpfs full" : "write failed", done >> 20, strerror(-ret));
	if (!done)
		unlink(path);
	close(rfd);
	close(fd);
	return done ? done : ret;
}

/* --- the scan ---------------------------------------------------------------- */

/* One line of /proc/self/maps. */
struct vma {
	uintptr_t s, e;
	char perms[8];
	bool anon;	  /* no file: plain, [heap] or [anon:NAME] */
	bool after_guard; /* right above a small PROT_NONE mapping */
};

/* What the whole scan needs to judge a mapping. */
struct scan {
	const struct memfile_request *rq;
	char *maps; /* /proc/self/maps, read before anything moves */
	uintptr_t ram; /* physical memory */
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

/* Whether v is state to move (own: the caller's region, or -1). */
static bool movable(const struct scan *sc, const struct vma *v, int own)
{
	uintptr_t s = v->s, e = v->e;
	if ((own < 0 && v->perms[3] != 'p') || (v->perms[0] != 'r' && v->perms[1] != 'w'))
		return false; /* shared, or a PROT_NONE reservation */
	if (((uintptr_t)sc->maps >= s && (uintptr_t)sc->maps < e) ||
	    ((uintptr_t)sc->rq->sp >= s && (uintptr_t)sc->rq->sp < e))
		return false; /* the scan's own buffers */
	if (own >= 0)
		return true;
	if (!v->anon || !sc->rq->min_bytes || e - s < sc->rq->min_bytes)
		return false;
	/* larger than RAM: an address-space reservation (a sanitizer's
	 * shadow, a runtime's arena), not state; it stays as it is */
	if (e - s > sc->ram)
		return false;
	/* a thread's stack: its stack pointer is in it, or (a running thread
	 * shows none in /proc) it sits right above its guard */
	return !v->after_guard && !holds_stack(s, e, sc->rq->sp, sc->rq->n_sp);
}

/* Moves v into a memory file; returns bytes now file-backed, 0 or -errno. */
static int64_t move_one(const struct scan *sc, const struct vma *v, int own,
			struct memfile_report *r)
{
	const struct memfile_request *rq = sc->rq;
	const struct memfile_hooks *h = rq->hooks;
	uintptr_t s = v->s, e = v->e;
	int prot = (v->perms[0] == 'r' ? PROT_READ : 0) | (v->perms[1] == 'w' ? PROT_WRITE : 0) |
		   (v->perms[2] == 'x' ? PROT_EXEC : 0);
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/" MEMFILE_PREFIX "%s%012" PRIxPTR, rq->dir, rq->tag, s);
	int64_t got = 0;
	if (own >= 0 && h && h->move_own)
		got = h->move_own(h->arg, own, path, prot, r);
	if (got)
		return got;
	/* NORESERVE: never merged with a mapping still to move */
	size_t n = (e - s) / sc->page + 1;
	unsigned char *vec = mmap(NULL, n, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vec == MAP_FAILED) {
		memfile_say(r, "skip %" PRIxPTR "-%" PRIxPTR " out of memory\n", s, e);
		return -ENOMEM;
	}
	got = move_area(rq->dir, path, s, e, prot, vec, sc->page, r);
	munmap(vec, n);
	if (got > 0 && own >= 0 && h && h->copied)
		h->copied(h->arg, own);
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

void memfile_move_all(const struct memfile_request *rq, struct memfile_report *r,
		      struct memfile_area *moved, unsigned *n_moved)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct scan sc = {
		.rq = rq,
		.page = page,
		.ram = (uintptr_t)sysconf(_SC_PHYS_PAGES) * page,
		.maps = mmap(NULL, MAPS_MAX, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
	};
	if (n_moved)
		*n_moved = 0;
	if (sc.maps == MAP_FAILED) {
		memfile_say(r, "error: out of memory\n");
		return;
	}
	uint64_t bytes = 0;
	unsigned count = 0;
	read_maps(sc.maps, MAPS_MAX); /* all of it first: moving changes it */
	uintptr_t guard_end = 0; /* end of the last small PROT_NONE mapping */
	for (char *line = sc.maps, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		struct vma v;
		if (parse_vma(line, guard_end, &v))
			continue;
		guard_end = !strncmp(v.perms, "---", 3) && v.e - v.s <= GUARD_MAX ? v.e : 0;
		const struct memfile_hooks *h = rq->hooks;
		int own = h && h->own ? h->own(h->arg, v.s) : -1;
		if (!movable(&sc, &v, own))
			continue;
		int64_t got = move_one(&sc, &v, own, r);
		if (got <= 0)
			continue;
		bytes += (uint64_t)got;
		count++;
		if (moved && n_moved && *n_moved < MEMFILE_MAX_AREAS)
			moved[(*n_moved)++] = (struct memfile_area){ v.s, v.e };
	}
	munmap(sc.maps, MAPS_MAX);
	memfile_say(r, "ok %u %" PRIu64 "\n", count, bytes);
}

/* --- request and answer --------------------------------------------------- */

int memfile_read_request(const char *path, char *dir, size_t cap, uint64_t *min, int *populate)
{
	char text[PATH_MAX + 128];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -EBADMSG;
	text[n] = '\0';
	dir[0] = '\0';
	*min = MEMFILE_HUGE;
	*populate = 0;
	char *save = NULL; /* strtok_r: other threads may be in strtok */
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "dir ", 4))
			snprintf(dir, cap, "%s", line + 4);
		else if (!strncmp(line, "min ", 4))
			*min = strtoull(line + 4, NULL, 10);
		else if (!strncmp(line, "populate ", 9))
			*populate = atoi(line + 9);
	}
	return dir[0] == '/' ? 0 : -EBADMSG;
}

int memfile_answer(const char *path, const struct memfile_report *r)
{
	int afd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (afd < 0)
		return -errno;
	int ret = 0;
	for (size_t off = 0, tries = 0; off < r->len && tries < 5000;) {
		ssize_t k = write(afd, r->buf + off, r->len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) {
			usleep(1000);
			tries++;
			continue;
		}
		if (k <= 0) {
			ret = k < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)k;
	}
	close(afd);
	return ret;
}
