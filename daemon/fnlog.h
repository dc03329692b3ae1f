/*
 * Function logs: every line an instance writes (stdout/stderr) is appended
 * to STATE/logs/<name>.log, one file per function name for all its
 * versions, as "ISO-time v<version> pid <pid>: <line>". Past the rotation
 * size (THAW_LOG_ROTATE_BYTES at start, default 8 MiB) the file becomes
 * <name>.log.1 (replacing the older one) and a new one starts.
 *
 * Writes are one O_APPEND write(2) per line on an fd opened once per name;
 * a failed write is logged once per name and the line is dropped: the
 * daemon goes on. Loops of every shard may write: a per-name mutex orders
 * the writes and the rotation.
 */
#ifndef THAW_FNLOG_H
#define THAW_FNLOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* Per function name; zeroed (calloc) is not enough: fnlog_init_name. */
struct fnlog {
	pthread_mutex_t lock;
	int fd;        /* -1 until the first line */
	uint64_t size; /* of the current file */
	bool failed;   /* a write failed: said once, retried at the next open */
	bool closed;   /* the name was removed: no more lines */
	/* the copy to the daemon's own log: FNLOG_ECHO_LINES a second */
	int64_t echo_second;
	unsigned echo_lines;
	uint64_t echo_dropped;
};

/* Lines a second of one function name that also go to the daemon's log
 * (its stderr), and the bytes of each: a handler printing without pause
 * fills its own rotated file, not the daemon's log. */
#define FNLOG_ECHO_LINES 100
#define FNLOG_ECHO_BYTES 1024

/* Reads THAW_LOG_ROTATE_BYTES and makes STATE/logs; call once at start. */
void fnlog_setup(const char *state_dir);
void fnlog_init_name(struct fnlog *l);
/* Appends one line (without its '\n') of instance pid of version. */
void fnlog_write(struct fnlog *l, const char *name, unsigned version, int pid,
		 const char *line, size_t len);
/* Whether a line of this name may be copied to the daemon's log now; when
 * a new second starts, *dropped is how many of the last one were not (0
 * otherwise), for the caller to say once. */
bool fnlog_echo(struct fnlog *l, uint64_t *dropped);
/* Closes the fd; later writes are dropped. */
void fnlog_close(struct fnlog *l);

/* Bounds of a read's arguments, as the admin API and `thaw logs` check
 * them. */
#define FNLOG_MAX_TAIL 10000
#define FNLOG_MAX_GREP 255

/* The newest `tail` lines of name's log after byte `offset` of the current
 * file that contain grep (NULL or "": all), appended to out, oldest first;
 * *size is the current file's size up to its last whole line (the offset a
 * follower asks for next). From offset 0, lines of the rotated file
 * (.log.1) come first when the current one has fewer than `tail`. An offset
 * past the current file's size (it was rotated since) gives the rest of the
 * rotated file after that offset, then the current file from its start.
 * Returns 0 (missing files read as empty) or -errno. */
int fnlog_read(const char *name, size_t tail, const char *grep, uint64_t offset,
	       struct buf *out, uint64_t *size);

#endif
