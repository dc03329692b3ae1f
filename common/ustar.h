/*
 * Flat ustar archives: the one tar shape thaw streams itself (a snapshot
 * folder, GET /admin/functions/NAME/snapshot), written by the daemon and
 * read by `thaw snapshot` without holding it whole. Entries are regular
 * files named by one path component, with mode, size and nothing else
 * (uid, gid and mtime 0); a size of 8 GiB or more is written in the GNU
 * base-256 form that tar and libarchive read. The archive ends with two
 * zero blocks.
 */
#ifndef THAW_USTAR_H
#define THAW_USTAR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define USTAR_BLOCK 512
#define USTAR_NAME_MAX 99

/* The header of a file entry into out. name: 1 to USTAR_NAME_MAX bytes,
 * no '/'. Returns 0 or -EINVAL (bad name). */
int ustar_header(char out[USTAR_BLOCK], const char *name, mode_t mode, uint64_t size);

/* Zero bytes that pad a file's data of size bytes to a whole block. */
size_t ustar_padding(uint64_t size);

/* Reads the header block in. Returns 1 with name (NUL-terminated), mode
 * (permission bits) and size for a regular file of one path component; 0
 * for a zero block (the end); -EBADMSG for anything else (bad checksum,
 * another type, a name with '/', ".", "..", or a leading '.'). */
int ustar_parse(const char in[USTAR_BLOCK], char name[USTAR_NAME_MAX + 1], mode_t *mode,
		uint64_t *size);

#endif
