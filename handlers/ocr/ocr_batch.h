/*
 * ocr_batch: the OCR handler's core, callable without the thaw host.
 *
 * POST body {"input": {"images": [url...], "pdfs": [url...]}, "prompt": s}
 * -> {"output": [text...]}: one string per document, images first, then
 * PDFs, each in request order; the pages of a PDF joined with
 * OCR_PAGE_SPLIT. Errors come back as {"detail": "..."} with a status.
 */
#ifndef OCR_BATCH_H
#define OCR_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "handlers/ocr/ocr_engine.h"
#include "handlers/ocr/ocr_render.h"

#define OCR_PAGE_SPLIT "\n<--- Page Split --->\n"
#define OCR_DEFAULT_PROMPT "<image>\nFree OCR."

struct ocr_config {
	size_t max_download_bytes; /* OCR_MAX_DOWNLOAD_BYTES, 50 MiB */
	int max_pages;             /* OCR_MAX_PAGES per PDF, 50 */
	size_t max_docs;           /* OCR_MAX_DOCS per request, 32 */
	size_t max_pixels;         /* OCR_MAX_PIXELS per page/image, 50 M */
	int dpi;                   /* PDF rendering, 144 */
	long max_redirects;        /* 5 */
	int64_t connect_timeout_ms; /* OCR_CONNECT_TIMEOUT_MS, 10 s */
	long max_parallel;         /* OCR_MAX_PARALLEL downloads, 8 */
	size_t engines;            /* OCR_ENGINES: Tesseract instances, 1 */
	int omp_threads;           /* OCR_OMP_THREADS per recognition, 1; 0: OpenMP's */
	const char *tessdata;      /* OCR_TESSDATA (borrowed), NULL: Debian's */
	const char *lang;          /* OCR_LANG (borrowed), "eng" */
	const char *fetch_allow;   /* OCR_FETCH_ALLOW (borrowed): non-public
				    * addresses that may be fetched, NULL: none */
	/* NULL, or true once the calling thread's request is cancelled (its
	 * client went away): checked between pages, like the deadline */
	bool (*cancelled)(void);
};

/* Fills cfg with the defaults above, overridden by lookup(name) where it
 * gives a value (lookup may be getenv). Bad numbers keep the default. */
void ocr_config_load(struct ocr_config *cfg, const char *(*lookup)(const char *));

struct ocr_ctx;

/* Everything a request needs that can be made ahead: MuPDF's context and
 * cfg->engines loaded Tesseract engines. cfg is copied (its strings must
 * outlive the ctx). Returns 0, -ENOENT (no model; err says why), -ENOMEM. */
int ocr_ctx_new(const struct ocr_config *cfg, struct ocr_ctx **out, char *err,
		size_t errlen);
void ocr_ctx_free(struct ocr_ctx *c);

struct ocr_reply {
	int status;  /* 200, 400, 500 or 504 */
	char *body;  /* JSON, malloc'd, NUL-terminated; ocr_reply_fini frees */
	size_t len;
};
void ocr_reply_fini(struct ocr_reply *r);

/* Serves one POST. Fills *reply in every case but -ENOMEM. time_left_ms
 * bounds downloads, waiting for an engine and OCR (checked between pages).
 * Safe on several threads at once. */
int ocr_batch_run(struct ocr_ctx *c, const char *body, size_t len,
		  int64_t time_left_ms, struct ocr_reply *reply);

/* OCR of one document already in memory: every page's text joined with
 * OCR_PAGE_SPLIT into *text (malloc'd). kind is what the client said; an
 * image that holds a PDF is read as a PDF. deadline_ms is on
 * CLOCK_MONOTONIC. Returns 0; -EINVAL (the document's fault: err says
 * why; the client gets 400); -ETIMEDOUT; -EIO, -ENOMEM. */
int ocr_document_text(struct ocr_ctx *c, const unsigned char *data, size_t len,
		      enum ocr_kind kind, int64_t deadline_ms, char **text,
		      char *err, size_t errlen);

/* CLOCK_MONOTONIC in ms, the clock of deadline_ms above. */
int64_t ocr_now_ms(void);

#endif
