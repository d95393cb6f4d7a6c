/**
 * Every invariant between counters, reservations, orders and the ledger, checked with SQL
 * against the whole database (or the SKUs under a prefix, for the loadtest). Each problem
 * names its SKU or order.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { array, execute, likePrefix, rows, transaction, type Tx } from '../db/query.js';
import { applyStockChanges, lockStockRow } from './stock.js';

export interface Violation {
  kind: string;
  sku?: string;
  order_id?: string;
  message: string;
  /** `reservations_exceed_on_hand`: the orders holding the SKU, oldest first (at most HOLDERS_LISTED). */
  holders?: Holder[];
}

/** An order holding units of a SKU through its active reservations. */
export interface Holder {
  order_id: string;
  ref: string | null;
  quantity: number;
}

/** Holders listed per SKU in `--json`; the message names the first HOLDERS_NAMED. */
const HOLDERS_LISTED = 1000;
const HOLDERS_NAMED = 5;

export interface StockAudit {
  sku: string;
  stock_quantity: number;
  reserved_stock: number;
  active_reserved: number;
  ledger_reserved: number;
  ledger_stock: number;
}

export async function auditStock(db: Db | Tx, skuPrefix?: string): Promise<StockAudit[]> {
  const filter = skuPrefix ? sql`WHERE s.sku LIKE ${likePrefix(skuPrefix)}` : sql``;
  return rows<StockAudit>(
    db,
    sql`SELECT s.sku, s.stock_quantity, s.reserved_stock,
               coalesce((SELECT sum(quantity) FROM stock_reservations r WHERE r.sku = s.sku AND r.status = 'active'), 0)::int AS active_reserved,
               coalesce((SELECT sum(reserved_delta) FROM stock_movements m WHERE m.sku = s.sku), 0)::int AS ledger_reserved,
               coalesce((SELECT sum(stock_delta) FROM stock_movements m WHERE m.sku = s.sku), 0)::int AS ledger_stock
          FROM (SELECT sku, stock_quantity, reserved_stock FROM products
                UNION ALL SELECT sku, stock_quantity, reserved_stock FROM product_variants) s
          ${filter}
         ORDER BY s.sku`,
  );
}

/**
 * The orders holding these SKUs through active reservations, oldest first, and how many
 * orders hold each SKU in all.
 */
async function holdersOf(db: Db | Tx, skus: string[]): Promise<Map<string, { holders: Holder[]; total: number }>> {
  const bySku = new Map<string, { holders: Holder[]; total: number }>();
  if (skus.length === 0) return bySku;
  const found = await rows<Holder & { sku: string; total: number }>(
    db,
    sql`SELECT sku, order_id, ref, quantity, total FROM (
          SELECT r.sku, r.order_id, o.ref, sum(r.quantity)::int AS quantity,
                 count(*) OVER (PARTITION BY r.sku)::int AS total,
                 row_number() OVER (PARTITION BY r.sku ORDER BY min(r.reserved_at), r.order_id) AS n
            FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id
           WHERE r.status = 'active' AND r.sku = ANY(${array(skus)}::text[])
           GROUP BY r.sku, r.order_id, o.ref) h
         WHERE n <= ${HOLDERS_LISTED}
         ORDER BY sku, n`,
  );
  for (const { sku, total, ...holder } of found) {
    const entry = bySku.get(sku) ?? { holders: [], total };
    entry.holders.push(holder);
    bySku.set(sku, entry);
  }
  return bySku;
}

/**
 * Units held by active reservations but gone from the shelf: no counter can be right, so
 * `--repair` cannot fix it. Says what will: the units put back, or orders holding them cancelled.
 */
function reservationsExceedOnHand(a: StockAudit, held: { holders: Holder[]; total: number } | undefined): Violation {
  const holders = held?.holders ?? [];
  const total = held?.total ?? 0;
  const short = a.active_reserved - a.stock_quantity;
  const named = holders.slice(0, HOLDERS_NAMED).map((h) => h.order_id).join(' ');
  const more =
    total > HOLDERS_NAMED
      ? ` (${HOLDERS_NAMED} of the ${total} orders holding it; \`stockctl verify --json\` lists ${total > HOLDERS_LISTED ? `the first ${HOLDERS_LISTED}` : 'them all'} under "holders")`
      : '';
  return {
    kind: 'reservations_exceed_on_hand',
    sku: a.sku,
    message:
      `${a.sku}: active reservations hold ${a.active_reserved} unit(s) but only ${a.stock_quantity} ${a.stock_quantity === 1 ? 'is' : 'are'} on hand ` +
      `(reserved_stock ${a.reserved_stock}), so reserved_stock cannot be brought in line. ` +
      `If the units are there, put them back on the books: \`stockctl stock set ${a.sku} ${a.active_reserved}\`; ` +
      `if they are gone, cancel orders holding at least ${short} of them: \`stockctl cancel ${named}\`${more}. ` +
      `Then run \`stockctl verify --repair\`.`,
    holders,
  };
}

export async function findViolations(db: Db | Tx, skuPrefix?: string): Promise<Violation[]> {
  const violations: Violation[] = [];
  const audits = await auditStock(db, skuPrefix);
  const overcommitted = audits.filter((a) => a.active_reserved > a.stock_quantity);
  const holders = await holdersOf(db, overcommitted.map((a) => a.sku));
  for (const a of audits) {
    const v = (kind: string, message: string) => violations.push({ kind, sku: a.sku, message: `${a.sku}: ${message}` });
    if (a.active_reserved > a.stock_quantity) violations.push(reservationsExceedOnHand(a, holders.get(a.sku)));
    else if (a.reserved_stock !== a.active_reserved)
      v('reserved_vs_reservations', `reserved_stock ${a.reserved_stock} but active reservations hold ${a.active_reserved}`);
    if (a.reserved_stock !== a.ledger_reserved)
      v('reserved_vs_ledger', `reserved_stock ${a.reserved_stock} but the ledger sums to ${a.ledger_reserved}`);
    if (a.stock_quantity !== a.ledger_stock)
      v('stock_vs_ledger', `stock_quantity ${a.stock_quantity} but the ledger sums to ${a.ledger_stock}`);
    if (a.reserved_stock < 0 || a.stock_quantity < 0 || a.reserved_stock > a.stock_quantity)
      v('counter_bounds', `counters out of bounds (on hand ${a.stock_quantity}, reserved ${a.reserved_stock})`);
  }
  const orderFilter = skuPrefix
    ? sql`AND o.order_id IN (SELECT order_id FROM order_items WHERE sku LIKE ${likePrefix(skuPrefix)})`
    : sql``;
  // Set-based on purpose: right after a bulk load the statistics are stale, and a
  // correlated subquery per order turned into a quadratic nested loop.
  const orders = await rows<{ order_id: string; status: string; active: number }>(
    db,
    sql`SELECT o.order_id, o.status, coalesce(a.active, 0)::int AS active
          FROM orders o
          LEFT JOIN (SELECT order_id, count(*) AS active FROM stock_reservations
                      WHERE status = 'active' GROUP BY order_id) a ON a.order_id = o.order_id
         WHERE ((o.status = 'pending' AND a.active IS NULL) OR (o.status <> 'pending' AND a.active > 0))
           ${orderFilter}
         LIMIT 1000`,
  );
  for (const o of orders) {
    violations.push({
      kind: o.status === 'pending' ? 'pending_without_reservations' : 'closed_with_active_reservations',
      order_id: o.order_id,
      message:
        o.status === 'pending'
          ? `order ${o.order_id} is pending but holds no active reservation`
          : `order ${o.order_id} is ${o.status} but still holds ${o.active} active reservation(s)`,
    });
  }
  return violations;
}

export interface Repair {
  sku: string;
  /** Unrecorded change found and written into the ledger (counter minus ledger). */
  recorded_drift: { stock_delta: number; reserved_delta: number } | null;
  /** Correction applied to reserved_stock so that it equals the active reservations. */
  reserved_correction: number;
}

/**
 * Bring counters back in line with the reservations through the ledger, never by a
 * silent overwrite: first any change that bypassed the ledger is written down as a
 * `drift` entry, then reserved_stock is corrected by a `repair` entry.
 */
export async function repairCounters(db: Db, actor: string, skuPrefix?: string): Promise<Repair[]> {
  const repairs: Repair[] = [];
  const suspects = (await auditStock(db, skuPrefix)).filter(
    (a) => a.reserved_stock !== a.active_reserved || a.reserved_stock !== a.ledger_reserved || a.stock_quantity !== a.ledger_stock,
  );
  for (const suspect of suspects) {
    await transaction(db, async (tx) => {
      await lockStockRow(tx, suspect.sku);
      const a = (await auditStock(tx, suspect.sku)).find((row) => row.sku === suspect.sku);
      if (!a) return;
      const repair: Repair = { sku: a.sku, recorded_drift: null, reserved_correction: 0 };
      const driftStock = a.stock_quantity - a.ledger_stock;
      const driftReserved = a.reserved_stock - a.ledger_reserved;
      if (driftStock !== 0 || driftReserved !== 0) {
        await execute(tx, sql`INSERT INTO stock_movements (product_id, variant_id, sku, kind, stock_delta, reserved_delta, actor, reason)
          SELECT product_id, variant_id, sku, 'drift', ${driftStock}, ${driftReserved}, ${actor}, 'verify --repair: change made outside stockctl'
            FROM stock_items WHERE sku = ${a.sku}`);
        repair.recorded_drift = { stock_delta: driftStock, reserved_delta: driftReserved };
      }
      const correction = a.active_reserved - a.reserved_stock;
      // Units held by pending orders but gone from the shelf: no counter can be right;
      // record the drift and leave the SKU to a person (`reservations_exceed_on_hand`
      // stays in `remaining`, saying what to do).
      if (correction !== 0 && a.active_reserved <= a.stock_quantity) {
        await applyStockChanges(
          tx,
          [{ sku: a.sku, stockDelta: 0, reservedDelta: correction, kind: 'repair', reason: 'verify --repair: reserved_stock to match active reservations' }],
          actor,
        );
        repair.reserved_correction = correction;
      }
      // Only what was written: a SKU left to a person is no repair.
      if (repair.recorded_drift || repair.reserved_correction !== 0) repairs.push(repair);
    });
  }
  return repairs;
}
