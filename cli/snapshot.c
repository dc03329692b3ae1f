/* `thaw snapshot FN -o DIR`: the snapshot the serving version of FN restores
 * from, fetched over the admin API as a tar stream (daemon/snapexport.h)
 * and written into a new folder for `thaw build --base BASE --snapshot DIR`
 * (docs/kubernetes.md). The files land in DIR.part, are checked against
 * the manifest that came last, and only then does DIR.part become DIR: a
 * DIR that exists is a whole, verified snapshot. */
#include "cli/cli.h"
#include "common/fsutil.h"
#include "common/ustar.h"
#include "snapshot/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
	"usage: thaw snapshot FN -o DIR [options]\n"
	"Writes the snapshot that the serving version of FN restores from into DIR,\n"
	"which must not exist, verified against its manifest: the folder that\n"
	"`thaw build FNDIR --base BASE --snapshot DIR` layers into FN's image.\n"
	"  -o, --output DIR  the folder to create\n" CLI_COMMON_USAGE;

#define MAX_FILES 10000 /* a snapshot folder holds a few dozen */

/* The tar stream being unpacked into dfd. */
struct untar {
	int dfd;
	char hdr[USTAR_BLOCK];
	size_t hdr_len;
	int fd;             /* the file being written, or -1 */
	char name[USTAR_NAME_MAX + 1];
	mode_t mode;
	uint64_t left;      /* of its data to come */
	size_t pad;         /* zero bytes to skip after it */
	bool ended;         /* the end block came */
	unsigned files;
	uint64_t bytes;
	char why[512];
};

/* The file entry whose header is in u->hdr: opened, or finished when empty. */
static bool start_file(struct untar *u)
{
	uint64_t size;
	int r = ustar_parse(u->hdr, u->name, &u->mode, &size);
	u->hdr_len = 0;
	if (r == 0) {
		u->ended = true;
		return true;
	}
	if (r < 0 || ++u->files > MAX_FILES) {
		snprintf(u->why, sizeof(u->why), "the daemon sent %s",
			 r < 0 ? "a tar entry that is not a plain file of the folder" : "too many files");
		return false;
	}
	u->fd = openat(u->dfd, u->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (u->fd < 0) {
		snprintf(u->why, sizeof(u->why), "%s: %s", u->name, strerror(errno));
		return false;
	}
	u->left = size;
	u->pad = ustar_padding(size);
	return true;
}

/* Closes the file just written, with the mode it had in the snapshot
 * (CRIU checks its memory files' 0400). */
static bool end_file(struct untar *u)
{
	int r = fchmod(u->fd, u->mode & 0777); /* no set-id bits from the stream */
	if (close(u->fd) || r) {
		snprintf(u->why, sizeof(u->why), "%s: %s", u->name, strerror(errno));
		u->fd = -1;
		return false;
	}
	u->fd = -1;
	return true;
}

static bool on_bytes(void *ctx, const char *p, size_t len)
{
	struct untar *u = ctx;
	while (len && !u->ended) {
		size_t n;
		if (u->fd >= 0 && u->left) {
			n = len < u->left ? len : (size_t)u->left;
			ssize_t w = write(u->fd, p, n);
			if (w <= 0) {
				snprintf(u->why, sizeof(u->why), "%s: %s", u->name,
					 w < 0 ? strerror(errno) : "short write");
				return false;
			}
			n = (size_t)w;
			u->left -= n;
			u->bytes += n;
		} else if (u->fd >= 0) {
			if (!end_file(u))
				return false;
			continue;
		} else if (u->pad) {
			n = len < u->pad ? len : u->pad;
			u->pad -= n;
		} else {
			n = USTAR_BLOCK - u->hdr_len < len ? USTAR_BLOCK - u->hdr_len : len;
			memcpy(u->hdr + u->hdr_len, p, n);
			u->hdr_len += n;
			if (u->hdr_len == USTAR_BLOCK && !start_file(u))
				return false;
		}
		p += n;
		len -= n;
	}
	/* an empty file, or one whose last bytes came in this piece */
	return u->fd < 0 || u->left || end_file(u);
}

static int fetch(struct cli *cli, const char *fn, const char *part, struct untar *u)
{
	char path[256];
	snprintf(path, sizeof(path), "/admin/functions/%s/snapshot", fn);
	int ret = cli_admin_stream(cli, path, on_bytes, u);
	if (u->fd >= 0)
		close(u->fd);
	if (ret == CLI_FAILED && u->why[0])
		return cli_fail(cli, CLI_FAILED, "%s", u->why);
	if (ret)
		return ret;
	if (!u->ended)
		return cli_fail(cli, CLI_FAILED, "the daemon's answer ended before the snapshot did");
	char why[512];
	if (manifest_verify(part, why, sizeof(why)))
		return cli_fail(cli, CLI_FAILED, "what came fails its manifest: %s", why);
	return CLI_OK;
}

int cli_snapshot(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = { { "output", required_argument, 0, 'o' },
					      CLI_COMMON_OPTIONS, { 0, 0, 0, 0 } };
	const char *out = NULL;
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
		if (c == 'o') {
			out = optarg;
			continue;
		}
		int r = cli_common_opt(cli, c, optarg, usage);
		if (r < 0)
			return CLI_OK;
		bad |= r == 0;
	}
	if (bad || !out || !*out || argc - optind != 1) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	const char *fn = argv[optind];
	if (!cli_valid_name(fn))
		return cli_fail(cli, CLI_USAGE, "'%s' is not a function name", fn);
	if (!access(out, F_OK))
		return cli_fail(cli, CLI_FAILED, "%s exists: give a folder to create", out);
	char part[4096];
	snprintf(part, sizeof(part), "%s.part", out);
	struct untar u = { .fd = -1 };
	if (mkdir(part, 0700) < 0 || (u.dfd = open(part, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return cli_fail(cli, CLI_FAILED, "%s: %s", part, strerror(errno));
	int ret = fetch(cli, fn, part, &u);
	close(u.dfd);
	if (!ret && rename(part, out) < 0)
		ret = cli_fail(cli, CLI_FAILED, "%s -> %s: %s", part, out, strerror(errno));
	if (ret) {
		fs_rm_rf(part);
		return ret;
	}
	char size[32];
	cli_format_bytes((double)u.bytes, size, sizeof(size));
	if (cli->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "function", fn);
		cJSON_AddStringToObject(doc, "dir", out);
		cJSON_AddNumberToObject(doc, "files", u.files);
		cJSON_AddNumberToObject(doc, "bytes", (double)u.bytes);
		char *s = cJSON_PrintUnformatted(doc);
		puts(s);
		free(s);
		cJSON_Delete(doc);
	} else
		printf("%s: snapshot in %s: %u files, %s, verified against its manifest\n", fn, out,
		       u.files, size);
	return CLI_OK;
}
