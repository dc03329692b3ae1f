/* builder/: `thaw build` -> OCI image layout; reproducible digests, a valid
 * layout (checked by recomputing every hash here), errors with file:line, a
 * handler compiled from a .c file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "builder/builder.h"
#include "builder/compile.h"
#include "thaw/handler.h"

/* --- files --------------------------------------------------------------- */

static char *path_of(const char *dir, const char *rel)
{
	char *p;
	assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
	return p;
}

static void write_file(const char *dir, const char *rel, const void *data, size_t n)
{
	char *p = path_of(dir, rel);
	/* Parent folders first. */
	for (size_t i = strlen(dir) + 1; p[i]; i++) {
		if (p[i] != '/')
			continue;
		p[i] = '\0';
		if (mkdir(p, 0755) < 0)
			assert_int_equal(errno, EEXIST);
		p[i] = '/';
	}
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	free(p);
}

static void write_text(const char *dir, const char *rel, const char *text)
{
	write_file(dir, rel, text, strlen(text));
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(void)
{
	char *d = strdup("/tmp/thaw-test-builder-XXXXXX");
	assert_non_null(mkdtemp(d));
	return d;
}

/* 1 MiB of weights from a fixed seed, a handler .so stand-in, a vocabulary,
 * a dotfile and an object file that must stay out. */
#define MODEL_BYTES (1u << 20)
static const char fc_yaml[] = "name: demo\n"
			      "handler: lib/demo.so\n"
			      "environmentVariables:\n"
			      "  THREADS: 2\n"
			      "modelFiles:\n"
			      "  - models/w.bin\n";

static char *make_function(void)
{
	char *d = make_tmpdir();
	unsigned char *w = malloc(MODEL_BYTES);
	uint32_t x = 12345;
	for (size_t i = 0; i < MODEL_BYTES; i++) {
		x = x * 1103515245u + 12345u;
		w[i] = (unsigned char)(x >> 16);
	}
	write_file(d, "models/w.bin", w, MODEL_BYTES);
	free(w);
	write_text(d, "fc.yaml", fc_yaml);
	write_text(d, "lib/demo.so", "\177ELF not really\n");
	write_text(d, "vocab.txt", "a\nb\n");
	write_text(d, ".secret", "do not ship\n");
	write_text(d, "lib/demo.o", "object\n");
	return d;
}

static int build(const char *dir, const char *out, struct builder_result *r, char *err,
		 size_t errlen)
{
	FILE *diag = fopen("/dev/null", "w");
	struct builder_options o = { .dir = dir, .out = out, .diag = diag };
	int rc = builder_build(&o, r, err, errlen);
	fclose(diag);
	return rc;
}

/* --- the layout, checked without the builder's own code ------------------ */

static void sha256_file(const char *path, char out[72], uint64_t *size)
{
	size_t n;
	char *data = read_all(path, &n);
	assert_non_null(data);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen;
	assert_int_equal(EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL), 1);
	strcpy(out, "sha256:");
	for (unsigned i = 0; i < mdlen; i++)
		sprintf(out + 7 + 2 * i, "%02x", md[i]);
	*size = n;
	free(data);
}

/* Checks that descriptor d names a blob of image with that digest and size;
 * returns the blob's text (caller frees). */
static char *check_blob(const char *image, const cJSON *d, const char *media_type)
{
	const cJSON *mt = cJSON_GetObjectItem(d, "mediaType");
	const cJSON *dg = cJSON_GetObjectItem(d, "digest");
	const cJSON *sz = cJSON_GetObjectItem(d, "size");
	assert_true(cJSON_IsString(mt) && cJSON_IsString(dg) && cJSON_IsNumber(sz));
	assert_string_equal(mt->valuestring, media_type);
	assert_int_equal(strncmp(dg->valuestring, "sha256:", 7), 0);
	char *p;
	assert_true(asprintf(&p, "%s/blobs/sha256/%s", image, dg->valuestring + 7) > 0);
	char digest[72];
	uint64_t size;
	sha256_file(p, digest, &size);
	assert_string_equal(digest, dg->valuestring);
	assert_int_equal(size, (uint64_t)sz->valuedouble);
	char *text = read_all(p, NULL);
	free(p);
	return text;
}

struct tar_entry {
	char path[256];
	int mode;
	int dir;
	int64_t size;
};

/* Lists a tar blob: entries must have mtime 0, uid/gid 0, no names. */
static size_t list_tar(const char *image, const char *digest, struct tar_entry *out, size_t max,
		       const char *want_path, unsigned char **want_data)
{
	char *p;
	assert_true(asprintf(&p, "%s/blobs/sha256/%s", image, digest + 7) > 0);
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	assert_int_equal(archive_read_open_filename(a, p, 1 << 16), ARCHIVE_OK);
	struct archive_entry *e;
	size_t n = 0;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		assert_true(n < max);
		snprintf(out[n].path, sizeof(out[n].path), "%s", archive_entry_pathname(e));
		out[n].mode = archive_entry_perm(e);
		out[n].dir = archive_entry_filetype(e) == AE_IFDIR;
		out[n].size = archive_entry_size(e);
		assert_int_equal(archive_entry_mtime(e), 0);
		assert_int_equal(archive_entry_uid(e), 0);
		assert_int_equal(archive_entry_gid(e), 0);
		const char *un = archive_entry_uname(e), *gn = archive_entry_gname(e);
		assert_true(!un || !*un);
		assert_true(!gn || !*gn);
		if (want_path && !strcmp(out[n].path, want_path)) {
			*want_data = malloc((size_t)out[n].size);
			assert_int_equal(archive_read_data(a, *want_data, (size_t)out[n].size),
					 out[n].size);
		}
		n++;
	}
	archive_read_free(a);
	free(p);
	return n;
}

/* --- cases --------------------------------------------------------------- */

static void test_same_inputs_same_digest(void **state)
{
	(void)state;
	char *d = make_function();
	struct builder_result r1, r2, r3;
	char err[1024];
	assert_int_equal(build(d, NULL, &r1, err, sizeof(err)), 0);
	assert_int_equal(build(d, NULL, &r2, err, sizeof(err)), 0);
	assert_string_equal(r1.manifest.digest, r2.manifest.digest);
	assert_int_equal(r1.n_layers, 2);

	/* The same files in another folder, built into another image. */
	char *d2 = make_function();
	char *out = path_of(d2, "img");
	assert_int_equal(build(d2, out, &r3, err, sizeof(err)), 0);
	assert_string_equal(r1.manifest.digest, r3.manifest.digest);
	for (size_t i = 0; i < r1.n_layers; i++)
		assert_string_equal(r1.layers[i].img.desc.digest, r3.layers[i].img.desc.digest);

	builder_result_fini(&r1);
	builder_result_fini(&r2);
	builder_result_fini(&r3);
	rm_rf(d);
	rm_rf(d2);
	free(out);
	free(d);
	free(d2);
}

static void test_model_byte_changes_digest(void **state)
{
	(void)state;
	char *d = make_function();
	struct builder_result r1, r2;
	char err[1024];
	assert_int_equal(build(d, NULL, &r1, err, sizeof(err)), 0);
	char *w = path_of(d, "models/w.bin");
	int fd = open(w, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\xff", 1, MODEL_BYTES / 2), 1);
	close(fd);
	assert_int_equal(build(d, NULL, &r2, err, sizeof(err)), 0);
	assert_string_not_equal(r1.manifest.digest, r2.manifest.digest);
	assert_string_equal(r1.layers[0].img.kind, "model");
	assert_string_not_equal(r1.layers[0].img.desc.digest, r2.layers[0].img.desc.digest);
	/* The code layer did not change. */
	assert_string_equal(r1.layers[1].img.desc.digest, r2.layers[1].img.desc.digest);

	/* The old model blob is gone from the image: index.json names only r2. */
	char *old;
	assert_true(asprintf(&old, "%s/blobs/sha256/%s", r2.image,
			     r1.layers[0].img.desc.digest + 7) > 0);
	assert_int_equal(access(old, F_OK), -1);
	free(old);

	builder_result_fini(&r1);
	builder_result_fini(&r2);
	rm_rf(d);
	free(w);
	free(d);
}

/* Sets every file of the function an hour back, as after a download. */
static void age_files(const char *d)
{
	const char *files[] = { "fc.yaml", "lib/demo.so", "vocab.txt", "models/w.bin" };
	struct timespec old[2];
	clock_gettime(CLOCK_REALTIME, &old[0]);
	old[0].tv_sec -= 3600;
	old[1] = old[0];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *p = path_of(d, files[i]);
		assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);
		free(p);
	}
}

static void test_unchanged_layers_are_not_reread(void **state)
{
	(void)state;
	char *d = make_function();
	struct builder_result r1, r2, r3, r4;
	char err[1024];
	/* Files written just now are not trusted by their timestamps. */
	assert_int_equal(build(d, NULL, &r1, err, sizeof(err)), 0);
	assert_false(r1.layers[0].reused);
	builder_result_fini(&r1);
	age_files(d);
	assert_int_equal(build(d, NULL, &r1, err, sizeof(err)), 0);
	assert_int_equal(build(d, NULL, &r2, err, sizeof(err)), 0);
	assert_true(r2.layers[0].reused);
	assert_true(r2.layers[1].reused);
	assert_string_equal(r1.manifest.digest, r2.manifest.digest);

	/* A changed byte changes the timestamp: read again, new digest. */
	char *w = path_of(d, "models/w.bin");
	int fd = open(w, O_WRONLY);
	assert_int_equal(pwrite(fd, "\x01", 1, 7), 1);
	close(fd);
	assert_int_equal(build(d, NULL, &r3, err, sizeof(err)), 0);
	assert_false(r3.layers[0].reused);
	assert_true(r3.layers[1].reused);
	assert_string_not_equal(r1.manifest.digest, r3.manifest.digest);

	/* Without the cache the same digest comes from reading everything. */
	FILE *diag = fopen("/dev/null", "w");
	struct builder_options o = { .dir = d, .diag = diag, .no_cache = true };
	assert_int_equal(builder_build(&o, &r4, err, sizeof(err)), 0);
	fclose(diag);
	assert_false(r4.layers[0].reused);
	assert_string_equal(r3.manifest.digest, r4.manifest.digest);

	builder_result_fini(&r1);
	builder_result_fini(&r2);
	builder_result_fini(&r3);
	builder_result_fini(&r4);
	rm_rf(d);
	free(w);
	free(d);
}

static void test_source_date_epoch_sets_mtime(void **state)
{
	(void)state;
	char *d = make_function();
	struct builder_result r1, r2;
	char err[1024];
	assert_int_equal(build(d, NULL, &r1, err, sizeof(err)), 0);
	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	assert_int_equal(build(d, NULL, &r2, err, sizeof(err)), 0);
	unsetenv("SOURCE_DATE_EPOCH");
	assert_string_not_equal(r1.manifest.digest, r2.manifest.digest);
	builder_result_fini(&r1);
	builder_result_fini(&r2);
	rm_rf(d);
	free(d);
}

static void test_layout_is_valid(void **state)
{
	(void)state;
	char *d = make_function();
	struct builder_result r;
	char err[1024];
	assert_int_equal(build(d, NULL, &r, err, sizeof(err)), 0);
	char *expect_image = path_of(d, ".thaw/image");
	char *real = realpath(expect_image, NULL);
	assert_string_equal(r.image, real);

	char *p = path_of(r.image, "oci-layout");
	char *layout = read_all(p, NULL);
	assert_string_equal(layout, "{\"imageLayoutVersion\":\"1.0.0\"}");
	free(layout);
	free(p);

	p = path_of(r.image, "index.json");
	char *text = read_all(p, NULL);
	free(p);
	cJSON *index = cJSON_Parse(text);
	free(text);
	assert_non_null(index);
	assert_int_equal(cJSON_GetObjectItem(index, "schemaVersion")->valueint, 2);
	const cJSON *ms = cJSON_GetObjectItem(index, "manifests");
	assert_int_equal(cJSON_GetArraySize(ms), 1);
	const cJSON *md = cJSON_GetArrayItem(ms, 0);
	assert_string_equal(cJSON_GetObjectItem(md, "digest")->valuestring, r.manifest.digest);

	text = check_blob(r.image, md, "application/vnd.oci.image.manifest.v1+json");
	cJSON *man = cJSON_Parse(text);
	free(text);
	assert_non_null(man);
	assert_int_equal(cJSON_GetObjectItem(man, "schemaVersion")->valueint, 2);

	text = check_blob(r.image, cJSON_GetObjectItem(man, "config"),
			  "application/vnd.oci.image.config.v1+json");
	cJSON *cfg = cJSON_Parse(text);
	free(text);
	assert_non_null(cfg);
	assert_string_equal(cJSON_GetObjectItem(cfg, "os")->valuestring, "linux");
	const cJSON *cc = cJSON_GetObjectItem(cfg, "config");
	const cJSON *ep = cJSON_GetObjectItem(cc, "Entrypoint");
	assert_int_equal(cJSON_GetArraySize(ep), 1);
	assert_string_equal(cJSON_GetArrayItem(ep, 0)->valuestring, "thaw-instance");
	const cJSON *env = cJSON_GetObjectItem(cc, "Env");
	assert_int_equal(cJSON_GetArraySize(env), 1);
	assert_string_equal(cJSON_GetArrayItem(env, 0)->valuestring, "THREADS=2");
	assert_string_equal(
		cJSON_GetObjectItem(cJSON_GetObjectItem(cc, "Labels"), "io.thaw.function")->valuestring,
		"demo");
	const cJSON *thaw = cJSON_GetObjectItem(cfg, "thaw");
	assert_string_equal(cJSON_GetObjectItem(thaw, "name")->valuestring, "demo");
	assert_string_equal(cJSON_GetObjectItem(thaw, "handler")->valuestring, "lib/demo.so");
	assert_int_equal(cJSON_GetObjectItem(thaw, "timeout")->valueint, 3);

	const cJSON *layers = cJSON_GetObjectItem(man, "layers");
	const cJSON *diff_ids = cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "rootfs"), "diff_ids");
	assert_int_equal(cJSON_GetArraySize(layers), 2);
	assert_int_equal(cJSON_GetArraySize(diff_ids), 2);
	for (int i = 0; i < 2; i++) {
		const cJSON *l = cJSON_GetArrayItem(layers, i);
		free(check_blob(r.image, l, "application/vnd.oci.image.layer.v1.tar"));
		assert_string_equal(cJSON_GetObjectItem(l, "digest")->valuestring,
				    cJSON_GetArrayItem(diff_ids, i)->valuestring);
		assert_string_equal(cJSON_GetObjectItem(l, "digest")->valuestring,
				    r.layers[i].img.desc.digest);
	}

	/* Model layer: folders, then the weights, byte for byte. */
	struct tar_entry e[16];
	unsigned char *w = NULL;
	size_t n = list_tar(r.image, r.layers[0].img.desc.digest, e, 16, "function/models/w.bin", &w);
	assert_int_equal(n, 3);
	assert_string_equal(e[0].path, "function/");
	assert_true(e[0].dir && e[0].mode == 0755);
	assert_string_equal(e[1].path, "function/models/");
	assert_string_equal(e[2].path, "function/models/w.bin");
	assert_int_equal(e[2].mode, 0644);
	assert_int_equal(e[2].size, MODEL_BYTES);
	size_t wn;
	char *wp = path_of(d, "models/w.bin");
	char *want = read_all(wp, &wn);
	assert_non_null(w);
	assert_memory_equal(w, want, MODEL_BYTES);
	free(want);
	free(wp);
	free(w);

	/* Code layer: sorted; handler 0755; no dotfiles, objects or the image. */
	n = list_tar(r.image, r.layers[1].img.desc.digest, e, 16, NULL, NULL);
	const char *code[] = { "function/", "function/fc.yaml", "function/lib/",
			       "function/lib/demo.so", "function/vocab.txt" };
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(e[i].path, code[i]);
	assert_int_equal(e[3].mode, 0755);
	assert_int_equal(e[4].mode, 0644);

	cJSON_Delete(cfg);
	cJSON_Delete(man);
	cJSON_Delete(index);
	builder_result_fini(&r);
	free(real);
	free(expect_image);
	rm_rf(d);
	free(d);
}

/* Bad fc.yaml and missing files: one line naming file:line and the field. */
static void test_errors_name_file_and_line(void **state)
{
	(void)state;
	static const struct {
		const char *yaml;
		int rc;
		const char *msg; /* after "<dir>/" */
	} cases[] = {
		{ "name: f\nhandler: lib/demo.so\ntimeout: soon\n", -EINVAL,
		  "fc.yaml:3: timeout: expected an integer of seconds in 1..86400, got \"soon\"" },
		{ "name: f\nhandler: lib/demo.so\ntimout: 3\n", -EINVAL, "fc.yaml:3: timout: unknown field" },
		{ "name: f\nhandler: lib/missing.so\n", -ENOENT, "fc.yaml:2: handler: " },
		{ "name: f\nhandler: lib/demo.so\nmodelFiles:\n  - w.bin\n  - nope.bin\n", -ENOENT,
		  "fc.yaml:5: modelFiles[1]: nope.bin: No such file or directory" },
		{ "name: f\nhandler: lib/demo.so\nmodelFiles:\n  - ../w.bin\n", -EINVAL,
		  "fc.yaml:4: modelFiles[0]: expected a path inside the function folder" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *d = make_tmpdir();
		write_text(d, "fc.yaml", cases[i].yaml);
		write_text(d, "lib/demo.so", "so");
		write_text(d, "w.bin", "w");
		struct builder_result r;
		char err[1024];
		assert_int_equal(build(d, NULL, &r, err, sizeof(err)), cases[i].rc);
		char *want = path_of(d, cases[i].msg);
		if (strncmp(err, want, strlen(want)))
			fail_msg("case %zu: got \"%s\", want \"%s...\"", i, err, want);
		free(want);
		rm_rf(d);
		free(d);
	}
}

/* A compiler, and the SDK header: found next to the binary (build/tests/
 * unit/ -> handlers/), else taken from the folder the test runs in. */
static int have_gcc(void)
{
	if (system("command -v ${CC:-gcc} >/dev/null 2>&1") != 0)
		return 0;
	char *sdk = compile_sdk_include();
	if (!sdk) {
		char *here = realpath("handlers", NULL);
		if (here)
			setenv("THAW_SDK_INCLUDE", here, 1);
		free(here);
	}
	free(sdk);
	return 1;
}

static const char hello_c[] = "#include <thaw/handler.h>\n"
			      "static int invoke(const struct thaw_request *req,\n"
			      "                  struct thaw_response *res)\n"
			      "{\n"
			      "\t(void)req;\n"
			      "\treturn thaw_respond(res, 200, \"text/plain\", \"hi\", 2);\n"
			      "}\n"
			      "THAW_HANDLER(.name = \"hello\", .invoke = invoke);\n";

static void test_handler_c_file_compiles(void **state)
{
	(void)state;
	if (!have_gcc())
		SKIP_BECAUSE("no gcc to compile the handler");
	char *d = make_tmpdir();
	write_text(d, "fc.yaml", "name: hello\nhandler: hello.c\n");
	write_text(d, "hello.c", hello_c);
	struct builder_result r1, r2;
	char err[1024];
	int rc = build(d, NULL, &r1, err, sizeof(err));
	if (rc)
		fail_msg("build: %s", err);
	assert_true(r1.compiled);
	assert_string_equal(r1.handler, "function/handler.so");
	/* Compiling again gives the same bytes. */
	assert_int_equal(build(d, NULL, &r2, err, sizeof(err)), 0);
	assert_string_equal(r1.manifest.digest, r2.manifest.digest);

	/* The .so is a real handler: the host would find its descriptor. */
	char *so = path_of(d, ".thaw/build/hello.so");
	void *h = dlopen(so, RTLD_LAZY | RTLD_LOCAL);
	assert_non_null(h);
	const struct thaw_handler *desc = dlsym(h, "thaw_handler_v1");
	assert_non_null(desc);
	assert_int_equal(desc->abi_version, THAW_ABI_VERSION);
	assert_string_equal(desc->name, "hello");
	dlclose(h);

	struct tar_entry e[16];
	size_t n = list_tar(r1.image, r1.layers[0].img.desc.digest, e, 16, NULL, NULL);
	assert_int_equal(r1.n_layers, 1); /* no modelFiles: no model layer */
	assert_int_equal(n, 4);
	assert_string_equal(e[2].path, "function/handler.so");
	assert_string_equal(e[3].path, "function/hello.c");

	builder_result_fini(&r1);
	builder_result_fini(&r2);
	free(so);
	rm_rf(d);
	free(d);
}

static void test_compiler_error_is_shown(void **state)
{
	(void)state;
	if (!have_gcc())
		SKIP_BECAUSE("no gcc to compile the handler");
	char *d = make_tmpdir();
	write_text(d, "fc.yaml", "name: bad\nhandler: src\n");
	write_text(d, "src/bad.c", "#include <thaw/handler.h>\nint f(void) { return nope; }\n");
	char *diag_path = path_of(d, "diag.txt");
	FILE *diag = fopen(diag_path, "w+");
	struct builder_options o = { .dir = d, .diag = diag };
	struct builder_result r;
	char err[1024];
	assert_int_equal(builder_build(&o, &r, err, sizeof(err)), -EIO);
	fclose(diag);
	assert_non_null(strstr(err, "fc.yaml:2: handler: "));
	assert_non_null(strstr(err, "failed (exit 1)"));
	char *out = read_all(diag_path, NULL);
	assert_non_null(strstr(out, "nope"));
	assert_non_null(strstr(out, "error"));
	free(out);
	free(diag_path);
	rm_rf(d);
	free(d);
}

/* Runs builder_main with stdout and stderr in files; returns the exit code. */
static int run_cli(char **argv, int argc, char **out, char **errout)
{
	char outp[] = "/tmp/thaw-test-builder-out-XXXXXX", errp[] = "/tmp/thaw-test-builder-err-XXXXXX";
	int ofd = mkstemp(outp), efd = mkstemp(errp);
	fflush(stdout);
	fflush(stderr);
	int so = dup(1), se = dup(2);
	dup2(ofd, 1);
	dup2(efd, 2);
	int code = builder_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	close(ofd);
	close(efd);
	*out = read_all(outp, NULL);
	*errout = read_all(errp, NULL);
	unlink(outp);
	unlink(errp);
	return code;
}

static void test_cli_exit_codes_and_json(void **state)
{
	(void)state;
	char *d = make_function();
	char *img = path_of(d, "out");
	char *out, *errout;

	char *a1[] = { "build", d, "-o", img, "--json", NULL };
	assert_int_equal(run_cli(a1, 5, &out, &errout), 0);
	cJSON *j = cJSON_Parse(out);
	assert_non_null(j);
	const char *digest = cJSON_GetObjectItem(j, "digest")->valuestring;
	assert_int_equal(strncmp(digest, "sha256:", 7), 0);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "manifest"), "digest")->valuestring,
			    digest);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers")), 2);
	char *real = realpath(img, NULL);
	assert_string_equal(cJSON_GetObjectItem(j, "image")->valuestring, real);
	free(real);
	char *saved = strdup(digest);
	cJSON_Delete(j);
	free(out);
	free(errout);

	/* Text output ends with the digest alone on its line. */
	char *a2[] = { "build", d, "-o", img, NULL };
	assert_int_equal(run_cli(a2, 4, &out, &errout), 0);
	size_t n = strlen(out);
	assert_true(n > 72);
	assert_int_equal(strncmp(out + n - 72, saved, 71), 0);
	free(out);
	free(errout);
	free(saved);

	char *a3[] = { "build", d, d, NULL };
	assert_int_equal(run_cli(a3, 3, &out, &errout), 2);
	assert_non_null(strstr(errout, "usage: thaw build"));
	free(out);
	free(errout);

	char *a4[] = { "build", "--bogus", NULL };
	assert_int_equal(run_cli(a4, 2, &out, &errout), 2);
	free(out);
	free(errout);

	write_text(d, "fc.yaml", "name: f\nhandler: lib/demo.so\nmemorySize: 100\n");
	char *a5[] = { "build", d, NULL };
	assert_int_equal(run_cli(a5, 2, &out, &errout), 1);
	assert_non_null(strstr(errout, "/fc.yaml:3: memorySize: "));
	assert_string_equal(out, "");
	free(out);
	free(errout);

	rm_rf(d);
	free(img);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_inputs_same_digest),
		cmocka_unit_test(test_model_byte_changes_digest),
		cmocka_unit_test(test_unchanged_layers_are_not_reread),
		cmocka_unit_test(test_source_date_epoch_sets_mtime),
		cmocka_unit_test(test_layout_is_valid),
		cmocka_unit_test(test_errors_name_file_and_line),
		cmocka_unit_test(test_handler_c_file_compiles),
		cmocka_unit_test(test_compiler_error_is_shown),
		cmocka_unit_test(test_cli_exit_codes_and_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
