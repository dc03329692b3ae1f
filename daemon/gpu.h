/*
 * GPU figures for /metrics through NVML, loaded at run time (dlopen of
 * libnvidia-ml.so.1, as libcuda is), never linked: on a machine without a
 * GPU or driver there are no GPU metrics and no error.
 *
 * NVML calls can take milliseconds, so no event loop makes them: the
 * history sampler's thread reads the devices (gpu_sample) and /metrics
 * renders what it read last (gpu_render).
 */
#ifndef THAW_GPU_H
#define THAW_GPU_H

#include <stdint.h>

#include "common/buf.h"

#define GPU_NVML_LIB "libnvidia-ml.so.1"
#define GPU_MAX 16
#define GPU_POINTS 720 /* an hour of 5 s samples */

/* Loads lib (GPU_NVML_LIB) and initialises NVML, once per process; later
 * calls return the first answer. 0 with at least one device, -ENOENT
 * without the library, -ENODEV without a device or when NVML fails. */
int gpu_open(const char *lib);

/* Reads utilisation and memory of every device (after a successful
 * gpu_open; else nothing) and keeps them as the point at unix ms now.
 * Thread-safe against the renderers. */
void gpu_sample(int64_t now_ms);

/* Appends the last hour of samples as JSON, oldest first, one point a
 * sample (every SERIES_STEP_S seconds): {"step_s":5,"t":[unix ms...],
 * "gpus":[{"gpu":0,"name":"...","memory_total_bytes":N,"utilization":[0..1
 * or null...],"memory_used_bytes":[...]}]}; "gpus" is empty without a GPU. */
void gpu_render_history(struct buf *out);

/* Appends thaw_gpu_* lines (HELP and TYPE included) for the last sample;
 * nothing when there is no GPU or no sample yet. */
void gpu_render(struct buf *out);

#endif
