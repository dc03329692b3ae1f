/* model: see model.h. */
#include "handlers/predict/model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* layers.0 .. layers.N-1, contiguous, chained, F32. */
static int build_net(struct predict_model *m, char *err, size_t errlen)
{
	struct mlp_net *net = &m->net;
	char name[64];
	size_t used = 0;

	for (int l = 0;; l++) {
		const struct safetensors_tensor *w, *b;
		snprintf(name, sizeof(name), "layers.%d.weight", l);
		w = safetensors_find(&m->st, name);
		snprintf(name, sizeof(name), "layers.%d.bias", l);
		b = safetensors_find(&m->st, name);
		if (!w && !b)
			break;
		if (!w || !b)
			return fail(err, errlen, -EINVAL, "layer %d: needs both layers.%d.weight "
				    "and layers.%d.bias", l, l, l);
		if (l == MLP_MAX_LAYERS)
			return fail(err, errlen, -EINVAL, "more than %d layers", MLP_MAX_LAYERS);
		if (w->dtype != SAFETENSORS_F32 || b->dtype != SAFETENSORS_F32)
			return fail(err, errlen, -EINVAL, "layer %d: dtype %s/%s, only F32 is supported",
				    l, safetensors_dtype_name(w->dtype),
				    safetensors_dtype_name(b->dtype));
		if (w->ndim != 2 || b->ndim != 1 || b->shape[0] != w->shape[0] ||
		    w->shape[0] < 1 || w->shape[1] < 1 || w->shape[0] > (1 << 30) ||
		    w->shape[1] > (1 << 30))
			return fail(err, errlen, -EINVAL,
				    "layer %d: weight must be [out, in] and bias [out]", l);
		if (l > 0 && w->shape[1] != net->layers[l - 1].out)
			return fail(err, errlen, -EINVAL,
				    "layer %d: input width %lld but layer %d gives %d", l,
				    (long long)w->shape[1], l - 1, net->layers[l - 1].out);
		net->layers[l] = (struct mlp_layer){ .in = (int)w->shape[1],
						     .out = (int)w->shape[0],
						     .w = w->data,
						     .b = b->data };
		net->n_layers = l + 1;
		used += 2;
	}
	if (net->n_layers == 0)
		return fail(err, errlen, -EINVAL, "no tensors named layers.0.weight/layers.0.bias");
	if (used != m->st.n)
		return fail(err, errlen, -EINVAL,
			    "%zu tensors are not part of the layers.N chain (a gap in N?)",
			    m->st.n - used);
	const char *output = safetensors_meta(&m->st, "output");
	if (!output || strcmp(output, "softmax") == 0)
		net->output = MLP_OUT_SOFTMAX;
	else if (strcmp(output, "identity") == 0)
		net->output = MLP_OUT_IDENTITY;
	else
		return fail(err, errlen, -EINVAL,
			    "__metadata__ output \"%s\": expected softmax or identity", output);
	m->in_width = net->layers[0].in;
	m->out_width = net->layers[net->n_layers - 1].out;
	return 0;
}

static int pick_device(struct predict_model *m, const char *device, char *err, size_t errlen)
{
	int want_gpu;
	if (!device || !*device || strcmp(device, "auto") == 0)
		want_gpu = -1;
	else if (strcmp(device, "gpu") == 0 || strcmp(device, "cuda") == 0)
		want_gpu = 1;
	else if (strcmp(device, "cpu") == 0)
		want_gpu = 0;
	else
		return fail(err, errlen, -EINVAL, "PREDICT_DEVICE=%s: expected cpu, gpu or auto",
			    device);
	m->device = PREDICT_DEV_CPU;
	if (want_gpu == 0)
		return 0;
#ifdef HAVE_CUDA
	if (mlp_cuda_device_count() > 0) {
		int rc = mlp_cuda_new(&m->net, m->max_batch, &m->cuda, err, errlen);
		if (rc == 0) {
			m->device = PREDICT_DEV_GPU;
			return 0;
		}
		if (want_gpu == 1)
			return rc;
		return 0; /* auto: fall back to the CPU; err says why */
	}
	if (want_gpu == 1)
		return fail(err, errlen, -ENODEV, "PREDICT_DEVICE=gpu but no CUDA device");
#else
	if (want_gpu == 1)
		return fail(err, errlen, -ENODEV, "PREDICT_DEVICE=gpu but built without CUDA");
#endif
	return 0;
}

int predict_model_mlp(struct predict_model *m, const void *data, size_t len,
		      const char *device, int max_batch, char *err, size_t errlen)
{
	int rc;
	float *x = NULL, *y = NULL;

	memset(m, 0, sizeof(*m));
	m->max_batch = max_batch < 1 ? 1 : max_batch;
	rc = safetensors_parse(data, len, &m->st, err, errlen);
	if (rc < 0)
		return rc;
	rc = build_net(m, err, errlen);
	if (rc < 0)
		goto free_st;
	m->scratch = malloc(mlp_scratch_floats(&m->net, m->max_batch) * sizeof(float));
	x = calloc((size_t)m->max_batch * m->in_width, sizeof(float));
	y = malloc((size_t)m->max_batch * m->out_width * sizeof(float));
	if (!m->scratch || !x || !y) {
		rc = fail(err, errlen, -ENOMEM, "out of memory for batch %d", m->max_batch);
		goto free_buf;
	}
	err[0] = '\0';
	rc = pick_device(m, device, err, errlen);
	if (rc < 0)
		goto free_buf;
	pthread_mutex_init(&m->lock, NULL);
	m->lock_ready = 1;
	/* Warm-up: a single row (GEMV) and a two-row pass (GEMM) touch every
	 * weight page and start the BLAS threads or the CUDA context and
	 * cuBLAS kernels, so the snapshot holds them. The scratch is left
	 * untouched beyond those rows: dirty pages would be copied into every
	 * snapshot and every restore (16 MiB, 12-16 ms per restore measured),
	 * while faulting them in on the first big batch costs ~1 ms. */
	rc = predict_model_run(m, x, 1, y);
	if (rc == 0 && m->max_batch > 1)
		rc = predict_model_run(m, x, 2, y);
	if (rc < 0) {
		fail(err, errlen, rc, "warm-up inference failed on the %s", predict_device_name(m));
		predict_model_fini(m);
		goto out;
	}
	goto out;
free_buf:
	free(m->scratch);
	m->scratch = NULL;
free_st:
	safetensors_free(&m->st);
out:
	free(x);
	free(y);
	return rc;
}

static inline double weights_mib(const struct predict_model *m)
{
	double bytes = 0;
	for (int l = 0; l < m->net.n_layers; l++)
		bytes += ((double)m->net.layers[l].in + 1) * m->net.layers[l].out * sizeof(float);
	return bytes / 1048576.0;
}

/* Under m->lock. */
static int upload_locked(struct predict_model *m, double *mib, char *err, size_t errlen)
{
	if (mib)
		*mib = 0;
#ifdef HAVE_CUDA
	if (m->device == PREDICT_DEV_GPU &&
	    !mlp_cuda_weights_resident(m->cuda)) {
		int rc = mlp_cuda_upload_weights(m->cuda, &m->net, m->staging_bytes, err, errlen);
		if (rc == 0 && mib)
			*mib = weights_mib(m);
		return rc;
	}
#endif
	(void)m, (void)err, (void)errlen;
	return 0;
}

int predict_model_upload_device(struct predict_model *m, double *mib, char *err, size_t errlen)
{
	pthread_mutex_lock(&m->lock);
	int rc = upload_locked(m, mib, err, errlen);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int predict_model_release_device(struct predict_model *m, double *mib)
{
	int rc = 0;
	if (mib)
		*mib = 0;
	pthread_mutex_lock(&m->lock);
#ifdef HAVE_CUDA
	if (m->device == PREDICT_DEV_GPU && mlp_cuda_weights_resident(m->cuda)) {
		rc = mlp_cuda_release_weights(m->cuda);
		if (rc == 0 && mib)
			*mib = weights_mib(m);
	}
#endif
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static int run_chunk(struct predict_model *m, const float *x, int rows, float *y)
{
#ifdef HAVE_CUDA
	if (m->device == PREDICT_DEV_GPU) {
		/* released before a checkpoint and not uploaded since (the dump
		 * failed and this instance serves on): take them back */
		if (!mlp_cuda_weights_resident(m->cuda)) {
			char err[256];
			int rc = upload_locked(m, NULL, err, sizeof(err));
			if (rc < 0)
				return rc;
		}
		return mlp_cuda_forward(m->cuda, x, rows, y);
	}
#endif
	return mlp_blas_forward(&m->net, x, rows, y, m->scratch);
}

int predict_model_run(struct predict_model *m, const float *x, size_t batch, float *y)
{
	int rc = 0;
	pthread_mutex_lock(&m->lock);
	for (size_t done = 0; done < batch && rc == 0;) {
		size_t rows = batch - done;
		if (rows > (size_t)m->max_batch)
			rows = (size_t)m->max_batch;
		rc = run_chunk(m, x + done * m->in_width, (int)rows, y + done * m->out_width);
		done += rows;
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void predict_model_fini(struct predict_model *m)
{
#ifdef HAVE_CUDA
	mlp_cuda_free(m->cuda);
#endif
	m->cuda = NULL;
	free(m->scratch);
	safetensors_free(&m->st);
	if (m->lock_ready)
		pthread_mutex_destroy(&m->lock);
	memset(m, 0, sizeof(*m));
}

const char *predict_device_name(const struct predict_model *m)
{
	return m->device == PREDICT_DEV_GPU ? "gpu" : "cpu (OpenBLAS)";
}
