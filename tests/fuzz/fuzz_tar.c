/*
 * libFuzzer target over the image store's layer unpacking
 * (daemon/imagestore.c extract(), #included to reach it): the bytes are a
 * layer tar as a client uploads it; they are written to a file on a tmpfs
 * and unpacked into a fresh folder, as unpack_layer() does.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports):
 *  - the result is 0 or a negative errno, and an error has a one-line
 *    message naming the layer, never the folder it is unpacked in;
 *  - whatever happened, everything under the folder is a folder or a
 *    regular file, under function/ (no link, device or fifo made, nothing
 *    outside: a file outside would be found by the sweep of the parent);
 *  - after a success, every file's size is at most the tar's size (no
 *    holes written out as zeros).
 */
#include <ftw.h>

#include "common/fsutil.h"

#include "daemon/imagestore.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_tar.c:%d: invariant failed: %s\n",        \
				__LINE__, #cond);                                       \
			abort();                                                        \
		}                                                                       \
	} while (0)

static char base[64];      /* per-process folder on /dev/shm */
static size_t root_len;    /* strlen of the unpack folder */
static size_t tar_size;
static int seen_bad;

static int check_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	if (ftw->level == 0)
		return 0;
	const char *rel = path + root_len + 1;
	if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode))
		seen_bad = 1;
	if (strcmp(rel, "function") && strncmp(rel, "function/", 9))
		seen_bad = 1;
	if (S_ISREG(st->st_mode) && (size_t)st->st_size > tar_size)
		seen_bad = 1;
	return 0;
}

#define DIGEST "sha256:0000000000000000000000000000000000000000000000000000000000000000"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char blob[128], dir[128], err[1024] = "";
	if (!base[0]) {
		snprintf(base, sizeof(base), "/dev/shm/thaw-fuzz-tar-%d", (int)getpid());
		mkdir(base, 0700);
	}
	snprintf(blob, sizeof(blob), "%s/layer.tar", base);
	snprintf(dir, sizeof(dir), "%s/out", base);
	int fd = open(blob, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK(write_all(fd, (const char *)data, size) == 0);
	close(fd);
	CHECK(mkdir(dir, 0700) == 0);

	int rc = extract(blob, dir, DIGEST, err, sizeof(err));
	CHECK(rc <= 0 && rc >= -4095);
	if (rc) {
		CHECK(!strncmp(err, "layer " DIGEST, strlen("layer " DIGEST)));
		CHECK(!strchr(err, '\n'));
		/* unless the entry's own name holds it (the fuzzer learns it) */
		CHECK(!strstr(err, base) || memmem(data, size, base, strlen(base)));
	}
	root_len = strlen(dir);
	tar_size = size;
	seen_bad = 0;
	nftw(dir, check_one, 16, FTW_PHYS);
	CHECK(!seen_bad);
	/* nothing beside out/ and the tar in the parent folder */
	DIR *d = opendir(base);
	struct dirent *de;
	while ((de = readdir(d)))
		CHECK(!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		      !strcmp(de->d_name, "out") || !strcmp(de->d_name, "layer.tar"));
	closedir(d);
	fs_rm_rf(dir);
	return 0;
}
