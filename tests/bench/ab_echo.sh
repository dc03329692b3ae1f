#!/usr/bin/env bash
# Echo through one or more builds of thaw, alternating, round after round:
# requests/s, p99, the daemon's own CPU per request and the mean loop
# hand-over (thaw_loop_handover_seconds; "-" when no request crossed loops
# or the build has no such metric). For before/after comparisons on a noisy
# machine: the spread between rounds of one build is the noise.
# Usage: tests/bench/ab_echo.sh BUILD [BUILD...]
# Environment: LOOPS (each build once per word, as thaw serve --loop WORD:
# LOOPS="io_uring epoll" compares the loop backends; default: no --loop),
# THREADS (thaw --threads, 2), C (connections, 64), SECS (5),
# ROUNDS (3), MAXI (maxInstances, 2; builds before per-function pools apply
# it per loop). Exit 77 without wrk.
set -euo pipefail
command -v wrk >/dev/null || { echo "ab_echo: skipped: wrk is not installed"; exit 77; }
THREADS=${THREADS:-2} C=${C:-64} SECS=${SECS:-5} ROUNDS=${ROUNDS:-3} MAXI=${MAXI:-2}
TMP=$(mktemp -d /tmp/thaw-bench-ab.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
cat >"$TMP/post.lua" <<'L'
wrk.method = "POST"
wrk.body = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
L
echo "ab_echo: --threads $THREADS, $C connections, ${SECS}s a run, maxInstances $MAXI"
for r in $(seq "$ROUNDS"); do
	for b in "$@"; do
	for l in ${LOOPS:-default}; do
		b=$(cd "$b" && pwd)
		loop=()
		[ "$l" = default ] || loop=(--loop "$l")
		F=$TMP/r$r-$l-$(echo "$b" | md5sum | cut -c1-8)
		mkdir -p "$F/echo"
		printf 'name: echo\nhandler: %s/handlers/echo.so\ninstanceConcurrency: 8\ncpu: 2\nscalingConfig:\n  maxInstances: %s\n' \
			"$b" "$MAXI" >"$F/echo/fc.yaml"
		P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		"$b/thaw" serve --listen 127.0.0.1 --port "$P" --threads "$THREADS" --functions "$F" \
			--state-dir "$F/state" --snapshot-dir "$F/snap" --no-access-log --no-snapshots "${loop[@]}" >"$F/log" 2>&1 &
		PID=$!
		for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$P/readyz" && break; sleep 0.05; done
		wrk -t1 -c"$C" -d1s -s "$TMP/post.lua" "http://127.0.0.1:$P/echo/" >/dev/null
		t0=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
		out=$(wrk -t1 -c"$C" -d"${SECS}s" --latency -s "$TMP/post.lua" "http://127.0.0.1:$P/echo/")
		t1=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
		n=$(echo "$out" | awk '/requests in/ { print $1 }')
		rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
		p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
		ho=$(curl -s "http://127.0.0.1:$P/metrics" | awk '/^thaw_loop_handover_seconds_sum/ { s = $2 }
			/^thaw_loop_handover_seconds_count/ { c = $2 }
			END { if (c > 0) printf "%.1f us (%d)", s / c * 1e6, c; else print "-" }')
		cpu=$(awk -v t="$((t1 - t0))" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
		echo "round $r $b${loop:+ --loop $l}: req/s $rps p99 $p99 daemon CPU us/req $cpu hand-over $ho"
		kill "$PID"
		wait "$PID" 2>/dev/null || true
		PID=
	done
	done
done
