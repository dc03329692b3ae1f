/*
 * Viterbi decode throughput: sequences per second for a batch of 64
 * sequences of 128 steps, K = 7 and K = 31 tags, on the CPU (one thread)
 * and on the GPU when one is present (copies in and out included).
 * Usage: bench_viterbi [seconds per case, default 1]
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/viterbi.h"

#define BATCH 64
#define STEPS 128

typedef int (*decode_fn)(void *ctx, const struct viterbi_problem *p, int32_t *paths);

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cpu(void *ctx, const struct viterbi_problem *p, int32_t *paths)
{
	(void)ctx;
	return viterbi_cpu_decode(p, paths);
}

static int gpu(void *ctx, const struct viterbi_problem *p, int32_t *paths)
{
	return viterbi_gpu_decode(ctx, p, paths);
}

/* Runs decode for about `seconds`; returns sequences/s, or -1 on error. */
static double measure(decode_fn decode, void *ctx, const struct viterbi_problem *p,
		      int32_t *paths, double seconds)
{
	long calls = 0;
	if (decode(ctx, p, paths)) /* warm-up */
		return -1;
	double start = now(), t;
	do {
		if (decode(ctx, p, paths))
			return -1;
		calls++;
		t = now() - start;
	} while (t < seconds);
	return (double)calls * p->batch / t;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1.0;
	struct viterbi_gpu *g = NULL;
	const uint32_t ks[] = { 7, 31 };
	int ret = 0;

	if (seconds <= 0)
		seconds = 1.0;
	if (viterbi_gpu_count() > 0 && viterbi_gpu_new(&g) != 0)
		g = NULL;
	printf("viterbi: batch %d, %d steps, %s\n", BATCH, STEPS,
	       g ? "cpu and gpu" : "cpu only (no GPU)");
	for (size_t k = 0; k < sizeof(ks) / sizeof(ks[0]); k++) {
		const uint32_t K = ks[k], K1 = K + 1;
		float *logits = malloc(sizeof(float) * BATCH * STEPS * K);
		float *trans = malloc(sizeof(float) * K1 * K1);
		int32_t lengths[BATCH], *paths = malloc(sizeof(int32_t) * BATCH * STEPS);
		int32_t *check = malloc(sizeof(int32_t) * BATCH * STEPS);
		if (!logits || !trans || !paths || !check) {
			fprintf(stderr, "out of memory\n");
			return 1;
		}
		srand(42);
		for (size_t i = 0; i < (size_t)BATCH * STEPS * K; i++)
			logits[i] = (float)rand() / (float)RAND_MAX * 10.0f - 5.0f;
		for (size_t i = 0; i < (size_t)K1 * K1; i++)
			trans[i] = (float)rand() / (float)RAND_MAX * 4.0f - 2.0f;
		for (int b = 0; b < BATCH; b++)
			lengths[b] = STEPS;
		struct viterbi_problem p = { .logits = logits, .lengths = lengths, .trans = trans,
					     .batch = BATCH, .steps = STEPS, .num_tags = K };
		double c = measure(cpu, NULL, &p, check, seconds);
		printf("cpu K=%-3u %12.0f sequences/s\n", K, c);
		/* tests/gpu/run.sh gathers the "figure:" lines into its table */
		printf("figure: viterbi_cpu_K%u = %.0f sequences/s\n", K, c);
		if (c < 0)
			ret = 1;
		if (g) {
			double s = measure(gpu, g, &p, paths, seconds);
			int same = memcmp(paths, check, sizeof(int32_t) * BATCH * STEPS) == 0;
			printf("gpu K=%-3u %12.0f sequences/s (%.1fx cpu, paths %s)\n", K, s,
			       s / c, same ? "identical" : "DIFFER");
			printf("figure: viterbi_gpu_K%u = %.0f sequences/s\n", K, s);
			printf("figure: viterbi_gpu_over_cpu_K%u = %.1f x\n", K, s / c);
			if (s < 0 || !same)
				ret = 1;
		}
		free(check);
		free(paths);
		free(trans);
		free(logits);
	}
	viterbi_gpu_free(g);
	return ret;
}
