# predict: TF Serving-style model handler (half_plus_two, safetensors MLP).
HANDLER_EXTRA_predict = $(KERNELS_OBJ)
HANDLER_LIBS_predict = $(KERNELS_LIBS) -lcjson -lm
PREDICT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard handlers/predict/*.c))
PREDICT_MODEL_OBJ := $(BUILD)/handlers/predict/model.o $(BUILD)/handlers/predict/safetensors.o
$(BUILD)/handlers/predict/%.o: CFLAGS += $(KERNELS_CPPFLAGS)

PREDICT_TOOLS := $(BUILD)/tools/gen_weights $(BUILD)/tests/bench/bench_predict
TOOLS += $(PREDICT_TOOLS)
all: $(PREDICT_TOOLS)

$(BUILD)/tools/gen_weights: tools/gen_weights.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lm

$(BUILD)/tests/bench/bench_predict: tests/bench/bench_predict.c $(PREDICT_MODEL_OBJ) $(KERNELS_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(KERNELS_CPPFLAGS) -o $@ $^ $(KERNELS_LIBS) -lcjson

# The unit test links the handler's objects with a mock of the host SDK, and
# the host's real tensor module (the SDK's tensor calls and tensor_run).
PREDICT_TEST_HOST := $(addprefix $(BUILD)/host/,handlers/host/tensor.o runtime/buf.o runtime/mem.o \
	runtime/jsonesc.o runtime/log.o)
$(BUILD)/tests/unit/test_predict: tests/unit/test_predict.c $(PREDICT_OBJ) $(KERNELS_OBJ) $(PREDICT_TEST_HOST)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(KERNELS_CPPFLAGS) -o $@ $^ $(TEST_LIBS) $(KERNELS_LIBS) -lcjson -lm

$(BUILD)/tests/unit/test_kernels_mlp: tests/unit/test_kernels_mlp.c $(KERNELS_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(KERNELS_CPPFLAGS) -o $@ $^ $(TEST_LIBS) $(KERNELS_LIBS) -lm
