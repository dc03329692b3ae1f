/*
 * BIO entity extraction and the response body (entities.h).
 */
#include "entities.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

uint32_t ner_entities(const struct ner_model *m, const int32_t *path, uint32_t n,
		      struct ner_entity *out)
{
	uint32_t count = 0;
	int open = 0;

	for (uint32_t t = 0; t < n; t++) {
		const int32_t tag = path[t];
		enum ner_tag_kind kind = NER_TAG_OUT;
		uint32_t type = 0;

		if (tag >= 0 && (uint32_t)tag < m->num_tags) {
			kind = m->tags[tag].kind;
			type = m->tags[tag].type;
		}
		if (kind == NER_TAG_INSIDE && open && out[count - 1].type == type) {
			out[count - 1].end = t + 1;
			continue;
		}
		open = 0;
		if (kind == NER_TAG_OUT)
			continue;
		out[count++] = (struct ner_entity){ .start = t, .end = t + 1, .type = type };
		open = 1;
	}
	return count;
}

/* The tokens [start, end) of sequence b joined, as a new cJSON string. */
static cJSON *word(const struct ner_request *r, uint32_t b, uint32_t start, uint32_t end)
{
	const struct ner_span *tok = r->tokens + r->tok_off[b];
	size_t len = 0;

	for (uint32_t t = start; t < end; t++)
		len += tok[t].len;
	char *s = malloc(len + 1), *p = s;
	if (!s)
		return NULL;
	for (uint32_t t = start; t < end; t++) {
		memcpy(p, tok[t].p, tok[t].len);
		p += tok[t].len;
	}
	*p = '\0';
	cJSON *j = cJSON_CreateString(s);
	free(s);
	return j;
}

/* Adds the entities of sequence b to list. Returns 0 or -1 (no memory). */
static int add_entities(const struct ner_model *m, const struct ner_request *r,
			const int32_t *path, uint32_t b, struct ner_entity *ents, cJSON *list)
{
	const uint32_t count = ner_entities(m, path, (uint32_t)r->lengths[b], ents);

	for (uint32_t k = 0; k < count; k++) {
		cJSON *e = cJSON_CreateObject();
		if (!e || !cJSON_AddItemToArray(list, e)) {
			cJSON_Delete(e);
			return -1;
		}
		if (r->tok_off) {
			cJSON *w = word(r, b, ents[k].start, ents[k].end);
			if (!w || !cJSON_AddItemToObject(e, "word", w)) {
				cJSON_Delete(w);
				return -1;
			}
		}
		if (!cJSON_AddNumberToObject(e, "start", ents[k].start) ||
		    !cJSON_AddNumberToObject(e, "end", ents[k].end) ||
		    !cJSON_AddStringToObject(e, "type", m->types[ents[k].type]))
			return -1;
	}
	return 0;
}

static int add_tags(const struct ner_model *m, const struct ner_request *r, const int32_t *path,
		    uint32_t b, cJSON *list)
{
	for (uint32_t t = 0; t < (uint32_t)r->lengths[b]; t++) {
		const int32_t tag = path[t];
		const char *name = tag >= 0 && (uint32_t)tag < m->num_tags ? m->tags[tag].name : "O";
		cJSON *s = cJSON_CreateString(name);
		if (!s || !cJSON_AddItemToArray(list, s)) {
			cJSON_Delete(s);
			return -1;
		}
	}
	return 0;
}

char *ner_response_json(const struct ner_model *m, const struct ner_request *r,
			const int32_t *paths)
{
	struct ner_entity *ents = malloc(((size_t)r->steps + 1) * sizeof(*ents));
	cJSON *root = cJSON_CreateObject();
	char *out = NULL;

	if (!ents || !root)
		goto out;
	cJSON *all = cJSON_AddArrayToObject(root, "entities");
	cJSON *all_tags = r->return_tags ? cJSON_AddArrayToObject(root, "tags") : NULL;
	if (!all || (r->return_tags && !all_tags))
		goto out;
	for (uint32_t b = 0; b < r->batch; b++) {
		const int32_t *path = paths + (size_t)b * r->steps;
		cJSON *list = all, *tags = all_tags;

		if (r->batched) {
			list = cJSON_CreateArray();
			if (!list || !cJSON_AddItemToArray(all, list)) {
				cJSON_Delete(list);
				goto out;
			}
			if (all_tags) {
				tags = cJSON_CreateArray();
				if (!tags || !cJSON_AddItemToArray(all_tags, tags)) {
					cJSON_Delete(tags);
					goto out;
				}
			}
		}
		if (add_entities(m, r, path, b, ents, list))
			goto out;
		if (tags && add_tags(m, r, path, b, tags))
			goto out;
	}
	out = cJSON_PrintUnformatted(root);
out:
	cJSON_Delete(root);
	free(ents);
	return out;
}
