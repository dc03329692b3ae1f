/*
 * Private scratch: every instance gets its own /tmp and /dev/shm.
 *
 * An instance runs in a mount namespace of its own whose /tmp and /dev/shm
 * are fresh tmpfs mounts (mode 1777, size bounded), so what it writes there
 * is its own, is charged to its memory group (tmpfs pages count for the
 * process that writes them, so against memorySize) and goes away with it.
 * thaw's own folders that lie under /tmp or /dev/shm (the state folder, the
 * functions folder, the snapshot store, criu's run folder, the folder of
 * the binaries, the working folder; a function's folder, handler and
 * command as they come) are bound back at their paths, so the instance,
 * and criu acting on it, see them as before.
 *
 * CRIU never sees that namespace as one to rebuild: the criu that dumps an
 * instance joins its namespace first (scratch_join), a restore's criu is
 * started in a fresh one made the same way (scratch_enter), and the copy is
 * born in criu's namespace. No mount tree is dumped or restored, so a
 * restore through a criu started ahead pays nothing for it. What init left
 * in /tmp and /dev/shm is not carried into copies: each starts empty.
 */
#ifndef THAW_SCRATCH_H
#define THAW_SCRATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SCRATCH_MAX_KEEP 16

/* Turns private scratch on for instances started from now on, each tmpfs
 * at most size_mb MiB (0: off, instances share the daemon's /tmp and
 * /dev/shm). keep: NULL-terminated absolute folders (or files) to bind back
 * where they lie under /tmp or /dev/shm; others are left out, missing ones
 * are taken when they are there. Tried once in a child: where it cannot
 * work, one line and it stays off. Call once at start, before any
 * instance. 0, or -errno (scratch stays off). */
int scratch_configure(unsigned size_mb, const char *const *keep);

/* Whether scratch_configure turned it on. */
bool scratch_on(void);

/* Binds path back too, from the next start on, when it lies under /tmp or
 * /dev/shm outside what is kept already (a function's folder, an absolute
 * handler or command given there): then the generation moves on, so that
 * namespaces made ahead without it (criu workers) are not used. Cheap when
 * nothing changes; thread-safe. */
void scratch_keep(const char *path);
unsigned scratch_generation(void);

/* In a child that has a mount namespace of its own, not yet shared (after
 * clone with CLONE_NEWNS): makes it private, mounts the two tmpfs, binds
 * the kept folders back and re-enters the working folder. Raw system calls
 * only (safe in a vfork-style child). 0 or an errno. */
int scratch_setup(void);

/* In a child (vfork-style, not sharing the filesystem context): unshares
 * its mount namespace and runs scratch_setup. arg unused (a subproc
 * entry). 0 or an errno. */
int scratch_enter(void *arg);

/* In such a child: joins the mount namespace *(int *)arg names (an open
 * /proc/PID/ns/mnt), where criu then dumps that instance as one of its
 * own namespace. 0 or an errno. */
int scratch_join(void *arg);

/* Whether the process tree of root (an instance in its private-scratch
 * namespace) holds something on its /tmp or /dev/shm: an open file, a
 * mapping, its working folder. CRIU would dump it and could not restore it
 * (copies start with both empty). what names the first one found. */
bool scratch_in_use(pid_t root, char *what, size_t len);

#endif
