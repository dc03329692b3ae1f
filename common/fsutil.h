/*
 * Filesystem helpers shared by the daemon, the builder and the CLI.
 */
#ifndef THAW_FSUTIL_H
#define THAW_FSUTIL_H

#include <sys/types.h>

/* Removes path and everything under it, not following symlinks (nftw, in
 * this process: no child). A missing path is fine. Returns 0 or the first
 * -errno met (it goes on past errors). */
int fs_rm_rf(const char *path);
/* mkdir -p path with mode for the folders it makes. Returns 0 or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);
/* Reads the start of a small file into buf, at most len - 1 bytes, and
 * ends it with a NUL. Returns the bytes read or -errno (buf then ""). */
ssize_t fs_read_text(const char *path, char *buf, size_t len);

#endif
