#define LOG_PREFIX "pool: "
#include "pool.h"
#include "pool_internal.h"
#include "channel.h"
#include "custom.h"
#include "fnsnap.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "reslimit.h"
#include "snapshot/cuda_ckpt.h"
#include "snapshot/snapshot.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Starting instances: cold, or by restore of the function's snapshot, and
 * taking that snapshot (warmup, dump) from the first cold instance. */

static struct instance *new_instance(struct pool *p)
{
	struct instance *in = xcalloc(1, sizeof(*in));
	in->pool = p;
	in->state = I_STARTING;
	in->slots = xcalloc(p->fn->cfg.instance_concurrency, sizeof(*in->slots));
	in->started_ns = now_ns();
	pool__init_ops(in);
	in->proc = (struct instance_proc){ .pid = 0, .pidfd = -1, .channel_fd = -1, .log_fd = -1 };
	p->sh->n_instances++;
	return in;
}

/* Counts a new instance in its pool as starting. */
static void add_instance(struct pool *p, struct instance *in)
{
	in->next = p->instances;
	p->instances = in;
	p->n_live++;
	p->n_starting++;
	pool__gauge_move(in, -1);
}

static void limit_run(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, limit_job));
	const struct config *cfg = &in->pool->fn->cfg;
	reslimit_apply(in->proc.pid, cfg->memory_mb, cfg->cpu, &in->limit_groups);
}

static void limit_done(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, limit_job));
	in->ops--;
	in->cgroups = in->limit_groups;
	pool__maybe_free(in); /* it may have died meanwhile: its group goes with it */
}

/* Puts a running instance under its memorySize and cpu limits, off the start path. */
static void limit_instance(struct instance *in)
{
	in->limit_job = (struct job){ .run = limit_run, .done = limit_done, .sh = in->pool->sh };
	in->ops++;
	jobs_submit(&in->limit_job);
}

static struct instance *start_cold(struct pool *p)
{
	struct function *fn = p->fn;
	struct instance *in = new_instance(p);
	int ret = instance_spawn(server.opt.instance_bin, &fn->cfg, &in->proc);
	if (ret) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot start an instance: %s", strerror(-ret));
		function_set_failed(fn, msg);
		p->last_fail_ns = now_ns();
		free(in->slots);
		free(in);
		p->sh->n_instances--;
		return NULL;
	}
	atomic_fetch_add(&fn->metrics.starts[START_COLD], 1);
	add_instance(p, in);
	pool__watch_instance(in);
	limit_instance(in);
	pr_debug("%s: starting instance pid %d", fn->cfg.name, in->proc.pid);
	return in;
}

/* --- snapshots ---------------------------------------------------------- */

static void restore_run(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, job));
	char why[256];
	/* never start a copy from damaged images: verify first (off the loop) */
	struct function *fn = in->pool->fn;
	int64_t t0 = now_ns();
	in->job_start_ns = t0;
	uint64_t fp = 0;
	/* hash the images only when a file changed since the last whole check */
	in->job_ret = snapshot_fingerprint(fn->snap_dir, &fp);
	if (!in->job_ret && fp != atomic_load(&fn->snap_fingerprint)) {
		in->job_ret = snapshot_verify(fn->snap_dir, why, sizeof(why));
		if (!in->job_ret)
			atomic_store(&fn->snap_fingerprint, fp);
	}
	in->verify_ms = (double)(now_ns() - t0) / 1e6;
	struct snapshot_timing t = { 0 };
	if (in->job_ret)
		pr_err("%s: snapshot refused: %s", in->pool->fn->cfg.name, why);
	else
		in->job_ret = snapshot_restore(in->pool->fn->snap_dir, &in->proc, &t);
	in->criu_ms = t.criu_ms;
	in->job_end_ns = now_ns();
	if (!in->job_ret && fn->cfg.gpu_type) {
		struct cuda_ckpt_timing ct = { 0 };
		int ret = cuda_ckpt_resume(in->proc.pid, &ct);
		if (ret && ret != -ESRCH) {
			in->job_ret = ret;
			instance_destroy(&in->proc);
		}
	}
}

static void restore_done(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, job));
	struct pool *p = in->pool;
	in->ops--;
	if (in->state == I_DEAD || p->sh->stopping) {
		pool__kill_instance(in, 503, "stopped while restoring");
		pool__maybe_free(in);
		return;
	}
	if (in->job_ret) {
		/* a snapshot of an earlier run may predate a rebuild: take a new one;
		 * one of this run that fails means cold starts for good */
		bool retake = p->fn->snap_reused;
		int ready = SNAP_READY; /* fnsnap_drop_others may have made it NONE */
		p->fn->snap_reused = false;
		atomic_compare_exchange_strong(&p->fn->snap_state, &ready, retake ? SNAP_NONE : SNAP_OFF);
		pr_err("%s: restore failed (%s): %s", p->fn->cfg.name, strerror(-in->job_ret),
		       retake ? "taking a new snapshot" : "cold starts from now on");
		pool__kill_instance(in, 503, "restore failed");
		pool__maybe_free(in);
		pool__scale_up(p);
		/* this was the copy that was to make the function ready (or the
		 * last live one): start another, a cold one now, rather than
		 * leave the function not ready until a request comes */
		if (!p->n_live && !p->sh->stopping && !function_removed(p->fn))
			pool__start_instance(p);
		return;
	}
	atomic_fetch_add(&p->fn->metrics.starts[START_RESTORE], 1);
	in->restored_ns = now_ns();
	if (!p->fn->cfg.custom) /* a custom runtime gets POST /thaw/restored (custom.h) */
		channel_put_hdr(&in->pending, CH_RESTORED, 0, 0);
	pool__watch_instance(in);
	pool__flush(in);
	limit_instance(in);
}

static struct instance *start_restore(struct pool *p)
{
	struct instance *in = new_instance(p);
	in->restored = true;
	add_instance(p, in);
	in->job = (struct job){ .run = restore_run, .done = restore_done, .sh = p->sh };
	in->ops++;
	jobs_submit(&in->job);
	return in;
}

/* A restore when the function has a snapshot, a cold start otherwise; none
 * while the snapshot is being taken (the dump finishing starts them). */
struct instance *pool__start_instance(struct pool *p)
{
	if (function_removed(p->fn) || p->fn->broken)
		return NULL;
	switch (atomic_load(&p->fn->snap_state)) {
	case SNAP_TAKING:
		return NULL;
	case SNAP_READY:
		return start_restore(p);
	default:
		return start_cold(p);
	}
}

static void dump_locked(struct instance *in, struct snapshot_info *info)
{
	const char *dir = in->pool->fn->snap_dir;
	/* GPU state first goes to host memory, where CRIU can see it */
	if (in->pool->fn->cfg.gpu_type) {
		struct cuda_ckpt_timing ct = { 0 };
		in->job_ret = cuda_ckpt_suspend(in->proc.pid, 10000, &ct);
		if (in->job_ret == -ESRCH) /* the handler made no CUDA context: CPU only */
			in->job_ret = 0;
		else if (!in->job_ret)
			pr_info("%s: GPU state of pid %d moved to host memory in %.1f ms",
				in->pool->fn->cfg.name, in->proc.pid, ct.total_ms);
		if (in->job_ret)
			return;
	}
	in->job_ret = snapshot_dump(&in->proc, dir, info);
	uint64_t fp;
	/* the manifest was just made from these very files */
	if (!in->job_ret && !snapshot_fingerprint(dir, &fp))
		atomic_store(&in->pool->fn->snap_fingerprint, fp);
	if (!in->job_ret) {
		atomic_store(&in->pool->fn->snap_bytes, info->image_bytes);
		atomic_store(&in->pool->fn->dump_ms, info->dump_ms);
	}
	if (!in->job_ret)
		pr_info("%s: snapshot of pid %d in %s: %.1f MiB in %u files, dump %.1f ms, manifest %.1f ms",
			in->pool->fn->cfg.name, in->proc.pid, dir, (double)info->image_bytes / 1048576.0,
			info->n_files, info->dump_ms, info->manifest_ms);
}

/* criu dump mounts its proc at proc.crtools in the instance's working
 * directory (the daemon's, shared by all): two dumps at once collide. */
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;

static void dump_run(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, job));
	struct snapshot_info info;
	pthread_mutex_lock(&dump_lock);
	dump_locked(in, &info);
	pthread_mutex_unlock(&dump_lock);
}


static void dump_done(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, job));
	struct pool *p = in->pool;
	in->ops--;
	in->snapshotting = false;
	if (function_removed(p->fn) && !in->job_ret) {
		/* removed while dumping: the images are no one's (server_remove
		 * moved the folder aside before criu wrote them) */
		server_rm_rf(p->fn->snap_dir);
		in->job_ret = -ECANCELED;
	}
	atomic_store(&p->fn->snap_state, in->job_ret ? SNAP_OFF : SNAP_READY);
	if (in->job_ret)
		pr_err("%s: snapshot failed (%s): cold starts only", p->fn->cfg.name,
		       strerror(-in->job_ret));
	/* criu stopped the dumped process: its channel EOF retires it */
	if (in->state == I_DEAD) {
		pool__maybe_free(in);
	} else if (!in->job_ret) {
		pool__kill_instance(in, 503, "checkpointed");
	} else {
		function_mark_ready(p->fn); /* it serves on, uncheckpointed */
	}
	unsigned keep = p->fn->cfg.scaling.min_instances ? p->fn->cfg.scaling.min_instances : 1;
	while (!p->sh->stopping && p->n_live < keep && pool__start_instance(p))
		;
	pool__scale_up(p);
	pool__drain_queue(p);
}

void pool__start_dump(struct instance *in)
{
	if (in->custom)
		custom_freeze(in->custom); /* GET /pre-freeze, then pool__dump_now */
	else
		pool__dump_now(in);
}

void pool__dump_now(struct instance *in)
{
	struct function *fn = in->pool->fn;
	server_rm_rf(fn->snap_dir);
	mkdir(server.opt.snapshot_dir, 0700);
	int ret = mkdir(fn->snap_dir, 0700) < 0 ? -errno : fnsnap_write_source(fn);
	if (ret) {
		pr_err("%s: snapshot dir %s: %s", fn->cfg.name, fn->snap_dir, strerror(-ret));
		in->snapshotting = false;
		atomic_store(&fn->snap_state, SNAP_OFF);
		return;
	}
	in->job = (struct job){ .run = dump_run, .done = dump_done, .sh = in->pool->sh };
	in->ops++;
	jobs_submit(&in->job);
}

/* The first cold instance of a function is warmed (fc.yaml warmup) and
 * checkpointed; its copies then serve. */
bool pool__take_snapshot(struct instance *in)
{
	struct function *fn = in->pool->fn;
	int expected = SNAP_NONE;
	if (in->restored || !server.snapshots || !fn->cfg.snapshot)
		return false;
	char why[256];
	if (fn->cfg.gpu_type && cuda_ckpt_probe(why, sizeof(why))) {
		if (atomic_compare_exchange_strong(&fn->snap_state, &expected, SNAP_OFF))
			pr_warn("%s: %s; its instances cold start", fn->cfg.name, why);
		return false;
	}
	if (!atomic_compare_exchange_strong(&fn->snap_state, &expected, SNAP_TAKING))
		return false;
	in->snapshotting = true;
	if (!fn->cfg.has_warmup) {
		pool__start_dump(in);
		return true;
	}
	struct config_warmup *w = &fn->cfg.warmup;
	in->warmup_id = ++in->next_id;
	in->slots[0] = (struct inst_slot){ .id = in->warmup_id, .inv = NULL };
	int before = pool__category(in);
	in->inflight++;
	pool__gauge_move(in, before); /* its answer moves it back: busy must not go negative */
	if (in->custom) {
		struct buf frame = { 0 };
		channel_put_request(&frame, in->warmup_id, w->method, w->path, strlen(w->path), "",
				    0, "warmup", 0, NULL, 0, w->body ? w->body : "", w->body_len);
		custom_send(in->custom, 0, in->warmup_id, frame.data, frame.len);
		buf_free(&frame);
		return true;
	}
	channel_put_request(&in->pending, in->warmup_id, w->method, w->path, strlen(w->path), "",
			    0, "warmup", 0, NULL, 0, w->body ? w->body : "", w->body_len);
	pool__flush(in);
	return true;
}
