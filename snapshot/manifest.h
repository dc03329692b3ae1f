/*
 * Checksum manifest of a snapshot directory: MANIFEST_NAME lists every
 * regular file of the snapshot with its size and SHA-256 (OpenSSL EVP), and
 * ends with a line counting them, so a truncated manifest is caught too.
 *
 *   thaw-manifest v1
 *   <sha256 hex> <size> <name>
 *   ...
 *   end <count>
 *
 * Files that CRIU writes on every restore into the image folder (stats-*,
 * *.log) and the manifest itself are not listed and not checked. A listed
 * name may be a symbolic link to a regular file (a snapshot that came with
 * the image is linked, not copied: daemon/travel.h); what is hashed is the
 * file it names.
 */
#ifndef THAW_MANIFEST_H
#define THAW_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define MANIFEST_NAME "thaw-manifest"

struct manifest_file {
	char *name;    /* as listed; owned */
	int fd;        /* read-only; the very inode that was hashed */
	uint64_t size; /* bytes it held when hashed */
};

/* A verified snapshot held open: the files cannot change under a reader
 * that uses these fds (snapshot files are written once, never rewritten),
 * even when the folder is deleted or replaced meanwhile. */
struct manifest_files {
	struct manifest_file *f; /* in manifest order, the manifest itself last */
	size_t n;
};

/* Hashes every file in dir and writes the manifest (temp file + rename, so
 * an interrupted write leaves no manifest, never a partial one). Returns 0
 * and the totals, or -errno. */
int manifest_write(const char *dir, uint64_t *total_bytes, uint32_t *n_files);

/* Checks every listed file (present, same size, same hash) and that no
 * unlisted image file (*.img) was added. Returns 0, -EBADMSG with a one-line
 * reason in why (missing or partial manifest, missing file, size or hash
 * mismatch), or another -errno for I/O trouble (also with a reason). */
int manifest_verify(const char *dir, char *why, size_t len);

/* As manifest_verify, without the unlisted-file check, keeping every listed
 * file and the manifest open in m (free with manifest_files_fini, only on
 * success: on failure m holds nothing). Returns 0 or -errno as
 * manifest_verify. */
int manifest_open(const char *dir, struct manifest_files *m, char *why, size_t len);
void manifest_files_fini(struct manifest_files *m);

#endif
