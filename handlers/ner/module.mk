# ner handler: BIO named entities from CRF emission logits (docs/handlers-ner.md).
include kernels/viterbi.mk

HANDLER_EXTRA_ner := $(VITERBI_OBJ)
HANDLER_LIBS_ner := $(VITERBI_LIBS)

# The unit test includes the handler's .c files and stubs the SDK (but
# links the host's real tensor module, and the TF Serving JSON module it
# formats floats with, for the SDK's tensor calls); it
# checks the JSON parser against cJSON.
NER_TEST_HOST := $(BUILD)/host/tensor.o $(BUILD)/handlers/predict/tfrest.o $(BUILD)/handlers/predict/tfrest_fast.o $(BUILD)/common/buf.o $(BUILD)/common/mem.o $(BUILD)/common/jsonesc.o $(BUILD)/common/log.o
$(BUILD)/tests/unit/test_ner: tests/unit/test_ner.c $(VITERBI_OBJ) $(NER_TEST_HOST)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(VITERBI_OBJ) $(NER_TEST_HOST) $(TEST_LIBS) -lcjson $(VITERBI_LIBS) -lm
