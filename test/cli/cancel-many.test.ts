/**
 * Support's bulk cancel: `cancel --from-file` over thousands of orders, in set-based
 * batches of 1000 per transaction, with the same per-order report and exit code as one
 * order at a time; and a bulk cancel racing the sweep (and another bulk cancel) over the
 * same expired orders, where every unit must be released exactly once.
 *
 * The orders are made in SQL exactly as reserve leaves them (order, line, reservation,
 * ledger row, counters), not by thousands of CLI calls.
 */
import type postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { payOrder } from '../../src/engine/orders.js';
import { runCliTogether } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

/** `count` pending orders of one line of `quantity` units of `sku`, refs `${prefix}-1`... */
async function seedPendingOrders(
  sql: postgres.Sql,
  o: { sku: string; prefix: string; count: number; quantity: number; expiresIn: string },
) {
  await sql`
    WITH p AS (SELECT product_id, sku, name, price FROM products WHERE sku = ${o.sku}),
    o AS (
      INSERT INTO orders (ref, status, payment_status, payment_expires_at, subtotal, total, item_count, strategy, created_by)
      SELECT ${o.prefix} || '-' || g, 'pending', 'awaiting', now() + ${o.expiresIn}::interval,
             p.price * ${o.quantity}, p.price * ${o.quantity}, 1, 'guarded', 'seed'
        FROM generate_series(1, ${o.count}) g, p
      RETURNING order_id, payment_expires_at
    ), i AS (
      INSERT INTO order_items (order_id, product_id, sku, name, unit_price, quantity, line_total)
      SELECT o.order_id, p.product_id, p.sku, p.name, p.price, ${o.quantity}, p.price * ${o.quantity} FROM o, p
      RETURNING order_item_id, order_id, product_id, sku, quantity
    ), r AS (
      INSERT INTO stock_reservations (order_id, order_item_id, product_id, sku, location, quantity, expires_at)
      SELECT i.order_id, i.order_item_id, i.product_id, i.sku, 'default', i.quantity, o.payment_expires_at FROM i JOIN o USING (order_id)
      RETURNING reservation_id, order_id, product_id, sku, location, quantity
    ), m AS (
      INSERT INTO stock_movements (product_id, sku, location, kind, reserved_delta, order_id, reservation_id, actor)
      SELECT product_id, sku, location, 'reserve', quantity, order_id, reservation_id, 'seed' FROM r
    )
    UPDATE stock_levels SET reserved_stock = reserved_stock + ${o.count * o.quantity}, version = version + 1, updated_at = now()
     WHERE sku = ${o.sku} AND location = 'default'`;
  const ids = await t.sql<{ ref: string; order_id: string }[]>`
    SELECT ref, order_id FROM orders WHERE ref LIKE ${`${o.prefix}-%`}`;
  return new Map(ids.map((r) => [r.ref, r.order_id]));
}

async function stockRow(sku: string) {
  const [row] = await t.sql<{ stock_quantity: number; reserved_stock: number }[]>`
    SELECT stock_quantity, reserved_stock FROM stock_items WHERE sku = ${sku}`;
  return row;
}

/** Per reservation of these orders: how many release/expire ledger rows it has. */
async function releasesPerReservation(prefix: string) {
  return t.sql<{ releases: number; n: number }[]>`
    SELECT releases, count(*)::int AS n FROM (
      SELECT r.reservation_id, count(m.movement_id) FILTER (WHERE m.kind IN ('release', 'expire'))::int AS releases
        FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id
        LEFT JOIN stock_movements m ON m.reservation_id = r.reservation_id
       WHERE o.ref LIKE ${`${prefix}-%`}
       GROUP BY r.reservation_id) x
     GROUP BY releases ORDER BY releases`;
}

async function verifyClean() {
  const res = await t.cli(['verify']);
  expect(res, res.stdout + res.stderr).toMatchObject({ code: 0, stderr: '' });
}

interface CancelDoc {
  dry_run: boolean;
  cancelled: number;
  already_cancelled: number;
  failed: number;
  results: Record<string, unknown>[];
}

beforeAll(async () => {
  for (const [sku, stock] of [['BULK-A', 5000], ['BULK-B', 5000], ['RACE', 5000]] as const) {
    const res = await t.cli(['product', 'add', sku, '--name', sku, '--price', '2.50', '--stock', String(stock)]);
    expect(res.code, res.stderr).toBe(0);
  }
});

describe('cancel --from-file of thousands of orders', () => {
  it('2,427 lines across three batches: each order reported exactly as alone, exit 5 (the worst), stock and ledger exact', async () => {
    const a = await seedPendingOrders(t.sql, { sku: 'BULK-A', prefix: 'bulk-a', count: 1200, quantity: 2, expiresIn: '1 hour' });
    const b = await seedPendingOrders(t.sql, { sku: 'BULK-B', prefix: 'bulk-b', count: 1200, quantity: 1, expiresIn: '1 hour' });
    const id = (ref: string) => (a.get(ref) ?? b.get(ref))!;
    // Before the bulk run: 30 already cancelled by hand, 20 paid.
    const alreadyCancelled = Array.from({ length: 30 }, (_, i) => `bulk-a-${i * 40 + 1}`);
    const paid = Array.from({ length: 20 }, (_, i) => `bulk-b-${i * 60 + 2}`);
    const first = await t.cli(['cancel', ...alreadyCancelled, '--reason', 'earlier'], { env: { STOCKCTL_ACTOR: 'early' } });
    expect(first.code, first.stderr).toBe(0);
    for (const ref of paid) await payOrder(t.db, { order: ref, actor: 'shop' });
    expect(await stockRow('BULK-A')).toEqual({ stock_quantity: 5000, reserved_stock: 2400 - 60 });
    expect(await stockRow('BULK-B')).toEqual({ stock_quantity: 5000 - 20, reserved_stock: 1200 - 20 });

    // The file: every bulk order by ref (A and B interleaved), a missing ref after every
    // 48th, one order also named by its id (reported the second time as already cancelled),
    // comments and blank lines.
    const lines: string[] = ['# stuck orders', ''];
    for (let i = 1; i <= 1200; i++) {
      lines.push(`bulk-a-${i}`, `bulk-b-${i}   # from the queue`);
      if (i % 48 === 0) lines.push(`missing-${i}`, '');
    }
    const named = new Map([[id('bulk-a-7'), 'bulk-a-7'], [id('bulk-b-9'), 'bulk-b-9']]);
    lines.splice(40, 0, id('bulk-a-7')); // in the same batch as its ref
    lines.splice(1500, 0, id('bulk-b-9')); // in a later batch
    const keys = lines.map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
    expect(keys.length).toBe(2427);

    const expected = keys.map((key, n): Record<string, unknown> => {
      const ref = key.startsWith('bulk-') ? key : named.get(key);
      if (!ref) {
        return { order: key, outcome: 'error', exit_code: 4, error: { code: 'order_not_found', message: `No order has id or ref "${key}".` } };
      }
      const orderId = id(ref);
      if (paid.includes(ref)) {
        const message = `Order ${orderId} is paid; add --restock to cancel it and put its units back on hand.`;
        return { order: key, outcome: 'error', exit_code: 5, error: { code: 'order_paid', message } };
      }
      const base = { order: key, order_id: orderId, ref, released_units: 0, restocked_units: 0, exit_code: 0 };
      if (alreadyCancelled.includes(ref) || n > keys.indexOf(ref)) {
        return { ...base, previous_status: 'cancelled', outcome: 'already_cancelled' };
      }
      return { ...base, previous_status: 'pending', outcome: 'cancelled', released_units: ref.startsWith('bulk-a') ? 2 : 1 };
    });
    const toCancel = 2400 - 30 - 20;
    const input = `${lines.join('\n')}\n`;

    // --dry-run: the same report with would_cancel, nothing changed.
    const dry = await t.cliJson<CancelDoc>(['cancel', '--from-file', '-', '--dry-run'], { input });
    expect(dry).toMatchObject({ code: 5, stderr: '' });
    expect(dry.json.results).toEqual(
      expected.map((e, n) =>
        e.outcome === 'cancelled'
          ? { ...e, outcome: 'would_cancel' }
          : named.has(keys[n])
            ? { ...expected[keys.indexOf(named.get(keys[n])!)], order: keys[n], outcome: 'would_cancel' }
            : e,
      ),
    );
    expect(await stockRow('BULK-A')).toEqual({ stock_quantity: 5000, reserved_stock: 2340 });

    const res = await t.cliJson<CancelDoc>(['cancel', '--from-file', '-', '--reason', 'bulk'], { input, env: { STOCKCTL_ACTOR: 'support' } });
    expect(res.code).toBe(5);
    expect(res.stderr).toBe('');
    expect(res.json).toEqual({
      dry_run: false,
      cancelled: toCancel,
      already_cancelled: 30 + 2,
      failed: 25 + 20,
      results: expected,
      error: { code: 'order_paid', message: expect.stringMatching(/^45 of \d+ orders were not cancelled \(see results\); \S+: Order .* is paid/) },
    });

    // Counters: every reserved unit back, the paid ones still sold.
    expect(await stockRow('BULK-A')).toEqual({ stock_quantity: 5000, reserved_stock: 0 });
    expect(await stockRow('BULK-B')).toEqual({ stock_quantity: 4980, reserved_stock: 0 });
    const orders = await t.sql`
      SELECT status, payment_status, cancel_reason, cancelled_by, count(*)::int AS n FROM orders
       WHERE ref LIKE 'bulk-%' GROUP BY 1, 2, 3, 4 ORDER BY n`;
    expect(orders).toEqual([
      { status: 'paid', payment_status: 'paid', cancel_reason: null, cancelled_by: null, n: 20 },
      { status: 'cancelled', payment_status: 'void', cancel_reason: 'earlier', cancelled_by: 'early', n: 30 },
      { status: 'cancelled', payment_status: 'void', cancel_reason: 'bulk', cancelled_by: 'support', n: toCancel },
    ]);
    // Ledger: one release row per released reservation, by the actor that released it.
    const ledger = await t.sql`
      SELECT kind, actor, reason, count(*)::int AS n, sum(reserved_delta)::int AS reserved, sum(stock_delta)::int AS stock
        FROM stock_movements WHERE sku LIKE 'BULK-%' AND kind <> 'initial' GROUP BY 1, 2, 3 ORDER BY n`;
    expect(ledger).toEqual([
      { kind: 'sale', actor: 'shop', reason: null, n: 20, reserved: -20, stock: -20 },
      { kind: 'release', actor: 'early', reason: 'earlier', n: 30, reserved: -60, stock: 0 },
      { kind: 'release', actor: 'support', reason: 'bulk', n: toCancel, reserved: -(1170 * 2 + 1180), stock: 0 },
      { kind: 'reserve', actor: 'seed', reason: null, n: 2400, reserved: 1200 * 2 + 1200, stock: 0 },
    ]);
    expect(await releasesPerReservation('bulk')).toEqual([
      { releases: 0, n: 20 },
      { releases: 1, n: 2380 },
    ]);
    // Set-based: one transaction (so one cancelled_at, the transaction's now()) per batch of 1000 lines.
    const [batches] = await t.sql`
      SELECT count(DISTINCT cancelled_at)::int AS n FROM orders WHERE ref LIKE 'bulk-%' AND cancelled_by = 'support'`;
    expect(batches.n).toBe(3);
    await verifyClean();

    // The paid ones, with --restock, from a file of refs: their sold units back on hand.
    const restock = await t.cli(['cancel', '--from-file', '-', '--restock', '--reason', 'refund'], { input: paid.join('\n') });
    expect(restock.code).toBe(0);
    expect(restock.stderr).toBe('');
    expect(restock.stdout).toBe(paid.map((ref) => `cancelled  ${ref}: 1 sold unit(s) back on hand\n`).join(''));
    expect(await stockRow('BULK-B')).toEqual({ stock_quantity: 5000, reserved_stock: 0 });
    await verifyClean();
  });
});

describe('cancel --from-file racing the sweep', () => {
  it('1,500 expired orders, two bulk cancels (opposite orders) and a sweep: each unit released exactly once', async () => {
    const ids = await seedPendingOrders(t.sql, { sku: 'RACE', prefix: 'race', count: 1500, quantity: 3, expiresIn: '-1 minute' });
    const refs = [...ids.keys()].sort();
    const run = (args: string[], input: string, actor: string) => ({
      args: [...args, '--json'],
      opts: { databaseUrl: t.url, input, env: { STOCKCTL_ACTOR: actor } },
    });
    const [c1, c2, sweep] = await runCliTogether([
      run(['cancel', '--from-file', '-', '--reason', 'race'], refs.join('\n'), 'cancel-1'),
      run(['cancel', '--from-file', '-', '--reason', 'race'], [...refs].reverse().join('\n'), 'cancel-2'),
      run(['sweep', '--batch-size', '100'], '', 'cron'),
    ]);
    for (const r of [c1, c2, sweep]) expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    const docs = [JSON.parse(c1.stdout) as CancelDoc, JSON.parse(c2.stdout) as CancelDoc];
    const swept = JSON.parse(sweep.stdout) as { expired_orders: number; released_units: number };

    // Every order ended cancelled exactly once: by one of the cancels (void) or by the sweep (expired).
    const final = await t.sql<{ ref: string; payment_status: string; cancelled_by: string }[]>`
      SELECT ref, payment_status, cancelled_by FROM orders WHERE ref LIKE 'race-%'`;
    expect(final.length).toBe(1500);
    const by = new Map(final.map((o) => [o.ref, o]));
    for (const [n, doc] of docs.entries()) {
      expect(doc.results.length).toBe(1500);
      for (const r of doc.results) {
        const o = by.get(r.order as string)!;
        if (r.outcome === 'cancelled') {
          expect(o).toMatchObject({ payment_status: 'void', cancelled_by: `cancel-${n + 1}` });
          expect(r.released_units).toBe(3);
        } else {
          expect(r).toMatchObject({ outcome: 'already_cancelled', previous_status: 'cancelled', released_units: 0, exit_code: 0 });
          expect(o.cancelled_by).not.toBe(`cancel-${n + 1}`);
        }
      }
    }
    const wonBy = (actor: string) => final.filter((o) => o.cancelled_by === actor).length;
    expect(docs[0].cancelled).toBe(wonBy('cancel-1'));
    expect(docs[1].cancelled).toBe(wonBy('cancel-2'));
    expect(swept.expired_orders).toBe(wonBy('cron'));
    expect(final.filter((o) => o.cancelled_by === 'cron').every((o) => o.payment_status === 'expired')).toBe(true);
    expect(wonBy('cancel-1') + wonBy('cancel-2') + wonBy('cron')).toBe(1500);
    expect(docs[0].cancelled * 3 + docs[1].cancelled * 3 + swept.released_units).toBe(4500);

    expect(await stockRow('RACE')).toEqual({ stock_quantity: 5000, reserved_stock: 0 });
    expect(await releasesPerReservation('race')).toEqual([{ releases: 1, n: 1500 }]);
    await verifyClean();
  });
});
