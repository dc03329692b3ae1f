/*
 * grpc: the messages of gRPC calls for handlers with the tensor hook. The
 * daemon (daemon/conn_h2.c) takes the HTTP/2 stream, unframes the one message,
 * routes by the model name in it, and hands the instance a request with
 * path "/{package.Service}/{Method}", content-type application/grpc and the
 * message (without its 5-byte prefix) as the body. Here it becomes tensors
 * (protobuf-c; raw_input_contents and tensor_content are passed as they
 * are), runs tensor_run, and the answer is the response message as the
 * body, or an error: an HTTP status for the log plus grpc-status and
 * grpc-message headers that the daemon puts in the trailers.
 *
 *   inference.GRPCInferenceService: ModelInfer, ModelMetadata, ModelReady
 *   tensorflow.serving.PredictionService: Predict
 *   tensorflow.serving.ModelService: GetModelStatus
 */
#ifndef THAW_HOST_GRPC_H
#define THAW_HOST_GRPC_H

#include "host/tensor.h"

/* Answers req when it is a gRPC call (content-type application/grpc...);
 * returns 0 then, or -ENOTSUP (the handler's invoke() takes it). */
int grpc_handle(tensor_infer_fn infer, const struct thaw_request *req, struct thaw_response *res);

#endif
