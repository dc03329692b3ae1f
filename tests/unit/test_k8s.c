/* cli/k8s.c: fc.yaml fields -> Knative / Deployment fields, refusals with
 * file:line, warnings, determinism, and the field-line finder. The schema
 * check of the whole output is tests/e2e/test_k8s.py's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/k8s.h"

#define IMAGE "reg.example:5000/fn@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char dir[64], path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_k8s.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/fc.yaml", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static void write_yaml(const char *yaml)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(yaml, f);
	fclose(f);
}

struct result {
	int ret;
	char *yaml;
	char err[1024], warn[2048];
};

/* fc.yaml text through config_load (a real file, so lines are found) and
 * k8s_render with o (NULL: Knative, defaults). */
static void render(const char *fc, const struct k8s_opts *o, struct result *r)
{
	struct k8s_opts def = { .kind = K8S_KNATIVE, .image = IMAGE };
	struct config cfg;
	char err[512];
	write_yaml(fc);
	int ret = config_load(path, &cfg, err, sizeof(err));
	if (ret)
		fail_msg("config_load: %s", err);
	memset(r, 0, sizeof(*r));
	r->ret = k8s_render(&cfg, o ? o : &def, &r->yaml, r->err, sizeof(r->err), r->warn,
			    sizeof(r->warn));
	config_free(&cfg);
}

static void has(const struct result *r, const char *needle)
{
	if (!r->yaml || !strstr(r->yaml, needle))
		fail_msg("missing %s in:\n%s", needle, r->yaml ? r->yaml : "(null)");
}

static void lacks(const struct result *r, const char *needle)
{
	if (r->yaml && strstr(r->yaml, needle))
		fail_msg("unexpected %s in:\n%s", needle, r->yaml);
}

#define FN "name: f\nhandler: h.so\n"

static void test_defaults_map_to_knative(void **state)
{
	(void)state;
	struct result r;
	render(FN, NULL, &r);
	assert_int_equal(r.ret, 0);
	assert_string_equal(r.warn, "");
	has(&r, "apiVersion: \"serving.knative.dev/v1\"\nkind: \"Service\"\n");
	has(&r, "image: \"" IMAGE "\"\n");
	/* maxInstances 8, 4 per pod: 2 pods at most; minInstances 0: to zero */
	has(&r, "autoscaling.knative.dev/min-scale: \"0\"\n");
	has(&r, "autoscaling.knative.dev/max-scale: \"2\"\n");
	has(&r, "thaw.io/instances-per-pod: \"4\"\n");
	has(&r, "containerConcurrency: 4\n"); /* 4 instances x instanceConcurrency 1 */
	has(&r, "autoscaling.knative.dev/target-utilization-percentage: \"70\"\n");
	has(&r, "autoscaling.knative.dev/window: \"60s\"\n");
	has(&r, "autoscaling.knative.dev/panic-window-percentage: \"10\"\n");
	has(&r, "autoscaling.knative.dev/panic-threshold-percentage: \"200\"\n");
	has(&r, "autoscaling.knative.dev/scale-to-zero-pod-retention-period: \"30s\"\n");
	has(&r, "timeoutSeconds: 4\n"); /* timeout 3 + 1: thaw's 504 first */
	/* 4 x 1 core + 0.1 for the daemon; (4 + 1 snapshot) x 512 + 128 MiB */
	has(&r, "cpu: \"4100m\"\n            memory: \"2688Mi\"\n");
	has(&r, "sizeLimit: \"512Mi\"\n");
	lacks(&r, "nvidia.com/gpu");
	has(&r, "path: \"/readyz\"\n            port: 8080\n");
	has(&r, "path: \"/healthz\"\n");
	has(&r, "name: \"http1\"\n          containerPort: 8080\n");
	lacks(&r, "privileged"); /* not among the fields Knative takes */
	has(&r, "allowPrivilegeEscalation: true\n");
	has(&r, "drop:\n            - \"ALL\"\n");
	has(&r, "add:\n            - \"SYS_ADMIN\"\n            - \"NET_ADMIN\"\n            - \"SYS_CHROOT\"\n"
		"            - \"SYS_TIME\"\n            - \"SETPCAP\"\n            - \"SYS_PTRACE\"\n"
		"            - \"SYS_RESOURCE\"\n          seccompProfile:");
	has(&r, "type: \"Localhost\"\n            localhostProfile: \"thaw/seccomp-thaw.json\"\n");
	free(r.yaml);

	/* unconfined: what CRIU needs to dump (docs/kubernetes.md); another path */
	struct k8s_opts o = { .kind = K8S_KNATIVE, .image = IMAGE, .seccomp = K8S_SECCOMP_UNCONFINED };
	render(FN, &o, &r);
	has(&r, "seccompProfile:\n            type: \"Unconfined\"\n        volumeMounts:");
	lacks(&r, "localhostProfile");
	free(r.yaml);
	o.seccomp = "profiles/thaw-v2.json";
	render(FN, &o, &r);
	has(&r, "localhostProfile: \"profiles/thaw-v2.json\"\n");
	free(r.yaml);
}

static void test_scaling_fields_map(void **state)
{
	(void)state;
	struct result r;
	render(FN "instanceConcurrency: 4\ntimeout: 30\nscalingConfig:\n  minInstances: 5\n"
		  "  maxInstances: 10\n  targetConcurrency: 3\n  stableWindowSeconds: 120\n"
		  "  panicWindowPercentage: 20\n  panicThresholdPercentage: 300\n"
		  "  scaleToZeroGracePeriodSeconds: 300\n",
	       &(struct k8s_opts){ .kind = K8S_KNATIVE, .image = IMAGE, .per_pod = 3 }, &r);
	assert_int_equal(r.ret, 0);
	has(&r, "min-scale: \"2\"\n");  /* ceil(5 / 3) */
	has(&r, "max-scale: \"4\"\n");  /* ceil(10 / 3) */
	has(&r, "containerConcurrency: 12\n");
	/* targetConcurrency 3 of instanceConcurrency 4 */
	has(&r, "target-utilization-percentage: \"75\"\n");
	has(&r, "window: \"120s\"\n");
	has(&r, "panic-window-percentage: \"20\"\n");
	has(&r, "panic-threshold-percentage: \"300\"\n");
	has(&r, "scale-to-zero-pod-retention-period: \"300s\"\n");
	has(&r, "timeoutSeconds: 31\n");
	free(r.yaml);

	/* a fraction stays a fraction: 0.5 of 3 */
	render(FN "instanceConcurrency: 3\nscalingConfig:\n  targetConcurrency: 0.5\n", NULL, &r);
	has(&r, "target-utilization-percentage: \"16.7\"\n");
	free(r.yaml);
}

static void test_per_pod_capped_by_max_instances(void **state)
{
	(void)state;
	struct result r;
	render(FN "scalingConfig:\n  maxInstances: 2\n", NULL, &r);
	assert_int_equal(r.ret, 0);
	has(&r, "thaw.io/instances-per-pod: \"2\"\n");
	has(&r, "max-scale: \"1\"\n");
	has(&r, "containerConcurrency: 2\n");
	free(r.yaml);
}

static void test_resources(void **state)
{
	(void)state;
	struct result r;
	struct k8s_opts one = { .kind = K8S_KNATIVE, .image = IMAGE, .per_pod = 1 };
	render(FN "cpu: 1.9\nmemorySize: 1024\nsnapshot: false\n", &one, &r);
	has(&r, "cpu: \"2\"\n            memory: \"1152Mi\"\n"); /* whole cores; no snapshot share */
	free(r.yaml);
	render(FN "cpu: 0.05\n", NULL, &r);
	has(&r, "cpu: \"300m\"\n"); /* 4 x 50m + 100m */
	free(r.yaml);
	render(FN "gpuConfig:\n  gpuType: fc.gpu.tesla.1\n  gpuMemorySize: 16384\n", &one, &r);
	has(&r, "requests:\n            cpu: \"1100m\"\n            memory: \"1152Mi\"\n"
		"            nvidia.com/gpu: \"1\"\n          limits:\n");
	has(&r, "memory: \"1152Mi\"\n            nvidia.com/gpu: \"1\"\n        readinessProbe");
	has(&r, "thaw.io/gpu-type: \"fc.gpu.tesla.1\"\n        thaw.io/gpu-memory-size: \"16384\"\n");
	free(r.yaml);
}

static void test_deployment_kind(void **state)
{
	(void)state;
	struct result r;
	struct k8s_opts o = { .kind = K8S_DEPLOYMENT, .image = IMAGE, .namespace = "fns",
			      .host = "f.example.com" };
	render(FN "instanceConcurrency: 10\ntimeout: 900\nscalingConfig:\n  minInstances: 1\n"
		  "  maxInstances: 12\n  scaleToZeroGracePeriodSeconds: 90\n", &o, &r);
	assert_int_equal(r.ret, 0);
	assert_string_equal(r.warn, ""); /* 900 s is only Knative's problem */
	has(&r, "---\napiVersion: \"apps/v1\"\nkind: \"Deployment\"\n");
	has(&r, "---\napiVersion: \"v1\"\nkind: \"Service\"\n");
	has(&r, "---\napiVersion: \"http.keda.sh/v1alpha1\"\nkind: \"HTTPScaledObject\"\n");
	has(&r, "namespace: \"fns\"\n");
	has(&r, "privileged: false\n");
	has(&r, "name: \"http\"\n          containerPort: 8080\n");
	lacks(&r, "containerConcurrency");
	lacks(&r, "autoscaling.knative.dev");
	lacks(&r, "replicas: "); /* the scaler owns them */
	has(&r, "hosts:\n  - \"f.example.com\"\n");
	has(&r, "replicas:\n    min: 1\n    max: 3\n");
	has(&r, "scaledownPeriod: 90\n");
	/* 70 % of 4 x 10 */
	has(&r, "concurrency:\n      targetValue: 28\n");
	free(r.yaml);
}

static void test_warnings(void **state)
{
	(void)state;
	struct result r;
	render(FN "timeout: 900\nhttpTrigger:\n  authType: function\ninstanceConcurrency: 2\n"
		  "scalingConfig:\n  targetConcurrency: 5\n", NULL, &r);
	assert_int_equal(r.ret, 0);
	has(&r, "target-utilization-percentage: \"100\"\n");
	assert_non_null(strstr(r.warn, "targetConcurrency 5 is above instanceConcurrency 2"));
	assert_non_null(strstr(r.warn, "timeout 900 s (timeoutSeconds 901) is above Knative's default max-revision-timeout-seconds"));
	assert_non_null(strstr(r.warn, "authType function"));
	free(r.yaml);
}

static void test_refusals_name_file_and_line(void **state)
{
	(void)state;
	struct result r;
	char want[512];
	render("# c\nname: My_Fn\nhandler: h.so\n", NULL, &r);
	assert_int_equal(r.ret, -EINVAL);
	assert_null(r.yaml);
	snprintf(want, sizeof(want), "%s:2: name: \"My_Fn\" cannot name a Kubernetes Knative Service", path);
	assert_memory_equal(r.err, want, strlen(want));
	assert_non_null(strstr(r.err, "give one with --name"));

	render("handler: h.so\nfunctionName: _f\n", NULL, &r);
	snprintf(want, sizeof(want), "%s:2: name: \"_f\"", path);
	assert_memory_equal(r.err, want, strlen(want));

	/* --name fixes it; a bad --name is refused without a line */
	struct k8s_opts o = { .kind = K8S_KNATIVE, .image = IMAGE, .name = "my-fn" };
	render("name: My_Fn\nhandler: h.so\n", &o, &r);
	assert_int_equal(r.ret, 0);
	has(&r, "name: \"my-fn\"\n");
	has(&r, "thaw.io/function: \"My_Fn\"\n");
	free(r.yaml);
	o.name = "my-fn-";
	render(FN, &o, &r);
	assert_int_equal(r.ret, -EINVAL);
	assert_memory_equal(r.err, "--name \"my-fn-\": ", 16); /* an option: no file named */

	/* 49 fits a Knative Service (NAME-00001-private <= 63), 50 does not,
	 * 50 fits a Deployment */
	char fc[256];
	snprintf(fc, sizeof(fc), "name: %.49s\nhandler: h.so\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	render(fc, NULL, &r);
	assert_int_equal(r.ret, 0);
	free(r.yaml);
	snprintf(fc, sizeof(fc), "name: %.50s\nhandler: h.so\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	render(fc, NULL, &r);
	assert_int_equal(r.ret, -EINVAL);
	assert_non_null(strstr(r.err, ":1: name: "));
	assert_non_null(strstr(r.err, "at most 49"));
	o = (struct k8s_opts){ .kind = K8S_DEPLOYMENT, .image = IMAGE };
	render(fc, &o, &r);
	assert_int_equal(r.ret, 0);
	free(r.yaml);
}

static void test_refusals_options(void **state)
{
	(void)state;
	struct result r;
	char want[512];
	struct k8s_opts o = { .kind = K8S_KNATIVE, .image = IMAGE, .per_pod = 5 };
	render(FN "description: \"maxInstances: 9\"\nscalingConfig: {minInstances: 1,\n  maxInstances: 3}\n", &o, &r);
	assert_int_equal(r.ret, -EINVAL);
	snprintf(want, sizeof(want),
		 "%s:5: scalingConfig.maxInstances: 3 is fewer than --instances-per-pod 5", path);
	assert_string_equal(r.err, want);

	o = (struct k8s_opts){ .kind = K8S_KNATIVE, .image = IMAGE, .namespace = "Fns" };
	render(FN, &o, &r);
	assert_int_equal(r.ret, -EINVAL);
	assert_non_null(strstr(r.err, "--namespace \"Fns\": not a Kubernetes namespace name"));

	o = (struct k8s_opts){ .kind = K8S_DEPLOYMENT, .image = IMAGE, .host = "a..b" };
	render(FN, &o, &r);
	assert_int_equal(r.ret, -EINVAL);
	assert_non_null(strstr(r.err, "--host \"a..b\": not a host name"));
}

static void test_same_input_same_bytes(void **state)
{
	(void)state;
	struct result a, b;
	const char *fc = FN "gpuConfig:\n  gpuType: 'odd \"type\" \\ x'\n";
	render(fc, NULL, &a);
	render(fc, NULL, &b);
	assert_int_equal(a.ret, 0);
	assert_string_equal(a.yaml, b.yaml);
	/* quotes and backslashes escaped as in JSON, which YAML reads alike */
	has(&a, "thaw.io/gpu-type: \"odd \\\"type\\\" \\\\ x\"\n");
	free(a.yaml);
	free(b.yaml);
}

static void test_field_line(void **state)
{
	(void)state;
	write_yaml("# comment\nname: f\nhandler: h.so\nwarmup:\n  path: /maxInstances\n"
		   "environmentVariables: {maxInstances: 1}\nscalingConfig:\n"
		   "  minInstances: 0\n  maxInstances: 4\n");
	assert_int_equal(k8s_field_line(path, "name"), 2);
	assert_int_equal(k8s_field_line(path, "scalingConfig"), 7);
	assert_int_equal(k8s_field_line(path, "scalingConfig.maxInstances"), 9);
	assert_int_equal(k8s_field_line(path, "maxInstances"), 0);
	assert_int_equal(k8s_field_line(path, "timeout"), 0);
	assert_int_equal(k8s_field_line("/nonexistent/fc.yaml", "name"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_map_to_knative),
		cmocka_unit_test(test_scaling_fields_map),
		cmocka_unit_test(test_per_pod_capped_by_max_instances),
		cmocka_unit_test(test_resources),
		cmocka_unit_test(test_deployment_kind),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_refusals_name_file_and_line),
		cmocka_unit_test(test_refusals_options),
		cmocka_unit_test(test_same_input_same_bytes),
		cmocka_unit_test(test_field_line),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
