/*
 * The HTTP front of thaw-instance: `thaw-instance --http HOST:PORT
 * [--function-dir DIR] [--name NAME] [--timeout S] [--max-body BYTES]
 * HANDLER.so` serves the handler as a plain HTTP/1.1 debug server on a
 * loopback address, in the foreground, without a daemon, a channel or a
 * snapshot (what `thaw dev` runs; docs/dev.md).
 *
 * It is a debug server, not a gateway: one connection at a time, a blocking
 * accept/read/invoke/write loop on the main thread (so a debugger sees the
 * handler on a plain stack). An idle keep-alive connection gives way when
 * another client connects. Bounds: 8 KiB of headers (431), --max-body
 * (413), a request must arrive whole within 30 s of its first byte (408), a
 * write must progress within 10 s.
 */
#ifndef THAW_HTTP_FRONT_H
#define THAW_HTTP_FRONT_H

#include <stdint.h>

struct http_front_options {
	char listen_host[64]; /* numeric loopback address */
	uint16_t port;
	const char *handler;      /* the .so, an absolute path (owned: freed at exit) */
	const char *function_dir; /* NULL: $THAW_FUNCTION_DIR, else "." */
	const char *name;         /* NULL: $THAW_FUNCTION_NAME, else the .so's base name */
	uint32_t timeout_s;       /* the deadline handed to the handler per request */
	uint64_t max_body;        /* request bodies past it get 413 */
};

/* Reads thaw-instance's command line. Returns 0 when there is no --http
 * (the daemon's channel mode: argv is ignored), 1 with o filled for --http,
 * or -EINVAL after printing the usage error to stderr. */
int http_front_parse_args(int argc, char **argv, struct http_front_options *o);

/* Listens on o's address and serves requests with host__invoke() until
 * SIGTERM or SIGINT. Returns 0 then, or -errno when it cannot listen (said
 * on stderr in one line). The handler has been loaded and initialised. */
int http_front_run(const struct http_front_options *o);

#endif
