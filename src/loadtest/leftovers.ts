/**
 * What loadtest runs leave behind (a run killed before it could clean up, or kept with
 * --keep), and removing it. Only what is the loadtest's alone goes: an order that someone
 * made with a loadtest SKU beside a real one is theirs, so it stays whole, and with it the
 * loadtest SKUs it holds and every order on those (deleting any of them would leave a
 * counter that the ledger no longer explains).
 */
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { execute, rows, transaction, type Tx } from '../db/query.js';
import { LOADTEST_SKU_PREFIX } from './skus.js';

/**
 * Every run's SKUs start `loadtest-<run id>-` (LOADTEST_SKU_PREFIX), and so do the codes of
 * the locations of its own (--locations); its scratch table is `loadtest_bare_<run id>`.
 */
export const ANY_RUN = '[0-9a-f]{8}';
const runSkus = (runId: string) => `^${LOADTEST_SKU_PREFIX}${runId}-`;
const runTables = (runId: string) => `^loadtest_bare_${runId}$`;

export interface LoadtestLeftovers {
  /** Run ids whose rows or scratch table can still be removed. */
  runs: string[];
  skus: number;
  orders: number;
  scratch_tables: number;
  /** The run's own locations (--locations) that nothing else holds stock at or names any more. */
  locations: number;
}

/** An order that holds a real SKU beside loadtest ones: not the loadtest's to remove. */
export interface HoldingOrder {
  order_id: string;
  ref: string | null;
  status: string;
  /** Its loadtest SKUs. */
  skus: string[];
  /** Its other SKUs. */
  real_skus: string[];
}

export interface KeptLeftovers {
  /** Loadtest SKUs that stay, because an order holding a real SKU also holds them. */
  skus: string[];
  /** Orders that stay: the holding orders and every other order on those SKUs. */
  orders: number;
  holders: HoldingOrder[];
}

export interface RemovedLeftovers extends LoadtestLeftovers {
  reservations: number;
  ledger_rows: number;
  kept: KeptLeftovers;
}

/**
 * The loadtest SKUs (matching `pattern`) that must stay: those on an order with a line
 * outside the pattern, the parents of a real variant, and, over and over, every SKU of the
 * pattern on an order that has a line on one that stays.
 */
const heldSkus = (pattern: string): SQL => sql`
  WITH RECURSIVE held(sku) AS (
      SELECT mine.sku FROM order_items mine JOIN order_items other ON other.order_id = mine.order_id
       WHERE mine.sku ~ ${pattern} AND other.sku !~ ${pattern}
    UNION
      SELECT p.sku FROM products p JOIN product_variants v ON v.product_id = p.product_id
       WHERE p.sku ~ ${pattern} AND v.sku !~ ${pattern}
    UNION
      SELECT mine.sku FROM held h JOIN order_items o ON o.sku = h.sku JOIN order_items mine ON mine.order_id = o.order_id
       WHERE mine.sku ~ ${pattern}
  ) SELECT DISTINCT sku FROM held`;

/** Orders whose every line is on a loadtest SKU that can go. */
const removableOrders = (pattern: string, held: SQL): SQL =>
  sql`SELECT DISTINCT order_id FROM order_items WHERE sku ~ ${pattern} AND sku NOT IN (${held})`;

/**
 * A run's locations (matching `pattern`) with nothing left at them: no level, reservation,
 * ledger row or transfer (a kept SKU keeps its levels, and so its locations).
 */
const removableLocations = (pattern: string): SQL => sql`
  SELECT code FROM locations loc WHERE code ~ ${pattern}
     AND NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.location = loc.code)
     AND NOT EXISTS (SELECT 1 FROM stock_reservations r WHERE r.location = loc.code)
     AND NOT EXISTS (SELECT 1 FROM stock_movements m WHERE m.location = loc.code)
     AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.from_location = loc.code OR t.to_location = loc.code)`;

/** A run's locations whose SKUs can all go (their rows go first): every one with no level of a kept SKU, nor anything else's. */
const leftoverLocations = (pattern: string, held: SQL): SQL => sql`
  SELECT code FROM locations loc WHERE code ~ ${pattern}
     AND NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.location = loc.code AND (l.sku !~ ${pattern} OR l.sku IN (${held})))
     AND NOT EXISTS (SELECT 1 FROM stock_reservations r WHERE r.location = loc.code AND r.sku !~ ${pattern})
     AND NOT EXISTS (SELECT 1 FROM stock_movements m WHERE m.location = loc.code AND m.sku !~ ${pattern})
     AND NOT EXISTS (SELECT 1 FROM transfers t WHERE (t.from_location = loc.code OR t.to_location = loc.code) AND t.sku !~ ${pattern})`;

async function scratchTables(on: Tx, runId: string): Promise<string[]> {
  const found = await rows<{ name: string }>(
    on,
    sql`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND tablename ~ ${runTables(runId)} ORDER BY 1`,
  );
  return found.map((t) => t.name);
}

const runOf = (sku: string) => sku.slice(LOADTEST_SKU_PREFIX.length, LOADTEST_SKU_PREFIX.length + 8);

/** What earlier runs left that can be removed (what must stay is no leftover: see `kept`). */
export async function findLeftovers(database: Database): Promise<LoadtestLeftovers> {
  const pattern = runSkus(ANY_RUN);
  const held = heldSkus(pattern);
  const stock = await rows<{ sku: string }>(
    database.db,
    sql`SELECT sku FROM (SELECT sku FROM products WHERE sku ~ ${pattern} UNION ALL SELECT sku FROM product_variants WHERE sku ~ ${pattern}) s
         WHERE sku NOT IN (${held})`,
  );
  const [orders] = await rows<{ n: number }>(database.db, sql`SELECT count(*)::int AS n FROM (${removableOrders(pattern, held)}) o`);
  const tables = await scratchTables(database.db, ANY_RUN);
  const locations = await rows<{ code: string }>(database.db, leftoverLocations(pattern, held));
  const runs = new Set([...stock.map((r) => runOf(r.sku)), ...tables.map((t) => t.slice(-8)), ...locations.map((l) => runOf(l.code))]);
  return { runs: [...runs].sort(), skus: stock.length, orders: orders.n, scratch_tables: tables.length, locations: locations.length };
}

/**
 * Remove a run's rows (or every run's, with ANY_RUN): orders, their reservations, status
 * history and ledger rows, the SKUs, the scratch table; except what an order holding a real
 * SKU keeps, which is returned as `kept`.
 */
export async function removeRuns(database: Database, runId: string): Promise<RemovedLeftovers> {
  const pattern = runSkus(runId);
  const removed = await transaction(database.db, async (tx) => {
    const txCount = async (query: SQL) => (await rows<{ n: number }>(tx, query))[0].n;
    const deleted = (table: SQL, where: SQL) => txCount(sql`WITH d AS (DELETE FROM ${table} WHERE ${where} RETURNING 1) SELECT count(*)::int AS n FROM d`);
    await execute(tx, sql`CREATE TEMP TABLE lt_held ON COMMIT DROP AS ${heldSkus(pattern)}`);
    const held = sql`SELECT sku FROM lt_held`;
    await execute(tx, sql`CREATE TEMP TABLE lt_orders ON COMMIT DROP AS ${removableOrders(pattern, held)}`);
    const holders = await rows<HoldingOrder>(
      tx,
      sql`SELECT o.order_id, o.ref, o.status,
                 array_agg(DISTINCT i.sku ORDER BY i.sku) FILTER (WHERE i.sku ~ ${pattern}) AS skus,
                 array_agg(DISTINCT i.sku ORDER BY i.sku) FILTER (WHERE i.sku !~ ${pattern}) AS real_skus
            FROM orders o JOIN order_items i ON i.order_id = o.order_id
           WHERE o.order_id IN (SELECT order_id FROM order_items WHERE sku IN (${held}))
           GROUP BY o.order_id HAVING bool_or(i.sku !~ ${pattern})
           ORDER BY min(o.created_at), o.order_id`,
    );
    const keptSkus = (await rows<{ sku: string }>(tx, sql`SELECT sku FROM lt_held ORDER BY sku`)).map((r) => r.sku);
    const keptOrders = await txCount(sql`SELECT count(DISTINCT order_id)::int AS n FROM order_items WHERE sku IN (${held})`);
    const removable = (column: SQL) => sql`${column} ~ ${pattern} AND ${column} NOT IN (${held})`;
    const runs = await rows<{ sku: string }>(
      tx,
      sql`SELECT sku FROM products WHERE ${removable(sql`sku`)} UNION SELECT sku FROM product_variants WHERE ${removable(sql`sku`)}`,
    );
    const orders = await txCount(sql`SELECT count(*)::int AS n FROM lt_orders`);
    const inOrders = sql`order_id IN (SELECT order_id FROM lt_orders)`;
    const ledgerRows = await deleted(sql`stock_movements`, removable(sql`sku`));
    const reservations = await deleted(sql`stock_reservations`, inOrders);
    await execute(tx, sql`DELETE FROM order_status_history WHERE ${inOrders}`);
    await execute(tx, sql`DELETE FROM order_items WHERE ${inOrders}`);
    await execute(tx, sql`DELETE FROM orders WHERE ${inOrders}`);
    await execute(tx, sql`DELETE FROM transfers WHERE ${removable(sql`sku`)}`);
    await execute(tx, sql`DELETE FROM stock_levels WHERE ${removable(sql`sku`)}`);
    const variants = await deleted(sql`product_variants`, removable(sql`sku`));
    const products = await deleted(
      sql`products p`,
      sql`${removable(sql`p.sku`)} AND NOT EXISTS (SELECT 1 FROM product_variants v WHERE v.product_id = p.product_id)`,
    );
    const locations = await rows<{ code: string }>(tx, sql`DELETE FROM locations WHERE code IN (${removableLocations(pattern)}) RETURNING code`);
    return {
      skuRuns: [...runs.map((r) => runOf(r.sku)), ...locations.map((l) => runOf(l.code))],
      locations: locations.length,
      orders,
      ledger_rows: ledgerRows,
      reservations,
      skus: variants + products,
      kept: { skus: keptSkus, orders: keptOrders, holders },
    };
  });
  const tables = await scratchTables(database.db, runId);
  for (const table of tables) await database.sql`DROP TABLE IF EXISTS ${database.sql(table)}`;
  const { skuRuns, locations, ...counts } = removed;
  const runs = [...new Set([...skuRuns, ...tables.map((t) => t.slice(-8))])].sort();
  return { runs, ...counts, scratch_tables: tables.length, locations };
}

/** `loadtest --cleanup`: remove what every earlier run left behind. */
export function removeLeftovers(database: Database): Promise<RemovedLeftovers> {
  return removeRuns(database, ANY_RUN);
}
