/*
 * Loading the ner model: tags.txt and the transition matrix (model.h).
 */
#include "handlers/ner/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/ner/json.h"
#include "kernels/viterbi.h"

/* Returns the type index of name (len bytes), adding it if new, or -1. */
static int64_t type_index(struct ner_model *m, const char *name, size_t len)
{
	for (uint32_t k = 0; k < m->num_types; k++)
		if (strlen(m->types[k]) == len && memcmp(m->types[k], name, len) == 0)
			return k;
	char **types = realloc(m->types, (m->num_types + 1) * sizeof(*types));
	if (!types)
		return -1;
	m->types = types;
	m->types[m->num_types] = strndup(name, len);
	if (!m->types[m->num_types])
		return -1;
	return m->num_types++;
}

/* Fills kind and type of t from its name. */
static int classify(struct ner_model *m, struct ner_tag *t)
{
	const char *n = t->name;

	t->kind = NER_TAG_OUT;
	t->type = 0;
	if ((n[0] != 'B' && n[0] != 'I') || n[1] != '-' || n[2] == '\0')
		return 0;
	int64_t type = type_index(m, n + 2, strlen(n + 2));
	if (type < 0)
		return -ENOMEM;
	t->kind = n[0] == 'B' ? NER_TAG_BEGIN : NER_TAG_INSIDE;
	t->type = (uint32_t)type;
	return 0;
}

int ner_model_set_tags(struct ner_model *m, const char *text, size_t len, char *err,
		       size_t errlen)
{
	const char *p = text, *end = text + len;
	uint32_t cap = 0;
	int ret = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl : end;
		size_t n = (size_t)(line_end - p);

		if (n && p[n - 1] == '\r')
			n--;
		if (n) {
			if (m->num_tags == VITERBI_MAX_TAGS) {
				snprintf(err, errlen, "more than %u tags", VITERBI_MAX_TAGS);
				ret = -EINVAL;
				goto fail;
			}
			if (memchr(p, '\0', n)) {
				snprintf(err, errlen, "tag %u holds a NUL byte", m->num_tags + 1);
				ret = -EINVAL;
				goto fail;
			}
			if (m->num_tags == cap) {
				cap = cap ? cap * 2 : 16;
				struct ner_tag *tags = realloc(m->tags, cap * sizeof(*tags));
				if (!tags) {
					ret = -ENOMEM;
					goto fail;
				}
				m->tags = tags;
			}
			struct ner_tag *t = &m->tags[m->num_tags];
			t->name = strndup(p, n);
			if (!t->name) {
				ret = -ENOMEM;
				goto fail;
			}
			m->num_tags++;
			ret = classify(m, t);
			if (ret)
				goto fail;
		}
		p = line_end + 1;
	}
	if (m->num_tags == 0) {
		snprintf(err, errlen, "no tags");
		return -EINVAL;
	}
	return 0;
fail:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	ner_model_fini(m);
	return ret;
}

int ner_model_set_trans_json(struct ner_model *m, const char *json, size_t len, char *err,
			     size_t errlen)
{
	const uint32_t K1 = m->num_tags + 1;
	const struct nj_value *rows, *row, *x;
	struct nj_doc doc;
	float *trans = NULL;
	uint32_t i = 0, j;
	int ret = nj_parse(&doc, json, len, 0);

	if (ret) {
		snprintf(err, errlen, ret == -ENOMEM ? "out of memory" : "not valid JSON");
		return ret;
	}
	ret = -EINVAL;
	rows = nj_root(&doc);
	if (rows->type == NJ_OBJECT)
		rows = nj_get(rows, "transitions");
	if (!rows || rows->type != NJ_ARRAY || rows->count != K1) {
		snprintf(err, errlen, "want a list of %u rows (%u tags + start)", K1, K1 - 1);
		goto out;
	}
	trans = malloc((size_t)K1 * K1 * sizeof(*trans));
	if (!trans) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	nj_foreach(row, rows)
	{
		if (row->type != NJ_ARRAY || row->count != K1) {
			snprintf(err, errlen, "row %u: want %u numbers", i, K1);
			goto out;
		}
		j = 0;
		nj_foreach(x, row)
		{
			float v = (float)x->num;
			if (x->type != NJ_NUMBER || !isfinite(v)) {
				snprintf(err, errlen, "row %u column %u: not a finite float32", i, j);
				goto out;
			}
			trans[(size_t)i * K1 + j++] = v;
		}
		i++;
	}
	free(m->trans_own);
	m->trans_own = trans;
	m->trans = trans;
	trans = NULL;
	ret = 0;
out:
	free(trans);
	nj_free(&doc);
	return ret;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Takes the mapped float32 matrix; NaN and +inf are refused, -inf (a
 * forbidden transition) is allowed. */
static int set_trans_bin(struct ner_model *m, struct thaw_map *map, char *err, size_t errlen)
{
	const size_t K1 = m->num_tags + 1, want = K1 * K1 * sizeof(float);

	if (map->len != want) {
		snprintf(err, errlen, "%zu bytes, want %zu ((%zu x %zu) float32)", map->len, want,
			 K1, K1);
		return -EINVAL;
	}
	const float *f = map->data; /* mmap: page aligned */
	for (size_t k = 0; k < K1 * K1; k++) {
		if (isnan(f[k]) || f[k] == INFINITY) {
			snprintf(err, errlen, "row %zu column %zu: NaN or +inf", k / K1, k % K1);
			return -EINVAL;
		}
	}
	m->trans_map = *map;
	m->trans = f;
	return 0;
}

int ner_model_load(struct ner_model *m, const char *tags_path, const char *trans_path, char *err,
		   size_t errlen)
{
	struct thaw_map map = { 0 };
	char why[200] = "";
	int ret;

	memset(m, 0, sizeof(*m));
	ret = thaw_map_file(tags_path, &map);
	if (ret) {
		snprintf(err, errlen, "%s: %s", tags_path, strerror(-ret));
		return ret;
	}
	ret = ner_model_set_tags(m, map.data, map.len, why, sizeof(why));
	thaw_unmap(&map);
	if (ret) {
		snprintf(err, errlen, "%s: %s", tags_path, why);
		return ret;
	}
	ret = thaw_map_file(trans_path, &map);
	if (ret) {
		snprintf(err, errlen, "%s: %s", trans_path, strerror(-ret));
		goto fail;
	}
	if (ends_with(trans_path, ".bin")) {
		ret = set_trans_bin(m, &map, why, sizeof(why));
		if (ret)
			thaw_unmap(&map);
	} else {
		ret = ner_model_set_trans_json(m, map.data, map.len, why, sizeof(why));
		thaw_unmap(&map);
	}
	if (ret) {
		snprintf(err, errlen, "%s: %s", trans_path, why);
		goto fail;
	}
	return 0;
fail:
	ner_model_fini(m);
	return ret;
}

void ner_model_fini(struct ner_model *m)
{
	for (uint32_t k = 0; k < m->num_tags; k++)
		free(m->tags[k].name);
	free(m->tags);
	for (uint32_t k = 0; k < m->num_types; k++)
		free(m->types[k]);
	free(m->types);
	free(m->trans_own);
	if (m->trans_map.data)
		thaw_unmap(&m->trans_map);
	memset(m, 0, sizeof(*m));
}
