/**
 * The invariants of SPEC section 5, checked with SQL against the whole database (or the
 * SKUs under a prefix, for the loadtest). Each problem names its SKU or order.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import type { Tx } from './stock.js';
import { rows } from './stock.js';

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
  const filter = skuPrefix ? sql`WHERE s.sku LIKE ${`${skuPrefix.replace(/[\\%_]/g, '\\$&')}%`}` : sql``;
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
    ? sql`AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.order_id AND i.sku LIKE ${`${skuPrefix.replace(/[\\%_]/g, '\\$&')}%`})`
    : sql``;
  const orders = await rows<{ order_id: string; status: string; active: number }>(
    db,
    sql`SELECT o.order_id, o.status,
               (SELECT count(*) FROM stock_reservations r WHERE r.order_id = o.order_id AND r.status = 'active')::int AS active
          FROM orders o
         WHERE ((o.status = 'pending' AND NOT EXISTS (SELECT 1 FROM stock_reservations r WHERE r.order_id = o.order_id AND r.status = 'active'))
             OR (o.status <> 'pending' AND EXISTS (SELECT 1 FROM stock_reservations r WHERE r.order_id = o.order_id AND r.status = 'active')))
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
