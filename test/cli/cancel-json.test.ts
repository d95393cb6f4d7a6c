/**
 * `cancel --from-file --json` over thousands of orders: the report now goes out in chunks
 * (src/cli/json-stream.ts), and must stay the very document it always was, byte for byte:
 * the text of JSON.stringify(report, null, 2), fields in their order, complete on a pipe.
 * A dry run, and failures (nested error objects), included.
 */
import type postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();
const COUNT = 3000;
const SKU = 'JSON-BULK';

/** `count` pending orders of one line of 2 units, as reserve leaves them, refs `${prefix}-1`... */
async function seedPendingOrders(sql: postgres.Sql, prefix: string, count: number): Promise<Map<string, string>> {
  await sql`
    WITH p AS (SELECT product_id, sku, name, price FROM products WHERE sku = ${SKU}),
    o AS (
      INSERT INTO orders (ref, status, payment_status, payment_expires_at, subtotal, total, item_count, strategy, created_by)
      SELECT ${prefix} || '-' || g, 'pending', 'awaiting', now() + interval '1 hour', p.price * 2, p.price * 2, 1, 'guarded', 'seed'
        FROM generate_series(1, ${count}) g, p
      RETURNING order_id
    ), i AS (
      INSERT INTO order_items (order_id, product_id, sku, name, unit_price, quantity, line_total)
      SELECT o.order_id, p.product_id, p.sku, p.name, p.price, 2, p.price * 2 FROM o, p
      RETURNING order_item_id, order_id, product_id, sku, quantity
    ), r AS (
      INSERT INTO stock_reservations (order_id, order_item_id, product_id, sku, location, quantity, expires_at)
      SELECT order_id, order_item_id, product_id, sku, 'default', quantity, now() + interval '1 hour' FROM i
      RETURNING reservation_id, order_id, product_id, sku, location, quantity
    ), m AS (
      INSERT INTO stock_movements (product_id, sku, location, kind, reserved_delta, order_id, reservation_id, actor)
      SELECT product_id, sku, location, 'reserve', quantity, order_id, reservation_id, 'seed' FROM r
    )
    UPDATE stock_levels SET reserved_stock = reserved_stock + ${count * 2}, version = version + 1, updated_at = now()
     WHERE sku = ${SKU} AND location = 'default'`;
  const ids = await sql<{ ref: string; order_id: string }[]>`SELECT ref, order_id FROM orders WHERE ref LIKE ${`${prefix}-%`}`;
  return new Map(ids.map((r) => [r.ref, r.order_id]));
}

type Row = Record<string, unknown>;
type Report = { dry_run: boolean; cancelled: number; already_cancelled: number; failed: number; results: Row[]; error?: { code: string; message: string } };

/** The document is exactly what JSON.stringify(report, null, 2) writes, with its fields in the usual order. */
function expectTheUsualDocument(stdout: string, opts: { failed: boolean }): Report {
  const report = JSON.parse(stdout) as Report;
  expect(stdout === `${JSON.stringify(report, null, 2)}\n`, 'the text is JSON.stringify(report, null, 2) and a newline').toBe(true);
  expect(Object.keys(report)).toEqual(['dry_run', 'cancelled', 'already_cancelled', 'failed', 'results', ...(opts.failed ? ['error'] : [])]);
  return report;
}

beforeAll(async () => {
  const added = await t.cli(['product', 'add', SKU, '--name', 'bulk json', '--stock', String(COUNT * 2)]);
  expect(added.code, added.stderr).toBe(0);
});

describe('cancel --from-file --json over thousands of orders', () => {
  it('--dry-run --json, then --json: complete documents, byte for byte as before', async () => {
    const ids = await seedPendingOrders(t.sql, 'bulk', COUNT);
    const refs = [...ids.keys()].sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1]));
    const input = refs.join('\n');

    const dry = await t.cli(['cancel', '--from-file', '-', '--dry-run', '--json'], { input });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stderr).toBe('');
    expect(dry.stdout.length).toBeGreaterThan(4 * 65_536); // several chunks
    const planned = expectTheUsualDocument(dry.stdout, { failed: false });
    expect(planned).toMatchObject({ dry_run: true, cancelled: 0, already_cancelled: 0, failed: 0 });
    expect(planned.results).toHaveLength(COUNT);
    planned.results.forEach((row, i) => {
      expect(row).toEqual({ order: refs[i], order_id: ids.get(refs[i]), ref: refs[i], previous_status: 'pending', released_units: 2, restocked_units: 0, outcome: 'would_cancel', exit_code: 0 });
      expect(Object.keys(row)).toEqual(['order', 'order_id', 'ref', 'previous_status', 'released_units', 'restocked_units', 'outcome', 'exit_code']);
    });

    // Two that fail: nested error objects in the rows, and the command's own error.
    const real = await t.cli(['cancel', '--from-file', '-', '--json', '--reason', 'bulk json'], { input: `${input}\nno-such-order-1\nno-such-order-2\n` });
    expect(real.code, real.stderr).toBe(4);
    expect(real.stderr).toBe('');
    const done = expectTheUsualDocument(real.stdout, { failed: true });
    expect(done).toMatchObject({ dry_run: false, cancelled: COUNT, already_cancelled: 0, failed: 2, error: { code: 'order_not_found' } });
    expect(done.results).toHaveLength(COUNT + 2);
    expect(done.results.slice(0, COUNT).every((row) => row.outcome === 'cancelled' && row.released_units === 2)).toBe(true);
    expect(done.results.slice(COUNT)).toEqual([
      { order: 'no-such-order-1', outcome: 'error', exit_code: 4, error: { code: 'order_not_found', message: expect.any(String) } },
      { order: 'no-such-order-2', outcome: 'error', exit_code: 4, error: { code: 'order_not_found', message: expect.any(String) } },
    ]);

    const [{ reserved_stock }] = await t.sql<{ reserved_stock: number }[]>`SELECT reserved_stock FROM stock_levels WHERE sku = ${SKU} AND location = 'default'`;
    expect(reserved_stock).toBe(0);
  });

  it('a small report is still one write of the same document', async () => {
    const ids = await seedPendingOrders(t.sql, 'small', 2);
    const res = await t.cli(['cancel', 'small-1', 'small-2', '--json']);
    expect(res.code, res.stderr).toBe(0);
    const report = expectTheUsualDocument(res.stdout, { failed: false });
    expect(report.results.map((r) => r.order_id)).toEqual([ids.get('small-1'), ids.get('small-2')]);
  });
});
