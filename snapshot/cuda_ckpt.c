#define LOG_PREFIX "cuda_ckpt: "
#include "snapshot/cuda_ckpt.h"
#include "snapshot/plugin.h"
#include "common/log.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The driver's types. The code uses its own names throughout, so that it
 * builds the same with or without the CUDA toolkit; where cuda.h is there
 * (snapshot/module.mk defines THAW_HAVE_CUDA_H) every layout, value and
 * prototype below is checked against it at build time. The layouts are
 * those of CUDA 13's cuda.h (they changed between 12.9 and 13: the restore
 * arguments gained GPU remapping in what were reserved bytes, same size).
 * Everything but timeoutMs is zeroed here: no remapping, as older drivers
 * expect.
 */
#ifdef THAW_HAVE_CUDA_H
#include <cuda.h>
#endif

typedef int cu_result;

enum {
	CU_SUCCESS = 0,
	CU_ERROR_INVALID_VALUE = 1,
	CU_ERROR_OUT_OF_MEMORY = 2,
	CU_ERROR_NOT_INITIALIZED = 3,
	CU_ERROR_NO_DEVICE = 100,
	CU_ERROR_OPERATING_SYSTEM = 304,
	CU_ERROR_ILLEGAL_STATE = 401,
	CU_ERROR_NOT_READY = 600,
	CU_ERROR_NOT_SUPPORTED = 801,
};

/* CUcheckpointLockArgs */
struct lock_args {
	unsigned int timeoutMs; /* 0: no limit */
	unsigned int reserved0;
	uint64_t reserved1[7];
};

struct checkpoint_args { /* CUcheckpointCheckpointArgs */
	uint64_t reserved[8];
};

struct restore_args { /* CUcheckpointRestoreArgs (no GPU remapping: all zero) */
	void *gpuPairs;
	unsigned int gpuPairsCount;
	char reserved[52 - sizeof(void *)];
	uint64_t reserved1;
};

struct unlock_args { /* CUcheckpointUnlockArgs */
	uint64_t reserved[8];
};

typedef cu_result (*fn_init)(unsigned int flags);
typedef cu_result (*fn_driver_version)(int *version);
typedef cu_result (*fn_error_string)(cu_result err, const char **str);
typedef cu_result (*fn_get_state)(int pid, int *state);
typedef cu_result (*fn_lock)(int pid, struct lock_args *args);
typedef cu_result (*fn_checkpoint)(int pid, struct checkpoint_args *args);
typedef cu_result (*fn_restore)(int pid, struct restore_args *args);
typedef cu_result (*fn_unlock)(int pid, struct unlock_args *args);

#if defined(THAW_HAVE_CUDA_H) && defined(CUDA_VERSION) && CUDA_VERSION >= 12080
#define SAME_TYPE(a, b) __builtin_types_compatible_p(a, b)
#define SAME_VALUE(a, b) ((int)(a) == (int)(b))
_Static_assert(sizeof(CUresult) == sizeof(cu_result), "CUresult");
_Static_assert(SAME_VALUE(CUDA_SUCCESS, CU_SUCCESS) &&
		   SAME_VALUE(CUDA_ERROR_INVALID_VALUE, CU_ERROR_INVALID_VALUE) &&
		   SAME_VALUE(CUDA_ERROR_OUT_OF_MEMORY, CU_ERROR_OUT_OF_MEMORY) &&
		   SAME_VALUE(CUDA_ERROR_NOT_INITIALIZED, CU_ERROR_NOT_INITIALIZED) &&
		   SAME_VALUE(CUDA_ERROR_NO_DEVICE, CU_ERROR_NO_DEVICE) &&
		   SAME_VALUE(CUDA_ERROR_OPERATING_SYSTEM, CU_ERROR_OPERATING_SYSTEM) &&
		   SAME_VALUE(CUDA_ERROR_ILLEGAL_STATE, CU_ERROR_ILLEGAL_STATE) &&
		   SAME_VALUE(CUDA_ERROR_NOT_READY, CU_ERROR_NOT_READY) &&
		   SAME_VALUE(CUDA_ERROR_NOT_SUPPORTED, CU_ERROR_NOT_SUPPORTED),
	       "CUresult values");
_Static_assert(sizeof(CUprocessState) == sizeof(int), "CUprocessState");
_Static_assert(SAME_VALUE(CU_PROCESS_STATE_RUNNING, CUDA_CKPT_RUNNING) &&
		   SAME_VALUE(CU_PROCESS_STATE_LOCKED, CUDA_CKPT_LOCKED) &&
		   SAME_VALUE(CU_PROCESS_STATE_CHECKPOINTED, CUDA_CKPT_CHECKPOINTED) &&
		   SAME_VALUE(CU_PROCESS_STATE_FAILED, CUDA_CKPT_FAILED),
	       "CUprocessState values");
_Static_assert(sizeof(CUcheckpointLockArgs) == sizeof(struct lock_args) &&
		   offsetof(CUcheckpointLockArgs, timeoutMs) ==
		       offsetof(struct lock_args, timeoutMs),
	       "CUcheckpointLockArgs");
_Static_assert(sizeof(CUcheckpointCheckpointArgs) == sizeof(struct checkpoint_args),
	       "CUcheckpointCheckpointArgs");
_Static_assert(sizeof(CUcheckpointRestoreArgs) == sizeof(struct restore_args) &&
		   offsetof(CUcheckpointRestoreArgs, gpuPairs) ==
		       offsetof(struct restore_args, gpuPairs) &&
		   offsetof(CUcheckpointRestoreArgs, gpuPairsCount) ==
		       offsetof(struct restore_args, gpuPairsCount),
	       "CUcheckpointRestoreArgs");
_Static_assert(sizeof(CUcheckpointUnlockArgs) == sizeof(struct unlock_args),
	       "CUcheckpointUnlockArgs");
/* The prototypes, parameter for parameter (CUDAAPI is empty on Linux). */
_Static_assert(SAME_TYPE(__typeof__(&cuInit), CUresult (*)(unsigned int)), "cuInit");
_Static_assert(SAME_TYPE(__typeof__(&cuDriverGetVersion), CUresult (*)(int *)),
	       "cuDriverGetVersion");
_Static_assert(SAME_TYPE(__typeof__(&cuGetErrorString), CUresult (*)(CUresult, const char **)),
	       "cuGetErrorString");
_Static_assert(SAME_TYPE(__typeof__(&cuCheckpointProcessGetState),
			 CUresult (*)(int, CUprocessState *)),
	       "cuCheckpointProcessGetState");
_Static_assert(SAME_TYPE(__typeof__(&cuCheckpointProcessLock),
			 CUresult (*)(int, CUcheckpointLockArgs *)),
	       "cuCheckpointProcessLock");
_Static_assert(SAME_TYPE(__typeof__(&cuCheckpointProcessCheckpoint),
			 CUresult (*)(int, CUcheckpointCheckpointArgs *)),
	       "cuCheckpointProcessCheckpoint");
_Static_assert(SAME_TYPE(__typeof__(&cuCheckpointProcessRestore),
			 CUresult (*)(int, CUcheckpointRestoreArgs *)),
	       "cuCheckpointProcessRestore");
_Static_assert(SAME_TYPE(__typeof__(&cuCheckpointProcessUnlock),
			 CUresult (*)(int, CUcheckpointUnlockArgs *)),
	       "cuCheckpointProcessUnlock");
#endif

/* The loaded driver: written once by load(), under pthread_once, and only
 * read afterwards (tests that #include this file swap in a mock). */
static struct driver {
	int ret; /* 0, or -ENOTSUP with why */
	char why[256];
	void *dl;	  /* dlopen handle, kept for the process's life */
	int cuda_version; /* cuDriverGetVersion: 12080 = CUDA 12.8 */
	int branch;	  /* r570 ..., from /proc/driver/nvidia/version; 0 unknown */
	double init_ms;
	fn_init init;
	fn_driver_version driver_version;
	fn_error_string error_string;
	fn_get_state get_state;
	fn_lock lock;
	fn_checkpoint checkpoint;
	fn_restore restore;
	fn_unlock unlock;
} drv;
static pthread_once_t drv_once = PTHREAD_ONCE_INIT;
static atomic_int drv_loaded;	       /* load() finished */
static atomic_flag preload_started = ATOMIC_FLAG_INIT;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The driver branch from a /proc/driver/nvidia/version line, e.g.
 * "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15 ..."
 * -> 570: the first word that is digits, a dot and more. 0 when none. */
static int parse_branch(const char *line)
{
	for (const char *p = line; *p; p++) {
		if (p != line && p[-1] != ' ' && p[-1] != '\t')
			continue;
		char *end;
		long v = strtol(p, &end, 10);
		if (end != p && *p >= '0' && *p <= '9' && *end == '.' && end[1] >= '0' &&
		    end[1] <= '9' && v > 0 && v < 100000)
			return (int)v;
	}
	return 0;
}

static int read_branch(void)
{
	char line[512];
	FILE *f = fopen("/proc/driver/nvidia/version", "re");
	if (!f)
		return 0;
	int branch = fgets(line, sizeof(line), f) ? parse_branch(line) : 0;
	fclose(f);
	return branch;
}

/* 0 when the driver API version has the checkpoint calls; else -ENOTSUP
 * with the reason in why. branch (0: unknown) only makes it readable. */
static int check_version(int cuda_version, int branch, char *why, size_t len)
{
	if (cuda_version >= CUDA_CKPT_MIN_CUDA_VERSION)
		return 0;
	int major = cuda_version / 1000, minor = cuda_version % 1000 / 10;
	if (branch)
		snprintf(why, len,
			 "GPU snapshots off: driver %d (CUDA %d.%d) < %d has no checkpoint API",
			 branch, major, minor, CUDA_CKPT_MIN_DRIVER);
	else
		snprintf(
		    why, len,
		    "GPU snapshots off: driver for CUDA %d.%d < 12.8 (r%d) has no checkpoint API",
		    major, minor, CUDA_CKPT_MIN_DRIVER);
	return -ENOTSUP;
}

static void *sym(void *dl, const char *name, char *why, size_t len)
{
	void *p = dlsym(dl, name);
	if (!p)
		snprintf(why, len, "GPU snapshots off: %s has no %s (driver < r%d?)", CUDA_CKPT_LIB,
			 name, CUDA_CKPT_MIN_DRIVER);
	return p;
}

static int load_driver(struct driver *d)
{
	const size_t len = sizeof(d->why);

	d->dl = dlopen(CUDA_CKPT_LIB, RTLD_NOW | RTLD_LOCAL);
	if (!d->dl) {
		const char *e = dlerror();
		if (!e || strstr(e, "No such file"))
			snprintf(d->why, len, "GPU snapshots off: %s not found (no NVIDIA driver)",
				 CUDA_CKPT_LIB);
		else
			snprintf(d->why, len, "GPU snapshots off: cannot load %s: %s",
				 CUDA_CKPT_LIB, e);
		return -ENOTSUP;
	}
	/* Old drivers lack the checkpoint symbols: ask the version first (it
	 * needs no cuInit) so the message names the driver. */
	if (!(d->init = (fn_init)sym(d->dl, "cuInit", d->why, len)) ||
	    !(d->driver_version =
		  (fn_driver_version)sym(d->dl, "cuDriverGetVersion", d->why, len)) ||
	    !(d->error_string = (fn_error_string)sym(d->dl, "cuGetErrorString", d->why, len)))
		goto fail_close;
	cu_result r = d->driver_version(&d->cuda_version);
	if (r != CU_SUCCESS) {
		snprintf(d->why, len,
			 "GPU snapshots off: cuDriverGetVersion failed (CUDA error %d)", r);
		goto fail_close;
	}
	d->branch = read_branch();
	if (check_version(d->cuda_version, d->branch, d->why, len))
		goto fail_close;
	if (!(d->get_state =
		  (fn_get_state)sym(d->dl, "cuCheckpointProcessGetState", d->why, len)) ||
	    !(d->lock = (fn_lock)sym(d->dl, "cuCheckpointProcessLock", d->why, len)) ||
	    !(d->checkpoint =
		  (fn_checkpoint)sym(d->dl, "cuCheckpointProcessCheckpoint", d->why, len)) ||
	    !(d->restore = (fn_restore)sym(d->dl, "cuCheckpointProcessRestore", d->why, len)) ||
	    !(d->unlock = (fn_unlock)sym(d->dl, "cuCheckpointProcessUnlock", d->why, len)))
		goto fail_close;
	/* Seconds on a big machine: paid once here, never per restore. The
	 * restore call also needs it (or persistence mode) in the caller. */
	double t0 = now_ms();
	r = d->init(0);
	d->init_ms = now_ms() - t0;
	if (r != CU_SUCCESS) {
		const char *s = NULL;
		if (d->error_string(r, &s) != CU_SUCCESS || !s)
			s = "unknown error";
		snprintf(d->why, len, "GPU snapshots off: cuInit failed: %s (CUDA error %d)%s", s,
			 r, r == CU_ERROR_NO_DEVICE ? "; no GPU visible" : "");
		goto fail_close;
	}
	d->why[0] = '\0';
	return 0;

fail_close:
	dlclose(d->dl);
	return -ENOTSUP;
}

static void load(void)
{
	struct driver d = {0};
	if (load_driver(&d)) {
		/* No half-resolved pointer is kept: only the reason. */
		drv.ret = -ENOTSUP;
		memcpy(drv.why, d.why, sizeof(drv.why));
		atomic_store(&drv_loaded, 1);
		return;
	}
	drv = d;
	atomic_store(&drv_loaded, 1);
	if (drv.branch)
		pr_info("GPU snapshots on: driver %d (CUDA %d.%d), cuInit %.0f ms", drv.branch,
			drv.cuda_version / 1000, drv.cuda_version % 1000 / 10, drv.init_ms);
	else
		pr_info("GPU snapshots on: driver for CUDA %d.%d, cuInit %.0f ms",
			drv.cuda_version / 1000, drv.cuda_version % 1000 / 10, drv.init_ms);
}

int cuda_ckpt_probe(char *why, size_t len)
{
	pthread_once(&drv_once, load);
	if (len) {
		/* Cut to fit (not snprintf: callers' short buffers are fine). */
		size_t n = strnlen(drv.why, len - 1);
		memcpy(why, drv.why, n);
		why[n] = '\0';
	}
	return drv.ret;
}

static void *preload_main(void *arg)
{
	(void)arg;
	cuda_ckpt_probe(NULL, 0);
	return NULL;
}

void cuda_ckpt_preload(void)
{
	pthread_attr_t attr;
	pthread_t th;
	if (atomic_flag_test_and_set(&preload_started))
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int r = pthread_create(&th, &attr, preload_main, NULL);
	pthread_attr_destroy(&attr);
	if (r) /* the first probe loads it instead, as without preload */
		pr_warn("cannot start the driver preload thread: %s", strerror(r));
}

int cuda_ckpt_loaded(void)
{
	return atomic_load(&drv_loaded);
}

const char *cuda_ckpt_error(int err)
{
	const char *s = NULL;
	pthread_once(&drv_once, load);
	if (drv.ret || !drv.error_string)
		return "CUDA driver not loaded";
	if (drv.error_string(err, &s) != CU_SUCCESS || !s)
		return "unknown CUDA error";
	return s;
}

const char *cuda_ckpt_state_name(int state)
{
	switch (state) {
	case CUDA_CKPT_RUNNING:
		return "running";
	case CUDA_CKPT_LOCKED:
		return "locked";
	case CUDA_CKPT_CHECKPOINTED:
		return "checkpointed";
	case CUDA_CKPT_FAILED:
		return "failed";
	}
	return "unknown";
}

/* What a driver error means to the caller (see cuda_ckpt.h). */
static int errno_of(cu_result r)
{
	switch (r) {
	case CU_SUCCESS:
		return 0;
	case CU_ERROR_NOT_SUPPORTED:
		return -ENOTSUP;
	case CU_ERROR_NOT_READY:
		return -ETIMEDOUT;
	case CU_ERROR_ILLEGAL_STATE:
		return -EBUSY;
	case CU_ERROR_OUT_OF_MEMORY:
		return -ENOMEM;
	}
	return -EIO;
}

/* cuCheckpointProcessGetState, with "no CUDA state" told apart: the driver
 * answers NOT_INITIALIZED (or INVALID_VALUE) for a pid it has no process
 * for, which includes a pid that never made a CUDA context. */
static int get_state(pid_t pid, int *state)
{
	int s = -1;
	cu_result r = drv.get_state((int)pid, &s);
	if (r == CU_ERROR_NOT_INITIALIZED || r == CU_ERROR_INVALID_VALUE) {
		pr_debug("pid %d: no CUDA state (%s)", (int)pid, cuda_ckpt_error(r));
		return -ESRCH;
	}
	if (r != CU_SUCCESS) {
		pr_err("pid %d: cuCheckpointProcessGetState: %s (CUDA error %d)", (int)pid,
		       cuda_ckpt_error(r), r);
		return errno_of(r);
	}
	*state = s;
	return 0;
}

int cuda_ckpt_state(pid_t pid, int *state)
{
	if (cuda_ckpt_probe(NULL, 0))
		return -ENOTSUP;
	return get_state(pid, state);
}

/* Runs one step, times it into *ms, logs a failure. */
#define STEP(ms, what, call)                                                                       \
	({                                                                                         \
		double t0_ = now_ms();                                                             \
		cu_result r_ = (call);                                                             \
		(ms) = now_ms() - t0_;                                                             \
		if (r_ != CU_SUCCESS)                                                              \
			pr_err("pid %d: %s failed after %.1f ms: %s (CUDA error %d)", (int)pid,    \
			       what, (ms), cuda_ckpt_error(r_), r_);                               \
		r_;                                                                                \
	})

int cuda_ckpt_suspend(pid_t pid, unsigned timeout_ms, struct cuda_ckpt_timing *t)
{
	struct cuda_ckpt_timing tm = {0};
	double t0 = now_ms();
	int state, ret;

	if (t)
		*t = tm;
	if (cuda_ckpt_probe(NULL, 0))
		return -ENOTSUP;
	ret = get_state(pid, &state);
	if (ret)
		goto out;
	if (state != CUDA_CKPT_RUNNING) {
		pr_err("pid %d: cannot suspend GPU state: it is %s, not running", (int)pid,
		       cuda_ckpt_state_name(state));
		ret = -EBUSY;
		goto out;
	}

	struct lock_args la = {.timeoutMs = timeout_ms};
	cu_result r = STEP(tm.lock_ms, "cuCheckpointProcessLock", drv.lock((int)pid, &la));
	if (r != CU_SUCCESS) {
		/* On a timeout the driver leaves the process RUNNING. */
		ret = errno_of(r);
		goto out;
	}
	struct checkpoint_args ca = {0};
	r = STEP(tm.checkpoint_ms, "cuCheckpointProcessCheckpoint", drv.checkpoint((int)pid, &ca));
	if (r != CU_SUCCESS) {
		ret = errno_of(r);
		goto fail_unlock;
	}
	pr_debug("pid %d: GPU state checkpointed (lock %.1f ms, checkpoint %.1f ms)", (int)pid,
		 tm.lock_ms, tm.checkpoint_ms);
	ret = 0;
	goto out;

fail_unlock:;
	/* Give the process its GPU back: a failed checkpoint must not leave
	 * it blocked in every CUDA call. A FAILED process stays failed. */
	struct unlock_args ua = {0};
	double unused;
	if (get_state(pid, &state) == 0 && state == CUDA_CKPT_LOCKED &&
	    STEP(unused, "cuCheckpointProcessUnlock", drv.unlock((int)pid, &ua)) == CU_SUCCESS)
		pr_warn("pid %d: checkpoint failed; unlocked again, still running on the GPU",
			(int)pid);
out:
	tm.total_ms = now_ms() - t0;
	if (t)
		*t = tm;
	return ret;
}

int cuda_ckpt_resume(pid_t pid, struct cuda_ckpt_timing *t)
{
	struct cuda_ckpt_timing tm = {0};
	double t0 = now_ms();
	int state, ret;
	cu_result r;

	if (t)
		*t = tm;
	if (cuda_ckpt_probe(NULL, 0))
		return -ENOTSUP;
	ret = get_state(pid, &state);
	if (ret)
		goto out;
	if (state != CUDA_CKPT_CHECKPOINTED && state != CUDA_CKPT_LOCKED) {
		pr_err("pid %d: cannot resume GPU state: it is %s, not checkpointed", (int)pid,
		       cuda_ckpt_state_name(state));
		ret = -EBUSY;
		goto out;
	}
	if (state == CUDA_CKPT_CHECKPOINTED) {
		struct restore_args ra = {0};
		r = STEP(tm.restore_ms, "cuCheckpointProcessRestore", drv.restore((int)pid, &ra));
		if (r != CU_SUCCESS) {
			ret = errno_of(r);
			goto out;
		}
	}
	struct unlock_args ua = {0};
	r = STEP(tm.unlock_ms, "cuCheckpointProcessUnlock", drv.unlock((int)pid, &ua));
	if (r != CU_SUCCESS) {
		ret = errno_of(r);
		goto out;
	}
	pr_debug("pid %d: GPU state resumed (restore %.1f ms, unlock %.1f ms)", (int)pid,
		 tm.restore_ms, tm.unlock_ms);
	ret = 0;
out:
	tm.total_ms = now_ms() - t0;
	if (t)
		*t = tm;
	return ret;
}

/* --- as a snapshot plugin ------------------------------------------------- */

/* Whether pid has the CUDA driver mapped: only such a process can hold
 * device state, and only for one is the driver worth loading here. */
static bool has_cuda(pid_t pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	bool found = false;
	for (unsigned n = 0; f && !found && n < 100000 && fgets(line, sizeof(line), f); n++)
		found = strstr(line, "/libcuda.so") != NULL;
	if (f)
		fclose(f);
	return found;
}

static int plugin_pre_dump(pid_t pid, char *note, size_t len)
{
	if (!has_cuda(pid))
		return -ENOTSUP;
	struct cuda_ckpt_timing t = { 0 };
	int ret = cuda_ckpt_suspend(pid, 10000, &t);
	if (ret == -ESRCH) /* the driver, but no context: CPU only */
		return -ENOTSUP;
	if (!ret) /* tests/bench/gpu_restore.py reads this */
		snprintf(note, len, "GPU state of pid %d moved to host memory in %.1f ms", (int)pid,
			 t.total_ms);
	return ret;
}

static int plugin_post_restore(pid_t pid, char *note, size_t len)
{
	struct cuda_ckpt_timing t = { 0 };
	int ret = cuda_ckpt_resume(pid, &t);
	if (ret == -ESRCH)
		return -ENOTSUP;
	if (!ret) /* tests/bench/gpu_restore.py reads this */
		snprintf(note, len,
			 "GPU state of pid %d resumed in %.1f ms: cuCheckpointProcessRestore %.1f, unlock %.1f",
			 (int)pid, t.total_ms, t.restore_ms, t.unlock_ms);
	return ret;
}

const struct snapshot_plugin cuda_ckpt_plugin = {
	.version = SNAPSHOT_PLUGIN_V1,
	.name = "cuda",
	.pre_dump = plugin_pre_dump,
	.post_restore = plugin_post_restore,
};
