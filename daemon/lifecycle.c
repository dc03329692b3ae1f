#define LOG_PREFIX "lifecycle: "
#include "daemon/lifecycle.h"
#include "daemon/fnsnap.h"
#include "common/fsutil.h"
#include "daemon/imagestore.h"
#include "daemon/jobs.h"
#include "daemon/journal.h"
#include "common/log.h"
#include "common/mem.h"
#include "snapshot/cuda_ckpt.h"
#include "daemon/server.h"
#include "daemon/travel.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool replaying; /* lifecycle_replay runs: no journal lines, no drops */

/* A new version, before anyone can see it: its snapshot folder; for a GPU
 * function the daemon pays cuInit once, now and off the loop, not per
 * restore. */
static int prepare(struct function *fn)
{
	fnsnap_init(fn);
	/* none of its own to reuse: one that came with the image, if it fits */
	if (atomic_load(&fn->snap_state) == SNAP_NONE)
		travel_import(fn);
	if (fn->cfg.gpu_type && atomic_load(&fn->snap_state) != SNAP_OFF)
		cuda_ckpt_preload();
	return 0;
}

/* A deploy through the admin API is journaled before it is published: one
 * that cannot be written leaves nothing (and is answered 507). Its error,
 * told apart from a full registry's -ENOSPC (a full disk is one too). */
static _Thread_local int journal_err;

static int prepare_journaled(struct function *fn)
{
	int ret = journal_deploy(fn->cfg.name, fn->version, fn->cfg.dir,
				 fn->image ? fn->image->digest : NULL, fn->deployed_at);
	journal_err = ret;
	if (ret)
		return ret;
	atomic_store(&fn->journaled, true);
	return prepare(fn);
}

int lifecycle_deploy(struct config *cfg, const struct imagestore_image *image,
		     struct function **out, char *why, size_t why_len)
{
	journal_err = 0;
	int ret = registry_add(cfg, image, 0, prepare_journaled, out);
	if (ret && journal_err)
		snprintf(why, why_len,
			 "cannot record the deploy in %s/deployments.jsonl: %s; nothing was deployed",
			 server.opt.state_dir, strerror(-journal_err));
	else if (ret)
		registry_full_why(cfg->name, why, why_len);
	return ret;
}

void lifecycle_ready(struct function *fn)
{
	unsigned replaced;
	bool first = registry_promote(fn, &replaced);
	if (replaced && !replaying)
		fnsnap_drop_others(fn->name, fn->version, replaced);
	if (first && atomic_load(&fn->journaled))
		journal_ready(fn->cfg.name, fn->version);
}

void lifecycle_failed(struct function *fn, const char *msg)
{
	/* a version that never was ready: a restart should know it failed */
	if (registry_fail(fn, msg) && atomic_load(&fn->journaled))
		journal_failed(fn->cfg.name, fn->version, msg);
}

/* Rollbacks and removals are journaled before they take effect, like
 * deploys: one the journal cannot record does not happen. */
static int journal_switch(struct function *to)
{
	return journal_rollback(to->cfg.name, to->version);
}

static int journal_removal(struct fn_name *nm)
{
	return journal_rm(nm->name);
}

int lifecycle_rollback(struct fn_name *nm, unsigned v, struct function **out)
{
	return registry_switch(nm, v, journal_switch, out);
}

static int live_instances(struct function *fn)
{
	int n = 0;
	for (int s = 0; s < INST_STATES; s++)
		n += atomic_load(&fn->metrics.instances[s]);
	return n;
}

/* A removed version's snapshot folder is moved aside at once (a new deploy
 * of the name reuses the folder name) and deleted when its instances are. */
static void removed_snap_dir(struct function *fn, char *out, size_t len)
{
	snprintf(out, len, "%s.removed-%u", fn->snap_dir, fn->index);
}

void lifecycle_removed_gc(struct function *fn)
{
	if (live_instances(fn) || atomic_load(&fn->snap_dropped) ||
	    atomic_exchange(&fn->snap_dropped, true))
		return;
	char dir[sizeof(fn->snap_dir) + 32];
	removed_snap_dir(fn, dir, sizeof(dir));
	if (access(dir, F_OK) == 0) {
		jobs_rm_rf(dir);
		pr_info("%s: version %u's snapshot %s deleted", fn->cfg.name, fn->version, dir);
	}
}

int lifecycle_remove(struct fn_name *nm)
{
	int ret = registry_remove(nm, replaying ? NULL : journal_removal);
	if (ret)
		return ret;
	unsigned nv = atomic_load(&nm->n_versions) - nm->first + 1;
	for (unsigned k = 0; k < nv; k++) {
		struct function *fn = nm->versions[k];
		char dir[sizeof(fn->snap_dir) + 32];
		atomic_store(&fn->snap_state, SNAP_OFF);
		removed_snap_dir(fn, dir, sizeof(dir));
		if (access(fn->snap_dir, F_OK) == 0 && rename(fn->snap_dir, dir) < 0)
			pr_perror("%s: moving %s aside", nm->name, fn->snap_dir);
		lifecycle_removed_gc(fn);
	}
	pr_info("%s removed (%u version(s))", nm->name, nv);
	return 0;
}

int lifecycle_load_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		int err = -errno;
		pr_perror("--functions %s", dir);
		return err;
	}
	int loaded = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[PATH_MAX], err[512];
		snprintf(path, sizeof(path), "%s/%s/fc.yaml", dir, e->d_name);
		if (access(path, F_OK) != 0)
			continue;
		struct config cfg;
		if (config_load(path, &cfg, err, sizeof(err))) {
			pr_err("%s", err);
			continue;
		}
		if (registry_find_name(cfg.name, strlen(cfg.name))) {
			pr_err("%s: a function named %s is loaded already", path, cfg.name);
			config_free(&cfg);
			continue;
		}
		char name[65];
		snprintf(name, sizeof(name), "%s", cfg.name);
		if (registry_add(&cfg, NULL, 0, prepare, NULL)) {
			char why[200];
			registry_full_why(name, why, sizeof(why));
			pr_err("%s: %s", path, why);
			config_free(&cfg);
			continue;
		}
		loaded++;
	}
	closedir(d);
	return loaded;
}

/* --- replay --------------------------------------------------------------- */

/* A version of name that cannot be started (its deploy, from folder dir or
 * NULL for an image, cannot be loaded again): failed with why, so the
 * versions after it keep their numbers. */
static int add_placeholder(const char *name, const char *dir, const char *why,
			   unsigned version, struct function **out)
{
	struct config cfg;
	config_defaults(&cfg);
	cfg.name = xstrdup(name);
	cfg.handler = xstrdup("");
	cfg.dir = xstrdup(dir ? dir : "");
	cfg.snapshot = false;
	struct function *fn;
	int ret = registry_add(&cfg, NULL, version, prepare, &fn);
	if (ret) {
		config_free(&cfg);
		return ret;
	}
	fn->broken = true;
	free(fn->changes);
	fn->changes = xstrdup("[]");
	registry_fail(fn, why);
	*out = fn;
	return 0;
}

/* A deploy line: the version again, or, when its folder or image cannot be
 * loaded now, a placeholder that keeps its number and says why. */
static int replay_deploy(const struct journal_line *e)
{
	char path[PATH_MAX], err[512];
	struct config cfg;
	struct imagestore_image img;
	struct function *fn;
	int rc;
	if (!e->dir && !e->image)
		return -EINVAL;
	if (e->image) {
		rc = imagestore_load(e->image, &cfg, &img, err, sizeof(err));
	} else {
		snprintf(path, sizeof(path), "%s/fc.yaml", e->dir);
		rc = config_load(path, &cfg, err, sizeof(err));
	}
	if (!rc && strcmp(cfg.name, e->name)) {
		snprintf(err, sizeof(err), "%.200s now names function %s", e->image ? e->image : path,
			 cfg.name);
		config_free(&cfg);
		rc = -EINVAL;
	}
	if (rc) {
		pr_err("cannot redeploy %s: %s", e->name, err);
		char why[600];
		snprintf(why, sizeof(why), "cannot be loaded again after a restart: %s", err);
		rc = add_placeholder(e->name, e->dir, why, e->number, &fn);
	} else if ((rc = registry_add(&cfg, e->image ? &img : NULL, e->number, prepare, &fn))) {
		config_free(&cfg);
	}
	if (rc)
		return rc;
	atomic_store(&fn->journaled, true);
	if (fn->version != e->number)
		pr_warn("%s: journal line makes version %u, registered as version %u", e->name,
			e->number, fn->version);
	if (e->time)
		fn->deployed_at = e->time;
	return 0;
}

static int replay_line(const struct journal_line *e)
{
	struct fn_name *nm = registry_find_name(e->name, strlen(e->name));
	struct function *fn = nm && e->version ? fn_name_version(nm, e->version) : NULL;
	if (!strcmp(e->op, "deploy"))
		return replay_deploy(e);
	if (fn && (!strcmp(e->op, "ready") || !strcmp(e->op, "failed"))) {
		/* about a version a deploy line made: a --functions one is loaded
		 * anew each start, a placeholder has its own error */
		if (atomic_load(&fn->journaled) && !fn->broken) {
			if (!strcmp(e->op, "ready"))
				lifecycle_ready(fn);
			else
				lifecycle_failed(fn, e->error ? e->error : "failed before a restart");
		}
		return 0;
	}
	if (nm && e->version && !strcmp(e->op, "rollback")) {
		struct function *to;
		return registry_switch(nm, e->version, NULL, &to);
	}
	if (!strcmp(e->op, "rm"))
		return nm ? lifecycle_remove(nm) : -ENOENT;
	return -EINVAL;
}

int lifecycle_replay(void)
{
	struct journal_line *lines;
	size_t n;
	unsigned retired;
	int ret = journal_read(&lines, &n, &retired);
	if (ret)
		return ret;
	int applied = 0;
	replaying = true;
	journal_mute(true);
	for (size_t i = 0; i < n; i++) {
		if (lines[i].skip)
			continue;
		/* an rm of a name never started again is already in effect */
		if (!strcmp(lines[i].op, "rm") &&
		    !registry_find_name(lines[i].name, strlen(lines[i].name)))
			continue;
		if (!replay_line(&lines[i]))
			applied++;
		else
			pr_warn("journal line %zu skipped: %s %s version %u", i + 1, lines[i].op,
				lines[i].name, lines[i].number ? lines[i].number : lines[i].version);
	}
	journal_mute(false);
	replaying = false;
	if (retired)
		pr_info("%u old version(s) retired: each name keeps its newest %d", retired,
			JOURNAL_KEEP_VERSIONS);
	journal_lines_free(lines, n);
	return applied;
}
