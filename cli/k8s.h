/*
 * `thaw k8s DIR`: a function's fc.yaml as Kubernetes manifests
 * (docs/kubernetes.md). The mapping itself is k8s_render, a pure function
 * of a parsed config and the options, so that tests can check it field by
 * field; cli_k8s (cli.h) reads the files, the image digest and the flags.
 */
#ifndef THAW_CLI_K8S_H
#define THAW_CLI_K8S_H

#include "common/config.h"

#include <stddef.h>

enum k8s_kind {
	K8S_KNATIVE,    /* one serving.knative.dev/v1 Service */
	K8S_DEPLOYMENT, /* apps/v1 Deployment + v1 Service + KEDA HTTPScaledObject */
};

/* Resources of the pod beyond its instances: the daemon, criu while it dumps. */
#define K8S_DAEMON_CPU_M 100
#define K8S_DAEMON_MEM_MI 128
/* Instances per pod when --instances-per-pod is not given (capped at
 * scalingConfig.maxInstances). */
#define K8S_DEFAULT_PER_POD 4
/* --seccomp's value for no filter (snapshots need it, docs/kubernetes.md) */
#define K8S_SECCOMP_UNCONFINED "unconfined"

struct k8s_opts {
	enum k8s_kind kind;
	const char *image;     /* REPO@sha256:HEX, complete */
	const char *name;      /* the objects' name; NULL: the function's name */
	const char *namespace; /* NULL: none written (kubectl's current one) */
	const char *host;      /* HTTPScaledObject host; NULL: the name */
	unsigned per_pod;      /* instances per pod; 0: the default above */
	unsigned port;         /* the daemon's port in the pod; 0: 8080 */
	const char *seccomp;   /* Localhost profile path, or K8S_SECCOMP_UNCONFINED;
				* NULL: thaw/seccomp-thaw.json */
};

/* Renders cfg as YAML documents into *yaml (the caller frees it). Returns
 * 0, or -EINVAL with one line in err: for a field of fc.yaml it names the
 * file and, where the field is written there, its line ("fn/fc.yaml:2:
 * name: ..."); for an option's value, the option ("--name ..."). On error
 * *yaml is NULL. Warnings (the manifest is valid but something will
 * not act as on one machine) go into warn, one per line, "" when none.
 * The output depends on cfg and o alone: the same input gives the same bytes. */
int k8s_render(const struct config *cfg, const struct k8s_opts *o, char **yaml, char *err,
	       size_t errlen, char *warn, size_t warnlen);

/* Line (from 1) where field ("name", "scalingConfig.maxInstances") is set
 * in the YAML file at path; 0 when it is not set there or the file cannot
 * be read. "name" also finds "functionName". */
unsigned k8s_field_line(const char *path, const char *field);

#endif
