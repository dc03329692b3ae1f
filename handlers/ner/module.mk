# ner handler: BIO named entities from CRF emission logits (docs/handlers-ner.md).
include kernels/viterbi.mk

HANDLER_EXTRA_ner := $(VITERBI_OBJ)
HANDLER_LIBS_ner := -lcjson $(VITERBI_LIBS)
