/*
 * thaw handler SDK: the one header a handler author writes against.
 *
 * A handler is a shared object that defines its descriptor with
 * THAW_HANDLER(...). The host process (thaw-instance) loads it, calls
 * init() once, reports READY to the daemon, and then calls invoke() for
 * every request. The warmed process may be checkpointed after init() and
 * restored many times; each restored copy runs on_restore() before its
 * first request (re-seed RNGs, take new ids). shutdown() runs on a graceful
 * stop only; a killed instance never gets it.
 *
 * before_checkpoint() runs once in the warmed instance right before the
 * daemon checkpoints it (after init() and the fc.yaml warm-up request, with
 * no request running): drop what should not be in the snapshot, typically
 * device memory that can be uploaded again from files in on_restore() (a
 * GPU's parked memory is otherwise copied into the image page by page and
 * back on every restore). Every restored copy starts from the state it
 * left. A failure (< 0, say why with thaw_set_error) means no snapshot:
 * the instance exits and the function cold-starts from then on. If the
 * dump itself fails, the same instance serves on: a handler that released
 * something must take it back on first use (docs/handler-sdk.md).
 *
 * Contract:
 *  - Hooks return 0 on success or a negative errno value. A failing init()
 *    should say why with thaw_set_error(); the message reaches the daemon's
 *    log and /readyz.
 *  - invoke() may run on several threads at once when the function's
 *    instanceConcurrency is above 1.
 *  - Everything expensive (loading weights, building tables, warm-up runs)
 *    belongs in init(), so that snapshots keep it.
 *  - The SDK functions below are provided by the host; handlers link
 *    against nothing of thaw's.
 *
 * ABI: the descriptor is versioned; hooks may be NULL except invoke. Fields
 * after shutdown were added later: the host reads them only when the
 * descriptor's size covers them, so handlers built before still load.
 */
#ifndef THAW_HANDLER_H
#define THAW_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define THAW_ABI_VERSION 1

struct thaw_header {
	const char *name; /* NUL-terminated, as the client sent it */
	const char *value;
};

/* A request as the handler sees it. Every pointer is valid until invoke()
 * returns; strings are NUL-terminated; the body is also NUL-terminated (the
 * terminator is not counted in body_len) so text bodies can be parsed in
 * place. */
struct thaw_request {
	const char *method;     /* "GET", "POST", ... */
	const char *path;       /* path below the function: "/" for /fn or /fn/ */
	const char *query;      /* raw query string without '?', "" if none */
	const struct thaw_header *headers;
	size_t n_headers;
	const char *body;
	size_t body_len;
	const char *request_id; /* x-fc-request-id */
	int64_t deadline_ms;    /* CLOCK_REALTIME ms past which the client is gone */
};

/* Opaque response builder owned by the host. Status defaults to 200 and the
 * content type to application/json. */
struct thaw_response;

/* --- tensors ---------------------------------------------------------------
 * A model handler may implement infer() beside invoke(): the host converts
 * every wire protocol it knows (KServe v2 REST today) into named input
 * tensors and the answer back, so the handler parses no protocol. The
 * datatypes are KServe's. Data is one contiguous little-endian row-major
 * buffer; BYTES elements are each a 4-byte little-endian length followed by
 * that many bytes (KServe's binary layout), one after another. */
enum thaw_dtype {
	THAW_DT_INVALID = 0,
	THAW_BOOL, /* one byte, 0 or 1 */
	THAW_UINT8, THAW_UINT16, THAW_UINT32, THAW_UINT64,
	THAW_INT8, THAW_INT16, THAW_INT32, THAW_INT64,
	THAW_FP16, THAW_FP32, THAW_FP64,
	THAW_BYTES,
};
#define THAW_MAX_DIMS 8

/* An input the host made, valid until infer() returns. The host checked
 * that len matches the shape (product x element size; BYTES: the lengths
 * walk exactly to len) and that data is aligned for the datatype. */
struct thaw_tensor {
	const char *name;
	enum thaw_dtype dtype;
	int ndim;
	int64_t shape[THAW_MAX_DIMS];
	const void *data;
	size_t len; /* bytes */
};

/* Declared metadata of one input or output; -1 in shape = any size; ndim
 * -1 = any shape at all (metadata shows [-1]). */
struct thaw_tensor_spec {
	const char *name;
	enum thaw_dtype dtype;
	int ndim;
	int64_t shape[THAW_MAX_DIMS];
};

/* A model's metadata, declared once in init() with thaw_declare_model()
 * (copied by the host). name NULL = the function's name. */
struct thaw_model {
	const char *name;
	const char *platform; /* e.g. "thaw_native" */
	const char *version;  /* e.g. "1"; the only version served */
	const struct thaw_tensor_spec *inputs;
	size_t n_inputs;
	const struct thaw_tensor_spec *outputs;
	size_t n_outputs;
};

/* What infer() gets: the inputs in the client's order, the names of the
 * outputs asked for (n_outputs 0 = all of them; the host drops outputs not
 * asked for, the handler may skip computing them) and the request they came
 * in (deadline, cancellation, headers). */
struct thaw_infer_request {
	const struct thaw_request *req;
	const struct thaw_tensor *inputs;
	size_t n_inputs;
	const char *const *outputs;
	size_t n_outputs;
};

/* Opaque: the outputs infer() returns, built with thaw_output_new(). */
struct thaw_outputs;

struct thaw_handler {
	uint32_t abi_version; /* THAW_ABI_VERSION */
	uint32_t size;        /* sizeof(struct thaw_handler) */
	const char *name;
	int (*init)(void);
	int (*invoke)(const struct thaw_request *req, struct thaw_response *res);
	int (*on_restore)(void);
	void (*shutdown)(void);
	int (*before_checkpoint)(void); /* added in size, not version: may be absent */
	/* Tensors in, tensors out (see struct thaw_infer_request). Returns 0,
	 * or -errno after thaw_infer_error() (without it: 500). May run on
	 * several threads at once, as invoke(). Added in size: may be absent. */
	int (*infer)(const struct thaw_infer_request *ir, struct thaw_outputs *out);
};

/* Define the handler's descriptor; the host looks up this symbol. */
#define THAW_HANDLER(...)                                                      \
	__attribute__((visibility("default"))) const struct thaw_handler         \
		thaw_handler_v1 = { .abi_version = THAW_ABI_VERSION,             \
				    .size = sizeof(struct thaw_handler),          \
				    __VA_ARGS__ }

/* --- response ------------------------------------------------------------ */

void thaw_response_status(struct thaw_response *res, int status);
/* Adds a header (copied). Returns 0 or -EINVAL for names or values holding
 * CR, LF or NUL, or names the host sets itself (content-length,
 * transfer-encoding, connection). */
int thaw_response_header(struct thaw_response *res, const char *name,
			 const char *value);
/* Appends to the body (copied). Returns 0 or -ENOMEM. */
int thaw_response_write(struct thaw_response *res, const void *data, size_t len);
/* Appends s[0..len) to the body as the inside of a JSON string (no quotes):
 * quotes, backslashes and control characters escaped, bytes that are not
 * well-formed UTF-8 as \u00XX, so the body stays valid JSON for any input.
 * Returns 0 or -ENOMEM. */
int thaw_response_write_json(struct thaw_response *res, const char *s, size_t len);
/* Convenience: status, content type and whole body at once. */
int thaw_respond(struct thaw_response *res, int status, const char *content_type,
		 const void *body, size_t len);
/* Error in the house format: {"error": "<message>"} with the given status. */
int thaw_respond_error(struct thaw_response *res, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* --- tensors (infer) --------------------------------------------------- */

/* Declares the model's metadata; call once from init(). Everything is
 * copied. Returns 0 or -EINVAL (bad datatype, more than THAW_MAX_DIMS). */
int thaw_declare_model(const struct thaw_model *model);
/* Marks the declared model's input `name` optional: infer() gets it when
 * the client sends it and goes without otherwise (the others stay
 * required). Call after thaw_declare_model(), which clears the marks.
 * Returns 0 or -ENOENT (no such input declared). */
int thaw_model_input_optional(const char *name);
/* Adds an output of len bytes and returns its buffer (zeroed, 16-byte
 * aligned, owned by the host) for the handler to fill, or NULL when out of
 * memory or when len does not fit the shape (non-BYTES). Data must be
 * little-endian, in the layout of struct thaw_tensor. */
void *thaw_output_new(struct thaw_outputs *out, const char *name, enum thaw_dtype dtype,
		      int ndim, const int64_t *shape, size_t len);
/* Fails the inference: status 400 (bad input: name the input in the
 * message), 404, 500, 503 or 504, mapped by the host onto each protocol.
 * Returns -EINVAL for 400, -ENOENT 404, -EAGAIN 503, -ETIMEDOUT 504,
 * else -EIO, for infer() to return. */
int thaw_infer_error(struct thaw_outputs *out, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* KServe's name of a datatype ("FP32"), "" for none; and back (THAW_DT_INVALID). */
const char *thaw_dtype_name(enum thaw_dtype dtype);
enum thaw_dtype thaw_dtype_parse(const char *name, size_t len);
/* Bytes of one element, 0 for BYTES and invalid. */
size_t thaw_dtype_size(enum thaw_dtype dtype);

/* --- the function -------------------------------------------------------- */

const char *thaw_function_name(void);
/* Folder holding the function's files (fc.yaml, model files, ...). */
const char *thaw_function_dir(void);
/* A value of fc.yaml's environmentVariables (also in the process
 * environment), or NULL. */
const char *thaw_config(const char *key);
/* Instance id, 16 hex digits; a restored copy gets a fresh one. */
const char *thaw_instance_id(void);
/* Value of a request header, matched case-insensitively, or NULL. */
const char *thaw_request_header(const struct thaw_request *req, const char *name);
/* Milliseconds left before the current request's deadline (<= 0: passed,
 * or the request was cancelled). */
int64_t thaw_time_left_ms(const struct thaw_request *req);
/* 1 when the client of the request the calling thread serves went away
 * (req: that request, or NULL): its answer goes nowhere, so a handler that
 * checks this (or thaw_time_left_ms) in long work can stop early. */
int thaw_cancelled(const struct thaw_request *req);

/* --- files --------------------------------------------------------------- */

struct thaw_map {
	const void *data;
	size_t len;
};
/* Maps a file of the function read-only and MAP_PRIVATE: the pages come from
 * the page cache, so a checkpoint does not copy them and restored copies
 * share them. relpath is relative to thaw_function_dir() unless absolute.
 * Returns 0 or -errno. */
int thaw_map_file(const char *relpath, struct thaw_map *out);
void thaw_unmap(struct thaw_map *map);

/* --- state memory ---------------------------------------------------------- */

/* len bytes (rounded up to 2 MiB) of zeroed, writable memory for state built
 * in init(), file-backed from the start: a shared mapping of an unlinked
 * file on thaw's tmpfs (huge pages). At checkpoint the file becomes part of
 * the snapshot without a copy and is mapped back privately: restored copies
 * share its clean pages and their writes stay their own. Unlike malloc, it
 * is moved into the snapshot whatever its size, also with fc.yaml's
 * snapshotMemory.mapped false. Never freed (state lives as long as the instance).
 * Returns NULL (errno not set) when no file could be made; fall back to
 * malloc then. */
void *thaw_state_alloc(size_t len);

/* --- logging ------------------------------------------------------------- */

enum thaw_log_level { THAW_LOG_DEBUG, THAW_LOG_INFO, THAW_LOG_WARN, THAW_LOG_ERROR };
void thaw_log(enum thaw_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Sets the message a failing init() reports (kept until the next call). */
void thaw_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif
#endif
