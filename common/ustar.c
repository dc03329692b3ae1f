#include "common/ustar.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Field offsets and widths of a ustar header. */
#define F_MODE 100, 8
#define F_UID 108, 8
#define F_GID 116, 8
#define F_SIZE 124, 12
#define F_MTIME 136, 12
#define F_SUM 148, 8
#define F_TYPE 156
#define F_MAGIC 257

static void octal(char *h, size_t off, size_t width, uint64_t v)
{
	snprintf(h + off, width, "%0*llo", (int)width - 1, (unsigned long long)v);
}

static unsigned checksum(const char *h)
{
	unsigned sum = 0;
	for (size_t i = 0; i < USTAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : (unsigned char)h[i];
	return sum;
}

static int bad_name(const char *name, size_t n)
{
	return !n || n > USTAR_NAME_MAX || memchr(name, '/', n) || name[0] == '.';
}

int ustar_header(char out[USTAR_BLOCK], const char *name, mode_t mode, uint64_t size)
{
	size_t n = strlen(name);
	if (bad_name(name, n))
		return -EINVAL;
	memset(out, 0, USTAR_BLOCK);
	memcpy(out, name, n);
	octal(out, F_MODE, mode & 07777);
	octal(out, F_UID, 0);
	octal(out, F_GID, 0);
	if (size < (1ull << 33)) {
		octal(out, F_SIZE, size);
	} else { /* GNU base-256: a high bit, then the value big-endian */
		unsigned char *p = (unsigned char *)out + 124;
		p[0] = 0x80;
		for (int i = 11; i >= 1; i--, size >>= 8)
			p[i] = (unsigned char)size;
	}
	octal(out, F_MTIME, 0);
	out[F_TYPE] = '0';
	memcpy(out + F_MAGIC, "ustar\0" "00", 8);
	snprintf(out + 148, 8, "%06o", checksum(out));
	return 0;
}

size_t ustar_padding(uint64_t size)
{
	return (size_t)((USTAR_BLOCK - size % USTAR_BLOCK) % USTAR_BLOCK);
}

/* An octal field (digits, then NUL or spaces), or -1. */
static int64_t parse_octal(const char *h, size_t off, size_t width)
{
	uint64_t v = 0;
	size_t i = off, end = off + width;
	while (i < end && h[i] == ' ')
		i++;
	size_t start = i;
	for (; i < end && h[i] >= '0' && h[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v * 8 + (uint64_t)(h[i] - '0');
	}
	if (i == start)
		return -1;
	for (; i < end; i++)
		if (h[i] != ' ' && h[i] != '\0')
			return -1;
	return (int64_t)v;
}

int ustar_parse(const char in[USTAR_BLOCK], char name[USTAR_NAME_MAX + 1], mode_t *mode,
		uint64_t *size)
{
	static const char zero[USTAR_BLOCK];
	if (!memcmp(in, zero, USTAR_BLOCK))
		return 0;
	int64_t sum = parse_octal(in, F_SUM), m = parse_octal(in, F_MODE);
	if (sum < 0 || (unsigned)sum != checksum(in) || m < 0 || memcmp(in + F_MAGIC, "ustar", 5) ||
	    (in[F_TYPE] != '0' && in[F_TYPE] != '\0'))
		return -EBADMSG;
	const unsigned char *p = (const unsigned char *)in + 124;
	if (p[0] == 0x80) {
		uint64_t v = 0;
		for (int i = 1; i < 12; i++) {
			if (v >> 56)
				return -EBADMSG;
			v = v << 8 | p[i];
		}
		*size = v;
	} else {
		int64_t s = parse_octal(in, F_SIZE);
		if (s < 0)
			return -EBADMSG;
		*size = (uint64_t)s;
	}
	size_t n = strnlen(in, 100);
	/* a name of 100 bytes has no NUL; a prefix field would add a folder */
	if (bad_name(in, n) || in[345] != '\0')
		return -EBADMSG;
	memcpy(name, in, n);
	name[n] = '\0';
	*mode = (mode_t)m & 07777;
	return 1;
}
