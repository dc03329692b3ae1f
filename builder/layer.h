/*
 * Image layers: reproducible uncompressed tars written with libarchive
 * straight into a blob (common/oci.h) while it is hashed.
 *
 * Every entry gets mtime = the given epoch (0 or SOURCE_DATE_EPOCH), uid and
 * gid 0, no user or group names, mode 0755 (folders and executables), 0400
 * (entries marked owner_ro) or 0644, and entries are written in byte order
 * of their paths, so the same inputs give the same bytes. File contents are
 * copied in 1 MiB chunks, never held whole. pax format: a header extension
 * only where ustar cannot say it (paths over 100 bytes, files of 8 GiB and
 * more).
 */
#ifndef THAW_BUILDER_LAYER_H
#define THAW_BUILDER_LAYER_H

#include "common/oci.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

struct layer_entry {
	char *path;   /* path inside the layer, no leading '/', no trailing '/'; owned */
	char *src;    /* file on disk (NULL for a folder); owned */
	bool dir;
	bool exec;    /* 0755 rather than 0644 */
	bool owner_ro; /* 0400: a file whose reader checks its mode (CRIU checks
			* a snapshot's memory files', snapmem: 0400) */
	uint64_t size; /* bytes expected in src (from stat) */
	size_t seq;    /* order added: the first of equal paths wins */
	/* Identity of src when added, for layer_fingerprint. */
	uint64_t dev, ino;
	int64_t mtime_ns, ctime_ns;
};

struct layer {
	struct layer_entry *e;
	size_t n, cap;
	uint64_t content_bytes; /* sum of file sizes */
	size_t n_files;
	bool sorted;            /* layer_finish ran */
	int64_t newest_mtime_ns; /* of all files */
};

/* Adds a file (copies path and src; st is its stat). When the same path is
 * added twice the first one stays and later ones are dropped by
 * layer_finish. exec forces 0755; otherwise any x bit of st gives it. */
void layer_add_file(struct layer *l, const char *path, const char *src, const struct stat *st,
		    bool exec);

/* Adds the missing parent folders, sorts by path and drops repeated paths.
 * Call once, after the last layer_add_file. */
void layer_finish(struct layer *l);

/* Whether path is in a finished layer (binary search). */
bool layer_has(const struct layer *l, const char *path);

/* What the layer's bytes depend on, without reading a file: for each entry
 * its path, mode, size, device, inode, mtime and ctime, and the tar mtime.
 * Equal fingerprints mean the same tar unless a file was rewritten within
 * its timestamp's granularity (see builder.c for how that is avoided).
 * Writes 64 hex digits and a NUL to out. */
void layer_fingerprint(const struct layer *l, time_t mtime, char out[65]);

/* Streams the tar of a finished layer into a new blob of blobs_dir. A file whose size changed since it was
 * added is an error (the tar header already promised its size). Returns 0
 * and fills out, or -errno with a message in err. */
int layer_write(struct layer *l, const char *blobs_dir, time_t mtime, struct oci_desc *out,
		char *err, size_t errlen);

void layer_fini(struct layer *l);

#endif
