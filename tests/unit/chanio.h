/* The instance channel as a test or benchmark speaks it: whole writes and
 * whole frames, each read within a deadline. Errors come back as -1 or NULL
 * for the caller to assert on (cmocka) or die with (benchmarks). */
#ifndef THAW_TEST_CHANIO_H
#define THAW_TEST_CHANIO_H
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/channel.h"
#include "common/mem.h"

/* Writes all of b to fd: 0, or -1 when the instance stops reading. */
static inline int chan_write(int fd, const struct buf *b)
{
	for (size_t off = 0; off < b->len;) {
		ssize_t n = write(fd, b->data + off, b->len - off);
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

/* Reads one frame, waiting at most wait_ms for each read: fills h and
 * returns the payload (NUL-terminated, caller frees); NULL when the
 * instance is silent, closes the channel or sends a malformed header. */
static inline char *chan_read(int fd, struct channel_hdr *h, int wait_ms)
{
	char *p = (char *)h, *payload = NULL;
	size_t want = sizeof(*h), got = 0;
	for (int phase = 0; phase < 2; phase++) {
		while (got < want) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			ssize_t n = -1;
			if (poll(&pfd, 1, wait_ms) == 1)
				n = read(fd, p + got, want - got);
			if (n <= 0) {
				free(payload);
				return NULL;
			}
			got += (size_t)n;
		}
		if (!phase) {
			if (channel_frame_complete((const char *)h, sizeof(*h)) < 0)
				return NULL;
			payload = xmalloc(h->len + 1);
			p = payload;
			want = h->len;
			got = 0;
		}
	}
	payload[h->len] = '\0';
	return payload;
}

#endif
