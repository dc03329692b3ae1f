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

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "fnlog.h"
#include "metrics.h"

/* Registry bounds. Slots are not reused while the daemon runs (loops read
 * the registry without locks): removed functions give theirs back at the
 * next start, whose journal replay skips them. */
#define MAX_FUNCTIONS 4096 /* versions of all functions together */
#define MAX_NAMES 1024
#define MAX_VERSIONS 1024

enum fn_state { FN_STARTING, FN_READY, FN_FAILED };
/* NONE: not taken yet; TAKING: the first instance is being dumped (pools
 * wait rather than cold-start); READY: instances start by restore; OFF: cold
 * starts only (snapshots off, disabled in fc.yaml, or the snapshot failed). */
enum snap_state { SNAP_NONE, SNAP_TAKING, SNAP_READY, SNAP_OFF };

struct fn_name;
struct imagestore_image;
struct pool;

/* One deployed version of a function. Versions are never freed while the
 * daemon runs: requests that started on one finish on it. */
struct function {
	struct config cfg;
	char *handler_path;   /* absolute .so */
	struct imagestore_image *image; /* deployed from an uploaded image; NULL: a folder */
	char *changes;        /* JSON array: what differs from the version before */
	unsigned index;       /* slot in the registry and in every shard's pools */
	unsigned version;     /* 1, 2, ... per name */
	struct fn_name *name; /* its name's version table */
	int64_t deployed_at;  /* unix seconds */
	bool promoted;        /* became current once (first READY) */
	atomic_bool journaled; /* deployed through the admin API: its READY and
				* failure go to the journal (--functions ones
				* are loaded anew each start) */
	bool fail_journaled;  /* its failure before any READY is in the journal */
	bool broken;          /* could not be loaded at a restart: never starts */
	bool snap_reused;     /* its snapshot is from an earlier daemon run */
	atomic_int state;     /* enum fn_state */
	pthread_mutex_t lock; /* guards init_error */
	char init_error[512];
	struct fn_metrics metrics;
	atomic_int snap_state; /* enum snap_state */
	char snap_dir[4096];   /* set before snap_state becomes TAKING */
	char snap_source[65];  /* what its instances start from (fnsnap.h) */
	atomic_uint_least64_t snap_fingerprint; /* of the files last verified whole */
	/* first cold start, the snapshot and the first restore, for deploy reports */
	_Atomic double init_ms, dump_ms, restore_ms;
	atomic_uint_least64_t snap_bytes;
	atomic_bool snap_dropped; /* removed: its snapshot folder is deleted */
	_Atomic(struct pool *) pool; /* made on first use (pool_of) */
};

/* A function name: its versions and the one serving. Traffic switches
 * atomically: a request picks `current` once and stays on that version. */
struct fn_name {
	char name[65];
	_Atomic(struct function *) current; /* NULL until a version is ready */
	struct function *versions[MAX_VERSIONS]; /* [v - first] */
	unsigned first;          /* the oldest version kept: 1, or more when a
				  * restart retired older ones (journal.h) */
	atomic_uint n_versions;  /* the newest version's number */
	bool pinned; /* rolled back: a version getting ready does not take over */
	struct fnlog log; /* STATE/logs/<name>.log */
	atomic_bool removed; /* thaw rm: never found again; a new deploy makes a new name */
};

/* Version v of nm, or NULL: none such, or retired at a restart. */
static inline struct function *fn_name_version(struct fn_name *nm, unsigned v)
{
	return v >= nm->first && v <= atomic_load(&nm->n_versions) ? nm->versions[v - nm->first]
								  : NULL;
}

/* The newest version of nm (a name is published with one). */
static inline struct function *fn_name_newest(struct fn_name *nm)
{
	return nm->versions[atomic_load(&nm->n_versions) - nm->first];
}

struct shard;


/* The version serving name (the newest one while none is ready yet), or
 * NULL when absent. */
struct function *registry_find_function(const char *name, size_t len);
/* Version v of name, or NULL. */
struct function *registry_find_version(const char *name, size_t len, unsigned v);
/* The name's table, or NULL when absent or removed. O(1): a hash index. */
struct fn_name *registry_find_name(const char *name, size_t len);
static inline bool function_removed(const struct function *fn)
{
	return atomic_load(&fn->name->removed);
}

/* Adds cfg as a new version of its name (version 1 for a new name, or
 * version when not 0: a restart that retired the ones before it). prepare
 * (may be NULL) runs on the new version before any reader can see it.
 * Takes ownership of cfg; image (NULL for a folder) is copied. Returns 0,
 * or -ENOSPC when a table is full (registry_full_why says which). */
int registry_add(struct config *cfg, const struct imagestore_image *image, unsigned version,
		 void (*prepare)(struct function *fn), struct function **out);
/* Why registry_add refused a version of name with -ENOSPC: which bound,
 * and what frees it. */
void registry_full_why(const char *name, char *out, size_t len);
/* Switches name's traffic to version v (0: the ready version before the
 * current one) and pins it. Returns 0, -ENOENT (no such version) or -EAGAIN
 * (failed). */
int registry_switch(struct fn_name *nm, unsigned v, struct function **out);
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
 * finish. 0, or -ENOENT when already removed. */
int registry_remove(struct fn_name *nm);

#endif
