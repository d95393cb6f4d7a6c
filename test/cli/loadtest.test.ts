/**
 * `stockctl loadtest` as a correctness check, not a benchmark: a small bounded run whose
 * outcome is exact (60 buyers of one unit each race for 20 units), and which leaves
 * nothing of its own behind. No timing is asserted.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, startCli } from '../helpers/cli.js';
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
  started_at: string;
  finished_at: string;
  stockctl_version: string;
  server_version: string;
  config: Record<string, unknown>;
  baseline: { strategy: string; buyers: number; errors: number; throughput_rps: number; timeline?: { counts: number[] }; histogram?: { count: number }[] };
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

async function scratchTables() {
  return (await t.sql`SELECT tablename FROM pg_tables WHERE tablename LIKE 'loadtest%'`).map((r) => r.tablename as string);
}

/** Poll until `ready` says so (the loadtest is at the step a test wants to interrupt). */
async function until(ready: () => Promise<boolean>, what: string, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A loadtest session is running an UPDATE: the bare-UPDATE measurement is under way. */
async function bareUpdateRunning() {
  const [row] = await t.sql`SELECT count(*)::int AS n FROM pg_stat_activity
                             WHERE datname = current_database() AND application_name = 'stockctl-loadtest'
                               AND state = 'active' AND query ILIKE 'UPDATE%'`;
  return row.n > 0;
}

/** The loadtest has made some orders: a strategy is under way. */
async function ordersMade() {
  const [row] = await t.sql`SELECT count(*)::int AS n FROM order_items WHERE sku LIKE 'loadtest-%'`;
  return row.n > 0;
}

// Big enough to be stopped in the middle, however fast the machine: it never runs to the end.
const LONG_RUN = ['loadtest', '--buyers', '3000', '--stock', '3000', '--concurrency', '4', '--strategy', 'guarded'];

describe('loadtest', () => {
  it('60 buyers, 20 units: guarded and locking sell exactly 20, nothing oversells, nothing is left behind', async () => {
    // A real catalogue row that the loadtest must never touch.
    const added = await t.cli(['product', 'add', 'REAL', '--name', 'Real product', '--stock', '4']);
    expect(added.code).toBe(0);
    const [realBefore] = await t.sql`SELECT stock_quantity, reserved_stock, version FROM stock_levels WHERE sku = 'REAL'`;

    const res = await t.cliJson<LoadtestReport>(['loadtest', '--buyers', '60', '--stock', '20', '--concurrency', '8'], {
      timeoutMs: 60_000,
    });
    expect(res.code, res.stdout).toBe(0);
    expect(res.stderr).toBe('');
    const report = res.json;
    expect(report).toMatchObject({
      run_id: expect.stringMatching(/^[0-9a-f]{8}$/),
      config: { buyers: 60, stock: 20, quantity: 1, concurrency: 8, connections: 8, skus: 1 },
      ok: true,
      interrupted: false,
    });
    // The bare UPDATE sells nothing: no winners, rejections or checks to show.
    expect(report.baseline).toEqual({
      strategy: 'bare_update',
      buyers: 60,
      errors: 0,
      duration_ms: expect.any(Number),
      throughput_rps: expect.any(Number),
      latency_ms: { p50: expect.any(Number), p95: expect.any(Number), p99: expect.any(Number), max: expect.any(Number) },
      timeline: { slice_ms: expect.any(Number), counts: expect.any(Array) },
      histogram: expect.any(Array),
    });
    // What `--report` draws: every buyer lands in one slice of the timeline and one bucket.
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    expect(sum(report.baseline.timeline!.counts)).toBe(60);
    expect(sum(report.baseline.histogram!.map((b) => b.count))).toBe(60);
    expect(report.strategies.map((s) => s.strategy)).toEqual(['guarded', 'optimistic', 'locking', 'batched']);

    for (const s of report.strategies) {
      expect(s.buyers, s.strategy).toBe(60);
      expect(s.errors, s.strategy).toBe(0);
      expect(s.violations, s.strategy).toEqual([]);
      expect(s.units_reserved, s.strategy).toBe(s.successes);
      expect(s.successes + s.rejections + s.false_rejections, s.strategy).toBe(60);
      expect(s.expected_successes, s.strategy).toBe(20);
    }
    for (const name of ['guarded', 'locking', 'batched']) {
      const s = report.strategies.find((x) => x.strategy === name)!;
      expect(s, name).toMatchObject({ successes: 20, units_reserved: 20, rejections: 40, false_rejections: 0, violations: [] });
    }
    // Optimistic may turn buyers away falsely (reported, not hidden), but never oversells.
    const optimistic = report.strategies.find((x) => x.strategy === 'optimistic')!;
    expect(optimistic.successes).toBeLessThanOrEqual(20);

    expect(await leftovers()).toEqual({ products: 0, variants: 0, movements: 0, reservations: 0, order_items: 0, orders: 0 });
    expect(await scratchTables()).toEqual([]);
    const [realAfter] = await t.sql`SELECT stock_quantity, reserved_stock, version FROM stock_levels WHERE sku = 'REAL'`;
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
    // The bare UPDATE is a rate, not a sale: "—" where a figure would mean nothing.
    expect(res.stdout).toMatch(/│ bare UPDATE \(limit\) │ +— │ +— │ +— │ +— │ +[\d,]+ │ +1\.00 │ +[\d,]+\.\d │ +[\d,]+\.\d │ +[\d,]+\.\d │ —  +│/);
    expect(res.stdout).toMatch(/│ locking\s+│\s+5 │\s+7 │\s+0 │/);
    expect(lines[lines.length - 1]).toBe('No oversell, no false rejection by guarded/locking/batched, every invariant holds.');
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
    const kept = await t.sql`SELECT sku, stock_quantity, reserved_stock FROM stock_levels WHERE sku LIKE ${`${prefix}%`} ORDER BY sku`;
    expect(kept).toEqual([{ sku: `${prefix}guarded-0`, stock_quantity: 4, reserved_stock: 4 }]);
    expect(await scratchTables()).toEqual([]);

    const verify = await t.cli(['verify']);
    expect(verify).toMatchObject({ code: 0, stderr: '' });

    // guarded-0 has nothing available, but loadtest rows are not the catalogue.
    const check = await t.cliJson<{ alerts: { rule: string; firing: boolean }[] }>(['check']);
    expect(check.json.alerts.find((a) => a.rule === 'low_stock')).toMatchObject({ firing: false });

    // Kept rows are leftovers too: the next run names them, --cleanup removes them.
    const next = await t.cli(['loadtest', '--buyers', '4', '--stock', '2', '--strategy', 'locking', '--json'], { timeoutMs: 60_000 });
    expect(next.code).toBe(0);
    expect(next.stderr).toBe(
      `Found leftovers of 1 earlier loadtest run (${res.json.run_id}): 1 SKU, 4 orders, 0 scratch tables; \`stockctl loadtest --cleanup\` removes them.\n`,
    );
    const cleanup = await t.cli(['loadtest', '--cleanup']);
    expect(cleanup).toMatchObject({ code: 0, stderr: '' });
    expect(cleanup.stdout).toBe(
      `Removed the leftovers of 1 loadtest run (${res.json.run_id}): 1 SKU, 4 orders, 0 scratch tables, 4 reservations, 5 ledger rows.\n`,
    );
    expect(await leftovers()).toEqual({ products: 0, variants: 0, movements: 0, reservations: 0, order_items: 0, orders: 0 });
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
    // Every winner has exactly one fate, and none is left hanging when the run ends.
    const m = guarded.mix;
    expect(m.paid + m.cancelled + m.expired_by_sweep + m.still_pending).toBe(guarded.successes);
    expect(m.still_pending).toBe(0);
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

  it('reports when and with what it ran: timestamps, versions, settings, and the connections really used', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const res = await t.cliJson<LoadtestReport>(
      ['loadtest', '--buyers', '10', '--stock', '5', '--concurrency', '500', '--strategy', 'optimistic', '--max-retries', '7', '--retry-backoff', '3'],
      { timeoutMs: 60_000 },
    );
    expect(res.code, res.stdout).toBe(0);
    const r = res.json;
    expect(r.started_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(r.finished_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(r.finished_at >= r.started_at).toBe(true);
    expect(r.stockctl_version).toBe(pkg.version);
    const [server] = await t.sql`SELECT current_setting('server_version') AS v`;
    expect(r.server_version).toBe(server.v);
    expect(r.config).toEqual({
      buyers: 10,
      stock: 5,
      quantity: 1,
      concurrency: 500,
      connections: 10,
      skus: 1,
      strategies: ['optimistic'],
      mix: false,
      max_retries: 7,
      retry_backoff_ms: 3,
    });

    const human = await t.cli(['loadtest', '--buyers', '10', '--stock', '5', '--concurrency', '500', '--strategy', 'guarded'], { timeoutMs: 60_000 });
    expect(human.code).toBe(0);
    expect(human.stdout.split('\n')[0]).toBe('10 buyers × 1 unit(s), 5 in stock on each of 1 SKU(s), 10 connections');
    // One number format: whole counts and rates, ms with one decimal, ratios with two.
    const guarded = human.stdout.split('\n').find((l) => l.startsWith('│ guarded'))!;
    const cells = guarded.split('│').slice(1, -1).map((c) => c.trim());
    expect(cells.slice(0, 5)).toEqual(['guarded', '5', '5', '0', '0']);
    expect(cells[5]).toMatch(/^\d{1,3}(,\d{3})*$/);
    expect(cells[6]).toMatch(/^\d+\.\d\d$/);
    for (const cell of cells.slice(7, 10)) expect(cell).toMatch(/^\d{1,3}(,\d{3})*\.\d$/);
  });

  it('Ctrl-C in the middle: exit 130, what was measured so far, ok false, no verdict; its rows are still removed', async () => {
    const run = startCli([...LONG_RUN, '--json'], { databaseUrl: t.url, timeoutMs: 120_000 });
    await until(ordersMade, 'the first orders of the guarded run');
    run.child.kill('SIGINT');
    const res = await run.result;
    expect(res.code, res.stderr).toBe(130);
    const report = JSON.parse(res.stdout) as LoadtestReport;
    expect(report).toMatchObject({ ok: false, interrupted: true });
    expect(report.baseline.buyers).toBe(3000);
    expect(report.strategies).toHaveLength(1);
    const [guarded] = report.strategies;
    expect(guarded.buyers).toBeGreaterThan(0);
    expect(guarded.buyers).toBeLessThan(3000);
    // What did run is still checked: every buyer so far won (3000 in stock), nothing broke.
    expect(guarded).toMatchObject({ successes: guarded.buyers, errors: 0, expected_successes: null, violations: [] });
    expect(await leftovers()).toMatchObject({ products: 0, movements: 0, reservations: 0, order_items: 0 });
  });

  it('SIGTERM in the middle, human output: exit 143, says it was interrupted, never the all-clear', async () => {
    const run = startCli(LONG_RUN, { databaseUrl: t.url, timeoutMs: 120_000 });
    await until(ordersMade, 'the first orders of the guarded run');
    run.child.kill('SIGTERM');
    const res = await run.result;
    expect(res.code, res.stderr).toBe(143);
    expect(res.stdout).not.toContain('every invariant holds');
    expect(res.stdout).toMatch(/│ guarded +│ .* │ partial +│\n/);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[lines.length - 1]).toMatch(
      /^Interrupted: these figures cover only the buyers fired before the stop \(guarded [\d,]+ of 3,000 each\); no verdict on this run\.$/,
    );
    expect(await leftovers()).toMatchObject({ products: 0, movements: 0, reservations: 0, order_items: 0 });
  });

  it('killed outright (SIGKILL) at any step: verify still passes, the next run names the leftovers, --cleanup removes them', async () => {
    expect((await t.cli(['loadtest', '--cleanup'])).code).toBe(0);
    // Killed while the bare UPDATE runs: it must not leave a counter the ledger does not explain.
    const first = startCli(LONG_RUN, { databaseUrl: t.url, timeoutMs: 120_000 });
    await until(bareUpdateRunning, 'the bare-UPDATE measurement');
    first.child.kill('SIGKILL');
    await first.result;
    const verify = await t.cli(['verify']);
    expect(verify.code, verify.stdout).toBe(0);

    // Killed while buyers reserve: its orders are whole, so verify passes, but they stay.
    const second = startCli(LONG_RUN, { databaseUrl: t.url, timeoutMs: 120_000 });
    await until(ordersMade, 'the first orders of the guarded run');
    second.child.kill('SIGKILL');
    await second.result;
    expect((await t.cli(['verify'])).code).toBe(0);
    const left = await leftovers();
    expect(left.products).toBe(1);

    const next = await t.cliJson<LoadtestReport>(['loadtest', '--buyers', '4', '--stock', '2', '--strategy', 'guarded'], { timeoutMs: 60_000 });
    expect(next.code).toBe(0);
    expect(next.stderr).toMatch(
      /^Found leftovers of 2 earlier loadtest runs \([0-9a-f]{8}, [0-9a-f]{8}\): 1 SKU, [\d,]+ orders, [01] scratch tables?; `stockctl loadtest --cleanup` removes them\.\n$/,
    );

    const cleanup = await t.cliJson<{ removed: Record<string, unknown> }>(['loadtest', '--cleanup']);
    expect(cleanup.code).toBe(0);
    expect(cleanup.json.removed).toMatchObject({ skus: 1, orders: left.order_items, reservations: left.reservations, ledger_rows: left.movements });
    expect(cleanup.json.removed.runs).toHaveLength(2);
    // (The real order made by the --mix test above stays.)
    expect(await leftovers()).toMatchObject({ products: 0, variants: 0, movements: 0, reservations: 0, order_items: 0 });
    expect(await scratchTables()).toEqual([]);
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });
    expect(await t.cli(['loadtest', '--cleanup'])).toMatchObject({ code: 0, stdout: 'No loadtest leftovers found.\n', stderr: '' });
  });
});
