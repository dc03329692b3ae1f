#!/usr/bin/env bash
# Gateway benchmark: thaw's echo function against nginx, side by side, with
# wrk on loopback. Every target answers the same fixed 64-byte body to the
# same 64-byte POST, for the same duration, connections and wrk threads:
#
#   (a)  nginx `return 200` with the body       the ceiling of an HTTP server here
#   (b)  nginx reverse proxy (upstream keepalive, HTTP/1.1) to an nginx server
#        block that returns the body             what a gateway in front of a
#                                                kept-alive upstream costs
#   (c)  thaw serving the echo handler, access log off
#   (c') the same with the access log on, written to a file
#
# then (a), (b), (c) again with 1 connection: the gateway overhead of thaw
# against a bare HTTP server at low load.
#
# Usage: tests/bench/gateway.sh [BUILD_DIR]        (make bench runs it)
# Environment:
#   BENCH_SECONDS      seconds per measured run (default 10)
#   BENCH_CONNECTIONS  connections of the loaded runs (default 64)
#   BENCH_WRK_THREADS  wrk threads of the loaded runs (default 2)
#   BENCH_THREADS      thaw --threads and nginx worker_processes (default nproc)
#   BENCH_INSTANCE_CONCURRENCY, BENCH_MAX_INSTANCES
#                      the echo function's instanceConcurrency and
#                      scalingConfig.maxInstances (default 8 and 2)
#   BENCH_BASELINE     another build folder (e.g. of an older commit): its
#                      thaw echo is measured too, alternating with this
#                      build's for BENCH_ROUNDS rounds (default 3), each
#                      round both at 64 and at 1 connection. Builds before
#                      per-function pools apply maxInstances per loop: the
#                      baseline gets BENCH_MAX_INSTANCES / threads per loop,
#                      the same total.
# Exit: 0, 77 when wrk, nginx or the build is missing, 1 on a failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
THREADS=${BENCH_THREADS:-$(nproc)}
IC=${BENCH_INSTANCE_CONCURRENCY:-8}
MAXI=${BENCH_MAX_INSTANCES:-2}
BODY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef # 64 bytes

for tool in wrk nginx curl python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "gateway: skipped: $tool is not installed (apt-get install wrk nginx-light curl)"
		exit 77
	fi
done
for f in thaw thaw-instance handlers/echo.so; do
	if [ ! -e "$BUILD/$f" ]; then
		echo "gateway: skipped: $BUILD/$f is not built (make build/thaw build/thaw-instance build/handlers/echo.so)"
		exit 77
	fi
done

TMP=$(mktemp -d /tmp/thaw-bench-gateway.XXXXXX)
chmod 755 "$TMP" # nginx workers may run as nobody
# thaw's snapshot images (a tmpfs by default): ours, so they go at exit
SNAP=$(mktemp -d /dev/shm/thaw-bench-gateway.XXXXXX 2>/dev/null || echo "$TMP/snapshots")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP" "$SNAP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL: until it answers 200 (10 s)
wait_http() {
	local i
	for i in $(seq 200); do
		curl -sf -o /dev/null "$1" && return 0
		sleep 0.05
	done
	echo "gateway: $1 did not come up" >&2
	return 1
}

# check_body URL: one POST; the answer must be 200 with the body
check_body() {
	local got
	got=$(curl -sf -X POST -H 'content-type: application/octet-stream' --data-binary "$BODY" "$1") || {
		echo "gateway: POST $1 failed" >&2
		return 1
	}
	if [ "$got" != "$BODY" ]; then
		echo "gateway: POST $1 answered '$got', not the body" >&2
		return 1
	fi
}

cat >"$TMP/post.lua" <<EOF
wrk.method = "POST"
wrk.body = "$BODY"
wrk.headers["Content-Type"] = "application/octet-stream"
EOF

# --- nginx: (a), (b) and the upstream of (b), one master, THREADS workers
NGX=$TMP/nginx
mkdir -p "$NGX"
P_DIRECT=$(free_port)
P_PROXY=$(free_port)
P_UP=$(free_port)
sed -e "s|@DIR@|$NGX|g" -e "s|@WORKERS@|$THREADS|g" -e "s|@BODY@|$BODY|g" \
	-e "s|@PORT_DIRECT@|$P_DIRECT|g" -e "s|@PORT_PROXY@|$P_PROXY|g" -e "s|@PORT_UPSTREAM@|$P_UP|g" \
	"$ROOT/tests/bench/gateway-nginx.conf" >"$NGX/nginx.conf"
nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$P_DIRECT/" || { cat "$NGX/error.log" "$NGX/stdout.log" >&2; exit 1; }
wait_http "http://127.0.0.1:$P_PROXY/" || { cat "$NGX/error.log" >&2; exit 1; }
check_body "http://127.0.0.1:$P_DIRECT/"
check_body "http://127.0.0.1:$P_PROXY/"

# --- thaw: the echo function
FN=$TMP/functions
mkdir -p "$FN/echo"
cat >"$FN/echo/fc.yaml" <<EOF
name: echo
handler: $BUILD/handlers/echo.so
timeout: 3
instanceConcurrency: $IC
cpu: $(nproc)
scalingConfig:
  maxInstances: $MAXI
EOF
THAW_PID=
THAW_PORT=
# start_thaw NAME [ARGS...]: a fresh daemon; its stderr (daemon log and, when
# on, the access log) goes to $TMP/NAME.log
start_thaw() {
	local name=$1
	shift
	THAW_PORT=$(free_port)
	"$BUILD/thaw" serve --listen 127.0.0.1 --port "$THAW_PORT" --threads "$THREADS" \
		--functions "$FN" --state-dir "$TMP/state-$name" --snapshot-dir "$SNAP/$name" \
		"$@" >"$TMP/$name.log" 2>&1 &
	THAW_PID=$!
	PIDS+=("$THAW_PID")
	# the daemon's own lines, not the access log's
	wait_http "http://127.0.0.1:$THAW_PORT/readyz" ||
		{ grep -v '"request_id"' "$TMP/$name.log" | tail -n 30 >&2; exit 1; }
	check_body "http://127.0.0.1:$THAW_PORT/echo/"
}
stop_thaw() {
	kill -TERM "$THAW_PID" 2>/dev/null || true
	wait "$THAW_PID" 2>/dev/null || true
}

# --- CPU time of the server side, robust to a busy machine where req/s is not:
# clock ticks (utime + stime, all threads) of a process and its descendants
tree_pids() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" 2>/dev/null); do tree_pids "$c"; done
}
ticks() { # PID [self]: the tree's ticks, or the process's own with "self"
	local p t=0
	for p in $(if [ "${2:-}" = self ]; then echo "$1"; else tree_pids "$1"; fi); do
		[ -r "/proc/$p/stat" ] || continue
		# fields after the command (which may hold spaces): utime is 14, stime 15
		t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)

# --- wrk
# measure KEY URL CONNS THREADS SERVER_PID [DAEMON_PID]: 1 s warm-up
# (instances start on demand, upstream connections open), then the measured
# run into $TMP/KEY.wrk, and the server's CPU time over it into $TMP/KEY.cpu
# ("tree_ticks daemon_ticks")
measure() {
	local key=$1 url=$2 c=$3 t=$4 srv=$5 daemon=${6:-}
	wrk -t"$t" -c"$c" -d1s -s "$TMP/post.lua" "$url" >/dev/null 2>&1 || true
	local t0 d0=0 t1 d1=0
	t0=$(ticks "$srv")
	[ -n "$daemon" ] && d0=$(ticks "$daemon" self)
	wrk -t"$t" -c"$c" -d"${SECS}s" --latency -s "$TMP/post.lua" "$url" >"$TMP/$key.wrk" 2>&1 || {
		cat "$TMP/$key.wrk" >&2
		echo "gateway: wrk failed on $url" >&2
		exit 1
	}
	t1=$(ticks "$srv")
	[ -n "$daemon" ] && d1=$(ticks "$daemon" self)
	echo "$((t1 - t0)) $((d1 - d0))" >"$TMP/$key.cpu"
}

# field KEY rps|p50|p99|errors|requests: from wrk's report; latencies in us
field() {
	awk -v want="$2" '
	function us(v) {
		if (v ~ /us$/) return v + 0
		if (v ~ /ms$/) return (v + 0) * 1000
		if (v ~ /m$/) return (v + 0) * 60e6
		if (v ~ /s$/) return (v + 0) * 1e6
		return v + 0
	}
	/^Requests\/sec:/ { rps = $2 }
	$1 == "50%" { p50 = us($2) }
	$1 == "99%" { p99 = us($2) }
	/requests in/ { n = $1 }
	/Non-2xx or 3xx responses:/ { err += $NF }
	/Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
	END {
		if (want == "rps") printf "%.0f\n", rps
		else if (want == "p50") printf "%.0f\n", p50
		else if (want == "p99") printf "%.0f\n", p99
		else if (want == "requests") print n + 0
		else print err + 0
	}' "$TMP/$1.wrk"
}

W=$WRK_THREADS
((W > CONNS)) && W=$CONNS
echo "gateway: $CONNS connections, $W wrk threads, ${SECS}s per run; nginx worker_processes $THREADS," \
	"thaw --threads $THREADS, echo instanceConcurrency $IC, maxInstances $MAXI per loop"
measure a "http://127.0.0.1:$P_DIRECT/" "$CONNS" "$W" "$NGINX_PID"
measure b "http://127.0.0.1:$P_PROXY/" "$CONNS" "$W" "$NGINX_PID"
measure a1 "http://127.0.0.1:$P_DIRECT/" 1 1 "$NGINX_PID"
measure b1 "http://127.0.0.1:$P_PROXY/" 1 1 "$NGINX_PID"

start_thaw nolog --no-access-log
measure c "http://127.0.0.1:$THAW_PORT/echo/" "$CONNS" "$W" "$THAW_PID" "$THAW_PID"
measure c1 "http://127.0.0.1:$THAW_PORT/echo/" 1 1 "$THAW_PID" "$THAW_PID"
INSTANCES=$(curl -sf "http://127.0.0.1:$THAW_PORT/metrics" |
	awk '/^thaw_instances\{/ && !/state="(stopping|stopped)"/ { n += $NF } END { print n + 0 }')
stop_thaw

start_thaw log
measure clog "http://127.0.0.1:$THAW_PORT/echo/" "$CONNS" "$W" "$THAW_PID" "$THAW_PID"
stop_thaw
LOG_LINES=$(grep -c '"request_id"' "$TMP/log.log" || true)

# --- this build against BENCH_BASELINE, alternating (the machine's noise
# shows as the spread between rounds of the same build)
if [ -n "${BENCH_BASELINE:-}" ]; then
	BASE=$(cd "$BENCH_BASELINE" && pwd)
	mkdir -p "$TMP/base-fn/echo"
	sed -e "s|$BUILD/handlers|$BASE/handlers|" \
		-e "s|maxInstances: $MAXI|maxInstances: $(((MAXI + THREADS - 1) / THREADS))|" \
		"$FN/echo/fc.yaml" >"$TMP/base-fn/echo/fc.yaml"
	HANDOVER=""
	for round in $(seq "${BENCH_ROUNDS:-3}"); do
		for which in new base; do
			if [ $which = new ]; then
				start_thaw "r$round$which" --no-access-log
			else
				SAVED=$BUILD FN_SAVED=$FN
				BUILD=$BASE FN=$TMP/base-fn
				start_thaw "r$round$which" --no-access-log
				BUILD=$SAVED FN=$FN_SAVED
			fi
			measure "r$round$which" "http://127.0.0.1:$THAW_PORT/echo/" "$CONNS" "$W" "$THAW_PID" "$THAW_PID"
			measure "r$round${which}1" "http://127.0.0.1:$THAW_PORT/echo/" 1 1 "$THAW_PID" "$THAW_PID"
			[ $which = new ] && HANDOVER="$HANDOVER $(curl -sf "http://127.0.0.1:$THAW_PORT/metrics" |
				awk '/^thaw_loop_handover_seconds_sum/ { s = $2 } /^thaw_loop_handover_seconds_count/ { n = $2 }
				END { if (n > 0) printf "%.1f", s / n * 1e6; else printf "-" }')"
			stop_thaw
		done
	done
fi
LOG_BYTES=$(stat -c %s "$TMP/log.log")

header() {
	printf '| %-44s | %9s | %8s | %8s | %6s | %12s |\n' "$1" "req/s" "p50 us" "p99 us" "errors" "CPU us/req"
	echo "|----------------------------------------------|-----------|----------|----------|--------|--------------|"
}
# cpu KEY: server CPU microseconds per request ("total (daemon)" for thaw)
cpu() {
	local n tree daemon
	n=$(field "$1" requests)
	read -r tree daemon <"$TMP/$1.cpu"
	awk -v n="$n" -v t="$tree" -v d="$daemon" -v hz="$HZ" -v thaw="$2" 'BEGIN {
		if (n <= 0) { print "-"; exit }
		if (thaw) printf "%.1f (%.1f)\n", t * 1e6 / hz / n, d * 1e6 / hz / n
		else printf "%.1f\n", t * 1e6 / hz / n
	}'
}
row() { # KEY LABEL [thaw]
	printf '| %-44s | %9s | %8s | %8s | %6s | %12s |\n' "$2" "$(field "$1" rps)" "$(field "$1" p50)" \
		"$(field "$1" p99)" "$(field "$1" errors)" "$(cpu "$1" "${3:-}")"
}
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { printf (y > 0 ? "%.2f" : "-"), x / y }'; }

echo
header "target ($CONNS connections)"
row a "(a) nginx return 200"
row b "(b) nginx proxy_pass -> nginx (keepalive)"
row c "(c) thaw echo, access log off" thaw
row clog "(c') thaw echo, access log on (to a file)" thaw
echo
header "target (1 connection)"
row a1 "(a) nginx return 200"
row b1 "(b) nginx proxy_pass -> nginx (keepalive)"
row c1 "(c) thaw echo, access log off" thaw
echo
C=$(field c rps)
echo "thaw/(a) req/s: $(ratio "$C" "$(field a rps)")   thaw/(b) req/s: $(ratio "$C" "$(field b rps)")" \
	"  access log on/off req/s: $(ratio "$(field clog rps)" "$C")"
echo "gateway overhead vs a bare HTTP server, 1 connection, thaw - (a):" \
	"p50 $(($(field c1 p50) - $(field a1 p50))) us, p99 $(($(field c1 p99) - $(field a1 p99))) us"
echo "for comparison, nginx as a proxy, (b) - (a):" \
	"p50 $(($(field b1 p50) - $(field a1 p50))) us, p99 $(($(field b1 p99) - $(field a1 p99))) us"
echo "CPU us/req: CPU time of the server's processes (nginx master and workers;" \
	"thaw daemon and instances, the daemon alone in parentheses) over the run / requests"
echo "thaw had $INSTANCES echo instance(s) live after the access-log-off runs;" \
	"the access log run wrote $LOG_LINES lines ($LOG_BYTES bytes)"
if [ -n "${BENCH_BASELINE:-}" ]; then
	echo
	echo "this build ($BUILD) against $BASE, alternating, access log off:"
	header "round, build ($CONNS connections | 1 connection)"
	for round in $(seq "${BENCH_ROUNDS:-3}"); do
		row "r${round}new" "$round this build, $CONNS conns" thaw
		row "r${round}base" "$round baseline, $CONNS conns" thaw
		row "r${round}new1" "$round this build, 1 conn" thaw
		row "r${round}base1" "$round baseline, 1 conn" thaw
	done
	echo "loop hand-over (post to callback on the other loop), mean per round, this build:$HANDOVER us"
fi
