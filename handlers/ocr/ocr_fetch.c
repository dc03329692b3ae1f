/*
 * ocr_fetch: parallel downloads with curl multi; see ocr_fetch.h.
 */
#include "handlers/ocr/ocr_fetch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

struct xfer {
	struct ocr_fetch *item;
	CURL *easy;
	size_t cap;       /* bytes allocated at item->data */
	size_t max_bytes;
	const char *allow;
	int too_big;
	int refused;      /* a destination that is not public */
	int done;
};

/* Whether the first bits bits of a and b (bytes) agree. */
static int prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole))
		return 0;
	return !rest || ((a[whole] ^ b[whole]) & (0xff << (8 - rest))) == 0;
}

/* Ranges that are not the public internet: RFC 6890 special-purpose
 * blocks, as IPv6 (IPv4 ones as ::ffff:a.b.c.d, which is how they are
 * compared). */
static const struct {
	const char *net;
	unsigned bits;
} not_public[] = {
	{ "::ffff:0.0.0.0", 104 },      /* 0/8 "this network" */
	{ "::ffff:10.0.0.0", 104 },     /* private */
	{ "::ffff:100.64.0.0", 106 },   /* shared (CGNAT) */
	{ "::ffff:127.0.0.0", 104 },    /* loopback */
	{ "::ffff:169.254.0.0", 112 },  /* link-local, cloud metadata */
	{ "::ffff:172.16.0.0", 108 },   /* private */
	{ "::ffff:192.0.0.0", 120 },    /* IETF protocol assignments */
	{ "::ffff:192.0.2.0", 120 },    /* documentation */
	{ "::ffff:192.168.0.0", 112 },  /* private */
	{ "::ffff:198.18.0.0", 111 },   /* benchmarking */
	{ "::ffff:198.51.100.0", 120 }, /* documentation */
	{ "::ffff:203.0.113.0", 120 },  /* documentation */
	{ "::ffff:224.0.0.0", 100 },    /* multicast */
	{ "::ffff:240.0.0.0", 100 },    /* reserved, broadcast */
	{ "::", 128 },                  /* unspecified */
	{ "::1", 128 },                 /* loopback */
	{ "::", 96 },                   /* IPv4-compatible (deprecated) */
	{ "64:ff9b::", 96 },            /* NAT64: could reach any IPv4 */
	{ "64:ff9b:1::", 48 },          /* local NAT64 */
	{ "100::", 64 },                /* discard */
	{ "2001:db8::", 32 },           /* documentation */
	{ "fc00::", 7 },                /* unique local */
	{ "fe80::", 10 },               /* link-local */
	{ "fec0::", 10 },               /* site-local (deprecated) */
	{ "ff00::", 8 },                /* multicast */
};

/* An address or CIDR of the allow list, as 16 bytes (IPv4 mapped) and
 * a prefix length; 0 or -EINVAL. */
static int parse_net(const char *s, size_t len, unsigned char net[16], unsigned *bits)
{
	char buf[64], *slash;
	struct in_addr a4;
	unsigned plus = 0;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = 0;
	slash = strchr(buf, '/');
	if (slash)
		*slash = 0;
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		memset(net, 0, 10);
		net[10] = net[11] = 0xff;
		memcpy(net + 12, &a4, 4);
		plus = 96;
		*bits = 128;
	} else if (inet_pton(AF_INET6, buf, net) == 1) {
		*bits = 128;
	} else {
		return -EINVAL;
	}
	if (slash) {
		char *end;
		unsigned long b = strtoul(slash + 1, &end, 10);
		if (!slash[1] || *end || b > 128 - plus)
			return -EINVAL;
		*bits = (unsigned)b + plus;
	}
	return 0;
}

int ocr_fetch_addr_allowed(const struct sockaddr *sa, const char *allow)
{
	unsigned char a[16], net[16];
	unsigned bits;

	if (sa->sa_family == AF_INET) {
		memset(a, 0, 10);
		a[10] = a[11] = 0xff;
		memcpy(a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else {
		return 0;
	}
	for (const char *p = allow; p && *p;) {
		size_t len = strcspn(p, ", ");
		if (parse_net(p, len, net, &bits) == 0 && prefix_match(a, net, bits))
			return 1;
		p += len;
		p += strspn(p, ", ");
	}
	for (size_t i = 0; i < sizeof(not_public) / sizeof(not_public[0]); i++) {
		inet_pton(AF_INET6, not_public[i].net, net);
		if (prefix_match(a, net, not_public[i].bits))
			return 0;
	}
	return 1;
}

/* Every connection curl makes (redirects included) asks here first, with
 * the address DNS gave: a name cannot point past the check. */
static curl_socket_t open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct xfer *x = user;

	(void)purpose;
	if (!ocr_fetch_addr_allowed(&addr->addr, x->allow)) {
		x->refused = 1;
		return CURL_SOCKET_BAD;
	}
	return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ocr_fetch_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -ENOMEM;
}

/* Appends a chunk; returning less than asked aborts the transfer. */
static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct xfer *x = user;
	struct ocr_fetch *it = x->item;
	size_t n = size * nmemb;

	if (n > x->max_bytes - it->len) {
		x->too_big = 1;
		return 0;
	}
	if (it->len + n > x->cap) {
		size_t cap = x->cap ? x->cap : 64 * 1024;
		unsigned char *p;

		while (cap < it->len + n)
			cap *= 2;
		if (cap > x->max_bytes)
			cap = x->max_bytes;
		p = realloc(it->data, cap);
		if (!p)
			return 0;
		it->data = p;
		x->cap = cap;
	}
	memcpy(it->data + it->len, ptr, n);
	it->len += n;
	return n;
}

static int xfer_setup(struct xfer *x, const struct ocr_fetch_limits *lim)
{
	CURL *e = curl_easy_init();
	int64_t conn = lim->connect_timeout_ms;

	if (!e)
		return -ENOMEM;
	if (conn <= 0 || conn > lim->timeout_ms)
		conn = lim->timeout_ms;
	x->easy = e;
	x->max_bytes = lim->max_bytes;
	x->allow = lim->allow;
	curl_easy_setopt(e, CURLOPT_URL, x->item->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, lim->max_redirects);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(conn > 0 ? conn : 1));
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 (long)(lim->timeout_ms > 0 ? lim->timeout_ms : 1));
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)lim->max_bytes);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "thaw-ocr/1");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
	curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no http_proxy: it would fetch for us */
	return 0;
}

/* Records the outcome of a finished transfer; returns 0 or -EIO. */
static int xfer_finish(struct xfer *x, CURLcode res)
{
	struct ocr_fetch *it = x->item;

	x->done = 1;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &it->http_status);
	if (x->refused) {
		snprintf(it->error, sizeof(it->error),
			 "refused: not a public address (OCR_FETCH_ALLOW lists the ones allowed)");
		return -EIO;
	}
	if (x->too_big || res == CURLE_FILESIZE_EXCEEDED) {
		snprintf(it->error, sizeof(it->error),
			 "larger than the limit of %zu bytes", x->max_bytes);
		return -EIO;
	}
	if (res != CURLE_OK) {
		snprintf(it->error, sizeof(it->error), "%s",
			 curl_easy_strerror(res));
		return -EIO;
	}
	if (it->http_status < 200 || it->http_status > 299) {
		snprintf(it->error, sizeof(it->error), "HTTP status %ld",
			 it->http_status);
		return -EIO;
	}
	return 0;
}

int ocr_fetch_all(struct ocr_fetch *items, size_t n,
		  const struct ocr_fetch_limits *lim, size_t *failed)
{
	int64_t deadline = now_ms() + lim->timeout_ms;
	struct xfer *xs;
	CURLM *multi;
	size_t i, left = n;
	int rc = 0;

	*failed = 0;
	if (n == 0)
		return 0;
	if (lim->timeout_ms <= 0)
		return -ETIMEDOUT;
	xs = calloc(n, sizeof(*xs));
	if (!xs)
		return -ENOMEM;
	multi = curl_multi_init();
	if (!multi) {
		rc = -ENOMEM;
		goto free_xs;
	}
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
			  lim->max_parallel > 0 ? lim->max_parallel : 8L);
	for (i = 0; i < n; i++) {
		xs[i].item = &items[i];
		items[i].error[0] = 0;
		rc = xfer_setup(&xs[i], lim);
		if (rc < 0)
			goto cleanup_multi;
		if (curl_multi_add_handle(multi, xs[i].easy) != CURLM_OK) {
			rc = -ENOMEM;
			goto cleanup_multi;
		}
	}
	while (left > 0 && rc == 0) {
		int running, queued;
		int64_t wait = deadline - now_ms();
		CURLMsg *msg;

		if (wait <= 0) {
			rc = -ETIMEDOUT;
			break;
		}
		if (curl_multi_perform(multi, &running) != CURLM_OK) {
			snprintf(items[0].error, sizeof(items[0].error),
				 "curl multi interface failed");
			rc = -EIO;
			break;
		}
		while ((msg = curl_multi_info_read(multi, &queued))) {
			struct xfer *x;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			left--;
			if (xfer_finish(x, msg->data.result) < 0 && rc == 0) {
				rc = -EIO;
				*failed = (size_t)(x - xs);
			}
		}
		if (left == 0 || rc)
			break;
		curl_multi_poll(multi, NULL, 0, (int)(wait < 1000 ? wait : 1000), NULL);
	}
	if (rc == -ETIMEDOUT) {
		for (i = 0; i < n; i++)
			if (!xs[i].done) {
				*failed = i;
				snprintf(items[i].error, sizeof(items[i].error),
					 "timed out");
				break;
			}
	}

cleanup_multi:
	for (i = 0; i < n; i++) {
		if (!xs[i].easy)
			continue;
		curl_multi_remove_handle(multi, xs[i].easy);
		curl_easy_cleanup(xs[i].easy);
	}
	curl_multi_cleanup(multi);
free_xs:
	free(xs);
	return rc;
}

void ocr_fetch_fini(struct ocr_fetch *item)
{
	free(item->data);
	item->data = NULL;
	item->len = 0;
}
