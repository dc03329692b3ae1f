/*
 * grpc_front: routing gRPC calls to functions (grpc_front.h).
 */
#define LOG_PREFIX "grpc: "
#include "daemon/grpc_front.h"
#include "daemon/auth.h"
#include "common/pbwire.h"
#include "common/buf.h"
#include "common/channel.h"
#include "daemon/conn_h2.h"
#include "daemon/invocation.h"
#include "common/log.h"
#include "daemon/metrics.h"
#include "daemon/pool.h"
#include "daemon/registry.h"
#include "daemon/server.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

enum { G_CANCELLED = 1, G_UNKNOWN = 2, G_INVALID_ARGUMENT = 3, G_DEADLINE_EXCEEDED = 4,
       G_NOT_FOUND = 5, G_PERMISSION_DENIED = 7, G_RESOURCE_EXHAUSTED = 8, G_UNIMPLEMENTED = 12,
       G_INTERNAL = 13, G_UNAVAILABLE = 14, G_UNAUTHENTICATED = 16 };

/* --- answers ------------------------------------------------------------------- */

static int code_of_http(unsigned status)
{
	switch (status) {
	case 400: case 405: return G_INVALID_ARGUMENT;
	case 401: return G_UNAUTHENTICATED;
	case 403: return G_PERMISSION_DENIED;
	case 404: return G_NOT_FOUND;
	case 413: case 429: return G_RESOURCE_EXHAUSTED;
	case 499: return G_CANCELLED;
	case 502: case 503: return G_UNAVAILABLE;
	case 504: return G_DEADLINE_EXCEEDED;
	case 501: return G_UNIMPLEMENTED;
	}
	return status >= 500 ? G_INTERNAL : G_UNKNOWN;
}

static void access_log(const struct invocation *inv, const char *path, unsigned status, int code)
{
	struct access_entry e = {
		.request_id = inv->request_id,
		.function = inv->fn->cfg.name,
		.method = "POST",
		.protocol = "grpc",
		.path = path,
		.path_len = strlen(path),
		.status = (int)status,
		.grpc_status = code,
		.dur_ns = now_ns() - inv->start_ns,
	};
	server_access_log(&e);
}

/* The pool's answer, on the stream's loop. */
static void on_answer(struct invocation *inv, const char *payload, size_t len)
{
	struct h2_stream *st = inv->ctx;
	struct channel_response r;
	if (!st)
		return; /* the stream was reset or the connection closed */
	if (channel_decode_response(payload, len, &r) < 0) {
		h2_answer_error(st, G_INTERNAL, "instance sent a malformed response");
		return;
	}
	/* the function's request metrics, as conn.c counts HTTP (by the
	 * HTTP-equivalent status; TODO: a protocol label) */
	atomic_fetch_add_explicit(&inv->fn->metrics.requests[r.status < 600 ? r.status : 599], 1,
				  memory_order_relaxed);
	histogram_observe(&inv->fn->metrics.duration, now_ns() - inv->start_ns);
	const char *path = h2_stream_path(st);
	atomic_fetch_add_explicit(&inv->fn->metrics.by_protocol[
		!strncmp(path, "/inference.", 11) ? PROTO_KSERVE_GRPC :
		!strncmp(path, "/tensorflow.serving.", 20) ? PROTO_TFSERVING_GRPC : PROTO_GRPC_OTHER],
		1, memory_order_relaxed);
	char msg[256] = "";
	int code = -1;
	const char *cur = r.headers;
	for (uint32_t i = 0; i < r.n_headers; i++) {
		struct channel_kv kv;
		channel_next_header(&cur, &kv);
		if (!strcasecmp(kv.name, "grpc-status"))
			code = atoi(kv.value);
		else if (!strcasecmp(kv.name, "grpc-message"))
			snprintf(msg, sizeof(msg), "%s", kv.value);
	}
	if (r.status == 200 && code <= 0) {
		access_log(inv, path, r.status, 0);
		h2_answer(st, r.body, r.body_len);
		return;
	}
	if (code <= 0)
		code = code_of_http(r.status);
	access_log(inv, path, r.status, code);
	if (!msg[0]) { /* the daemon's or a handler's {"error": "..."} */
		cJSON *j = cJSON_ParseWithLength(r.body, r.body_len);
		cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
		snprintf(msg, sizeof(msg), "%s", cJSON_IsString(e) ? e->valuestring : "error");
		cJSON_Delete(j);
	}
	h2_answer_error(st, code, "%s", msg);
}

static void on_cancel(struct h2_stream *st, void *ctx)
{
	struct invocation *inv = ctx;
	(void)st;
	if (!inv)
		return;
	inv->ctx = NULL;
	invocation_cancel(inv);
}

static int64_t realtime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void server_call(struct h2_stream *st, const char *method)
{
	if (!strcmp(method, "ServerLive")) {
		h2_answer(st, "\x08\x01", 2); /* live: true */
	} else if (!strcmp(method, "ServerReady")) {
		h2_answer(st, atomic_load(&server.draining) ? "" : "\x08\x01",
			  atomic_load(&server.draining) ? 0 : 2);
	} else if (!strcmp(method, "ServerMetadata")) {
		static const char meta[] = "\x0a\x04thaw\x12\x05" "0.1.0"; /* name, version */
		h2_answer(st, meta, sizeof(meta) - 1);
	} else {
		h2_answer_error(st, G_UNIMPLEMENTED, "%s is not implemented by thaw", method);
	}
}

static void on_call(struct h2_stream *st, const struct h2_call *call)
{
	static const char kserve[] = "/inference.GRPCInferenceService/";
	static _Thread_local uint64_t seq, salt;
	const char *name;
	size_t name_len;
	uint64_t version;

	if (!strncmp(call->path, kserve, sizeof(kserve) - 1) &&
	    !strncmp(call->path + sizeof(kserve) - 1, "Server", 6)) {
		server_call(st, call->path + sizeof(kserve) - 1);
		return;
	}
	int rc = pbwire_model(call->path, call->msg, call->msg_len, &name, &name_len, &version);
	if (rc == -ENOENT) {
		h2_answer_error(st, G_UNIMPLEMENTED, "unknown method %s", call->path);
		return;
	}
	if (rc < 0 || !name || !name_len) {
		h2_answer_error(st, G_INVALID_ARGUMENT, "the request names no model");
		return;
	}
	struct function *fn = version ? registry_find_version(name, name_len, (unsigned)version)
				      : registry_find_function(name, name_len);
	if (!fn) {
		if (version)
			h2_answer_error(st, G_NOT_FOUND, "model %.*s has no version %llu",
					(int)name_len, name, (unsigned long long)version);
		else
			h2_answer_error(st, G_NOT_FOUND, "model %.*s not found", (int)name_len, name);
		return;
	}
	/* the token travels in metadata, as over HTTP in headers; the request
	 * the instance gets carries content-type alone, never the credential */
	if (!strcmp(fn->cfg.auth_type, "function") &&
	    !auth_invoke_token_ok(call->token, call->token_len, fn->cfg.name)) {
		h2_answer_error(st, G_UNAUTHENTICATED,
				"model %s needs its invoke token or the admin token "
				"(metadata authorization: Bearer TOKEN, or x-thaw-token)", fn->cfg.name);
		return;
	}
	if (call->msg_len > fn->cfg.max_body_bytes) {
		h2_answer_error(st, G_RESOURCE_EXHAUSTED, "message of %zu bytes over the limit of %llu",
				call->msg_len, (unsigned long long)fn->cfg.max_body_bytes);
		return;
	}
	double secs = fn->cfg.timeout_s;
	if (call->timeout_ms >= 0 && call->timeout_ms / 1000.0 < secs)
		secs = call->timeout_ms / 1000.0;
	if (!salt && getrandom(&salt, sizeof(salt), 0) != sizeof(salt))
		salt = (uint64_t)now_ns();
	struct invocation *inv = invocation_new(h2_stream_shard(st), fn, on_answer, st);
	inv->start_ns = now_ns();
	inv->deadline_ns = inv->start_ns + (int64_t)(secs * 1e9);
	snprintf(inv->request_id, sizeof(inv->request_id), "%016llx-%llu", (unsigned long long)salt,
		 (unsigned long long)++seq);
	struct channel_kv ct = { .name = "content-type", .value = call->content_type };
	channel_put_request(&inv->frame, 0, "POST", call->path, strlen(call->path), "", 0,
			    inv->request_id, realtime_ms() + (int64_t)(secs * 1000), &ct, 1,
			    call->msg, call->msg_len);
	h2_stream_set_ctx(st, inv);
	pool_submit(inv);
}

void grpc_front_init(void)
{
	static const struct h2_hooks hooks = { .call = on_call, .cancel = on_cancel };
	h2_set_hooks(&hooks);
}
