/*
 * Snapshots that travel with the image (docs/kubernetes.md, "Snapshots
 * that travel").
 *
 * Every snapshot folder holds TRAVEL_NODE_NAME, written before the dump and
 * covered by the snapshot's manifest: where and from what it was made.
 *
 *   thaw-node v1
 *   function <name>
 *   kernel <uname -r>
 *   criu <criu --version>
 *   thaw <build id: SHA-256 of the thaw and thaw-instance binaries>
 *   source <SHA-256 of fc.yaml, the handler .so, model file names and sizes>
 *   dir <the snapshot folder's path: memory files are named by it>
 *   cpu-flags <the "flags" line of /proc/cpuinfo>
 *
 * `thaw build --base IMAGE --snapshot DIR` copies such a folder into the
 * function's image as a layer at /snapshot/<name>/ and writes these facts
 * as the layer's annotations (io.thaw.snapshot.*). A daemon that finds
 * <--snapshot-from>/<name>/ (default /snapshot) at start, and no snapshot
 * of its own to reuse, compares the folder's facts with its node: same
 * kernel, criu, thaw build, source and folder path, and every CPU flag the
 * snapshot's CPU had. Match: the folder's files are verified against its
 * manifest where they lie (nothing from a registry is trusted), and fn's
 * snapshot dir becomes a folder of links to them: CRIU reads the images and
 * maps the memory files through the links at the paths the dump recorded,
 * nothing is copied, and every daemon on the node shares the layer's page
 * cache. CRIU's own files (stats-restore) land beside the links, so nothing
 * is ever written into the shipped folder. The first instance is a
 * restore. Mismatch: one line with the reason, and the usual path: a cold
 * start, then a snapshot taken here. A snapshot taken here later (after a
 * failed restore) deletes the links, never what they point at, and writes
 * real files.
 */
#ifndef THAW_TRAVEL_H
#define THAW_TRAVEL_H

#include "daemon/server.h"

#include <stdbool.h>
#include <stddef.h>

#define TRAVEL_NODE_NAME "thaw-node"
#define TRAVEL_DEFAULT_FROM "/snapshot"

/* Writes fn's and this node's facts into dir (fn's new, empty snapshot
 * folder) before the dump. Returns 0 or -errno. */
int travel_write_node(const struct function *fn, const char *dir);

/* Called by fnsnap_init when fn has no snapshot of its own to reuse: takes
 * the snapshot that came with the image when it fits this node (logged
 * either way). Returns true when fn's snap_dir now holds a verified
 * snapshot. */
bool travel_import(struct function *fn);

#endif
