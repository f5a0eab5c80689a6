#!/usr/bin/env bash
# Runs the distributed checkout of two builds side by side, alternating, against the same
# PostgreSQL, RabbitMQ and Redis, so a change's cost is told from the machine's mood:
#
#   scripts/compare.sh BASE_KASSA NEW_KASSA [ROUNDS]
#
# Each round runs `kassa serve users gateway orders payments` of one build (a base from before
# issue 30 takes no key and ignores it), drives it with the new
# build's `kassa bench -n 20000 -c 64`, then does the same for the other; pgbench's insert TPS is
# measured in the first round and the last. Build a base with, for example:
#   git worktree add /tmp/base REV && (cd /tmp/base && CARGO_TARGET_DIR=/tmp/base-target cargo build --release -p kassa)
set -euo pipefail
base=$1 new=$2 rounds=${3:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
export RUST_LOG=warn
# The load comes from one address: the gateway's per-client limits on placing orders would
# measure themselves, not the checkout.
export KASSA_ORDER_RATE_LIMIT=off KASSA_POS_ORDER_RATE_LIMIT=off
# One token secret for every process; the users service among the ones served says who the
# load's API key is.
export KASSA_TOKEN_SECRET="the benchmarks' token secret, 32 bytes or more"

run() { # run LABEL BINARY [BENCH-ARGS]
  local label=$1 bin=$2; shift 2
  local ns="cmp$(date +%s%N | tail -c 9)"
  "$bin" serve users gateway orders payments --namespace "$ns" >/dev/null 2>&1 &
  local pid=$!
  sleep 3
  local key
  key=$("$new" keys create --role admin --name bench --namespace "$ns" --database-url "$PG")
  local report; report=$("$new" bench --json --key "$key" -n 20000 -c 64 "$@")
  echo "$label $(echo "$report" | python3 -c 'import json, sys; r = json.load(sys.stdin); print("terminal/s=%.0f p50=%d ms p99=%d ms pgbench=%s ratio=%s" % (r["terminal_per_sec"], r["p50_ms"], r["p99_ms"], r["pgbench_insert_tps"], r["ratio_to_pgbench"]))')"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  for s in orders payments users; do
    psql "$PG" -q -c "DROP DATABASE IF EXISTS \"${ns}_$s\" WITH (FORCE)" 2>/dev/null || true
  done
}

for i in $(seq "$rounds"); do
  extra=()
  [ "$i" -eq 1 ] && extra=(--pgbench "$PG")
  run "new$i" "$new" "${extra[@]}"
  extra=()
  [ "$i" -eq "$rounds" ] && extra=(--pgbench "$PG")
  run "base$i" "$base" "${extra[@]}"
done
