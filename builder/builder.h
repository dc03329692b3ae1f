/*
 * `thaw build [DIR] [-o OUT] [--json]`: a function folder -> an OCI image.
 *
 * From DIR (default "."), holding fc.yaml: load and check fc.yaml
 * (config_load), compile the handler when `handler` names a .c file or a
 * folder of sources (builder/compile.h), or take the .so as it is; then
 * write an OCI image layout to OUT (default DIR/.thaw/image) with two
 * uncompressed tar layers, model (the modelFiles) below code (the handler
 * .so, fc.yaml and the folder's other files, without dotfiles and build
 * outputs), all under /function in the image. The build is reproducible:
 * the same inputs give the same manifest digest (see docs/build.md).
 */
#ifndef THAW_BUILDER_H
#define THAW_BUILDER_H

#include "common/image.h"
#include "common/oci.h"

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on what a folder may hold, so a mistaken DIR (/, $HOME) fails fast. */
#define BUILDER_MAX_FILES 100000
#define BUILDER_MAX_DEPTH 32

struct builder_options {
	const char *dir; /* function folder holding fc.yaml; NULL: "." */
	const char *out; /* image folder; NULL: <dir>/.thaw/image */
	FILE *diag;      /* compiler output as it comes; NULL: stderr */
	bool no_cache;   /* ignore DIR/.thaw/cache: read and hash every file */
};

struct builder_layer {
	struct image_layer img; /* digest, size, media type, kind */
	size_t n_files;
	uint64_t content_bytes; /* the files' bytes, before tar headers */
	bool reused;            /* files unchanged since a build whose blob is
				   still in the image: not read again */
};

struct builder_result {
	char *name;              /* the function's name; owned */
	char *image;             /* absolute path of the image folder; owned */
	char *handler;           /* the handler's path inside the image; owned */
	int compiled;            /* the handler was compiled from source */
	struct oci_desc manifest;
	struct oci_desc config;
	struct builder_layer layers[2]; /* [model,] code */
	size_t n_layers;
	double seconds;          /* wall time of the build */
};

/* Builds the image. Returns 0 and fills res (free it with
 * builder_result_fini), or -errno with one line in err: fc.yaml problems
 * as config_load reports them (file:line: field: ...), missing handler or
 * model files, compiler failures (its output already written to diag), I/O
 * errors. On error res holds nothing to free. */
int builder_build(const struct builder_options *o, struct builder_result *res, char *err,
		  size_t errlen);

void builder_result_fini(struct builder_result *res);

/* The CLI: argv[0] is "build". Prints the manifest digest and sizes (or,
 * with --json, {"digest","manifest","config","layers","image",...}) to
 * stdout, errors to stderr. Returns the exit code: 0 built, 1 build error,
 * 2 usage. */
int builder_main(int argc, char **argv);

#endif
