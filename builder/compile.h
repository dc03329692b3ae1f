/*
 * Compiling a handler from source: `handler:` in fc.yaml names a .c file or
 * a folder of them; the result is one shared object.
 *
 *   gcc -std=gnu11 -shared -fPIC -O2 -I<sdk> -I<source folder>
 *       -ffile-prefix-map=<function folder>=. -o OUT SOURCES... -lm
 *
 * <sdk> is the folder holding thaw/handler.h: $THAW_SDK_INCLUDE, else
 * ../handlers next to the running binary (build/thaw -> handlers/), else the
 * first handlers/ found walking up from the binary. The compiler is $CC
 * (a program name or path, default gcc), run through the one spawn wrapper
 * (proc/subproc.h). The prefix map keeps the folder's path out of the
 * object, so the same sources give the same bytes wherever they sit.
 */
#ifndef THAW_BUILDER_COMPILE_H
#define THAW_BUILDER_COMPILE_H

#include <stdio.h>
#include <stddef.h>

/* Whether path (relative to fn_dir or absolute) is something to compile (a
 * .c file or a folder) rather than a built .so. */
int compile_is_source(const char *fn_dir, const char *handler);

/* Finds the folder holding thaw/handler.h (see above). Returns a new string
 * the caller frees, or NULL. */
char *compile_sdk_include(void);

/* Compiles handler (a .c file or a folder of .c files, relative to fn_dir
 * unless absolute) into out_so. The compiler's output, if any, goes to diag
 * as it was printed. Returns 0, -ENOENT when there is no compiler, no SDK or
 * no source, -EIO when the compiler failed; err says which in one line. */
int compile_handler(const char *fn_dir, const char *handler, const char *out_so, FILE *diag,
		    char *err, size_t errlen);

#endif
