/**
 * Pay, cancel and several sweeps racing over the same orders around their expiry, and
 * expired reservations that must never cause a false "insufficient stock".
 */
import type postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { cancelOrder, payOrder, reserveOrder, type CancelResult, type PayResult, type ReserveResult } from '../../src/engine/orders.js';
import { expireDueOrders, type SweepResult } from '../../src/engine/sweep.js';
import { useTestDatabase } from '../helpers/db.js';
import {
  ACTOR,
  SETTINGS,
  addProducts,
  attempt,
  codeOf,
  describeError,
  expireNow,
  invariantViolations,
  sleep,
  stockOf,
  tally,
  unexpected,
  withConnectionBudget,
  withPools,
  type Outcome,
} from './_support.js';

const t = useTestDatabase();

/** A tiny deterministic PRNG, so that a failure can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function orderStates(sql: postgres.Sql, ids: string[]) {
  return sql<{ order_id: string; status: string; payment_status: string; admin_notes: string | null }[]>`
    SELECT order_id, status, payment_status, admin_notes FROM orders WHERE order_id = ANY(${ids}::uuid[])`;
}

describe('pay / cancel / sweeps racing around expiry', () => {
  it('every order ends in exactly one state, every unit released or sold exactly once', async () => {
    const seed = Number(process.env.RACE_SEED ?? Date.now() % 100000);
    const rand = prng(seed);
    const SKUS = ['RACE-A', 'RACE-B'];
    const initial: Record<string, number> = { 'RACE-A': 40, 'RACE-B': 40 };
    await addProducts(t.db, initial);

    // 30 orders with a one-second window.
    const orders: { id: string; lines: { sku: string; quantity: number }[]; expiresAt: number }[] = [];
    for (let i = 0; i < 30; i++) {
      const lines =
        i % 3 === 0
          ? [{ sku: SKUS[0], quantity: 1 + (i % 2) }, { sku: SKUS[1], quantity: 1 }]
          : [{ sku: SKUS[i % 2], quantity: 1 + Math.floor(rand() * 2) }];
      const r = await reserveOrder(t.db, { lines, ttlSeconds: 1, customerId: `race-${i}`, actor: ACTOR }, SETTINGS);
      orders.push({ id: r.order_id, lines, expiresAt: Date.parse(r.payment_expires_at) });
    }
    // Other buyers take most of the rest, so that a late re-sale sometimes finds no stock.
    for (const sku of SKUS) {
      const free = (await stockOf(t.sql, sku)).stock_quantity - (await stockOf(t.sql, sku)).reserved_stock;
      if (free > 3) await reserveOrder(t.db, { lines: [{ sku, quantity: free - 3 }], customerId: 'bystander', actor: ACTOR }, SETTINGS);
    }
    const before = Object.fromEntries(await Promise.all(SKUS.map(async (s) => [s, await stockOf(t.sql, s)] as const)));

    type Op = { order: number; kind: 'pay' | 'payLate' | 'cancel'; at: number };
    const ops: Op[] = [];
    orders.forEach((o, i) => {
      const kinds: Op['kind'][] = [['pay', 'cancel'], ['payLate', 'cancel'], ['pay', 'payLate'], ['pay', 'payLate', 'cancel']][i % 4] as Op['kind'][];
      // Each contender fires at its own moment within 200 ms either side of the expiry.
      for (const kind of kinds) ops.push({ order: i, kind, at: o.expiresAt + Math.round((rand() - 0.5) * 400) });
    });

    const payResults = new Map<number, Outcome<PayResult>[]>();
    const cancelResults = new Map<number, Outcome<CancelResult>[]>();
    const sweepResults: Outcome<SweepResult>[] = [];
    const all: Outcome<unknown>[] = [];
    const firstExpiry = Math.min(...orders.map((o) => o.expiresAt));
    const lastExpiry = Math.max(...orders.map((o) => o.expiresAt));

    await withConnectionBudget('shared', () =>
      withPools(t.url, 13, async (dbs) => {
        const workers = dbs.slice(0, 10);
        const sweepers = dbs.slice(10);
        const run = async (op: Op, idx: number) => {
          await sleep(Math.max(0, op.at - Date.now()));
          const db = workers[idx % workers.length];
          const key = orders[op.order].id;
          if (op.kind === 'cancel') {
            const out = await attempt(() => cancelOrder(db, { order: key, reason: 'race', actor: 'race-cancel' }));
            cancelResults.set(op.order, [...(cancelResults.get(op.order) ?? []), out]);
            all.push(out);
          } else {
            const out = await attempt(() => payOrder(db, { order: key, allowLate: op.kind === 'payLate', actor: 'race-pay' }));
            payResults.set(op.order, [...(payResults.get(op.order) ?? []), out]);
            all.push(out);
          }
        };
        // Three sweeps, each sweeping again and again from before the first expiry to after the last.
        const sweep = async (db: (typeof dbs)[number], k: number) => {
          await sleep(Math.max(0, firstExpiry - 250 - Date.now()));
          while (Date.now() < lastExpiry + 400) {
            const out = await attempt(() => expireDueOrders(db, { actor: `race-sweep-${k}`, batchSize: 1 + k * 3 }));
            sweepResults.push(out);
            await sleep(15 + k * 10);
          }
        };
        await Promise.all([...ops.map(run), ...sweepers.map(sweep)]);
      }),
    );

    const context = `(RACE_SEED=${seed})`;
    // Only refusals and (for a late re-sale) a real shortage may come back.
    expect(unexpected(all, ['order_paid', 'order_cancelled', 'payment_window_expired', 'insufficient_stock']), context).toEqual([]);
    expect(sweepResults.filter((s) => !s.ok).map((s) => describeError((s as { error: unknown }).error)), context).toEqual([]);
    const lates = [...payResults.values()].flat().filter((p) => p.ok && p.value.late && !p.value.replay).length;
    const sweptOrders = sweepResults.reduce((n, s) => n + (s.ok ? s.value.expired_orders : 0), 0);
    console.info(
      `[expiry-race] ${context} pay/cancel outcomes ${JSON.stringify(tally(all))}; late pays ${lates}; ` +
        `${sweepResults.length} sweeps expired ${sweptOrders} orders`,
    );

    const ids = orders.map((o) => o.id);
    const states = await orderStates(t.sql, ids);
    // Exactly one final state per order.
    for (const s of states) expect(['paid', 'cancelled'], `${s.order_id} ${context}`).toContain(s.status);

    const byId = new Map(states.map((s) => [s.order_id, s]));
    orders.forEach((o, i) => {
      const state = byId.get(o.id)!;
      const pays = payResults.get(i) ?? [];
      const cancels = cancelResults.get(i) ?? [];
      const paidNow = pays.filter((p): p is { ok: true; value: PayResult } => p.ok && !p.value.replay);
      const cancelled = cancels.filter((c) => c.ok && c.value.outcome === 'cancelled');
      const what = `order ${i} ${o.id} ${context}: pays ${JSON.stringify(pays.map((p) => (p.ok ? p.value : codeOf(p.error))))} cancels ${JSON.stringify(cancels.map((c) => (c.ok ? c.value.outcome : codeOf(c.error))))} -> ${state.status}/${state.payment_status}`;
      // Exactly one winner; the others see its result.
      expect(paidNow.length, what).toBeLessThanOrEqual(1);
      expect(cancelled.length, what).toBeLessThanOrEqual(1);
      expect(paidNow.length + cancelled.length, what).toBeLessThanOrEqual(1);
      if (paidNow.length === 1) expect(state.status, what).toBe('paid');
      if (cancelled.length === 1) {
        expect(state.status, what).toBe('cancelled');
        expect(state.payment_status, what).toBe('void');
      }
      if (state.status === 'paid') {
        expect(paidNow.length, what).toBe(1);
        expect(state.payment_status, what).toBe('paid');
      }
      if (state.status === 'cancelled' && cancelled.length === 0) {
        // Cancelled without a hand cancel winning: it expired (by a sweep or by a pay that came too late).
        expect(state.payment_status, what).toBe('expired');
        expect(state.admin_notes ?? '', what).toContain('Payment timeout');
      }
      // A pay that succeeded on time sold the original reservations; a late one after expiry re-sold.
      for (const p of paidNow) expect(p.value.units_sold, what).toBe(o.lines.reduce((n, l) => n + l.quantity, 0));
    });

    // Per order: paid -> every line sold (converted), nothing active; cancelled -> nothing active, nothing sold.
    const perOrder = await t.sql<{ order_id: string; status: string; active: number; converted: number; items: number; released: number; lines: number }[]>`
      SELECT o.order_id, o.status,
             (SELECT coalesce(sum(quantity), 0) FROM stock_reservations r WHERE r.order_id = o.order_id AND r.status = 'active')::int AS active,
             (SELECT coalesce(sum(quantity), 0) FROM stock_reservations r WHERE r.order_id = o.order_id AND r.status = 'converted')::int AS converted,
             (SELECT coalesce(sum(quantity), 0) FROM order_items i WHERE i.order_id = o.order_id)::int AS items,
             (SELECT coalesce(-sum(reserved_delta), 0) FROM stock_movements m WHERE m.order_id = o.order_id AND m.kind IN ('release', 'expire'))::int AS released,
             (SELECT count(*) FROM order_items i WHERE i.order_id = o.order_id)::int AS lines
        FROM orders o WHERE o.order_id = ANY(${ids}::uuid[])`;
    for (const o of perOrder) {
      expect(o.active, `${o.order_id} ${context}`).toBe(0);
      if (o.status === 'paid') expect(o.converted, `${o.order_id} ${context}`).toBe(o.items);
      else expect(o.converted, `${o.order_id} ${context}`).toBe(0);
      // Units handed back at most once: never more than the order held.
      expect(o.released, `${o.order_id} ${context}`).toBeLessThanOrEqual(o.items);
    }
    const twice = await t.sql`
      SELECT reservation_id, count(*)::int AS n FROM stock_movements
       WHERE kind IN ('release', 'expire') AND reservation_id IS NOT NULL
       GROUP BY reservation_id HAVING count(*) > 1`;
    expect(twice, context).toEqual([]);

    // Per SKU: counters = reservations = ledger; sold = paid units; on hand = initial - sold.
    for (const sku of SKUS) {
      const [row] = await t.sql<{ stock_quantity: number; reserved_stock: number; active: number; ledger_reserved: number; ledger_stock: number; sold: number; paid_units: number }[]>`
        SELECT s.stock_quantity, s.reserved_stock,
               (SELECT coalesce(sum(quantity), 0) FROM stock_reservations r WHERE r.sku = s.sku AND r.status = 'active')::int AS active,
               (SELECT coalesce(sum(reserved_delta), 0) FROM stock_movements m WHERE m.sku = s.sku)::int AS ledger_reserved,
               (SELECT coalesce(sum(stock_delta), 0) FROM stock_movements m WHERE m.sku = s.sku)::int AS ledger_stock,
               (SELECT coalesce(-sum(stock_delta), 0) FROM stock_movements m WHERE m.sku = s.sku AND m.kind = 'sale')::int AS sold,
               (SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.order_id = i.order_id
                 WHERE i.sku = s.sku AND o.status = 'paid')::int AS paid_units
          FROM stock_items s WHERE s.sku = ${sku}`;
      expect(row.reserved_stock, `${sku} ${context}`).toBe(row.active);
      expect(row.reserved_stock, `${sku} ${context}`).toBe(row.ledger_reserved);
      expect(row.stock_quantity, `${sku} ${context}`).toBe(row.ledger_stock);
      expect(row.sold, `${sku} ${context}`).toBe(row.paid_units);
      expect(row.stock_quantity, `${sku} ${context}`).toBe(initial[sku] - row.sold);
      // Only the bystander's order still holds units.
      const [{ bystander }] = await t.sql<{ bystander: number }[]>`
        SELECT coalesce(sum(r.quantity), 0)::int AS bystander FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id
         WHERE r.sku = ${sku} AND r.status = 'active' AND o.customer_id = 'bystander'`;
      expect(row.active, `${sku} ${context}`).toBe(bystander);
      expect(row.stock_quantity, `${sku} ${context}`).toBeLessThanOrEqual(before[sku].stock_quantity);
    }

    // What the sweeps say they released is exactly what the ledger credits to them.
    const swept = sweepResults.filter((s): s is { ok: true; value: SweepResult } => s.ok);
    const [ledgerSweeps] = await t.sql<{ units: number; orders: number }[]>`
      SELECT coalesce(-sum(reserved_delta), 0)::int AS units, count(DISTINCT order_id)::int AS orders
        FROM stock_movements WHERE kind = 'expire' AND actor LIKE 'race-sweep-%'`;
    expect(swept.reduce((n, s) => n + s.value.released_units, 0), context).toBe(ledgerSweeps.units);
    expect(swept.reduce((n, s) => n + s.value.expired_orders, 0), context).toBe(ledgerSweeps.orders);
    const runs = await t.sql<{ n: number; unfinished: number }[]>`
      SELECT count(*)::int AS n, count(*) FILTER (WHERE finished_at IS NULL)::int AS unfinished FROM sweep_runs WHERE actor LIKE 'race-sweep-%'`;
    expect(runs[0]).toEqual({ n: sweepResults.length, unfinished: 0 });

    expect(await invariantViolations(t.sql), context).toEqual([]);
  });
});

describe('expired reservations never cause a false rejection', () => {
  it('stock 1 held by an order past its window (unswept): the next buyer gets it, the old order is expired', async () => {
    const sku = 'EXP-ONE';
    await addProducts(t.db, { [sku]: 1 });
    const a = await reserveOrder(t.db, { lines: [{ sku, quantity: 1 }], ttlSeconds: 1, actor: ACTOR }, SETTINGS);
    await sleep(1200); // no sweep runs
    expect(await stockOf(t.sql, sku)).toMatchObject({ reserved_stock: 1 });
    const b = await reserveOrder(t.db, { lines: [{ sku, quantity: 1 }], actor: ACTOR }, SETTINGS);
    expect(b.status).toBe('pending');
    expect(b.expired_orders_released).toBe(1);
    const [orderA] = await orderStates(t.sql, [a.order_id]);
    expect(orderA).toMatchObject({ status: 'cancelled', payment_status: 'expired' });
    expect(orderA.admin_notes).toContain('Payment timeout');
    const reservations = await t.sql`SELECT status FROM stock_reservations WHERE order_id = ${a.order_id}`;
    expect(reservations.map((r) => r.status)).toEqual(['expired']);
    expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: 1, reserved_stock: 1 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('10 units held by 10 expired orders: 10 concurrent buyers (separate connections) all succeed', async () => {
    const sku = 'EXP-TEN';
    await addProducts(t.db, { [sku]: 10 });
    const held: ReserveResult[] = [];
    for (let i = 0; i < 10; i++) held.push(await reserveOrder(t.db, { lines: [{ sku, quantity: 1 }], actor: ACTOR }, SETTINGS));
    await expireNow(t.sql, held.map((h) => h.order_id)); // time passes; no sweep
    const outcomes = await withConnectionBudget('shared', () =>
      withPools(t.url, 10, (dbs) =>
        Promise.all(dbs.map((db, i) => attempt(() => reserveOrder(db, { lines: [{ sku, quantity: 1 }], customerId: `after-${i}`, actor: ACTOR }, SETTINGS)))),
      ),
    );
    expect(unexpected(outcomes, [])).toEqual([]);
    expect(tally(outcomes)).toEqual({ ok: 10 });
    expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: 10, reserved_stock: 10 });
    const states = await orderStates(t.sql, held.map((h) => h.order_id));
    expect(states.every((s) => s.status === 'cancelled' && s.payment_status === 'expired')).toBe(true);
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('a multi-line order is not refused because an expired order holds one of its SKUs', async () => {
    await addProducts(t.db, { 'EXP-M1': 2, 'EXP-M2': 2 });
    const old = await reserveOrder(t.db, { lines: [{ sku: 'EXP-M2', quantity: 2 }, { sku: 'EXP-M1', quantity: 1 }], actor: ACTOR }, SETTINGS);
    await expireNow(t.sql, [old.order_id]);
    const fresh = await reserveOrder(t.db, { lines: [{ sku: 'EXP-M1', quantity: 2 }, { sku: 'EXP-M2', quantity: 2 }], actor: ACTOR }, SETTINGS);
    expect(fresh.expired_orders_released).toBe(1);
    expect(await stockOf(t.sql, 'EXP-M1')).toMatchObject({ reserved_stock: 2 });
    expect(await stockOf(t.sql, 'EXP-M2')).toMatchObject({ reserved_stock: 2 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });
});
