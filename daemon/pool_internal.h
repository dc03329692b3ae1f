/*
 * Internals shared by pool.c (requests, channel I/O, ending instances) and
 * pool_start.c (cold starts, restores, snapshots). Not for other modules.
 */
#ifndef THAW_POOL_INTERNAL_H
#define THAW_POOL_INTERNAL_H

#include <stdbool.h>

#include "daemon/pool.h"

/* pool.c */
void pool__flush(struct instance *in);
void pool__maybe_free(struct instance *in);
void pool__kill_instance(struct instance *in, int status, const char *why);
int pool__category(const struct instance *in);
void pool__gauge_move(struct instance *in, int before);
void pool__account(struct pool *p);
void pool__scale_up(struct pool *p);
void pool__drain_queue(struct pool *p);
void pool__watch_instance(struct instance *in);
/* Keeps scalingConfig.spareInstances restored copies ahead of demand while
 * the function had traffic within its grace period, none otherwise. */
void pool__keep_spares(struct pool *p);
/* Sets the callbacks of in's channel and log operations. */
void pool__init_ops(struct instance *in);

/* pool_start.c */
/* A restore when the function has a snapshot, a cold start otherwise; NULL
 * while the snapshot is being taken or when nothing could start. */
struct instance *pool__start_instance(struct pool *p);
/* Called on the first READY of a cold instance: warmup and dump when the
 * function should get a snapshot. True when it did (the instance takes no
 * requests meanwhile). */
bool pool__take_snapshot(struct instance *in);
/* The instance answered CH_CHECKPOINT (after the warm-up): dump it now. */
void pool__start_dump(struct instance *in);
/* Sends CH_CHECKPOINT (the handler's before_checkpoint runs); the instance's
 * CH_READY then starts the dump (pool__checkpoint_answered). */
void pool__ask_checkpoint(struct instance *in);
/* The instance answered CH_CHECKPOINT: ready (ok) -> the dump starts;
 * failed -> no snapshot, the instance is killed, a cold one replaces it. */
void pool__checkpoint_answered(struct instance *in, bool ok, const char *msg, size_t len);
/* On the tick: a snapshot that failed is taken again, from an idle cold
 * instance of p, once its back-off is over. */
void pool__retry_snapshot(struct pool *p, int64_t now);
/* A custom runtime answered GET /pre-freeze (or has none): dump it now. */
void pool__dump_now(struct instance *in);

#endif
