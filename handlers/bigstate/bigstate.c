/*
 * bigstate: a handler whose init() builds a large, non-zero state in
 * anonymous memory, for the snapshot-memory tests and benchmarks.
 *
 * Environment (fc.yaml environmentVariables):
 *   STATE_MB=N      size of the state in MiB (default 256, 1..65536)
 *   STATE_ALLOC=sdk take it from thaw_state_alloc() instead of malloc()
 *   STATE_ALLOC=brk take it from sbrk(): the [heap] mapping, which glibc's
 *                   malloc keeps using after it (small allocations)
 *   BG_THREADS=1    also start two threads in init: one sleeping in a loop,
 *                   one spinning; their stacks (8 MiB, anonymous) must not
 *                   be moved, and both must run on in every restored copy
 *
 * Word i of the state is mix(i) (never 0); init() keeps the sum of all words.
 *
 *   /           200 {"instance_id":..}: nothing else, for restore timings
 *   /pass       one full pass over the state: {"sum_ok":B,"pass_ms":X}
 *   /threads    {"sleeper":N,"spinner":N,"sleeper_sp":A,"spinner_sp":A}: the
 *               BG_THREADS counters and an address in each one's stack
 *   /check?ms=N full checksum of the state, then writes this copy's own
 *               marker (a fresh random value) into one word per MiB, sleeps
 *               N ms (<= 10000), checks every marker is still its own (no
 *               other copy's write is visible) and puts the words back:
 *               {"instance_id":..,"random":..,"sum_ok":B,"own_ok":B,
 *                "pass_ms":X}
 * The PRNG is seeded in init() and again in on_restore(): every copy draws
 * its own numbers.
 */
#include "thaw/handler.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define WORDS_PER_MIB ((1u << 20) / sizeof(uint64_t))

static uint64_t *state;
static size_t n_words;
static uint64_t expected_sum;
static _Atomic uint64_t rng;
static _Atomic uint64_t sleeper_n, spinner_n;
static _Atomic uintptr_t sleeper_sp, spinner_sp; /* an address in each thread's stack */

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;) {
		volatile char frame[4096]; /* its stack in use */
		atomic_store(&sleeper_sp, (uintptr_t)frame);
		frame[0] = (char)atomic_fetch_add(&sleeper_n, 1);
		(void)frame[0];
		usleep(10000);
	}
	return NULL;
}

static void *spinner(void *arg)
{
	(void)arg;
	volatile uint64_t local[512];
	atomic_store(&spinner_sp, (uintptr_t)local);
	for (uint64_t i = 0;; i++) {
		local[i % 512] = i;
		if (local[i % 512] != i)
			abort(); /* its stack changed under it */
		if (!(i & 0xffff))
			atomic_fetch_add(&spinner_n, 1);
	}
	return NULL;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x | 1; /* never zero */
}

static void seed(void)
{
	uint64_t s;
	if (getrandom(&s, sizeof(s), 0) != sizeof(s))
		s = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	atomic_store(&rng, s);
}

static uint64_t next_random(void)
{
	return mix(atomic_fetch_add(&rng, 0x9e3779b97f4a7c15ULL));
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint64_t sum_state(void)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n_words; i++)
		s += state[i] * (2 * i + 1);
	return s;
}

static int init(void)
{
	const char *mb_s = thaw_config("STATE_MB");
	long mb = mb_s ? strtol(mb_s, NULL, 10) : 256;
	if (mb < 1 || mb > 65536) {
		thaw_set_error("STATE_MB=%s: expected 1..65536", mb_s);
		return -EINVAL;
	}
	size_t bytes = (size_t)mb << 20;
	const char *how = thaw_config("STATE_ALLOC");
	if (how && !strcmp(how, "sdk")) {
		state = thaw_state_alloc(bytes);
	} else if (how && !strcmp(how, "brk")) {
		void *p = sbrk((intptr_t)bytes);
		state = p == (void *)-1 ? NULL : p;
		/* and small allocations after it, in the same [heap] */
		for (int i = 0; i < 64; i++)
			memset(malloc(4096), 0x5a, 4096);
	} else
		state = malloc(bytes);
	if (!state) {
		thaw_set_error("cannot allocate %ld MiB of state", mb);
		return -ENOMEM;
	}
	n_words = bytes / sizeof(uint64_t);
	for (size_t i = 0; i < n_words; i++)
		state[i] = mix(i);
	expected_sum = sum_state();
	seed();
	const char *bg = thaw_config("BG_THREADS");
	if (bg && !strcmp(bg, "1")) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL) || pthread_create(&t, NULL, spinner, NULL)) {
			thaw_set_error("pthread_create failed");
			return -EAGAIN;
		}
	}
	thaw_log(THAW_LOG_INFO, "bigstate: %ld MiB of state built (%s)", mb,
		 how ? how : "malloc");
	return 0;
}

static int on_restore(void)
{
	seed();
	return 0;
}

static int check(const struct thaw_request *req, struct thaw_response *res)
{
	long ms = 0;
	const char *q = strstr(req->query, "ms=");
	if (q)
		ms = strtol(q + 3, NULL, 10);
	if (ms < 0 || ms > 10000)
		return thaw_respond_error(res, 400, "ms must be in 0..10000");
	uint64_t rnd = next_random();
	double t0 = now_ms();
	bool sum_ok = sum_state() == expected_sum;
	double pass_ms = now_ms() - t0;
	uint64_t marker = next_random();
	for (size_t i = 0; i < n_words; i += WORDS_PER_MIB)
		state[i] = marker;
	if (ms)
		usleep((useconds_t)ms * 1000);
	bool own_ok = true;
	for (size_t i = 0; i < n_words; i += WORDS_PER_MIB) {
		own_ok &= state[i] == marker;
		state[i] = mix(i);
	}
	char body[256];
	int n = snprintf(body, sizeof(body),
			 "{\"instance_id\":\"%s\",\"random\":%" PRIu64
			 ",\"sum_ok\":%s,\"own_ok\":%s,\"pass_ms\":%.2f}",
			 thaw_instance_id(), rnd, sum_ok ? "true" : "false", own_ok ? "true" : "false",
			 pass_ms);
	return thaw_respond(res, 200, "application/json", body, (size_t)n);
}

static int invoke(const struct thaw_request *req, struct thaw_response *res)
{
	char body[160];
	int n;
	if (!strcmp(req->path, "/check"))
		return check(req, res);
	if (!strcmp(req->path, "/threads")) {
		n = snprintf(body, sizeof(body),
			     "{\"sleeper\":%" PRIu64 ",\"spinner\":%" PRIu64 ",\"sleeper_sp\":%" PRIuPTR
			     ",\"spinner_sp\":%" PRIuPTR "}",
			     atomic_load(&sleeper_n), atomic_load(&spinner_n), atomic_load(&sleeper_sp),
			     atomic_load(&spinner_sp));
		return thaw_respond(res, 200, "application/json", body, (size_t)n);
	}
	if (!strcmp(req->path, "/pass")) {
		double t0 = now_ms();
		bool ok = sum_state() == expected_sum;
		n = snprintf(body, sizeof(body), "{\"sum_ok\":%s,\"pass_ms\":%.2f}",
			     ok ? "true" : "false", now_ms() - t0);
		return thaw_respond(res, 200, "application/json", body, (size_t)n);
	}
	n = snprintf(body, sizeof(body), "{\"instance_id\":\"%s\"}", thaw_instance_id());
	return thaw_respond(res, 200, "application/json", body, (size_t)n);
}

THAW_HANDLER(.name = "bigstate", .init = init, .invoke = invoke, .on_restore = on_restore);
