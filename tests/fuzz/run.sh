#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and runs each for
# SECONDS (default 60), with tests/fuzz/<name>.dict when present. Seeds:
# tests/fuzz/corpus-<name>/ (read only; new inputs go to
# build-fuzz/corpus-<name>/) and tests/fuzz/regressions/. On a
# crash, leak or timeout the input is copied into tests/fuzz/regressions/
# (replayed by tests/unit/test_fuzz_regressions.c) and the script exits 1.
# Usage: tests/fuzz/run.sh [SECONDS]
set -euo pipefail
SECS=${1:-60}
cd "$(dirname "$0")/../.."
CLANG=${CLANG:-clang}
OUT=build-fuzz
FLAGS=(-std=gnu11 -D_GNU_SOURCE -I. -Iinclude -g -O1
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
	-fno-omit-frame-pointer -Wall -Wextra -Werror -Wno-missing-field-initializers)
REG=tests/fuzz/regressions
mkdir -p "$OUT" "$REG"

# name: sources (fuzz target first)
declare -A TARGETS=(
	[http]="tests/fuzz/fuzz_http.c common/http.c common/router.c common/channel.c common/buf.c common/mem.c common/log.c common/request.c common/headers.c common/jsonesc.c"
	[config]="tests/fuzz/fuzz_config.c common/config.c common/router.c common/mem.c common/log.c"
	[tar]="tests/fuzz/fuzz_tar.c common/config.c common/router.c common/fsutil.c common/errmsg.c common/oci.c common/mem.c common/log.c"
	[grpc]="tests/fuzz/fuzz_grpc.c daemon/conn_h2.c common/pbwire.c common/buf.c common/mem.c common/log.c common/jsonesc.c $OUT/proto/grpc_service.pb-c.c $OUT/proto/tensorflow_serving/apis/predict.pb-c.c $OUT/proto/tensorflow/core/framework/tensor.pb-c.c $OUT/proto/google/protobuf/wrappers.pb-c.c $OUT/proto/google/protobuf/any.pb-c.c $OUT/proto/tensorflow/core/protobuf/meta_graph.pb-c.c"
	[kserve]="tests/fuzz/fuzz_kserve.c host/tensor.c host/kserve_fast.c handlers/predict/tfrest.c handlers/predict/tfrest_fast.c common/buf.c common/mem.c common/log.c common/jsonesc.c"
)
declare -A TARGET_LIBS=([http]="-lhttp_parser" [config]="-lyaml" [tar]="-larchive -lcjson -lyaml -lcrypto" [grpc]="-lnghttp2 -lprotobuf-c -I$OUT/proto" [kserve]="-Ihandlers -lcjson -lm")
# a subset of the targets: FUZZ_TARGETS="config tar"
if [ -n "${FUZZ_TARGETS:-}" ]; then
	for name in "${!TARGETS[@]}"; do
		[[ " $FUZZ_TARGETS " == *" $name "* ]] || unset "TARGETS[$name]"
	done
fi
# the gRPC target decodes messages with protobuf-c code made from proto/
mkdir -p "$OUT/proto"
protoc-c -Iproto -I/usr/include --c_out="$OUT/proto" grpc_service.proto \
	tensorflow_serving/apis/predict.proto tensorflow/core/framework/tensor.proto \
	tensorflow/core/protobuf/meta_graph.proto google/protobuf/wrappers.proto google/protobuf/any.proto

rc=0
for name in "${!TARGETS[@]}"; do
	bin=$OUT/fuzz_$name
	# shellcheck disable=SC2086
	"$CLANG" "${FLAGS[@]}" ${TARGETS[$name]} ${TARGET_LIBS[$name]} -o "$bin"
	corpus=$OUT/corpus-$name
	art=$OUT/artifacts-$name
	rm -rf "$art"
	mkdir -p "$corpus" "$art"
	dict=()
	[ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
	seeds=(tests/fuzz/corpus-$name)
	[ -n "$(ls -A "$REG" 2>/dev/null)" ] && seeds+=("$REG")
	echo "fuzz_$name: ${SECS}s"
	set +e
	# FUZZ_SEED and FUZZ_RUNS (CI sets both): the same inputs, in the same
	# order, as a local run with those, from the same seeds
	"$bin" ${FUZZ_SEED:+-seed="$FUZZ_SEED"} ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} \
		-max_total_time="$SECS" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" "$corpus" "${seeds[@]}" \
		2>"$OUT/fuzz_$name.log"
	frc=$?
	set -e
	grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$OUT/fuzz_$name.log" || true
	found=0
	for f in "$art"/*; do
		[ -f "$f" ] || continue
		cp "$f" "$REG/$name-$(basename "$f")"
		echo "fuzz_$name: kept $REG/$name-$(basename "$f")"
		found=1
	done
	if ((frc != 0 || found)); then
		echo "fuzz_$name: FAILED (rc=$frc); log: $OUT/fuzz_$name.log"
		grep -E 'ERROR|invariant failed|SUMMARY' "$OUT/fuzz_$name.log" | head -20 || true
		rc=1
	fi
done
exit $rc
