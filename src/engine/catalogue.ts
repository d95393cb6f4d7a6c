/** The catalogue: adding products and variants, and setting or adjusting their stock. */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { array, execute, rows, transaction, type Tx } from '../db/query.js';
import { RefusedError, NotFoundError } from '../errors.js';
import { MAX_QUANTITY } from './input.js';
import type { LevelItem, StockItem } from './stock-item.js';
import { resolveLocation } from './locations.js';
import { applyStockChanges, ensureLevel, levelAvailableSql, productWithVariants, readStockRows, unknownSku, type StockRow } from './stock.js';

export function toStockItem(row: StockRow): StockItem {
  return {
    sku: row.sku,
    name: row.name,
    stock_quantity: row.stockQuantity,
    reserved_stock: row.reservedStock,
    available: row.available,
    incoming: row.incoming,
    version: row.version,
    in_stock: row.inStock,
  };
}

export type { LevelItem };

/** A SKU's totals with each of its levels, in location priority order. */
export interface StockItemByLocation extends StockItem {
  levels: Omit<LevelItem, 'sku' | 'name'>[];
}

const levelItemColumns = sql`l.sku, coalesce(v.name, p.name) AS name, l.location, loc.active,
  l.stock_quantity, l.reserved_stock, l.incoming,
  ${levelAvailableSql('l', 'loc.active')} AS available,
  l.version, l.in_stock`;

/**
 * The levels of these SKUs (or of all), at one location or all, in SKU then priority order;
 * `low`: only those with at most this many units available.
 */
export async function listLevels(
  db: Db | Tx,
  input: { skus?: string[]; location?: string; after?: string; limit?: number; low?: number },
): Promise<LevelItem[]> {
  return rows<LevelItem>(
    db,
    sql`SELECT ${levelItemColumns}
          FROM stock_levels l JOIN locations loc ON loc.code = l.location
          JOIN products p ON p.product_id = l.product_id LEFT JOIN product_variants v ON v.variant_id = l.variant_id
         WHERE true ${input.skus?.length ? sql`AND l.sku = ANY(${array(input.skus)}::text[])` : sql``}
               ${input.location !== undefined ? sql`AND l.location = ${input.location}` : sql``}
               ${input.after !== undefined ? sql`AND l.sku > ${input.after}` : sql``}
               ${input.low !== undefined ? sql`AND ${levelAvailableSql('l', 'loc.active')} <= ${input.low}` : sql``}
         ORDER BY l.sku, loc.priority DESC, l.location ${input.limit !== undefined ? sql`LIMIT ${input.limit}` : sql``}`,
  );
}

/** Each item with its levels. */
export async function withLevels(db: Db | Tx, items: StockItem[]): Promise<StockItemByLocation[]> {
  const levels = items.length > 0 ? await listLevels(db, { skus: items.map((i) => i.sku) }) : [];
  return items.map((i) => ({
    ...i,
    levels: levels.filter((l) => l.sku === i.sku).map(({ sku: _sku, name: _name, ...level }) => level),
  }));
}

export interface AddProductInput {
  sku: string;
  name: string;
  /** Minor units; when omitted, 0 for a product and the parent's price for a variant. */
  price?: number;
  stock: number;
  /** Where the initial stock is (default: the only location, else required when there is stock). */
  location?: string;
  parentSku?: string;
  actor: string;
}

export interface AddedProduct extends StockItem {
  kind: 'product' | 'variant';
  product_id: string;
  variant_id: string | null;
  parent_sku: string | null;
  price: number;
}

/** Add a product, or with `parentSku` a variant of one; initial stock goes through the ledger. */
export async function addProduct(db: Db, input: AddProductInput): Promise<AddedProduct> {
  return transaction(db, async (tx) => {
    // SKUs are unique across products and variants; serialise adds of the same SKU.
    await execute(tx, sql`SELECT pg_advisory_xact_lock(hashtext(${`stockctl:sku:${input.sku}`}))`);
    const [clash] = await rows<{ sku: string }>(
      tx,
      sql`SELECT sku FROM products WHERE sku = ${input.sku} UNION ALL SELECT sku FROM product_variants WHERE sku = ${input.sku}`,
    );
    if (clash) throw new RefusedError(`SKU "${input.sku}" already exists.`, 'sku_exists', { sku: input.sku });

    let productId: string;
    let variantId: string | null = null;
    let price = input.price ?? 0;
    if (input.parentSku) {
      const [parent] = await rows<{ productId: string; price: number; stock: number; reserved: number; incoming: number; variants: number }>(
        tx,
        sql`SELECT product_id AS "productId", price,
                   (SELECT coalesce(sum(stock_quantity), 0)::int FROM stock_levels l WHERE l.product_id = p.product_id AND l.variant_id IS NULL) AS stock,
                   (SELECT coalesce(sum(reserved_stock), 0)::int FROM stock_levels l WHERE l.product_id = p.product_id AND l.variant_id IS NULL) AS reserved,
                   (SELECT coalesce(sum(incoming), 0)::int FROM stock_levels l WHERE l.product_id = p.product_id AND l.variant_id IS NULL) AS incoming,
                   (SELECT count(*)::int FROM product_variants v WHERE v.product_id = p.product_id) AS variants
              FROM products p WHERE sku = ${input.parentSku} FOR UPDATE`,
      );
      if (!parent) {
        const [variant] = await rows<{ product: string }>(
          tx,
          sql`SELECT p.sku AS product FROM product_variants v JOIN products p USING (product_id) WHERE v.sku = ${input.parentSku}`,
        );
        if (variant) {
          throw new RefusedError(
            `SKU "${input.parentSku}" is a variant of ${variant.product}, and a variant has no variants of its own; use --parent ${variant.product}.`,
            'parent_is_variant',
            { sku: input.parentSku, product: variant.product },
          );
        }
        throw new NotFoundError(`No product has SKU "${input.parentSku}" to be the parent.`, 'sku_not_found', {
          sku: input.parentSku,
        });
      }
      if (parent.variants === 0 && (parent.stock > 0 || parent.reserved > 0 || parent.incoming > 0)) {
        // Once it has variants, a product's own stock is no longer sellable: it must be empty.
        throw new RefusedError(
          `Product "${input.parentSku}" holds ${parent.stock} units of its own; set its stock to 0 before adding variants.`,
          'parent_has_stock',
        );
      }
      productId = parent.productId;
      price = input.price ?? parent.price;
      // Its own (empty) levels go: its variants hold its stock now.
      await execute(tx, sql`DELETE FROM stock_levels WHERE product_id = ${productId} AND variant_id IS NULL`);
      const [variant] = await rows<{ variantId: string }>(
        tx,
        sql`INSERT INTO product_variants (product_id, sku, name, price)
            VALUES (${productId}, ${input.sku}, ${input.name}, ${price}) RETURNING variant_id AS "variantId"`,
      );
      variantId = variant.variantId;
    } else {
      const [product] = await rows<{ productId: string }>(
        tx,
        sql`INSERT INTO products (sku, name, price) VALUES (${input.sku}, ${input.name}, ${price})
            RETURNING product_id AS "productId"`,
      );
      productId = product.productId;
    }
    // A level to reserve from, even with no stock yet: at the location named, else the only
    // one (with several and no stock, none yet: `stock set --location` makes one).
    const location = await resolveLocation(tx, input.location, `put ${input.sku}'s stock`, input.stock === 0);
    if (location !== undefined) await ensureLevel(tx, input.sku, location);
    if (input.stock > 0) {
      await applyStockChanges(
        tx,
        [{ sku: input.sku, location: location!, stockDelta: input.stock, reservedDelta: 0, kind: 'initial', reason: 'initial stock' }],
        input.actor,
      );
    }
    const [row] = await readStockRows(tx, [input.sku]);
    return {
      kind: variantId ? 'variant' : 'product',
      product_id: productId,
      variant_id: variantId,
      parent_sku: input.parentSku ?? null,
      price,
      ...toStockItem(row),
    };
  });
}

export interface ListStockInput {
  skus?: string[];
  /** Only rows whose available units are at or below this. */
  low?: number;
}

export async function listStock(db: Db, input: ListStockInput = {}): Promise<StockItem[]> {
  const found = await readStockRows(db, input.skus?.length ? input.skus : undefined);
  if (input.skus?.length) {
    const known = new Set(found.map((r) => r.sku));
    const missing = input.skus.filter((s) => !known.has(s));
    // Not found as a stock row, though the product exists: say where its stock is.
    const parent = missing.length > 0 ? await productWithVariants(db, missing) : undefined;
    if (parent) throw parent;
    if (missing.length === 1) throw unknownSku(missing[0]);
    if (missing.length > 1) {
      throw new NotFoundError(`No stock rows have SKUs ${missing.map((s) => `"${s}"`).join(', ')}.`, 'sku_not_found', {
        skus: missing,
      });
    }
  }
  const low = input.low;
  return found.filter((r) => low === undefined || r.available <= low).map(toStockItem);
}

/** One page of stock rows, in SKU order, and whether more follow. */
export interface StockPage {
  items: StockItem[];
  more: boolean;
}

/**
 * A page of `listStock`: the rows after the SKU `after`, at most `limit` of them. Named
 * SKUs (at most a hundred) are checked as listStock checks them; the whole catalogue is
 * read a page at a time, never at once.
 */
export async function listStockPage(db: Db, input: ListStockInput & { after?: string; limit: number }): Promise<StockPage> {
  const { after, limit, skus } = input;
  // Unknown SKUs are a 404 naming them, whatever the page.
  if (skus?.length) await listStock(db, { skus });
  const page = await rows<StockRow>(
    db,
    sql`SELECT product_id AS "productId", variant_id AS "variantId", sku, name, price, stock_quantity AS "stockQuantity",
               reserved_stock AS "reservedStock", incoming, available, version, in_stock AS "inStock", locations
          FROM stock_items
         WHERE true ${skus?.length ? sql`AND sku = ANY(${array(skus)}::text[])` : sql``}
               ${after !== undefined ? sql`AND sku > ${after}` : sql``}
               ${input.low !== undefined ? sql`AND available <= ${input.low}` : sql``}
         ORDER BY sku LIMIT ${limit + 1}`,
  );
  return { items: page.slice(0, limit).map(toStockItem), more: page.length > limit };
}

/** What `stock set` and `stock adjust` did: the level's values at its location. */
export interface StockChangeResult extends LevelItem {
  previous_stock_quantity: number;
  changed: boolean;
}

export interface SetStockInput {
  sku: string;
  /** Absolute level (`stock set`) or a signed delta (`stock adjust`). */
  quantity?: number;
  delta?: number;
  /** Which location's units (default: the only location, else required). */
  location?: string;
  reason?: string;
  actor: string;
}

/** `stock set` and `stock adjust` at one location: never below what pending orders hold there (exit 5). */
export async function changeStock(db: Db, input: SetStockInput): Promise<StockChangeResult> {
  return transaction(db, async (tx) => {
    const location = await resolveLocation(tx, input.location, `change ${input.sku}'s stock`);
    const row = await ensureLevel(tx, input.sku, location);
    // Named with its location only when there are several.
    const at = input.location !== undefined ? ` at ${location}` : '';
    const target = input.quantity ?? row.stockQuantity + (input.delta ?? 0);
    if (target < 0) {
      throw new RefusedError(
        `Cannot adjust ${input.sku}${at} by ${input.delta}: only ${row.stockQuantity} on hand.`,
        'stock_below_zero',
      );
    }
    // What was asked, as the user asked it: `set X to 3`, or `adjust X by -14` (to 3).
    const asked = input.quantity !== undefined ? `set ${input.sku}${at} to ${target}` : `adjust ${input.sku}${at} by ${signed(input.delta ?? 0)} (to ${target})`;
    if (target > MAX_QUANTITY) {
      throw new RefusedError(`Cannot ${asked}: a stock row holds at most ${MAX_QUANTITY} units.`, 'stock_above_limit', {
        sku: input.sku,
        location,
        requested: target,
        limit: MAX_QUANTITY,
      });
    }
    if (target < row.reservedStock) {
      throw new RefusedError(
        `Cannot ${asked}: ${row.reservedStock} units are reserved by pending orders${at} (cancel them or let them expire first).`,
        'stock_below_reserved',
        { sku: input.sku, location, requested: target, reserved: row.reservedStock },
      );
    }
    const delta = target - row.stockQuantity;
    if (delta !== 0) {
      await applyStockChanges(
        tx,
        [
          {
            sku: input.sku,
            location,
            stockDelta: delta,
            reservedDelta: 0,
            kind: input.quantity !== undefined ? 'set' : 'adjust',
            reason: input.reason ?? null,
          },
        ],
        input.actor,
      );
    }
    const [after] = await listLevels(tx, { skus: [input.sku], location });
    return { ...after, previous_stock_quantity: row.stockQuantity, changed: delta !== 0 };
  });
}

const signed = (n: number) => (n > 0 ? `+${n}` : String(n));
