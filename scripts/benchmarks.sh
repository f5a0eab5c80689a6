#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/benchmarks.md, one after the other on this machine, and
# prints each `kassa bench --json` report. Needs the release build, wrk (Debian's package) and,
# for the distributed runs, PostgreSQL, RabbitMQ and Redis on their default local ports (as
# .ci/run starts them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
kassa=${CARGO_TARGET_DIR:-target}/release/kassa
N=${N:-20000}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
export RUST_LOG=warn

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# ONLY="startup reads" runs just those parts: startup embedded distributed rates latency reads
# soak. The soak (ten rounds of N orders against one process) runs only when named, as it takes
# five minutes: ONLY=soak, or ONLY=soak with PostgreSQL's autovacuum on and off in turn.
want() { { [ -z "${ONLY:-}" ] && [ "$1" != soak ]; } || [[ " ${ONLY:-} " == *" $1 "* ]]; }

run() { # run LABEL SERVER-ARGS -- BENCH-ARGS
  local label=$1; shift
  local server=()
  while [ "$1" != "--" ]; do server+=("$1"); shift; done; shift
  local data; data=$(mktemp -d)
  [ "${server[0]}" = up ] && server+=(--data-dir "$data")
  "$kassa" "${server[@]}" >/dev/null 2>&1 &
  local pid=$!
  sleep 3
  local rss; rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  echo "== $label (server RSS before load: ${rss} kB)"
  "$kassa" bench --json "$@"
  stop "$pid"
  rm -rf "$data"
}

# `kassa up` (every service, embedded): time from start to the first 200 of the gateway's
# /health/ready, and its idle RSS five seconds later.
startup() {
  local data; data=$(mktemp -d)
  local t0; t0=$(date +%s%N)
  "$kassa" up --data-dir "$data" >/dev/null 2>&1 &
  local pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:3000/health/ready; do sleep 0.01; done
  local t1; t1=$(date +%s%N)
  sleep 5
  echo "== kassa up: /health/ready after $(( (t1 - t0) / 1000000 )) ms; idle RSS $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") kB"
  stop "$pid"
  rm -rf "$data"
}
want startup && startup

ns="bench$(date +%s)"
want embedded && run "embedded" up -- -n "$N" -c 64
want distributed && run "distributed, provider latency 0" serve gateway orders payments --namespace "${ns}a" -- -n "$N" -c 64 --pgbench "$PG"
want rates && run "distributed, offered 1000/s" serve gateway orders payments --namespace "${ns}b" -- -n 10000 -c 256 --rate 1000
want rates && run "distributed, offered 600/s" serve gateway orders payments --namespace "${ns}e" -- -n 9000 -c 256 --rate 600
want rates && run "distributed, offered 400/s" serve gateway orders payments --namespace "${ns}c" -- -n 8000 -c 256 --rate 400
want latency && run "distributed, provider latency 1500 ms" serve gateway orders payments --namespace "${ns}d" --provider-latency-ms 1500 -- -n "$N" -c 512

# Sustained load: ten rounds of N orders against one process; each round's throughput, p99 and
# the server's RSS, then the last round against the first (and RSS against round two).
want soak && run "distributed soak, 10 rounds, autovacuum $(psql "$PG" -Atc 'show autovacuum')" serve gateway orders payments --namespace "${ns}g" -- -n "$N" -c 64 --rounds 10

# Reading one APPROVED payment through the gateway (served from the Redis cache) against
# /health/live of the same process, each with wrk for 10 s at 64 connections.
reads() {
  "$kassa" serve gateway orders payments --namespace "${ns}f" >/dev/null 2>&1 &
  local pid=$!
  sleep 3
  "$kassa" bench --json -n 200 -c 16 >/dev/null
  local payment
  payment=$(curl -s 'http://127.0.0.1:3000/api/payments?limit=1' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  echo "== reads through the gateway (payment $payment)"
  for path in "/api/payments/$payment" /health/live; do
    # Two seconds to open the connections (to Redis too), then the measured ten.
    wrk -t2 -c64 -d2s "http://127.0.0.1:3000$path" >/dev/null
    printf '%s: ' "$path"
    wrk -t2 -c64 -d10s "http://127.0.0.1:3000$path" | awk '/Requests\/sec/ {print $2 " req/s"} /Non-2xx/ {print "  " $0}'
  done
  stop "$pid"
}
want reads && reads

# The distributed runs leave their databases behind; drop them.
for suffix in a b c d e f g; do
  for service in orders payments; do
    psql "$PG" -q -c "DROP DATABASE IF EXISTS \"${ns}${suffix}_${service}\" WITH (FORCE)" || true
  done
done
