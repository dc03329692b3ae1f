/*
 * The environment of a function's instance, built in one place for the
 * daemon's instances and for `thaw dev`: THAW_ and FC_ identity, then
 * fc.yaml's environmentVariables, then the entries of a base environment
 * that neither of those sets.
 */
#ifndef THAW_FNENV_H
#define THAW_FNENV_H

#include "common/config.h"

/* A NULL-terminated environment for cfg's instance running handler; base
 * (NULL-terminated, may be NULL) fills in what is not set. Free with
 * fnenv_free. */
char **fnenv_build(const struct config *cfg, const char *handler, char *const *base);
void fnenv_free(char **env);

#endif
