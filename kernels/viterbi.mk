# Viterbi kernels (kernels/viterbi.h): CPU always, CUDA when nvcc exists.
# The CPU kernel builds at -O3: gcc vectorizes its select loops only there.
# Included from handlers/ner/module.mk (the top Makefile reads only
# */module.mk). Objects are position independent: they go into ner.so.
#
#   VITERBI_OBJ   objects to link (CPU + CUDA or the no-GPU stub)
#   VITERBI_LIBS  libraries those objects need
NVCCFLAGS ?= -O2 -std=c++17 -gencode arch=compute_80,code=sm_80 \
	     -gencode arch=compute_90,code=[sm_90,compute_90]
CUDA_LIBDIR ?= /usr/local/cuda/lib64

VITERBI_OBJ := $(BUILD)/kernels/viterbi/cpu.pic.o
VITERBI_LIBS := -lm
ifeq ($(HAVE_CUDA),1)
VITERBI_OBJ += $(BUILD)/kernels/viterbi/cuda.pic.o
VITERBI_LIBS += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudart -lstdc++ -lpthread
else
VITERBI_OBJ += $(BUILD)/kernels/viterbi/nogpu.pic.o
endif

$(BUILD)/kernels/viterbi/%.pic.o: kernels/viterbi_%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O3 -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/kernels/viterbi/cuda.pic.o: kernels/viterbi_cuda.cu kernels/viterbi.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -I. -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Werror -c $< -o $@

# Unit test and benchmark: explicit rules (they need the kernels, not libthaw).
$(BUILD)/tests/unit/test_viterbi: tests/unit/test_viterbi.c $(VITERBI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(VITERBI_OBJ) $(TEST_LIBS) $(VITERBI_LIBS)

$(BUILD)/tests/bench/bench_viterbi: tests/bench/bench_viterbi.c $(VITERBI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(VITERBI_OBJ) $(VITERBI_LIBS)

TOOLS += $(BUILD)/tests/bench/bench_viterbi

