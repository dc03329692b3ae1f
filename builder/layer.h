/*
 * Image layers: reproducible uncompressed tars written with libarchive
 * straight into a blob (builder/oci.h) while it is hashed.
 *
 * Every entry gets mtime = the given epoch (0 or SOURCE_DATE_EPOCH), uid and
 * gid 0, no user or group names, mode 0755 (folders and executables) or
 * 0644, and entries are written in byte order of their paths, so the same
 * inputs give the same bytes. File contents are copied in 1 MiB chunks,
 * never held whole. pax format: a header extension only where ustar cannot
 * say it (paths over 100 bytes, files of 8 GiB and more).
 */
#ifndef THAW_BUILDER_LAYER_H
#define THAW_BUILDER_LAYER_H

#include "builder/oci.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct layer_entry {
	char *path;   /* path inside the layer, no leading '/', no trailing '/'; owned */
	char *src;    /* file on disk (NULL for a folder); owned */
	bool dir;
	bool exec;    /* 0755 rather than 0644 */
	uint64_t size; /* bytes expected in src (from stat) */
	size_t seq;    /* order added: the first of equal paths wins */
};

struct layer {
	struct layer_entry *e;
	size_t n, cap;
	uint64_t content_bytes; /* sum of file sizes */
	size_t n_files;
	bool sorted;            /* layer_finish ran */
};

/* Adds a file (copies path and src). When the same path is added twice the
 * first one stays and later ones are dropped by layer_finish. */
void layer_add_file(struct layer *l, const char *path, const char *src, uint64_t size, bool exec);

/* Adds the missing parent folders, sorts by path and drops repeated paths.
 * Call once, after the last layer_add_file. */
void layer_finish(struct layer *l);

/* Whether path is in a finished layer (binary search). */
bool layer_has(const struct layer *l, const char *path);

/* Streams the tar of a finished layer into a new blob of blobs_dir. A file whose size changed since it was
 * added is an error (the tar header already promised its size). Returns 0
 * and fills out, or -errno with a message in err. */
int layer_write(struct layer *l, const char *blobs_dir, time_t mtime, struct oci_desc *out,
		char *err, size_t errlen);

void layer_fini(struct layer *l);

#endif
