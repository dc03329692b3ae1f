/*
 * `thaw build --base BASE [--snapshot DIR]`: the function's image made
 * runnable, and a snapshot that travels with it (docs/kubernetes.md).
 *
 * BASE is an OCI image layout holding thaw itself (scripts/thaw-image.py:
 * thaw, thaw-instance, CRIU and their libraries; entrypoint `thaw serve`).
 * The function's image (its model and code layers under /function, as
 * builder_build wrote it) is rewritten in place to stand on it: the base's
 * layers first (blobs copied in, digests checked), then the function's; the
 * base's Entrypoint, Cmd, Env, WorkingDir and ExposedPorts; labels of both;
 * the function's "thaw" settings; annotation io.thaw.base = the base's
 * manifest digest. One image a Knative Service or Deployment names by
 * digest.
 *
 * DIR is a snapshot folder a daemon took of this function (it holds
 * thaw-node, daemon/travel.h): its files become one more layer at
 * /snapshot/<name>/, annotated with the facts a node must match to restore
 * it (io.thaw.snapshot.kernel, .cpu-flags, .criu-version, .thaw-version,
 * .source, .dir) and io.thaw.snapshot.image-digest, the digest of the
 * runnable image without that layer: the image it was taken from.
 *
 * Reproducible as builder_build: the same function, base and snapshot
 * folder give the same manifest digest.
 */
#ifndef THAW_BUILDER_RUNNABLE_H
#define THAW_BUILDER_RUNNABLE_H

#include "common/oci.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct runnable_result {
	struct oci_desc manifest, config; /* the image index.json now names */
	char base_digest[OCI_DIGEST_LEN + 1];
	size_t n_base_layers;
	uint64_t base_bytes;
	char runnable_digest[OCI_DIGEST_LEN + 1]; /* without the snapshot layer */
	bool snapshot;
	struct oci_desc snapshot_layer;
	size_t snapshot_files;
};

/* Rewrites the layout image (one manifest, builder_build's) onto the
 * layout base, adding the snapshot folder snapshot (NULL: none) of
 * function name. Returns 0 and fills r, or -errno with one line in err:
 * a missing or broken layout, a blob whose bytes do not match its digest,
 * a snapshot folder without thaw-node or of another function. */
int runnable_make(const char *image, const char *base, const char *snapshot, const char *name,
		  struct runnable_result *r, char *err, size_t errlen);

#endif
