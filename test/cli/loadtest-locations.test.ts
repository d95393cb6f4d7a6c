/**
 * `stockctl loadtest --locations N`: each SKU's stock spread over N locations of the run's
 * own, every strategy proved level by level, and nothing of it left behind. Exact counts,
 * no timing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LocationProof } from '../../src/loadtest/report.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

interface StrategyReport {
  strategy: string;
  buyers: number;
  successes: number;
  rejections: number;
  false_rejections: number;
  errors: number;
  units_reserved: number;
  expected_successes: number | null;
  violations: unknown[];
  mix?: { units_sold: number; paid: number };
  proof: { stock: number; sold: number; reserved: number; on_hand: number; verify_problems: number; locations?: LocationProof[] };
}
interface LoadtestReport {
  run_id: string;
  config: Record<string, unknown>;
  strategies: StrategyReport[];
  ok: boolean;
}

/** What a run may leave: its products, levels, ledger rows, orders, locations. */
async function leftovers() {
  const [row] = await t.sql`
    SELECT (SELECT count(*)::int FROM products WHERE sku LIKE 'loadtest-%') AS products,
           (SELECT count(*)::int FROM stock_levels WHERE sku LIKE 'loadtest-%') AS levels,
           (SELECT count(*)::int FROM stock_movements WHERE sku LIKE 'loadtest-%') AS movements,
           (SELECT count(*)::int FROM stock_reservations WHERE sku LIKE 'loadtest-%') AS reservations,
           (SELECT count(*)::int FROM transfers WHERE sku LIKE 'loadtest-%') AS transfers,
           (SELECT count(*)::int FROM order_items WHERE sku LIKE 'loadtest-%') AS order_items,
           (SELECT count(*)::int FROM locations WHERE code LIKE 'loadtest-%') AS locations`;
  return row;
}
const NOTHING = { products: 0, levels: 0, movements: 0, reservations: 0, transfers: 0, order_items: 0, locations: 0 };

/** Every check at a location holds: the figures a sound run must show there. */
function expectSound(l: LocationProof, what: string) {
  expect(l.sold + l.on_hand, what).toBe(l.stock);
  expect(l.sold + l.reserved, what).toBeLessThanOrEqual(l.stock);
  expect(l.reserved, what).toBeLessThanOrEqual(l.on_hand);
  expect(l.ledger_on_hand, what).toBe(l.on_hand);
  expect(l.ledger_reserved, what).toBe(l.reserved);
  expect(l.active_reservations, what).toBe(l.reserved);
  expect(l.bad_levels, what).toBe(0);
}

describe('loadtest --locations', () => {
  it('3 locations, 60 buyers, 20 units: every strategy ok, guarded/locking/batched reserve exactly 20, each location to its share; nothing left, verify clean', async () => {
    // A real product and a real second location: the run must touch neither.
    expect((await t.cli(['product', 'add', 'REAL', '--name', 'Real', '--stock', '4'])).code).toBe(0);
    expect((await t.cli(['location', 'add', 'shop', '--name', 'Shop', '--priority', '50'])).code).toBe(0);
    const [realBefore] = await t.sql`SELECT location, stock_quantity, reserved_stock, version FROM stock_levels WHERE sku = 'REAL'`;

    const res = await t.cliJson<LoadtestReport>(['loadtest', '--buyers', '60', '--stock', '20', '--concurrency', '8', '--locations', '3'], { timeoutMs: 90_000 });
    expect(res.code, res.stdout).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.json).toMatchObject({ ok: true, config: { buyers: 60, stock: 20, skus: 1, locations: 3 } });
    expect(res.json.strategies.map((s) => s.strategy)).toEqual(['guarded', 'optimistic', 'locking', 'batched']);
    const codes = [1, 2, 3].map((i) => `loadtest-${res.json.run_id}-L${i}`);
    for (const s of res.json.strategies) {
      expect(s.violations, s.strategy).toEqual([]);
      expect(s.errors, s.strategy).toBe(0);
      expect(s.buyers, s.strategy).toBe(60);
      expect(s.successes + s.rejections + s.false_rejections, s.strategy).toBe(60);
      expect(s.units_reserved, s.strategy).toBe(s.successes);
      expect(s.expected_successes, s.strategy).toBe(20);
      expect(s.proof).toMatchObject({ stock: 20, sold: 0, reserved: s.successes, on_hand: 20, verify_problems: 0 });
      // 20 over 3: 6 each, the remainder of 2 at the highest priority.
      const at = s.proof.locations!;
      expect(at.map((l) => [l.location, l.priority, l.stock, l.levels])).toEqual([
        [codes[0], 3, 8, 1],
        [codes[1], 2, 6, 1],
        [codes[2], 1, 6, 1],
      ]);
      for (const l of at) expectSound(l, `${s.strategy} at ${l.location}`);
      expect(at.reduce((a, l) => a + l.reserved, 0), s.strategy).toBe(s.successes);
    }
    for (const name of ['guarded', 'locking', 'batched']) {
      const s = res.json.strategies.find((x) => x.strategy === name)!;
      expect(s, name).toMatchObject({ successes: 20, rejections: 40, false_rejections: 0, units_reserved: 20 });
      // Sold out: every location's share is reserved, and only that.
      expect(s.proof.locations!.map((l) => [l.reserved, l.on_hand]), name).toEqual([[8, 8], [6, 6], [6, 6]]);
    }
    expect(res.json.strategies.find((x) => x.strategy === 'optimistic')!.successes).toBeLessThanOrEqual(20);

    expect(await leftovers()).toEqual(NOTHING);
    const [realAfter] = await t.sql`SELECT location, stock_quantity, reserved_stock, version FROM stock_levels WHERE sku = 'REAL'`;
    expect(realAfter).toEqual(realBefore);
    expect((await t.sql`SELECT code FROM locations ORDER BY code`).map((r) => r.code)).toEqual(['default', 'shop']);
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });
  });

  it('2 units a buyer over shares of 4, 3 and 3: exactly 5 win (one across two locations), sold + reserved never above a share', async () => {
    const res = await t.cliJson<LoadtestReport>(
      ['loadtest', '--buyers', '12', '--stock', '10', '--quantity', '2', '--concurrency', '4', '--locations', '3'],
      { timeoutMs: 90_000 },
    );
    expect(res.code, res.stdout).toBe(0);
    for (const s of res.json.strategies) {
      expect(s.violations, s.strategy).toEqual([]);
      expect(s.proof.locations!.map((l) => l.stock)).toEqual([4, 3, 3]);
      for (const l of s.proof.locations!) expectSound(l, `${s.strategy} at ${l.location}`);
      if (s.strategy === 'optimistic') continue;
      // min(12 × 2, 10) units, 2 a buyer: no buyer turned away while 2 units are left anywhere.
      expect(s, s.strategy).toMatchObject({ successes: 5, rejections: 7, false_rejections: 0, units_reserved: 10 });
      expect(s.proof.locations!.map((l) => l.reserved), s.strategy).toEqual([4, 3, 3]);
    }
    expect(await leftovers()).toEqual(NOTHING);
  });

  it('--mix over 2 locations: paid + left = stock at each location and in all, nothing oversold', async () => {
    const res = await t.cliJson<LoadtestReport>(
      ['loadtest', '--mix', '--buyers', '60', '--stock', '15', '--concurrency', '6', '--locations', '2', '--strategy', 'batched'],
      { timeoutMs: 90_000 },
    );
    expect(res.code, res.stdout).toBe(0);
    const [s] = res.json.strategies;
    expect(s.violations).toEqual([]);
    const at = s.proof.locations!;
    expect(at.map((l) => [l.priority, l.stock])).toEqual([[2, 8], [1, 7]]);
    for (const l of at) expectSound(l, l.location);
    expect(at.reduce((a, l) => a + l.sold, 0)).toBe(s.mix!.units_sold);
    expect(at.reduce((a, l) => a + l.sold + l.on_hand, 0)).toBe(15);
    expect(s.mix!.units_sold + s.units_reserved).toBeLessThanOrEqual(15);
    expect(await leftovers()).toEqual(NOTHING);
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });
  });

  it('--chaos over 3 locations with 2-unit buyers: a line served from two locations is a whole order; every level sound', async () => {
    const res = await t.cliJson<LoadtestReport>(
      ['loadtest', '--chaos', '30ms', '--buyers', '150', '--stock', '50', '--quantity', '2', '--concurrency', '6', '--locations', '3'],
      { timeoutMs: 120_000 },
    );
    expect(res.code, res.stdout).toBe(0);
    expect(res.json.ok).toBe(true);
    for (const s of res.json.strategies) {
      expect(s.violations, s.strategy).toEqual([]);
      expect(s.proof.locations!.map((l) => l.stock)).toEqual([18, 16, 16]);
      for (const l of s.proof.locations!) expectSound(l, `${s.strategy} at ${l.location}`);
    }
    expect(await leftovers()).toEqual(NOTHING);
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });
  });

  it('one location (the default) with several in the database: the stock goes to default, the report as before', async () => {
    expect((await t.cli(['location', 'add', 'far', '--name', 'Far', '--priority', '9'])).code).toBe(0);
    const res = await t.cliJson<LoadtestReport>(['loadtest', '--buyers', '10', '--stock', '4', '--strategy', 'guarded', '--keep'], { timeoutMs: 60_000 });
    expect(res.code, res.stdout).toBe(0);
    expect(res.json.config.locations).toBeUndefined();
    expect(res.json.strategies[0]).toMatchObject({ successes: 4, rejections: 6 });
    expect(res.json.strategies[0].proof.locations).toBeUndefined();
    const levels = await t.sql`SELECT location, stock_quantity, reserved_stock FROM stock_levels WHERE sku LIKE ${`loadtest-${res.json.run_id}-%`}`;
    expect(levels).toEqual([{ location: 'default', stock_quantity: 4, reserved_stock: 4 }]);
    expect((await t.cli(['loadtest', '--cleanup'])).code).toBe(0);
    expect(await leftovers()).toEqual(NOTHING);
  });

  it('--keep leaves the run\'s locations, consistent; the next run names them; --cleanup removes them with the rest', async () => {
    const kept = await t.cliJson<LoadtestReport>(
      ['loadtest', '--buyers', '6', '--stock', '5', '--locations', '2', '--strategy', 'locking', '--keep'],
      { timeoutMs: 60_000 },
    );
    expect(kept.code, kept.stdout).toBe(0);
    const prefix = `loadtest-${kept.json.run_id}-`;
    const levels = await t.sql`SELECT location, stock_quantity, reserved_stock FROM stock_levels WHERE sku LIKE ${`${prefix}%`} ORDER BY location`;
    expect(levels).toEqual([
      { location: `${prefix}L1`, stock_quantity: 3, reserved_stock: 3 },
      { location: `${prefix}L2`, stock_quantity: 2, reserved_stock: 2 },
    ]);
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });

    const next = await t.cli(['loadtest', '--buyers', '2', '--stock', '1', '--strategy', 'guarded', '--json'], { timeoutMs: 60_000 });
    expect(next.code).toBe(0);
    expect(next.stderr).toBe(
      `Found leftovers of 1 earlier loadtest run (${kept.json.run_id}): 1 SKU, 5 orders, 0 scratch tables, 2 locations; \`stockctl loadtest --cleanup\` removes them.\n`,
    );
    const cleanup = await t.cliJson<{ removed: { runs: string[]; skus: number; orders: number; locations: number } }>(['loadtest', '--cleanup']);
    expect(cleanup.code).toBe(0);
    expect(cleanup.json.removed).toMatchObject({ runs: [kept.json.run_id], skus: 1, orders: 5, locations: 2 });
    expect(await leftovers()).toEqual(NOTHING);
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });
  });

  it('the terminal and the HTML report show the proof at each location', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-locations-')), 'run.html');
    const res = await t.cli(['loadtest', '--buyers', '12', '--stock', '7', '--concurrency', '4', '--locations', '2', '--strategy', 'guarded', '--report', file], {
      timeoutMs: 60_000,
    });
    expect(res.code, res.stderr).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('12 buyers × 1 unit(s), 7 in stock on each of 1 SKU(s) over 2 locations (4, 3), 4 connections');
    expect(res.stdout).toMatch(/│ guarded +│ loadtest-[0-9a-f]{8}-L1 │ +2 │ +4 │ +0 │ +4 │ +4 │ +4 │ +4 │ +4 │ 1 ok +│/);
    expect(res.stdout).toMatch(/│ guarded +│ loadtest-[0-9a-f]{8}-L2 │ +1 │ +3 │ +0 │ +3 │ +3 │ +3 │ +3 │ +3 │ 1 ok +│/);
    expect(lines[lines.length - 1]).toBe('No oversell, no false rejection by guarded/locking/batched, every invariant holds.');
    const html = fs.readFileSync(file, 'utf8');
    expect(html).toContain('<table id="proof-locations">');
    expect(html.match(/data-location="loadtest-[0-9a-f]{8}-L\d"/g)).toHaveLength(2);
    const proofRows = html.slice(html.indexOf('id="proof-locations"'));
    expect(proofRows).not.toContain('data-holds="false"');
    expect(proofRows).toContain('Locations each SKU’s stock is spread over (--locations)');
  });

  it('--locations 0, a non-number, or with --cleanup: exit 2, nothing created', async () => {
    const before = await leftovers();
    for (const [args, message] of [
      [['--locations', '0'], 'error: Invalid --locations "0"'],
      [['--locations', 'three'], 'error: Invalid --locations "three"'],
      [['--locations', '2.5'], 'error: Invalid --locations "2.5"'],
      [['--locations', '-1'], 'error: Invalid --locations "-1"'],
      [['--locations', '2', '--cleanup'], 'error: --locations goes with a run, not with --cleanup.'],
    ] as const) {
      const res = await t.cli(['loadtest', '--buyers', '4', ...args]);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stdout).toBe('');
      expect(res.stderr.split('\n')[0]).toMatch(new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    }
    expect(await leftovers()).toEqual(before);
  });
});
