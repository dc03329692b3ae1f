/*
 * Growable byte buffer. The buffer owns data; buf_free() releases it.
 * Growth goes through xrealloc (fatal on OOM); callers bound sizes first.
 */
#ifndef THAW_BUF_H
#define THAW_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_append_u32(struct buf *b, uint32_t v);
void buf_append_u64(struct buf *b, uint64_t v);
/* Appends s as a JSON string literal, quotes included. */
void buf_append_json_string(struct buf *b, const char *s, size_t len);
/* Appends the house error body {"error": "<msg>"}. */
void buf_append_json_error(struct buf *b, const char *msg);
/* Drops the first n bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Gives back capacity past keep bytes when what b holds fits in keep (all
 * of it when empty): a buffer that once carried a large message does not
 * keep its size for the rest of its life. May move data. */
void buf_shrink(struct buf *b, size_t keep);
void buf_free(struct buf *b);

#endif
