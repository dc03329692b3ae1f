/*
 * ocr_render: MuPDF side of the OCR handler; see ocr_render.h.
 *
 * MuPDF reports errors by longjmp (fz_throw); every call into it here sits
 * inside fz_try, and nothing but a return code and a message leaves this
 * file. Values changed inside fz_try and read in fz_always/fz_catch are
 * marked with fz_var.
 */
#include "handlers/ocr/ocr_render.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mupdf/fitz.h>
#include <mupdf/pdf.h>

/* Store for fonts, images and glyphs shared by every document. */
#define RENDER_STORE_BYTES (64u << 20)

struct ocr_render {
	fz_context *ctx; /* base context; only cloned after init */
	fz_locks_context locks;
	pthread_mutex_t mutex[FZ_LOCK_MAX];
	size_t max_pixels;
};

struct ocr_doc {
	struct ocr_render *r;
	fz_context *ctx; /* clone owned by this doc */
	enum ocr_kind kind;
	fz_document *doc; /* OCR_KIND_PDF */
	fz_image *img;    /* OCR_KIND_IMAGE */
	int pages;
};

static void lock_fn(void *user, int lock)
{
	pthread_mutex_lock(&((pthread_mutex_t *)user)[lock]);
}

static void unlock_fn(void *user, int lock)
{
	pthread_mutex_unlock(&((pthread_mutex_t *)user)[lock]);
}

/* MuPDF prints every warning and thrown error to stderr by default; the
 * handler reports what matters through the message of the error it catches. */
static void quiet_fn(void *user, const char *message)
{
	(void)user;
	(void)message;
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, msg ? msg : "unknown error");
}

void ocr_bitmap_fini(struct ocr_bitmap *bm)
{
	free(bm->px);
	memset(bm, 0, sizeof(*bm));
}

int ocr_render_new(size_t max_pixels, struct ocr_render **out)
{
	struct ocr_render *r = calloc(1, sizeof(*r));
	int i;

	if (!r)
		return -ENOMEM;
	for (i = 0; i < FZ_LOCK_MAX; i++)
		pthread_mutex_init(&r->mutex[i], NULL);
	r->locks.user = r->mutex;
	r->locks.lock = lock_fn;
	r->locks.unlock = unlock_fn;
	r->max_pixels = max_pixels;
	r->ctx = fz_new_context(NULL, &r->locks, RENDER_STORE_BYTES);
	if (!r->ctx)
		goto fail_mutex;
	fz_set_warning_callback(r->ctx, quiet_fn, NULL);
	fz_set_error_callback(r->ctx, quiet_fn, NULL);
	*out = r;
	return 0;

fail_mutex:
	for (i = 0; i < FZ_LOCK_MAX; i++)
		pthread_mutex_destroy(&r->mutex[i]);
	free(r);
	return -ENOMEM;
}

void ocr_render_free(struct ocr_render *r)
{
	int i;

	if (!r)
		return;
	fz_drop_context(r->ctx);
	for (i = 0; i < FZ_LOCK_MAX; i++)
		pthread_mutex_destroy(&r->mutex[i]);
	free(r);
}

int ocr_sniff_pdf(const unsigned char *data, size_t len)
{
	size_t n = len < 1024 ? len : 1024;

	return data && n >= 5 && memmem(data, n, "%PDF-", 5) != NULL;
}

int ocr_doc_open(struct ocr_render *r, const unsigned char *data, size_t len,
		 enum ocr_kind kind, struct ocr_doc **out, char *err, size_t errlen)
{
	struct ocr_doc *d = calloc(1, sizeof(*d));
	fz_context *ctx;
	fz_stream *stm = NULL;
	fz_buffer *buf = NULL;

	if (!d)
		return -ENOMEM;
	d->r = r;
	d->kind = kind;
	d->ctx = ctx = fz_clone_context(r->ctx);
	if (!ctx) {
		free(d);
		return -ENOMEM;
	}
	fz_set_warning_callback(ctx, quiet_fn, NULL);
	fz_set_error_callback(ctx, quiet_fn, NULL);

	fz_var(stm);
	fz_var(buf);
	fz_try(ctx) {
		if (kind == OCR_KIND_PDF) {
			stm = fz_open_memory(ctx, data, len);
			d->doc = (fz_document *)pdf_open_document_with_stream(ctx, stm);
			if (fz_needs_password(ctx, d->doc) &&
			    !fz_authenticate_password(ctx, d->doc, ""))
				fz_throw(ctx, FZ_ERROR_GENERIC,
					 "PDF is encrypted and needs a password");
			d->pages = fz_count_pages(ctx, d->doc);
		} else {
			int w, h;

			buf = fz_new_buffer_from_shared_data(ctx, data, len);
			d->img = fz_new_image_from_buffer(ctx, buf);
			w = d->img->w;
			h = d->img->h;
			if (w <= 0 || h <= 0 ||
			    (double)w * (double)h > (double)r->max_pixels)
				fz_throw(ctx, FZ_ERROR_GENERIC,
					 "image is %dx%d pixels, over the limit of %zu",
					 w, h, r->max_pixels);
			d->pages = 1;
		}
	}
	fz_always(ctx) {
		fz_drop_stream(ctx, stm);
		fz_drop_buffer(ctx, buf);
	}
	fz_catch(ctx) {
		set_err(err, errlen, "%s", fz_caught_message(ctx));
		ocr_doc_free(d);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

int ocr_doc_pages(const struct ocr_doc *d)
{
	return d->pages;
}

/* Where page i lands at dpi, scaled down so that it fits max_pixels. */
static fz_matrix page_ctm(fz_rect bounds, int dpi, size_t max_pixels)
{
	float s = dpi / 72.0f;
	double w = (bounds.x1 - bounds.x0) * s, h = (bounds.y1 - bounds.y0) * s;

	if (w * h > (double)max_pixels && w > 0 && h > 0)
		s *= (float)sqrt((double)max_pixels / (w * h)) * 0.999f;
	return fz_scale(s, s);
}

/* Copies a grey pixmap without alpha into a malloc'd bitmap. */
static int copy_out(fz_context *ctx, fz_pixmap *pix, int dpi,
		    struct ocr_bitmap *out)
{
	int y, w = fz_pixmap_width(ctx, pix), h = fz_pixmap_height(ctx, pix);
	ptrdiff_t stride = fz_pixmap_stride(ctx, pix);
	unsigned char *src = fz_pixmap_samples(ctx, pix);

	out->px = malloc((size_t)w * (size_t)h);
	if (!out->px)
		return -ENOMEM;
	for (y = 0; y < h; y++)
		memcpy(out->px + (size_t)y * w, src + y * stride, (size_t)w);
	out->w = w;
	out->h = h;
	out->stride = w;
	out->dpi = dpi;
	return 0;
}

int ocr_doc_render(struct ocr_doc *d, int i, int dpi, struct ocr_bitmap *out,
		   char *err, size_t errlen)
{
	fz_context *ctx = d->ctx;
	fz_page *page = NULL;
	fz_device *dev = NULL;
	fz_pixmap *pix = NULL;
	int rc = 0, out_dpi = dpi;

	memset(out, 0, sizeof(*out));
	if (i < 0 || i >= d->pages)
		return -EINVAL;
	fz_var(page);
	fz_var(dev);
	fz_var(pix);
	fz_var(out_dpi);
	fz_try(ctx) {
		fz_matrix ctm;
		fz_irect box;

		if (d->kind == OCR_KIND_PDF) {
			fz_rect bounds;

			page = fz_load_page(ctx, d->doc, i);
			bounds = fz_bound_page(ctx, page);
			ctm = page_ctm(bounds, dpi, d->r->max_pixels);
			out_dpi = (int)lrintf(ctm.a * 72.0f);
			box = fz_round_rect(fz_transform_rect(bounds, ctm));
		} else {
			int xres, yres;

			fz_image_resolution(d->img, &xres, &yres);
			out_dpi = xres > 0 ? xres : 72;
			ctm = fz_scale((float)d->img->w, (float)d->img->h);
			box = fz_make_irect(0, 0, d->img->w, d->img->h);
		}
		if (box.x1 <= box.x0 || box.y1 <= box.y0)
			fz_throw(ctx, FZ_ERROR_GENERIC, "page %d is empty", i + 1);
		pix = fz_new_pixmap_with_bbox(ctx, fz_device_gray(ctx), box, NULL, 0);
		fz_clear_pixmap_with_value(ctx, pix, 255);
		dev = fz_new_draw_device(ctx, fz_identity, pix);
		if (page)
			fz_run_page(ctx, page, dev, ctm, NULL);
		else
			fz_fill_image(ctx, dev, d->img, ctm, 1.0f,
				      fz_default_color_params);
		fz_close_device(ctx, dev);
	}
	fz_always(ctx) {
		fz_drop_device(ctx, dev);
		fz_drop_page(ctx, page);
	}
	fz_catch(ctx) {
		fz_drop_pixmap(ctx, pix);
		set_err(err, errlen, "%s", fz_caught_message(ctx));
		return -EINVAL;
	}
	rc = copy_out(ctx, pix, out_dpi, out);
	fz_drop_pixmap(ctx, pix);
	return rc;
}

void ocr_doc_free(struct ocr_doc *d)
{
	if (!d)
		return;
	fz_drop_image(d->ctx, d->img);
	fz_drop_document(d->ctx, d->doc);
	fz_drop_context(d->ctx);
	free(d);
}
