/**
 * The invariants of SPEC section 5, checked with SQL against the whole database (or the
 * SKUs under a prefix, for the loadtest). Each problem names its SKU or order.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { execute, likePrefix, rows, transaction, type Tx } from '../db/query.js';
import { applyStockChanges, lockStockRow } from './stock.js';

export interface Violation {
  kind: string;
  sku?: string;
  order_id?: string;
  message: string;
}

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

export async function findViolations(db: Db | Tx, skuPrefix?: string): Promise<Violation[]> {
  const violations: Violation[] = [];
  for (const a of await auditStock(db, skuPrefix)) {
    const v = (kind: string, message: string) => violations.push({ kind, sku: a.sku, message: `${a.sku}: ${message}` });
    if (a.reserved_stock !== a.active_reserved)
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
      // record the drift and leave the SKU to a person (it stays in `remaining`).
      if (correction !== 0 && a.active_reserved <= a.stock_quantity) {
        await applyStockChanges(
          tx,
          [{ sku: a.sku, stockDelta: 0, reservedDelta: correction, kind: 'repair', reason: 'verify --repair: reserved_stock to match active reservations' }],
          actor,
        );
        repair.reserved_correction = correction;
      }
      if (repair.recorded_drift || correction !== 0) repairs.push(repair);
    });
  }
  return repairs;
}
