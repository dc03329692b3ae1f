#include "common/buf.h"
#include "common/jsonesc.h"
#include "common/mem.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

void buf_reserve(struct buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
	if (!len)
		return;
	buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

void buf_append_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_append_u32(struct buf *b, uint32_t v)
{
	buf_append(b, &v, sizeof(v));
}

void buf_append_u64(struct buf *b, uint64_t v)
{
	buf_append(b, &v, sizeof(v));
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void buf_shrink(struct buf *b, size_t keep)
{
	if (b->cap <= keep || b->len > keep)
		return;
	if (!b->len) {
		buf_free(b);
		return;
	}
	b->data = xrealloc(b->data, keep);
	b->cap = keep;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static int buf_sink(void *ctx, const void *data, size_t len)
{
	buf_append(ctx, data, len);
	return 0;
}

void buf_append_json_string(struct buf *b, const char *s, size_t len)
{
	buf_reserve(b, len + 2);
	buf_append(b, "\"", 1);
	json_escape(s, len, buf_sink, b);
	buf_append(b, "\"", 1);
}

void buf_append_json_error(struct buf *b, const char *msg)
{
	buf_append_str(b, "{\"error\": ");
	buf_append_json_string(b, msg, strlen(msg));
	buf_append_str(b, "}");
}
