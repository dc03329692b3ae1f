/*
 * The daemon's image store: OCI images uploaded by `thaw deploy` through
 * the admin API, unpacked into the folders functions run from.
 *
 *   STATE/images/blobs/sha256/<hex>   uploaded blobs (manifests, configs; a
 *                                     layer's tar until it is unpacked)
 *   STATE/images/layers/<hex>/        an unpacked layer (its tar is then
 *                                     deleted: one copy of the weights on disk)
 *   STATE/images/functions/<hex>/     an image's files: every layer's files
 *                                     hard-linked in order, the function in
 *                                     function/ (<hex>: the manifest's digest)
 *
 * Uploads are checked against the digest they claim before they are kept.
 * Layers may hold only folders and regular files under function/: links,
 * devices, absolute paths, '..' and whiteouts are refused.
 */
#ifndef THAW_IMAGESTORE_H
#define THAW_IMAGESTORE_H

#include "common/oci.h"
#include "common/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest blob accepted (a layer of weights); manifests and configs are
 * far smaller (IMAGESTORE_MAX_DOC). */
#define IMAGESTORE_MAX_BLOB (256ull << 30)
#define IMAGESTORE_MAX_DOC (4u << 20)

/* Creates the folders under state_dir and drops half-written uploads and
 * unpackings left by a daemon that died. Returns 0 or -errno (logged). */
int imagestore_init(const char *state_dir);

/* Whether the store holds digest, as a blob or as an unpacked layer; size
 * (when not NULL) gets its size in bytes. */
bool imagestore_has(const char *digest, uint64_t *size);

struct imagestore_upload {
	struct oci_blob blob;
	char digest[OCI_DIGEST_LEN + 1]; /* what the client says it sends */
	char *buf;			 /* received bytes gathered into large writes */
	size_t len;
};

/* Starts storing a blob the client calls digest. 0, or -EINVAL (not a
 * digest) / -errno, with a message in err. */
int imagestore_upload_begin(struct imagestore_upload *u, const char *digest, char *err,
			    size_t errlen);
/* Appends bytes; 0 or -errno (then abort). */
int imagestore_upload_write(struct imagestore_upload *u, const void *data, size_t n);
/* Keeps the blob when its bytes hash to the claimed digest: 0, or
 * -EBADMSG (they do not) / -errno, with a message in err. Either way u is
 * finished. */
int imagestore_upload_commit(struct imagestore_upload *u, uint64_t *size, char *err, size_t errlen);
void imagestore_upload_abort(struct imagestore_upload *u);

/* What a deploy of an image needs to know about it. */
struct imagestore_image {
	char digest[OCI_DIGEST_LEN + 1]; /* the manifest's */
	char layers[8][OCI_DIGEST_LEN + 1];
	char layer_kinds[8][8]; /* io.thaw.layer: "model", "code" or "" */
	unsigned n_layers;
};

/* Unpacks image `digest` (its blobs uploaded) into its function folder,
 * unless done before, and loads its fc.yaml into cfg with the handler the
 * image config names. Blocking (seconds for large layers): call it off the
 * loops. Returns 0 (cfg to free with config_free) or -errno with one line in
 * err: a missing blob, a manifest or config that is not what thaw build
 * writes, a refused layer entry, an fc.yaml error. */
int imagestore_load(const char *digest, struct config *cfg, struct imagestore_image *img, char *err,
		    size_t errlen);

/* Deletes what none of images (manifest digests of the versions deployed)
 * needs: other image folders, unpacked layers and blobs, such as those of
 * removed functions and uploads never deployed. Call at start, before the
 * admin API serves (nothing else may use the store meanwhile). */
void imagestore_gc(const char *const *images, size_t n);

#endif
