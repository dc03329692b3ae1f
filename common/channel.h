/*
 * Channel framing between the daemon and an instance (a socketpair).
 *
 * Every message is a 16-byte header (type, payload length, request id; host
 * byte order: both ends are the same machine) followed by the payload.
 * Requests and responses are encoded as length-prefixed, NUL-terminated
 * fields so the decoder hands out views into the frame, never copies.
 *
 *   daemon -> instance: CH_REQUEST, CH_RESTORED (run on_restore, answer
 *                       CH_READY again), CH_SHUTDOWN, CH_CHECKPOINT (the
 *                       next thing is a checkpoint: run before_checkpoint,
 *                       answer CH_READY, or CH_INIT_FAILED and exit)
 *   instance -> daemon: CH_READY (payload: instance id), CH_INIT_FAILED
 *                       (payload: message), CH_RESPONSE
 *
 * Out of band, the daemon queues CHANNEL_CANCEL_SIGNAL to the instance with
 * a request id as its value when that request's client went away: a frame
 * would wait behind the running request (its thread reads the channel).
 */
#ifndef THAW_CHANNEL_H
#define THAW_CHANNEL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* The instance's end of the channel is always this fd in the instance. */
#define CHANNEL_FD 3
/* The signal (SIGRTMIN + 4: glibc keeps the first ones) whose sival_ptr is
 * the id of a request to cancel; thaw-instance catches it. */
#define CHANNEL_CANCEL_SIGNAL (SIGRTMIN + 4)
/* Snapshot memory (docs/snapshots.md): before CRIU dumps an instance, the
 * daemon writes CHANNEL_MEMREQ_FMT (lines "dir PATH", "min BYTES",
 * "populate 0|1"), makes the FIFO CHANNEL_MEMACK_FMT and queues this signal
 * (value 0). thaw-instance then moves its large private anonymous mappings
 * into files in dir, mapped back MAP_PRIVATE|MAP_FIXED, and writes its
 * report to the FIFO: lines "skip START-END REASON", then "ok MOVED BYTES".
 * Both names take the inode of the instance's end of the channel, which both
 * sides know (fstat of CHANNEL_FD in the instance). */
#define CHANNEL_MEM_SIGNAL (SIGRTMIN + 5)
#define CHANNEL_MEMREQ_FMT "/dev/shm/thaw-criu/memreq-%llu"
#define CHANNEL_MEMACK_FMT "/dev/shm/thaw-criu/memack-%llu"
/* A custom runtime's processes (docs/snapshots.md, "Custom runtimes"): with
 * snapshotMemory.mapped each runs with CHANNEL_AGENT_SO (agent/agent.c,
 * beside thaw-instance) in LD_PRELOAD. The daemon writes the same request
 * lines to CHANNEL_AGENTREQ_FMT (the instance's host pid), makes one FIFO
 * CHANNEL_AGENTACK_FMT per process (host pid of the instance, the process's
 * pid inside its pid namespace) and queues CHANNEL_MEM_SIGNAL to each with
 * the instance's host pid as sival_int. Each process stops its other
 * threads, moves its mappings into files thaw-mem-PID-ADDRESS of dir and
 * answers with the same report lines. */
#define CHANNEL_AGENT_SO "libthaw-agent.so"
/* sival_int of CHANNEL_MEM_SIGNAL after a restored copy's first response
 * (snapshotMemory.populate): the agent faults what it moved in
 * (MADV_POPULATE_READ), in the first process of the tree only. */
#define CHANNEL_AGENT_POPULATE (-1)
#define CHANNEL_AGENTREQ_FMT "/dev/shm/thaw-criu/agentreq-%d"
#define CHANNEL_AGENTACK_FMT "/dev/shm/thaw-criu/agentack-%d-%d"
/* The tmpfs thaw mounts for snapshots (huge pages): the default snapshot
 * folder and thaw_state_alloc() files live there. */
#define CHANNEL_MEM_TMPFS "/dev/shm/thaw-mem"
/* Largest payload either side accepts; a bigger length is a protocol error. */
#define CHANNEL_MAX_PAYLOAD (256u << 20)

enum channel_type {
	CH_READY = 1,
	CH_INIT_FAILED,
	CH_REQUEST,
	CH_RESPONSE,
	CH_RESTORED,
	CH_SHUTDOWN,
	CH_CHECKPOINT,
};

struct channel_hdr {
	uint32_t type;
	uint32_t len;
	uint64_t id;
};

struct channel_kv {
	const char *name;
	const char *value;
};

/* A decoded request: every pointer points into the frame's payload. */
struct channel_request {
	const char *method, *path, *query, *request_id;
	int64_t deadline_ms;
	uint32_t n_headers;
	const char *headers; /* encoded pairs; walk with channel_next_header */
	const char *body;    /* NUL-terminated, not counted in body_len */
	size_t body_len;
};

struct channel_response {
	uint32_t status;
	uint32_t n_headers;
	const char *headers;
	const char *body;
	size_t body_len;
};

/* Appends a frame header to out. */
void channel_put_hdr(struct buf *out, uint32_t type, uint64_t id, size_t payload_len);

/* Appends a whole CH_REQUEST frame. headers holds n_headers name/value pairs;
 * body may be split in two parts (b1 may be NULL). */
void channel_put_request(struct buf *out, uint64_t id, const char *method, const char *path,
			 size_t path_len, const char *query, size_t query_len,
			 const char *request_id, int64_t deadline_ms,
			 const struct channel_kv *headers, uint32_t n_headers, const char *body,
			 size_t body_len);
/* Appends a whole CH_RESPONSE frame. */
void channel_put_response(struct buf *out, uint64_t id, uint32_t status,
			  const struct channel_kv *headers, uint32_t n_headers, const char *body,
			  size_t body_len);
/* A CH_RESPONSE with the house error body {"error": msg}; retry_after adds
 * "retry-after: 1". */
void channel_put_error(struct buf *out, uint64_t id, uint32_t status, const char *msg,
		       bool retry_after);

/* Looks for a complete frame at the front of data. Returns the total frame
 * size (header + payload) when one is complete, 0 when more bytes are needed,
 * -EPROTO when the header is invalid (unknown type, payload too large). */
long channel_frame_complete(const char *data, size_t len);

/* Decode a payload in place. Return 0 or -EPROTO for a malformed payload;
 * a response is also malformed with a status outside 200..599 or a header
 * name that is not a token or a value with CR, LF or another control. */
int channel_decode_request(const char *payload, size_t len, struct channel_request *out);
int channel_decode_response(const char *payload, size_t len, struct channel_response *out);

/* Iterates encoded header pairs: *cursor starts at the headers pointer of a
 * decoded message; the pairs were validated by the decoder. */
void channel_next_header(const char **cursor, struct channel_kv *kv);

#endif
