/*
 * The one JSON string escaper, used by the daemon (buf_append_json_string),
 * the instance host and, through the SDK (thaw_response_write_json), by
 * handlers: quotes, backslashes and control characters escaped, well-formed
 * UTF-8 passed as is, any other byte written as \u00XX, so the document
 * stays valid JSON whatever the input.
 */
#ifndef THAW_JSONESC_H
#define THAW_JSONESC_H

#include <stddef.h>

/* Where escaped bytes go; returns 0 or -errno (which stops the escaper). */
typedef int (*json_sink)(void *ctx, const void *data, size_t len);

/* Writes s[0..len) as the inside of a JSON string (no quotes) to sink, in
 * runs. Returns 0 or the sink's error. */
int json_escape(const char *s, size_t len, json_sink sink, void *ctx);

#endif
