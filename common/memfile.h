/*
 * Moving a process's own large private anonymous mappings into memory
 * files (docs/snapshots.md, "Mapped snapshot memory"), the part shared by
 * thaw-instance (host/snapmem.c) and the custom-runtime agent
 * (agent/agent.c): it runs inside the process whose memory moves.
 *
 * Each movable mapping's resident pages are copied into DIR/thaw-mem-TAGADDR
 * and the file is mapped back over the same range MAP_PRIVATE|MAP_FIXED, so
 * CRIU records a file mapping instead of copying pages. Never moved: stacks
 * (the main one and every live thread's: a stack pointer inside, or right
 * above a small PROT_NONE guard), [vdso], [vvar], [vsyscall], file, shared
 * and device mappings, PROT_NONE reservations, mappings larger than RAM,
 * anything below the size asked for.
 *
 * No malloc, no stdio, no lock: the agent calls this while every other
 * thread of its process is parked in a signal handler, maybe holding
 * malloc's lock; buffers are mmap'ed. The rest of the process must not
 * write what moves meanwhile (the caller's business).
 */
#ifndef THAW_MEMFILE_H
#define THAW_MEMFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MEMFILE_PREFIX "thaw-mem-"
#define MEMFILE_HUGE (2ul << 20)
#define MEMFILE_MAX_AREAS 256 /* moved mappings remembered (populate) */

/* The report to the daemon: lines "skip START-END REASON", "error: WHY",
 * then "ok MOVED BYTES" (common/channel.h). */
struct memfile_report {
	char buf[8192];
	size_t len;
};

void memfile_say(struct memfile_report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The caller's own regions (thaw_state_alloc()): moved whatever their size
 * and sharing. own returns an index >= 0 for a region starting at s, else -1;
 * move_own moves region i without a copy (bytes moved, 0: copy it like
 * anonymous memory instead, -errno: leave it); copied tells that region i was
 * copied (its old file may go). Any may be NULL. */
struct memfile_hooks {
	int (*own)(void *arg, uintptr_t s);
	int64_t (*move_own)(void *arg, int i, const char *path, int prot, struct memfile_report *r);
	void (*copied)(void *arg, int i);
	void *arg;
};

struct memfile_area {
	uintptr_t start, end;
};

struct memfile_request {
	const char *dir;     /* absolute: where the files go */
	const char *tag;     /* between the prefix and the address ("" or "PID-") */
	uint64_t min_bytes;  /* smaller mappings stay; 0: only own regions move */
	const uintptr_t *sp; /* one address in each live thread's stack */
	unsigned n_sp;
	const struct memfile_hooks *hooks; /* NULL: none */
};

/* Moves every movable mapping of the calling process; per mapping that
 * cannot move a "skip" line, then "ok MOVED BYTES" into r. moved gets up to
 * MEMFILE_MAX_AREAS moved ranges (*n_moved their count; may be NULL).
 * A failure half way leaves the moved part file-backed (valid) and the rest
 * anonymous. */
void memfile_move_all(const struct memfile_request *rq, struct memfile_report *r,
		      struct memfile_area *moved, unsigned *n_moved);

/* After a restore: fills the page tables of the n moved ranges from the
 * page cache (MADV_POPULATE_READ), so later requests find them mapped. */
void memfile_populate(const struct memfile_area *moved, unsigned n);

/* Calls fn with each thread id of this process (the names in
 * /proc/self/task) until it returns non-zero, which is then returned; 0
 * after the last, -errno when the folder cannot be read. No malloc. */
int memfile_each_thread(int (*fn)(const char *tid, void *arg), void *arg);

/* One address inside each live thread's stack: the stack pointer that
 * /proc/self/task/TID/syscall shows for a blocked thread, and the calling
 * thread's own. Returns how many went into out. No malloc. */
unsigned memfile_stack_points(uintptr_t *out, unsigned cap);

/* Reads a request file ("dir PATH", "min BYTES", "populate 0|1" lines) into
 * dir (cap bytes), min and populate. 0, or -errno / -EBADMSG. */
int memfile_read_request(const char *path, char *dir, size_t cap, uint64_t *min, int *populate);

/* Writes r to the FIFO at path (the daemon holds its read end; non-blocking
 * open, bounded retries). 0 or -errno. */
int memfile_answer(const char *path, const struct memfile_report *r);

#endif
