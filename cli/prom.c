/* A reader for the daemon's own /metrics: only what `thaw top` shows. */
#include "cli/prom.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 4

struct label {
	char key[16];
	char val[80];
};

/* Parses `{k="v",...}` at *p into labels; *p ends after the '}'. */
static int parse_labels(const char **p, const char *end, struct label *l, unsigned *n)
{
	const char *s = *p;
	*n = 0;
	if (s >= end || *s != '{')
		return 0;
	s++;
	while (s < end && *s != '}') {
		const char *k = s;
		while (s < end && *s != '=')
			s++;
		if (s + 1 >= end || s[1] != '"' || *n == MAX_LABELS || (size_t)(s - k) >= sizeof(l->key))
			return -EINVAL;
		struct label *cur = &l[(*n)++];
		memcpy(cur->key, k, (size_t)(s - k));
		cur->key[s - k] = '\0';
		s += 2;
		size_t vl = 0;
		while (s < end && *s != '"') {
			if (*s == '\\' && s + 1 < end)
				s++;
			if (vl + 1 >= sizeof(cur->val))
				return -EINVAL;
			cur->val[vl++] = *s++;
		}
		if (s >= end)
			return -EINVAL;
		cur->val[vl] = '\0';
		s++;
		if (s < end && *s == ',')
			s++;
	}
	if (s >= end)
		return -EINVAL;
	*p = s + 1;
	return 0;
}

static const char *label(const struct label *l, unsigned n, const char *key)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(l[i].key, key))
			return l[i].val;
	return NULL;
}

static struct prom_fn *fn_of(struct prom_sample *s, const char *name)
{
	if (!name)
		return NULL;
	for (unsigned i = 0; i < s->n_fns; i++)
		if (!strcmp(s->fns[i].name, name))
			return &s->fns[i];
	if (s->n_fns == PROM_MAX_FNS || strlen(name) >= sizeof(s->fns[0].name))
		return NULL;
	struct prom_fn *f = &s->fns[s->n_fns++];
	memset(f, 0, sizeof(*f));
	strcpy(f->name, name);
	return f;
}

enum series { S_REQUESTS, S_BUCKET, S_INSTANCES, S_QUEUE };

static int parse_line(struct prom_sample *s, const char *p, const char *end)
{
	static const struct {
		const char *name;
		enum series kind;
	} wanted[] = {
		{ "thaw_requests_total", S_REQUESTS },
		{ "thaw_request_duration_seconds_bucket", S_BUCKET },
		{ "thaw_instances", S_INSTANCES },
		{ "thaw_queue_depth", S_QUEUE },
	};
	const char *n = p;
	while (p < end && *p != '{' && *p != ' ')
		p++;
	size_t nl = (size_t)(p - n);
	int kind = -1;
	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		if (strlen(wanted[i].name) == nl && !memcmp(wanted[i].name, n, nl))
			kind = (int)wanted[i].kind;
	if (kind < 0)
		return 0;
	struct label l[MAX_LABELS];
	unsigned nlab;
	if (parse_labels(&p, end, l, &nlab) || p >= end || *p != ' ')
		return -EINVAL;
	char num[64];
	size_t len = (size_t)(end - p - 1);
	if (len == 0 || len >= sizeof(num))
		return -EINVAL;
	memcpy(num, p + 1, len);
	num[len] = '\0';
	char *e;
	double v = strtod(num, &e);
	if (*e && *e != ' ') /* a timestamp may follow */
		return -EINVAL;
	struct prom_fn *f = fn_of(s, label(l, nlab, "function"));
	if (!f)
		return 0;
	const char *st = label(l, nlab, "state"), *le = label(l, nlab, "le");
	switch (kind) {
	case S_REQUESTS:
		f->requests += v;
		break;
	case S_BUCKET:
		if (!le || f->n_buckets == PROM_MAX_BUCKETS)
			return le ? 0 : -EINVAL;
		f->le[f->n_buckets] = strcmp(le, "+Inf") ? strtod(le, NULL) : INFINITY;
		f->cum[f->n_buckets++] = v;
		break;
	case S_INSTANCES:
		if (st && !strcmp(st, "starting"))
			f->instances[PROM_STARTING] = v;
		else if (st && !strcmp(st, "idle"))
			f->instances[PROM_IDLE] = v;
		else if (st && !strcmp(st, "busy"))
			f->instances[PROM_BUSY] = v;
		break;
	case S_QUEUE:
		f->queue = v;
		break;
	}
	return 0;
}

int prom_parse(const char *text, size_t len, struct prom_sample *out)
{
	out->n_fns = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if (eol > p && *p != '#') {
			int ret = parse_line(out, p, eol);
			if (ret)
				return ret;
		}
		p = eol + 1;
	}
	return 0;
}

const struct prom_fn *prom_find(const struct prom_sample *s, const char *name)
{
	for (unsigned i = 0; i < s->n_fns; i++)
		if (!strcmp(s->fns[i].name, name))
			return &s->fns[i];
	return NULL;
}

double prom_quantile(const struct prom_fn *now, const struct prom_fn *before, double q)
{
	unsigned n = now->n_buckets;
	bool diff = before && before->n_buckets == n;
	if (!n)
		return -1;
	double total = now->cum[n - 1] - (diff ? before->cum[n - 1] : 0);
	if (total <= 0)
		return -1;
	double rank = q * total, prev_le = 0, prev_c = 0;
	for (unsigned i = 0; i < n; i++) {
		double c = now->cum[i] - (diff ? before->cum[i] : 0);
		if (c >= rank) {
			if (isinf(now->le[i])) /* past the last bound: say the last bound */
				return prev_le;
			double in = c - prev_c;
			return in > 0 ? prev_le + (now->le[i] - prev_le) * (rank - prev_c) / in : now->le[i];
		}
		prev_le = now->le[i];
		prev_c = c;
	}
	return prev_le;
}
