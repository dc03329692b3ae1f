/*
 * GPU state of an instance through the CUDA driver's process checkpoint API
 * (driver r570 / CUDA 12.8 and later), the API NVIDIA's cuda-checkpoint tool
 * drives. It acts on another process by pid:
 *
 *   RUNNING --lock--> LOCKED --checkpoint--> CHECKPOINTED   (cuda_ckpt_suspend)
 *   CHECKPOINTED --restore--> LOCKED --unlock--> RUNNING    (cuda_ckpt_resume)
 *
 * A CHECKPOINTED process holds its device memory in host memory and no GPU
 * handles, so CRIU can dump it like any other process: suspend before
 * `criu dump`, resume each copy after `criu restore`. Not supported by the
 * driver: UVM (managed memory), CUDA IPC memory, NCCL / multi-process GPU
 * groups, MIG and MPS. A restore needs the same GPU type with enough free
 * memory (docs/criu.md, "GPU state").
 *
 * libcuda.so.1 is loaded at run time (dlopen), never linked: the daemon
 * starts on machines without the NVIDIA driver and GPU snapshots are then
 * off. The first call loads the driver and pays cuInit (seconds): keep it in
 * the long-lived daemon, and call cuda_ckpt_probe() once at start-up (or off
 * the event loop) so no request waits for it. All calls block and are safe
 * from several threads at once; run them off the event loop. Calls for one
 * pid must not overlap (the driver's state machine is per process).
 */
#ifndef THAW_CUDA_CKPT_H
#define THAW_CUDA_CKPT_H

#include <stddef.h>
#include <sys/types.h>

/* The first driver API with the checkpoint calls: CUDA 12.8 = driver r570.
 * cuDriverGetVersion() reports the CUDA version (12080), not the branch. */
#define CUDA_CKPT_MIN_CUDA_VERSION 12080
#define CUDA_CKPT_MIN_DRIVER 570
#define CUDA_CKPT_LIB "libcuda.so.1"

/* CUprocessState of cuda.h, by value (checked against it at build time). */
enum cuda_ckpt_state {
	CUDA_CKPT_RUNNING = 0,
	CUDA_CKPT_LOCKED = 1,
	CUDA_CKPT_CHECKPOINTED = 2,
	CUDA_CKPT_FAILED = 3,
};

/* Wall time of each driver call of one suspend or resume, in ms; steps that
 * did not run stay 0. */
struct cuda_ckpt_timing {
	double lock_ms;	      /* suspend: CUDA API calls in the process drained and locked */
	double checkpoint_ms; /* suspend: device memory copied to host, GPU released */
	double restore_ms;    /* resume: device memory back on a GPU */
	double unlock_ms;     /* resume: the process's CUDA calls run again */
	double total_ms;      /* the whole call, state query included */
};

/* 0 when GPU snapshots can work here: libcuda.so.1 loads, the checkpoint
 * symbols resolve, cuInit(0) succeeds and the driver is r570 (CUDA 12.8) or
 * newer. Else -ENOTSUP with one line in why (len may be 0), e.g.
 * "GPU snapshots off: libcuda.so.1 not found (no NVIDIA driver)". The
 * driver is loaded once per process and the result cached: later calls are
 * cheap. Thread-safe. */
int cuda_ckpt_probe(char *why, size_t len);

/* Starts loading the driver (cuda_ckpt_probe: dlopen, cuInit) on a thread
 * of its own and returns at once, so that the daemon pays cuInit once, at
 * start-up or when the first GPU function is added, and neither the event
 * loop nor the first restore waits for it. Later calls do nothing; a probe
 * made meanwhile waits for the load to finish. */
void cuda_ckpt_preload(void);

/* 1 once the driver load has finished (loaded or off), else 0; never waits. */
int cuda_ckpt_loaded(void);

/* The checkpoint state of pid's CUDA process into *state (enum
 * cuda_ckpt_state). Returns 0; -ENOTSUP when GPU snapshots are off; -ESRCH
 * when pid has no CUDA state (no context: the driver knows no such process)
 * or does not exist; -EIO for other driver errors (logged). */
int cuda_ckpt_state(pid_t pid, int *state);

/* Lock then checkpoint pid's CUDA state: its device memory goes to host
 * memory and its GPU handles are released, ready for `criu dump`. The lock
 * waits at most timeout_ms for CUDA calls in flight to finish (0: no
 * limit). t (may be NULL) gets timings. Returns 0 (pid is CHECKPOINTED), or:
 *   -ENOTSUP    GPU snapshots off here, or the driver refuses this process
 *               (UVM, IPC memory, ...): do not dump it;
 *   -ESRCH      pid has no CUDA state: nothing to do, dump it as it is;
 *   -ETIMEDOUT  the lock timed out; pid still RUNNING;
 *   -EBUSY      pid is not RUNNING (already locked or checkpointed, failed);
 *   -ENOMEM / -EIO  the checkpoint failed.
 * On a failed checkpoint pid is unlocked again (RUNNING) where the driver
 * allows; errors are logged with the driver's message. */
int cuda_ckpt_suspend(pid_t pid, unsigned timeout_ms, struct cuda_ckpt_timing *t);

/* Restore then unlock pid's CUDA state: its device memory is put back on a
 * GPU (the same type as at checkpoint) and its CUDA calls run again. For a
 * copy started by `criu restore` (pid as the caller sees it) or a process
 * suspended by cuda_ckpt_suspend. A LOCKED pid (restored, unlock failed
 * before) is only unlocked. t (may be NULL) gets timings. Returns 0 (pid is
 * RUNNING), -ENOTSUP (off here, or refused), -ESRCH (no CUDA state: nothing
 * to do), -EBUSY (not CHECKPOINTED or LOCKED), -ENOMEM (not enough free GPU
 * memory) or -EIO; errors are logged. On failure the caller kills the copy. */
int cuda_ckpt_resume(pid_t pid, struct cuda_ckpt_timing *t);

/* The GPU as a snapshot plugin (plugin.h): pre_dump suspends a process
 * that has the CUDA driver mapped (others are "not mine", and the driver is
 * not even loaded for them), post_restore resumes each copy. */
extern const struct snapshot_plugin cuda_ckpt_plugin;

/* The driver's message for a CUresult, e.g. "initialization error"; a
 * static string, never NULL (also when GPU snapshots are off). */
const char *cuda_ckpt_error(int cu_result);

/* "running", "locked", "checkpointed", "failed" or "unknown". */
const char *cuda_ckpt_state_name(int state);

#endif
