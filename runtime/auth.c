#include "auth.h"
#include "http.h"
#include "server.h"

#include <string.h>
#include <strings.h>

/* Whether the len bytes at given are the admin token, in a time that
 * depends on the token's length only: memcmp stops at the first byte that
 * differs, which would let a client find the token a byte at a time from
 * the answer's timing. Every byte of the token is compared, a wrong length
 * included (it only sets the result). */
static bool token_equal(const char *given, size_t len)
{
	const char *tok = server.admin_token;
	size_t tl = strlen(tok);
	unsigned char diff = len != tl;
	for (size_t i = 0; i < tl; i++)
		diff |= (unsigned char)(tok[i] ^ (i < len ? given[i] : 0));
	return diff == 0;
}

bool auth_admin(const struct http_req *r)
{
	struct http_span v;
	if (http_req_header(r, "x-thaw-token", &v))
		return token_equal(http_span_ptr(r, v), v.len);
	if (!http_req_header(r, "authorization", &v) || v.len < 7)
		return false;
	const char *p = http_span_ptr(r, v);
	return strncasecmp(p, "Bearer ", 7) == 0 && token_equal(p + 7, v.len - 7);
}
