/*
 * GET /admin/functions/NAME/snapshot: the snapshot the serving version of
 * NAME restores from, as a flat tar stream (common/ustar.h) that `thaw
 * snapshot` writes into a folder for `thaw build --snapshot`
 * (docs/kubernetes.md).
 *
 * Never a half-written one: only a snapshot that is ready, verified against
 * its manifest first on a worker (SHA-256 of every file, ~0.15 s per 256
 * MiB), and sent from the very fds that were hashed, so a new snapshot or a
 * deletion of the folder meanwhile changes nothing that is sent. The
 * manifest goes last: a stream cut short holds none, and `thaw snapshot`
 * refuses it. Answers before the stream: 409 when the function has no
 * version serving or no snapshot ready (and why), 500 when the snapshot
 * fails its manifest or cannot be read (the reason); the admin token is checked by the
 * caller (endpoints.c).
 */
#ifndef THAW_SNAPEXPORT_H
#define THAW_SNAPEXPORT_H

struct conn;
struct fn_name;

/* Answers c's GET, now (a refusal) or once verified (the stream). */
void snapexport_start(struct conn *c, struct fn_name *nm);
/* c is closing: drops its export (one still being verified is freed when
 * its worker is done). */
void snapexport_conn_closed(struct conn *c);

#endif
