/* Skips that say why, for cmocka tests: tests/run.sh counts skipped cases,
 * shows the reasons, and under THAW_NO_SKIP=1 fails every skip whose reason
 * line is not "skip[no-gpu]: ...". Include after <cmocka.h>. */
#ifndef THAW_TESTUTIL_H
#define THAW_TESTUTIL_H
#include <stdio.h>

/* skips this case for an unexpected reason (something missing here) */
#define SKIP_BECAUSE(...)                                                                          \
	do {                                                                                       \
		printf("skip: " __VA_ARGS__);                                                      \
		printf("\n");                                                                      \
		fflush(stdout);                                                                    \
		skip();                                                                            \
	} while (0)

/* skips this case because no GPU is here: the one expected skip */
#define SKIP_NO_GPU(...)                                                                           \
	do {                                                                                       \
		printf("skip[no-gpu]: " __VA_ARGS__);                                              \
		printf("\n");                                                                      \
		fflush(stdout);                                                                    \
		skip();                                                                            \
	} while (0)

#endif
