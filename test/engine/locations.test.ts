/**
 * Stock in several locations, one command at a time: where each split policy takes an
 * order's units from, demand summed per SKU before it is checked, a recount never below
 * what a location has reserved, and an inactive location that neither adds to nor hides
 * another's availability. Through the CLI, as a user's script meets it, exact counts.
 */
import { describe, expect, it } from 'vitest';
import { reserveOrder, type Strategy } from '../../src/engine/orders.js';
import { InsufficientStockError } from '../../src/errors.js';
import { useTestDatabase } from '../helpers/db.js';
import { holdLock } from '../helpers/locks.js';
import { ensureLocations, levelsOf, locationViolations, outcomeOf, seedSku } from './_locations.js';
import { ACTOR, SETTINGS, attempt, codeOf, describeError, expireNow } from './_support.js';

const t = useTestDatabase();

interface Allocation {
  location: string;
  quantity: number;
  reservation_id: string;
}
interface Reserved {
  order_id: string;
  items: { sku: string; quantity: number; allocations: Allocation[] }[];
}
interface Refusal {
  error: { code: string; message: string; shortages?: { sku: string; requested: number; available: number; available_total?: number }[] };
}

const A_B_C = [
  { code: 'SA', priority: 30 },
  { code: 'SB', priority: 20 },
  { code: 'SC', priority: 10 },
];

const allocationsOf = (r: Reserved) =>
  r.items.flatMap((i) => i.allocations.map((a) => ({ sku: i.sku, location: a.location, quantity: a.quantity })));

describe('split policies over A=2, B=2, C=3 (priorities A > B > C), one line of 5', () => {
  it('units: 2 from A, 2 from B, 1 from C; each level reserves that much', async () => {
    await ensureLocations(t.db, t.sql, A_B_C);
    await seedSku(t.db, 'SPLIT-U', { SA: 2, SB: 2, SC: 3 });
    const r = await t.cliJson<Reserved>(['reserve', 'SPLIT-U:5', '--split', 'units']);
    expect(r.code, r.stdout).toBe(0);
    expect(allocationsOf(r.json)).toEqual([
      { sku: 'SPLIT-U', location: 'SA', quantity: 2 },
      { sku: 'SPLIT-U', location: 'SB', quantity: 2 },
      { sku: 'SPLIT-U', location: 'SC', quantity: 1 },
    ]);
    expect(await levelsOf(t.sql, 'SPLIT-U')).toEqual({
      SA: { stock: 2, reserved: 2, incoming: 0 },
      SB: { stock: 2, reserved: 2, incoming: 0 },
      SC: { stock: 3, reserved: 1, incoming: 0 },
    });
    // One reservation and one ledger row per (line, location).
    const rows = await t.sql<{ location: string; reservations: number; ledger: number }[]>`
      SELECT r.location, count(DISTINCT r.reservation_id)::int AS reservations, count(m.movement_id)::int AS ledger
        FROM stock_reservations r LEFT JOIN stock_movements m ON m.reservation_id = r.reservation_id
       WHERE r.order_id = ${r.json.order_id} GROUP BY r.location ORDER BY r.location`;
    expect(rows).toEqual([
      { location: 'SA', reservations: 1, ledger: 1 },
      { location: 'SB', reservations: 1, ledger: 1 },
      { location: 'SC', reservations: 1, ledger: 1 },
    ]);
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
    expect((await t.cli(['verify'])).code).toBe(0);
  });

  for (const policy of ['lines', 'never'] as const) {
    it(`${policy}: exit 3 naming requested 5, available 3 (the most one location has), 7 in all; nothing reserved`, async () => {
      await ensureLocations(t.db, t.sql, A_B_C);
      const sku = `SPLIT-${policy}`;
      await seedSku(t.db, sku, { SA: 2, SB: 2, SC: 3 });
      const r = await t.cliJson<Refusal>(['reserve', `${sku}:5`, '--split', policy]);
      expect(r.code).toBe(3);
      expect(r.json.error.code).toBe('insufficient_stock');
      expect(r.json.error.shortages).toEqual([{ sku, requested: 5, available: 3, available_total: 7 }]);
      expect(r.json.error.message).toContain('requested 5');
      expect(Object.values(await levelsOf(t.sql, sku)).map((l) => l.reserved)).toEqual([0, 0, 0]);
      const [{ n }] = await t.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM order_items WHERE sku = ${sku}`;
      expect(n).toBe(0);
    });
  }

  it('SPLIT_POLICY in the environment is the default policy (never), --split overrides it', async () => {
    await ensureLocations(t.db, t.sql, A_B_C);
    await seedSku(t.db, 'SPLIT-ENV', { SA: 2, SB: 2, SC: 3 });
    const refused = await t.cli(['reserve', 'SPLIT-ENV:5', '--json'], { env: { SPLIT_POLICY: 'never' } });
    expect(outcomeOf(refused)).toBe('exit 3 insufficient_stock');
    const taken = await t.cliJson<Reserved>(['reserve', 'SPLIT-ENV:5', '--split', 'units'], { env: { SPLIT_POLICY: 'never' } });
    expect(taken.code).toBe(0);
    expect(allocationsOf(taken.json).map((a) => a.quantity)).toEqual([2, 2, 1]);
  });

  it('no location covers both lines, each line fits one: lines takes each from its own, never refuses', async () => {
    await ensureLocations(t.db, t.sql, A_B_C);
    await seedSku(t.db, 'TWO-X', { SA: 2, SB: 0 });
    await seedSku(t.db, 'TWO-Y', { SA: 0, SB: 2 });
    const never = await t.cliJson<Refusal>(['reserve', 'TWO-X:2', 'TWO-Y:2', '--split', 'never']);
    expect(never.code).toBe(3);
    expect(never.json.error.code).toBe('insufficient_stock');
    const lines = await t.cliJson<Reserved>(['reserve', 'TWO-Y:2', 'TWO-X:2', '--split', 'lines']);
    expect(lines.code, lines.stdout).toBe(0);
    expect(allocationsOf(lines.json)).toEqual([
      { sku: 'TWO-X', location: 'SA', quantity: 2 },
      { sku: 'TWO-Y', location: 'SB', quantity: 2 },
    ]);
    expect(await levelsOf(t.sql, 'TWO-X')).toMatchObject({ SA: { reserved: 2 }, SB: { reserved: 0 } });
    expect(await levelsOf(t.sql, 'TWO-Y')).toMatchObject({ SA: { reserved: 0 }, SB: { reserved: 2 } });
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
  });

  it('one location covering every line is used whole, whatever the policy (C, though A and B have some)', async () => {
    await ensureLocations(t.db, t.sql, A_B_C);
    await seedSku(t.db, 'WHOLE', { SA: 1, SB: 1, SC: 3 });
    const r = await t.cliJson<Reserved>(['reserve', 'WHOLE:3', '--split', 'units']);
    expect(r.code).toBe(0);
    expect(allocationsOf(r.json)).toEqual([{ sku: 'WHOLE', location: 'SC', quantity: 3 }]);
  });
});

describe('expired orders never make a reserve fail, whatever the policy', () => {
  // A: X and Z held by an order past its window, Y free. B: X and Z free, no Y. Before the
  // expired order is released no one location has all three lines; after it (as a sweep
  // would release it), A has.
  async function setUp(split: string) {
    await ensureLocations(t.db, t.sql, A_B_C);
    const [x, y, z] = ['X', 'Y', 'Z'].map((s) => `EXP-${split}-${s}`);
    await seedSku(t.db, x, { SA: 1, SB: 1 });
    await seedSku(t.db, y, { SA: 1, SB: 0 });
    await seedSku(t.db, z, { SA: 1, SB: 1 });
    const holder = await reserveOrder(t.db, { lines: [{ sku: x, quantity: 1 }, { sku: z, quantity: 1 }], location: 'SA', actor: ACTOR }, SETTINGS);
    await expireNow(t.sql, [holder.order_id]);
    return [x, y, z].map((sku) => ({ sku, quantity: 1 }));
  }

  // B covers two of the three lines and A one, so the shortage under `never` names only Y,
  // the line B lacks: releasing only Y's expired holders (there are none) would refuse an
  // order A can take whole once the expired holder of X and Z there is released.
  it('never: X:1 Y:1 Z:1 is taken whole at A once the expired holder of X and Z there is released', async () => {
    const lines = await setUp('never');
    const out = await attempt(() => reserveOrder(t.db, { lines, split: 'never', actor: ACTOR }, SETTINGS));
    expect(out.ok ? 'ok' : describeError(out.error)).toBe('ok');
    if (!out.ok) return;
    expect(out.value.expired_orders_released).toBe(1);
    expect(out.value.items.map((i) => i.allocations.map((a) => a.location).join(','))).toEqual(['SA', 'SA', 'SA']);
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
  });

  for (const split of ['lines', 'units'] as const) {
    it(`${split}: the same order succeeds (each line from where it is free)`, async () => {
      const lines = await setUp(split);
      const out = await attempt(() => reserveOrder(t.db, { lines, split, actor: ACTOR }, SETTINGS));
      expect(out.ok ? 'ok' : describeError(out.error)).toBe('ok');
      expect(await locationViolations(t.db, t.sql)).toEqual([]);
    });
  }
});

describe('two lines of one order on the same SKU', () => {
  // A=2, B=2: each line alone (1, then 2) fits one location; together (3) they do not.
  it('`reserve TEE:1 TEE:2` sums the demand (3) first: units takes 3 over A and B, never refuses', async () => {
    await ensureLocations(t.db, t.sql, A_B_C);
    await seedSku(t.db, 'SAME', { SA: 2, SB: 2 });
    const never = await t.cliJson<Refusal>(['reserve', 'SAME:1', 'SAME:2', '--split', 'never']);
    expect(never.code).toBe(3);
    expect(never.json.error.shortages).toEqual([{ sku: 'SAME', requested: 3, available: 2, available_total: 4 }]);
    expect(Object.values(await levelsOf(t.sql, 'SAME')).map((l) => l.reserved)).toEqual([0, 0]);

    const units = await t.cliJson<Reserved>(['reserve', 'SAME:1', 'SAME:2', '--split', 'units']);
    expect(units.code, units.stdout).toBe(0);
    const levels = await levelsOf(t.sql, 'SAME');
    expect(levels.SA.reserved + levels.SB.reserved).toBe(3);
    expect(levels).toEqual({ SA: { stock: 2, reserved: 2, incoming: 0 }, SB: { stock: 2, reserved: 1, incoming: 0 } });
    const [{ ordered }] = await t.sql<{ ordered: number }[]>`
      SELECT sum(quantity)::int AS ordered FROM order_items WHERE order_id = ${units.json.order_id}`;
    expect(ordered).toBe(3);
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
  });

  for (const strategy of ['guarded', 'optimistic', 'locking', 'batched'] as const satisfies readonly Strategy[]) {
    it(`engine, ${strategy}: the same SKU twice is 3 against A=2, B=2: never refuses, lines refuses, units takes 3`, async () => {
      await ensureLocations(t.db, t.sql, A_B_C);
      const sku = `SAME-${strategy}`;
      await seedSku(t.db, sku, { SA: 2, SB: 2 });
      const lines = [
        { sku, quantity: 1 },
        { sku, quantity: 2 },
      ];
      for (const split of ['never', 'lines'] as const) {
        const out = await attempt(() => reserveOrder(t.db, { lines, strategy, split, actor: ACTOR }, SETTINGS));
        expect(out.ok ? 'ok' : codeOf(out.error), split).toBe('insufficient_stock');
        expect((out as { error: InsufficientStockError }).error.shortages).toEqual([{ sku, requested: 3, available: 2, available_total: 4 }]);
      }
      const ok = await reserveOrder(t.db, { lines, strategy, split: 'units', actor: ACTOR }, SETTINGS);
      expect(ok.items.flatMap((i) => i.allocations).length).toBeGreaterThan(0);
      const levels = await levelsOf(t.sql, sku);
      expect(levels.SA.reserved + levels.SB.reserved).toBe(3);
      expect(await locationViolations(t.db, t.sql)).toEqual([]);
    });
  }
});

describe('a recount at one location', () => {
  it('below what the location has reserved is refused (exit 5, stock_below_reserved), nothing changes; B can go to 0', async () => {
    await ensureLocations(t.db, t.sql, A_B_C);
    await seedSku(t.db, 'RECOUNT', { SA: 1, SB: 1 });
    const held = await t.cliJson<Reserved>(['reserve', 'RECOUNT:1', '--location', 'SA']);
    expect(held.code).toBe(0);
    const before = await levelsOf(t.sql, 'RECOUNT');
    expect(before).toEqual({ SA: { stock: 1, reserved: 1, incoming: 0 }, SB: { stock: 1, reserved: 0, incoming: 0 } });
    const [{ ledger }] = await t.sql<{ ledger: number }[]>`SELECT count(*)::int AS ledger FROM stock_movements WHERE sku = 'RECOUNT'`;

    const refused = await t.cliJson<Refusal>(['stock', 'set', 'RECOUNT', '0', '--location', 'SA']);
    expect(refused.code).toBe(5);
    expect(refused.json.error.code).toBe('stock_below_reserved');
    const adjusted = await t.cliJson<Refusal>(['stock', 'adjust', 'RECOUNT', '-1', '--location', 'SA']);
    expect(adjusted.code).toBe(5);
    expect(adjusted.json.error.code).toBe('stock_below_reserved');
    expect(await levelsOf(t.sql, 'RECOUNT')).toEqual(before);
    const [{ after }] = await t.sql<{ after: number }[]>`SELECT count(*)::int AS after FROM stock_movements WHERE sku = 'RECOUNT'`;
    expect(after).toBe(ledger);

    const b = await t.cli(['stock', 'set', 'RECOUNT', '0', '--location', 'SB', '--json']);
    expect(outcomeOf(b)).toBe('exit 0');
    expect(await levelsOf(t.sql, 'RECOUNT')).toEqual({ SA: { stock: 1, reserved: 1, incoming: 0 }, SB: { stock: 0, reserved: 0, incoming: 0 } });
    expect((await t.cli(['verify'])).code).toBe(0);
  });

  it('with several locations, a stock change must name one (exit 2, location_required)', async () => {
    await ensureLocations(t.db, t.sql, A_B_C);
    await seedSku(t.db, 'WHERE', { SA: 1 });
    const r = await t.cliJson<Refusal>(['stock', 'set', 'WHERE', '4']);
    expect(r.code).toBe(2);
    expect(r.json.error.code).toBe('location_required');
    expect(await levelsOf(t.sql, 'WHERE')).toEqual({ SA: { stock: 1, reserved: 0, incoming: 0 } });
  });

  it('`product add --stock N --location CODE` puts the initial stock at that location', async () => {
    await ensureLocations(t.db, t.sql, A_B_C);
    const r = await t.cli(['product', 'add', 'ADDED-AT', '--name', 'Added', '--stock', '4', '--location', 'SB', '--json']);
    expect(outcomeOf(r)).toBe('exit 0');
    expect(await levelsOf(t.sql, 'ADDED-AT')).toEqual({ SB: { stock: 4, reserved: 0, incoming: 0 } });
  });
});

describe('an inactive location', () => {
  const LOCS = [
    { code: 'IA', priority: 30 },
    { code: 'IB', priority: 50 },
  ];
  interface StockJson {
    items: { sku: string; stock_quantity: number; reserved_stock: number; available: number; in_stock: boolean }[];
  }

  it('neither adds to availability nor is reserved from, split or pinned; active again, its units sell', async () => {
    await ensureLocations(t.db, t.sql, LOCS);
    await seedSku(t.db, 'INACT', { IA: 1, IB: 5 });
    await t.cli(['location', 'set', 'IB', '--active', 'false']);

    const shown = await t.cliJson<StockJson>(['stock', 'INACT']);
    expect(shown.json.items).toEqual([expect.objectContaining({ sku: 'INACT', stock_quantity: 6, available: 1, in_stock: true })]);

    // Split over every location would find 6; only A's 1 may be sold.
    const split = await t.cliJson<Refusal>(['reserve', 'INACT:2', '--split', 'units']);
    expect(split.code).toBe(3);
    expect(split.json.error.shortages).toEqual([{ sku: 'INACT', requested: 2, available: 1 }]);
    const pinned = await t.cliJson<Refusal>(['reserve', 'INACT:1', '--location', 'IB']);
    expect(pinned.code).toBe(5);
    expect(pinned.json.error.code).toBe('location_inactive');
    // B has the higher priority, yet the one unit comes from A; then nothing is left.
    for (const strategy of ['guarded', 'batched', 'locking', 'optimistic']) {
      const r = await t.cli(['reserve', 'INACT:1', '--strategy', strategy, '--json']);
      expect(outcomeOf(r), strategy).toBe(strategy === 'guarded' ? 'exit 0' : 'exit 3 insufficient_stock');
    }
    expect(await levelsOf(t.sql, 'INACT')).toEqual({ IA: { stock: 1, reserved: 1, incoming: 0 }, IB: { stock: 5, reserved: 0, incoming: 0 } });
    // A stays stocked by the inactive location's counters: nothing leaks into totals.
    expect((await t.cliJson<StockJson>(['stock', 'INACT'])).json.items[0]).toMatchObject({ available: 0, in_stock: false });

    await t.cli(['location', 'set', 'IB', '--active', 'true']);
    expect((await t.cliJson<StockJson>(['stock', 'INACT'])).json.items[0]).toMatchObject({ available: 5, in_stock: true });
    const again = await t.cliJson<Reserved>(['reserve', 'INACT:5']);
    expect(again.code).toBe(0);
    expect(allocationsOf(again.json)).toEqual([{ sku: 'INACT', location: 'IB', quantity: 5 }]);
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
    expect((await t.cli(['verify'])).code).toBe(0);
  });

  it('a level with more reserved than on hand cannot exist, so none hides another: availability is the sum of each clamped at 0', async () => {
    await ensureLocations(t.db, t.sql, LOCS);
    await seedSku(t.db, 'CLAMP', { IA: 2, IB: 3 });
    await t.cliJson(['reserve', 'CLAMP:3', '--location', 'IB']);
    // IB is now 0 available: A's 2 stay available, whichever order they are summed in.
    const shown = await t.cliJson<StockJson>(['stock', 'CLAMP']);
    expect(shown.json.items[0]).toMatchObject({ stock_quantity: 5, reserved_stock: 3, available: 2 });
    const r = await t.cliJson<Reserved>(['reserve', 'CLAMP:2']);
    expect(allocationsOf(r.json)).toEqual([{ sku: 'CLAMP', location: 'IA', quantity: 2 }]);
  });
});

describe('report --by-location', () => {
  it("gives each location's units reserved, sold, expired and cancelled in the window, and its stock now", async () => {
    await ensureLocations(t.db, t.sql, [
      { code: 'RA', priority: 30 },
      { code: 'RB', priority: 20 },
    ]);
    await seedSku(t.db, 'REPORT-L', { RA: 2, RB: 3 });
    const split = await t.cliJson<Reserved>(['reserve', 'REPORT-L:4']);
    expect(split.code, split.stdout).toBe(0);
    expect((await t.cli(['pay', split.json.order_id])).code).toBe(0);
    const held = await t.cliJson<Reserved>(['reserve', 'REPORT-L:1']);
    expect(held.code, held.stdout).toBe(0);
    const r = await t.cliJson<{ by_location: Record<string, Record<string, number | boolean>> }>(['report', '--by-location', '--json']);
    expect(r.code, r.stdout).toBe(0);
    // Highest priority first (other tests of this file add locations of their own).
    expect(Object.keys(r.json.by_location).filter((code) => code.startsWith('R'))).toEqual(['RA', 'RB']);
    expect(r.json.by_location.RA).toMatchObject({ units_reserved: 2, units_sold: 2, units_held: 0, stock_quantity: 0, reserved_stock: 0, available: 0 });
    expect(r.json.by_location.RB).toMatchObject({ units_reserved: 3, units_sold: 2, units_held: 1, stock_quantity: 1, reserved_stock: 1, available: 0 });
    // Without the flag, the report is as it was.
    const plain = await t.cliJson<Record<string, unknown>>(['report', '--json']);
    expect(plain.json).not.toHaveProperty('by_location');
  });
});

describe("a location's own row", () => {
  it('is never locked by a reserve: with `location set` in flight on it, every strategy reserves there at once', async () => {
    await ensureLocations(t.db, t.sql, [{ code: 'HELD-LOC', priority: 50 }]);
    await seedSku(t.db, 'LOC-ROW', { 'HELD-LOC': 10 });
    // What `location set` holds until it commits: the location's row, updated.
    const held = await holdLock(t.url, `UPDATE locations SET name = name WHERE code = 'HELD-LOC'`);
    try {
      for (const strategy of ['guarded', 'optimistic', 'locking'] as Strategy[]) {
        const r = await reserveOrder(t.db, { lines: [{ sku: 'LOC-ROW', quantity: 1 }], strategy, actor: ACTOR }, SETTINGS);
        expect(r.items[0].allocations.map((a) => a.location), strategy).toEqual(['HELD-LOC']);
      }
      // Buyers at once, so that they go as batches (a lone one goes on its own).
      const batched = await Promise.all(
        Array.from({ length: 7 }, () => reserveOrder(t.db, { lines: [{ sku: 'LOC-ROW', quantity: 1 }], strategy: 'batched', actor: ACTOR }, SETTINGS)),
      );
      expect(batched.map((r) => r.items[0].allocations[0].location)).toEqual(Array(7).fill('HELD-LOC'));
    } finally {
      await held.release();
    }
    expect(await levelsOf(t.sql, 'LOC-ROW')).toEqual({ 'HELD-LOC': { stock: 10, reserved: 10, incoming: 0 } });
  });
});

describe('a ref covers where the units come from', () => {
  it('the same ref pinned elsewhere, or under another split policy, is a conflict (exit 5), not the first order', async () => {
    await ensureLocations(t.db, t.sql, [{ code: 'REF-A', priority: 40 }]);
    await seedSku(t.db, 'REF-L', { 'REF-A': 5 });
    const first = await t.cliJson<Reserved>(['reserve', 'REF-L:1', '--ref', 'ref-pinned', '--location', 'REF-A']);
    expect(first.code, first.stdout).toBe(0);
    const again = await t.cliJson<Reserved & { replay: boolean }>(['reserve', 'REF-L:1', '--ref', 'ref-pinned', '--location', 'REF-A']);
    expect([again.code, again.json.replay, again.json.order_id]).toEqual([0, true, first.json.order_id]);
    const unpinned = await t.cliJson<Refusal>(['reserve', 'REF-L:1', '--ref', 'ref-pinned']);
    expect([unpinned.code, unpinned.json.error.code]).toEqual([5, 'ref_conflict']);
    expect(unpinned.json.error.message).toContain('location "REF-A", not none');
    const otherPolicy = await t.cliJson<Refusal>(['reserve', 'REF-L:1', '--ref', 'ref-pinned', '--location', 'REF-A', '--split', 'never']);
    expect([otherPolicy.code, otherPolicy.json.error.code]).toEqual([5, 'ref_conflict']);
    expect(otherPolicy.json.error.message).toContain('split policy units, not never');
    expect(await levelsOf(t.sql, 'REF-L')).toEqual({ 'REF-A': { stock: 5, reserved: 1, incoming: 0 } });
  });
});
