# llamita — build and test.
#   make            build the library (build/libllamita.a, build/libllamita.so) and the CLI (build/llamita)
#   make test       build everything and run every test (C unit tests + NumPy reference tests)
#   make test-asan  the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer
#   make chat       build, then open a chat (see README)
# Sources are found by wildcard: a new src/*.c joins the library, a new tests/test_*.c becomes a test
# binary linked against the library, so modules can be added without editing this file.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS_BASE = -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -ffp-contract=off -g $(OPT) $(SAN) -fPIC \
              -Iinclude -Isrc -fvisibility=hidden
LDLIBS_CORE = -lm -lpthread
# hub.c (libcurl) and generate.c/chat.c (cJSON) are outside the inference core
LDLIBS_EXT  = -lcurl -lcjson
PYTHON  ?= /usr/bin/python3

LIB_SRC  := $(wildcard src/*.c src/cpu/*.c)
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRC))
HDRS     := $(wildcard include/*.h src/*.h src/cpu/*.h tests/*.h)

.PHONY: all lib cli tests test test-asan clean deps chat
all: lib cli

deps:
	@scripts/install-deps

lib: $(BUILD)/libllamita.a $(BUILD)/libllamita.so
cli: $(BUILD)/llamita

# SIMD files get their own instruction-set flags; the rest of the build stays baseline so one binary
# runs on any CPU of the architecture (src/cpu/dispatch.c picks the kernels at run time).
TARGET := $(shell $(CC) -dumpmachine)
ifneq (,$(findstring x86_64,$(TARGET)))
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
$(BUILD)/src/cpu/x86_avx2.o $(BUILD)/src/cpu/gemm_avx2.o: CFLAGS_ARCH = $(AVX2_FLAGS)
$(BUILD)/src/cpu/x86_avx512.o $(BUILD)/src/cpu/gemm_avx512.o: CFLAGS_ARCH = $(AVX512_FLAGS)
endif
ifneq (,$(findstring aarch64,$(TARGET)))
$(BUILD)/src/cpu/arm_neon.o $(BUILD)/src/cpu/gemm_neon.o: CFLAGS_ARCH = -march=armv8.2-a+dotprod+fp16
endif

$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS_ARCH) $(CFLAGS) -c $< -o $@

$(BUILD)/libllamita.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libllamita.so: $(LIB_OBJ)
	$(CC) -shared $(SAN) -o $@ $^ $(LDLIBS_EXT) $(LDLIBS_CORE)

CLI_SRC  := $(wildcard tools/*.c)
$(BUILD)/llamita: $(CLI_SRC) $(BUILD)/libllamita.a $(HDRS) tools/cli.h
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -Itools $(CLI_SRC) -o $@ $(BUILD)/libllamita.a $(LDLIBS_EXT) $(LDLIBS_CORE)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libllamita.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -DLM_SOURCE_DIR='"$(CURDIR)"' $< -o $@ $(BUILD)/libllamita.a \
	    -lcmocka $(LDLIBS_EXT) $(LDLIBS_CORE)

# helper programs the Python tests drive (not tests themselves)
$(BUILD)/tests/tools/%: tests/tools/%.c $(BUILD)/libllamita.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $< -o $@ $(BUILD)/libllamita.a $(LDLIBS_EXT) $(LDLIBS_CORE)

tests: $(TEST_BIN) $(TOOL_BIN)

test: deps all tests
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/run.sh

# Sanitizer build in its own folder; CI runs it after `make test`.
test-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" test

chat: deps all
	@BUILD=$(BUILD) MODEL="$(MODEL)" scripts/chat

clean:
	rm -rf build build-asan build-aarch64 build-aarch64-asan

# Cross-builds the library for aarch64 and runs the NEON kernel check and a forward-pass comparison
# under qemu-aarch64 (scripts/check-aarch64); prints a SKIP line when the cross tools are missing.
.PHONY: check-aarch64
check-aarch64: cli $(BUILD)/tests/tools/dump_logits
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/check-aarch64
