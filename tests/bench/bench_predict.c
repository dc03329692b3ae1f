/*
 * bench_predict: GEMM throughput of the predict handler's MLP forward pass.
 *
 *   bench_predict [--layers 784,512,512,10] [--peak N] [--seconds S]
 *   bench_predict --weights FILE.safetensors [--device cpu|gpu|auto] ...
 *
 * Prints, for batch sizes 1, 8, 64 and 256, the forward-pass rate and its
 * GFLOP/s (2 x multiply-adds) on the OpenBLAS path (and on the GPU when one
 * is present), next to the machine's OpenBLAS peak: a large square sgemm
 * (N = --peak, default 2048). Weights are random unless --weights names a
 * safetensors file (from tools/gen_weights); then the file is mapped and
 * loaded exactly as the predict handler's init does, and that time (map +
 * parse + scratch + warm-up) is printed too.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/mlp.h"
#include "handlers/predict/model.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *rand_floats(size_t n, float a, unsigned *seed)
{
	float *p = malloc(n * sizeof(float));
	if (!p) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = (float)((double)rand_r(seed) / RAND_MAX * 2 - 1) * a;
	return p;
}

/* Best single call of a large square sgemm: the machine's attainable peak
 * (best, not mean, so that a noisy shared machine does not understate it). */
static double peak_gflops(int n, double secs, unsigned *seed)
{
	float *a = rand_floats((size_t)n * n, 1, seed), *b = rand_floats((size_t)n * n, 1, seed);
	float *c = calloc((size_t)n * n, sizeof(float));
	double start = now(), best = 1e30;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
	do {
		double t0 = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
		double t = now() - t0;
		if (t < best)
			best = t;
	} while (now() - start < secs);
	free(a), free(b), free(c);
	return 2.0 * n * n * (double)n / best / 1e9;
}

static void print_table(const char *path, const struct mlp_net *net, double secs, double peak,
			struct predict_model *m, float *scratch)
{
	static const int batches[] = { 1, 8, 64, 256 };
	unsigned seed = 7;
	float *x = rand_floats((size_t)256 * net->layers[0].in, 1, &seed);
	float *y = malloc((size_t)256 * net->layers[net->n_layers - 1].out * sizeof(float));
	for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++) {
		int b = batches[bi], iters = 0;
		double t0 = 0, t1;
		do {
			int rc = m ? predict_model_run(m, x, b, y)
				   : mlp_blas_forward(net, x, b, y, scratch);
			if (rc < 0) {
				fprintf(stderr, "forward failed: %d\n", rc);
				exit(1);
			}
			if (iters == 0)
				t0 = now();
			iters++;
			t1 = now();
		} while (t1 - t0 < secs || iters < 3);
		double rate = (iters - 1) / (t1 - t0);
		double gf = 2 * mlp_macs(net, b) * rate / 1e9;
		printf("%-6s %-5d %12.1f %12.1f %10.2f %7.1f%%\n", path, b, rate, rate * b, gf,
		       100 * gf / peak);
	}
	free(x), free(y);
}

/* The handler's own load path on a real file. */
static int bench_file(const char *file, const char *device, double secs, int peak_n)
{
	struct predict_model m;
	struct stat st;
	char err[256] = "";
	unsigned seed = 3;
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(file);
		return 1;
	}
	double t0 = now();
	void *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	if (predict_model_mlp(&m, p, st.st_size, device, 256, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", file, err);
		return 1;
	}
	double t1 = now();
	printf("%s: %.1f MiB, %d layers, load (map+parse+warm-up) %.3f s on %s%s%s\n", file,
	       st.st_size / 1048576.0, m.net.n_layers, t1 - t0, predict_device_name(&m),
	       err[0] ? "; " : "", err);
	double peak = peak_gflops(peak_n, secs, &seed);
	printf("openblas peak: sgemm %dx%dx%d %.1f GFLOP/s\n", peak_n, peak_n, peak_n, peak);
	printf("%-6s %-5s %12s %12s %10s %8s\n", "path", "batch", "pass/s", "rows/s", "GFLOP/s",
	       "of peak");
	print_table(m.device == PREDICT_DEV_GPU ? "cuda" : "blas", &m.net, secs, peak, &m, NULL);
	predict_model_fini(&m);
	munmap(p, st.st_size);
	return 0;
}

int main(int argc, char **argv)
{
	const char *layers = "784,512,512,10", *weights = NULL, *device = "cpu";
	int peak_n = 2048;
	double secs = 1.0;
	unsigned seed = 1;
	struct mlp_net net = { 0 };
	long dims[MLP_MAX_LAYERS + 1];
	int nd = 0;
	static const int batches[] = { 1, 8, 64, 256 };

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--layers") == 0)
			layers = argv[i + 1];
		else if (strcmp(argv[i], "--peak") == 0)
			peak_n = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--seconds") == 0)
			secs = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--weights") == 0)
			weights = argv[i + 1];
		else if (strcmp(argv[i], "--device") == 0)
			device = argv[i + 1];
	}
	if (weights)
		return bench_file(weights, device, secs, peak_n);
	for (const char *p = layers; *p && nd <= MLP_MAX_LAYERS;) {
		char *end;
		dims[nd++] = strtol(p, &end, 10);
		if (end == p || dims[nd - 1] < 1) {
			fprintf(stderr, "bad --layers %s\n", layers);
			return 2;
		}
		p = *end == ',' ? end + 1 : end;
	}
	if (nd < 2) {
		fprintf(stderr, "bad --layers %s\n", layers);
		return 2;
	}
	net.n_layers = nd - 1;
	for (int l = 0; l < net.n_layers; l++) {
		net.layers[l].in = (int)dims[l];
		net.layers[l].out = (int)dims[l + 1];
		net.layers[l].w = rand_floats((size_t)dims[l] * dims[l + 1], 0.05f, &seed);
		net.layers[l].b = rand_floats((size_t)dims[l + 1], 0.1f, &seed);
	}
	double peak = peak_gflops(peak_n, secs, &seed);
	printf("openblas peak: sgemm %dx%dx%d %.1f GFLOP/s\n", peak_n, peak_n, peak_n, peak);
	int maxb = batches[sizeof(batches) / sizeof(batches[0]) - 1];
	float *x = rand_floats((size_t)maxb * dims[0], 1, &seed);
	float *y = malloc((size_t)maxb * dims[nd - 1] * sizeof(float));
	float *scratch = malloc(mlp_scratch_floats(&net, maxb) * sizeof(float));
#ifdef HAVE_CUDA
	struct mlp_cuda *cuda = NULL;
	char err[256];
	if (mlp_cuda_device_count() > 0 && mlp_cuda_new(&net, maxb, &cuda, err, sizeof(err)) < 0)
		fprintf(stderr, "cuda: %s\n", err);
	if (!cuda)
		printf("gpu: none (%d devices)\n", mlp_cuda_device_count());
	else
		printf("gpu: %s\n", mlp_cuda_device_name(cuda));
#endif
	printf("mlp %s\n", layers);
	printf("%-6s %-5s %12s %12s %10s %8s\n", "path", "batch", "pass/s", "rows/s", "GFLOP/s",
	       "of peak");

	for (int path = 0; path < 2; path++) {
#ifdef HAVE_CUDA
		if (path == 1 && !cuda)
			break;
#else
		if (path == 1)
			break;
#endif
		for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++) {
			int b = batches[bi], iters = 0;
			double t0, t1;
			do {
				int rc;
#ifdef HAVE_CUDA
				if (path == 1)
					rc = mlp_cuda_forward(cuda, x, b, y);
				else
#endif
					rc = mlp_blas_forward(&net, x, b, y, scratch);
				if (rc < 0) {
					fprintf(stderr, "forward failed: %d\n", rc);
					return 1;
				}
				if (iters == 0)
					t0 = now(); /* first pass is the warm-up */
				iters++;
				t1 = now();
			} while (t1 - t0 < secs || iters < 3);
			double rate = (iters - 1) / (t1 - t0);
			double gf = 2 * mlp_macs(&net, b) * rate / 1e9;
			printf("%-6s %-5d %12.1f %12.1f %10.2f %7.1f%%\n", path ? "cuda" : "blas", b,
			       rate, rate * b, gf, 100 * gf / peak);
		}
	}
#ifdef HAVE_CUDA
	mlp_cuda_free(cuda);
#endif
	return 0;
}
