/*
 * CPU Viterbi: one sequence at a time, O(T * (K+1)^2). The inner loop runs
 * over the target tag j with the source tag i outside it, so that the
 * compiler can vectorize across j while the max over i still goes in
 * increasing i with a strict ">" (ties keep the lowest i). The comparison
 * is __builtin_isgreater, a quiet compare, which gcc will if-convert and
 * vectorize (a plain ">" may trap on NaN, so it would not); inputs hold no
 * NaN, where the two are the same. kernels/viterbi.mk builds this at -O3.
 */
#include "kernels/viterbi.h"

#include <errno.h>
#include <stdlib.h>

/* An AVX2 copy of the decode loop, picked at load time where the CPU has it
 * (8 floats a step instead of 4: K+1 = 32 tags fill four vectors). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VITERBI_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VITERBI_CLONES
#endif

int viterbi_check(const struct viterbi_problem *p)
{
	if (!p || p->num_tags == 0 || p->num_tags > VITERBI_MAX_TAGS)
		return -EINVAL;
	if (p->batch && (!p->lengths || !p->trans))
		return -EINVAL;
	if ((uint64_t)p->batch * p->steps * p->num_tags > (uint64_t)SIZE_MAX / sizeof(float))
		return -EINVAL;
	for (uint32_t b = 0; b < p->batch; b++)
		if (p->lengths[b] < 0 || (uint32_t)p->lengths[b] > p->steps)
			return -EINVAL;
	if (p->batch && p->steps && !p->logits)
		return -EINVAL;
	return 0;
}

/* Decodes one sequence of n steps. emit is its [n][K] logits, out its [n]
 * tags; prev/cur hold K1 floats, arg K1 ints, bp n*K1 backpointers. The
 * j loops are branch-free selects over restrict pointers so that they
 * vectorize; float additions and comparisons are exact whatever the vector
 * width, so results do not depend on it. */
VITERBI_CLONES static void decode_one(const float *restrict emit, uint32_t n, uint32_t K,
				      const float *restrict trans, float *restrict prev,
				      float *restrict cur, int32_t *restrict arg,
				      uint16_t *restrict bp, int32_t *restrict out)
{
	const uint32_t K1 = K + 1;

	for (uint32_t j = 0; j < K; j++)
		prev[j] = VITERBI_SMALL;
	prev[K] = 0.0f;
	for (uint32_t t = 0; t < n; t++) {
		for (uint32_t j = 0; j < K1; j++) {
			cur[j] = prev[0] + trans[j];
			arg[j] = 0;
		}
		for (uint32_t i = 1; i < K1; i++) {
			const float pi = prev[i];
			const float *restrict row = trans + (size_t)i * K1;

			for (uint32_t j = 0; j < K1; j++) {
				const float v = pi + row[j];
				const int better = __builtin_isgreater(v, cur[j]);

				cur[j] = better ? v : cur[j];
				arg[j] = better ? (int32_t)i : arg[j];
			}
		}
		const float *restrict e = emit + (size_t)t * K;
		uint16_t *restrict bpt = bp + (size_t)t * K1;
		for (uint32_t j = 0; j < K; j++)
			cur[j] = e[j] + cur[j];
		cur[K] = VITERBI_SMALL + cur[K];
		for (uint32_t j = 0; j < K1; j++)
			bpt[j] = (uint16_t)arg[j];

		float *swap = prev;
		prev = cur;
		cur = swap;
	}
	if (n == 0)
		return;
	uint32_t best = 0;
	for (uint32_t j = 1; j < K1; j++)
		if (prev[j] > prev[best])
			best = j;
	for (uint32_t t = n; t-- > 0;) {
		out[t] = (int32_t)best;
		best = bp[(size_t)t * K1 + best];
	}
}

int viterbi_cpu_decode(const struct viterbi_problem *p, int32_t *paths)
{
	int err = viterbi_check(p);
	if (err)
		return err;
	if (p->batch == 0 || p->steps == 0)
		return 0;

	const uint32_t K = p->num_tags, K1 = K + 1;
	float *rows = malloc(2 * (size_t)K1 * sizeof(*rows));
	int32_t *arg = malloc((size_t)K1 * sizeof(*arg));
	uint16_t *bp = malloc((size_t)p->steps * K1 * sizeof(*bp));
	if (!rows || !arg || !bp) {
		err = -ENOMEM;
		goto out_free;
	}
	for (uint32_t b = 0; b < p->batch; b++) {
		int32_t *out = paths + (size_t)b * p->steps;
		uint32_t n = (uint32_t)p->lengths[b];

		decode_one(p->logits + (size_t)b * p->steps * K, n, K, p->trans, rows, rows + K1,
			   arg, bp, out);
		for (uint32_t t = n; t < p->steps; t++)
			out[t] = -1;
	}
out_free:
	free(bp);
	free(arg);
	free(rows);
	return err;
}
