/**
 * The one definition of a stock change. Every command that moves units (reserve,
 * release, sale, restock, set, adjust, repair) goes through `applyStockChanges`,
 * which updates the counters and writes the ledger in a single statement, so the two
 * can never disagree.
 */
import { sql, type SQL } from 'drizzle-orm';
import { array, execute, rows, type Tx } from '../db/query.js';
import { NotFoundError } from '../errors.js';
import { STOCK_CHANNEL } from './stock-events.js';

export type MovementKind =
  | 'initial'
  | 'set'
  | 'adjust'
  | 'reserve'
  | 'release'
  | 'expire'
  | 'sale'
  | 'restock'
  | 'repair'
  | 'drift'
  | 'transfer_out'
  | 'transfer_in'
  | 'transfer_receive'
  | 'transfer_cancel'
  /** A location activated or deactivated: its levels' versions move, no counter. */
  | 'location';

/** A change of one stock level: a SKU at a location. */
export interface StockChange {
  sku: string;
  location: string;
  stockDelta: number;
  reservedDelta: number;
  /** Units on their way to this location (transfers); never available. */
  incomingDelta?: number;
  kind: MovementKind;
  orderId?: string | null;
  reservationId?: string | null;
  transferId?: number | null;
  reason?: string | null;
  /** Optimistic strategy: apply only if the level is still at this version. */
  expectedVersion?: number | null;
}

/** A SKU with its stock summed over its locations (the stock_items view). */
export interface StockRow {
  productId: string;
  variantId: string | null;
  sku: string;
  name: string;
  price: number;
  stockQuantity: number;
  reservedStock: number;
  incoming: number;
  /** Summed over active locations, each clamped at 0. */
  available: number;
  version: number;
  inStock: boolean;
  /** How many locations hold a level of it. */
  locations: number;
}

/** One SKU at one location, with what reserve needs to know of the location. */
export interface LevelRow {
  productId: string;
  variantId: string | null;
  sku: string;
  location: string;
  stockQuantity: number;
  reservedStock: number;
  incoming: number;
  version: number;
  priority: number;
  active: boolean;
}

/**
 * A level's available units in SQL, the rule levelAvailable (stock-item.ts) and the
 * stock_items view follow: on hand less reserved, never below 0, none where the location
 * does not sell. `level` is the level's alias, `active` whether its location sells.
 */
export const levelAvailableSql = (level: string, active: string): SQL =>
  sql.raw(`CASE WHEN ${active} THEN greatest(${level}.stock_quantity - ${level}.reserved_stock, 0) ELSE 0 END`);

const stockRowColumns = sql.raw(`product_id AS "productId", variant_id AS "variantId", sku, name, price,
  stock_quantity AS "stockQuantity", reserved_stock AS "reservedStock", incoming, available, version,
  in_stock AS "inStock", locations`);

/** Read SKUs' totals (no lock), in SKU order. */
export async function readStockRows(tx: Tx, skus?: string[]): Promise<StockRow[]> {
  const where = skus ? sql`WHERE sku = ANY(${array(skus)}::text[])` : sql``;
  return rows<StockRow>(tx, sql`SELECT ${stockRowColumns} FROM stock_items ${where} ORDER BY sku`);
}

const levelColumns = sql.raw(`l.product_id AS "productId", l.variant_id AS "variantId", l.sku, l.location,
  l.stock_quantity AS "stockQuantity", l.reserved_stock AS "reservedStock", l.incoming, l.version,
  loc.priority, loc.active`);

/**
 * The levels of these SKUs, in the one canonical order (sku, location); with `lock`,
 * locked in that order, so that two transactions touching the same levels queue instead of
 * deadlocking. NO KEY UPDATE, not UPDATE: an order line's foreign key holds KEY SHARE on its
 * product, and the locations' rows are not locked at all (a reserve never waits for
 * `location set`). `locations` narrows them to those locations, `selling` to active ones.
 */
export async function readLevels(tx: Tx, skus: string[], opts: { lock?: boolean; locations?: string[]; selling?: boolean } = {}): Promise<LevelRow[]> {
  const at = sql`${opts.locations ? sql`AND l.location = ANY(${array(opts.locations)}::text[])` : sql``} ${opts.selling ? sql`AND loc.active` : sql``}`;
  return rows<LevelRow>(
    tx,
    sql`SELECT ${levelColumns} FROM stock_levels l JOIN locations loc ON loc.code = l.location
         WHERE l.sku = ANY(${array([...new Set(skus)])}::text[]) ${at}
         ORDER BY l.sku, l.location ${opts.lock ? sql`FOR NO KEY UPDATE OF l` : sql``}`,
  );
}

/** Lock exactly these levels, in the canonical order (see readLevels). */
export async function lockLevels(tx: Tx, keys: { sku: string; location: string }[]): Promise<LevelRow[]> {
  const unique = [...new Map(keys.map((k) => [`${k.sku}\u0000${k.location}`, k])).values()];
  return rows<LevelRow>(
    tx,
    sql`SELECT ${levelColumns}
          FROM stock_levels l JOIN locations loc ON loc.code = l.location
          -- About the count as a literal LIMIT (a power of two: a few statement texts), as in
          -- the stock change: the planner looks each level up by its key instead of guessing
          -- 100 rows and looping over a whole location.
          JOIN (SELECT * FROM jsonb_to_recordset(${JSON.stringify(unique)}::jsonb) AS k(sku text, location text)
                 LIMIT ${sql.raw(String(2 ** Math.ceil(Math.log2(unique.length))))}) k
            ON k.sku = l.sku AND k.location = l.location
         ORDER BY l.sku, l.location FOR NO KEY UPDATE OF l`,
  );
}

/**
 * Make sure a level exists for this SKU at this location (0 of everything if new), and
 * lock it. The SKU must name a stock row (exit 4 otherwise).
 */
export async function ensureLevel(tx: Tx, sku: string, location: string): Promise<LevelRow> {
  const [existing] = await lockLevels(tx, [{ sku, location }]);
  if (existing) return existing;
  const [item] = await readStockRows(tx, [sku]);
  if (!item) {
    await refuseProductsWithVariants(tx, [sku]);
    throw unknownSku(sku);
  }
  await execute(
    tx,
    sql`INSERT INTO stock_levels (sku, location, product_id, variant_id)
        VALUES (${sku}, ${location}, ${item.productId}, ${item.variantId}) ON CONFLICT DO NOTHING`,
  );
  const [created] = await lockLevels(tx, [{ sku, location }]);
  return created;
}

/** Refuse these SKUs (exit 4, saying why) if any of them names no stock row. */
export async function refuseUnknownSkus(tx: Tx, skus: string[]): Promise<void> {
  const known = new Set((await readStockRows(tx, skus)).map((r) => r.sku));
  const missing = skus.filter((s) => !known.has(s));
  if (missing.length === 0) return;
  await refuseProductsWithVariants(tx, missing);
  throw new NotFoundError(`No stock row has SKU ${missing.map((s) => `"${s}"`).join(', ')}.`, 'sku_not_found', {
    skus: missing,
  }).withRemedy('list_stock');
}

/** Variants named in the message of a product with variants; `--json` has them all. */
const VARIANTS_NAMED = 10;

/**
 * The first of these SKUs (in SKU order) that names a product with variants (no stock row
 * of its own, its variants hold its stock) as the error saying so, or undefined.
 */
export async function productWithVariants(tx: Tx, skus: string[]): Promise<NotFoundError | undefined> {
  const [parent] = await rows<{ sku: string; variants: string[] }>(
    tx,
    sql`SELECT p.sku, array(SELECT v.sku FROM product_variants v WHERE v.product_id = p.product_id ORDER BY v.sku) AS variants
          FROM products p WHERE p.sku = ANY(${array(skus)}::text[])
           AND EXISTS (SELECT 1 FROM product_variants v WHERE v.product_id = p.product_id)
         ORDER BY p.sku LIMIT 1`,
  );
  if (!parent) return undefined;
  const { sku, variants } = parent;
  const named = variants.slice(0, VARIANTS_NAMED).join(', ') + (variants.length > VARIANTS_NAMED ? `, and ${variants.length - VARIANTS_NAMED} more` : '');
  // Not found, as `stock HOODIE` and GET /stock/HOODIE say: the SKU names no stock row.
  return new NotFoundError(`SKU "${sku}" is a product with variants, which hold its stock (${named}); use one of those SKUs.`, 'sku_not_found', {
    sku,
    variants,
  });
}

async function refuseProductsWithVariants(tx: Tx, skus: string[]): Promise<void> {
  const parent = await productWithVariants(tx, skus);
  if (parent) throw parent;
}

export function unknownSku(sku: string): NotFoundError {
  return new NotFoundError(`No stock row has SKU "${sku}".`, 'sku_not_found', { sku }).withRemedy('list_stock');
}

/** A level as a stock change left it. */
export type AppliedRow = Omit<LevelRow, 'priority' | 'active'> & { inStock: boolean };

/** More statement after the stock change (reserve's order inserts): CTEs that may read `done`, and the final SELECT. */
export interface AfterStockChange {
  with: SQL;
  select: SQL;
}

/**
 * Apply stock changes in one statement: counters summed per stock row and one ledger row
 * per change, so the two can never disagree. Changes to several levels lock them in the
 * canonical order first (see readLevels): one UPDATE locks its rows in no particular
 * order, and two such changes could deadlock.
 *
 * With `guard`, the change applies whole or not at all: if any row's available units
 * would go negative (or, for optimistic changes, its version moved), nothing changes
 * and the result is empty; the caller decides what that means. Without it, the CHECK
 * constraints still refuse any oversell with an error.
 */
export async function applyStockChanges(
  tx: Tx,
  changes: StockChange[],
  actor: string,
  opts: { guard?: boolean; locked?: boolean } = {},
): Promise<AppliedRow[]> {
  return applyStockChangesThen<AppliedRow>(tx, changes, actor, opts, {
    with: sql``,
    select: sql`SELECT product_id AS "productId", variant_id AS "variantId", sku, location, stock_quantity AS "stockQuantity",
                       reserved_stock AS "reservedStock", incoming, version, in_stock AS "inStock"
                  FROM done ORDER BY sku, location`,
  });
}

/**
 * The same stock change with more statement after it, so that reserve locks the hot row
 * for the duration of one statement. `after.with` continues the WITH list (it starts
 * with a comma) and may read `done`, the rows actually changed.
 *
 * `locked`: the caller has already locked every one of these levels in this same
 * transaction (readLevels or lockLevels), so they are not locked again.
 */
export async function applyStockChangesThen<T>(
  tx: Tx,
  changes: StockChange[],
  actor: string,
  opts: { guard?: boolean; locked?: boolean },
  after: AfterStockChange,
): Promise<T[]> {
  if (changes.length === 0) return [];
  const levels = new Set(changes.map((c) => `${c.sku}\u0000${c.location}`)).size;
  if (levels > 1 && !opts.locked) await lockLevels(tx, changes);
  return rows<T>(tx, sql`WITH ${stockChangeCtes(changes, actor, { guard: opts.guard, whole: opts.guard && levels > 1 })}
                         ${after.with}
                         ${after.select}`);
}

/**
 * The stock change read from a SELECT of the statement itself (see ChangeSource). Without
 * `guard` (batched reserve), the statement decided what fits with the levels locked, and
 * the CHECK constraints refuse the whole statement if it were ever wrong; with it (one
 * level only), a level that cannot take the change is left alone.
 */
export async function applyStockChangesFrom<T>(
  tx: Tx,
  source: ChangeSource,
  actor: string,
  after: AfterStockChange,
  opts: { guard?: boolean } = {},
): Promise<T[]> {
  return rows<T>(tx, sql`WITH ${stockChangeCtesFrom(source.before, source.select, actor, { guard: opts.guard })}
                         ${after.with}
                         ${after.select}`);
}

/**
 * The stock-change statement as CTEs (`ch`, `agg`, `up`, `uv`, `done`, `mv`). `done`
 * holds the rows actually changed.
 */
function stockChangeCtes(changes: StockChange[], actor: string, opts: { guard?: boolean; whole?: boolean }): SQL {
  const payload = JSON.stringify(
    changes.map((c) => ({
      sku: c.sku,
      location: c.location,
      stock_delta: c.stockDelta,
      reserved_delta: c.reservedDelta,
      incoming_delta: c.incomingDelta ?? 0,
      kind: c.kind,
      order_id: c.orderId ?? null,
      reservation_id: c.reservationId ?? null,
      transfer_id: c.transferId ?? null,
      reason: c.reason ?? null,
      expected_version: c.expectedVersion ?? null,
    })),
  );
  // The count as a literal LIMIT tells the planner how many changes come (a function's
  // default estimate is 100 rows): for a few, it looks each stock row up by its SKU's index
  // instead of scanning the whole catalogue in a hash join.
  return stockChangeCtesFrom(sql``, sql`SELECT * FROM jsonb_to_recordset(${payload}::jsonb) AS x(
            sku text, location text, stock_delta int, reserved_delta int, incoming_delta int, kind text,
            order_id uuid, reservation_id uuid, transfer_id bigint, reason text, expected_version int, actor text)
          LIMIT ${sql.raw(String(changes.length))}`, actor, opts);
}

/**
 * Changes read from a SELECT of the statement itself (batched reserve: the buyers it
 * serves), with CTEs of its own before (each ending with a comma). The SELECT yields
 * ch's columns: sku, location, stock_delta, reserved_delta, incoming_delta, kind,
 * order_id, reservation_id, transfer_id, reason, expected_version, actor.
 */
export interface ChangeSource {
  before: SQL;
  select: SQL;
}

function stockChangeCtesFrom(before: SQL, source: SQL, actor: string, opts: { guard?: boolean; whole?: boolean }): SQL {
  // The guard is "WHERE stock_quantity - reserved_stock >= q" at the level: a level that
  // cannot take the change is left alone (absent from `done`) instead of raising.
  const fits = (a: string) => `${a}.stock_quantity + agg.sd >= ${a}.reserved_stock + agg.rd
                 AND ${a}.incoming + agg.id >= 0
                 AND (agg.ev IS NULL OR ${a}.version = agg.ev)`;
  // Several levels, already locked by this transaction: `fit` reads their current values,
  // so no level is changed unless every level can be (a single one needs no such gate).
  const guard = opts.guard ? `AND ${fits('l')}${opts.whole ? ' AND (SELECT every_row FROM fit)' : ''}` : '';
  const fit = opts.whole
    ? sql.raw(`fit AS (
          SELECT count(*) = (SELECT count(*) FROM agg) AS every_row
            FROM agg JOIN stock_levels l ON l.sku = agg.sku AND l.location = agg.location WHERE ${fits('l')}
        ),`)
    : sql``;
  return sql`${before} ch AS (
          ${source}
        ), agg AS (
          SELECT sku, location, sum(stock_delta)::int AS sd, sum(reserved_delta)::int AS rd,
                 sum(incoming_delta)::int AS id, max(expected_version) AS ev
            FROM ch GROUP BY sku, location
        ), ${fit} up AS (
          UPDATE stock_levels l
             SET stock_quantity = l.stock_quantity + agg.sd, reserved_stock = l.reserved_stock + agg.rd,
                 incoming = l.incoming + agg.id, version = l.version + 1, updated_at = now()
            FROM agg
           WHERE l.sku = agg.sku AND l.location = agg.location ${sql.raw(guard)}
          RETURNING l.product_id, l.variant_id, l.sku, l.location, l.stock_quantity, l.reserved_stock,
                    l.incoming, l.version, l.in_stock
        ), changed AS (
          -- The name and price a reserve's order lines are written with.
          SELECT up.*, coalesce(v.name, p.name) AS name, coalesce(v.price, p.price) AS price
            FROM up JOIN products p ON p.product_id = up.product_id
            LEFT JOIN product_variants v ON v.variant_id = up.variant_id
        ), listening AS (
          -- Read once, after a row changed (this transaction has its id by then: the
          -- subquery runs for the changed row), as the count is now, not as this
          -- statement's snapshot had it: why that loses no change is in src/engine/stock-events.ts.
          SELECT (SELECT live.last_value > 0 FROM stock_listeners_live live WHERE one.changed) AS yes
            FROM (SELECT true AS changed FROM changed LIMIT 1) one
        ), done AS (
          -- While someone listens, each changed level is announced to LISTEN on
          -- STOCK_CHANNEL; PostgreSQL delivers it only if and when this commits. Nobody
          -- listening, no NOTIFY: a notifying commit takes a lock every other one waits for.
          SELECT c.*, CASE WHEN l.yes THEN pg_notify(${STOCK_CHANNEL}::text, json_build_object(
                   'sku', c.sku, 'name', c.name, 'location', c.location,
                   'location_active', (SELECT loc.active FROM locations loc WHERE loc.code = c.location),
                   'stock_quantity', c.stock_quantity, 'reserved_stock', c.reserved_stock,
                   'incoming', c.incoming,
                   'available', ${levelAvailableSql('c', '(SELECT loc.active FROM locations loc WHERE loc.code = c.location)')},
                   'version', c.version, 'in_stock', c.in_stock,
                   -- How many of this SKU's levels this statement changed: the feed sends the
                   -- SKU's totals once it heard them all, never a state no commit had.
                   'changed_levels', count(*) OVER (PARTITION BY c.sku))::text) END AS notified
            FROM changed c CROSS JOIN listening l
        ), mv AS (
          INSERT INTO stock_movements
                 (product_id, variant_id, sku, location, kind, stock_delta, reserved_delta, incoming_delta,
                  order_id, reservation_id, transfer_id, actor, reason)
          SELECT d.product_id, d.variant_id, ch.sku, ch.location, ch.kind, ch.stock_delta, ch.reserved_delta,
                 ch.incoming_delta, ch.order_id, ch.reservation_id, ch.transfer_id, coalesce(ch.actor, ${actor}), ch.reason
            FROM ch JOIN done d ON d.sku = ch.sku AND d.location = ch.location
           -- Ledger rows only when every change applied.
           WHERE (SELECT count(*) FROM done) = (SELECT count(*) FROM agg)
        )`;
}
