/*
 * ocr_fetch: downloads a request's documents in parallel with libcurl's
 * multi interface. Only http and https, also across redirects; every
 * transfer is bounded in size, redirects and time. Only public addresses
 * are connected to, checked on the address each connection goes to (after
 * DNS, on every redirect): loopback, link-local (169.254.169.254, the
 * cloud metadata service), private, shared, multicast and reserved ranges
 * are refused unless the allow list names them; no proxy is used.
 */
#ifndef OCR_FETCH_H
#define OCR_FETCH_H

#include <stddef.h>
#include <stdint.h>

struct ocr_fetch {
	const char *url;     /* in, borrowed */
	unsigned char *data; /* out, malloc'd; freed by ocr_fetch_fini() */
	size_t len;
	long http_status;    /* out, last response's status; 0 if none */
	char error[256];     /* out, why it failed; "" when it did not */
};

struct ocr_fetch_limits {
	size_t max_bytes;        /* per document */
	long max_redirects;
	int64_t timeout_ms;      /* for the whole batch; usually the time left */
	int64_t connect_timeout_ms;
	long max_parallel;       /* connections at once */
	/* addresses or CIDR ranges ("127.0.0.1,10.0.0.0/8,fd00::/8") that may
	 * be fetched although not public; NULL or "": none */
	const char *allow;
};

struct sockaddr;
/* Whether a connection to sa may be made: a public address, or one in the
 * allow list (as in ocr_fetch_limits). */
int ocr_fetch_addr_allowed(const struct sockaddr *sa, const char *allow);

/* Once per process, before any thread runs (curl_global_init). */
int ocr_fetch_global_init(void);

/* Downloads items[0..n). Stops at the first failure. Returns 0 when all
 * succeeded; -EIO when one failed (*failed is its index, its error says
 * why); -ETIMEDOUT when the batch ran out of time (*failed is the first
 * unfinished one); -ENOMEM. */
int ocr_fetch_all(struct ocr_fetch *items, size_t n,
		  const struct ocr_fetch_limits *lim, size_t *failed);
void ocr_fetch_fini(struct ocr_fetch *item);

#endif
