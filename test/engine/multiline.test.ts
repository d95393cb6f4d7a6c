/**
 * Crossing multi-line orders: A+B and B+A (and lines on a variant) at once, on separate
 * connections. The engine locks stock rows in one canonical order, so nothing may
 * deadlock, nothing but "insufficient stock" may reach the caller, and every order is
 * all-or-nothing.
 */
import { describe, expect, it } from 'vitest';
import { addProduct } from '../../src/engine/catalogue.js';
import { reserveOrder, type ReserveResult, type Strategy } from '../../src/engine/orders.js';
import type { OrderLine } from '../../src/engine/input.js';
import { useTestDatabase } from '../helpers/db.js';
import { ACTOR, SETTINGS, addProducts, attempt, invariantViolations, stockOf, tally, unexpected, withConnectionBudget, withPools } from './_support.js';

const t = useTestDatabase();

const CONNECTIONS = 16;
const ORDERS = 64;

/** The same few baskets, written with their lines in different orders. */
function basket(prefix: string, i: number): OrderLine[] {
  const A = `${prefix}-A`;
  const B = `${prefix}-B`;
  const V = `${prefix}-V`; // a variant: locked after every product row
  switch (i % 4) {
    case 0:
      return [{ sku: A, quantity: 1 }, { sku: B, quantity: 1 }];
    case 1:
      return [{ sku: B, quantity: 1 }, { sku: A, quantity: 1 }];
    case 2:
      return [{ sku: V, quantity: 1 }, { sku: A, quantity: 1 }];
    default:
      return [{ sku: B, quantity: 2 }, { sku: V, quantity: 1 }, { sku: A, quantity: 1 }];
  }
}

async function deadlocks(): Promise<number> {
  const [row] = await t.sql<{ deadlocks: number }[]>`SELECT deadlocks::int FROM pg_stat_database WHERE datname = current_database()`;
  return row.deadlocks;
}

describe('crossing multi-line orders', () => {
  for (const strategy of ['guarded', 'locking', 'optimistic'] as const satisfies readonly Strategy[]) {
    it(`${strategy}: no deadlock, no error but a real shortage, every order all-or-nothing`, async () => {
      const prefix = `ML${strategy.slice(0, 3).toUpperCase()}`;
      const initial = { A: 40, B: 30, V: 12 };
      await addProducts(t.db, { [`${prefix}-A`]: initial.A, [`${prefix}-B`]: initial.B });
      await addProduct(t.db, { sku: `${prefix}-P`, name: 'parent', price: 500, stock: 0, actor: ACTOR });
      await addProduct(t.db, { sku: `${prefix}-V`, name: 'variant', price: 700, stock: initial.V, parentSku: `${prefix}-P`, actor: ACTOR });
      const deadlocksBefore = await deadlocks();

      const outcomes = await withConnectionBudget('shared', () =>
        withPools(t.url, CONNECTIONS, async (dbs) => {
          const per = await Promise.all(
            dbs.map(async (db, c) => {
              const out = [];
              for (let i = c; i < ORDERS; i += CONNECTIONS) {
                const lines = basket(prefix, i);
                out.push({ lines, outcome: await attempt(() => reserveOrder(db, { lines, strategy, customerId: `m-${i}`, actor: ACTOR }, SETTINGS)) });
              }
              return out;
            }),
          );
          return per.flat();
        }),
      );

      const allowed = strategy === 'optimistic' ? ['insufficient_stock', 'stock_conflict'] : ['insufficient_stock'];
      expect(unexpected(outcomes.map((o) => o.outcome), allowed)).toEqual([]);
      const counts = tally(outcomes.map((o) => o.outcome));
      expect((counts.ok ?? 0) + (counts.insufficient_stock ?? 0) + (counts.stock_conflict ?? 0)).toBe(ORDERS);
      expect(counts.ok ?? 0).toBeGreaterThan(0);

      // Canonical lock order: no deadlock was ever retried.
      const retries = outcomes.reduce((n, o) => n + (o.outcome.ok ? (o.outcome.value as ReserveResult).retries : 0), 0);
      if (strategy !== 'optimistic') expect(retries).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 700)); // closed sessions flush their statistics
      expect(await deadlocks()).toBe(deadlocksBefore);

      // Totals: what the winners asked for is exactly what is reserved, per SKU.
      const wanted: Record<string, number> = {};
      for (const o of outcomes) {
        if (!o.outcome.ok) continue;
        const r = o.outcome.value as ReserveResult;
        expect(r.items.map((i) => i.sku)).toEqual([...r.items.map((i) => i.sku)].sort()); // canonical order
        for (const l of o.lines) wanted[l.sku] = (wanted[l.sku] ?? 0) + l.quantity;
      }
      for (const [key, stock] of Object.entries(initial)) {
        const sku = `${prefix}-${key}`;
        expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: stock, reserved_stock: wanted[sku] ?? 0 });
      }
      // All or nothing: every order in the database has every line it asked for, reserved.
      const partial = await t.sql`
        SELECT o.order_id FROM orders o
         WHERE o.customer_id LIKE 'm-%' AND o.order_id IN (SELECT order_id FROM order_items WHERE sku LIKE ${`${prefix}-%`})
           AND (SELECT count(*) FROM order_items i WHERE i.order_id = o.order_id)
            <> (SELECT count(*) FROM stock_reservations r WHERE r.order_id = o.order_id AND r.status = 'active')`;
      expect(partial).toHaveLength(0);
      const [{ orders }] = await t.sql<{ orders: number }[]>`
        SELECT count(DISTINCT order_id)::int AS orders FROM order_items WHERE sku LIKE ${`${prefix}-%`}`;
      expect(orders).toBe(counts.ok);
      // A failed order left no trace: no ledger row without an order that exists.
      const [{ orphans }] = await t.sql<{ orphans: number }[]>`
        SELECT count(*)::int AS orphans FROM stock_movements m
         WHERE m.kind = 'reserve' AND NOT EXISTS (SELECT 1 FROM stock_reservations r WHERE r.reservation_id = m.reservation_id)`;
      expect(orphans).toBe(0);
      // Every short answer names a SKU that really ran out.
      for (const o of outcomes) {
        if (o.outcome.ok || (o.outcome.error as { code?: string }).code !== 'insufficient_stock') continue;
        const shortages = (o.outcome.error as { shortages: { sku: string; requested: number; available: number }[] }).shortages;
        expect(shortages.length).toBeGreaterThan(0);
        for (const s of shortages) {
          expect(s.available).toBeLessThan(s.requested);
          // Nothing is released in this test, so availability only falls: a genuine
          // shortage is still a shortage at the end (no false "insufficient stock").
          const end = await stockOf(t.sql, s.sku);
          expect(end.stock_quantity - end.reserved_stock).toBeLessThanOrEqual(s.available);
        }
      }
      expect(await invariantViolations(t.sql)).toEqual([]);
    });
  }
});
