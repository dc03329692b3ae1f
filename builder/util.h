/* Small helpers shared by the builder's files. */
#ifndef THAW_BUILDER_UTIL_H
#define THAW_BUILDER_UTIL_H

#include <stddef.h>

/* Formats the message into err (errlen bytes) and returns rc, so that
 * `return builder__fail(err, errlen, -EIO, "...", ...);` reports and fails. */
int builder__fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* mkdir -p with mode 0755. Returns 0 or -errno. */
int builder__mkdir_p(const char *path);

#endif
