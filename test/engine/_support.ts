/**
 * Shared pieces of the engine tests: separate connection pools for real concurrency,
 * outcome bookkeeping, simulated passage of time, and the invariants `verify` checks
 * as SQL.
 */
import postgres from 'postgres';
import { inject } from 'vitest';
import { openDatabase, type Database, type Db } from '../../src/db/client.js';
import { addProduct } from '../../src/engine/catalogue.js';
import { DEFAULT_SETTINGS, type Settings } from '../../src/engine/settings.js';
import { StockctlError } from '../../src/errors.js';

export const ACTOR = 'engine-test';
export const SETTINGS: Settings = { ...DEFAULT_SETTINGS };

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Open `n` pools of ONE connection each, so every caller really is a separate session.
 * Each pool has already connected (openDatabase runs a schema check), so a
 * Promise.all over them starts at the same moment.
 */
export async function openPools(url: string, n: number, application = 'stockctl-engine-test'): Promise<Database[]> {
  const pools: Database[] = [];
  try {
    for (let start = 0; start < n; start += 10) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(10, n - start) }, () => openDatabase({ url, max: 1, application })),
      );
      pools.push(...batch);
    }
    return pools;
  } catch (err) {
    await closePools(pools);
    throw err;
  }
}

export async function closePools(pools: Database[]): Promise<void> {
  await Promise.all(pools.map((p) => p.close().catch(() => {})));
}

/**
 * Open n single-connection pools, run fn, close them whatever happens. A concurrent
 * section that has not finished by `deadlineMs` (a deadlock storm, a lost wakeup) is
 * stopped: its sessions are terminated server-side, so that it fails on its own with
 * the sessions' wait states instead of hanging the whole file, and the error says so.
 */
export async function withPools<T>(
  url: string,
  n: number,
  fn: (dbs: Db[]) => Promise<T>,
  { deadlineMs = 30_000 } = {},
): Promise<T> {
  const application = `stockctl-engine-test-${Math.random().toString(36).slice(2, 8)}`;
  const pools = await openPools(url, n, application);
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = fn(pools.map((p) => p.db));
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void stopSessions(url, application).then(
          (report) => reject(new Error(`concurrent section did not finish within ${deadlineMs} ms; ${report}`)),
          (err: unknown) => reject(new Error(`concurrent section did not finish within ${deadlineMs} ms (${String(err)})`)),
        );
      }, deadlineMs);
    });
    work.catch(() => {}); // after a deadline its rejections are expected
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
    await closePools(pools);
  }
}

/** Describe what the sessions of `application` are waiting for, then terminate them. */
async function stopSessions(url: string, application: string): Promise<string> {
  const admin = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'stockctl-test-reaper' } });
  try {
    const waits = await admin<{ state: string; wait: string; n: number }[]>`
      SELECT state, coalesce(wait_event_type || ':' || wait_event, '-') AS wait, count(*)::int AS n
        FROM pg_stat_activity WHERE application_name = ${application} GROUP BY 1, 2 ORDER BY 3 DESC`;
    const [{ deadlocks }] = await admin<{ deadlocks: number }[]>`
      SELECT deadlocks::int FROM pg_stat_database WHERE datname = current_database()`;
    await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${application}`;
    return `sessions then: ${waits.map((w) => `${w.n} ${w.state} (${w.wait})`).join(', ') || 'none'}; deadlocks so far in this database: ${deadlocks}`;
  } finally {
    await admin.end({ timeout: 5 });
  }
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

export async function attempt<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** The domain code of an error ('insufficient_stock', 'stock_conflict', ...) or 'unexpected'. */
export function codeOf(err: unknown): string {
  return err instanceof StockctlError ? err.code : 'unexpected';
}

export function describeError(err: unknown): string {
  if (err instanceof StockctlError) return `${err.name}(${err.code}, exit ${err.exitCode}): ${err.message}`;
  const e = err as { message?: string; code?: string; cause?: { message?: string; code?: string } };
  return `unexpected ${e?.code ?? e?.cause?.code ?? ''} ${e?.cause?.message ?? e?.message ?? String(err)}`;
}

/** Count outcomes by code ('ok' for successes). */
export function tally(outcomes: Outcome<unknown>[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) {
    const key = o.ok ? 'ok' : codeOf(o.error);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** Errors that are neither successes nor one of the allowed domain codes. */
export function unexpected(outcomes: Outcome<unknown>[], allowed: string[]): string[] {
  return outcomes.filter((o) => !o.ok && !allowed.includes(codeOf(o.error))).map((o) => describeError((o as { error: unknown }).error));
}

export async function addProducts(db: Db, stock: Record<string, number>, price = 1000): Promise<void> {
  for (const [sku, qty] of Object.entries(stock)) {
    await addProduct(db, { sku, name: `Product ${sku}`, price, stock: qty, actor: ACTOR });
  }
}

export interface StockState {
  sku: string;
  stock_quantity: number;
  reserved_stock: number;
  version: number;
}

export async function stockOf(sql: postgres.Sql, sku: string): Promise<StockState> {
  const [row] = await sql<StockState[]>`
    SELECT sku, stock_quantity, reserved_stock, version FROM stock_items WHERE sku = ${sku}`;
  if (!row) throw new Error(`no stock row ${sku}`);
  return row;
}

/** Simulate the passage of time: these pending orders (or all) are now past their window. */
export async function expireNow(sql: postgres.Sql, orderIds?: string[]): Promise<void> {
  await sql.begin(async (tx) => {
    if (orderIds) {
      await tx`UPDATE orders SET payment_expires_at = now() - interval '1 second'
                WHERE status = 'pending' AND order_id = ANY(${orderIds}::uuid[])`;
      await tx`UPDATE stock_reservations SET expires_at = now() - interval '1 second'
                WHERE status = 'active' AND order_id = ANY(${orderIds}::uuid[])`;
    } else {
      await tx`UPDATE orders SET payment_expires_at = now() - interval '1 second' WHERE status = 'pending'`;
      await tx`UPDATE stock_reservations SET expires_at = now() - interval '1 second' WHERE status = 'active'`;
    }
  });
}

/**
 * Every invariant `verify` checks (and a few more that follow from how the engine works), as SQL.
 * Returns one line per violation; [] means the database is consistent.
 */
export async function invariantViolations(sql: postgres.Sql): Promise<string[]> {
  const problems: string[] = [];
  // Per stock level (a SKU at a location): its counters against its reservations and its ledger.
  const levels = await sql<
    {
      level: string;
      stock_quantity: number;
      reserved_stock: number;
      incoming: number;
      in_stock: boolean;
      active: number;
      ledger_stock: number;
      ledger_reserved: number;
      ledger_incoming: number;
    }[]
  >`
    SELECT l.sku || ' at ' || l.location AS level, l.stock_quantity, l.reserved_stock, l.incoming, l.in_stock,
           coalesce((SELECT sum(quantity) FROM stock_reservations r
                      WHERE r.sku = l.sku AND r.location = l.location AND r.status = 'active'), 0)::int AS active,
           coalesce((SELECT sum(stock_delta) FROM stock_movements m WHERE m.sku = l.sku AND m.location = l.location), 0)::int AS ledger_stock,
           coalesce((SELECT sum(reserved_delta) FROM stock_movements m WHERE m.sku = l.sku AND m.location = l.location), 0)::int AS ledger_reserved,
           coalesce((SELECT sum(incoming_delta) FROM stock_movements m WHERE m.sku = l.sku AND m.location = l.location), 0)::int AS ledger_incoming
      FROM stock_levels l ORDER BY l.sku, l.location`;
  for (const r of levels) {
    if (r.reserved_stock !== r.active) problems.push(`${r.level}: reserved_stock ${r.reserved_stock} != active reservations ${r.active}`);
    if (r.reserved_stock !== r.ledger_reserved) problems.push(`${r.level}: reserved_stock ${r.reserved_stock} != ledger reserved ${r.ledger_reserved}`);
    if (r.stock_quantity !== r.ledger_stock) problems.push(`${r.level}: stock_quantity ${r.stock_quantity} != ledger stock ${r.ledger_stock}`);
    if (r.incoming !== r.ledger_incoming) problems.push(`${r.level}: incoming ${r.incoming} != ledger incoming ${r.ledger_incoming}`);
    if (r.reserved_stock < 0 || r.reserved_stock > r.stock_quantity) problems.push(`${r.level}: reserved ${r.reserved_stock} out of [0, ${r.stock_quantity}]`);
    if (r.in_stock !== r.stock_quantity - r.reserved_stock > 0) problems.push(`${r.level}: in_stock ${r.in_stock} wrong`);
  }
  // Reservations and ledger rows of a level that does not exist are counted nowhere above.
  const strays = await sql<{ what: string; level: string }[]>`
    SELECT 'an active reservation' AS what, r.sku || ' at ' || r.location AS level FROM stock_reservations r
     WHERE r.status = 'active' AND NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.sku = r.sku AND l.location = r.location)
    UNION ALL
    SELECT 'ledger rows that do not sum to 0', m.sku || ' at ' || m.location FROM stock_movements m
     WHERE NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.sku = m.sku AND l.location = m.location)
     GROUP BY m.sku, m.location
    HAVING sum(m.stock_delta) <> 0 OR sum(m.reserved_delta) <> 0 OR sum(m.incoming_delta) <> 0`;
  for (const r of strays) problems.push(`${r.level}: ${r.what} but no such stock level`);

  const orders = await sql<{ order_id: string; status: string; items: number; active: number; active_covering: number }[]>`
    SELECT o.order_id, o.status,
           (SELECT count(*) FROM order_items i WHERE i.order_id = o.order_id)::int AS items,
           (SELECT count(*) FROM stock_reservations r WHERE r.order_id = o.order_id AND r.status = 'active')::int AS active,
           (SELECT count(DISTINCT r.order_item_id) FROM stock_reservations r WHERE r.order_id = o.order_id AND r.status = 'active')::int AS active_covering
      FROM orders o`;
  for (const o of orders) {
    if (o.status === 'pending' && (o.active === 0 || o.active_covering !== o.items)) {
      problems.push(`order ${o.order_id}: pending with ${o.active} active reservation(s) for ${o.items} line(s)`);
    }
    if (o.status !== 'pending' && o.active > 0) problems.push(`order ${o.order_id}: ${o.status} but holds ${o.active} active reservation(s)`);
  }

  const badTimes = await sql<{ order_id: string; status: string }[]>`
    SELECT order_id, status FROM orders
     WHERE (status = 'paid' AND (paid_at IS NULL OR payment_expires_at IS NOT NULL))
        OR (status = 'cancelled' AND cancelled_at IS NULL)
        OR (status = 'pending' AND payment_expires_at IS NULL)`;
  for (const o of badTimes) problems.push(`order ${o.order_id}: ${o.status} with inconsistent timestamps`);

  // Paid orders: exactly their lines were sold (converted), per SKU.
  const paidMismatch = await sql<{ order_id: string; sku: string; ordered: number; converted: number }[]>`
    SELECT i.order_id, i.sku, sum(i.quantity)::int AS ordered,
           coalesce((SELECT sum(r.quantity) FROM stock_reservations r
                      WHERE r.order_id = i.order_id AND r.sku = i.sku AND r.status = 'converted'), 0)::int AS converted
      FROM order_items i JOIN orders o ON o.order_id = i.order_id AND o.status = 'paid'
     GROUP BY i.order_id, i.sku
    HAVING sum(i.quantity) <> coalesce((SELECT sum(r.quantity) FROM stock_reservations r
                      WHERE r.order_id = i.order_id AND r.sku = i.sku AND r.status = 'converted'), 0)`;
  for (const p of paidMismatch) problems.push(`order ${p.order_id}: paid ${p.ordered} ${p.sku} but ${p.converted} converted`);

  // Per reservation: released at most once, sold at most once, and its ledger matches its state.
  const perReservation = await sql<
    { reservation_id: string; status: string; quantity: number; order_status: string; releases: number; sales: number; restocks: number; rd: number; sd: number }[]
  >`
    SELECT r.reservation_id, r.status, r.quantity, o.status AS order_status,
           count(*) FILTER (WHERE m.kind IN ('release', 'expire'))::int AS releases,
           count(*) FILTER (WHERE m.kind = 'sale')::int AS sales,
           count(*) FILTER (WHERE m.kind = 'restock')::int AS restocks,
           coalesce(sum(m.reserved_delta), 0)::int AS rd,
           coalesce(sum(m.stock_delta), 0)::int AS sd
      FROM stock_reservations r
      JOIN orders o ON o.order_id = r.order_id
      LEFT JOIN stock_movements m ON m.reservation_id = r.reservation_id
     GROUP BY r.reservation_id, r.status, r.quantity, o.status`;
  for (const r of perReservation) {
    const id = `reservation ${r.reservation_id} (${r.status}, order ${r.order_status})`;
    if (r.releases > 1) problems.push(`${id}: released ${r.releases} times`);
    if (r.sales > 1) problems.push(`${id}: sold ${r.sales} times`);
    if (r.restocks > 1) problems.push(`${id}: restocked ${r.restocks} times`);
    const expectedRd = r.status === 'active' ? r.quantity : 0;
    if (r.rd !== expectedRd) problems.push(`${id}: ledger reserved delta ${r.rd}, expected ${expectedRd}`);
    const expectedSd = r.status === 'converted' && r.restocks === 0 ? -r.quantity : 0;
    if (r.sd !== expectedSd) problems.push(`${id}: ledger stock delta ${r.sd}, expected ${expectedSd}`);
    if ((r.status === 'expired' || r.status === 'cancelled') && r.releases !== 1) problems.push(`${id}: released ${r.releases} times`);
  }
  return problems;
}

/**
 * Connections are scarce (max_connections is 100 on the test servers) and the engine
 * test files run in parallel. Concurrent sections take a shared advisory lock on the
 * server's admin database; the one that wants (nearly) every connection takes it
 * exclusively. Advisory locks are per database, so they live in the admin database,
 * which every test file shares.
 */
const BUDGET_LOCK = 0x5e0c7c71;

export async function withConnectionBudget<T>(mode: 'shared' | 'exclusive', fn: () => Promise<T>): Promise<T> {
  // One session that stays open (no idle timeout) for as long as the lock is needed.
  const admin = postgres(inject('testServer').adminUrl, {
    max: 1,
    idle_timeout: 0,
    connect_timeout: 10,
    onnotice: () => {},
    connection: { application_name: 'stockctl-test-budget' },
  });
  try {
    if (mode === 'shared') await admin`SELECT pg_advisory_lock_shared(${BUDGET_LOCK})`;
    else await admin`SELECT pg_advisory_lock(${BUDGET_LOCK})`;
    return await fn();
  } finally {
    // Ending the session releases the advisory lock.
    await admin.end({ timeout: 5 });
  }
}

/** How many more sessions the server will take right now, less a margin. */
export async function freeConnections(sql: postgres.Sql, margin = 8): Promise<number> {
  // Behind a pooler, clients beyond its server connections wait in its queue: no limit here.
  if (inject('testServer').pooler) return 1000;
  const [row] = await sql<{ max: number; used: number }[]>`
    SELECT current_setting('max_connections')::int AS max, (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS used`;
  return row.max - row.used - margin;
}
