#define LOG_PREFIX "journal: "
#include "journal.h"
#include "imagestore.h"
#include "log.h"
#include "mem.h"
#include "server.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 8192

static bool replaying;

bool journal_replaying(void)
{
	return replaying;
}

static void path_of(char *out, size_t len)
{
	snprintf(out, len, "%s/deployments.jsonl", server.opt.state_dir);
}

static int append(cJSON *line)
{
	char path[PATH_MAX];
	if (replaying) {
		cJSON_Delete(line);
		return 0;
	}
	path_of(path, sizeof(path));
	cJSON_AddNumberToObject(line, "time", (double)time(NULL));
	char *s = cJSON_PrintUnformatted(line);
	cJSON_Delete(line);
	int ret = 0, fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	size_t n = strlen(s);
	s[n] = '\n'; /* replaces the NUL: written with its length */
	if (fd < 0 || write(fd, s, n + 1) != (ssize_t)(n + 1) || fsync(fd) < 0) {
		ret = -errno;
		pr_perror("writing %s", path);
	}
	if (fd >= 0)
		close(fd);
	free(s);
	return ret;
}

static cJSON *line_new(const char *op, const char *name, unsigned version)
{
	cJSON *l = cJSON_CreateObject();
	cJSON_AddStringToObject(l, "op", op);
	cJSON_AddStringToObject(l, "name", name);
	if (version)
		cJSON_AddNumberToObject(l, "version", version);
	return l;
}

int journal_deploy(const char *name, unsigned version, const char *dir, const char *image)
{
	cJSON *l = line_new("deploy", name, version);
	if (image)
		cJSON_AddStringToObject(l, "image", image);
	else
		cJSON_AddStringToObject(l, "dir", dir);
	return append(l);
}

int journal_ready(const char *name, unsigned version)
{
	return append(line_new("ready", name, version));
}

int journal_failed(const char *name, unsigned version, const char *error)
{
	cJSON *l = line_new("failed", name, version);
	cJSON_AddStringToObject(l, "error", error);
	return append(l);
}

int journal_rollback(const char *name, unsigned version)
{
	return append(line_new("rollback", name, version));
}

int journal_rm(const char *name)
{
	return append(line_new("rm", name, 0));
}

/* A deploy line: the version again, or, when its folder or image cannot be
 * loaded now, a placeholder that keeps its number and says why. */
static int replay_deploy(const char *name, const char *dir, const char *image, cJSON *l)
{
	char path[PATH_MAX], err[512];
	struct config cfg;
	struct imagestore_image img;
	struct function *fn;
	int rc;
	if (image) {
		rc = imagestore_load(image, &cfg, &img, err, sizeof(err));
	} else {
		snprintf(path, sizeof(path), "%s/fc.yaml", dir);
		rc = config_load(path, &cfg, err, sizeof(err));
	}
	if (!rc && strcmp(cfg.name, name)) {
		snprintf(err, sizeof(err), "%.200s now names function %s", image ? image : path,
			 cfg.name);
		config_free(&cfg);
		rc = -EINVAL;
	}
	if (rc) {
		pr_err("cannot redeploy %s: %s", name, err);
		char why[600];
		snprintf(why, sizeof(why), "cannot be loaded again after a restart: %s", err);
		rc = server_add_placeholder(name, dir, why, &fn);
	} else if ((rc = server_add_function(&cfg, image ? &img : NULL, &fn))) {
		config_free(&cfg);
	}
	if (rc)
		return rc;
	atomic_store(&fn->journaled, true);
	cJSON *v = cJSON_GetObjectItemCaseSensitive(l, "version");
	if (cJSON_IsNumber(v) && v->valuedouble != fn->version)
		pr_warn("%s: journal says version %g, registered as version %u", name, v->valuedouble,
			fn->version);
	cJSON *t = cJSON_GetObjectItemCaseSensitive(l, "time");
	if (cJSON_IsNumber(t))
		fn->deployed_at = (int64_t)t->valuedouble;
	return 0;
}

static int replay_line(const char *line, unsigned lineno)
{
	cJSON *l = cJSON_Parse(line);
	const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "op"));
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "name"));
	cJSON *v = cJSON_GetObjectItemCaseSensitive(l, "version");
	unsigned version = cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= MAX_VERSIONS
				   ? (unsigned)v->valuedouble
				   : 0;
	struct fn_name *nm = name ? server_find_name(name, strlen(name)) : NULL;
	struct function *fn = nm && version ? server_find_version(name, strlen(name), version) : NULL;
	int ret = -EINVAL;
	if (op && name && !strcmp(op, "deploy")) {
		const char *dir = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "dir"));
		const char *image = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "image"));
		ret = dir || image ? replay_deploy(name, dir, image, l) : -EINVAL;
	} else if (op && fn && (!strcmp(op, "ready") || !strcmp(op, "failed"))) {
		/* about a version a deploy line made: a --functions one is loaded
		 * anew each start, a placeholder has its own error */
		const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "error"));
		ret = 0;
		if (atomic_load(&fn->journaled) && !fn->broken) {
			if (!strcmp(op, "ready"))
				function_mark_ready(fn);
			else
				function_set_failed(fn, e ? e : "failed before a restart");
		}
	} else if (op && nm && version && !strcmp(op, "rollback")) {
		struct function *to;
		ret = server_rollback(nm, version, &to);
	} else if (op && name && !strcmp(op, "rm")) {
		ret = nm ? server_remove(nm) : -EINVAL;
	}
	if (ret)
		pr_warn("line %u skipped: %s", lineno, line);
	cJSON_Delete(l);
	return ret;
}

/* The name a line is about, and whether it removes it (its own copy). */
static char *line_name(const char *line, bool *is_rm)
{
	cJSON *l = cJSON_Parse(line);
	const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "op"));
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "name"));
	char *copy = name ? xstrdup(name) : NULL;
	*is_rm = op && !strcmp(op, "rm");
	cJSON_Delete(l);
	return copy;
}

int journal_replay(void)
{
	char path[PATH_MAX];
	path_of(path, sizeof(path));
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	char **lines = NULL, *line = xmalloc(MAX_LINE);
	size_t n = 0, cap = 0;
	while (fgets(line, MAX_LINE, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (n == cap)
			lines = xrealloc(lines, (cap = cap ? cap * 2 : 64) * sizeof(*lines));
		lines[n++] = xstrdup(line);
	}
	free(line);
	fclose(f);
	/* what a later rm removed is not started again (its image may be gone,
	 * see imagestore_gc): walking back, the names removed further on */
	bool *skip = xcalloc(n + 1, sizeof(*skip));
	char **removed = xcalloc(n + 1, sizeof(*removed));
	size_t n_removed = 0;
	for (size_t i = n; i-- > 0;) {
		bool is_rm;
		char *name = line_name(lines[i], &is_rm);
		for (size_t j = 0; name && j < n_removed && !skip[i]; j++)
			skip[i] = !strcmp(removed[j], name);
		if (name && is_rm && !skip[i])
			removed[n_removed++] = name;
		else
			free(name);
	}
	int applied = 0;
	replaying = true;
	for (size_t i = 0; i < n; i++) {
		bool is_rm;
		char *name = line_name(lines[i], &is_rm);
		/* an rm of a name never started again is already in effect */
		bool gone = is_rm && name && !server_find_name(name, strlen(name));
		if (*lines[i] && !skip[i] && !gone && !replay_line(lines[i], (unsigned)i + 1))
			applied++;
		free(name);
		free(lines[i]);
	}
	replaying = false;
	for (size_t j = 0; j < n_removed; j++)
		free(removed[j]);
	free(removed);
	free(skip);
	free(lines);
	return applied;
}
