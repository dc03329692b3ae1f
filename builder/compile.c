/* builder/compile.c: handler sources -> one shared object. */
#include "builder/compile.h"
#include "common/errmsg.h"
#include "common/mem.h"
#include "proc/subproc.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SOURCES 1024
#define COMPILE_TIMEOUT_MS (10 * 60 * 1000)


static char *resolve(const char *fn_dir, const char *p)
{
	return p[0] == '/' ? xstrdup(p) : xasprintf("%s/%s", fn_dir, p);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

int compile_is_source(const char *fn_dir, const char *handler)
{
	if (ends_with(handler, ".c"))
		return 1;
	if (ends_with(handler, ".so"))
		return 0;
	char *p = resolve(fn_dir, handler);
	struct stat st;
	int dir = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
	free(p);
	return dir;
}

static int has_sdk(const char *dir)
{
	char *h = xasprintf("%s/thaw/handler.h", dir);
	int ok = access(h, R_OK) == 0;
	free(h);
	return ok;
}

char *compile_sdk_include(void)
{
	const char *env = getenv("THAW_SDK_INCLUDE");
	if (env && *env)
		return xstrdup(env);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	/* build/thaw -> ../handlers; a test binary sits deeper, so walk up. */
	for (int depth = 0; depth < 6; depth++) {
		char *slash = strrchr(exe, '/');
		if (!slash || slash == exe)
			break;
		*slash = '\0';
		char *cand = xasprintf("%s/handlers", exe);
		if (has_sdk(cand)) {
			char *real = realpath(cand, NULL);
			free(cand);
			return real ? real : NULL;
		}
		free(cand);
		cand = xasprintf("%s/include", exe); /* an installed prefix */
		if (has_sdk(cand))
			return cand;
		free(cand);
	}
	return NULL;
}

/* $CC (first word) or gcc, searched on PATH like a shell would. */
static char *find_compiler(void)
{
	const char *cc = getenv("CC");
	char *name = xstrndup(cc && *cc ? cc : "gcc", strcspn(cc && *cc ? cc : "gcc", " \t"));
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? name : (free(name), NULL);
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char *found = NULL;
	while (*path && !found) {
		size_t len = strcspn(path, ":");
		char *cand = xasprintf("%.*s/%s", (int)len, path, name);
		if (access(cand, X_OK) == 0)
			found = cand;
		else
			free(cand);
		path += len;
		if (*path == ':')
			path++;
	}
	free(name);
	return found;
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The .c files of a folder (not its subfolders), sorted. */
static int list_sources(const char *dir, char ***out, size_t *n_out, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	if (!d)
		return errmsg(err, errlen, -errno, "%s: %s", dir, strerror(errno));
	char **v = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < MAX_SOURCES) {
		if (de->d_name[0] == '.' || !ends_with(de->d_name, ".c"))
			continue;
		v = xrealloc(v, (n + 1) * sizeof(*v));
		v[n++] = xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(d);
	if (!n)
		return errmsg(err, errlen, -ENOENT, "%s: no .c files to compile", dir);
	qsort(v, n, sizeof(*v), by_str);
	*out = v;
	*n_out = n;
	return 0;
}

int compile_handler(const char *fn_dir, const char *handler, const char *out_so, FILE *diag,
		    char *err, size_t errlen)
{
	char *src = resolve(fn_dir, handler);
	char *cc = find_compiler();
	char *sdk = compile_sdk_include();
	char **sources = NULL;
	size_t n_sources = 0;
	char **argv = NULL;
	size_t argc = 0;
	char *inc_dir = NULL;
	int rc = 0;
	struct stat st;

	if (!cc) {
		rc = errmsg(err, errlen, -ENOENT, "no C compiler: %s not found on PATH",
			  getenv("CC") && *getenv("CC") ? getenv("CC") : "gcc");
		goto out;
	}
	if (!sdk) {
		rc = errmsg(err, errlen, -ENOENT,
			  "thaw/handler.h not found: set THAW_SDK_INCLUDE to the folder holding thaw/");
		goto out;
	}
	if (stat(src, &st) < 0) {
		rc = errmsg(err, errlen, -errno, "%s: %s", src, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		if ((rc = list_sources(src, &sources, &n_sources, err, errlen)) < 0)
			goto out;
		inc_dir = xstrdup(src);
	} else {
		sources = xmalloc(sizeof(*sources));
		sources[n_sources++] = xstrdup(src);
		char *slash = strrchr(src, '/');
		inc_dir = xstrndup(src, (size_t)(slash - src));
	}

	char *fixed[] = {
		cc, "-std=gnu11", "-shared", "-fPIC", "-O2", "-Wall",
		xasprintf("-I%s", sdk), xasprintf("-I%s", inc_dir),
		xasprintf("-ffile-prefix-map=%s=.", fn_dir), "-o", (char *)out_so,
	};
	size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
	argv = xcalloc(n_fixed + n_sources + 2, sizeof(*argv));
	for (size_t i = 0; i < n_fixed; i++)
		argv[argc++] = fixed[i];
	for (size_t i = 0; i < n_sources; i++)
		argv[argc++] = sources[i];
	argv[argc++] = "-lm";
	argv[argc] = NULL;

	struct subproc_result res;
	rc = subproc_run(argv, NULL, 0, COMPILE_TIMEOUT_MS, &res);
	if (res.out && res.out_len && diag) {
		fwrite(res.out, 1, res.out_len, diag);
		fflush(diag);
	}
	if (rc == -EIO) {
		int code = WIFEXITED(res.status) ? WEXITSTATUS(res.status) : 128 + WTERMSIG(res.status);
		errmsg(err, errlen, rc, "handler: %s failed (exit %d) compiling %s", cc, code, handler);
	} else if (rc == -ETIMEDOUT) {
		errmsg(err, errlen, rc, "handler: %s ran past %d s compiling %s", cc,
		     COMPILE_TIMEOUT_MS / 1000, handler);
	} else if (rc < 0) {
		errmsg(err, errlen, rc, "handler: could not run %s: %s", cc, strerror(-rc));
	}
	subproc_result_fini(&res);
	free(fixed[6]);
	free(fixed[7]);
	free(fixed[8]);
out:
	for (size_t i = 0; i < n_sources; i++)
		free(sources[i]);
	free(sources);
	free(argv);
	free(inc_dir);
	free(sdk);
	free(cc);
	free(src);
	return rc;
}
