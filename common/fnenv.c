#include "common/fnenv.h"
#include "common/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Whether entry ("KEY=value") sets the same key as one of env[0..n). */
static bool shadowed(char *const *env, size_t n, const char *entry)
{
	const char *eq = strchr(entry, '=');
	size_t kl = eq ? (size_t)(eq - entry) : strlen(entry);
	for (size_t i = 0; i < n; i++)
		if (!strncmp(env[i], entry, kl) && env[i][kl] == '=')
			return true;
	return false;
}

char **fnenv_build(const struct config *cfg, const char *handler, char *const *base)
{
	size_t n_base = 0;
	while (base && base[n_base])
		n_base++;
	size_t cap = n_base + cfg->n_env + 13, n = 0;
	char **env = xcalloc(cap, sizeof(char *));
	env[n++] = xasprintf("THAW_FUNCTION_NAME=%s", cfg->name);
	env[n++] = xasprintf("THAW_FUNCTION_DIR=%s", cfg->dir);
	env[n++] = xasprintf("THAW_HANDLER=%s", handler);
	env[n++] = xasprintf("THAW_INSTANCE_CONCURRENCY=%u", cfg->instance_concurrency);
	env[n++] = xasprintf("FC_FUNCTION_NAME=%s", cfg->name);
	env[n++] = xasprintf("FC_FUNCTION_MEMORY_SIZE=%u", cfg->memory_mb);
	env[n++] = xasprintf("FC_FUNCTION_TIMEOUT=%u", cfg->timeout_s);
	if (cfg->custom) { /* Function Compute's custom-runtime variables */
		env[n++] = xasprintf("FC_SERVER_PORT=%u", cfg->port);
		env[n++] = xasprintf("FC_CUSTOM_LISTEN_PORT=%u", cfg->port);
		env[n++] = xasprintf("FC_RUNTIME=custom");
		env[n++] = xasprintf("FC_FUNC_CODE_PATH=%s", cfg->dir);
		env[n++] = xasprintf("FC_INSTANCE_CONCURRENCY=%u", cfg->instance_concurrency);
	}
	for (size_t i = 0; i < cfg->n_env; i++) {
		char *e = xasprintf("%s=%s", cfg->env[i].key, cfg->env[i].value);
		if (shadowed(env, n, e)) /* identity first: fc.yaml cannot fake it */
			free(e);
		else
			env[n++] = e;
	}
	for (size_t i = 0; i < n_base; i++)
		if (!shadowed(env, n, base[i]))
			env[n++] = xstrdup(base[i]);
	env[n] = NULL;
	return env;
}

void fnenv_free(char **env)
{
	for (char **e = env; *e; e++)
		free(*e);
	free(env);
}
