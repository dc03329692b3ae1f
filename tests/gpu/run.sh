#!/usr/bin/env bash
# Every GPU check of thaw in one bounded run, for a GPU machine that is lent
# for minutes (issue 17). On a fresh machine (Debian-like, root,
# /usr/local/cuda, no network) it:
#   1. prints the device, driver and CUDA versions (nvidia-smi, nvcc);
#   2. builds the project with CUDA (make -k: a missing library fails only
#      the targets that need it; missing headers are named first);
#   3. runs the GPU tests: build/tests/unit/test_kernels_mlp, test_viterbi,
#      test_predict (weights released and uploaded again, bit-identical
#      answers) and THAW_GPU_TEST=1 test_cuda_ckpt (a real CUDA process
#      suspended and resumed through the driver's checkpoint API);
#   4. runs the GPU benchmarks: bench_gpu (pinned host-to-device floor,
#      cuBLAS peak, the MLP pass as a fraction of it), bench_viterbi
#      (sequences/s, device vs CPU) and tests/bench/gpu_restore.sh (cold
#      start vs restore of a GPU predict function with 256 MiB and 4 GiB
#      of weights; cold starts only when CRIU cannot run here, said so);
#   5. prints one table: versions, each step's status and time, and every
#      "figure:" line the steps printed.
# The whole run is bounded (THAW_GPU_TOTAL_S, default 480 s = 8 minutes);
# each step has its own time limit, cut to what is left, so a step that
# fails or hangs still leaves the others' figures. Each step's output is
# kept in $THAW_GPU_LOGS (default /tmp/thaw-gpu-logs) and its tail printed.
#
# Usage:
#   bash tests/gpu/run.sh [BUILD_DIR]          on the GPU machine (default build)
#   bash tests/gpu/run.sh --pack [BUILD_DIR]   on the build machine, before: copies
#       the criu binary of `make deps` and the libraries it needs beyond libc
#       into BUILD_DIR/gpu-carry/criu (~10 MB), so a machine without network
#       can restore; carry that folder with the working tree. run.sh uses it
#       when THAW_CRIU is unset and /usr/local/lib/thaw/criu/criu is missing.
# Exit: 0 every step passed on a GPU; 1 a step failed, timed out, or skipped
# (or skipped GPU cases) although a GPU is here; 77 no GPU here (the build
# and the CPU cases of the tests ran, the GPU steps were reached and skipped,
# each saying so).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
DEFAULT_CRIU=/usr/local/lib/thaw/criu/criu

if [[ "${1:-}" == "--pack" ]]; then
	BUILD=${2:-build}
	src=${THAW_CRIU:-$DEFAULT_CRIU}
	dst=$BUILD/gpu-carry/criu
	[[ -x "$src" ]] || { echo "pack: no criu at $src (make deps)"; exit 1; }
	rm -rf "$dst" && mkdir -p "$dst/lib" || exit 1
	cp "$src" "$dst/criu.bin" || exit 1
	# every library but the C library itself (present on any machine)
	ldd "$src" | awk '$3 ~ /^\// { print $3 }' |
		grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' |
		while read -r lib; do cp -L "$lib" "$dst/lib/"; done
	cat >"$dst/criu" <<'EOF'
#!/bin/sh
# criu with the libraries it was built against (tests/gpu/run.sh --pack)
d=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/criu.bin" "$@"
EOF
	chmod +x "$dst/criu"
	echo "pack: $dst ($(du -sh "$dst" | cut -f1)); carry $BUILD/gpu-carry"
	exit 0
fi

BUILD=${1:-build}
TOTAL=${THAW_GPU_TOTAL_S:-480}
LOGS=${THAW_GPU_LOGS:-/tmp/thaw-gpu-logs}
START=$(date +%s)
JOBS=$(nproc 2>/dev/null || echo 2)
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
rm -rf "$LOGS" && mkdir -p "$LOGS"
rows=() failed=0

left() { echo $((TOTAL - ($(date +%s) - START))); }
row() { rows+=("$(printf '%-28s %-8s %7s  %s' "$1" "$2" "$3" "$4")"); }

# step NAME LIMIT_S NOTE_IF_NO_GPU CMD...: runs CMD with min(LIMIT, what is
# left - 15 s), output in $LOGS/NAME.log; status PASS / FAIL / TIMEOUT / SKIP
# (exit 77) / NO-GPU (ran without a GPU: CPU cases only) / PARTIAL (passed on
# a GPU machine with cmocka cases skipped: the GPU path did not run).
step() {
	local name=$1 limit=$2 nogpu=$3
	shift 3
	local rem=$(($(left) - 15))
	((limit > rem)) && limit=$rem
	echo "=== $name (limit ${limit}s)"
	if ((limit < 5)); then
		echo "=== $name: not run, the ${TOTAL}s budget is spent"
		row "$name" "NOT-RUN" "-" "budget spent"
		failed=1
		return
	fi
	local t0=$(date +%s.%N) rc
	timeout -k 5 "$limit" "$@" >"$LOGS/$name.log" 2>&1
	rc=$?
	local secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	tail -n 25 "$LOGS/$name.log" | sed 's/^/    /'
	local last=$(grep -v '^figure:' "$LOGS/$name.log" | tail -n 1 | cut -c1-90)
	if ((rc == 124 || rc == 137)); then
		row "$name" "TIMEOUT" "$secs" "killed after ${limit}s"
		failed=1
	elif ((rc == 77)) && [[ -n "$HAVE_GPU" ]]; then
		# a GPU is here: a step that skips did not measure it
		row "$name" "SKIP" "$secs" "on a GPU machine: $last"
		failed=1
	elif ((rc == 77)); then
		row "$name" "SKIP" "$secs" "$last"
	elif ((rc != 0)); then
		row "$name" "FAIL" "$secs" "rc=$rc: $last"
		failed=1
	elif [[ -n "$HAVE_GPU" ]] && grep -q '^\[  SKIPPED \] test_' "$LOGS/$name.log"; then
		# a GPU is here: a skipped GPU case means the GPU path did not run
		local n=$(grep '^\[  SKIPPED \] test_' "$LOGS/$name.log" | sort -u | wc -l)
		row "$name" "PARTIAL" "$secs" "$n case(s) skipped on a GPU machine (see the log)"
		failed=1
	elif [[ -n "$HAVE_GPU" ]] && grep -q 'cpu only (no GPU)' "$LOGS/$name.log"; then
		row "$name" "PARTIAL" "$secs" "CPU figures only on a GPU machine (see the log)"
		failed=1
	elif [[ -n "$nogpu" && -z "$HAVE_GPU" ]]; then
		row "$name" "NO-GPU" "$secs" "$nogpu"
	else
		row "$name" "PASS" "$secs" ""
	fi
	echo "=== $name: rc=$rc (${secs}s)"
}

# --- 1. the machine -----------------------------------------------------
HAVE_GPU="" GPU_NAME="none" DRIVER="none" DRV_CUDA="-" TOOLKIT="none" NOTES=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
	HAVE_GPU=1
	GPU_NAME=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
	DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)
	DRV_CUDA=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)
elif [[ -e /dev/nvidia0 ]]; then
	NOTES+=("/dev/nvidia0 exists but nvidia-smi lists no GPU")
else
	NOTES+=("no GPU: nvidia-smi lists none and there is no /dev/nvidia0; the GPU steps are reached and skipped")
fi
[[ -x "$NVCC" ]] && TOOLKIT=$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
if [[ -n "$HAVE_GPU" && "$TOOLKIT" != none && -n "$DRV_CUDA" ]] &&
	awk -v d="$DRV_CUDA" -v t="$TOOLKIT" 'BEGIN { exit !(d + 0 < t + 0) }'; then
	NOTES+=("driver supports CUDA $DRV_CUDA < toolkit $TOOLKIT: CUDA runtime calls will fail ('driver version is insufficient'); the checkpoint API (libcuda directly) still works")
fi
echo "device: $GPU_NAME; driver $DRIVER (CUDA $DRV_CUDA); toolkit nvcc $TOOLKIT; $(uname -r); $JOBS cpus"

# --- 2. build -----------------------------------------------------------
missing=()
for h in liburing.h http_parser.h cjson/cJSON.h yaml.h cmocka.h cblas.h archive.h openssl/evp.h curl/curl.h; do
	printf '#include <%s>\n' "$h" | cc -E -x c - >/dev/null 2>&1 || missing+=("$h")
done
((${#missing[@]})) && NOTES+=("missing headers (make deps needs network): ${missing[*]}")
[[ "$TOOLKIT" == none ]] && NOTES+=("no nvcc at $NVCC: CPU-only build, no GPU code to test")
step build 300 "" nice make -k -j"$JOBS" BUILD="$BUILD" all
want=(tests/unit/test_kernels_mlp tests/unit/test_viterbi tests/unit/test_predict tests/unit/test_cuda_ckpt
	tests/bench/bench_gpu tests/bench/bench_viterbi thaw thaw-instance handlers/predict.so tools/gen_weights)
notbuilt=()
for f in "${want[@]}"; do [[ -x "$BUILD/$f" || -f "$BUILD/$f" ]] || notbuilt+=("$f"); done
((${#notbuilt[@]})) && NOTES+=("not built: ${notbuilt[*]}")

# run_bin NAME LIMIT NOGPU_NOTE BINARY ARGS...: a FAIL row when the binary is missing
run_bin() {
	local name=$1 limit=$2 note=$3 bin=$4
	shift 4
	if [[ ! -x "$BUILD/$bin" ]]; then
		row "$name" "FAIL" "-" "$BUILD/$bin not built (see the build log)"
		failed=1
		return
	fi
	step "$name" "$limit" "$note" "$BUILD/$bin" "$@"
}

# --- 3. GPU tests -------------------------------------------------------
run_bin test_kernels_mlp 60 "CPU cases passed, GPU cases skipped" tests/unit/test_kernels_mlp
run_bin test_viterbi 60 "CPU cases passed, GPU cases skipped" tests/unit/test_viterbi
# the predict handler's PREDICT_GPU_WEIGHTS=reload hooks (device auto: the GPU when there is one)
run_bin test_predict 60 "CPU cases passed (reload hooks as no-ops)" tests/unit/test_predict
export THAW_GPU_TEST=1
run_bin test_cuda_ckpt 120 "no driver: off-path and mock-driver cases passed" tests/unit/test_cuda_ckpt
unset THAW_GPU_TEST

# --- 4. GPU benchmarks --------------------------------------------------
CRIU_STATUS="not checked"
if [[ -z "${THAW_CRIU:-}" && ! -x "$DEFAULT_CRIU" && -x "$BUILD/gpu-carry/criu/criu" ]]; then
	export THAW_CRIU=$ROOT/$BUILD/gpu-carry/criu/criu
	[[ "$BUILD" = /* ]] && THAW_CRIU=$BUILD/gpu-carry/criu/criu
fi
criu=${THAW_CRIU:-$DEFAULT_CRIU}
if [[ $(id -u) != 0 ]]; then
	CRIU_STATUS="cannot run: not root (restore figures skipped, cold starts measured)"
elif [[ ! -x "$criu" ]]; then
	CRIU_STATUS="cannot run: no criu at $criu (make deps, or --pack on the build machine)"
elif out=$(timeout 30 "$criu" check 2>&1); then
	CRIU_STATUS="ok: $criu"
else
	CRIU_STATUS="cannot run: $criu check: $(echo "$out" | tail -n 1 | cut -c1-100)"
fi
echo "criu: $CRIU_STATUS"
run_bin bench_gpu 120 "" tests/bench/bench_gpu
run_bin bench_viterbi 60 "CPU figures only" tests/bench/bench_viterbi 1
if [[ -n "$HAVE_GPU" ]]; then
	budget=$(($(left) - 30))
	((budget > 360)) && budget=360
	export BENCH_GPU_BUDGET=$budget
	step gpu_restore $((budget + 20)) "" bash tests/bench/gpu_restore.sh "$BUILD"
else
	step gpu_restore 60 "" bash tests/bench/gpu_restore.sh "$BUILD"
fi

# --- 5. the table -------------------------------------------------------
echo
echo "==== thaw GPU run, $(date -u '+%Y-%m-%d %H:%M UTC'), $(($(date +%s) - START)) s of ${TOTAL} s"
printf '%-16s %s\n' "device" "$GPU_NAME" "driver" "$DRIVER (supports CUDA $DRV_CUDA)" \
	"CUDA toolkit" "$TOOLKIT (nvcc $NVCC)" "kernel" "$(uname -r)" "criu" "$CRIU_STATUS" \
	"commit" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
for n in "${NOTES[@]}"; do echo "note: $n"; done
printf '%-28s %-8s %7s  %s\n' step status secs note
printf '%s\n' "${rows[@]}"
figs=$(cat "$LOGS"/*.log 2>/dev/null | grep '^figure: ' | sed 's/^figure: //')
if [[ -n "$figs" ]]; then
	echo "figures:"
	echo "$figs" | awk -F' = ' '{ printf "  %-34s %s\n", $1, $2 }'
else
	echo "figures: none (no GPU figures were produced)"
fi
echo "logs: $LOGS"
((failed)) && exit 1
[[ -z "$HAVE_GPU" ]] && exit 77
exit 0
