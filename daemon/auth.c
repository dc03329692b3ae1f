#include "daemon/auth.h"
#include "common/http.h"
#include "daemon/server.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Whether the len bytes at given equal want (wl bytes), in a time that
 * depends on want's length only: memcmp stops at the first byte that
 * differs, which would let a client find a token a byte at a time from the
 * answer's timing. Every byte of want is compared, a wrong length included
 * (it only sets the result). */
static bool equal_ct(const char *given, size_t len, const char *want, size_t wl)
{
	unsigned char diff = len != wl;
	for (size_t i = 0; i < wl; i++)
		diff |= (unsigned char)(want[i] ^ (i < len ? given[i] : 0));
	return diff == 0;
}

/* The token a client presents: X-Thaw-Token, or Authorization: Bearer. */
static bool presented(const struct http_req *r, const char **tok, size_t *len)
{
	struct http_span v;
	if (http_req_header(r, "x-thaw-token", &v)) {
		*tok = http_span_ptr(r, v);
		*len = v.len;
		return true;
	}
	if (!http_req_header(r, "authorization", &v) || v.len < 7 ||
	    strncasecmp(http_span_ptr(r, v), "Bearer ", 7))
		return false;
	*tok = http_span_ptr(r, v) + 7;
	*len = v.len - 7;
	return true;
}

bool auth_admin(const struct http_req *r)
{
	const char *tok;
	size_t len;
	return presented(r, &tok, &len) &&
	       equal_ct(tok, len, server.admin_token, strlen(server.admin_token));
}

void auth_invoke_token(const char *name, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	char msg[128];
	int len = snprintf(msg, sizeof(msg), "thaw-invoke:%s", name);
	HMAC(EVP_sha256(), server.admin_token, (int)strlen(server.admin_token),
	     (const unsigned char *)msg, (size_t)len, md, &n);
	for (unsigned i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	out[64] = '\0';
}

bool auth_invoke(const struct http_req *r, const char *name)
{
	const char *tok;
	size_t len;
	return presented(r, &tok, &len) && auth_invoke_token_ok(tok, len, name);
}

bool auth_invoke_token_ok(const char *tok, size_t len, const char *name)
{
	char want[65];
	if (!tok)
		return false;
	auth_invoke_token(name, want);
	/* the admin token too, as before function tokens existed */
	return equal_ct(tok, len, want, 64) |
	       equal_ct(tok, len, server.admin_token, strlen(server.admin_token));
}
