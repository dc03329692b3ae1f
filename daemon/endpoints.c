#define LOG_PREFIX "endpoints: "
#include "daemon/endpoints.h"
#include "common/buf.h"
#include "daemon/fnlog.h"
#include "daemon/gpu.h"
#include "daemon/imagestore.h"
#include "daemon/jobs.h"
#include "common/mem.h"
#include "daemon/conn.h"
#include "daemon/console.h"
#include "daemon/lifecycle.h"
#include "daemon/loop.h"
#include "common/log.h"
#include "daemon/auth.h"
#include "daemon/pool.h"
#include "common/router.h"
#include "daemon/server.h"
#include "daemon/snapexport.h"
#include "common/timer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COUNT(arr, code) atomic_fetch_add_explicit(&(arr)[code], 1, memory_order_relaxed)

static void respond_json(struct conn *c, int status, cJSON *doc)
{
	char *s = cJSON_PrintUnformatted(doc);
	conn_respond(c, status, "application/json", s, strlen(s), NULL, 0);
	free(s);
	cJSON_Delete(doc);
}

static const char *const state_names[] = { "starting", "ready", "failed" };

static struct function *newest(struct fn_name *nm)
{
	return fn_name_newest(nm);
}

/* Whether fn's instances start from its snapshot, and when not why: a
 * failed dump or restore puts it on cold starts for a while (pool_start.c). */
static void snapshot_json(cJSON *f, struct function *fn)
{
	static const char *const snap_names[] = { "none", "taking", "ready", "off" };
	int ss = atomic_load(&fn->snap_state);
	int64_t left = atomic_load(&fn->snap_retry_ns) - now_ns();
	unsigned dumps = atomic_load(&fn->dump_failures), restores = atomic_load(&fn->restore_failures);
	cJSON_AddStringToObject(f, "snapshot", snap_names[ss]);
	bool cold = ss != SNAP_READY || left > 0;
	cJSON_AddBoolToObject(f, "cold_starts", cold);
	if (!cold || (!dumps && !restores))
		return;
	char why[160];
	if (ss == SNAP_READY)
		snprintf(why, sizeof(why), "%u restore(s) failed in a row: restores again in %.1f s",
			 restores, (double)left / 1e9);
	else if (ss == SNAP_NONE && left > 0)
		snprintf(why, sizeof(why), "%u snapshot(s) failed: trying again in %.0f s", dumps,
			 (double)left / 1e9);
	else if (ss == SNAP_OFF)
		snprintf(why, sizeof(why), "%u snapshot(s) failed: cold starts only", dumps);
	else
		return;
	cJSON_AddStringToObject(f, "cold_starts_why", why);
}

/* Ready when every function has a version serving; a failed newer deploy
 * beside a serving version is reported but does not make it unready. */
static void readyz(struct conn *c)
{
	cJSON *doc = cJSON_CreateObject(), *fns = cJSON_AddObjectToObject(doc, "functions");
	bool ready = true;
	unsigned n = atomic_load(&server.n_names);
	for (unsigned i = 0; i < n; i++) {
		struct fn_name *nm = server.names[i];
		if (atomic_load(&nm->removed))
			continue;
		struct function *cur = atomic_load(&nm->current), *last = newest(nm);
		struct function *fn = cur ? cur : last;
		int st = atomic_load(&fn->state);
		ready &= cur != NULL && st == FN_READY;
		cJSON *f = cJSON_AddObjectToObject(fns, nm->name);
		cJSON_AddStringToObject(f, "state", state_names[st]);
		cJSON_AddNumberToObject(f, "version", fn->version);
		snapshot_json(f, fn);
		if (atomic_load(&last->state) == FN_FAILED) {
			char msg[512];
			function_error(last, msg, sizeof(msg));
			cJSON_AddStringToObject(f, "error", msg);
		}
	}
	cJSON_AddBoolToObject(doc, "ready", ready);
	respond_json(c, ready ? 200 : 503, doc);
}

static void metrics(struct conn *c)
{
	struct buf b = { 0 };
	metrics_render_head(&b);
	unsigned n = atomic_load(&server.n_names);
	for (unsigned i = 0; i < n; i++) {
		struct fn_name *nm = server.names[i];
		const struct fn_metrics *ms[MAX_VERSIONS];
		if (atomic_load(&nm->removed))
			continue;
		unsigned nv = atomic_load(&nm->n_versions) - nm->first + 1;
		for (unsigned k = 0; k < nv; k++)
			ms[k] = &nm->versions[k]->metrics;
		metrics_render_fn(&b, nm->name, ms, nv);
	}
	metrics_render_server(&b, &server.metrics);
	buf_printf(&b,
		   "# HELP thaw_loop_backend What the event loops run on (io_uring, or epoll where "
		   "io_uring is refused).\n# TYPE thaw_loop_backend gauge\n"
		   "thaw_loop_backend{backend=\"%s\"} 1\n",
		   loop_backend_name());
	console_render_metrics(&b);
	gpu_render(&b); /* nothing without a GPU */
	conn_respond(c, 200, "text/plain; version=0.0.4", b.data, b.len, NULL, 0);
	buf_free(&b);
}

static cJSON *version_json(struct function *fn)
{
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "name", fn->cfg.name);
	cJSON_AddNumberToObject(f, "version", fn->version);
	cJSON_AddStringToObject(f, "state", state_names[atomic_load(&fn->state)]);
	cJSON_AddNumberToObject(f, "deployed_at", (double)fn->deployed_at);
	cJSON_AddStringToObject(f, "dir", fn->cfg.dir);
	cJSON_AddStringToObject(f, "handler", fn->handler_path);
	if (fn->image) {
		cJSON *img = cJSON_AddObjectToObject(f, "image");
		cJSON_AddStringToObject(img, "digest", fn->image->digest);
		cJSON *ls = cJSON_AddArrayToObject(img, "layers");
		for (unsigned i = 0; i < fn->image->n_layers; i++) {
			cJSON *l = cJSON_CreateObject();
			cJSON_AddStringToObject(l, "kind", fn->image->layer_kinds[i]);
			cJSON_AddStringToObject(l, "digest", fn->image->layers[i]);
			cJSON_AddItemToArray(ls, l);
		}
	} else {
		cJSON_AddNullToObject(f, "image");
	}
	cJSON_AddItemToObject(f, "changes", cJSON_Parse(fn->changes));
	if (!strcmp(fn->cfg.auth_type, "function")) {
		char tok[65];
		auth_invoke_token(fn->cfg.name, tok);
		cJSON_AddStringToObject(f, "invoke_token", tok);
	}
	cJSON_AddNumberToObject(f, "timeout", fn->cfg.timeout_s);
	cJSON_AddNumberToObject(f, "instanceConcurrency", fn->cfg.instance_concurrency);
	cJSON_AddNumberToObject(f, "init_ms", atomic_load(&fn->init_ms));
	cJSON_AddNumberToObject(f, "snapshot_bytes", (double)atomic_load(&fn->snap_bytes));
	cJSON_AddNumberToObject(f, "dump_ms", atomic_load(&fn->dump_ms));
	cJSON_AddNumberToObject(f, "restore_ms", atomic_load(&fn->restore_ms));
	if (atomic_load(&fn->state) == FN_FAILED) {
		char msg[512];
		function_error(fn, msg, sizeof(msg));
		cJSON_AddStringToObject(f, "error", msg);
	}
	return f;
}

/* A function: the serving version's fields, "current", and every version. */
static cJSON *function_json(struct fn_name *nm)
{
	struct function *cur = atomic_load(&nm->current);
	cJSON *f = version_json(cur ? cur : newest(nm));
	if (cur)
		cJSON_AddNumberToObject(f, "current", cur->version);
	else
		cJSON_AddNullToObject(f, "current");
	cJSON *vs = cJSON_AddArrayToObject(f, "versions");
	unsigned nv = atomic_load(&nm->n_versions) - nm->first + 1;
	for (unsigned k = 0; k < nv; k++)
		cJSON_AddItemToArray(vs, version_json(nm->versions[k]));
	return f;
}

/* A new version is in the registry: start it, remember it, answer. */
static void deployed(struct conn *c, struct config *cfg, const struct imagestore_image *img)
{
	struct function *fn;
	char why[PATH_MAX + 200];
	if (lifecycle_deploy(cfg, img, &fn, why, sizeof(why))) {
		pr_err("cannot deploy %s: %s", cfg->name, why);
		config_free(cfg);
		if (c->state != CONN_CLOSING)
			conn_respond_error(c, 507, "%s", why);
		return;
	}
	pr_info("deployed %s version %u from %s", fn->cfg.name, fn->version,
		img ? img->digest : fn->cfg.dir);
	/* start it now: it takes traffic once ready (a broken one never does) */
	pool_warm(pool_of(fn));
	if (c->state != CONN_CLOSING)
		respond_json(c, 201, version_json(fn));
}

/* Unpacking an image takes seconds for large layers: a job does it. */
struct image_deploy {
	struct job job;
	struct conn *c;
	char digest[OCI_DIGEST_LEN + 1];
	struct config cfg;
	struct imagestore_image img;
	int rc;
	char err[512];
	double ms; /* the unpack */
};

static void image_deploy_run(struct job *j)
{
	struct image_deploy *d = (struct image_deploy *)j;
	int64_t t0 = now_ns();
	d->rc = imagestore_load(d->digest, &d->cfg, &d->img, d->err, sizeof(d->err));
	d->ms = (double)(now_ns() - t0) / 1e6;
}

static void image_deploy_done(struct job *j)
{
	struct image_deploy *d = (struct image_deploy *)j;
	struct conn *c = d->c;
	if (d->rc) {
		pr_warn("deploy of image %s refused: %s", d->digest, d->err);
		if (c->state != CONN_CLOSING)
			conn_respond_error(c, d->rc == -ENOENT ? 404 : 400, "%s", d->err);
	} else {
		pr_info("image %s unpacked in %.1f ms", d->digest, d->ms);
		deployed(c, &d->cfg, &d->img); /* the client may be gone: deploy anyway */
	}
	free(d);
	conn_op_done(c);
}

/* POST /admin/functions {"image": "sha256:<manifest>"} (uploaded through
 * /admin/blobs) or {"dir": "/abs/folder"} (fc.yaml loaded in place). */
static void admin_add(struct conn *c)
{
	cJSON *body = cJSON_ParseWithLength(c->req.body.data, c->req.body.len);
	const char *dir = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "dir"));
	const char *image = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "image"));
	if (image && oci_digest_valid(image)) {
		struct image_deploy *d = xcalloc(1, sizeof(*d));
		snprintf(d->digest, sizeof(d->digest), "%s", image);
		cJSON_Delete(body);
		d->c = c;
		d->job.run = image_deploy_run;
		d->job.done = image_deploy_done;
		d->job.sh = c->sh;
		d->job.slow = true; /* restores and limits must not wait behind it */
		c->ops++; /* c stays allocated until done() */
		jobs_submit(&d->job);
		return;
	}
	if (!dir || dir[0] != '/') {
		cJSON_Delete(body);
		conn_respond_error(c, 400,
				   "expected {\"image\": \"sha256:<manifest digest>\"} or "
				   "{\"dir\": \"/absolute/folder/with/fc.yaml\"}");
		return;
	}
	char *path = xasprintf("%s/fc.yaml", dir), err[512] = "";
	cJSON_Delete(body);
	struct config cfg;
	int ret = config_load(path, &cfg, err, sizeof(err));
	free(path);
	if (ret)
		conn_respond_error(c, 400, "%s", err);
	else
		deployed(c, &cfg, NULL);
}

static void unauthorized(struct conn *c)
{
	COUNT(server.metrics.http_errors, 401);
	struct channel_kv h = { "www-authenticate", "Bearer realm=\"thaw\"" };
	static const char body[] = "{\"error\": \"admin API needs Authorization: Bearer <token>\"}";
	conn_respond(c, 401, "application/json", body, sizeof(body) - 1, &h, 1);
}

static int upload_sink(void *ctx, const char *data, size_t len)
{
	return imagestore_upload_write(ctx, data, len);
}

void endpoints_on_headers(struct conn *c, const struct route *rt)
{
	if (rt->kind != ROUTE_ADMIN || rt->sub_len < 7 || memcmp(rt->sub, "/blobs/", 7) ||
	    strcmp(http_req_method(&c->req), "PUT"))
		return;
	/* refused before a byte of the body is stored */
	c->close_after_send = true;
	if (!auth_admin(&c->req)) {
		unauthorized(c);
		return;
	}
	char digest[OCI_DIGEST_LEN + 1], err[512];
	snprintf(digest, sizeof(digest), "%.*s", (int)(rt->sub_len - 7), rt->sub + 7);
	struct imagestore_upload *u = xmalloc(sizeof(*u));
	int rc = rt->sub_len - 7 == OCI_DIGEST_LEN ? imagestore_upload_begin(u, digest, err, sizeof(err))
						   : (snprintf(err, sizeof(err), "expected /admin/blobs/sha256:<64 hex digits>"), -EINVAL);
	if (rc) {
		free(u);
		conn_respond_error(c, rc == -EINVAL ? 400 : 500, "%s", err);
		return;
	}
	c->close_after_send = false;
	c->upload = u;
	c->req.body_limit = IMAGESTORE_MAX_BLOB;
	c->req.sink = upload_sink;
	c->req.sink_ctx = u;
}

void endpoints_conn_closed(struct conn *c)
{
	snapexport_conn_closed(c);
	if (c->upload) {
		imagestore_upload_abort(c->upload);
		free(c->upload);
		c->upload = NULL;
	}
}

/* GET /admin/blobs/DIGEST: whether the daemon has it; PUT: the upload,
 * streamed to disk since its headers (endpoints_on_headers), checked here. */
static void admin_blob(struct conn *c, const char *digest, size_t len)
{
	char d[OCI_DIGEST_LEN + 1], err[512];
	uint64_t size = 0;
	snprintf(d, sizeof(d), "%.*s", (int)(len < sizeof(d) ? len : sizeof(d) - 1), digest);
	if (!strcmp(http_req_method(&c->req), "PUT") && c->upload) {
		int rc = imagestore_upload_commit(c->upload, &size, err, sizeof(err));
		free(c->upload);
		c->upload = NULL;
		if (rc) {
			conn_respond_error(c, rc == -EBADMSG ? 400 : 500, "%s: %s", d, err);
			return;
		}
	} else if (strcmp(http_req_method(&c->req), "GET")) {
		conn_respond_error(c, 405, "use GET or PUT");
		return;
	} else if (len != OCI_DIGEST_LEN || !imagestore_has(d, &size)) {
		conn_respond_error(c, 404, "no blob %.*s", (int)(len > 80 ? 80 : len), digest);
		return;
	}
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "digest", d);
	cJSON_AddNumberToObject(doc, "size", (double)size);
	respond_json(c, strcmp(http_req_method(&c->req), "PUT") ? 200 : 201, doc);
}

/* The "version" of a rollback body: an integer from 1 to UINT32_MAX (one
 * past the versions there are is a 404, not a 400). 0, or -EINVAL for a
 * body that is not {"version": N}: 1.9 must not become 1. */
static int rollback_version(const char *data, size_t len, unsigned *out)
{
	int ret = -EINVAL;
	cJSON *body = cJSON_ParseWithLength(data, len);
	const cJSON *jv = cJSON_GetObjectItemCaseSensitive(body, "version");
	if (!cJSON_IsObject(body) || !cJSON_IsNumber(jv))
		goto free_body;
	double d = jv->valuedouble;
	/* the range check first: it also turns away inf and nan */
	if (!(d >= 1 && d <= UINT32_MAX) || d != (double)(uint32_t)d)
		goto free_body;
	*out = (unsigned)(uint32_t)d;
	ret = 0;
free_body:
	cJSON_Delete(body);
	return ret;
}

/* POST /admin/functions/NAME/rollback [{"version": N}] */
static void admin_rollback(struct conn *c, struct fn_name *nm)
{
	unsigned v = 0;
	if (c->req.body.len && rollback_version(c->req.body.data, c->req.body.len, &v)) {
		conn_respond_error(c, 400, "expected {\"version\": N} (an integer >= 1) or no body");
		return;
	}
	/* for the message only: the version serving when asked */
	struct function *cur = atomic_load(&nm->current), *to;
	int ret = lifecycle_rollback(nm, v, &to);
	if (ret == -ENOENT && v)
		conn_respond_error(c, 404, "%s has no version %u", nm->name, v);
	else if (ret == -ENOENT && cur)
		conn_respond_error(c, 404, "%s has no ready version older than version %u", nm->name,
				   cur->version);
	else if (ret == -ENOENT)
		conn_respond_error(c, 404, "%s has no ready version", nm->name);
	else if (ret == -EAGAIN)
		conn_respond_error(c, 409, "%s version %u failed to initialize", nm->name, v);
	else if (ret)
		conn_respond_error(c, 507, "cannot record the rollback in %s/deployments.jsonl: %s; "
				   "nothing was rolled back", server.opt.state_dir, strerror(-ret));
	else
		respond_json(c, 200, function_json(nm));
}

/* DELETE /admin/functions/NAME */
static void admin_rm(struct conn *c, struct fn_name *nm)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "name", nm->name);
	cJSON_AddNumberToObject(doc, "versions", atomic_load(&nm->n_versions) - nm->first + 1);
	int ret = lifecycle_remove(nm);
	if (ret) {
		cJSON_Delete(doc);
		if (ret == -ENOENT)
			conn_respond_error(c, 404, "function not found: %s", nm->name);
		else
			conn_respond_error(c, 507, "cannot record the removal in %s/deployments.jsonl: "
					   "%s; nothing was removed", server.opt.state_dir, strerror(-ret));
		return;
	}
	cJSON_AddBoolToObject(doc, "removed", true);
	respond_json(c, 200, doc);
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
		return (ch | 0x20) - 'a' + 10;
	return -1;
}

/* The value of key in the request's query into out, NUL-terminated, with
 * '+' and %XX decoded. Returns 0, -ENOENT when absent, -EINVAL for a '%'
 * not followed by two hex digits or a %00 (out is a C string: a NUL would
 * cut it short, and an empty grep matches every line), -E2BIG when the
 * decoded value does not fit in cap - 1 bytes. */
static int query_param(const struct conn *c, const char *key, char *out, size_t cap)
{
	const char *url = http_span_ptr(&c->req, c->req.url);
	size_t len = c->req.url.len, klen = strlen(key);
	const char *q = memchr(url, '?', len);
	if (!q)
		return -ENOENT;
	const char *p = q + 1, *end = url + len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp ? amp : end;
		if ((size_t)(e - p) > klen && !memcmp(p, key, klen) && p[klen] == '=') {
			size_t n = 0;
			for (const char *v = p + klen + 1; v < e; v++) {
				char ch = *v;
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%') {
					int hi = e - v > 2 ? hex_digit(v[1]) : -1;
					int lo = e - v > 2 ? hex_digit(v[2]) : -1;
					if (hi < 0 || lo < 0 || (hi | lo) == 0)
						return -EINVAL;
					ch = (char)(hi << 4 | lo);
					v += 2;
				}
				if (n + 1 >= cap)
					return -E2BIG;
				out[n++] = ch;
			}
			out[n] = '\0';
			return 0;
		}
		p = e + 1;
	}
	return -ENOENT;
}

/* A decimal number of digits only (no sign, space or '+', which strtoull
 * takes, and no wrap past 2^64) up to max: 0 or -EINVAL. */
static int parse_decimal(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (d > max || v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (!i || s[i])
		return -EINVAL;
	*out = v;
	return 0;
}

/* GET /admin/functions/NAME/logs?tail=N&grep=WORD&offset=B */
static void admin_logs(struct conn *c, struct fn_name *nm)
{
	char arg[32], grep[FNLOG_MAX_GREP + 1];
	uint64_t tail = 100, offset = 0;
	int ret = query_param(c, "tail", arg, sizeof(arg));
	if (ret != -ENOENT && (ret || parse_decimal(arg, FNLOG_MAX_TAIL, &tail) || tail < 1)) {
		conn_respond_error(c, 400, "tail: expected 1 to %d lines", FNLOG_MAX_TAIL);
		return;
	}
	/* an off_t: past the current file is fine (it was rotated since) */
	ret = query_param(c, "offset", arg, sizeof(arg));
	if (ret != -ENOENT && (ret || parse_decimal(arg, INT64_MAX, &offset))) {
		conn_respond_error(c, 400, "offset: expected a byte offset, 0 to %lld",
				   (long long)INT64_MAX);
		return;
	}
	ret = query_param(c, "grep", grep, sizeof(grep));
	if (ret == -E2BIG) {
		conn_respond_error(c, 400, "grep: at most %d bytes", FNLOG_MAX_GREP);
		return;
	}
	if (ret == -EINVAL) {
		conn_respond_error(c, 400, "grep: bad %%-encoding (%%XX with two hex digits, not %%00)");
		return;
	}
	if (ret)
		grep[0] = '\0';
	struct buf b = { 0 };
	uint64_t size;
	ret = fnlog_read(nm->name, (size_t)tail, grep, offset, &b, &size);
	if (ret) {
		buf_free(&b);
		conn_respond_error(c, 500, "reading %s's log: %s", nm->name, strerror(-ret));
		return;
	}
	char off[32];
	snprintf(off, sizeof(off), "%llu", (unsigned long long)size);
	struct channel_kv h = { "x-thaw-log-offset", off };
	conn_respond(c, 200, "text/plain; charset=utf-8", b.data ? b.data : "", b.len, &h, 1);
	buf_free(&b);
}

/* /admin/functions/NAME[/rollback|/logs|/history|/snapshot], DELETE
 * /admin/functions/NAME */
static void admin_function(struct conn *c, const char *rest, size_t len)
{
	size_t n = 0;
	while (n < len && rest[n] != '/')
		n++;
	struct fn_name *nm = registry_find_name(rest, n);
	if (!nm) {
		conn_respond_error(c, 404, "function not found: %.*s", (int)n, rest);
		return;
	}
	bool get = strcmp(http_req_method(&c->req), "GET") == 0;
	if (n == len && get)
		respond_json(c, 200, function_json(nm));
	else if (len - n == 9 && !memcmp(rest + n, "/rollback", 9) &&
		 !strcmp(http_req_method(&c->req), "POST"))
		admin_rollback(c, nm);
	else if (n == len && !strcmp(http_req_method(&c->req), "DELETE"))
		admin_rm(c, nm);
	else if (len - n == 5 && !memcmp(rest + n, "/logs", 5) && get)
		admin_logs(c, nm);
	else if (len - n == 8 && !memcmp(rest + n, "/history", 8) && get)
		console_history(c, nm);
	else if (len - n == 9 && !memcmp(rest + n, "/snapshot", 9) && get)
		snapexport_start(c, nm);
	else
		conn_respond_error(c, 404, "no admin endpoint %.*s", (int)len, rest);
}

static void admin(struct conn *c, const struct route *rt)
{
	if (!auth_admin(&c->req)) {
		unauthorized(c);
		return;
	}
	bool get = strcmp(http_req_method(&c->req), "GET") == 0;
	if (rt->sub_len == 10 && memcmp(rt->sub, "/functions", 10) == 0) {
		if (get) {
			cJSON *arr = cJSON_CreateArray();
			unsigned n = atomic_load(&server.n_names);
			for (unsigned i = 0; i < n; i++)
				if (!atomic_load(&server.names[i]->removed))
					cJSON_AddItemToArray(arr, function_json(server.names[i]));
			respond_json(c, 200, arr);
		} else if (strcmp(http_req_method(&c->req), "POST") == 0) {
			admin_add(c);
		} else {
			conn_respond_error(c, 405, "use GET or POST");
		}
		return;
	}
	if (rt->sub_len == 5 && memcmp(rt->sub, "/gpus", 5) == 0 && get) {
		console_gpus(c);
		return;
	}
	if (rt->sub_len > 7 && memcmp(rt->sub, "/blobs/", 7) == 0) {
		admin_blob(c, rt->sub + 7, rt->sub_len - 7);
		return;
	}
	if (rt->sub_len > 11 && memcmp(rt->sub, "/functions/", 11) == 0) {
		admin_function(c, rt->sub + 11, rt->sub_len - 11);
		return;
	}
	conn_respond_error(c, 404, "no admin endpoint %.*s", (int)rt->sub_len, rt->sub);
}

void endpoints_handle(struct conn *c, const struct route *rt)
{
	const char *m = http_req_method(&c->req);
	bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
	switch (rt->kind) {
	case ROUTE_HEALTHZ:
		conn_respond(c, 200, "application/json", "{\"status\": \"ok\"}", 16, NULL, 0);
		return;
	case ROUTE_READYZ:
		readyz(c);
		return;
	case ROUTE_METRICS:
		if (!get)
			break;
		metrics(c);
		return;
	case ROUTE_V2_SERVER:
		static const char meta[] =
			"{\"name\": \"thaw\", \"version\": \"0.1.0\", \"extensions\": []}";
		conn_respond(c, 200, "application/json", meta, sizeof(meta) - 1, NULL, 0);
		return;
	case ROUTE_ADMIN:
		admin(c, rt);
		return;
	case ROUTE_CONSOLE:
		console_serve(c, rt->sub, rt->sub_len);
		return;
	case ROUTE_BAD_PATH:
		COUNT(server.metrics.http_errors, 400);
		conn_respond_error(c, 400, "invalid request path");
		return;
	default:
		COUNT(server.metrics.http_errors, 404);
		conn_respond_error(c, 404, "not found");
		return;
	}
	COUNT(server.metrics.http_errors, 405);
	conn_respond_error(c, 405, "method not allowed");
}
