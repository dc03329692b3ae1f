/*
 * OCI blob store: content-addressed files under <image>/blobs/sha256/.
 *
 * A blob is streamed into a temporary file in the blobs folder while its
 * SHA-256 (OpenSSL EVP) is computed, then renamed to its digest, so nothing
 * is ever held whole in memory and a finished blob is never half written.
 * A blob that already exists under its digest is kept and the new copy
 * dropped (same digest, same bytes).
 */
#ifndef THAW_BUILDER_OCI_H
#define THAW_BUILDER_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OCI_DIGEST_LEN (7 + 64) /* "sha256:" + 64 hex digits */

#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_MT_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"

/* What a descriptor needs: digest and size of a stored blob. */
struct oci_desc {
	char digest[OCI_DIGEST_LEN + 1];
	uint64_t size;
};

/* A blob being written; opaque apart from its size so far. */
struct oci_blob {
	int fd;
	uint64_t size;
	void *md; /* EVP_MD_CTX */
	char *tmp; /* temporary path, owned */
	char *blobs_dir; /* owned */
};

/* Creates <image>/blobs/sha256 (and <image>) when missing. Returns 0 or
 * -errno with a message in err. */
int oci_layout_init(const char *image, char *err, size_t errlen);

/* Starts a blob in blobs_dir (<image>/blobs/sha256). Returns 0 or -errno;
 * on success the caller ends it with oci_blob_commit or oci_blob_abort. */
int oci_blob_open(struct oci_blob *b, const char *blobs_dir, char *err, size_t errlen);
/* Appends n bytes. Returns 0 or -errno (the blob must then be aborted). */
int oci_blob_write(struct oci_blob *b, const void *data, size_t n);
/* Finishes the hash, renames the file to its digest and fills out. Returns
 * 0 or -errno; either way the blob is closed and needs nothing more. */
int oci_blob_commit(struct oci_blob *b, struct oci_desc *out, char *err, size_t errlen);
/* Same, but only when the bytes hash to expect ("sha256:<hex>"); otherwise
 * -EBADMSG, nothing stored. */
int oci_blob_commit_as(struct oci_blob *b, const char *expect, struct oci_desc *out, char *err,
		       size_t errlen);
/* Drops a blob being written (removes its temporary file). */
void oci_blob_abort(struct oci_blob *b);

/* Stores a small blob already in memory. Returns 0 or -errno. */
int oci_blob_put(const char *blobs_dir, const void *data, size_t n, struct oci_desc *out,
		 char *err, size_t errlen);

/* Whether s is "sha256:" and 64 lower-case hex digits. */
bool oci_digest_valid(const char *s);

/* SHA-256 of a file as "sha256:<hex>", with its size: for checks. Returns 0
 * or -errno. */
int oci_file_digest(const char *path, struct oci_desc *out);

/* Writes path atomically (temporary file, then rename). Returns 0 or -errno. */
int oci_write_file(const char *path, const void *data, size_t n, char *err, size_t errlen);

/* Removes every blob of blobs_dir not named in keep (digests "sha256:..."),
 * and leftover temporary files. Returns how many it removed. */
int oci_blobs_prune(const char *blobs_dir, const char *const *keep, size_t n_keep);

#endif
