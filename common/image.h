/*
 * The JSON documents of an OCI image layout (image-spec v1.1): the image
 * config, the manifest, index.json and oci-layout.
 *
 * Each is built as cJSON objects in a fixed order and printed with
 * cJSON_PrintUnformatted, so the same inputs give the same bytes (and the
 * same digests). Strings returned are the caller's to free().
 */
#ifndef THAW_BUILDER_IMAGE_H
#define THAW_BUILDER_IMAGE_H

#include "common/oci.h"
#include "common/config.h"

#include <stddef.h>
#include <time.h>

#define IMAGE_FUNCTION_DIR "function" /* where the function's files sit in the image */

struct image_layer {
	struct oci_desc desc;
	const char *media_type;
	const char *kind; /* "model" or "code": the io.thaw.layer annotation */
};

/* The image config: architecture, os, config.Entrypoint ["thaw-instance"],
 * config.Env from environmentVariables, config.WorkingDir, config.Labels,
 * rootfs.diff_ids, and a "thaw" section with the function's settings.
 * handler_path is the handler .so's path inside the image; created is the
 * time written as "created" (the files' mtime, not the clock: the same
 * inputs must give the same bytes). */
char *image_config_json(const struct config *c, const char *handler_path,
			const struct image_layer *layers, size_t n_layers, time_t created);

/* The config's "thaw" section alone: every setting of fc.yaml after
 * defaults, spelled as in fc.yaml. The caller frees it with cJSON_Delete. */
struct cJSON *image_settings_json(const struct config *c, const char *handler_path);

/* The manifest naming config and layers, annotated with the function name. */
char *image_manifest_json(const struct config *c, const struct oci_desc *config,
			  const struct image_layer *layers, size_t n_layers);

/* index.json with the one manifest, tagged "latest". */
char *image_index_json(const struct config *c, const struct oci_desc *manifest);

/* The content of the oci-layout file. */
const char *image_layout_json(void);

#endif
