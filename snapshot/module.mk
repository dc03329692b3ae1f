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
# snapshot/criu_swrk.c speaks CRIU's RPC (proto/criu/rpc.proto, a subset of
# CRIU's own) through protobuf-c, generated into $(BUILD)/proto/criu.
CRIU_RPC_C := $(BUILD)/proto/criu/rpc.pb-c.c
$(CRIU_RPC_C): proto/criu/rpc.proto
	@mkdir -p $(BUILD)/proto
	protoc-c -Iproto --c_out=$(BUILD)/proto criu/rpc.proto
$(CRIU_RPC_C:.c=.h): $(CRIU_RPC_C)
# generated code: not held to -Werror
$(BUILD)/proto/criu/rpc.pb-c.o: $(CRIU_RPC_C)
	$(CC) $(CPPFLAGS) -I$(BUILD)/proto $(CFLAGS) $(SAN) -c $< -o $@
$(BUILD)/snapshot/criu_swrk.o: CPPFLAGS += -I$(BUILD)/proto
$(BUILD)/snapshot/criu_swrk.o: $(CRIU_RPC_C:.c=.h)
LIB_OBJ += $(BUILD)/proto/criu/rpc.pb-c.o
DAEMON_LIBS += -lprotobuf-c
