/*
 * mlp_cuda: the GPU forward pass. Per layer one cuBLAS SGEMM (row-major data
 * seen as column-major transposes, so no copies) followed by a fused
 * bias+ReLU kernel, or by a bias+softmax kernel (one block per row) at the
 * output. Weights are copied to the device once in mlp_cuda_new().
 *
 * cuBLAS is loaded with dlopen() on the first mlp_cuda_new(), not linked:
 * merely loading libcublas allocates ~95 MB of anonymous memory (cublasLt's
 * static tables), which every CPU-only instance and its snapshot would
 * otherwise carry. cudart is linked (it costs < 1 MB) for the device probe.
 */
#include "kernels/mlp.h"
#include "kernels/staging.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MLP_CUBLAS_LIB
#define MLP_CUBLAS_LIB "libcublas.so"
#endif

/* The four cuBLAS entry points used, resolved once per process; the
 * library stays loaded until exit. */
static struct {
	pthread_once_t once;
	int ok;
	char why[200];
	cublasStatus_t (*create)(cublasHandle_t *);
	cublasStatus_t (*destroy)(cublasHandle_t);
	cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
	cublasStatus_t (*sgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
				int, const float *, const float *, int, const float *, int,
				const float *, float *, int);
} cublas = { PTHREAD_ONCE_INIT };

static void cublas_load(void)
{
	static const char *const names[] = { MLP_CUBLAS_LIB, "libcublas.so.13", "libcublas.so.12",
					     "libcublas.so" };
	void *lib = NULL;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !lib; i++)
		lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(cublas.why, sizeof(cublas.why), "cannot load cuBLAS: %s", dlerror());
		return;
	}
	cublas.create = (decltype(cublas.create))dlsym(lib, "cublasCreate_v2");
	cublas.destroy = (decltype(cublas.destroy))dlsym(lib, "cublasDestroy_v2");
	cublas.set_stream = (decltype(cublas.set_stream))dlsym(lib, "cublasSetStream_v2");
	cublas.sgemm = (decltype(cublas.sgemm))dlsym(lib, "cublasSgemm_v2");
	if (!cublas.create || !cublas.destroy || !cublas.set_stream || !cublas.sgemm) {
		snprintf(cublas.why, sizeof(cublas.why), "cuBLAS lacks cublasSgemm_v2 & co");
		return;
	}
	cublas.ok = 1;
}

struct mlp_cuda {
	struct mlp_net net; /* host view; w/b point at device copies below */
	float *dw[MLP_MAX_LAYERS], *db[MLP_MAX_LAYERS];
	float *dx, *da, *dbuf; /* input, ping-pong activations (2 x max) */
	int max_batch, width;
	int resident; /* dw/db hold the weights (mlp_cuda_release_weights) */
	cublasHandle_t blas;
	cudaStream_t stream;
	char name[256];
};

__global__ void bias_relu_kernel(float *y, const float *b, int rows, int cols)
{
	size_t n = (size_t)rows * cols;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float v = y[i] + b[i % cols];
		y[i] = v > 0.0f ? v : 0.0f;
	}
}

__global__ void bias_kernel(float *y, const float *b, int rows, int cols)
{
	size_t n = (size_t)rows * cols;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] += b[i % cols];
}

/* One block per row: adds the bias, then a numerically stable softmax. */
__global__ void bias_softmax_kernel(float *y, const float *b, int cols)
{
	__shared__ float red[256];
	float *row = y + (size_t)blockIdx.x * cols;
	float m = -FLT_MAX;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		float v = row[c] + b[c];
		row[c] = v;
		m = fmaxf(m, v);
	}
	red[threadIdx.x] = m;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
		__syncthreads();
	}
	m = red[0];
	__syncthreads();
	float sum = 0.0f;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		float e = expf(row[c] - m);
		row[c] = e;
		sum += e;
	}
	red[threadIdx.x] = sum;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			red[threadIdx.x] += red[threadIdx.x + s];
		__syncthreads();
	}
	float inv = 1.0f / red[0];
	for (int c = threadIdx.x; c < cols; c += blockDim.x)
		row[c] *= inv;
}

extern "C" int mlp_cuda_device_count(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		cudaGetLastError(); /* clear the sticky "no driver" error */
		return 0;
	}
	return n;
}

extern "C" void mlp_cuda_free(struct mlp_cuda *ctx)
{
	if (!ctx)
		return;
	for (int l = 0; l < ctx->net.n_layers; l++) {
		cudaFree(ctx->dw[l]);
		cudaFree(ctx->db[l]);
	}
	cudaFree(ctx->dx);
	cudaFree(ctx->dbuf);
	if (ctx->blas)
		cublas.destroy(ctx->blas);
	if (ctx->stream)
		cudaStreamDestroy(ctx->stream);
	free(ctx);
}

#define CU_TRY(call, what)                                                      \
	do {                                                                   \
		cudaError_t e_ = (call);                                      \
		if (e_ != cudaSuccess) {                                      \
			snprintf(err, errlen, "%s: %s", what, cudaGetErrorString(e_)); \
			rc = e_ == cudaErrorMemoryAllocation ? -ENOMEM : -EIO; \
			goto fail;                                            \
		}                                                             \
	} while (0)

extern "C" int mlp_cuda_new(const struct mlp_net *net, int max_batch,
			    struct mlp_cuda **out, char *err, size_t errlen)
{
	int rc = -EIO;
	struct mlp_cuda *ctx;
	if (!mlp__net_valid(net, max_batch)) {
		snprintf(err, errlen, "invalid network or batch");
		return -EINVAL;
	}
	if (mlp_cuda_device_count() < 1) {
		snprintf(err, errlen, "no CUDA device");
		return -ENODEV;
	}
	pthread_once(&cublas.once, cublas_load);
	if (!cublas.ok) {
		snprintf(err, errlen, "%s", cublas.why);
		return -ENODEV;
	}
	ctx = (struct mlp_cuda *)calloc(1, sizeof(*ctx));
	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ctx->net = *net;
	ctx->max_batch = max_batch;
	ctx->width = mlp_max_width(net);
	{
		cudaDeviceProp prop;
		CU_TRY(cudaSetDevice(0), "cudaSetDevice");
		CU_TRY(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
		snprintf(ctx->name, sizeof(ctx->name), "%s", prop.name);
	}
	CU_TRY(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "cudaStreamCreate");
	if (cublas.create(&ctx->blas) != CUBLAS_STATUS_SUCCESS) {
		ctx->blas = NULL;
		snprintf(err, errlen, "cublasCreate failed");
		goto fail;
	}
	cublas.set_stream(ctx->blas, ctx->stream);
	for (int l = 0; l < net->n_layers; l++) {
		const struct mlp_layer *L = &net->layers[l];
		size_t wb = (size_t)L->in * L->out * sizeof(float);
		CU_TRY(cudaMalloc((void **)&ctx->dw[l], wb), "cudaMalloc(weights)");
		CU_TRY(cudaMalloc((void **)&ctx->db[l], L->out * sizeof(float)), "cudaMalloc(bias)");
		CU_TRY(cudaMemcpy(ctx->dw[l], L->w, wb, cudaMemcpyHostToDevice), "cudaMemcpy(weights)");
		CU_TRY(cudaMemcpy(ctx->db[l], L->b, L->out * sizeof(float), cudaMemcpyHostToDevice),
		       "cudaMemcpy(bias)");
		ctx->net.layers[l].w = ctx->dw[l];
		ctx->net.layers[l].b = ctx->db[l];
	}
	CU_TRY(cudaMalloc((void **)&ctx->dx, (size_t)max_batch * net->layers[0].in * sizeof(float)),
	       "cudaMalloc(input)");
	CU_TRY(cudaMalloc((void **)&ctx->dbuf, 2 * (size_t)max_batch * ctx->width * sizeof(float)),
	       "cudaMalloc(activations)");
	ctx->resident = 1;
	*out = ctx;
	return 0;
fail:
	mlp_cuda_free(ctx);
	return rc;
}

extern "C" int mlp_cuda_weights_resident(const struct mlp_cuda *ctx)
{
	return ctx && ctx->resident;
}

extern "C" int mlp_cuda_release_weights(struct mlp_cuda *ctx)
{
	if (!ctx)
		return 0;
	/* also frees what a failed upload left (resident still 0) */
	if (cudaStreamSynchronize(ctx->stream) != cudaSuccess)
		return -EIO;
	for (int l = 0; l < ctx->net.n_layers; l++) {
		cudaFree(ctx->dw[l]);
		cudaFree(ctx->db[l]);
		ctx->dw[l] = ctx->db[l] = NULL;
		ctx->net.layers[l].w = ctx->net.layers[l].b = NULL;
	}
	ctx->resident = 0;
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

/* The double-buffered pinned staging of one upload (kernels/staging.h):
 * one event per buffer marks the end of the DMA out of it. */
struct stage {
	char *buf[2];
	cudaEvent_t done[2];
	cudaStream_t stream;
	cudaError_t err; /* the first CUDA error of a callback */
};

static void *stage_buf(void *arg, unsigned i)
{
	return ((struct stage *)arg)->buf[i];
}

static int stage_wait(void *arg, unsigned i)
{
	struct stage *s = (struct stage *)arg;
	s->err = cudaEventSynchronize(s->done[i]);
	return s->err == cudaSuccess ? 0 : -EIO;
}

static int stage_dma(void *arg, unsigned i, void *dst, size_t n)
{
	struct stage *s = (struct stage *)arg;
	s->err = cudaMemcpyAsync(dst, s->buf[i], n, cudaMemcpyHostToDevice, s->stream);
	if (s->err == cudaSuccess)
		s->err = cudaEventRecord(s->done[i], s->stream);
	return s->err == cudaSuccess ? 0 : -EIO;
}

static const struct staging_ops stage_ops = { stage_buf, stage_wait, stage_dma };

/* bytes host -> dev through the staging buffers. */
static cudaError_t stage_copy(struct staging *st, char *dev, const char *host, size_t bytes)
{
	struct stage *s = (struct stage *)st->arg;
	return staging_copy(st, dev, host, bytes) == 0 ? cudaSuccess
		: s->err != cudaSuccess			 ? s->err
							 : cudaErrorInvalidValue;
}

/* bytes host -> dev straight from the host pages, pinned for the copy. */
static cudaError_t register_copy(cudaStream_t stream, char *dev, const char *host, size_t bytes)
{
	/* cudaHostRegister wants page-aligned ranges */
	uintptr_t page = 4096, lo = (uintptr_t)host & ~(page - 1);
	uintptr_t hi = ((uintptr_t)host + bytes + page - 1) & ~(page - 1);
	cudaError_t e = cudaHostRegister((void *)lo, hi - lo,
					 cudaHostRegisterReadOnly | cudaHostRegisterPortable);
	if (e != cudaSuccess) {
		/* devices without cudaDevAttrHostRegisterReadOnlySupported: pin
		 * for writing (works for writable memory, not for a read-only
		 * file mapping, which then fails here) */
		cudaGetLastError();
		e = cudaHostRegister((void *)lo, hi - lo, cudaHostRegisterPortable);
		if (e != cudaSuccess)
			return e;
	}
	e = cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream);
	cudaError_t s = cudaStreamSynchronize(stream);
	cudaHostUnregister((void *)lo);
	return e != cudaSuccess ? e : s;
}

extern "C" int mlp_cuda_upload_weights(struct mlp_cuda *ctx, const struct mlp_net *host,
				       size_t staging_bytes, char *err, size_t errlen)
{
	int rc = -EIO;
	struct stage s = {};
	struct staging st = { &stage_ops, &s, staging_bytes, 0 };
	if (!ctx || !host || host->n_layers != ctx->net.n_layers) {
		snprintf(err, errlen, "upload: not the network of this context");
		return -EINVAL;
	}
	for (int l = 0; l < host->n_layers; l++)
		if (host->layers[l].in != ctx->net.layers[l].in ||
		    host->layers[l].out != ctx->net.layers[l].out) {
			snprintf(err, errlen, "upload: layer %d changed shape", l);
			return -EINVAL;
		}
	if (ctx->resident)
		return 0;
	s.stream = ctx->stream;
	if (staging_bytes) {
		for (int i = 0; i < 2; i++) {
			CU_TRY(cudaHostAlloc((void **)&s.buf[i], staging_bytes, cudaHostAllocDefault),
			       "cudaHostAlloc(staging)");
			CU_TRY(cudaEventCreateWithFlags(&s.done[i], cudaEventDisableTiming),
			       "cudaEventCreate");
		}
	}
	for (int l = 0; l < host->n_layers; l++) {
		const struct mlp_layer *L = &host->layers[l];
		size_t wb = (size_t)L->in * L->out * sizeof(float), bb = L->out * sizeof(float);
		CU_TRY(cudaMalloc((void **)&ctx->dw[l], wb), "cudaMalloc(weights)");
		CU_TRY(cudaMalloc((void **)&ctx->db[l], bb), "cudaMalloc(bias)");
		if (staging_bytes) {
			CU_TRY(stage_copy(&st, (char *)ctx->dw[l], (const char *)L->w, wb),
			       "staged copy(weights)");
			CU_TRY(stage_copy(&st, (char *)ctx->db[l], (const char *)L->b, bb),
			       "staged copy(bias)");
		} else {
			CU_TRY(register_copy(ctx->stream, (char *)ctx->dw[l], (const char *)L->w, wb),
			       "registered copy(weights)");
			CU_TRY(cudaMemcpy(ctx->db[l], L->b, bb, cudaMemcpyHostToDevice),
			       "cudaMemcpy(bias)");
		}
		ctx->net.layers[l].w = ctx->dw[l];
		ctx->net.layers[l].b = ctx->db[l];
	}
	CU_TRY(cudaStreamSynchronize(ctx->stream), "cudaStreamSynchronize(upload)");
	ctx->resident = 1;
	rc = 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (s.done[i])
			cudaEventDestroy(s.done[i]);
		if (s.buf[i])
			cudaFreeHost(s.buf[i]);
	}
	if (rc) /* leave nothing half uploaded: forward passes see -EIO */
		mlp_cuda_release_weights(ctx);
	return rc;
}

extern "C" int mlp_cuda_forward(struct mlp_cuda *ctx, const float *x, int batch, float *y)
{
	if (!ctx || batch < 1 || batch > ctx->max_batch)
		return -EINVAL;
	if (!ctx->resident)
		return -EIO;
	const struct mlp_net *net = &ctx->net;
	size_t half = (size_t)batch * ctx->width;
	const float one = 1.0f, zero = 0.0f;
	if (cudaMemcpyAsync(ctx->dx, x, (size_t)batch * net->layers[0].in * sizeof(float),
			    cudaMemcpyHostToDevice, ctx->stream) != cudaSuccess)
		return -EIO;
	const float *in = ctx->dx;
	float *outp = NULL;
	for (int l = 0; l < net->n_layers; l++) {
		const struct mlp_layer *L = &net->layers[l];
		outp = ctx->dbuf + (l & 1) * half;
		/* Column-major view: Y^T[out x batch] = W[in x out]^T . X^T[in x batch] */
		if (cublas.sgemm(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, L->out, batch, L->in, &one,
				L->w, L->in, in, L->in, &zero, outp, L->out) != CUBLAS_STATUS_SUCCESS)
			return -EIO;
		size_t n = (size_t)batch * L->out;
		int blocks = (int)((n + 255) / 256);
		if (blocks > 65535)
			blocks = 65535;
		if (l < net->n_layers - 1)
			bias_relu_kernel<<<blocks, 256, 0, ctx->stream>>>(outp, L->b, batch, L->out);
		else if (net->output == MLP_OUT_SOFTMAX)
			bias_softmax_kernel<<<batch, 256, 0, ctx->stream>>>(outp, L->b, L->out);
		else
			bias_kernel<<<blocks, 256, 0, ctx->stream>>>(outp, L->b, batch, L->out);
		in = outp;
	}
	int out_w = net->layers[net->n_layers - 1].out;
	if (cudaMemcpyAsync(y, outp, (size_t)batch * out_w * sizeof(float),
			    cudaMemcpyDeviceToHost, ctx->stream) != cudaSuccess)
		return -EIO;
	if (cudaStreamSynchronize(ctx->stream) != cudaSuccess)
		return -EIO;
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

extern "C" const char *mlp_cuda_device_name(const struct mlp_cuda *ctx)
{
	return ctx ? ctx->name : "";
}
