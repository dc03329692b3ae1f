/*
 * The deploy journal: STATE/deployments.jsonl, one JSON line per event made
 * through the admin API or seen by the pools, each with its "time":
 *
 *   {"op":"deploy","name","version","dir"|"image"}  a folder, or an uploaded
 *                                                   image by its manifest digest
 *   {"op":"ready","name","version"}     the version's first instance got ready
 *   {"op":"failed","name","version","error"}  it failed before it ever was
 *   {"op":"rollback","name","version"}
 *   {"op":"rm","name"}
 *
 * A restarted daemon replays it (lifecycle_replay), so it serves the same version as before
 * with the same version numbers and states (ready, failed, still starting),
 * without starting every version to find out; snapshots are reused when
 * made from the same source (fnsnap.h). A deploy that cannot be loaded
 * again (its folder's fc.yaml broke, its image is gone) keeps its number as
 * a failed version saying why, so later numbers and rollbacks stay right.
 */
#ifndef THAW_JOURNAL_H
#define THAW_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A restart loads each name's newest versions again, this many (and back
 * to a version a rollback after the last deploy pinned); older ones are
 * retired: no longer listed, started or rolled back to. Their numbers are
 * not reused. */
#define JOURNAL_KEEP_VERSIONS 64

/* Append a line; 0 or -errno (logged). */
/* image: the manifest digest of an uploaded image, or NULL for a folder;
 * when: the version's deployed_at (Unix seconds). */
int journal_deploy(const char *name, unsigned version, const char *dir, const char *image,
		   int64_t when);
int journal_ready(const char *name, unsigned version);
int journal_failed(const char *name, unsigned version, const char *error);
int journal_rollback(const char *name, unsigned version);
int journal_rm(const char *name);
/* One line, parsed: views into its JSON (l). */
struct journal_line {
	void *l; /* the parsed line (cJSON); NULL: not JSON */
	const char *op, *name, *dir, *image, *error;
	unsigned version; /* its "version" (1..), else 0 */
	unsigned number;  /* a deploy: the version it made, counted per name */
	int64_t time;     /* unix seconds, 0 when absent */
	bool skip; /* nothing to do again: a later rm removed its name, the
		    * version is retired, or the line is not one of ours */
};
/* Reads the journal: every line, numbered, with what to skip marked;
 * *retired counts the deploys of retired versions. Free with
 * journal_lines_free. 0, or -errno when it cannot be read (a missing
 * journal is 0 lines). */
int journal_read(struct journal_line **lines, size_t *n, unsigned *retired);
void journal_lines_free(struct journal_line *lines, size_t n);
/* While muted (a replay), appends write nothing. */
void journal_mute(bool mute);

#endif
