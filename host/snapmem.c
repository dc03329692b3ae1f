#define LOG_PREFIX "host: snapshot memory: "
#include "host/snapmem.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/memfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>


#define HUGE_SIZE MEMFILE_HUGE
#define MAX_STATE 64		/* thaw_state_alloc() regions */
#define MAX_STACKS 1024
#define THREAD_STACK (256u << 10) /* below any sane threshold: never moved */
#define POPULATE_VALUE 1	/* sival of the self-sent populate request */

/* What the checkpoint moved; kept in the memory every restored copy has. */
static struct memfile_area moved[MEMFILE_MAX_AREAS];
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

static int state_index(uintptr_t s)
{
	for (unsigned i = 0; i < n_state; i++)
		if (state[i].start == s)
			return (int)i;
	return -1;
}

/* A thaw_state_alloc() region: its file already holds the bytes; link it
 * into dir and map it privately in place. No copy. */
static int64_t move_state(struct state_region *st, const char *path, int prot,
			  struct memfile_report *r)
{
	char fdpath[64];
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", st->fd);
	if (linkat(AT_FDCWD, fdpath, AT_FDCWD, path, AT_SYMLINK_FOLLOW)) {
		int err = errno;
		if (err != EXDEV) {
			memfile_say(r, "skip %" PRIxPTR "-%" PRIxPTR " link %s: %s\n", st->start, st->end,
			    path, strerror(err));
			return -err;
		}
		return 0; /* another file system: the caller copies it like anonymous memory */
	}
	/* the mapping holds the file from now on; an open fd would make CRIU
	 * dump it. Mapped through a read-only fd, as in common/memfile.c. */
	int rfd = open(path, O_RDONLY | O_CLOEXEC);
	void *m = rfd < 0 ? MAP_FAILED
			  : mmap((void *)st->start, st->end - st->start, prot,
				 MAP_PRIVATE | MAP_FIXED, rfd, 0);
	if (rfd >= 0)
		close(rfd);
	if (m == MAP_FAILED) {
		int err = errno;
		unlink(path);
		memfile_say(r, "skip %" PRIxPTR "-%" PRIxPTR " remap: %s\n", st->start, st->end, strerror(err));
		return -err;
	}
	fchmod(st->fd, 0400);
	close(st->fd);
	st->fd = -1;
	return (int64_t)(st->end - st->start);
}

/* memfile's hooks for thaw_state_alloc() regions */
static int own_region(void *arg, uintptr_t s)
{
	(void)arg;
	int i = state_index(s);
	return i >= 0 && state[i].fd >= 0 ? i : -1;
}

static int64_t move_own(void *arg, int i, const char *path, int prot, struct memfile_report *r)
{
	(void)arg;
	return move_state(&state[i], path, prot, r);
}

static void copied_own(void *arg, int i)
{
	(void)arg;
	close(state[i].fd); /* copied: the old file goes */
	state[i].fd = -1;
}

static const struct memfile_hooks state_hooks = { own_region, move_own, copied_own, NULL };

static void checkpoint(void)
{
	struct stat cst;
	if (fstat(CHANNEL_FD, &cst))
		return;
	unsigned long long ino = (unsigned long long)cst.st_ino;
	char req[128], ack[128], dir[PATH_MAX];
	snprintf(req, sizeof(req), CHANNEL_MEMREQ_FMT, ino);
	snprintf(ack, sizeof(ack), CHANNEL_MEMACK_FMT, ino);
	struct memfile_report r = { .len = 0 };
	uint64_t min = 0;
	int populate_req = 0;
	int ret = memfile_read_request(req, dir, sizeof(dir), &min, &populate_req);
	if (ret) {
		memfile_say(&r, "error: request file: %s\n", strerror(-ret));
	} else {
		/* no malloc here: a new arena would stay in the snapshot */
		uintptr_t *sp = mmap(NULL, MAX_STACKS * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (sp == MAP_FAILED) {
			memfile_say(&r, "error: out of memory\n");
		} else {
			struct memfile_request rq = { .dir = dir, .tag = "", .min_bytes = min,
						      .sp = sp, .hooks = &state_hooks };
			rq.n_sp = memfile_stack_points(sp, MAX_STACKS);
			memfile_move_all(&rq, &r, moved, &n_moved);
			munmap(sp, MAX_STACKS * sizeof(uintptr_t));
		}
		atomic_store(&populate_wanted, populate_req != 0);
	}
	if ((ret = memfile_answer(ack, &r)))
		pr_err("open %s (the daemon stopped waiting?): %s", ack, strerror(-ret));
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
			memfile_populate(moved, n_moved);
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
