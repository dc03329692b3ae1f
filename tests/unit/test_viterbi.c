/*
 * kernels/viterbi_cpu.c and kernels/viterbi_cuda.cu against two references
 * written here: the plain padded O(T*K^2) decode of the classic numpy
 * viterbi_decode, and brute-force enumeration of every path for tiny T/K.
 * The GPU cases run only when a device is present (cmocka skip otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/viterbi.h"

/* --- deterministic random numbers ----------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

static uint32_t rnd_below(uint32_t n)
{
	return rnd() % n;
}

/* Either a float in [-8, 8) or, to provoke ties, a small integer. */
static float rnd_score(int ints)
{
	if (ints)
		return (float)((int)rnd_below(7) - 3);
	return ((float)(rnd() & 0xffffff) / (float)(1 << 24)) * 16.0f - 8.0f;
}

/* --- a random problem ------------------------------------------------------ */

struct case_data {
	struct viterbi_problem p;
	float *logits, *trans;
	int32_t *lengths;
};

static void case_make(struct case_data *c, uint32_t batch, uint32_t steps, uint32_t K, int ints)
{
	const uint32_t K1 = K + 1;

	c->logits = calloc((size_t)batch * steps * K + 1, sizeof(float));
	c->trans = calloc((size_t)K1 * K1, sizeof(float));
	c->lengths = calloc(batch + 1, sizeof(int32_t));
	assert_non_null(c->logits);
	assert_non_null(c->trans);
	assert_non_null(c->lengths);
	for (size_t k = 0; k < (size_t)batch * steps * K; k++)
		c->logits[k] = rnd_score(ints);
	for (size_t k = 0; k < (size_t)K1 * K1; k++)
		c->trans[k] = rnd_score(ints);
	for (uint32_t b = 0; b < batch; b++)
		c->lengths[b] = (int32_t)rnd_below(steps + 1);
	if (batch > 0)
		c->lengths[0] = (int32_t)steps; /* at least one full sequence */
	c->p = (struct viterbi_problem){ .logits = c->logits,
					 .lengths = c->lengths,
					 .trans = c->trans,
					 .batch = batch,
					 .steps = steps,
					 .num_tags = K };
}

static void case_free(struct case_data *c)
{
	free(c->logits);
	free(c->trans);
	free(c->lengths);
}

/* --- reference 1: the padded numpy decode, literally ------------------------ */

static void ref_decode(const struct viterbi_problem *p, int32_t *paths)
{
	const uint32_t K = p->num_tags, K1 = K + 1;

	for (uint32_t b = 0; b < p->batch; b++) {
		const uint32_t n = (uint32_t)p->lengths[b];
		const uint32_t rows = n + 1;
		float *score = malloc(sizeof(float) * rows * K1);
		float *trellis = malloc(sizeof(float) * rows * K1);
		uint32_t *back = calloc((size_t)rows * K1, sizeof(uint32_t));
		uint32_t *seq = malloc(sizeof(uint32_t) * rows);

		/* score = [start] + [logits[t] + [small]] */
		for (uint32_t j = 0; j < K1; j++)
			score[j] = j == K ? 0.0f : VITERBI_SMALL;
		for (uint32_t t = 1; t < rows; t++)
			for (uint32_t j = 0; j < K1; j++)
				score[t * K1 + j] =
					j == K ? VITERBI_SMALL
					       : p->logits[((size_t)b * p->steps + t - 1) * K + j];
		memcpy(trellis, score, sizeof(float) * K1);
		for (uint32_t t = 1; t < rows; t++) {
			for (uint32_t j = 0; j < K1; j++) {
				uint32_t arg = 0;
				float mx = trellis[(t - 1) * K1 + 0] + p->trans[0 * K1 + j];
				for (uint32_t i = 0; i < K1; i++) {
					float v = trellis[(t - 1) * K1 + i] + p->trans[i * K1 + j];
					if (v > mx) { /* np.argmax: first maximum */
						mx = v;
						arg = i;
					}
				}
				trellis[t * K1 + j] = score[t * K1 + j] + mx;
				back[t * K1 + j] = arg;
			}
		}
		uint32_t last = 0;
		for (uint32_t j = 0; j < K1; j++)
			if (trellis[(rows - 1) * K1 + j] > trellis[(rows - 1) * K1 + last])
				last = j;
		seq[rows - 1] = last;
		for (uint32_t t = rows - 1; t > 0; t--)
			seq[t - 1] = back[t * K1 + seq[t]];
		for (uint32_t t = 0; t < p->steps; t++)
			paths[(size_t)b * p->steps + t] = t < n ? (int32_t)seq[t + 1] : -1;
		free(seq);
		free(back);
		free(trellis);
		free(score);
	}
}

/* --- reference 2: every path, for tiny sizes --------------------------------
 * Scores must be small integers so that every sum is exact whatever its
 * order. Among equal best scores Viterbi with lowest-index ties keeps the
 * path whose last tag is lowest, then the one before, ...: the smallest when
 * read backwards. */
static void brute_decode(const struct viterbi_problem *p, int32_t *paths)
{
	const uint32_t K = p->num_tags, K1 = K + 1;

	for (uint32_t b = 0; b < p->batch; b++) {
		const uint32_t n = (uint32_t)p->lengths[b], rows = n + 1;
		uint32_t y[16], best[16];
		double best_score = 0;
		int have = 0;
		uint64_t total = 1;

		assert_true(rows <= 16);
		for (uint32_t t = 0; t < rows; t++)
			total *= K1;
		for (uint64_t code = 0; code < total; code++) {
			uint64_t c = code;
			for (uint32_t t = 0; t < rows; t++) {
				y[t] = (uint32_t)(c % K1);
				c /= K1;
			}
			double s = y[0] == K ? 0.0 : VITERBI_SMALL;
			for (uint32_t t = 1; t < rows; t++) {
				s += p->trans[y[t - 1] * K1 + y[t]];
				s += y[t] == K ? VITERBI_SMALL
					       : p->logits[((size_t)b * p->steps + t - 1) * K + y[t]];
			}
			int better = !have || s > best_score;
			if (have && s == best_score) {
				for (uint32_t t = rows; t-- > 1;) {
					if (y[t] != best[t]) {
						better = y[t] < best[t];
						break;
					}
				}
			}
			if (better) {
				have = 1;
				best_score = s;
				memcpy(best, y, sizeof(y));
			}
		}
		for (uint32_t t = 0; t < p->steps; t++)
			paths[(size_t)b * p->steps + t] = t < n ? (int32_t)best[t + 1] : -1;
	}
}

/* --- backends --------------------------------------------------------------- */

static struct viterbi_gpu *gpu;

static int decode_cpu(const struct viterbi_problem *p, int32_t *paths)
{
	return viterbi_cpu_decode(p, paths);
}

static int decode_gpu(const struct viterbi_problem *p, int32_t *paths)
{
	return viterbi_gpu_decode(gpu, p, paths);
}

typedef int (*decode_fn)(const struct viterbi_problem *p, int32_t *paths);

static void assert_paths_equal(const int32_t *want, const int32_t *got, uint32_t batch,
			       uint32_t steps)
{
	for (size_t k = 0; k < (size_t)batch * steps; k++) {
		if (want[k] != got[k])
			fail_msg("sequence %zu step %zu: want tag %d, got %d", k / steps, k % steps,
				 want[k], got[k]);
	}
}

/* Random problems of many shapes, floats and tie-prone integers. */
static void random_vs_reference(decode_fn decode)
{
	for (int round = 0; round < 300; round++) {
		uint32_t batch = 1 + rnd_below(12), steps = rnd_below(40);
		uint32_t K = 1 + rnd_below(round % 10 == 0 ? 70 : 34);
		struct case_data c;

		case_make(&c, batch, steps, K, round & 1);
		int32_t *want = calloc((size_t)batch * steps + 1, sizeof(int32_t));
		int32_t *got = calloc((size_t)batch * steps + 1, sizeof(int32_t));
		ref_decode(&c.p, want);
		assert_int_equal(decode(&c.p, got), 0);
		assert_paths_equal(want, got, batch, steps);
		free(got);
		free(want);
		case_free(&c);
	}
}

static void tiny_vs_brute_force(decode_fn decode)
{
	for (int round = 0; round < 400; round++) {
		uint32_t batch = 1 + rnd_below(4), steps = rnd_below(6), K = 1 + rnd_below(3);
		struct case_data c;

		case_make(&c, batch, steps, K, 1);
		int32_t *want = calloc((size_t)batch * steps + 1, sizeof(int32_t));
		int32_t *got = calloc((size_t)batch * steps + 1, sizeof(int32_t));
		brute_decode(&c.p, want);
		assert_int_equal(decode(&c.p, got), 0);
		assert_paths_equal(want, got, batch, steps);
		free(got);
		free(want);
		case_free(&c);
	}
}

/* All scores equal: every path ties, the lowest tag everywhere wins. */
static void ties_pick_lowest_tag(decode_fn decode)
{
	struct case_data c;
	int32_t got[3 * 5];

	case_make(&c, 3, 5, 4, 1);
	memset(c.logits, 0, sizeof(float) * 3 * 5 * 4);
	memset(c.trans, 0, sizeof(float) * 5 * 5);
	c.lengths[0] = 5;
	c.lengths[1] = 1;
	c.lengths[2] = 3;
	assert_int_equal(decode(&c.p, got), 0);
	const int32_t want[] = { 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, -1, -1 };
	assert_paths_equal(want, got, 3, 5);

	/* Tags 1 and 3 tie at each step, both beat the rest: 1 wins. */
	for (int k = 0; k < 3 * 5 * 4; k++)
		c.logits[k] = (k % 4 == 1 || k % 4 == 3) ? 2.0f : 0.0f;
	assert_int_equal(decode(&c.p, got), 0);
	const int32_t want2[] = { 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, -1, -1 };
	assert_paths_equal(want2, got, 3, 5);
	case_free(&c);
}

/* Length 0 gives no tags; length 1 is argmax_j trans[start][j] + logit[j]. */
static void short_sequences(decode_fn decode)
{
	struct case_data c;
	int32_t got[2 * 4];

	case_make(&c, 2, 4, 3, 0);
	c.lengths[0] = 0;
	c.lengths[1] = 1;
	const float start_row[4] = { 0.5f, 0.0f, -3.0f, -10000.0f };
	memcpy(c.trans + 3 * 4, start_row, sizeof(start_row));
	const float step[3] = { 0.0f, 1.0f, 2.0f }; /* totals 0.5, 1, -1 */
	memcpy(c.logits + 4 * 3, step, sizeof(step));
	assert_int_equal(decode(&c.p, got), 0);
	const int32_t want[] = { -1, -1, -1, -1, 1, -1, -1, -1 };
	assert_paths_equal(want, got, 2, 4);
	case_free(&c);
}

/* Bad shapes are refused before any work. */
static void rejects_bad_problems(decode_fn decode)
{
	struct case_data c;
	int32_t got[2 * 4];

	case_make(&c, 2, 4, 3, 0);
	c.lengths[1] = 5;
	assert_int_equal(decode(&c.p, got), -EINVAL);
	c.lengths[1] = -1;
	assert_int_equal(decode(&c.p, got), -EINVAL);
	c.lengths[1] = 4;
	c.p.num_tags = 0;
	assert_int_equal(decode(&c.p, got), -EINVAL);
	c.p.num_tags = VITERBI_MAX_TAGS + 1;
	assert_int_equal(decode(&c.p, got), -EINVAL);
	c.p.num_tags = 3;
	c.p.batch = 0;
	assert_int_equal(decode(&c.p, got), 0);
	case_free(&c);
}

/* One big batch with many tags: the GPU's global-memory transition path. */
static void many_tags_vs_reference(decode_fn decode)
{
	struct case_data c;

	case_make(&c, 70, 33, 200, 0);
	int32_t *want = calloc(70 * 33, sizeof(int32_t));
	int32_t *got = calloc(70 * 33, sizeof(int32_t));
	ref_decode(&c.p, want);
	assert_int_equal(decode(&c.p, got), 0);
	assert_paths_equal(want, got, 70, 33);
	free(got);
	free(want);
	case_free(&c);
}

static void test_cpu_random_vs_reference(void **state)
{
	(void)state;
	random_vs_reference(decode_cpu);
}

static void test_cpu_tiny_vs_brute_force(void **state)
{
	(void)state;
	tiny_vs_brute_force(decode_cpu);
}

static void test_cpu_ties_pick_lowest_tag(void **state)
{
	(void)state;
	ties_pick_lowest_tag(decode_cpu);
}

static void test_cpu_short_sequences(void **state)
{
	(void)state;
	short_sequences(decode_cpu);
}

static void test_cpu_rejects_bad_problems(void **state)
{
	(void)state;
	rejects_bad_problems(decode_cpu);
}

static void test_cpu_many_tags_vs_reference(void **state)
{
	(void)state;
	many_tags_vs_reference(decode_cpu);
}

#define GPU_TEST(name, body)                                                                   \
	static void name(void **state)                                                         \
	{                                                                                      \
		(void)state;                                                                   \
		if (!gpu)                                                                      \
			SKIP_NO_GPU("no GPU for " #name);                                      \
		body(decode_gpu);                                                              \
	}
GPU_TEST(test_gpu_random_vs_reference, random_vs_reference)
GPU_TEST(test_gpu_tiny_vs_brute_force, tiny_vs_brute_force)
GPU_TEST(test_gpu_ties_pick_lowest_tag, ties_pick_lowest_tag)
GPU_TEST(test_gpu_short_sequences, short_sequences)
GPU_TEST(test_gpu_rejects_bad_problems, rejects_bad_problems)
GPU_TEST(test_gpu_many_tags_vs_reference, many_tags_vs_reference)

/* The GPU and CPU on the same large random batch, bit for bit. */
static void test_gpu_matches_cpu_large_batch(void **state)
{
	(void)state;
	if (!gpu)
		SKIP_NO_GPU("no GPU for the large batch");
	for (uint32_t K = 7; K <= 31; K += 24) {
		struct case_data c;
		case_make(&c, 257, 128, K, 0);
		int32_t *want = calloc(257 * 128, sizeof(int32_t));
		int32_t *got = calloc(257 * 128, sizeof(int32_t));
		assert_int_equal(viterbi_cpu_decode(&c.p, want), 0);
		assert_int_equal(viterbi_gpu_decode(gpu, &c.p, got), 0);
		assert_paths_equal(want, got, 257, 128);
		free(got);
		free(want);
		case_free(&c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpu_random_vs_reference),
		cmocka_unit_test(test_cpu_tiny_vs_brute_force),
		cmocka_unit_test(test_cpu_ties_pick_lowest_tag),
		cmocka_unit_test(test_cpu_short_sequences),
		cmocka_unit_test(test_cpu_rejects_bad_problems),
		cmocka_unit_test(test_cpu_many_tags_vs_reference),
		cmocka_unit_test(test_gpu_random_vs_reference),
		cmocka_unit_test(test_gpu_tiny_vs_brute_force),
		cmocka_unit_test(test_gpu_ties_pick_lowest_tag),
		cmocka_unit_test(test_gpu_short_sequences),
		cmocka_unit_test(test_gpu_rejects_bad_problems),
		cmocka_unit_test(test_gpu_many_tags_vs_reference),
		cmocka_unit_test(test_gpu_matches_cpu_large_batch),
	};
	if (viterbi_gpu_count() > 0 && viterbi_gpu_new(&gpu) != 0)
		gpu = NULL;
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	viterbi_gpu_free(gpu);
	return failed ? 1 : 0;
}
