/*
 * grpc_front: what a gRPC call asks for (the HTTP/2 streams of h2.h).
 * Server-wide calls (ServerLive, ServerReady, ServerMetadata) are answered
 * here; model calls are routed by the model name in the message
 * (model_name / name, model_spec.name; a version pins one) to that
 * function and become an invocation whose request carries the method as
 * its path and the message as its body, for the instance host to turn
 * into tensors (host/grpc.c). grpc-timeout shortens the deadline;
 * a reset stream cancels the invocation.
 */
#ifndef THAW_GRPC_FRONT_H
#define THAW_GRPC_FRONT_H

#include <stddef.h>
#include <stdint.h>

/* Installs the front end as the HTTP/2 hooks (h2_set_hooks). */
void grpc_front_init(void);

#endif
