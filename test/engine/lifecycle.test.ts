/**
 * Idempotent repeats (reserve --ref, pay, cancel), refusals by state, restock, and
 * extend. Exact ledger counts: a repeat changes nothing.
 */
import type postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { cancelOrder, extendOrder, payOrder, reserveOrder, type ReserveResult } from '../../src/engine/orders.js';
import { expireDueOrders } from '../../src/engine/sweep.js';
import { RefusedError } from '../../src/errors.js';
import { useTestDatabase } from '../helpers/db.js';
import {
  ACTOR,
  SETTINGS,
  addProducts,
  attempt,
  codeOf,
  expireNow,
  invariantViolations,
  stockOf,
  tally,
  unexpected,
  withConnectionBudget,
  withPools,
} from './_support.js';

const t = useTestDatabase();

async function ledgerCount(sql: postgres.Sql): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM stock_movements`;
  return n;
}

async function expectRefused(p: Promise<unknown>, code?: string): Promise<RefusedError> {
  const out = await attempt(() => p);
  expect(out.ok, 'expected a refusal').toBe(false);
  const err = (out as { error: unknown }).error;
  expect(err).toBeInstanceOf(RefusedError);
  expect((err as RefusedError).exitCode).toBe(5);
  if (code) expect((err as RefusedError).code).toBe(code);
  return err as RefusedError;
}

const reserve = (sku: string, quantity: number, extra: { ref?: string; ttlSeconds?: number } = {}) =>
  reserveOrder(t.db, { lines: [{ sku, quantity }], actor: ACTOR, ...extra }, SETTINGS);

describe('reserve --ref is idempotent', () => {
  it('the same ref twice: same order, replay, nothing more reserved', async () => {
    await addProducts(t.db, { 'REF-A': 10, 'REF-B': 10 });
    const lines = [{ sku: 'REF-A', quantity: 2 }, { sku: 'REF-B', quantity: 1 }];
    const first = await reserveOrder(t.db, { lines, ref: 'ref-1', actor: ACTOR }, SETTINGS);
    expect(first.replay).toBe(false);
    const ledger = await ledgerCount(t.sql);
    const stockA = await stockOf(t.sql, 'REF-A');

    // Same items, lines in another order: still the same order.
    const again = await reserveOrder(t.db, { lines: [...lines].reverse(), ref: 'ref-1', actor: ACTOR }, SETTINGS);
    expect(again).toMatchObject({ order_id: first.order_id, replay: true, status: 'pending' });
    expect(await ledgerCount(t.sql)).toBe(ledger);
    expect(await stockOf(t.sql, 'REF-A')).toEqual(stockA);
    expect(await stockOf(t.sql, 'REF-B')).toMatchObject({ reserved_stock: 1 });

    // The ref names the order everywhere an order is named.
    const paid = await payOrder(t.db, { order: 'ref-1', actor: ACTOR });
    expect(paid.order_id).toBe(first.order_id);
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('the same ref with other items is refused (exit 5), engine and CLI', async () => {
    await addProducts(t.db, { 'REF-C': 10 });
    const first = await reserve('REF-C', 1, { ref: 'ref-2' });
    const ledger = await ledgerCount(t.sql);
    const err = await expectRefused(reserve('REF-C', 2, { ref: 'ref-2' }), 'ref_conflict');
    expect(err.message).toContain(first.order_id);
    const cli = await t.cliJson<{ error: { code: string } }>(['reserve', 'REF-C:3', '--ref', 'ref-2']);
    expect(cli.code).toBe(5);
    expect(cli.json.error.code).toBe('ref_conflict');
    expect(await ledgerCount(t.sql)).toBe(ledger);
    expect(await stockOf(t.sql, 'REF-C')).toMatchObject({ reserved_stock: 1 });
  });

  it('10 concurrent reserves with one ref (separate connections): one order, everyone gets its id', async () => {
    await addProducts(t.db, { 'REF-D': 10 });
    const outcomes = await withConnectionBudget('shared', () =>
      withPools(t.url, 10, (dbs) =>
        Promise.all(dbs.map((db) => attempt(() => reserveOrder(db, { lines: [{ sku: 'REF-D', quantity: 3 }], ref: 'ref-race', actor: ACTOR }, SETTINGS)))),
      ),
    );
    expect(unexpected(outcomes, [])).toEqual([]);
    const results = outcomes.map((o) => (o as { value: ReserveResult }).value);
    expect(new Set(results.map((r) => r.order_id)).size).toBe(1);
    expect(results.filter((r) => !r.replay)).toHaveLength(1);
    const [{ n }] = await t.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM orders WHERE ref = 'ref-race'`;
    expect(n).toBe(1);
    expect(await stockOf(t.sql, 'REF-D')).toMatchObject({ stock_quantity: 10, reserved_stock: 3 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('10 concurrent reserves with one ref, other items among them: one order, the odd ones refused', async () => {
    await addProducts(t.db, { 'REF-E': 10 });
    const outcomes = await withConnectionBudget('shared', () =>
      withPools(t.url, 10, (dbs) =>
        Promise.all(
          dbs.map((db, i) =>
            attempt(() => reserveOrder(db, { lines: [{ sku: 'REF-E', quantity: i % 2 === 0 ? 1 : 2 }], ref: 'ref-mixed', actor: ACTOR }, SETTINGS)),
          ),
        ),
      ),
    );
    expect(unexpected(outcomes, ['ref_conflict'])).toEqual([]);
    const winners = outcomes.filter((o) => o.ok).map((o) => (o as { value: ReserveResult }).value);
    expect(new Set(winners.map((w) => w.order_id)).size).toBe(1);
    expect(winners.filter((w) => !w.replay)).toHaveLength(1);
    expect(tally(outcomes)).toEqual({ ok: 5, ref_conflict: 5 });
    const [order] = await t.sql<{ quantity: number }[]>`
      SELECT i.quantity FROM orders o JOIN order_items i ON i.order_id = o.order_id WHERE o.ref = 'ref-mixed'`;
    expect(await stockOf(t.sql, 'REF-E')).toMatchObject({ reserved_stock: order.quantity });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });
});

describe('pay and cancel are idempotent; refusals by state', () => {
  it('pay twice: the second is a replay and changes nothing', async () => {
    await addProducts(t.db, { 'PAY-A': 5 });
    const order = await reserve('PAY-A', 2);
    const first = await payOrder(t.db, { order: order.order_id, paymentRef: 'psp-1', actor: ACTOR });
    expect(first).toMatchObject({ status: 'paid', replay: false, late: false, units_sold: 2, payment_ref: 'psp-1' });
    const ledger = await ledgerCount(t.sql);
    const stock = await stockOf(t.sql, 'PAY-A');
    expect(stock).toMatchObject({ stock_quantity: 3, reserved_stock: 0 });
    const second = await payOrder(t.db, { order: order.order_id, actor: ACTOR });
    expect(second).toMatchObject({ order_id: order.order_id, status: 'paid', replay: true, units_sold: 0, payment_ref: 'psp-1' });
    expect(second.paid_at).toBe(first.paid_at);
    expect(await ledgerCount(t.sql)).toBe(ledger);
    expect(await stockOf(t.sql, 'PAY-A')).toEqual(stock);
    const cli = await t.cli(['pay', order.order_id, '--json']);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ replay: true });
    expect(await ledgerCount(t.sql)).toBe(ledger);
  });

  it('cancel twice: the second says already_cancelled and changes nothing', async () => {
    await addProducts(t.db, { 'CAN-A': 5 });
    const order = await reserve('CAN-A', 3);
    const first = await cancelOrder(t.db, { order: order.order_id, reason: 'customer asked', actor: ACTOR });
    expect(first).toMatchObject({ outcome: 'cancelled', previous_status: 'pending', released_units: 3 });
    const ledger = await ledgerCount(t.sql);
    const stock = await stockOf(t.sql, 'CAN-A');
    expect(stock).toMatchObject({ stock_quantity: 5, reserved_stock: 0 });
    const second = await cancelOrder(t.db, { order: order.order_id, actor: ACTOR });
    expect(second).toMatchObject({ outcome: 'already_cancelled', released_units: 0, restocked_units: 0 });
    expect(await ledgerCount(t.sql)).toBe(ledger);
    expect(await stockOf(t.sql, 'CAN-A')).toEqual(stock);
    const [row] = await t.sql`SELECT status, payment_status, cancel_reason, cancelled_by FROM orders WHERE order_id = ${order.order_id}`;
    expect(row).toEqual({ status: 'cancelled', payment_status: 'void', cancel_reason: 'customer asked', cancelled_by: ACTOR });
  });

  it('paying a cancelled order is refused (exit 5), engine and CLI; nothing changes', async () => {
    await addProducts(t.db, { 'CAN-B': 5 });
    const order = await reserve('CAN-B', 1);
    await cancelOrder(t.db, { order: order.order_id, actor: ACTOR });
    const ledger = await ledgerCount(t.sql);
    await expectRefused(payOrder(t.db, { order: order.order_id, actor: ACTOR }), 'order_cancelled');
    await expectRefused(payOrder(t.db, { order: order.order_id, allowLate: true, actor: ACTOR }), 'order_cancelled');
    const cli = await t.cliJson<{ error: { code: string } }>(['pay', order.order_id]);
    expect(cli.code).toBe(5);
    expect(cli.json.error.code).toBe('order_cancelled');
    expect(await ledgerCount(t.sql)).toBe(ledger);
    expect(await stockOf(t.sql, 'CAN-B')).toMatchObject({ stock_quantity: 5, reserved_stock: 0 });
  });

  it('cancelling a paid order is refused (exit 5); with restock the sold units are back on hand', async () => {
    await addProducts(t.db, { 'RST-A': 6, 'RST-B': 4 });
    const order = await reserveOrder(t.db, { lines: [{ sku: 'RST-A', quantity: 2 }, { sku: 'RST-B', quantity: 3 }], actor: ACTOR }, SETTINGS);
    await payOrder(t.db, { order: order.order_id, actor: ACTOR });
    expect(await stockOf(t.sql, 'RST-A')).toMatchObject({ stock_quantity: 4, reserved_stock: 0 });
    const ledger = await ledgerCount(t.sql);
    await expectRefused(cancelOrder(t.db, { order: order.order_id, actor: ACTOR }), 'order_paid');
    const cli = await t.cliJson<{ results: { exit_code: number; error: { code: string } }[] }>(['cancel', order.order_id]);
    expect(cli.code).toBe(5);
    expect(cli.json.results[0]).toMatchObject({ exit_code: 5, error: { code: 'order_paid' } });
    expect(await ledgerCount(t.sql)).toBe(ledger);

    const restocked = await cancelOrder(t.db, { order: order.order_id, restock: true, reason: 'returned', actor: ACTOR });
    expect(restocked).toMatchObject({ outcome: 'restocked', previous_status: 'paid', restocked_units: 5 });
    expect(await stockOf(t.sql, 'RST-A')).toMatchObject({ stock_quantity: 6, reserved_stock: 0 });
    expect(await stockOf(t.sql, 'RST-B')).toMatchObject({ stock_quantity: 4, reserved_stock: 0 });
    const [row] = await t.sql`SELECT status, payment_status FROM orders WHERE order_id = ${order.order_id}`;
    expect(row).toEqual({ status: 'cancelled', payment_status: 'refunded' });
    const kinds = await t.sql`SELECT kind, count(*)::int AS n FROM stock_movements WHERE order_id = ${order.order_id} GROUP BY kind ORDER BY kind`;
    expect(kinds).toEqual([
      { kind: 'reserve', n: 2 },
      { kind: 'restock', n: 2 },
      { kind: 'sale', n: 2 },
    ]);
    // Restocking again is an idempotent no-op.
    const again = await cancelOrder(t.db, { order: order.order_id, restock: true, actor: ACTOR });
    expect(again.outcome).toBe('already_cancelled');
    expect(await stockOf(t.sql, 'RST-A')).toMatchObject({ stock_quantity: 6 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('an unknown order is NotFound (exit 4) for pay, cancel and extend', async () => {
    for (const call of <(() => Promise<unknown>)[]>[
      () => payOrder(t.db, { order: 'no-such-ref', actor: ACTOR }),
      () => cancelOrder(t.db, { order: '00000000-0000-4000-8000-000000000000', actor: ACTOR }),
      () => extendOrder(t.db, { order: 'no-such-ref', ttlSeconds: 60, actor: ACTOR }),
    ]) {
      const out = await attempt(call);
      expect(out.ok).toBe(false);
      expect(codeOf((out as { error: unknown }).error)).toBe('order_not_found');
      expect(((out as { error: { exitCode: number } }).error).exitCode).toBe(4);
    }
  });
});

describe('extend', () => {
  it('moves a pending order and its reservations together; a sweep then leaves it alone', async () => {
    await addProducts(t.db, { 'EXT-A': 5, 'EXT-B': 5 });
    const order = await reserveOrder(t.db, { lines: [{ sku: 'EXT-A', quantity: 1 }, { sku: 'EXT-B', quantity: 2 }], ttlSeconds: 60, actor: ACTOR }, SETTINGS);
    const extended = await extendOrder(t.db, { order: order.order_id, ttlSeconds: 1800, actor: 'support' });
    expect(extended.reservations_extended).toBe(2);
    const [o] = await t.sql<{ expires_ms: number; in_s: number; notes: string }[]>`
      SELECT floor(extract(epoch FROM payment_expires_at) * 1000)::float8 AS expires_ms,
             extract(epoch FROM payment_expires_at - now())::float8 AS in_s, admin_notes AS notes
        FROM orders WHERE order_id = ${order.order_id}`;
    expect(o.in_s).toBeGreaterThan(1790);
    expect(o.in_s).toBeLessThanOrEqual(1800);
    expect(o.notes).toContain('support');
    expect(Date.parse(extended.payment_expires_at)).toBe(o.expires_ms);
    const res = await t.sql<{ same: boolean; status: string }[]>`
      SELECT r.expires_at = o.payment_expires_at AS same, r.status
        FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id WHERE r.order_id = ${order.order_id}`;
    expect(res).toEqual([
      { same: true, status: 'active' },
      { same: true, status: 'active' },
    ]);
    const ledger = await ledgerCount(t.sql);
    const swept = await expireDueOrders(t.db, { actor: ACTOR });
    expect(swept.expired_orders).toBe(0);
    expect(await ledgerCount(t.sql)).toBe(ledger);
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('refuses (exit 5) an order past its window, a paid one and a cancelled one, changing nothing', async () => {
    await addProducts(t.db, { 'EXT-C': 10 });
    const late = await reserve('EXT-C', 1);
    const paid = await reserve('EXT-C', 1);
    await payOrder(t.db, { order: paid.order_id, actor: ACTOR });
    const cancelled = await reserve('EXT-C', 1);
    await cancelOrder(t.db, { order: cancelled.order_id, actor: ACTOR });
    const swept = await reserve('EXT-C', 1, { ref: 'ext-swept' });
    await expireNow(t.sql, [swept.order_id]);
    await expireDueOrders(t.db, { actor: ACTOR });
    await expireNow(t.sql, [late.order_id]); // past its window, not swept

    const snapshot = async () =>
      t.sql`SELECT o.order_id, o.status, o.payment_expires_at::text, o.admin_notes, r.status AS r_status, r.expires_at::text
              FROM orders o JOIN stock_reservations r ON r.order_id = o.order_id ORDER BY o.order_id`;
    const before = await snapshot();
    const ledger = await ledgerCount(t.sql);
    await expectRefused(extendOrder(t.db, { order: late.order_id, ttlSeconds: 600, actor: ACTOR }), 'payment_window_expired');
    await expectRefused(extendOrder(t.db, { order: paid.order_id, ttlSeconds: 600, actor: ACTOR }));
    await expectRefused(extendOrder(t.db, { order: cancelled.order_id, ttlSeconds: 600, actor: ACTOR }));
    await expectRefused(extendOrder(t.db, { order: 'ext-swept', ttlSeconds: 600, actor: ACTOR }));
    const cli = await t.cliJson<{ error: { code: string } }>(['extend', late.order_id, '--ttl', '30m']);
    expect(cli.code).toBe(5);
    expect(await snapshot()).toEqual(before);
    expect(await ledgerCount(t.sql)).toBe(ledger);
    expect(await invariantViolations(t.sql)).toEqual([]);
  });
});
