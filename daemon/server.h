/*
 * The daemon's one mutable global, `server`: options, the registry's tables
 * (registry.h), the loops and daemon-wide metrics. It includes only types:
 * any module may read it without depending on the daemon's higher layers.
 *
 * Threads: one io_uring loop ("shard") per core, each with its own listener
 * (SO_REUSEPORT), connections and timers; each function version's pool runs
 * on one of them (pool.h).
 */
#ifndef THAW_SERVER_H
#define THAW_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/metrics.h"
#include "daemon/function.h"

#define MAX_SHARDS 64

struct shard;

struct server_options {
	const char *listen;        /* address, default 0.0.0.0 */
	unsigned port;             /* default 9000 */
	unsigned grpc_port;        /* gRPC (h2c) too, default 8500 (TF Serving's); 0 = off */
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
	const char *snapshot_from;  /* --snapshot-from: snapshots that came with the image, <dir>/<name>; NULL: /snapshot (daemon/travel.h) */
	const char *snapshot_dir;   /* images, on a tmpfs: /dev/shm/thaw-mem/thaw-<id> (snapshot/snapmem.h) */
	const char *instance_user;  /* --instance-user: instances run as it; NULL: root */
	unsigned scratch_mb;        /* --scratch-mb: each instance's own /tmp and /dev/shm
				     * (proc/scratch.h), MiB each; 0 = shared; 512 */
	char instance_bin[4096];    /* thaw-instance beside the thaw binary */
};

struct server {
	struct server_options opt;
	char admin_token[65];
	struct function *functions[MAX_FUNCTIONS];
	atomic_uint n_functions;
	struct fn_name *names[MAX_NAMES];
	atomic_uint n_names;
	_Atomic(struct fn_name *) name_index[2 * MAX_NAMES]; /* open addressing */
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

/* One answered request, as the access log (--access-log) writes it: a JSON
 * line on stderr, the same fields for HTTP and gRPC. */
struct access_entry {
	const char *request_id;
	const char *function; /* NULL: no function matched */
	const char *method;
	const char *protocol; /* "grpc", with grpc_status; NULL for HTTP */
	const char *path;
	size_t path_len;
	int status;
	int grpc_status;
	int64_t dur_ns;
};
void server_access_log(const struct access_entry *e);

#endif
