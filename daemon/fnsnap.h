/*
 * A function version's snapshot folder, SNAPSHOT_DIR/<name>-v<version>:
 * what it was made from, whether a folder left by an earlier run of the
 * daemon may serve again, and when folders are deleted.
 *
 * The snapshot folder outlives the daemon (it is on a tmpfs), but a name and
 * version are not enough to trust it: a state folder can be wiped and the
 * version deployed again from another image, an fc.yaml under --functions
 * can change between runs, thaw-instance can be rebuilt. So every snapshot
 * carries FNSNAP_SOURCE_NAME, the SHA-256 of what its instance started from
 * (the thaw-instance binary, and the image digest or the folder's fc.yaml,
 * handler and model files by path, size, mtime and inode), covered by the
 * snapshot's manifest; a folder is reused only when that matches.
 */
#ifndef THAW_FNSNAP_H
#define THAW_FNSNAP_H

#include "daemon/server.h"

#define FNSNAP_SOURCE_NAME "thaw-source"

/* Sets fn's snap_dir, snap_source and snap_state; reuses an earlier run's
 * snapshot of the same source (verified), else deletes that folder. Called
 * once, when the version is added. */
void fnsnap_init(struct function *fn);
/* Writes fn's source into its (new, empty) snapshot folder before the dump.
 * Returns 0 or -errno. */
int fnsnap_write_source(const struct function *fn);
/* Deletes the snapshots of nm's versions other than keep and replaced
 * (restored copies running do not need them; a start to come takes a new
 * one). Called when keep takes over from replaced: the serving version and
 * the likely rollback keep theirs, so snapshots do not pile up in RAM. */
void fnsnap_drop_others(struct fn_name *nm, unsigned keep, unsigned replaced);
/* At start, after the journal is replayed: deletes folders of the snapshot
 * dir that no version uses (removed functions, an earlier state folder). */
void fnsnap_sweep(void);

#endif
