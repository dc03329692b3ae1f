/*
 * ocr: the thaw handler for DeepSeek-OCR style batch OCR (deployed as
 * ocr_batch). POST / runs ocr_batch_run(); GET /health answers
 * {"status": "healthy"}. Everything slow (MuPDF's context, Tesseract's
 * English model, curl's global state) is made in init so a snapshot keeps
 * it; invoke may run on several threads (engines are pooled, MuPDF
 * contexts cloned per document).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thaw/handler.h"

#include "handlers/ocr/ocr_batch.h"
#include "handlers/ocr/ocr_fetch.h"

static struct ocr_ctx *ocr; /* made by init, read-only afterwards */

static const char *lookup(const char *key)
{
	const char *v = thaw_config(key);

	return v ? v : getenv(key);
}

static bool request_cancelled(void)
{
	return thaw_cancelled(NULL);
}

static int ocr_init(void)
{
	struct ocr_config cfg;
	char err[256] = "";
	int rc;

	rc = ocr_fetch_global_init();
	if (rc < 0) {
		thaw_set_error("ocr: curl_global_init failed");
		return rc;
	}
	ocr_config_load(&cfg, lookup);
	cfg.cancelled = request_cancelled;
	/* a relative OCR_TESSDATA is a model folder shipped with the function */
	static char tessdata[4096]; /* outlives init: the config borrows it */
	if (cfg.tessdata && cfg.tessdata[0] != '/') {
		snprintf(tessdata, sizeof(tessdata), "%s/%s", thaw_function_dir(), cfg.tessdata);
		cfg.tessdata = tessdata;
	}
	rc = ocr_ctx_new(&cfg, &ocr, err, sizeof(err));
	if (rc < 0) {
		thaw_set_error("ocr: %s", err[0] ? err : "out of memory");
		return rc;
	}
	thaw_log(THAW_LOG_INFO,
		 "ocr: ready, %zu engine(s) lang=%s dpi=%d max_pages=%d "
		 "max_download_bytes=%zu",
		 cfg.engines, cfg.lang, cfg.dpi, cfg.max_pages,
		 cfg.max_download_bytes);
	return 0;
}

static int respond_json(struct thaw_response *res, int status, const char *body)
{
	return thaw_respond(res, status, "application/json", body, strlen(body));
}

static int ocr_invoke(const struct thaw_request *req, struct thaw_response *res)
{
	struct ocr_reply reply;
	int rc;

	if (!strcmp(req->path, "/health")) {
		if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD"))
			return respond_json(res, 405, "{\"detail\":\"use GET\"}");
		return respond_json(res, 200, "{\"status\":\"healthy\"}");
	}
	if (strcmp(req->path, "/"))
		return respond_json(res, 404, "{\"detail\":\"Not Found\"}");
	if (strcmp(req->method, "POST"))
		return respond_json(res, 405, "{\"detail\":\"Method Not Allowed\"}");
	rc = ocr_batch_run(ocr, req->body, req->body_len, thaw_time_left_ms(req),
			   &reply);
	if (rc < 0) {
		thaw_log(THAW_LOG_ERROR, "ocr: request %s failed: %s",
			 req->request_id, strerror(-rc));
		return respond_json(res, 500, "{\"detail\":\"internal error\"}");
	}
	if (reply.status != 200)
		thaw_log(THAW_LOG_INFO, "ocr: request %s -> %d %s", req->request_id,
			 reply.status, reply.body);
	rc = thaw_respond(res, reply.status, "application/json", reply.body,
			  reply.len);
	ocr_reply_fini(&reply);
	return rc;
}

static void ocr_shutdown(void)
{
	ocr_ctx_free(ocr);
	ocr = NULL;
}

THAW_HANDLER(.name = "ocr", .init = ocr_init, .invoke = ocr_invoke,
	     .shutdown = ocr_shutdown);
