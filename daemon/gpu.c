#define LOG_PREFIX "gpu: "
#include "daemon/gpu.h"
#include "common/log.h"

#include <dlfcn.h>
#include <math.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The few NVML types and calls used, as nvml.h declares them (ABI stable
 * since the _v2 calls). */
typedef int nvml_ret;
typedef struct nvml_device *nvml_device;
struct nvml_utilization {
	unsigned gpu, memory; /* percent over the driver's last sample period */
};
struct nvml_memory {
	unsigned long long total, free, used;
};

static struct {
	pthread_mutex_t lock;
	int state; /* 0: not opened; 1: usable; -ENOENT, -ENODEV: not */
	unsigned n;
	nvml_device dev[GPU_MAX];
	nvml_ret (*utilization)(nvml_device, struct nvml_utilization *);
	nvml_ret (*memory)(nvml_device, struct nvml_memory *);
	/* the last sample, under lock */
	bool sampled;
	struct {
		bool ok;
		char name[96];
		unsigned util;
		unsigned long long used, total;
	} s[GPU_MAX];
	/* the last hour: NaN where a read failed */
	int64_t t_ms[GPU_POINTS];
	float util[GPU_POINTS][GPU_MAX], used[GPU_POINTS][GPU_MAX];
	unsigned head, n_points;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int open_locked(const char *lib)
{
	void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		return -ENOENT; /* no driver: the usual case, said nowhere */
	nvml_ret (*init)(void) = (nvml_ret(*)(void))dlsym(dl, "nvmlInit_v2");
	nvml_ret (*count)(unsigned *) = (nvml_ret(*)(unsigned *))dlsym(dl, "nvmlDeviceGetCount_v2");
	nvml_ret (*handle)(unsigned, nvml_device *) =
		(nvml_ret(*)(unsigned, nvml_device *))dlsym(dl, "nvmlDeviceGetHandleByIndex_v2");
	nvml_ret (*name)(nvml_device, char *, unsigned) =
		(nvml_ret(*)(nvml_device, char *, unsigned))dlsym(dl, "nvmlDeviceGetName");
	g.utilization = (nvml_ret(*)(nvml_device, struct nvml_utilization *))dlsym(
		dl, "nvmlDeviceGetUtilizationRates");
	g.memory = (nvml_ret(*)(nvml_device, struct nvml_memory *))dlsym(dl, "nvmlDeviceGetMemoryInfo");
	unsigned n = 0;
	if (!init || !count || !handle || !name || !g.utilization || !g.memory) {
		pr_warn("%s lacks the NVML calls thaw uses: no GPU metrics", lib);
		goto close_dl;
	}
	nvml_ret r = init();
	if (r) {
		pr_warn("nvmlInit failed (%d): no GPU metrics", r);
		goto close_dl;
	}
	if (count(&n) || n == 0)
		goto close_dl; /* NVML stays initialised: harmless */
	for (unsigned i = 0; i < n && g.n < GPU_MAX; i++) {
		if (handle(i, &g.dev[g.n]))
			continue;
		if (name(g.dev[g.n], g.s[g.n].name, sizeof(g.s[g.n].name)))
			snprintf(g.s[g.n].name, sizeof(g.s[g.n].name), "unknown");
		g.n++;
	}
	if (!g.n)
		goto close_dl;
	pr_info("NVML: %u GPU(s), %s first", g.n, g.s[0].name);
	return 0; /* dl kept for the process's life */
close_dl:
	dlclose(dl);
	return -ENODEV;
}

int gpu_open(const char *lib)
{
	pthread_mutex_lock(&g.lock);
	if (!g.state) {
		int r = open_locked(lib);
		g.state = r ? r : 1;
	}
	int ret = g.state == 1 ? 0 : g.state;
	pthread_mutex_unlock(&g.lock);
	return ret;
}

void gpu_sample(int64_t now_ms)
{
	if (g.state != 1)
		return;
	for (unsigned i = 0; i < g.n; i++) {
		struct nvml_utilization u;
		struct nvml_memory m;
		bool ok = !g.utilization(g.dev[i], &u) && !g.memory(g.dev[i], &m);
		pthread_mutex_lock(&g.lock);
		g.s[i].ok = ok;
		if (ok) {
			g.s[i].util = u.gpu;
			g.s[i].used = m.used;
			g.s[i].total = m.total;
		}
		g.util[g.head][i] = ok ? (float)u.gpu / 100 : NAN;
		g.used[g.head][i] = ok ? (float)m.used : NAN;
		pthread_mutex_unlock(&g.lock);
	}
	pthread_mutex_lock(&g.lock);
	g.t_ms[g.head] = now_ms;
	g.head = (g.head + 1) % GPU_POINTS;
	if (g.n_points < GPU_POINTS)
		g.n_points++;
	g.sampled = true;
	pthread_mutex_unlock(&g.lock);
}

static void json_value(struct buf *out, float f)
{
	if (isnan(f))
		buf_append_str(out, "null");
	else
		buf_printf(out, "%.6g", (double)f);
}

void gpu_render_history(struct buf *out)
{
	pthread_mutex_lock(&g.lock);
	unsigned n = g.state == 1 ? g.n_points : 0;
	unsigned first = (g.head + GPU_POINTS - n) % GPU_POINTS;
	buf_append_str(out, "{\"step_s\":5,\"t\":[");
	for (unsigned k = 0; k < n; k++)
		buf_printf(out, "%s%lld", k ? "," : "", (long long)g.t_ms[(first + k) % GPU_POINTS]);
	buf_append_str(out, "],\"gpus\":[");
	for (unsigned i = 0; g.state == 1 && i < g.n; i++) {
		buf_printf(out, "%s{\"gpu\":%u,\"name\":", i ? "," : "", i);
		buf_append_json_string(out, g.s[i].name, strlen(g.s[i].name));
		buf_printf(out, ",\"memory_total_bytes\":%llu,\"utilization\":[", g.s[i].total);
		for (unsigned k = 0; k < n; k++) {
			if (k)
				buf_append_str(out, ",");
			json_value(out, g.util[(first + k) % GPU_POINTS][i]);
		}
		buf_append_str(out, "],\"memory_used_bytes\":[");
		for (unsigned k = 0; k < n; k++) {
			if (k)
				buf_append_str(out, ",");
			json_value(out, g.used[(first + k) % GPU_POINTS][i]);
		}
		buf_append_str(out, "]}");
	}
	buf_append_str(out, "]}");
	pthread_mutex_unlock(&g.lock);
}

/* A device name as a label value: no quote, backslash or newline. */
static void label(const char *in, char *out, size_t len)
{
	size_t k = 0;
	for (; *in && k + 1 < len; in++)
		out[k++] = *in == '"' || *in == '\\' || *in == '\n' ? '_' : *in;
	out[k] = '\0';
}

void gpu_render(struct buf *out)
{
	pthread_mutex_lock(&g.lock);
	if (g.state == 1 && g.sampled) {
		static const char *const head[] = {
			"# HELP thaw_gpu_utilization_ratio Share of time a kernel ran on the GPU (NVML, last sample).\n"
			"# TYPE thaw_gpu_utilization_ratio gauge\n",
			"# HELP thaw_gpu_memory_used_bytes GPU memory in use (NVML).\n"
			"# TYPE thaw_gpu_memory_used_bytes gauge\n",
			"# HELP thaw_gpu_memory_total_bytes GPU memory (NVML).\n"
			"# TYPE thaw_gpu_memory_total_bytes gauge\n",
		};
		for (unsigned k = 0; k < 3; k++) {
			buf_append_str(out, head[k]);
			for (unsigned i = 0; i < g.n; i++) {
				if (!g.s[i].ok)
					continue;
				char nm[96];
				label(g.s[i].name, nm, sizeof(nm));
				const char *metric = k == 0 ? "thaw_gpu_utilization_ratio"
						     : k == 1 ? "thaw_gpu_memory_used_bytes"
							      : "thaw_gpu_memory_total_bytes";
				buf_printf(out, "%s{gpu=\"%u\",name=\"%s\"} ", metric, i, nm);
				if (k == 0)
					buf_printf(out, "%.2f\n", g.s[i].util / 100.0);
				else
					buf_printf(out, "%llu\n", k == 1 ? g.s[i].used : g.s[i].total);
			}
		}
	}
	pthread_mutex_unlock(&g.lock);
}
