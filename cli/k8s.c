/* `thaw k8s DIR`: fc.yaml -> a Knative Service, or a Deployment + Service +
 * KEDA HTTPScaledObject (docs/kubernetes.md says why each field is what it
 * is). The documents are built as cJSON trees, whose members keep the order
 * they were added in, and printed as block YAML by a small emitter, so the
 * same input always gives the same bytes. */
#include "cli/k8s.h"
#include "cli/cli.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#define DEFAULT_PORT 8080
#define DEFAULT_SECCOMP "thaw/seccomp-thaw.json"
/* Knative's default max-revision-timeout-seconds (config-defaults) */
#define KNATIVE_MAX_TIMEOUT 600
/* Knative's timeoutSeconds is the function's timeout plus this: the
 * daemon's own deadline fires first, so the client gets thaw's 504 (JSON
 * body, instance recycled), not the queue-proxy's */
#define TIMEOUT_MARGIN_S 1
/* A Knative Service NAME makes a revision NAME-00001 and a Kubernetes
 * Service NAME-00001-private, which must be a DNS label of 63 at most. */
#define KNATIVE_MAX_NAME (63 - 14)
#define DNS_LABEL_MAX 63
#define MAX_INDEX_BYTES (1u << 20)

/* --- fc.yaml lines, for messages ----------------------------------------- */

/* Walks the events of the file: the line of key top (depth 1) or of key
 * sub inside top's map (depth 2). */
static unsigned find_line(const char *path, const char *top, const char *sub)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	yaml_parser_t p;
	if (!yaml_parser_initialize(&p)) {
		fclose(f);
		return 0;
	}
	yaml_parser_set_input_file(&p, f);
	struct { bool map, want_key; char key[64]; } fr[17];
	unsigned line = 0, depth = 0, events = 0;
	yaml_event_t e;
	while (!line && events++ < 1000000 && yaml_parser_parse(&p, &e)) {
		yaml_event_type_t t = e.type;
		bool node = t == YAML_SCALAR_EVENT || t == YAML_ALIAS_EVENT ||
			    t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT;
		if (t == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&e);
			break;
		}
		if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
			if (depth)
				depth--;
		} else if (node && depth && fr[depth - 1].map && fr[depth - 1].want_key) {
			/* a key: fc.yaml's keys are scalars */
			fr[depth - 1].want_key = false;
			snprintf(fr[depth - 1].key, sizeof(fr[0].key), "%s",
				 t == YAML_SCALAR_EVENT ? (const char *)e.data.scalar.value : "");
			const char *k = fr[depth - 1].key;
			if (depth == 1 && !sub &&
			    (!strcmp(k, top) || (!strcmp(top, "name") && !strcmp(k, "functionName"))))
				line = (unsigned)e.start_mark.line + 1;
			else if (depth == 2 && sub && !strcmp(fr[0].key, top) && !strcmp(k, sub))
				line = (unsigned)e.start_mark.line + 1;
			if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
				yaml_event_delete(&e); /* a complex key: not fc.yaml */
				break;
			}
		} else if (node) {
			if (depth && fr[depth - 1].map)
				fr[depth - 1].want_key = true; /* after this value, a key */
			if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
				if (depth == sizeof(fr) / sizeof(fr[0])) {
					yaml_event_delete(&e);
					break;
				}
				fr[depth].map = t == YAML_MAPPING_START_EVENT;
				fr[depth].want_key = true;
				fr[depth].key[0] = '\0';
				depth++;
			}
		}
		yaml_event_delete(&e);
	}
	yaml_parser_delete(&p);
	fclose(f);
	return line;
}

unsigned k8s_field_line(const char *path, const char *field)
{
	char top[64];
	const char *dot = strchr(field, '.');
	if (!dot)
		return find_line(path, field, NULL);
	snprintf(top, sizeof(top), "%.*s", (int)(dot - field), field);
	return find_line(path, top, dot + 1);
}

/* "fn/fc.yaml:7: " or "fn/fc.yaml: " into err, then the message. */
static int refuse(const struct config *cfg, const char *field, char *err, size_t len,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int refuse(const struct config *cfg, const char *field, char *err, size_t len,
		  const char *fmt, ...)
{
	unsigned line = field ? k8s_field_line(cfg->path, field) : 0;
	int n = line ? snprintf(err, len, "%s:%u: ", cfg->path, line)
		     : snprintf(err, len, "%s: ", cfg->path);
	if (n >= 0 && (size_t)n < len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err + n, len - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* An option's value refused: no file to name. */
static int refuse_opt(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse_opt(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void warnf(char *warn, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warnf(char *warn, size_t len, const char *fmt, ...)
{
	size_t n = strlen(warn);
	if (n + 1 >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(warn + n, len - n, fmt, ap);
	va_end(ap);
	n = strlen(warn);
	if (n + 1 < len) {
		warn[n] = '\n';
		warn[n + 1] = '\0';
	}
}

/* RFC 1035 label as Kubernetes checks Service names: [a-z]([-a-z0-9]*[a-z0-9])? */
static bool dns1035(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (!n || n > max || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* RFC 1123 label (namespaces): like above, may start with a digit. */
static bool dns1123(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > DNS_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* A host name for the HTTP add-on's routing table: DNS labels joined by dots. */
static bool hostname_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 253 || s[0] == '.' || s[n - 1] == '.' || strstr(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return false;
	return true;
}

/* --- the YAML emitter ---------------------------------------------------- */

struct out {
	char *p;
	size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->p = xrealloc(o->p, o->cap);
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

static void indent(struct out *o, int n)
{
	for (int i = 0; i < n; i++)
		put(o, "  ", 2);
}

/* Strings always double-quoted (JSON escapes are YAML escapes): "70" stays
 * a string, "on" is not a boolean, whatever YAML version reads it. */
static void scalar(struct out *o, const cJSON *v)
{
	char buf[64];
	if (cJSON_IsString(v)) {
		puts_(o, "\"");
		for (const unsigned char *s = (const unsigned char *)v->valuestring; *s; s++) {
			if (*s == '"' || *s == '\\') {
				buf[0] = '\\';
				buf[1] = (char)*s;
				put(o, buf, 2);
			} else if (*s < 0x20 || *s == 0x7f) {
				snprintf(buf, sizeof(buf), "\\u%04x", *s);
				puts_(o, buf);
			} else {
				put(o, (const char *)s, 1);
			}
		}
		puts_(o, "\"");
	} else if (cJSON_IsBool(v)) {
		puts_(o, cJSON_IsTrue(v) ? "true" : "false");
	} else if (cJSON_IsNumber(v)) {
		snprintf(buf, sizeof(buf), "%.0f", v->valuedouble); /* integers only here */
		puts_(o, buf);
	} else {
		puts_(o, "null");
	}
}

/* A key as plain YAML when it is plainly a name, else quoted. */
static void key(struct out *o, const char *k)
{
	bool plain = *k != '\0';
	for (const char *s = k; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '.' || *s == '/' || *s == '-' || *s == '_'))
			plain = false;
	if (plain) {
		puts_(o, k);
	} else {
		cJSON tmp = { .type = cJSON_String, .valuestring = (char *)k };
		scalar(o, &tmp);
	}
	puts_(o, ":");
}

static bool empty(const cJSON *v)
{
	return (cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child;
}

static void emit(struct out *o, const cJSON *v, int depth);

/* The members of map v at depth; the first one's indentation is already
 * written when first_done. */
static void emit_map(struct out *o, const cJSON *v, int depth, bool first_done)
{
	for (const cJSON *m = v->child; m; m = m->next) {
		if (!(m == v->child && first_done))
			indent(o, depth);
		key(o, m->string);
		if (empty(m)) {
			puts_(o, cJSON_IsArray(m) ? " []\n" : " {}\n");
		} else if (cJSON_IsObject(m)) {
			puts_(o, "\n");
			emit_map(o, m, depth + 1, false);
		} else if (cJSON_IsArray(m)) {
			puts_(o, "\n");
			emit(o, m, depth + 1);
		} else {
			puts_(o, " ");
			scalar(o, m);
			puts_(o, "\n");
		}
	}
}

static void emit(struct out *o, const cJSON *v, int depth)
{
	if (cJSON_IsObject(v)) {
		emit_map(o, v, depth, false);
		return;
	}
	for (const cJSON *it = v->child; it; it = it->next) {
		indent(o, depth - 1);
		puts_(o, "- ");
		if (cJSON_IsObject(it) && !empty(it)) {
			emit_map(o, it, depth, true);
		} else if (cJSON_IsArray(it) && !empty(it)) {
			puts_(o, "\n");
			emit(o, it, depth + 1);
		} else if (empty(it)) {
			puts_(o, cJSON_IsArray(it) ? "[]\n" : "{}\n");
		} else {
			scalar(o, it);
			puts_(o, "\n");
		}
	}
}

/* --- the mapping --------------------------------------------------------- */

/* The numbers every kind shares, derived from fc.yaml (docs/kubernetes.md). */
struct plan {
	const char *name;
	unsigned per_pod, port;
	unsigned min_scale, max_scale;
	unsigned container_concurrency;
	double utilization_pct;  /* of containerConcurrency: the per-pod target */
	double target_per_pod;   /* in-flight requests per pod to aim for */
	unsigned cpu_m, mem_mi, shm_mi;
};

static char *fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static char *fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vsnprintf(buf, len, f, ap);
	va_end(ap);
	return buf;
}

/* A number as Knative parses it (a float), without a needless ".0". */
static char *num(char *buf, size_t len, double v)
{
	snprintf(buf, len, "%.1f", v);
	size_t n = strlen(buf);
	if (n > 2 && !strcmp(buf + n - 2, ".0"))
		buf[n - 2] = '\0';
	return buf;
}

/* CPU as a Kubernetes quantity: whole cores, else millicores. */
static char *cpu_q(char *buf, size_t len, unsigned m)
{
	return m % 1000 ? fmt(buf, len, "%um", m) : fmt(buf, len, "%u", m / 1000);
}

static int make_plan(const struct config *cfg, const struct k8s_opts *o, struct plan *p,
		     char *err, size_t errlen, char *warn, size_t warnlen)
{
	const struct config_scaling *s = &cfg->scaling;
	memset(p, 0, sizeof(*p));
	p->name = o->name ? o->name : cfg->name;
	size_t max = o->kind == K8S_KNATIVE ? KNATIVE_MAX_NAME : DNS_LABEL_MAX;
	if (!dns1035(p->name, max)) {
		if (o->name)
			return refuse_opt(err, errlen,
				      "--name \"%s\": a Kubernetes name is lower-case letters, digits and "
				      "'-', starts with a letter, ends with a letter or digit, at most %zu",
				      o->name, max);
		return refuse(cfg, "name", err, errlen,
			      "name: \"%s\" cannot name a Kubernetes %s (lower-case letters, digits "
			      "and '-', starting with a letter, at most %zu); give one with --name",
			      cfg->name, o->kind == K8S_KNATIVE ? "Knative Service" : "Service", max);
	}
	p->per_pod = o->per_pod ? o->per_pod : K8S_DEFAULT_PER_POD;
	if (!o->per_pod && p->per_pod > s->max_instances)
		p->per_pod = s->max_instances;
	if (p->per_pod > s->max_instances)
		return refuse(cfg, "scalingConfig.maxInstances", err, errlen,
			      "scalingConfig.maxInstances: %u is fewer than --instances-per-pod %u",
			      s->max_instances, p->per_pod);
	p->port = o->port ? o->port : DEFAULT_PORT;
	p->max_scale = (s->max_instances + p->per_pod - 1) / p->per_pod;
	p->min_scale = (s->min_instances + p->per_pod - 1) / p->per_pod;
	p->container_concurrency = p->per_pod * cfg->instance_concurrency;
	double util = 100.0 * s->target_concurrency / cfg->instance_concurrency;
	if (util > 100) {
		warnf(warn, warnlen,
		      "%s: scalingConfig.targetConcurrency %g is above instanceConcurrency %u: "
		      "Knative's target is capped at containerConcurrency (100%%)",
		      cfg->path, s->target_concurrency, cfg->instance_concurrency);
		util = 100;
	}
	p->utilization_pct = util < 1 ? 1 : round(util * 10) / 10;
	p->target_per_pod = p->container_concurrency * p->utilization_pct / 100;
	p->cpu_m = (unsigned)llround(cfg->cpu * 1000) * p->per_pod + K8S_DAEMON_CPU_M;
	/* the snapshot's memory files hold one instance's state once, shared
	 * by every restored copy: one more memorySize when snapshots are on */
	p->mem_mi = cfg->memory_mb * (p->per_pod + (cfg->snapshot ? 1 : 0)) + K8S_DAEMON_MEM_MI;
	p->shm_mi = cfg->memory_mb;
	if (o->kind == K8S_KNATIVE && cfg->timeout_s + TIMEOUT_MARGIN_S > KNATIVE_MAX_TIMEOUT)
		warnf(warn, warnlen,
		      "%s: timeout %u s (timeoutSeconds %u) is above Knative's default "
		      "max-revision-timeout-seconds (%u): raise it in config-defaults, or the "
		      "Service is refused",
		      cfg->path, cfg->timeout_s, cfg->timeout_s + TIMEOUT_MARGIN_S, KNATIVE_MAX_TIMEOUT);
	if (cfg->auth_type && !strcmp(cfg->auth_type, "function"))
		warnf(warn, warnlen,
		      "%s: httpTrigger.authType function: every pod makes its own tokens, so "
		      "callers cannot know them; authenticate at the ingress instead",
		      cfg->path);
	return 0;
}

static cJSON *str_array(const char *const *items, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(items[i]));
	return a;
}

static cJSON *labels(const struct plan *p)
{
	cJSON *l = cJSON_CreateObject();
	cJSON_AddStringToObject(l, "app.kubernetes.io/name", p->name);
	cJSON_AddStringToObject(l, "app.kubernetes.io/component", "thaw-function");
	return l;
}

static cJSON *metadata(const struct plan *p, const struct k8s_opts *o, const struct config *cfg)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "name", p->name);
	if (o->namespace)
		cJSON_AddStringToObject(m, "namespace", o->namespace);
	cJSON_AddItemToObject(m, "labels", labels(p));
	cJSON *a = cJSON_AddObjectToObject(m, "annotations");
	cJSON_AddStringToObject(a, "thaw.io/function", cfg->name);
	return m;
}

static cJSON *probe(const char *path, unsigned port, unsigned period)
{
	cJSON *pr = cJSON_CreateObject();
	cJSON *get = cJSON_AddObjectToObject(pr, "httpGet");
	cJSON_AddStringToObject(get, "path", path);
	cJSON_AddNumberToObject(get, "port", port);
	cJSON_AddNumberToObject(pr, "periodSeconds", period);
	cJSON_AddNumberToObject(pr, "timeoutSeconds", 1);
	cJSON_AddNumberToObject(pr, "failureThreshold", 3);
	return pr;
}

/* The capabilities the daemon, its instances and criu use in a pod; each
 * one's reason, and the runs that showed the first five are each needed,
 * are in docs/kubernetes.md (tests/e2e/test_k8s.py repeats them). Every
 * other capability is dropped. */
static const char *const caps_add[] = {
	"SYS_ADMIN", "NET_ADMIN", "SYS_CHROOT", "SYS_TIME", "SETPCAP", "SYS_PTRACE", "SYS_RESOURCE",
};

static cJSON *container(const struct config *cfg, const struct plan *p, const struct k8s_opts *o)
{
	char buf[64], port[16];
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "name", "thaw");
	cJSON_AddStringToObject(c, "image", o->image);
	fmt(port, sizeof(port), "%u", p->port);
	const char *cmd[] = { "thaw", "serve", "--port", port, "--functions", "/",
			      "--state-dir", "/var/lib/thaw" };
	cJSON_AddItemToObject(c, "command", str_array(cmd, sizeof(cmd) / sizeof(cmd[0])));
	cJSON *ports = cJSON_AddArrayToObject(c, "ports");
	cJSON *pt = cJSON_CreateObject();
	/* Knative takes the port named http1 as the one it routes to */
	cJSON_AddStringToObject(pt, "name", o->kind == K8S_KNATIVE ? "http1" : "http");
	cJSON_AddNumberToObject(pt, "containerPort", p->port);
	cJSON_AddStringToObject(pt, "protocol", "TCP");
	cJSON_AddItemToArray(ports, pt);

	cJSON *res = cJSON_AddObjectToObject(c, "resources");
	for (int i = 0; i < 2; i++) {
		cJSON *r = cJSON_AddObjectToObject(res, i ? "limits" : "requests");
		cJSON_AddStringToObject(r, "cpu", cpu_q(buf, sizeof(buf), p->cpu_m));
		cJSON_AddStringToObject(r, "memory", fmt(buf, sizeof(buf), "%uMi", p->mem_mi));
		if (cfg->gpu_type)
			cJSON_AddStringToObject(r, "nvidia.com/gpu", "1");
	}
	cJSON_AddItemToObject(c, "readinessProbe", probe("/readyz", p->port, 1));
	cJSON_AddItemToObject(c, "livenessProbe", probe("/healthz", p->port, 10));

	cJSON *sc = cJSON_AddObjectToObject(c, "securityContext");
	/* left out for Knative, whose webhook takes only some securityContext
	 * fields: a container is unprivileged unless it asks */
	if (o->kind != K8S_KNATIVE)
		cJSON_AddFalseToObject(sc, "privileged");
	/* Kubernetes refuses false together with SYS_ADMIN */
	cJSON_AddTrueToObject(sc, "allowPrivilegeEscalation");
	cJSON *caps = cJSON_AddObjectToObject(sc, "capabilities");
	const char *all[] = { "ALL" };
	cJSON_AddItemToObject(caps, "drop", str_array(all, 1));
	cJSON_AddItemToObject(caps, "add", str_array(caps_add, sizeof(caps_add) / sizeof(caps_add[0])));
	/* CRIU cannot dump a process under seccomp from inside a filter
	 * (docs/kubernetes.md): unconfined is the price of snapshots */
	cJSON *sp = cJSON_AddObjectToObject(sc, "seccompProfile");
	if (o->seccomp && !strcmp(o->seccomp, K8S_SECCOMP_UNCONFINED)) {
		cJSON_AddStringToObject(sp, "type", "Unconfined");
	} else {
		cJSON_AddStringToObject(sp, "type", "Localhost");
		cJSON_AddStringToObject(sp, "localhostProfile", o->seccomp ? o->seccomp : DEFAULT_SECCOMP);
	}

	cJSON *vm = cJSON_AddArrayToObject(c, "volumeMounts");
	const char *mounts[][2] = { { "state", "/var/lib/thaw" }, { "shm", "/dev/shm" } };
	for (size_t i = 0; i < 2; i++) {
		cJSON *m = cJSON_CreateObject();
		cJSON_AddStringToObject(m, "name", mounts[i][0]);
		cJSON_AddStringToObject(m, "mountPath", mounts[i][1]);
		cJSON_AddItemToArray(vm, m);
	}
	return c;
}

static cJSON *volumes(const struct plan *p)
{
	char buf[32];
	cJSON *v = cJSON_CreateArray();
	cJSON *state = cJSON_CreateObject();
	cJSON_AddStringToObject(state, "name", "state");
	cJSON_AddObjectToObject(state, "emptyDir");
	cJSON_AddItemToArray(v, state);
	cJSON *shm = cJSON_CreateObject();
	cJSON_AddStringToObject(shm, "name", "shm");
	cJSON *ed = cJSON_AddObjectToObject(shm, "emptyDir");
	cJSON_AddStringToObject(ed, "medium", "Memory");
	cJSON_AddStringToObject(ed, "sizeLimit", fmt(buf, sizeof(buf), "%uMi", p->shm_mi));
	cJSON_AddItemToArray(v, shm);
	return v;
}

/* The pod template's annotations that are thaw's own. */
static void thaw_annotations(cJSON *a, const struct config *cfg, const struct plan *p)
{
	char buf[32];
	cJSON_AddStringToObject(a, "thaw.io/function", cfg->name);
	cJSON_AddStringToObject(a, "thaw.io/instances-per-pod", fmt(buf, sizeof(buf), "%u", p->per_pod));
	if (cfg->gpu_type) {
		cJSON_AddStringToObject(a, "thaw.io/gpu-type", cfg->gpu_type);
		if (cfg->gpu_memory_mb)
			cJSON_AddStringToObject(a, "thaw.io/gpu-memory-size",
						fmt(buf, sizeof(buf), "%u", cfg->gpu_memory_mb));
	}
}

static cJSON *pod_spec(const struct config *cfg, const struct plan *p, const struct k8s_opts *o)
{
	cJSON *spec = cJSON_CreateObject();
	if (o->kind == K8S_KNATIVE) {
		cJSON_AddNumberToObject(spec, "containerConcurrency", p->container_concurrency);
		cJSON_AddNumberToObject(spec, "timeoutSeconds", cfg->timeout_s + TIMEOUT_MARGIN_S);
	}
	cJSON *cs = cJSON_AddArrayToObject(spec, "containers");
	cJSON_AddItemToArray(cs, container(cfg, p, o));
	cJSON_AddItemToObject(spec, "volumes", volumes(p));
	return spec;
}

static cJSON *knative_service(const struct config *cfg, const struct plan *p,
			      const struct k8s_opts *o)
{
	char buf[32];
	const struct config_scaling *s = &cfg->scaling;
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "apiVersion", "serving.knative.dev/v1");
	cJSON_AddStringToObject(d, "kind", "Service");
	cJSON_AddItemToObject(d, "metadata", metadata(p, o, cfg));
	cJSON *tpl = cJSON_AddObjectToObject(cJSON_AddObjectToObject(d, "spec"), "template");
	cJSON *tm = cJSON_AddObjectToObject(tpl, "metadata");
	cJSON_AddItemToObject(tm, "labels", labels(p));
	cJSON *a = cJSON_AddObjectToObject(tm, "annotations");
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev");
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/metric", "concurrency");
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/min-scale", fmt(buf, sizeof(buf), "%u", p->min_scale));
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/max-scale", fmt(buf, sizeof(buf), "%u", p->max_scale));
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/target-utilization-percentage",
				num(buf, sizeof(buf), p->utilization_pct));
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/window", fmt(buf, sizeof(buf), "%us", s->stable_window_s));
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/panic-window-percentage",
				fmt(buf, sizeof(buf), "%u", s->panic_window_pct));
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/panic-threshold-percentage",
				fmt(buf, sizeof(buf), "%u", s->panic_threshold_pct));
	cJSON_AddStringToObject(a, "autoscaling.knative.dev/scale-to-zero-pod-retention-period",
				fmt(buf, sizeof(buf), "%us", s->scale_to_zero_grace_s));
	thaw_annotations(a, cfg, p);
	cJSON_AddItemToObject(tpl, "spec", pod_spec(cfg, p, o));
	return d;
}

static cJSON *deployment(const struct config *cfg, const struct plan *p, const struct k8s_opts *o)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "apiVersion", "apps/v1");
	cJSON_AddStringToObject(d, "kind", "Deployment");
	cJSON_AddItemToObject(d, "metadata", metadata(p, o, cfg));
	cJSON *spec = cJSON_AddObjectToObject(d, "spec");
	/* no replicas: the HTTPScaledObject owns them */
	cJSON *sel = cJSON_AddObjectToObject(spec, "selector");
	cJSON *ml = cJSON_AddObjectToObject(sel, "matchLabels");
	cJSON_AddStringToObject(ml, "app.kubernetes.io/name", p->name);
	cJSON *tpl = cJSON_AddObjectToObject(spec, "template");
	cJSON *tm = cJSON_AddObjectToObject(tpl, "metadata");
	cJSON_AddItemToObject(tm, "labels", labels(p));
	thaw_annotations(cJSON_AddObjectToObject(tm, "annotations"), cfg, p);
	cJSON_AddItemToObject(tpl, "spec", pod_spec(cfg, p, o));
	return d;
}

static cJSON *service(const struct config *cfg, const struct plan *p, const struct k8s_opts *o)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "apiVersion", "v1");
	cJSON_AddStringToObject(d, "kind", "Service");
	cJSON_AddItemToObject(d, "metadata", metadata(p, o, cfg));
	cJSON *spec = cJSON_AddObjectToObject(d, "spec");
	cJSON_AddStringToObject(spec, "type", "ClusterIP");
	cJSON *sel = cJSON_AddObjectToObject(spec, "selector");
	cJSON_AddStringToObject(sel, "app.kubernetes.io/name", p->name);
	cJSON *ports = cJSON_AddArrayToObject(spec, "ports");
	cJSON *pt = cJSON_CreateObject();
	cJSON_AddStringToObject(pt, "name", "http");
	cJSON_AddNumberToObject(pt, "port", 80);
	cJSON_AddStringToObject(pt, "targetPort", "http");
	cJSON_AddStringToObject(pt, "protocol", "TCP");
	cJSON_AddItemToArray(ports, pt);
	return d;
}

static cJSON *http_scaled_object(const struct config *cfg, const struct plan *p,
				 const struct k8s_opts *o)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "apiVersion", "http.keda.sh/v1alpha1");
	cJSON_AddStringToObject(d, "kind", "HTTPScaledObject");
	cJSON_AddItemToObject(d, "metadata", metadata(p, o, cfg));
	cJSON *spec = cJSON_AddObjectToObject(d, "spec");
	const char *host = o->host ? o->host : p->name;
	cJSON_AddItemToObject(spec, "hosts", str_array(&host, 1));
	cJSON *ref = cJSON_AddObjectToObject(spec, "scaleTargetRef");
	cJSON_AddStringToObject(ref, "name", p->name);
	cJSON_AddStringToObject(ref, "kind", "Deployment");
	cJSON_AddStringToObject(ref, "apiVersion", "apps/v1");
	cJSON_AddStringToObject(ref, "service", p->name);
	cJSON_AddNumberToObject(ref, "port", 80);
	cJSON *rep = cJSON_AddObjectToObject(spec, "replicas");
	cJSON_AddNumberToObject(rep, "min", p->min_scale);
	cJSON_AddNumberToObject(rep, "max", p->max_scale);
	cJSON_AddNumberToObject(spec, "scaledownPeriod", cfg->scaling.scale_to_zero_grace_s);
	cJSON *conc = cJSON_AddObjectToObject(cJSON_AddObjectToObject(spec, "scalingMetric"), "concurrency");
	double t = ceil(p->target_per_pod);
	cJSON_AddNumberToObject(conc, "targetValue", t < 1 ? 1 : t);
	return d;
}

int k8s_render(const struct config *cfg, const struct k8s_opts *o, char **yaml, char *err,
	       size_t errlen, char *warn, size_t warnlen)
{
	*yaml = NULL;
	if (warnlen)
		warn[0] = '\0';
	if (o->namespace && !dns1123(o->namespace))
		return refuse_opt(err, errlen,
			      "--namespace \"%s\": not a Kubernetes namespace name (lower-case "
			      "letters, digits and '-', at most 63)", o->namespace);
	if (o->host && !hostname_ok(o->host))
		return refuse_opt(err, errlen, "--host \"%s\": not a host name", o->host);
	struct plan p;
	int ret = make_plan(cfg, o, &p, err, errlen, warn, warnlen);
	if (ret)
		return ret;
	cJSON *docs[3] = { NULL };
	size_t n = 0;
	if (o->kind == K8S_KNATIVE) {
		docs[n++] = knative_service(cfg, &p, o);
	} else {
		docs[n++] = deployment(cfg, &p, o);
		docs[n++] = service(cfg, &p, o);
		docs[n++] = http_scaled_object(cfg, &p, o);
	}
	struct out out = { 0 };
	puts_(&out, "# thaw k8s: generated from fc.yaml of function ");
	puts_(&out, cfg->name);
	puts_(&out, " (docs/kubernetes.md)\n");
	for (size_t i = 0; i < n; i++) {
		puts_(&out, "---\n");
		emit(&out, docs[i], 0);
		cJSON_Delete(docs[i]);
	}
	*yaml = out.p;
	return 0;
}

/* --- the command --------------------------------------------------------- */

static const char usage[] =
	"usage: thaw k8s [DIR] [options]\n"
	"Prints Kubernetes manifests for the function in DIR (default .) from its\n"
	"fc.yaml: a Knative Service, or with --kind deployment a Deployment, a Service\n"
	"and a KEDA HTTPScaledObject. docs/kubernetes.md says what each field means.\n"
	"  --image REF          the image: REPO@sha256:HEX as it is, or REPO alone with\n"
	"                       the digest of `thaw build`'s image (DIR/.thaw/image)\n"
	"  --layout DIR         the OCI image layout to take the digest from\n"
	"                       (default DIR/.thaw/image)\n"
	"  --kind KIND          knative (default) or deployment\n"
	"  --instances-per-pod N  thaw instances one pod runs (default 4, at most\n"
	"                       scalingConfig.maxInstances)\n"
	"  --name NAME          the objects' name (default the function's name)\n"
	"  --namespace NS       write metadata.namespace\n"
	"  --host HOST          the HTTPScaledObject's host (default the name)\n"
	"  --port N             the daemon's port in the pod (default 8080)\n"
	"  --seccomp PATH       the Localhost seccomp profile, relative to the kubelet's\n"
	"                       seccomp folder (default thaw/seccomp-thaw.json); or\n"
	"                       'unconfined': no filter, which CRIU needs to snapshot\n"
	"  -o, --output FILE    write there (replaced whole) instead of stdout\n"
	"  --help               this text\n"
	"exit: 0 ok, 1 refused (fc.yaml, image), 2 usage\n";

static bool hex64(const char *s)
{
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[64] == '\0';
}

/* The manifest digest of the OCI layout's one image (or the one named
 * "latest") into out. Returns CLI_OK or the exit code, said. */
static int layout_digest(struct cli *cli, const char *layout, char *out, size_t len)
{
	char path[4096], *buf = NULL;
	if (snprintf(path, sizeof(path), "%s/index.json", layout) >= (int)sizeof(path))
		return cli_fail(cli, CLI_USAGE, "--layout: path too long");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cli_fail(cli, CLI_FAILED, "%s: %s (run `thaw build` first, or give --image REPO@sha256:...)",
				path, strerror(errno));
	buf = xmalloc(MAX_INDEX_BYTES + 1);
	size_t n = 0;
	ssize_t r;
	while (n < MAX_INDEX_BYTES && (r = read(fd, buf + n, MAX_INDEX_BYTES - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	cJSON *idx = cJSON_ParseWithLength(buf, n);
	free(buf);
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(idx, "manifests"), *m, *pick = NULL;
	int count = 0;
	cJSON_ArrayForEach(m, ms) {
		const cJSON *ann = cJSON_GetObjectItemCaseSensitive(m, "annotations");
		if (!pick || !strcmp(cli_str(ann, "org.opencontainers.image.ref.name"), "latest"))
			pick = m;
		count++;
	}
	const char *d = cli_str(pick, "digest");
	int ret = CLI_OK;
	if (!idx || !count)
		ret = cli_fail(cli, CLI_FAILED, "%s: not an OCI image index with a manifest", path);
	else if (strncmp(d, "sha256:", 7) || !hex64(d + 7))
		ret = cli_fail(cli, CLI_FAILED, "%s: manifest digest \"%.80s\" is not sha256:HEX", path, d);
	else
		snprintf(out, len, "%s", d);
	cJSON_Delete(idx);
	return ret;
}

/* Writes text to path whole or not at all (a temporary file renamed). */
static int write_file(struct cli *cli, const char *path, const char *text)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return cli_fail(cli, CLI_USAGE, "-o %s: path too long", path);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return cli_fail(cli, CLI_FAILED, "%s: %s", tmp, strerror(errno));
	bool ok = fputs(text, f) >= 0;
	ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, path)) {
		int e = errno;
		unlink(tmp);
		return cli_fail(cli, CLI_FAILED, "%s: %s", path, strerror(e));
	}
	return CLI_OK;
}

/* --image (and --layout) as REPO@sha256:HEX into ref: by digest, never by
 * tag (a tag moves; a Knative revision must name what it ran). Returns
 * CLI_OK or the exit code, said. */
static int resolve_image(struct cli *cli, const char *image, const char *layout, const char *dir,
			 char *ref, size_t len)
{
	char digest[80];
	for (const char *c = image; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      strchr("._-/:@", *c)))
			return cli_fail(cli, CLI_USAGE, "--image: '%c' cannot be in an image reference", *c);
	const char *at = strchr(image, '@');
	const char *slash = strrchr(image, '/');
	const char *colon = at ? NULL : strrchr(image, ':');
	if (at) {
		if (at == image || strncmp(at + 1, "sha256:", 7) || !hex64(at + 8))
			return cli_fail(cli, CLI_USAGE, "--image '%s': expected REPO@sha256:<64 hex digits>", image);
		if (layout)
			return cli_fail(cli, CLI_USAGE, "--layout: the digest is in --image already");
		if (snprintf(ref, len, "%s", image) >= (int)len)
			return cli_fail(cli, CLI_USAGE, "--image: too long");
		return CLI_OK;
	}
	if (!*image || (colon && (!slash || colon > slash)))
		return cli_fail(cli, CLI_USAGE,
				"--image '%s': name the repository alone (the digest comes from "
				"the image layout) or REPO@sha256:HEX, not a tag", image);
	char def[2048];
	if (snprintf(def, sizeof(def), "%s/.thaw/image", dir) >= (int)sizeof(def))
		return cli_fail(cli, CLI_USAGE, "DIR: path too long");
	int ret = layout_digest(cli, layout ? layout : def, digest, sizeof(digest));
	if (ret)
		return ret;
	if (snprintf(ref, len, "%s@%s", image, digest) >= (int)len)
		return cli_fail(cli, CLI_USAGE, "--image: too long");
	return CLI_OK;
}

enum { OPT_IMAGE = 0x200, OPT_LAYOUT, OPT_KIND, OPT_PER_POD, OPT_NAME, OPT_NS, OPT_HOST,
       OPT_PORT, OPT_SECCOMP };

int cli_k8s(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "image", required_argument, 0, OPT_IMAGE },
		{ "layout", required_argument, 0, OPT_LAYOUT },
		{ "kind", required_argument, 0, OPT_KIND },
		{ "instances-per-pod", required_argument, 0, OPT_PER_POD },
		{ "name", required_argument, 0, OPT_NAME },
		{ "namespace", required_argument, 0, OPT_NS },
		{ "host", required_argument, 0, OPT_HOST },
		{ "port", required_argument, 0, OPT_PORT },
		{ "seccomp", required_argument, 0, OPT_SECCOMP },
		{ "output", required_argument, 0, 'o' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct k8s_opts o = { .kind = K8S_KNATIVE };
	const char *image = NULL, *layout = NULL, *output = NULL;
	unsigned long v;
	int c;
	while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
		switch (c) {
		case OPT_IMAGE: image = optarg; break;
		case OPT_LAYOUT: layout = optarg; break;
		case OPT_KIND:
			if (!strcmp(optarg, "knative"))
				o.kind = K8S_KNATIVE;
			else if (!strcmp(optarg, "deployment"))
				o.kind = K8S_DEPLOYMENT;
			else
				return cli_fail(cli, CLI_USAGE, "--kind: expected knative or deployment, got '%s'", optarg);
			break;
		case OPT_PER_POD:
			if (!cli_parse_count(optarg, 1, 1000, &v))
				return cli_fail(cli, CLI_USAGE, "--instances-per-pod: expected 1..1000, got '%s'", optarg);
			o.per_pod = (unsigned)v;
			break;
		case OPT_NAME: o.name = optarg; break;
		case OPT_NS: o.namespace = optarg; break;
		case OPT_HOST: o.host = optarg; break;
		case OPT_PORT:
			if (!cli_parse_count(optarg, 1, 65535, &v))
				return cli_fail(cli, CLI_USAGE, "--port: expected 1..65535, got '%s'", optarg);
			o.port = (unsigned)v;
			break;
		case OPT_SECCOMP:
			/* a relative path below the kubelet's seccomp folder */
			if (strcmp(optarg, K8S_SECCOMP_UNCONFINED) &&
			    (!*optarg || optarg[0] == '/' || strstr(optarg, "..")))
				return cli_fail(cli, CLI_USAGE,
						"--seccomp: expected a relative path (below the kubelet's seccomp folder) or 'unconfined', got '%s'",
						optarg);
			o.seccomp = optarg;
			break;
		case 'o': output = optarg; break;
		case 'h': fputs(usage, stdout); return CLI_OK;
		default: fputs(usage, stderr); return CLI_USAGE;
		}
	}
	if (argc - optind > 1) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	const char *dir = optind < argc ? argv[optind] : ".";
	if (!image)
		return cli_fail(cli, CLI_USAGE,
				"no image: give --image REPO (the digest is taken from %s/.thaw/image) "
				"or --image REPO@sha256:HEX", dir);

	char ref[1024];
	int ret = resolve_image(cli, image, layout, dir, ref, sizeof(ref));
	if (ret)
		return ret;
	o.image = ref;

	char path[4096], err[1024], warn[2048];
	if (snprintf(path, sizeof(path), "%s/fc.yaml", dir) >= (int)sizeof(path))
		return cli_fail(cli, CLI_USAGE, "DIR: path too long");
	struct config cfg;
	if (config_load(path, &cfg, err, sizeof(err)))
		return cli_fail(cli, CLI_FAILED, "%s", err);
	char *yaml = NULL;
	ret = k8s_render(&cfg, &o, &yaml, err, sizeof(err), warn, sizeof(warn));
	config_free(&cfg);
	if (ret)
		return cli_fail(cli, CLI_FAILED, "%s", err);
	for (char *line = warn, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		fprintf(stderr, "thaw k8s: warning: %s\n", line);
	}
	if (output) {
		ret = write_file(cli, output, yaml);
	} else {
		fputs(yaml, stdout);
		ret = fflush(stdout) ? cli_fail(cli, CLI_FAILED, "stdout: %s", strerror(errno)) : CLI_OK;
	}
	free(yaml);
	return ret;
}
