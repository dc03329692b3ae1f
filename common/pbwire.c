/*
 * pbwire: the model a gRPC call names, read from the protobuf wire format
 * without decoding the message (pbwire.h).
 */
#include "common/pbwire.h"

#include <errno.h>
#include <string.h>

static int varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -EINVAL;
		unsigned char b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -EINVAL;
}

/* The last occurrence of field `field` of wire type 2 (length-delimited) in
 * [p, end), or of type 0 into *num; -EINVAL on malformed input. */
static int find_field(const unsigned char *p, const unsigned char *end, uint32_t field, int type,
		      const unsigned char **val, size_t *len, uint64_t *num)
{
	*val = NULL;
	*len = 0;
	while (p < end) {
		uint64_t key, v;
		if (varint(&p, end, &key) < 0)
			return -EINVAL;
		int t = (int)(key & 7);
		uint64_t f = key >> 3;
		switch (t) {
		case 0:
			if (varint(&p, end, &v) < 0)
				return -EINVAL;
			if (f == field && type == 0) {
				*num = v;
				*val = p;
			}
			break;
		case 1:
			if (end - p < 8)
				return -EINVAL;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return -EINVAL;
			p += 4;
			break;
		case 2:
			if (varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
				return -EINVAL;
			if (f == field && type == 2) {
				*val = p;
				*len = (size_t)v;
			}
			p += v;
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

int pbwire_model(const char *path, const char *msg, size_t len, const char **name,
		      size_t *name_len, uint64_t *version)
{
	const unsigned char *p = (const unsigned char *)(msg ? msg : ""), *end = p + len, *v, *spec;
	size_t vl, sl;
	uint64_t num = 0;
	*version = 0;
	if (!strcmp(path, "/inference.GRPCInferenceService/ModelInfer") ||
	    !strcmp(path, "/inference.GRPCInferenceService/ModelMetadata") ||
	    !strcmp(path, "/inference.GRPCInferenceService/ModelReady")) {
		if (find_field(p, end, 1, 2, &v, &vl, &num) < 0)
			return -EINVAL;
		*name = (const char *)v;
		*name_len = vl;
		if (find_field(p, end, 2, 2, &v, &vl, &num) < 0)
			return -EINVAL;
		for (size_t i = 0; i < vl && *version < 100000; i++) {
			if (v[i] < '0' || v[i] > '9')
				return -EINVAL;
			*version = *version * 10 + (v[i] - '0');
		}
		return 0;
	}
	if (!strcmp(path, "/tensorflow.serving.PredictionService/Predict") ||
	    !strcmp(path, "/tensorflow.serving.PredictionService/GetModelMetadata") ||
	    !strcmp(path, "/tensorflow.serving.ModelService/GetModelStatus")) {
		/* model_spec = 1 { name = 1; version = 2 { value = 1 } } */
		if (find_field(p, end, 1, 2, &spec, &sl, &num) < 0)
			return -EINVAL;
		*name = NULL;
		*name_len = 0;
		if (!spec) /* no model_spec (found by fuzz_grpc) */
			return 0;
		if (find_field(spec, spec + sl, 1, 2, &v, &vl, &num) < 0)
			return -EINVAL;
		*name = (const char *)v;
		*name_len = vl;
		if (find_field(spec, spec + sl, 2, 2, &v, &vl, &num) < 0)
			return -EINVAL;
		if (v && find_field(v, v + vl, 1, 0, &v, &vl, &num) < 0)
			return -EINVAL;
		*version = v ? num : 0;
		return 0;
	}
	return -ENOENT;
}

