/*
 * bench_gpu: the GPU figures that need no daemon (tests/gpu/run.sh runs it
 * beside tests/bench/gpu_restore.sh, which times cold start vs restore).
 *
 *   bench_gpu [--sizes 256,4096] [--layers 8192,8192,8192,8192,8192,10]
 *             [--peak 8192] [--seconds S]
 *
 * Prints, for device 0:
 *  - the device name, driver and runtime (CUDA) versions, memory;
 *  - the host-to-device copy floor of each size in MiB (default 256 and
 *    4096, the weights of the GPU restore benchmark): cudaMemcpy from
 *    pinned host memory (a 512 MiB pinned buffer copied to consecutive
 *    device offsets until the size is covered), best of 3; the same from
 *    pageable (malloc) memory for contrast;
 *  - cuBLAS's own SGEMM peak on this card: the best single call of an
 *    N x N x N sgemm (N = --peak);
 *  - the predict handler's forward pass (kernels/mlp_cuda: cuBLAS SGEMM +
 *    fused bias kernels) on --layers with random weights, batch 1 to 1024:
 *    GFLOP/s and its fraction of that peak, and whether two runs of the
 *    same input give bit-identical outputs (restored copies are compared
 *    with cold ones bit for bit, which needs a deterministic pass).
 * Every figure is also printed as one line "figure: NAME = VALUE UNIT" that
 * tests/gpu/run.sh gathers into its table.
 *
 * Exit: 0; 77 without a CUDA device (one line says why); 1 when a CUDA call
 * fails or the pass is not deterministic.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/mlp.h"

#define MIB (1024.0 * 1024.0)
#define CHUNK_BYTES ((size_t)512 << 20)
#define MAX_SIZES 8

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void figure(const char *name, double v, const char *unit)
{
	printf("figure: %s = %.6g %s\n", name, v, unit);
}

#define CK(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			fprintf(stderr, "bench_gpu: %s: %s\n", #call, cudaGetErrorString(e_));     \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* Fills n floats in +-a from a small LCG (no libc rand state shared). */
static void fill(float *p, size_t n, float a, unsigned *s)
{
	for (size_t i = 0; i < n; i++) {
		*s = *s * 1664525u + 1013904223u;
		p[i] = ((float)(*s >> 8) / 16777216.0f * 2.0f - 1.0f) * a;
	}
}

/* Seconds to copy `bytes` host -> device from src (chunk bytes long, reused
 * for every chunk) into dst; best of 3. */
static double copy_secs(void *dst, const void *src, size_t chunk, size_t bytes)
{
	double best = 1e30;
	for (int rep = 0; rep < 3; rep++) {
		CK(cudaDeviceSynchronize());
		double t0 = now();
		for (size_t off = 0; off < bytes; off += chunk) {
			size_t n = bytes - off < chunk ? bytes - off : chunk;
			CK(cudaMemcpy((char *)dst + off, src, n, cudaMemcpyHostToDevice));
		}
		CK(cudaDeviceSynchronize());
		double t = now() - t0;
		if (t < best)
			best = t;
	}
	return best;
}

static void copy_floor(const size_t *mib, int n_sizes)
{
	void *pinned, *pageable;
	CK(cudaHostAlloc(&pinned, CHUNK_BYTES, cudaHostAllocDefault));
	pageable = malloc(CHUNK_BYTES);
	if (!pageable) {
		fprintf(stderr, "bench_gpu: out of memory\n");
		exit(1);
	}
	memset(pinned, 0x3c, CHUNK_BYTES);
	memset(pageable, 0x3c, CHUNK_BYTES);
	for (int i = 0; i < n_sizes; i++) {
		size_t bytes = mib[i] << 20;
		void *dev = NULL;
		cudaError_t e = cudaMalloc(&dev, bytes);
		if (e != cudaSuccess) {
			cudaGetLastError();
			printf("h2d %zu MiB: skipped, cudaMalloc: %s\n", mib[i], cudaGetErrorString(e));
			continue;
		}
		size_t chunk = bytes < CHUNK_BYTES ? bytes : CHUNK_BYTES;
		double tp = copy_secs(dev, pinned, chunk, bytes);
		double tq = copy_secs(dev, pageable, chunk, bytes);
		printf("h2d %5zu MiB: pinned %8.1f ms (%5.1f GB/s), pageable %8.1f ms (%5.1f GB/s)\n",
		       mib[i], tp * 1e3, (double)bytes / tp / 1e9, tq * 1e3, (double)bytes / tq / 1e9);
		char name[64];
		snprintf(name, sizeof(name), "h2d_pinned_%zuMiB_ms", mib[i]);
		figure(name, tp * 1e3, "ms");
		snprintf(name, sizeof(name), "h2d_pinned_%zuMiB_GBps", mib[i]);
		figure(name, (double)bytes / tp / 1e9, "GB/s");
		snprintf(name, sizeof(name), "h2d_pageable_%zuMiB_ms", mib[i]);
		figure(name, tq * 1e3, "ms");
		CK(cudaFree(dev));
	}
	CK(cudaFreeHost(pinned));
	free(pageable);
}

/* cuBLAS's best single N^3 SGEMM on this card, in GFLOP/s. */
static double cublas_peak(int n, double secs)
{
	size_t elems = (size_t)n * n;
	float *a, *b, *c, *h = malloc(elems * sizeof(float));
	unsigned s = 11;
	const float one = 1.0f, zero = 0.0f;
	cublasHandle_t blas;
	if (!h || cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "bench_gpu: cublasCreate failed\n");
		exit(1);
	}
	fill(h, elems, 1.0f, &s);
	CK(cudaMalloc((void **)&a, elems * sizeof(float)));
	CK(cudaMalloc((void **)&b, elems * sizeof(float)));
	CK(cudaMalloc((void **)&c, elems * sizeof(float)));
	CK(cudaMemcpy(a, h, elems * sizeof(float), cudaMemcpyHostToDevice));
	CK(cudaMemcpy(b, h, elems * sizeof(float), cudaMemcpyHostToDevice));
	double best = 1e30, start = now();
	int calls = 0;
	do {
		double t0 = now();
		if (cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c,
				n) != CUBLAS_STATUS_SUCCESS) {
			fprintf(stderr, "bench_gpu: cublasSgemm failed\n");
			exit(1);
		}
		CK(cudaDeviceSynchronize());
		double t = now() - t0;
		if (calls++ && t < best) /* the first call loads kernels */
			best = t;
	} while (now() - start < secs || calls < 3);
	cudaFree(a), cudaFree(b), cudaFree(c);
	cublasDestroy(blas);
	free(h);
	return 2.0 * n * (double)n * n / best / 1e9;
}

static int parse_list(const char *s, size_t *out, int max)
{
	int n = 0;
	while (*s && n < max) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (end == s || v == 0 || v > (1ul << 20))
			return -EINVAL;
		out[n++] = v;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -EINVAL;
	}
	return n;
}

/* The predict handler's pass on random weights; returns 0 or 1 (failure). */
static int mlp_figures(const size_t *widths, int n_widths, double peak, double secs)
{
	static const int batches[] = { 1, 64, 256, 1024 };
	struct mlp_net net = { .n_layers = n_widths - 1 };
	struct mlp_cuda *ctx = NULL;
	char err[256] = "";
	unsigned s = 5;
	double gib = 0;
	for (int l = 0; l < net.n_layers; l++) {
		struct mlp_layer *L = &net.layers[l];
		L->in = (int)widths[l];
		L->out = (int)widths[l + 1];
		float *w = malloc((size_t)L->in * L->out * sizeof(float));
		float *b = malloc((size_t)L->out * sizeof(float));
		if (!w || !b) {
			fprintf(stderr, "bench_gpu: out of memory\n");
			return 1;
		}
		fill(w, (size_t)L->in * L->out, 0.02f, &s);
		fill(b, (size_t)L->out, 0.1f, &s);
		L->w = w;
		L->b = b;
		gib += (double)L->in * L->out * 4 / (MIB * 1024);
	}
	int rc = mlp_cuda_new(&net, 1024, &ctx, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "bench_gpu: mlp_cuda_new: %s\n", err);
		return 1;
	}
	int in0 = net.layers[0].in, outw = net.layers[net.n_layers - 1].out;
	float *x = malloc((size_t)1024 * in0 * sizeof(float));
	float *y = malloc((size_t)1024 * outw * sizeof(float));
	float *y2 = malloc((size_t)1024 * outw * sizeof(float));
	if (!x || !y || !y2)
		return 1;
	fill(x, (size_t)1024 * in0, 1.0f, &s);
	printf("mlp forward, %d layers, %.2f GiB of weights (cuBLAS SGEMM + bias kernels)\n",
	       net.n_layers, gib);
	int failed = 0;
	for (size_t i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
		int b = batches[i], iters = 0;
		if (mlp_cuda_forward(ctx, x, b, y)) { /* warm-up */
			fprintf(stderr, "bench_gpu: mlp_cuda_forward failed\n");
			return 1;
		}
		double t0 = now();
		do {
			if (mlp_cuda_forward(ctx, x, b, y2))
				return 1;
			iters++;
		} while (now() - t0 < secs);
		double t = (now() - t0) / iters;
		double gf = 2.0 * mlp_macs(&net, b) / t / 1e9;
		int same = memcmp(y, y2, (size_t)b * outw * sizeof(float)) == 0;
		failed |= !same;
		printf("  batch %4d: %9.3f ms/pass %9.1f GFLOP/s = %5.1f%% of cuBLAS peak, "
		       "repeat bit-identical: %s\n",
		       b, t * 1e3, gf, 100.0 * gf / peak, same ? "yes" : "NO");
		char name[64];
		snprintf(name, sizeof(name), "mlp_b%d_GFLOPs", b);
		figure(name, gf, "GFLOP/s");
		snprintf(name, sizeof(name), "mlp_b%d_of_peak", b);
		figure(name, 100.0 * gf / peak, "%");
	}
	mlp_cuda_free(ctx);
	for (int l = 0; l < net.n_layers; l++) {
		free((void *)net.layers[l].w);
		free((void *)net.layers[l].b);
	}
	free(x), free(y), free(y2);
	return failed;
}

int main(int argc, char **argv)
{
	size_t sizes[MAX_SIZES] = { 256, 4096 }, widths[MLP_MAX_LAYERS + 1] = { 8192, 8192, 8192,
										   8192, 8192, 10 };
	int n_sizes = 2, n_widths = 6, peak_n = 8192;
	double secs = 1.0;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--sizes") && v)
			n_sizes = parse_list(argv[++i], sizes, MAX_SIZES);
		else if (!strcmp(argv[i], "--layers") && v)
			n_widths = parse_list(argv[++i], widths, MLP_MAX_LAYERS + 1);
		else if (!strcmp(argv[i], "--peak") && v)
			peak_n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && v)
			secs = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: bench_gpu [--sizes 256,4096] [--layers 8192,...,10] "
					"[--peak 8192] [--seconds S]\n");
			return 2;
		}
		if (n_sizes < 1 || n_widths < 2 || peak_n < 64 || peak_n > 32768 || secs <= 0) {
			fprintf(stderr, "bench_gpu: bad %s\n", argv[i - 1]);
			return 2;
		}
	}

	int n_dev = 0, drv = 0, rt = 0;
	cudaError_t e = cudaGetDeviceCount(&n_dev);
	if (e != cudaSuccess || n_dev < 1) {
		printf("bench_gpu: skipped: no CUDA device (%s)\n",
		       e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
		return 77;
	}
	struct cudaDeviceProp prop;
	CK(cudaSetDevice(0));
	CK(cudaGetDeviceProperties(&prop, 0));
	CK(cudaDriverGetVersion(&drv));
	CK(cudaRuntimeGetVersion(&rt));
	printf("device: %s, %.1f GiB, driver API %d.%d, runtime %d.%d\n", prop.name,
	       (double)prop.totalGlobalMem / (MIB * 1024), drv / 1000, drv % 1000 / 10, rt / 1000,
	       rt % 1000 / 10);

	copy_floor(sizes, n_sizes);
	double peak = cublas_peak(peak_n, secs);
	printf("cuBLAS SGEMM peak (N=%d, best call): %.1f GFLOP/s\n", peak_n, peak);
	figure("cublas_sgemm_peak_GFLOPs", peak, "GFLOP/s");
	int failed = mlp_figures(widths, n_widths, peak, secs);
	if (failed)
		printf("bench_gpu: FAILED: the forward pass is not bit-identical run to run\n");
	return failed ? 1 : 0;
}
