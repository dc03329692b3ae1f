/*
 * The ner handler's request body, parsed and checked (docs/handlers-ner.md).
 *
 * Batched form:
 *   {"logits": [batch][steps][K], "lengths": [n, ...],
 *    "tokens": [["重", "庆", ...], ...]  or  "text": ["重庆市...", ...],
 *    "return_tags": false}
 * Single-sequence form (answered unbatched too):
 *   {"logits": [steps][K], "lengths": n or [n], "tokens": [...] or "text": "..."}
 *
 * logits must be rectangular with exactly K (the model's tag count) finite
 * float32 scores per step. lengths are integers in 0..steps; without them a
 * sequence is as long as its tokens, or all steps without tokens. tokens and
 * text are optional (entities then carry no "word"); text is split into
 * UTF-8 characters. A sequence needs at least lengths[b] tokens; tokens past
 * its length are ignored.
 */
#ifndef THAW_NER_REQUEST_H
#define THAW_NER_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "handlers/ner/json.h"

#define NER_MAX_BATCH 65536u
/* Steps per sequence, and JSON values in a body (each ~56 bytes parsed):
 * past them a request would take the instance's memory, not an answer. */
#define NER_MAX_STEPS 16384u
#define NER_MAX_VALUES (1u << 20)

/* A token: a view into a string of ner_request.root. */
struct ner_span {
	const char *p;
	uint32_t len;
};

struct ner_request {
	struct nj_doc doc; /* the parsed body; owns what the spans point into */
	int batched;       /* 0 when the single-sequence form was used */
	int return_tags;   /* "return_tags": true */
	uint32_t batch, steps, num_tags;
	float *logits;     /* [batch][steps][num_tags] */
	int32_t *lengths;  /* [batch] */
	struct ner_span *tokens; /* tokens of sequence b: tokens[tok_off[b] .. tok_off[b+1]) */
	uint32_t *tok_off; /* [batch+1], or NULL when the request has no tokens */
};

/* Parses body (len bytes) for a model of num_tags tags into out (zeroed
 * first). Returns 0; -EINVAL with a client-facing message in err (answer
 * 400); or -ENOMEM. On success the caller frees out with ner_request_fini;
 * on error out holds nothing. */
int ner_request_parse(const char *body, size_t len, uint32_t num_tags, struct ner_request *out,
		      char *err, size_t errlen);

void ner_request_fini(struct ner_request *r);

#endif
