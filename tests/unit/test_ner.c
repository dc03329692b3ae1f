/*
 * The ner handler (handlers/ner/) with the SDK stubbed out: BIO entity
 * extraction, model loading, request validation (exact status and message)
 * and whole requests against the example model in handlers/ner/example/.
 * Run from the repository root (tests/run.sh does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handlers/ner/entities.c"
#include "handlers/ner/json.c"
#include "handlers/ner/model.c"
#include "handlers/ner/ner.c"
#include "handlers/ner/request.c"

#define EXAMPLE_DIR "handlers/ner/example"

/* --- SDK stubs ------------------------------------------------------------ */

struct thaw_response {
	int status;
	char device[16]; /* x-ner-device */
	char *body;
	size_t len;
	char error[512]; /* the message of thaw_respond_error */
};

static char init_error[512];

void thaw_response_status(struct thaw_response *res, int status)
{
	res->status = status;
}

int thaw_response_header(struct thaw_response *res, const char *name, const char *value)
{
	if (strcmp(name, "x-ner-device") == 0)
		snprintf(res->device, sizeof(res->device), "%s", value);
	return 0;
}

int thaw_response_write(struct thaw_response *res, const void *data, size_t len)
{
	char *b = realloc(res->body, res->len + len + 1);
	if (!b)
		return -ENOMEM;
	memcpy(b + res->len, data, len);
	res->len += len;
	b[res->len] = '\0';
	res->body = b;
	return 0;
}

int thaw_respond(struct thaw_response *res, int status, const char *content_type,
		 const void *body, size_t len)
{
	(void)content_type;
	res->status = status;
	return thaw_response_write(res, body, len);
}

int thaw_respond_error(struct thaw_response *res, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
	res->status = status;
	return 0;
}

const char *thaw_config(const char *key)
{
	return getenv(key);
}

int thaw_map_file(const char *relpath, struct thaw_map *out)
{
	char path[512];
	snprintf(path, sizeof(path), "%s%s%s", relpath[0] == '/' ? "" : EXAMPLE_DIR,
		 relpath[0] == '/' ? "" : "/", relpath);
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	char *data = NULL;
	size_t len = 0, cap = 0, n;
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			data = realloc(data, cap);
			assert_non_null(data);
		}
		n = fread(data + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	out->data = data;
	out->len = len;
	return 0;
}

void thaw_unmap(struct thaw_map *map)
{
	free((void *)map->data);
	map->data = NULL;
	map->len = 0;
}

void thaw_log(enum thaw_log_level level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}

void thaw_set_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(init_error, sizeof(init_error), fmt, ap);
	va_end(ap);
}

/* --- helpers ---------------------------------------------------------------- */

/* Example tags: O B-LOC I-LOC B-PER I-PER B-ORG I-ORG (start state: 7). */
enum { O, BL, IL, BP, IP, BO, IO, START };

static int init_cpu(void)
{
	setenv("TAGS", "tags.txt", 1);
	setenv("TRANSITIONS", "transitions.json", 1);
	setenv("NER_DEVICE", "cpu", 1);
	return thaw_handler_v1.init();
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(init_cpu(), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	thaw_handler_v1.shutdown();
	return 0;
}

/* POSTs body to the handler; the caller frees res->body. */
static struct thaw_response call(const char *method, const char *path, const char *body)
{
	struct thaw_request req = { .method = method, .path = path, .query = "",
				    .body = body, .body_len = strlen(body) };
	struct thaw_response res = { 0 };
	assert_int_equal(thaw_handler_v1.invoke(&req, &res), 0);
	return res;
}

static void expect_body(const char *body, int status, const char *want)
{
	struct thaw_response res = call("POST", "/", body);
	if (res.status != status || !res.body || strcmp(res.body, want) != 0)
		fail_msg("body %s\n  want %d %s\n  got  %d %s (error: %s)", body, status, want,
			 res.status, res.body ? res.body : "(none)", res.error);
	free(res.body);
}

/* Appends to a JSON text the logits of one sequence, 5.0 for the wanted tag
 * of each step and 0 elsewhere. */
static void logits_json(char *buf, size_t n, const int *tags, int steps)
{
	size_t at = strlen(buf);
	at += (size_t)snprintf(buf + at, n - at, "[");
	for (int t = 0; t < steps; t++) {
		at += (size_t)snprintf(buf + at, n - at, "%s[", t ? "," : "");
		for (int j = 0; j < 7; j++)
			at += (size_t)snprintf(buf + at, n - at, "%s%d", j ? "," : "",
					       tags[t] == j ? 5 : 0);
		at += (size_t)snprintf(buf + at, n - at, "]");
	}
	snprintf(buf + at, n - at, "]");
}

/* --- the JSON parser ---------------------------------------------------------- */

static void test_json_accepts_and_rejects(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{ "1", 0 }, { " -0 ", 0 }, { "[]", 0 }, { "{}", 0 }, { "[1, 2.5e3, -0.5E-2]", 0 },
		{ "{\"a\": [true, false, null], \"b\": {\"c\": \"d\"}}", 0 },
		{ "\"\\u00e9\\ud83d\\ude00\\n\\\"\\/\"", 0 }, { "\"\xe9\x87\x8d\"", 0 },
		{ "", -EINVAL }, { " ", -EINVAL }, { "01", -EINVAL }, { "1.", -EINVAL },
		{ ".5", -EINVAL }, { "+1", -EINVAL }, { "1e", -EINVAL }, { "1e+", -EINVAL },
		{ "-", -EINVAL }, { "[1,]", -EINVAL }, { "[,1]", -EINVAL }, { "[1 2]", -EINVAL },
		{ "{\"a\":1,}", -EINVAL }, { "{\"a\" 1}", -EINVAL }, { "{1:2}", -EINVAL },
		{ "\"\\x\"", -EINVAL }, { "\"\\ud83d\"", -EINVAL }, { "\"\\ude00\"", -EINVAL },
		{ "\"\\u0000\"", -EINVAL }, { "\"\\u12\"", -EINVAL }, { "\"a\nb\"", -EINVAL },
		{ "\"abc", -EINVAL }, { "\"abc\\", -EINVAL }, { "tru", -EINVAL }, { "nul", -EINVAL },
		{ "1 x", -EINVAL }, { "[1]]", -EINVAL }, { "[", -EINVAL }, { "{\"a\":", -EINVAL },
		{ "NaN", -EINVAL }, { "Infinity", -EINVAL }, { "0x10", -EINVAL },
	};
	struct nj_doc doc;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		int got = nj_parse(&doc, cases[k].text, strlen(cases[k].text), 0);
		if (got != cases[k].want)
			fail_msg("%s: want %d, got %d", cases[k].text, cases[k].want, got);
		if (!got)
			nj_free(&doc);
	}
	/* a NUL inside the text */
	assert_int_equal(nj_parse(&doc, "[1]\0", 4, 0), -EINVAL);
	/* nesting: NJ_MAX_DEPTH is fine, one more is not */
	char deep[2 * NJ_MAX_DEPTH + 8];
	for (int depth = NJ_MAX_DEPTH; depth <= NJ_MAX_DEPTH + 1; depth++) {
		memset(deep, '[', depth);
		memset(deep + depth, ']', depth);
		assert_int_equal(nj_parse(&doc, deep, 2 * (size_t)depth, 0),
				 depth == NJ_MAX_DEPTH ? 0 : -EINVAL);
		if (depth == NJ_MAX_DEPTH)
			nj_free(&doc);
	}
	/* values, strings and the first of duplicate keys */
	const char *t = "{\"k\": \"\\u91cd\\u5e86\", \"n\": -12.5e-1, \"k\": 2}";
	assert_int_equal(nj_parse(&doc, t, strlen(t), 0), 0);
	const struct nj_value *k = nj_get(nj_root(&doc), "k");
	assert_non_null(k);
	assert_int_equal(k->type, NJ_STRING);
	assert_string_equal(k->str, "重庆");
	assert_int_equal(k->len, 6);
	assert_true(nj_get(nj_root(&doc), "n")->num == -1.25);
	assert_null(nj_get(nj_root(&doc), "x"));
	assert_int_equal(nj_root(&doc)->count, 3);
	nj_free(&doc);
}

static uint64_t jrng = 12345;
static uint32_t jrand(void)
{
	jrng = jrng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(jrng >> 33);
}

/* Numbers in many spellings read to the same double as strtod. */
static void test_json_numbers_match_strtod(void **state)
{
	(void)state;
	char text[128];
	struct nj_doc doc;
	for (int k = 0; k < 200000; k++) {
		double x;
		uint64_t bits = ((uint64_t)jrand() << 32) | jrand();
		switch (k % 6) {
		case 0: memcpy(&x, &bits, sizeof(x)); if (!isfinite(x)) x = 1.5; snprintf(text, sizeof(text), "%.17g", x); break;
		case 1: snprintf(text, sizeof(text), "%.*f", (int)(jrand() % 8), ((double)jrand() - 2147483648.0) / (1 + jrand() % 100000)); break;
		case 2: snprintf(text, sizeof(text), "%.*e", (int)(jrand() % 20), ((double)jrand() - 2147483648.0) * 1e-7); break;
		case 3: snprintf(text, sizeof(text), "%d", (int)jrand() - 1000000000); break;
		case 4: snprintf(text, sizeof(text), "%u.%09u%09ue%d", jrand() % 1000, jrand() % 1000000000, jrand() % 1000000000, (int)(jrand() % 80) - 40); break;
		default: snprintf(text, sizeof(text), "0.%06u", jrand() % 1000000); break;
		}
		if (strchr(text, 'n') || strchr(text, 'i'))
			continue;
		assert_int_equal(nj_parse(&doc, text, strlen(text), 0), 0);
		double want = strtod(text, NULL), got = nj_root(&doc)->num;
		if (memcmp(&want, &got, sizeof(want)) != 0)
			fail_msg("%s: strtod %.17g, got %.17g", text, want, got);
		nj_free(&doc);
	}
}

/* Random documents, then random corruptions of them: whatever this parser
 * accepts, cJSON accepts too, with the same values. */
static void gen_value(char *buf, size_t cap, size_t *at, int depth)
{
	static const char *strs[] = { "\"重庆市\"", "\"a\\\"b\"", "\"\\u00e9\\ud83d\\ude00\"", "\"\"",
				      "\"x\\n\\t\\\\\"" };
	static const char *nums[] = { "0", "-1", "3.25", "1e3", "-2.5E-3", "123456789012345678901",
				      "0.1" };
	if (*at + 64 > cap)
		return;
	uint32_t r = jrand() % (depth > 4 ? 5 : 8);
	if (r < 5) {
		const char *lit = r == 0 ? strs[jrand() % 5] : r == 1 ? nums[jrand() % 7] :
				  r == 2 ? "true" : r == 3 ? "null" : "false";
		*at += (size_t)snprintf(buf + *at, cap - *at, "%s", lit);
		return;
	}
	int obj = r == 7;
	buf[(*at)++] = obj ? '{' : '[';
	int n = (int)(jrand() % 5);
	for (int k = 0; k < n && *at + 64 < cap; k++) {
		if (k)
			buf[(*at)++] = ',';
		if (obj)
			*at += (size_t)snprintf(buf + *at, cap - *at, "\"k%d\": ", (int)(jrand() % 3));
		gen_value(buf, cap, at, depth + 1);
	}
	if (*at + 2 < cap)
		buf[(*at)++] = obj ? '}' : ']';
	buf[*at] = '\0';
}

static void assert_same(const struct nj_value *a, const cJSON *b)
{
	switch (a->type) {
	case NJ_NULL: assert_true(cJSON_IsNull(b)); break;
	case NJ_TRUE: assert_true(cJSON_IsTrue(b)); break;
	case NJ_FALSE: assert_true(cJSON_IsFalse(b)); break;
	case NJ_NUMBER: assert_true(cJSON_IsNumber(b) && memcmp(&a->num, &b->valuedouble, 8) == 0); break;
	case NJ_STRING: assert_true(cJSON_IsString(b)); assert_string_equal(a->str, b->valuestring); break;
	case NJ_ARRAY:
	case NJ_OBJECT: {
		assert_true(a->type == NJ_ARRAY ? cJSON_IsArray(b) : cJSON_IsObject(b));
		assert_int_equal(a->count, cJSON_GetArraySize(b));
		const struct nj_value *x = a->child;
		const cJSON *y = b->child;
		for (; x; x = x->next, y = y->next) {
			if (a->type == NJ_OBJECT)
				assert_string_equal(x->key, y->string);
			assert_same(x, y);
		}
		break;
	}
	}
}

static void test_json_agrees_with_cjson(void **state)
{
	(void)state;
	static char text[8192], mutated[8200];
	struct nj_doc doc;
	int accepted = 0;
	for (int k = 0; k < 3000; k++) {
		size_t at = 0;
		gen_value(text, sizeof(text) - 8, &at, 0);
		text[at] = '\0';
		for (int m = 0; m < 10; m++) {
			size_t n = at;
			memcpy(mutated, text, n);
			if (m) { /* corrupt one byte, drop one, or cut short */
				size_t pos = jrand() % n;
				static const char junk[] = "[]{},:\"\\ue0-1.+tn \x01\xff";
				switch (jrand() % 3) {
				case 0: mutated[pos] = junk[jrand() % (sizeof(junk) - 1)]; break;
				case 1: memmove(mutated + pos, mutated + pos + 1, n - pos - 1); n--; break;
				default: n = pos; break;
				}
			}
			mutated[n] = '\0';
			if (nj_parse(&doc, mutated, n, 0) != 0)
				continue;
			cJSON *c = cJSON_ParseWithLength(mutated, n);
			if (!c)
				fail_msg("accepted but cJSON does not: %s", mutated);
			assert_same(nj_root(&doc), c);
			cJSON_Delete(c);
			nj_free(&doc);
			accepted++;
		}
	}
	assert_true(accepted > 3000);
}

/* --- entity extraction ------------------------------------------------------- */

/* Renders entities as "TYPE:start-end ..." */
static void render(const struct ner_entity *e, uint32_t n, char *out, size_t len)
{
	size_t at = 0;
	out[0] = '\0';
	for (uint32_t k = 0; k < n; k++)
		at += (size_t)snprintf(out + at, len - at, "%s%s:%u-%u", k ? " " : "",
				       model.types[e[k].type], e[k].start, e[k].end);
}

static void test_bio_extraction_table(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		int n;
		int32_t path[8];
		const char *want;
	} cases[] = {
		{ "B I I O", 4, { BL, IL, IL, O }, "LOC:0-3" },
		{ "I after O starts an entity", 4, { O, IP, IP, O }, "PER:1-3" },
		{ "I at the start starts an entity", 2, { IL, IL }, "LOC:0-2" },
		{ "entity at the end", 3, { O, O, BO }, "ORG:2-3" },
		{ "long entity at the end", 4, { O, BO, IO, IO }, "ORG:1-4" },
		{ "adjacent B B", 2, { BL, BL }, "LOC:0-1 LOC:1-2" },
		{ "adjacent B I B I", 4, { BP, IP, BP, IP }, "PER:0-2 PER:2-4" },
		{ "I of another type splits", 3, { BL, IP, IP }, "LOC:0-1 PER:1-3" },
		{ "I I of two types", 4, { IL, IL, IO, IO }, "LOC:0-2 ORG:2-4" },
		{ "O between", 5, { BL, O, IL, O, BP }, "LOC:0-1 LOC:2-3 PER:4-5" },
		{ "all O", 3, { O, O, O }, "" },
		{ "empty", 0, { 0 }, "" },
		{ "start state and -1 are outside", 5, { BL, START, IL, -1, IL }, "LOC:0-1 LOC:2-3 LOC:4-5" },
	};
	struct ner_entity ents[8];
	char got[256];

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		uint32_t n = ner_entities(&model, cases[k].path, (uint32_t)cases[k].n, ents);
		render(ents, n, got, sizeof(got));
		if (strcmp(got, cases[k].want) != 0)
			fail_msg("%s: want \"%s\", got \"%s\"", cases[k].what, cases[k].want, got);
	}
}

/* --- model loading ----------------------------------------------------------- */

static void test_example_model_loads(void **state)
{
	(void)state;
	assert_int_equal(model.num_tags, 7);
	assert_int_equal(model.num_types, 3);
	assert_string_equal(model.types[0], "LOC");
	assert_string_equal(model.types[1], "PER");
	assert_string_equal(model.types[2], "ORG");
	assert_int_equal(model.tags[IO].kind, NER_TAG_INSIDE);
	assert_int_equal(model.tags[IO].type, 2);
	assert_int_equal(model.tags[O].kind, NER_TAG_OUT);
	/* O -> I-LOC forbidden, B-LOC -> I-LOC allowed. */
	assert_true(model.trans[O * 8 + IL] <= -1000.0f);
	assert_true(model.trans[BL * 8 + IL] >= 0.0f);
}

static void test_transitions_json_errors(void **state)
{
	(void)state;
	static const struct {
		const char *json, *want;
	} cases[] = {
		{ "nope", "not valid JSON" },
		{ "[[0]]", "want a list of 8 rows (7 tags + start)" },
		{ "{\"x\": 1}", "want a list of 8 rows (7 tags + start)" },
		{ "[[0,0,0,0,0,0,0,0],[0],[],[],[],[],[],[]]", "row 1: want 8 numbers" },
		{ "[[0,0,0,0,0,0,0,\"a\"],[],[],[],[],[],[],[]]", "row 0 column 7: not a finite float32" },
	};
	char err[256];
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		err[0] = '\0';
		assert_int_equal(ner_model_set_trans_json(&model, cases[k].json,
							  strlen(cases[k].json), err, sizeof(err)),
				 -EINVAL);
		assert_string_equal(err, cases[k].want);
	}
}

static void test_transitions_bin_loads_and_is_checked(void **state)
{
	(void)state;
	char path[] = "/tmp/thaw-test-ner-XXXXXX.bin";
	int fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	float m[8 * 8];
	for (int k = 0; k < 64; k++)
		m[k] = (float)k / 4.0f;
	assert_int_equal(write(fd, m, sizeof(m)), (ssize_t)sizeof(m));

	struct ner_model bin;
	char err[256] = "";
	assert_int_equal(ner_model_load(&bin, "tags.txt", path, err, sizeof(err)), 0);
	assert_int_equal(memcmp(bin.trans, m, sizeof(m)), 0);
	ner_model_fini(&bin);

	assert_int_equal(ftruncate(fd, sizeof(m) - 4), 0);
	assert_int_equal(ner_model_load(&bin, "tags.txt", path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "252 bytes, want 256 ((8 x 8) float32)"));
	close(fd);
	unlink(path);

	assert_int_equal(ner_model_load(&bin, "missing.txt", path, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "missing.txt: No such file or directory");
}

static void test_tags_parse(void **state)
{
	(void)state;
	struct ner_model m = { 0 };
	char err[64] = "";
	const char text[] = "O\r\nB-A\n\nI-A\nB-\n[CLS]";
	assert_int_equal(ner_model_set_tags(&m, text, strlen(text), err, sizeof(err)), 0);
	assert_int_equal(m.num_tags, 5);
	assert_string_equal(m.tags[0].name, "O");
	assert_int_equal(m.tags[1].kind, NER_TAG_BEGIN);
	assert_int_equal(m.tags[2].kind, NER_TAG_INSIDE);
	assert_int_equal(m.tags[3].kind, NER_TAG_OUT); /* "B-" has no type */
	assert_int_equal(m.tags[4].kind, NER_TAG_OUT);
	assert_int_equal(m.num_types, 1);
	ner_model_fini(&m);
	assert_int_equal(ner_model_set_tags(&m, "\n\n", 2, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "no tags");
}

static void test_init_rejects_bad_device(void **state)
{
	(void)state;
	thaw_handler_v1.shutdown();
	setenv("NER_DEVICE", "tpu", 1);
	assert_int_equal(thaw_handler_v1.init(), -EINVAL);
	assert_string_equal(init_error, "NER_DEVICE=tpu: want auto, cpu or gpu");
	setenv("NER_DEVICE", "cpu", 1);
	setenv("TAGS", "nope.txt", 1);
	assert_int_equal(thaw_handler_v1.init(), -ENOENT);
	assert_string_equal(init_error, "ner model: nope.txt: No such file or directory");
	assert_int_equal(init_cpu(), 0);
}

/* --- whole requests ------------------------------------------------------------ */

/* 我在重庆市工作: O O B-LOC I-LOC I-LOC O O */
static const int chongqing[7] = { O, O, BL, IL, IL, O, O };

static void test_text_finds_chongqing(void **state)
{
	(void)state;
	char body[4096] = "{\"text\": [\"我在重庆市工作\"], \"lengths\": [7], \"logits\": [";
	logits_json(body, sizeof(body), chongqing, 7);
	strcat(body, "]}");
	expect_body(body, 200,
		    "{\"entities\":[[{\"word\":\"重庆市\",\"start\":2,\"end\":5,\"type\":\"LOC\"}]]}");
}

static void test_single_sequence_form(void **state)
{
	(void)state;
	char body[4096] = "{\"text\": \"我在重庆市工作\", \"return_tags\": true, \"logits\": ";
	logits_json(body, sizeof(body), chongqing, 7);
	strcat(body, "}");
	expect_body(body, 200,
		    "{\"entities\":[{\"word\":\"重庆市\",\"start\":2,\"end\":5,\"type\":\"LOC\"}],"
		    "\"tags\":[\"O\",\"O\",\"B-LOC\",\"I-LOC\",\"I-LOC\",\"O\",\"O\"]}");
}

/* Two sequences of different lengths in padded logits; tokens given. */
static void test_batch_with_tokens_and_padding(void **state)
{
	(void)state;
	static const int a[5] = { BP, IP, IP, O, BO }; /* 张三丰 在 腾 (pad) */
	static const int b[5] = { IL, IL, O, O, O };   /* I-LOC start, then padding */
	char body[8192] = "{\"tokens\": [[\"张\",\"三\",\"丰\",\"在\",\"腾\"], [\"北\",\"京\"]],"
			  " \"lengths\": [5, 2], \"logits\": [";
	logits_json(body, sizeof(body), a, 5);
	strcat(body, ",");
	logits_json(body, sizeof(body), b, 5);
	strcat(body, "]}");
	/* The CRF forbids start -> I-LOC only as strongly as the -1000 padding
	 * lets it: with a 5-point logit margin "北" still comes out B-LOC. */
	expect_body(body, 200,
		    "{\"entities\":[[{\"word\":\"张三丰\",\"start\":0,\"end\":3,\"type\":\"PER\"},"
		    "{\"word\":\"腾\",\"start\":4,\"end\":5,\"type\":\"ORG\"}],"
		    "[{\"word\":\"北京\",\"start\":0,\"end\":2,\"type\":\"LOC\"}]]}");
}

/* No tokens: entities carry no word; lengths default to all steps. */
static void test_without_tokens_or_lengths(void **state)
{
	(void)state;
	char body[4096] = "{\"logits\": [";
	logits_json(body, sizeof(body), chongqing, 7);
	strcat(body, "]}");
	expect_body(body, 200, "{\"entities\":[[{\"start\":2,\"end\":5,\"type\":\"LOC\"}]]}");
	expect_body("{\"logits\": []}", 200, "{\"entities\":[]}");
	expect_body("{\"logits\": [[]], \"lengths\": [0]}", 200, "{\"entities\":[[]]}");
}

/* The CRF overrules the emissions: O then a strong I-PER with a weak B-PER
 * second best; O -> I-PER is forbidden, so the decode says B-PER. */
static void test_crf_forbids_o_to_inside(void **state)
{
	(void)state;
	const char *body = "{\"tokens\": [\"x\", \"李\", \"四\"], \"return_tags\": true,"
			   " \"logits\": [[5,0,0,0,0,0,0], [0,0,0,4,6,0,0], [0,0,0,0,5,0,0]]}";
	expect_body(body, 200,
		    "{\"entities\":[{\"word\":\"李四\",\"start\":1,\"end\":3,\"type\":\"PER\"}],"
		    "\"tags\":[\"O\",\"B-PER\",\"I-PER\"]}");
}

/* Words are escaped exactly as cJSON_PrintUnformatted would. */
static void test_word_escaping_matches_cjson(void **state)
{
	(void)state;
	const char *body = "{\"tokens\": [\"a\\\"\", \"\\\\\", \"\\n\\t\\b\\f\\r\", \"\\u0001\\u001f\", \"/\\u00e9\"],"
			   " \"logits\": [[0,0,0,5,0,0,0], [0,0,0,0,5,0,0], [0,0,0,0,5,0,0],"
			   " [0,0,0,0,5,0,0], [0,0,0,0,5,0,0]]}";
	cJSON *want = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(want, "entities");
	cJSON *e = cJSON_CreateObject();
	cJSON_AddItemToArray(list, e);
	cJSON_AddStringToObject(e, "word", "a\"\\\n\t\b\f\r\x01\x1f/\xc3\xa9");
	cJSON_AddNumberToObject(e, "start", 0);
	cJSON_AddNumberToObject(e, "end", 5);
	cJSON_AddStringToObject(e, "type", "PER");
	char *text = cJSON_PrintUnformatted(want);
	expect_body(body, 200, text);
	free(text);
	cJSON_Delete(want);
}

static void test_request_validation_table(void **state)
{
	(void)state;
	static const char row7[] = "[0,0,0,0,0,0,0]";
#define R7 "[0,0,0,0,0,0,0]"
	static const struct {
		const char *body, *want;
	} cases[] = {
		{ "not json", "body is not valid JSON" },
		{ "[1]", "body: want a JSON object" },
		{ "{}", "logits: want a list of sequences of per-tag scores" },
		{ "{\"logits\": 3}", "logits: want a list of sequences of per-tag scores" },
		{ "{\"logits\": [3]}", "logits[0]: want a list of steps" },
		{ "{\"logits\": [[" R7 "], 3]}", "logits[1]: want a list of steps" },
		{ "{\"logits\": [[" R7 "," R7 "], [" R7 "]]}", "logits[1] has 1 steps, logits[0] has 2" },
		{ "{\"logits\": [[" R7 ", [0,0,0]]]}", "logits[0][1] has 3 scores, the model has 7 tags" },
		{ "{\"logits\": [[[0,0,0]]]}", "logits[0][0] has 3 scores, the model has 7 tags" },
		{ "{\"logits\": [[0,0,0,0,0,0,0,0]]}", "logits[0] has 8 scores, the model has 7 tags" },
		{ "{\"logits\": [[" R7 ", 5]]}", "logits[0][1]: want a list of 7 scores" },
		{ "{\"logits\": [[" R7 ", [0,0,\"1\",0,0,0,0]]]}", "logits[0][1][2]: not a number" },
		{ "{\"logits\": [[[0,0,null,0,0,0,0]]]}", "logits[0][0][2]: not a number" },
		{ "{\"logits\": [[[0,0,0,0,0,0,1e39]]]}", "logits[0][0][6]: not a finite float32" },
		{ "{\"logits\": [[" R7 "]], \"lengths\": [2]}", "lengths[0] is 2, the logits have 1 steps" },
		{ "{\"logits\": [[" R7 "]], \"lengths\": [-1]}", "lengths[0] is -1, the logits have 1 steps" },
		{ "{\"logits\": [[" R7 "]], \"lengths\": [0.5]}", "lengths[0]: want an integer" },
		{ "{\"logits\": [[" R7 "]], \"lengths\": [\"1\"]}", "lengths[0]: want an integer" },
		{ "{\"logits\": [[" R7 "]], \"lengths\": 1}", "lengths: want a list of 1 integers, one per sequence" },
		{ "{\"logits\": [[" R7 "]], \"lengths\": [1, 1]}", "lengths: want a list of 1 integers, one per sequence" },
		{ "{\"logits\": [" R7 "], \"lengths\": 2}", "lengths is 2, the logits have 1 steps" },
		{ "{\"logits\": [[" R7 "]], \"tokens\": [[]], \"lengths\": [1]}", "tokens[0] has 0 tokens, its length is 1" },
		{ "{\"logits\": [[" R7 "]], \"tokens\": [[\"a\", \"b\"]]}", "tokens[0] has 2 tokens, the logits have 1 steps" },
		{ "{\"logits\": [[" R7 "]], \"tokens\": [[1]]}", "tokens[0][0]: want a string" },
		{ "{\"logits\": [[" R7 "]], \"tokens\": [\"a\"]}", "tokens[0]: want a list of strings" },
		{ "{\"logits\": [[" R7 "]], \"tokens\": [[\"a\"]], \"text\": [\"a\"]}", "give tokens or text, not both" },
		{ "{\"logits\": [[" R7 "]], \"text\": \"a\"}", "text: want a list of 1 strings, one per sequence" },
		{ "{\"logits\": [" R7 "], \"text\": [\"a\"]}", "text: want a string" },
		{ "{\"logits\": [[" R7 "]], \"text\": [\"\xff\"]}", "text[0]: invalid UTF-8 at byte 0" },
		{ "{\"logits\": [" R7 "," R7 "], \"text\": \"a\xe9\x87\"}", "text: invalid UTF-8 at byte 1" },
		{ "{\"logits\": [[" R7 "]], \"return_tags\": 1}", "return_tags: want true or false" },
	};
	(void)row7;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct thaw_response res = call("POST", "/", cases[k].body);
		if (res.status != 400 || strcmp(res.error, cases[k].want) != 0)
			fail_msg("body %s\n  want 400 %s\n  got  %d %s", cases[k].body,
				 cases[k].want, res.status, res.error);
		free(res.body);
	}
}

/* A body of n sequences of steps rows of 7 zeros. */
static char *zeros_body(unsigned n, unsigned steps)
{
	static const char row[] = "[0,0,0,0,0,0,0]";
	size_t cap = 32 + (size_t)n * (4 + (size_t)steps * sizeof(row));
	char *b = malloc(cap), *p = b;
	p += sprintf(p, "{\"logits\": [");
	for (unsigned k = 0; k < n; k++) {
		p += sprintf(p, "%s[", k ? "," : "");
		for (unsigned t = 0; t < steps; t++)
			p += sprintf(p, "%s%s", t ? "," : "", row);
		p += sprintf(p, "]");
	}
	sprintf(p, "]}");
	return b;
}

/* Issue 16 item 17: 500k steps took the instance's memory (OOM kill, 502 for
 * every request on it); past the caps a request is a 400 before any large
 * allocation is touched. */
static void test_steps_and_values_capped(void **state)
{
	(void)state;
	static const struct {
		unsigned n, steps;
		int status;
		const char *error;
	} cases[] = {
		{ 1, NER_MAX_STEPS, 200, NULL },
		{ 1, NER_MAX_STEPS + 1, 400, "logits: 16385 steps, at most 16384" },
		{ 10, 15000, 400, "body: more than 1048576 JSON values, at most 1048576: split the batch" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char *body = zeros_body(cases[k].n, cases[k].steps);
		struct thaw_response res = call("POST", "/", body);
		if (res.status != cases[k].status ||
		    (cases[k].error && strcmp(res.error, cases[k].error) != 0))
			fail_msg("%u x %u steps: want %d %s, got %d %s", cases[k].n, cases[k].steps,
				 cases[k].status, cases[k].error ? cases[k].error : "", res.status,
				 res.error);
		free(res.body);
		free(body);
	}
}

/* NER_DEVICE=gpu: init fails without a GPU; with one, batches go to it and
 * give the CPU's answer. */
static void test_device_gpu(void **state)
{
	(void)state;
	thaw_handler_v1.shutdown();
	setenv("NER_DEVICE", "gpu", 1);
	int ret = thaw_handler_v1.init();
	if (viterbi_gpu_count() == 0) {
		assert_int_equal(ret, -ENODEV);
		assert_string_equal(init_error, "NER_DEVICE=gpu but no usable GPU: No such device");
		assert_int_equal(init_cpu(), 0);
		SKIP_NO_GPU("no GPU: NER_DEVICE=gpu checked to refuse");
	}
	assert_int_equal(ret, 0);
	char body[4096] = "{\"text\": [\"我在重庆市工作\"], \"logits\": [";
	logits_json(body, sizeof(body), chongqing, 7);
	strcat(body, "]}");
	struct thaw_response res = call("POST", "/", body);
	assert_int_equal(res.status, 200);
	assert_string_equal(res.device, "gpu");
	assert_string_equal(res.body, "{\"entities\":[[{\"word\":\"重庆市\",\"start\":2,\"end\":5,\"type\":\"LOC\"}]]}");
	free(res.body);
	thaw_handler_v1.shutdown();
	assert_int_equal(init_cpu(), 0);
}

static void test_method_and_path(void **state)
{
	(void)state;
	struct thaw_response res = call("GET", "/", "");
	assert_int_equal(res.status, 405);
	res = call("POST", "/other", "{}");
	assert_int_equal(res.status, 404);
	assert_string_equal(res.error, "no such path: /other");
}

/* The CPU decode on the example model says which device it used. */
static void test_reports_device(void **state)
{
	(void)state;
	struct thaw_response res = call("POST", "/", "{\"logits\": [[[1,0,0,0,0,0,0]]]}");
	assert_int_equal(res.status, 200);
	assert_string_equal(res.device, "cpu");
	free(res.body);
}

int main(void)
{
	if (access(EXAMPLE_DIR "/tags.txt", R_OK) != 0) {
		fprintf(stderr, "run from the repository root: %s/tags.txt missing\n", EXAMPLE_DIR);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_accepts_and_rejects),
		cmocka_unit_test(test_json_numbers_match_strtod),
		cmocka_unit_test(test_json_agrees_with_cjson),
		cmocka_unit_test(test_bio_extraction_table),
		cmocka_unit_test(test_example_model_loads),
		cmocka_unit_test(test_transitions_json_errors),
		cmocka_unit_test(test_transitions_bin_loads_and_is_checked),
		cmocka_unit_test(test_tags_parse),
		cmocka_unit_test(test_init_rejects_bad_device),
		cmocka_unit_test(test_text_finds_chongqing),
		cmocka_unit_test(test_single_sequence_form),
		cmocka_unit_test(test_batch_with_tokens_and_padding),
		cmocka_unit_test(test_without_tokens_or_lengths),
		cmocka_unit_test(test_crf_forbids_o_to_inside),
		cmocka_unit_test(test_word_escaping_matches_cjson),
		cmocka_unit_test(test_request_validation_table),
		cmocka_unit_test(test_steps_and_values_capped),
		cmocka_unit_test(test_method_and_path),
		cmocka_unit_test(test_device_gpu),
		cmocka_unit_test(test_reports_device),
	};
	return cmocka_run_group_tests(tests, setup, teardown) ? 1 : 0;
}
