/*
 * mlp: forward pass of a dense network (GEMM + bias + ReLU per hidden layer,
 * GEMM + bias + softmax, or + nothing (identity), at the output) in three
 * implementations:
 *
 *   mlp_ref_forward   plain loops; the reference the others are tested against
 *   mlp_blas_forward  one cblas_sgemm per layer for the whole batch (OpenBLAS)
 *   mlp_cuda_*        cuBLAS SGEMM + fused bias/activation and softmax kernels;
 *                     present only when the build found nvcc (HAVE_CUDA)
 *
 * Layout: everything row-major float32. A layer's weight is [out][in] (the
 * safetensors convention "layers.N.weight"), its bias [out]; inputs are
 * [batch][in0], outputs [batch][out_last].
 *
 * Ownership: struct mlp_net only points at weights owned by the caller (for
 * the predict handler, pages of a read-only mapping); the implementations
 * never write to them and never free them.
 */
#ifndef THAW_KERNELS_MLP_H
#define THAW_KERNELS_MLP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLP_MAX_LAYERS 64

struct mlp_layer {
	int in, out;
	const float *w; /* [out][in] */
	const float *b; /* [out] */
};

enum mlp_output { MLP_OUT_SOFTMAX = 0, MLP_OUT_IDENTITY };

struct mlp_net {
	int n_layers;
	struct mlp_layer layers[MLP_MAX_LAYERS];
	enum mlp_output output; /* the last layer's activation; softmax when zeroed */
};

/* Widest layer output, i.e. the row width of a scratch buffer. */
int mlp_max_width(const struct mlp_net *net);
/* Floats of scratch mlp_ref_forward/mlp_blas_forward need for `batch` rows:
 * two ping-pong buffers of batch x mlp_max_width(). */
size_t mlp_scratch_floats(const struct mlp_net *net, int batch);
/* Multiply-add count of one forward pass (for GFLOP/s: 2 * this). */
double mlp_macs(const struct mlp_net *net, int batch);

/* Forward passes. x: [batch][in0]; y: [batch][out_last]; scratch: at least
 * mlp_scratch_floats(net, batch) floats. x and y may not overlap scratch.
 * Return 0 or -EINVAL (bad net or batch). */
int mlp_ref_forward(const struct mlp_net *net, const float *x, int batch,
		    float *y, float *scratch);
int mlp_blas_forward(const struct mlp_net *net, const float *x, int batch,
		     float *y, float *scratch);

/* Internal: 1 when the layers chain (in == previous out) and batch >= 1. */
int mlp__net_valid(const struct mlp_net *net, int batch);

/* In-place activations shared by the CPU paths. */
void mlp_bias_relu(float *y, const float *b, int rows, int cols);
void mlp_softmax_rows(float *y, int rows, int cols);

/* --- CUDA (only linked when HAVE_CUDA) ----------------------------------- */

struct mlp_cuda;
/* Number of usable CUDA devices; 0 when there is no driver or no GPU. */
int mlp_cuda_device_count(void);
/* Copies the weights to device 0 and allocates activations for max_batch
 * rows. On failure *out is untouched and a message is left in err.
 * Returns 0, -ENODEV, -ENOMEM or -EIO. The context is owned by the caller,
 * freed with mlp_cuda_free(); it is not thread-safe (one stream). */
int mlp_cuda_new(const struct mlp_net *net, int max_batch, struct mlp_cuda **out,
		 char *err, size_t errlen);
/* Runs batch <= max_batch rows: host x in, host y out. 0, -EINVAL or -EIO. */
int mlp_cuda_forward(struct mlp_cuda *ctx, const float *x, int batch, float *y);
void mlp_cuda_free(struct mlp_cuda *ctx);
/* Name of device 0 ("NVIDIA H100 ..."), or "" without a context. */
const char *mlp_cuda_device_name(const struct mlp_cuda *ctx);

/* Weights kept out of a checkpoint (the predict handler's
 * PREDICT_GPU_WEIGHTS=reload). mlp_cuda_release_weights frees the device
 * copies of the weights and biases; the context, stream, cuBLAS handle and
 * activation buffers stay, so a checkpoint of the process parks only those.
 * mlp_cuda_upload_weights copies host's weights (the same shapes as at
 * mlp_cuda_new, e.g. pages of the file mapping, served from the page cache
 * after a restore) to the device again:
 *   staging_bytes > 0  through two pinned buffers of that size, double
 *                      buffered (memcpy into one while the other is DMAed);
 *   staging_bytes == 0 by registering each tensor's host pages with the
 *                      driver (cudaHostRegister, read-only) and copying
 *                      straight from them.
 * Forward passes need the weights resident (-EIO otherwise). Both return 0
 * (also when there is nothing to do) or -ENOMEM / -EIO / -EINVAL with a
 * message in err (release: none). Not thread-safe with forward passes. */
int mlp_cuda_release_weights(struct mlp_cuda *ctx);
int mlp_cuda_upload_weights(struct mlp_cuda *ctx, const struct mlp_net *host,
			    size_t staging_bytes, char *err, size_t errlen);
int mlp_cuda_weights_resident(const struct mlp_cuda *ctx);

#ifdef __cplusplus
}
#endif
#endif
