/*
 * staging: a host-to-device copy through two pinned staging buffers, double
 * buffered: while buffer i is being DMAed to the device, the CPU fills the
 * other from the source (e.g. a file mapping served from the page cache).
 * The pipeline is plain C with the device side behind three callbacks, so
 * its order and bounds are tested on a CPU (tests/unit/test_kernels_mlp.c);
 * kernels/mlp_cuda.cu plugs in cudaMemcpyAsync and one event per buffer.
 */
#ifndef THAW_KERNELS_STAGING_H
#define THAW_KERNELS_STAGING_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct staging_ops {
	/* Staging buffer i (0 or 1), `size` bytes, pinned. */
	void *(*buf)(void *arg, unsigned i);
	/* Blocks until the last copy out of buffer i finished (none yet: at
	 * once). 0 or -errno. */
	int (*wait)(void *arg, unsigned i);
	/* Starts copying n bytes from buffer i to dst (asynchronous; wait(i)
	 * blocks until it is done). 0 or -errno. */
	int (*copy)(void *arg, unsigned i, void *dst, size_t n);
};

struct staging {
	const struct staging_ops *ops;
	void *arg;
	size_t size;   /* bytes per buffer, > 0 */
	unsigned next; /* the buffer the next chunk uses; starts at 0 */
};

/* Copies bytes from src (host) to dst (device) in chunks of at most
 * s->size: for each chunk, wait for its buffer, memcpy into it, start the
 * copy. Returns with the last copies possibly in flight: the caller waits
 * for both buffers (or its stream) before using dst or freeing the buffers.
 * Consecutive calls keep alternating buffers. 0 or the first -errno of a
 * callback (the copies started before it may still be in flight). */
int staging_copy(struct staging *s, void *dst, const void *src, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
