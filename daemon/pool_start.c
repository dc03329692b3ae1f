#define LOG_PREFIX "pool: "
#include "daemon/pool.h"
#include "daemon/pool_internal.h"
#include "common/channel.h"
#include "daemon/custom.h"
#include "daemon/fnsnap.h"
#include "daemon/travel.h"
#include "common/fsutil.h"
#include "daemon/lifecycle.h"
#include "common/log.h"
#include "daemon/loop.h"
#include "common/mem.h"
#include "proc/reslimit.h"
#include "snapshot/cuda_ckpt.h"
#include "snapshot/snapshot.h"
#include "snapshot/snapmem.h"
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

/* A failed dump (a full snapshot folder) or restore is tried again after a
 * back-off, instances cold starting meanwhile: dumps after 30 s, doubling,
 * SNAP_MAX_DUMP_TRIES in all; restores after 1 s, doubling, and after
 * SNAP_MAX_RESTORE_TRIES in a row the snapshot is taken anew. The base of
 * both is THAW_SNAPSHOT_RETRY_MS when set (tests). */
#define SNAP_MAX_DUMP_TRIES 4
#define SNAP_MAX_RESTORE_TRIES 3

static int64_t retry_after_ns(unsigned failures, int64_t base_ms)
{
	static int64_t env_ms = -1;
	if (env_ms < 0) {
		const char *e = getenv("THAW_SNAPSHOT_RETRY_MS");
		env_ms = e && *e ? strtoll(e, NULL, 10) : 0;
	}
	int64_t ms = (env_ms > 0 ? env_ms : base_ms) << (failures > 6 ? 6 : failures - 1);
	return now_ns() + ms * 1000000;
}

/* A dump of fn failed (err): cold starts, and a later try while tries are
 * left (pool__retry_snapshot). The version serves on, uncheckpointed. */
static void dump_failed(struct function *fn, int err)
{
	unsigned n = atomic_fetch_add(&fn->dump_failures, 1) + 1;
	atomic_fetch_add(&fn->metrics.snapshot_failures[0], 1);
	if (n < SNAP_MAX_DUMP_TRIES) {
		int64_t at = retry_after_ns(n, 30000);
		atomic_store(&fn->snap_retry_ns, at);
		atomic_store(&fn->snap_state, SNAP_NONE);
		pr_err("%s: snapshot failed (%s): cold starts; trying again in %.0f s", fn->cfg.name,
		       strerror(-err), (double)(at - now_ns()) / 1e9);
	} else {
		atomic_store(&fn->snap_state, SNAP_OFF);
		pr_err("%s: snapshot failed (%s), %u times: cold starts only", fn->cfg.name,
		       strerror(-err), n);
	}
}

static struct instance *new_instance(struct pool *p)
{
	struct instance *in = xcalloc(1, sizeof(*in));
	in->pool = p;
	in->state = I_STARTING;
	in->slots = xcalloc(p->fn->cfg.instance_concurrency, sizeof(*in->slots));
	in->started_ns = now_ns();
	pool__init_ops(in);
	in->proc = (struct instance_proc){ .pid = 0, .pidfd = -1, .channel_fd = -1, .log_fd = -1 };
	in->mem_fd = -1;
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
	reslimit_apply(in->proc.pid, cfg->memory_mb, cfg->cpu, &in->job_groups);
}

static void limit_done(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, limit_job));
	in->ops--;
	in->cgroups = in->job_groups;
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
	/* groups first (~0.1 ms each): the instance joins them itself before
	 * it execs, so it never runs outside memorySize and cpu; when they
	 * cannot be made, the limit job moves it in later, as for restores */
	bool joined = reslimit_prepare(fn->cfg.memory_mb, fn->cfg.cpu, &in->cgroups) == 0;
	int ret = instance_spawn_in(server.opt.instance_bin, &fn->cfg, joined ? &in->cgroups : NULL,
				    &in->proc);
	if (ret) {
		reslimit_release(&in->cgroups);
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot start an instance: %s", strerror(-ret));
		lifecycle_failed(fn, msg);
		p->last_fail_ns = now_ns();
		free(in->slots);
		free(in);
		p->sh->n_instances--;
		return NULL;
	}
	atomic_fetch_add(&fn->metrics.starts[START_COLD], 1);
	add_instance(p, in);
	pool__watch_instance(in);
	if (!joined) {
		reslimit_release(&in->cgroups);
		in->cgroups = (struct reslimit_groups){ 0 };
		limit_instance(in);
	}
	pr_debug("%s: starting instance pid %d", fn->cfg.name, in->proc.pid);
	return in;
}

/* --- snapshots ---------------------------------------------------------- */

static void restore_run(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, job));
	char why[256] = "";
	/* never start a copy from damaged images: verify first (off the loop) */
	struct function *fn = in->pool->fn;
	int64_t t0 = now_ns();
	in->job_start_ns = t0;
	uint64_t fp = 0;
	/* hash the images only when a file changed since the last whole check */
	in->job_ret = snapshot_fingerprint(fn->snap_dir, &fp);
	if (in->job_ret) /* e.g. the folder was deleted under us */
		snprintf(why, sizeof(why), "%.200s: %s", fn->snap_dir, strerror(-in->job_ret));
	if (!in->job_ret && fp != atomic_load(&fn->snap_fingerprint)) {
		in->job_ret = snapshot_verify(fn->snap_dir, why, sizeof(why));
		if (!in->job_ret)
			atomic_store(&fn->snap_fingerprint, fp);
	}
	in->verify_ms = (double)(now_ns() - t0) / 1e6;
	struct snapshot_timing t = { 0 };
	/* the copy is born in its own groups and every page criu restores is
	 * charged under memorySize (v1 never moves charges): a criu started
	 * ahead was born in groups that become the copy's (moving a process,
	 * or removing a group, waits an RCU grace period, ~7-10 ms here); an
	 * exec'd one runs in groups made for it. The cpu limit comes right
	 * after criu returns, before CH_RESTORED lets the copy run handler
	 * code: criu's own work (~20 ms of CPU) is then not throttled by a
	 * small cpu quota (cpu 0.1 made restores 2-8x slower) */
	struct snapshot_groups g = { .memory_mb = fn->cfg.memory_mb, .cpu = fn->cfg.cpu };
	if (in->job_ret)
		pr_err("%s: snapshot refused: %s", in->pool->fn->cfg.name, why);
	else
		in->job_ret = snapshot_restore_in(in->pool->fn->snap_dir, &g, &in->proc, &t);
	in->job_groups = g.groups; /* released with the instance, restored or not */
	if (!in->job_ret && g.born && reslimit_limit_cpu(&g.groups, fn->cfg.cpu)) {
		pr_warn("%s: restored pid %d: no cpu limit in %s: runs without it", fn->cfg.name,
			(int)in->proc.pid, g.groups.cpu);
	} else if (!in->job_ret && !g.born && g.groups.cpu[0] &&
		   reslimit_move(in->proc.pid, g.groups.cpu)) {
		pr_warn("%s: restored pid %d: cpu group %s refused it: runs without the cpu limit",
			fn->cfg.name, (int)in->proc.pid, g.groups.cpu);
	}
	in->criu_ms = t.criu_ms;
	in->criu_ahead = t.criu_ahead;
	in->job_end_ns = now_ns();
	if (!in->job_ret && t.plugins[0]) /* GPU state back: tests/bench/gpu_restore.py reads it */
		pr_info("%s: %s", fn->cfg.name, t.plugins);
}

static void restore_done(struct job *j)
{
	struct instance *in = (struct instance *)((char *)j - offsetof(struct instance, job));
	struct pool *p = in->pool;
	in->ops--;
	in->cgroups = in->job_groups;
	if (in->state == I_DEAD || p->sh->stopping) {
		pool__kill_instance(in, 503, "stopped while restoring");
		pool__maybe_free(in);
		return;
	}
	if (in->job_ret) {
		/* a snapshot of an earlier run may predate a rebuild: take a new
		 * one; one of this run that fails may be passing trouble (seen:
		 * cgroupd once on a fresh machine): cold starts for a while,
		 * then restores again, and a new snapshot after a few in a row */
		struct function *fn = p->fn;
		unsigned n = atomic_fetch_add(&fn->restore_failures, 1) + 1;
		atomic_fetch_add(&fn->metrics.snapshot_failures[1], 1);
		bool retake = fn->snap_reused || n >= SNAP_MAX_RESTORE_TRIES;
		int ready = SNAP_READY; /* fnsnap_drop_others may have made it NONE */
		fn->snap_reused = false;
		if (retake) {
			atomic_store(&fn->restore_failures, 0);
			atomic_store(&fn->snap_retry_ns, 0);
			atomic_compare_exchange_strong(&fn->snap_state, &ready, SNAP_NONE);
			pr_err("%s: restore failed (%s): taking a new snapshot", fn->cfg.name,
			       strerror(-in->job_ret));
		} else {
			int64_t at = retry_after_ns(n, 1000);
			atomic_store(&fn->snap_retry_ns, at);
			pr_err("%s: restore failed (%s, %u in a row): cold starts, restores again in %.1f s",
			       fn->cfg.name, strerror(-in->job_ret), n, (double)(at - now_ns()) / 1e9);
		}
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
	atomic_store(&p->fn->restore_failures, 0);
	in->restored_ns = now_ns();
	if (!p->fn->cfg.custom) /* a custom runtime gets POST /thaw/restored (custom.h) */
		channel_put_hdr(&in->pending, CH_RESTORED, 0, 0);
	pool__watch_instance(in);
	pool__flush(in);
	if (!in->cgroups.mem[0] && !in->cgroups.cpu[0])
		limit_instance(in); /* no groups could be made ahead: moved in late */
}

static struct instance *start_restore(struct pool *p)
{
	struct instance *in = new_instance(p);
	in->restored = true;
	/* its groups come with the restore (restore_run), off the loop */
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
		/* after a failed restore, cold starts until the back-off ends */
		if (now_ns() < atomic_load(&p->fn->snap_retry_ns))
			return start_cold(p);
		return start_restore(p);
	default:
		return start_cold(p);
	}
}

static void dump_locked(struct instance *in, struct snapshot_info *info)
{
	const char *dir = in->pool->fn->snap_dir;
	/* large anonymous memory into files of the snapshot, mapped back
	 * privately: CRIU then records mappings, not pages (snapshot/snapmem.h) */
	const struct config *c = &in->pool->fn->cfg;
	struct snapshot_mem_opts mo = { .mapped = c->snapshot_memory.mapped,
					.min_bytes = c->snapshot_memory.min_bytes,
					.populate = c->snapshot_memory.populate };
	/* GPU state goes to host memory inside the dump (snapshot plugins),
	 * then the memory moves */
	/* where and from what (daemon/travel.h): hashes and criu --version, so
	 * here in the job rather than on the loop */
	in->job_ret = travel_write_node(in->pool->fn, dir);
	if (in->job_ret) {
		memset(info, 0, sizeof(*info));
		pr_err("%s: %s/%s: %s", c->name, dir, TRAVEL_NODE_NAME, strerror(-in->job_ret));
		return;
	}
	/* a custom runtime's processes move theirs with the agent they were
	 * started with, only when mapped is on (proc/instance.h) */
	in->job_ret = snapshot_dump(&in->proc, dir, in->custom && !mo.mapped ? NULL : &mo, info);
	if (info->plugins[0])
		pr_info("%s: %s", c->name, info->plugins);
	if (info->mem.moved)
		pr_info("%s: %.1f MiB in %u mappings moved into memory files in %.1f ms", c->name,
			(double)info->mem.bytes / 1048576.0, info->mem.moved, info->mem.ms);
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
		/* removed while dumping: the images are no one's (lifecycle_remove
		 * moved the folder aside before criu wrote them) */
		jobs_rm_rf(p->fn->snap_dir);
		in->job_ret = -ECANCELED;
	}
	if (in->job_ret == -ECANCELED) {
		atomic_store(&p->fn->snap_state, SNAP_OFF);
	} else if (in->job_ret) {
		dump_failed(p->fn, in->job_ret);
	} else {
		atomic_store(&p->fn->dump_failures, 0);
		atomic_store(&p->fn->snap_state, SNAP_READY);
	}
	/* criu stopped the dumped process: its channel EOF retires it */
	if (in->state == I_DEAD) {
		pool__maybe_free(in);
	} else if (!in->job_ret) {
		pool__kill_instance(in, 503, "checkpointed");
	} else {
		lifecycle_ready(p->fn); /* it serves on, uncheckpointed */
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
	fs_rm_rf(fn->snap_dir);
	mkdir(server.opt.snapshot_dir, 0700);
	int ret = mkdir(fn->snap_dir, 0700) < 0 ? -errno : fnsnap_write_source(fn);
	if (ret) {
		/* a full snapshot folder: the version serves from this
		 * instance, uncheckpointed, as when criu fails, and the
		 * snapshot is tried again later */
		pr_err("%s: snapshot dir %s: %s", fn->cfg.name, fn->snap_dir, strerror(-ret));
		fs_rm_rf(fn->snap_dir);
		in->snapshotting = false;
		dump_failed(fn, ret);
		if (in->state != I_DEAD)
			lifecycle_ready(fn);
		pool__drain_queue(in->pool);
		return;
	}
	in->job = (struct job){ .run = dump_run, .done = dump_done, .sh = in->pool->sh };
	in->ops++;
	jobs_submit(&in->job);
}

void pool__ask_checkpoint(struct instance *in)
{
	if (in->custom) { /* no channel: GET /pre-freeze is its hook */
		pool__start_dump(in);
		return;
	}
	in->checkpoint_asked = true;
	channel_put_hdr(&in->pending, CH_CHECKPOINT, 0, 0);
	pool__flush(in);
}

void pool__checkpoint_answered(struct instance *in, bool ok, const char *msg, size_t len)
{
	struct pool *p = in->pool;
	in->checkpoint_asked = false;
	if (ok) {
		pool__start_dump(in);
		return;
	}
	pr_err("%s: before_checkpoint failed: %.*s: no snapshot, cold starts only", p->fn->cfg.name,
	       (int)(len > 400 ? 400 : len), msg);
	in->snapshotting = false;
	atomic_store(&p->fn->snap_state, SNAP_OFF);
	pool__kill_instance(in, 503, "before_checkpoint failed");
	if (!p->sh->stopping && !function_removed(p->fn))
		pool__start_instance(p);
}

/* The first cold instance of a function is warmed (fc.yaml warmup) and
 * checkpointed; its copies then serve. */
bool pool__take_snapshot(struct instance *in)
{
	struct function *fn = in->pool->fn;
	int expected = SNAP_NONE;
	if (in->restored || !server.snapshots || !fn->cfg.snapshot ||
	    now_ns() < atomic_load(&fn->snap_retry_ns))
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
		pool__ask_checkpoint(in);
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

void pool__retry_snapshot(struct pool *p, int64_t now)
{
	struct function *fn = p->fn;
	if (!atomic_load(&fn->dump_failures) || atomic_load(&fn->snap_state) != SNAP_NONE ||
	    now < atomic_load(&fn->snap_retry_ns) || p->q_len)
		return;
	for (struct instance *in = p->instances; in; in = in->next)
		if (in->state == I_READY && !in->restored && !in->inflight && !in->snapshotting) {
			pr_info("%s: trying the snapshot again", fn->cfg.name);
			pool__take_snapshot(in);
			return;
		}
}
