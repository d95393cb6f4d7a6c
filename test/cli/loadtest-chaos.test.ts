/**
 * `loadtest --chaos`: the run's own backends terminated at random (pg_terminate_backend, for
 * real) while its buyers reserve, pay, cancel and sweep, directly and through `serve`. The
 * run ends by itself, counts the kills and the operations they failed, and still proves
 * every invariant exactly: no half order, no lost acknowledged order, nothing committed
 * that nobody failed on, no oversell, nobody refused while stock remained; verify stays
 * clean. Kill rates are set high (tens of ms) so that short runs see many faults; nothing
 * about timing is asserted.
 */
import postgres from 'postgres';
import { describe, expect, inject, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { api, startServer } from '../server/_server.js';

const t = useTestDatabase();
const pooled = Boolean(inject('testServer').pooler);

interface Faults {
  killed_busy: number;
  by_target: { workers: number; server: number };
  by_operation: { reserve: number; pay: number; cancel: number; sweep: number };
  by_code: Record<string, number>;
  committed_unacknowledged: { reserves: number; pays: number; cancels: number };
  chaos_errors: number;
}
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
  faults_injected: number;
  failed_by_faults: number;
  faults: Faults;
  mix?: { paid: number; cancelled: number; expired_by_sweep: number; still_pending: number; units_sold: number };
}
interface LoadtestReport {
  run_id: string;
  config: Record<string, unknown> & { chaos?: { interval_ms: number; targets: string[] } };
  strategies: StrategyReport[];
  faults_injected: number;
  failed_by_faults: number;
  ok: boolean;
  interrupted: boolean;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** What must hold for every strategy of a chaos run, whatever the kills hit. */
function expectAccounted(s: StrategyReport, buyers: number) {
  expect(s.violations, s.strategy).toEqual([]);
  expect(s.errors, s.strategy).toBe(0);
  expect(s.faults.chaos_errors, s.strategy).toBe(0);
  expect(s.buyers, s.strategy).toBe(buyers);
  // Every buyer is exactly one of: won, refused for stock, refused by a version conflict, failed by a fault.
  expect(s.successes + s.rejections + s.false_rejections + s.faults.by_operation.reserve, s.strategy).toBe(buyers);
  expect(s.failed_by_faults, s.strategy).toBe(sum(Object.values(s.faults.by_operation)));
  expect(sum(Object.values(s.faults.by_code)), s.strategy).toBe(s.failed_by_faults);
  expect(s.faults.killed_busy, s.strategy).toBeLessThanOrEqual(s.faults_injected);
  expect(s.faults.by_target.workers + s.faults.by_target.server, s.strategy).toBe(s.faults_injected);
  // Committed although its caller was told it failed: never more than failed.
  const c = s.faults.committed_unacknowledged;
  expect(c.reserves, s.strategy).toBeLessThanOrEqual(s.faults.by_operation.reserve);
  expect(c.pays, s.strategy).toBeLessThanOrEqual(s.faults.by_operation.pay);
  expect(c.cancels, s.strategy).toBeLessThanOrEqual(s.faults.by_operation.cancel);
  expect(s.expected_successes, s.strategy).toBeNull();
}

async function leftovers() {
  const [row] = await t.sql`
    SELECT (SELECT count(*)::int FROM products WHERE sku LIKE 'loadtest-%') AS products,
           (SELECT count(*)::int FROM stock_movements WHERE sku LIKE 'loadtest-%') AS movements,
           (SELECT count(*)::int FROM stock_reservations WHERE sku LIKE 'loadtest-%') AS reservations,
           (SELECT count(*)::int FROM order_items WHERE sku LIKE 'loadtest-%') AS order_items`;
  return row;
}

describe.skipIf(pooled)('loadtest --chaos', () => {
  it('--mix: kills only its own workers, fails some operations, every winner has one fate, verify is clean', async () => {
    // A bystander named like the loadtest's checker: the monkey must never touch it.
    const bystander = postgres(t.url, { max: 1, onnotice: () => {}, connection: { application_name: 'stockctl-loadtest' } });
    try {
      const [before] = await bystander`SELECT pg_backend_pid() AS pid`;
      const res = await t.cliJson<LoadtestReport>(
        ['loadtest', '--chaos', '40ms', '--mix', '--buyers', '160', '--stock', '40', '--concurrency', '8', '--strategy', 'guarded'],
        { timeoutMs: 90_000 },
      );
      expect(res.code, res.stdout).toBe(0);
      expect(res.stderr).toBe('');
      const report = res.json;
      expect(report).toMatchObject({ ok: true, interrupted: false, config: { mix: true, chaos: { interval_ms: 40, targets: ['workers'] } } });
      expect(report.faults_injected).toBeGreaterThan(0);
      const [guarded] = report.strategies;
      expectAccounted(guarded, 160);
      expect(report.faults_injected).toBe(guarded.faults_injected);
      expect(report.failed_by_faults).toBe(guarded.failed_by_faults);
      expect(guarded.faults.by_target.server).toBe(0);
      // Every order that exists (acknowledged, or committed despite a fault) has exactly one fate.
      const m = guarded.mix!;
      expect(m.paid + m.cancelled + m.expired_by_sweep + m.still_pending).toBe(guarded.successes + guarded.faults.committed_unacknowledged.reserves);
      expect(m.still_pending).toBe(0);
      expect(m.units_sold).toBe(m.paid);
      expect(m.units_sold + guarded.units_reserved).toBeLessThanOrEqual(40);

      const [after] = await bystander`SELECT pg_backend_pid() AS pid`;
      expect(after.pid).toBe(before.pid);
    } finally {
      await bystander.end({ timeout: 5 });
    }
    expect(await leftovers()).toEqual({ products: 0, movements: 0, reservations: 0, order_items: 0 });
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });
  });

  it('--strategy all: each strategy ends by itself; whoever was refused, stock had run out', async () => {
    const res = await t.cliJson<LoadtestReport>(
      ['loadtest', '--chaos', '20ms', '--buyers', '200', '--stock', '120', '--concurrency', '8', '--strategy', 'all', '--keep'],
      { timeoutMs: 120_000 },
    );
    expect(res.code, res.stdout).toBe(0);
    const report = res.json;
    expect(report.ok).toBe(true);
    expect(report.strategies.map((s) => s.strategy)).toEqual(['guarded', 'optimistic', 'locking', 'batched']);
    expect(report.faults_injected).toBe(sum(report.strategies.map((s) => s.faults_injected)));
    expect(report.failed_by_faults).toBe(sum(report.strategies.map((s) => s.failed_by_faults)));
    expect(report.faults_injected).toBeGreaterThan(0);
    const prefix = `loadtest-${report.run_id}-`;
    for (const s of report.strategies) {
      expectAccounted(s, 200);
      expect(s.faults.by_operation).toMatchObject({ pay: 0, cancel: 0, sweep: 0 });
      // Without --mix every order stays pending: reserved units are exactly its orders'.
      const [db] = await t.sql`
        SELECT p.stock_quantity - p.reserved_stock AS available, p.reserved_stock AS reserved,
               (SELECT count(*)::int FROM order_items i JOIN orders o USING (order_id) WHERE i.sku = p.sku AND o.status = 'pending') AS pending
          FROM stock_items p WHERE p.sku = ${`${prefix}${s.strategy}-0`}`;
      expect(db.reserved, s.strategy).toBe(s.units_reserved);
      expect(db.pending, s.strategy).toBe(s.successes + s.faults.committed_unacknowledged.reserves);
      expect(db.reserved, s.strategy).toBe(db.pending);
      // No false rejection: a buyer turned away for stock means the stock is gone.
      if (s.rejections > 0) expect(db.available, s.strategy).toBe(0);
    }
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });
    expect((await t.cli(['loadtest', '--cleanup'])).code).toBe(0);
    expect(await leftovers()).toEqual({ products: 0, movements: 0, reservations: 0, order_items: 0 });
  });

  it('human output: a line per strategy and a summary line with the faults and the operations they failed', async () => {
    const res = await t.cli(['loadtest', '--chaos', '20ms', '--buyers', '200', '--stock', '100', '--concurrency', '4', '--strategy', 'locking'], {
      timeoutMs: 60_000,
    });
    expect(res.code, res.stdout).toBe(0);
    expect(res.stderr).toBe('');
    const lines = res.stdout.trimEnd().split('\n');
    expect(res.stdout).toMatch(/^locking: chaos: [\d,]+ backends? killed \([\d,]+ busy\), [\d,]+ operations? failed by them/m);
    expect(lines[lines.length - 2]).toMatch(
      /^Chaos: [\d,]+ backends? of the run's workers \(stockctl-loadtest-[0-9a-f]{8}\) terminated \(about one every 20 ms\), [\d,]+ operations? failed by them\.$/,
    );
    expect(lines[lines.length - 1]).toBe('No oversell, no false rejection by guarded/locking/batched, every invariant holds.');
  });

  it('--url: kills the server\'s backends too; serve answers 503 for them and stays up; verify is clean', async () => {
    const token = await t.cliJson<{ token: string }>(['token', 'create', 'chaos-shop', '--role', 'shop']);
    expect(token.code, token.stdout).toBe(0);
    const server = await startServer(t.url, ['--pool', '4']);
    try {
      const res = await t.cliJson<LoadtestReport>(
        ['loadtest', '--url', server.url, '--token', token.json.token, '--chaos', '30ms', '--mix', '--buyers', '200', '--stock', '80', '--concurrency', '8'],
        { timeoutMs: 90_000 },
      );
      expect(res.code, res.stdout).toBe(0);
      expect(res.stderr).toBe('');
      const report = res.json;
      expect(report).toMatchObject({ ok: true, config: { url: server.url, chaos: { interval_ms: 30, targets: ['workers', 'server'] } } });
      const [s] = report.strategies;
      expectAccounted(s, 200);
      expect(s.faults.by_target.server).toBeGreaterThan(0);
      // A reserve the server could not finish is its 503, never a 500 or a dropped connection.
      const codes = Object.keys(s.faults.by_code);
      if (s.faults.by_operation.reserve > 0) expect(codes).toContain('http_503');
      const m = s.mix!;
      expect(m.paid + m.cancelled + m.expired_by_sweep + m.still_pending).toBe(s.successes + s.faults.committed_unacknowledged.reserves);
      expect(m.still_pending).toBe(0);
      // The server lived through it and is ready again.
      expect((await api(server, 'GET', '/readyz')).status).toBe(200);
    } finally {
      const stopped = await server.stop();
      expect(stopped.code, stopped.stderr).toBe(0);
      expect(stopped.stderr).not.toMatch(/"status":500|TypeError|Unhandled|uncaught/i);
    }
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });
  });

  it('an interval that is not one is a usage error, and --chaos goes with a run', async () => {
    for (const bad of ['5ms', 'fast', '2m']) {
      const res = await t.cli(['loadtest', '--chaos', bad]);
      expect(res.code, bad).toBe(2);
      expect(res.stderr, bad).toMatch(/^error: Invalid --chaos "[^"]+": give the mean time between two kills, like 200ms or 1s \(10ms to 60s\)\.\n$/);
    }
    const cleanup = await t.cli(['loadtest', '--cleanup', '--chaos']);
    expect(cleanup).toMatchObject({ code: 2, stderr: 'error: --chaos goes with a run, not with --cleanup.\n' });
  });
});

describe.runIf(pooled)('loadtest --chaos behind a pooler', () => {
  it('is refused: a backend there serves other clients too', async () => {
    const res = await t.cli(['loadtest', '--chaos', '--buyers', '10']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--chaos needs a direct connection to PostgreSQL/);
  });
});
