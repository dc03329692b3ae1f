/*
 * The channel of a custom-runtime instance: HTTP/1.1 over TCP into the
 * instance's network namespace, where its server listens on fc.yaml's
 * customRuntimeConfig.port (Function Compute's custom runtime).
 *
 * What a native instance's framed channel does, this does over HTTP:
 *  - start: the port accepting (polled every 20 ms after
 *    initialDelaySeconds; not open within custom_port_wait_s fails the
 *    start, e.g. "the server did not open port 9000 in 15 s"), then customHealthCheckConfig's GET (2xx,
 *    successThreshold times; failureThreshold failures, periodSeconds
 *    apart, fail the start), then instanceLifecycleConfig.initializer's
 *    POST /initialize (2xx). A restored copy instead gets POST
 *    /thaw/restored (any answer, 404 included, lets it serve: it is its cue
 *    to re-seed random state and make new ids) before its first request.
 *  - requests: a CH_REQUEST frame (the invocation's) becomes an HTTP/1.1
 *    request on the slot's kept-alive connection: method, path, query,
 *    headers (already filtered by headers.h), x-fc-request-id,
 *    x-fc-function-name/-memory/-timeout, Content-Length, body. The response
 *    is parsed with http-parser and handed back as a CH_RESPONSE payload
 *    (hop-by-hop headers dropped). A response that does not parse, or a
 *    connection closed before the response ended, answers that request 502
 *    (only it). A kept-alive connection the server closed while idle is
 *    retried once on a new connection.
 *  - cancel: the slot's connection is closed (the server sees the client
 *    go), the slot answers 499 at once and gets a new connection next time.
 *  - before a snapshot: GET /pre-freeze (any answer or none within 10 s),
 *    then every connection is closed.
 *  - before an idle instance is stopped (scale-in, removal), with preStop:
 *    GET /pre-stop (any answer, or none within preStop.timeout).
 *
 * Single-threaded: everything runs on the owning pool's loop. Responses are
 * buffered whole (up to CHANNEL_MAX_PAYLOAD), except chunked and
 * text/event-stream ones: those go to the stream hook piece by piece as
 * they arrive (the client gets them as they are produced).
 */
#ifndef THAW_CUSTOM_H
#define THAW_CUSTOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

struct config;
struct shard;
struct custom;

enum custom_piece { CUSTOM_HEAD, CUSTOM_DATA, CUSTOM_END };

/* What the owner (the pool's instance) hears; owner is passed back. */
struct custom_hooks {
	/* started, health checked, initialized (or restored and told so) */
	void (*ready)(void *owner);
	/* the start failed: message for /readyz */
	void (*init_failed)(void *owner, const char *why);
	/* request id's answer: a CH_RESPONSE payload, valid during the call */
	void (*response)(void *owner, uint64_t id, const char *payload, size_t len);
	/* GET /pre-freeze answered (or not): no connection is open any more */
	void (*frozen)(void *owner);
	/* a streamed response of request id: its head (a CH_RESPONSE payload
	 * with no body), pieces of body, the end; then response() comes with
	 * an empty body. A response() without the end: the stream broke. */
	void (*stream)(void *owner, uint64_t id, enum custom_piece piece, const char *data,
		       size_t len);
	/* GET /pre-stop answered, failed or timed out: stop it now */
	void (*stopped)(void *owner);
};

/* How long a cold server may take to open its port: initialDelaySeconds +
 * periodSeconds x failureThreshold (15 s with Function Compute's defaults). */
double custom_port_wait_s(const struct config *cfg);

/* A channel to the server of cfg in the network namespace netns_fd (taken:
 * closed by custom_free), serving instanceConcurrency slots. The start
 * sequence begins at once (restored: the restore hook instead of the
 * health check and initializer). Never fails; problems come as
 * init_failed. */
struct custom *custom_new(struct shard *sh, const struct config *cfg, int netns_fd,
			  bool restored, const struct custom_hooks *hooks, void *owner);
/* Sends request frame (a whole CH_REQUEST frame; copied) on slot, numbered id. */
void custom_send(struct custom *c, unsigned slot, uint64_t id, const char *frame, size_t len);
/* The client of slot's request went away: closes its connection; the
 * response hook gets a 499 for id before this returns. */
void custom_cancel(struct custom *c, unsigned slot);
/* GET /pre-freeze, close every connection, then the frozen hook. */
void custom_freeze(struct custom *c);
/* instanceLifecycleConfig.preStop: GET /pre-stop (its timeout), then the
 * stopped hook. False (nothing sent) without a preStop. */
bool custom_pre_stop(struct custom *c);
/* No more hooks; connections close, memory goes when their operations
 * complete. NULL is fine. */
void custom_free(struct custom *c);

#endif
