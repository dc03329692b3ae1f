# The instance host's own unit tests: they link the host's objects (built
# into $(BUILD)/host/ by the main Makefile's rule).
HOST_TEST_OBJ := $(BUILD)/host/tensor.o $(BUILD)/host/kserve_fast.o $(BUILD)/handlers/predict/tfrest.o $(BUILD)/handlers/predict/tfrest_fast.o $(BUILD)/common/buf.o $(BUILD)/common/mem.o $(BUILD)/common/jsonesc.o $(BUILD)/common/log.o
$(BUILD)/tests/unit/test_kserve: tests/unit/test_kserve.c $(HOST_TEST_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(HOST_TEST_OBJ) $(TEST_LIBS) -lcjson -lm

# The tensor conversions' cost per MB (docs/benchmarks.md, "Protocols").
$(BUILD)/tests/bench/bench_tensor: tests/bench/bench_tensor.c $(HOST_TEST_OBJ) $(PROTO_OBJ) | $(PROTO_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(PROTO_GEN_DIR) -o $@ $< $(HOST_TEST_OBJ) $(PROTO_OBJ) -lprotobuf-c -lcjson -lm
TOOLS += $(BUILD)/tests/bench/bench_tensor
