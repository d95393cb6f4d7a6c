/**
 * The one definition of a stock change. Every command that moves units (reserve,
 * release, sale, restock, set, adjust, repair) goes through `applyStockChanges`,
 * which updates the counters and writes the ledger in a single statement, so the two
 * can never disagree.
 */
import { sql, type SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { NotFoundError } from '../errors.js';

/** A database or a transaction: both can run statements. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Tx = PgDatabase<PgQueryResultHKT, any, any>;

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

/**
 * Run a statement as a named prepared statement. drizzle's `execute()` sends raw SQL
 * unprepared, so PostgreSQL would parse and plan the reserve statement (about 1.3 ms)
 * on every call; prepared, postgres.js reuses it per connection.
 */
export async function rows<T>(tx: Tx, query: SQL): Promise<T[]> {
  const internals = tx as unknown as {
    session: { prepareQuery(q: unknown, fields: undefined, name: string, arrayMode: boolean): { execute(): Promise<unknown> } };
    dialect: { sqlToQuery(q: SQL): unknown };
  };
  const prepared = internals.session.prepareQuery(internals.dialect.sqlToQuery(query), undefined, 'stockctl', false);
  return (await prepared.execute()) as T[];
}

/** The StockRow columns; products have no variant_id column of their own. */
const stockRowColumns = (variantId = 'variant_id') =>
  sql.raw(`product_id AS "productId", ${variantId} AS "variantId", sku, name, price,
  stock_quantity AS "stockQuantity", reserved_stock AS "reservedStock", version, in_stock AS "inStock"`);

/** Read stock rows by SKU (no lock), in SKU order. */
export async function readStockRows(tx: Tx, skus?: string[]): Promise<StockRow[]> {
  const where = skus ? sql`WHERE sku = ANY(${toTextArray(skus)})` : sql``;
  return rows<StockRow>(tx, sql`SELECT ${stockRowColumns()} FROM stock_items ${where} ORDER BY sku`);
}

/**
 * Lock stock rows in the one canonical order (products before variants, each by SKU),
 * so that two transactions touching the same rows queue instead of deadlocking. NO KEY
 * UPDATE, not UPDATE: an order line's foreign key holds KEY SHARE on its stock row, and
 * FOR UPDATE would deadlock against other buyers' inserts.
 */
export async function lockStockRows(tx: Tx, skus: string[]): Promise<StockRow[]> {
  const list = toTextArray([...new Set(skus)]);
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

/** Lock one stock row or fail with exit 4 naming the SKU. */
export async function lockStockRow(tx: Tx, sku: string): Promise<StockRow> {
  const [row] = await lockStockRows(tx, [sku]);
  if (!row) throw unknownSku(sku);
  return row;
}

export function unknownSku(sku: string): NotFoundError {
  return new NotFoundError(`No stock row has SKU "${sku}"; list them with \`stockctl stock\`.`, 'sku_not_found', { sku });
}

/** postgres.js binds a JS array as a text[] parameter; drizzle needs an explicit cast. */
export function toTextArray(values: string[]): SQL {
  return sql`${`{${values.map((v) => `"${v.replace(/["\\]/g, '\\$&')}"`).join(',')}}`}::text[]`;
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

/**
 * The stock-change statement as CTEs (`ch`, `agg`, `up`, `uv`, `done`, `mv`): counters
 * summed per stock row, one ledger row per change. `done` holds the rows actually
 * changed. Reserve appends its order inserts to these, so that the hot row is locked
 * only inside one statement.
 */
export function stockChangeCtes(changes: StockChange[], actor: string, opts: { guard?: boolean } = {}): SQL {
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
  // The guard is the spec's "WHERE stock_quantity - reserved_stock >= q": a row that
  // cannot take the change is left alone (absent from `done`) instead of raising.
  const guard = (a: string) =>
    opts.guard
      ? `AND ${a}.stock_quantity + agg.sd >= ${a}.reserved_stock + agg.rd
                 AND (agg.ev IS NULL OR ${a}.version = agg.ev)`
      : '';
  // The same change for both kinds of stock row: a product without variants, or a variant.
  const update = (table: string, a: string, variantId: string, only = '') =>
    sql.raw(`UPDATE ${table} ${a}
             SET stock_quantity = ${a}.stock_quantity + agg.sd, reserved_stock = ${a}.reserved_stock + agg.rd,
                 version = ${a}.version + 1, updated_at = now()
            FROM agg
           WHERE ${a}.sku = agg.sku ${guard(a)} ${only}
          RETURNING ${a}.product_id, ${variantId} AS variant_id, ${a}.sku, ${a}.name, ${a}.price, ${a}.stock_quantity,
                    ${a}.reserved_stock, ${a}.version, ${a}.in_stock`);
  return sql`ch AS (
          SELECT * FROM jsonb_to_recordset(${payload}::jsonb) AS x(
            sku text, stock_delta int, reserved_delta int, kind text, order_id uuid,
            reservation_id uuid, reason text, expected_version int)
        ), agg AS (
          SELECT sku, sum(stock_delta)::int AS sd, sum(reserved_delta)::int AS rd, max(expected_version) AS ev
            FROM ch GROUP BY sku
        ), up AS (
          ${update('products', 'p', 'NULL::uuid', 'AND NOT EXISTS (SELECT 1 FROM product_variants pv WHERE pv.product_id = p.product_id)')}
        ), uv AS (
          ${update('product_variants', 'v', 'v.variant_id')}
        ), done AS (
          SELECT * FROM up UNION ALL SELECT * FROM uv
        ), mv AS (
          INSERT INTO stock_movements
                 (product_id, variant_id, sku, kind, stock_delta, reserved_delta, order_id, reservation_id, actor, reason)
          SELECT d.product_id, d.variant_id, ch.sku, ch.kind, ch.stock_delta, ch.reserved_delta,
                 ch.order_id, ch.reservation_id, ${actor}, ch.reason
            FROM ch JOIN done d ON d.sku = ch.sku
           -- Ledger rows only when every change applied; a partial guarded change is
           -- rolled back by its caller.
           WHERE (SELECT count(*) FROM done) = (SELECT count(*) FROM agg)
        )`;
}

/**
 * Apply stock changes in one statement. With `guard`, a row whose available units would
 * go negative (or whose version moved, for optimistic changes) is left alone and missing
 * from the result; the caller decides what that means. Without it, the CHECK constraints
 * still refuse any oversell with an error.
 */
export async function applyStockChanges(
  tx: Tx,
  changes: StockChange[],
  actor: string,
  opts: { guard?: boolean } = {},
): Promise<AppliedRow[]> {
  if (changes.length === 0) return [];
  return rows<AppliedRow>(
    tx,
    sql`WITH ${stockChangeCtes(changes, actor, opts)}
        SELECT product_id AS "productId", variant_id AS "variantId", sku, stock_quantity AS "stockQuantity",
               reserved_stock AS "reservedStock", version, in_stock AS "inStock"
          FROM done`,
  );
}
