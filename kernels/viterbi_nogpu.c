/*
 * GPU entry points for builds without nvcc: no device, every call -ENOTSUP.
 * kernels/viterbi.mk links this instead of viterbi_cuda.cu.
 */
#include "kernels/viterbi.h"

#include <errno.h>

int viterbi_gpu_count(void)
{
	return 0;
}

int viterbi_gpu_new(struct viterbi_gpu **out)
{
	*out = NULL;
	return -ENOTSUP;
}

void viterbi_gpu_free(struct viterbi_gpu *g)
{
	(void)g;
}

int viterbi_gpu_decode(struct viterbi_gpu *g, const struct viterbi_problem *p, int32_t *paths)
{
	(void)g;
	(void)p;
	(void)paths;
	return -ENOTSUP;
}
