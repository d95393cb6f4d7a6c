/**
 * The one definition of a stock change. Every command that moves units (reserve,
 * release, sale, restock, set, adjust, repair) goes through `applyStockChanges`,
 * which updates the counters and writes the ledger in a single statement, so the two
 * can never disagree.
 */
import { sql, type SQL } from 'drizzle-orm';
import { array, rows, type Tx } from '../db/query.js';
import { NotFoundError, type Shortage } from '../errors.js';
import type { OrderLine } from './input.js';
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
  | 'drift';

export interface StockChange {
  sku: string;
  stockDelta: number;
  reservedDelta: number;
  kind: MovementKind;
  orderId?: string | null;
  reservationId?: string | null;
  reason?: string | null;
  /** Optimistic strategy: apply only if the row is still at this version. */
  expectedVersion?: number | null;
}

export interface StockRow {
  productId: string;
  variantId: string | null;
  sku: string;
  name: string;
  price: number;
  stockQuantity: number;
  reservedStock: number;
  version: number;
  inStock: boolean;
}

export const availableUnits = (row: Pick<StockRow, 'stockQuantity' | 'reservedStock'>) =>
  row.stockQuantity - row.reservedStock;

/** The StockRow columns; products have no variant_id column of their own. */
const stockRowColumns = (variantId = 'variant_id') =>
  sql.raw(`product_id AS "productId", ${variantId} AS "variantId", sku, name, price,
  stock_quantity AS "stockQuantity", reserved_stock AS "reservedStock", version, in_stock AS "inStock"`);

/** Read stock rows by SKU (no lock), in SKU order. */
export async function readStockRows(tx: Tx, skus?: string[]): Promise<StockRow[]> {
  const where = skus ? sql`WHERE sku = ANY(${array(skus)}::text[])` : sql``;
  return rows<StockRow>(tx, sql`SELECT ${stockRowColumns()} FROM stock_items ${where} ORDER BY sku`);
}

/**
 * Lock stock rows in the one canonical order (products before variants, each by SKU),
 * so that two transactions touching the same rows queue instead of deadlocking. NO KEY
 * UPDATE, not UPDATE: an order line's foreign key holds KEY SHARE on its stock row, and
 * FOR UPDATE would deadlock against other buyers' inserts.
 */
export async function lockStockRows(tx: Tx, skus: string[]): Promise<StockRow[]> {
  const list = sql`${array([...new Set(skus)])}::text[]`;
  const products = await rows<StockRow>(
    tx,
    sql`SELECT ${stockRowColumns('NULL::uuid')}
          FROM products p
         WHERE sku = ANY(${list})
           AND NOT EXISTS (SELECT 1 FROM product_variants v WHERE v.product_id = p.product_id)
         ORDER BY sku FOR NO KEY UPDATE`,
  );
  if (products.length === new Set(skus).size) return products;
  const variants = await rows<StockRow>(
    tx,
    sql`SELECT ${stockRowColumns()}
          FROM product_variants WHERE sku = ANY(${list}) ORDER BY sku FOR NO KEY UPDATE`,
  );
  return [...products, ...variants];
}

/** Lock one stock row, or fail naming the SKU (exit 4; a product with variants is named with them). */
export async function lockStockRow(tx: Tx, sku: string): Promise<StockRow> {
  const [row] = await lockStockRows(tx, [sku]);
  if (!row) {
    await refuseProductsWithVariants(tx, [sku]);
    throw unknownSku(sku);
  }
  return row;
}

/** Which of these SKUs do not name a stock row, and why: always throws. */
export async function explainUnknownSkus(tx: Tx, skus: string[]): Promise<never> {
  const known = new Set((await readStockRows(tx, skus)).map((r) => r.sku));
  const missing = skus.filter((s) => !known.has(s));
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

/** The lines these stock rows cannot cover, each with what was asked and what is available. */
export function shortagesOf(lines: OrderLine[], stock: StockRow[]): Shortage[] {
  const bySku = new Map(stock.map((r) => [r.sku, r]));
  return lines
    .map((l) => ({ sku: l.sku, requested: l.quantity, available: Math.max(0, availableUnits(bySku.get(l.sku)!)) }))
    .filter((s) => s.available < s.requested);
}

export interface AppliedRow {
  productId: string;
  variantId: string | null;
  sku: string;
  stockQuantity: number;
  reservedStock: number;
  version: number;
  inStock: boolean;
}

/** More statement after the stock change (reserve's order inserts): CTEs that may read `done`, and the final SELECT. */
export interface AfterStockChange {
  with: SQL;
  select: SQL;
}

/**
 * Apply stock changes in one statement: counters summed per stock row and one ledger row
 * per change, so the two can never disagree. Changes to several rows lock those rows in
 * the canonical order first (see lockStockRows): one UPDATE locks its rows in no
 * particular order, and two such changes could deadlock.
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
    select: sql`SELECT product_id AS "productId", variant_id AS "variantId", sku, stock_quantity AS "stockQuantity",
                       reserved_stock AS "reservedStock", version, in_stock AS "inStock"
                  FROM done`,
  });
}

/**
 * The same stock change with more statement after it, so that reserve locks the hot row
 * for the duration of one statement. `after.with` continues the WITH list (it starts
 * with a comma) and may read `done`, the rows actually changed.
 *
 * `locked`: the caller has already locked every one of these rows with lockStockRows in
 * this same transaction (reserve's `locking` strategy), so they are not locked again.
 */
export async function applyStockChangesThen<T>(
  tx: Tx,
  changes: StockChange[],
  actor: string,
  opts: { guard?: boolean; locked?: boolean },
  after: AfterStockChange,
): Promise<T[]> {
  if (changes.length === 0) return [];
  const skus = [...new Set(changes.map((c) => c.sku))];
  if (skus.length > 1 && !opts.locked) await lockStockRows(tx, skus);
  return rows<T>(tx, sql`WITH ${stockChangeCtes(changes, actor, { guard: opts.guard, whole: opts.guard && skus.length > 1 })}
                         ${after.with}
                         ${after.select}`);
}

/**
 * The stock change read from a SELECT of the statement itself (see ChangeSource), with
 * no guard: the statement decided what fits with the rows locked, and the CHECK
 * constraints refuse the whole statement if it were ever wrong.
 */
export async function applyStockChangesFrom<T>(tx: Tx, source: ChangeSource, actor: string, after: AfterStockChange): Promise<T[]> {
  return rows<T>(tx, sql`WITH ${stockChangeCtesFrom(source.before, source.select, actor, {})}
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
      stock_delta: c.stockDelta,
      reserved_delta: c.reservedDelta,
      kind: c.kind,
      order_id: c.orderId ?? null,
      reservation_id: c.reservationId ?? null,
      reason: c.reason ?? null,
      expected_version: c.expectedVersion ?? null,
    })),
  );
  // The count as a literal LIMIT tells the planner how many changes come (a function's
  // default estimate is 100 rows): for a few, it looks each stock row up by its SKU's index
  // instead of scanning the whole catalogue in a hash join.
  return stockChangeCtesFrom(sql``, sql`SELECT * FROM jsonb_to_recordset(${payload}::jsonb) AS x(
            sku text, stock_delta int, reserved_delta int, kind text, order_id uuid,
            reservation_id uuid, reason text, expected_version int, actor text)
          LIMIT ${sql.raw(String(changes.length))}`, actor, opts);
}

/**
 * Changes read from a SELECT of the statement itself (batched reserve: the buyers it
 * serves), with CTEs of its own before (each ending with a comma). The SELECT yields
 * ch's columns: sku, stock_delta, reserved_delta, kind, order_id, reservation_id,
 * reason, expected_version, actor.
 */
export interface ChangeSource {
  before: SQL;
  select: SQL;
}

function stockChangeCtesFrom(before: SQL, source: SQL, actor: string, opts: { guard?: boolean; whole?: boolean }): SQL {
  // The guard is the spec's "WHERE stock_quantity - reserved_stock >= q": a row that
  // cannot take the change is left alone (absent from `done`) instead of raising.
  const fits = (a: string) => `${a}.stock_quantity + agg.sd >= ${a}.reserved_stock + agg.rd
                 AND (agg.ev IS NULL OR ${a}.version = agg.ev)`;
  // Several rows, already locked by this transaction: `fit` reads their current values, so
  // no row is changed unless every row can be (a single row needs no such gate).
  const guard = (a: string) => (opts.guard ? `AND ${fits(a)}${opts.whole ? ' AND (SELECT every_row FROM fit)' : ''}` : '');
  const fit = opts.whole
    ? sql.raw(`fit AS (
          SELECT count(*) = (SELECT count(*) FROM agg) AS every_row
            FROM agg JOIN stock_items s ON s.sku = agg.sku WHERE ${fits('s')}
        ),`)
    : sql``;
  // The same change for both kinds of stock row: a product without variants, or a variant.
  const update = (table: string, a: string, variantId: string, only = '') =>
    sql.raw(`UPDATE ${table} ${a}
             SET stock_quantity = ${a}.stock_quantity + agg.sd, reserved_stock = ${a}.reserved_stock + agg.rd,
                 version = ${a}.version + 1, updated_at = now()
            FROM agg
           WHERE ${a}.sku = agg.sku ${guard(a)} ${only}
          RETURNING ${a}.product_id, ${variantId} AS variant_id, ${a}.sku, ${a}.name, ${a}.price, ${a}.stock_quantity,
                    ${a}.reserved_stock, ${a}.version, ${a}.in_stock`);
  return sql`${before} ch AS (
          ${source}
        ), agg AS (
          SELECT sku, sum(stock_delta)::int AS sd, sum(reserved_delta)::int AS rd, max(expected_version) AS ev
            FROM ch GROUP BY sku
        ), ${fit} up AS (
          ${update('products', 'p', 'NULL::uuid', 'AND NOT EXISTS (SELECT 1 FROM product_variants pv WHERE pv.product_id = p.product_id)')}
        ), uv AS (
          ${update('product_variants', 'v', 'v.variant_id')}
        ), changed AS (
          SELECT * FROM up UNION ALL SELECT * FROM uv
        ), listening AS (
          -- Read once, after a row changed (this transaction has its id by then: the
          -- subquery runs for the changed row), as the count is now, not as this
          -- statement's snapshot had it: why that loses no change is in src/engine/stock-events.ts.
          SELECT (SELECT live.last_value > 0 FROM stock_listeners_live live WHERE one.changed) AS yes
            FROM (SELECT true AS changed FROM changed LIMIT 1) one
        ), done AS (
          -- While someone listens, each changed row is announced, as a stock --json item, to
          -- LISTEN on STOCK_CHANNEL; PostgreSQL delivers it only if and when this commits.
          -- Nobody listening, no NOTIFY: a notifying commit takes a lock every other one waits for.
          SELECT c.*, CASE WHEN l.yes THEN pg_notify(${STOCK_CHANNEL}::text, json_build_object(
                   'sku', c.sku, 'name', c.name, 'stock_quantity', c.stock_quantity,
                   'reserved_stock', c.reserved_stock, 'available', c.stock_quantity - c.reserved_stock,
                   'version', c.version, 'in_stock', c.in_stock)::text) END AS notified
            FROM changed c CROSS JOIN listening l
        ), mv AS (
          INSERT INTO stock_movements
                 (product_id, variant_id, sku, kind, stock_delta, reserved_delta, order_id, reservation_id, actor, reason)
          SELECT d.product_id, d.variant_id, ch.sku, ch.kind, ch.stock_delta, ch.reserved_delta,
                 ch.order_id, ch.reservation_id, coalesce(ch.actor, ${actor}), ch.reason
            FROM ch JOIN done d ON d.sku = ch.sku
           -- Ledger rows only when every change applied.
           WHERE (SELECT count(*) FROM done) = (SELECT count(*) FROM agg)
        )`;
}
