/**
 * Property-based, over several locations: random sequences of adding locations, setting
 * and adjusting stock per location, reserving with random split policies, pins and
 * strategies, paying, cancelling, extending, time passing, sweeping, transfers sent,
 * received and cancelled, and locations deactivated and activated again. Before each
 * step the expected answer is worked out from the database by the rule's definitions
 * (not by the engine's allocate()); after each step every invariant `verify` checks
 * holds at every level, and each SKU's totals are the sums of its levels.
 *
 * Time passes both ways: simulated (an order's window moved into the past) and real
 * (orders with a one-second window, and steps that wait for it to end). Near a real
 * deadline either answer is right, so within NEAR_S of one both are accepted.
 *
 * Replay a failure with PROP_SEED=<seed printed by fast-check>.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addProduct, changeStock } from '../../src/engine/catalogue.js';
import { addLocation, setLocation } from '../../src/engine/locations.js';
import { cancelOrder, extendOrder, payOrder, reserveOrder, type Strategy } from '../../src/engine/orders.js';
import { expireDueOrders } from '../../src/engine/sweep.js';
import { closeTransfer, sendTransfer } from '../../src/engine/transfers.js';
import type { SplitPolicy } from '../../src/engine/allocate.js';
import { useTestDatabase } from '../helpers/db.js';
import { locationViolations } from './_locations.js';
import { ACTOR, SETTINGS, attempt, codeOf, describeError, expireNow } from './_support.js';

const t = useTestDatabase();

const SKUS = ['PL-A', 'PL-B', 'PL-V'] as const;
type Sku = (typeof SKUS)[number];
const LOCS = ['P1', 'P2', 'P3', 'P4'] as const;
type Loc = (typeof LOCS)[number];
const PRIORITY: Record<Loc, number> = { P1: 30, P2: 20, P3: 10, P4: 25 };
const SHORT_WINDOW_S = 1;
/** Within this many seconds of an order's deadline, it may be either side of it by the time a step acts. */
const NEAR_S = 0.5;

type Cmd =
  | { kind: 'reserve'; lines: { sku: Sku; quantity: number }[]; strategy: Strategy; split: SplitPolicy; pin?: Loc; short: boolean }
  | { kind: 'wait' }
  | { kind: 'pay'; order: number; allowLate: boolean }
  | { kind: 'cancel'; order: number }
  | { kind: 'extend'; order: number }
  | { kind: 'elapse'; order: number | 'all' }
  | { kind: 'sweep' }
  | { kind: 'set'; sku: Sku; at: Loc; quantity: number }
  | { kind: 'adjust'; sku: Sku; at: Loc; delta: number }
  | { kind: 'send'; sku: Sku; from: Loc; to: Loc; quantity: number }
  | { kind: 'close'; transfer: number; how: 'receive' | 'cancel' }
  | { kind: 'active'; at: Loc; active: boolean }
  | { kind: 'addLocation' };

const sku = fc.constantFrom(...SKUS);
const loc = fc.constantFrom(...LOCS);
const index = fc.nat({ max: 40 });
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('reserve' as const),
      lines: fc.array(fc.record({ sku, quantity: fc.integer({ min: 1, max: 4 }) }), { minLength: 1, maxLength: 3 }),
      strategy: fc.constantFrom<Strategy>('guarded', 'optimistic', 'locking', 'batched'),
      split: fc.constantFrom<SplitPolicy>('units', 'lines', 'never'),
      pin: fc.option(loc, { nil: undefined, freq: 4 }),
      // A real window of a second, which the clock ends (see `wait`), beside simulated ones.
      short: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('wait' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('pay' as const), order: index, allowLate: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('cancel' as const), order: index }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('extend' as const), order: index }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('elapse' as const), order: fc.oneof(index, fc.constant('all' as const)) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sweep' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('set' as const), sku, at: loc, quantity: fc.integer({ min: 0, max: 6 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('adjust' as const), sku, at: loc, delta: fc.integer({ min: -4, max: 4 }).filter((d) => d !== 0) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('send' as const), sku, from: loc, to: loc, quantity: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('close' as const), transfer: index, how: fc.constantFrom('receive' as const, 'cancel' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('active' as const), at: loc, active: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('addLocation' as const) }) },
);

async function reset(): Promise<void> {
  await t.sql`TRUNCATE stock_movements, stock_reservations, order_items, orders, transfers, stock_levels, product_variants, products, sweep_runs RESTART IDENTITY CASCADE`;
  await t.sql`DELETE FROM locations WHERE code <> 'default'`;
  for (const code of ['P1', 'P2', 'P3'] as const) await addLocation(t.db, { code, name: code, priority: PRIORITY[code] });
  await addProduct(t.db, { sku: 'PL-A', name: 'A', price: 250, stock: 0, actor: ACTOR });
  await addProduct(t.db, { sku: 'PL-B', name: 'B', price: 990, stock: 0, actor: ACTOR });
  await addProduct(t.db, { sku: 'PL-P', name: 'Parent', price: 0, stock: 0, actor: ACTOR });
  await addProduct(t.db, { sku: 'PL-V', name: 'Variant', price: 1500, stock: 0, parentSku: 'PL-P', actor: ACTOR });
  const initial: [Sku, Loc, number][] = [
    ['PL-A', 'P1', 3],
    ['PL-A', 'P2', 2],
    ['PL-A', 'P3', 4],
    ['PL-B', 'P1', 1],
    ['PL-B', 'P3', 3],
    ['PL-V', 'P2', 3],
  ];
  for (const [s, at, quantity] of initial) await changeStock(t.db, { sku: s, location: at, quantity, actor: ACTOR });
}

interface LevelState {
  stock: number;
  reserved: number;
  incoming: number;
  /** Units held by pending orders past their window: a reserve releases them first. */
  expiredHeld: number;
  /** Units held by pending orders within NEAR_S of their deadline, not yet past it. */
  nearHeld: number;
  active: boolean;
  priority: number;
}

/** Every level, by `sku@location`, with its location's state. */
async function levels(): Promise<Map<string, LevelState>> {
  const rows = await t.sql<
    { sku: string; location: string; stock: number; reserved: number; incoming: number; expired_held: number; near_held: number; active: boolean; priority: number }[]
  >`
    SELECT l.sku, l.location, l.stock_quantity AS stock, l.reserved_stock AS reserved, l.incoming, loc.active, loc.priority,
           coalesce((SELECT sum(r.quantity) FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id
                      WHERE r.sku = l.sku AND r.location = l.location AND r.status = 'active' AND o.status = 'pending'
                        AND o.payment_expires_at < now()), 0)::int AS expired_held,
           coalesce((SELECT sum(r.quantity) FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id
                      WHERE r.sku = l.sku AND r.location = l.location AND r.status = 'active' AND o.status = 'pending'
                        AND o.payment_expires_at >= now() AND o.payment_expires_at < now() + make_interval(secs => ${NEAR_S})), 0)::int AS near_held
      FROM stock_levels l JOIN locations loc ON loc.code = l.location`;
  return new Map(
    rows.map((r) => [
      `${r.sku}@${r.location}`,
      { stock: r.stock, reserved: r.reserved, incoming: r.incoming, expiredHeld: r.expired_held, nearHeld: r.near_held, active: r.active, priority: r.priority },
    ]),
  );
}

async function locations(): Promise<Map<string, { active: boolean; priority: number }>> {
  const rows = await t.sql<{ code: string; active: boolean; priority: number }[]>`SELECT code, active, priority FROM locations`;
  return new Map(rows.map((r) => [r.code, { active: r.active, priority: r.priority }]));
}

/**
 * Whether the split policy can place this demand over these levels, by its definition:
 * `never`, one active location has every SKU's demand; `lines`, each SKU's demand is at
 * one active location; `units`, each SKU's demand is within what all active locations
 * have. Units held by orders past their window count as free (a reserve releases them
 * first), and with `near` those of orders about to pass it too.
 */
function feasible(demand: Map<string, number>, lv: Map<string, LevelState>, policy: SplitPolicy, pin: string | undefined, freed: 'expired' | 'near'): boolean {
  const codes = [...new Set([...lv.keys()].map((k) => k.split('@')[1]))].filter((c) => pin === undefined || c === pin);
  const has = (s: string, c: string) => {
    const l = lv.get(`${s}@${c}`);
    if (!l || !l.active) return 0;
    return Math.max(0, l.stock - l.reserved + l.expiredHeld + (freed === 'near' ? l.nearHeld : 0));
  };
  const skus = [...demand.keys()];
  if (policy === 'never' || pin !== undefined) return codes.some((c) => skus.every((s) => has(s, c) >= demand.get(s)!));
  if (policy === 'lines') return skus.every((s) => codes.some((c) => has(s, c) >= demand.get(s)!));
  return skus.every((s) => codes.reduce((n, c) => n + has(s, c), 0) >= demand.get(s)!);
}

interface OrderState {
  status: string;
  payment_status: string;
  passed: boolean;
  /** Within NEAR_S of its deadline either way: it may be either side by the time the step acts. */
  near: boolean;
}

async function orderState(id: string): Promise<OrderState> {
  const [o] = await t.sql<OrderState[]>`
    SELECT status, payment_status, coalesce(payment_expires_at <= now(), false) AS passed,
           coalesce(abs(extract(epoch FROM payment_expires_at - now())) < ${NEAR_S}, false) AS near
      FROM orders WHERE order_id = ${id}`;
  return o;
}

/** The expected answer, or either of two when the clock decides between them. */
function expectOneOf(got: string, expected: string[], why: string): void {
  expect(expected, `${why}\ngot ${got}`).toContain(got);
}

async function step(c: Cmd, orders: string[], transfers: number[], log: string[]): Promise<void> {
  const pick = (i: number) => (orders.length ? orders[i % orders.length] : undefined);
  const say = (s: string) => log.push(`${log.length}: ${s}`);
  const why = () => log.join('\n');
  const got = (o: { ok: boolean; error?: unknown }) => (o.ok ? 'ok' : codeOf(o.error));

  switch (c.kind) {
    case 'reserve': {
      const before = await levels();
      const locs = await locations();
      const demand = new Map<string, number>();
      for (const l of c.lines) demand.set(l.sku, (demand.get(l.sku) ?? 0) + l.quantity);
      const ttlSeconds = c.short ? SHORT_WINDOW_S : undefined;
      const out = await attempt(() => reserveOrder(t.db, { lines: c.lines, strategy: c.strategy, split: c.split, location: c.pin, ttlSeconds, actor: ACTOR }, SETTINGS));
      say(`reserve ${c.lines.map((l) => `${l.sku}:${l.quantity}`).join(' ')} ${c.strategy} split=${c.split}${c.pin ? ` @${c.pin}` : ''}${c.short ? ' 1s' : ''} -> ${out.ok ? JSON.stringify(out.value.items.map((i) => i.allocations.map((a) => `${i.sku}@${a.location}:${a.quantity}`))) : describeError(out.error)}`);
      if (c.pin !== undefined && !locs.has(c.pin)) return void expect(got(out), why()).toBe('location_not_found');
      if (c.pin !== undefined && !locs.get(c.pin)!.active) return void expect(got(out), why()).toBe('location_inactive');
      const fits = feasible(demand, before, c.split, c.pin, 'expired');
      const fitsSoon = feasible(demand, before, c.split, c.pin, 'near');
      expectOneOf(got(out), [...new Set([fits ? 'ok' : 'insufficient_stock', fitsSoon ? 'ok' : 'insufficient_stock'])], `${why()}\nlevels before: ${JSON.stringify([...before])}`);
      if (!out.ok) return;
      orders.push(out.value.order_id);
      // Where the units came from obeys the policy, the pin and the locations' state.
      // (Two lines of one SKU are one demand: each such line lists the SKU's reservations.)
      const placed = [...new Map(out.value.items.flatMap((i) => i.allocations.map((a) => [a.reservation_id, { sku: i.sku, ...a }] as const))).values()];
      const atLocations = new Set(placed.map((p) => p.location));
      for (const p of placed) {
        expect(locs.get(p.location)?.active, why()).toBe(true);
        if (c.pin) expect(p.location, why()).toBe(c.pin);
      }
      for (const [s, want] of demand) {
        const mine = placed.filter((p) => p.sku === s);
        expect(mine.reduce((n, p) => n + p.quantity, 0), why()).toBe(want);
        if (c.split !== 'units') expect(new Set(mine.map((p) => p.location)).size, why()).toBe(1);
      }
      if (c.split === 'never') expect(atLocations.size, why()).toBe(1);
      // With nothing expired in the way: one location that covers the whole order is used
      // whole, the highest-priority one; each level took exactly its allocation.
      if (out.value.expired_orders_released === 0) {
        const whole = [...locs.entries()]
          .filter(([code, l]) => l.active && (c.pin === undefined || code === c.pin))
          .filter(([code]) => [...demand].every(([s, q]) => { const l = before.get(`${s}@${code}`); return l !== undefined && l.stock - l.reserved >= q; }))
          .sort((a, b) => b[1].priority - a[1].priority || (a[0] < b[0] ? -1 : 1));
        if (whole.length > 0) expect([...atLocations], why()).toEqual([whole[0][0]]);
        const after = await levels();
        for (const p of placed) {
          const k = `${p.sku}@${p.location}`;
          expect(after.get(k)!.reserved - before.get(k)!.reserved, `${why()}\n${k}`).toBe(placed.filter((q) => `${q.sku}@${q.location}` === k).reduce((n, q) => n + q.quantity, 0));
        }
      }
      return;
    }
    case 'pay': {
      const id = pick(c.order);
      if (!id) return;
      const o = await orderState(id);
      const out = await attempt(() => payOrder(t.db, { order: id, allowLate: c.allowLate, actor: ACTOR }));
      say(`pay ${id} (${o.status}/${o.payment_status}${o.passed ? ', late' : ''})${c.allowLate ? ' --allow-late' : ''} -> ${out.ok ? 'paid' : describeError(out.error)}`);
      if (o.status === 'paid') expect(got(out), why()).toBe('ok');
      else if (o.status === 'pending' && o.near && !c.allowLate) expectOneOf(got(out), ['ok', 'payment_window_expired'], why());
      else if (o.status === 'pending') expect(got(out), why()).toBe(!o.passed || c.allowLate ? 'ok' : 'payment_window_expired');
      // A late payment of an expired order sells again if the stock allows; never anything else.
      else if (o.payment_status === 'expired' && c.allowLate) expect(['ok', 'insufficient_stock'], why()).toContain(got(out));
      else expect(got(out), why()).toBe('order_cancelled');
      return;
    }
    case 'cancel': {
      const id = pick(c.order);
      if (!id) return;
      const o = await orderState(id);
      const out = await attempt(() => cancelOrder(t.db, { order: id, actor: ACTOR }));
      say(`cancel ${id} (${o.status}) -> ${out.ok ? out.value.outcome : describeError(out.error)}`);
      expect(out.ok ? out.value.outcome : codeOf(out.error), why()).toBe(o.status === 'pending' ? 'cancelled' : o.status === 'cancelled' ? 'already_cancelled' : 'order_paid');
      return;
    }
    case 'extend': {
      const id = pick(c.order);
      if (!id) return;
      const o = await orderState(id);
      const out = await attempt(() => extendOrder(t.db, { order: id, ttlSeconds: 3600, actor: ACTOR }));
      say(`extend ${id} (${o.status}${o.passed ? ', passed' : ''}) -> ${out.ok ? 'ok' : describeError(out.error)}`);
      if (o.status === 'pending' && o.near) return;
      expect(out.ok, why()).toBe(o.status === 'pending' && !o.passed);
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
      const [{ due, near }] = await t.sql<{ due: number; near: number }[]>`
        SELECT count(*) FILTER (WHERE payment_expires_at < now())::int AS due,
               count(*) FILTER (WHERE payment_expires_at >= now() AND payment_expires_at < now() + make_interval(secs => ${NEAR_S}))::int AS near
          FROM orders WHERE status = 'pending'`;
      const out = await attempt(() => expireDueOrders(t.db, { actor: ACTOR, batchSize: 2 }));
      say(`sweep (${due} due, ${near} about to be) -> ${out.ok ? `${out.value.expired_orders} expired` : describeError(out.error)}`);
      expect(out.ok, why()).toBe(true);
      if (!out.ok) return;
      // Every order due is expired; one whose deadline passes meanwhile may be too, or be left due.
      expect(out.value.expired_orders, why()).toBeGreaterThanOrEqual(due);
      expect(out.value.expired_orders + out.value.remaining_due, why()).toBeLessThanOrEqual(due + near);
      return;
    }
    case 'wait': {
      // Real time passes: every one-second window made so far has ended.
      await new Promise((resolve) => setTimeout(resolve, SHORT_WINDOW_S * 1000 + 50));
      say('wait a second');
      return;
    }
    case 'set':
    case 'adjust': {
      const locs = await locations();
      const l = (await levels()).get(`${c.sku}@${c.at}`) ?? { stock: 0, reserved: 0 };
      const out = await attempt(() =>
        changeStock(t.db, c.kind === 'set' ? { sku: c.sku, location: c.at, quantity: c.quantity, actor: ACTOR } : { sku: c.sku, location: c.at, delta: c.delta, actor: ACTOR }),
      );
      const target = c.kind === 'set' ? c.quantity : l.stock + c.delta;
      say(`${c.kind} ${c.sku}@${c.at} ${c.kind === 'set' ? c.quantity : c.delta} (stock ${l.stock}, reserved ${l.reserved}) -> ${out.ok ? 'ok' : describeError(out.error)}`);
      const expected = !locs.has(c.at) ? 'location_not_found' : target < 0 ? 'stock_below_zero' : target < l.reserved ? 'stock_below_reserved' : 'ok';
      expect(got(out), why()).toBe(expected);
      return;
    }
    case 'send': {
      const locs = await locations();
      const l = (await levels()).get(`${c.sku}@${c.from}`) ?? { stock: 0, reserved: 0 };
      const out = await attempt(() => sendTransfer(t.db, { sku: c.sku, quantity: c.quantity, from: c.from, to: c.to, actor: ACTOR }));
      say(`send ${c.quantity} ${c.sku} ${c.from}→${c.to} (stock ${l.stock}, reserved ${l.reserved}) -> ${out.ok ? `transfer ${out.value.transfer_id}` : describeError(out.error)}`);
      const expected =
        c.from === c.to ? 'invalid_input' : !locs.has(c.from) || !locs.has(c.to) ? 'location_not_found' : l.stock - l.reserved < c.quantity ? 'transfer_exceeds_available' : 'ok';
      if (expected === 'invalid_input') expect(out.ok, why()).toBe(false);
      else expect(got(out), why()).toBe(expected);
      if (out.ok) transfers.push(out.value.transfer_id);
      return;
    }
    case 'close': {
      if (transfers.length === 0) return;
      const id = transfers[c.transfer % transfers.length];
      const [{ status }] = await t.sql<{ status: string }[]>`SELECT status FROM transfers WHERE transfer_id = ${id}`;
      const out = await attempt(() => closeTransfer(t.db, { transferId: id, how: c.how, actor: ACTOR }));
      say(`transfer ${c.how} ${id} (${status}) -> ${out.ok ? out.value.status : describeError(out.error)}`);
      const wanted = c.how === 'receive' ? 'received' : 'cancelled';
      expect(got(out), why()).toBe(status === 'in_transit' || status === wanted ? 'ok' : 'transfer_closed');
      return;
    }
    case 'active': {
      const locs = await locations();
      const out = await attempt(() => setLocation(t.db, { code: c.at, active: c.active, actor: ACTOR }));
      say(`location ${c.at} active=${c.active} -> ${out.ok ? 'ok' : describeError(out.error)}`);
      expect(got(out), why()).toBe(locs.has(c.at) ? 'ok' : 'location_not_found');
      return;
    }
    case 'addLocation': {
      const locs = await locations();
      const out = await attempt(() => addLocation(t.db, { code: 'P4', name: 'P4', priority: PRIORITY.P4 }));
      say(`location add P4 -> ${out.ok ? 'ok' : describeError(out.error)}`);
      expect(got(out), why()).toBe(locs.has('P4') ? 'location_exists' : 'ok');
      return;
    }
  }
}

describe('random command sequences over several locations keep every invariant', () => {
  it('40 commands per run over 3 SKUs and up to 4 locations (PROP_RUNS runs, default 20)', async () => {
    const seed = process.env.PROP_SEED ? Number(process.env.PROP_SEED) : undefined;
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 40, maxLength: 40 }), async (cmds) => {
        await reset();
        const orders: string[] = [];
        const transfers: number[] = [];
        const log: string[] = [];
        for (const c of cmds) {
          await step(c, orders, transfers, log);
          expect(await locationViolations(t.db, t.sql), `after:\n${log.join('\n')}`).toEqual([]);
        }
        if (process.env.PROP_DEBUG === '1') console.info(log.join('\n'));
      }),
      { numRuns: Number(process.env.PROP_RUNS ?? 20), seed, interruptAfterTimeLimit: 75_000, markInterruptAsFailure: false, endOnFailure: process.env.PROP_SHRINK !== '1' },
    );
  }, 120_000);
});
