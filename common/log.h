/*
 * Logging at the failure site. Every line carries level, file:line and the
 * per-file LOG_PREFIX (define it before including this header). Lines go to
 * stderr; log_set_level() filters. pr_perror() appends strerror(errno).
 */
#ifndef THAW_LOG_H
#define THAW_LOG_H

#include <errno.h>
#include <string.h>

#ifndef LOG_PREFIX
#define LOG_PREFIX ""
#endif

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
void log_printf(enum log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Writes one already formatted line (a JSON request log line) as it is. */
void log_raw_line(const char *line, size_t len);

#define pr_debug(fmt, ...) log_printf(LOG_DEBUG, __FILE__, __LINE__, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) log_printf(LOG_INFO, __FILE__, __LINE__, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...) log_printf(LOG_WARN, __FILE__, __LINE__, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_err(fmt, ...) log_printf(LOG_ERROR, __FILE__, __LINE__, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_perror(fmt, ...)                                                     \
	log_printf(LOG_ERROR, __FILE__, __LINE__, LOG_PREFIX fmt ": %s", ##__VA_ARGS__, \
		   strerror(errno))

#endif
