/**
 * The seed scenarios: many buyers, few units, every buyer on a connection (or a process)
 * of its own. Exact counts: no oversell, and no false "insufficient stock".
 */
import { describe, expect, it } from 'vitest';
import { reserveOrder, StockConflictError, type Strategy } from '../../src/engine/orders.js';
import { InsufficientStockError } from '../../src/errors.js';
import { runCliTogether, type CliResult } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';
import {
  ACTOR,
  SETTINGS,
  addProducts,
  attempt,
  freeConnections,
  invariantViolations,
  stockOf,
  tally,
  unexpected,
  withConnectionBudget,
  withPools,
  type Outcome,
} from './_support.js';

const t = useTestDatabase();

const reserveOne = (sku: string, strategy?: Strategy, settings = SETTINGS) => (db: Parameters<typeof reserveOrder>[0], i: number) =>
  attempt(() => reserveOrder(db, { lines: [{ sku, quantity: 1 }], customerId: `buyer-${i}`, strategy, actor: ACTOR }, settings));

function cliTally(results: CliResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) {
    let code = `exit ${r.code}`;
    if (r.code !== 0) {
      try {
        const { error } = JSON.parse(r.stdout) as { error: { code: string; message: string } };
        code += ` ${error.code}`;
        // Anything but the expected refusal carries its message, so a failure explains itself.
        if (error.code !== 'insufficient_stock') code += `: ${error.message}`;
      } catch {
        code += ` (no JSON: ${r.stdout.slice(0, 200)} ${r.stderr.slice(0, 300)})`;
      }
    }
    counts[code] = (counts[code] ?? 0) + 1;
  }
  return counts;
}

describe('the last units', () => {
  it('10 concurrent buyers (separate connections) for the last 2 units: exactly 2 win, 8 get InsufficientStockError', async () => {
    const sku = 'LAST2-ENGINE';
    await addProducts(t.db, { [sku]: 2 });
    const outcomes = await withConnectionBudget('shared', () =>
      withPools(t.url, 10, (dbs) => Promise.all(dbs.map(reserveOne(sku)))),
    );
    expect(tally(outcomes)).toEqual({ ok: 2, insufficient_stock: 8 });
    for (const o of outcomes) {
      if (o.ok) continue;
      expect(o.error).toBeInstanceOf(InsufficientStockError);
      const e = o.error as InsufficientStockError;
      expect(e.exitCode).toBe(3);
      expect(e.shortages).toEqual([{ sku, requested: 1, available: 0 }]);
    }
    expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: 2, reserved_stock: 2 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('10 concurrent CLI processes for the last 2 units: exactly 2 exit 0, 8 exit 3', async () => {
    const sku = 'LAST2-CLI';
    await addProducts(t.db, { [sku]: 2 });
    const results = await withConnectionBudget('shared', () =>
      runCliTogether(
        Array.from({ length: 10 }, (_, i) => ({
          args: ['reserve', `${sku}:1`, '--customer', `cli-${i}`, '--json'],
          opts: { databaseUrl: t.url, timeoutMs: 60_000 },
        })),
      ),
    );
    expect(cliTally(results)).toEqual({ 'exit 0': 2, 'exit 3 insufficient_stock': 8 });
    for (const r of results.filter((x) => x.code === 0)) {
      expect(JSON.parse(r.stdout)).toMatchObject({ status: 'pending', replay: false, items: [{ sku, quantity: 1 }] });
    }
    expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: 2, reserved_stock: 2 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  }, 90_000);

  it('up to 100 buyers on separate connections for the last unit: exactly 1 winner', async () => {
    const sku = 'LAST1-ENGINE';
    await addProducts(t.db, { [sku]: 1 });
    const outcomes = await withConnectionBudget('exclusive', async () => {
      const n = Math.min(100, await freeConnections(t.sql));
      expect(n).toBeGreaterThanOrEqual(50);
      console.info(`[contention] last unit, engine: ${n} separate connections`);
      return withPools(t.url, n, (dbs) => Promise.all(dbs.map(reserveOne(sku))));
    });
    expect(unexpected(outcomes, ['insufficient_stock'])).toEqual([]);
    expect(tally(outcomes)).toEqual({ ok: 1, insufficient_stock: outcomes.length - 1 });
    expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: 1, reserved_stock: 1 });
    const [{ orders }] = await t.sql<{ orders: number }[]>`SELECT count(*)::int AS orders FROM order_items WHERE sku = ${sku}`;
    expect(orders).toBe(1);
    expect(await invariantViolations(t.sql)).toEqual([]);
  }, 120_000);

  // A hundred processes, whatever the server has free: with max_connections = 100 the last
  // few find it full and must wait for a slot (BUSY_SERVER_WAIT_S), not give up with exit 7.
  it('100 separate `stockctl reserve SKU:1` processes for the last unit: exactly 1 exits 0, even on a full server', async () => {
    const sku = 'LAST1-CLI';
    await addProducts(t.db, { [sku]: 1 });
    const results = await withConnectionBudget('exclusive', async () => {
      const n = 100;
      const started = Date.now();
      const r = await runCliTogether(
        Array.from({ length: n }, (_, i) => ({
          args: ['reserve', `${sku}:1`, '--customer', `proc-${i}`, '--json'],
          opts: { databaseUrl: t.url, timeoutMs: 90_000 },
        })),
      );
      console.info(`[contention] last unit, CLI: ${n} processes in ${Date.now() - started} ms`);
      return r;
    });
    expect(cliTally(results)).toEqual({ 'exit 0': 1, 'exit 3 insufficient_stock': results.length - 1 });
    expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: 1, reserved_stock: 1 });
    const [{ orders }] = await t.sql<{ orders: number }[]>`SELECT count(*)::int AS orders FROM order_items WHERE sku = ${sku}`;
    expect(orders).toBe(1);
    expect(await invariantViolations(t.sql)).toEqual([]);
  }, 180_000);
});

describe('K units, N one-unit buyers, 20 connections', () => {
  const K = 20;
  const N = 60;
  const CONNECTIONS = 20;

  /** N buyers spread over CONNECTIONS sessions, each session buying one after another. */
  async function race(sku: string, strategy: Strategy, settings = SETTINGS): Promise<Outcome<unknown>[]> {
    return withConnectionBudget('shared', () =>
      withPools(t.url, CONNECTIONS, async (dbs) => {
        const perConnection = await Promise.all(
          dbs.map(async (db, c) => {
            const out: Outcome<unknown>[] = [];
            for (let b = c; b < N; b += CONNECTIONS) out.push(await reserveOne(sku, strategy, settings)(db, b));
            return out;
          }),
        );
        return perConnection.flat();
      }),
    );
  }

  for (const strategy of ['guarded', 'locking', 'batched'] as const) {
    it(`${strategy}: exactly K succeed, N - K are genuinely short`, async () => {
      const sku = `KN-${strategy}`;
      await addProducts(t.db, { [sku]: K });
      const outcomes = await race(sku, strategy);
      expect(unexpected(outcomes, ['insufficient_stock'])).toEqual([]);
      expect(tally(outcomes)).toEqual({ ok: K, insufficient_stock: N - K });
      expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: K, reserved_stock: K });
      expect(await invariantViolations(t.sql)).toEqual([]);
    });
  }

  it('optimistic (3 attempts, 100 ms backoff): no oversell; successes + conflicts + short == N', async () => {
    const sku = 'KN-optimistic';
    await addProducts(t.db, { [sku]: K });
    const outcomes = await race(sku, 'optimistic');
    expect(unexpected(outcomes, ['insufficient_stock', 'stock_conflict'])).toEqual([]);
    const counts = tally(outcomes);
    const ok = counts.ok ?? 0;
    const conflicts = counts.stock_conflict ?? 0;
    const short = counts.insufficient_stock ?? 0;
    console.info(`[contention] optimistic K=${K} N=${N}: ${ok} reserved, ${conflicts} falsely rejected, ${short} short`);
    expect(ok + conflicts + short).toBe(N);
    expect(ok).toBeLessThanOrEqual(K);
    // A genuine "short" is only ever seen once all K units are taken.
    if (short > 0) expect(ok).toBe(K);
    for (const o of outcomes) {
      if (!o.ok && o.error instanceof StockConflictError) expect(o.error.exitCode).toBe(3);
    }
    expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: K, reserved_stock: ok });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('optimistic with 1 attempt and no backoff: 40 buyers for 40 units, some are falsely rejected', async () => {
    const sku = 'KN-optimistic-1';
    await addProducts(t.db, { [sku]: 40 });
    const settings = { ...SETTINGS, maxStockRetryAttempts: 1, stockRetryBackoffMs: 0 };
    const outcomes = await withConnectionBudget('shared', () =>
      withPools(t.url, 40, (dbs) => Promise.all(dbs.map(reserveOne(sku, 'optimistic', settings)))),
    );
    expect(unexpected(outcomes, ['stock_conflict'])).toEqual([]);
    const counts = tally(outcomes);
    const ok = counts.ok ?? 0;
    const conflicts = counts.stock_conflict ?? 0;
    console.info(`[contention] optimistic, 1 attempt, 40 for 40: ${ok} reserved, ${conflicts} falsely rejected`);
    expect(ok + conflicts).toBe(40);
    expect(ok).toBeLessThan(40);
    expect(conflicts).toBeGreaterThan(0);
    for (const o of outcomes) {
      if (o.ok) continue;
      expect(o.error).toBeInstanceOf(StockConflictError);
      expect((o.error as StockConflictError).exitCode).toBe(3);
    }
    expect(await stockOf(t.sql, sku)).toMatchObject({ stock_quantity: 40, reserved_stock: ok });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });
});
