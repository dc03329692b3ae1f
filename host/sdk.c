/*
 * The handler SDK (include/thaw/handler.h), implemented by the host and
 * resolved by the handler .so from this executable (linked -rdynamic).
 */
#define LOG_PREFIX "sdk: "
#include "host/host.h"
#include "common/jsonesc.h"
#include "common/log.h"
#include "common/mem.h"
#include "host/snapmem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SDK_API __attribute__((visibility("default")))

static const char *fn_name = "";
static const char *fn_dir = ".";
/* Changed only at startup and on restore, when no request runs. */
static char instance_id[17] = "0000000000000000";

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char err_msg[1024];

static __thread const struct thaw_request *cur_req;
static __thread const atomic_bool *cur_cancelled;

/* --- host side ----------------------------------------------------------- */

void host__set_identity(const char *function_name, const char *function_dir)
{
	fn_name = function_name ? function_name : "";
	fn_dir = function_dir && *function_dir ? function_dir : ".";
}

void host__new_instance_id(void)
{
	uint64_t v = 0;
	ssize_t n = getrandom(&v, sizeof(v), GRND_NONBLOCK);
	if (n != (ssize_t)sizeof(v)) {
		/* no entropy yet: still unique enough across restored copies */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		v ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec << 32 ^
		     (uint64_t)getpid();
	}
	snprintf(instance_id, sizeof(instance_id), "%016llx", (unsigned long long)v);
}

void host__error_message(char *dst, size_t size)
{
	pthread_mutex_lock(&err_lock);
	snprintf(dst, size, "%s", err_msg);
	pthread_mutex_unlock(&err_lock);
}

void host__clear_error(void)
{
	pthread_mutex_lock(&err_lock);
	err_msg[0] = '\0';
	pthread_mutex_unlock(&err_lock);
}

void host__set_cancel_flag(const atomic_bool *flag)
{
	cur_cancelled = flag;
}

void host__set_current(const struct thaw_request *req)
{
	cur_req = req;
}

void host__response_reset(struct thaw_response *res)
{
	res->status = 200;
	res->touched = false;
	buf_reset(&res->ctype);
	buf_reset(&res->hstore);
	res->n_headers = 0;
	res->body_len = 0;
	/* don't keep a huge body buffer (or put it in a snapshot) */
	if (res->body_cap > (4u << 20)) {
		free(res->body);
		res->body = NULL;
		res->body_cap = 0;
	}
}

void host__response_fini(struct thaw_response *res)
{
	buf_free(&res->ctype);
	buf_free(&res->hstore);
	free(res->kv);
	free(res->body);
	memset(res, 0, sizeof(*res));
}

uint32_t host__response_finish(struct thaw_response *res)
{
	/* first: the error answer replaces the content type the views below use */
	/* a final status: the daemon refuses a 1xx (it is no answer) */
	if (res->status < 200 || res->status > 599) {
		pr_err("handler set invalid status %d", res->status);
		thaw_respond_error(res, 500, "handler set invalid status %d", res->status);
	}
	uint32_t n = res->n_headers + 1;
	if (n > res->kv_cap) {
		res->kv_cap = n < 16 ? 16 : n;
		free(res->kv);
		res->kv = xmalloc(res->kv_cap * sizeof(*res->kv));
	}
	const char *p = res->hstore.data;
	for (uint32_t i = 0; i < res->n_headers; i++) {
		res->kv[i].name = p;
		p += strlen(p) + 1;
		res->kv[i].value = p;
		p += strlen(p) + 1;
	}
	res->kv[res->n_headers].name = "content-type";
	res->kv[res->n_headers].value = res->ctype.len ? res->ctype.data : "application/json";
	return n;
}

void host__response_encode(struct thaw_response *res, uint64_t id, struct buf *out)
{
	uint32_t n = host__response_finish(res);
	channel_put_response(out, id, (uint32_t)res->status, res->kv, n,
			     res->body ? res->body : "", res->body_len);
}

/* --- response ------------------------------------------------------------ */

SDK_API void thaw_response_status(struct thaw_response *res, int status)
{
	res->status = status;
	res->touched = true;
}

/* RFC 9110 token characters */
static bool is_tchar(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return true;
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Values may hold anything printable and HTAB; CR, LF and other controls
 * could split or smuggle header lines. */
static bool valid_value(const char *v, size_t *len)
{
	const unsigned char *p = (const unsigned char *)v;
	for (; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	*len = (size_t)(p - (const unsigned char *)v);
	return true;
}

static bool host_owned(const char *name)
{
	return !strcasecmp(name, "content-length") || !strcasecmp(name, "transfer-encoding") ||
	       !strcasecmp(name, "connection");
}

SDK_API int thaw_response_header(struct thaw_response *res, const char *name,
				 const char *value)
{
	if (!res || !name || !value)
		return -EINVAL;
	size_t nlen = 0, vlen;
	for (; name[nlen]; nlen++)
		if (!is_tchar((unsigned char)name[nlen]))
			return -EINVAL;
	if (!nlen || !valid_value(value, &vlen) || host_owned(name))
		return -EINVAL;
	res->touched = true;
	if (!strcasecmp(name, "content-type")) {
		buf_reset(&res->ctype);
		buf_append(&res->ctype, value, vlen + 1);
		return 0;
	}
	if (res->n_headers >= HOST_MAX_RESP_HEADERS ||
	    res->hstore.len + nlen + vlen + 2 > HOST_MAX_HEADER_BYTES)
		return -EINVAL;
	buf_append(&res->hstore, name, nlen + 1);
	buf_append(&res->hstore, value, vlen + 1);
	res->n_headers++;
	return 0;
}

SDK_API int thaw_response_write(struct thaw_response *res, const void *data, size_t len)
{
	res->touched = true;
	if (!len)
		return 0;
	if (len > HOST_MAX_BODY - res->body_len)
		return -ENOMEM;
	if (res->body_cap - res->body_len < len) {
		size_t cap = res->body_cap ? res->body_cap : 4096;
		while (cap - res->body_len < len)
			cap *= 2;
		char *p = realloc(res->body, cap);
		if (!p)
			return -ENOMEM;
		res->body = p;
		res->body_cap = cap;
	}
	memcpy(res->body + res->body_len, data, len);
	res->body_len += len;
	return 0;
}

SDK_API int thaw_respond(struct thaw_response *res, int status, const char *content_type,
			 const void *body, size_t len)
{
	thaw_response_status(res, status);
	if (content_type) {
		int r = thaw_response_header(res, "content-type", content_type);
		if (r)
			return r;
	}
	res->body_len = 0;
	return thaw_response_write(res, body, len);
}

static int response_sink(void *ctx, const void *data, size_t len)
{
	return thaw_response_write(ctx, data, len);
}

SDK_API int thaw_response_write_json(struct thaw_response *res, const char *s, size_t len)
{
	return json_escape(s, len, response_sink, res);
}

SDK_API int thaw_respond_error(struct thaw_response *res, int status, const char *fmt, ...)
{
	char small[512], *msg = small;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0, small[0] = '\0';
	if ((size_t)n >= sizeof(small)) {
		msg = malloc((size_t)n + 1);
		if (!msg) {
			msg = small;
			n = sizeof(small) - 1;
		} else {
			va_start(ap, fmt);
			vsnprintf(msg, (size_t)n + 1, fmt, ap);
			va_end(ap);
		}
	}
	int r = thaw_respond(res, status, "application/json", "{\"error\":\"", 10);
	r = r ? r : thaw_response_write_json(res, msg, (size_t)n);
	r = r ? r : thaw_response_write(res, "\"}", 2);
	if (msg != small)
		free(msg);
	return r;
}

/* --- the function -------------------------------------------------------- */

SDK_API const char *thaw_function_name(void)
{
	return fn_name;
}

SDK_API const char *thaw_function_dir(void)
{
	return fn_dir;
}

SDK_API const char *thaw_config(const char *key)
{
	return key ? getenv(key) : NULL;
}

SDK_API const char *thaw_instance_id(void)
{
	return instance_id;
}

SDK_API const char *thaw_request_header(const struct thaw_request *req, const char *name)
{
	if (!req)
		req = cur_req;
	if (!req || !name)
		return NULL;
	for (size_t i = 0; i < req->n_headers; i++)
		if (!strcasecmp(req->headers[i].name, name))
			return req->headers[i].value;
	return NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Only the calling thread's request can be asked about: the flag is its. */
SDK_API int thaw_cancelled(const struct thaw_request *req)
{
	return (!req || req == cur_req) && cur_cancelled && atomic_load(cur_cancelled);
}

/* A request without a deadline (deadline_ms <= 0) has all the time there
 * is; a cancelled one has none left. */
SDK_API int64_t thaw_time_left_ms(const struct thaw_request *req)
{
	if (!req)
		req = cur_req;
	if (thaw_cancelled(req))
		return 0;
	if (!req || req->deadline_ms <= 0)
		return INT64_MAX;
	return req->deadline_ms - now_ms();
}

/* --- files --------------------------------------------------------------- */

SDK_API int thaw_map_file(const char *relpath, struct thaw_map *out)
{
	if (!relpath || !*relpath || !out)
		return -EINVAL;
	out->data = NULL;
	out->len = 0;
	int dirfd = AT_FDCWD;
	if (relpath[0] != '/') {
		dirfd = open(fn_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0)
			return -errno;
	}
	int err = 0;
	int fd = openat(dirfd, relpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		goto close_dir;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		err = -errno;
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		err = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto close_fd;
	}
	if (st.st_size == 0) /* mmap of 0 bytes fails; an empty map is valid */
		goto close_fd;
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		err = -errno;
		goto close_fd;
	}
	out->data = p;
	out->len = (size_t)st.st_size;
close_fd:
	close(fd);
close_dir:
	if (dirfd >= 0)
		close(dirfd);
	return err;
}

SDK_API void thaw_unmap(struct thaw_map *map)
{
	if (!map)
		return;
	if (map->data && map->len)
		munmap((void *)map->data, map->len);
	map->data = NULL;
	map->len = 0;
}

/* --- logging ------------------------------------------------------------- */

static const char *const level_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };

/* One line, one write(): lines of concurrent invocations never interleave.
 * Newlines in the message become spaces so a message stays one line. */
SDK_API void thaw_log(enum thaw_log_level level, const char *fmt, ...)
{
	char line[4096];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	if ((unsigned)level > THAW_LOG_ERROR)
		level = THAW_LOG_ERROR;
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], fn_name);
	if (n < 0)
		return;
	if (cur_req && cur_req->request_id && *cur_req->request_id && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " [%s]", cur_req->request_id);
	if ((size_t)n < sizeof(line) - 2) {
		line[n++] = ':';
		line[n++] = ' ';
	}
	size_t start = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + start, sizeof(line) - start, fmt, ap);
	va_end(ap);
	size_t len = start + (m > 0 ? (size_t)m : 0);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	for (size_t i = start; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len++] = '\n';
	log_raw_line(line, len);
}

SDK_API void thaw_set_error(const char *fmt, ...)
{
	char msg[sizeof(err_msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&err_lock);
	memcpy(err_msg, msg, sizeof(err_msg));
	pthread_mutex_unlock(&err_lock);
}

void *thaw_state_alloc(size_t len)
{
	return host__snapmem_state_alloc(len);
}
