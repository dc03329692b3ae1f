#include "kernels/staging.h"

#include <errno.h>
#include <string.h>

int staging_copy(struct staging *s, void *dst, const void *src, size_t bytes)
{
	if (!s || !s->ops || !s->size || (bytes && (!dst || !src)))
		return -EINVAL;
	for (size_t off = 0; off < bytes;) {
		unsigned i = s->next & 1;
		size_t n = bytes - off < s->size ? bytes - off : s->size;
		int rc = s->ops->wait(s->arg, i);
		if (rc < 0)
			return rc;
		memcpy(s->ops->buf(s->arg, i), (const char *)src + off, n);
		rc = s->ops->copy(s->arg, i, (char *)dst + off, n);
		if (rc < 0)
			return rc;
		s->next = i ^ 1;
		off += n;
	}
	return 0;
}
