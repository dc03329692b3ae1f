/*
 * The daemon's one mutable global, `server`, and the types every loop shares.
 *
 * Threads: one io_uring loop ("shard") per core, each with its own listener
 * (SO_REUSEPORT), connections, timers and instance pools. Functions are
 * shared and read-mostly: the registry only grows (a slot is never freed
 * while the daemon runs), so loops read it without locks.
 */
#ifndef THAW_SERVER_H
#define THAW_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "fnlog.h"
#include "metrics.h"

/* Registry bounds. Slots are not reused while the daemon runs (loops read
 * the registry without locks): removed functions give theirs back at the
 * next start, whose journal replay skips them. */
#define MAX_FUNCTIONS 4096 /* versions of all functions together */
#define MAX_NAMES 1024
#define MAX_VERSIONS 1024
#define MAX_SHARDS 64

enum fn_state { FN_STARTING, FN_READY, FN_FAILED };
/* NONE: not taken yet; TAKING: the first instance is being dumped (pools
 * wait rather than cold-start); READY: instances start by restore; OFF: cold
 * starts only (snapshots off, disabled in fc.yaml, or the snapshot failed). */
enum snap_state { SNAP_NONE, SNAP_TAKING, SNAP_READY, SNAP_OFF };

struct fn_name;
struct imagestore_image;

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

struct server_options {
	const char *listen;        /* address, default 0.0.0.0 */
	unsigned port;             /* default 9000 */
	unsigned threads;          /* loops; default: cores */
	const char *functions_dir; /* folders with fc.yaml to load at start */
	const char *state_dir;     /* /var/lib/thaw, or $XDG_STATE_HOME/thaw */
	uint32_t max_header_bytes; /* 8 KiB (Function Compute's limit) */
	unsigned header_timeout_ms; /* 408 past it: 10 s */
	unsigned body_timeout_ms;   /* 408 past it: 60 s */
	unsigned idle_timeout_ms;   /* keep-alive idle close: 60 s */
	unsigned send_timeout_ms;   /* a response not read that long: close; 60 s */
	uint64_t max_buffered;      /* response bytes held for slow clients, all
				     * together; past it invocations get 503: a
				     * quarter of RAM, at least 256 MiB */
	unsigned proxy_timeout_ms;  /* /proxy upstream silent that long: 504 or close; 30 s */
	unsigned max_connections;   /* per daemon: 20000 */
	unsigned init_timeout_s;    /* handler init: 300 s */
	bool access_log;            /* a JSON line per request on stderr */
	bool no_snapshots;          /* --no-snapshots: cold starts only */
	const char *snapshot_dir;   /* images, on a tmpfs: /dev/shm/thaw-<id> */
	const char *instance_user;  /* --instance-user: instances run as it; NULL: root */
	char instance_bin[4096];    /* thaw-instance beside the thaw binary */
};

struct server {
	struct server_options opt;
	char admin_token[65];
	struct function *functions[MAX_FUNCTIONS];
	atomic_uint n_functions;
	struct fn_name *names[MAX_NAMES];
	atomic_uint n_names;
	pthread_mutex_t registry_lock; /* serialises writers only */
	struct shard *shards[MAX_SHARDS];
	unsigned n_shards;
	struct server_metrics metrics;
	atomic_bool stopping;
	atomic_bool draining;    /* SIGTERM: no new connections, finish what runs */
	atomic_uint drained;     /* shards with nothing left to do */
	bool snapshots; /* CRIU usable (probed at start) */
	uid_t instance_uid; /* --instance-user's uid; 0: instances run as root */
	int64_t start_ns;
};

extern struct server server;

/* Fills the embedded defaults. */
void server_options_default(struct server_options *o);
/* State dir, admin token, functions dir, loops; returns after SIGTERM/SIGINT.
 * Returns 0 or -errno with the reason logged. */
int server_run(void);

/* Registry. The version serving name (the newest one while none is ready
 * yet), or NULL when absent. */
struct function *server_find_function(const char *name, size_t len);
/* Version v of name, or NULL. */
struct function *server_find_version(const char *name, size_t len, unsigned v);
/* The name's table, or NULL when absent or removed. */
struct fn_name *server_find_name(const char *name, size_t len);
/* Removes nm: lookups stop finding it at once (requests under way finish),
 * pools stop starting instances and scale in as they go idle
 * (function_removed_gc), its log file is closed. Snapshot folders of
 * versions without instances are deleted now, the others by
 * function_removed_gc. 0, or -ENOENT when already removed. */
int server_remove(struct fn_name *nm);
static inline bool function_removed(const struct function *fn)
{
	return atomic_load(&fn->name->removed);
}
/* For a version of a removed name: deletes its snapshot folder once no
 * instance of it is left on any loop (once). */
void function_removed_gc(struct function *fn);
/* rm -rf dir (a child process, waited for). */
void server_rm_rf(const char *dir);
/* Adds cfg as a new version of its name (version 1 for a new name, or
 * version when not 0: a restart that retired the ones before it); it
 * serves once ready (function_mark_ready), so a broken deploy leaves the
 * previous version serving. Takes ownership of cfg; image (NULL for a
 * folder) is copied. Returns 0, or -ENOSPC when a table is full. */
int server_add_function(struct config *cfg, const struct imagestore_image *image,
			unsigned version, struct function **out);
/* server_add_function for a deploy through the admin API: the deploy is
 * journaled (STATE/deployments.jsonl) before the version is published; when
 * that write fails nothing is added. Returns 0, or -ENOSPC (a table is
 * full) or the journal's -errno, with why (for a 507) in why; cfg is then
 * still the caller's. */
int server_deploy(struct config *cfg, const struct imagestore_image *image,
		  struct function **out, char *why, size_t why_len);
/* Why server_add_function refused a version of name with -ENOSPC: which
 * bound, and what frees it. */
void server_full_why(const char *name, char *out, size_t len);
/* A version of name that cannot be started (its deploy, from folder dir or
 * NULL for an image, cannot be loaded again at a restart): failed with why,
 * so that the versions after it keep their numbers. 0 or -ENOSPC. */
int server_add_placeholder(const char *name, const char *dir, const char *why,
			   unsigned version, struct function **out);
/* Switches name's traffic to version v (0: the ready version before the
 * current one). Returns 0, -ENOENT (no such version) or -EAGAIN (not
 * ready). */
int server_rollback(struct fn_name *n, unsigned v, struct function **out);
/* READY of a version: the first makes it current if it is its name's newest
 * and no rollback pinned another (then the snapshots of versions other than
 * it and the one it replaced are deleted), and is journaled. */
void function_mark_ready(struct function *fn);
/* Loads every DIR/<x>/fc.yaml; errors are logged per folder. Returns the
 * number loaded or -errno when dir cannot be read. */
int server_load_functions_dir(const char *dir);

/* An instance failed to start with msg: the version is FAILED unless another
 * of its instances serves; a version never READY journals it once. */
void function_set_failed(struct function *fn, const char *msg);
/* Copies the init error (under the lock) into out. */
void function_error(struct function *fn, char *out, size_t len);

#endif
