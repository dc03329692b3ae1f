/*
 * Strict JSON into one preallocated value array (json.h).
 *
 * Bounds: a value takes at least one byte of input and all but the last of
 * a container's elements a comma too, so a text of len bytes holds at most
 * len/2 + 2 values; the unescaped bytes of a string plus its NUL never
 * exceed its quoted form, so len + 1 bytes hold every string. Both arrays
 * are sized up front and never move: values point at each other.
 */
#include "handlers/ner/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	const char *p, *end;
	struct nj_doc *doc;
	int too_many; /* the doc's value array was full */
};

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
		ps->p++;
}

static struct nj_value *new_value(struct parser *ps, enum nj_type type)
{
	struct nj_doc *d = ps->doc;
	if (d->n == d->cap) { /* only past max_values, given the bound in nj_parse */
		ps->too_many = 1;
		return NULL;
	}
	struct nj_value *v = &d->values[d->n++];
	memset(v, 0, sizeof(*v));
	v->type = type;
	return v;
}

static int literal(struct parser *ps, const char *word, size_t n)
{
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return -EINVAL;
	ps->p += n;
	return 0;
}

static const double pow10_exact[23] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
					1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
					1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number(struct parser *ps, double *out)
{
	const char *s = ps->p, *p = s, *end = ps->end;
	uint64_t mant = 0;
	int digits = 0, neg = 0, exact = 1;
	int64_t exp10 = 0, e = 0;

	if (p < end && *p == '-') {
		neg = 1;
		p++;
	}
	if (p == end || *p < '0' || *p > '9')
		return -EINVAL;
	if (*p == '0') {
		p++;
	} else {
		for (; p < end && *p >= '0' && *p <= '9'; p++) {
			if (digits < 19)
				mant = mant * 10 + (uint64_t)(*p - '0');
			else
				exact = 0;
			digits++;
		}
	}
	if (p < end && *p == '.') {
		p++;
		if (p == end || *p < '0' || *p > '9')
			return -EINVAL;
		for (; p < end && *p >= '0' && *p <= '9'; p++) {
			if (digits < 19) {
				mant = mant * 10 + (uint64_t)(*p - '0');
				exp10--;
			} else {
				exact = 0;
			}
			if (mant)
				digits++;
		}
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		int eneg = 0;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			eneg = *p++ == '-';
		if (p == end || *p < '0' || *p > '9')
			return -EINVAL;
		for (; p < end && *p >= '0' && *p <= '9'; p++)
			if (e < 100000)
				e = e * 10 + (*p - '0');
		exp10 += eneg ? -e : e;
	}
	ps->p = p;
	if (exact && mant <= (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
		double v = (double)mant;
		v = exp10 >= 0 ? v * pow10_exact[exp10] : v / pow10_exact[-exp10];
		*out = neg ? -v : v;
		return 0;
	}
	/* The slow, always right way: strtod on a NUL-terminated copy. */
	size_t n = (size_t)(p - s);
	char buf[64], *copy = n < sizeof(buf) ? buf : malloc(n + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, s, n);
	copy[n] = '\0';
	*out = strtod(copy, NULL);
	if (copy != buf)
		free(copy);
	return 0;
}

static int hex4(const char *p, uint32_t *out)
{
	uint32_t v = 0;
	for (int k = 0; k < 4; k++) {
		char c = p[k];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -EINVAL;
	}
	*out = v;
	return 0;
}

/* A string at ps->p (the opening quote) into the string arena. */
static int string(struct parser *ps, const char **out, uint32_t *out_len)
{
	struct nj_doc *d = ps->doc;
	char *dst = d->strings + d->str_used, *w = dst;
	const char *p = ps->p + 1, *end = ps->end;

	for (;;) {
		if (p == end)
			return -EINVAL;
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			break;
		if (c < 0x20)
			return -EINVAL;
		if (c != '\\') {
			*w++ = (char)c;
			p++;
			continue;
		}
		if (end - p < 2)
			return -EINVAL;
		char esc = p[1];
		p += 2;
		switch (esc) {
		case '"': *w++ = '"'; continue;
		case '\\': *w++ = '\\'; continue;
		case '/': *w++ = '/'; continue;
		case 'b': *w++ = '\b'; continue;
		case 'f': *w++ = '\f'; continue;
		case 'n': *w++ = '\n'; continue;
		case 'r': *w++ = '\r'; continue;
		case 't': *w++ = '\t'; continue;
		case 'u': break;
		default: return -EINVAL;
		}
		uint32_t cp, lo;
		if (end - p < 4 || hex4(p, &cp))
			return -EINVAL;
		p += 4;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return -EINVAL;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) ||
			    lo < 0xdc00 || lo > 0xdfff)
				return -EINVAL;
			p += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		if (cp == 0)
			return -EINVAL;
		if (cp < 0x80) {
			*w++ = (char)cp;
		} else if (cp < 0x800) {
			*w++ = (char)(0xc0 | (cp >> 6));
			*w++ = (char)(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000) {
			*w++ = (char)(0xe0 | (cp >> 12));
			*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
			*w++ = (char)(0x80 | (cp & 0x3f));
		} else {
			*w++ = (char)(0xf0 | (cp >> 18));
			*w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
			*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
			*w++ = (char)(0x80 | (cp & 0x3f));
		}
	}
	if ((size_t)(w - dst) > UINT32_MAX)
		return -EINVAL;
	*w++ = '\0';
	*out = dst;
	*out_len = (uint32_t)(w - dst - 1);
	d->str_used += (size_t)(w - dst);
	ps->p = p + 1;
	return 0;
}

static int value(struct parser *ps, struct nj_value **out, int depth);

/* An array or object at ps->p ('[' or '{'). */
static int container(struct parser *ps, struct nj_value *v, int depth)
{
	const int is_obj = v->type == NJ_OBJECT;
	const char close = is_obj ? '}' : ']';
	struct nj_value **link = &v->child;
	int ret;

	if (depth >= NJ_MAX_DEPTH)
		return -EINVAL;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		const char *key = NULL;
		uint32_t key_len;
		struct nj_value *el;

		if (is_obj) {
			if (ps->p == ps->end || *ps->p != '"')
				return -EINVAL;
			ret = string(ps, &key, &key_len);
			if (ret)
				return ret;
			skip_ws(ps);
			if (ps->p == ps->end || *ps->p != ':')
				return -EINVAL;
			ps->p++;
			skip_ws(ps);
		}
		ret = value(ps, &el, depth + 1);
		if (ret)
			return ret;
		el->key = key;
		*link = el;
		link = &el->next;
		if (v->count == UINT32_MAX)
			return -EINVAL;
		v->count++;
		skip_ws(ps);
		if (ps->p == ps->end)
			return -EINVAL;
		if (*ps->p == close) {
			ps->p++;
			return 0;
		}
		if (*ps->p != ',')
			return -EINVAL;
		ps->p++;
		skip_ws(ps);
	}
}

/* A value at ps->p (no leading whitespace). */
static int value(struct parser *ps, struct nj_value **out, int depth)
{
	struct nj_value *v;
	int ret;

	if (ps->p == ps->end)
		return -EINVAL;
	switch (*ps->p) {
	case '{':
	case '[':
		v = new_value(ps, *ps->p == '{' ? NJ_OBJECT : NJ_ARRAY);
		if (!v)
			return -EINVAL;
		ret = container(ps, v, depth);
		break;
	case '"':
		v = new_value(ps, NJ_STRING);
		if (!v)
			return -EINVAL;
		ret = string(ps, &v->str, &v->len);
		break;
	case 't':
		v = new_value(ps, NJ_TRUE);
		ret = v ? literal(ps, "true", 4) : -EINVAL;
		break;
	case 'f':
		v = new_value(ps, NJ_FALSE);
		ret = v ? literal(ps, "false", 5) : -EINVAL;
		break;
	case 'n':
		v = new_value(ps, NJ_NULL);
		ret = v ? literal(ps, "null", 4) : -EINVAL;
		break;
	default:
		v = new_value(ps, NJ_NUMBER);
		ret = v ? number(ps, &v->num) : -EINVAL;
		break;
	}
	*out = v;
	return ret;
}

int nj_parse(struct nj_doc *doc, const char *text, size_t len, size_t max_values)
{
	struct parser ps = { .p = text, .end = text + len, .doc = doc };
	struct nj_value *root;
	int ret;

	memset(doc, 0, sizeof(*doc));
	doc->cap = len / 2 + 2;
	if (max_values && doc->cap > max_values)
		doc->cap = max_values;
	doc->values = malloc(doc->cap * sizeof(*doc->values));
	doc->str_cap = len + 1;
	doc->strings = malloc(doc->str_cap);
	if (!doc->values || !doc->strings) {
		ret = -ENOMEM;
		goto fail;
	}
	skip_ws(&ps);
	ret = value(&ps, &root, 0);
	if (ret) {
		if (ps.too_many)
			ret = -E2BIG;
		goto fail;
	}
	skip_ws(&ps);
	if (ps.p != ps.end) {
		ret = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	nj_free(doc);
	return ret;
}

void nj_free(struct nj_doc *doc)
{
	free(doc->values);
	free(doc->strings);
	memset(doc, 0, sizeof(*doc));
}

const struct nj_value *nj_get(const struct nj_value *obj, const char *key)
{
	const struct nj_value *m;

	if (!obj || obj->type != NJ_OBJECT)
		return NULL;
	nj_foreach(m, obj)
		if (strcmp(m->key, key) == 0)
			return m;
	return NULL;
}
