/*
 * Allocation wrappers. Policy: out of memory is fatal. The daemon cannot
 * serve anything sensible without memory and every size it allocates is
 * bounded by a configured limit, so the wrappers log and abort instead of
 * making every caller unwind. Input-sized allocations are checked against
 * their limits before they get here.
 */
#ifndef THAW_MEM_H
#define THAW_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
