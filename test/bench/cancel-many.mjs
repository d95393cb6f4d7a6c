#!/usr/bin/env node
// Wall time of `stockctl cancel --from-file -` over N pending orders. The orders are
// made in one SQL statement (order, line, reservation, ledger row, the level's counters at
// the default location, exactly
// as reserve leaves them), not by N CLI calls; their refs are then piped to cancel,
// and `verify` must be clean afterwards. Where GNU time is installed (/usr/bin/time), the
// cancel's peak memory (max RSS) is reported too.
// Usage: DATABASE_URL=postgres://... node test/bench/cancel-many.mjs [orders] [--dry-run]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = `${root}bin/stockctl`;
const count = Number(process.argv[2] ?? 20_000);
const dryRun = process.argv.includes('--dry-run');
if (!process.env.DATABASE_URL) {
  console.error('Set DATABASE_URL (the embedded server works too: DATABASE_URL=$(npx stockctl db url)).');
  process.exit(2);
}
const prefix = `bench-cancel-${process.pid}`;
const sku = `BENCH-CANCEL-${process.pid}`;

const sql = postgres(process.env.DATABASE_URL, { max: 1, onnotice: () => {} });
try {
  const add = spawnSync(process.execPath, [bin, 'product', 'add', sku, '--name', 'bench cancel', '--stock', String(count * 2), '--location', 'default'], { encoding: 'utf8' });
  if (add.status !== 0) throw new Error(`product add exited ${add.status}: ${add.stderr}`);
  await seedPendingOrders(sql, { sku, prefix, count, quantity: 2 });

  const refs = Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`).join('\n');
  const cancel = [process.execPath, bin, 'cancel', '--from-file', '-', ...(dryRun ? ['--dry-run'] : []), '--json'];
  const timeDir = existsSync('/usr/bin/time') ? mkdtempSync(join(tmpdir(), 'bench-cancel-')) : undefined;
  const timed = timeDir ? ['/usr/bin/time', '-f', '%M', '-o', join(timeDir, 'rss'), ...cancel] : cancel;
  const t0 = process.hrtime.bigint();
  const run = spawnSync(timed[0], timed.slice(1), { input: refs, encoding: 'utf8', maxBuffer: 1 << 30 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (run.status !== 0) throw new Error(`cancel exited ${run.status}: ${run.stderr}`);
  const document = JSON.parse(run.stdout);
  if (document.results.length !== count) throw new Error(`cancel --json reported ${document.results.length} of ${count} orders`);
  let peak = '';
  if (timeDir) {
    peak = `; peak RSS ${Math.round(Number(readFileSync(join(timeDir, 'rss'), 'utf8').trim()) / 1024)} MiB`;
    rmSync(timeDir, { recursive: true, force: true });
  }
  const [row] = await sql`SELECT reserved_stock FROM stock_levels WHERE sku = ${sku} AND location = 'default'`;
  const verify = spawnSync(process.execPath, [bin, 'verify'], { encoding: 'utf8' });
  console.log(
    `cancel --from-file - ${dryRun ? '--dry-run ' : ''}of ${count} pending orders: ${seconds.toFixed(1)} s ` +
      `(${Math.round(count / seconds)} orders/s), ${(run.stdout.length / 1e6).toFixed(1)} MB of JSON${peak}; ` +
      `reserved left ${row.reserved_stock}; verify exit ${verify.status}`,
  );
} finally {
  await sql.end({ timeout: 5 });
}

/** N pending orders of one line each, as reserve makes them, in one statement. */
async function seedPendingOrders(sql, { sku, prefix, count, quantity }) {
  await sql`
    WITH p AS (SELECT product_id, sku, name, price, 'default'::text AS location FROM products WHERE sku = ${sku}),
    o AS (
      INSERT INTO orders (ref, status, payment_status, payment_expires_at, subtotal, total, item_count, strategy, created_by)
      SELECT ${prefix} || '-' || g, 'pending', 'awaiting', now() + interval '1 hour', p.price * ${quantity}, p.price * ${quantity}, 1, 'guarded', 'bench'
        FROM generate_series(1, ${count}) g, p
      RETURNING order_id
    ), i AS (
      INSERT INTO order_items (order_id, product_id, sku, name, unit_price, quantity, line_total)
      SELECT o.order_id, p.product_id, p.sku, p.name, p.price, ${quantity}, p.price * ${quantity} FROM o, p
      RETURNING order_item_id, order_id, product_id, sku, quantity
    ), r AS (
      INSERT INTO stock_reservations (order_id, order_item_id, product_id, sku, location, quantity, expires_at)
      SELECT i.order_id, i.order_item_id, i.product_id, i.sku, p.location, i.quantity, now() + interval '1 hour' FROM i, p
      RETURNING reservation_id, order_id, product_id, sku, location, quantity
    ), m AS (
      INSERT INTO stock_movements (product_id, sku, location, kind, reserved_delta, order_id, reservation_id, actor)
      SELECT product_id, sku, location, 'reserve', quantity, order_id, reservation_id, 'bench' FROM r
    )
    UPDATE stock_levels SET reserved_stock = reserved_stock + ${count * quantity}, version = version + 1, updated_at = now()
     WHERE sku = ${sku} AND location = 'default'`;
}
