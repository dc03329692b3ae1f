#define LOG_PREFIX "snapshots: "
#include "daemon/travel.h"
#include "common/channel.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/mem.h"
#include "snapshot/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define NODE_MAX (16u << 10) /* a thaw-node file; cpu flags are ~1.5 KiB */
#define MAX_SNAPSHOT_FILES 10000

/* SHA-256 of a file's bytes, fed into md; -errno when it cannot be read. */
static int hash_file(EVP_MD_CTX *md, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char buf[1 << 16];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(md, buf, (size_t)n);
	int ret = n < 0 ? -errno : 0;
	close(fd);
	return ret;
}

static void hex(const unsigned char *md, unsigned n, char *out)
{
	for (unsigned i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static pthread_once_t build_once = PTHREAD_ONCE_INIT;
static char build_id_text[72];

static void build_id_init(void)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	int a = hash_file(md, "/proc/self/exe"), b = hash_file(md, server.opt.instance_bin);
	/* custom runtimes' processes map the agent beside thaw-instance (when
	 * it is there: without it they run without) */
	const char *slash = strrchr(server.opt.instance_bin, '/');
	char agent[sizeof(server.opt.instance_bin) + 32];
	snprintf(agent, sizeof(agent), "%.*s/%s", slash ? (int)(slash - server.opt.instance_bin) : 1,
		 slash ? server.opt.instance_bin : ".", CHANNEL_AGENT_SO);
	if (!access(agent, R_OK))
		b = b ? b : hash_file(md, agent);
	unsigned char d[32];
	unsigned n = 0;
	EVP_DigestFinal_ex(md, d, &n);
	EVP_MD_CTX_free(md);
	if (a || b) {
		snprintf(build_id_text, sizeof(build_id_text), "unknown");
		return;
	}
	memcpy(build_id_text, "sha256:", 7);
	hex(d, n, build_id_text + 7);
}

/* The thaw build: the daemon's and the instance host's bytes (a snapshot
 * holds the host's memory and speaks the daemon's channel). thaw has no
 * version number; this is its identity. Computed once. */
static const char *build_id(void)
{
	pthread_once(&build_once, build_id_init);
	return build_id_text;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* What fn's instances start from, by content: the same in every container
 * of one image, unlike fnsnap's source (paths, inodes, mtimes). */
static void content_source(const struct function *fn, char out[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	char *p = xasprintf("%s/fc.yaml", fn->cfg.dir);
	if (hash_file(md, p))
		EVP_DigestUpdate(md, "no fc.yaml", 10);
	free(p);
	if (hash_file(md, fn->handler_path))
		EVP_DigestUpdate(md, "no handler", 10);
	/* model files by name and size: they may be GiBs, and they are in
	 * the same content-addressed image layer as the rest */
	for (size_t i = 0; i < fn->cfg.n_model_files; i++) {
		struct stat st;
		p = xasprintf("%s/%s", fn->cfg.dir, fn->cfg.model_files[i]);
		char line[PATH_MAX + 40];
		int n = snprintf(line, sizeof(line), "model %s %lld\n", fn->cfg.model_files[i],
				 stat(p, &st) ? -1LL : (long long)st.st_size);
		EVP_DigestUpdate(md, line, (size_t)n);
		free(p);
	}
	unsigned char d[32];
	unsigned n = 0;
	EVP_DigestFinal_ex(md, d, &n);
	EVP_MD_CTX_free(md);
	hex(d, n, out);
}

/* The "flags" line of /proc/cpuinfo (the first CPU's), into out. */
static void cpu_flags(char *out, size_t len)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return;
	char *line = NULL;
	size_t cap = 0;
	for (int guard = 0; guard < 10000 && getline(&line, &cap, f) > 0; guard++) {
		if (strncmp(line, "flags", 5))
			continue;
		const char *v = strchr(line, ':');
		if (v) {
			v += strspn(v + 1, " \t") + 1;
			snprintf(out, len, "%.*s", (int)strcspn(v, "\n"), v);
		}
		break;
	}
	free(line);
	fclose(f);
}

/* This node's facts for fn, in the file's format. */
static void node_text(const struct function *fn, const char *dir, struct buf *b)
{
	struct utsname u;
	char criu[64] = "", src[65], *flags = xmalloc(NODE_MAX);
	if (uname(&u))
		snprintf(u.release, sizeof(u.release), "unknown");
	if (snapshot_criu_version(criu, sizeof(criu)) || !criu[0])
		snprintf(criu, sizeof(criu), "unknown");
	content_source(fn, src);
	cpu_flags(flags, NODE_MAX - 256);
	buf_printf(b,
		   "thaw-node v1\nfunction %s\nkernel %s\ncriu %s\nthaw %s\nsource %s\ndir %s\n"
		   "cpu-flags %s\n",
		   fn->cfg.name, u.release, criu, build_id(), src, dir, flags);
	free(flags);
}

int travel_write_node(const struct function *fn, const char *dir)
{
	struct buf b = {0};
	node_text(fn, dir, &b);
	char *path = xasprintf("%s/%s", dir, TRAVEL_NODE_NAME);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), ret = 0;
	if (fd < 0)
		ret = -errno;
	else {
		if (write(fd, b.data, b.len) != (ssize_t)b.len)
			ret = errno ? -errno : -EIO;
		close(fd);
	}
	free(path);
	buf_free(&b);
	return ret;
}

/* The value of key in a thaw-node text ("" when absent), into out. */
static void field(const char *text, const char *key, char *out, size_t len)
{
	size_t k = strlen(key);
	out[0] = '\0';
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		if (!strncmp(l, key, k) && l[k] == ' ') {
			snprintf(out, len, "%.*s", (int)strcspn(l + k + 1, "\n"), l + k + 1);
			return;
		}
	}
}

/* Whether every word of need is a word of have; the first missing one
 * goes to missing. */
static bool flags_cover(const char *have, const char *need, char *missing, size_t len)
{
	for (const char *w = need; *w;) {
		w += strspn(w, " ");
		size_t n = strcspn(w, " ");
		if (!n)
			break;
		bool found = false;
		for (const char *h = have; *h && !found;) {
			h += strspn(h, " ");
			size_t m = strcspn(h, " ");
			found = m == n && !memcmp(h, w, n);
			h += m;
		}
		if (!found) {
			snprintf(missing, len, "%.*s", (int)n, w);
			return false;
		}
		w += n;
	}
	return true;
}

/* Compares the travelled facts with this node's; "" in why when they fit. */
static void compare(const char *got, const char *here, char *why, size_t len)
{
	static const char *const exact[] = { "thaw-node", "function", "kernel", "criu",
					     "thaw", "source", "dir" };
	char a[PATH_MAX], b[PATH_MAX];
	why[0] = '\0';
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
		field(got, exact[i], a, sizeof(a));
		field(here, exact[i], b, sizeof(b));
		if (strcmp(a, b)) {
			snprintf(why, len, "%s %.200s there, %.200s here", exact[i], a[0] ? a : "(none)", b);
			return;
		}
	}
	char *fa = xmalloc(NODE_MAX), *fb = xmalloc(NODE_MAX);
	field(got, "cpu-flags", fa, NODE_MAX);
	field(here, "cpu-flags", fb, NODE_MAX);
	if (!flags_cover(fb, fa, a, sizeof(a)))
		snprintf(why, len, "this node's CPU lacks the flag %.64s that the snapshot's had", a);
	free(fa);
	free(fb);
}

static int read_small(const char *path, char *out, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, out, len - 1);
	int ret = n < 0 ? -errno : 0;
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	return ret;
}

/* Whether CRIU (re)writes name in its images folder on every run: never
 * linked, or CRIU would write through the link into the shipped folder. */
static bool criu_writes(const char *name)
{
	size_t n = strlen(name);
	return !strncmp(name, "stats-", 6) || (n > 4 && !strcmp(name + n - 4, ".log"));
}

/* Makes to (which must not exist) a folder of links to the files of from (a
 * flat snapshot folder): CRIU reads its images and maps the memory files
 * through them, at the paths the snapshot recorded, while the bytes stay in
 * from, shared by every daemon on the node. Anything else in from
 * (folders, links, devices) is refused: a snapshot folder holds only files. */
static int link_flat(const char *from, const char *to, unsigned *files, uint64_t *bytes,
		     char *why, size_t len)
{
	if (mkdir(to, 0700) < 0) {
		snprintf(why, len, "mkdir %.300s: %s", to, strerror(errno));
		return -errno;
	}
	DIR *d = opendir(from);
	if (!d) {
		snprintf(why, len, "%s: %s", from, strerror(errno));
		return -errno;
	}
	int ret = 0, n = 0;
	struct dirent *e;
	while (!ret && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || criu_writes(e->d_name))
			continue;
		if (++n > MAX_SNAPSHOT_FILES) {
			snprintf(why, len, "%s: more than %d files", from, MAX_SNAPSHOT_FILES);
			ret = -E2BIG;
			break;
		}
		char *a = xasprintf("%s/%s", from, e->d_name), *b = xasprintf("%s/%s", to, e->d_name);
		struct stat st;
		if (lstat(a, &st) < 0)
			ret = -errno;
		else if (!S_ISREG(st.st_mode))
			ret = -EBADMSG;
		else if (symlink(a, b) < 0)
			ret = -errno;
		else {
			*bytes += (uint64_t)st.st_size;
			(*files)++;
		}
		if (ret)
			snprintf(why, len, "%s: %s", a,
				 ret == -EBADMSG ? "not a regular file" : strerror(-ret));
		free(a);
		free(b);
	}
	closedir(d);
	return ret;
}

bool travel_import(struct function *fn)
{
	const char *from_dir = server.opt.snapshot_from ? server.opt.snapshot_from
						       : TRAVEL_DEFAULT_FROM;
	if (!*from_dir || fn->image)
		return false;
	char *from = xasprintf("%s/%s", from_dir, fn->cfg.name);
	char *node_path = xasprintf("%s/%s", from, TRAVEL_NODE_NAME);
	char *got = xmalloc(NODE_MAX), why[512];
	struct buf here = {0};
	bool ok = false;
	uint64_t fp;
	if (read_small(node_path, got, NODE_MAX))
		goto out; /* none came with the image: nothing to say */
	node_text(fn, fn->snap_dir, &here);
	compare(got, here.data, why, sizeof(why));
	if (why[0]) {
		pr_warn("%s: the snapshot that came with the image (%s) does not fit this node: %s; "
			"cold start, and a snapshot taken here",
			fn->cfg.name, from, why);
		goto out;
	}
	/* the links must name it from anywhere: --snapshot-from may be relative */
	char *abs = realpath(from, NULL);
	if (!abs) {
		snprintf(why, sizeof(why), "%s: %s", from, strerror(errno));
		goto refuse;
	}
	free(from);
	from = abs;
	fs_rm_rf(fn->snap_dir);
	mkdir(server.opt.snapshot_dir, 0700);
	/* checked where it lies, read only: the read also fills the page cache
	 * the restore maps from (docs/kubernetes.md says why it still hashes) */
	double t0 = now_ms();
	uint64_t bytes = 0;
	unsigned files = 0;
	if (link_flat(from, fn->snap_dir, &files, &bytes, why, sizeof(why)) ||
	    snapshot_verify(from, why, sizeof(why)))
		goto refuse;
	int ret = snapshot_fingerprint(fn->snap_dir, &fp);
	if (ret) {
		snprintf(why, sizeof(why), "%.300s: %s", fn->snap_dir, strerror(-ret));
		goto refuse;
	}
	atomic_store(&fn->snap_fingerprint, fp);
	atomic_store(&fn->snap_state, SNAP_READY);
	fn->snap_reused = true;
	ok = true;
	pr_info("%s: restoring from the snapshot that came with the image (%s: kernel, criu, "
		"thaw build, source and CPU flags fit; %u files, %.1f MiB, verified in place in "
		"%.1f ms, nothing copied): no cold start",
		fn->cfg.name, from, files, (double)bytes / (1 << 20), now_ms() - t0);
	goto out;
refuse:
	pr_warn("%s: the snapshot that came with the image (%s) is not used: %s; cold start, "
		"and a snapshot taken here",
		fn->cfg.name, from, why);
	fs_rm_rf(fn->snap_dir);
out:
	buf_free(&here);
	free(got);
	free(node_path);
	free(from);
	return ok;
}
