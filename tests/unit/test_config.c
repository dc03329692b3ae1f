/* common/config.c: fc.yaml parsing, defaults, and one exact error per bad file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"

#define HEAD "name: f\nhandler: h.so\n" /* lines 1-2; a case's own lines start at 3 */

static int parse(const char *yaml, struct config *c, char *err, size_t errlen)
{
	return config_parse(yaml, strlen(yaml), "fc.yaml", "/srv/fn", c, err, errlen);
}

static void assert_zeroed(const struct config *c)
{
	static const struct config zero;
	assert_memory_equal(c, &zero, sizeof(zero));
}

static const char full_yaml[] = "# every field\n"
				"name: my-func_1\n"
				"description: \"A test function\"\n"
				"handler: build/handlers/echo.so\n"
				"runtime: c\n"
				"timeout: 60\n"
				"memorySize: 1024\n"
				"cpu: 2.5\n"
				"instanceConcurrency: 10\n"
				"maxRequestBodySize: 1048576\n"
				"environmentVariables:\n"
				"  MODEL: resnet\n"
				"  THREADS: 4\n"
				"  EMPTY: \"\"\n"
				"modelFiles:\n"
				"  - models/a.bin\n"
				"  - models/b.bin\n"
				"warmup:\n"
				"  method: GET\n"
				"  path: /health?deep=1\n"
				"  body: |\n"
				"    {\"x\": 1}\n"
				"snapshot: false\n"
				"snapshotMemory:\n"
				"  mapped: false\n"
				"  minMappingSize: 65536\n"
				"  populate: true\n"
				"httpTrigger:\n"
				"  authType: function\n"
				"gpuConfig:\n"
				"  gpuType: fc.gpu.tesla.1\n"
				"  gpuMemorySize: 16384\n"
				"scalingConfig:\n"
				"  minInstances: 1\n"
				"  maxInstances: 20\n"
				"  targetConcurrency: 5.5\n"
				"  stableWindowSeconds: 30\n"
				"  panicWindowPercentage: 20\n"
				"  panicThresholdPercentage: 300\n"
				"  scaleToZeroGracePeriodSeconds: 120\n"
				"  maxQueueLength: 500\n";

static void test_full_file_sets_every_field(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	assert_int_equal(parse(full_yaml, &c, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_string_equal(c.path, "fc.yaml");
	assert_string_equal(c.dir, "/srv/fn");
	assert_string_equal(c.name, "my-func_1");
	assert_string_equal(c.description, "A test function");
	assert_string_equal(c.handler, "build/handlers/echo.so");
	assert_string_equal(c.runtime, "c");
	assert_int_equal(c.timeout_s, 60);
	assert_int_equal(c.memory_mb, 1024);
	assert_true(c.cpu == 2.5);
	assert_int_equal(c.instance_concurrency, 10);
	assert_int_equal(c.max_body_bytes, 1048576);
	assert_int_equal(c.n_env, 3);
	assert_string_equal(c.env[0].key, "MODEL");
	assert_string_equal(c.env[0].value, "resnet");
	assert_string_equal(c.env[1].key, "THREADS");
	assert_string_equal(c.env[1].value, "4");
	assert_string_equal(c.env[2].key, "EMPTY");
	assert_string_equal(c.env[2].value, "");
	assert_int_equal(c.n_model_files, 2);
	assert_string_equal(c.model_files[0], "models/a.bin");
	assert_string_equal(c.model_files[1], "models/b.bin");
	assert_true(c.has_warmup);
	assert_string_equal(c.warmup.method, "GET");
	assert_string_equal(c.warmup.path, "/health?deep=1");
	assert_string_equal(c.warmup.body, "{\"x\": 1}\n");
	assert_int_equal(c.warmup.body_len, 9);
	assert_false(c.snapshot);
	assert_false(c.snapshot_memory.mapped);
	assert_int_equal(c.snapshot_memory.min_bytes, 65536);
	assert_true(c.snapshot_memory.populate);
	assert_string_equal(c.auth_type, "function");
	assert_string_equal(c.gpu_type, "fc.gpu.tesla.1");
	assert_int_equal(c.gpu_memory_mb, 16384);
	assert_int_equal(c.scaling.min_instances, 1);
	assert_int_equal(c.scaling.max_instances, 20);
	assert_true(c.scaling.target_concurrency == 5.5);
	assert_int_equal(c.scaling.stable_window_s, 30);
	assert_int_equal(c.scaling.panic_window_pct, 20);
	assert_int_equal(c.scaling.panic_threshold_pct, 300);
	assert_int_equal(c.scaling.scale_to_zero_grace_s, 120);
	assert_int_equal(c.scaling.max_queue, 500);
	config_free(&c);
	assert_zeroed(&c);
}

static void assert_defaults(const struct config *c)
{
	assert_null(c->description);
	assert_string_equal(c->runtime, "c");
	assert_int_equal(c->timeout_s, 3);
	assert_int_equal(c->memory_mb, 512);
	assert_true(c->cpu == 1);
	assert_int_equal(c->instance_concurrency, 1);
	assert_int_equal(c->max_body_bytes, 32 << 20);
	assert_int_equal(c->n_env, 0);
	assert_null(c->env);
	assert_int_equal(c->n_model_files, 0);
	assert_false(c->has_warmup);
	assert_string_equal(c->warmup.method, "POST");
	assert_string_equal(c->warmup.path, "/");
	assert_string_equal(c->warmup.body, "");
	assert_int_equal(c->warmup.body_len, 0);
	assert_true(c->snapshot);
	assert_true(c->snapshot_memory.mapped);
	assert_int_equal(c->snapshot_memory.min_bytes, 2u << 20);
	assert_false(c->snapshot_memory.populate);
	assert_string_equal(c->auth_type, "anonymous");
	assert_null(c->gpu_type);
	assert_int_equal(c->gpu_memory_mb, 0);
	assert_int_equal(c->scaling.min_instances, 0);
	assert_int_equal(c->scaling.max_instances, 8);
	assert_true(c->scaling.target_concurrency > 0.699 && c->scaling.target_concurrency < 0.701);
	assert_int_equal(c->scaling.stable_window_s, 60);
	assert_int_equal(c->scaling.panic_window_pct, 10);
	assert_int_equal(c->scaling.panic_threshold_pct, 200);
	assert_int_equal(c->scaling.scale_to_zero_grace_s, 30);
	assert_int_equal(c->scaling.max_queue, 100);
}

static void test_minimal_file_gets_defaults(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	assert_int_equal(parse(HEAD, &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "f");
	assert_string_equal(c.handler, "h.so");
	assert_defaults(&c);
	config_free(&c);

	config_defaults(&c);
	assert_defaults(&c);
	config_free(&c);
}

static void test_target_concurrency_follows_instance_concurrency(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	assert_int_equal(parse(HEAD "instanceConcurrency: 10\n", &c, err, sizeof(err)), 0);
	assert_true(c.scaling.target_concurrency > 6.999 && c.scaling.target_concurrency < 7.001);
	config_free(&c);
	/* explicit wins, in either order */
	assert_int_equal(parse(HEAD "scalingConfig: {targetConcurrency: 3}\n"
				    "instanceConcurrency: 10\n",
			       &c, err, sizeof(err)),
			 0);
	assert_true(c.scaling.target_concurrency == 3);
	config_free(&c);
}

static void test_lenient_forms_are_accepted(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	/* functionName alias, flow style, empty maps, YAML 1.1 booleans, quoted
	 * numbers, a body with a NUL byte */
	const char *yaml = "{functionName: _f, handler: /abs/h.so, snapshot: yes,\n"
			   " timeout: \"7\", scalingConfig: , environmentVariables: ~,\n"
			   " modelFiles: [], warmup: {body: \"a\\0b\"}, httpTrigger: {}}\n";
	assert_int_equal(parse(yaml, &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "_f");
	assert_string_equal(c.handler, "/abs/h.so");
	assert_true(c.snapshot);
	assert_int_equal(c.timeout_s, 7);
	assert_int_equal(c.n_env, 0);
	assert_true(c.has_warmup);
	assert_string_equal(c.warmup.method, "POST");
	assert_int_equal(c.warmup.body_len, 3);
	assert_memory_equal(c.warmup.body, "a\0b", 4);
	assert_string_equal(c.auth_type, "anonymous");
	config_free(&c);
	/* a null err buffer is fine */
	assert_int_equal(config_parse("x", 1, NULL, NULL, &c, NULL, 0), -EINVAL);
	assert_zeroed(&c);
	/* names next to the reserved ones are free: routes are case-sensitive */
	static const char *const near[] = { "Admin", "admins", "v3", "metrics-v1", "proxy_" };
	for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++) {
		char y[96];
		snprintf(y, sizeof(y), "name: %s\nhandler: h\n", near[i]);
		if (parse(y, &c, err, sizeof(err)))
			fail_msg("%s: %s", near[i], err);
		assert_string_equal(c.name, near[i]);
		config_free(&c);
	}
}

struct bad_case {
	const char *yaml;
	const char *err; /* expected substring of the message */
};

static const struct bad_case bad_cases[] = {
	/* scalars out of range or of the wrong type */
	{HEAD "timeout: soon\n",
	 "fc.yaml:3: timeout: expected an integer of seconds in 1..86400, got \"soon\""},
	{HEAD "timeout: 0\n",
	 "fc.yaml:3: timeout: expected an integer of seconds in 1..86400, got \"0\""},
	{HEAD "timeout: 86401\n", "fc.yaml:3: timeout: expected an integer"},
	{HEAD "timeout: -1\n",
	 "fc.yaml:3: timeout: expected an integer of seconds in 1..86400, got \"-1\""},
	{HEAD "timeout: 2.5\n",
	 "fc.yaml:3: timeout: expected an integer of seconds in 1..86400, got \"2.5\""},
	{HEAD "timeout: 99999999999999999999999\n", "fc.yaml:3: timeout: expected an integer"},
	{HEAD "timeout:\n",
	 "fc.yaml:3: timeout: expected an integer of seconds in 1..86400, got nothing"},
	{HEAD "timeout: [1]\n",
	 "fc.yaml:3: timeout: expected an integer of seconds in 1..86400, got a list"},
	{HEAD "timeout: \"a\\nb\"\n",
	 "fc.yaml:3: timeout: expected an integer of seconds in 1..86400, got \"a?b\""},
	{HEAD "memorySize: 100\n",
	 "fc.yaml:3: memorySize: expected megabytes in 128..32768, a multiple of 64, got \"100\""},
	{HEAD "memorySize: 1000\n",
	 "fc.yaml:3: memorySize: expected megabytes in 128..32768, a multiple of 64, got \"1000\""},
	{HEAD "memorySize: 32832\n", "fc.yaml:3: memorySize: expected megabytes"},
	{HEAD "cpu: 0.01\n", "fc.yaml:3: cpu: expected a number of cores in 0.05..16, got \"0.01\""},
	{HEAD "cpu: 17\n", "fc.yaml:3: cpu: expected a number of cores in 0.05..16, got \"17\""},
	{HEAD "cpu: nan\n", "fc.yaml:3: cpu: expected a number of cores in 0.05..16, got \"nan\""},
	{HEAD "cpu: 1 core\n",
	 "fc.yaml:3: cpu: expected a number of cores in 0.05..16, got \"1 core\""},
	{HEAD "instanceConcurrency: 201\n",
	 "fc.yaml:3: instanceConcurrency: expected an integer in 1..200, got \"201\""},
	{HEAD "instanceConcurrency: 0\n",
	 "fc.yaml:3: instanceConcurrency: expected an integer in 1..200, got \"0\""},
	{HEAD "maxRequestBodySize: 0\n",
	 "fc.yaml:3: maxRequestBodySize: expected an integer of bytes in 1..1073741824, got \"0\""},
	{HEAD "maxRequestBodySize: 1073741825\n",
	 "fc.yaml:3: maxRequestBodySize: expected an integer of bytes"},
	{HEAD "maxRequestBodySize: 32MB\n",
	 "fc.yaml:3: maxRequestBodySize: expected an integer of bytes in 1..1073741824, got \"32MB\""},
	{HEAD "runtime: python3\n",
	 "fc.yaml:3: runtime: expected \"c\", \"custom\" or \"custom.debian12\", got \"python3\""},
	{HEAD "runtime: 'c\" or \"custom'\n", "fc.yaml:3: runtime: expected \"c\", \"custom\""},
	/* custom runtime */
	{"name: f\nruntime: custom\n",
	 "fc.yaml:1: customRuntimeConfig: required with runtime custom: the server's command"},
	{"name: f\nruntime: custom\ncustomRuntimeConfig:\n  port: 8000\n",
	 "fc.yaml:4: customRuntimeConfig.command: required with runtime custom: the server's command"},
	{HEAD "customRuntimeConfig:\n  command: [x]\n",
	 "fc.yaml:4: customRuntimeConfig: needs runtime: custom"},
	{"name: f\nruntime: custom\ncustomRuntimeConfig:\n  command: []\n",
	 "fc.yaml:4: customRuntimeConfig.command: expected a list of words, the first the program"},
	{"name: f\nruntime: custom\ncustomRuntimeConfig:\n  command: python3\n",
	 "fc.yaml:4: customRuntimeConfig.command: expected a list of words"},
	{"name: f\nruntime: custom\ncustomRuntimeConfig:\n  command: [a, {b: c}]\n",
	 "fc.yaml:4: customRuntimeConfig.command[1]: expected a word of text"},
	{"name: f\nruntime: custom\ncustomRuntimeConfig:\n  command: [a]\n  port: 70000\n",
	 "fc.yaml:5: customRuntimeConfig.port: expected a TCP port in 1..65535, got \"70000\""},
	{"name: f\nruntime: custom\ncustomRuntimeConfig:\n  command: [a]\n  portt: 80\n",
	 "fc.yaml:5: customRuntimeConfig.portt: unknown field, did you mean \"port\"?"},
	{HEAD "customHealthCheckConfig:\n  httpGetUrl: health\n",
	 "fc.yaml:4: customHealthCheckConfig.httpGetUrl: expected a request path starting with /"},
	{HEAD "customHealthCheckConfig:\n  timeoutSeconds: 4\n",
	 "fc.yaml:4: customHealthCheckConfig.timeoutSeconds: expected an integer of seconds in 1..3, got \"4\""},
	{HEAD "instanceLifecycleConfig:\n  initializer:\n    timeout: 0\n",
	 "fc.yaml:5: instanceLifecycleConfig.initializer.timeout: expected an integer of seconds in 1..600, got \"0\""},
	{HEAD "instanceLifecycleConfig:\n  preStop: []\n",
	 "fc.yaml:4: instanceLifecycleConfig.preStop: expected a map, got a list"},
	{HEAD "snapshot: maybe\n", "fc.yaml:3: snapshot: expected true or false, got \"maybe\""},
	{HEAD "snapshot: {}\n", "fc.yaml:3: snapshot: expected true or false, got a map"},
	{HEAD "snapshotMemory:\n  minMappingSize: 100\n",
	 "fc.yaml:4: snapshotMemory.minMappingSize: expected an integer of bytes in 4096..1099511627776, got \"100\""},
	{HEAD "snapshotMemory:\n  mapped: sometimes\n",
	 "fc.yaml:4: snapshotMemory.mapped: expected true or false, got \"sometimes\""},
	{HEAD "description: [a]\n",
	 "fc.yaml:3: description: expected text of at most 256 bytes, got a list"},
	/* name and handler */
	{"name: 1abc\nhandler: h\n", "fc.yaml:1: name: expected a name of 1 to 64 letters, digits, _ "
				 "or -, starting with a letter or _, got \"1abc\""},
	{"name: a.b\nhandler: h\n", "fc.yaml:1: name: expected a name of 1 to 64"},
	{"name: -a\nhandler: h\n", "fc.yaml:1: name: expected a name of 1 to 64"},
	{"name: a2345678901234567890123456789012345678901234567890123456789012345\nhandler: h\n",
	 "fc.yaml:1: name: expected a name of 1 to 64 letters, digits, _ or -, starting with a letter "
	 "or _, got \"a234567890123456789012345678901234567890...\""},
	{"name: {a: b}\nhandler: h\n", "fc.yaml:1: name: expected a name of 1 to 64 letters, digits, _ "
				   "or -, starting with a letter or _, got a map"},
	{"functionName: \"\"\nhandler: h\n", "fc.yaml:1: functionName: expected a name of 1 to 64"},
	{"name: f\nhandler:\n", "fc.yaml:2: handler: expected a path to the handler, got nothing"},
	{"name: f\nhandler: \"\"\n", "fc.yaml:2: handler: expected a path to the handler, got \"\""},
	{"handler: h\n", "fc.yaml:1: name: required field is missing"},
	/* names the daemon's own routes take (router_reserved): never reachable */
	{"handler: h\nname: admin\n",
	 "fc.yaml:2: name: \"admin\" is reserved for the daemon's own routes (/admin/...)"},
	{"name: proxy\nhandler: h\n",
	 "fc.yaml:1: name: \"proxy\" is reserved for the daemon's own routes (/proxy/{port}/...)"},
	{"name: invoke\nhandler: h\n",
	 "fc.yaml:1: name: \"invoke\" is reserved for the daemon's own routes (/invoke/{fn}/...)"},
	{"name: healthz\nhandler: h\n",
	 "fc.yaml:1: name: \"healthz\" is reserved for the daemon's own routes (/healthz)"},
	{"name: readyz\nhandler: h\n",
	 "fc.yaml:1: name: \"readyz\" is reserved for the daemon's own routes (/readyz)"},
	{"name: metrics\nhandler: h\n",
	 "fc.yaml:1: name: \"metrics\" is reserved for the daemon's own routes (/metrics)"},
	{"name: v1\nhandler: h\n",
	 "fc.yaml:1: name: \"v1\" is reserved for the daemon's own routes (/v1/models/...)"},
	{"name: v2\nhandler: h\n",
	 "fc.yaml:1: name: \"v2\" is reserved for the daemon's own routes (/v2/...)"},
	{"functionName: 'admin'\nhandler: h\n",
	 "fc.yaml:1: functionName: \"admin\" is reserved for the daemon's own routes"},
	{"# comment\n\nname: f\n", "fc.yaml:3: handler: required field is missing"},
	/* duplicates and unknown fields */
	{HEAD "functionName: g\n", "fc.yaml:3: functionName: duplicate field, first set at line 1"},
	{"name: a234567890123456789012345678901234567890123456789012345678901234\n"
	 "handler: h\ntimeout: x\n",
	 "fc.yaml:3: timeout: expected"}, /* 64 characters are fine */
	{HEAD "timeout: 3\ntimeout: 4\n", "fc.yaml:4: timeout: duplicate field, first set at line 3"},
	{HEAD "scalingConfig:\n  minInstances: 1\n  minInstances: 2\n",
	 "fc.yaml:5: scalingConfig.minInstances: duplicate field, first set at line 4"},
	{HEAD "timout: 3\n", "fc.yaml:3: timout: unknown field, did you mean \"timeout\"?"},
	{HEAD "memory_size: 256\n",
	 "fc.yaml:3: memory_size: unknown field, did you mean \"memorySize\"?"},
	{HEAD "maxInstances: 3\n",
	 "fc.yaml:3: maxInstances: unknown field, did you mean \"scalingConfig.maxInstances\"?"},
	{HEAD "scalingConfig:\n  maxInstance: 3\n",
	 "fc.yaml:4: scalingConfig.maxInstance: unknown field, did you mean \"maxInstances\"?"},
	{HEAD "scalingConfig:\n  timeout: 3\n", "fc.yaml:4: scalingConfig.timeout: unknown field here, "
					    "did you mean the top-level \"timeout\"?"},
	{HEAD "foo: 1\n", "fc.yaml:3: foo: unknown field (see docs/fc-yaml.md)"},
	{HEAD "? [a]\n: b\n", "fc.yaml:3: expected a field name, got a list"},
	{HEAD "\"\": 1\n", "fc.yaml:3: expected a field name, got \"\""},
	/* environmentVariables and modelFiles */
	{HEAD "environmentVariables: [a]\n",
	 "fc.yaml:3: environmentVariables: expected a map of variable names to values, got a list"},
	{HEAD "environmentVariables:\n  A:\n    b: c\n",
	 "fc.yaml:5: environmentVariables.A: expected a value as text, got a map"},
	{HEAD "environmentVariables:\n  1A: x\n",
	 "fc.yaml:4: environmentVariables.1A: expected a variable name"},
	{HEAD "environmentVariables:\n  A=B: x\n",
	 "fc.yaml:4: environmentVariables.A=B: expected a variable name"},
	{HEAD "environmentVariables:\n  A: 1\n  A: 2\n",
	 "fc.yaml:5: environmentVariables.A: duplicate variable, first set at line 4"},
	{HEAD "environmentVariables:\n  A: \"x\\0y\"\n",
	 "fc.yaml:4: environmentVariables.A: expected a value as text, got \"x?y\""},
	{HEAD "modelFiles:\n  - ok.bin\n  - /abs\n",
	 "fc.yaml:5: modelFiles[1]: expected a path relative to the function folder, got \"/abs\""},
	{HEAD "modelFiles: x.bin\n", "fc.yaml:3: modelFiles: expected a list of paths relative to the "
				 "function folder, got \"x.bin\""},
	{HEAD "modelFiles:\n  - {a: b}\n",
	 "fc.yaml:4: modelFiles[0]: expected a path relative to the function folder, got a map"},
	/* nested maps */
	{HEAD "warmup:\n  method: get\n",
	 "fc.yaml:4: warmup.method: expected an HTTP method in capitals such as POST, got \"get\""},
	{HEAD "warmup:\n  path: health\n", "fc.yaml:4: warmup.path: expected a request path starting "
				       "with / and without spaces, got \"health\""},
	{HEAD "warmup:\n  path: /a b\n", "fc.yaml:4: warmup.path: expected a request path"},
	{HEAD "warmup:\n  body: {a: 1}\n",
	 "fc.yaml:4: warmup.body: expected the request body as text, got a map"},
	{HEAD "warmup: 5\n", "fc.yaml:3: warmup: expected a map, got \"5\""},
	{HEAD "httpTrigger:\n  authType: none\n",
	 "fc.yaml:4: httpTrigger.authType: expected \"anonymous\" or \"function\", got \"none\""},
	{HEAD "httpTrigger:\n  methods: [GET]\n", "fc.yaml:4: httpTrigger.methods: unknown field"},
	{HEAD "gpuConfig:\n  gpuMemorySize: 1024\n",
	 "fc.yaml:4: gpuConfig: gpuType is required when gpuConfig is set"},
	{HEAD "gpuConfig:\n  gpuType: t4\n  gpuMemorySize: 0\n",
	 "fc.yaml:5: gpuConfig.gpuMemorySize: expected megabytes in 1..1048576, got \"0\""},
	{HEAD "scalingConfig:\n  minInstances: 10\n  maxInstances: 5\n",
	 "fc.yaml:5: scalingConfig.maxInstances: expected at least minInstances (10), got 5"},
	{HEAD "scalingConfig:\n  minInstances: 20\n",
	 "fc.yaml:4: scalingConfig.maxInstances: expected at least minInstances (20), got 8 (the "
	 "default)"},
	{HEAD "scalingConfig:\n  minInstances: 1001\n",
	 "fc.yaml:4: scalingConfig.minInstances: expected an integer in 0..1000, got \"1001\""},
	{HEAD "scalingConfig:\n  maxInstances: 0\n",
	 "fc.yaml:4: scalingConfig.maxInstances: expected an integer in 1..1000, got \"0\""},
	{HEAD "scalingConfig:\n  targetConcurrency: 0\n",
	 "fc.yaml:4: scalingConfig.targetConcurrency: expected a number > 0 and at most 200, got "
	 "\"0\""},
	{HEAD "scalingConfig:\n  targetConcurrency: -1\n",
	 "fc.yaml:4: scalingConfig.targetConcurrency: expected a number > 0"},
	{HEAD "scalingConfig:\n  stableWindowSeconds: 5\n",
	 "fc.yaml:4: scalingConfig.stableWindowSeconds: expected an integer of seconds in 6..3600, got "
	 "\"5\""},
	{HEAD "scalingConfig:\n  panicWindowPercentage: 0\n",
	 "fc.yaml:4: scalingConfig.panicWindowPercentage: expected an integer in 1..100, got \"0\""},
	{HEAD "scalingConfig:\n  panicThresholdPercentage: 100\n",
	 "fc.yaml:4: scalingConfig.panicThresholdPercentage: expected an integer in 110..1000, got "
	 "\"100\""},
	{HEAD "scalingConfig:\n  scaleToZeroGracePeriodSeconds: 3601\n",
	 "fc.yaml:4: scalingConfig.scaleToZeroGracePeriodSeconds: expected an integer of seconds in "
	 "0..3600, got \"3601\""},
	{HEAD "scalingConfig:\n  maxQueueLength: 100001\n",
	 "fc.yaml:4: scalingConfig.maxQueueLength: expected an integer in 0..100000, got \"100001\""},
	{HEAD "scalingConfig: [1]\n", "fc.yaml:3: scalingConfig: expected a map, got a list"},
	/* the document */
	{"", "fc.yaml:1: expected a map of fields at the top level, got an empty document"},
	{"# only a comment\n",
	 "fc.yaml:1: expected a map of fields at the top level, got an empty document"},
	{"- a\n- b\n", "fc.yaml:1: expected a map of fields at the top level, got a list"},
	{"hello\n", "fc.yaml:1: expected a map of fields at the top level, got \"hello\""},
	{HEAD "modelFiles: [[[[[[[[[[[[[[[[[[[[a]]]]]]]]]]]]]]]]]]]]\n",
	 "fc.yaml:3: expected at most 16 levels of nesting"},
	{HEAD "modelFiles:\n- - - - - - - - - - - - - - - - - - - - a\n",
	 "fc.yaml:4: expected at most 16 levels of nesting"},
	{HEAD "---\nname: g\n", "fc.yaml:4: expected one YAML document, got a second one"},
	{"name: f\n  handler: h\n",
	 "fc.yaml:2: YAML syntax error: mapping values are not allowed in this context"},
	{HEAD "modelFiles: [a\n", "fc.yaml:4: YAML syntax error: did not find expected ',' or ']' "
			      "(while parsing a flow sequence at line 3)"},
	{HEAD "timeout: *nope\n", "fc.yaml:3: YAML syntax error: found undefined alias"},
	{HEAD "description: \"\xff\"\n", "fc.yaml:3: YAML syntax error: invalid leading UTF-8 octet"},
	{HEAD "\ttimeout: 3\n",
	 "fc.yaml:3: YAML syntax error: found a tab character that violates indentation"},
};

static void test_bad_files_give_one_exact_error(void **state)
{
	(void)state;
	int failed = 0;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct config c;
		char err[512];
		int r = parse(bad_cases[i].yaml, &c, err, sizeof(err));
		if (r != -EINVAL || !strstr(err, bad_cases[i].err) || strchr(err, '\n')) {
			print_error("case %zu: rc %d\n  want: %s\n  got:  %s\n", i, r,
				    bad_cases[i].err, err);
			failed++;
		}
		if (!r)
			config_free(&c);
		assert_zeroed(&c);
	}
	assert_int_equal(failed, 0);
}

static void test_error_message_is_truncated_to_errlen(void **state)
{
	(void)state;
	struct config c;
	char err[16];
	assert_int_equal(parse(HEAD "timeout: soon\n", &c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "fc.yaml:3: time");
}

/* mkdtemp folder with fc.yaml holding text; returns the file path */
static char *write_tmp(char *dir, const char *text, size_t len)
{
	strcpy(dir, "/tmp/thaw-test-config-XXXXXX");
	assert_non_null(mkdtemp(dir));
	char *path = malloc(PATH_MAX);
	snprintf(path, PATH_MAX, "%s/fc.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
	return path;
}

static void remove_tmp(char *dir, char *path)
{
	unlink(path);
	rmdir(dir);
	free(path);
}

static void test_load_sets_path_and_real_dir(void **state)
{
	(void)state;
	char dir[64], err[256], real[PATH_MAX];
	struct config c;
	char *path = write_tmp(dir, HEAD "timeout: 9\n", strlen(HEAD) + 11);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
	assert_string_equal(c.path, path);
	assert_non_null(realpath(dir, real));
	assert_string_equal(c.dir, real);
	assert_int_equal(c.timeout_s, 9);
	config_free(&c);
	remove_tmp(dir, path);
}

static void test_load_errors_name_the_file(void **state)
{
	(void)state;
	char dir[64], err[256], want[128];
	struct config c;
	assert_int_equal(config_load("/nonexistent/fc.yaml", &c, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "/nonexistent/fc.yaml: No such file or directory");
	assert_zeroed(&c);

	char *path = write_tmp(dir, "timeout: x\n", 11);
	assert_int_equal(config_load(dir, &c, err, sizeof(err)), -EISDIR);
	assert_zeroed(&c);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:1: timeout: expected", path);
	assert_non_null(strstr(err, want));
	assert_zeroed(&c);
	remove_tmp(dir, path);

	size_t big = (1u << 20) + 1;
	char *text = malloc(big);
	memset(text, '#', big);
	path = write_tmp(dir, text, big);
	free(text);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "larger than 1 MiB"));
	assert_zeroed(&c);
	remove_tmp(dir, path);
}

/* A FIFO as fc.yaml is refused at once: a blocking open would wait for a
 * writer that never comes (on the daemon's event loop, in thaw build). The
 * alarm kills the test instead of letting it hang when that regresses. */
static void test_load_refuses_fifo_and_devices_at_once(void **state)
{
	(void)state;
	char dir[64], fifo[PATH_MAX], err[PATH_MAX + 64], want[PATH_MAX + 64];
	struct config c;
	strcpy(dir, "/tmp/thaw-test-config-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/fc.yaml", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	const char *const paths[] = { fifo, "/dev/null" };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		alarm(10);
		int r = config_load(paths[i], &c, err, sizeof(err));
		alarm(0);
		snprintf(want, sizeof(want), "%s: not a regular file", paths[i]);
		assert_int_equal(r, -EINVAL);
		assert_string_equal(err, want);
		assert_zeroed(&c);
	}
	unlink(fifo);
	rmdir(dir);
}

/* The example at the repo root parses (tests run from the repo root). */
static void test_custom_runtime_fields(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	const char *yaml = "name: ocr\n"
			   "runtime: custom.debian12\n"
			   "customRuntimeConfig:\n"
			   "  command: [/usr/bin/python3, server.py]\n"
			   "  args: [--workers, '1']\n"
			   "  port: 8000\n"
			   "customHealthCheckConfig:\n"
			   "  httpGetUrl: /health\n"
			   "  initialDelaySeconds: 1\n"
			   "  periodSeconds: 2\n"
			   "  timeoutSeconds: 3\n"
			   "  failureThreshold: 4\n"
			   "  successThreshold: 5\n"
			   "instanceLifecycleConfig:\n"
			   "  initializer: {handler: true, timeout: 30}\n"
			   "  preStop: {handler: true}\n";
	assert_int_equal(parse(yaml, &c, err, sizeof(err)), 0);
	assert_true(c.custom);
	assert_string_equal(c.runtime, "custom");
	assert_string_equal(c.handler, "");
	assert_int_equal(c.n_command, 2);
	assert_string_equal(c.command[0], "/usr/bin/python3");
	assert_string_equal(c.command[1], "server.py");
	assert_null(c.command[2]);
	assert_int_equal(c.n_args, 2);
	assert_string_equal(c.args[1], "1");
	assert_int_equal(c.port, 8000);
	assert_string_equal(c.health.http_get_url, "/health");
	assert_int_equal(c.health.initial_delay_s, 1);
	assert_int_equal(c.health.period_s, 2);
	assert_int_equal(c.health.timeout_s, 3);
	assert_int_equal(c.health.failure_threshold, 4);
	assert_int_equal(c.health.success_threshold, 5);
	assert_string_equal(c.initializer.handler, "true");
	assert_int_equal(c.initializer.timeout_s, 30);
	assert_string_equal(c.pre_stop.handler, "true");
	assert_int_equal(c.pre_stop.timeout_s, 3);
	config_free(&c);
	/* defaults: port 9000, FC's probe timings, no hooks */
	assert_int_equal(parse("name: f\nruntime: custom\ncustomRuntimeConfig: {command: [srv]}\n",
			       &c, err, sizeof(err)), 0);
	assert_int_equal(c.port, 9000);
	assert_null(c.args);
	assert_null(c.health.http_get_url);
	assert_int_equal(c.health.period_s, 5);
	assert_int_equal(c.health.timeout_s, 1);
	assert_int_equal(c.health.failure_threshold, 3);
	assert_int_equal(c.health.success_threshold, 1);
	assert_null(c.initializer.handler);
	config_free(&c);
	/* a native function is not custom */
	assert_int_equal(parse(HEAD, &c, err, sizeof(err)), 0);
	assert_false(c.custom);
	config_free(&c);
}

static void test_repo_example_loads(void **state)
{
	(void)state;
	char err[256];
	struct config c;
	if (access("fc.yaml", R_OK))
		fail_msg("no fc.yaml in the working directory: run from the repository root");
	if (config_load("fc.yaml", &c, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(c.name, "echo");
	assert_string_equal(c.handler, "build/handlers/echo.so");
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_file_sets_every_field),
	    cmocka_unit_test(test_minimal_file_gets_defaults),
	    cmocka_unit_test(test_target_concurrency_follows_instance_concurrency),
	    cmocka_unit_test(test_lenient_forms_are_accepted),
	    cmocka_unit_test(test_bad_files_give_one_exact_error),
	    cmocka_unit_test(test_error_message_is_truncated_to_errlen),
	    cmocka_unit_test(test_load_sets_path_and_real_dir),
	    cmocka_unit_test(test_load_errors_name_the_file),
	    cmocka_unit_test(test_load_refuses_fifo_and_devices_at_once),
	    cmocka_unit_test(test_custom_runtime_fields),
	    cmocka_unit_test(test_repo_example_loads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
