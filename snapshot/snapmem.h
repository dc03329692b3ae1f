/*
 * Mapped snapshot memory, daemon side (docs/snapshots.md). Right before
 * CRIU dumps an instance, snapshot_mem_move() asks thaw-instance (protocol
 * in common/channel.h, instance side in host/snapmem.h; for a custom
 * runtime, the agent in each of its processes: agent/agent.h) to move
 * its large private anonymous mappings into files of the snapshot folder,
 * thaw-mem-<address>, mapped back MAP_PRIVATE|MAP_FIXED. The files are part
 * of the snapshot like its images: listed and hashed in its manifest,
 * verified before use, deleted with the folder, never written after the
 * dump.
 *
 * Huge pages: the files get them when the snapshot folder is on a tmpfs
 * mounted with huge=always or huge=within_size; snapshot_mem_mount() makes
 * thaw's own (CHANNEL_MEM_TMPFS), where the daemon's default snapshot folder
 * lives.
 */
#ifndef THAW_SNAPMEM_H
#define THAW_SNAPMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/channel.h"
#include "proc/instance.h"

#define SNAPSHOT_MEM_PREFIX "thaw-mem-"

struct snapshot_mem_opts {
	bool mapped;        /* fc.yaml snapshotMemory.mapped (default true) */
	uint64_t min_bytes; /* snapshotMemory.minMappingSize: smaller ones stay */
	bool populate;      /* snapshotMemory.populate: fill page tables after restore */
};

struct snapshot_mem_info {
	unsigned moved;     /* mappings now file-backed */
	uint64_t bytes;     /* their size */
	unsigned skipped;   /* mappings that could not move (one log line each) */
	double ms;          /* the whole exchange */
};

/* Asks the instance p (idle, READY) to move its mappings into files in dir
 * and waits for its report (bounded by a deadline and by the instance's
 * death). Mappings that cannot move (tmpfs full, write error) stay
 * anonymous: one log line each, not an error. With o->mapped false only
 * thaw_state_alloc() regions move. Returns 0, or -errno when the instance
 * gave no report (it died, or did not answer in time): the dump may still
 * proceed, CRIU then copies what stayed anonymous.
 * A custom runtime's instance (no channel) is a process tree: each of its
 * processes that loaded the agent (CHANNEL_AGENT_SO, agent/agent.h) is
 * asked at once, into files thaw-mem-PID-ADDRESS; a process without it is
 * logged (CRIU copies its memory); none with it, or any that failed or did
 * not answer in time: one log line each and -errno (what moved stays
 * file-backed and valid). */
int snapshot_mem_move(const struct instance_proc *p, const char *dir,
		      const struct snapshot_mem_opts *o, struct snapshot_mem_info *info);

/* Mounts thaw's tmpfs at CHANNEL_MEM_TMPFS with huge=within_size (mode
 * 0700), unless a tmpfs is already mounted there; without huge page
 * support it mounts it without and says so. Returns 0 (what happened in
 * why, one line) or -errno (why says it; snapshots then live on /dev/shm
 * with 4 KiB pages). */
int snapshot_mem_mount(char *why, size_t len);

/* Whether files in dir get huge pages: "huge=within_size" style text of
 * its tmpfs mount, or NULL (4 KiB pages). Writes into buf. */
const char *snapshot_mem_huge(const char *dir, char *buf, size_t len);

/* Internal, for snapmem_agent.c. */
#define SNAPSHOT_MEM_TIMEOUT_MS 300000 /* ~0.5 s per GiB copied, and margin */
/* Writes the request lines (common/channel.h) for dir to path. 0 or -errno. */
int snapshot__mem_request(const char *path, const char *dir, const struct snapshot_mem_opts *o);
/* snapshot_mem_move of a custom runtime (no channel): every process of p's
 * tree with the agent moves; adir absolute. Counts summed into info. */
int snapshot__mem_move_tree(const struct instance_proc *p, const char *adir,
			    const struct snapshot_mem_opts *o, struct snapshot_mem_info *info);

#endif
