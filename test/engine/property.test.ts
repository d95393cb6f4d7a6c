/**
 * Property-based: random sequences of reserve / pay / cancel / extend / time passing /
 * sweep / stock adjustments over three SKUs (two products and a variant). Before each
 * step the expected answer is worked out from the database; after each step every
 * invariant that `verify` checks must hold.
 *
 * Time passing is simulated, not waited for: an order's window (and its reservations'
 * expiry) is moved into the past, which is exactly what the clock would do.
 * Replay a failure with PROP_SEED=<seed printed by fast-check>.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addProduct, changeStock } from '../../src/engine/catalogue.js';
import { cancelOrder, extendOrder, payOrder, reserveOrder, type Strategy } from '../../src/engine/orders.js';
import { expireDueOrders } from '../../src/engine/sweep.js';
import { useTestDatabase } from '../helpers/db.js';
import { ACTOR, SETTINGS, attempt, codeOf, describeError, expireNow, invariantViolations } from './_support.js';

const t = useTestDatabase();

const SKUS = ['PB-A', 'PB-B', 'PB-V'] as const;
type Sku = (typeof SKUS)[number];
const INITIAL: Record<Sku, number> = { 'PB-A': 6, 'PB-B': 4, 'PB-V': 3 };

type Cmd =
  | { kind: 'reserve'; lines: { sku: Sku; quantity: number }[]; strategy: Strategy; ref?: string; reversed: boolean }
  | { kind: 'pay'; order: number; allowLate: boolean }
  | { kind: 'cancel'; order: number; restock: boolean }
  | { kind: 'extend'; order: number; ttl: number }
  | { kind: 'elapse'; order: number | 'all' }
  | { kind: 'sweep'; batch: number }
  | { kind: 'adjust'; sku: Sku; delta: number };

const sku = fc.constantFrom(...SKUS);
const orderIndex = fc.nat({ max: 50 });
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('reserve' as const),
      lines: fc.uniqueArray(fc.record({ sku, quantity: fc.integer({ min: 1, max: 3 }) }), {
        minLength: 1,
        maxLength: 3,
        selector: (l) => l.sku,
      }),
      strategy: fc.constantFrom<Strategy>('guarded', 'optimistic', 'locking', 'batched'),
      ref: fc.option(fc.constantFrom('ref-1', 'ref-2', 'ref-3'), { nil: undefined, freq: 3 }),
      reversed: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('pay' as const), order: orderIndex, allowLate: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('cancel' as const), order: orderIndex, restock: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('extend' as const), order: orderIndex, ttl: fc.constantFrom(60, 900) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('elapse' as const), order: fc.oneof(orderIndex, fc.constant('all' as const)) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sweep' as const), batch: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('adjust' as const), sku, delta: fc.integer({ min: -4, max: 4 }).filter((d) => d !== 0) }) },
);

interface OrderState {
  order_id: string;
  ref: string | null;
  status: string;
  payment_status: string;
  passed: boolean;
}

async function reset(): Promise<void> {
  await t.sql`TRUNCATE stock_movements, stock_reservations, order_items, orders, product_variants, products, sweep_runs RESTART IDENTITY CASCADE`;
  await addProduct(t.db, { sku: 'PB-A', name: 'A', price: 250, stock: INITIAL['PB-A'], actor: ACTOR });
  await addProduct(t.db, { sku: 'PB-B', name: 'B', price: 990, stock: INITIAL['PB-B'], actor: ACTOR });
  await addProduct(t.db, { sku: 'PB-P', name: 'Parent', price: 0, stock: 0, actor: ACTOR });
  await addProduct(t.db, { sku: 'PB-V', name: 'Variant', price: 1500, stock: INITIAL['PB-V'], parentSku: 'PB-P', actor: ACTOR });
}

async function orderState(id: string): Promise<OrderState> {
  const [o] = await t.sql<OrderState[]>`
    SELECT order_id, ref, status, payment_status, coalesce(payment_expires_at <= now(), false) AS passed FROM orders WHERE order_id = ${id}`;
  return o;
}

async function stock(): Promise<Record<string, { stock: number; reserved: number; expiredHeld: number }>> {
  const rows = await t.sql<{ sku: string; stock: number; reserved: number; expired_held: number }[]>`
    SELECT s.sku, s.stock_quantity AS stock, s.reserved_stock AS reserved,
           coalesce((SELECT sum(r.quantity) FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id
                      WHERE r.sku = s.sku AND r.status = 'active' AND o.status = 'pending' AND o.payment_expires_at < now()), 0)::int AS expired_held
      FROM stock_items s`;
  return Object.fromEntries(rows.map((r) => [r.sku, { stock: r.stock, reserved: r.reserved, expiredHeld: r.expired_held }]));
}

async function linesOf(orderId: string) {
  return t.sql<{ sku: string; quantity: number }[]>`SELECT sku, quantity FROM order_items WHERE order_id = ${orderId} ORDER BY sku`;
}

const key = (lines: { sku: string; quantity: number }[]) =>
  lines.map((l) => `${l.sku}:${l.quantity}`).sort().join(',');

/** Run one command, checking its answer against what the state before it implies. */
async function step(c: Cmd, orders: string[], log: string[]): Promise<void> {
  const pick = (i: number) => (orders.length ? orders[i % orders.length] : undefined);
  const say = (s: string) => log.push(`${log.length}: ${s}`);

  switch (c.kind) {
    case 'reserve': {
      const before = await stock();
      const [existing] = c.ref ? await t.sql<{ order_id: string }[]>`SELECT order_id FROM orders WHERE ref = ${c.ref}` : [];
      const input = c.reversed ? [...c.lines].reverse() : c.lines;
      const out = await attempt(() => reserveOrder(t.db, { lines: input, ref: c.ref, strategy: c.strategy, actor: ACTOR }, SETTINGS));
      say(`reserve ${key(c.lines)} ${c.strategy}${c.ref ? ` ref=${c.ref}` : ''} -> ${out.ok ? `${out.value.order_id}${out.value.replay ? ' replay' : ''}` : describeError(out.error)}`);
      if (existing) {
        const same = key(await linesOf(existing.order_id)) === key(c.lines);
        if (same) {
          expect(out.ok, log.join('\n')).toBe(true);
          expect((out as { value: { order_id: string; replay: boolean } }).value).toMatchObject({ order_id: existing.order_id, replay: true });
        } else {
          expect(out.ok ? 'ok' : codeOf(out.error), log.join('\n')).toBe('ref_conflict');
        }
        return;
      }
      // Units held by orders past their window count as available (they are expired first).
      const fits = c.lines.every((l) => before[l.sku].stock - before[l.sku].reserved + before[l.sku].expiredHeld >= l.quantity);
      expect(out.ok ? 'ok' : codeOf(out.error), log.join('\n')).toBe(fits ? 'ok' : 'insufficient_stock');
      if (out.ok) {
        orders.push(out.value.order_id);
        expect(out.value.replay).toBe(false);
        const nowShort = c.lines.some((l) => before[l.sku].stock - before[l.sku].reserved < l.quantity);
        if (!nowShort) expect(out.value.expired_orders_released, log.join('\n')).toBe(0);
      }
      return;
    }
    case 'pay': {
      const id = pick(c.order);
      if (!id) return;
      const o = await orderState(id);
      const before = await stock();
      const out = await attempt(() => payOrder(t.db, { order: id, allowLate: c.allowLate, actor: ACTOR }));
      say(`pay ${id} (${o.status}/${o.payment_status}${o.passed ? ', late' : ''})${c.allowLate ? ' --allow-late' : ''} -> ${out.ok ? `paid${out.value.replay ? ' replay' : ''}${out.value.late ? ' late' : ''}` : describeError(out.error)}`);
      let expected: string;
      if (o.status === 'paid') expected = 'ok';
      else if (o.status === 'pending') expected = !o.passed || c.allowLate ? 'ok' : 'payment_window_expired';
      else if (o.payment_status === 'expired' && c.allowLate) {
        const lines = await linesOf(id);
        expected = lines.every((l) => before[l.sku].stock - before[l.sku].reserved >= l.quantity) ? 'ok' : 'insufficient_stock';
      } else expected = 'order_cancelled';
      expect(out.ok ? 'ok' : codeOf(out.error), log.join('\n')).toBe(expected);
      const after = await orderState(id);
      if (out.ok) {
        expect(after.status).toBe('paid');
        expect(out.value.replay).toBe(o.status === 'paid');
      } else if (expected === 'payment_window_expired') {
        expect(after, log.join('\n')).toMatchObject({ status: 'cancelled', payment_status: 'expired' });
      } else {
        expect(after.status).toBe(o.status);
      }
      return;
    }
    case 'cancel': {
      const id = pick(c.order);
      if (!id) return;
      const o = await orderState(id);
      const out = await attempt(() => cancelOrder(t.db, { order: id, restock: c.restock, actor: ACTOR }));
      say(`cancel ${id} (${o.status})${c.restock ? ' --restock' : ''} -> ${out.ok ? out.value.outcome : describeError(out.error)}`);
      const expected =
        o.status === 'pending' ? 'cancelled' : o.status === 'cancelled' ? 'already_cancelled' : c.restock ? 'restocked' : 'order_paid';
      expect(out.ok ? out.value.outcome : codeOf(out.error), log.join('\n')).toBe(expected);
      return;
    }
    case 'extend': {
      const id = pick(c.order);
      if (!id) return;
      const o = await orderState(id);
      // Extend only gives more time: seconds the window has left beyond the ttl asked for.
      const [{ beyond }] = await t.sql<{ beyond: number | null }[]>`
        SELECT extract(epoch FROM payment_expires_at - now())::float8 - ${c.ttl} AS beyond FROM orders WHERE order_id = ${id}`;
      const out = await attempt(() => extendOrder(t.db, { order: id, ttlSeconds: c.ttl, actor: ACTOR }));
      say(`extend ${id} (${o.status}${o.passed ? ', passed' : ''}, ${beyond?.toFixed(1)}s beyond) ${c.ttl}s -> ${out.ok ? 'ok' : describeError(out.error)}`);
      const got = out.ok ? 'ok' : out.error instanceof Error && (out.error as { exitCode?: number }).exitCode === 5 ? 'refused' : describeError(out.error);
      const extendable = o.status === 'pending' && !o.passed;
      // Within a second of the ttl asked for, the clock between the two reads decides.
      if (extendable && beyond !== null && Math.abs(beyond) < 1) expect(['ok', 'refused'], log.join('\n')).toContain(got);
      else expect(got, log.join('\n')).toBe(extendable && beyond !== null && beyond < 0 ? 'ok' : 'refused');
      if (out.ok) {
        const [r] = await t.sql<{ moved: boolean }[]>`
          SELECT bool_and(r.expires_at = o.payment_expires_at) AS moved FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id
           WHERE r.order_id = ${id} AND r.status = 'active'`;
        expect(r.moved).toBe(true);
      }
      return;
    }
    case 'elapse': {
      const id = c.order === 'all' ? undefined : pick(c.order);
      if (c.order !== 'all' && !id) return;
      await expireNow(t.sql, id ? [id] : undefined);
      say(`time passes for ${id ?? 'every pending order'}`);
      return;
    }
    case 'sweep': {
      const [{ due }] = await t.sql<{ due: number }[]>`SELECT count(*)::int AS due FROM orders WHERE status = 'pending' AND payment_expires_at < now()`;
      const out = await attempt(() => expireDueOrders(t.db, { actor: ACTOR, batchSize: c.batch }));
      say(`sweep batch ${c.batch} (${due} due) -> ${out.ok ? `${out.value.expired_orders} expired` : describeError(out.error)}`);
      expect(out.ok, log.join('\n')).toBe(true);
      if (out.ok) expect(out.value).toMatchObject({ expired_orders: due, remaining_due: 0 });
      return;
    }
    case 'adjust': {
      const before = (await stock())[c.sku];
      const out = await attempt(() => changeStock(t.db, { sku: c.sku, delta: c.delta, actor: ACTOR }));
      say(`adjust ${c.sku} ${c.delta > 0 ? '+' : ''}${c.delta} (stock ${before.stock}, reserved ${before.reserved}) -> ${out.ok ? 'ok' : describeError(out.error)}`);
      const target = before.stock + c.delta;
      const expected = target < 0 ? 'stock_below_zero' : target < before.reserved ? 'stock_below_reserved' : 'ok';
      expect(out.ok ? 'ok' : codeOf(out.error), log.join('\n')).toBe(expected);
      return;
    }
  }
}

describe('random command sequences keep every invariant', () => {
  it('30 commands per run over 3 SKUs (PROP_RUNS runs, default 25)', async () => {
    const seed = process.env.PROP_SEED ? Number(process.env.PROP_SEED) : undefined;
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 30, maxLength: 30 }), async (cmds) => {
        await reset();
        const orders: string[] = [];
        const log: string[] = [];
        for (const c of cmds) {
          await step(c, orders, log);
          const problems = await invariantViolations(t.sql);
          expect(problems, `after:\n${log.join('\n')}`).toEqual([]);
        }
        if (process.env.PROP_DEBUG === '1') console.info(log.join('\n'));
      }),
      { numRuns: Number(process.env.PROP_RUNS ?? 25), seed, interruptAfterTimeLimit: 40_000, markInterruptAsFailure: false, endOnFailure: process.env.PROP_SHRINK !== '1' },
    );
  }, 60_000);
});
