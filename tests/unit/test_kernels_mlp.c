/*
 * Unit tests for kernels/mlp: the OpenBLAS and CUDA forward passes against
 * the plain-loop reference on random networks and inputs (fresh every run).
 * The CUDA cases skip without a GPU; the whole test exits 77 only if every
 * case skipped, which cannot happen since the CPU cases always run.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include "testutil.h"

#include "kernels/mlp.h"
#include "kernels/staging.h"

static uint64_t rng;

static float frand(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (float)((rng >> 40) / 16777216.0 * 2.0 - 1.0);
}

static float *rand_floats(size_t n, float a)
{
	float *p = malloc(n * sizeof(float));
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = frand() * a;
	return p;
}

static void make_net(struct mlp_net *net, const int *dims, int nd)
{
	memset(net, 0, sizeof(*net));
	net->n_layers = nd - 1;
	for (int l = 0; l + 1 < nd; l++) {
		net->layers[l].in = dims[l];
		net->layers[l].out = dims[l + 1];
		net->layers[l].w = rand_floats((size_t)dims[l] * dims[l + 1], sqrtf(6.0f / dims[l]));
		net->layers[l].b = rand_floats(dims[l + 1], 0.1f);
	}
}

static void free_net(struct mlp_net *net)
{
	for (int l = 0; l < net->n_layers; l++) {
		free((void *)net->layers[l].w);
		free((void *)net->layers[l].b);
	}
}

static void check_close(const float *got, const float *want, size_t n, double rel,
			double abs_tol, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (fabs((double)got[i] - want[i]) > rel * fabs(want[i]) + abs_tol)
			fail_msg("%s: element %zu: %.9g vs %.9g", what, i, got[i], want[i]);
}

static const int shapes[][5] = {
	{ 3, 1, 2, 0, 0 }, { 784, 128, 10, 0, 0 }, { 17, 300, 255, 33, 0 }, { 64, 64, 64, 64, 64 },
};
static const int batches[] = { 1, 7, 64, 200 };

/* use_cuda: 0 = BLAS, 1 = CUDA; each shape with a softmax and an identity output */
static void compare_paths(int use_cuda)
{
	for (size_t so = 0; so < 2 * sizeof(shapes) / sizeof(shapes[0]); so++) {
		size_t s = so / 2;
		int nd = 0;
		while (nd < 5 && shapes[s][nd])
			nd++;
		struct mlp_net net;
		make_net(&net, shapes[s], nd);
		net.output = so % 2 ? MLP_OUT_IDENTITY : MLP_OUT_SOFTMAX;
		int maxb = batches[sizeof(batches) / sizeof(batches[0]) - 1];
		int in = shapes[s][0], out = shapes[s][nd - 1];
		float *x = rand_floats((size_t)maxb * in, 2.0f);
		float *y = malloc(sizeof(float) * maxb * out), *ref = malloc(sizeof(float) * maxb * out);
		float *scratch = malloc(sizeof(float) * mlp_scratch_floats(&net, maxb));
#ifdef HAVE_CUDA
		struct mlp_cuda *cuda = NULL;
		char err[256];
		if (use_cuda && mlp_cuda_new(&net, maxb, &cuda, err, sizeof(err)) < 0)
			fail_msg("mlp_cuda_new: %s", err);
#endif
		for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
			int n = batches[b];
			assert_int_equal(mlp_ref_forward(&net, x, n, ref, scratch), 0);
#ifdef HAVE_CUDA
			if (use_cuda)
				assert_int_equal(mlp_cuda_forward(cuda, x, n, y), 0);
			else
#endif
				assert_int_equal(mlp_blas_forward(&net, x, n, y, scratch), 0);
			/* raw (identity) outputs near 0 come from cancelling sums:
			 * judged against the largest output, not their own size */
			double big = 0;
			for (size_t i = 0; i < (size_t)n * out; i++)
				big = fmax(big, fabs(ref[i]));
			check_close(y, ref, (size_t)n * out, 1e-5,
				    net.output == MLP_OUT_IDENTITY ? 1e-5 * big : 1e-7,
				    use_cuda ? "cuda" : "blas");
		}
#ifdef HAVE_CUDA
		mlp_cuda_free(cuda);
#endif
		free(x), free(y), free(ref), free(scratch);
		free_net(&net);
	}
}

static void test_blas_matches_reference(void **state)
{
	(void)state;
	compare_paths(0);
}

static void test_cuda_matches_reference(void **state)
{
	(void)state;
#ifdef HAVE_CUDA
	if (mlp_cuda_device_count() < 1)
		SKIP_NO_GPU("no CUDA device: the CUDA path is not compared");
	compare_paths(1);
#else
	SKIP_NO_GPU("built without CUDA: the CUDA path is not compared");
#endif
}

/* Weights released (before a checkpoint) and uploaded again, through pinned
 * staging smaller than a tensor (several chunks, both buffers) and through
 * registered host pages: the outputs are bit-identical to before, and a
 * pass without weights is refused. Needs a GPU. */
static void test_cuda_release_and_upload_keep_outputs(void **state)
{
	(void)state;
#ifdef HAVE_CUDA
	static const int dims[] = { 300, 257, 10 };
	static const size_t staging[] = { 4096, 0, 1 << 20 };
	struct mlp_net net;
	struct mlp_cuda *c = NULL;
	char err[256];
	float x[3 * 300], y0[3 * 10], y1[3 * 10];
	if (mlp_cuda_device_count() < 1)
		SKIP_NO_GPU("no CUDA device: releasing and uploading the weights is not checked");
	make_net(&net, dims, 3);
	for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++)
		x[i] = (float)i / 300.0f - 1.0f;
	assert_int_equal(mlp_cuda_new(&net, 3, &c, err, sizeof(err)), 0);
	assert_int_equal(mlp_cuda_forward(c, x, 3, y0), 0);
	for (size_t i = 0; i < sizeof(staging) / sizeof(staging[0]); i++) {
		assert_int_equal(mlp_cuda_release_weights(c), 0);
		assert_false(mlp_cuda_weights_resident(c));
		assert_int_equal(mlp_cuda_forward(c, x, 3, y1), -EIO);
		assert_int_equal(mlp_cuda_upload_weights(c, &net, staging[i], err, sizeof(err)), 0);
		assert_true(mlp_cuda_weights_resident(c));
		assert_int_equal(mlp_cuda_forward(c, x, 3, y1), 0);
		assert_memory_equal(y0, y1, sizeof(y0));
	}
	net.layers[0].out = 256; /* another network is refused */
	assert_int_equal(mlp_cuda_upload_weights(c, &net, 4096, err, sizeof(err)), -EINVAL);
	net.layers[0].out = 257;
	mlp_cuda_free(c);
	free_net(&net);
#else
	SKIP_NO_GPU("built without CUDA: releasing and uploading the weights is not checked");
#endif
}

/* --- kernels/staging: the double-buffered pipeline, with a mock device ---- */

/* A copy is "in flight" from copy() until wait() of its buffer: only then
 * does the mock move the bytes, from the buffer as it is at that moment,
 * so a buffer refilled before its wait shows up as wrong bytes. */
static struct mock_dev {
	unsigned char buf[2][64];
	struct {
		void *dst;
		size_t n;
	} pending[2];
	size_t max_n;
	int copies, fail_at; /* copy number fail_at (1-based) fails; 0 never */
	char order[64];      /* W0 C0 W1 C1 ... as letters: w/c + buffer */
} md;

static void md_log(char c, unsigned i)
{
	size_t n = strlen(md.order);
	if (n + 2 < sizeof(md.order)) {
		md.order[n] = c;
		md.order[n + 1] = (char)('0' + i);
	}
}

static void *md_buf(void *arg, unsigned i)
{
	(void)arg;
	return md.buf[i];
}

static int md_wait(void *arg, unsigned i)
{
	(void)arg;
	md_log('w', i);
	if (md.pending[i].dst)
		memcpy(md.pending[i].dst, md.buf[i], md.pending[i].n);
	md.pending[i].dst = NULL;
	return 0;
}

static int md_copy(void *arg, unsigned i, void *dst, size_t n)
{
	(void)arg;
	md_log('c', i);
	if (++md.copies == md.fail_at)
		return -EIO;
	assert_null(md.pending[i].dst); /* never two copies out of one buffer */
	md.pending[i].dst = dst;
	md.pending[i].n = n;
	if (n > md.max_n)
		md.max_n = n;
	return 0;
}

static const struct staging_ops md_ops = { md_buf, md_wait, md_copy };

static void test_staging_pipeline_order_and_bounds(void **state)
{
	static const struct {
		size_t size, bytes;
		const char *order; /* NULL: not checked */
	} cases[] = {
		{ 64, 0, "" },
		{ 64, 1, "w0c0" },
		{ 64, 63, "w0c0" },
		{ 64, 64, "w0c0" },
		{ 64, 65, "w0c0w1c1" },
		{ 64, 128, "w0c0w1c1" },
		{ 64, 7 * 64 + 3, "w0c0w1c1w0c0w1c1w0c0w1c1w0c0w1c1" },
		{ 1, 5, "w0c0w1c1w0c0w1c1w0c0" },
		{ 7, 1000, NULL },
	};
	unsigned char src[1000], dst[1000];
	(void)state;
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (unsigned char)(i * 131 + 7);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		memset(&md, 0, sizeof(md));
		memset(dst, 0xee, sizeof(dst));
		struct staging st = { &md_ops, NULL, cases[k].size, 0 };
		assert_int_equal(staging_copy(&st, dst, src, cases[k].bytes), 0);
		if (cases[k].order)
			assert_string_equal(md.order, cases[k].order);
		md_wait(NULL, 0), md_wait(NULL, 1); /* the caller's final wait */
		assert_memory_equal(dst, src, cases[k].bytes);
		if (cases[k].bytes < sizeof(dst))
			assert_int_equal(dst[cases[k].bytes], 0xee); /* nothing past the end */
		assert_true(md.max_n <= cases[k].size);
	}
	/* consecutive calls (tensor after tensor) keep alternating buffers */
	memset(&md, 0, sizeof(md));
	struct staging st = { &md_ops, NULL, 64, 0 };
	assert_int_equal(staging_copy(&st, dst, src, 10), 0);
	assert_int_equal(staging_copy(&st, dst + 10, src + 10, 10), 0);
	assert_string_equal(md.order, "w0c0w1c1");
	/* a failing copy stops the pipeline with its error */
	memset(&md, 0, sizeof(md));
	md.fail_at = 3;
	st = (struct staging){ &md_ops, NULL, 64, 0 };
	assert_int_equal(staging_copy(&st, dst, src, 1000), -EIO);
	assert_int_equal(md.copies, 3);
	/* bad arguments */
	st.size = 0;
	assert_int_equal(staging_copy(&st, dst, src, 10), -EINVAL);
	st.size = 64;
	assert_int_equal(staging_copy(&st, NULL, src, 10), -EINVAL);
	assert_int_equal(staging_copy(&st, NULL, NULL, 0), 0);
}

static void test_invalid_nets_are_rejected(void **state)
{
	struct mlp_net net;
	static const int dims[] = { 4, 3, 2 };
	float x[8], y[4], scratch[64];
	(void)state;
	make_net(&net, dims, 3);
	assert_int_equal(mlp_ref_forward(&net, x, 0, y, scratch), -22);
	assert_int_equal(mlp_blas_forward(&net, x, 0, y, scratch), -22);
	net.layers[1].in = 5; /* does not chain */
	assert_int_equal(mlp_blas_forward(&net, x, 1, y, scratch), -22);
	net.layers[1].in = 3;
	free_net(&net);
#ifdef HAVE_CUDA
	if (mlp_cuda_device_count() < 1) {
		struct mlp_cuda *c = NULL;
		char err[128];
		make_net(&net, dims, 3);
		assert_true(mlp_cuda_new(&net, 4, &c, err, sizeof(err)) < 0);
		assert_null(c);
		free_net(&net);
	}
#endif
}

/* half_plus_two's network: one layer, weight 0.5, bias 2, identity output */
static void test_identity_output_is_the_affine_map(void **state)
{
	static const float w = 0.5f, b = 2.0f, x[3] = { 1.0f, 2.0f, 5.0f };
	float y[3], scratch[16];
	struct mlp_net net = { .n_layers = 1, .output = MLP_OUT_IDENTITY };
	(void)state;
	net.layers[0] = (struct mlp_layer){ .in = 1, .out = 1, .w = &w, .b = &b };
	assert_int_equal(mlp_ref_forward(&net, x, 3, y, scratch), 0);
	assert_true(y[0] == 2.5f && y[1] == 3.0f && y[2] == 4.5f);
	assert_int_equal(mlp_blas_forward(&net, x, 3, y, scratch), 0);
	assert_true(y[0] == 2.5f && y[1] == 3.0f && y[2] == 4.5f);
	assert_int_equal(mlp_blas_forward(&net, x, 1, y, scratch), 0); /* the GEMV path */
	assert_true(y[0] == 2.5f);
	net.output = MLP_OUT_SOFTMAX; /* one output under softmax is always 1 */
	assert_int_equal(mlp_blas_forward(&net, x, 3, y, scratch), 0);
	assert_true(y[0] == 1.0f && y[2] == 1.0f);
}

static void test_softmax_is_stable_for_large_logits(void **state)
{
	float y[4] = { 1000.0f, 1000.0f, -1000.0f, 999.0f };
	(void)state;
	mlp_softmax_rows(y, 1, 4);
	for (int i = 0; i < 4; i++)
		assert_false(isnan(y[i]));
	assert_true(fabs(y[0] + y[1] + y[2] + y[3] - 1) < 1e-6);
	assert_true(y[0] == y[1] && y[2] == 0.0f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blas_matches_reference),
		cmocka_unit_test(test_cuda_matches_reference),
		cmocka_unit_test(test_cuda_release_and_upload_keep_outputs),
		cmocka_unit_test(test_staging_pipeline_order_and_bounds),
		cmocka_unit_test(test_invalid_nets_are_rejected),
		cmocka_unit_test(test_softmax_is_stable_for_large_logits),
		cmocka_unit_test(test_identity_output_is_the_affine_map),
	};
	rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)time(NULL) * 2654435761u);
	printf("rng state %llu\n", (unsigned long long)rng);
	setenv("OPENBLAS_NUM_THREADS", "1", 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
