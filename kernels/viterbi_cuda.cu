/*
 * GPU Viterbi: one warp per sequence, WARPS_PER_BLOCK sequences per block.
 *
 * Lane l owns target tags j = l, l+32, ...; for each step it takes the max
 * over source tags i in increasing order with a strict ">" (ties keep the
 * lowest i), exactly as kernels/viterbi_cpu.c does, and every addition is
 * __fadd_rn, so the two give the same bits. The transition matrix sits in
 * shared memory when it fits, the two trellis rows of each warp always do;
 * backpointers go to global memory and lane 0 walks them back at the end.
 */
#include "kernels/viterbi.h"

#include <cuda_runtime.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WARPS_PER_BLOCK 4
#define SMEM_LIMIT (48 * 1024)

#define CUDA_TRY(call)                                                                         \
	do {                                                                                   \
		cudaError_t e_ = (call);                                                       \
		if (e_ != cudaSuccess) {                                                       \
			fprintf(stderr, "viterbi_cuda: %s:%d: %s: %s\n", __FILE__, __LINE__,   \
				#call, cudaGetErrorString(e_));                                \
			err = e_ == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;                \
			goto out;                                                              \
		}                                                                              \
	} while (0)

struct viterbi_gpu {
	pthread_mutex_t lock; /* one decode at a time: the buffers are shared */
	cudaStream_t stream;
	float *h_trans; /* host copy of what d_trans holds, to skip re-uploads */
	uint32_t trans_k; /* K of h_trans/d_trans, 0 when empty */
	float *d_trans;
	size_t trans_cap; /* bytes, for every buffer below too */
	float *d_logits;
	size_t logits_cap;
	int32_t *d_lengths;
	size_t lengths_cap;
	int32_t *d_paths;
	size_t paths_cap;
	uint16_t *d_bp;
	size_t bp_cap;
};

__global__ void viterbi_kernel(const float *__restrict__ logits,
			       const int32_t *__restrict__ lengths, const float *__restrict__ trans_g,
			       uint32_t batch, uint32_t steps, uint32_t K, int trans_in_smem,
			       uint16_t *__restrict__ bp_all, int32_t *__restrict__ paths)
{
	extern __shared__ float smem[];
	const uint32_t K1 = K + 1;
	const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const float *trans = trans_g;
	float *rows = smem + (trans_in_smem ? (size_t)K1 * K1 : 0) + (size_t)warp * 2 * K1;

	if (trans_in_smem) {
		for (uint32_t k = threadIdx.x; k < K1 * K1; k += blockDim.x)
			smem[k] = trans_g[k];
		__syncthreads();
		trans = smem;
	}
	const uint32_t b = blockIdx.x * WARPS_PER_BLOCK + warp;
	if (b >= batch)
		return;
	const uint32_t n = (uint32_t)lengths[b];
	const float *emit = logits + (size_t)b * steps * K;
	uint16_t *bp = bp_all + (size_t)b * steps * K1;
	int32_t *out = paths + (size_t)b * steps;
	float *prev = rows, *cur = rows + K1;

	for (uint32_t j = lane; j < K1; j += 32)
		prev[j] = j < K ? VITERBI_SMALL : 0.0f;
	__syncwarp();
	for (uint32_t t = 0; t < n; t++) {
		for (uint32_t j = lane; j < K1; j += 32) {
			float best = __fadd_rn(prev[0], trans[j]);
			uint32_t arg = 0;

			for (uint32_t i = 1; i < K1; i++) {
				float v = __fadd_rn(prev[i], trans[(size_t)i * K1 + j]);
				if (v > best) {
					best = v;
					arg = i;
				}
			}
			float e = j < K ? emit[(size_t)t * K + j] : VITERBI_SMALL;
			cur[j] = __fadd_rn(e, best);
			bp[(size_t)t * K1 + j] = (uint16_t)arg;
		}
		/* Every lane has read all of prev and written its part of cur:
		 * cur may now be read, and prev overwritten next step. */
		__syncwarp();
		float *swap = prev;
		prev = cur;
		cur = swap;
	}
	if (lane == 0 && n > 0) {
		uint32_t best = 0;
		for (uint32_t j = 1; j < K1; j++)
			if (prev[j] > prev[best])
				best = j;
		for (uint32_t t = n; t-- > 0;) {
			out[t] = (int32_t)best;
			best = bp[(size_t)t * K1 + best];
		}
	}
	for (uint32_t t = n + lane; t < steps; t += 32)
		out[t] = -1;
}

int viterbi_gpu_count(void)
{
	int n = 0;

	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		cudaGetLastError(); /* clear it: "no device" is an answer here */
		return 0;
	}
	return n;
}

int viterbi_gpu_new(struct viterbi_gpu **out)
{
	struct viterbi_gpu *g;
	int err = 0;

	*out = NULL;
	if (viterbi_gpu_count() <= 0)
		return -ENODEV;
	g = (struct viterbi_gpu *)calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	pthread_mutex_init(&g->lock, NULL);
	CUDA_TRY(cudaSetDevice(0));
	CUDA_TRY(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
	*out = g;
	return 0;
out:
	viterbi_gpu_free(g);
	return err;
}

void viterbi_gpu_free(struct viterbi_gpu *g)
{
	if (!g)
		return;
	cudaFree(g->d_bp);
	cudaFree(g->d_paths);
	cudaFree(g->d_lengths);
	cudaFree(g->d_logits);
	cudaFree(g->d_trans);
	if (g->stream)
		cudaStreamDestroy(g->stream);
	free(g->h_trans);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* Makes *buf hold at least need bytes; old contents are dropped. */
static cudaError_t grow(void **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return cudaSuccess;
	cudaFree(*buf);
	*buf = NULL;
	*cap = 0;
	if (need < 4096)
		need = 4096;
	cudaError_t e = cudaMalloc(buf, need);
	if (e == cudaSuccess)
		*cap = need;
	return e;
}

/* Uploads trans unless the device already holds the same matrix. */
static int upload_trans(struct viterbi_gpu *g, const float *trans, uint32_t K)
{
	const size_t bytes = (size_t)(K + 1) * (K + 1) * sizeof(float);
	int err = 0;

	if (g->trans_k == K && memcmp(g->h_trans, trans, bytes) == 0)
		return 0;
	g->trans_k = 0;
	free(g->h_trans);
	g->h_trans = (float *)malloc(bytes);
	if (!g->h_trans)
		return -ENOMEM;
	memcpy(g->h_trans, trans, bytes);
	CUDA_TRY(grow((void **)&g->d_trans, &g->trans_cap, bytes));
	CUDA_TRY(cudaMemcpyAsync(g->d_trans, trans, bytes, cudaMemcpyHostToDevice, g->stream));
	g->trans_k = K;
out:
	return err;
}

int viterbi_gpu_decode(struct viterbi_gpu *g, const struct viterbi_problem *p, int32_t *paths)
{
	int err = viterbi_check(p);
	if (err)
		return err;
	if (!g)
		return -EINVAL;
	if (p->batch == 0 || p->steps == 0)
		return 0;

	const uint32_t K = p->num_tags, K1 = K + 1;
	const size_t cells = (size_t)p->batch * p->steps;
	const size_t logits_bytes = cells * K * sizeof(float);
	const size_t rows_bytes = (size_t)WARPS_PER_BLOCK * 2 * K1 * sizeof(float);
	const size_t trans_bytes = (size_t)K1 * K1 * sizeof(float);
	const int trans_in_smem = trans_bytes + rows_bytes <= SMEM_LIMIT;
	const size_t smem = rows_bytes + (trans_in_smem ? trans_bytes : 0);
	const unsigned blocks = (p->batch + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK;

	pthread_mutex_lock(&g->lock);
	CUDA_TRY(grow((void **)&g->d_logits, &g->logits_cap, logits_bytes));
	CUDA_TRY(grow((void **)&g->d_lengths, &g->lengths_cap, p->batch * sizeof(int32_t)));
	CUDA_TRY(grow((void **)&g->d_paths, &g->paths_cap, cells * sizeof(int32_t)));
	CUDA_TRY(grow((void **)&g->d_bp, &g->bp_cap, cells * K1 * sizeof(uint16_t)));
	err = upload_trans(g, p->trans, K);
	if (err)
		goto out;
	CUDA_TRY(cudaMemcpyAsync(g->d_logits, p->logits, logits_bytes, cudaMemcpyHostToDevice,
				 g->stream));
	CUDA_TRY(cudaMemcpyAsync(g->d_lengths, p->lengths, p->batch * sizeof(int32_t),
				 cudaMemcpyHostToDevice, g->stream));
	viterbi_kernel<<<blocks, WARPS_PER_BLOCK * 32, smem, g->stream>>>(
		g->d_logits, g->d_lengths, g->d_trans, p->batch, p->steps, K, trans_in_smem,
		g->d_bp, g->d_paths);
	CUDA_TRY(cudaGetLastError());
	CUDA_TRY(cudaMemcpyAsync(paths, g->d_paths, cells * sizeof(int32_t), cudaMemcpyDeviceToHost,
				 g->stream));
	CUDA_TRY(cudaStreamSynchronize(g->stream));
out:
	pthread_mutex_unlock(&g->lock);
	return err;
}
