/*
 * Internals shared by custom.c (connections, requests, responses) and
 * custom_start.c (the start sequence, hooks, freeze, preStop). Not for other
 * modules: custom.h is the interface.
 */
#ifndef THAW_CUSTOM_INTERNAL_H
#define THAW_CUSTOM_INTERNAL_H

#include <http_parser.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "daemon/custom.h"
#include "daemon/loop.h"
#include "common/timer.h"

#define PORT_POLL_NS (20 * 1000000LL)
#define FREEZE_TIMEOUT_NS (10 * 1000000000LL)
#define RECV_CHUNK 65536
#define MAX_HEADER_BYTES (64u << 10)
#define MAX_RESPONSE_HEADERS 100
#define HOOK_ID 0 /* a start or freeze hook's request, not an invocation */
/* A kept-alive connection idle longer is replaced rather than reused:
 * servers close idle ones (uvicorn after 5 s), and a request sent as they
 * do fails. */
#define KEEP_IDLE_NS (2 * 1000000000LL)

enum phase { PH_PORT, PH_HEALTH, PH_INIT, PH_RESTORED, PH_READY, PH_FREEZE, PH_FROZEN,
	     PH_PRESTOP, PH_STOPPED };

struct cconn;

struct custom {
	struct shard *sh;
	const struct config *cfg;
	int netns_fd;
	const struct custom_hooks *hooks;
	void *owner;
	enum phase phase;
	bool restored;
	unsigned n_slots;
	struct cconn **slots; /* a kept-alive connection per slot, NULL: none yet */
	struct cconn *hook;   /* the start/freeze hooks' connection */
	unsigned health_ok, health_fail;
	struct timer timer; /* port polling, hook timeouts, health period */
	int64_t port_by_ns; /* the port must accept by then, else the start fails */
	char last_error[160];
};

/* One TCP connection to the server. Owned by its custom while c is set;
 * orphaned (c NULL) it frees itself once its operations completed. */
struct cconn {
	struct custom *c;
	struct shard *sh;
	int fd;
	unsigned ops;
	bool connected, reused, retried, busy, dead;
	uint64_t id;
	int slot; /* -1: the hook connection */
	struct loop_op connect_op, send_op, recv_op;
	struct sockaddr_in addr;
	struct buf out; /* the request, kept whole until its response begins (retry) */
	size_t out_sent;
	bool send_armed, recv_armed;
	struct buf in;
	http_parser hp;
	bool head, got_bytes, done;
	bool streaming; /* chunked or event-stream: body pieces go out as they come */
	bool idempotent; /* the request's method: a retry is safe */
	int64_t idle_since; /* its last response ended */
	int hstate; /* 0 before a header, 1 in a name, 2 in a value */
	struct buf hdrs; /* name\0value\0 ... */
	uint32_t n_hdrs;
	struct buf body;
};

/* custom.c */
/* A new connection of c (slot -1: the hooks' one), connecting; dead (and
 * c->last_error set) when no socket could be made in the namespace. */
struct cconn *custom__conn_new(struct custom *c, int slot);
/* Detaches cc from its custom and closes it; NULL is fine. */
void custom__conn_orphan(struct cconn *cc);
/* Frees an orphaned cc whose operations completed. */
void custom__conn_maybe_free(struct cconn *cc);
/* Sends the request in cc->out (numbered id) once connected. */
void custom__conn_request(struct cconn *cc, uint64_t id, bool head);

/* custom_start.c */
/* A step of the start (or freeze, preStop) sequence ended: an answer
 * (status > 0), the port accepting (status 0, no err), or an error (err). */
void custom__hook_done(struct custom *c, int status, const char *body, size_t len,
		       const char *err);

#endif
