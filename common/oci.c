/* common/oci.c: content-addressed blobs of an OCI image layout. */
#include "common/oci.h"
#include "common/errmsg.h"
#include "common/fsutil.h"
#include "common/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_PREFIX ".tmp-"



int oci_layout_init(const char *image, char *err, size_t errlen)
{
	char *blobs = xasprintf("%s/blobs/sha256", image);
	int rc = fs_mkdir_p(blobs, 0755);
	if (rc < 0)
		errmsg(err, errlen, rc, "%s: %s", blobs, strerror(-rc));
	free(blobs);
	return rc;
}

static void hex(const unsigned char *md, char out[OCI_DIGEST_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 32; i++) {
		out[7 + 2 * i] = digits[md[i] >> 4];
		out[8 + 2 * i] = digits[md[i] & 15];
	}
	out[OCI_DIGEST_LEN] = '\0';
}

int oci_blob_open(struct oci_blob *b, const char *blobs_dir, char *err, size_t errlen)
{
	memset(b, 0, sizeof(*b));
	b->fd = -1;
	b->blobs_dir = xstrdup(blobs_dir);
	b->tmp = xasprintf("%s/" TMP_PREFIX "XXXXXX", blobs_dir);
	b->fd = mkostemp(b->tmp, O_CLOEXEC);
	if (b->fd < 0) {
		int rc = -errno;
		errmsg(err, errlen, rc, "%s: %s", blobs_dir, strerror(errno));
		free(b->tmp);
		free(b->blobs_dir);
		b->tmp = b->blobs_dir = NULL;
		return rc;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		oci_blob_abort(b);
		return errmsg(err, errlen, -ENOMEM, "SHA-256: OpenSSL could not start a digest");
	}
	b->md = md;
	fchmod(b->fd, 0644);
	return 0;
}

int oci_blob_write(struct oci_blob *b, const void *data, size_t n)
{
	const char *p = data;
	EVP_DigestUpdate(b->md, data, n);
	b->size += n;
	while (n) {
		ssize_t w = write(b->fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void blob_close(struct oci_blob *b)
{
	if (b->fd >= 0)
		close(b->fd);
	EVP_MD_CTX_free(b->md);
	free(b->tmp);
	free(b->blobs_dir);
	b->fd = -1;
	b->md = NULL;
	b->tmp = b->blobs_dir = NULL;
}

void oci_blob_abort(struct oci_blob *b)
{
	if (b->tmp)
		unlink(b->tmp);
	blob_close(b);
}

int oci_blob_commit(struct oci_blob *b, struct oci_desc *out, char *err, size_t errlen)
{
	return oci_blob_commit_as(b, NULL, out, err, errlen);
}

int oci_blob_commit_as(struct oci_blob *b, const char *expect, struct oci_desc *out, char *err,
		       size_t errlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	int rc = 0;
	EVP_DigestFinal_ex(b->md, md, &mdlen);
	hex(md, out->digest);
	out->size = b->size;
	if (expect && strcmp(expect, out->digest)) {
		rc = errmsg(err, errlen, -EBADMSG, "the bytes hash to %s, not %s", out->digest,
				   expect);
		goto fail_unlink;
	}
	if (close(b->fd) < 0) {
		b->fd = -1;
		rc = errmsg(err, errlen, -errno, "%s: %s", b->tmp, strerror(errno));
		goto fail_unlink;
	}
	b->fd = -1;
	char *final = xasprintf("%s/%s", b->blobs_dir, out->digest + 7);
	struct stat st;
	if (stat(final, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == out->size) {
		/* Same digest already stored: keep the old file. */
		free(final);
		goto fail_unlink;
	}
	if (rename(b->tmp, final) < 0) {
		rc = errmsg(err, errlen, -errno, "%s: %s", final, strerror(errno));
		free(final);
		goto fail_unlink;
	}
	free(final);
	blob_close(b);
	return 0;
fail_unlink:
	unlink(b->tmp);
	blob_close(b);
	return rc;
}

int oci_blob_put(const char *blobs_dir, const void *data, size_t n, struct oci_desc *out,
		 char *err, size_t errlen)
{
	struct oci_blob b;
	int rc = oci_blob_open(&b, blobs_dir, err, errlen);
	if (rc < 0)
		return rc;
	rc = oci_blob_write(&b, data, n);
	if (rc < 0) {
		errmsg(err, errlen, rc, "%s: %s", b.tmp, strerror(-rc));
		oci_blob_abort(&b);
		return rc;
	}
	return oci_blob_commit(&b, out, err, errlen);
}

bool oci_digest_valid(const char *s)
{
	if (strncmp(s, "sha256:", 7) || strlen(s) != OCI_DIGEST_LEN)
		return false;
	for (s += 7; *s; s++)
		if (!strchr("0123456789abcdef", *s))
			return false;
	return true;
}

int oci_file_digest(const char *path, struct oci_desc *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		close(fd);
		return -ENOMEM;
	}
	size_t cap = 1 << 20;
	char *buf = xmalloc(cap);
	int rc = 0;
	out->size = 0;
	for (;;) {
		ssize_t r = read(fd, buf, cap);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			break;
		}
		if (r == 0)
			break;
		EVP_DigestUpdate(md, buf, (size_t)r);
		out->size += (uint64_t)r;
	}
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	EVP_DigestFinal_ex(md, d, &dlen);
	hex(d, out->digest);
	EVP_MD_CTX_free(md);
	free(buf);
	close(fd);
	return rc;
}

int oci_write_file(const char *path, const void *data, size_t n, char *err, size_t errlen)
{
	char *tmp = xasprintf("%s.tmp-XXXXXX", path);
	const char *p = data;
	int rc = 0;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = errmsg(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto out_free;
	}
	fchmod(fd, 0644);
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = errmsg(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
			goto out_unlink;
		}
		p += w;
		n -= (size_t)w;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = errmsg(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = errmsg(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto out_unlink;
	}
	free(tmp);
	return 0;
out_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out_free:
	free(tmp);
	return rc;
}

static int is_hex64(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i == 64;
}

int oci_blobs_prune(const char *blobs_dir, const char *const *keep, size_t n_keep)
{
	DIR *d = opendir(blobs_dir);
	if (!d)
		return 0;
	int removed = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		int stale = !strncmp(n, TMP_PREFIX, strlen(TMP_PREFIX));
		if (!stale && is_hex64(n)) {
			stale = 1;
			for (size_t i = 0; i < n_keep; i++)
				if (!strcmp(keep[i] + 7, n))
					stale = 0;
		}
		if (stale && unlinkat(dirfd(d), n, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}
