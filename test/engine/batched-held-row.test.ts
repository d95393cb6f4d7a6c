/**
 * `batched` with a stock row that another session holds (a pay, a `stock adjust`, another
 * process): the other SKUs of its lane are served meanwhile, and its own buyers wait for
 * the row apart, getting their orders once it is released, or the lock-timeout error.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';
import { toDomainError } from '../../src/db/errors.js';
import { laneOf } from '../../src/engine/reserve/batched.js';
import { reserveOrder, type ReserveResult } from '../../src/engine/orders.js';
import { useTestDatabase } from '../helpers/db.js';
import { holdLock as holdLockOn, holdStockLevel } from '../helpers/locks.js';
import { ACTOR, SETTINGS, addProducts, attempt, invariantViolations, stockOf, type Outcome } from './_support.js';

const t = useTestDatabase();

const HELD = 'HELD';
/** SKUs of HELD's lane (a SKU always goes through the same lane). */
const SAME_LANE = ['HOLD-A', 'HOLD-B', 'HOLD-C', 'HOLD-D', 'HOLD-E', 'HOLD-F', 'HOLD-G', 'HOLD-H', 'HOLD-I', 'HOLD-J']
  .filter((sku) => laneOf(sku) === laneOf(HELD))
  .slice(0, 3);
/** Another SKU of HELD's lane, for a row held in a batch the server refuses. */
const HELD_TOO = ['HELD-2', 'HELD-3', 'HELD-4', 'HELD-5'].find((sku) => laneOf(sku) === laneOf(HELD))!;
/** A SKU of the same lane whose first buyer keeps the lane busy while the others queue. */
const GATE = ['GATE', 'GATE-A', 'GATE-B', 'GATE-C'].find((sku) => laneOf(sku) === laneOf(HELD))!;

const buy = (db: Database['db'], sku: string, quantity = 1, customerId?: string) =>
  attempt(() => reserveOrder(db, { lines: [{ sku, quantity }], strategy: 'batched', actor: ACTOR, customerId }, SETTINGS));

const holdLock = (statement: string) => holdLockOn(t.url, statement);
/** Hold the stock row of `sku` (its level at 'default'), as a pay or a `stock adjust` would. */
const holdRow = (sku: string) => holdStockLevel(t.url, sku);

/** A promise's outcome, and whether it has come yet. */
function watch<T>(p: Promise<T>) {
  const w = { settled: false, result: p };
  void p.finally(() => (w.settled = true));
  return w;
}

async function withPool<T>(fn: (db: Database['db']) => Promise<T>, opts: { lockTimeoutMs?: number } = {}): Promise<T> {
  const database = await openDatabase({ url: t.url, max: 8, application: 'stockctl-held-row-test', ...opts });
  try {
    return await fn(database.db);
  } finally {
    await database.close();
  }
}

const created = (o: Outcome<ReserveResult>) => (o.ok ? o.value : undefined);

beforeAll(async () => {
  expect(SAME_LANE).toHaveLength(3);
  await addProducts(t.db, Object.fromEntries([HELD, HELD_TOO, GATE, ...SAME_LANE].map((sku) => [sku, 100])));
});

describe('batched, with a stock row held by another session', () => {
  it('a lone buyer of the held row does not hold up its lane: the others are served while it waits', async () => {
    const row = await holdRow(HELD);
    try {
      await withPool(async (db) => {
        const blocked = watch(buy(db, HELD));
        const others = await Promise.all(SAME_LANE.map((sku) => buy(db, sku)));
        // Answered while the row is still held.
        expect(others.map((o) => created(o)?.items[0].sku)).toEqual(SAME_LANE);
        expect(blocked.settled).toBe(false);
        await row.release();
        expect(created(await blocked.result)).toMatchObject({ strategy: 'batched', items: [{ sku: HELD, quantity: 1 }] });
      });
    } finally {
      await row.release();
    }
    expect(await stockOf(t.sql, HELD)).toMatchObject({ reserved_stock: 1 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('in one batch with other SKUs: they are served in it; the held row\'s buyers wait apart and are served in arrival order', async () => {
    const row = await holdRow(HELD);
    const start = await stockOf(t.sql, HELD);
    // The first of the held row's buyers asks for all that is left: the second is refused
    // unless they are served out of order.
    const left = start.stock_quantity - start.reserved_stock;
    try {
      await withPool(async (db) => {
        // The ledger table held for a moment keeps a first buyer in flight, so that the
        // next ones queue and go as one batch.
        const gate = await holdLock('LOCK TABLE stock_movements IN SHARE MODE');
        let first: Promise<Outcome<ReserveResult>>;
        let queued: Promise<Outcome<ReserveResult>>[];
        try {
          first = buy(db, GATE);
          await new Promise((resolve) => setTimeout(resolve, 200)); // the first is in flight
          queued = [
            buy(db, SAME_LANE[0]),
            buy(db, HELD, left),
            buy(db, SAME_LANE[1]),
            buy(db, HELD, 1),
            buy(db, SAME_LANE[2]),
          ];
          await new Promise((resolve) => setTimeout(resolve, 100)); // all of them queued
        } finally {
          await gate.release();
        }
        const heldBuyers = [watch(queued[1]), watch(queued[3])];
        const [gateOutcome, a, b, c] = await Promise.all([first, queued[0], queued[2], queued[4]]);
        expect(created(gateOutcome)).toBeDefined();
        const served = [a, b, c].map((o) => created(o)!);
        expect(served.map((o) => o?.items[0].sku)).toEqual(SAME_LANE);
        // One batch: the three orders share their statement's start time.
        const [{ commits }] = await t.sql<{ commits: number }[]>`
          SELECT count(DISTINCT created_at)::int AS commits FROM orders WHERE order_id = ANY(${served.map((o) => o.order_id)}::uuid[])`;
        expect(commits).toBe(1);
        expect(heldBuyers.map((w) => w.settled)).toEqual([false, false]);
        await row.release();
        const [all, one] = await Promise.all(heldBuyers.map((w) => w.result));
        expect(created(all)).toMatchObject({ strategy: 'batched', items: [{ sku: HELD, quantity: left }] });
        expect(one.ok).toBe(false);
        expect((one as { error: { code: string; shortages: unknown } }).error).toMatchObject({
          code: 'insufficient_stock',
          shortages: [{ sku: HELD, requested: 1, available: 0 }],
        });
      });
    } finally {
      await row.release();
    }
    expect(await stockOf(t.sql, HELD)).toMatchObject({ reserved_stock: start.stock_quantity });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('a row held past the lock deadline: its buyers get the lock-timeout error, the others their orders', async () => {
    const row = await holdRow(HELD);
    const before = await stockOf(t.sql, HELD);
    try {
      await withPool(
        async (db) => {
          const blocked = [watch(buy(db, HELD)), watch(buy(db, HELD))];
          const others = await Promise.all(SAME_LANE.map((sku) => buy(db, sku)));
          expect(others.every((o) => o.ok)).toBe(true);
          for (const w of blocked) {
            const outcome = await w.result;
            expect(outcome.ok).toBe(false);
            const error = toDomainError((outcome as { error: unknown }).error) as { code: string; exitCode: number; message: string };
            expect({ code: error.code, exitCode: error.exitCode, message: error.message }).toEqual({
              code: 'timeout',
              exitCode: 7,
              message: 'Waited too long for a row or table locked by another session (lock timeout); retry shortly.',
            });
          }
        },
        { lockTimeoutMs: 500 },
      );
    } finally {
      await row.release();
    }
    expect(await stockOf(t.sql, HELD)).toEqual(before);
    expect(await invariantViolations(t.sql)).toEqual([]);
  });

  it('in a batch the server refuses: each buyer goes on its own, and the held row\'s buyer still waits apart', async () => {
    const row = await holdRow(HELD_TOO);
    try {
      await withPool(async (db) => {
        const gate = await holdLock('LOCK TABLE stock_movements IN SHARE MODE');
        let first: Promise<Outcome<ReserveResult>>;
        let queued: Promise<Outcome<ReserveResult>>[];
        try {
          first = buy(db, GATE);
          await new Promise((resolve) => setTimeout(resolve, 200)); // the first is in flight
          queued = [
            // PostgreSQL text cannot hold a NUL byte: the batch is refused, then this one alone.
            buy(db, SAME_LANE[0], 1, 'bad\u0000customer'),
            buy(db, HELD_TOO),
            buy(db, SAME_LANE[1]),
          ];
          await new Promise((resolve) => setTimeout(resolve, 100)); // all of them queued
        } finally {
          await gate.release();
        }
        const heldBuyer = watch(queued[1]);
        const [gateOutcome, bad, good] = await Promise.all([first, queued[0], queued[2]]);
        expect(created(gateOutcome)).toBeDefined();
        expect(bad.ok).toBe(false);
        expect(created(good)).toMatchObject({ items: [{ sku: SAME_LANE[1], quantity: 1 }] });
        // The lane is free for the next buyers meanwhile.
        expect(created(await buy(db, SAME_LANE[2]))).toMatchObject({ items: [{ sku: SAME_LANE[2], quantity: 1 }] });
        expect(heldBuyer.settled).toBe(false);
        await row.release();
        expect(created(await heldBuyer.result)).toMatchObject({ strategy: 'batched', items: [{ sku: HELD_TOO, quantity: 1 }] });
      });
    } finally {
      await row.release();
    }
    expect(await stockOf(t.sql, HELD_TOO)).toMatchObject({ reserved_stock: 1 });
    expect(await invariantViolations(t.sql)).toEqual([]);
  });
});
