/**
 * The `batched` strategy: buyers that arrive while a batch is in flight
 * go together in the next one, and each still gets exactly its own answer, in arrival
 * order. Batches are made on one pool, so these buyers share one pool (and its
 * connections); the seed scenarios on separate connections are in contention.test.ts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';
import { laneOf } from '../../src/engine/reserve/batched.js';
import { reserveOrder, type ReserveResult } from '../../src/engine/orders.js';
import { InsufficientStockError } from '../../src/errors.js';
import { useTestDatabase } from '../helpers/db.js';
import { holdLock } from '../helpers/locks.js';
import { ACTOR, SETTINGS, addProducts, attempt, invariantViolations, stockOf, tally, unexpected, type Outcome } from './_support.js';

const t = useTestDatabase();

const buy = (db: Database['db'], sku: string, quantity = 1, extra: { ref?: string; customerId?: string } = {}) =>
  attempt(() => reserveOrder(db, { lines: [{ sku, quantity }], strategy: 'batched', actor: ACTOR, ...extra }, SETTINGS));

async function withPool<T>(fn: (db: Database['db']) => Promise<T>, max = 8): Promise<T> {
  const database = await openDatabase({ url: t.url, max, application: 'stockctl-batched-test' });
  try {
    return await fn(database.db);
  } finally {
    await database.close();
  }
}

/** A SKU to block each batch lane with (a SKU always goes through the same lane). */
const BLOCKERS = ['BLOCK-A', 'BLOCK-B', 'BLOCK-C', 'BLOCK-D', 'BLOCK-E', 'BLOCK-F'];
const blockerFor = (sku: string) => {
  const blocker = BLOCKERS.find((b) => laneOf(b) === laneOf(sku));
  if (!blocker) throw new Error(`no blocking SKU shares ${sku}'s lane; add one to BLOCKERS`);
  return blocker;
};

/**
 * Make the next buyers of `sku` share one batch: a first buyer of a blocking SKU in the
 * same lane goes alone and waits for the ledger table, which another session holds, while
 * the others queue behind it; releasing the table lets the first finish and the queued
 * ones go together, in the order they came. (A row held elsewhere would not do: the lane
 * passes over it, see batched-held-row.test.ts.)
 */
async function inOneBatch<T>(db: Database['db'], sku: string, buyers: (() => Promise<T>)[]): Promise<T[]> {
  const blocker = blockerFor(sku);
  const lock = await holdLock(t.url, 'LOCK TABLE stock_movements IN SHARE MODE');
  try {
    const first = buy(db, blocker);
    await new Promise((resolve) => setTimeout(resolve, 200)); // the first is in flight, waiting
    const rest = buyers.map((b) => b());
    await new Promise((resolve) => setTimeout(resolve, 100)); // all of them queued
    const [, [firstOutcome, ...outcomes]] = await Promise.all([lock.release(), Promise.all([first, ...rest])]);
    expect(firstOutcome).toMatchObject({ ok: true });
    return outcomes as T[];
  } finally {
    await lock.release();
  }
}

const created = (o: Outcome<ReserveResult>) => (o.ok ? o.value : undefined);

describe('batched', () => {
  beforeAll(() => addProducts(t.db, Object.fromEntries(BLOCKERS.map((b) => [b, 1000]))));

  it('10 buyers on one pool for the last 2 units: exactly 2 win, 8 are refused as short, in fewer commits than orders', async () => {
    await addProducts(t.db, { B2: 2 });
    const outcomes = await withPool((db) => inOneBatch(db, 'B2', Array.from({ length: 10 }, () => () => buy(db, 'B2'))));
    expect(unexpected(outcomes, ['insufficient_stock'])).toEqual([]);
    expect(tally(outcomes)).toEqual({ ok: 2, insufficient_stock: 8 });
    // In arrival order: the first two win.
    expect(outcomes.map((o) => o.ok)).toEqual([true, true, false, false, false, false, false, false, false, false]);
    for (const o of outcomes.filter((x) => !x.ok)) {
      expect((o as { error: InsufficientStockError }).error.shortages).toEqual([{ sku: 'B2', requested: 1, available: 0 }]);
    }
    // One transaction: both orders share its start time (now()).
    const [batch] = await t.sql`SELECT count(*)::int AS orders, count(DISTINCT o.created_at)::int AS commits
                                  FROM orders o JOIN order_items i USING (order_id) WHERE i.sku = 'B2'`;
    expect(batch).toEqual({ orders: 2, commits: 1 });
    expect(await stockOf(t.sql, 'B2')).toMatchObject({ stock_quantity: 2, reserved_stock: 2 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('100 buyers on one pool for the last unit: exactly 1 winner', async () => {
    await addProducts(t.db, { B1: 1 });
    const outcomes = await withPool((db) => Promise.all(Array.from({ length: 100 }, () => buy(db, 'B1'))));
    expect(unexpected(outcomes, ['insufficient_stock'])).toEqual([]);
    expect(tally(outcomes)).toEqual({ ok: 1, insufficient_stock: 99 });
    expect(await stockOf(t.sql, 'B1')).toMatchObject({ stock_quantity: 1, reserved_stock: 1 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('mixed quantities in one batch: a buyer of 3 is refused while a later buyer of 1 still gets the last unit', async () => {
    await addProducts(t.db, { MIX: 3 });
    const outcomes = await withPool((db) => inOneBatch(db, 'MIX', [() => buy(db, 'MIX', 2), () => buy(db, 'MIX', 3), () => buy(db, 'MIX', 1)]));
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, true]);
    expect((outcomes[1] as { error: InsufficientStockError }).error.shortages).toEqual([{ sku: 'MIX', requested: 3, available: 1 }]);
    expect(created(outcomes[2])).toMatchObject({ strategy: 'batched', items: [{ sku: 'MIX', quantity: 1 }] });
    expect(await stockOf(t.sql, 'MIX')).toMatchObject({ stock_quantity: 3, reserved_stock: 3 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('the same ref twice in one batch: one order, the second a replay of it', async () => {
    await addProducts(t.db, { REFS: 10 });
    const outcomes = await withPool((db) =>
      inOneBatch(db, 'REFS', [() => buy(db, 'REFS', 1, { ref: 'cart-1' }), () => buy(db, 'REFS', 1, { ref: 'cart-1' }), () => buy(db, 'REFS', 1, { ref: 'cart-2' })]),
    );
    expect(outcomes.every((o) => o.ok)).toBe(true);
    const [a, b, other] = outcomes.map((o) => created(o)!);
    // Whichever of the two came first made the order; the other replays it.
    const [first, second] = a.replay ? [b, a] : [a, b];
    expect(first).toMatchObject({ replay: false, ref: 'cart-1', strategy: 'batched' });
    expect(second).toMatchObject({ replay: true, ref: 'cart-1', order_id: first.order_id });
    expect(other).toMatchObject({ replay: false, ref: 'cart-2' });
    expect(await stockOf(t.sql, 'REFS')).toMatchObject({ reserved_stock: 2 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('a request that fails in a batch fails alone: the others get their orders', async () => {
    await addProducts(t.db, { GOOD: 10 });
    const outcomes = await withPool((db) =>
      inOneBatch(db, 'GOOD', [
        () => buy(db, 'GOOD'),
        // PostgreSQL text cannot hold a NUL byte: this one request cannot be written.
        () => buy(db, 'GOOD', 1, { customerId: 'bad\u0000customer' }),
        () => buy(db, 'NO-SUCH-SKU'),
        () => buy(db, 'GOOD'),
      ]),
    );
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, false, true]);
    expect((outcomes[2] as { error: { code: string } }).error.code).toBe('sku_not_found');
    expect(await stockOf(t.sql, 'GOOD')).toMatchObject({ stock_quantity: 10, reserved_stock: 2 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('when the server refuses a lane its own connection, its batches go through the pool', async () => {
    // A role allowed two sessions: the pool holds both, so a lane's connection is refused
    // with "too many connections" (53300), as on a full server.
    const role = `stockctl_lane_${process.pid}`;
    // With a password: the embedded server asks for one (scram), a trust server ignores it.
    await t.sql.unsafe(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 2 PASSWORD 'lane-test'`);
    try {
      await t.sql.unsafe(`GRANT ALL ON ALL TABLES IN SCHEMA public TO ${role};
                          GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${role};
                          GRANT USAGE ON SCHEMA drizzle TO ${role};
                          GRANT SELECT ON ALL TABLES IN SCHEMA drizzle TO ${role}`);
      await addProducts(t.db, { FULL: 2 });
      const url = new URL(t.url);
      url.username = role;
      url.password = 'lane-test';
      const database = await openDatabase({ url: url.toString(), max: 2, application: 'stockctl-batched-test' });
      let outcomes: Outcome<ReserveResult>[];
      try {
        await Promise.all([1, 2].map(() => database.sql`SELECT pg_sleep(0.05)`));
        outcomes = await inOneBatch(database.db, 'FULL', Array.from({ length: 6 }, () => () => buy(database.db, 'FULL')));
      } finally {
        await database.close();
      }
      expect(unexpected(outcomes, ['insufficient_stock'])).toEqual([]);
      expect(outcomes.map((o) => o.ok)).toEqual([true, true, false, false, false, false]);
      const [batch] = await t.sql`SELECT count(*)::int AS orders, count(DISTINCT o.created_at)::int AS commits
                                    FROM orders o JOIN order_items i USING (order_id) WHERE i.sku = 'FULL'`;
      expect(batch).toEqual({ orders: 2, commits: 1 });
      expect(await invariantViolations(t.sql)).toEqual([]);
    } finally {
      await t.sql.unsafe(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('a lone buyer goes at once, as guarded would, and is recorded as batched', async () => {
    await addProducts(t.db, { ALONE: 1 });
    const [outcome] = await withPool((db) => Promise.all([buy(db, 'ALONE')]));
    expect(created(outcome)).toMatchObject({ strategy: 'batched', replay: false, items: [{ sku: 'ALONE', quantity: 1 }] });
    const [row] = await t.sql`SELECT strategy FROM orders WHERE order_id = ${created(outcome)!.order_id}`;
    expect(row.strategy).toBe('batched');
  });
});
