# The instance host's own unit tests: they link the host's objects (built
# into $(BUILD)/host/ by the main Makefile's rule).
HOST_TEST_OBJ := $(addprefix $(BUILD)/host/,handlers/host/tensor.o handlers/host/kserve_fast.o \
	handlers/predict/tfrest.o handlers/predict/tfrest_fast.o runtime/buf.o runtime/mem.o \
	runtime/jsonesc.o runtime/log.o)
$(BUILD)/tests/unit/test_kserve: tests/unit/test_kserve.c $(HOST_TEST_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(HOST_TEST_OBJ) $(TEST_LIBS) -lcjson -lm

# The tensor conversions' cost per MB (docs/benchmarks.md, "Protocols").
$(BUILD)/tests/bench/bench_tensor: tests/bench/bench_tensor.c $(HOST_TEST_OBJ) $(PROTO_OBJ) | $(PROTO_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(PROTO_GEN_DIR) -o $@ $< $(HOST_TEST_OBJ) $(PROTO_OBJ) -lprotobuf-c -lcjson -lm
TOOLS += $(BUILD)/tests/bench/bench_tensor
