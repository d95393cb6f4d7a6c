#!/usr/bin/env bash
# What live stock costs the write path, and what serve does with listeners, in one run:
#   1. the pgbench limits (run.sh): bare UPDATE, order write, order write + NOTIFY, over
#      1000 rows and one hot row (and, over 1000 rows, the order write asking
#      the count of listeners with nobody listening); the bare UPDATE over 100 rows;
#   2. stockctl loadtest, hot SKU (6000 buyers for 4000 units) and 1000 SKUs (10,000 buyers),
#      guarded and batched, each with nobody listening and then while a listener is
#      registered (`stock --watch` running), twice;
#   3. stockctl serve (batched, --pool 16), POST /orders with autocannon (64 connections,
#      10 s): the hot SKU and 100 SKUs, each without, then with 100 SSE clients of every SKU,
#      then with 100 clients of one SKU each (test/bench/sse-clients.mjs), which also report
#      how late each change reached them.
# Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres test/bench/live-stock.sh
# STEPS="limits loadtest serve" (the default) picks the steps to run.
# It makes a scratch database next to DATABASE_URL's and drops it; every result is one
# JSON line on stdout, and each step's load average goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/../.."
stockctl() { node "$root/bin/stockctl" "$@"; }
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL server you may create databases on}"
admin="$DATABASE_URL"
scratch="stockctl_live_bench_$$"
url="$(node -e 'const u = new URL(process.argv[1]); u.pathname = "/" + process.argv[2]; console.log(u.toString())' "$DATABASE_URL" "$scratch")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null
}
trap cleanup EXIT
load() { echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($1)" >&2; }

steps=" ${STEPS:-limits loadtest serve} "
step() { [[ "$steps" == *" $1 "* ]]; }

if step limits; then
  load "pgbench, 1000 rows"
  LIMITS="bare-update order-write order-write-listening order-write-notify" DATABASE_URL="$admin" "$here/pgbench/run.sh" 1000 32 10
  load "pgbench, one hot row"
  LIMITS="bare-update order-write order-write-notify" DATABASE_URL="$admin" "$here/pgbench/run.sh" 1 32 10
  load "pgbench, 100 rows"
  LIMITS="bare-update" DATABASE_URL="$admin" "$here/pgbench/run.sh" 100 32 10
fi

psql -q "$admin" -c "CREATE DATABASE $scratch" >/dev/null
export DATABASE_URL="$url"
stockctl migrate >/dev/null
summary='const d = JSON.parse(require("fs").readFileSync(0, "utf8")); for (const s of d.strategies) console.log(JSON.stringify({ what: "loadtest " + process.argv[1], strategy: s.strategy, rps: s.throughput_rps, p50_ms: s.latency_ms.p50, p99_ms: s.latency_ms.p99, own_bare_update_rps: d.baseline?.throughput_rps, ok: d.ok }))'
# Each case twice, nobody listening and a listener registered (`stock --watch`) in turn,
# so that the two see the same minutes of this shared machine.
with_listener() {
  node "$root/bin/stockctl" stock --watch --json >/dev/null &
  local watch_pid=$!
  until psql -qAt "$url" -c "SELECT 1 FROM stock_listeners" | grep -q 1; do sleep 0.2; done
  "$@"
  kill -INT "$watch_pid"
  wait "$watch_pid" || true
}
hot() { stockctl loadtest --buyers 6000 --stock 4000 --concurrency 32 --strategy "$1" --json | node -e "$summary" "hot, $2"; }
spread() { stockctl loadtest --buyers 10000 --stock 100 --skus 1000 --concurrency 32 --strategy "$1" --json | node -e "$summary" "1000 SKUs, $2"; }
if step loadtest; then
  for round in 1 2; do
    for strategy in guarded batched; do
      for shape in hot spread; do
        load "loadtest $shape $strategy, round $round"
        "$shape" "$strategy" "nobody listening"
        with_listener "$shape" "$strategy" "a listener registered"
      done
    done
  done
fi
step serve || exit 0

# serve: a hot SKU, 100 SKUs, a probe SKU for the SSE clients' latency.
stockctl product add HOT --name Hot --stock 1000000 --location default >/dev/null
stockctl product add PROBE --name Probe --stock 1000000 --location default >/dev/null
psql -q "$url" <<'SQL' >/dev/null
BEGIN;
INSERT INTO products (sku, name, price) SELECT 'S' || i, 'spread ' || i, 100 FROM generate_series(1, 100) i;
INSERT INTO stock_levels (sku, location, product_id, stock_quantity)
SELECT sku, 'default', product_id, 1000000 FROM products WHERE sku ~ '^S[0-9]+$';
INSERT INTO stock_movements (product_id, sku, location, kind, stock_delta, reserved_delta, actor)
SELECT product_id, sku, location, 'initial', stock_quantity, 0, 'bench' FROM stock_levels WHERE sku ~ '^S[0-9]+$';
COMMIT;
SQL
token="$(stockctl token create "bench-$$" --role admin --json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).token)')"
port=$((18000 + RANDOM % 100))
node "$root/bin/stockctl" serve --port "$port" --pool 16 2>/dev/null >/dev/null &
serve_pid=$!
pids+=("$serve_pid")
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
  kill -0 "$serve_pid" 2>/dev/null || { echo "stockctl serve did not start on port $port" >&2; exit 1; }
  sleep 0.2
done
api="http://127.0.0.1:$port"
with_sse_clients() {
  local out err pid each="$1"
  shift
  out="$(mktemp)"
  err="$(mktemp)"
  node "$here/sse-clients.mjs" "$api" "$token" PROBE 100 100 $each >"$out" 2>"$err" &
  pid=$!
  until grep -q 'streams ready' "$err"; do sleep 0.2; done # every stream has had its snapshot
  "$@"
  kill -INT "$pid"
  wait "$pid" || true
  cat "$out"
  rm -f "$out" "$err"
}
orders() { node "$here/serve-orders.mjs" "$api" "$token" "$1" "$2" 64 10; }
# Each case without, then with 100 SSE clients of every SKU, then with 100 of one SKU each
# (S1..S100, a product page), so that the three see the same minutes.
for case in "HOT 1" "S 100"; do
  load "serve $case, no SSE client"
  orders $case
  load "serve $case, 100 SSE clients of every SKU"
  with_sse_clients "" orders $case
  load "serve $case, 100 SSE clients of one SKU each"
  with_sse_clients S:100 orders $case
done
stockctl verify --json | node -e 'const d = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(JSON.stringify({ what: "verify", ok: d.ok }))'
