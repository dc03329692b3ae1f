/*
 * h2: HTTP/2 (h2c, prior knowledge) on a client connection, for gRPC.
 * conn.c hands a connection over when its first bytes are the HTTP/2
 * preface; from then on the bytes it receives are fed to libnghttp2 here and
 * what nghttp2 produces goes out through the connection's send (conn.c,
 * conn__h2_flush), inside the io_uring loop: no second server, no thread.
 *
 * Each stream carries one unary gRPC call: its message (5-byte prefix,
 * uncompressed, at most H2_MAX_MESSAGE bytes; past that RESOURCE_EXHAUSTED
 * and the rest is dropped as it arrives) is handed whole to the front end
 * (h2_hooks.call) which answers it once, now or later, with h2_answer*.
 * A stream the client resets (RST_STREAM) or a connection that closes
 * calls h2_hooks.cancel for a call still unanswered.
 */
#ifndef THAW_H2_H
#define THAW_H2_H

#include <stddef.h>
#include <stdint.h>

#define H2_MAX_MESSAGE (32u << 20)

struct conn;
struct shard;
struct h2;
struct h2_stream;

/* The preface check on a connection's first bytes: 1 it is HTTP/2, 0 not
 * yet known (a prefix of it), -1 not HTTP/2. */
int h2_preface(const char *data, size_t len);

/* One unary call, as h2_hooks.call gets it; views valid during the call. */
struct h2_call {
	const char *path;       /* "/package.Service/Method" */
	const char *msg;        /* the message, without the 5-byte prefix */
	size_t msg_len;
	int64_t timeout_ms;     /* grpc-timeout, or -1 */
	const char *content_type;
	/* the credential in the call's metadata: x-thaw-token, else
	 * authorization: Bearer (without "Bearer "); NULL when neither. One
	 * too long to be a token is presented as "" (it matches none). Neither
	 * header goes further than this view. */
	const char *token;
	size_t token_len;
};

struct h2_hooks {
	void (*call)(struct h2_stream *st, const struct h2_call *call);
	/* the call of st will never be answered: drop what refers to it */
	void (*cancel)(struct h2_stream *st, void *ctx);
};
void h2_set_hooks(const struct h2_hooks *h);

/* Takes over c (its first bytes are the preface); 0 or -ENOMEM. */
int h2_start(struct conn *c);
/* Feeds received bytes; < 0 = protocol error, close the connection. */
int h2_feed(struct h2 *h, const char *data, size_t len);
/* The next bytes to send (*data valid until the next call), 0 when none. */
size_t h2_pending(struct h2 *h, const uint8_t **data);
/* Ends the session politely (GOAWAY, no error): h2_done once it is sent. */
void h2_goaway(struct h2 *h);
/* A call is under way (a stream open). */
int h2_busy(const struct h2 *h);
/* Nothing more to read or write: the connection may close. */
int h2_done(struct h2 *h);
/* c closes: cancels the calls under way and frees h. */
void h2_free(struct h2 *h);

/* The call's :path ("/package.Service/Method"). */
const char *h2_stream_path(const struct h2_stream *st);
/* The loop of st's connection. */
struct shard *h2_stream_shard(const struct h2_stream *st);
/* The front end's context of a call (its invocation), for cancel. */
void h2_stream_set_ctx(struct h2_stream *st, void *ctx);
/* Answers st: status OK with msg (framed here), or a gRPC status code
 * (non-zero) and message, in trailers. Once per stream. */
void h2_answer(struct h2_stream *st, const char *msg, size_t len);
void h2_answer_error(struct h2_stream *st, int grpc_status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
