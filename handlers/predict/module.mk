# predict: TF Serving-style model handler (safetensors dense networks; half_plus_two is one).
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

# The unit test links the handler's objects with a mock of the host SDK,
# except for the file calls (thaw_map_file and thaw_unmap: the SDK's own,
# from sdk.o with every other symbol made local, so the mocks of the rest
# stand) and the tensor calls (the host's real tensor module, tensor_run
# included); what those need besides comes from libthaw.a.
SDK_FILES_OBJ := $(BUILD)/tests/unit/sdk_files.o
$(SDK_FILES_OBJ): $(BUILD)/host/sdk.o
	@mkdir -p $(dir $@)
	objcopy --keep-global-symbol=thaw_map_file --keep-global-symbol=thaw_unmap \
		--keep-global-symbol=host__set_identity $< $@

$(BUILD)/tests/unit/test_predict: tests/unit/test_predict.c $(PREDICT_OBJ) $(KERNELS_OBJ) $(SDK_FILES_OBJ) \
		$(BUILD)/host/snapmem.o $(BUILD)/host/tensor.o $(LIBTHAW) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(KERNELS_CPPFLAGS) -o $@ $^ $(TEST_LIBS) $(KERNELS_LIBS) $(LIBS) $(DAEMON_LIBS) -lcjson -lm

$(BUILD)/tests/unit/test_kernels_mlp: tests/unit/test_kernels_mlp.c $(KERNELS_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(KERNELS_CPPFLAGS) -o $@ $^ $(TEST_LIBS) $(KERNELS_LIBS) -lm
