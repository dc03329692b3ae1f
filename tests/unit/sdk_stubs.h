/* The SDK's answer calls as no-ops, for tests and fuzz targets that include
 * a host module's .c file to reach its parsers without a running host. */
#ifndef THAW_TEST_SDK_STUBS_H
#define THAW_TEST_SDK_STUBS_H
#include "thaw/handler.h"

int thaw_respond(struct thaw_response *res, int status, const char *ct, const void *b, size_t n)
{
	(void)res, (void)status, (void)ct, (void)b, (void)n;
	return 0;
}
int thaw_respond_error(struct thaw_response *res, int status, const char *fmt, ...)
{
	(void)res, (void)status, (void)fmt;
	return 0;
}
int thaw_response_header(struct thaw_response *res, const char *name, const char *value)
{
	(void)res, (void)name, (void)value;
	return 0;
}
const char *thaw_request_header(const struct thaw_request *req, const char *name)
{
	(void)req, (void)name;
	return NULL;
}

#endif
