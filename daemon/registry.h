/*
 * The registry: deployed functions, their versions and the one each name
 * serves. It knows nothing of the journal, snapshots or pools (lifecycle.h
 * ties them together).
 *
 * Threads: read without locks by every loop; writers serialise on
 * server.registry_lock. It only grows while the daemon runs (a slot is
 * never freed, a version never freed), so a reader's pointer stays valid;
 * a name is found through a hash index whose slots are written once.
 */
#ifndef THAW_REGISTRY_H
#define THAW_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/function.h"

/* The version serving name (the newest one while none is ready yet), or
 * NULL when absent. */
struct function *registry_find_function(const char *name, size_t len);
/* Version v of name, or NULL. */
struct function *registry_find_version(const char *name, size_t len, unsigned v);
/* The name's table, or NULL when absent or removed. O(1): a hash index. */
struct fn_name *registry_find_name(const char *name, size_t len);

/* Adds cfg as a new version of its name (version 1 for a new name, or
 * version when not 0: a restart that retired the ones before it). prepare
 * (may be NULL) runs on the new version under the registry's lock, before
 * any reader can see it; its error (-errno) adds nothing and is returned.
 * Takes ownership of cfg on success (on failure cfg is still the caller's);
 * image (NULL for a folder) is copied. Returns 0, prepare's error, or
 * -ENOSPC when a table is full (registry_full_why says which). */
int registry_add(struct config *cfg, const struct imagestore_image *image, unsigned version,
		 int (*prepare)(struct function *fn), struct function **out);
/* Why registry_add refused a version of name with -ENOSPC: which bound,
 * and what frees it. */
void registry_full_why(const char *name, char *out, size_t len);
/* Switches name's traffic to version v (0: the ready version before the
 * current one) and pins it. commit (may be NULL) runs under the registry's
 * lock once the version is found, before the switch: its error (-errno)
 * switches nothing and is returned. Returns 0, -ENOENT (no such version),
 * -EAGAIN (failed) or commit's error. */
int registry_switch(struct fn_name *nm, unsigned v, int (*commit)(struct function *to),
		    struct function **out);
/* fn is ready: the first time, it becomes current when it is its name's
 * newest and no rollback pinned another. Returns true the first time;
 * *replaced is the version it took over from (0: none). */
bool registry_promote(struct function *fn, unsigned *replaced);
/* An instance of fn failed to start with msg: fn is FAILED unless another
 * of its instances serves. Returns true when this is the first failure of a
 * version never ready (worth remembering across restarts). */
bool registry_fail(struct function *fn, const char *msg);
/* Copies fn's last error (under its lock) into out. */
void function_error(struct function *fn, char *out, size_t len);
/* Marks nm removed: lookups stop finding it at once; requests under way
 * finish. commit (may be NULL) runs first under the registry's lock: its
 * error removes nothing and is returned. 0, -ENOENT when already removed,
 * or commit's error. */
int registry_remove(struct fn_name *nm, int (*commit)(struct fn_name *nm));

#endif
