#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/benchmarks.md, one after the other on this machine, and
# prints each `kassa bench --json` report. Builds the `dist` profile (fat LTO: the binaries
# people download, and what the memory budget is measured on; PROFILE=release builds quicker).
# Needs wrk (Debian's package) and, for the distributed runs, PostgreSQL, RabbitMQ and Redis
# on their default local ports (as scripts/test starts them).
set -euo pipefail
cd "$(dirname "$0")/.."
# ONLY="kafka" builds with the `kafka` feature: the checkout on Kafka, beside the same binary on
# RabbitMQ in the same run (needs a Kafka broker on 127.0.0.1:9092, as scripts/test starts tansu).
PROFILE=${PROFILE:-dist}
if [[ " ${ONLY:-} " == *" kafka "* ]]; then
  cargo build --profile "$PROFILE" --quiet --features kafka
else
  cargo build --profile "$PROFILE" --quiet
fi
kassa=${CARGO_TARGET_DIR:-target}/$PROFILE/kassa
N=${N:-20000}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
export RUST_LOG=warn
# The load comes from one address: the gateway's per-client limits on placing orders would
# measure themselves, not the checkout.
export KASSA_ORDER_RATE_LIMIT=off KASSA_POS_ORDER_RATE_LIMIT=off

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Every process shares one token secret, and one that serves routes runs the users service too,
# which says who an API key is; the load calls with an admin's key, made as an operator makes
# one (`kassa keys create`).
export KASSA_TOKEN_SECRET="the benchmarks' token secret, 32 bytes or more"
with_users() { # with_users SERVER-ARGS: `serve A B …` with users among them
  if [ "$1" = serve ] && [[ " $* " != *" users "* ]]; then
    echo serve users "${@:2}"
  else
    echo "$@"
  fi
}
admin_key() { # admin_key --namespace NS | --data-dir DIR
  if [ "$1" = --data-dir ]; then
    "$kassa" keys create --role admin --name "bench-$RANDOM$RANDOM" "$@"
  else
    "$kassa" keys create --role admin --name "bench-$RANDOM$RANDOM" "$@" --database-url "$PG"
  fi
}

# ONLY="startup reads" runs just those parts: startup embedded distributed rates latency reads
# lists reports soak kafka. The soak (ten rounds of N orders against one process) runs only when named, as it takes
# five minutes: ONLY=soak, or ONLY=soak with PostgreSQL's autovacuum on and off in turn.
want() { { [ -z "${ONLY:-}" ] && [ "$1" != soak ] && [ "$1" != kafka ]; } || [[ " ${ONLY:-} " == *" $1 "* ]]; }

run() { # run LABEL SERVER-ARGS -- BENCH-ARGS
  local label=$1; shift
  local server=()
  while [ "$1" != "--" ]; do server+=("$1"); shift; done; shift
  local data; data=$(mktemp -d)
  read -r -a server <<<"$(with_users "${server[@]}")"
  local target=()
  if [ "${server[0]}" = up ]; then
    server+=(--data-dir "$data")
    target=(--data-dir "$data")
  else
    for i in "${!server[@]}"; do
      [ "${server[$i]}" = --namespace ] && target=(--namespace "${server[$((i + 1))]}")
    done
  fi
  "$kassa" "${server[@]}" >/dev/null 2>&1 &
  local pid=$!
  sleep 3
  local key; key=$(admin_key "${target[@]}")
  # AFTER_START="command" runs once the server is up, before the load.
  if [ -n "${AFTER_START:-}" ]; then eval "$AFTER_START"; fi
  local rss; rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  echo "== $label (server RSS before load: ${rss} kB)"
  "$kassa" bench --json --key "$key" "$@"
  stop "$pid"
  rm -rf "$data"
}

# `kassa up` (every service, embedded): time from start to the first 200 of the gateway's
# /health/ready, and its idle RSS five seconds later, with the private part of it (anonymous
# memory: what grows with work; the rest is the binary's pages, shared with the page cache).
startup() {
  local data; data=$(mktemp -d)
  local t0; t0=$(date +%s%N)
  "$kassa" up --data-dir "$data" >/dev/null 2>&1 &
  local pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:3000/health/ready; do sleep 0.01; done
  local t1; t1=$(date +%s%N)
  sleep 5
  echo "== kassa up: /health/ready after $(( (t1 - t0) / 1000000 )) ms; idle RSS $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") kB, of it anonymous $(awk '/RssAnon/ {print $2}' "/proc/$pid/status") kB"
  stop "$pid"
  rm -rf "$data"
}
want startup && startup

ns="bench$(date +%s)"
want embedded && run "embedded" up -- -n "$N" -c 64
want distributed && run "distributed, provider latency 0" serve gateway orders payments --namespace "${ns}a" -- -n "$N" -c 64 --pgbench "$PG"
# The same with analytics running beside them, consuming every event into its own database.
want distributed && run "distributed with analytics, provider latency 0" serve gateway orders payments analytics --namespace "${ns}q" -- -n "$N" -c 64 --pgbench "$PG"
# And the checkout as it was before analytics: its queue deleted once the server declared it.
want distributed && AFTER_START="rabbitmqctl -q delete_queue ${ns}z.analytics >/dev/null" \
  run "distributed without analytics' queue, provider latency 0" serve gateway orders payments --namespace "${ns}z" -- -n "$N" -c 64 --pgbench "$PG"
# The same checkout on each broker, one after the other with one binary: RabbitMQ, then Kafka.
if [[ " ${ONLY:-} " == *" kafka "* ]]; then
  run "distributed on RabbitMQ, provider latency 0" serve gateway orders payments --namespace "${ns}r" -- -n "$N" -c 64 --pgbench "$PG"
  KASSA_BUS=kafka KASSA_KAFKA_REPLICATION=1 run "distributed on Kafka, provider latency 0" serve gateway orders payments --namespace "${ns}k" -- -n "$N" -c 64 --pgbench "$PG"
fi
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
  "$kassa" serve users gateway orders payments --namespace "${ns}f" >/dev/null 2>&1 &
  local pid=$!
  sleep 3
  local key; key=$(admin_key --namespace "${ns}f")
  "$kassa" bench --json --key "$key" -n 200 -c 16 >/dev/null
  local payment
  payment=$(curl -s -H "x-api-key: $key" 'http://127.0.0.1:3000/api/payments?limit=1' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  echo "== reads through the gateway (payment $payment)"
  for path in "/api/payments/$payment" /health/live; do
    # Two seconds to open the connections (to Redis too), then the measured ten.
    wrk -t2 -c64 -d2s -H "x-api-key: $key" "http://127.0.0.1:3000$path" >/dev/null
    printf '%s: ' "$path"
    wrk -t2 -c64 -d10s -H "x-api-key: $key" "http://127.0.0.1:3000$path" | awk '/Requests\/sec/ {print $2 " req/s"} /Non-2xx/ {print "  " $0}'
  done
  stop "$pid"
}
want reads && reads

# Lists, lookups and reports with 100,000 rows and more: 100,000 orders and their checkout
# payments (1,000 customers, 100 each), 100,000 payments recorded by hand (1,000 members, 100
# each) and 100,000 members, written straight into the databases of a distributed process; then
# each route for 5 s over one connection (wrk --latency), p50 and p99; a customer's lists with
# their token. The tables are not analysed first: with autovacuum off (as on this machine's
# PostgreSQL) nothing would, and the plans must be fast without statistics.
lists() {
  local db="${ns}h" secret=$KASSA_TOKEN_SECRET
  "$kassa" serve users gateway orders payments members --namespace "$db" >/dev/null 2>&1 &
  local pid=$!
  for port in 3000 5001 5019 5062 5006; do
    until curl -sf -o /dev/null "http://127.0.0.1:$port/health/ready"; do sleep 0.1; done
  done
  local key; key=$(admin_key --namespace "$db")
  local pay="${PG%/*}/${db}_payments" mem="${PG%/*}/${db}_members" ord="${PG%/*}/${db}_orders"
  local customer="00000000-0000-4000-8000-000000000007"
  psql "$ord" -q -c "INSERT INTO orders (id, number, user_id, total_minor, currency, status, created_at, updated_at)
      SELECT ('00000000-0000-7000-8000-' || lpad(i::text, 12, '0'))::uuid, 100001 - i,
             ('00000000-0000-4000-8000-' || lpad((i % 1000)::text, 12, '0'))::uuid, 1000 + i % 5000,
             'USD', (ARRAY['PAID','FAILED','FAILED','CANCELLED'])[1 + i % 4],
             now() - i * interval '1 second', now() - i * interval '1 second'
      FROM generate_series(1, 100000) AS i"
  psql "$pay" -q -c "INSERT INTO payments (id, order_id, order_number, user_id, amount_minor, currency, status, correlation_id, created_at, updated_at)
      SELECT gen_random_uuid(), ('00000000-0000-7000-8000-' || lpad(i::text, 12, '0'))::uuid, 100001 - i,
             ('00000000-0000-4000-8000-' || lpad((i % 1000)::text, 12, '0'))::uuid, 1000 + i % 5000, 'USD',
             (ARRAY['APPROVED','DECLINED','FAILED','REFUNDED'])[1 + i % 4], 'bench',
             now() - i * interval '1 second', now() - i * interval '1 second'
      FROM generate_series(1, 100000) AS i"
  psql "$pay" -q -c "INSERT INTO manual_payments (id, version, created_at, updated_at, member_id, amount_minor, currency, payment_method, status, paid_at)
      SELECT gen_random_uuid(), 1, now() - i * interval '1 second' - interval '1 millisecond',
             now() - i * interval '1 second', ('00000000-0000-4000-8000-' || lpad((i % 1000)::text, 12, '0'))::uuid,
             2000 + i % 3000, 'USD', 'Cash', (ARRAY['Pending','Completed'])[1 + i % 2], NULL
      FROM generate_series(1, 100000) AS i"
  psql "$mem" -q -c "INSERT INTO members (id, version, created_at, updated_at, name, email, phone_number)
      SELECT gen_random_uuid(), 1, now() - i * interval '1 second', now() - i * interval '1 second',
             'Member ' || i, 'member' || i || '@example.com', '+4915112345678'
      FROM generate_series(1, 100000) AS i"
  local payment token
  payment=$(psql "$pay" -Atc "SELECT id FROM payments ORDER BY created_at LIMIT 1")
  # The customer's token, signed as kassa signs them (HS256 over userId, email, role, iat, exp).
  token=$(SECRET="$secret" USER_ID="$customer" python3 -c '
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
claims = {"userId": os.environ["USER_ID"], "email": "customer7@example.com", "role": "customer", "iat": now, "exp": now + 3600}
head = b64(b"{\"alg\":\"HS256\",\"typ\":\"JWT\"}") + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
print(head + "." + b64(hmac.new(os.environ["SECRET"].encode(), head.encode(), hashlib.sha256).digest()))')
  echo "== lists with 100,000 rows a table (p50 / p99 over one connection, 5 s each)"
  for path in "/api/payments?limit=20" "/api/payments?page=5000&limit=20" "/api/payments?page=10000&limit=20" \
    "/api/payments/stats" "/api/payments/$payment" \
    "/api/payments/manual?limit=20" "/api/payments/manual?memberId=00000000-0000-4000-8000-000000000007" \
    "/Payment" "/api/members?limit=20" "/api/members?page=2500&limit=20" "/api/members?email=member77777%40example.com" \
    "/api/orders?limit=20" "/api/orders?page=5000&limit=20" \
    "/orders/GetAllOrders" "/orders/GetAllOrders?page=700" "/orders/GetOrderById/77777" \
    "/payments/GetAllPayments" "/payments/GetAllPayments?page=1000" "/payments/GetPaymentById/$payment" \
    "customer /api/orders?limit=20" "customer /api/orders?page=5&limit=20" "customer /api/payments?limit=20"; do
    local auth=(-H "x-api-key: $key")
    if [[ $path == customer* ]]; then
      path=${path#customer }
      auth=(-H "Authorization: Bearer $token")
      printf 'as a customer, '
    fi
    printf '%s: ' "$path"
    wrk -t1 -c1 -d5s --latency "${auth[@]}" "http://127.0.0.1:3000$path" |
      awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$0} END {print p50 " / " p99 " " bad}'
  done
  stop "$pid"
}
want lists && lists

# Seed 002's reports with 100,000 orders: their events (order.created with two lines of twenty
# products, then paid, failed, cancelled or refunded; about 300,000 events over 90 days) written
# straight into analytics' kept events, the read models made from them by `kassa analytics
# rebuild` (timed), then each report for 5 s over one connection (wrk --latency), p50 and p99.
reports() {
  local db="${ns}p" adb
  adb="${PG%/*}/${db}_analytics"
  # An empty rebuild makes the database and its tables.
  "$kassa" analytics rebuild --namespace "$db" --database-url "$PG" >/dev/null
  psql "$adb" -q -c "
    WITH o AS (
      SELECT i, ('00000000-0000-7000-8000-' || lpad(i::text, 12, '0'))::uuid AS id,
             now() - i * interval '77 seconds' AS t,
             i % 20 AS p1, (i * 7 + 3) % 20 AS p2, 1 + i % 3 AS q1
      FROM generate_series(1, 100000) AS i),
    e AS (
      SELECT o.*, 100 + p1 * 25 AS u1, 100 + p2 * 25 AS u2 FROM o),
    ev AS (
      SELECT t, 0 AS k, 'order.created' AS type, id, json_build_object(
        'orderId', id, 'userId', '00000000-0000-4000-8000-000000000007', 'currency', 'USD',
        'amountMinor', q1 * u1 + u2, 'orderNumber', i, 'lines', json_build_array(
          json_build_object('productId', ('00000000-0000-4000-9000-' || lpad(p1::text, 12, '0')), 'name', 'Product ' || p1,
            'quantity', q1, 'unitPriceMinor', u1, 'isDispensable', false),
          json_build_object('productId', ('00000000-0000-4000-9000-' || lpad(p2::text, 12, '0')), 'name', 'Product ' || p2,
            'quantity', 1, 'unitPriceMinor', u2, 'isDispensable', false))) AS data FROM e
      UNION ALL
      SELECT t + interval '1 second', 1, 'payment.approved', id, json_build_object('paymentId', gen_random_uuid(),
        'orderId', id, 'amountMinor', q1 * u1 + u2, 'currency', 'USD') FROM e WHERE i % 20 NOT IN (0, 1, 2, 3)
      UNION ALL
      SELECT t + interval '2 seconds', 2, 'order.paid', id, json_build_object('orderId', id, 'paymentId', gen_random_uuid())
        FROM e WHERE i % 20 NOT IN (0, 1, 2, 3)
      UNION ALL
      SELECT t + interval '2 seconds', 2, 'order.failed', id, json_build_object('orderId', id, 'reason', 'declined')
        FROM e WHERE i % 20 IN (1, 2, 3)
      UNION ALL
      SELECT t + interval '1 minute', 3, 'order.cancelled', id, json_build_object('orderId', id) FROM e WHERE i % 20 IN (0, 4)
      UNION ALL
      SELECT t + interval '2 minutes', 4, 'payment.refunded', id, json_build_object('paymentId', gen_random_uuid(),
        'orderId', id, 'amountMinor', q1 * u1 + u2, 'currency', 'USD') FROM e WHERE i % 20 = 4)
    -- Ids made as kassa makes them (UUIDv7: the time in milliseconds, then random bits).
    ids AS (
      SELECT ev.*, (overlay(overlay(md5(random()::text) placing
        lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') from 1 for 12) placing '7' from 13 for 1))::uuid AS eid
      FROM ev)
    INSERT INTO kept_events (consumer, event_id, envelope)
    SELECT 'analytics', eid, convert_to(json_build_object('specversion', '1.0', 'id', eid,
      'source', 'bench', 'type', type, 'time', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
      'subject', id, 'datacontenttype', 'application/json', 'dataversion', 1, 'correlationid', 'bench',
      'data', data)::text, 'UTF8')
    FROM ids"
  local events t0 t1
  events=$(psql "$adb" -Atc "SELECT count(*) FROM kept_events")
  t0=$(date +%s%N)
  "$kassa" analytics rebuild --namespace "$db" --database-url "$PG" >/dev/null
  t1=$(date +%s%N)
  echo "== reports with 100,000 orders ($events events; rebuilt from them in $(( (t1 - t0) / 1000000 )) ms; p50 / p99 over one connection, 5 s each)"
  "$kassa" serve analytics users --namespace "$db" --database-url "$PG" >/dev/null 2>&1 &
  local pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:8000/health/ready"; do sleep 0.1; done
  local key; key=$(admin_key --namespace "$db")
  local today week ago r=/api/v1/reports/reports
  today=$(date -u +%F); week=$(date -u -d '6 days ago' +%F); ago=$(date -u -d '89 days ago' +%F)
  for path in "$r/summary" "$r/summary?from=$ago&to=$today" "$r/summary?from=$ago&to=$today&timeZone=Asia/Jakarta" \
    "$r/favorites?from=$ago&to=$today" "$r/favorites?from=$week&to=$today&top=100" \
    "$r/sales-trend" "$r/sales-trend?from=$week&to=$today&interval=hour" \
    "$r/sales-trend?from=$ago&to=$today" "$r/sales-trend?from=$ago&to=$today&interval=week&timeZone=America/New_York" \
    "$r/recent-orders" "$r/recent-orders?page=500&limit=20" "$r/recent-orders?status=CANCELLED&from=$week&to=$today" \
    "/dashboard"; do
    printf '%s: ' "$path"
    wrk -t1 -c1 -d5s --latency -H "x-api-key: $key" "http://127.0.0.1:8000$path" |
      awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$0} END {print p50 " / " p99 " " bad}'
  done
  stop "$pid"
  psql "$PG" -q -c "DROP DATABASE IF EXISTS \"${db}_analytics\" WITH (FORCE)" || true
}
want reports && reports

# The distributed runs leave their databases behind; drop them.
for suffix in a b c d e f g h k q r z; do
  for service in orders payments members analytics users; do
    psql "$PG" -q -c "DROP DATABASE IF EXISTS \"${ns}${suffix}_${service}\" WITH (FORCE)" || true
  done
done
# And their queues, whose consumers were not all running (analytics' holds every event).
if command -v rabbitmqctl >/dev/null 2>&1; then
  rabbitmqctl -q list_queues name 2>/dev/null | grep "^${ns}" | while read -r queue; do
    rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
  done
fi
