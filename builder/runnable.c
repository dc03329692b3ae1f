/* builder/runnable.c: a function image onto thaw's base image, plus a
 * snapshot layer (runnable.h). */
#include "builder/runnable.h"
#include "builder/layer.h"
#include "common/errmsg.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JSON_MAX (4u << 20) /* index, manifest, config: small documents */
#define MAX_LAYERS 127
#define NODE_MAX (16u << 10)
#define SNAPSHOT_DIR_IN_IMAGE "snapshot"

struct doc {
	cJSON *json;
	struct oci_desc desc;
};

static int read_text(const char *path, size_t max, char **out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errmsg(err, errlen, -errno, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > max) {
		close(fd);
		return errmsg(err, errlen, -EFBIG, "%s: missing or larger than %zu bytes", path, max);
	}
	char *buf = xmalloc((size_t)st.st_size + 1);
	ssize_t n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		return errmsg(err, errlen, -EIO, "%s: short read", path);
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

static char *blob_path(const char *layout, const char *digest)
{
	return xasprintf("%s/blobs/sha256/%s", layout, digest + 7);
}

/* Reads and parses the blob named by digest in layout, checking its hash. */
static int read_blob(const char *layout, const char *digest, struct doc *d, char *err,
		     size_t errlen)
{
	if (!oci_digest_valid(digest))
		return errmsg(err, errlen, -EBADMSG, "%s: bad digest '%.80s'", layout, digest);
	char *path = blob_path(layout, digest), *text = NULL;
	int rc = oci_file_digest(path, &d->desc);
	if (rc < 0)
		rc = errmsg(err, errlen, rc, "%s: %s", path, strerror(-rc));
	else if (strcmp(d->desc.digest, digest))
		rc = errmsg(err, errlen, -EBADMSG, "%s: the bytes hash to %s", path, d->desc.digest);
	else if ((rc = read_text(path, JSON_MAX, &text, err, errlen)) == 0 &&
		 !(d->json = cJSON_Parse(text)))
		rc = errmsg(err, errlen, -EBADMSG, "%s: not JSON", path);
	free(text);
	free(path);
	return rc;
}

/* The manifest index.json names "latest", else its first one. */
static int read_image(const char *layout, struct doc *manifest, struct doc *config, char *err,
		      size_t errlen)
{
	char *path = xasprintf("%s/index.json", layout), *text = NULL;
	int rc = read_text(path, JSON_MAX, &text, err, errlen);
	cJSON *index = rc ? NULL : cJSON_Parse(text);
	free(text);
	if (!rc && !index)
		rc = errmsg(err, errlen, -EBADMSG, "%s: not JSON", path);
	free(path);
	if (rc)
		return rc;
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(index, "manifests"), *m, *pick = NULL;
	cJSON_ArrayForEach(m, ms) {
		const cJSON *ref = cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(m, "annotations"),
			"org.opencontainers.image.ref.name");
		if (!pick || (cJSON_IsString(ref) && !strcmp(ref->valuestring, "latest")))
			pick = m;
	}
	const cJSON *dg = cJSON_GetObjectItemCaseSensitive(pick, "digest");
	if (!cJSON_IsString(dg))
		rc = errmsg(err, errlen, -EBADMSG, "%s/index.json: no manifest", layout);
	else
		rc = read_blob(layout, dg->valuestring, manifest, err, errlen);
	cJSON_Delete(index);
	if (rc)
		return rc;
	dg = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(manifest->json, "config"), "digest");
	if (!cJSON_IsString(dg))
		return errmsg(err, errlen, -EBADMSG, "%s: manifest %s names no config", layout,
			      manifest->desc.digest);
	return read_blob(layout, dg->valuestring, config, err, errlen);
}

/* Copies a blob of layout from into layout to, its hash checked. */
static int copy_blob(const char *from, const char *to, const char *digest, uint64_t *bytes,
		     char *err, size_t errlen)
{
	if (!oci_digest_valid(digest))
		return errmsg(err, errlen, -EBADMSG, "%s: bad layer digest", from);
	char *src = blob_path(from, digest), *blobs = xasprintf("%s/blobs/sha256", to);
	int fd = open(src, O_RDONLY | O_CLOEXEC), rc = 0;
	struct oci_blob b;
	struct oci_desc got;
	if (fd < 0) {
		rc = errmsg(err, errlen, -errno, "%s: %s", src, strerror(errno));
		goto out;
	}
	if ((rc = oci_blob_open(&b, blobs, err, errlen)) < 0)
		goto close_fd;
	char *buf = xmalloc(1 << 20);
	ssize_t n;
	while ((n = read(fd, buf, 1 << 20)) > 0 && (rc = oci_blob_write(&b, buf, (size_t)n)) == 0)
		;
	free(buf);
	if (n < 0 || rc) {
		rc = errmsg(err, errlen, n < 0 ? -errno : rc, "%s: %s", src,
			    strerror(n < 0 ? errno : -rc));
		oci_blob_abort(&b);
		goto close_fd;
	}
	rc = oci_blob_commit_as(&b, digest, &got, err, errlen);
	*bytes += got.size;
close_fd:
	close(fd);
out:
	free(src);
	free(blobs);
	return rc;
}

static int put_doc(const char *layout, cJSON *json, struct oci_desc *out, char *err,
		   size_t errlen)
{
	char *text = cJSON_PrintUnformatted(json), *blobs = xasprintf("%s/blobs/sha256", layout);
	int rc = oci_blob_put(blobs, text, strlen(text), out, err, errlen);
	free(text);
	free(blobs);
	return rc;
}

static cJSON *desc_json(const char *media_type, const struct oci_desc *d)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "mediaType", media_type);
	cJSON_AddStringToObject(o, "digest", d->digest);
	cJSON_AddNumberToObject(o, "size", (double)d->size);
	return o;
}

/* Appends copies of the items of src's array key to dst's (made if missing). */
static void append_items(cJSON *dst, const cJSON *src, const char *key)
{
	cJSON *a = cJSON_GetObjectItemCaseSensitive(dst, key);
	if (!a)
		a = cJSON_AddArrayToObject(dst, key);
	const cJSON *it;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(src, key))
		cJSON_AddItemToArray(a, cJSON_Duplicate(it, 1));
}

static void set_item(cJSON *o, const char *key, cJSON *v)
{
	if (cJSON_GetObjectItemCaseSensitive(o, key))
		cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
	else
		cJSON_AddItemToObject(o, key, v);
}

static void set_string(cJSON *o, const char *key, const char *v)
{
	set_item(o, key, cJSON_CreateString(v));
}

/* The image config: the base's, with the function's labels, settings,
 * layers and history after the base's. */
static cJSON *merged_config(const cJSON *base, const cJSON *fn)
{
	cJSON *c = cJSON_Duplicate(base, 1);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(fn, "created");
	if (cJSON_IsString(v))
		set_string(c, "created", v->valuestring);
	cJSON *cc = cJSON_GetObjectItemCaseSensitive(c, "config");
	if (!cc)
		cc = cJSON_AddObjectToObject(c, "config");
	cJSON *labels = cJSON_GetObjectItemCaseSensitive(cc, "Labels");
	if (!labels)
		labels = cJSON_AddObjectToObject(cc, "Labels");
	const cJSON *fc = cJSON_GetObjectItemCaseSensitive(fn, "config"), *l;
	cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(fc, "Labels"))
		set_item(labels, l->string, cJSON_Duplicate(l, 1));
	/* the function's environmentVariables reach instances through the
	 * daemon (fc.yaml), not the daemon's own environment */
	cJSON *rootfs = cJSON_GetObjectItemCaseSensitive(c, "rootfs");
	append_items(rootfs, cJSON_GetObjectItemCaseSensitive(fn, "rootfs"), "diff_ids");
	append_items(c, fn, "history");
	const cJSON *thaw = cJSON_GetObjectItemCaseSensitive(fn, "thaw");
	if (thaw)
		set_item(c, "thaw", cJSON_Duplicate(thaw, 1));
	return c;
}

/* thaw-node's value of key, or NULL (the text is the caller's). */
static char *node_field(const char *text, const char *key)
{
	size_t k = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (!strncmp(l, key, k) && l[k] == ' ')
			return xasprintf("%.*s", (int)strcspn(l + k + 1, "\n"), l + k + 1);
	return NULL;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The snapshot folder's files as a layer at snapshot/<name>/; its
 * annotations from thaw-node. */
static int snapshot_layer(const char *layout, const char *dir, const char *name,
			  const char *image_digest, cJSON **annotations, struct oci_desc *out,
			  size_t *n_files, char *err, size_t errlen)
{
	char *path = xasprintf("%s/thaw-node", dir), *node = NULL;
	int rc = read_text(path, NODE_MAX, &node, err, errlen);
	free(path);
	if (rc)
		return errmsg(err, errlen, rc, "%s: no thaw-node: not a snapshot folder of a daemon "
				  "of this version", dir);
	char *fn = node_field(node, "function");
	if (!fn || strcmp(fn, name)) {
		rc = errmsg(err, errlen, -EINVAL, "%s: a snapshot of function '%s', not '%s'", dir,
			    fn ? fn : "?", name);
		free(fn);
		free(node);
		return rc;
	}
	free(fn);
	static const char *const keys[][2] = {
		{ "kernel", "io.thaw.snapshot.kernel" },
		{ "cpu-flags", "io.thaw.snapshot.cpu-flags" },
		{ "criu", "io.thaw.snapshot.criu-version" },
		{ "thaw", "io.thaw.snapshot.thaw-version" },
		{ "source", "io.thaw.snapshot.source" },
		{ "dir", "io.thaw.snapshot.dir" },
	};
	cJSON *a = cJSON_CreateObject();
	cJSON_AddStringToObject(a, "io.thaw.layer", "snapshot");
	cJSON_AddStringToObject(a, "io.thaw.snapshot.function", name);
	cJSON_AddStringToObject(a, "io.thaw.snapshot.image-digest", image_digest);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char *v = node_field(node, keys[i][0]);
		cJSON_AddStringToObject(a, keys[i][1], v ? v : "");
		free(v);
	}
	free(node);

	DIR *d = opendir(dir);
	if (!d) {
		cJSON_Delete(a);
		return errmsg(err, errlen, -errno, "%s: %s", dir, strerror(errno));
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 100000) {
		/* what criu writes on every restore: not part of the snapshot
		 * (snapshot/manifest.h), and it would change the layer's digest */
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || !strncmp(e->d_name, "stats-", 6) ||
		    (len > 4 && !strcmp(e->d_name + len - 4, ".log")))
			continue;
		if (n == cap)
			names = xrealloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*names));
		names[n++] = xstrdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	struct layer l = { 0 };
	for (size_t i = 0; i < n && !rc; i++) {
		char *src = xasprintf("%s/%s", dir, names[i]);
		struct stat st;
		if (lstat(src, &st) < 0)
			rc = errmsg(err, errlen, -errno, "%s: %s", src, strerror(errno));
		else if (!S_ISREG(st.st_mode))
			rc = errmsg(err, errlen, -EINVAL, "%s: not a regular file", src);
		else {
			char *in = xasprintf(SNAPSHOT_DIR_IN_IMAGE "/%s/%s", name, names[i]);
			layer_add_file(&l, in, src, &st, false);
			/* restores in place check it (daemon/travel.h) */
			l.e[l.n - 1].owner_ro = (st.st_mode & 07777) == 0400;
			free(in);
			(*n_files)++;
		}
		free(src);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (!rc) {
		char *blobs = xasprintf("%s/blobs/sha256", layout);
		const char *sde = getenv("SOURCE_DATE_EPOCH");
		time_t epoch = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : 0;
		layer_finish(&l);
		rc = layer_write(&l, blobs, epoch, out, err, errlen);
		free(blobs);
	}
	layer_fini(&l);
	if (rc)
		cJSON_Delete(a);
	else
		*annotations = a;
	return rc;
}

static int write_index(const char *layout, const cJSON *old_index_entry_annotations,
		       const struct oci_desc *manifest, char *err, size_t errlen)
{
	cJSON *index = cJSON_CreateObject();
	cJSON_AddNumberToObject(index, "schemaVersion", 2);
	cJSON_AddStringToObject(index, "mediaType", OCI_MT_INDEX);
	cJSON *ms = cJSON_AddArrayToObject(index, "manifests");
	cJSON *m = desc_json(OCI_MT_MANIFEST, manifest);
	cJSON_AddItemToObject(m, "annotations", cJSON_Duplicate(old_index_entry_annotations, 1));
	cJSON_AddItemToArray(ms, m);
	char *text = cJSON_PrintUnformatted(index), *path = xasprintf("%s/index.json", layout);
	int rc = oci_write_file(path, text, strlen(text), err, errlen);
	free(text);
	free(path);
	cJSON_Delete(index);
	return rc;
}

int runnable_make(const char *image, const char *base, const char *snapshot, const char *name,
		  struct runnable_result *r, char *err, size_t errlen)
{
	struct doc fm = { 0 }, fc = { 0 }, bm = { 0 }, bc = { 0 };
	cJSON *config = NULL, *manifest = NULL, *snap_ann = NULL;
	const char **keep = NULL;
	int rc;
	memset(r, 0, sizeof(*r));
	if ((rc = read_image(image, &fm, &fc, err, errlen)) < 0 ||
	    (rc = read_image(base, &bm, &bc, err, errlen)) < 0)
		goto out;
	snprintf(r->base_digest, sizeof(r->base_digest), "%s", bm.desc.digest);
	const cJSON *blayers = cJSON_GetObjectItemCaseSensitive(bm.json, "layers"), *l;
	const cJSON *flayers = cJSON_GetObjectItemCaseSensitive(fm.json, "layers");
	if (cJSON_GetArraySize(blayers) + cJSON_GetArraySize(flayers) + 1 > MAX_LAYERS) {
		rc = errmsg(err, errlen, -E2BIG, "%s: too many layers", base);
		goto out;
	}
	cJSON_ArrayForEach(l, blayers) {
		const cJSON *dg = cJSON_GetObjectItemCaseSensitive(l, "digest");
		if ((rc = copy_blob(base, image, cJSON_IsString(dg) ? dg->valuestring : "",
				    &r->base_bytes, err, errlen)) < 0)
			goto out;
		r->n_base_layers++;
	}

	config = merged_config(bc.json, fc.json);
	if ((rc = put_doc(image, config, &r->config, err, errlen)) < 0)
		goto out;
	manifest = cJSON_CreateObject();
	cJSON_AddNumberToObject(manifest, "schemaVersion", 2);
	cJSON_AddStringToObject(manifest, "mediaType", OCI_MT_MANIFEST);
	cJSON_AddItemToObject(manifest, "config", desc_json(OCI_MT_CONFIG, &r->config));
	cJSON *layers = cJSON_AddArrayToObject(manifest, "layers");
	cJSON_ArrayForEach(l, blayers)
		cJSON_AddItemToArray(layers, cJSON_Duplicate(l, 1));
	cJSON_ArrayForEach(l, flayers)
		cJSON_AddItemToArray(layers, cJSON_Duplicate(l, 1));
	cJSON *ann = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(fm.json, "annotations"), 1);
	if (!ann)
		ann = cJSON_CreateObject();
	set_string(ann, "io.thaw.base", bm.desc.digest);
	cJSON_AddItemToObject(manifest, "annotations", ann);
	if ((rc = put_doc(image, manifest, &r->manifest, err, errlen)) < 0)
		goto out;
	snprintf(r->runnable_digest, sizeof(r->runnable_digest), "%s", r->manifest.digest);

	if (snapshot) {
		if ((rc = snapshot_layer(image, snapshot, name, r->runnable_digest, &snap_ann,
					 &r->snapshot_layer, &r->snapshot_files, err, errlen)) < 0)
			goto out;
		r->snapshot = true;
		cJSON *sl = desc_json(OCI_MT_LAYER_TAR, &r->snapshot_layer);
		cJSON_AddItemToObject(sl, "annotations", cJSON_Duplicate(snap_ann, 1));
		cJSON_AddItemToArray(layers, sl);
		cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(
					     cJSON_GetObjectItemCaseSensitive(config, "rootfs"), "diff_ids"),
				     cJSON_CreateString(r->snapshot_layer.digest));
		cJSON *h = cJSON_CreateObject();
		const cJSON *created = cJSON_GetObjectItemCaseSensitive(config, "created");
		cJSON_AddStringToObject(h, "created", cJSON_IsString(created) ? created->valuestring
									      : "1970-01-01T00:00:00Z");
		cJSON_AddStringToObject(h, "created_by", "thaw build --snapshot: the warmed instance");
		cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(config, "history"), h);
		if ((rc = put_doc(image, config, &r->config, err, errlen)) < 0)
			goto out;
		set_item(manifest, "config", desc_json(OCI_MT_CONFIG, &r->config));
		/* the facts on the manifest too: `skopeo inspect --raw` shows them */
		const cJSON *a;
		cJSON_ArrayForEach(a, snap_ann)
			if (strcmp(a->string, "io.thaw.layer"))
				set_item(ann, a->string, cJSON_Duplicate(a, 1));
		if ((rc = put_doc(image, manifest, &r->manifest, err, errlen)) < 0)
			goto out;
	}

	cJSON *entry_ann = cJSON_CreateObject();
	cJSON_AddStringToObject(entry_ann, "io.thaw.function", name);
	cJSON_AddStringToObject(entry_ann, "org.opencontainers.image.ref.name", "latest");
	rc = write_index(image, entry_ann, &r->manifest, err, errlen);
	cJSON_Delete(entry_ann);
	if (rc < 0)
		goto out;

	/* index.json names only this image: the function-only documents go */
	size_t n_keep = 0;
	keep = xmalloc((size_t)(cJSON_GetArraySize(layers) + 2) * sizeof(*keep));
	keep[n_keep++] = r->manifest.digest;
	keep[n_keep++] = r->config.digest;
	cJSON_ArrayForEach(l, layers) {
		const cJSON *dg = cJSON_GetObjectItemCaseSensitive(l, "digest");
		if (cJSON_IsString(dg))
			keep[n_keep++] = dg->valuestring;
	}
	char *blobs = xasprintf("%s/blobs/sha256", image);
	oci_blobs_prune(blobs, keep, n_keep);
	free(blobs);
out:
	free(keep);
	cJSON_Delete(snap_ann);
	cJSON_Delete(manifest);
	cJSON_Delete(config);
	cJSON_Delete(fm.json);
	cJSON_Delete(fc.json);
	cJSON_Delete(bm.json);
	cJSON_Delete(bc.json);
	return rc;
}
