/*
 * Internals of thaw-instance shared by the host loop (host.c) and the SDK it
 * exports to handlers (sdk.c). Nothing here is visible to handlers.
 */
#ifndef THAW_HOST_H
#define THAW_HOST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/channel.h"
#include "thaw/handler.h"

/* Caps on what a handler may put in one response; the channel frame must
 * stay under CHANNEL_MAX_PAYLOAD. */
#define HOST_MAX_RESP_HEADERS 256
#define HOST_MAX_HEADER_BYTES (64u << 10)
#define HOST_MAX_BODY (CHANNEL_MAX_PAYLOAD - (1u << 20))

/* The response builder behind the SDK's opaque struct. One per worker,
 * reused across requests: buffers keep their capacity (no allocation per
 * request once warm), host__response_reset() empties it. */
struct thaw_response {
	int status;
	bool touched;             /* the handler set anything at all */
	struct buf ctype;         /* content type, NUL-terminated; len 0 = unset */
	struct buf hstore;        /* "name\0value\0" pairs of the other headers */
	uint32_t n_headers;
	struct channel_kv *kv;    /* built from hstore when sending */
	uint32_t kv_cap;
	char *body;
	size_t body_len, body_cap;
};

void host__response_reset(struct thaw_response *res);
void host__response_fini(struct thaw_response *res);
/* Applies the defaults (status 200, content type application/json; an
 * out-of-range status becomes a 500 error answer) and lays the headers out
 * in res->kv, content-type last. Returns how many; the views live until the
 * next reset. */
uint32_t host__response_finish(struct thaw_response *res);
/* Appends the CH_RESPONSE frame for res to out, after host__response_finish. */
void host__response_encode(struct thaw_response *res, uint64_t id, struct buf *out);

/* The handler's view of a decoded CH_REQUEST: *hdrs (grown as needed, *cap
 * entries, the caller's to free) and out point into cr's frame. */
void host__request_view(const struct channel_request *cr, struct thaw_header **hdrs,
			uint32_t *cap, struct thaw_request *out);
/* Runs the handler's invoke() for req into res (reset first); a failure
 * without an answer becomes a 500 error answer. */
void host__invoke(const struct thaw_request *req, struct thaw_response *res);

/* Loads the handler .so at handler_path and runs its init (a failure is
 * reported, on the channel unless without_channel, and exits). */
void host__start(const char *handler_path, bool without_channel);
/* Serves CH_REQUEST frames on CHANNEL_FD with THAW_INSTANCE_CONCURRENCY
 * threads, after CH_READY. Does not return. */
void host__serve_channel(void) __attribute__((noreturn));
/* Runs the handler's shutdown and flushes. */
void host__stop(void);
/* Process-wide identity, set once at startup (and on restore for the id). */
void host__set_identity(const char *function_name, const char *function_dir);
/* Takes a fresh random instance id (16 hex digits). */
void host__new_instance_id(void);
/* The message of the last thaw_set_error(), "" if none; copied into dst. */
void host__error_message(char *dst, size_t size);
void host__clear_error(void);

/* The request the calling thread is serving (NULL outside invoke). */
void host__set_current(const struct thaw_request *req);
/* The flag that says the calling thread's request was cancelled (its
 * client went away), or NULL: thaw_cancelled() reads it. */
void host__set_cancel_flag(const atomic_bool *flag);

#endif
