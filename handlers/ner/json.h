/*
 * A small, strict JSON parser for request bodies that are mostly numbers.
 *
 * Why not cJSON: a batch of 64 x 128 x 7 logits is ~57,000 numbers; cJSON
 * spends one malloc, one strtod and one localeconv per number (~10-25 ms for
 * 440 KB). This parser puts every value in one preallocated array and reads
 * numbers with the exact fast path (mantissa <= 2^53, |exponent| <= 22: one
 * correctly rounded multiply or divide, the same double strtod gives),
 * calling strtod only for the rest.
 *
 * Strict RFC 8259: no leading zeros or '+', no trailing commas, no comments,
 * no control characters in strings, no lone surrogates, no \u0000 (strings
 * are handed out NUL-terminated), nesting at most NJ_MAX_DEPTH. Bytes >= 0x80
 * in strings are passed through (the caller checks UTF-8 where it matters).
 * Duplicate keys are kept; nj_get returns the first.
 */
#ifndef THAW_NER_JSON_H
#define THAW_NER_JSON_H

#include <stddef.h>
#include <stdint.h>

#define NJ_MAX_DEPTH 64

enum nj_type { NJ_NULL, NJ_FALSE, NJ_TRUE, NJ_NUMBER, NJ_STRING, NJ_ARRAY, NJ_OBJECT };

struct nj_value {
	enum nj_type type;
	uint32_t count;         /* NJ_ARRAY, NJ_OBJECT: number of children */
	struct nj_value *child; /* first child, or NULL */
	struct nj_value *next;  /* next sibling, or NULL */
	const char *key;        /* member name inside an object, else NULL */
	const char *str;        /* NJ_STRING: NUL-terminated, len bytes */
	uint32_t len;
	double num;             /* NJ_NUMBER */
};

/* A parsed document: every value and string lives in its two arrays. */
struct nj_doc {
	struct nj_value *values; /* values[0] is the root */
	size_t n, cap;
	char *strings;
	size_t str_used, str_cap;
};

/* Parses text[0..len) into doc (overwritten). Returns 0, -EINVAL (not
 * valid JSON by the rules above), -E2BIG (more than max_values values;
 * 0: no bound but the text's length) or -ENOMEM. Each value takes
 * sizeof(struct nj_value) bytes, ~28x the text it came from at worst: a
 * caller parsing untrusted text bounds it. On success the caller frees doc
 * with nj_free; on error doc holds nothing. */
int nj_parse(struct nj_doc *doc, const char *text, size_t len, size_t max_values);
void nj_free(struct nj_doc *doc);

static inline const struct nj_value *nj_root(const struct nj_doc *doc)
{
	return doc->values;
}

/* The first member of obj named key, or NULL (also when obj is no object). */
const struct nj_value *nj_get(const struct nj_value *obj, const char *key);

#define nj_foreach(el, container)                                                              \
	for ((el) = (container) ? (container)->child : NULL; (el); (el) = (el)->next)

#endif
