/*
 * BIO entity extraction and the response body (entities.h).
 */
#include "handlers/ner/entities.h"

#include <stdio.h>
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

/* The response body, built by hand: cJSON spends a malloc per value and an
 * snprintf plus sscanf per number. The output is byte for byte what
 * cJSON_PrintUnformatted would give. */
struct out {
	char *buf;
	size_t len, cap;
	int oom;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		while (cap < o->len + n + 1)
			cap *= 2;
		char *buf = realloc(o->buf, cap);
		if (!buf) {
			o->oom = 1;
			return;
		}
		o->buf = buf;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void put_lit(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_u32(struct out *o, uint32_t v)
{
	char tmp[10], *p = tmp + sizeof(tmp);
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(o, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* The inside of a JSON string: '"', '\\' and control characters escaped,
 * everything else (UTF-8 included) as it is. */
static void put_escaped(struct out *o, const char *s, size_t n)
{
	size_t run = 0;
	for (size_t k = 0; k < n; k++) {
		const unsigned char c = (unsigned char)s[k];
		char esc[8];
		const char *e = NULL;

		if (c == '"')
			e = "\\\"";
		else if (c == '\\')
			e = "\\\\";
		else if (c == '\b')
			e = "\\b";
		else if (c == '\f')
			e = "\\f";
		else if (c == '\n')
			e = "\\n";
		else if (c == '\r')
			e = "\\r";
		else if (c == '\t')
			e = "\\t";
		else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			e = esc;
		}
		if (!e)
			continue;
		put(o, s + run, k - run);
		put_lit(o, e);
		run = k + 1;
	}
	put(o, s + run, n - run);
}

static void put_string(struct out *o, const char *s)
{
	put_lit(o, "\"");
	put_escaped(o, s, strlen(s));
	put_lit(o, "\"");
}

static void put_entities(struct out *o, const struct ner_model *m, const struct ner_request *r,
			 const int32_t *path, uint32_t b, struct ner_entity *ents)
{
	const uint32_t count = ner_entities(m, path, (uint32_t)r->lengths[b], ents);

	put_lit(o, "[");
	for (uint32_t k = 0; k < count; k++) {
		put_lit(o, k ? ",{" : "{");
		if (r->tok_off) {
			const struct ner_span *tok = r->tokens + r->tok_off[b];
			put_lit(o, "\"word\":\"");
			for (uint32_t t = ents[k].start; t < ents[k].end; t++)
				put_escaped(o, tok[t].p, tok[t].len);
			put_lit(o, "\",");
		}
		put_lit(o, "\"start\":");
		put_u32(o, ents[k].start);
		put_lit(o, ",\"end\":");
		put_u32(o, ents[k].end);
		put_lit(o, ",\"type\":");
		put_string(o, m->types[ents[k].type]);
		put_lit(o, "}");
	}
	put_lit(o, "]");
}

static void put_tags(struct out *o, const struct ner_model *m, const struct ner_request *r,
		     const int32_t *path, uint32_t b)
{
	put_lit(o, "[");
	for (uint32_t t = 0; t < (uint32_t)r->lengths[b]; t++) {
		const int32_t tag = path[t];
		if (t)
			put_lit(o, ",");
		put_string(o, tag >= 0 && (uint32_t)tag < m->num_tags ? m->tags[tag].name : "O");
	}
	put_lit(o, "]");
}

char *ner_response_json(const struct ner_model *m, const struct ner_request *r,
			const int32_t *paths)
{
	struct ner_entity *ents = malloc(((size_t)r->steps + 1) * sizeof(*ents));
	struct out o = { 0 };

	if (!ents)
		return NULL;
	put_lit(&o, "{\"entities\":");
	if (r->batched)
		put_lit(&o, "[");
	for (uint32_t b = 0; b < r->batch; b++) {
		if (b)
			put_lit(&o, ",");
		put_entities(&o, m, r, paths + (size_t)b * r->steps, b, ents);
	}
	if (r->batched)
		put_lit(&o, "]");
	if (r->return_tags) {
		put_lit(&o, ",\"tags\":");
		if (r->batched)
			put_lit(&o, "[");
		for (uint32_t b = 0; b < r->batch; b++) {
			if (b)
				put_lit(&o, ",");
			put_tags(&o, m, r, paths + (size_t)b * r->steps, b);
		}
		if (r->batched)
			put_lit(&o, "]");
	}
	put_lit(&o, "}");
	free(ents);
	if (o.oom) {
		free(o.buf);
		return NULL;
	}
	return o.buf;
}

char *ner_entities_bytes(const struct ner_model *m, const struct ner_request *r,
			 const int32_t *paths, size_t *len)
{
	struct ner_entity *ents = malloc(((size_t)r->steps + 1) * sizeof(*ents));
	struct out o = { 0 };

	*len = 0;
	if (!ents)
		return NULL;
	for (uint32_t b = 0; b < r->batch && !o.oom; b++) {
		size_t at = o.len;
		put(&o, "\0\0\0\0", 4);
		put_entities(&o, m, r, paths + (size_t)b * r->steps, b, ents);
		if (o.oom)
			break;
		uint32_t el = (uint32_t)(o.len - at - 4);
		for (int k = 0; k < 4; k++)
			o.buf[at + (size_t)k] = (char)(el >> (8 * k));
	}
	free(ents);
	if (o.oom || !o.buf) {
		free(o.buf);
		return o.oom ? NULL : calloc(1, 1); /* batch 0: no elements */
	}
	*len = o.len;
	return o.buf;
}
