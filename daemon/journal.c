#define LOG_PREFIX "journal: "
#include "daemon/journal.h"
#include "common/log.h"
#include "common/mem.h"
#include "daemon/server.h"

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

void journal_mute(bool mute)
{
	replaying = mute;
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

/* Per name, over the lines after its last rm. */
struct tally {
	const char *name;
	unsigned deploys;   /* how many, so the newest version's number */
	size_t last_deploy; /* index of the last deploy line */
	unsigned first;     /* the oldest version to load again */
	bool rm_later;      /* walking back: an rm of the name comes later */
};

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
static void number_versions(struct journal_line *e, size_t n, struct tally *t, size_t cap)
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

static const char *str(cJSON *l, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, key));
}

int journal_read(struct journal_line **out, size_t *count, unsigned *retired)
{
	char path[PATH_MAX];
	*out = NULL;
	*count = 0;
	*retired = 0;
	path_of(path, sizeof(path));
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	struct journal_line *e = NULL;
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
		struct journal_line *x = &e[n++];
		*x = (struct journal_line){ .l = cJSON_Parse(line) };
		x->op = str(x->l, "op");
		x->name = str(x->l, "name");
		x->dir = str(x->l, "dir");
		x->image = str(x->l, "image");
		x->error = str(x->l, "error");
		cJSON *v = cJSON_GetObjectItemCaseSensitive(x->l, "version");
		if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= UINT32_MAX)
			x->version = (unsigned)v->valuedouble;
		cJSON *t = cJSON_GetObjectItemCaseSensitive(x->l, "time");
		x->time = cJSON_IsNumber(t) ? (int64_t)t->valuedouble : 0;
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
	for (size_t i = 0; i < n; i++) {
		if (e[i].skip || !e[i].l || !e[i].op || !e[i].name) {
			e[i].skip = true;
			continue;
		}
		unsigned first = tally_of(t, tcap, e[i].name)->first;
		unsigned v = e[i].number ? e[i].number : e[i].version;
		if (v && v < first) { /* a retired version, or a line about one */
			*retired += e[i].number != 0;
			e[i].skip = true;
		}
	}
	free(removed);
	free(t);
	*out = e;
	*count = n;
	return 0;
}

void journal_lines_free(struct journal_line *lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cJSON_Delete(lines[i].l);
	free(lines);
}
