/*
 * The ner handler's model: the tag list and the CRF transition matrix.
 *
 * tags.txt holds one tag per line (K lines; blank lines and a trailing CR
 * are dropped). The transition matrix is (K+1) x (K+1), the last row and
 * column being the start state (kernels/viterbi.h), either as JSON, a list
 * of K+1 rows or {"transitions": [...]}, or as raw little-endian float32
 * (a file ending in ".bin"), which stays mapped: its pages are shared by
 * every restored copy of the instance.
 *
 * A tag "B-X" begins an entity of type X, "I-X" continues one; every other
 * tag ("O", "[CLS]", "X", ...) is outside an entity.
 */
#ifndef THAW_NER_MODEL_H
#define THAW_NER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "thaw/handler.h"

enum ner_tag_kind { NER_TAG_OUT, NER_TAG_BEGIN, NER_TAG_INSIDE };

struct ner_tag {
	char *name;            /* "B-LOC" */
	enum ner_tag_kind kind;
	uint32_t type;         /* index into ner_model.types; 0 for NER_TAG_OUT */
};

struct ner_model {
	uint32_t num_tags;     /* K */
	struct ner_tag *tags;  /* [K] */
	char **types;          /* entity types in first-seen order: "LOC", "PER", ... */
	uint32_t num_types;
	const float *trans;    /* [K+1][K+1]: points into trans_map or trans_own */
	float *trans_own;      /* the matrix parsed from JSON, or NULL */
	struct thaw_map trans_map; /* the mapped .bin file, or {NULL, 0} */
};

/* Parses the tag list from text (len bytes, need not be NUL-terminated) into
 * a zeroed m. Returns 0, -EINVAL with a message in err, or -ENOMEM. */
int ner_model_set_tags(struct ner_model *m, const char *text, size_t len, char *err,
		       size_t errlen);

/* Parses a JSON matrix; m must have its tags already. Returns 0, -EINVAL
 * (not a (K+1)x(K+1) matrix of finite numbers; message in err) or -ENOMEM. */
int ner_model_set_trans_json(struct ner_model *m, const char *json, size_t len, char *err,
			     size_t errlen);

/* Loads both files relative to the function's folder (thaw_map_file); a
 * trans_path ending in ".bin" is taken as float32 and kept mapped. Returns 0
 * or -errno with a message in err. On error m holds nothing to free. */
int ner_model_load(struct ner_model *m, const char *tags_path, const char *trans_path, char *err,
		   size_t errlen);

/* Frees everything m holds and zeroes it. */
void ner_model_fini(struct ner_model *m);

#endif
