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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A line holds a name, a folder (PATH_MAX, up to 6 bytes each escaped)
 * and a digest: anything longer is not one of ours. */
#define MAX_LINE (8 * PATH_MAX)

static bool replaying;

bool journal_replaying(void)
{
	return replaying;
}

static void path_of(char *out, size_t len)
{
	snprintf(out, len, "%s/deployments.jsonl", server.opt.state_dir);
}

/* A line written in part (a full disk) is cut off again: the next line
 * must not continue it. */
static int append_at(cJSON *line, int64_t when)
{
	char path[PATH_MAX];
	if (replaying) {
		cJSON_Delete(line);
		return 0;
	}
	path_of(path, sizeof(path));
	cJSON_AddNumberToObject(line, "time", (double)when);
	char *s = cJSON_PrintUnformatted(line);
	cJSON_Delete(line);
	int ret = 0, fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	size_t n = strlen(s);
	s[n] = '\n'; /* replaces the NUL: written with its length */
	struct stat st;
	ssize_t w = -1;
	errno = 0;
	if (fd < 0 || fstat(fd, &st) < 0 || (w = write(fd, s, n + 1)) != (ssize_t)(n + 1) ||
	    fsync(fd) < 0) {
		ret = errno ? -errno : -ENOSPC; /* a short write sets none */
		pr_perror("writing %s", path);
		if (w > 0 && ftruncate(fd, st.st_size) < 0)
			pr_perror("cutting the partial line off %s", path);
	}
	if (fd >= 0)
		close(fd);
	free(s);
	return ret;
}

static int append(cJSON *line)
{
	return append_at(line, (int64_t)time(NULL));
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

int journal_deploy(const char *name, unsigned version, const char *dir, const char *image,
		   int64_t when)
{
	cJSON *l = line_new("deploy", name, version);
	if (image)
		cJSON_AddStringToObject(l, "image", image);
	else
		cJSON_AddStringToObject(l, "dir", dir);
	return append_at(l, when);
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

/* One line of the journal, parsed once. */
struct entry {
	cJSON *l; /* NULL: not JSON */
	const char *op, *name;
	unsigned version; /* its "version" (1..MAX_VERSIONS), else 0 */
	unsigned number;  /* a deploy: the version it made, counted per name */
	bool skip;        /* a later rm removed its name */
};

/* Per name, over the lines after its last rm. */
struct tally {
	const char *name;
	unsigned deploys;   /* how many, so the newest version's number */
	size_t last_deploy; /* index of the last deploy line */
	unsigned first;     /* the oldest version to load again */
	bool rm_later;      /* walking back: an rm of the name comes later */
};

/* A deploy line: the version again, or, when its folder or image cannot be
 * loaded now, a placeholder that keeps its number and says why. number is
 * the version the line made; a name's first version loaded takes it. */
static int replay_deploy(const struct entry *e, unsigned number)
{
	char path[PATH_MAX], err[512];
	struct config cfg;
	struct imagestore_image img;
	struct function *fn;
	const char *dir = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e->l, "dir"));
	const char *image = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e->l, "image"));
	int rc;
	if (!dir && !image)
		return -EINVAL;
	if (image) {
		rc = imagestore_load(image, &cfg, &img, err, sizeof(err));
	} else {
		snprintf(path, sizeof(path), "%s/fc.yaml", dir);
		rc = config_load(path, &cfg, err, sizeof(err));
	}
	if (!rc && strcmp(cfg.name, e->name)) {
		snprintf(err, sizeof(err), "%.200s now names function %s", image ? image : path,
			 cfg.name);
		config_free(&cfg);
		rc = -EINVAL;
	}
	if (rc) {
		pr_err("cannot redeploy %s: %s", e->name, err);
		char why[600];
		snprintf(why, sizeof(why), "cannot be loaded again after a restart: %s", err);
		rc = server_add_placeholder(e->name, dir, why, number, &fn);
	} else if ((rc = server_add_function(&cfg, image ? &img : NULL, number, &fn))) {
		config_free(&cfg);
	}
	if (rc)
		return rc;
	atomic_store(&fn->journaled, true);
	if (fn->version != number)
		pr_warn("%s: journal line makes version %u, registered as version %u", e->name,
			number, fn->version);
	cJSON *t = cJSON_GetObjectItemCaseSensitive(e->l, "time");
	if (cJSON_IsNumber(t))
		fn->deployed_at = (int64_t)t->valuedouble;
	return 0;
}

static int replay_line(const struct entry *e)
{
	const char *op = e->op, *name = e->name;
	struct fn_name *nm = name ? server_find_name(name, strlen(name)) : NULL;
	struct function *fn = nm && e->version ? fn_name_version(nm, e->version) : NULL;
	int ret = -EINVAL;
	if (!op || !name)
		return -EINVAL;
	if (!strcmp(op, "deploy")) {
		ret = replay_deploy(e, e->number);
	} else if (fn && (!strcmp(op, "ready") || !strcmp(op, "failed"))) {
		/* about a version a deploy line made: a --functions one is loaded
		 * anew each start, a placeholder has its own error */
		const char *err = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e->l, "error"));
		ret = 0;
		if (atomic_load(&fn->journaled) && !fn->broken) {
			if (!strcmp(op, "ready"))
				function_mark_ready(fn);
			else
				function_set_failed(fn, err ? err : "failed before a restart");
		}
	} else if (nm && e->version && !strcmp(op, "rollback")) {
		struct function *to;
		ret = server_rollback(nm, e->version, &to);
	} else if (!strcmp(op, "rm")) {
		ret = nm ? server_remove(nm) : -EINVAL;
	}
	return ret;
}

static struct tally *tally_of(struct tally *t, size_t cap, const char *name)
{
	uint32_t h = 2166136261u; /* FNV-1a; cap is a power of two */
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1))
		if (!t[i].name || !strcmp(t[i].name, name)) {
			t[i].name = name;
			return &t[i];
		}
}

/* Which version each deploy line makes, and from which version each name is
 * loaded again: its newest JOURNAL_KEEP_VERSIONS, and back to a version a
 * rollback after its last deploy pinned. */
static void number_versions(struct entry *e, size_t n, struct tally *t, size_t cap)
{
	for (size_t i = 0; i < n; i++)
		if (!e[i].skip && e[i].name && e[i].op && !strcmp(e[i].op, "deploy")) {
			struct tally *k = tally_of(t, cap, e[i].name);
			e[i].number = ++k->deploys;
			k->last_deploy = i;
		}
	for (size_t i = 0; i < cap; i++)
		if (t[i].name)
			t[i].first = t[i].deploys > JOURNAL_KEEP_VERSIONS
					     ? t[i].deploys - JOURNAL_KEEP_VERSIONS + 1
					     : 1;
	for (size_t i = 0; i < n; i++)
		if (!e[i].skip && e[i].name && e[i].version && e[i].op && !strcmp(e[i].op, "rollback")) {
			struct tally *k = tally_of(t, cap, e[i].name);
			if (i > k->last_deploy && e[i].version < k->first)
				k->first = e[i].version;
		}
}

int journal_replay(void)
{
	char path[PATH_MAX];
	path_of(path, sizeof(path));
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	struct entry *e = NULL;
	char *line = NULL;
	size_t n = 0, cap = 0, line_cap = 0;
	ssize_t got;
	/* whole lines, however long: a folder path escaped in JSON can pass
	 * any fixed size, and a line cut in two loses that deploy */
	while ((got = getline(&line, &line_cap, f)) >= 0) {
		if ((size_t)got > MAX_LINE) {
			pr_warn("line %zu skipped: %zd bytes, over %d", n + 1, got, MAX_LINE);
			got = 0;
			line[0] = '\0';
		}
		if (n == cap)
			e = xrealloc(e, (cap = cap ? cap * 2 : 64) * sizeof(*e));
		struct entry *x = &e[n++];
		*x = (struct entry){ .l = cJSON_Parse(line) };
		x->op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x->l, "op"));
		x->name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x->l, "name"));
		cJSON *v = cJSON_GetObjectItemCaseSensitive(x->l, "version");
		if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= UINT32_MAX)
			x->version = (unsigned)v->valuedouble;
	}
	free(line);
	fclose(f);
	/* what a later rm removed is not started again (its image may be gone,
	 * see imagestore_gc): walking back, the names removed further on */
	size_t tcap = 64;
	while (tcap < 2 * n)
		tcap *= 2;
	struct tally *removed = xcalloc(tcap, sizeof(*removed));
	for (size_t i = n; i-- > 0;) {
		if (!e[i].name)
			continue;
		struct tally *r = tally_of(removed, tcap, e[i].name);
		e[i].skip = r->rm_later;
		if (e[i].op && !strcmp(e[i].op, "rm"))
			r->rm_later = true;
	}
	struct tally *t = xcalloc(tcap, sizeof(*t));
	number_versions(e, n, t, tcap);
	int applied = 0;
	unsigned retired = 0;
	replaying = true;
	for (size_t i = 0; i < n; i++) {
		if (e[i].skip || !e[i].l)
			continue;
		bool is_rm = e[i].op && !strcmp(e[i].op, "rm");
		/* an rm of a name never started again is already in effect */
		if (is_rm && e[i].name && !server_find_name(e[i].name, strlen(e[i].name)))
			continue;
		unsigned first = e[i].name ? tally_of(t, tcap, e[i].name)->first : 1;
		unsigned v = e[i].number ? e[i].number : e[i].version;
		if (v && v < first) { /* a retired version, or a line about one */
			retired += e[i].number != 0;
			continue;
		}
		if (!replay_line(&e[i]))
			applied++;
		else
			pr_warn("line %zu skipped: %s %s version %u", i + 1, e[i].op ? e[i].op : "?",
				e[i].name ? e[i].name : "?", v);
	}
	replaying = false;
	if (retired)
		pr_info("%u old version(s) retired: each name keeps its newest %d", retired,
			JOURNAL_KEEP_VERSIONS);
	for (size_t i = 0; i < n; i++)
		cJSON_Delete(e[i].l);
	free(e);
	free(removed);
	free(t);
	return applied;
}
