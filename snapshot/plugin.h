/*
 * The snapshot plugin descriptor: types only, for snapshot.c and the
 * plugins it runs (cuda_ckpt.c).
 */
#ifndef THAW_SNAPSHOT_PLUGIN_H
#define THAW_SNAPSHOT_PLUGIN_H

#include <stddef.h>
#include <sys/types.h>

/* A snapshot plugin (CRIU's plugin shape, criu-plugin.h): state CRIU cannot
 * see is put where it can before the dump, and given back to each copy
 * after the restore. Each hook returns 0 (done: note says what, for the
 * log), -ENOTSUP ("not mine": this process has none of that state) or
 * another -errno (the dump, or the restore, fails). Plugins that did a
 * dump's pre_dump are named in the snapshot (SNAPSHOT_PLUGINS_NAME); only
 * they run at its restores. */
#define SNAPSHOT_PLUGIN_V1 1
#define SNAPSHOT_PLUGINS_NAME "thaw-plugins"
struct snapshot_plugin {
	unsigned version; /* SNAPSHOT_PLUGIN_V1 */
	const char *name;
	int (*pre_dump)(pid_t pid, char *note, size_t len);
	int (*post_restore)(pid_t pid, char *note, size_t len);
};

#endif
