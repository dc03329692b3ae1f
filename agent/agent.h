/*
 * libthaw-agent.so: moves a custom runtime's memory into memory files of
 * its snapshot (docs/snapshots.md, "Custom runtimes"), without a change to
 * the server.
 *
 * The daemon puts it in LD_PRELOAD of the custom runtime's command when
 * snapshotMemory.mapped is on, so every process of the tree that is
 * dynamically linked loads it. Its constructor blocks CHANNEL_MEM_SIGNAL in
 * the loading thread (threads created later inherit that) and starts one
 * thread that waits for it with sigwaitinfo (again in a fork()ed child).
 * A thread that unblocked the signal anyway forwards it to that thread.
 *
 * Asked (protocol in common/channel.h), the agent thread
 *  1. stops the world: every other thread of the process gets
 *     AGENT_PARK_SIGNAL (tgkill) and parks in its handler on a futex
 *     (SA_RESTART; other signals blocked meanwhile) until released. All
 *     must be parked within AGENT_STOP_MS (threads born meanwhile are
 *     signalled too), else it releases those that parked, moves nothing and
 *     says "error: ..." (CRIU then copies the memory);
 *  2. moves every large private anonymous mapping (common/memfile.h: never
 *     stacks, [vdso]/[vvar], shared, file or device mappings, guards) into
 *     DIR/thaw-mem-PID-ADDRESS and maps it back MAP_PRIVATE|MAP_FIXED;
 *  3. releases the threads, answers the report.
 * In a restored copy, CHANNEL_AGENT_POPULATE (the daemon's cue after the
 * copy's first response, with snapshotMemory.populate) has it fault the
 * moved memory in from the page cache (MADV_POPULATE_READ).
 * No malloc while the world is stopped: a parked thread may hold its lock.
 *
 * Nothing is exported: the library is its constructor.
 */
#ifndef THAW_AGENT_H
#define THAW_AGENT_H

#include <signal.h>

/* The signal that parks the other threads; the handler returns at once
 * when no stop is under way (a late delivery). */
#define AGENT_PARK_SIGNAL (SIGRTMIN + 6)
/* How long every thread has to park. */
#define AGENT_STOP_MS 2000
/* Threads of one process the agent can stop; more: it moves nothing. */
#define AGENT_MAX_THREADS 4096

#endif
