/* A stand-in for libnvidia-ml.so.1 with one GPU at 42 % and 12 of 80 GiB,
 * so that the GPU path of /metrics and of the console runs on machines
 * without a GPU (THAW_NVML_LIB=this .so). Only the calls daemon/gpu.c
 * makes, with NVML's signatures. */
#include <string.h>

struct nvml_utilization { unsigned gpu, memory; };
struct nvml_memory { unsigned long long total, free, used; };

int nvmlInit_v2(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned *n) { *n = 1; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **dev) { *dev = (void *)(unsigned long)(i + 1); return 0; }
int nvmlDeviceGetName(void *dev, char *name, unsigned len)
{
	(void)dev;
	strncpy(name, "Fake GPU", len);
	return 0;
}
int nvmlDeviceGetUtilizationRates(void *dev, struct nvml_utilization *u)
{
	(void)dev;
	u->gpu = 42;
	u->memory = 10;
	return 0;
}
int nvmlDeviceGetMemoryInfo(void *dev, struct nvml_memory *m)
{
	(void)dev;
	m->total = 80ULL << 30;
	m->used = 12ULL << 30;
	m->free = m->total - m->used;
	return 0;
}
