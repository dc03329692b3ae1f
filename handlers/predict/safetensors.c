/* safetensors: see safetensors.h. */
#include "handlers/predict/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
	[SAFETENSORS_F32] = { "F32", 4 },  [SAFETENSORS_F16] = { "F16", 2 },
	[SAFETENSORS_BF16] = { "BF16", 2 }, [SAFETENSORS_F64] = { "F64", 8 },
	[SAFETENSORS_I64] = { "I64", 8 },  [SAFETENSORS_I32] = { "I32", 4 },
	[SAFETENSORS_I16] = { "I16", 2 },  [SAFETENSORS_I8] = { "I8", 1 },
	[SAFETENSORS_U8] = { "U8", 1 },    [SAFETENSORS_BOOL] = { "BOOL", 1 },
};

const char *safetensors_dtype_name(enum safetensors_dtype dt)
{
	return (unsigned)dt < sizeof(dtypes) / sizeof(dtypes[0]) ? dtypes[dt].name : "?";
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A JSON number that is a non-negative integer exactly representable. */
static int get_u64(const cJSON *j, uint64_t *out)
{
	if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble > 9007199254740992.0)
		return -1;
	uint64_t v = (uint64_t)j->valuedouble;
	if ((double)v != j->valuedouble)
		return -1;
	*out = v;
	return 0;
}

static int parse_tensor(const cJSON *e, const uint8_t *buf, uint64_t buf_len,
			struct safetensors_tensor *t, char *err, size_t errlen)
{
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	const char *name = e->string;
	size_t i, n_dt = sizeof(dtypes) / sizeof(dtypes[0]);

	if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
	    !cJSON_IsArray(offs))
		return fail(err, errlen, "tensor %s: needs dtype, shape and data_offsets", name);
	for (i = 0; i < n_dt; i++)
		if (strcmp(dt->valuestring, dtypes[i].name) == 0)
			break;
	if (i == n_dt)
		return fail(err, errlen, "tensor %s: unknown dtype %.16s", name, dt->valuestring);
	t->dtype = (enum safetensors_dtype)i;

	int nd = cJSON_GetArraySize(shape);
	if (nd > SAFETENSORS_MAX_DIMS)
		return fail(err, errlen, "tensor %s: %d dimensions (max %d)", name, nd,
			    SAFETENSORS_MAX_DIMS);
	t->ndim = nd;
	uint64_t numel = 1;
	for (int d = 0; d < nd; d++) {
		uint64_t v;
		if (get_u64(cJSON_GetArrayItem(shape, d), &v) < 0)
			return fail(err, errlen, "tensor %s: bad shape", name);
		if (v != 0 && numel > UINT64_MAX / v)
			return fail(err, errlen, "tensor %s: shape overflows", name);
		numel *= v;
		t->shape[d] = (int64_t)v;
	}
	uint64_t begin, end;
	if (cJSON_GetArraySize(offs) != 2 || get_u64(cJSON_GetArrayItem(offs, 0), &begin) < 0 ||
	    get_u64(cJSON_GetArrayItem(offs, 1), &end) < 0 || begin > end)
		return fail(err, errlen, "tensor %s: bad data_offsets", name);
	if (end > buf_len)
		return fail(err, errlen,
			    "tensor %s: data_offsets [%llu, %llu) beyond the %llu-byte data buffer",
			    name, (unsigned long long)begin, (unsigned long long)end,
			    (unsigned long long)buf_len);
	size_t esz = dtypes[t->dtype].size;
	if (numel > UINT64_MAX / esz || numel * esz != end - begin)
		return fail(err, errlen, "tensor %s: %llu bytes for shape of %llu %s elements", name,
			    (unsigned long long)(end - begin), (unsigned long long)numel,
			    dtypes[t->dtype].name);
	t->data = buf + begin;
	t->nbytes = (size_t)(end - begin);
	if ((uintptr_t)t->data % esz)
		return fail(err, errlen, "tensor %s: data not aligned to %zu bytes", name, esz);
	return 0;
}

/* "__metadata__": {"key": "value", ...}, strings only; kept in st->meta. */
static int parse_meta(const cJSON *m, struct safetensors *st, char *err, size_t errlen)
{
	const cJSON *kv;
	if (!cJSON_IsObject(m))
		return fail(err, errlen, "__metadata__ is not an object");
	if (st->meta)
		return fail(err, errlen, "__metadata__ appears twice");
	int n = cJSON_GetArraySize(m);
	st->meta = calloc(2 * (size_t)n + 1, sizeof(char *));
	if (!st->meta)
		return fail(err, errlen, "out of memory");
	cJSON_ArrayForEach(kv, m)
	{
		if (!cJSON_IsString(kv))
			return fail(err, errlen, "__metadata__ %s: not a string", kv->string);
		char *k = strdup(kv->string), *v = strdup(kv->valuestring);
		if (!k || !v) {
			free(k);
			free(v);
			return fail(err, errlen, "out of memory");
		}
		st->meta[2 * st->n_meta] = k;
		st->meta[2 * st->n_meta + 1] = v;
		st->n_meta++;
	}
	return 0;
}

int safetensors_parse(const void *data, size_t len, struct safetensors *out,
		      char *err, size_t errlen)
{
	const uint8_t *p = data;
	uint64_t hlen = 0;
	cJSON *root = NULL;
	struct safetensors st = { 0 };
	int rc;

	if (len < 8)
		return fail(err, errlen, "file too short (%zu bytes) for a safetensors header", len);
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | p[i];
	if (hlen > len - 8)
		return fail(err, errlen, "header length %llu larger than the file (%zu bytes)",
			    (unsigned long long)hlen, len);
	if (hlen > SAFETENSORS_MAX_HEADER)
		return fail(err, errlen, "header length %llu over the %u-byte limit",
			    (unsigned long long)hlen, SAFETENSORS_MAX_HEADER);
	root = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
	if (!cJSON_IsObject(root)) {
		rc = fail(err, errlen, "header is not a JSON object");
		goto free_root;
	}
	int n = cJSON_GetArraySize(root);
	st.tensors = calloc(n ? n : 1, sizeof(*st.tensors));
	if (!st.tensors) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto free_root;
	}
	const uint8_t *buf = p + 8 + hlen;
	uint64_t buf_len = len - 8 - hlen;
	const cJSON *e;
	cJSON_ArrayForEach(e, root)
	{
		if (strcmp(e->string, "__metadata__") == 0) {
			rc = parse_meta(e, &st, err, errlen);
			if (rc < 0)
				goto free_st;
			continue;
		}
		struct safetensors_tensor *t = &st.tensors[st.n];
		rc = parse_tensor(e, buf, buf_len, t, err, errlen);
		if (rc < 0)
			goto free_st;
		t->name = strdup(e->string);
		if (!t->name) {
			rc = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto free_st;
		}
		st.n++;
	}
	cJSON_Delete(root);
	*out = st;
	return 0;
free_st:
	safetensors_free(&st);
free_root:
	cJSON_Delete(root);
	return rc;
}

const struct safetensors_tensor *safetensors_find(const struct safetensors *st,
						  const char *name)
{
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->tensors[i].name, name) == 0)
			return &st->tensors[i];
	return NULL;
}

const char *safetensors_meta(const struct safetensors *st, const char *key)
{
	for (size_t i = 0; i < st->n_meta; i++)
		if (strcmp(st->meta[2 * i], key) == 0)
			return st->meta[2 * i + 1];
	return NULL;
}

void safetensors_free(struct safetensors *st)
{
	for (size_t i = 0; i < st->n; i++)
		free(st->tensors[i].name);
	free(st->tensors);
	for (size_t i = 0; i < 2 * st->n_meta; i++)
		free(st->meta[i]);
	free(st->meta);
	st->tensors = NULL;
	st->n = 0;
	st->meta = NULL;
	st->n_meta = 0;
}
