/*
 * libFuzzer target over fc.yaml parsing (common/config.c config_parse):
 * bytes of a would-be fc.yaml, as `thaw deploy` uploads and the daemon reads
 * from an image.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports):
 *  - the result is 0 or a negative errno;
 *  - an error comes with a one-line message naming the file ("fc.yaml...");
 *  - a success has a valid name ([A-Za-z_][A-Za-z0-9_-]{0,63}), a handler
 *    and the folder it was given, and config_free releases it (ASan: no
 *    leak, no double free);
 *  - parsing is deterministic: a second parse gives the same result and
 *    message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_config.c:%d: invariant failed: %s\n",     \
				__LINE__, #cond);                                       \
			abort();                                                        \
		}                                                                       \
	} while (0)

static int config_name_ok(const char *n)
{
	size_t len = strlen(n);
	if (len < 1 || len > 64 || !(n[0] == '_' || ((n[0] | 32) >= 'a' && (n[0] | 32) <= 'z')))
		return 0;
	for (size_t i = 1; i < len; i++)
		if (!(n[i] == '_' || n[i] == '-' || (n[i] >= '0' && n[i] <= '9') ||
		      ((n[i] | 32) >= 'a' && (n[i] | 32) <= 'z')))
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c, c2;
	char err[512] = "", err2[512] = "";
	int rc = config_parse((const char *)data, size, "fc.yaml", "/srv/fn", &c, err, sizeof(err));
	CHECK(rc <= 0);
	if (rc < 0) {
		CHECK(rc >= -4095);
		CHECK(!strncmp(err, "fc.yaml", 7));
		CHECK(!strchr(err, '\n'));
	} else {
		CHECK(c.name && config_name_ok(c.name));
		CHECK(c.handler && c.handler[0]);
		CHECK(c.dir && !strcmp(c.dir, "/srv/fn"));
	}
	int rc2 = config_parse((const char *)data, size, "fc.yaml", "/srv/fn", &c2, err2, sizeof(err2));
	CHECK(rc2 == rc);
	CHECK(!strcmp(err, err2));
	if (rc == 0) {
		CHECK(!strcmp(c.name, c2.name) && !strcmp(c.handler, c2.handler));
		config_free(&c);
		config_free(&c2);
	}
	return 0;
}
