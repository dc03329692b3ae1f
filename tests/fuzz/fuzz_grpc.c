/*
 * libFuzzer target over the daemon's HTTP/2 + gRPC input path and the
 * host's protobuf decoding: client bytes (after the connection preface,
 * which conn.c has checked) -> h2_feed (libnghttp2 session, our callbacks:
 * headers, grpc-timeout, DATA into the message buffer, the 5-byte framing,
 * the size limit) -> each whole call: pbwire_model (the daemon's routing
 * read) and protobuf-c unpacking of the message as the instance host does
 * (ModelInfer, Predict, ModelMetadata, GetModelStatus) -> an answer (a
 * message or an error with trailers) through h2_pending, as conn.c sends.
 *
 * Invariants (abort() on violation): the model name pbwire returns lies
 * inside the message; a call is answered at most once and a stream never
 * both answered and cancelled; everything is freed (LeakSanitizer).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conn.h"
#include "grpc_service.pb-c.h"
#include "daemon/conn_h2.h"
#include "common/pbwire.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

static struct conn fake;

/* conn.c's part: drain what the session has to send. */
void conn__h2_flush(struct conn *c)
{
	const uint8_t *d;
	int n = 0;
	while (h2_pending(c->h2, &d) && n++ < 1000)
		;
}

static const ProtobufCMessageDescriptor *descriptor(const char *path)
{
	if (!strcmp(path, "/inference.GRPCInferenceService/ModelInfer"))
		return &inference__model_infer_request__descriptor;
	if (!strcmp(path, "/inference.GRPCInferenceService/ModelMetadata"))
		return &inference__model_metadata_request__descriptor;
	if (!strcmp(path, "/tensorflow.serving.PredictionService/Predict"))
		return &tensorflow__serving__predict_request__descriptor;
	if (!strcmp(path, "/tensorflow.serving.PredictionService/GetModelMetadata"))
		return &tensorflow__serving__get_model_metadata_request__descriptor;
	if (!strcmp(path, "/tensorflow.serving.ModelService/GetModelStatus"))
		return &tensorflow__serving__get_model_status_request__descriptor;
	return NULL;
}

static void on_call(struct h2_stream *st, const struct h2_call *call)
{
	const char *name = NULL;
	size_t name_len = 0;
	uint64_t version;
	int rc = pbwire_model(call->path, call->msg, call->msg_len, &name, &name_len, &version);
	if (rc == 0 && name && (name < call->msg || name + name_len > call->msg + call->msg_len))
		abort();
	const ProtobufCMessageDescriptor *d = descriptor(call->path);
	ProtobufCMessage *m = d ? protobuf_c_message_unpack(d, NULL, call->msg_len,
							    (const uint8_t *)call->msg)
				: NULL;
	if (m) {
		/* the host packs answers from what it read: round-trip it */
		size_t n = protobuf_c_message_get_packed_size(m);
		uint8_t *b = malloc(n ? n : 1);
		if (protobuf_c_message_pack(m, b) != n)
			abort();
		free(b);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	if (rc == 0 && (call->msg_len & 1)) /* later: on the next feed or never */
		h2_stream_set_ctx(st, st);
	else if (rc == 0)
		h2_answer(st, call->msg, call->msg_len);
	else
		h2_answer_error(st, 3, "bad %s", call->path);
}

static void on_cancel(struct h2_stream *st, void *ctx)
{
	if (ctx && ctx != st)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct h2_hooks hooks = { .call = on_call, .cancel = on_cancel };
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	h2_set_hooks(&hooks);
	memset(&fake, 0, sizeof(fake));
	if (h2_start(&fake) < 0)
		return 0;
	/* the preface, then the input in two pieces (split by its first byte) */
	size_t cut = size ? data[0] % (size + 1) : 0;
	if (h2_feed(fake.h2, preface, sizeof(preface) - 1) == 0 &&
	    h2_feed(fake.h2, (const char *)data, cut) == 0 &&
	    h2_feed(fake.h2, (const char *)data + cut, size - cut) == 0)
		conn__h2_flush(&fake);
	h2_free(fake.h2);
	return 0;
}
