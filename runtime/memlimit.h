/*
 * Memory limits per instance (fc.yaml memorySize). Each instance gets its
 * own memory cgroup (v2 when the memory controller is there, else v1), so
 * the kernel's OOM killer stops that instance alone and the daemon can say
 * so. Without a usable cgroup, instances get RLIMIT_DATA instead (their
 * allocations fail rather than the process being killed).
 */
#ifndef THAW_MEMLIMIT_H
#define THAW_MEMLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Finds the memory cgroup hierarchy and makes the daemon's parent group.
 * Returns true when cgroups will be used; logs which way limits go. */
bool memlimit_init(void);
/* Whether instances need RLIMIT_DATA: memlimit_init found no cgroup. */
bool memlimit_use_rlimit(void);
/* Puts pid in a new group limited to memory_mb; path gets the group (empty
 * when none). Returns 0 or -errno (the instance then runs unlimited). */
int memlimit_apply(pid_t pid, uint32_t memory_mb, char *path, size_t len);
/* True when the group's OOM killer struck. */
bool memlimit_oom_killed(const char *path);
/* Removes the group of a dead instance. */
void memlimit_release(const char *path);
/* Removes the daemon's parent group at exit. */
void memlimit_fini(void);

#endif
