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
 * *.log) and the manifest itself are not listed and not checked.
 */
#ifndef THAW_MANIFEST_H
#define THAW_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define MANIFEST_NAME "thaw-manifest"

/* Hashes every file in dir and writes the manifest (temp file + rename, so
 * an interrupted write leaves no manifest, never a partial one). Returns 0
 * and the totals, or -errno. */
int manifest_write(const char *dir, uint64_t *total_bytes, uint32_t *n_files);

/* Checks every listed file (present, same size, same hash) and that no
 * unlisted image file (*.img) was added. Returns 0, -EBADMSG with a one-line
 * reason in why (missing or partial manifest, missing file, size or hash
 * mismatch), or another -errno for I/O trouble (also with a reason). */
int manifest_verify(const char *dir, char *why, size_t len);

#endif
