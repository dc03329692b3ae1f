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
#include <stdlib.h>
#include <string.h>

#include "thaw/handler.h"
#include "kernels/viterbi.h"
#include "entities.h"
#include "model.h"
#include "request.h"

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
	return 0;
}

/* Decodes r into paths; returns the device used ("cpu"/"gpu") or NULL. */
static const char *decode(const struct ner_request *r, int32_t *paths)
{
	const struct viterbi_problem p = { .logits = r->logits,
					   .lengths = r->lengths,
					   .trans = model.trans,
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
	used = decode(&r, paths);
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

static void ner_shutdown(void)
{
	viterbi_gpu_free(gpu);
	gpu = NULL;
	ner_model_fini(&model);
}

THAW_HANDLER(.name = "ner", .init = ner_init, .invoke = ner_invoke, .shutdown = ner_shutdown);
