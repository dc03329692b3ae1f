/*
 * pbwire: just enough of the protobuf wire format for the daemon to route
 * a gRPC call by the model it names, without decoding the message (the
 * instance host decodes it, with protobuf-c). Bounded: every length is
 * checked against the end of the message; nothing is allocated.
 */
#ifndef THAW_PBWIRE_H
#define THAW_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

/* The model name (a view into msg) and version (0 = none) in the message
 * msg[0..len) of method path: KServe's model_name/name (field 1) and
 * model_version/version (2, decimal), TF Serving's model_spec (1) { name
 * (1), version (2) { value (1) } }. Returns 0 (*name may be NULL when the
 * message has none), -EINVAL when the message does not parse or the
 * version is not a number, -ENOENT when path is not a model call. */
int pbwire_model(const char *path, const char *msg, size_t len, const char **name,
		 size_t *name_len, uint64_t *version);

#endif
