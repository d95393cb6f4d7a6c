#!/usr/bin/env bash
# The two limits loadtest is judged against, measured with pgbench on the server itself:
#   bare row limit   the guarded UPDATE alone            (bare-update.sql)
#   order-write limit every row a reserve writes, as one (order-write.sql)
# Usage: DATABASE_URL=postgres://… test/bench/pgbench/run.sh [SKUS] [CLIENTS] [SECONDS]
# It creates a scratch database next to DATABASE_URL's, migrates it with stockctl, fills
# SKUS products with ample stock (one stock level each, at the default location), runs both
# scripts (-M prepared, durable commits), prints one JSON line per limit, and drops the
# scratch database. LIMITS="…" picks other scripts
# of this folder, e.g. LIMITS="order-write order-write-listening order-write-notify" for what
# live stock costs a writer when nobody listens (listening) and when someone does (notify).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/../../.."
skus="${1:-1}"
clients="${2:-32}"
seconds="${3:-10}"
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL server you may create a database on}"
scratch="stockctl_pgbench_$$"
admin="$DATABASE_URL"
url="$(node -e 'const u = new URL(process.argv[1]); u.pathname = "/" + process.argv[2]; console.log(u.toString())' "$DATABASE_URL" "$scratch")"
psql -q "$admin" -c "CREATE DATABASE $scratch" >/dev/null
trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null' EXIT
node "$root/bin/stockctl" migrate --database-url "$url" >/dev/null
# Each SKU is a product with one stock level, at the default location, as stockctl has them.
psql -q "$url" -c "INSERT INTO products (sku, name, price)
  SELECT 'PGBENCH-' || i, 'pgbench ' || i, 100 FROM generate_series(1, $skus) AS i" >/dev/null
psql -q "$url" -c "INSERT INTO stock_levels (sku, location, product_id, stock_quantity)
  SELECT sku, 'default', product_id, 100000000 FROM products WHERE sku LIKE 'PGBENCH-%';
  INSERT INTO stock_movements (product_id, sku, location, kind, stock_delta, actor)
  SELECT product_id, sku, location, 'initial', stock_quantity, 'pgbench' FROM stock_levels" >/dev/null
for limit in ${LIMITS:-bare-update order-write}; do
  psql -q "$url" -c "VACUUM ANALYZE" >/dev/null
  out="$(pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -D skus="$skus" -f "$here/$limit.sql" "$url" 2>&1)"
  tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)"
  lat="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out" | head -1)"
  printf '{"limit":"%s","skus":%s,"clients":%s,"seconds":%s,"tps":%s,"latency_avg_ms":%s}\n' \
    "$limit" "$skus" "$clients" "$seconds" "${tps:-null}" "${lat:-null}"
done
