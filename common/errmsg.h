/*
 * Error messages into a caller's buffer.
 */
#ifndef THAW_ERRMSG_H
#define THAW_ERRMSG_H

#include <stddef.h>

/* Formats the message into err (errlen bytes) and returns rc, so that
 * `return errmsg(err, errlen, -EIO, "...", ...);` reports and fails. The
 * message is one line: control characters (from names in it) become '?'. */
int errmsg(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
