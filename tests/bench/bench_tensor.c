/*
 * bench_tensor: the cost of the instance host's tensor conversions per MB
 * of wire data (docs/benchmarks.md, "Protocols"), for a 256 x 784 FP32
 * batch (the MLP's input):
 *   kserve JSON fast path    kserve__parse_fast (host/kserve_fast.c)
 *   kserve JSON cJSON path   cJSON_Parse + tensor_from_json
 *   JSON output              tensor_to_json (shortest round-trip floats)
 *   gRPC ModelInfer raw      protobuf-c unpack of the message (the data is
 *                            then passed as it is)
 * Usage: build/tests/bench/bench_tensor [rounds]
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "grpc_service.pb-c.h"
#include "host/kserve.h"
#include "host/tensor.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *what, size_t bytes, double secs, int rounds)
{
	double per = secs / rounds;
	printf("%-28s %8.2f MB  %8.2f ms  %8.1f MB/s  %7.2f ms/MB\n", what, (double)bytes / 1e6,
	       per * 1e3, (double)bytes / 1e6 / per, per * 1e3 / ((double)bytes / 1e6));
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 10, rows = 256, cols = 784;
	size_t n = (size_t)rows * cols;
	float *x = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((double)((i * 2654435761u) % 1000003) / 1000003.0 * 2 - 1);
	struct thaw_tensor t = { .name = "x", .dtype = THAW_FP32, .ndim = 2, .shape = { rows, cols },
				 .data = x, .len = n * sizeof(float) };
	struct buf data = { 0 }, body = { 0 };
	tensor_to_json(&data, &t);
	buf_printf(&body, "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,%d],\"datatype\":\"FP32\",\"data\":",
		   rows, cols);
	buf_append(&body, data.data, data.len);
	buf_append_str(&body, "}]}");

	double t0 = now();
	for (int r = 0; r < rounds; r++) {
		struct kserve_req *k = calloc(1, sizeof(*k));
		if (kserve__parse_fast(body.data, body.len, k) != 0 || k->in[0].len != n * 4 ||
		    memcmp(k->in[0].data, x, n * 4)) {
			fprintf(stderr, "fast path failed\n");
			return 1;
		}
		for (int i = 0; i < TENSOR_MAX_IO; i++)
			free(k->owned[i]), free(k->names[i]), free(k->want_owned[i]);
		free(k->id);
		free(k);
	}
	report("kserve JSON fast path", body.len, now() - t0, rounds);

	t0 = now();
	for (int r = 0; r < rounds; r++) {
		cJSON *root = cJSON_ParseWithLength(body.data, body.len);
		const cJSON *d = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "inputs"), 0), "data");
		void *out;
		size_t len;
		char err[256];
		if (tensor_from_json(d, "x", THAW_FP32, 2, t.shape, &out, &len, err, sizeof(err)) < 0 ||
		    memcmp(out, x, n * 4)) {
			fprintf(stderr, "cJSON path failed: %s\n", err);
			return 1;
		}
		free(out);
		cJSON_Delete(root);
	}
	report("kserve JSON cJSON path", body.len, now() - t0, rounds);

	t0 = now();
	for (int r = 0; r < rounds; r++) {
		struct buf o = { 0 };
		tensor_to_json(&o, &t);
		buf_free(&o);
	}
	report("JSON output (tensor_to_json)", data.len, now() - t0, rounds);

	Inference__ModelInferRequest m = INFERENCE__MODEL_INFER_REQUEST__INIT;
	Inference__ModelInferRequest__InferInputTensor in = INFERENCE__MODEL_INFER_REQUEST__INFER_INPUT_TENSOR__INIT,
						       *inp = &in;
	int64_t shape[2] = { rows, cols };
	ProtobufCBinaryData raw = { n * 4, (uint8_t *)x };
	in.name = "x";
	in.datatype = "FP32";
	in.n_shape = 2;
	in.shape = shape;
	m.model_name = "mlp";
	m.n_inputs = 1;
	m.inputs = &inp;
	m.n_raw_input_contents = 1;
	m.raw_input_contents = &raw;
	size_t plen = inference__model_infer_request__get_packed_size(&m);
	uint8_t *packed = malloc(plen);
	inference__model_infer_request__pack(&m, packed);
	t0 = now();
	for (int r = 0; r < rounds; r++) {
		Inference__ModelInferRequest *u = inference__model_infer_request__unpack(NULL, plen, packed);
		if (!u || u->raw_input_contents[0].len != n * 4) {
			fprintf(stderr, "unpack failed\n");
			return 1;
		}
		inference__model_infer_request__free_unpacked(u, NULL);
	}
	report("gRPC ModelInfer raw unpack", plen, now() - t0, rounds);
	free(packed);
	buf_free(&body);
	buf_free(&data);
	free(x);
	return 0;
}
