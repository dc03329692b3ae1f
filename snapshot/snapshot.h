/*
 * Checkpoint and restore of instances with CRIU (docs/criu.md).
 *
 * The CRIU binary is $THAW_CRIU, else /usr/local/lib/thaw/criu/criu (built
 * by `make deps`; Debian 12's criu 3.17 is never used). It is run through the
 * spawn wrapper (subproc.h), never through a shell.
 *
 * A snapshot is a folder: CRIU's images, SNAPSHOT_FDS_NAME (the inodes of
 * the channel socket and log pipe the instance had at dump time, which
 * restores map fresh ones onto) and the checksum manifest (manifest.h).
 * Images on a tmpfs restore fastest; the caller chooses the folder.
 *
 * The instance may have its own mount namespace (instance_clone_flags with
 * CLONE_NEWNS): its mounts are then declared external at dump
 * (--external mnt[], they are bind mounts of the daemon's own mounts) and
 * re-created from the daemon's mount namespace at restore (--root /).
 * Nothing of the file systems is copied into the images, so the files the
 * instance maps (host binary, handler .so, weights) must still exist
 * unchanged at restore: rebuilding build/thaw-instance invalidates snapshots.
 *
 * Parenting: restores run with --restore-sibling, so each restored copy is a
 * direct child of the calling process (not of criu, which exits), exactly as
 * an instance_spawn()ed one: instance_destroy() can kill and reap it and no
 * process-wide PR_SET_CHILD_SUBREAPER is needed.
 *
 * Calls block (criu runs to completion) and are safe from several threads
 * at once; run them off the event loop.
 */
#ifndef THAW_SNAPSHOT_H
#define THAW_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "proc/reslimit.h"
#include <sys/types.h>

#include "proc/instance.h"
#include "snapshot/plugin.h"
#include "snapshot/snapmem.h"

#define SNAPSHOT_CRIU_DEFAULT "/usr/local/lib/thaw/criu/criu"
/* CRIU's RUNDIR as built by scripts/deps.d/10-criu.sh: its kernel-feature
 * cache lives there and must be on a tmpfs. */
#define SNAPSHOT_CRIU_RUNDIR "/dev/shm/thaw-criu"
#define SNAPSHOT_FDS_NAME "thaw-fds"

struct snapshot_info {
	uint64_t image_bytes; /* all files of the snapshot */
	uint32_t n_files;
	double dump_ms;     /* criu dump, exec to exit */
	double manifest_ms; /* hashing and writing the manifest */
	char plugins[160];  /* what the plugins did before the dump, "" if nothing */
	struct snapshot_mem_info mem; /* the move into memory files (snapmem.h) */
};

struct snapshot_timing {
	double criu_ms;  /* criu restore, exec to exit (or request to answer of a
			  * criu started ahead): the copy is running */
	int criu_ahead;  /* 1: a criu started ahead served it (criu_swrk.h) */
	double total_ms; /* the whole snapshot_restore call */
	char plugins[160]; /* what the plugins did after the restore, "" if nothing */
};


/* 0 when snapshots can work here: the criu binary exists and is executable,
 * we are root (or hold CAP_CHECKPOINT_RESTORE) and `criu check` passes
 * (which also writes CRIU's kernel-feature cache). The result is cached per
 * criu path, so calling it often is cheap. Else -ENOTSUP with one line in
 * why, e.g. "snapshots off: criu not found at /usr/...; run make deps". */
int snapshot_probe(char *why, size_t len);

/* The criu binary's version as `criu --version` prints it ("4.2.1"), into
 * out; run once per criu path and cached. Returns 0 or -errno ("" in out). */
int snapshot_criu_version(char *out, size_t len);

/* Checkpoints the running instance p: first the plugins (GPU state into
 * host memory), then its large anonymous memory into memory files of dir
 * when mem says so (snapmem.h; NULL: none), then criu. p (READY and idle: nothing in flight on
 * its channel) into dir, which must exist and be empty. The channel socket
 * and the log pipe are recorded as external, for restores to hand in fresh
 * ones. CRIU kills the instance after the dump; p still owns its fds and the
 * zombie: the caller calls instance_destroy(p). Then writes the manifest and
 * fills info. Returns 0 or -errno (criu's output tail logged); on failure
 * the instance may be dead or alive and dir holds a partial snapshot without
 * manifest, which snapshot_verify rejects. */
int snapshot_dump(const struct instance_proc *p, const char *dir,
		  const struct snapshot_mem_opts *mem, struct snapshot_info *info);

/* Checks dir against its manifest. 0, or -EBADMSG (corrupt, missing,
 * partial) / another -errno with a one-line reason in why. Restores do not
 * verify: verify once when a snapshot is loaded or before first use. */
int snapshot_verify(const char *dir, char *why, size_t len);

/* A cheap fingerprint of dir's files (names, sizes, mtimes, ctimes, inodes):
 * any write to a file changes it. Verify fully once, keep the fingerprint,
 * and verify again only when it changes. Returns 0 or -errno. */
int snapshot_fingerprint(const char *dir, uint64_t *out);

/* Starts a new copy of the snapshot in dir, in its own new pid namespace (as
 * many copies of one snapshot at once as wanted), with a fresh channel
 * socketpair and log pipe. Fills out as instance_spawn does (pid, pidfd, the
 * daemon's channel end, the log pipe's read end, the copy's new inodes);
 * the caller owns it (instance_destroy). The copy still believes it is the
 * instance that was dumped: the caller sends CH_RESTORED and waits for
 * CH_READY with its new instance id. t (may be NULL) gets timings. Returns 0
 * or -errno (criu's output tail logged; out holds nothing to close). */
int snapshot_restore(const char *dir, struct instance_proc *out, struct snapshot_timing *t);

/* Where a restore puts the copy: born in its own groups, under
 * memorySize, the pages criu restores charged there, criu's own memory
 * too while it runs. */
struct snapshot_groups {
	uint32_t memory_mb; /* fc.yaml memorySize */
	double cpu;	    /* and cpu */
	/* out: the copy's groups ("" where none could be made), the caller's
	 * to release. born: a criu started ahead was born in them
	 * (criu_swrk.h), limited to memory_mb before the request; the cpu
	 * limit is the caller's to write (reslimit_limit_cpu) once criu is
	 * done. Otherwise made here with both limits for an exec'd criu,
	 * which runs in the memory group; the caller moves the copy into the
	 * v1 cpu group once criu is done. */
	struct reslimit_groups groups;
	bool born;
};

/* As snapshot_restore, into the groups g says (may be NULL: none). */
int snapshot_restore_in(const char *dir, struct snapshot_groups *g, struct instance_proc *out,
			struct snapshot_timing *t);

#endif
