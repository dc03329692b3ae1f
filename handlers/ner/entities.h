/*
 * From decoded tag paths to entities, and the response body.
 *
 * BIO rules: B-X opens an entity of type X (closing any open one); I-X
 * continues an open entity of type X, and otherwise opens a new one (after
 * O, at the start, or after an entity of another type), as the common
 * lenient decoders (seqeval's default IOB2 mode, the BERT-BiLSTM-CRF
 * serving code) do; any other tag closes the open entity.
 */
#ifndef THAW_NER_ENTITIES_H
#define THAW_NER_ENTITIES_H

#include <stdint.h>

#include "handlers/ner/model.h"
#include "handlers/ner/request.h"

struct ner_entity {
	uint32_t start, end; /* token indices, end exclusive */
	uint32_t type;       /* index into ner_model.types */
};

/* Finds the entities of path[0..n) (tags; values outside 0..K-1 count as
 * outside) and stores them in out, which has room for n. Returns how many. */
uint32_t ner_entities(const struct ner_model *m, const int32_t *path, uint32_t n,
		      struct ner_entity *out);

/* The response body for r decoded into paths ([batch][steps]):
 * {"entities": [[{"word", "start", "end", "type"}, ...], ...]} ("word" only
 * with tokens; one flat list for a single-sequence request; "tags" too when
 * r->return_tags). Returns a malloc'd NUL-terminated string the caller
 * frees, or NULL when out of memory. */
char *ner_response_json(const struct ner_model *m, const struct ner_request *r,
			const int32_t *paths);

/* The entities of each sequence of r decoded into paths, as the elements
 * of a BYTES tensor [batch]: a 4-byte little-endian length, then the JSON
 * list [{"start", "end", "type"}, ...] written as ner_response_json writes
 * it (strings escaped). Returns a malloc'd buffer of *len bytes, or NULL
 * when out of memory. */
char *ner_entities_bytes(const struct ner_model *m, const struct ner_request *r,
			 const int32_t *paths, size_t *len);

#endif
