#!/usr/bin/env bash
# Server cost per request over HTTP against the same work in process
# (BENCHMARKS.md, "Per-request cost over HTTP"). Usage:
#
#   benches/http_cost.sh cpu        [N] [ROUNDS]   # /proc CPU time, release build
#   benches/http_cost.sh callgrind  [N] [ROUNDS]   # instruction counts under callgrind
#
# Both start the example server (memory storage, opaque access tokens, the
# default log level, output to /dev/null, no purge task), drive it with
# tools/http_cost.rs over one keep-alive connection in alternating
# phases (discovery GET, registration, code exchange), then run the same
# sequence in process. Extra arguments after ROUNDS go to `http_cost http`
# (e.g. --concurrency 8). SERVER_CPUS / HARNESS_CPUS (taskset CPU lists,
# e.g. SERVER_CPUS=1 HARNESS_CPUS=0) pin the server and the harness in the
# `cpu` mode; the in-process run is pinned like the server.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-cpu}
N=${2:-}
ROUNDS=${3:-}
shift $(( $# < 3 ? $# : 3 ))
export CARGO_INCREMENTAL=0
[ -n "${SERVER:-}" ] || cargo build --release --quiet --example server --example http_cost
S=${SERVER:-target/release/examples/server}
H=${HARNESS:-target/release/examples/http_cost}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=http-cost-admin
OUT=$(mktemp -d)
SERVER_ARGS=(--listen "127.0.0.1:$PORT" --database-url memory: --auto-approve --admin-token "$TOKEN"
  --max-clients none --access-token-format opaque --purge-interval-secs 0)
PID=
cleanup() { if [ -n "$PID" ]; then kill -INT "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

wait_ready() {
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT/.well-known/oauth-authorization-server"; then return 0; fi
    sleep 0.1
  done
  echo "server did not start" >&2; exit 1
}

case "$MODE" in
  cpu)
    N=${N:-20000}; ROUNDS=${ROUNDS:-5}
    PIN_S=(); PIN_H=()
    if [ -n "${SERVER_CPUS:-}" ]; then PIN_S=(taskset -c "$SERVER_CPUS"); fi
    if [ -n "${HARNESS_CPUS:-}" ]; then PIN_H=(taskset -c "$HARNESS_CPUS"); fi
    "${PIN_S[@]}" "$S" "${SERVER_ARGS[@]}" >/dev/null 2>"$OUT/server.err" &
    PID=$!
    wait_ready
    "${PIN_H[@]}" "$H" http --base "http://127.0.0.1:$PORT" --admin-token "$TOKEN" --pid "$PID" --n "$N" --rounds "$ROUNDS" "$@"
    cleanup; PID=
    "${PIN_S[@]}" "$H" inproc --n "$N" --rounds "$ROUNDS"
    ;;
  callgrind)
    N=${N:-2000}; ROUNDS=${ROUNDS:-3}
    valgrind --tool=callgrind --callgrind-out-file="$OUT/server.%p" "$S" "${SERVER_ARGS[@]}" \
      >/dev/null 2>"$OUT/server.err" &
    PID=$!
    wait_ready
    "$H" http --base "http://127.0.0.1:$PORT" --admin-token "$TOKEN" --pid "$PID" --n "$N" --rounds "$ROUNDS" \
      --warm 200 --callgrind "$@"
    cleanup; PID=
    echo "in process (driver, instructions per call under callgrind):"
    declare -A IN
    for op in discovery register token; do
      valgrind --tool=callgrind --callgrind-out-file="$OUT/inproc.$op" --toggle-collect="*measure_inproc_$op*" \
        "$H" inproc --n "$N" --rounds "$ROUNDS" --warm 200 >/dev/null 2>"$OUT/inproc.$op.err"
      collected=$(sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$OUT/inproc.$op.err")
      IN[$op]=$(( collected / (N * ROUNDS) ))
      echo "  $op ${IN[$op]}"
    done
    ;;
  *)
    echo "usage: $0 cpu|callgrind [N] [ROUNDS] [http_cost http flags]" >&2; exit 2 ;;
esac
rm -rf "$OUT"
