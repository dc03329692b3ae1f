/*
 * A function version's life: deploy, ready, failed, rollback, remove. Each
 * step updates the registry, writes the journal and keeps the snapshot
 * store in step; lifecycle_replay does the journal's steps again at start.
 * The registry knows none of this; pools and the admin API call it.
 */
#ifndef THAW_LIFECYCLE_H
#define THAW_LIFECYCLE_H

#include <stddef.h>

#include "daemon/registry.h"

struct imagestore_image;

/* A new version from cfg (taken on success) and image (NULL: a folder),
 * journaled before anyone can see it. 0, or -ENOSPC (a bound, named in why)
 * or the journal's -errno (why says so; nothing was deployed). */
int lifecycle_deploy(struct config *cfg, const struct imagestore_image *image,
		     struct function **out, char *why, size_t why_len);
/* An instance of fn is ready: the first time, fn serves (unless pinned
 * away), the snapshots of versions it made useless go, and it is
 * journaled. */
void lifecycle_ready(struct function *fn);
/* An instance of fn failed to start with msg. */
void lifecycle_failed(struct function *fn, const char *msg);
/* Rollback to version v (0: the ready one before the current), journaled
 * first. 0, -ENOENT or -EAGAIN as registry_switch, or the journal's -errno
 * (nothing switched). */
int lifecycle_rollback(struct fn_name *nm, unsigned v, struct function **out);
/* thaw rm: lookups stop finding nm at once, requests under way finish,
 * pools stop their instances as they go idle (lifecycle_removed_gc), its
 * snapshots go once no instance uses them. Journaled first: 0, -ENOENT, or
 * the journal's -errno (nothing removed). */
int lifecycle_remove(struct fn_name *nm);
/* For a version of a removed name, from its pool's tick: deletes its
 * snapshot folder once no instance of it is left (once). */
void lifecycle_removed_gc(struct function *fn);
/* Loads every DIR/<x>/fc.yaml (--functions; not journaled: loaded anew
 * each start). The number loaded, or -errno when dir cannot be read. */
int lifecycle_load_dir(const char *dir);
/* At start: the journal's deploys, rollbacks, removals, readiness and
 * failures again, so the daemon serves what it served. The number of
 * lines applied, or -errno when the journal cannot be read. */
int lifecycle_replay(void);

#endif
