#!/usr/bin/env bash
# Whole flows over HTTP with the CPU split between the example server and
# PostgreSQL (BENCHMARKS.md, "Where a PostgreSQL flow's CPU goes").
#
#   benches/flow_cpu.sh LABEL [loadgen flags...]
#
# Recreates the database `bench` on 127.0.0.1:5432 (PGEXTRA, if set, is run
# in the new database's place first, e.g.
# PGEXTRA="ALTER DATABASE bench SET log_min_duration_statement = 0"), runs
# target/release/examples/loadgen with the flags given, and prints flows/s,
# the server's and PostgreSQL's CPU time (centiseconds, utime + stime from
# /proc) over a 7 s window in the middle of the run, the machine's busy and
# idle time over the same window, and the database's committed transactions
# (pg_stat_database.xact_commit, setup included: about 850).
# Build first: cargo build --release --example server --example loadgen
set -euo pipefail
cd "$(dirname "$0")/.."
L=./target/release/examples/loadgen
LABEL=${1:?usage: benches/flow_cpu.sh LABEL [loadgen flags...]}
shift
PSQL=(psql -qh 127.0.0.1 -U postgres)
"${PSQL[@]}" test -c 'DROP DATABASE IF EXISTS bench' -c 'CREATE DATABASE bench' >/dev/null
if [ -n "${PGEXTRA:-}" ]; then "${PSQL[@]}" test -c "$PGEXTRA" >/dev/null; fi
pg_cpu() {
  local t=0 s p
  for p in $(pgrep -u postgres || true); do
    s=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + s))
  done
  echo "$t"
}
machine() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }
OUT=$(mktemp)
$L "$@" >"$OUT" 2>&1 &
LOADGEN=$!
sleep 1.5
SERVER=$(pgrep -n -x server)
read -r busy0 idle0 < <(machine)
pg0=$(pg_cpu)
sv0=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
sleep 7
pg1=$(pg_cpu)
sv1=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
read -r busy1 idle1 < <(machine)
wait "$LOADGEN"
flows=$(awk '/flows\/s/{print $2}' "$OUT")
xact=$("${PSQL[@]}" test -tAc "SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'")
echo "$LABEL flows/s=$flows window(cs): server=$((sv1 - sv0)) postgres=$((pg1 - pg0)) busy=$((busy1 - busy0)) idle=$((idle1 - idle0)) xact_commit=$xact"
grep -A5 ' step ' "$OUT" || true
rm -f "$OUT"
