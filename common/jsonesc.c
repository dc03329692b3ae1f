#include "common/jsonesc.h"

static const char hexdig[] = "0123456789abcdef";

/* Length of the well-formed UTF-8 sequence at p (2..4), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = *p;
	if (c < 0xc2 || c > 0xf4)
		return 0;
	size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
	if ((size_t)(end - p) < want)
		return 0;
	for (size_t i = 1; i < want; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	/* no overlong forms, no surrogates, nothing past U+10FFFF */
	if (want == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)))
		return 0;
	if (want == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)))
		return 0;
	return want;
}

int json_escape(const char *s, size_t len, json_sink sink, void *ctx)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
	int r = 0;
	while (p < end && !r) {
		unsigned char c = *p;
		size_t seq;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			p++;
			continue;
		}
		if (c >= 0x80 && (seq = utf8_seq(p, end))) {
			p += seq;
			continue;
		}
		r = p > run ? sink(ctx, run, (size_t)(p - run)) : 0;
		char esc[6] = { '\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 15] };
		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
			r = r ? r : sink(ctx, esc, 2);
		} else if (c == '\n') {
			r = r ? r : sink(ctx, "\\n", 2);
		} else {
			r = r ? r : sink(ctx, esc, 6);
		}
		run = ++p;
	}
	return r || p == run ? r : sink(ctx, run, (size_t)(p - run));
}
