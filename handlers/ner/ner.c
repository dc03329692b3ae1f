/*
 * ner: named entities from CRF emission logits, as BERT-BiLSTM-CRF serving
 * does it. A model server (TF Serving) gives per-token emission scores; this
 * handler decodes them with the CRF transition matrix (Viterbi, CPU or GPU)
 * and turns BIO tags into entities. See docs/handlers-ner.md.
 *
 * Environment (fc.yaml environmentVariables):
 *   TAGS=tags.txt               one tag per line
 *   TRANSITIONS=transitions.json  or a .bin of (K+1)^2 float32
 *   NER_DEVICE=auto|cpu|gpu     auto: the GPU when one is present and the
 *                               batch is big enough to pay for the copies
 *
 * init() loads the model and, unless NER_DEVICE=cpu, creates the CUDA
 * context and runs one decode so that a snapshot holds a warm GPU path.
 * After init() the model is read-only; invoke() may run on many threads (the
 * GPU context serializes its own calls).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thaw/handler.h"
#include "kernels/viterbi.h"
#include "handlers/ner/entities.h"
#include "handlers/ner/model.h"
#include "handlers/ner/request.h"

/* In auto mode, batches with fewer (steps x (K+1)^2) cells than this are
 * decoded on the CPU: below it the copies and launch cost more than they
 * save. */
#define NER_GPU_MIN_WORK (1u << 20)

enum ner_device { NER_DEVICE_AUTO, NER_DEVICE_CPU, NER_DEVICE_GPU };

/* Set by init(), read-only afterwards. */
static struct ner_model model;
static struct viterbi_gpu *gpu; /* NULL: CPU only */
static enum ner_device device;

static const char *config_or(const char *key, const char *fallback)
{
	const char *v = thaw_config(key);
	return v && *v ? v : fallback;
}

/* Creates the GPU context and decodes one tiny batch on it. */
static int gpu_start(void)
{
	const float logits[1] = { 0.0f };
	const int32_t lengths[1] = { 1 };
	int32_t path[1];
	int ret;

	if (viterbi_gpu_count() <= 0)
		return -ENODEV;
	ret = viterbi_gpu_new(&gpu);
	if (ret)
		return ret;
	/* Warm-up on the real matrix: uploads it and loads the kernel. */
	struct viterbi_problem p = { .logits = logits, .lengths = lengths, .trans = model.trans,
				     .batch = 1, .steps = 1, .num_tags = model.num_tags };
	float *zeros = NULL;
	if (model.num_tags > 1) {
		zeros = calloc(model.num_tags, sizeof(float));
		if (!zeros) {
			ret = -ENOMEM;
			goto fail_free_gpu;
		}
		p.logits = zeros;
	}
	ret = viterbi_gpu_decode(gpu, &p, path);
	free(zeros);
	if (ret)
		goto fail_free_gpu;
	return 0;
fail_free_gpu:
	viterbi_gpu_free(gpu);
	gpu = NULL;
	return ret;
}

static int ner_init(void)
{
	const char *tags = config_or("TAGS", "tags.txt");
	const char *trans = config_or("TRANSITIONS", "transitions.json");
	const char *dev = config_or("NER_DEVICE", "auto");
	char err[256];
	int ret;

	if (strcmp(dev, "auto") == 0) {
		device = NER_DEVICE_AUTO;
	} else if (strcmp(dev, "cpu") == 0) {
		device = NER_DEVICE_CPU;
	} else if (strcmp(dev, "gpu") == 0) {
		device = NER_DEVICE_GPU;
	} else {
		thaw_set_error("NER_DEVICE=%s: want auto, cpu or gpu", dev);
		return -EINVAL;
	}
	ret = ner_model_load(&model, tags, trans, err, sizeof(err));
	if (ret) {
		thaw_set_error("ner model: %s", err);
		return ret;
	}
	if (device != NER_DEVICE_CPU) {
		ret = gpu_start();
		if (ret && device == NER_DEVICE_GPU) {
			thaw_set_error("NER_DEVICE=gpu but no usable GPU: %s", strerror(-ret));
			ner_model_fini(&model);
			return ret;
		}
		if (ret)
			thaw_log(THAW_LOG_INFO, "ner: no GPU (%s), decoding on the CPU",
				 strerror(-ret));
	}
	thaw_log(THAW_LOG_INFO, "ner: %u tags, %u entity types, device %s", model.num_tags,
		 model.num_types, gpu ? "gpu" : "cpu");
	/* the tensor hook: what the seed's TF Serving model returns */
	struct thaw_tensor_spec in[] = {
		{ "logits", THAW_FP32, 3, { -1, -1, model.num_tags } },
		{ "lengths", THAW_INT32, 1, { -1 } },
		/* the CRF matrix, as the seed's model returns it beside the
		 * logits; optional: without it, the function's TRANSITIONS */
		{ "trans", THAW_FP32, 2, { model.num_tags + 1, model.num_tags + 1 } },
	};
	struct thaw_tensor_spec outs[] = {
		{ "tags", THAW_INT32, 2, { -1, -1 } },
		{ "entities", THAW_BYTES, 1, { -1 } },
	};
	struct thaw_model m = { .platform = "thaw_ner_crf", .version = "1", .inputs = in,
				.n_inputs = 3, .outputs = outs, .n_outputs = 2 };
	ret = thaw_declare_model(&m);
	if (!ret)
		ret = thaw_model_input_optional("trans");
	if (ret) {
		thaw_set_error("ner: cannot declare the model: %d", ret);
		ner_model_fini(&model);
	}
	return ret;
}

/* Decodes r with the CRF matrix trans ([K+1][K+1]) into paths; returns the
 * device used ("cpu"/"gpu") or NULL. */
static const char *decode(const struct ner_request *r, const float *trans, int32_t *paths)
{
	const struct viterbi_problem p = { .logits = r->logits,
					   .lengths = r->lengths,
					   .trans = trans,
					   .batch = r->batch,
					   .steps = r->steps,
					   .num_tags = r->num_tags };
	const uint64_t K1 = r->num_tags + 1;
	const uint64_t work = (uint64_t)r->batch * r->steps * K1 * K1;

	if (gpu && (device == NER_DEVICE_GPU || work >= NER_GPU_MIN_WORK)) {
		int ret = viterbi_gpu_decode(gpu, &p, paths);
		if (ret == 0)
			return "gpu";
		thaw_log(THAW_LOG_WARN, "ner: GPU decode failed (%s), using the CPU",
			 strerror(-ret));
	}
	return viterbi_cpu_decode(&p, paths) == 0 ? "cpu" : NULL;
}

static int ner_invoke(const struct thaw_request *req, struct thaw_response *res)
{
	struct ner_request r;
	char err[256];
	int32_t *paths = NULL;
	char *body = NULL;
	const char *used;
	int ret;

	if (strcmp(req->method, "POST") != 0) {
		thaw_response_header(res, "allow", "POST");
		return thaw_respond_error(res, 405, "use POST with a JSON body");
	}
	if (strcmp(req->path, "/") != 0)
		return thaw_respond_error(res, 404, "no such path: %s", req->path);
	ret = ner_request_parse(req->body, req->body_len, model.num_tags, &r, err, sizeof(err));
	if (ret == -EINVAL)
		return thaw_respond_error(res, 400, "%s", err);
	if (ret)
		return thaw_respond_error(res, 500, "%s", err);
	paths = malloc(((size_t)r.batch * r.steps + 1) * sizeof(*paths));
	if (!paths) {
		ret = thaw_respond_error(res, 500, "out of memory");
		goto out;
	}
	used = decode(&r, model.trans, paths);
	if (!used) {
		ret = thaw_respond_error(res, 500, "decode failed");
		goto out;
	}
	body = ner_response_json(&model, &r, paths);
	if (!body) {
		ret = thaw_respond_error(res, 500, "out of memory");
		goto out;
	}
	thaw_response_header(res, "x-ner-device", used);
	ret = thaw_respond(res, 200, "application/json", body, strlen(body));
out:
	free(body);
	free(paths);
	ner_request_fini(&r);
	return ret;
}

/* Tensors in: logits [batch, steps, K], lengths [batch] and, optionally,
 * trans [K+1, K+1], as TF Serving returns them for the BERT-BiLSTM-CRF
 * model; out: the decoded tags [batch, steps] (-1 past each length) and per
 * sequence its entities as a JSON list ({"start", "end", "type"}, token
 * indices) in BYTES. The CRF matrix is trans when given, else the
 * function's (TRANSITIONS). */
static int ner_infer(const struct thaw_infer_request *ir, struct thaw_outputs *out)
{
	const struct thaw_tensor *lg = NULL, *ln = NULL, *tr = NULL;
	for (size_t i = 0; i < ir->n_inputs; i++) {
		if (!strcmp(ir->inputs[i].name, "logits"))
			lg = &ir->inputs[i];
		else if (!strcmp(ir->inputs[i].name, "lengths"))
			ln = &ir->inputs[i];
		else if (!strcmp(ir->inputs[i].name, "trans"))
			tr = &ir->inputs[i];
	}
	const float *trans = model.trans;
	if (tr) { /* shape and datatype checked by the host against the spec */
		const float *t = tr->data;
		for (size_t i = 0; i < (size_t)(model.num_tags + 1) * (model.num_tags + 1); i++)
			if (!isfinite(t[i]))
				return thaw_infer_error(out, 400, "input 'trans': value %zu is not finite", i);
		trans = t;
	}
	if (!lg || !ln || lg->ndim != 3 || ln->ndim != 1)
		return thaw_infer_error(out, 400, "inputs 'logits' [batch, steps, %u] and 'lengths' [batch] are needed",
					model.num_tags);
	if (ln->shape[0] != lg->shape[0])
		return thaw_infer_error(out, 400, "input 'lengths': %lld values for a batch of %lld",
					(long long)ln->shape[0], (long long)lg->shape[0]);
	if (lg->shape[0] > NER_MAX_BATCH || lg->shape[1] > 16384)
		return thaw_infer_error(out, 400, "input 'logits': at most %u sequences of 16384 steps",
					NER_MAX_BATCH);
	struct ner_request r = { .batched = 1, .batch = (uint32_t)lg->shape[0],
				 .steps = (uint32_t)lg->shape[1], .num_tags = model.num_tags,
				 .logits = (float *)lg->data, .lengths = (int32_t *)ln->data };
	for (uint32_t b = 0; b < r.batch; b++)
		if (r.lengths[b] < 0 || (uint32_t)r.lengths[b] > r.steps)
			return thaw_infer_error(out, 400, "input 'lengths': lengths[%u] is %d, the logits have %u steps",
						b, r.lengths[b], r.steps);
	for (size_t i = 0; i < (size_t)r.batch * r.steps * r.num_tags; i++)
		if (!isfinite(r.logits[i]))
			return thaw_infer_error(out, 400, "input 'logits': value %zu is not finite", i);
	int64_t tshape[2] = { r.batch, r.steps };
	int32_t *paths = thaw_output_new(out, "tags", THAW_INT32, 2, tshape,
					 (size_t)r.batch * r.steps * sizeof(int32_t));
	if (!paths)
		return thaw_infer_error(out, 500, "out of memory");
	if (r.batch && r.steps && !decode(&r, trans, paths))
		return thaw_infer_error(out, 500, "decode failed");
	size_t len = 0;
	char *buf = ner_entities_bytes(&model, &r, paths, &len);
	int64_t eshape[1] = { r.batch };
	void *e = buf ? thaw_output_new(out, "entities", THAW_BYTES, 1, eshape, len) : NULL;
	if (e)
		memcpy(e, buf, len);
	free(buf);
	if (!e)
		return thaw_infer_error(out, 500, "out of memory");
	for (uint32_t b = 0; b < r.batch; b++) /* -1 past each length, as the REST tags */
		for (uint32_t t = (uint32_t)r.lengths[b]; t < r.steps; t++)
			paths[(size_t)b * r.steps + t] = -1;
	return 0;
}

static void ner_shutdown(void)
{
	viterbi_gpu_free(gpu);
	gpu = NULL;
	ner_model_fini(&model);
}

THAW_HANDLER(.name = "ner", .init = ner_init, .invoke = ner_invoke, .shutdown = ner_shutdown,
	     .infer = ner_infer);
