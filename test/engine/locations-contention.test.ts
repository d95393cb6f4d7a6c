/**
 * Stock in several locations under contention, through the engine on connections of
 * their own (and, for `batched`, many calls on one pool, as one process makes them):
 * the last units spread over two locations, multi-line orders crossing over several
 * locations, and transfers both ways at once. Exact counts; no deadlock, read from
 * PostgreSQL's own counter (a deadlock retried by the engine would otherwise go unseen).
 */
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../../src/db/client.js';
import { cancelOrder, payOrder, reserveOrder, type Strategy } from '../../src/engine/orders.js';
import { closeTransfer, sendTransfer } from '../../src/engine/transfers.js';
import { useTestDatabase } from '../helpers/db.js';
import { deadlocks, ensureLocations, levelsOf, locationViolations, seedSku, settle } from './_locations.js';
import { ACTOR, SETTINGS, attempt, describeError, sleep, tally, unexpected, withConnectionBudget, withPools, type Outcome } from './_support.js';

const t = useTestDatabase();
const LOCATIONS = [
  { code: 'A', priority: 20 },
  { code: 'B', priority: 10 },
];

/** A tiny deterministic PRNG, so that a failure can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('the last units spread over two locations (A=1, B=1), 50 concurrent buyers', () => {
  it('batched, 50 concurrent calls on one pool (one process): exactly 2 win, one at A, one at B', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    const sku = 'LAST-AB-batched-pool';
    await seedSku(t.db, sku, { A: 1, B: 1 });
    const outcomes = await withConnectionBudget('shared', async () => {
      const pool = await openDatabase({ url: t.url, max: 10, application: 'stockctl-engine-test-batched' });
      try {
        return await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            attempt(() => reserveOrder(pool.db, { lines: [{ sku, quantity: 1 }], strategy: 'batched', customerId: `b-${i}`, actor: ACTOR }, SETTINGS)),
          ),
        );
      } finally {
        await pool.close();
      }
    });
    expect(unexpected(outcomes, ['insufficient_stock'])).toEqual([]);
    expect(tally(outcomes)).toEqual({ ok: 2, insufficient_stock: 48 });
    const at = outcomes.flatMap((o) => (o.ok ? o.value.items[0].allocations.map((a) => a.location) : [])).sort();
    expect(at).toEqual(['A', 'B']);
    expect(await levelsOf(t.sql, sku)).toEqual({ A: { stock: 1, reserved: 1, incoming: 0 }, B: { stock: 1, reserved: 1, incoming: 0 } });
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
  });

  for (const strategy of ['guarded', 'locking', 'optimistic', 'batched'] as const satisfies readonly Strategy[]) {
    it(`${strategy}, 50 separate connections: exactly 2 win, 48 get exit 3; A and B each reserve 1`, async () => {
      await ensureLocations(t.db, t.sql, LOCATIONS);
      const sku = `LAST-AB-${strategy}`;
      await seedSku(t.db, sku, { A: 1, B: 1 });
      // Optimistic must not give up while a unit is left: enough attempts to see the end.
      const settings = { ...SETTINGS, maxStockRetryAttempts: 100, stockRetryBackoffMs: 2 };
      const outcomes = await withConnectionBudget('exclusive', () =>
        withPools(t.url, 50, (dbs) =>
          Promise.all(
            dbs.map((db, i) => attempt(() => reserveOrder(db, { lines: [{ sku, quantity: 1 }], strategy, customerId: `c-${i}`, actor: ACTOR }, settings))),
          ),
        ),
      );
      expect(unexpected(outcomes, ['insufficient_stock'])).toEqual([]);
      expect(tally(outcomes)).toEqual({ ok: 2, insufficient_stock: 48 });
      for (const o of outcomes) if (!o.ok) expect((o.error as { exitCode: number }).exitCode).toBe(3);
      const at = outcomes.flatMap((o) => (o.ok ? o.value.items[0].allocations.map((a) => a.location) : [])).sort();
      expect(at).toEqual(['A', 'B']);
      expect(await levelsOf(t.sql, sku)).toEqual({ A: { stock: 1, reserved: 1, incoming: 0 }, B: { stock: 1, reserved: 1, incoming: 0 } });
      expect(await locationViolations(t.db, t.sql)).toEqual([]);
    }, 90_000);
  }

  it('a line of 2 split over A=1 and B=1 against one-unit buyers: never more than the 2 units go', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    const sku = 'LAST-AB-split';
    await seedSku(t.db, sku, { A: 1, B: 1 });
    const outcomes = await withConnectionBudget('shared', () =>
      withPools(t.url, 20, (dbs) =>
        Promise.all(
          dbs.map((db, i) =>
            attempt(() =>
              reserveOrder(db, { lines: [{ sku, quantity: i % 4 === 0 ? 2 : 1 }], split: 'units', strategy: (['guarded', 'locking', 'batched'] as const)[i % 3], actor: ACTOR }, SETTINGS),
            ),
          ),
        ),
      ),
    );
    expect(unexpected(outcomes, ['insufficient_stock'])).toEqual([]);
    const units = outcomes.reduce((n, o) => n + (o.ok ? o.value.items[0].quantity : 0), 0);
    expect(units).toBe(2);
    expect(await levelsOf(t.sql, sku)).toEqual({ A: { stock: 1, reserved: 1, incoming: 0 }, B: { stock: 1, reserved: 1, incoming: 0 } });
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
  });
});

describe('deadlocks are counted', () => {
  // The measurement the tests below rely on: two sessions locking two levels in opposite
  // orders deadlock, and pg_stat_database.deadlocks goes up by one.
  it('a deliberate deadlock between two levels moves pg_stat_database.deadlocks by 1', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    await seedSku(t.db, 'DL-PROBE', { A: 1, B: 1 });
    await settle(t.sql);
    const before = await deadlocks(t.sql);
    const outcomes = await withPools(t.url, 2, (dbs) => {
      const lockBoth = (db: Db, first: string, second: string) =>
        attempt(() =>
          db.transaction(async (tx) => {
            await tx.execute(sql`SELECT 1 FROM stock_levels WHERE sku = 'DL-PROBE' AND location = ${first} FOR UPDATE`);
            await sleep(300);
            await tx.execute(sql`SELECT 1 FROM stock_levels WHERE sku = 'DL-PROBE' AND location = ${second} FOR UPDATE`);
          }),
        );
      return Promise.all([lockBoth(dbs[0], 'A', 'B'), lockBoth(dbs[1], 'B', 'A')]);
    });
    expect(outcomes.filter((o) => !o.ok).map((o) => describeError((o as { error: unknown }).error))).toEqual([expect.stringContaining('40P01')]);
    await settle(t.sql);
    expect((await deadlocks(t.sql)) - before).toBe(1);
  });
});

describe('multi-line orders crossing over two locations', () => {
  it('X:1 Y:1 and Y:1 X:1 from 40 connections at once, some pinned, with pays and cancels: no deadlock, every unit accounted for', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    const seed = Number(process.env.RACE_SEED ?? Date.now() % 100000);
    const rand = prng(seed);
    const INITIAL = 150;
    await seedSku(t.db, 'CROSS-X', { A: INITIAL, B: INITIAL });
    await seedSku(t.db, 'CROSS-Y', { A: INITIAL, B: INITIAL });
    const CONNECTIONS = 40;
    const PER_CONNECTION = 4;
    type Plan = { reversed: boolean; location?: string; strategy: Strategy; then: 'pay' | 'cancel' | 'keep' };
    const plans: Plan[][] = Array.from({ length: CONNECTIONS }, (_, c) =>
      Array.from({ length: PER_CONNECTION }, (_, k) => ({
        reversed: (c + k) % 2 === 1,
        location: [undefined, undefined, 'A', 'B'][Math.floor(rand() * 4)],
        strategy: (['guarded', 'locking', 'optimistic', 'batched'] as const)[Math.floor(rand() * 4)],
        then: (['pay', 'cancel', 'keep'] as const)[Math.floor(rand() * 3)],
      })),
    );
    await settle(t.sql);
    const before = await deadlocks(t.sql);
    const settings = { ...SETTINGS, maxStockRetryAttempts: 100, stockRetryBackoffMs: 2 };
    const results = await withConnectionBudget('shared', () =>
      withPools(t.url, CONNECTIONS, (dbs) =>
        Promise.all(
          dbs.map(async (db, c) => {
            const out: { plan: Plan; reserve: Outcome<{ order_id: string; items: { sku: string; allocations: { location: string; quantity: number }[] }[] }>; after?: Outcome<unknown> }[] = [];
            for (const plan of plans[c]) {
              const lines = plan.reversed
                ? [{ sku: 'CROSS-Y', quantity: 1 }, { sku: 'CROSS-X', quantity: 1 }]
                : [{ sku: 'CROSS-X', quantity: 1 }, { sku: 'CROSS-Y', quantity: 1 }];
              const reserve = await attempt(() => reserveOrder(db, { lines, location: plan.location, strategy: plan.strategy, actor: ACTOR }, settings));
              let after: Outcome<unknown> | undefined;
              if (reserve.ok && plan.then === 'pay') after = await attempt(() => payOrder(db, { order: reserve.value.order_id, actor: ACTOR }));
              if (reserve.ok && plan.then === 'cancel') after = await attempt(() => cancelOrder(db, { order: reserve.value.order_id, actor: ACTOR }));
              out.push({ plan, reserve, after });
            }
            return out;
          }),
        ),
      ),
    );
    const all = results.flat();
    const context = `(RACE_SEED=${seed})`;
    expect(unexpected(all.map((r) => r.reserve), []), context).toEqual([]);
    expect(unexpected(all.flatMap((r) => (r.after ? [r.after] : [])), []), context).toEqual([]);
    await settle(t.sql);
    expect((await deadlocks(t.sql)) - before, `deadlocks during the run ${context}`).toBe(0);

    // Every order got both lines, pinned ones at their location; per level, what was sold
    // and what is held adds up to exactly what the orders took there.
    const sold: Record<string, number> = {};
    const held: Record<string, number> = {};
    for (const r of all) {
      if (!r.reserve.ok) continue;
      expect(r.reserve.value.items.map((i) => i.sku)).toEqual(['CROSS-X', 'CROSS-Y']);
      for (const item of r.reserve.value.items) {
        for (const a of item.allocations) {
          if (r.plan.location) expect(a.location).toBe(r.plan.location);
          const key = `${item.sku}@${a.location}`;
          if (r.plan.then === 'pay') sold[key] = (sold[key] ?? 0) + a.quantity;
          if (r.plan.then === 'keep') held[key] = (held[key] ?? 0) + a.quantity;
        }
      }
    }
    for (const sku of ['CROSS-X', 'CROSS-Y']) {
      const levels = await levelsOf(t.sql, sku);
      for (const loc of ['A', 'B']) {
        expect(levels[loc], `${sku}@${loc}`).toEqual({ stock: INITIAL - (sold[`${sku}@${loc}`] ?? 0), reserved: held[`${sku}@${loc}`] ?? 0, incoming: 0 });
      }
    }
    expect(await locationViolations(t.db, t.sql), context).toEqual([]);
  }, 120_000);
});

describe('transfers both ways at once', () => {
  it('A→B racing B→A sends, receives, cancels and reserves from 20 connections: no deadlock, every unit accounted for', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    const seed = Number(process.env.RACE_SEED ?? Date.now() % 100000);
    const rand = prng(seed);
    const sku = 'XFER-BOTH';
    await seedSku(t.db, sku, { A: 150, B: 150 });
    const CONNECTIONS = 20;
    const STEPS = 12;
    const steps = Array.from({ length: CONNECTIONS }, (_, c) =>
      Array.from({ length: STEPS }, (_, k) => ({
        from: (c + k) % 2 === 0 ? 'A' : 'B',
        quantity: 1 + Math.floor(rand() * 4),
        close: (['receive', 'cancel', 'keep', 'reserve'] as const)[Math.floor(rand() * 4)],
      })),
    );
    await settle(t.sql);
    const before = await deadlocks(t.sql);
    const outcomes: Outcome<unknown>[] = [];
    let reservedUnits = 0;
    await withConnectionBudget('shared', () =>
      withPools(t.url, CONNECTIONS, (dbs) =>
        Promise.all(
          dbs.map(async (db, c) => {
            for (const s of steps[c]) {
              const to = s.from === 'A' ? 'B' : 'A';
              const sent = await attempt(() => sendTransfer(db, { sku, quantity: s.quantity, from: s.from, to, actor: ACTOR }));
              outcomes.push(sent);
              if (s.close === 'reserve') {
                const r = await attempt(() => reserveOrder(db, { lines: [{ sku, quantity: 1 }], location: to, actor: ACTOR }, SETTINGS));
                if (r.ok) reservedUnits++;
                outcomes.push(r);
              } else if (sent.ok && s.close !== 'keep') {
                outcomes.push(await attempt(() => closeTransfer(db, { transferId: sent.value.transfer_id, how: s.close as 'receive' | 'cancel', actor: ACTOR })));
              }
            }
          }),
        ),
      ),
    );
    const context = `(RACE_SEED=${seed})`;
    expect(unexpected(outcomes, ['transfer_exceeds_available', 'insufficient_stock']), context).toEqual([]);
    await settle(t.sql);
    expect((await deadlocks(t.sql)) - before, `deadlocks during the run ${context}`).toBe(0);

    const levels = await levelsOf(t.sql, sku);
    const transfers = await t.sql<{ status: string; to: string; from: string; n: number; units: number }[]>`
      SELECT status, to_location AS to, from_location AS from, count(*)::int AS n, sum(quantity)::int AS units
        FROM transfers WHERE sku = ${sku} GROUP BY 1, 2, 3`;
    const units = (status: string, where: { to?: string; from?: string }) =>
      transfers.filter((x) => x.status === status && (!where.to || x.to === where.to) && (!where.from || x.from === where.from)).reduce((n, x) => n + x.units, 0);
    expect(transfers.length).toBeGreaterThan(0);
    // Every unit is on hand somewhere or on its way: 300 in all.
    expect(levels.A.stock + levels.B.stock + levels.A.incoming + levels.B.incoming, context).toBe(300);
    for (const [here, there] of [
      ['A', 'B'],
      ['B', 'A'],
    ]) {
      expect(levels[here].incoming, `${here} incoming ${context}`).toBe(units('in_transit', { to: here }));
      // On hand: the start, less what left and is not back, plus what arrived.
      expect(levels[here].stock, `${here} on hand ${context}`).toBe(
        150 - units('in_transit', { from: here }) - units('received', { from: here }) + units('received', { from: there }),
      );
      expect(levels[here].stock).toBeGreaterThanOrEqual(levels[here].reserved);
    }
    expect(levels.A.reserved + levels.B.reserved).toBe(reservedUnits);
    const [{ untagged }] = await t.sql<{ untagged: number }[]>`
      SELECT count(*)::int AS untagged FROM stock_movements WHERE sku = ${sku} AND kind LIKE 'transfer%' AND transfer_id IS NULL`;
    expect(untagged).toBe(0);
    console.info(`[locations-contention] transfers both ways ${context}: ${JSON.stringify(tally(outcomes))}; ${transfers.map((x) => `${x.n} ${x.from}→${x.to} ${x.status}`).join(', ')}`);
    expect(await locationViolations(t.db, t.sql), context).toEqual([]);
  }, 120_000);
});

