/*
 * Viterbi decoding for a linear-chain CRF, as served by BERT-BiLSTM-CRF.
 *
 * The model gives per-token emission scores ("logits") for K tags; the CRF
 * layer a (K+1) x (K+1) transition matrix whose last row and column are a
 * start state. Each sequence is decoded exactly as the classic numpy
 * viterbi_decode of that serving code does it:
 *
 *   score = [[-1000]*K + [0]]                      (step 0: only "start")
 *         + [logits[t] + [-1000] for t < length]   (start state padded out)
 *   trellis[0] = score[0]
 *   trellis[t][j] = score[t][j] + max_i (trellis[t-1][i] + trans[i][j])
 *   path = backtrace from argmax_j trellis[length][j], step 0 dropped
 *
 * All arithmetic is float32 in that order, so the CPU and GPU versions give
 * the same bits and the same paths. Ties go to the lowest tag index, both in
 * the max over i and in the final argmax (numpy's argmax does the same).
 *
 * A decoded tag is 0..K-1, or K (the start state) only if the scores beat
 * the -1000 padding, which a trained model never does; callers treat K as
 * "outside".
 */
#ifndef THAW_KERNELS_VITERBI_H
#define THAW_KERNELS_VITERBI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Score of the start state at a token step, and of real tags at step 0. */
#define VITERBI_SMALL (-1000.0f)
/* Most tags (K) a problem may have; backpointers are 16-bit. */
#define VITERBI_MAX_TAGS 1023u

/* One batch to decode. Nothing is owned: all arrays belong to the caller. */
struct viterbi_problem {
	const float *logits;    /* [batch][steps][num_tags], row-major */
	const int32_t *lengths; /* [batch], each in 0..steps */
	const float *trans;     /* [num_tags+1][num_tags+1]: trans[i][j] scores i -> j */
	uint32_t batch;
	uint32_t steps;
	uint32_t num_tags; /* K, 1..VITERBI_MAX_TAGS */
};

/* Checks sizes and lengths. Returns 0 or -EINVAL. */
int viterbi_check(const struct viterbi_problem *p);

/* Decodes every sequence of p on the calling thread. paths is the caller's
 * [batch][steps] array: paths[b*steps + t] gets the tag of step t for
 * t < lengths[b] and -1 after. Thread-safe (no shared state). Returns 0,
 * -EINVAL (see viterbi_check) or -ENOMEM. */
int viterbi_cpu_decode(const struct viterbi_problem *p, int32_t *paths);

/* --- GPU (kernels/viterbi_cuda.cu; kernels/viterbi_nogpu.c without nvcc) --- */

/* A device context: stream and device buffers, reused across calls and
 * grown as needed. Calls on one context are serialized by its lock. */
struct viterbi_gpu;

/* Number of CUDA devices usable now: 0 without a GPU, a driver, or a build
 * with CUDA. Never fails. */
int viterbi_gpu_count(void);

/* Creates a context on device 0. Returns 0, -ENOTSUP (built without CUDA),
 * -ENODEV (no device) or -EIO (a CUDA call failed; logged to stderr). On
 * success the caller frees *out with viterbi_gpu_free. */
int viterbi_gpu_new(struct viterbi_gpu **out);
void viterbi_gpu_free(struct viterbi_gpu *g);

/* Same contract and same results as viterbi_cpu_decode, on the GPU: one warp
 * per sequence. Blocks until paths is filled. Returns 0, -EINVAL, -ENOMEM
 * or -EIO. */
int viterbi_gpu_decode(struct viterbi_gpu *g, const struct viterbi_problem *p, int32_t *paths);

#ifdef __cplusplus
}
#endif
#endif
