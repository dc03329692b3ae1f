#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;

void log_set_level(enum log_level level)
{
	min_level = level;
}

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_printf(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	if (level < min_level)
		return;
	char msg[2048];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	const char *base = strrchr(file, '/');
	int n = snprintf(msg, sizeof(msg), "%02d:%02d:%02d.%03ld %s %s:%d: ", tm.tm_hour,
			 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level],
			 base ? base + 1 : file, line);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(msg))
		n += vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg) - 1)
		n = sizeof(msg) - 2;
	msg[n++] = '\n';
	log_raw_line(msg, (size_t)n);
}

void log_raw_line(const char *line, size_t len)
{
	/* one write per line so lines of several threads never interleave */
	ssize_t r = write(STDERR_FILENO, line, len);
	(void)r;
}
