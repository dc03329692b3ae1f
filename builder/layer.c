/* builder/layer.c: reproducible tar layers, streamed into blobs. */
#include "builder/layer.h"
#include "common/errmsg.h"
#include "common/mem.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1u << 20)


static struct layer_entry *push(struct layer *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->e = xrealloc(l->e, l->cap * sizeof(*l->e));
	}
	struct layer_entry *e = &l->e[l->n];
	memset(e, 0, sizeof(*e));
	e->seq = l->n++;
	return e;
}

static int64_t ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

void layer_add_file(struct layer *l, const char *path, const char *src, const struct stat *st,
		    bool exec)
{
	struct layer_entry *e = push(l);
	e->path = xstrdup(path);
	e->src = xstrdup(src);
	e->size = (uint64_t)st->st_size;
	e->exec = exec || (st->st_mode & 0111);
	e->dev = (uint64_t)st->st_dev;
	e->ino = (uint64_t)st->st_ino;
	e->mtime_ns = ns(&st->st_mtim);
	e->ctime_ns = ns(&st->st_ctim);
	if (e->mtime_ns > l->newest_mtime_ns)
		l->newest_mtime_ns = e->mtime_ns;
}

void layer_fingerprint(const struct layer *l, time_t mtime, char out[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		fprintf(stderr, "thaw build: OpenSSL could not start a digest\n");
		abort();
	}
	char line[128];
	int n = snprintf(line, sizeof(line), "thaw-layer-v1 %lld\n", (long long)mtime);
	EVP_DigestUpdate(md, line, (size_t)n);
	for (size_t i = 0; i < l->n; i++) {
		const struct layer_entry *e = &l->e[i];
		EVP_DigestUpdate(md, e->path, strlen(e->path) + 1);
		n = snprintf(line, sizeof(line), "%d %d %d %llu %llu %llu %lld %lld\n", e->dir,
			     e->exec, e->owner_ro,
			     (unsigned long long)e->size, (unsigned long long)e->dev,
			     (unsigned long long)e->ino, (long long)e->mtime_ns,
			     (long long)e->ctime_ns);
		EVP_DigestUpdate(md, line, (size_t)n);
	}
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	EVP_DigestFinal_ex(md, d, &dlen);
	EVP_MD_CTX_free(md);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int by_path(const void *a, const void *b)
{
	const struct layer_entry *x = a, *y = b;
	int c = strcmp(x->path, y->path);
	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void layer_finish(struct layer *l)
{
	/* Every parent folder of every file, repeats dropped below. */
	size_t n = l->n;
	for (size_t i = 0; i < n; i++) {
		for (const char *s = strchr(l->e[i].path, '/'); s; s = strchr(s + 1, '/')) {
			struct layer_entry *e = push(l);
			e->path = xstrndup(l->e[i].path, (size_t)(s - l->e[i].path));
			e->dir = true;
			e->exec = true;
		}
	}
	if (l->n)
		qsort(l->e, l->n, sizeof(*l->e), by_path);
	size_t w = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (w && !strcmp(l->e[w - 1].path, l->e[i].path)) {
			free(l->e[i].path);
			free(l->e[i].src);
			continue;
		}
		l->e[w++] = l->e[i];
	}
	l->n = w;
	l->content_bytes = 0;
	l->n_files = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (!l->e[i].dir) {
			l->content_bytes += l->e[i].size;
			l->n_files++;
		}
	}
	l->sorted = true;
}

bool layer_has(const struct layer *l, const char *path)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l->e[mid].path, path);
		if (!c)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

struct sink {
	struct oci_blob blob;
	int rc;
};

static la_ssize_t sink_write(struct archive *a, void *data, const void *buf, size_t n)
{
	(void)a;
	struct sink *s = data;
	int rc = oci_blob_write(&s->blob, buf, n);
	if (rc < 0) {
		s->rc = rc;
		return -1;
	}
	return (la_ssize_t)n;
}

/* Copies src into the current entry; exactly e->size bytes or an error. */
static int copy_file(struct archive *a, const struct layer_entry *e, char *buf, char *err,
		     size_t errlen)
{
	int fd = open(e->src, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errmsg(err, errlen, -errno, "%s: %s", e->src, strerror(errno));
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	uint64_t left = e->size;
	int rc = 0;
	for (;;) {
		ssize_t r = read(fd, buf, CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = errmsg(err, errlen, -errno, "%s: %s", e->src, strerror(errno));
			break;
		}
		if ((uint64_t)r > left || (r == 0 && left)) {
			rc = errmsg(err, errlen, -EAGAIN, "%s: file changed size while being packaged",
				  e->src);
			break;
		}
		if (r == 0)
			break;
		if (archive_write_data(a, buf, (size_t)r) != r) {
			rc = errmsg(err, errlen, -EIO, "%s: %s", e->path, archive_error_string(a));
			break;
		}
		left -= (uint64_t)r;
	}
	close(fd);
	return rc;
}

int layer_write(struct layer *l, const char *blobs_dir, time_t mtime, struct oci_desc *out,
		char *err, size_t errlen)
{
	struct sink sink = { .rc = 0 };
	int rc = oci_blob_open(&sink.blob, blobs_dir, err, errlen);
	if (rc < 0)
		return rc;
	if (!l->sorted)
		layer_finish(l);

	char *buf = xmalloc(CHUNK);
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();
	if (!a || !ae) {
		rc = errmsg(err, errlen, -ENOMEM, "libarchive: out of memory");
		goto fail_archive;
	}
	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_none(a);
	/* Blocks of 100 tar records of 10240 bytes for few syscalls, the last
	 * padded to 10240: the same bytes as tar's default blocking. */
	archive_write_set_bytes_per_block(a, 100 * 10240);
	archive_write_set_bytes_in_last_block(a, 10240);
	if (archive_write_open2(a, &sink, NULL, sink_write, NULL, NULL) != ARCHIVE_OK) {
		rc = errmsg(err, errlen, -EIO, "libarchive: %s", archive_error_string(a));
		goto fail_archive;
	}
	for (size_t i = 0; i < l->n; i++) {
		const struct layer_entry *e = &l->e[i];
		archive_entry_clear(ae);
		archive_entry_set_pathname(ae, e->path);
		archive_entry_set_filetype(ae, e->dir ? AE_IFDIR : AE_IFREG);
		archive_entry_set_perm(ae, e->exec ? 0755 : e->owner_ro ? 0400 : 0644);
		archive_entry_set_size(ae, e->dir ? 0 : (la_int64_t)e->size);
		archive_entry_set_mtime(ae, mtime, 0);
		archive_entry_set_uid(ae, 0);
		archive_entry_set_gid(ae, 0);
		if (archive_write_header(a, ae) != ARCHIVE_OK) {
			rc = errmsg(err, errlen, sink.rc ? sink.rc : -EIO, "%s: %s", e->path,
				  archive_error_string(a));
			goto fail_archive;
		}
		if (!e->dir && (rc = copy_file(a, e, buf, err, errlen)) < 0)
			goto fail_archive;
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		rc = errmsg(err, errlen, sink.rc ? sink.rc : -EIO, "libarchive: %s",
			  archive_error_string(a));
		goto fail_archive;
	}
	archive_write_free(a);
	archive_entry_free(ae);
	free(buf);
	return oci_blob_commit(&sink.blob, out, err, errlen);

fail_archive:
	if (a)
		archive_write_free(a);
	if (ae)
		archive_entry_free(ae);
	free(buf);
	oci_blob_abort(&sink.blob);
	return rc;
}

void layer_fini(struct layer *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->e[i].path);
		free(l->e[i].src);
	}
	free(l->e);
	memset(l, 0, sizeof(*l));
}
