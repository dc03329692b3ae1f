/*
 * predict: a TensorFlow Serving REST-compatible model handler.
 *
 *   POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict (or POST /)
 *   GET  /v1/models/{name}[/versions/{v}]            model status
 *   GET  /v1/models/{name}[/versions/{v}]/metadata   signature metadata
 *   POST ...:classify, ...:regress                   400, not supported
 *
 * Configuration (fc.yaml environmentVariables, read with thaw_config):
 *   MODEL              mlp (the one kind: a dense network from a file)
 *   WEIGHTS            safetensors file, relative to the function dir;
 *                      TF Serving's half_plus_two is one such file
 *                      (examples/half_plus_two/half_plus_two.safetensors)
 *   PREDICT_DEVICE     cpu | gpu | auto (default auto: GPU if one is present)
 *   PREDICT_MAX_BATCH  rows per GEMM and size of the scratch (default 256);
 *                      longer requests run in chunks of this many rows
 *   PREDICT_GPU_WEIGHTS  keep (default) | reload: with reload a GPU model's
 *                      device weights are freed in before_checkpoint, so the
 *                      snapshot parks no copy of them, and uploaded again
 *                      from the mapped file (the page cache) in on_restore
 *   PREDICT_STAGING_MIB  reload: pinned staging per buffer, two of them
 *                      (default 64, 1..1024); 0 registers the mapped pages
 *                      with the driver and copies straight from them
 *
 * The model serves version "1" only. Errors are {"error": "..."}: 400 for
 * bad requests, 404 for unknown routes or versions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers/predict/model.h"
#include "handlers/predict/tfrest.h"
#include "thaw/handler.h"

#define DEFAULT_MAX_BATCH 256

#define DEFAULT_STAGING_MIB 64

static struct {
	struct predict_model model;
	struct thaw_map map; /* the weights; mapped until shutdown */
	int mapped;
	int reload;          /* PREDICT_GPU_WEIGHTS=reload */
	char model_name[32];
} g;

/* PREDICT_GPU_WEIGHTS and PREDICT_STAGING_MIB; 0 or -EINVAL (error set). */
static int parse_weights_mode(size_t *staging_bytes)
{
	const char *mode = thaw_config("PREDICT_GPU_WEIGHTS");
	const char *mib_s = thaw_config("PREDICT_STAGING_MIB");
	char *end = NULL;
	long mib = DEFAULT_STAGING_MIB;

	if (!mode || !*mode || !strcmp(mode, "keep"))
		g.reload = 0;
	else if (!strcmp(mode, "reload"))
		g.reload = 1;
	else {
		thaw_set_error("PREDICT_GPU_WEIGHTS=%s: expected keep or reload", mode);
		return -EINVAL;
	}
	if (mib_s && *mib_s) {
		mib = strtol(mib_s, &end, 10);
		if (*end || mib < 0 || mib > 1024) {
			thaw_set_error("PREDICT_STAGING_MIB=%s: expected 0..1024", mib_s);
			return -EINVAL;
		}
	}
	*staging_bytes = (size_t)mib << 20;
	return 0;
}

static int init_mlp(void)
{
	const char *weights = thaw_config("WEIGHTS");
	const char *batch_s = thaw_config("PREDICT_MAX_BATCH");
	const char *device = thaw_config("PREDICT_DEVICE");
	char err[256] = "";
	int max_batch = batch_s ? atoi(batch_s) : DEFAULT_MAX_BATCH;
	size_t staging = 0;
	int rc;

	if (!weights || !*weights) {
		thaw_set_error("MODEL=mlp needs WEIGHTS=<safetensors file>");
		return -EINVAL;
	}
	if (max_batch < 1 || max_batch > 65536) {
		thaw_set_error("PREDICT_MAX_BATCH=%s: expected 1..65536", batch_s);
		return -EINVAL;
	}
	rc = parse_weights_mode(&staging);
	if (rc < 0)
		return rc;
	rc = thaw_map_file(weights, &g.map);
	if (rc < 0) {
		thaw_set_error("WEIGHTS=%s: cannot map: %s", weights, strerror(-rc));
		return rc;
	}
	g.mapped = 1;
	rc = predict_model_mlp(&g.model, g.map.data, g.map.len, device, max_batch, err,
			       sizeof(err));
	if (rc < 0) {
		thaw_set_error("WEIGHTS=%s: %s", weights, err);
		thaw_unmap(&g.map);
		g.mapped = 0;
		return rc;
	}
	g.model.staging_bytes = staging;
	if (err[0])
		thaw_log(THAW_LOG_WARN, "predict: GPU unusable (%s), using the CPU", err);
	thaw_log(THAW_LOG_INFO, "predict: mlp %d layers, %d -> %d, max batch %d, on %s",
		 g.model.net.n_layers, g.model.in_width, g.model.out_width, max_batch,
		 predict_device_name(&g.model));
	return 0;
}

/* The tensor hook's metadata: x -> y, FP32; half_plus_two is elementwise,
 * any shape (ndim -1), the mlp [-1, in] -> [-1, out]. */
static int declare_model(void)
{
	/* one number in, one out (half_plus_two): any shape, elementwise */
	int scalar = g.model.in_width == 1 && g.model.out_width == 1;
	struct thaw_tensor_spec x = { .name = "x", .dtype = THAW_FP32, .ndim = scalar ? -1 : 2,
				      .shape = { -1, g.model.in_width } };
	struct thaw_tensor_spec y = { .name = "y", .dtype = THAW_FP32, .ndim = scalar ? -1 : 2,
				      .shape = { -1, g.model.out_width } };
	struct thaw_model m = { .platform = scalar ? "thaw_half_plus_two" : "thaw_mlp",
				.version = "1", .inputs = &x, .n_inputs = 1,
				.outputs = &y, .n_outputs = 1 };
	int rc = thaw_declare_model(&m);
	if (rc < 0)
		thaw_set_error("predict: cannot declare the model: %d", rc);
	return rc;
}

static int predict_init(void)
{
	const char *model = thaw_config("MODEL");

	memset(&g, 0, sizeof(g));
	if (!model || !*model) {
		thaw_set_error("MODEL is not set (mlp)");
		return -EINVAL;
	}
	snprintf(g.model_name, sizeof(g.model_name), "%s", model);
	if (strcmp(model, "mlp") == 0) {
		int rc = init_mlp();
		return rc < 0 ? rc : declare_model();
	}
	thaw_set_error("MODEL=%s: expected mlp (half_plus_two is a model file: "
		       "examples/half_plus_two)", model);
	return -EINVAL;
}

static void predict_shutdown(void)
{
	predict_model_fini(&g.model);
	if (g.mapped)
		thaw_unmap(&g.map);
	g.mapped = 0;
}

static int respond_buf(struct thaw_response *res, struct tfrest_buf *b)
{
	int rc;
	if (b->oom)
		rc = thaw_respond_error(res, 500, "out of memory writing the response");
	else
		rc = thaw_respond(res, 200, "application/json", b->p, b->len);
	tfrest_buf_free(b);
	return rc;
}

/* TF Serving shape; the only version is "1". */
static int do_status(struct thaw_response *res)
{
	static const char body[] =
		"{\"model_version_status\":[{\"version\":\"1\",\"state\":\"AVAILABLE\","
		"\"status\":{\"error_code\":\"OK\",\"error_message\":\"\"}}]}";
	return thaw_respond(res, 200, "application/json", body, sizeof(body) - 1);
}

static void put_tensor_info(struct tfrest_buf *b, const char *name, int width)
{
	char tmp[256];
	snprintf(tmp, sizeof(tmp),
		 "\"%s\":{\"dtype\":\"DT_FLOAT\",\"tensor_shape\":{\"dim\":[{\"size\":\"-1\","
		 "\"name\":\"\"}",
		 name);
	tfrest_buf_puts(b, tmp);
	if (width > 0) {
		snprintf(tmp, sizeof(tmp), ",{\"size\":\"%d\",\"name\":\"\"}", width);
		tfrest_buf_puts(b, tmp);
	}
	snprintf(tmp, sizeof(tmp), "],\"unknown_rank\":false},\"name\":\"%s:0\"}", name);
	tfrest_buf_puts(b, tmp);
}

static int do_metadata(struct thaw_response *res, const struct tfrest_route *r)
{
	struct tfrest_buf b = { 0 };
	char tmp[512];

	snprintf(tmp, sizeof(tmp),
		 "{\"model_spec\":{\"name\":\"%s\",\"signature_name\":\"\",\"version\":\"1\"},"
		 "\"metadata\":{\"signature_def\":{\"signature_def\":{\"serving_default\":"
		 "{\"inputs\":{",
		 r->name);
	tfrest_buf_puts(&b, tmp);
	put_tensor_info(&b, "x", g.model.in_width);
	tfrest_buf_puts(&b, "},\"outputs\":{");
	put_tensor_info(&b, "y", g.model.out_width);
	tfrest_buf_puts(&b, "},\"method_name\":\"tensorflow/serving/predict\"}}}}}");
	return respond_buf(res, &b);
}

static int do_predict(const struct thaw_request *req, struct thaw_response *res)
{
	struct tfrest_tensor t;
	enum tfrest_format fmt;
	char err[256];
	float *y = NULL;
	int64_t oshape[TFREST_MAX_DIMS];
	int ondim, rc;
	size_t rows, ny;

	if (tfrest_parse_predict(req->body, req->body_len, &fmt, &t, err, sizeof(err)) < 0)
		return thaw_respond_error(res, 400, "%s", err);
	if (t.ndim == 1 && g.model.in_width == 1) {
		/* a one-input model takes a batch of numbers (shape [-1]), as TF
		 * Serving's half_plus_two does; a one-output one answers so too */
		rows = t.n;
		ondim = g.model.out_width == 1 ? 1 : 2;
	} else if (t.ndim == 2 && t.shape[1] == g.model.in_width) {
		rows = (size_t)t.shape[0];
		ondim = 2;
	} else {
		rc = thaw_respond_error(
			res, 400, "input must be a batch of lists of %d numbers (shape [-1, %d]), got %s",
			g.model.in_width, g.model.in_width,
			t.ndim == 2 ? "rows of another width" : "another shape");
		goto free_t;
	}
	ny = rows * (size_t)g.model.out_width;
	oshape[0] = (int64_t)rows;
	oshape[1] = g.model.out_width;
	if (req->deadline_ms > 0 && thaw_time_left_ms(req) <= 0) {
		rc = thaw_respond_error(res, 504, "deadline passed before inference");
		goto free_t;
	}
	y = malloc((ny ? ny : 1) * sizeof(float));
	if (!y) {
		rc = thaw_respond_error(res, 500, "out of memory for %zu outputs", ny);
		goto free_t;
	}
	rc = predict_model_run(&g.model, t.data, rows, y);
	if (rc < 0) {
		thaw_log(THAW_LOG_ERROR, "predict: inference failed: %s", strerror(-rc));
		rc = thaw_respond_error(res, 500, "inference failed on the %s",
					predict_device_name(&g.model));
		goto free_y;
	}
	struct tfrest_buf b = { 0 };
	tfrest_write_response(&b, fmt, y, ondim, oshape);
	rc = respond_buf(res, &b);
free_y:
	free(y);
free_t:
	tfrest_tensor_free(&t);
	return rc;
}

static int predict_invoke(const struct thaw_request *req, struct thaw_response *res)
{
	struct tfrest_route r;

	if (tfrest_route_parse(req->method, req->path, &r) < 0)
		return thaw_respond_error(res, 404, "Malformed request: %s %s", req->method,
					  req->path);
	if (r.version[0] && strcmp(r.version, "1") != 0)
		return thaw_respond_error(res, 404,
					  "Servable not found for request: Specific(%s, %s)",
					  r.name, r.version);
	if (r.label[0])
		return thaw_respond_error(res, 404, "Unrecognized servable version label: %s",
					  r.label);
	switch (r.op) {
	case TFREST_STATUS:
		return do_status(res);
	case TFREST_METADATA:
		return do_metadata(res, &r);
	case TFREST_PREDICT:
		return do_predict(req, res);
	case TFREST_CLASSIFY:
	case TFREST_REGRESS:
		return thaw_respond_error(res, 400, "%s is not supported by model %s (%s); use :predict",
					  r.op == TFREST_CLASSIFY ? "classify" : "regress",
					  r.name, g.model_name);
	}
	return thaw_respond_error(res, 404, "Malformed request");
}

/* The tensor hook: x (FP32, checked against the declared shape by the
 * host) -> y, through the same model run as :predict. */
static int predict_infer(const struct thaw_infer_request *ir, struct thaw_outputs *out)
{
	const struct thaw_tensor *x = NULL;
	int64_t oshape[THAW_MAX_DIMS];
	size_t rows, ny;

	for (size_t i = 0; i < ir->n_inputs; i++)
		if (!strcmp(ir->inputs[i].name, "x"))
			x = &ir->inputs[i];
	if (!x || x->dtype != THAW_FP32)
		return thaw_infer_error(out, 400, "input 'x' (FP32) is missing");
	memcpy(oshape, x->shape, sizeof(oshape));
	if (g.model.in_width != 1 || g.model.out_width != 1) {
		if (x->ndim != 2 || x->shape[1] != g.model.in_width)
			return thaw_infer_error(out, 400, "input 'x': shape must be [-1, %d]",
						g.model.in_width);
		rows = (size_t)x->shape[0];
		ny = rows * (size_t)g.model.out_width;
		oshape[1] = g.model.out_width;
	} else
		rows = ny = x->len / sizeof(float);
	if (ir->req && ir->req->deadline_ms > 0 && thaw_time_left_ms(ir->req) <= 0)
		return thaw_infer_error(out, 504, "deadline passed before inference");
	float *y = thaw_output_new(out, "y", THAW_FP32, x->ndim, oshape, ny * sizeof(float));
	if (!y)
		return thaw_infer_error(out, 500, "out of memory for %zu outputs", ny);
	if (rows && predict_model_run(&g.model, x->data, rows, y) < 0)
		return thaw_infer_error(out, 500, "inference failed on the %s",
					predict_device_name(&g.model));
	return 0;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* PREDICT_GPU_WEIGHTS=reload: the snapshot keeps no device copy of the
 * weights (the checkpoint would park them in host memory, CRIU would copy
 * them into the image and back on every restore). */
static int predict_before_checkpoint(void)
{
	double mib = 0, t0 = now_ms();
	if (!g.reload)
		return 0;
	int rc = predict_model_release_device(&g.model, &mib);
	if (rc < 0) {
		thaw_set_error("predict: releasing the device weights failed (%d)", rc);
		return rc;
	}
	if (mib > 0)
		thaw_log(THAW_LOG_INFO, "predict: %.1f MiB of device weights released in %.1f ms",
			 mib, now_ms() - t0);
	return 0;
}

/* Puts them back before the first request (tests/bench/gpu_restore.py
 * reads the "uploaded again" line). */
static int predict_on_restore(void)
{
	char err[256] = "";
	double mib = 0, t0 = now_ms();
	if (!g.reload)
		return 0;
	int rc = predict_model_upload_device(&g.model, &mib, err, sizeof(err));
	if (rc < 0) {
		thaw_set_error("predict: uploading the weights again failed: %s", err);
		return rc;
	}
	if (mib > 0)
		thaw_log(THAW_LOG_INFO,
			 "predict: %.1f MiB of weights uploaded again in %.1f ms (staging %zu MiB)",
			 mib, now_ms() - t0, g.model.staging_bytes >> 20);
	return 0;
}

THAW_HANDLER(.name = "predict", .init = predict_init, .invoke = predict_invoke,
	     .on_restore = predict_on_restore, .shutdown = predict_shutdown,
	     .before_checkpoint = predict_before_checkpoint, .infer = predict_infer);
