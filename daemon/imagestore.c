#define LOG_PREFIX "images: "
#include "daemon/imagestore.h"
#include "common/errmsg.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/mem.h"
#include "daemon/server.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_PREFIX ".tmp-"
#define MAX_ENTRIES 100000 /* per layer, as thaw build allows */
#define MAX_LAYERS 8

static char root[PATH_MAX / 2]; /* STATE/images */

/* Paths under root: bounded by construction (root is under PATH_MAX / 2,
 * names under it under 1200 bytes), so they always fit. */
static void pathf(char out[PATH_MAX], const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pathf(char out[PATH_MAX], const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
}

/* Removes what a daemon that died left half-done in dir. */
static void drop_temporaries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX))) {
			char path[PATH_MAX];
			pathf(path, "%s/%s", dir, e->d_name);
			if (unlink(path) < 0)
				fs_rm_rf(path);
		}
	closedir(d);
}

int imagestore_init(const char *state_dir)
{
	static const char *const sub[] = {"blobs/sha256", "layers", "functions"};
	if (strlen(state_dir) + 8 > sizeof(root)) {
		pr_err("state dir %s: path too long", state_dir);
		return -ENAMETOOLONG;
	}
	snprintf(root, sizeof(root), "%s/images", state_dir);
	for (size_t i = 0; i < 3; i++) {
		char path[PATH_MAX];
		pathf(path, "%s/%s", root, sub[i]);
		int rc = fs_mkdir_p(path, 0755);
		if (rc < 0) {
			pr_err("%s: %s", path, strerror(-rc));
			return rc;
		}
		drop_temporaries(path);
	}
	return 0;
}

static void blob_path(const char *digest, char *out, size_t len)
{
	(void)len;
	pathf(out, "%s/blobs/sha256/%s", root, digest + 7);
}

static void layer_path(const char *digest, char *out, size_t len)
{
	(void)len;
	pathf(out, "%s/layers/%s", root, digest + 7);
}

bool imagestore_has(const char *digest, uint64_t *size)
{
	char path[PATH_MAX];
	struct stat st;
	if (!oci_digest_valid(digest))
		return false;
	blob_path(digest, path, sizeof(path));
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
		if (size)
			*size = (uint64_t)st.st_size;
		return true;
	}
	/* an unpacked layer remembers its tar's size */
	layer_path(digest, path, sizeof(path));
	strncat(path, "/size", sizeof(path) - strlen(path) - 1);
	FILE *f = fopen(path, "re");
	unsigned long long n = 0;
	bool ok = f && fscanf(f, "%llu", &n) == 1;
	if (f)
		fclose(f);
	if (ok && size)
		*size = n;
	return ok;
}

int imagestore_upload_begin(struct imagestore_upload *u, const char *digest, char *err,
			    size_t errlen)
{
	memset(u, 0, sizeof(*u));
	if (!oci_digest_valid(digest))
		return errmsg(err, errlen, -EINVAL,
				     "expected a digest sha256:<64 hex digits>, got '%s'", digest);
	snprintf(u->digest, sizeof(u->digest), "%s", digest);
	char dir[PATH_MAX];
	pathf(dir, "%s/blobs/sha256", root);
	return oci_blob_open(&u->blob, dir, err, errlen);
}

/* Bytes arrive a socket buffer at a time; page-cache writes of 1 MiB cost
 * far less per byte than of 16 KiB. */
#define UPLOAD_WRITE (1u << 20)

static int flush(struct imagestore_upload *u)
{
	int rc = u->len ? oci_blob_write(&u->blob, u->buf, u->len) : 0;
	u->len = 0;
	return rc;
}

int imagestore_upload_write(struct imagestore_upload *u, const void *data, size_t n)
{
	if (!u->buf)
		u->buf = xmalloc(UPLOAD_WRITE);
	while (n) {
		size_t take = n < UPLOAD_WRITE - u->len ? n : UPLOAD_WRITE - u->len;
		memcpy(u->buf + u->len, data, take);
		u->len += take;
		data = (const char *)data + take;
		n -= take;
		int rc = u->len == UPLOAD_WRITE ? flush(u) : 0;
		if (rc)
			return rc;
	}
	return 0;
}

int imagestore_upload_commit(struct imagestore_upload *u, uint64_t *size, char *err, size_t errlen)
{
	struct oci_desc d;
	int rc = flush(u);
	free(u->buf);
	u->buf = NULL;
	if (rc) {
		oci_blob_abort(&u->blob);
		return errmsg(err, errlen, rc, "storing the blob: %s", strerror(-rc));
	}
	rc = oci_blob_commit_as(&u->blob, u->digest, &d, err, errlen);
	if (!rc && size)
		*size = d.size;
	return rc;
}

void imagestore_upload_abort(struct imagestore_upload *u)
{
	free(u->buf);
	u->buf = NULL;
	oci_blob_abort(&u->blob);
}

/* Reads a small blob whole and checks it against its digest. */
static int read_doc(const char *digest, const char *what, cJSON **out, char *err, size_t errlen)
{
	char path[PATH_MAX];
	blob_path(digest, path, sizeof(path));
	struct oci_desc d;
	int rc = oci_file_digest(path, &d);
	if (rc == -ENOENT)
		return errmsg(err, errlen, rc, "%s %s was not uploaded", what, digest);
	if (rc)
		return errmsg(err, errlen, rc, "%s %s: %s", what, digest, strerror(-rc));
	if (strcmp(d.digest, digest))
		return errmsg(err, errlen, -EBADMSG, "%s %s: stored bytes hash to %s", what,
				     digest, d.digest);
	if (d.size > IMAGESTORE_MAX_DOC)
		return errmsg(err, errlen, -EFBIG,
				     "%s %s: %llu bytes, more than a %s can be", what, digest,
				     (unsigned long long)d.size, what);
	char *text = xmalloc(d.size + 1);
	FILE *f = fopen(path, "re");
	size_t n = f ? fread(text, 1, d.size, f) : 0;
	if (f)
		fclose(f);
	*out = n == d.size ? cJSON_ParseWithLength(text, n) : NULL;
	free(text);
	if (!*out || !cJSON_IsObject(*out)) {
		cJSON_Delete(*out);
		return errmsg(err, errlen, -EINVAL, "%s %s: not a JSON object", what,
				     digest);
	}
	return 0;
}

static const char *str_at(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* A descriptor's digest when it has the media type wanted, else NULL. */
static const char *desc_digest(const cJSON *desc, const char *media_type)
{
	const char *d = str_at(desc, "digest"), *mt = str_at(desc, "mediaType");
	return d && mt && oci_digest_valid(d) && !strcmp(mt, media_type) ? d : NULL;
}

static int parse_manifest(struct imagestore_image *img, char *config_digest, char *err,
			  size_t errlen)
{
	cJSON *m;
	int rc = read_doc(img->digest, "manifest", &m, err, errlen);
	if (rc)
		return rc;
	const cJSON *layers = cJSON_GetObjectItemCaseSensitive(m, "layers"), *l;
	const char *cfg = desc_digest(cJSON_GetObjectItemCaseSensitive(m, "config"), OCI_MT_CONFIG);
	const cJSON *schema = cJSON_GetObjectItemCaseSensitive(m, "schemaVersion");
	int n = cJSON_GetArraySize(layers);
	/* exactly 2: valueint would read 2.5 as 2 */
	if (!cJSON_IsNumber(schema) || schema->valuedouble != 2 || !cfg || !cJSON_IsArray(layers) ||
	    n < 1 || n > MAX_LAYERS) {
		cJSON_Delete(m);
		return errmsg(
		    err, errlen, -EINVAL,
		    "manifest %s: expected schemaVersion 2, a config and 1 to %d layers",
		    img->digest, MAX_LAYERS);
	}
	snprintf(config_digest, OCI_DIGEST_LEN + 1, "%s", cfg);
	img->n_layers = 0;
	cJSON_ArrayForEach(l, layers)
	{
		const char *d = desc_digest(l, OCI_MT_LAYER_TAR);
		if (!d) {
			cJSON_Delete(m);
			return errmsg(err, errlen, -EINVAL,
					     "manifest %s: layer %u: expected an uncompressed tar "
					     "(%s) with a sha256 digest",
					     img->digest, img->n_layers + 1, OCI_MT_LAYER_TAR);
		}
		const char *kind =
		    str_at(cJSON_GetObjectItemCaseSensitive(l, "annotations"), "io.thaw.layer");
		snprintf(img->layers[img->n_layers], OCI_DIGEST_LEN + 1, "%s", d);
		snprintf(img->layer_kinds[img->n_layers], sizeof(img->layer_kinds[0]), "%s",
			 kind ? kind : "");
		img->n_layers++;
	}
	cJSON_Delete(m);
	return 0;
}

/* The image config's thaw.name and thaw.handler (relative to /function). */
static int parse_config(const char *digest, char **name, char **handler, char *err, size_t errlen)
{
	cJSON *c;
	int rc = read_doc(digest, "config", &c, err, errlen);
	if (rc)
		return rc;
	const cJSON *thaw = cJSON_GetObjectItemCaseSensitive(c, "thaw");
	const char *n = str_at(thaw, "name"), *h = str_at(thaw, "handler");
	if (!n || !h || !*h || h[0] == '/' || strstr(h, "..")) {
		cJSON_Delete(c);
		return errmsg(err, errlen, -EINVAL,
				     "config %s: expected thaw.name and thaw.handler (a path "
				     "inside /function), as thaw build writes",
				     digest);
	}
	*name = xstrdup(n);
	*handler = xstrdup(h);
	cJSON_Delete(c);
	return 0;
}

/* A layer entry's path: "function" or under "function/", plain segments
 * only (no '', '.', '..', no whiteout). */
static bool entry_path_ok(const char *p)
{
	size_t len = strlen(p);
	while (len && p[len - 1] == '/')
		len--;
	if (len < 8 || len > 1024 || strncmp(p, "function", 8) || (len > 8 && p[8] != '/'))
		return false;
	const char *s = p, *end = p + len;
	while (s < end) {
		const char *slash = memchr(s, '/', (size_t)(end - s));
		const char *e = slash ? slash : end;
		size_t n = (size_t)(e - s);
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && !memcmp(s, "..", 2)) ||
		    (n >= 4 && !memcmp(s, ".wh.", 4)) || memchr(s, '\0', n))
			return false;
		s = e + 1;
	}
	return true;
}

static int parent_mkdir(char *path)
{
	char *slash = strrchr(path, '/');
	*slash = '\0';
	int rc = fs_mkdir_p(path, 0755);
	*slash = '/';
	return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Whether the 512 bytes before `at` in the tar are the ustar header of a
 * plain file of `size` bytes (magic, checksum, type, size), i.e. the file's
 * bytes start at `at` in one run. */
static bool data_starts_at(int tar, int64_t at, int64_t size)
{
	unsigned char h[512];
	if (at < 512 || at % 512 || pread(tar, h, 512, at - 512) != 512 ||
	    memcmp(h + 257, "ustar", 5) || (h[156] != '0' && h[156] != '\0'))
		return false;
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += i >= 148 && i < 156 ? ' ' : h[i];
	char field[13];
	memcpy(field, h + 148, 8);
	field[8] = '\0';
	if (strtoul(field, NULL, 8) != sum)
		return false;
	if (h[124] & 0x80)
		return true; /* base-256 size (8 GiB and more): pax gave the size */
	memcpy(field, h + 124, 12);
	field[12] = '\0';
	return (int64_t)strtoull(field, NULL, 8) == size;
}

/* An uncompressed tar keeps a plain file's bytes in one run: when the
 * header before it checks out, the kernel copies them (copy_file_range:
 * twice as fast as reading them through libarchive here, measured on a
 * 1 GiB layer); otherwise (pax headers of other layouts) libarchive reads.
 * Returns 0, or -errno with *why set to words for the message (NULL: the
 * errno's own text). */
static int copy_entry_data(struct archive *a, struct archive_entry *e, int tar, int fd,
			   const char **why)
{
	int64_t size = archive_entry_size(e), at = archive_filter_bytes(a, 0);
	*why = NULL;
	if (size > 0 && data_starts_at(tar, at, size)) {
		loff_t in = at;
		int64_t left = size;
		while (left > 0) {
			ssize_t n = copy_file_range(tar, &in, fd, NULL, (size_t)left, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0) {
				*why = "truncated: the layer ends inside its data";
				return -EIO;
			}
			left -= n;
		}
		if (archive_read_data_skip(a) == ARCHIVE_OK)
			return 0;
		*why = archive_error_string(a) ? archive_error_string(a) : "truncated";
		return -EIO;
	}
	/* Blocks must follow each other: a gap is a hole, which only sparse
	 * entries have (refused before this); bounded by the entry's size. */
	int64_t done = 0;
	for (;;) {
		const void *block;
		size_t n;
		la_int64_t off;
		int r = archive_read_data_block(a, &block, &n, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_OK) {
			*why = archive_error_string(a) ? archive_error_string(a) : "truncated";
			return -EIO;
		}
		if (off != done || (int64_t)n > size - done) {
			*why = "its data has holes or runs past its size (sparse?)";
			return -EINVAL;
		}
		int rc = write_all(fd, block, n);
		if (rc)
			return rc;
		done += (int64_t)n;
	}
	if (done != size) {
		*why = "truncated: the layer ends inside its data";
		return -EIO;
	}
	return 0;
}

/* Words for a failed mkdir/open of an entry: an earlier entry of the same
 * name (or of a parent's name) is of the other kind. Never the temporary
 * path the layer is unpacked under. */
static const char *clash(int rc, const char *otherwise)
{
	if (rc == -ENOTDIR)
		return "a folder above it is a file (an earlier entry)";
	if (rc == -EEXIST)
		return otherwise;
	return strerror(-rc);
}

/* One folder or regular file of the layer, written under dir. */
static int extract_entry(struct archive *a, struct archive_entry *e, int tar, const char *dir,
			 const char *digest, char *err, size_t errlen)
{
	const char *p = archive_entry_pathname(e), *why;
	mode_t type = archive_entry_filetype(e);
	if (!p || !entry_path_ok(p))
		return errmsg(err, errlen, -EPERM,
				     "layer %s: entry '%s': only paths under function/ "
				     "without '..', '.' or whiteouts",
				     digest, p ? p : "");
	if (type != AE_IFDIR && type != AE_IFREG)
		return errmsg(err, errlen, -EPERM,
				     "layer %s: entry '%s': only folders and regular files "
				     "(no links, devices, fifos)",
				     digest, p);
	/* GNU and pax sparse entries: holes would be written out as zeros (a
	 * small upload filling the disk), a trailing hole dropped */
	if (archive_entry_sparse_count(e) > 0)
		return errmsg(err, errlen, -EINVAL,
				     "layer %s: entry '%s': a sparse file (GNU or pax sparse "
				     "format); only plain files, as thaw build writes",
				     digest, p);
	char target[PATH_MAX];
	pathf(target, "%s/%s", dir, p);
	size_t tl = strlen(target);
	while (tl && target[tl - 1] == '/')
		target[--tl] = '\0';
	int rc = parent_mkdir(target);
	if (rc < 0)
		return errmsg(err, errlen, rc, "layer %s: entry '%s': %s", digest, p,
				     clash(rc, "a folder above it is a file (an earlier entry)"));
	if (type == AE_IFDIR) {
		struct stat st;
		rc = mkdir(target, 0755) < 0 ? -errno : 0;
		if (!rc || (rc == -EEXIST && lstat(target, &st) == 0 && S_ISDIR(st.st_mode)))
			return 0;
		return errmsg(err, errlen, rc, "layer %s: entry '%s': %s", digest, p,
				     clash(rc, "a folder where an earlier entry made a file"));
	}
	mode_t mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
	int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		rc = -errno;
		return errmsg(err, errlen, rc, "layer %s: entry '%s': %s", digest, p,
				     clash(rc, "appears twice (or a file where an earlier entry "
					       "made a folder)"));
	}
	rc = copy_entry_data(a, e, tar, fd, &why);
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		errmsg(err, errlen, rc, "layer %s: entry '%s': %s", digest, p,
			      why ? why : strerror(-rc));
	return rc;
}

/* Extracts the tar at blob into dir (fresh), refusing anything but folders
 * and regular files under function/. Messages name the layer and entry. */
static int extract(const char *blob, const char *dir, const char *digest, char *err, size_t errlen)
{
	int tar = open(blob, O_RDONLY | O_CLOEXEC);
	if (tar < 0)
		return errmsg(err, errlen, -errno, "layer %s: %s", digest, strerror(errno));
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	int rc = 0, r = ARCHIVE_FATAL;
	struct archive_entry *e;
	unsigned n = 0;
	/* pread and copy_file_range leave the file offset to libarchive */
	if (archive_read_open_fd(a, tar, 1 << 20) == ARCHIVE_OK) {
		while (!rc && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
			if (++n > MAX_ENTRIES)
				rc = errmsg(err, errlen, -E2BIG,
						   "layer %s: more than %d entries", digest,
						   MAX_ENTRIES);
			else
				rc = extract_entry(a, e, tar, dir, digest, err, errlen);
		}
	}
	if (!rc && r != ARCHIVE_EOF)
		rc = errmsg(err, errlen, -EIO, "layer %s: not a readable tar: %s", digest,
				   archive_error_string(a) ? archive_error_string(a)
							   : "truncated");
	archive_read_free(a);
	close(tar);
	return rc;
}

/* Moves a finished temporary folder to its place; when another deploy of
 * the same digest got there first, ours goes. */
static int publish(const char *tmp, const char *final, char *err, size_t errlen)
{
	if (rename(tmp, final) == 0)
		return 0;
	int e = errno;
	fs_rm_rf(tmp);
	struct stat st;
	if ((e == EEXIST || e == ENOTEMPTY) && stat(final, &st) == 0)
		return 0;
	return errmsg(err, errlen, -e, "%s: %s", final, strerror(e));
}

static int unpack_layer(const char *digest, char *err, size_t errlen)
{
	char final[PATH_MAX], blob[PATH_MAX], tmp[PATH_MAX];
	struct stat st;
	layer_path(digest, final, sizeof(final));
	blob_path(digest, blob, sizeof(blob));
	if (stat(final, &st) == 0) {
		unlink(blob); /* uploaded again after it was unpacked */
		return 0;
	}
	if (stat(blob, &st) < 0)
		return errmsg(err, errlen, -ENOENT, "layer %s was not uploaded", digest);
	pathf(tmp, "%s/layers/" TMP_PREFIX "%.12sXXXXXX", root, digest + 7);
	if (!mkdtemp(tmp))
		return errmsg(err, errlen, -errno, "layer %s: a folder to unpack it: %s",
				     digest, strerror(errno));
	int rc = extract(blob, tmp, digest, err, errlen);
	if (!rc) {
		char size[PATH_MAX], text[32];
		pathf(size, "%s/size", tmp);
		int n = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)st.st_size);
		rc = oci_write_file(size, text, (size_t)n, err, errlen);
	}
	if (rc) {
		fs_rm_rf(tmp);
		return rc;
	}
	rc = publish(tmp, final, err, errlen);
	if (!rc)
		unlink(blob); /* the unpacked files are the one copy kept */
	return rc;
}

/* nftw has no context argument: the composition under way on this thread. */
static _Thread_local struct {
	size_t src_len;
	const char *dst;
	const char *layer; /* digest, for messages */
	char *err;
	size_t errlen;
} compose_ctx;

/* A layer's path, named as in the tar ("function/..."), never the folders
 * the daemon composes under. */
static int link_fail(const char *path, int rc, const char *why)
{
	return errmsg(compose_ctx.err, compose_ctx.errlen, rc, "layer %s: 'function%s': %s",
			     compose_ctx.layer, path + compose_ctx.src_len,
			     why ? why : strerror(-rc));
}

static int link_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	char dst[PATH_MAX];
	struct stat was;
	pathf(dst, "%s%s", compose_ctx.dst, path + compose_ctx.src_len);
	if (type == FTW_D) {
		int e = mkdir(dst, 0755) < 0 ? errno : 0;
		if (!e || (e == EEXIST && lstat(dst, &was) == 0 && S_ISDIR(was.st_mode)))
			return 0;
		return link_fail(path, -e,
				 e == EEXIST ? "a folder here, a file in an earlier layer" : NULL);
	}
	if (type != FTW_F)
		return link_fail(path, -EPERM, "not a file");
	/* a later layer's file replaces an earlier one's, not a folder */
	if (lstat(dst, &was) == 0 && S_ISDIR(was.st_mode))
		return link_fail(path, -EEXIST, "a file here, a folder in an earlier layer");
	if ((unlink(dst) < 0 && errno != ENOENT) || link(path, dst) < 0)
		return link_fail(path, -errno, NULL);
	return 0;
}

/* functions/<hex>/: every layer's files hard-linked, in layer order. */
static int compose(const struct imagestore_image *img, char *fn_root, size_t len, char *err,
		   size_t errlen)
{
	struct stat st;
	(void)len;
	pathf(fn_root, "%s/functions/%s", root, img->digest + 7);
	if (stat(fn_root, &st) == 0)
		return 0;
	char tmp[PATH_MAX];
	pathf(tmp, "%s/functions/" TMP_PREFIX "%.12sXXXXXX", root, img->digest + 7);
	if (!mkdtemp(tmp))
		return errmsg(err, errlen, -errno, "image %s: a folder for it: %s",
				     img->digest, strerror(errno));
	int rc = 0;
	for (unsigned i = 0; !rc && i < img->n_layers; i++) {
		char src[PATH_MAX], dst[PATH_MAX];
		layer_path(img->layers[i], src, sizeof(src));
		strncat(src, "/function", sizeof(src) - strlen(src) - 1);
		pathf(dst, "%s/function", tmp);
		if (stat(src, &st) < 0)
			continue; /* a layer of nothing but "function/" is possible */
		compose_ctx.src_len = strlen(src);
		compose_ctx.dst = dst;
		compose_ctx.layer = img->layers[i];
		compose_ctx.err = err;
		compose_ctx.errlen = errlen;
		if (errlen)
			err[0] = '\0';
		rc = nftw(src, link_one, 16, FTW_PHYS);
		if (rc > 0 || (rc < 0 && errlen && !*err))
			rc = errmsg(err, errlen, -EIO, "layer %s: cannot walk its files",
					   img->layers[i]);
	}
	if (rc) {
		fs_rm_rf(tmp);
		return rc;
	}
	return publish(tmp, fn_root, err, errlen);
}

int imagestore_load(const char *digest, struct config *cfg, struct imagestore_image *img, char *err,
		    size_t errlen)
{
	memset(img, 0, sizeof(*img));
	memset(cfg, 0, sizeof(*cfg));
	if (!oci_digest_valid(digest))
		return errmsg(err, errlen, -EINVAL,
				     "expected an image digest sha256:<64 hex digits>, got '%s'",
				     digest);
	snprintf(img->digest, sizeof(img->digest), "%s", digest);
	char config_digest[OCI_DIGEST_LEN + 1], fn_root[PATH_MAX], path[PATH_MAX];
	char *name = NULL, *handler = NULL;
	int rc = parse_manifest(img, config_digest, err, errlen);
	if (!rc)
		rc = parse_config(config_digest, &name, &handler, err, errlen);
	for (unsigned i = 0; !rc && i < img->n_layers; i++)
		rc = unpack_layer(img->layers[i], err, errlen);
	bool composed = false;
	if (!rc)
		composed = !(rc = compose(img, fn_root, sizeof(fn_root), err, errlen));
	if (!rc) {
		pathf(path, "%s/function/fc.yaml", fn_root);
		rc = config_load(path, cfg, err, errlen);
	}
	if (!rc && strcmp(cfg->name, name))
		rc =
		    errmsg(err, errlen, -EINVAL, "image %s: config names %s, its fc.yaml %s",
				  digest, name, cfg->name);
	struct stat st;
	if (!rc) {
		pathf(path, "%s/function/%s", fn_root, handler);
		/* a bad image, not a blob to upload: 400, not 404 */
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			rc = errmsg(err, errlen, -EINVAL,
					   "image %s: handler %s is not in the image", digest,
					   handler);
	}
	if (!rc) {
		free(cfg->handler);
		cfg->handler = handler;
		handler = NULL;
	} else if (cfg->name) {
		config_free(cfg);
	}
	/* an image refused after its folder was made never runs: no folder
	 * waits for the next start's clean-up (same digest, same refusal) */
	if (rc && composed)
		fs_rm_rf(fn_root);
	free(name);
	free(handler);
	return rc;
}

static bool in(const char *hex, char *const *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(set[i] + 7, hex))
			return true;
	return false;
}

/* Removes the entries of dir (blobs, layers or image folders) whose digest
 * is not in keep; returns how many went. */
static unsigned sweep(const char *dir, char *const *keep, size_t n_keep, bool folders)
{
	DIR *d = opendir(dir);
	unsigned gone = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[PATH_MAX];
		if (e->d_name[0] == '.' || in(e->d_name, keep, n_keep))
			continue;
		pathf(path, "%s/%s", dir, e->d_name);
		if (folders)
			fs_rm_rf(path);
		else
			unlink(path);
		gone++;
	}
	if (d)
		closedir(d);
	return gone;
}

void imagestore_gc(const char *const *images, size_t n)
{
	/* what the images need: themselves, their configs and layers */
	char **keep = xcalloc(n * (MAX_LAYERS + 2) + 1, sizeof(*keep));
	size_t n_keep = 0;
	for (size_t i = 0; i < n; i++) {
		struct imagestore_image img = { 0 };
		char cfg[OCI_DIGEST_LEN + 1], err[512];
		snprintf(img.digest, sizeof(img.digest), "%s", images[i]);
		keep[n_keep++] = xstrdup(images[i]);
		if (parse_manifest(&img, cfg, err, sizeof(err)))
			continue;
		keep[n_keep++] = xstrdup(cfg);
		for (unsigned l = 0; l < img.n_layers; l++)
			keep[n_keep++] = xstrdup(img.layers[l]);
	}
	char dir[PATH_MAX];
	pathf(dir, "%s/functions", root);
	unsigned fns = sweep(dir, keep, n_keep, true);
	pathf(dir, "%s/layers", root);
	unsigned layers = sweep(dir, keep, n_keep, true);
	pathf(dir, "%s/blobs/sha256", root);
	unsigned blobs = sweep(dir, keep, n_keep, false);
	if (fns || layers || blobs)
		pr_info("removed what no deployed version uses: %u image folder(s), %u layer(s), %u blob(s)",
			fns, layers, blobs);
	for (size_t i = 0; i < n_keep; i++)
		free(keep[i]);
	free(keep);
}
