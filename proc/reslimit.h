/*
 * Resource limits per instance: fc.yaml memorySize and cpu. Each instance
 * gets its own cgroup (v2 when the controllers are there, else one group in
 * each v1 hierarchy): a memory limit, so the kernel's OOM killer stops that
 * instance alone and the daemon can say so, and a CFS quota of cpu x 100 ms
 * per 100 ms period. Without a memory cgroup, instances get RLIMIT_DATA
 * instead (their allocations fail rather than the process being killed);
 * without a cpu controller they run unthrottled (said once at start).
 */
#ifndef THAW_RESLIMIT_H
#define THAW_RESLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RESLIMIT_CPU_PERIOD_US 100000
#define RESLIMIT_PATH_MAX 512

/* The groups of one instance; "" where it has none. With cgroup v2 one
 * group holds both limits and cpu stays "". */
struct reslimit_groups {
	char mem[RESLIMIT_PATH_MAX];
	char cpu[RESLIMIT_PATH_MAX];
};

/* Finds the memory and cpu hierarchies and makes the daemon's parent
 * groups. Returns true when a memory cgroup will be used; logs which way
 * each limit goes. */
bool reslimit_init(void);
/* Whether instances need RLIMIT_DATA: reslimit_init found no memory cgroup. */
bool reslimit_use_rlimit(void);
/* The CFS quota in microseconds per RESLIMIT_CPU_PERIOD_US for cpu cores
 * (fc.yaml's 0.05..16). */
uint64_t reslimit_cpu_quota_us(double cpu);
/* Puts pid in new groups limited to memory_mb and cpu cores; g gets their
 * paths. Returns 0 or the first -errno (that limit is then not applied,
 * logged; the others still are). */
int reslimit_apply(pid_t pid, uint32_t memory_mb, double cpu, struct reslimit_groups *g);
/* Makes new groups limited to memory_mb and cpu cores for an instance
 * about to start, which joins them itself before it runs a line of the
 * host (instance_spawn_in): it never runs outside its limits. g gets their
 * paths ("" where a limit is off). Returns 0 or the first -errno, as
 * reslimit_apply. */
int reslimit_prepare(uint32_t memory_mb, double cpu, struct reslimit_groups *g);
/* Makes new groups with no limits yet, for a process that joins them as
 * it starts, ahead of the instance it becomes (a criu worker: the copy it
 * restores is born there); reslimit_limit_memory and reslimit_limit_cpu
 * then set them without moving anything. Moving a live process costs an
 * RCU grace period when none moved lately (~7-10 ms measured here), which
 * a restore should not wait for. 0, -ENOENT without a memory cgroup, or
 * -errno. */
int reslimit_prepare_open(struct reslimit_groups *g);
/* memorySize for g's memory group; 0 or -errno. */
int reslimit_limit_memory(const struct reslimit_groups *g, uint32_t memory_mb);
/* The cpu quota for g (nothing to do without a cpu controller); 0 or
 * -errno. */
int reslimit_limit_cpu(const struct reslimit_groups *g, double cpu);

/* Moves process pid (all its threads) into the prepared group dir.
 * Returns 0 or -errno. */
int reslimit_move(pid_t pid, const char *dir);
/* True when the memory group's OOM killer struck. */
bool reslimit_oom_killed(const struct reslimit_groups *g);
/* Opens the file that tells the memory group's usage (cgroup v2
 * memory.current, v1 memory.usage_in_bytes), for reslimit_memory_read.
 * Returns an fd the caller closes, or -errno (-ENOENT: g has no memory
 * group). */
int reslimit_memory_open(const struct reslimit_groups *g);
/* The memory group's usage in bytes through fd from reslimit_memory_open:
 * one pread, no path lookup, nothing that waits. Returns -errno on error. */
int64_t reslimit_memory_read(int fd);
/* Removes the groups of a dead instance. */
void reslimit_release(const struct reslimit_groups *g);
/* Removes the daemon's parent groups at exit. */
void reslimit_fini(void);

#endif
