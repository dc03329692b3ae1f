/*
 * Unit tests of the OCR handler (handlers/ocr) without the thaw host.
 *
 * The test makes its own data with MuPDF: a 2-page PDF of known English text
 * in Helvetica 24 pt and a PNG of its first page at 144 dpi. A small HTTP
 * server on 127.0.0.1 (one thread) serves them and a few bad documents; the
 * handler's invoke() (handlers/ocr/ocr.c, included below with stub SDK
 * functions) and its core (ocr_batch_run, ocr_document_text) are called on
 * URLs of that server. Text is checked by character error rate (Levenshtein
 * distance over the length of the known text, whitespace collapsed), also
 * against the tesseract CLI on the same PNG.
 *
 * Exit 77 (skip) when Tesseract's English model is missing.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include "testutil.h"
#include <cjson/cJSON.h>
#include <mupdf/fitz.h>
#include <mupdf/pdf.h>

#include "thaw/handler.h"

/* --- stub SDK: what thaw-instance provides to the handler -------------------- */

struct thaw_response {
	int status;
	char ctype[64];
	char *body;
	size_t len;
};

static int64_t stub_time_left_ms = 60000;
static int stub_cancelled;
static char stub_error[256];

void thaw_response_status(struct thaw_response *res, int status)
{
	res->status = status;
}

int thaw_response_header(struct thaw_response *res, const char *name,
			 const char *value)
{
	(void)res;
	(void)name;
	(void)value;
	return 0;
}

int thaw_response_write(struct thaw_response *res, const void *data, size_t len)
{
	char *p = realloc(res->body, res->len + len + 1);

	if (!p)
		return -ENOMEM;
	memcpy(p + res->len, data, len);
	res->len += len;
	p[res->len] = 0;
	res->body = p;
	return 0;
}

int thaw_respond(struct thaw_response *res, int status, const char *content_type,
		 const void *body, size_t len)
{
	res->status = status;
	snprintf(res->ctype, sizeof(res->ctype), "%s", content_type);
	return thaw_response_write(res, body, len);
}

int thaw_respond_error(struct thaw_response *res, int status, const char *fmt, ...)
{
	(void)fmt;
	res->status = status;
	return 0;
}

/* The documents come from a server on 127.0.0.1, which is not a public
 * address: the function's fc.yaml would allow it. */
const char *thaw_config(const char *key)
{
	return strcmp(key, "OCR_FETCH_ALLOW") ? NULL : "127.0.0.1";
}

const char *thaw_function_dir(void)
{
	return "/nonexistent";
}

int64_t thaw_time_left_ms(const struct thaw_request *req)
{
	(void)req;
	return stub_time_left_ms;
}

int thaw_cancelled(const struct thaw_request *req)
{
	(void)req;
	return stub_cancelled;
}

void thaw_log(enum thaw_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level < THAW_LOG_INFO)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void thaw_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(stub_error, sizeof(stub_error), fmt, ap);
	va_end(ap);
}

/* The handler itself, to reach its static hooks. */
#include "handlers/ocr/ocr.c"

/* --- known text -------------------------------------------------------------- */

#define LINES_PER_PAGE 6
static const char *const page_lines[2][LINES_PER_PAGE] = {
	{ "The quick brown fox jumps over",
	  "the lazy dog near the river bank.",
	  "Serverless functions wake up",
	  "from snapshots in milliseconds.",
	  "Pack my box with five dozen",
	  "liquor jugs before the winter." },
	{ "Second page of the test document.",
	  "Optical character recognition",
	  "turns rendered pixels into text.",
	  "Numbers too: 12345 and 67890.",
	  "Sphinx of black quartz, judge",
	  "my vow, said the old librarian." },
};

static char *page_text(int p)
{
	static char buf[2][1024];
	size_t n = 0;
	int i;

	buf[p][0] = 0;
	for (i = 0; i < LINES_PER_PAGE; i++)
		n += snprintf(buf[p] + n, sizeof(buf[p]) - n, "%s%s", i ? "\n" : "",
			      page_lines[p][i]);
	return buf[p];
}

/* Whitespace runs become one space; ends trimmed. Returns malloc'd. */
static char *normalize(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;
	int space = 0;

	assert_non_null(out);
	for (; *s; s++) {
		if (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == '\f') {
			space = o != out;
			continue;
		}
		if (space)
			*o++ = ' ';
		space = 0;
		*o++ = *s;
	}
	*o = 0;
	return out;
}

static size_t levenshtein(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, *row, d;

	row = calloc(lb + 1, sizeof(*row));
	assert_non_null(row);
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	d = row[lb];
	free(row);
	return d;
}

/* Character error rate of got against the reference ref, in percent. */
static double cer(const char *ref, const char *got)
{
	char *r = normalize(ref), *g = normalize(got);
	double v = 100.0 * (double)levenshtein(r, g) / (double)(strlen(r) ? strlen(r) : 1);

	free(r);
	free(g);
	return v;
}

/* --- test data made with MuPDF ------------------------------------------------ */

static fz_buffer *pdf_data, *png_data, *blank_png, *dense_pdf, *locked_pdf;

/* A PDF of n_pages pages; page p shows lines line(p, 0..n_lines) in
 * Helvetica at size pt, lead pt apart, from the top left margin. */
static fz_buffer *make_pdf(fz_context *ctx, int n_pages, int n_lines, int size,
			   int lead, const char *(*line)(int p, int i))
{
	pdf_document *doc = pdf_create_document(ctx);
	fz_font *font = fz_new_base14_font(ctx, "Helvetica");
	pdf_obj *fontref = pdf_add_simple_font(ctx, doc, font, PDF_SIMPLE_ENCODING_LATIN);
	fz_buffer *out = fz_new_buffer(ctx, 8192);
	fz_output *o = fz_new_output_with_buffer(ctx, out);
	int p, i;

	for (p = 0; p < n_pages; p++) {
		pdf_obj *res = pdf_new_dict(ctx, doc, 1);
		pdf_obj *fonts = pdf_dict_put_dict(ctx, res, PDF_NAME(Font), 1);
		fz_buffer *contents = fz_new_buffer(ctx, 1024);
		pdf_obj *page;

		pdf_dict_puts(ctx, fonts, "F1", fontref);
		for (i = 0; i < n_lines; i++)
			fz_append_printf(ctx, contents, "BT /F1 %d Tf 72 %d Td (%s) Tj ET\n",
					 size, 720 - lead * i, line(p, i));
		page = pdf_add_page(ctx, doc, fz_make_rect(0, 0, 612, 792), 0, res,
				    contents);
		pdf_insert_page(ctx, doc, -1, page);
		pdf_drop_obj(ctx, page);
		pdf_drop_obj(ctx, res);
		fz_drop_buffer(ctx, contents);
	}
	pdf_write_document(ctx, doc, o, &pdf_default_write_options);
	fz_close_output(ctx, o);
	fz_drop_output(ctx, o);
	pdf_drop_obj(ctx, fontref);
	fz_drop_font(ctx, font);
	pdf_drop_document(ctx, doc);
	return out;
}

static const char *big_line(int p, int i)
{
	return page_lines[p][i];
}

/* The dense page: all twelve known lines, four times, in 11 pt. */
#define DENSE_LINES 48
static const char *dense_line(int p, int i)
{
	(void)p;
	return page_lines[(i / LINES_PER_PAGE) % 2][i % LINES_PER_PAGE];
}

static char *dense_text(void)
{
	static char buf[4096];
	size_t n = 0;
	int i;

	for (i = 0; i < DENSE_LINES; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "\n" : "",
			      dense_line(0, i));
	return buf;
}

/* Page 1 of the PDF at 144 dpi, RGB, as PNG. */
static fz_buffer *make_png(fz_context *ctx, fz_buffer *pdf)
{
	fz_stream *stm = fz_open_buffer(ctx, pdf);
	pdf_document *doc = pdf_open_document_with_stream(ctx, stm);
	fz_pixmap *pix = fz_new_pixmap_from_page_number(ctx, (fz_document *)doc, 0,
							fz_scale(2, 2),
							fz_device_rgb(ctx), 0);
	fz_buffer *png;

	fz_set_pixmap_resolution(ctx, pix, 144, 144);
	png = fz_new_buffer_from_pixmap_as_png(ctx, pix, fz_default_color_params);
	fz_drop_pixmap(ctx, pix);
	pdf_drop_document(ctx, doc);
	fz_drop_stream(ctx, stm);
	return png;
}

/* pdf encrypted with a user password. */
static fz_buffer *make_locked_pdf(fz_context *ctx, fz_buffer *pdf)
{
	fz_stream *stm = fz_open_buffer(ctx, pdf);
	pdf_document *doc = pdf_open_document_with_stream(ctx, stm);
	pdf_write_options opts = pdf_default_write_options;
	fz_buffer *out = fz_new_buffer(ctx, 8192);
	fz_output *o = fz_new_output_with_buffer(ctx, out);

	opts.do_encrypt = PDF_ENCRYPT_AES_256;
	opts.permissions = ~0;
	strcpy(opts.upwd_utf8, "secret");
	strcpy(opts.opwd_utf8, "owner");
	pdf_write_document(ctx, doc, o, &opts);
	fz_close_output(ctx, o);
	fz_drop_output(ctx, o);
	pdf_drop_document(ctx, doc);
	fz_drop_stream(ctx, stm);
	return out;
}

/* A white 300x200 grey PNG: a page without text. */
static fz_buffer *make_blank_png(fz_context *ctx)
{
	fz_pixmap *pix = fz_new_pixmap_with_bbox(ctx, fz_device_gray(ctx),
						 fz_make_irect(0, 0, 300, 200), NULL, 0);
	fz_buffer *png;

	fz_clear_pixmap_with_value(ctx, pix, 255);
	png = fz_new_buffer_from_pixmap_as_png(ctx, pix, fz_default_color_params);
	fz_drop_pixmap(ctx, pix);
	return png;
}

/* --- a tiny HTTP server ------------------------------------------------------ */

struct route {
	const char *path;
	int status;
	const char *location; /* for 302 */
	const unsigned char *body;
	size_t len;
};

static const char not_pdf[] = "this is plain text, not a PDF at all\n";
static const char broken_pdf[] = "%PDF-1.7\n1 0 obj <</Type /Catalog /Pages 9 0 R"
				 "\ngarbage garbage\n%%EOF\n";
static unsigned char garbage[4096];
static unsigned char big[200 * 1024];
static struct route routes[16];
static size_t n_routes;
static int server_fd = -1, server_port;
static volatile int server_stop;
static pthread_t server_thread;
static char base_url[64];

static void add_route(const char *path, int status, const char *location,
		      const void *body, size_t len)
{
	routes[n_routes++] = (struct route){ path, status, location, body, len };
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

static void serve_one(int fd)
{
	char req[8192], path[1024], head[512];
	const struct route *r = NULL;
	size_t got = 0, i;
	int hl;

	while (got < sizeof(req) - 1) {
		ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);

		if (n <= 0)
			return;
		got += (size_t)n;
		req[got] = 0;
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	if (sscanf(req, "GET %1023s ", path) != 1)
		return;
	for (i = 0; i < n_routes; i++)
		if (!strcmp(routes[i].path, path))
			r = &routes[i];
	if (!r) {
		hl = snprintf(head, sizeof(head), "HTTP/1.1 404 Not Found\r\n"
				  "Content-Length: 9\r\nConnection: close\r\n\r\nnot found");
		write_all(fd, head, (size_t)hl);
		return;
	}
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s%s%s"
		      "Content-Type: application/octet-stream\r\n"
		      "Connection: close\r\n\r\n",
		      r->status, r->len, r->location ? "Location: " : "",
		      r->location ? r->location : "", r->location ? "\r\n" : "");
	write_all(fd, head, (size_t)hl);
	write_all(fd, r->body, r->len);
}

static void *server_main(void *arg)
{
	(void)arg;
	while (!server_stop) {
		struct pollfd p = { .fd = server_fd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 100) <= 0)
			continue;
		fd = accept(server_fd, NULL, NULL);
		if (fd < 0)
			continue;
		serve_one(fd);
		shutdown(fd, SHUT_WR);
		close(fd);
	}
	return NULL;
}

static int server_start(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	server_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (server_fd < 0 || bind(server_fd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(server_fd, 64) || getsockname(server_fd, (struct sockaddr *)&a, &alen))
		return -errno;
	server_port = ntohs(a.sin_port);
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d", server_port);
	return pthread_create(&server_thread, NULL, server_main, NULL) ? -EAGAIN : 0;
}

static void server_end(void)
{
	server_stop = 1;
	pthread_join(server_thread, NULL);
	close(server_fd);
}

/* --- helpers --------------------------------------------------------------- */

static char *url(const char *path)
{
	static char buf[8][256];
	static int next;
	char *b = buf[next++ % 8];

	snprintf(b, sizeof(buf[0]), "%s%s", base_url, path);
	return b;
}

/* Calls the handler's invoke() as the host would. */
static struct thaw_response invoke(const char *method, const char *path,
				   const char *body)
{
	struct thaw_request req = {
		.method = method, .path = path, .query = "",
		.body = body ? body : "", .body_len = body ? strlen(body) : 0,
		.request_id = "test",
	};
	struct thaw_response res = { 0 };

	assert_int_equal(ocr_invoke(&req, &res), 0);
	assert_non_null(res.body);
	return res;
}

/* POSTs a body and expects status; returns the parsed JSON reply. */
static cJSON *post(const char *body, int status)
{
	struct thaw_response res = invoke("POST", "/", body);
	cJSON *j = cJSON_Parse(res.body);

	if (res.status != status)
		fprintf(stderr, "got %d %s\n", res.status, res.body);
	assert_int_equal(res.status, status);
	assert_string_equal(res.ctype, "application/json");
	assert_non_null(j);
	free(res.body);
	return j;
}

/* Expects 400 with a detail holding want. */
static void expect_400(const char *body, const char *want)
{
	cJSON *j = post(body, 400);
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "detail");

	assert_true(cJSON_IsString(d));
	if (!strstr(d->valuestring, want))
		fprintf(stderr, "detail '%s' lacks '%s'\n", d->valuestring, want);
	assert_non_null(strstr(d->valuestring, want));
	cJSON_Delete(j);
}

static const char *output_at(const cJSON *j, int i)
{
	const cJSON *out = cJSON_GetObjectItemCaseSensitive(j, "output");
	const cJSON *s = cJSON_GetArrayItem(out, i);

	assert_true(cJSON_IsArray(out));
	assert_true(cJSON_IsString(s));
	return s->valuestring;
}

/* Checks a 2-page OCR result against the known text, page by page. */
static void check_two_pages(const char *text, const char *what)
{
	const char *split = strstr(text, OCR_PAGE_SPLIT);
	char *p1;
	double c1, c2;

	assert_non_null(split);
	assert_null(strstr(split + 1, OCR_PAGE_SPLIT));
	p1 = strndup(text, (size_t)(split - text));
	c1 = cer(page_text(0), p1);
	c2 = cer(page_text(1), split + strlen(OCR_PAGE_SPLIT));
	printf("# CER %s: page 1 %.2f%%, page 2 %.2f%%\n", what, c1, c2);
	assert_true(c1 <= 2.0);
	assert_true(c2 <= 2.0);
	free(p1);
}

/* --- tests ------------------------------------------------------------------- */

static void test_health_answers_healthy(void **state)
{
	struct thaw_response res = invoke("GET", "/health", NULL);

	(void)state;
	assert_int_equal(res.status, 200);
	assert_string_equal(res.body, "{\"status\":\"healthy\"}");
	free(res.body);
	res = invoke("GET", "/nowhere", NULL);
	assert_int_equal(res.status, 404);
	free(res.body);
	res = invoke("GET", "/", NULL);
	assert_int_equal(res.status, 405);
	free(res.body);
}

static void test_pdf_pages_joined_with_split_marker(void **state)
{
	char body[512];
	cJSON *j;

	(void)state;
	snprintf(body, sizeof(body), "{\"input\": {\"pdfs\": [\"%s\"]}}",
		 url("/doc.pdf"));
	j = post(body, 200);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "output")), 1);
	check_two_pages(output_at(j, 0), "PDF");
	cJSON_Delete(j);
}

static char *run_tesseract_cli(const char *png_path)
{
	char cmd[512], *out = NULL;
	size_t len = 0;
	FILE *f;
	char buf[4096];
	size_t n;

	snprintf(cmd, sizeof(cmd), "tesseract '%s' stdout 2>/dev/null", png_path);
	f = popen(cmd, "r");
	if (!f)
		return NULL;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		out = realloc(out, len + n + 1);
		memcpy(out + len, buf, n);
		len += n;
		out[len] = 0;
	}
	if (pclose(f) != 0 || !out) {
		free(out);
		return NULL;
	}
	return out;
}

static void test_png_matches_text_and_tesseract_cli(void **state)
{
	char body[512], path[] = "/tmp/test_ocr_XXXXXX.png", *cli;
	const char *ours;
	double c_ours, c_cli, c_between;
	cJSON *j;
	int fd;

	(void)state;
	snprintf(body, sizeof(body),
		 "{\"input\": {\"images\": [\"%s\"]}, \"prompt\": \"<image>\\nFree OCR.\"}",
		 url("/page1.png"));
	j = post(body, 200);
	ours = output_at(j, 0);
	assert_null(strstr(ours, OCR_PAGE_SPLIT));
	c_ours = cer(page_text(0), ours);
	printf("# CER PNG (handler): %.2f%%\n", c_ours);
	assert_true(c_ours <= 2.0);

	fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	write_all(fd, png_data->data, png_data->len);
	close(fd);
	/* probed here, not inferred from a failed run: a CLI that is present
	 * and fails is a failure; one that is absent is a counted skip */
	bool have_cli = system("command -v tesseract >/dev/null 2>&1") == 0;
	cli = have_cli ? run_tesseract_cli(path) : NULL;
	unlink(path);
	if (!have_cli) {
		cJSON_Delete(j);
		SKIP_BECAUSE("no tesseract CLI (tesseract-ocr): the handler was checked, the comparison "
			     "with the CLI left out");
	}
	if (!cli)
		fail_msg("tesseract %s failed", path);
	c_cli = cer(page_text(0), cli);
	c_between = cer(cli, ours);
	printf("# CER PNG (tesseract CLI): %.2f%%; handler vs CLI: %.2f%%\n", c_cli,
	       c_between);
	assert_true(c_cli <= 2.0);
	assert_true(c_between <= 2.0);
	free(cli);
	cJSON_Delete(j);
}

static void test_output_order_images_then_pdfs(void **state)
{
	char body[1024];
	cJSON *j;

	(void)state;
	/* pdfs listed first in the JSON: images still come first. An image URL
	 * holding a PDF is read as a PDF. */
	snprintf(body, sizeof(body),
		 "{\"input\": {\"pdfs\": [\"%s\"], \"images\": [\"%s\", \"%s\"]}}",
		 url("/doc.pdf"), url("/page1.png"), url("/pdf-as-image"));
	j = post(body, 200);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "output")), 3);
	assert_true(cer(page_text(0), output_at(j, 0)) <= 2.0);
	assert_null(strstr(output_at(j, 0), OCR_PAGE_SPLIT));
	check_two_pages(output_at(j, 1), "PDF at an image URL");
	check_two_pages(output_at(j, 2), "PDF (batch of 3)");
	cJSON_Delete(j);
}

static void test_bad_requests_give_400_detail(void **state)
{
	char body[512];

	(void)state;
	expect_400("{\"input\": ", "not valid JSON");
	expect_400("[1, 2]", "JSON object");
	expect_400("{\"prompt\": \"x\"}", "input");
	expect_400("{\"input\": {}}", "input.images and/or input.pdfs");
	expect_400("{\"input\": {\"images\": [], \"pdfs\": null}}",
		   "input.images and/or input.pdfs");
	expect_400("{\"input\": {\"images\": \"http://x/\"}}", "list of URLs");
	expect_400("{\"input\": {\"pdfs\": [3]}}", "list of URLs");
	expect_400("{\"input\": {\"pdfs\": [\"http://x/\"]}, \"prompt\": 5}",
		   "prompt");

	snprintf(body, sizeof(body), "{\"input\": {\"pdfs\": [\"%s\"]}}",
		 url("/not-a-pdf.pdf"));
	expect_400(body, "pdfs[0]: not a PDF");
	snprintf(body, sizeof(body), "{\"input\": {\"pdfs\": [\"%s\"]}}",
		 url("/missing.pdf"));
	expect_400(body, "HTTP status 404");
	snprintf(body, sizeof(body), "{\"input\": {\"images\": [\"%s\", \"%s\"]}}",
		 url("/page1.png"), url("/missing.png"));
	expect_400(body, "images[1]: download");
	expect_400("{\"input\": {\"images\": [\"file:///etc/passwd\"]}}",
		   "images[0]: download of file:///etc/passwd failed");
	expect_400("{\"input\": {\"pdfs\": [\"ftp://127.0.0.1/x.pdf\"]}}",
		   "failed");
	snprintf(body, sizeof(body), "{\"input\": {\"images\": [\"%s\"]}}",
		 url("/redirect-file"));
	expect_400(body, "images[0]: download");
	snprintf(body, sizeof(body), "{\"input\": {\"images\": [\"%s\"]}}",
		 url("/redirect-loop"));
	expect_400(body, "redirect");
	snprintf(body, sizeof(body), "{\"input\": {\"images\": [\"%s\"]}}",
		 url("/garbage.png"));
	expect_400(body, "images[0]: cannot decode image");
	snprintf(body, sizeof(body), "{\"input\": {\"pdfs\": [\"%s\"]}}",
		 url("/broken.pdf"));
	expect_400(body, "pdfs[0]:");
	snprintf(body, sizeof(body), "{\"input\": {\"pdfs\": [\"%s\"]}}",
		 url("/locked.pdf"));
	expect_400(body, "pdfs[0]: cannot open PDF: PDF is encrypted");
}

/* A truncated PDF may be repaired or refused, but never crashes. */
static void test_truncated_pdfs_never_crash(void **state)
{
	size_t cut;

	(void)state;
	for (cut = 16; cut < pdf_data->len; cut += pdf_data->len / 7) {
		char *text = NULL, err[256] = "";
		int rc = ocr_document_text(ocr, pdf_data->data, cut, OCR_KIND_PDF,
					   ocr_now_ms() + 60000, &text, err, sizeof(err));

		assert_true(rc == 0 || rc == -EINVAL);
		if (rc == -EINVAL)
			assert_true(err[0] != 0);
		free(text);
	}
}

/* Limits from the environment: size cap and page cap give 400. */
static void test_limits_give_400(void **state)
{
	struct ocr_config cfg;
	struct ocr_ctx *c;
	struct ocr_reply r;
	char body[512], err[256] = "";

	(void)state;
	ocr_config_load(&cfg, NULL);
	cfg.fetch_allow = "127.0.0.1";
	cfg.max_download_bytes = 100 * 1024;
	cfg.max_pages = 1;
	assert_int_equal(ocr_ctx_new(&cfg, &c, err, sizeof(err)), 0);
	snprintf(body, sizeof(body), "{\"input\": {\"images\": [\"%s\"]}}", url("/big"));
	assert_int_equal(ocr_batch_run(c, body, strlen(body), 30000, &r), 0);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "larger than the limit"));
	ocr_reply_fini(&r);
	snprintf(body, sizeof(body), "{\"input\": {\"pdfs\": [\"%s\"]}}", url("/doc.pdf"));
	assert_int_equal(ocr_batch_run(c, body, strlen(body), 30000, &r), 0);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "PDF has 2 pages; the limit is 1"));
	ocr_reply_fini(&r);
	assert_int_equal(ocr_batch_run(c, body, strlen(body), 0, &r), 0);
	assert_int_equal(r.status, 504);
	ocr_reply_fini(&r);
	ocr_ctx_free(c);
}

static void test_env_config_is_read(void **state)
{
	struct ocr_config cfg;

	(void)state;
	setenv("OCR_MAX_DOWNLOAD_BYTES", "1234", 1);
	setenv("OCR_MAX_PAGES", "7", 1);
	setenv("OCR_ENGINES", "junk", 1);
	ocr_config_load(&cfg, (const char *(*)(const char *))getenv);
	assert_int_equal(cfg.max_download_bytes, 1234);
	assert_int_equal(cfg.max_pages, 7);
	assert_int_equal(cfg.engines, 1);
	unsetenv("OCR_MAX_DOWNLOAD_BYTES");
	unsetenv("OCR_MAX_PAGES");
	unsetenv("OCR_ENGINES");
	ocr_config_load(&cfg, (const char *(*)(const char *))getenv);
	assert_int_equal(cfg.max_download_bytes, 50u << 20);
	assert_int_equal(cfg.max_pages, 50);
}

static void test_blank_image_gives_empty_text(void **state)
{
	char body[512];
	cJSON *j;

	(void)state;
	snprintf(body, sizeof(body), "{\"input\": {\"images\": [\"%s\"]}}",
		 url("/blank.png"));
	j = post(body, 200);
	assert_string_equal(output_at(j, 0), "");
	cJSON_Delete(j);
}

static void test_deadline_passed_gives_504(void **state)
{
	char body[512];
	cJSON *j;

	(void)state;
	snprintf(body, sizeof(body), "{\"input\": {\"pdfs\": [\"%s\"]}}",
		 url("/doc.pdf"));
	stub_time_left_ms = 0;
	j = post(body, 504);
	cJSON_Delete(j);
	/* Enough for the download, too little for OCR of two pages. */
	stub_time_left_ms = 60;
	j = post(body, 504);
	/* On a loaded machine the download itself may be what runs out. */
	assert_true(strstr(cJSON_GetObjectItem(j, "detail")->valuestring, "deadline") ||
		    strstr(cJSON_GetObjectItem(j, "detail")->valuestring, "timed out"));
	cJSON_Delete(j);
	stub_time_left_ms = 60000;
}

/* A request whose client went away stops before its first page: no OCR
 * for an answer nobody reads. */
static void test_cancelled_request_stops_before_ocr(void **state)
{
	char body[512];
	(void)state;
	snprintf(body, sizeof(body), "{\"input\": {\"pdfs\": [\"%s\"]}}", url("/doc.pdf"));
	stub_cancelled = 1;
	cJSON *j = post(body, 504);
	stub_cancelled = 0;
	cJSON_Delete(j);
	j = post(body, 200); /* the next one is done whole */
	cJSON_Delete(j);
}

struct worker {
	struct ocr_ctx *c;
	const char *body;
	int status;
	char *out0;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ocr_reply r;
	cJSON *j;

	if (ocr_batch_run(w->c, w->body, strlen(w->body), 60000, &r))
		return NULL;
	w->status = r.status;
	j = cJSON_Parse(r.body);
	if (j && cJSON_GetArrayItem(cJSON_GetObjectItem(j, "output"), 0))
		w->out0 = strdup(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "output"), 0)
					 ->valuestring);
	cJSON_Delete(j);
	ocr_reply_fini(&r);
	return NULL;
}

/* Issue 16 item 11: no fetch of loopback, link-local (cloud metadata) or
 * private addresses unless OCR_FETCH_ALLOW names them: checked on the
 * address connected to, so neither DNS nor a redirect gets around it. */
static void test_fetch_refuses_non_public_destinations(void **state)
{
	static const struct {
		const char *addr, *allow;
		int want;
	} cases[] = {
		{ "127.0.0.1", NULL, 0 },       { "127.9.9.9", NULL, 0 },
		{ "10.1.2.3", NULL, 0 },        { "172.16.0.1", NULL, 0 },
		{ "172.31.255.255", NULL, 0 },  { "172.32.0.1", NULL, 1 },
		{ "192.168.1.1", NULL, 0 },     { "169.254.169.254", NULL, 0 },
		{ "100.64.0.1", NULL, 0 },      { "0.0.0.0", NULL, 0 },
		{ "224.0.0.1", NULL, 0 },       { "255.255.255.255", NULL, 0 },
		{ "8.8.8.8", NULL, 1 },         { "1.1.1.1", "", 1 },
		{ "::1", NULL, 0 },             { "::", NULL, 0 },
		{ "fe80::1", NULL, 0 },         { "fd00::1", NULL, 0 },
		{ "::ffff:127.0.0.1", NULL, 0 }, { "::ffff:169.254.169.254", NULL, 0 },
		{ "64:ff9b::a9fe:a9fe", NULL, 0 }, { "2001:4860:4860::8888", NULL, 1 },
		{ "127.0.0.1", "127.0.0.1", 1 }, { "127.0.0.2", "127.0.0.1", 0 },
		{ "10.9.9.9", "127.0.0.1, 10.0.0.0/8", 1 }, { "11.0.0.1", "10.0.0.0/8", 1 },
		{ "192.168.2.1", "192.168.1.0/24", 0 }, { "fd00::5", "fd00::/8", 1 },
		{ "127.0.0.1", "junk,/,1.2.3.4/99", 0 },
	};
	struct ocr_fetch it;
	struct ocr_fetch_limits lim = { .max_bytes = 1 << 20, .max_redirects = 5,
					.timeout_ms = 5000, .connect_timeout_ms = 2000,
					.max_parallel = 1 };
	char u[256];
	size_t failed;

	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct sockaddr_storage ss = { 0 };
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, cases[k].addr, &a4->sin_addr) == 1)
			a4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, cases[k].addr, &a6->sin6_addr) == 1)
			a6->sin6_family = AF_INET6;
		else
			fail_msg("bad test address %s", cases[k].addr);
		if (ocr_fetch_addr_allowed((struct sockaddr *)&ss, cases[k].allow) != cases[k].want)
			fail_msg("%s with allow %s: want %d", cases[k].addr,
				 cases[k].allow ? cases[k].allow : "(none)", cases[k].want);
	}
	/* the test server itself, by address and by name, without the allow list */
	snprintf(u, sizeof(u), "%s", url("/doc.pdf"));
	memset(&it, 0, sizeof(it));
	it.url = u;
	assert_int_equal(ocr_fetch_all(&it, 1, &lim, &failed), -EIO);
	assert_non_null(strstr(it.error, "refused: not a public address"));
	ocr_fetch_fini(&it);
	snprintf(u, sizeof(u), "http://localhost:%d/doc.pdf", server_port);
	memset(&it, 0, sizeof(it));
	it.url = u;
	assert_int_equal(ocr_fetch_all(&it, 1, &lim, &failed), -EIO);
	assert_non_null(strstr(it.error, "refused: not a public address"));
	ocr_fetch_fini(&it);
	/* allowed, it is fetched; a redirect from it to ::1 is not */
	lim.allow = "127.0.0.1";
	snprintf(u, sizeof(u), "%s", url("/doc.pdf"));
	memset(&it, 0, sizeof(it));
	it.url = u;
	assert_int_equal(ocr_fetch_all(&it, 1, &lim, &failed), 0);
	ocr_fetch_fini(&it);
	snprintf(u, sizeof(u), "%s", url("/redirect-v6-loopback"));
	memset(&it, 0, sizeof(it));
	it.url = u;
	assert_int_equal(ocr_fetch_all(&it, 1, &lim, &failed), -EIO);
	assert_non_null(strstr(it.error, "refused: not a public address"));
	ocr_fetch_fini(&it);
}

/* instanceConcurrency > 1: four requests at once on two engines. */
static void test_concurrent_requests_share_engine_pool(void **state)
{
	struct ocr_config cfg;
	struct ocr_ctx *c;
	struct worker w[4] = { { 0 } };
	pthread_t t[4];
	char body[2][512], err[256] = "";
	int i;

	(void)state;
	ocr_config_load(&cfg, NULL);
	cfg.fetch_allow = "127.0.0.1";
	cfg.engines = 2;
	assert_int_equal(ocr_ctx_new(&cfg, &c, err, sizeof(err)), 0);
	snprintf(body[0], sizeof(body[0]), "{\"input\": {\"pdfs\": [\"%s\"]}}",
		 url("/doc.pdf"));
	snprintf(body[1], sizeof(body[1]), "{\"input\": {\"images\": [\"%s\"]}}",
		 url("/page1.png"));
	for (i = 0; i < 4; i++) {
		w[i].c = c;
		w[i].body = body[i % 2];
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < 4; i++) {
		assert_int_equal(w[i].status, 200);
		assert_non_null(w[i].out0);
		if (i % 2 == 0)
			check_two_pages(w[i].out0, "PDF (concurrent)");
		else
			assert_true(cer(page_text(0), w[i].out0) <= 2.0);
		free(w[i].out0);
	}
	ocr_ctx_free(c);
}

static double thread_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* Render + OCR of a PDF of pages pages, rounds times: pages per wall second
 * and per CPU second of this thread (with OCR_OMP_THREADS=1 all the work is
 * on it; the machine may be shared). The text of the last round is left in
 * *text. */
static void pages_per_second(const fz_buffer *pdf, int pages, int rounds,
			     char **text, double *wall, double *cpu)
{
	int64_t t0 = ocr_now_ms(), ms;
	double c0 = thread_cpu_ms(), cms;
	int i;

	for (i = 0; i < rounds; i++) {
		char err[256] = "";

		free(*text);
		*text = NULL;
		assert_int_equal(ocr_document_text(ocr, pdf->data, pdf->len, OCR_KIND_PDF,
						   ocr_now_ms() + 60000, text, err,
						   sizeof(err)),
				 0);
	}
	ms = ocr_now_ms() - t0;
	cms = thread_cpu_ms() - c0;
	*wall = rounds * pages * 1000.0 / (double)(ms ? ms : 1);
	*cpu = rounds * pages * 1000.0 / (cms > 0 ? cms : 1);
}

/* Throughput of render (144 dpi) + OCR on one thread (the test runs one
 * engine with OpenMP capped at one thread). */
static void test_pages_per_second(void **state)
{
	char *text = NULL;
	double sw, sc, dw, dc, c;

	(void)state;
	pages_per_second(pdf_data, 2, 3, &text, &sw, &sc);
	pages_per_second(dense_pdf, 1, 2, &text, &dw, &dc);
	c = cer(dense_text(), text);
	printf("# pages/s, render 144 dpi + OCR, one thread (wall; per CPU-second): "
	       "6 lines of 24 pt: %.2f; %.2f -- 48 lines of 11 pt: %.2f; %.2f "
	       "(CER %.2f%%)\n", sw, sc, dw, dc, c);
	assert_true(c <= 2.0);
	free(text);
}

/* --- setup --------------------------------------------------------------------- */

static int make_data(void)
{
	fz_context *ctx = fz_new_context(NULL, NULL, FZ_STORE_DEFAULT);
	int rc = 0;
	size_t i;

	if (!ctx)
		return -ENOMEM;
	fz_try(ctx) {
		pdf_data = make_pdf(ctx, 2, LINES_PER_PAGE, 24, 40, big_line);
		dense_pdf = make_pdf(ctx, 1, DENSE_LINES, 11, 13, dense_line);
		png_data = make_png(ctx, pdf_data);
		blank_png = make_blank_png(ctx);
		locked_pdf = make_locked_pdf(ctx, pdf_data);
	}
	fz_catch(ctx) {
		fprintf(stderr, "cannot make test data: %s\n", fz_caught_message(ctx));
		rc = -EIO;
	}
	/* ctx is kept: the buffers made with it live until exit. */
	for (i = 0; i < sizeof(garbage); i++)
		garbage[i] = (unsigned char)(i * 7919 + 13);
	memset(big, 'x', sizeof(big));
	add_route("/doc.pdf", 200, NULL, pdf_data->data, pdf_data->len);
	add_route("/pdf-as-image", 200, NULL, pdf_data->data, pdf_data->len);
	add_route("/page1.png", 200, NULL, png_data->data, png_data->len);
	add_route("/locked.pdf", 200, NULL, locked_pdf->data, locked_pdf->len);
	add_route("/blank.png", 200, NULL, blank_png->data, blank_png->len);
	add_route("/not-a-pdf.pdf", 200, NULL, not_pdf, sizeof(not_pdf) - 1);
	add_route("/broken.pdf", 200, NULL, broken_pdf, sizeof(broken_pdf) - 1);
	add_route("/garbage.png", 200, NULL, garbage, sizeof(garbage));
	add_route("/big", 200, NULL, big, sizeof(big));
	add_route("/redirect-loop", 302, "/redirect-loop", "", 0);
	add_route("/redirect-file", 302, "file:///etc/passwd", "", 0);
	add_route("/redirect-v6-loopback", 302, "http://[::1]:1/doc.pdf", "", 0);
	return rc;
}

/* --write-data DIR: the test's documents and their text, for
 * tests/e2e/test_ocr.py (which has no MuPDF of its own). */
static int write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f)
		return -errno;
	ok = fwrite(p, 1, n, f) == n;
	return fclose(f) == 0 && ok ? 0 : -EIO;
}

static int write_data(const char *dir)
{
	if (make_data())
		return 1;
	return write_file(dir, "doc.pdf", pdf_data->data, pdf_data->len) ||
	       write_file(dir, "page1.png", png_data->data, png_data->len) ||
	       write_file(dir, "page1.txt", page_text(0), strlen(page_text(0))) ||
	       write_file(dir, "page2.txt", page_text(1), strlen(page_text(1)));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_answers_healthy),
		cmocka_unit_test(test_env_config_is_read),
		cmocka_unit_test(test_pdf_pages_joined_with_split_marker),
		cmocka_unit_test(test_png_matches_text_and_tesseract_cli),
		cmocka_unit_test(test_output_order_images_then_pdfs),
		cmocka_unit_test(test_bad_requests_give_400_detail),
		cmocka_unit_test(test_truncated_pdfs_never_crash),
		cmocka_unit_test(test_limits_give_400),
		cmocka_unit_test(test_blank_image_gives_empty_text),
		cmocka_unit_test(test_deadline_passed_gives_504),
		cmocka_unit_test(test_cancelled_request_stops_before_ocr),
		cmocka_unit_test(test_concurrent_requests_share_engine_pool),
		cmocka_unit_test(test_fetch_refuses_non_public_destinations),
		cmocka_unit_test(test_pages_per_second),
	};
	int rc;

	if (argc == 3 && !strcmp(argv[1], "--write-data"))
		return write_data(argv[2]);
	if (access(OCR_TESSDATA_DEFAULT "/eng.traineddata", R_OK) && !getenv("OCR_TESSDATA")) {
		printf("skip: no Tesseract English model in " OCR_TESSDATA_DEFAULT "\n");
		return 77;
	}
	if (make_data() || server_start()) {
		fprintf(stderr, "test setup failed\n");
		return 1;
	}
	if (ocr_init()) {
		fprintf(stderr, "ocr init failed: %s\n", stub_error);
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	ocr_shutdown();
	server_end();
	return rc;
}
