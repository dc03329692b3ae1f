/* common/image.c: deterministic JSON documents of an OCI image. */
#include "common/image.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#define IMAGE_ARCH "amd64"
#elif defined(__aarch64__)
#define IMAGE_ARCH "arm64"
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
#define IMAGE_ARCH "ppc64le"
#elif defined(__riscv) && __riscv_xlen == 64
#define IMAGE_ARCH "riscv64"
#elif defined(__s390x__)
#define IMAGE_ARCH "s390x"
#else
#error "unknown architecture: add its GOARCH name"
#endif

/* cJSON only fails on out of memory, which is fatal here as in xmalloc. */
static cJSON *must(cJSON *j)
{
	if (!j) {
		fprintf(stderr, "thaw build: out of memory\n");
		abort();
	}
	return j;
}

static char *print(cJSON *root)
{
	char *s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!s) {
		fprintf(stderr, "thaw build: out of memory\n");
		abort();
	}
	return s;
}

static void add_str(cJSON *o, const char *k, const char *v)
{
	must(cJSON_AddStringToObject(o, k, v));
}

static void add_num(cJSON *o, const char *k, double v)
{
	must(cJSON_AddNumberToObject(o, k, v));
}

static cJSON *descriptor(const char *media_type, const struct oci_desc *d)
{
	cJSON *o = must(cJSON_CreateObject());
	add_str(o, "mediaType", media_type);
	add_str(o, "digest", d->digest);
	add_num(o, "size", (double)d->size);
	return o;
}

cJSON *image_settings_json(const struct config *c, const char *handler_path)
{
	cJSON *t = must(cJSON_CreateObject());
	add_str(t, "name", c->name);
	if (c->description)
		add_str(t, "description", c->description);
	add_str(t, "handler", handler_path);
	add_str(t, "functionDir", "/" IMAGE_FUNCTION_DIR);
	add_str(t, "runtime", c->runtime ? c->runtime : "c");
	add_num(t, "timeout", c->timeout_s);
	add_num(t, "memorySize", c->memory_mb);
	add_num(t, "cpu", c->cpu);
	add_num(t, "instanceConcurrency", c->instance_concurrency);
	add_num(t, "maxRequestBodySize", (double)c->max_body_bytes);
	cJSON *env = must(cJSON_AddObjectToObject(t, "environmentVariables"));
	for (size_t i = 0; i < c->n_env; i++)
		add_str(env, c->env[i].key, c->env[i].value);
	cJSON *mf = must(cJSON_AddArrayToObject(t, "modelFiles"));
	for (size_t i = 0; i < c->n_model_files; i++)
		cJSON_AddItemToArray(mf, must(cJSON_CreateString(c->model_files[i])));
	if (c->has_warmup) {
		cJSON *w = must(cJSON_AddObjectToObject(t, "warmup"));
		add_str(w, "method", c->warmup.method);
		add_str(w, "path", c->warmup.path);
		/* The body may hold any bytes up to its length; JSON needs text. */
		char *body = xstrndup(c->warmup.body ? c->warmup.body : "", c->warmup.body_len);
		add_str(w, "body", body);
		free(body);
	}
	must(cJSON_AddBoolToObject(t, "snapshot", c->snapshot));
	cJSON *ht = must(cJSON_AddObjectToObject(t, "httpTrigger"));
	add_str(ht, "authType", c->auth_type ? c->auth_type : "anonymous");
	if (c->gpu_type) {
		cJSON *g = must(cJSON_AddObjectToObject(t, "gpuConfig"));
		add_str(g, "gpuType", c->gpu_type);
		add_num(g, "gpuMemorySize", c->gpu_memory_mb);
	}
	const struct config_scaling *s = &c->scaling;
	cJSON *sc = must(cJSON_AddObjectToObject(t, "scalingConfig"));
	add_num(sc, "minInstances", s->min_instances);
	add_num(sc, "maxInstances", s->max_instances);
	add_num(sc, "targetConcurrency", s->target_concurrency);
	add_num(sc, "stableWindowSeconds", s->stable_window_s);
	add_num(sc, "panicWindowPercentage", s->panic_window_pct);
	add_num(sc, "panicThresholdPercentage", s->panic_threshold_pct);
	add_num(sc, "scaleToZeroGracePeriodSeconds", s->scale_to_zero_grace_s);
	add_num(sc, "maxQueueLength", s->max_queue);
	return t;
}

char *image_config_json(const struct config *c, const char *handler_path,
			const struct image_layer *layers, size_t n_layers, time_t created)
{
	char when[32];
	struct tm tm;
	gmtime_r(&created, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	cJSON *root = must(cJSON_CreateObject());
	add_str(root, "created", when);
	add_str(root, "architecture", IMAGE_ARCH);
	add_str(root, "os", "linux");
	cJSON *cfg = must(cJSON_AddObjectToObject(root, "config"));
	cJSON *ep = must(cJSON_AddArrayToObject(cfg, "Entrypoint"));
	cJSON_AddItemToArray(ep, must(cJSON_CreateString("thaw-instance")));
	cJSON *env = must(cJSON_AddArrayToObject(cfg, "Env"));
	for (size_t i = 0; i < c->n_env; i++) {
		char *kv = xasprintf("%s=%s", c->env[i].key, c->env[i].value);
		cJSON_AddItemToArray(env, must(cJSON_CreateString(kv)));
		free(kv);
	}
	add_str(cfg, "WorkingDir", "/" IMAGE_FUNCTION_DIR);
	cJSON *labels = must(cJSON_AddObjectToObject(cfg, "Labels"));
	add_str(labels, "io.thaw.function", c->name);
	add_str(labels, "org.opencontainers.image.title", c->name);
	if (c->description)
		add_str(labels, "org.opencontainers.image.description", c->description);
	cJSON *rootfs = must(cJSON_AddObjectToObject(root, "rootfs"));
	add_str(rootfs, "type", "layers");
	/* Uncompressed layers: the diff_id is the layer's own digest. */
	cJSON *ids = must(cJSON_AddArrayToObject(rootfs, "diff_ids"));
	for (size_t i = 0; i < n_layers; i++)
		cJSON_AddItemToArray(ids, must(cJSON_CreateString(layers[i].desc.digest)));
	/* One history line per layer, as `docker history` and umoci show it. */
	cJSON *hist = must(cJSON_AddArrayToObject(root, "history"));
	for (size_t i = 0; i < n_layers; i++) {
		cJSON *h = must(cJSON_CreateObject());
		char *by = xasprintf("thaw build: %s layer", layers[i].kind);
		add_str(h, "created", when);
		add_str(h, "created_by", by);
		free(by);
		cJSON_AddItemToArray(hist, h);
	}
	cJSON_AddItemToObject(root, "thaw", image_settings_json(c, handler_path));
	return print(root);
}

char *image_manifest_json(const struct config *c, const struct oci_desc *config,
			  const struct image_layer *layers, size_t n_layers)
{
	cJSON *root = must(cJSON_CreateObject());
	add_num(root, "schemaVersion", 2);
	add_str(root, "mediaType", OCI_MT_MANIFEST);
	cJSON_AddItemToObject(root, "config", descriptor(OCI_MT_CONFIG, config));
	cJSON *ls = must(cJSON_AddArrayToObject(root, "layers"));
	for (size_t i = 0; i < n_layers; i++) {
		cJSON *d = descriptor(layers[i].media_type, &layers[i].desc);
		cJSON *a = must(cJSON_AddObjectToObject(d, "annotations"));
		add_str(a, "io.thaw.layer", layers[i].kind);
		cJSON_AddItemToArray(ls, d);
	}
	cJSON *a = must(cJSON_AddObjectToObject(root, "annotations"));
	add_str(a, "io.thaw.function", c->name);
	add_str(a, "org.opencontainers.image.title", c->name);
	return print(root);
}

char *image_index_json(const struct config *c, const struct oci_desc *manifest)
{
	cJSON *root = must(cJSON_CreateObject());
	add_num(root, "schemaVersion", 2);
	add_str(root, "mediaType", OCI_MT_INDEX);
	cJSON *ms = must(cJSON_AddArrayToObject(root, "manifests"));
	cJSON *d = descriptor(OCI_MT_MANIFEST, manifest);
	cJSON *a = must(cJSON_AddObjectToObject(d, "annotations"));
	add_str(a, "io.thaw.function", c->name);
	add_str(a, "org.opencontainers.image.ref.name", "latest");
	cJSON_AddItemToArray(ms, d);
	return print(root);
}

const char *image_layout_json(void)
{
	return "{\"imageLayoutVersion\":\"1.0.0\"}";
}
