/*
 * model: the servable of the predict handler, independent of HTTP: a dense
 * network from a safetensors file: layers.N.weight [out, in] and
 * layers.N.bias [out], F32, ReLU between layers, softmax output unless the
 * file's __metadata__ says "output": "identity"; run with OpenBLAS or CUDA.
 * TF Serving's half_plus_two is such a file (examples/half_plus_two: one
 * layer, weight 0.5, bias 2, identity output), not a special case.
 *
 * A model is set up once (init, before the snapshot) and then used by many
 * threads: predict_model_run() serialises on an internal lock because the
 * scratch buffers (allocated up front for max_batch rows) and the CUDA
 * stream are shared. Larger requests run in chunks of max_batch rows.
 */
#ifndef THAW_PREDICT_MODEL_H
#define THAW_PREDICT_MODEL_H

#include <pthread.h>
#include <stddef.h>

#include "kernels/mlp.h"
#include "handlers/predict/safetensors.h"

enum predict_device { PREDICT_DEV_CPU, PREDICT_DEV_GPU };

struct predict_model {
	enum predict_device device;
	int in_width, out_width;
	int max_batch;
	struct safetensors st;   /* tensors point into the caller's mapping */
	struct mlp_net net;
	float *scratch;          /* mlp_scratch_floats(net, max_batch) */
	struct mlp_cuda *cuda;   /* device == GPU */
	size_t staging_bytes;    /* re-uploads: mlp_cuda_upload_weights */
	pthread_mutex_t lock;
	int lock_ready;
};

/* Builds an mlp over the safetensors image data[0..len) (kept mapped by the
 * caller for the model's lifetime). device is "cpu", "gpu" (fail without
 * one) or "auto"/NULL (GPU when cudaGetDeviceCount > 0). Allocates scratch
 * for max_batch rows and runs a warm-up pass. Returns 0, or -EINVAL /
 * -ENOMEM / -ENODEV with a message in err; on failure nothing is left
 * allocated. */
int predict_model_mlp(struct predict_model *m, const void *data, size_t len,
		      const char *device, int max_batch, char *err, size_t errlen);

/* x [batch][in_width] -> y [batch][out_width]. Thread-safe. Returns 0 or
 * -EIO/-EINVAL. */
int predict_model_run(struct predict_model *m, const float *x, size_t batch, float *y);

void predict_model_fini(struct predict_model *m);

/* Device weights kept out of a checkpoint (predict.c, PREDICT_GPU_WEIGHTS=
 * reload). release frees the device copy of the weights of a GPU model
 * (the mapping of the file stays: it is the page cache, not the snapshot);
 * upload copies them to the device again through m->staging_bytes of
 * pinned staging (0: registered host pages), and predict_model_run does
 * the same on first use when nobody did. Both are no-ops on the CPU and
 * return 0, or -errno with a message in err (release: none). *mib gets the
 * MiB moved (may be NULL). Thread-safe (the model's lock). */
int predict_model_release_device(struct predict_model *m, double *mib);
int predict_model_upload_device(struct predict_model *m, double *mib, char *err, size_t errlen);
const char *predict_device_name(const struct predict_model *m);

#endif
