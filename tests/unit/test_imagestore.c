/*
 * daemon/imagestore.c: a layer's tar unpacked (extract(), #included to
 * reach it), table-driven, so the refusals that e2e/test_deploy checks
 * through the daemon also run here, fast and under ASan (make asan,
 * .ci/run): the paths a layer entry may have, and what extract() makes of
 * tars written here with libarchive: a good one unpacked byte for byte,
 * links/devices/escapes/sparse/truncation refused with one line naming the
 * layer and entry, never the folder it unpacks in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "daemon/imagestore.c"

#include <archive.h>
#include <archive_entry.h>

#define DIGEST "sha256:1111111111111111111111111111111111111111111111111111111111111111"

static char tmp[64];

static void test_entry_paths(void **state)
{
	static const struct {
		const char *path;
		bool ok;
	} cases[] = {
		{ "function", true },	      { "function/", true },
		{ "function/a/b.bin", true },  { "function/...", true },
		{ "function/a/", true },       { "functionx", false },
		{ "functio", false },	      { "", false },
		{ "/function/a", false },      { "function/../x", false },
		{ "function/./x", false },     { "function//x", false },
		{ "function/..", false },      { "function/.wh.x", false },
		{ "function/a/.wh..wh..opq", false }, { "evil", false },
		{ "./function/a", false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (entry_path_ok(cases[i].path) != cases[i].ok)
			fail_msg("entry_path_ok(\"%s\") != %d", cases[i].path, cases[i].ok);
	char longp[1100] = "function/";
	memset(longp + 9, 'a', sizeof(longp) - 10);
	assert_false(entry_path_ok(longp)); /* over 1024 */
	longp[1024] = '\0';
	assert_true(entry_path_ok(longp));
}

/* One entry of a test tar: type 'f' file, 'd' folder, 'l' symlink, 'h'
 * hard link, 'c' char device, 'p' fifo, 's' sparse file (data with a hole). */
struct ent {
	char type;
	const char *path;
	const char *data; /* file contents, link target */
};

/* Writes the entries as a pax tar to path; cut > 0 keeps only that many
 * bytes of it. */
static void write_tar(const char *path, const struct ent *e, size_t n, size_t cut)
{
	struct archive *a = archive_write_new();
	assert_int_equal(archive_write_set_format_pax(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, e[i].path);
		archive_entry_set_perm(ae, 0644);
		size_t len = e[i].data ? strlen(e[i].data) : 0;
		switch (e[i].type) {
		case 'f':
		case 's':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_size(ae, e[i].type == 's' ? 1 << 20 : (la_int64_t)len);
			if (e[i].type == 's')
				archive_entry_sparse_add_entry(ae, 0, (la_int64_t)len);
			break;
		case 'd':
			archive_entry_set_filetype(ae, AE_IFDIR);
			break;
		case 'l':
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_symlink(ae, e[i].data);
			len = 0;
			break;
		case 'h':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_hardlink(ae, e[i].data);
			len = 0;
			break;
		case 'c':
			archive_entry_set_filetype(ae, AE_IFCHR);
			archive_entry_set_rdevmajor(ae, 1);
			archive_entry_set_rdevminor(ae, 3);
			len = 0;
			break;
		case 'p':
			archive_entry_set_filetype(ae, AE_IFIFO);
			len = 0;
			break;
		}
		assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
		if (len)
			assert_int_equal(archive_write_data(a, e[i].data, len), (la_ssize_t)len);
		archive_entry_free(ae);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	if (cut)
		assert_int_equal(truncate(path, (off_t)cut), 0);
}

/* Unpacks the tar of the entries into a fresh folder; returns extract()'s
 * result, err its message; the folder is left for the caller to look at. */
static int unpack(const struct ent *e, size_t n, size_t cut, char *dir, char *err, size_t errlen)
{
	char blob[128];
	snprintf(blob, sizeof(blob), "%s/layer.tar", tmp);
	snprintf(dir, 128, "%s/out", tmp);
	fs_rm_rf(dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	write_tar(blob, e, n, cut);
	err[0] = '\0';
	int rc = extract(blob, dir, DIGEST, err, errlen);
	if (rc) {
		assert_non_null(strstr(err, "layer " DIGEST));
		assert_null(strstr(err, tmp)); /* never the daemon's own folders */
		assert_null(strchr(err, '\n'));
	}
	return rc;
}

static char *read_text(const char *dir, const char *rel)
{
	static char buf[4096];
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void test_good_layer_unpacks(void **state)
{
	static const struct ent ok[] = {
		{ 'd', "function", NULL },
		{ 'f', "function/fc.yaml", "name: f\nhandler: h.so\n" },
		{ 'd', "function/sub/", NULL },
		{ 'f', "function/sub/empty", "" },
		{ 'f', "function/sub/again", "x" },
	};
	char dir[128], err[512];
	struct stat st;
	(void)state;
	assert_int_equal(unpack(ok, 5, 0, dir, err, sizeof(err)), 0);
	assert_string_equal(read_text(dir, "function/fc.yaml"), "name: f\nhandler: h.so\n");
	assert_string_equal(read_text(dir, "function/sub/empty"), "");
	assert_string_equal(read_text(dir, "function/sub/again"), "x");
	char p[256];
	snprintf(p, sizeof(p), "%s/function/sub", dir);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
}

static void test_refusals_name_the_entry(void **state)
{
	static const struct {
		const char *what;
		struct ent e;
		int rc;
		const char *want;
	} cases[] = {
		{ "symlink", { 'l', "function/link", "/etc/passwd" }, -EPERM,
		  "entry 'function/link': only folders and regular files" },
		{ "hard link", { 'h', "function/hard", "function/fc.yaml" }, -EPERM,
		  "entry 'function/hard': only folders and regular files" },
		{ "device", { 'c', "function/dev", NULL }, -EPERM,
		  "entry 'function/dev': only folders and regular files" },
		{ "fifo", { 'p', "function/fifo", NULL }, -EPERM,
		  "entry 'function/fifo': only folders and regular files" },
		{ "dot-dot", { 'f', "function/../../evil", "x" }, -EPERM,
		  "entry 'function/../../evil': only paths under function/" },
		{ "absolute", { 'f', "/tmp/thaw-evil-abs", "x" }, -EPERM,
		  "entry '/tmp/thaw-evil-abs': only paths under function/" },
		{ "outside", { 'f', "evil", "x" }, -EPERM, "entry 'evil': only paths under function/" },
		{ "whiteout", { 'f', "function/.wh.fc.yaml", "" }, -EPERM,
		  "entry 'function/.wh.fc.yaml': only paths under function/" },
		{ "sparse", { 's', "function/holes.bin", "zzzz" }, -EINVAL,
		  "entry 'function/holes.bin': a sparse file" },
		{ "twice", { 'f', "function/fc.yaml", "again" }, -EEXIST,
		  "entry 'function/fc.yaml': appears twice" },
	};
	char dir[128], err[512];
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ent e[2] = { { 'f', "function/fc.yaml", "name: f\n" }, cases[i].e };
		int rc = unpack(e, 2, 0, dir, err, sizeof(err));
		if (rc != cases[i].rc || !strstr(err, cases[i].want))
			fail_msg("%s: rc %d (want %d), err \"%s\" (want \"%s\")", cases[i].what, rc,
				 cases[i].rc, err, cases[i].want);
		/* nothing but function/ was made, and no link or device in it */
		char p[256];
		struct stat st;
		snprintf(p, sizeof(p), "%s/function/link", dir);
		assert_int_not_equal(lstat(p, &st), 0);
		snprintf(p, sizeof(p), "%s/evil", tmp);
		assert_int_not_equal(lstat(p, &st), 0);
		assert_int_not_equal(lstat("/tmp/thaw-evil-abs", &st), 0);
	}
}

static void test_truncated_layer_refused(void **state)
{
	char big[6000];
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	const struct ent e[] = { { 'f', "function/fc.yaml", "name: f\n" }, { 'f', "function/big", big } };
	char dir[128], err[512];
	(void)state;
	/* pax: 3 x 512 for fc.yaml (pax header, header, data), 2 x 512 before
	 * big's data; cut inside it */
	int rc = unpack(e, 2, 512 * 5 + 3000, dir, err, sizeof(err));
	assert_int_equal(rc, -EIO);
	assert_non_null(strstr(err, "entry 'function/big': "));
	assert_non_null(strstr(err, "truncated"));
}

static void test_garbage_is_not_a_tar(void **state)
{
	char blob[128], dir[128], err[512];
	(void)state;
	snprintf(blob, sizeof(blob), "%s/garbage.tar", tmp);
	snprintf(dir, sizeof(dir), "%s/out", tmp);
	fs_rm_rf(dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	FILE *f = fopen(blob, "wb");
	assert_non_null(f);
	for (int i = 0; i < 8192; i++)
		fputc((i * 7919 + 13) & 0xFF, f);
	fclose(f);
	assert_int_equal(extract(blob, dir, DIGEST, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "not a readable tar"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_paths),
		cmocka_unit_test(test_good_layer_unpacks),
		cmocka_unit_test(test_refusals_name_the_entry),
		cmocka_unit_test(test_truncated_layer_refused),
		cmocka_unit_test(test_garbage_is_not_a_tar),
	};
	snprintf(tmp, sizeof(tmp), "/dev/shm/thaw-test-imagestore-XXXXXX");
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	fs_rm_rf(tmp);
	return rc;
}
