# kernels: the MLP forward pass. The reference loops and the OpenBLAS path
# always build; the CUDA path builds when $(NVCC) exists (HAVE_CUDA, probed by
# the top Makefile) and then defines HAVE_CUDA for the code that calls it.
# Objects are position-independent so handlers (.so) can link them.
CUDA_HOME   ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVCCFLAGS   ?= -O2 -std=c++17 \
	--generate-code arch=compute_80,code=sm_80 \
	--generate-code arch=compute_90,code=[sm_90,compute_90]
KERNELS_OBJ := $(BUILD)/kernels/mlp_cpu.o $(BUILD)/kernels/mlp_blas.o $(BUILD)/kernels/staging.o
KERNELS_LIBS := -lopenblas -lm
KERNELS_CPPFLAGS :=
ifeq ($(HAVE_CUDA),1)
KERNELS_OBJ += $(BUILD)/kernels/mlp_cuda.o
# cuBLAS is dlopen()ed on first use (see mlp_cuda.cu), by this path first.
CUBLAS_LIB := $(firstword $(wildcard $(CUDA_HOME)/lib64/libcublas.so.[0-9]*) $(CUDA_HOME)/lib64/libcublas.so)
KERNELS_LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lstdc++ -ldl -lpthread
KERNELS_CPPFLAGS := -DHAVE_CUDA=1
endif

$(BUILD)/kernels/%.o: kernels/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/kernels/%.o: kernels/%.cu kernels/mlp.h kernels/staging.h kernels/module.mk
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -I. -DMLP_CUBLAS_LIB='"$(CUBLAS_LIB)"' -Xcompiler -fPIC,-fvisibility=hidden,-Wall -c $< -o $@

# tests/bench/bench_gpu: copy floor, cuBLAS peak and the MLP pass on a GPU
# (exits 77 without one). C against the CUDA runtime and cuBLAS headers.
ifeq ($(HAVE_CUDA),1)
$(BUILD)/tests/bench/bench_gpu: tests/bench/bench_gpu.c $(KERNELS_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(CUDA_HOME)/include $(KERNELS_CPPFLAGS) -o $@ $(filter %.c %.o,$^) $(KERNELS_LIBS) -lcublas
TOOLS += $(BUILD)/tests/bench/bench_gpu
endif
