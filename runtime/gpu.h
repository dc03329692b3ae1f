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

#include "buf.h"

#define GPU_NVML_LIB "libnvidia-ml.so.1"
#define GPU_MAX 16

/* Loads lib (GPU_NVML_LIB) and initialises NVML, once per process; later
 * calls return the first answer. 0 with at least one device, -ENOENT
 * without the library, -ENODEV without a device or when NVML fails. */
int gpu_open(const char *lib);

/* Reads utilisation and memory of every device (after a successful
 * gpu_open; else nothing). Thread-safe against gpu_render. */
void gpu_sample(void);

/* Appends thaw_gpu_* lines (HELP and TYPE included) for the last sample;
 * nothing when there is no GPU or no sample yet. */
void gpu_render(struct buf *out);

#endif
