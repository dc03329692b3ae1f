/*
 * A deployed function: its versions (struct function) and its name's table
 * (struct fn_name). Types only; the registry (registry.h) holds and finds
 * them, the lifecycle (lifecycle.h) changes their state.
 */
#ifndef THAW_FUNCTION_H
#define THAW_FUNCTION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "daemon/fnlog.h"
#include "daemon/metrics.h"

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
	/* dumps and restores that failed in a row, and the time (CLOCK_MONOTONIC
	 * ns) before which instances cold start instead of trying again
	 * (pool_start.c: a full snapshot folder or a failed restore is not for
	 * good) */
	atomic_uint dump_failures, restore_failures;
	_Atomic int64_t snap_retry_ns;
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

static inline bool function_removed(const struct function *fn)
{
	return atomic_load(&fn->name->removed);
}

#endif
