/**
 * `stockctl loadtest` as a correctness check, not a benchmark: a small bounded run whose
 * outcome is exact (60 buyers of one unit each race for 20 units), and which leaves
 * nothing of its own behind. No timing is asserted.
 */
import { describe, expect, it } from 'vitest';
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
}
interface LoadtestReport {
  run_id: string;
  config: Record<string, number>;
  baseline: StrategyReport;
  strategies: StrategyReport[];
  ok: boolean;
  interrupted: boolean;
}

async function leftovers() {
  const [row] = await t.sql`
    SELECT (SELECT count(*)::int FROM products WHERE sku LIKE 'loadtest-%') AS products,
           (SELECT count(*)::int FROM product_variants WHERE sku LIKE 'loadtest-%') AS variants,
           (SELECT count(*)::int FROM stock_movements WHERE sku LIKE 'loadtest-%') AS movements,
           (SELECT count(*)::int FROM stock_reservations WHERE sku LIKE 'loadtest-%') AS reservations,
           (SELECT count(*)::int FROM order_items WHERE sku LIKE 'loadtest-%') AS order_items,
           (SELECT count(*)::int FROM orders) AS orders`;
  return row;
}

describe('loadtest', () => {
  it('60 buyers, 20 units: guarded and locking sell exactly 20, nothing oversells, nothing is left behind', async () => {
    // A real catalogue row that the loadtest must never touch.
    const added = await t.cli(['product', 'add', 'REAL', '--name', 'Real product', '--stock', '4']);
    expect(added.code).toBe(0);
    const [realBefore] = await t.sql`SELECT stock_quantity, reserved_stock, version FROM products WHERE sku = 'REAL'`;

    const res = await t.cliJson<LoadtestReport>(['loadtest', '--buyers', '60', '--stock', '20', '--concurrency', '8'], {
      timeoutMs: 60_000,
    });
    expect(res.code, res.stdout).toBe(0);
    expect(res.stderr).toBe('');
    const report = res.json;
    expect(report).toMatchObject({
      run_id: expect.stringMatching(/^[0-9a-f]{8}$/),
      config: { buyers: 60, stock: 20, quantity: 1, concurrency: 8, skus: 1 },
      ok: true,
      interrupted: false,
    });
    expect(report.baseline).toMatchObject({ strategy: 'bare_update', buyers: 60, violations: [] });
    expect(report.strategies.map((s) => s.strategy)).toEqual(['guarded', 'optimistic', 'locking']);

    for (const s of report.strategies) {
      expect(s.buyers, s.strategy).toBe(60);
      expect(s.errors, s.strategy).toBe(0);
      expect(s.violations, s.strategy).toEqual([]);
      expect(s.units_reserved, s.strategy).toBe(s.successes);
      expect(s.successes + s.rejections + s.false_rejections, s.strategy).toBe(60);
      expect(s.expected_successes, s.strategy).toBe(20);
    }
    for (const name of ['guarded', 'locking']) {
      const s = report.strategies.find((x) => x.strategy === name)!;
      expect(s, name).toMatchObject({ successes: 20, units_reserved: 20, rejections: 40, false_rejections: 0, violations: [] });
    }
    // Optimistic may turn buyers away falsely (reported, not hidden), but never oversells.
    const optimistic = report.strategies.find((x) => x.strategy === 'optimistic')!;
    expect(optimistic.successes).toBeLessThanOrEqual(20);

    expect(await leftovers()).toEqual({ products: 0, variants: 0, movements: 0, reservations: 0, order_items: 0, orders: 0 });
    const [realAfter] = await t.sql`SELECT stock_quantity, reserved_stock, version FROM products WHERE sku = 'REAL'`;
    expect(realAfter).toEqual(realBefore);

    const verify = await t.cli(['verify']);
    expect(verify).toMatchObject({ code: 0, stderr: '' });
  });

  it('the human table names each strategy and ends with the all-clear line', async () => {
    const res = await t.cli(['loadtest', '--buyers', '12', '--stock', '5', '--concurrency', '4', '--strategy', 'locking'], {
      timeoutMs: 60_000,
    });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('12 buyers × 1 unit(s), 5 in stock on each of 1 SKU(s), 4 connections');
    expect(res.stdout).toMatch(/│ bare UPDATE \(limit\)\s+│\s+12 │/);
    expect(res.stdout).toMatch(/│ locking\s+│\s+5 │\s+7 │\s+0 │/);
    expect(lines[lines.length - 1]).toBe('No oversell, no false rejection by guarded/locking, every invariant holds.');
    expect((await leftovers()).products).toBe(0);
  });

  it('--keep leaves its products and orders, consistent: verify passes and check ignores their low stock', async () => {
    const res = await t.cliJson<LoadtestReport>(
      ['loadtest', '--buyers', '10', '--stock', '4', '--concurrency', '4', '--strategy', 'guarded', '--keep'],
      { timeoutMs: 60_000 },
    );
    expect(res.code).toBe(0);
    expect(res.json.strategies).toEqual([expect.objectContaining({ strategy: 'guarded', successes: 4, units_reserved: 4, violations: [] })]);
    const prefix = `loadtest-${res.json.run_id}-`;
    const kept = await t.sql`SELECT sku, stock_quantity, reserved_stock FROM products WHERE sku LIKE ${`${prefix}%`} ORDER BY sku`;
    expect(kept).toEqual([
      { sku: `${prefix}bare-0`, stock_quantity: 10, reserved_stock: 0 },
      { sku: `${prefix}guarded-0`, stock_quantity: 4, reserved_stock: 4 },
    ]);

    const verify = await t.cli(['verify']);
    expect(verify).toMatchObject({ code: 0, stderr: '' });

    // guarded-0 has nothing available, but loadtest rows are not the catalogue.
    const check = await t.cliJson<{ alerts: { rule: string; firing: boolean }[] }>(['check']);
    expect(check.json.alerts.find((a) => a.rule === 'low_stock')).toMatchObject({ firing: false });
  });

  it('invalid sizes are usage errors (exit 2) and create nothing', async () => {
    const before = await leftovers();
    const res = await t.cli(['loadtest', '--buyers', '0']);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/^error: Invalid --buyers "0"/);
    const strategy = await t.cli(['loadtest', '--strategy', 'yolo']);
    expect(strategy.code).toBe(2);
    expect(strategy.stdout).toBe('');
    expect(strategy.stderr).toContain('yolo');
    expect(await leftovers()).toEqual(before);
  });

  it('--mix: winners pay, cancel or lapse under a sweep; sold + reserved never exceed the stock, a real pending order is untouched', async () => {
    // A real order past its window: the loadtest's sweep must leave it for the real sweep.
    expect((await t.cli(['product', 'add', 'REAL2', '--name', 'Real', '--stock', '3'])).code).toBe(0);
    expect((await t.cli(['reserve', 'REAL2:1', '--ref', 'real-order', '--ttl', '1s'])).code).toBe(0);
    await t.sql`UPDATE orders SET payment_expires_at = now() - interval '1 minute' WHERE ref = 'real-order'`;
    await t.sql`UPDATE stock_reservations SET expires_at = now() - interval '1 minute'
                 WHERE order_id = (SELECT order_id FROM orders WHERE ref = 'real-order')`;

    const before = await leftovers();
    const res = await t.cliJson<LoadtestReport & { strategies: (StrategyReport & { mix: Record<string, number> })[] }>(
      ['loadtest', '--mix', '--buyers', '80', '--stock', '20', '--concurrency', '8', '--strategy', 'guarded'],
      { timeoutMs: 60_000 },
    );
    expect(res.code, res.stdout).toBe(0);
    expect(res.stderr).toBe('');
    const [guarded] = res.json.strategies;
    expect(guarded.violations).toEqual([]);
    expect(guarded.errors).toBe(0);
    expect(guarded.successes + guarded.rejections + guarded.false_rejections).toBe(80);
    // Every paid unit is a unit sold, and at least the first winners pay at once.
    expect(guarded.mix.paid).toBeGreaterThan(0);
    expect(guarded.mix.units_sold).toBe(guarded.mix.paid);
    expect(guarded.mix.units_sold + guarded.units_reserved).toBeLessThanOrEqual(20);

    const [real] = await t.sql`SELECT status FROM orders WHERE ref = 'real-order'`;
    expect(real.status).toBe('pending');
    // Nothing of its own left behind (an earlier --keep run may have left its own rows).
    const after = await leftovers();
    expect(after).toMatchObject({
      products: before.products,
      movements: before.movements,
      reservations: before.reservations,
      order_items: before.order_items,
    });
  });
});
