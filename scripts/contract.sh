#!/usr/bin/env bash
# Checks that every service answers as its OpenAPI document says: starts `kassa up` (embedded
# storage, free ports, a fresh data folder) and runs schemathesis with every check and every
# phase, the stateful one (following the documents' links) included, against the document of
# every service `kassa up` runs (SERVICES="orders members" for some), and once more against the
# gateway's, which holds them all, as an admin (a person signed in). Exits non-zero on any
# failure.
#
# Fuzzing draws EXAMPLES cases for an operation that takes a body, and a fifth of that for a
# plain one (GET, DELETE: only a path and a query to vary). The gateway's run checks the
# forwarding of what each service's run checked on its own port, and the links between
# services: a tenth of the cases, and no coverage phase.
#
#   scripts/contract.sh                  about a minute (EXAMPLES=25)
#   EXAMPLES=1000 scripts/contract.sh    a long run
#
# Needs schemathesis (`python3 -m pip install schemathesis==4.32.5`; scripts/test installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${EXAMPLES:-25}
SEED=${SEED:-}
SERVICES=${SERVICES:-}
REPORTS=${REPORTS:-}

st=$(command -v st || command -v schemathesis || true)
if [ -z "$st" ]; then
  # Installed by pip but not on PATH yet (a version manager's shims not refreshed): the script
  # sits beside the interpreter that installed it.
  beside=$(python3 -c 'import os, sys; print(os.path.join(os.path.dirname(sys.executable), "st"))')
  [ -x "$beside" ] && st=$beside
fi
if [ -z "$st" ]; then
  echo "schemathesis is not installed: python3 -m pip install schemathesis==4.32.5" >&2
  exit 2
fi

# The binary to check: KASSA names one already built (scripts/test passes the one its tests
# ran); otherwise the debug build.
kassa=${KASSA:-}
if [ -z "$kassa" ]; then
  cargo build --quiet --locked --bin kassa
  kassa=${CARGO_TARGET_DIR:-target}/debug/kassa
fi

data=$(mktemp -d)
# Two processes: the gateway's run follows links into every service's records (it lists them
# and deletes what it finds), so it gets data of its own, apart from the runs against each
# service that check what they just created.
mapfile -t ports < <("$kassa" up --help | grep -oE -- '--[a-z]+-port' | sort -u | sed 's/$/=0/')
pids=()
for instance in services gateway; do
  mkdir -p "$data/$instance"
  # Every service on a free port: one `--<service>-port 0` per port option kassa has.
  RUST_LOG=${RUST_LOG:-warn} "$kassa" up --data-dir "$data/$instance" "${ports[@]}" \
    >"$data/$instance.out" 2>"$data/$instance.err" &
  pids+=($!)
done
declare -A runs=()
stop() {
  for run in "${runs[@]}"; do kill "$run" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}
trap stop EXIT

address() { # address SERVICE: the base URL kassa printed for it, in the instance it is run on
  local instance=services
  [ "$1" = gateway ] && instance=gateway
  awk -v s="$1" '$1 == s { print $2 }' "$data/$instance.out"
}

for instance in services gateway; do
  for _ in $(seq 120); do
    base=$(awk '$1 == "gateway" { print $2 }' "$data/$instance.out")
    if [ -n "$base" ] && curl -fsS "$base/health/ready" >/dev/null 2>&1; then
      break
    fi
    for pid in "${pids[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "kassa up exited:" >&2
        cat "$data"/*.err >&2
        exit 1
      fi
    done
    sleep 0.5
  done
done

# Each instance's admin: a person who signs up, is made an admin by the operator's command, and
# signs in; schemathesis calls every operation with their token (an operation's refusal of a
# caller with no credential, or the wrong one, is its `ignored_auth` check).
admin_token() { # admin_token INSTANCE
  local gw email
  gw=$(awk '$1 == "gateway" { print $2 }' "$data/$1.out")
  email="contract-admin-$1@example.com"
  curl -fsS -o /dev/null -X POST "$gw/api/auth/signup" -H 'content-type: application/json' \
    -d "{\"name\":\"Contract Admin\",\"email\":\"$email\",\"password\":\"contract password\"}"
  RUST_LOG=warn "$kassa" users grant-admin "$email" --data-dir "$data/$1" >/dev/null
  curl -fsS -X POST "$gw/api/auth/signin" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"contract password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["token"])'
}
token_services=$(admin_token services)
token_gateway=$(admin_token gateway)
declare -A tokens=([services]=$token_services [gateway]=$token_gateway)

# A member each instance's services know of (from `member.created`), for the bodies that name
# one (`memberId` of a payment or an enrolment; see contract_hooks.py): with random ids those
# are refused as unknown members, and what follows a created payment would go untested.
known_member() { # known_member INSTANCE: creates a member and waits until payments knows it
  local gw id
  gw=$(awk '$1 == "gateway" { print $2 }' "$data/$1.out")
  id=$(curl -fsS -X POST "$gw/api/members" -H 'content-type: application/json' \
    -H "authorization: Bearer ${tokens[$1]}" \
    -d "{\"name\":\"Contract\",\"email\":\"contract-$1@example.com\",\"phoneNumber\":\"+4915112345678\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  for _ in $(seq 100); do
    if curl -fsS -o /dev/null -X POST "$gw/api/payments/manual" -H 'content-type: application/json' \
      -H "authorization: Bearer ${tokens[$1]}" \
      -d "{\"memberId\":\"$id\",\"amount\":1,\"paymentMethod\":\"Cash\"}" 2>/dev/null; then
      echo "$id"
      return
    fi
    sleep 0.1
  done
  echo "payments did not hear of member $id" >&2
  exit 1
}
# Plain assignments, so that a failure stops the script (`set -e` does not see one inside an
# array's initialiser).
member_services=$(known_member services)
member_gateway=$(known_member gateway)
declare -A members=([services]=$member_services [gateway]=$member_gateway)
# Every service kassa up printed an address for, unless SERVICES names some.
[ -n "$SERVICES" ] || SERVICES=$(awk '$2 ~ /^http:/ { print $1 }' "$data/services.out" | xargs)

# The settings file with the number of cases to draw: $1 for an operation with a body, $2 for a
# plain one.
config_for() {
  local file="$data/schemathesis-$1-$2.toml"
  {
    cat scripts/schemathesis.toml
    printf '\n[generation]\nmax-examples = %s\n' "$1"
    printf '\n[[operations]]\ninclude-method = ["GET", "DELETE", "HEAD", "OPTIONS"]\n'
    printf 'generation.max-examples = %s\n' "$2"
  } >"$file"
  echo "$file"
}
plain=$(( (EXAMPLES + 4) / 5 ))
service_config=$(config_for "$EXAMPLES" "$plain")
gateway_config=$(config_for $(( (EXAMPLES + 9) / 10 )) $(( (plain + 9) / 10 )))

# A client that ties each Idempotency-Key to one request (see contract_hooks.py).
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=contract_hooks

# One schemathesis process per service, each with one worker: CPython 3.11 before 3.11.8 can
# fail `ast.parse` called from two threads at once ("AST constructor recursion depth
# mismatch"), which hypothesis does while naming its filters.
checked=()
for service in $SERVICES; do
  base=$(address "$service")
  if [ -z "$base" ]; then
    echo "kassa up did not print an address for $service" >&2
    exit 1
  fi
  # A service with no API of its own (notifications) has nothing to check.
  if ! curl -fsS "$base/openapi.json" |
    python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("paths") else 1)'; then
    printf '\n== %s: its document has no operations; nothing to check\n' "$service"
    continue
  fi
  checked+=("$service")
  config=$service_config
  [ "$service" = gateway ] && config=$gateway_config
  phases=examples,coverage,fuzzing,stateful
  # Every operation's coverage cases (the boundaries of each field, each one left out) are sent
  # on its service's own port; through the gateway they would check the same code again, at
  # three quarters of the step's time.
  [ "$service" = gateway ] && phases=examples,fuzzing,stateful
  args=(run "$base/openapi.json" --checks all --phases "$phases" --workers 1 --no-color)
  [ -n "$SEED" ] && args+=(--seed "$SEED")
  [ -n "$REPORTS" ] && args+=(--report ndjson --report-dir "$REPORTS/$service")
  # From the temporary folder, where schemathesis leaves its `.schemathesis` cache.
  instance=services
  [ "$service" = gateway ] && instance=gateway
  args+=(--header "Authorization: Bearer ${tokens[$instance]}")
  (cd "$data" && KNOWN_MEMBER=${members[$instance]} exec "$st" --config-file "$config" "${args[@]}") \
    >"$data/$service.log" 2>&1 &
  runs[$service]=$!
done

failed=()
for service in "${checked[@]}"; do
  status=0
  wait "${runs[$service]}" || status=$?
  printf '\n== %s (%s/openapi.json)\n' "$service" "$(address "$service")"
  cat "$data/$service.log"
  [ "$status" -eq 0 ] || failed+=("$service")
done

for pid in "${pids[@]}"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "kassa up died during the run:" >&2
    tail -n 50 "$data"/*.err >&2
    exit 1
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "contract failures: ${failed[*]}" >&2
  exit 1
fi
echo "contract: every service answers as its document says"
