/*
 * Snapshot memory, instance side (docs/snapshots.md, "Mapped snapshot
 * memory"). Before CRIU dumps the warmed instance, the daemon asks it
 * (CHANNEL_MEM_SIGNAL, common/channel.h) to move every large private
 * anonymous mapping into a file of the snapshot folder and map that file
 * back MAP_PRIVATE|MAP_FIXED at the same address. CRIU then records file
 * mappings instead of copying pages: the image holds no state, every
 * restored copy maps the same files (clean pages shared, writes copy on
 * write) and restore time does not grow with the state.
 *
 * Never moved: stacks (the main one and every live thread's), [vdso],
 * [vvar], [vsyscall], file, shared and device mappings, PROT_NONE
 * reservations, anything below the size the daemon asks for. Pages never
 * touched are left as holes in the file (read back as zeros, as before).
 *
 * The request is served by one host thread that waits for the signal (it
 * is blocked in every other thread); the rest of the instance must be quiet
 * meanwhile: the daemon only checkpoints an idle instance, and a handler's
 * own threads must not write its state while a snapshot is taken.
 */
#ifndef THAW_HOST_SNAPMEM_H
#define THAW_HOST_SNAPMEM_H

#include <stddef.h>

/* Blocks CHANNEL_MEM_SIGNAL in the calling thread (so in every thread
 * created after, the handler's included) and starts the thread that serves
 * it. Call first in main(), before the handler is loaded. */
void host__snapmem_init(void);

/* A restored copy answered READY: when the checkpoint asked for it, the
 * serving thread faults the moved mappings' page tables in from the page
 * cache (MADV_POPULATE_READ) in the background, after the first response
 * (call host__snapmem_after_response() once a response is sent). */
void host__snapmem_restored(void);
void host__snapmem_after_response(void);

/* File-backed state memory for thaw_state_alloc() (handler.h): len bytes,
 * zeroed, always moved at checkpoint whatever its size. NULL on failure. */
void *host__snapmem_state_alloc(size_t len);

#endif
