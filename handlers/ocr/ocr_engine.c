/*
 * ocr_engine: Tesseract through its C API; see ocr_engine.h.
 */
#include "handlers/ocr/ocr_engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>
#include <tesseract/capi.h>

struct ocr_engine {
	TessBaseAPI *api;
	int omp_threads;
	struct ocr_engine *next_free;
};

struct ocr_engines {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	struct ocr_engine *free_list; /* under lock */
	struct ocr_engine *all;
	size_t n;
};

static int engine_init(struct ocr_engine *e, const char *tessdata,
		       const char *lang, char *err, size_t errlen)
{
	e->api = TessBaseAPICreate();
	if (!e->api)
		return -ENOMEM;
	if (TessBaseAPIInit3(e->api, tessdata, lang) != 0) {
		snprintf(err, errlen, "tesseract cannot load language '%s' from %s",
			 lang, tessdata);
		TessBaseAPIDelete(e->api);
		e->api = NULL;
		return -ENOENT;
	}
	/* A page of a document: Tesseract's default full-page segmentation. */
	TessBaseAPISetPageSegMode(e->api, PSM_AUTO);
	return 0;
}

int ocr_engines_new(size_t n, const char *tessdata, const char *lang,
		    int omp_threads, struct ocr_engines **out, char *err,
		    size_t errlen)
{
	struct ocr_engines *p;
	size_t i;
	int rc;

	if (n == 0)
		n = 1;
	if (!tessdata)
		tessdata = OCR_TESSDATA_DEFAULT;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->all = calloc(n, sizeof(*p->all));
	if (!p->all) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->freed, NULL);
	for (i = 0; i < n; i++) {
		rc = engine_init(&p->all[i], tessdata, lang, err, errlen);
		if (rc < 0)
			goto fail_engines;
		p->all[i].omp_threads = omp_threads;
		p->all[i].next_free = p->free_list;
		p->free_list = &p->all[i];
		p->n = i + 1;
	}
	*out = p;
	return 0;

fail_engines:
	ocr_engines_free(p);
	return rc;
}

void ocr_engines_free(struct ocr_engines *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->n; i++) {
		TessBaseAPIEnd(p->all[i].api);
		TessBaseAPIDelete(p->all[i].api);
	}
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->lock);
	free(p->all);
	free(p);
}

int ocr_engine_get(struct ocr_engines *p, int64_t timeout_ms,
		   struct ocr_engine **out)
{
	struct timespec until;
	int rc = 0;

	if (timeout_ms < 0)
		timeout_ms = 0;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->lock);
	while (!p->free_list && rc == 0)
		rc = pthread_cond_timedwait(&p->freed, &p->lock, &until);
	if (p->free_list) {
		*out = p->free_list;
		p->free_list = (*out)->next_free;
		rc = 0;
	} else {
		rc = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void ocr_engine_put(struct ocr_engines *p, struct ocr_engine *e)
{
	pthread_mutex_lock(&p->lock);
	e->next_free = p->free_list;
	p->free_list = e;
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->lock);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ocr_engine_recognize(struct ocr_engine *e, const struct ocr_bitmap *bm,
			 int64_t timeout_ms, char **text)
{
	int64_t until = mono_ms() + timeout_ms;
	ETEXT_DESC *monitor;
	char *t = NULL, *copy;
	int rc, late;
	size_t len;

	if (timeout_ms <= 0)
		return -ETIMEDOUT;
	if (timeout_ms > INT32_MAX)
		timeout_ms = INT32_MAX;
	monitor = TessMonitorCreate();
	if (!monitor)
		return -ENOMEM;
	TessMonitorSetDeadlineMSecs(monitor, (int)timeout_ms);
	if (e->omp_threads > 0) {
		/* Tesseract's num_threads(4) clauses override omp_set_num_threads;
		 * with dynamic adjustment on, libgomp caps a region at
		 * nthreads-var. Both are per-thread settings, hence here. */
		omp_set_dynamic(1);
		omp_set_num_threads(e->omp_threads);
	}
	TessBaseAPISetImage(e->api, bm->px, bm->w, bm->h, 1, bm->stride);
	TessBaseAPISetSourceResolution(e->api, bm->dpi > 0 ? bm->dpi : 72);
	rc = TessBaseAPIRecognize(e->api, monitor);
	/* A passed deadline stops recognition early with partial text. */
	late = mono_ms() >= until;
	if (rc == 0 && !late)
		t = TessBaseAPIGetUTF8Text(e->api);
	TessBaseAPIClear(e->api);
	TessMonitorDelete(monitor);
	if (late)
		return -ETIMEDOUT;
	if (!t)
		return -EIO;
	len = strlen(t);
	while (len > 0 && (t[len - 1] == '\n' || t[len - 1] == ' ' ||
			   t[len - 1] == '\f' || t[len - 1] == '\r'))
		len--;
	copy = strndup(t, len);
	TessDeleteText(t);
	if (!copy)
		return -ENOMEM;
	*text = copy;
	return 0;
}
