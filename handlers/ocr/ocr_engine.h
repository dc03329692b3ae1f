/*
 * ocr_engine: a fixed pool of Tesseract engines (TessBaseAPI), all made and
 * loaded with the language model up front, so a snapshot taken after init
 * holds them warm. A TessBaseAPI is not thread-safe; each is lent to one
 * thread at a time by ocr_engine_get()/ocr_engine_put().
 */
#ifndef OCR_ENGINE_H
#define OCR_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "handlers/ocr/ocr_render.h"

struct ocr_engines;
struct ocr_engine;

/* Default model folder of Debian 12's tesseract-ocr-eng. */
#define OCR_TESSDATA_DEFAULT "/usr/share/tesseract-ocr/5/tessdata"

/* Makes n engines for lang from tessdata (NULL: the default above).
 * omp_threads > 0 caps the OpenMP threads Tesseract's LSTM starts for each
 * parallel region (set on the calling thread before every recognition);
 * 0 leaves OpenMP's defaults. Tesseract asks for 4 threads per LSTM step,
 * which on a shared machine runs several times slower than 1.
 * Returns 0, -ENOENT (model not loadable; err says why), -ENOMEM. */
int ocr_engines_new(size_t n, const char *tessdata, const char *lang,
		    int omp_threads, struct ocr_engines **out, char *err,
		    size_t errlen);
void ocr_engines_free(struct ocr_engines *p);

/* Takes a free engine, waiting at most timeout_ms. Returns 0 or
 * -ETIMEDOUT. */
int ocr_engine_get(struct ocr_engines *p, int64_t timeout_ms,
		   struct ocr_engine **out);
void ocr_engine_put(struct ocr_engines *p, struct ocr_engine *e);

/* Recognises the text of bm within timeout_ms (Tesseract's monitor stops
 * it). *text is malloc'd, NUL-terminated, trailing whitespace removed; the
 * caller frees it. Returns 0, -ETIMEDOUT, -EIO, -ENOMEM. */
int ocr_engine_recognize(struct ocr_engine *e, const struct ocr_bitmap *bm,
			 int64_t timeout_ms, char **text);

#endif
