/* The builder's error reporting: one message into the caller's buffer. */
#ifndef THAW_BUILDER_ERRMSG_H
#define THAW_BUILDER_ERRMSG_H

#include <stddef.h>

/* Formats the message into err (errlen bytes) and returns rc, so that
 * `return builder__fail(err, errlen, -EIO, "...", ...);` reports and fails. */
int builder__fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
