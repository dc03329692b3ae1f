/*
 * snapshot/cuda_ckpt.c: the CUDA driver's process checkpoint API.
 *
 * Three parts, chosen at run time:
 *  - no libcuda.so.1 here (no NVIDIA driver): the probe says so in one
 *    exact line, and every call answers -ENOTSUP without crashing;
 *  - always where it runs: the suspend/resume sequences and error mapping
 *    against a mock driver (this file #includes the .c to swap the driver
 *    table), and the version checks;
 *  - a driver is present: the GPU case is a counted skip unless
 *    THAW_GPU_TEST=1 (the mock group runs either way); then, zdtm
 *    shape, a child makes a CUDA context and fills device memory with a
 *    known pattern, is suspended (state CHECKPOINTED), resumed, and reads
 *    the pattern back from the GPU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"

#include "snapshot/cuda_ckpt.c"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define OFF_WHY "GPU snapshots off: libcuda.so.1 not found (no NVIDIA driver)"

/* --- no driver here ------------------------------------------------------ */

static void *probe_thread(void *arg)
{
	char *why = arg;
	return (void *)(intptr_t)cuda_ckpt_probe(why, 128);
}

/* First in its group: the threads race to load the driver. */
static void test_probe_is_thread_safe(void **state)
{
	(void)state;
	pthread_t th[8];
	char why[8][128];
	for (int i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&th[i], NULL, probe_thread, why[i]), 0);
	for (int i = 0; i < 8; i++) {
		void *ret;
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_int_equal((int)(intptr_t)ret, -ENOTSUP);
		assert_string_equal(why[i], OFF_WHY);
	}
}

/* In a child (a fresh load, whatever this process did): preload returns at
 * once, the load finishes on its own thread without any probe, and the
 * probe then answers from the cache. Exit codes name the failed step. */
static void test_preload_loads_in_background(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char why[256];
		if (cuda_ckpt_loaded())
			_exit(10);
		double t0 = now_ms();
		cuda_ckpt_preload();
		cuda_ckpt_preload(); /* a second call does nothing */
		if (now_ms() - t0 > 50)
			_exit(11);
		for (int i = 0; i < 500 && !cuda_ckpt_loaded(); i++)
			usleep(10000);
		if (!cuda_ckpt_loaded())
			_exit(12);
		if (cuda_ckpt_probe(why, sizeof(why)) != -ENOTSUP || strcmp(why, OFF_WHY))
			_exit(13);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_probe_says_driver_missing(void **state)
{
	(void)state;
	char why[256] = "untouched", tiny[12];
	assert_int_equal(cuda_ckpt_probe(why, sizeof(why)), -ENOTSUP);
	assert_string_equal(why, OFF_WHY);
	/* Cached, cut to the buffer, or not written at all. */
	assert_int_equal(cuda_ckpt_probe(tiny, sizeof(tiny)), -ENOTSUP);
	assert_string_equal(tiny, "GPU snapsho");
	assert_int_equal(cuda_ckpt_probe(NULL, 0), -ENOTSUP);
}

static void test_calls_are_enotsup_without_driver(void **state)
{
	(void)state;
	struct cuda_ckpt_timing t;
	int st = -7;
	memset(&t, 0xff, sizeof(t));
	assert_int_equal(cuda_ckpt_suspend(getpid(), 1000, &t), -ENOTSUP);
	assert_true(t.lock_ms == 0 && t.checkpoint_ms == 0 && t.total_ms == 0);
	assert_int_equal(cuda_ckpt_suspend(getpid(), 0, NULL), -ENOTSUP);
	assert_int_equal(cuda_ckpt_resume(getpid(), &t), -ENOTSUP);
	assert_true(t.restore_ms == 0 && t.unlock_ms == 0);
	assert_int_equal(cuda_ckpt_resume(1, NULL), -ENOTSUP);
	assert_int_equal(cuda_ckpt_state(getpid(), &st), -ENOTSUP);
	assert_int_equal(st, -7);
	assert_string_equal(cuda_ckpt_error(CU_ERROR_NOT_INITIALIZED), "CUDA driver not loaded");
}

/* --- version checks ------------------------------------------------------ */

static void test_version_check(void **state)
{
	(void)state;
	static const struct {
		int cuda_version, branch, ret;
		const char *why;
	} cases[] = {
	    {12040, 550, -ENOTSUP,
	     "GPU snapshots off: driver 550 (CUDA 12.4) < 570 has no checkpoint API"},
	    {12060, 0, -ENOTSUP,
	     "GPU snapshots off: driver for CUDA 12.6 < 12.8 (r570) has no checkpoint API"},
	    {12080, 570, 0, ""},
	    {13000, 580, 0, ""},
	    {13000, 0, 0, ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[256] = "";
		assert_int_equal(
		    check_version(cases[i].cuda_version, cases[i].branch, why, sizeof(why)),
		    cases[i].ret);
		assert_string_equal(why, cases[i].why);
	}
}

static void test_parse_branch(void **state)
{
	(void)state;
	assert_int_equal(parse_branch("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  "
				      "570.86.15  Release Build  (dvs-builder@U16-I3-B03-4-3)\n"),
			 570);
	assert_int_equal(parse_branch("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  "
				      "Tue Mar  5 22:23:56 UTC 2024\n"),
			 550);
	assert_int_equal(
	    parse_branch("NVRM version: NVIDIA UNIX x86_64 Kernel Module for x86_64\n"), 0);
	assert_int_equal(parse_branch(""), 0);
}

/* --- a mock driver ------------------------------------------------------- */

static struct {
	int has_ctx; /* GetState answers NOT_INITIALIZED when 0 */
	int state;
	cu_result lock_ret, checkpoint_ret, restore_ret;
	unsigned lock_timeout;
	int lock_sleep_ms;
	int args_dirty; /* a reserved byte was not zero */
	char calls[32]; /* S L C R U, in order */
} mk;
static struct driver saved_drv;

static void called(char c)
{
	size_t n = strlen(mk.calls);
	if (n + 1 < sizeof(mk.calls))
		mk.calls[n] = c;
}

static int nonzero(const void *p, size_t len)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < len; i++)
		if (b[i])
			return 1;
	return 0;
}

static cu_result mock_get_state(int pid, int *state)
{
	(void)pid;
	called('S');
	if (!mk.has_ctx)
		return CU_ERROR_NOT_INITIALIZED;
	*state = mk.state;
	return CU_SUCCESS;
}

static cu_result mock_lock(int pid, struct lock_args *a)
{
	(void)pid;
	called('L');
	mk.lock_timeout = a->timeoutMs;
	mk.args_dirty |= a->reserved0 || nonzero(a->reserved1, sizeof(a->reserved1));
	if (mk.lock_sleep_ms)
		usleep((useconds_t)mk.lock_sleep_ms * 1000);
	if (mk.lock_ret)
		return mk.lock_ret;
	if (mk.state != CUDA_CKPT_RUNNING)
		return CU_ERROR_ILLEGAL_STATE;
	mk.state = CUDA_CKPT_LOCKED;
	return CU_SUCCESS;
}

static cu_result mock_checkpoint(int pid, struct checkpoint_args *a)
{
	(void)pid;
	called('C');
	mk.args_dirty |= nonzero(a, sizeof(*a));
	if (mk.checkpoint_ret)
		return mk.checkpoint_ret;
	if (mk.state != CUDA_CKPT_LOCKED)
		return CU_ERROR_ILLEGAL_STATE;
	mk.state = CUDA_CKPT_CHECKPOINTED;
	return CU_SUCCESS;
}

static cu_result mock_restore(int pid, struct restore_args *a)
{
	(void)pid;
	called('R');
	mk.args_dirty |= nonzero(a, sizeof(*a));
	if (mk.restore_ret)
		return mk.restore_ret;
	if (mk.state != CUDA_CKPT_CHECKPOINTED)
		return CU_ERROR_ILLEGAL_STATE;
	mk.state = CUDA_CKPT_LOCKED;
	return CU_SUCCESS;
}

static cu_result mock_unlock(int pid, struct unlock_args *a)
{
	(void)pid;
	called('U');
	mk.args_dirty |= nonzero(a, sizeof(*a));
	if (mk.state != CUDA_CKPT_LOCKED)
		return CU_ERROR_ILLEGAL_STATE;
	mk.state = CUDA_CKPT_RUNNING;
	return CU_SUCCESS;
}

static cu_result mock_error_string(cu_result err, const char **s)
{
	*s = err == CU_ERROR_NOT_INITIALIZED ? "initialization error" : "mock CUDA error";
	return CU_SUCCESS;
}

static int mock_setup(void **state)
{
	(void)state;
	cuda_ckpt_probe(NULL, 0); /* the real load runs once, then is replaced */
	saved_drv = drv;
	memset(&mk, 0, sizeof(mk));
	mk.has_ctx = 1;
	memset(&drv, 0, sizeof(drv));
	drv.get_state = mock_get_state;
	drv.lock = mock_lock;
	drv.checkpoint = mock_checkpoint;
	drv.restore = mock_restore;
	drv.unlock = mock_unlock;
	drv.error_string = mock_error_string;
	return 0;
}

static int mock_teardown(void **state)
{
	(void)state;
	drv = saved_drv;
	return 0;
}

static void test_suspend_sequences(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int has_ctx, state0;
		cu_result lock_ret, checkpoint_ret;
		int ret;
		const char *calls;
		int state1;
	} cases[] = {
	    {"locks then checkpoints", 1, CUDA_CKPT_RUNNING, 0, 0, 0, "SLC",
	     CUDA_CKPT_CHECKPOINTED},
	    {"no CUDA context is nothing to do", 0, 0, 0, 0, -ESRCH, "S", 0},
	    {"lock timeout leaves it running", 1, CUDA_CKPT_RUNNING, CU_ERROR_NOT_READY, 0,
	     -ETIMEDOUT, "SL", CUDA_CKPT_RUNNING},
	    {"refused checkpoint unlocks again", 1, CUDA_CKPT_RUNNING, 0, CU_ERROR_NOT_SUPPORTED,
	     -ENOTSUP, "SLCSU", CUDA_CKPT_RUNNING},
	    {"checkpoint out of memory unlocks again", 1, CUDA_CKPT_RUNNING, 0,
	     CU_ERROR_OUT_OF_MEMORY, -ENOMEM, "SLCSU", CUDA_CKPT_RUNNING},
	    {"unknown checkpoint error unlocks again", 1, CUDA_CKPT_RUNNING, 0, 999, -EIO, "SLCSU",
	     CUDA_CKPT_RUNNING},
	    {"already locked is busy", 1, CUDA_CKPT_LOCKED, 0, 0, -EBUSY, "S", CUDA_CKPT_LOCKED},
	    {"already checkpointed is busy", 1, CUDA_CKPT_CHECKPOINTED, 0, 0, -EBUSY, "S",
	     CUDA_CKPT_CHECKPOINTED},
	    {"failed is busy", 1, CUDA_CKPT_FAILED, 0, 0, -EBUSY, "S", CUDA_CKPT_FAILED},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&mk, 0, sizeof(mk));
		mk.has_ctx = cases[i].has_ctx;
		mk.state = cases[i].state0;
		mk.lock_ret = cases[i].lock_ret;
		mk.checkpoint_ret = cases[i].checkpoint_ret;
		struct cuda_ckpt_timing t;
		int ret = cuda_ckpt_suspend(4242, 1234, &t);
		print_message("suspend: %s -> %d, calls %s\n", cases[i].name, ret, mk.calls);
		assert_int_equal(ret, cases[i].ret);
		assert_string_equal(mk.calls, cases[i].calls);
		if (cases[i].has_ctx)
			assert_int_equal(mk.state, cases[i].state1);
		if (strchr(mk.calls, 'L'))
			assert_int_equal(mk.lock_timeout, 1234);
		assert_false(mk.args_dirty);
		assert_true(t.total_ms >= t.lock_ms + t.checkpoint_ms);
	}
}

/* As a snapshot plugin: a process without the driver mapped is "not mine"
 * (the driver is not even asked), one with a context is suspended and each
 * restored copy resumed, with the timings in the note; no context at resume
 * is "not mine" too. */
static void test_plugin_hooks(void **state)
{
	(void)state;
	char note[160] = "";
	memset(&mk, 0, sizeof(mk));
	assert_int_equal(cuda_ckpt_plugin.version, SNAPSHOT_PLUGIN_V1);
	assert_int_equal(cuda_ckpt_plugin.pre_dump(getpid(), note, sizeof(note)), -ENOTSUP);
	assert_string_equal(mk.calls, ""); /* this test maps no libcuda.so */
	memset(&mk, 0, sizeof(mk));
	mk.has_ctx = 1;
	mk.state = CUDA_CKPT_CHECKPOINTED;
	assert_int_equal(cuda_ckpt_plugin.post_restore(4242, note, sizeof(note)), 0);
	assert_string_equal(mk.calls, "SRU");
	assert_non_null(strstr(note, "GPU state of pid 4242 resumed in "));
	memset(&mk, 0, sizeof(mk));
	assert_int_equal(cuda_ckpt_plugin.post_restore(4242, note, sizeof(note)), -ENOTSUP);
}

static void test_resume_sequences(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int has_ctx, state0;
		cu_result restore_ret;
		int ret;
		const char *calls;
		int state1;
	} cases[] = {
	    {"restores then unlocks", 1, CUDA_CKPT_CHECKPOINTED, 0, 0, "SRU", CUDA_CKPT_RUNNING},
	    {"locked is only unlocked", 1, CUDA_CKPT_LOCKED, 0, 0, "SU", CUDA_CKPT_RUNNING},
	    {"running is busy", 1, CUDA_CKPT_RUNNING, 0, -EBUSY, "S", CUDA_CKPT_RUNNING},
	    {"failed is busy", 1, CUDA_CKPT_FAILED, 0, -EBUSY, "S", CUDA_CKPT_FAILED},
	    {"no CUDA context is nothing to do", 0, 0, 0, -ESRCH, "S", 0},
	    {"restore out of GPU memory", 1, CUDA_CKPT_CHECKPOINTED, CU_ERROR_OUT_OF_MEMORY,
	     -ENOMEM, "SR", CUDA_CKPT_CHECKPOINTED},
	    {"restore refused", 1, CUDA_CKPT_CHECKPOINTED, CU_ERROR_NOT_SUPPORTED, -ENOTSUP, "SR",
	     CUDA_CKPT_CHECKPOINTED},
	    {"restore unknown error", 1, CUDA_CKPT_CHECKPOINTED, 999, -EIO, "SR",
	     CUDA_CKPT_CHECKPOINTED},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&mk, 0, sizeof(mk));
		mk.has_ctx = cases[i].has_ctx;
		mk.state = cases[i].state0;
		mk.restore_ret = cases[i].restore_ret;
		struct cuda_ckpt_timing t;
		int ret = cuda_ckpt_resume(4242, &t);
		print_message("resume: %s -> %d, calls %s\n", cases[i].name, ret, mk.calls);
		assert_int_equal(ret, cases[i].ret);
		assert_string_equal(mk.calls, cases[i].calls);
		if (cases[i].has_ctx)
			assert_int_equal(mk.state, cases[i].state1);
		assert_false(mk.args_dirty);
		assert_true(t.total_ms >= t.restore_ms + t.unlock_ms);
	}
}

static void test_state_and_timing(void **state)
{
	(void)state;
	int st = -1;
	mk.state = CUDA_CKPT_RUNNING;
	assert_int_equal(cuda_ckpt_state(4242, &st), 0);
	assert_int_equal(st, CUDA_CKPT_RUNNING);
	assert_string_equal(cuda_ckpt_state_name(st), "running");
	assert_string_equal(cuda_ckpt_state_name(CUDA_CKPT_CHECKPOINTED), "checkpointed");
	assert_string_equal(cuda_ckpt_state_name(17), "unknown");
	assert_string_equal(cuda_ckpt_error(CU_ERROR_NOT_INITIALIZED), "initialization error");

	struct cuda_ckpt_timing t;
	mk.lock_sleep_ms = 20;
	assert_int_equal(cuda_ckpt_suspend(4242, 0, &t), 0);
	assert_true(t.lock_ms >= 19);
	assert_true(t.total_ms >= t.lock_ms);
	assert_true(t.restore_ms == 0 && t.unlock_ms == 0);
	assert_int_equal(cuda_ckpt_resume(4242, &t), 0);
	assert_true(t.lock_ms == 0 && t.checkpoint_ms == 0);
	assert_true(t.total_ms >= t.restore_ms + t.unlock_ms);

	mk.has_ctx = 0;
	assert_int_equal(cuda_ckpt_state(4242, &st), -ESRCH);
}

/* --- a real GPU (THAW_GPU_TEST=1) ----------------------------------------- */

#define PATTERN_WORDS (4u << 20) /* 16 MiB of device memory */
#define GPU_WAIT_MS 120000

static pid_t gpu_child = -1;

/* Driver API by plain C types (CUresult, CUdevice: int; CUcontext: a
 * pointer; CUdeviceptr: 64 bits). Versioned names: dlsym of a bare name
 * gives the oldest ABI (cuMemAlloc takes a 32-bit size). */
typedef int (*p_init)(unsigned);
typedef int (*p_device_get)(int *, int);
typedef int (*p_ctx_create)(void **, unsigned, int);
typedef int (*p_primary_retain)(void **, int);
typedef int (*p_ctx_set_current)(void *);
typedef int (*p_mem_alloc)(unsigned long long *, size_t);
typedef int (*p_htod)(unsigned long long, const void *, size_t);
typedef int (*p_dtoh)(void *, unsigned long long, size_t);

static uint32_t pattern(uint32_t i)
{
	return i * 2654435761u ^ 0x5a5aa5a5u;
}

static void put(int fd, char c)
{
	if (write(fd, &c, 1) != 1)
		_exit(3);
}

/* The child: never returns. Says 'R' when its device memory holds the
 * pattern, then on 'V' reads it back and says 'P' (pass) or 'F'. */
static void gpu_child_main(int rd, int wr)
{
	void *dl = dlopen(CUDA_CKPT_LIB, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		_exit(2);
	p_init init = (p_init)dlsym(dl, "cuInit");
	p_device_get device_get = (p_device_get)dlsym(dl, "cuDeviceGet");
	p_ctx_create ctx_create = (p_ctx_create)dlsym(dl, "cuCtxCreate_v2");
	p_primary_retain primary_retain = (p_primary_retain)dlsym(dl, "cuDevicePrimaryCtxRetain");
	p_ctx_set_current set_current = (p_ctx_set_current)dlsym(dl, "cuCtxSetCurrent");
	p_mem_alloc mem_alloc = (p_mem_alloc)dlsym(dl, "cuMemAlloc_v2");
	p_htod htod = (p_htod)dlsym(dl, "cuMemcpyHtoD_v2");
	p_dtoh dtoh = (p_dtoh)dlsym(dl, "cuMemcpyDtoH_v2");
	uint32_t *host = malloc(PATTERN_WORDS * sizeof(uint32_t));
	void *ctx = NULL;
	int dev = 0;
	unsigned long long dptr = 0;
	char c;

	if (!init || !device_get || !mem_alloc || !htod || !dtoh || !host)
		_exit(2);
	if (init(0) || device_get(&dev, 0))
		goto fail;
	if (ctx_create) {
		if (ctx_create(&ctx, 0, dev))
			goto fail;
	} else if (!primary_retain || !set_current || primary_retain(&ctx, dev) ||
		   set_current(ctx)) {
		goto fail;
	}
	for (uint32_t i = 0; i < PATTERN_WORDS; i++)
		host[i] = pattern(i);
	if (mem_alloc(&dptr, PATTERN_WORDS * sizeof(uint32_t)) ||
	    htod(dptr, host, PATTERN_WORDS * sizeof(uint32_t)))
		goto fail;
	memset(host, 0, PATTERN_WORDS * sizeof(uint32_t));
	put(wr, 'R');
	if (read(rd, &c, 1) != 1 || c != 'V')
		_exit(4);
	if (dtoh(host, dptr, PATTERN_WORDS * sizeof(uint32_t)))
		goto fail;
	for (uint32_t i = 0; i < PATTERN_WORDS; i++)
		if (host[i] != pattern(i)) {
			put(wr, 'F');
			_exit(1);
		}
	put(wr, 'P');
	_exit(0);
fail:
	put(wr, 'E');
	_exit(1);
}

static char get(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c = 0;
	if (poll(&p, 1, GPU_WAIT_MS) != 1 || read(fd, &c, 1) != 1)
		return 0;
	return c;
}

static int gpu_teardown(void **state)
{
	(void)state;
	if (gpu_child > 0) {
		kill(gpu_child, SIGKILL);
		waitpid(gpu_child, NULL, 0);
		gpu_child = -1;
	}
	return 0;
}

/* The child is forked before this process calls cuInit: CUDA does not
 * survive a fork of an initialised process. */
static void test_gpu_suspend_resume_keeps_device_memory(void **state)
{
	(void)state;
	int down[2], up[2], st = -1, wst;
	char why[256];
	struct cuda_ckpt_timing t;

	assert_int_equal(pipe2(down, O_CLOEXEC), 0);
	assert_int_equal(pipe2(up, O_CLOEXEC), 0);
	gpu_child = fork();
	assert_true(gpu_child >= 0);
	if (gpu_child == 0) {
		close(down[1]);
		close(up[0]);
		gpu_child_main(down[0], up[1]);
	}
	close(down[0]);
	close(up[1]);

	double t0 = now_ms();
	int probed = cuda_ckpt_probe(why, sizeof(why));
	print_message("probe %d in %.0f ms (cuInit %.0f ms) %s\n", probed, now_ms() - t0,
		      drv.init_ms, why);
	assert_int_equal(probed, 0);
	char c = get(up[0]);
	if (c != 'R') {
		/* exit 1: a driver call failed; 2: a symbol is missing. */
		int cst = 0;
		waitpid(gpu_child, &cst, 0);
		gpu_child = -1;
		fail_msg("child did not set up its CUDA context and memory (said '%c', exit %d)",
			 c ? c : '-', WIFEXITED(cst) ? WEXITSTATUS(cst) : -1);
	}

	assert_int_equal(cuda_ckpt_state(gpu_child, &st), 0);
	assert_int_equal(st, CUDA_CKPT_RUNNING);
	assert_int_equal(cuda_ckpt_suspend(gpu_child, 10000, &t), 0);
	print_message("suspend: lock %.1f ms, checkpoint %.1f ms, total %.1f ms\n", t.lock_ms,
		      t.checkpoint_ms, t.total_ms);
	assert_int_equal(cuda_ckpt_state(gpu_child, &st), 0);
	assert_int_equal(st, CUDA_CKPT_CHECKPOINTED);
	/* A second suspend is refused, the state left alone. */
	assert_int_equal(cuda_ckpt_suspend(gpu_child, 10000, NULL), -EBUSY);

	assert_int_equal(cuda_ckpt_resume(gpu_child, &t), 0);
	print_message("resume: restore %.1f ms, unlock %.1f ms, total %.1f ms\n", t.restore_ms,
		      t.unlock_ms, t.total_ms);
	assert_int_equal(cuda_ckpt_state(gpu_child, &st), 0);
	assert_int_equal(st, CUDA_CKPT_RUNNING);

	put(down[1], 'V');
	assert_int_equal(get(up[0]), 'P');
	assert_int_equal(waitpid(gpu_child, &wst, 0), gpu_child);
	gpu_child = -1;
	assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	close(down[1]);
	close(up[0]);

	/* This process has no CUDA context: nothing to suspend. */
	assert_int_equal(cuda_ckpt_suspend(getpid(), 1000, NULL), -ESRCH);
}

static void skip_gpu_not_asked(void **state)
{
	(void)state;
	SKIP_NO_GPU("%s is here; THAW_GPU_TEST=1 checkpoints a real CUDA process", CUDA_CKPT_LIB);
}

int main(void)
{
	const struct CMUnitTest mock_tests[] = {
	    cmocka_unit_test(test_version_check),
	    cmocka_unit_test(test_parse_branch),
	    cmocka_unit_test_setup_teardown(test_suspend_sequences, mock_setup, mock_teardown),
	    cmocka_unit_test_setup_teardown(test_resume_sequences, mock_setup, mock_teardown),
	    cmocka_unit_test_setup_teardown(test_plugin_hooks, mock_setup, mock_teardown),
	    cmocka_unit_test_setup_teardown(test_state_and_timing, mock_setup, mock_teardown),
	};
	/* Only looks: loading the library runs no driver code (cuInit does). */
	void *dl = dlopen(CUDA_CKPT_LIB, RTLD_LAZY | RTLD_LOCAL);
	if (dl)
		dlclose(dl);

	if (!dl) {
		const struct CMUnitTest off_tests[] = {
		    cmocka_unit_test(test_preload_loads_in_background),
		    cmocka_unit_test(test_probe_is_thread_safe),
		    cmocka_unit_test(test_probe_says_driver_missing),
		    cmocka_unit_test(test_calls_are_enotsup_without_driver),
		};
		int failed = cmocka_run_group_tests_name("no driver", off_tests, NULL, NULL);
		return failed + cmocka_run_group_tests_name("mock driver", mock_tests, NULL, NULL);
	}
	const char *gpu = getenv("THAW_GPU_TEST");
	struct CMUnitTest gpu_tests[] = {
	    cmocka_unit_test_teardown(test_gpu_suspend_resume_keeps_device_memory, gpu_teardown),
	};
	if (!gpu || strcmp(gpu, "1")) /* a driver but no GPU run asked for: the mocks still run */
		gpu_tests[0] = (struct CMUnitTest)cmocka_unit_test(skip_gpu_not_asked);
	int failed = cmocka_run_group_tests_name("GPU", gpu_tests, NULL, NULL);
	return failed + cmocka_run_group_tests_name("mock driver", mock_tests, NULL, NULL);
}
