/*
 * Parsing and checking the ner request body (request.h). Every message
 * names the offending field with its indices, e.g.
 *   logits[1] has 10 steps, logits[0] has 12
 */
#include "handlers/ner/request.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A check failed: message into err, return -EINVAL from the caller. */
#define BAD(...)                                                                               \
	do {                                                                                   \
		snprintf(err, errlen, __VA_ARGS__);                                            \
		return -EINVAL;                                                                \
	} while (0)

static int is_type(const struct nj_value *v, enum nj_type type)
{
	return v && v->type == type;
}

/* "logits[3]" when batched, "logits" for the single sequence. */
static const char *seq_name(char *buf, size_t n, const char *field, int batched, uint32_t b)
{
	if (batched)
		snprintf(buf, n, "%s[%u]", field, b);
	else
		snprintf(buf, n, "%s", field);
	return buf;
}

/* Checks that one sequence is [steps][K]; no allocation before this holds
 * for every sequence, so a body cannot ask for more floats than it has. */
static int check_shape(const struct nj_value *seq, const char *name, uint32_t steps, uint32_t K,
		       char *err, size_t errlen)
{
	const struct nj_value *step;
	uint32_t t = 0;

	if (!is_type(seq, NJ_ARRAY))
		BAD("%s: want a list of steps", name);
	if (seq->count != steps)
		BAD("%s has %u steps, logits[0] has %u", name, seq->count, steps);
	nj_foreach(step, seq)
	{
		if (!is_type(step, NJ_ARRAY))
			BAD("%s[%u]: want a list of %u scores", name, t, K);
		if (step->count != K)
			BAD("%s[%u] has %u scores, the model has %u tags", name, t, step->count, K);
		t++;
	}
	return 0;
}

/* Copies one sequence's [steps][K] scores (shape checked) into out. */
static int fill_sequence(const struct nj_value *seq, const char *name, uint32_t K, float *out,
			 char *err, size_t errlen)
{
	const struct nj_value *step, *x;
	uint32_t t = 0, j;

	nj_foreach(step, seq)
	{
		j = 0;
		nj_foreach(x, step)
		{
			if (!is_type(x, NJ_NUMBER))
				BAD("%s[%u][%u]: not a number", name, t, j);
			float v = (float)x->num;
			if (!isfinite(v))
				BAD("%s[%u][%u]: not a finite float32", name, t, j);
			out[(size_t)t * K + j++] = v;
		}
		t++;
	}
	return 0;
}

static int parse_logits(struct ner_request *r, const struct nj_value *logits, char *err,
			size_t errlen)
{
	const struct nj_value *seq, *first;
	char name[48];
	uint32_t b;
	int ret;

	if (!is_type(logits, NJ_ARRAY))
		BAD("logits: want a list of sequences of per-tag scores");
	first = logits->child;
	/* [steps][K] when the first element's first element is a number. */
	r->batched = !(first && is_type(first, NJ_ARRAY) && first->child &&
		       is_type(first->child, NJ_NUMBER));
	if (r->batched) {
		if (logits->count > NER_MAX_BATCH)
			BAD("logits: %u sequences, at most %u", logits->count, NER_MAX_BATCH);
		r->batch = logits->count;
		r->steps = is_type(first, NJ_ARRAY) ? first->count : 0;
	} else {
		r->batch = 1;
		r->steps = logits->count;
	}
	if (r->steps > NER_MAX_STEPS)
		BAD("logits: %u steps, at most %u", r->steps, NER_MAX_STEPS);
	b = 0;
	for (seq = r->batched ? first : logits; b < r->batch; b++, seq = seq->next) {
		ret = check_shape(seq, seq_name(name, sizeof(name), "logits", r->batched, b),
				  r->steps, r->num_tags, err, errlen);
		if (ret)
			return ret;
	}
	const size_t cells = (size_t)r->batch * r->steps;
	r->logits = malloc((cells * r->num_tags + 1) * sizeof(float));
	r->lengths = calloc(r->batch + 1, sizeof(int32_t));
	if (!r->logits || !r->lengths)
		return -ENOMEM;
	b = 0;
	for (seq = r->batched ? first : logits; b < r->batch; b++, seq = seq->next) {
		ret = fill_sequence(seq, seq_name(name, sizeof(name), "logits", r->batched, b),
				    r->num_tags, r->logits + (size_t)b * r->steps * r->num_tags,
				    err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

/* Bytes in the UTF-8 character starting at s (n bytes left), or 0. */
static uint32_t utf8_char_len(const unsigned char *s, size_t n)
{
	uint32_t len;

	if (s[0] < 0x80)
		return 1;
	else if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	for (uint32_t k = 1; k < len; k++)
		if ((s[k] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* Counts (out == NULL) or stores the characters of one text. */
static int split_text(const char *text, size_t n, const char *name, struct ner_span *out,
		      uint32_t *count, char *err, size_t errlen)
{
	uint32_t c = 0;

	for (size_t at = 0; at < n;) {
		uint32_t len = utf8_char_len((const unsigned char *)text + at, n - at);
		if (!len)
			BAD("%s: invalid UTF-8 at byte %zu", name, at);
		if (out)
			out[c] = (struct ner_span){ text + at, len };
		c++;
		at += len;
	}
	*count = c;
	return 0;
}

/* The strings (or texts) of sequence b of the tokens/text field. */
static int sequence_tokens(const struct nj_value *seq, int is_text, const char *name,
			   struct ner_span *out, uint32_t *count, char *err, size_t errlen)
{
	const struct nj_value *tok;
	uint32_t c = 0;

	if (is_text) {
		if (!is_type(seq, NJ_STRING))
			BAD("%s: want a string", name);
		return split_text(seq->str, seq->len, name, out, count, err, errlen);
	}
	if (!is_type(seq, NJ_ARRAY))
		BAD("%s: want a list of strings", name);
	nj_foreach(tok, seq)
	{
		if (!is_type(tok, NJ_STRING))
			BAD("%s[%u]: want a string", name, c);
		if (out)
			out[c] = (struct ner_span){ tok->str, tok->len };
		c++;
	}
	*count = c;
	return 0;
}

/* tokens or text: two passes over the sequences, count then store. */
static int parse_tokens(struct ner_request *r, const struct nj_value *field, int is_text, char *err,
			size_t errlen)
{
	const char *fname = is_text ? "text" : "tokens";
	const struct nj_value *seq;
	char name[48];
	uint32_t b, count;
	int ret;

	if (r->batched) {
		if (!is_type(field, NJ_ARRAY) || field->count != r->batch)
			BAD("%s: want a list of %u %s, one per sequence", fname, r->batch,
			    is_text ? "strings" : "lists of strings");
	}
	r->tok_off = calloc(r->batch + 1, sizeof(*r->tok_off));
	if (!r->tok_off)
		return -ENOMEM;
	for (int pass = 0; pass < 2; pass++) {
		b = 0;
		seq = r->batched ? field->child : field;
		for (; b < r->batch; b++, seq = seq->next) {
			struct ner_span *out = pass ? r->tokens + r->tok_off[b] : NULL;
			seq_name(name, sizeof(name), fname, r->batched, b);
			ret = sequence_tokens(seq, is_text, name, out, &count, err, errlen);
			if (ret)
				return ret;
			if (!pass)
				r->tok_off[b + 1] = r->tok_off[b] + count;
		}
		if (!pass) {
			r->tokens = malloc(((size_t)r->tok_off[r->batch] + 1) * sizeof(*r->tokens));
			if (!r->tokens)
				return -ENOMEM;
		}
	}
	return 0;
}

/* A length: an integer in 0..steps. */
static int parse_length(const struct nj_value *x, const char *name, uint32_t steps, int32_t *out,
			char *err, size_t errlen)
{
	if (!is_type(x, NJ_NUMBER) || x->num != floor(x->num))
		BAD("%s: want an integer", name);
	if (x->num < 0 || x->num > steps)
		BAD("%s is %.0f, the logits have %u steps", name, x->num, steps);
	*out = (int32_t)x->num;
	return 0;
}

static int parse_lengths(struct ner_request *r, const struct nj_value *field, char *err,
			 size_t errlen)
{
	char name[48];
	int ret;

	if (!field) {
		for (uint32_t b = 0; b < r->batch; b++) {
			uint32_t n = r->steps;
			if (r->tok_off) {
				n = r->tok_off[b + 1] - r->tok_off[b];
				if (n > r->steps)
					BAD("%s has %u tokens, the logits have %u steps",
					    seq_name(name, sizeof(name), "tokens", r->batched, b),
					    n, r->steps);
			}
			r->lengths[b] = (int32_t)n;
		}
		return 0;
	}
	if (!r->batched && is_type(field, NJ_NUMBER))
		return parse_length(field, "lengths", r->steps, &r->lengths[0], err, errlen);
	if (!is_type(field, NJ_ARRAY) || field->count != r->batch)
		BAD("lengths: want a list of %u integers, one per sequence", r->batch);
	const struct nj_value *x = field->child;
	for (uint32_t b = 0; b < r->batch; b++, x = x->next) {
		snprintf(name, sizeof(name), "lengths[%u]", b);
		ret = parse_length(x, name, r->steps, &r->lengths[b], err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

/* Every sequence needs a token for each decoded step. */
static int check_token_counts(const struct ner_request *r, char *err, size_t errlen)
{
	char name[48];

	if (!r->tok_off)
		return 0;
	for (uint32_t b = 0; b < r->batch; b++) {
		uint32_t n = r->tok_off[b + 1] - r->tok_off[b];
		if (n < (uint32_t)r->lengths[b])
			BAD("%s has %u tokens, its length is %d",
			    seq_name(name, sizeof(name), "tokens", r->batched, b), n,
			    r->lengths[b]);
	}
	return 0;
}

static int parse(struct ner_request *r, const char *body, size_t len, char *err, size_t errlen)
{
	const struct nj_value *root, *tokens, *text, *flag;
	int ret;

	ret = nj_parse(&r->doc, body, len, NER_MAX_VALUES);
	if (ret == -EINVAL)
		BAD("body is not valid JSON");
	if (ret == -E2BIG)
		BAD("body: more than %u JSON values, at most %u: split the batch", NER_MAX_VALUES,
		    NER_MAX_VALUES);
	if (ret)
		return ret;
	root = nj_root(&r->doc);
	if (!is_type(root, NJ_OBJECT))
		BAD("body: want a JSON object");
	ret = parse_logits(r, nj_get(root, "logits"), err, errlen);
	if (ret)
		return ret;
	tokens = nj_get(root, "tokens");
	text = nj_get(root, "text");
	if (tokens && text)
		BAD("give tokens or text, not both");
	if (tokens || text) {
		ret = parse_tokens(r, tokens ? tokens : text, !tokens, err, errlen);
		if (ret)
			return ret;
	}
	ret = parse_lengths(r, nj_get(root, "lengths"), err, errlen);
	if (ret)
		return ret;
	flag = nj_get(root, "return_tags");
	if (flag && !is_type(flag, NJ_TRUE) && !is_type(flag, NJ_FALSE))
		BAD("return_tags: want true or false");
	r->return_tags = is_type(flag, NJ_TRUE);
	return check_token_counts(r, err, errlen);
}

int ner_request_parse(const char *body, size_t len, uint32_t num_tags, struct ner_request *out,
		      char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->num_tags = num_tags;
	int ret = parse(out, body, len, err, errlen);
	if (ret) {
		if (ret == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		ner_request_fini(out);
	}
	return ret;
}

void ner_request_fini(struct ner_request *r)
{
	free(r->tok_off);
	free(r->tokens);
	free(r->lengths);
	free(r->logits);
	nj_free(&r->doc);
	memset(r, 0, sizeof(*r));
}
