/* Replays the fuzz seeds (tests/fuzz/corpus-http/) and every input the
 * fuzzer once crashed on (tests/fuzz/regressions/) through the fuzz target's
 * entry point, built here with gcc and the project's warnings. A violated
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

static int replay_file(const char *path)
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
	LLVMFuzzerTestOneInput(data, n);
	free(data);
	return 0;
}

/* Replays every regular file in dir (dot files skipped); returns the count
 * or -1. A missing directory counts as empty unless required. */
static int replay_dir(const char *dir, int required)
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
		if (e->d_name[0] == '.')
			continue;
		char path[2 * PATH_MAX];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (replay_file(path) < 0) {
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
	int seeds = replay_dir(dir, 1);
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/regressions", root);
	int regs = replay_dir(dir, 0);
	if (seeds <= 0 || regs < 0) {
		fprintf(stderr, "replay failed (seeds %d, regressions %d)\n", seeds, regs);
		return 1;
	}
	printf("replayed %d seeds and %d regressions\n", seeds, regs);
	return 0;
}
