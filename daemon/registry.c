#define LOG_PREFIX "registry: "
#include "daemon/registry.h"
#include "daemon/imagestore.h"
#include "daemon/history.h"
#include "common/log.h"
#include "common/mem.h"
#include "daemon/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INDEX_SLOTS (2 * MAX_NAMES) /* a power of two, at most half full */

static uint32_t name_hash(const char *name, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 16777619u;
	return h;
}

/* A removed name and its later redeploy are two tables of the same name:
 * both are in the index, only the live one is found. */
struct fn_name *registry_find_name(const char *name, size_t len)
{
	uint32_t h = name_hash(name, len);
	for (unsigned i = 0; i < INDEX_SLOTS; i++) {
		struct fn_name *nm = atomic_load(&server.name_index[(h + i) & (INDEX_SLOTS - 1)]);
		if (!nm)
			return NULL;
		if (!atomic_load(&nm->removed) && strlen(nm->name) == len &&
		    memcmp(nm->name, name, len) == 0)
			return nm;
	}
	return NULL;
}

/* Under the registry lock. */
static void index_add(struct fn_name *nm)
{
	uint32_t h = name_hash(nm->name, strlen(nm->name));
	for (unsigned i = 0; i < INDEX_SLOTS; i++) {
		_Atomic(struct fn_name *) *slot = &server.name_index[(h + i) & (INDEX_SLOTS - 1)];
		if (!atomic_load(slot)) {
			atomic_store(slot, nm);
			return;
		}
	}
}

struct function *registry_find_function(const char *name, size_t len)
{
	struct fn_name *nm = registry_find_name(name, len);
	if (!nm)
		return NULL;
	struct function *cur = atomic_load(&nm->current);
	return cur ? cur : fn_name_newest(nm);
}

struct function *registry_find_version(const char *name, size_t len, unsigned v)
{
	struct fn_name *nm = registry_find_name(name, len);
	return nm ? fn_name_version(nm, v) : NULL;
}

bool registry_promote(struct function *fn, unsigned *replaced)
{
	atomic_store(&fn->state, FN_READY);
	pthread_mutex_lock(&server.registry_lock);
	struct fn_name *nm = fn->name;
	bool first = !fn->promoted;
	*replaced = 0;
	if (first && !nm->pinned && fn_name_newest(nm) == fn) {
		struct function *old = atomic_load(&nm->current);
		if (!old || old->version < fn->version) {
			atomic_store(&nm->current, fn);
			pr_info("%s: version %u serves", nm->name, fn->version);
			*replaced = old ? old->version : 0;
		}
	}
	fn->promoted = true;
	pthread_mutex_unlock(&server.registry_lock);
	return first;
}

int registry_switch(struct fn_name *nm, unsigned v, int (*commit)(struct function *to),
		    struct function **out)
{
	pthread_mutex_lock(&server.registry_lock);
	int ret = 0;
	struct function *cur = atomic_load(&nm->current), *to = NULL;
	unsigned nv = atomic_load(&nm->n_versions);
	if (v == 0) { /* the newest ready version older than the current one */
		for (unsigned i = cur ? cur->version - 1 : nv; i >= nm->first && !to; i--)
			if (atomic_load(&fn_name_version(nm, i)->state) == FN_READY)
				to = fn_name_version(nm, i);
		if (!to)
			ret = -ENOENT;
	} else if (!(to = fn_name_version(nm, v))) {
		ret = -ENOENT;
	} else if (atomic_load(&to->state) == FN_FAILED) {
		ret = -EAGAIN;
	}
	if (!ret && commit)
		ret = commit(to);
	if (!ret) {
		atomic_store(&nm->current, to);
		nm->pinned = true;
		pr_info("%s: rolled back to version %u", nm->name, to->version);
		*out = to;
	}
	pthread_mutex_unlock(&server.registry_lock);
	return ret;
}

int registry_remove(struct fn_name *nm, int (*commit)(struct fn_name *nm))
{
	pthread_mutex_lock(&server.registry_lock);
	int ret = atomic_load(&nm->removed) ? -ENOENT : commit ? commit(nm) : 0;
	if (!ret)
		atomic_store(&nm->removed, true);
	pthread_mutex_unlock(&server.registry_lock);
	if (ret)
		return ret;
	fnlog_close(&nm->log);
	return 0;
}

/* Undoes an add that prepare refused: cfg back to the caller. */
static void unmake(struct function *fn, struct fn_name *new_name, struct config *cfg)
{
	*cfg = fn->cfg;
	free(fn->handler_path);
	free(fn->image);
	free(fn->changes);
	pthread_mutex_destroy(&fn->lock);
	free(fn);
	free(new_name);
}

int registry_add(struct config *cfg, const struct imagestore_image *image, unsigned version,
		 int (*prepare)(struct function *fn), struct function **out)
{
	pthread_mutex_lock(&server.registry_lock);
	int ret = 0;
	unsigned n = atomic_load(&server.n_functions);
	struct fn_name *nm = registry_find_name(cfg->name, strlen(cfg->name));
	if (n == MAX_FUNCTIONS || (!nm && atomic_load(&server.n_names) == MAX_NAMES) ||
	    (nm && atomic_load(&nm->n_versions) - nm->first + 1 == MAX_VERSIONS)) {
		ret = -ENOSPC;
		goto unlock;
	}
	bool new_name = !nm;
	if (new_name) { /* published below, with its first version */
		nm = xcalloc(1, sizeof(*nm));
		snprintf(nm->name, sizeof(nm->name), "%s", cfg->name);
		fnlog_init_name(&nm->log);
		nm->first = version ? version : 1;
		atomic_store(&nm->n_versions, nm->first - 1);
	}
	struct function *fn = xcalloc(1, sizeof(*fn));
	fn->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	fn->handler_path = fn->cfg.handler[0] == '/'
				   ? xstrdup(fn->cfg.handler)
				   : xasprintf("%s/%s", fn->cfg.dir, fn->cfg.handler);
	if (image) {
		fn->image = xmalloc(sizeof(*image));
		*fn->image = *image;
	}
	fn->index = n;
	fn->name = nm;
	fn->version = atomic_load(&nm->n_versions) + 1;
	/* what changed since the newest version that could be loaded */
	struct function *prev = NULL;
	for (unsigned v = fn->version - 1; v >= nm->first && !prev; v--)
		prev = fn_name_version(nm, v)->broken ? NULL : fn_name_version(nm, v);
	fn->changes = history_changes(prev, fn);
	fn->deployed_at = (int64_t)time(NULL);
	pthread_mutex_init(&fn->lock, NULL);
	atomic_store(&fn->state, FN_STARTING);
	if (prepare && (ret = prepare(fn))) {
		unmake(fn, new_name ? nm : NULL, cfg);
		goto unlock;
	}
	server.functions[n] = fn;
	nm->versions[fn->version - nm->first] = fn;
	nm->pinned = false; /* a new deploy takes over once ready */
	/* publish after the slots are filled */
	atomic_store(&nm->n_versions, fn->version);
	atomic_store(&server.n_functions, n + 1);
	if (new_name) {
		server.names[atomic_load(&server.n_names)] = nm;
		atomic_fetch_add(&server.n_names, 1);
		index_add(nm);
	}
	if (out)
		*out = fn;
unlock:
	pthread_mutex_unlock(&server.registry_lock);
	return ret;
}

void registry_full_why(const char *name, char *out, size_t len)
{
	struct fn_name *nm = registry_find_name(name, strlen(name));
	if (nm && atomic_load(&nm->n_versions) - nm->first + 1 >= MAX_VERSIONS)
		snprintf(out, len, "function %s has %u versions, the most a name keeps: thaw rm %s frees them",
			 name, MAX_VERSIONS, name);
	else if (!nm && atomic_load(&server.n_names) >= MAX_NAMES)
		snprintf(out, len, "the daemon holds %u function names, the most it keeps (removed ones count until it restarts)",
			 MAX_NAMES);
	else
		snprintf(out, len, "the daemon holds %u versions, the most it keeps (those of removed functions count until it restarts)",
			 MAX_FUNCTIONS);
}

bool registry_fail(struct function *fn, const char *msg)
{
	pthread_mutex_lock(&fn->lock);
	snprintf(fn->init_error, sizeof(fn->init_error), "%s", msg);
	pthread_mutex_unlock(&fn->lock);
	/* a function with a working instance elsewhere stays ready */
	int ready = atomic_load(&fn->metrics.instances[INST_IDLE]) +
		    atomic_load(&fn->metrics.instances[INST_BUSY]);
	if (ready)
		return false;
	atomic_store(&fn->state, FN_FAILED);
	pthread_mutex_lock(&server.registry_lock);
	bool first = !fn->promoted && !fn->fail_journaled;
	fn->fail_journaled = true;
	pthread_mutex_unlock(&server.registry_lock);
	return first;
}

void function_error(struct function *fn, char *out, size_t len)
{
	pthread_mutex_lock(&fn->lock);
	snprintf(out, len, "%s", fn->init_error[0] ? fn->init_error : "no instance available");
	pthread_mutex_unlock(&fn->lock);
}
