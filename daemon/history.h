/*
 * What changed from one version of a function to the next, for `thaw
 * history`: every fc.yaml setting that differs (compared as thaw build
 * writes them in the image config), the image's layers, or the folder.
 */
#ifndef THAW_HISTORY_H
#define THAW_HISTORY_H

struct function;

/* A JSON array of lines such as "timeout: 3 -> 30", "code layer:
 * sha256:1a2b3c4d5e6f -> sha256:...", "environmentVariables.MODE: (unset)
 * -> \"fast\""; "[]" for a first version or no change. The caller frees it. */
char *history_changes(const struct function *from, const struct function *to);

#endif
