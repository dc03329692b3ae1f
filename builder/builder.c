/* builder/builder.c: `thaw build`, fc.yaml folder -> OCI image layout. */
#include "builder/builder.h"
#include "builder/compile.h"
#include "builder/layer.h"
#include "builder/runnable.h"
#include "common/config.h"
#include "common/errmsg.h"
#include "common/fsutil.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
	"usage: thaw build [DIR] [-o OUT] [--json] [--base BASE [--snapshot SNAP]]\n"
	"  DIR          function folder holding fc.yaml (default .)\n"
	"  -o, --output OUT  image folder, OCI image layout (default DIR/.thaw/image)\n"
	"  --json       print the result as one JSON object\n"
	"  --no-cache   read every file again, even when unchanged since the last build\n"
	"  --base BASE  make the image runnable: on BASE, the OCI layout of thaw's own\n"
	"               image (scripts/thaw-image.py), entrypoint `thaw serve`\n"
	"  --snapshot SNAP  with --base: add the snapshot folder SNAP (a daemon's, of this\n"
	"               function) as a layer at /snapshot/NAME, annotated with what a\n"
	"               node must match to restore it (docs/kubernetes.md)\n"
	"Compiles the handler when fc.yaml names sources (.c file or folder), then\n"
	"packages handler, fc.yaml, modelFiles and the folder's other files.\n"
	"SOURCE_DATE_EPOCH sets the files' mtime (default 0); THAW_SDK_INCLUDE the\n"
	"folder holding thaw/handler.h; CC the compiler (default gcc).\n";

/* State of one build. */
struct build {
	const struct builder_options *o;
	struct config cfg;
	char *dir;      /* absolute, real path of the function folder */
	char *fc_path;  /* fc.yaml as messages name it */
	char *out;      /* absolute image folder */
	char *blobs;    /* out/blobs/sha256 */
	dev_t out_dev;  /* to skip the image folder when it is inside dir */
	ino_t out_ino;
	char *so_src;   /* the handler .so on disk */
	char *so_path;  /* its path in the image, below IMAGE_FUNCTION_DIR */
	bool compiled;
	struct layer model, code;
	size_t n_walked;
	char *err;
	size_t errlen;
};

static int fail(struct build *b, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct build *b, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->err, b->errlen, fmt, ap);
	va_end(ap);
	return rc;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

/* The first line of fc.yaml that holds text, for messages about values
 * config_load keeps no line for; 0 when none does. */
static int line_of(const char *path, const char *text)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	char buf[4096];
	int line = 0, found = 0;
	while (!found && fgets(buf, sizeof(buf), f)) {
		line++;
		if (strstr(buf, text))
			found = line;
	}
	fclose(f);
	return found;
}

/* "fc.yaml:LINE: " or "fc.yaml: " into where. */
static void where_of(struct build *b, const char *text, char *where, size_t len)
{
	int line = line_of(b->fc_path, text);
	if (line)
		snprintf(where, len, "%s:%d: ", b->fc_path, line);
	else
		snprintf(where, len, "%s: ", b->fc_path);
}

/* A relative path made of plain names: no "..", no empty or "." parts
 * after cleaning. Returns the cleaned copy, or NULL. */
static char *clean_rel(const char *p)
{
	if (p[0] == '/')
		return NULL;
	char *out = xmalloc(strlen(p) + 1);
	size_t n = 0;
	while (*p) {
		size_t len = strcspn(p, "/");
		if (len == 2 && !strncmp(p, "..", 2)) {
			free(out);
			return NULL;
		}
		if (len && !(len == 1 && p[0] == '.')) {
			if (n)
				out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p += len;
		while (*p == '/')
			p++;
	}
	out[n] = '\0';
	if (!n) {
		free(out);
		return NULL;
	}
	return out;
}

static char *in_image(const char *rel)
{
	return xasprintf(IMAGE_FUNCTION_DIR "/%s", rel);
}

/* --- collecting files ---------------------------------------------------- */

enum walk_kind { WALK_MODEL, WALK_CODE };

/* Output of builds and of the compiler: never packaged by the walk. */
static bool is_build_output(const char *name)
{
	return ends_with(name, ".o") || ends_with(name, ".d");
}

static int walk(struct build *b, enum walk_kind kind, const char *abs, const char *rel, int depth);

/* One path found by a walk (or named in modelFiles). */
static int add_path(struct build *b, enum walk_kind kind, const char *abs, const char *rel,
		    int depth)
{
	struct stat st;
	if (stat(abs, &st) < 0)
		return fail(b, -errno, "%s: %s", abs, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		if (st.st_dev == b->out_dev && st.st_ino == b->out_ino)
			return 0;
		if (depth >= BUILDER_MAX_DEPTH)
			return fail(b, -ELOOP, "%s: more than %d folders deep (a link loop?)", abs,
				    BUILDER_MAX_DEPTH);
		return walk(b, kind, abs, rel, depth + 1);
	}
	if (!S_ISREG(st.st_mode))
		return 0; /* sockets, fifos, devices: not part of a function */
	if (++b->n_walked > BUILDER_MAX_FILES)
		return fail(b, -EFBIG, "%s: more than %d files in the function folder", b->dir,
			    BUILDER_MAX_FILES);
	char *path = in_image(rel);
	if (kind == WALK_MODEL) {
		layer_add_file(&b->model, path, abs, &st, false);
	} else if (!layer_has(&b->model, path)) {
		layer_add_file(&b->code, path, abs, &st, false);
	}
	free(path);
	return 0;
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file below abs, dotfiles and build outputs left out. The names are
 * sorted so errors and limits hit the same file every time. */
static int walk(struct build *b, enum walk_kind kind, const char *abs, const char *rel, int depth)
{
	DIR *d = opendir(abs);
	if (!d)
		return fail(b, -errno, "%s: %s", abs, strerror(errno));
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || (kind == WALK_CODE && is_build_output(de->d_name)))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 32;
			names = xrealloc(names, cap * sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
		if (n > BUILDER_MAX_FILES) {
			rc = fail(b, -EFBIG, "%s: more than %d entries", abs, BUILDER_MAX_FILES);
			break;
		}
	}
	closedir(d);
	if (names)
		qsort(names, n, sizeof(*names), by_str);
	for (size_t i = 0; i < n && !rc; i++) {
		char *a = xasprintf("%s/%s", abs, names[i]);
		char *r = *rel ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
		rc = add_path(b, kind, a, r, depth);
		free(a);
		free(r);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

static int collect_models(struct build *b)
{
	char where[PATH_MAX + 32];
	for (size_t i = 0; i < b->cfg.n_model_files; i++) {
		const char *mf = b->cfg.model_files[i];
		char *rel = clean_rel(mf);
		if (!rel) {
			where_of(b, mf, where, sizeof(where));
			return fail(b, -EINVAL,
				    "%smodelFiles[%zu]: expected a path inside the function folder, got \"%s\"",
				    where, i, mf);
		}
		char *abs = xasprintf("%s/%s", b->dir, rel);
		int rc = add_path(b, WALK_MODEL, abs, rel, 0);
		if (rc < 0) {
			where_of(b, mf, where, sizeof(where));
			fail(b, rc, "%smodelFiles[%zu]: %s: %s", where, i, mf, strerror(-rc));
		}
		free(abs);
		free(rel);
		if (rc < 0)
			return rc;
	}
	layer_finish(&b->model);
	return 0;
}

static int collect_code(struct build *b)
{
	struct stat st;
	int rc = 0;
	if (stat(b->so_src, &st) < 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	if (rc < 0) {
		char where[PATH_MAX + 32];
		where_of(b, b->cfg.handler, where, sizeof(where));
		return fail(b, rc, "%shandler: %s: %s%s", where, b->so_src,
			    rc == -EINVAL ? "not a regular file" : strerror(-rc),
			    rc == -ENOENT ? " (build it first, or name its sources)" : "");
	}
	/* First added wins: the handler and fc.yaml before what the walk finds. */
	char *p = in_image(b->so_path);
	if (!b->cfg.custom) /* its fc.yaml comes next */
		layer_add_file(&b->code, p, b->so_src, &st, true);
	free(p);
	char *fc = xasprintf("%s/fc.yaml", b->dir);
	if (stat(fc, &st) < 0) {
		free(fc);
		return fail(b, -errno, "%s: %s", b->fc_path, strerror(errno));
	}
	layer_add_file(&b->code, IMAGE_FUNCTION_DIR "/fc.yaml", fc, &st, false);
	free(fc);
	rc = walk(b, WALK_CODE, b->dir, "", 0);
	if (rc < 0)
		return rc;
	layer_finish(&b->code);
	return 0;
}

/* --- the handler --------------------------------------------------------- */


static int prepare_handler(struct build *b)
{
	const char *h = b->cfg.handler;
	if (b->cfg.custom) {
		/* a custom runtime has no .so: its command (in fc.yaml) is what
		 * runs, so the image names fc.yaml where a handler goes */
		b->so_src = xasprintf("%s/fc.yaml", b->dir);
		b->so_path = xstrdup("fc.yaml");
		return 0;
	}
	if (compile_is_source(b->dir, h)) {
		char *bdir = xasprintf("%s/.thaw/build", b->dir);
		int rc = fs_mkdir_p(bdir, 0755);
		if (rc < 0) {
			fail(b, rc, "%s: %s", bdir, strerror(-rc));
			free(bdir);
			return rc;
		}
		b->so_src = xasprintf("%s/%s.so", bdir, b->cfg.name);
		free(bdir);
		char msg[1024];
		rc = compile_handler(b->dir, h, b->so_src, b->o->diag ? b->o->diag : stderr, msg,
				     sizeof(msg));
		if (rc < 0) {
			char where[PATH_MAX + 32];
			where_of(b, h, where, sizeof(where));
			return fail(b, rc, "%s%s", where, msg);
		}
		b->so_path = xstrdup("handler.so");
		b->compiled = true;
		return 0;
	}
	b->so_src = h[0] == '/' ? xstrdup(h) : xasprintf("%s/%s", b->dir, h);
	/* Inside the folder: keep its path. Outside: it sits at the top. */
	b->so_path = clean_rel(h);
	if (!b->so_path) {
		const char *base = strrchr(h, '/');
		b->so_path = xstrdup(base ? base + 1 : h);
	}
	return 0;
}

/* --- the image ----------------------------------------------------------- */

static time_t source_date_epoch(void)
{
	const char *s = getenv("SOURCE_DATE_EPOCH");
	if (!s || !*s)
		return 0;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < 0)
		return 0;
	return (time_t)v;
}

/* The layer cache: DIR/.thaw/cache/layer-<fingerprint> holds the digest and
 * size of the tar those exact files gave last time, so unchanged weights
 * are neither read nor written again when their blob is still in OUT. */
static char *cache_path(struct build *b, const struct layer *l, time_t epoch)
{
	if (b->o->no_cache)
		return NULL;
	char fp[65];
	layer_fingerprint(l, epoch, fp);
	return xasprintf("%s/.thaw/cache/layer-%s", b->dir, fp);
}

static bool cache_lookup(struct build *b, const char *path, struct oci_desc *out)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	char digest[OCI_DIGEST_LEN + 1];
	unsigned long long size;
	int ok = fscanf(f, "%71s %llu", digest, &size) == 2;
	fclose(f);
	if (!ok || !oci_digest_valid(digest))
		return false;
	char *blob = xasprintf("%s/%s", b->blobs, digest + 7);
	struct stat st;
	ok = stat(blob, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
	free(blob);
	if (!ok)
		return false;
	memcpy(out->digest, digest, sizeof(digest));
	out->size = size;
	return true;
}

/* Remembers a layer unless a file changed in the last seconds: a file
 * rewritten again within its timestamp's granularity would keep the same
 * fingerprint with new bytes (git's "racy clean" case). */
static void cache_store(struct build *b, const char *path, const struct layer *l,
			const struct oci_desc *d)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	if (l->newest_mtime_ns >= now_ns - 2 * (int64_t)1000000000)
		return;
	char *dir = xasprintf("%s/.thaw/cache", b->dir);
	char msg[256];
	if (fs_mkdir_p(dir, 0755) == 0) {
		char *text = xasprintf("%s %llu\n", d->digest, (unsigned long long)d->size);
		oci_write_file(path, text, strlen(text), msg, sizeof(msg)); /* best effort */
		free(text);
	}
	free(dir);
}

/* Drops cache entries naming blobs this image no longer holds. */
static void cache_prune(struct build *b, const char *const *keep, size_t n_keep)
{
	char *dir = xasprintf("%s/.thaw/cache", b->dir);
	DIR *d = opendir(dir);
	free(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "layer-", 6))
			continue;
		char digest[OCI_DIGEST_LEN + 1] = "";
		int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, digest, OCI_DIGEST_LEN);
		close(fd);
		digest[n > 0 ? n : 0] = '\0';
		bool kept = false;
		for (size_t i = 0; i < n_keep; i++)
			kept |= !strcmp(keep[i], digest);
		if (!kept)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

static int write_layer(struct build *b, struct layer *l, const char *kind,
		       struct builder_result *res)
{
	struct builder_layer *bl = &res->layers[res->n_layers];
	time_t epoch = source_date_epoch();
	char *cache = cache_path(b, l, epoch);
	char msg[1024];
	int rc = 0;
	if (cache && cache_lookup(b, cache, &bl->img.desc)) {
		bl->reused = true;
	} else {
		rc = layer_write(l, b->blobs, epoch, &bl->img.desc, msg, sizeof(msg));
		if (rc < 0) {
			free(cache);
			return fail(b, rc, "%s layer: %s", kind, msg);
		}
		if (cache)
			cache_store(b, cache, l, &bl->img.desc);
	}
	free(cache);
	bl->img.media_type = OCI_MT_LAYER_TAR;
	bl->img.kind = kind;
	bl->n_files = l->n_files;
	bl->content_bytes = l->content_bytes;
	res->n_layers++;
	return 0;
}

static int put_json(struct build *b, char *json, struct oci_desc *out)
{
	char msg[1024];
	int rc = oci_blob_put(b->blobs, json, strlen(json), out, msg, sizeof(msg));
	free(json);
	if (rc < 0)
		return fail(b, rc, "%s", msg);
	return 0;
}

static int write_image(struct build *b, struct builder_result *res)
{
	char msg[1024];
	int rc;
	if (b->model.n_files && (rc = write_layer(b, &b->model, "model", res)) < 0)
		return rc;
	if ((rc = write_layer(b, &b->code, "code", res)) < 0)
		return rc;

	struct image_layer imgs[2];
	for (size_t i = 0; i < res->n_layers; i++)
		imgs[i] = res->layers[i].img;
	rc = put_json(b, image_config_json(&b->cfg, b->so_path, imgs, res->n_layers,
					     source_date_epoch()), &res->config);
	if (rc < 0)
		return rc;
	rc = put_json(b, image_manifest_json(&b->cfg, &res->config, imgs, res->n_layers),
		      &res->manifest);
	if (rc < 0)
		return rc;

	char *path = xasprintf("%s/oci-layout", b->out);
	const char *layout = image_layout_json();
	rc = oci_write_file(path, layout, strlen(layout), msg, sizeof(msg));
	free(path);
	if (rc < 0)
		return fail(b, rc, "%s", msg);
	char *index = image_index_json(&b->cfg, &res->manifest);
	path = xasprintf("%s/index.json", b->out);
	rc = oci_write_file(path, index, strlen(index), msg, sizeof(msg));
	free(path);
	free(index);
	if (rc < 0)
		return fail(b, rc, "%s", msg);

	/* index.json names only this build: blobs of earlier ones go. */
	const char *keep[4];
	size_t n_keep = 0;
	keep[n_keep++] = res->manifest.digest;
	keep[n_keep++] = res->config.digest;
	for (size_t i = 0; i < res->n_layers; i++)
		keep[n_keep++] = res->layers[i].img.desc.digest;
	oci_blobs_prune(b->blobs, keep, n_keep);
	cache_prune(b, keep, n_keep);
	return 0;
}

static int open_out(struct build *b)
{
	char msg[1024];
	const char *out = b->o->out;
	char *want = out ? xstrdup(out) : xasprintf("%s/.thaw/image", b->dir);
	int rc = oci_layout_init(want, msg, sizeof(msg));
	if (rc < 0) {
		free(want);
		return fail(b, rc, "%s", msg);
	}
	b->out = realpath(want, NULL);
	free(want);
	if (!b->out)
		return fail(b, -errno, "%s: %s", out, strerror(errno));
	struct stat st;
	if (stat(b->out, &st) < 0)
		return fail(b, -errno, "%s: %s", b->out, strerror(errno));
	b->out_dev = st.st_dev;
	b->out_ino = st.st_ino;
	b->blobs = xasprintf("%s/blobs/sha256", b->out);
	return 0;
}

static void build_fini(struct build *b)
{
	config_free(&b->cfg);
	layer_fini(&b->model);
	layer_fini(&b->code);
	free(b->dir);
	free(b->fc_path);
	free(b->out);
	free(b->blobs);
	free(b->so_src);
	free(b->so_path);
}

int builder_build(const struct builder_options *o, struct builder_result *res, char *err,
		  size_t errlen)
{
	double t0 = now_s();
	struct build b = { .o = o, .err = err, .errlen = errlen };
	const char *dir = o->dir && *o->dir ? o->dir : ".";
	int rc;

	memset(res, 0, sizeof(*res));
	if (errlen)
		err[0] = '\0';
	b.fc_path = strcmp(dir, ".") ? xasprintf("%s%sfc.yaml", dir, ends_with(dir, "/") ? "" : "/")
				     : xstrdup("fc.yaml");
	if ((rc = config_load(b.fc_path, &b.cfg, err, errlen)) < 0)
		goto out;
	b.dir = realpath(b.cfg.dir ? b.cfg.dir : dir, NULL);
	if (!b.dir) {
		rc = fail(&b, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if ((rc = prepare_handler(&b)) < 0)
		goto out;
	if ((rc = open_out(&b)) < 0)
		goto out;
	if ((rc = collect_models(&b)) < 0)
		goto out;
	if ((rc = collect_code(&b)) < 0)
		goto out;
	if ((rc = write_image(&b, res)) < 0)
		goto out;

	res->name = xstrdup(b.cfg.name);
	res->image = xstrdup(b.out);
	res->handler = in_image(b.so_path);
	res->compiled = b.compiled;
	res->seconds = now_s() - t0;
out:
	build_fini(&b);
	if (rc < 0)
		memset(res, 0, sizeof(*res));
	return rc;
}

void builder_result_fini(struct builder_result *res)
{
	free(res->name);
	free(res->image);
	free(res->handler);
	memset(res, 0, sizeof(*res));
}

/* --- the CLI ------------------------------------------------------------- */

static const char *human(uint64_t n, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

static cJSON *json_desc(const char *media_type, const struct oci_desc *d)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "digest", d->digest);
	cJSON_AddNumberToObject(o, "size", (double)d->size);
	cJSON_AddStringToObject(o, "mediaType", media_type);
	return o;
}

static void print_json(const struct builder_result *r, const struct runnable_result *rr)
{
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "name", r->name);
	cJSON_AddStringToObject(root, "digest", r->manifest.digest);
	cJSON_AddItemToObject(root, "manifest", json_desc(OCI_MT_MANIFEST, &r->manifest));
	cJSON_AddItemToObject(root, "config", json_desc(OCI_MT_CONFIG, &r->config));
	cJSON *ls = cJSON_AddArrayToObject(root, "layers");
	for (size_t i = 0; i < r->n_layers; i++) {
		const struct builder_layer *l = &r->layers[i];
		cJSON *d = json_desc(l->img.media_type, &l->img.desc);
		cJSON_AddStringToObject(d, "kind", l->img.kind);
		cJSON_AddNumberToObject(d, "files", (double)l->n_files);
		cJSON_AddBoolToObject(d, "reused", l->reused);
		cJSON_AddItemToArray(ls, d);
	}
	if (rr) {
		cJSON *b = cJSON_AddObjectToObject(root, "base");
		cJSON_AddStringToObject(b, "digest", rr->base_digest);
		cJSON_AddNumberToObject(b, "layers", (double)rr->n_base_layers);
		cJSON_AddNumberToObject(b, "bytes", (double)rr->base_bytes);
		cJSON_AddStringToObject(root, "runnable_digest", rr->runnable_digest);
		if (rr->snapshot) {
			cJSON *d = json_desc(OCI_MT_LAYER_TAR, &rr->snapshot_layer);
			cJSON_AddNumberToObject(d, "files", (double)rr->snapshot_files);
			cJSON_AddItemToObject(root, "snapshot", d);
		}
	}
	cJSON_AddStringToObject(root, "handler", r->handler);
	cJSON_AddBoolToObject(root, "compiled", r->compiled);
	cJSON_AddStringToObject(root, "image", r->image);
	cJSON_AddNumberToObject(root, "seconds", (double)(long)(r->seconds * 1000) / 1000);
	char *s = cJSON_PrintUnformatted(root);
	if (s)
		printf("%s\n", s);
	free(s);
	cJSON_Delete(root);
}

static void print_text(const struct builder_result *r, const struct runnable_result *rr)
{
	char a[32];
	printf("built %s%s\n", r->name, r->compiled ? " (handler compiled)" : "");
	if (rr)
		printf("  %-8s %s  %10s  %zu layer%s\n", "base", rr->base_digest,
		       human(rr->base_bytes, a, sizeof(a)), rr->n_base_layers,
		       rr->n_base_layers == 1 ? "" : "s");
	for (size_t i = 0; i < r->n_layers; i++) {
		const struct builder_layer *l = &r->layers[i];
		printf("  %-8s %s  %10s  %zu file%s%s\n", l->img.kind, l->img.desc.digest,
		       human(l->img.desc.size, a, sizeof(a)), l->n_files, l->n_files == 1 ? "" : "s",
		       l->reused ? ", unchanged" : "");
	}
	if (rr && rr->snapshot)
		printf("  %-8s %s  %10s  %zu files, taken from %s\n", "snapshot",
		       rr->snapshot_layer.digest, human(rr->snapshot_layer.size, a, sizeof(a)),
		       rr->snapshot_files, rr->runnable_digest);
	printf("  %-8s %s  %10s\n", "config", r->config.digest, human(r->config.size, a, sizeof(a)));
	printf("  %-8s %s  %10s\n", "manifest", r->manifest.digest,
	       human(r->manifest.size, a, sizeof(a)));
	printf("image %s (%.2f s)\n%s\n", r->image, r->seconds, r->manifest.digest);
}

int builder_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, 0, 'o' },
		{ "json", no_argument, 0, 'j' },
		{ "no-cache", no_argument, 0, 'n' },
		{ "base", required_argument, 0, 'b' },
		{ "snapshot", required_argument, 0, 's' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct builder_options o = { 0 };
	const char *base = NULL, *snapshot = NULL;
	bool json = false;
	int c;
	optind = 0; /* glibc: start afresh, whoever parsed before */
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o.out = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'n':
			o.no_cache = true;
			break;
		case 'b':
			base = optarg;
			break;
		case 's':
			snapshot = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "thaw build: one folder at most, got %d\n%s", argc - optind, usage);
		return 2;
	}
	if (optind < argc)
		o.dir = argv[optind];
	if (snapshot && !base) {
		fprintf(stderr, "thaw build: --snapshot needs --base\n%s", usage);
		return 2;
	}

	struct builder_result res;
	char err[2048];
	fflush(stdout);
	if (builder_build(&o, &res, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct runnable_result rr;
	if (base) {
		if (runnable_make(res.image, base, snapshot, res.name, &rr, err, sizeof(err)) < 0) {
			fprintf(stderr, "thaw build: %s\n", err);
			builder_result_fini(&res);
			return 1;
		}
		res.manifest = rr.manifest;
		res.config = rr.config;
	}
	if (json)
		print_json(&res, base ? &rr : NULL);
	else
		print_text(&res, base ? &rr : NULL);
	fflush(stdout);
	builder_result_fini(&res);
	return 0;
}
