#define LOG_PREFIX "custom: "
#include "daemon/custom.h"
#include "daemon/custom_internal.h"
#include "common/config.h"
#include "common/log.h"
#include "daemon/loop.h"
#include "common/mem.h"
#include "common/timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The start sequence (port, health check, initializer; a restore's hook),
 * GET /pre-freeze and GET /pre-stop: one hook request at a time on c->hook,
 * one timer (custom.h). */

/* --- start, hooks, freeze ------------------------------------------------ */

double custom_port_wait_s(const struct config *cfg)
{
	const struct config_health *h = &cfg->health;
	return (double)h->initial_delay_s + (double)h->period_s * h->failure_threshold;
}

static void hook_timer(struct timer *t);

static void arm_timer(struct custom *c, int64_t in_ns)
{
	timer_set(&c->sh->timers, &c->timer, now_ns() + in_ns, hook_timer);
}

/* A hook request on a new connection (sent once it connects). */
static void hook_request(struct custom *c, const char *method, const char *path, int64_t timeout_ns)
{
	custom__conn_orphan(c->hook);
	struct cconn *cc = custom__conn_new(c, -1);
	if (cc->dead) {
		cc->c = NULL;
		custom__conn_maybe_free(cc);
		custom__hook_done(c, 0, NULL, 0, c->last_error);
		return;
	}
	c->hook = cc;
	buf_printf(&cc->out, "%s %s HTTP/1.1\r\nhost: 127.0.0.1:%u\r\ncontent-length: 0\r\n\r\n",
		   method, path, c->cfg->port);
	custom__conn_request(cc, HOOK_ID, false);
	arm_timer(c, timeout_ns);
}

static void poll_port(struct custom *c)
{
	custom__conn_orphan(c->hook);
	struct cconn *cc = custom__conn_new(c, -1);
	if (cc->dead) {
		cc->c = NULL;
		custom__conn_maybe_free(cc);
		c->hooks->init_failed(c->owner, c->last_error);
		return;
	}
	c->hook = cc;
	arm_timer(c, PORT_POLL_NS);
	/* the start fails past port_by_ns (hook_done) */
}

static void become_ready(struct custom *c)
{
	timer_cancel(&c->sh->timers, &c->timer);
	custom__conn_orphan(c->hook);
	c->phase = PH_READY;
	c->hooks->ready(c->owner);
}

static void after_health(struct custom *c)
{
	if (c->cfg->initializer.handler) {
		c->phase = PH_INIT;
		hook_request(c, "POST", "/initialize",
			     (int64_t)c->cfg->initializer.timeout_s * 1000000000);
	} else {
		become_ready(c);
	}
}

static void health_check(struct custom *c)
{
	c->phase = PH_HEALTH;
	hook_request(c, "GET", c->cfg->health.http_get_url,
		     (int64_t)c->cfg->health.timeout_s * 1000000000);
}

static void frozen(struct custom *c)
{
	timer_cancel(&c->sh->timers, &c->timer);
	c->phase = PH_FROZEN;
	custom__conn_orphan(c->hook);
	for (unsigned i = 0; i < c->n_slots; i++)
		custom__conn_orphan(c->slots[i]);
	c->hooks->frozen(c->owner);
}

/* A step of the start (or freeze) sequence ended: an answer (status > 0),
 * the port accepting (status 0, no err), or an error (err). */
void custom__hook_done(struct custom *c, int status, const char *body, size_t len, const char *err)
{
	char msg[512];
	(void)len;
	timer_cancel(&c->sh->timers, &c->timer);
	switch (c->phase) {
	case PH_PORT:
		if (err) { /* not listening yet */
			snprintf(c->last_error, sizeof(c->last_error), "%s", err);
			if (now_ns() > c->port_by_ns) {
				snprintf(msg, sizeof(msg),
					 "the server did not open port %u in %.0f s (%s)",
					 c->cfg->port, custom_port_wait_s(c->cfg), err);
				c->hooks->init_failed(c->owner, msg);
				return;
			}
			arm_timer(c, PORT_POLL_NS);
			return;
		}
		if (c->restored) {
			c->phase = PH_RESTORED;
			hook_request(c, "POST", "/thaw/restored", 10 * 1000000000LL);
		} else if (c->cfg->health.http_get_url) {
			health_check(c);
		} else {
			after_health(c);
		}
		return;
	case PH_HEALTH:
		if (!err && status >= 200 && status < 300) {
			c->health_fail = 0;
			if (++c->health_ok >= c->cfg->health.success_threshold) {
				after_health(c);
				return;
			}
		} else {
			c->health_ok = 0;
			if (err)
				snprintf(c->last_error, sizeof(c->last_error), "%s", err);
			else
				snprintf(c->last_error, sizeof(c->last_error), "answered %d: %.80s",
					 status, body ? body : "");
			if (++c->health_fail >= c->cfg->health.failure_threshold) {
				snprintf(msg, sizeof(msg), "health check GET %s failed %u times: %s",
					 c->cfg->health.http_get_url, c->health_fail, c->last_error);
				c->hooks->init_failed(c->owner, msg);
				return;
			}
		}
		custom__conn_orphan(c->hook);
		arm_timer(c, (int64_t)c->cfg->health.period_s * 1000000000);
		return;
	case PH_INIT:
		if (!err && status >= 200 && status < 300) {
			become_ready(c);
			return;
		}
		if (err)
			snprintf(msg, sizeof(msg), "initializer POST /initialize: %s", err);
		else
			snprintf(msg, sizeof(msg), "initializer POST /initialize answered %d: %.200s",
				 status, body ? body : "");
		c->hooks->init_failed(c->owner, msg);
		return;
	case PH_RESTORED:
		if (err) {
			snprintf(msg, sizeof(msg), "restore hook POST /thaw/restored: %s", err);
			c->hooks->init_failed(c->owner, msg);
			return;
		}
		if (status >= 300 && status != 404)
			pr_warn("%s: POST /thaw/restored answered %d", c->cfg->name, status);
		become_ready(c);
		return;
	case PH_PRESTOP:
		if (err)
			pr_info("%s: GET /pre-stop: %s", c->cfg->name, err);
		else
			pr_info("%s: GET /pre-stop answered %d", c->cfg->name, status);
		c->phase = PH_STOPPED;
		custom__conn_orphan(c->hook);
		c->hooks->stopped(c->owner); /* may free c */
		return;
	case PH_FREEZE:
		if (err)
			pr_info("%s: GET /pre-freeze: %s", c->cfg->name, err);
		else
			pr_info("%s: GET /pre-freeze answered %d", c->cfg->name, status);
		frozen(c);
		return;
	default:
		return;
	}
}

static void hook_timer(struct timer *t)
{
	struct custom *c = container_of(t, struct custom, timer);
	char why[96];
	switch (c->phase) {
	case PH_PORT:
		if (c->hook && !c->hook->connected) {
			arm_timer(c, PORT_POLL_NS); /* a connect still pending: wait on */
			return;
		}
		poll_port(c);
		return;
	case PH_HEALTH:
		if (!c->hook) { /* the period between checks passed */
			health_check(c);
			return;
		}
		__attribute__((fallthrough)); /* a check ran past timeoutSeconds */
	default:
		custom__conn_orphan(c->hook);
		snprintf(why, sizeof(why), "no answer in time");
		custom__hook_done(c, 0, NULL, 0, why);
	}
}

struct custom *custom_new(struct shard *sh, const struct config *cfg, int netns_fd,
			  bool restored, const struct custom_hooks *hooks, void *owner)
{
	struct custom *c = xcalloc(1, sizeof(*c));
	c->sh = sh;
	c->cfg = cfg;
	c->netns_fd = netns_fd;
	c->hooks = hooks;
	c->owner = owner;
	c->restored = restored;
	c->n_slots = cfg->instance_concurrency;
	c->slots = xcalloc(c->n_slots, sizeof(*c->slots));
	c->phase = PH_PORT;
	c->port_by_ns = now_ns() + (int64_t)(custom_port_wait_s(cfg) * 1e9);
	snprintf(c->last_error, sizeof(c->last_error), "port %u not open yet", cfg->port);
	/* a restored copy listens already; a cold one after initialDelaySeconds */
	if (restored || !cfg->health.initial_delay_s)
		poll_port(c);
	else
		arm_timer(c, (int64_t)cfg->health.initial_delay_s * 1000000000);
	return c;
}

void custom_freeze(struct custom *c)
{
	for (unsigned i = 0; i < c->n_slots; i++)
		custom__conn_orphan(c->slots[i]);
	c->phase = PH_FREEZE;
	hook_request(c, "GET", "/pre-freeze", FREEZE_TIMEOUT_NS);
}

bool custom_pre_stop(struct custom *c)
{
	if (!c->cfg->pre_stop.handler || c->phase != PH_READY)
		return false;
	c->phase = PH_PRESTOP;
	hook_request(c, "GET", "/pre-stop", (int64_t)c->cfg->pre_stop.timeout_s * 1000000000);
	return true;
}

