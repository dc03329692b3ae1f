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

#include "config.h"
#include "metrics.h"

#define MAX_FUNCTIONS 1024
#define MAX_SHARDS 64

enum fn_state { FN_STARTING, FN_READY, FN_FAILED };
/* NONE: not taken yet; TAKING: the first instance is being dumped (pools
 * wait rather than cold-start); READY: instances start by restore; OFF: cold
 * starts only (snapshots off, disabled in fc.yaml, or the snapshot failed). */
enum snap_state { SNAP_NONE, SNAP_TAKING, SNAP_READY, SNAP_OFF };

struct function {
	struct config cfg;
	char *handler_path;   /* absolute .so */
	unsigned index;       /* slot in the registry and in every shard's pools */
	atomic_int state;     /* enum fn_state */
	pthread_mutex_t lock; /* guards init_error */
	char init_error[512];
	struct fn_metrics metrics;
	atomic_int snap_state; /* enum snap_state */
	char snap_dir[4096];   /* set before snap_state becomes TAKING */
	atomic_uint_least64_t snap_fingerprint; /* of the files last verified whole */
};

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
	unsigned max_connections;   /* per daemon: 20000 */
	unsigned init_timeout_s;    /* handler init: 300 s */
	bool access_log;            /* a JSON line per request on stderr */
	bool no_snapshots;          /* --no-snapshots: cold starts only */
	const char *snapshot_dir;   /* images, on a tmpfs: /dev/shm/thaw-<id> */
	char instance_bin[4096];    /* thaw-instance beside the thaw binary */
};

struct server {
	struct server_options opt;
	char admin_token[65];
	struct function *functions[MAX_FUNCTIONS];
	atomic_uint n_functions;
	pthread_mutex_t registry_lock; /* serialises writers only */
	struct shard *shards[MAX_SHARDS];
	unsigned n_shards;
	struct server_metrics metrics;
	atomic_bool stopping;
	atomic_bool draining;    /* SIGTERM: no new connections, finish what runs */
	atomic_uint drained;     /* shards with nothing left to do */
	bool snapshots; /* CRIU usable (probed at start) */
	int64_t start_ns;
};

extern struct server server;

/* Fills the embedded defaults. */
void server_options_default(struct server_options *o);
/* State dir, admin token, functions dir, loops; returns after SIGTERM/SIGINT.
 * Returns 0 or -errno with the reason logged. */
int server_run(void);

/* Registry. server_find_function returns NULL when absent. */
struct function *server_find_function(const char *name, size_t len);
/* Takes ownership of cfg (moved into the function). Returns 0, -EEXIST for a
 * taken name, -ENOSPC when full. */
int server_add_function(struct config *cfg, struct function **out);
/* Loads every DIR/<x>/fc.yaml; errors are logged per folder. Returns the
 * number loaded or -errno when dir cannot be read. */
int server_load_functions_dir(const char *dir);

void function_set_failed(struct function *fn, const char *msg);
/* Copies the init error (under the lock) into out. */
void function_error(struct function *fn, char *out, size_t len);

#endif
