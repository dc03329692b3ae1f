/* Replays the fuzz seeds (tests/fuzz/corpus-http/) and every input the
 * fuzzer once crashed on (tests/fuzz/regressions/) through the fuzz target's
 * entry point, built here with gcc and the project's warnings; and the
 * fc.yaml target's seeds (corpus-config/) and regressions (config-*) through
 * its own. (fuzz_tar's are replayed by `make fuzz` only: it #includes
 * daemon/imagestore.c, which libthaw.a holds too.) A violated
 * invariant aborts, which fails the test. The repository root is found from
 * THAW_BUILD (set by tests/run.sh; its parent or itself) or the working
 * directory and its parents. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../fuzz/fuzz_http.c"
#undef CHECK
#define LLVMFuzzerTestOneInput fuzz_config_one
#include "../fuzz/fuzz_config.c"
#undef LLVMFuzzerTestOneInput

#define REPLAY_MAX_INPUT (1u << 20)

static int is_root(const char *dir)
{
	char p[PATH_MAX + 64];
	struct stat st;
	snprintf(p, sizeof(p), "%s/tests/fuzz/corpus-http", dir);
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Tries dir and up to 4 of its parents. */
static int find_root_from(const char *start, char *root)
{
	char dir[PATH_MAX];
	if (!start || !realpath(start, dir))
		return 0;
	for (int up = 0; up < 5; up++) {
		if (is_root(dir)) {
			snprintf(root, PATH_MAX, "%s", dir);
			return 1;
		}
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir)
			break;
		*slash = '\0';
	}
	return 0;
}

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

static int replay_file(const char *path, fuzz_fn fn)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	uint8_t *data = malloc(REPLAY_MAX_INPUT);
	size_t n = data ? fread(data, 1, REPLAY_MAX_INPUT, f) : 0;
	int err = !data || ferror(f);
	fclose(f);
	if (err) {
		fprintf(stderr, "%s: read failed\n", path);
		free(data);
		return -1;
	}
	fn(data, n);
	free(data);
	return 0;
}

/* Replays every regular file in dir (dot files skipped) whose name starts
 * with prefix through fn; returns the count or -1. A missing directory
 * counts as empty unless required. */
static int replay_dir(const char *dir, int required, const char *prefix, fuzz_fn fn)
{
	DIR *d = opendir(dir);
	if (!d) {
		if (required)
			perror(dir);
		return required ? -1 : 0;
	}
	int count = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)))
			continue;
		char path[2 * PATH_MAX];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (replay_file(path, fn) < 0) {
			count = -1;
			break;
		}
		count++;
	}
	closedir(d);
	return count;
}

int main(void)
{
	char root[PATH_MAX];
	const char *build = getenv("THAW_BUILD");
	if (!find_root_from(build, root) && !find_root_from(".", root)) {
		fprintf(stderr, "cannot find tests/fuzz/corpus-http from THAW_BUILD or cwd\n");
		return 1;
	}
	char dir[PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus-http", root);
	int seeds = replay_dir(dir, 1, "", LLVMFuzzerTestOneInput);
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/regressions", root);
	int regs = replay_dir(dir, 0, "", LLVMFuzzerTestOneInput);
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus-config", root);
	int cseeds = replay_dir(dir, 1, "", fuzz_config_one);
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/regressions", root);
	int cregs = replay_dir(dir, 0, "config-", fuzz_config_one);
	if (seeds <= 0 || regs < 0 || cseeds <= 0 || cregs < 0) {
		fprintf(stderr, "replay failed (http seeds %d, regressions %d; config seeds %d, regressions %d)\n",
			seeds, regs, cseeds, cregs);
		return 1;
	}
	printf("replayed http: %d seeds and %d regressions; fc.yaml: %d seeds and %d regressions\n",
	       seeds, regs, cseeds, cregs);
	return 0;
}
