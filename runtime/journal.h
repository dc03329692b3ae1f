/*
 * The deploy journal: STATE/deployments.jsonl, one JSON line per deploy
 * ({"op":"deploy","name","dir"|"image","time"}: a folder, or an uploaded
 * image by its manifest digest) or rollback ({"op":"rollback",
 * "name","version","time"}) or removal ({"op":"rm","name","time"}) made through the admin API. A restarted daemon
 * replays it, so it serves the same versions as before (their snapshots are
 * reused when still valid, see server_add_function).
 */
#ifndef THAW_JOURNAL_H
#define THAW_JOURNAL_H

/* Appends a line; 0 or -errno (logged). */
/* image: the manifest digest of an uploaded image, or NULL for a folder. */
int journal_deploy(const char *name, const char *dir, const char *image);
int journal_rollback(const char *name, unsigned version);
int journal_rm(const char *name);
/* Replays the journal into the registry. Returns the number of lines
 * applied, or -errno when it cannot be read (a missing file is 0). */
int journal_replay(void);

#endif
