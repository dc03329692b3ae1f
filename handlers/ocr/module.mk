# OCR handler (handlers/ocr): MuPDF + Tesseract + libcurl + cJSON.
#
# Debian 12's libmupdf-dev ships only static archives (/usr/lib/libmupdf.a,
# libmupdf-third.a; no libmupdf.so). Their objects use only PC-relative
# relocations to local symbols, so they do link into a shared object; what
# the archive does not bring is its dependencies (mupdf.pc Libs.private:
# mujs, gumbo, openjp2, jbig2dec, jpeg, harfbuzz, freetype, z), which need
# libmujs-dev libgumbo-dev libopenjp2-7-dev libjbig2dec0-dev libjpeg-dev
# libharfbuzz-dev installed. --exclude-libs,ALL keeps MuPDF's thousands of
# symbols out of ocr.so's dynamic table, so they clash with nothing else
# the host loads. The result is ~45 MB (MuPDF's built-in fonts).
OCR_MUPDF_LIBS := -Wl,--exclude-libs,ALL -lmupdf -lmupdf-third -lmujs -lgumbo \
	-lopenjp2 -ljbig2dec -ljpeg -lharfbuzz -lfreetype -lz
# -lgomp: the handler caps the OpenMP threads Tesseract starts (omp_*).
HANDLER_LIBS_ocr := $(OCR_MUPDF_LIBS) -ltesseract -lgomp -lcurl -lcjson -lpthread -lm

OCR_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard handlers/ocr/*.c))
# Keep the objects make would treat as intermediate and delete.
.SECONDARY: $(OCR_OBJ)

# The core without the thaw glue (ocr.c), for tests that run without a host.
OCR_CORE_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(filter-out handlers/ocr/ocr.c,$(wildcard handlers/ocr/*.c)))

# The unit test links the core objects, not libthaw.a.
$(BUILD)/tests/unit/test_ocr: tests/unit/test_ocr.c $(OCR_CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(OCR_CORE_OBJ) $(TEST_LIBS) $(HANDLER_LIBS_ocr)
