# snapshot/: manifests hash with OpenSSL EVP SHA-256 (libssl-dev)
DAEMON_LIBS += -lcrypto
# snapshot/cuda_ckpt.c: checks its copy of the CUDA checkpoint ABI against
# cuda.h where the toolkit is installed (it never links libcuda: dlopen).
# Only these two targets see the include path (EXTRA_CPPFLAGS is read before
# module.mk files are included, so it cannot be set from here).
CUDA_INCLUDE ?= $(dir $(NVCC))../include
ifeq ($(HAVE_CUDA),1)
ifneq ($(wildcard $(CUDA_INCLUDE)/cuda.h),)
$(BUILD)/snapshot/cuda_ckpt.o $(BUILD)/tests/unit/test_cuda_ckpt: private CPPFLAGS += -I$(CUDA_INCLUDE) -DTHAW_HAVE_CUDA_H
endif
endif
