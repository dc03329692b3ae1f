#define LOG_PREFIX "snapshots: "
#include "daemon/fnsnap.h"
#include "common/buf.h"
#include "common/channel.h"
#include "common/fsutil.h"
#include "daemon/imagestore.h"
#include "daemon/jobs.h"
#include "common/log.h"
#include "common/mem.h"
#include "snapshot/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* path's identity: a rebuilt or edited file changes it */
static void add_file(struct buf *b, const char *what, const char *path)
{
	struct stat st;
	if (stat(path, &st))
		buf_printf(b, "%s %s missing\n", what, path);
	else
		buf_printf(b, "%s %s %lld %lld.%09ld %llu:%llu\n", what, path,
			   (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
			   (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

static void source_of(struct function *fn)
{
	struct buf b = {0};
	add_file(&b, "instance", server.opt.instance_bin);
	if (fn->cfg.custom && fn->cfg.snapshot_memory.mapped) {
		/* its processes map the agent: a rebuilt one invalidates the snapshot */
		const char *slash = strrchr(server.opt.instance_bin, '/');
		char *p = xasprintf("%.*s/%s", slash ? (int)(slash - server.opt.instance_bin) : 1,
				    slash ? server.opt.instance_bin : ".", CHANNEL_AGENT_SO);
		add_file(&b, "agent", p);
		free(p);
	}
	if (fn->image) {
		/* the image's files are immutable once unpacked */
		buf_printf(&b, "image %s\n", fn->image->digest);
	} else {
		char *p = xasprintf("%s/fc.yaml", fn->cfg.dir);
		add_file(&b, "config", p);
		free(p);
		add_file(&b, "handler", fn->handler_path);
		for (size_t i = 0; i < fn->cfg.n_model_files; i++) {
			p = xasprintf("%s/%s", fn->cfg.dir, fn->cfg.model_files[i]);
			add_file(&b, "model", p);
			free(p);
		}
	}
	unsigned char md[32];
	unsigned len = 0;
	EVP_Digest(b.data, b.len, md, &len, EVP_sha256(), NULL);
	for (unsigned i = 0; i < 32; i++)
		snprintf(fn->snap_source + 2 * i, 3, "%02x", md[i]);
	buf_free(&b);
}

/* Whether dir's snapshot was made from what fn starts from. */
static bool same_source(const struct function *fn, const char *dir)
{
	char path[sizeof(fn->snap_dir) + 32], got[sizeof(fn->snap_source)] = "";
	snprintf(path, sizeof(path), "%s/%s", dir, FNSNAP_SOURCE_NAME);
	return fs_read_text(path, got, sizeof(got)) >= 0 && !strcmp(got, fn->snap_source);
}

void fnsnap_init(struct function *fn)
{
	char why[256];
	uint64_t fp;
	snprintf(fn->snap_dir, sizeof(fn->snap_dir), "%s/%s-v%u", server.opt.snapshot_dir,
		 fn->cfg.name, fn->version);
	source_of(fn);
	atomic_store(&fn->snap_state, server.snapshots && fn->cfg.snapshot ? SNAP_NONE : SNAP_OFF);
	if (atomic_load(&fn->snap_state) != SNAP_NONE || access(fn->snap_dir, F_OK) != 0)
		return;
	if (!same_source(fn, fn->snap_dir)) {
		pr_info("%s: not reusing %s: made from another image, configuration or build",
			fn->cfg.name, fn->snap_dir);
		fs_rm_rf(fn->snap_dir);
		return;
	}
	if (snapshot_verify(fn->snap_dir, why, sizeof(why)) ||
	    snapshot_fingerprint(fn->snap_dir, &fp)) {
		pr_info("%s: not reusing %s: %s", fn->cfg.name, fn->snap_dir, why);
		fs_rm_rf(fn->snap_dir);
		return;
	}
	atomic_store(&fn->snap_fingerprint, fp);
	atomic_store(&fn->snap_state, SNAP_READY);
	fn->snap_reused = true;
	pr_info("%s: version %u reuses its snapshot %s", fn->cfg.name, fn->version, fn->snap_dir);
}

int fnsnap_write_source(const struct function *fn)
{
	char path[sizeof(fn->snap_dir) + 32];
	snprintf(path, sizeof(path), "%s/%s", fn->snap_dir, FNSNAP_SOURCE_NAME);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), ret = 0;
	if (fd < 0)
		return -errno;
	size_t len = strlen(fn->snap_source);
	if (write(fd, fn->snap_source, len) != (ssize_t)len)
		ret = errno ? -errno : -EIO;
	close(fd);
	return ret;
}

void fnsnap_drop_others(struct fn_name *nm, unsigned keep, unsigned replaced)
{
	for (unsigned v = nm->first; v < keep; v++) {
		struct function *fn = fn_name_version(nm, v);
		int ready = SNAP_READY;
		if (v == replaced)
			continue;
		/* restored copies do not use the images: only starts to come do,
		 * and those now take a new snapshot first */
		if (!atomic_compare_exchange_strong(&fn->snap_state, &ready, SNAP_NONE))
			continue;
		fn->snap_reused = false;
		jobs_rm_rf(fn->snap_dir);
		pr_info("%s: version %u's snapshot deleted: only the serving version and the one "
			"it replaced keep theirs",
			nm->name, v);
	}
}

static bool all_digits(const char *s)
{
	return *s && strspn(s, "0123456789") == strlen(s);
}

/* Whether name is a version's folder, <function name>-v<N>, or one that
 * lifecycle_remove moved aside, <...>.removed-<index> (a function name holds
 * no '.'). */
static bool is_snapshot_folder(const char *name)
{
	size_t base = strcspn(name, "."), i = base;
	if (name[base] && (strncmp(name + base, ".removed-", 9) || !all_digits(name + base + 9)))
		return false;
	while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9')
		i--;
	return i < base && i >= 3 && name[i - 1] == 'v' && name[i - 2] == '-';
}

void fnsnap_sweep(void)
{
	DIR *d = opendir(server.opt.snapshot_dir);
	if (!d)
		return;
	unsigned n = atomic_load(&server.n_functions), dropped = 0;
	struct dirent *e;
	for (unsigned guard = 0; (e = readdir(d)) && guard < 100000; guard++) {
		if (e->d_name[0] == '.' || !is_snapshot_folder(e->d_name))
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", server.opt.snapshot_dir, e->d_name);
		bool used = false;
		for (unsigned i = 0; i < n && !used; i++)
			used = !function_removed(server.functions[i]) &&
			       !server.functions[i]->broken &&
			       !strcmp(server.functions[i]->snap_dir, path);
		if (!used) {
			fs_rm_rf(path);
			dropped++;
		}
	}
	closedir(d);
	if (dropped)
		pr_info("deleted %u snapshot folder(s) no version uses", dropped);
}
