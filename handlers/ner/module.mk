# ner handler: BIO named entities from CRF emission logits (docs/handlers-ner.md).
include kernels/viterbi.mk

HANDLER_EXTRA_ner := $(VITERBI_OBJ)
HANDLER_LIBS_ner := -lcjson $(VITERBI_LIBS)

# An explicit rule: in the top Makefile's pattern rule for handler .so files
# the '%' inside $$(patsubst %.c,...) is replaced by the stem too, so the
# handler's own objects drop out of the link (GNU make 4.3).
NER_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard handlers/ner/*.c))
$(BUILD)/handlers/ner.so: $(NER_OBJ) $(HANDLER_EXTRA_ner)
	$(CC) $(CFLAGS) $(SAN) -shared -o $@ $^ $(HANDLER_LIBS_ner)

# The unit test includes the handler's .c files and stubs the SDK.
$(BUILD)/tests/unit/test_ner: tests/unit/test_ner.c $(VITERBI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(VITERBI_OBJ) $(TEST_LIBS) -lcjson $(VITERBI_LIBS)
