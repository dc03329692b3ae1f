# ner handler: BIO named entities from CRF emission logits (docs/handlers-ner.md).
include kernels/viterbi.mk

HANDLER_EXTRA_ner := $(VITERBI_OBJ)
HANDLER_LIBS_ner := $(VITERBI_LIBS)

# The unit test includes the handler's .c files and stubs the SDK; it
# checks the JSON parser against cJSON.
$(BUILD)/tests/unit/test_ner: tests/unit/test_ner.c $(VITERBI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(VITERBI_OBJ) $(TEST_LIBS) -lcjson $(VITERBI_LIBS)
