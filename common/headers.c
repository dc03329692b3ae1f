#include "common/headers.h"
#include "common/http.h"

#include <string.h>
#include <strings.h>

/* What a header is, for header_passes. */
enum {
	H_HOP = 1,         /* hop-by-hop (RFC 9110 7.6.1): never passes */
	H_FRAMING = 2,     /* content-length, expect: each hop frames its own */
	H_CREDENTIAL = 4,  /* the admin token travels in these */
	H_FORWARDING = 8,  /* set by the proxy: a client's copy would pass for ours */
	H_PLATFORM = 16,   /* x-fc-*: set by the platform, not by clients */
	H_HOST = 32,       /* the proxy names its upstream */
	H_AUTHORIZATION = 64, /* the token, for authType: function; else the user's */
};

static const struct {
	const char *name;
	unsigned what;
} table[] = {
	{ "connection", H_HOP },
	{ "keep-alive", H_HOP },
	{ "proxy-connection", H_HOP },
	{ "transfer-encoding", H_HOP },
	{ "upgrade", H_HOP },
	{ "te", H_HOP },
	{ "trailer", H_HOP },
	{ "content-length", H_FRAMING },
	{ "expect", H_FRAMING },
	{ "host", H_HOST },
	{ "authorization", H_AUTHORIZATION },
	{ "proxy-authorization", H_CREDENTIAL },
	{ "x-thaw-token", H_CREDENTIAL },
	{ "forwarded", H_FORWARDING },
	{ "x-proxycontextpath", H_FORWARDING },
};

static bool is(const char *n, size_t len, const char *name)
{
	return strlen(name) == len && !strncasecmp(n, name, len);
}

static unsigned what(const char *n, size_t len)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (is(n, len, table[i].name))
			return table[i].what;
	if (len >= 12 && !strncasecmp(n, "x-forwarded-", 12))
		return H_FORWARDING;
	if (len >= 5 && !strncasecmp(n, "x-fc-", 5))
		return H_PLATFORM;
	return 0;
}

/* Whether a Connection header of r names this header: it is then
 * hop-by-hop too (RFC 9110 7.6.1). Bounded by r's headers. */
static bool named_by_connection(const struct http_req *r, const char *n, size_t len)
{
	for (unsigned i = 0; r && i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		if (!is(http_span_ptr(r, h->name), h->name.len, "connection"))
			continue;
		const char *v = http_span_ptr(r, h->value), *end = v + h->value.len;
		while (v < end) {
			while (v < end && (*v == ',' || *v == ' ' || *v == '\t'))
				v++;
			const char *tok = v;
			while (v < end && *v != ',' && *v != ' ' && *v != '\t')
				v++;
			if ((size_t)(v - tok) == len && !strncasecmp(tok, n, len))
				return true;
		}
	}
	return false;
}

bool header_passes(enum header_hop hop, const struct http_req *r, const char *name, size_t len)
{
	static const unsigned drop[] = {
		[HOP_TO_HANDLER] = H_HOP | H_FRAMING | H_CREDENTIAL | H_PLATFORM,
		[HOP_TO_TOKEN_HANDLER] = H_HOP | H_FRAMING | H_CREDENTIAL | H_AUTHORIZATION |
					 H_PLATFORM,
		[HOP_TO_UPSTREAM] = H_HOP | H_FRAMING | H_CREDENTIAL | H_AUTHORIZATION |
				    H_FORWARDING | H_HOST | H_PLATFORM,
		[HOP_FROM_HANDLER] = H_HOP | H_FRAMING,
	};
	if (what(name, len) & drop[hop])
		return false;
	return hop == HOP_FROM_HANDLER || !named_by_connection(r, name, len);
}
