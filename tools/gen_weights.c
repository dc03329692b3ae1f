/*
 * gen_weights: writes a safetensors file holding a dense network with
 * deterministic pseudo-random weights, in the predict handler's naming
 * (layers.N.weight [out, in], layers.N.bias [out], F32).
 *
 *   gen_weights OUT.safetensors --layers 784,512,512,10 [--seed 1]
 *
 * Weights are uniform in +-sqrt(6 / in) (He initialisation, so activations
 * neither vanish nor explode through ReLU layers); biases in +-0.1. Data is
 * streamed in chunks, so any size (multi-GiB benchmarks) works in constant
 * memory. The header is padded with spaces to a multiple of 8 bytes, which
 * keeps every tensor 8-byte aligned in the file.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 64
#define CHUNK 65536

static uint64_t rng_state;

/* splitmix64: tiny, seedable, good enough for test weights. */
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform in [-a, a). */
static float rng_uniform(float a)
{
	return (float)((rng_next() >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0) * a;
}

static int usage(void)
{
	fprintf(stderr, "usage: gen_weights OUT.safetensors --layers N0,N1,...,Nk [--seed S]\n");
	return 2;
}

static int write_random(FILE *f, uint64_t n, float a)
{
	static float buf[CHUNK];
	while (n) {
		size_t k = n < CHUNK ? (size_t)n : CHUNK;
		for (size_t i = 0; i < k; i++)
			buf[i] = rng_uniform(a);
		/* safetensors is little-endian, as is every host we build for. */
		if (fwrite(buf, sizeof(float), k, f) != k)
			return -EIO;
		n -= k;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *out = NULL, *layers = NULL;
	uint64_t seed = 1;
	long dims[MAX_LAYERS + 1];
	int nd = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
			layers = argv[++i];
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (argv[i][0] != '-' && !out)
			out = argv[i];
		else
			return usage();
	}
	if (!out || !layers)
		return usage();
	for (const char *p = layers; *p;) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 1 || v > (1l << 30) || nd == MAX_LAYERS + 1) {
			fprintf(stderr, "gen_weights: bad --layers %s\n", layers);
			return 2;
		}
		dims[nd++] = v;
		p = *end == ',' ? end + 1 : end;
		if (*end && *end != ',') {
			fprintf(stderr, "gen_weights: bad --layers %s\n", layers);
			return 2;
		}
	}
	if (nd < 2)
		return usage();

	/* Header: tensors in file order, offsets relative to the data start. */
	size_t cap = 256 + (size_t)nd * 512, hl = 0;
	char *hdr = malloc(cap + 8);
	uint64_t off = 0;
	if (!hdr)
		return 1;
	hl += snprintf(hdr + hl, cap - hl, "{\"__metadata__\":{\"format\":\"pt\",\"generator\":"
			 "\"thaw gen_weights\",\"seed\":\"%" PRIu64 "\"}", seed);
	for (int l = 0; l + 1 < nd; l++) {
		uint64_t wb = (uint64_t)dims[l] * dims[l + 1] * 4, bb = (uint64_t)dims[l + 1] * 4;
		hl += snprintf(hdr + hl, cap - hl,
			       ",\"layers.%d.weight\":{\"dtype\":\"F32\",\"shape\":[%ld,%ld],"
			       "\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
			       l, dims[l + 1], dims[l], off, off + wb);
		off += wb;
		hl += snprintf(hdr + hl, cap - hl,
			       ",\"layers.%d.bias\":{\"dtype\":\"F32\",\"shape\":[%ld],"
			       "\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
			       l, dims[l + 1], off, off + bb);
		off += bb;
	}
	hl += snprintf(hdr + hl, cap - hl, "}");
	while (hl % 8)
		hdr[hl++] = ' ';

	FILE *f = fopen(out, "wb");
	if (!f) {
		fprintf(stderr, "gen_weights: %s: %s\n", out, strerror(errno));
		return 1;
	}
	uint8_t len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	int rc = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl ? 0 : -EIO;
	rng_state = seed;
	for (int l = 0; l + 1 < nd && rc == 0; l++) {
		rc = write_random(f, (uint64_t)dims[l] * dims[l + 1], sqrtf(6.0f / dims[l]));
		if (rc == 0)
			rc = write_random(f, dims[l + 1], 0.1f);
	}
	if (fclose(f) != 0 || rc < 0) {
		fprintf(stderr, "gen_weights: writing %s failed\n", out);
		remove(out);
		free(hdr);
		return 1;
	}
	free(hdr);
	printf("%s: %d layers, %" PRIu64 " bytes of weights\n", out, nd - 1, off);
	return 0;
}
