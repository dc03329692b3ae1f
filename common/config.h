/*
 * fc.yaml: one function's configuration, parsed with libyaml.
 *
 * Field names follow Alibaba Function Compute where one exists (see
 * docs/fc-yaml.md for the schema, defaults and ranges). An unknown field, a
 * wrong type or a value out of range is an error naming the file, the line,
 * the field and what was expected, e.g.
 *   examples/echo/fc.yaml:4: timeout: expected an integer of seconds in 1..86400, got "soon"
 */
#ifndef THAW_CONFIG_H
#define THAW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_kv {
	char *key;
	char *value;
};

/* A request the daemon sends to a fresh instance before it is snapshotted. */
struct config_warmup {
	char *method; /* default "POST" */
	char *path;   /* default "/" */
	char *body;   /* default "" */
	size_t body_len;
};

/* customHealthCheckConfig: an HTTP GET the instance must answer 2xx before
 * it is ready (Function Compute's fields and defaults). */
struct config_health {
	char *http_get_url;          /* httpGetUrl, a path; NULL: the port accepting is enough */
	uint32_t initial_delay_s;    /* initialDelaySeconds, default 0 */
	uint32_t period_s;           /* periodSeconds, default 5: between failed checks */
	uint32_t timeout_s;          /* timeoutSeconds, default 1 */
	uint32_t failure_threshold;  /* failureThreshold, default 3: then init failed */
	uint32_t success_threshold;  /* successThreshold, default 1 */
};

/* instanceLifecycleConfig.initializer / preStop. For a custom runtime the
 * hook is HTTP (POST /initialize, GET /pre-stop); handler is then only a
 * switch (set: call it). */
struct config_hook {
	char *handler;      /* NULL: no hook */
	uint32_t timeout_s; /* default 3 */
};

struct config_scaling {
	uint32_t min_instances;        /* minInstances, default 0 (scale to zero) */
	uint32_t max_instances;        /* maxInstances, default 8 */
	double target_concurrency;     /* targetConcurrency: in-flight per instance,
					  default instanceConcurrency * 0.7 */
	uint32_t stable_window_s;      /* stableWindowSeconds, default 60 */
	uint32_t panic_window_pct;     /* panicWindowPercentage, default 10 */
	uint32_t panic_threshold_pct;  /* panicThresholdPercentage, default 200 */
	uint32_t scale_to_zero_grace_s; /* scaleToZeroGracePeriodSeconds, default 30 */
	uint32_t spare_instances;      /* spareInstances: restored idle copies kept ahead
					* of demand while there was traffic, default 1 */
	uint32_t max_queue;            /* maxQueueLength: waiting requests, default 100 */
};

struct config {
	char *path;        /* the fc.yaml file it came from */
	char *dir;         /* absolute folder of the function: its files */
	char *name;        /* name (or functionName): [A-Za-z_][A-Za-z0-9_-]{0,63} */
	char *description;
	char *handler;     /* handler .so (or source folder), relative to dir */
	char *runtime;     /* "c" (default) or "custom" ("custom.debian12" reads as it) */
	bool custom;       /* runtime custom: an HTTP server command, no handler .so */
	uint32_t timeout_s;            /* timeout, default 3, 1..86400 */
	uint32_t memory_mb;            /* memorySize, default 512, 128..32768, multiple of 64 */
	double cpu;                    /* cpu, default 1, 0.05..16 */
	uint32_t instance_concurrency; /* instanceConcurrency, default 1, 1..200 */
	uint64_t max_body_bytes;       /* maxRequestBodySize, default 32 MiB */
	struct config_kv *env;         /* environmentVariables */
	size_t n_env;
	char **model_files;            /* modelFiles: paths relative to dir */
	size_t n_model_files;
	bool has_warmup;
	struct config_warmup warmup;   /* warmup */
	bool snapshot;                 /* snapshot, default true */
	struct {
		bool mapped;           /* snapshotMemory.mapped, default true */
		uint64_t min_bytes;    /* .minMappingSize, default 2 MiB */
		bool populate;         /* .populate, default false */
	} snapshot_memory;
	char *auth_type;               /* httpTrigger.authType: anonymous (default) | function */
	char *gpu_type;                /* gpuConfig.gpuType, NULL without GPU */
	uint32_t gpu_memory_mb;        /* gpuConfig.gpuMemorySize */
	struct config_scaling scaling; /* scalingConfig */
	/* customRuntimeConfig: the server command; required with runtime custom */
	char **command;                /* command: argv[0..] */
	size_t n_command;
	char **args;                   /* args: appended to command */
	size_t n_args;
	uint32_t port;                 /* port, default 9000, 1..65535 */
	struct config_health health;   /* customHealthCheckConfig */
	struct config_hook initializer; /* instanceLifecycleConfig.initializer */
	struct config_hook pre_stop;    /* instanceLifecycleConfig.preStop */
};

/* Parses path into out (zeroed first; on success the caller frees it with
 * config_free). Returns 0, or -EINVAL/-ENOENT/... with a one-line message in
 * err naming file, line and field. On error out holds nothing to free. */
int config_load(const char *path, struct config *out, char *err, size_t errlen);

/* Same, from a string already in memory; name_for_errors stands in for the
 * path in messages and dir is the function's folder. */
int config_parse(const char *yaml, size_t len, const char *name_for_errors, const char *dir,
		 struct config *out, char *err, size_t errlen);

/* Fills the defaults above; config_parse starts from these. */
void config_defaults(struct config *c);

void config_free(struct config *c);

#endif
