# thaw: plain Makefile. Modules add themselves through */module.mk.
BUILD    ?= build
CC       ?= gcc
CLANG    ?= clang
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Wstrict-prototypes -Werror -Wno-missing-field-initializers
CPPFLAGS := -std=gnu11 -D_GNU_SOURCE -MMD -MP -I. -Iinclude $(EXTRA_CPPFLAGS)
ALL_CFLAGS = $(CPPFLAGS) $(WARN) $(CFLAGS) $(SAN)
LDFLAGS  ?=
LIBS     := -luring -lhttp_parser -lnghttp2 -lcjson -lyaml -lpthread -ldl -lm
TEST_LIBS := -lcmocka
NVCC     ?= /usr/local/cuda/bin/nvcc
HAVE_CUDA := $(shell test -x $(NVCC) && echo 1)

# common/: built once as a library for thaw, thaw-instance and the tests.
COMMON_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard common/*.c))
LIBCOMMON  := $(BUILD)/libcommon.a
# The daemon and the CLI: daemon/, proc/, snapshot/, builder/, cli/; cmd/main.c
# dispatches serve | build | the CLI's commands.
LIB_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(wildcard daemon/*.c proc/*.c snapshot/*.c builder/*.c cli/*.c))
LIBTHAW    := $(BUILD)/libthaw.a

# The instance host: loads a handler .so; exports the SDK (include/thaw/handler.h) to it.
# (predict's TF Serving REST JSON module too: the host speaks it for tensor handlers)
HOST_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard host/*.c)) 	    $(BUILD)/handlers/predict/tfrest.o $(BUILD)/handlers/predict/tfrest_fast.o

# Handlers: handlers/NAME/*.c -> $(BUILD)/handlers/NAME.so
HANDLER_DIRS := $(sort $(dir $(wildcard handlers/*/*.c)))
HANDLER_NAMES := $(patsubst handlers/%/,%,$(HANDLER_DIRS))
HANDLER_SOS := $(HANDLER_NAMES:%=$(BUILD)/handlers/%.so)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:%.c=$(BUILD)/%)

# tests/tools/NAME.c: small programs the tests run (tests/tools/no_io_uring.c)
TOOLS := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/tools/*.c))

.DEFAULT_GOAL := all
.PHONY: all deps test bench fuzz asan soak clean image
# Module fragments add to DAEMON_LIBS, HANDLER_LIBS_<name>, HANDLER_EXTRA_<name>, TOOLS.
-include $(wildcard */module.mk handlers/*/module.mk)

all: $(BUILD)/thaw $(BUILD)/thaw-instance $(HANDLER_SOS) $(UNIT_BIN) $(TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBTHAW): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIBCOMMON): $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/thaw: $(BUILD)/cmd/main.o $(LIBTHAW) $(LIBCOMMON)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) -o $@ $^ $(LIBS) $(DAEMON_LIBS)

$(BUILD)/thaw-instance: $(HOST_OBJ) $(LIBCOMMON)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) -rdynamic -o $@ $^ -lhttp_parser -lcjson $(HOST_LIBS) -ldl -lpthread -lm

$(BUILD)/handlers/%.o: handlers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

.SECONDEXPANSION:
$(BUILD)/handlers/%.so: $$(addprefix $(BUILD)/,$$(subst .c,.o,$$(wildcard handlers/$$*/*.c))) $$(HANDLER_EXTRA_$$*)
	$(CC) $(CFLAGS) $(SAN) -shared -o $@ $^ $(HANDLER_LIBS_$*)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIBTHAW) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBTHAW) $(LIBCOMMON) $(TEST_LIBS) $(LIBS) $(DAEMON_LIBS)

$(BUILD)/tests/tools/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $<

deps:
	bash scripts/deps.sh

# TEST_FILTER: run only the tests whose name holds it (e.g. unit/)
test: all
	bash tests/run.sh $(BUILD) $(TEST_FILTER)

# thaw's runnable base image (OCI layout), for `thaw build --base` (docs/kubernetes.md)
image: all
	python3 scripts/thaw-image.py -o $(BUILD)/image/thaw --build $(BUILD)

bench: all
	bash tests/bench/run.sh $(BUILD)

soak: all
	bash tests/soak/run.sh $(BUILD)

# libFuzzer targets, each run for FUZZ_SECONDS; crash inputs are kept in tests/fuzz/regressions/.
FUZZ_SECONDS ?= 60
fuzz:
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

asan:
	$(MAKE) BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" test

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
