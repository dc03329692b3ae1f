/*
 * tfrest_fast: the fast path of tfrest_parse_predict() for the common body,
 * {"signature_name"?: "...", "instances" | "inputs": <nested lists of
 * numbers>}, parsed straight into floats without building a cJSON tree
 * (cJSON allocates a node per number: ~580 ns a number, 116 ms for a
 * 256 x 784 batch).
 *
 * Contract: it either succeeds with exactly what the cJSON path would give
 * (same shape, same floats: numbers are converted to the correctly rounded
 * double, as strtod does, then to float) or returns -ENOTSUP without a
 * message, and the caller runs the cJSON path, which also words every
 * error. So anything unusual -- other keys, escapes, named inputs, bools,
 * empty or ragged lists, bad syntax -- simply falls back.
 */
#include "handlers/predict/tfrest.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cur {
	const char *p, *end;
};

static void ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

/* A string without escapes or control bytes; returns its view. */
static int str(struct cur *c, const char **s, size_t *n)
{
	if (c->p >= c->end || *c->p != '"')
		return -1;
	const char *b = ++c->p;
	while (c->p < c->end && *c->p != '"') {
		if (*c->p == '\\' || (unsigned char)*c->p < 0x20)
			return -1;
		c->p++;
	}
	if (c->p >= c->end)
		return -1;
	*s = b;
	*n = (size_t)(c->p++ - b);
	return 0;
}

static const double pow10_exact[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
				      1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
				      1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

/* Strict JSON number. Mantissas below 2^53 with a decimal exponent within
 * +-22 convert exactly with one correctly rounded multiply or divide
 * (Clinger's fast path); anything else goes through strtod. */
static int num(struct cur *c, double *out);

int tfrest__number(const char **p, const char *end, double *out)
{
	struct cur c = { *p, end };
	int rc = num(&c, out);
	*p = c.p;
	return rc;
}

static int num(struct cur *c, double *out)
{
	const char *b = c->p, *p = c->p, *e = c->end;
	uint64_t m = 0;
	int digits = 0, exp10 = 0, neg = 0;

	if (p < e && *p == '-')
		neg = 1, p++;
	if (p >= e || *p < '0' || *p > '9')
		return -1;
	if (*p == '0') {
		p++;
	} else {
		for (; p < e && *p >= '0' && *p <= '9'; p++)
			if (digits < 19)
				m = m * 10 + (uint64_t)(*p - '0'), digits += m != 0;
			else
				exp10++, digits++;
	}
	if (p < e && *p == '.') {
		p++;
		if (p >= e || *p < '0' || *p > '9')
			return -1;
		for (; p < e && *p >= '0' && *p <= '9'; p++)
			if (digits < 19)
				m = m * 10 + (uint64_t)(*p - '0'), exp10--, digits += m != 0;
			else
				digits++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		int eneg = 0, x = 0;
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			eneg = *p++ == '-';
		if (p >= e || *p < '0' || *p > '9')
			return -1;
		for (; p < e && *p >= '0' && *p <= '9'; p++)
			if (x < 100000)
				x = x * 10 + (*p - '0');
		exp10 += eneg ? -x : x;
	}
	c->p = p;
	if (digits <= 19 && m < (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
		double v = (double)m;
		v = exp10 < 0 ? v / pow10_exact[-exp10] : v * pow10_exact[exp10];
		*out = neg ? -v : v;
		return 0;
	}
	/* Rare: long mantissas, big exponents. The bytes are a valid number
	 * followed by a JSON delimiter, so strtod stops at the right place. */
	char tmp[512];
	size_t n = (size_t)(p - b);
	if (n >= sizeof(tmp))
		return -1;
	memcpy(tmp, b, n);
	tmp[n] = '\0';
	*out = strtod(tmp, NULL);
	return 0;
}

struct shape_state {
	struct tfrest_tensor *t;
	size_t cap;
	int leaf; /* depth of the numbers, -1 until the first */
	int known[TFREST_MAX_DIMS];
};

static int push(struct shape_state *s, float v)
{
	struct tfrest_tensor *t = s->t;
	if (t->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		if (cap > TFREST_MAX_ELEMS)
			cap = TFREST_MAX_ELEMS;
		if (t->n >= cap)
			return -1;
		float *d = realloc(t->data, cap * sizeof(float));
		if (!d)
			return -1;
		t->data = d;
		s->cap = cap;
	}
	t->data[t->n++] = v;
	return 0;
}

/* A list at `depth` (0 = the value of instances/inputs). */
static int list(struct cur *c, struct shape_state *s, int depth)
{
	int64_t count = 0;
	if (depth >= TFREST_MAX_DIMS || c->p >= c->end || *c->p != '[')
		return -1;
	c->p++;
	ws(c);
	if (c->p < c->end && *c->p == ']')
		return -1; /* empty: the cJSON path words it */
	for (;;) {
		ws(c);
		if (c->p >= c->end)
			return -1;
		if (*c->p == '[') {
			if (s->leaf >= 0 && depth + 1 >= s->leaf)
				return -1;
			if (list(c, s, depth + 1) < 0)
				return -1;
		} else {
			double v;
			if (s->leaf < 0)
				s->leaf = depth + 1;
			if (s->leaf != depth + 1 || num(c, &v) < 0 || push(s, (float)v) < 0)
				return -1;
		}
		count++;
		ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		if (c->p < c->end && *c->p == ']') {
			c->p++;
			break;
		}
		return -1;
	}
	if (!s->known[depth]) {
		s->known[depth] = 1;
		s->t->shape[depth] = count;
	} else if (s->t->shape[depth] != count) {
		return -1;
	}
	return 0;
}

int tfrest__parse_fast(const char *body, size_t len, enum tfrest_format *fmt,
		       struct tfrest_tensor *t)
{
	struct cur c = { body, body + len };
	struct shape_state s = { .t = t, .leaf = -1 };
	int have_sig = 0, have_value = 0;

	memset(t, 0, sizeof(*t));
	ws(&c);
	if (c.p >= c.end || *c.p != '{')
		return -ENOTSUP;
	c.p++;
	for (;;) {
		const char *k;
		size_t kn;
		ws(&c);
		if (str(&c, &k, &kn) < 0)
			goto fallback;
		ws(&c);
		if (c.p >= c.end || *c.p != ':')
			goto fallback;
		c.p++;
		ws(&c);
		if (kn == 14 && memcmp(k, "signature_name", 14) == 0 && !have_sig) {
			const char *v;
			size_t vn;
			have_sig = 1;
			if (str(&c, &v, &vn) < 0 ||
			    !(vn == 0 || (vn == 15 && memcmp(v, "serving_default", 15) == 0)))
				goto fallback;
		} else if (!have_value && ((kn == 9 && memcmp(k, "instances", 9) == 0) ||
					   (kn == 6 && memcmp(k, "inputs", 6) == 0))) {
			have_value = 1;
			*fmt = kn == 9 ? TFREST_ROW : TFREST_COLUMNAR;
			if (list(&c, &s, 0) < 0)
				goto fallback;
		} else {
			goto fallback;
		}
		ws(&c);
		if (c.p < c.end && *c.p == ',') {
			c.p++;
			continue;
		}
		if (c.p < c.end && *c.p == '}') {
			c.p++;
			break;
		}
		goto fallback;
	}
	ws(&c);
	if (c.p != c.end || !have_value)
		goto fallback;
	/* Every list at a depth had the first one's length, numbers all sat at
	 * one depth: the tensor is rectangular iff the count matches. */
	t->ndim = s.leaf;
	size_t n = 1;
	for (int d = 0; d < t->ndim; d++)
		n *= (size_t)t->shape[d];
	if (n != t->n)
		goto fallback;
	return 0;
fallback:
	tfrest_tensor_free(t);
	return -ENOTSUP;
}
