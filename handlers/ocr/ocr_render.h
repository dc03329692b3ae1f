/*
 * ocr_render: turns downloaded bytes into 8-bit grey bitmaps with MuPDF.
 *
 * One struct ocr_render per process (made in init, so a snapshot keeps
 * MuPDF's fonts and tables warm); every document gets its own cloned
 * fz_context, so documents may be opened on several threads at once.
 * Every MuPDF call is wrapped in fz_try: a malformed file gives -EINVAL and
 * a message, never a longjmp out of this module.
 */
#ifndef OCR_RENDER_H
#define OCR_RENDER_H

#include <stddef.h>

struct ocr_render;
struct ocr_doc;

enum ocr_kind { OCR_KIND_IMAGE, OCR_KIND_PDF };

/* A grey bitmap, one byte a pixel, 0 black .. 255 white. px is owned by the
 * bitmap and freed by ocr_bitmap_fini(). */
struct ocr_bitmap {
	unsigned char *px;
	int w, h, stride;
	int dpi; /* resolution the pixels stand for */
};
void ocr_bitmap_fini(struct ocr_bitmap *bm);

/* Makes the process-wide MuPDF context (with pthread locks). max_pixels
 * bounds one rendered page or decoded image (larger pages are scaled down,
 * larger images refused). Returns 0, -ENOMEM. */
int ocr_render_new(size_t max_pixels, struct ocr_render **out);
void ocr_render_free(struct ocr_render *r);

/* 1 when data looks like a PDF: "%PDF-" within its first 1024 bytes (the
 * spec allows junk before the header). */
int ocr_sniff_pdf(const unsigned char *data, size_t len);

/* Opens data (borrowed: it must outlive the doc) as a PDF or as an image.
 * Returns 0, -EINVAL (not a PDF / not decodable; err says why), -ENOMEM. */
int ocr_doc_open(struct ocr_render *r, const unsigned char *data, size_t len,
		 enum ocr_kind kind, struct ocr_doc **out, char *err, size_t errlen);
/* Number of pages (1 for an image). */
int ocr_doc_pages(const struct ocr_doc *d);
/* Renders page i (0-based) at dpi (PDF; an image keeps its own pixels) on
 * white. Returns 0 and fills *out (the caller finis it), or -EINVAL with
 * err set. */
int ocr_doc_render(struct ocr_doc *d, int i, int dpi, struct ocr_bitmap *out,
		   char *err, size_t errlen);
void ocr_doc_free(struct ocr_doc *d);

#endif
