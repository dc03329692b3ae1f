#define LOG_PREFIX "manifest: "
#include "snapshot/manifest.h"
#include "common/log.h"
#include "common/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEX_LEN 64
#define MAX_FILES 100000 /* bound on the loop over a folder's entries */
#define NAME_MAX_LEN 255

/* Not part of the snapshot: the manifest, its temp file, what CRIU adds on
 * each run (stats-restore, logs) and restore pidfiles. */
static int skipped(const char *name)
{
	size_t n = strlen(name);
	return name[0] == '.' || !strncmp(name, MANIFEST_NAME, strlen(MANIFEST_NAME)) ||
	       !strncmp(name, "stats-", 6) || (n > 4 && !strcmp(name + n - 4, ".log"));
}

/* SHA-256 of what fd holds from offset 0 as hex, and its size. */
static int hash_fd(int fd, char hex[HEX_LEN + 1], uint64_t *size)
{
	int ret = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	size_t cap = 1u << 20;
	char *chunk = xmalloc(cap);
	*size = 0;
	for (;;) {
		ssize_t n = pread(fd, chunk, cap, (off_t)*size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto free_chunk;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(ctx, chunk, (size_t)n);
		*size += (uint64_t)n;
	}
	unsigned char md[32];
	unsigned mdlen = 0;
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
free_chunk:
	free(chunk);
	EVP_MD_CTX_free(ctx);
	return ret;
}

/* SHA-256 of dir/name (a regular file, not a link) as hex, and its size. */
static int hash_file(int dirfd, const char *name, char hex[HEX_LEN + 1], uint64_t *size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	int ret = hash_fd(fd, hex, size);
	close(fd);
	return ret;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the regular files (or links to one) that belong to the
 * snapshot. */
static int list_files(const char *dir, char ***names, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	size_t cap = 64;
	*names = xmalloc(cap * sizeof(char *));
	*n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && *n < MAX_FILES) {
		if (de->d_type != DT_REG && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
			continue;
		if (skipped(de->d_name))
			continue;
		struct stat st;
		/* a link counts as the file it names (a linked snapshot, travel.h) */
		if (fstatat(dirfd(d), de->d_name, &st, 0) || !S_ISREG(st.st_mode))
			continue;
		if (*n == cap) {
			cap *= 2;
			*names = xrealloc(*names, cap * sizeof(char *));
		}
		(*names)[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	qsort(*names, *n, sizeof(char *), cmp_names);
	return 0;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int manifest_write(const char *dir, uint64_t *total_bytes, uint32_t *n_files)
{
	char **names = NULL;
	size_t n = 0;
	int ret = list_files(dir, &names, &n);
	if (ret) {
		pr_err("cannot list %s: %s", dir, strerror(-ret));
		return ret;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		ret = -errno;
		pr_perror("open %s", dir);
		goto free_names;
	}
	char *tmp = xasprintf("%s/%s.tmp", dir, MANIFEST_NAME);
	char *final = xasprintf("%s/%s", dir, MANIFEST_NAME);
	FILE *f = fopen(tmp, "we");
	if (!f) {
		ret = -errno;
		pr_perror("create %s", tmp);
		goto free_paths;
	}
	fprintf(f, "thaw-manifest v1\n");
	*total_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		char hex[HEX_LEN + 1];
		uint64_t size;
		ret = hash_file(dfd, names[i], hex, &size);
		if (ret) {
			pr_err("hash %s/%s: %s", dir, names[i], strerror(-ret));
			goto close_f;
		}
		fprintf(f, "%s %" PRIu64 " %s\n", hex, size, names[i]);
		*total_bytes += size;
	}
	fprintf(f, "end %zu\n", n);
	if (fflush(f) || fsync(fileno(f))) {
		ret = -errno;
		pr_perror("write %s", tmp);
		goto close_f;
	}
	ret = fclose(f) ? -errno : 0;
	f = NULL;
	if (!ret && rename(tmp, final))
		ret = -errno;
	if (ret)
		pr_err("write %s: %s", final, strerror(-ret));
	*n_files = (uint32_t)n;
close_f:
	if (f)
		fclose(f);
	if (ret)
		unlink(tmp);
free_paths:
	free(tmp);
	free(final);
	close(dfd);
free_names:
	free_names(names, n);
	return ret;
}

/* Parses "<hex> <size> <name>\n"; returns 0 or -1. */
static int parse_entry(char *line, char **hex, uint64_t *size, char **name)
{
	char *sp = strchr(line, ' ');
	if (!sp || sp - line != HEX_LEN)
		return -1;
	*sp = '\0';
	*hex = line;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(sp + 1, &end, 10);
	if (errno || end == sp + 1 || *end != ' ')
		return -1;
	*size = v;
	*name = end + 1;
	size_t n = strlen(*name);
	if (n && (*name)[n - 1] == '\n')
		(*name)[--n] = '\0';
	if (!n || n > NAME_MAX_LEN || strchr(*name, '/') || (*name)[0] == '.')
		return -1;
	return 0;
}

static int is_listed(char **listed, size_t n_listed, const char *name)
{
	return bsearch(&name, listed, n_listed, sizeof(char *), cmp_names) != NULL;
}

/* Opens dir/name for reading (through a link: a linked snapshot,
 * travel.h); it must be a regular file. Returns the fd or -errno. */
static int open_listed(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EBADMSG;
	}
	return fd;
}

static void add_file(struct manifest_files *m, size_t *cap, const char *name, int fd,
		     uint64_t size)
{
	if (m->n == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		m->f = xrealloc(m->f, *cap * sizeof(*m->f));
	}
	m->f[m->n++] = (struct manifest_file){ .name = xstrdup(name), .fd = fd, .size = size };
}

/* Checks one manifest line's file through an fd it keeps in m. */
static int check_line(int dfd, const char *dir, char *line, struct manifest_files *m,
		      size_t *cap, char *why, size_t len)
{
	char *hex, *name, got[HEX_LEN + 1];
	uint64_t size, got_size;
	if (parse_entry(line, &hex, &size, &name)) {
		snprintf(why, len, "%s/%s: malformed line %zu", dir, MANIFEST_NAME, m->n + 2);
		return -EBADMSG;
	}
	int fd = open_listed(dfd, name), r = fd < 0 ? fd : hash_fd(fd, got, &got_size);
	if (r) {
		if (fd >= 0)
			close(fd);
		snprintf(why, len, "%s/%s: %s", dir, name,
			 r == -EBADMSG ? "not a regular file" : strerror(-r));
		return r == -ENOENT ? -EBADMSG : r;
	}
	add_file(m, cap, name, fd, got_size);
	if (got_size != size) {
		snprintf(why, len, "%s/%s: size %" PRIu64 ", manifest says %" PRIu64, dir, name,
			 got_size, size);
		return -EBADMSG;
	}
	if (strcmp(got, hex)) {
		snprintf(why, len, "%s/%s: SHA-256 mismatch (corrupt image)", dir, name);
		return -EBADMSG;
	}
	return 0;
}

int manifest_open(const char *dir, struct manifest_files *m, char *why, size_t len)
{
	char *line = NULL;
	size_t line_cap = 0, cap = 0;
	int ret = -EBADMSG, ended = 0, mfd = -1;
	FILE *f = NULL;
	*m = (struct manifest_files){ 0 };
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		ret = -errno;
		snprintf(why, len, "open %s: %s", dir, strerror(errno));
		goto out;
	}
	mfd = open_listed(dfd, MANIFEST_NAME);
	int dup_fd = mfd < 0 ? -1 : fcntl(mfd, F_DUPFD_CLOEXEC, 0);
	if (dup_fd < 0 || !(f = fdopen(dup_fd, "r"))) {
		ret = mfd >= 0 ? -errno : mfd == -ENOENT ? -EBADMSG : mfd;
		snprintf(why, len, "%s/%s: %s (partial or unfinished snapshot?)", dir, MANIFEST_NAME,
			 mfd == -EBADMSG ? "not a regular file" : strerror(mfd < 0 ? -mfd : -ret));
		if (dup_fd >= 0)
			close(dup_fd);
		goto out;
	}
	if (getline(&line, &line_cap, f) < 0 || strcmp(line, "thaw-manifest v1\n")) {
		snprintf(why, len, "%s/%s: not a thaw manifest v1", dir, MANIFEST_NAME);
		goto out;
	}
	while (getline(&line, &line_cap, f) > 0 && m->n < MAX_FILES) {
		if (!strncmp(line, "end ", 4)) {
			char *end;
			unsigned long count = strtoul(line + 4, &end, 10);
			if (*end != '\n' || count != m->n) {
				snprintf(why, len, "%s/%s: bad end line", dir, MANIFEST_NAME);
				goto out;
			}
			ended = 1;
			break;
		}
		if ((ret = check_line(dfd, dir, line, m, &cap, why, len)))
			goto out;
		ret = -EBADMSG;
	}
	if (!ended) {
		snprintf(why, len, "%s/%s: truncated (no end line)", dir, MANIFEST_NAME);
		goto out;
	}
	struct stat st;
	if (fstat(mfd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	add_file(m, &cap, MANIFEST_NAME, mfd, (uint64_t)st.st_size);
	mfd = -1;
	ret = 0;
	if (len)
		why[0] = '\0';
out:
	if (ret)
		manifest_files_fini(m);
	free(line);
	if (f)
		fclose(f);
	if (mfd >= 0)
		close(mfd);
	if (dfd >= 0)
		close(dfd);
	return ret;
}

void manifest_files_fini(struct manifest_files *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->f[i].name);
		close(m->f[i].fd);
	}
	free(m->f);
	*m = (struct manifest_files){ 0 };
}

int manifest_verify(const char *dir, char *why, size_t len)
{
	struct manifest_files m;
	char **listed = NULL, **present = NULL;
	size_t n_present = 0;
	int ret = manifest_open(dir, &m, why, len);
	if (ret)
		return ret;
	/* an image file the manifest does not know is a mixed-up snapshot */
	listed = xmalloc((m.n ? m.n : 1) * sizeof(char *));
	for (size_t i = 0; i < m.n; i++)
		listed[i] = m.f[i].name;
	qsort(listed, m.n, sizeof(char *), cmp_names);
	ret = list_files(dir, &present, &n_present);
	if (ret) {
		snprintf(why, len, "cannot list %s: %s", dir, strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < n_present && !ret; i++) {
		size_t n = strlen(present[i]);
		if (n > 4 && !strcmp(present[i] + n - 4, ".img") &&
		    !is_listed(listed, m.n, present[i])) {
			snprintf(why, len, "%s/%s: not in the manifest", dir, present[i]);
			ret = -EBADMSG;
		}
	}
	free_names(present, n_present);
out:
	free(listed);
	manifest_files_fini(&m);
	return ret;
}
