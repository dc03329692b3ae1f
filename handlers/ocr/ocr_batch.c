/*
 * ocr_batch: request -> downloads -> render -> Tesseract -> JSON; see
 * ocr_batch.h.
 */
#include "handlers/ocr/ocr_batch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "handlers/ocr/ocr_fetch.h"

/* URLs are cut to this many bytes in error messages. */
#define URL_IN_DETAIL 160

struct ocr_ctx {
	struct ocr_config cfg;
	struct ocr_render *render;
	struct ocr_engines *engines;
};

/* One input document of a request. */
struct item {
	const char *list; /* "images" or "pdfs" */
	int index;        /* position in that list */
	enum ocr_kind kind;
};

int64_t ocr_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_num(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

void ocr_config_load(struct ocr_config *cfg, const char *(*lookup)(const char *))
{
	long long v;
	const char *s;

	memset(cfg, 0, sizeof(*cfg));
	cfg->max_download_bytes = 50u << 20;
	cfg->max_pages = 50;
	cfg->max_docs = 32;
	cfg->max_pixels = 50u * 1000 * 1000;
	cfg->dpi = 144;
	cfg->max_redirects = 5;
	cfg->connect_timeout_ms = 10000;
	cfg->max_parallel = 8;
	cfg->engines = 1;
	cfg->omp_threads = 1;
	cfg->lang = "eng";
	if (!lookup)
		return;
	if (!parse_num(lookup("OCR_MAX_DOWNLOAD_BYTES"), 1, 1LL << 40, &v))
		cfg->max_download_bytes = (size_t)v;
	if (!parse_num(lookup("OCR_MAX_PAGES"), 1, 100000, &v))
		cfg->max_pages = (int)v;
	if (!parse_num(lookup("OCR_MAX_DOCS"), 1, 100000, &v))
		cfg->max_docs = (size_t)v;
	if (!parse_num(lookup("OCR_MAX_PIXELS"), 10000, 1LL << 32, &v))
		cfg->max_pixels = (size_t)v;
	if (!parse_num(lookup("OCR_CONNECT_TIMEOUT_MS"), 1, 600000, &v))
		cfg->connect_timeout_ms = v;
	if (!parse_num(lookup("OCR_MAX_PARALLEL"), 1, 1024, &v))
		cfg->max_parallel = (long)v;
	if (!parse_num(lookup("OCR_ENGINES"), 1, 256, &v))
		cfg->engines = (size_t)v;
	if (!parse_num(lookup("OCR_OMP_THREADS"), 0, 256, &v))
		cfg->omp_threads = (int)v;
	s = lookup("OCR_TESSDATA");
	if (s && *s)
		cfg->tessdata = s;
	s = lookup("OCR_LANG");
	if (s && *s)
		cfg->lang = s;
	cfg->fetch_allow = lookup("OCR_FETCH_ALLOW");
}

int ocr_ctx_new(const struct ocr_config *cfg, struct ocr_ctx **out, char *err,
		size_t errlen)
{
	struct ocr_ctx *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	rc = ocr_render_new(cfg->max_pixels, &c->render);
	if (rc < 0) {
		snprintf(err, errlen, "cannot make the MuPDF context");
		goto free_ctx;
	}
	rc = ocr_engines_new(cfg->engines, cfg->tessdata, cfg->lang,
			     cfg->omp_threads, &c->engines, err, errlen);
	if (rc < 0)
		goto free_render;
	*out = c;
	return 0;

free_render:
	ocr_render_free(c->render);
free_ctx:
	free(c);
	return rc;
}

void ocr_ctx_free(struct ocr_ctx *c)
{
	if (!c)
		return;
	ocr_engines_free(c->engines);
	ocr_render_free(c->render);
	free(c);
}

void ocr_reply_fini(struct ocr_reply *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* --- one document ---------------------------------------------------------- */

/* Appends s to the malloc'd string *dst of length *len. */
static int append(char **dst, size_t *len, const char *s)
{
	size_t n = strlen(s);
	char *p = realloc(*dst, *len + n + 1);

	if (!p)
		return -ENOMEM;
	memcpy(p + *len, s, n + 1);
	*dst = p;
	*len += n;
	return 0;
}

static int ocr_page(struct ocr_ctx *c, struct ocr_doc *doc, int i,
		    int64_t deadline_ms, char **text, char *err, size_t errlen)
{
	struct ocr_bitmap bm;
	struct ocr_engine *e;
	char rerr[200] = "";
	int rc;

	/* a cancelled request has no time left either */
	if (ocr_now_ms() >= deadline_ms || (c->cfg.cancelled && c->cfg.cancelled()))
		return -ETIMEDOUT;
	rc = ocr_doc_render(doc, i, c->cfg.dpi, &bm, rerr, sizeof(rerr));
	if (rc == -EINVAL)
		snprintf(err, errlen, "cannot render page %d: %s", i + 1, rerr);
	if (rc < 0)
		return rc;
	rc = ocr_engine_get(c->engines, deadline_ms - ocr_now_ms(), &e);
	if (rc == 0) {
		rc = ocr_engine_recognize(e, &bm, deadline_ms - ocr_now_ms(), text);
		ocr_engine_put(c->engines, e);
	}
	ocr_bitmap_fini(&bm);
	return rc;
}

int ocr_document_text(struct ocr_ctx *c, const unsigned char *data, size_t len,
		      enum ocr_kind kind, int64_t deadline_ms, char **text,
		      char *err, size_t errlen)
{
	struct ocr_doc *doc = NULL;
	char derr[200] = "";
	char *out = NULL, *page = NULL;
	size_t out_len = 0;
	int i, pages, rc;

	*text = NULL;
	if (ocr_sniff_pdf(data, len))
		kind = OCR_KIND_PDF;
	else if (kind == OCR_KIND_PDF) {
		snprintf(err, errlen, "not a PDF (no %%PDF- header)");
		return -EINVAL;
	}
	rc = ocr_doc_open(c->render, data, len, kind, &doc, derr, sizeof(derr));
	if (rc == -EINVAL)
		snprintf(err, errlen, "%s: %s",
			 kind == OCR_KIND_PDF ? "cannot open PDF" : "cannot decode image",
			 derr);
	if (rc < 0)
		return rc;
	pages = ocr_doc_pages(doc);
	if (pages <= 0 || pages > c->cfg.max_pages) {
		snprintf(err, errlen, pages <= 0 ? "PDF has no pages"
						 : "PDF has %d pages; the limit is %d",
			 pages, c->cfg.max_pages);
		rc = -EINVAL;
		goto free_doc;
	}
	rc = append(&out, &out_len, "");
	for (i = 0; i < pages && rc == 0; i++) {
		rc = ocr_page(c, doc, i, deadline_ms, &page, err, errlen);
		if (rc == 0 && i > 0)
			rc = append(&out, &out_len, OCR_PAGE_SPLIT);
		if (rc == 0)
			rc = append(&out, &out_len, page);
		free(page);
		page = NULL;
	}
	if (rc < 0) {
		free(out);
		goto free_doc;
	}
	*text = out;
free_doc:
	ocr_doc_free(doc);
	return rc;
}

/* --- the request ----------------------------------------------------------- */

static int reply_json(struct ocr_reply *r, int status, cJSON *obj)
{
	r->body = cJSON_PrintUnformatted(obj);
	if (!r->body)
		return -ENOMEM;
	r->status = status;
	r->len = strlen(r->body);
	return 0;
}

static int reply_detail(struct ocr_reply *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int reply_detail(struct ocr_reply *r, int status, const char *fmt, ...)
{
	char msg[512];
	cJSON *obj;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	obj = cJSON_CreateObject();
	if (!obj || !cJSON_AddStringToObject(obj, "detail", msg)) {
		cJSON_Delete(obj);
		return -ENOMEM;
	}
	rc = reply_json(r, status, obj);
	cJSON_Delete(obj);
	return rc;
}

/* Reads input[name]: absent or null is an empty list; anything but an array
 * of strings is an error. Returns the count or -EINVAL. */
static int url_list(const cJSON *input, const char *name, const cJSON **arr)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(input, name), *it;

	*arr = NULL;
	if (!a || cJSON_IsNull(a))
		return 0;
	if (!cJSON_IsArray(a))
		return -EINVAL;
	cJSON_ArrayForEach(it, a)
		if (!cJSON_IsString(it) || !it->valuestring[0])
			return -EINVAL;
	*arr = a;
	return cJSON_GetArraySize(a);
}

/* Downloads, OCRs and answers for n validated documents. */
static int run_items(struct ocr_ctx *c, struct item *items,
		     struct ocr_fetch *fetch, size_t n, int64_t deadline_ms,
		     struct ocr_reply *reply)
{
	struct ocr_fetch_limits lim = {
		.max_bytes = c->cfg.max_download_bytes,
		.max_redirects = c->cfg.max_redirects,
		.timeout_ms = deadline_ms - ocr_now_ms(),
		.connect_timeout_ms = c->cfg.connect_timeout_ms,
		.max_parallel = c->cfg.max_parallel,
		.allow = c->cfg.fetch_allow,
	};
	cJSON *obj, *out;
	char err[400];
	size_t i, failed;
	int rc;

	rc = ocr_fetch_all(fetch, n, &lim, &failed);
	if (rc == -EIO)
		return reply_detail(reply, 400, "%s[%d]: download of %.*s failed: %s",
				    items[failed].list, items[failed].index,
				    URL_IN_DETAIL, fetch[failed].url,
				    fetch[failed].error);
	if (rc == -ETIMEDOUT)
		return reply_detail(reply, 504, "%s[%d]: download of %.*s timed out",
				    items[failed].list, items[failed].index,
				    URL_IN_DETAIL, fetch[failed].url);
	if (rc < 0)
		return rc;
	obj = cJSON_CreateObject();
	out = cJSON_AddArrayToObject(obj, "output");
	if (!obj || !out) {
		cJSON_Delete(obj);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		char *text = NULL;
		cJSON *s;

		err[0] = 0;
		rc = ocr_document_text(c, fetch[i].data, fetch[i].len, items[i].kind,
				       deadline_ms, &text, err, sizeof(err));
		ocr_fetch_fini(&fetch[i]);
		if (rc < 0)
			break;
		s = cJSON_CreateString(text);
		free(text);
		if (!s || !cJSON_AddItemToArray(out, s)) {
			cJSON_Delete(s);
			rc = -ENOMEM;
			break;
		}
	}
	if (rc == 0)
		rc = reply_json(reply, 200, obj);
	else if (rc == -EINVAL)
		rc = reply_detail(reply, 400, "%s[%d]: %s", items[i].list,
				  items[i].index, err);
	else if (rc == -ETIMEDOUT)
		rc = reply_detail(reply, 504, "deadline passed during OCR of %s[%d]",
				  items[i].list, items[i].index);
	else if (rc == -EIO)
		rc = reply_detail(reply, 500, "%s[%d]: OCR failed", items[i].list,
				  items[i].index);
	cJSON_Delete(obj);
	return rc;
}

int ocr_batch_run(struct ocr_ctx *c, const char *body, size_t len,
		  int64_t time_left_ms, struct ocr_reply *reply)
{
	int64_t deadline_ms = ocr_now_ms() + time_left_ms;
	const cJSON *input, *prompt, *lists[2], *it;
	static const char *const names[2] = { "images", "pdfs" };
	struct ocr_fetch *fetch = NULL;
	struct item *items = NULL;
	cJSON *req;
	size_t n = 0, k;
	int counts[2], rc, l;

	memset(reply, 0, sizeof(*reply));
	req = cJSON_ParseWithLength(body, len);
	if (!req)
		return reply_detail(reply, 400, "body is not valid JSON");
	if (!cJSON_IsObject(req)) {
		rc = reply_detail(reply, 400, "body must be a JSON object");
		goto free_req;
	}
	prompt = cJSON_GetObjectItemCaseSensitive(req, "prompt");
	if (prompt && !cJSON_IsNull(prompt) && !cJSON_IsString(prompt)) {
		rc = reply_detail(reply, 400, "prompt must be a string");
		goto free_req;
	}
	input = cJSON_GetObjectItemCaseSensitive(req, "input");
	if (!cJSON_IsObject(input)) {
		rc = reply_detail(reply, 400, "input must be an object with images "
					      "and/or pdfs");
		goto free_req;
	}
	for (l = 0; l < 2; l++) {
		counts[l] = url_list(input, names[l], &lists[l]);
		if (counts[l] < 0) {
			rc = reply_detail(reply, 400, "input.%s must be a list of URLs",
					  names[l]);
			goto free_req;
		}
		n += (size_t)counts[l];
	}
	if (n == 0) {
		rc = reply_detail(reply, 400, "give input.images and/or input.pdfs "
					      "(lists of URLs)");
		goto free_req;
	}
	if (n > c->cfg.max_docs) {
		rc = reply_detail(reply, 400, "%zu documents; the limit is %zu", n,
				  c->cfg.max_docs);
		goto free_req;
	}
	if (time_left_ms <= 0) {
		rc = reply_detail(reply, 504, "no time left for the request");
		goto free_req;
	}
	items = calloc(n, sizeof(*items));
	fetch = calloc(n, sizeof(*fetch));
	if (!items || !fetch) {
		rc = -ENOMEM;
		goto free_req;
	}
	k = 0;
	for (l = 0; l < 2; l++) {
		int idx = 0;

		if (!lists[l])
			continue;
		cJSON_ArrayForEach(it, lists[l]) {
			items[k].list = names[l];
			items[k].index = idx++;
			items[k].kind = l == 0 ? OCR_KIND_IMAGE : OCR_KIND_PDF;
			fetch[k].url = it->valuestring;
			k++;
		}
	}
	rc = run_items(c, items, fetch, n, deadline_ms, reply);
	for (k = 0; k < n; k++)
		ocr_fetch_fini(&fetch[k]);
free_req:
	free(fetch);
	free(items);
	cJSON_Delete(req);
	return rc;
}
