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

/* SHA-256 of dir/name as hex, and its size. */
static int hash_file(int dirfd, const char *name, char hex[HEX_LEN + 1], uint64_t *size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), ret = 0;
	if (fd < 0)
		return -errno;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		ret = -ENOMEM;
		goto close_fd;
	}
	size_t cap = 1u << 20;
	char *chunk = xmalloc(cap);
	*size = 0;
	for (;;) {
		ssize_t n = read(fd, chunk, cap);
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
close_fd:
	EVP_MD_CTX_free(ctx);
	close(fd);
	return ret;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the regular files that belong to the snapshot. */
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
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		if (skipped(de->d_name))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
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

int manifest_verify(const char *dir, char *why, size_t len)
{
	char *path = xasprintf("%s/%s", dir, MANIFEST_NAME);
	char **listed = NULL, **present = NULL;
	size_t n_listed = 0, cap = 64, n_present = 0;
	char *line = NULL;
	size_t line_cap = 0;
	int ret = -EBADMSG, ended = 0, dfd = -1;
	FILE *f = fopen(path, "re");
	if (!f) {
		ret = errno == ENOENT ? -EBADMSG : -errno;
		snprintf(why, len, "%s: %s (partial or unfinished snapshot?)", path, strerror(errno));
		goto out;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		ret = -errno;
		snprintf(why, len, "open %s: %s", dir, strerror(errno));
		goto out;
	}
	listed = xmalloc(cap * sizeof(char *));
	if (getline(&line, &line_cap, f) < 0 || strcmp(line, "thaw-manifest v1\n")) {
		snprintf(why, len, "%s: not a thaw manifest v1", path);
		goto out;
	}
	while (getline(&line, &line_cap, f) > 0 && n_listed < MAX_FILES) {
		if (!strncmp(line, "end ", 4)) {
			char *end;
			unsigned long count = strtoul(line + 4, &end, 10);
			if (*end != '\n' || count != n_listed) {
				snprintf(why, len, "%s: bad end line", path);
				goto out;
			}
			ended = 1;
			break;
		}
		char *hex, *name, got[HEX_LEN + 1];
		uint64_t size, got_size;
		if (parse_entry(line, &hex, &size, &name)) {
			snprintf(why, len, "%s: malformed line %zu", path, n_listed + 2);
			goto out;
		}
		int r = hash_file(dfd, name, got, &got_size);
		if (r) {
			ret = r == -ENOENT ? -EBADMSG : r;
			snprintf(why, len, "%s/%s: %s", dir, name, strerror(-r));
			goto out;
		}
		if (got_size != size) {
			snprintf(why, len, "%s/%s: size %" PRIu64 ", manifest says %" PRIu64, dir,
				 name, got_size, size);
			goto out;
		}
		if (strcmp(got, hex)) {
			snprintf(why, len, "%s/%s: SHA-256 mismatch (corrupt image)", dir, name);
			goto out;
		}
		if (n_listed == cap) {
			cap *= 2;
			listed = xrealloc(listed, cap * sizeof(char *));
		}
		listed[n_listed++] = xstrdup(name);
	}
	if (!ended) {
		snprintf(why, len, "%s: truncated (no end line)", path);
		goto out;
	}
	/* an image file the manifest does not know is a mixed-up snapshot */
	qsort(listed, n_listed, sizeof(char *), cmp_names);
	int r = list_files(dir, &present, &n_present);
	if (r) {
		ret = r;
		snprintf(why, len, "cannot list %s: %s", dir, strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < n_present; i++) {
		size_t n = strlen(present[i]);
		if (n > 4 && !strcmp(present[i] + n - 4, ".img") &&
		    !is_listed(listed, n_listed, present[i])) {
			snprintf(why, len, "%s/%s: not in the manifest", dir, present[i]);
			goto out;
		}
	}
	ret = 0;
	if (len)
		why[0] = '\0';
out:
	if (present)
		free_names(present, n_present);
	if (listed)
		free_names(listed, n_listed);
	free(line);
	if (dfd >= 0)
		close(dfd);
	if (f)
		fclose(f);
	free(path);
	return ret;
}
