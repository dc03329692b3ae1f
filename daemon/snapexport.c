#define LOG_PREFIX "snapshots: "
#include "daemon/snapexport.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/timer.h"
#include "common/ustar.h"
#include "daemon/conn.h"
#include "daemon/jobs.h"
#include "daemon/server.h"
#include "snapshot/manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read per send: pieces go out one at a time, the next when the last left
 * (conn's stream_drained), so a slow client holds one piece, not the
 * snapshot. Reads are from files just hashed (page cache, or the tmpfs the
 * snapshot lives on): they do not block the loop for long. */
#define PIECE (1u << 20)

struct snapexport {
	struct job job;
	struct conn *c; /* NULL once c closed while the worker verified */
	bool verifying;
	char dir[4096];
	char name[80];
	unsigned version;
	struct manifest_files m;
	int ret;
	char why[512];
	int64_t t0;
	size_t file;      /* the entry being sent; m.n: the end blocks */
	bool head_sent;   /* its ustar header */
	uint64_t off;     /* of its data sent */
	uint64_t bytes;   /* of the stream */
	char *piece;      /* PIECE + room for a header, padding or the end */
};

static void export_free(struct snapexport *x)
{
	if (x->m.f)
		manifest_files_fini(&x->m);
	free(x->piece);
	free(x);
}

static void verify_run(struct job *j)
{
	struct snapexport *x = container_of(j, struct snapexport, job);
	x->ret = manifest_open(x->dir, &x->m, x->why, sizeof(x->why));
}

/* Fills x->piece with the next bytes of the tar and returns their length
 * (x->file passes m.n with the piece that holds the end blocks), or -errno
 * when a file gave less than it held when hashed. */
static ssize_t next_piece(struct snapexport *x)
{
	size_t len = 0;
	while (len < PIECE && x->file <= x->m.n) {
		if (x->file == x->m.n) {
			memset(x->piece + len, 0, 2 * USTAR_BLOCK);
			len += 2 * USTAR_BLOCK;
			x->file++;
			break;
		}
		const struct manifest_file *f = &x->m.f[x->file];
		if (!x->head_sent) {
			struct stat st;
			mode_t mode = fstat(f->fd, &st) ? 0400 : st.st_mode & 0777;
			if (ustar_header(x->piece + len, f->name, mode, f->size))
				return -EINVAL;
			len += USTAR_BLOCK;
			x->head_sent = true;
		} else if (x->off < f->size) {
			uint64_t left = f->size - x->off;
			size_t want = left < PIECE - len ? (size_t)left : PIECE - len;
			ssize_t n = pread(f->fd, x->piece + len, want, (off_t)x->off);
			if (n <= 0)
				return n < 0 ? -errno : -ENODATA;
			len += (size_t)n;
			x->off += (uint64_t)n;
		} else {
			size_t pad = ustar_padding(f->size);
			memset(x->piece + len, 0, pad);
			len += pad;
			x->file++;
			x->head_sent = false;
			x->off = 0;
		}
	}
	return (ssize_t)len;
}

/* c's last piece went out: the next, or the end. */
static void send_more(struct conn *c)
{
	struct snapexport *x = c->snapexport;
	ssize_t n = next_piece(x);
	if (n < 0) {
		pr_err("%s: sending its snapshot: %s/%s: %s; connection closed", x->name, x->dir,
		       x->m.f[x->file].name, strerror((int)-n));
		conn_close(c); /* the client sees the stream cut short */
		return;
	}
	x->bytes += (uint64_t)n;
	if (x->file <= x->m.n) {
		conn_stream_data(c, x->piece, (size_t)n); /* last: it may close c */
		return;
	}
	c->snapexport = NULL;
	c->stream_drained = NULL;
	pr_info("%s: version %u's snapshot sent: %zu files, %.1f MiB in %.1f ms", x->name, x->version,
		x->m.n, (double)x->bytes / (1 << 20), (double)(now_ns() - x->t0) / 1e6);
	conn_stream_data(c, x->piece, (size_t)n);
	conn_stream_end(c);
	export_free(x);
}

/* A string as a channel_response's headers hold it (common/channel.h). */
static void put_string(struct buf *b, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);
	buf_append(b, &n, sizeof(n));
	buf_append(b, s, n + 1);
}

static void verify_done(struct job *j)
{
	struct snapexport *x = container_of(j, struct snapexport, job);
	struct conn *c = x->c;
	x->verifying = false;
	if (!c) {
		export_free(x);
		return;
	}
	if (x->ret) {
		c->snapexport = NULL;
		pr_err("%s: version %u's snapshot not sent: %s", x->name, x->version, x->why);
		conn_respond_error(c, 500, "%s version %u's snapshot is not sent: %s", x->name,
				   x->version, x->why);
		export_free(x);
		return;
	}
	struct buf h = { 0 };
	put_string(&h, "content-type");
	put_string(&h, "application/x-tar");
	struct channel_response r = { .status = 200, .n_headers = 1, .headers = h.data };
	x->piece = xmalloc(PIECE + 2 * USTAR_BLOCK);
	conn_stream_head(c, &r);
	buf_free(&h);
	c->stream_drained = send_more;
	send_more(c);
}

void snapexport_start(struct conn *c, struct fn_name *nm)
{
	static const char *const snap_names[] = { "none yet", "being taken", "ready", "off" };
	struct function *fn = atomic_load(&nm->current);
	if (c->h2) {
		conn_respond_error(c, 400, "a snapshot streams over HTTP/1.1 only");
		return;
	}
	if (!fn) {
		conn_respond_error(c, 409, "%s has no version serving: no snapshot to send", nm->name);
		return;
	}
	int ss = atomic_load(&fn->snap_state);
	if (ss != SNAP_READY) {
		conn_respond_error(c, 409, "%s version %u has no snapshot ready (%s)", nm->name,
				   fn->version, snap_names[ss]);
		return;
	}
	struct snapexport *x = xcalloc(1, sizeof(*x));
	x->c = c;
	x->verifying = true;
	x->t0 = now_ns();
	x->version = fn->version;
	snprintf(x->dir, sizeof(x->dir), "%s", fn->snap_dir);
	snprintf(x->name, sizeof(x->name), "%s", nm->name);
	x->job = (struct job){ .run = verify_run, .done = verify_done, .sh = c->sh, .slow = true };
	c->snapexport = x;
	jobs_submit(&x->job);
}

void snapexport_conn_closed(struct conn *c)
{
	struct snapexport *x = c->snapexport;
	if (!x)
		return;
	c->snapexport = NULL;
	c->stream_drained = NULL;
	if (x->verifying)
		x->c = NULL; /* verify_done frees it */
	else
		export_free(x);
}
