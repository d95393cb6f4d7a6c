/**
 * Releasing and converting reservations, and expiring orders. Cancel, sweep, a late
 * pay and reserve's expire-first all release stock through these functions, so a unit
 * is handed back in exactly one way.
 */
import { sql } from 'drizzle-orm';
import { array, rows, type Tx } from '../db/query.js';
import { RefusedError } from '../errors.js';
import { severalLocations } from './locations.js';
import { applyStockChanges, lockLevels, type MovementKind, type StockChange } from './stock.js';

export interface ReservationRow {
  reservationId: string;
  orderId: string;
  sku: string;
  location: string;
  quantity: number;
}

export const TIMEOUT_NOTE = 'Payment timeout';

/**
 * Move the active reservations of these orders to `status` and give their units back
 * (reserved_stock down, one ledger row each). Returns what was released.
 */
export async function releaseReservations(
  tx: Tx,
  orderIds: string[],
  to: { status: 'cancelled' | 'expired'; kind: MovementKind; reason: string | null; actor: string },
): Promise<ReservationRow[]> {
  if (orderIds.length === 0) return [];
  const released = await rows<ReservationRow>(
    tx,
    sql`UPDATE stock_reservations SET status = ${to.status}, released_at = now(), updated_at = now()
         WHERE order_id = ANY(${array(orderIds)}::uuid[]) AND status = 'active'
     RETURNING reservation_id AS "reservationId", order_id AS "orderId", sku, location, quantity`,
  );
  await moveReservedUnits(tx, released, { stockSign: 0, kind: to.kind, reason: to.reason, actor: to.actor });
  return released;
}

/** Turn the active reservations of a paid order into sales: on hand and reserved both drop. */
export async function convertReservations(tx: Tx, orderId: string, actor: string, reason: string | null) {
  const converted = await rows<ReservationRow>(
    tx,
    sql`UPDATE stock_reservations SET status = 'converted', updated_at = now()
         WHERE order_id = ${orderId} AND status = 'active'
     RETURNING reservation_id AS "reservationId", order_id AS "orderId", sku, location, quantity`,
  );
  await moveReservedUnits(tx, converted, { stockSign: -1, kind: 'sale', reason, actor });
  return converted;
}

/**
 * Put the units these paid orders sold back on hand (a restock on cancel): one ledger
 * row per converted reservation. Returns what was restocked.
 */
export async function restockSoldUnits(tx: Tx, orderIds: string[], reason: string, actor: string): Promise<ReservationRow[]> {
  if (orderIds.length === 0) return [];
  const sold = await rows<ReservationRow>(
    tx,
    sql`SELECT reservation_id AS "reservationId", order_id AS "orderId", sku, location, quantity FROM stock_reservations
         WHERE order_id = ANY(${array(orderIds)}::uuid[]) AND status = 'converted' ORDER BY sku, location`,
  );
  await applyStockChanges(
    tx,
    sold.map((s) => ({ sku: s.sku, location: s.location, stockDelta: s.quantity, reservedDelta: 0, kind: 'restock', orderId: s.orderId, reservationId: s.reservationId, reason })),
    actor,
  );
  return sold;
}

async function moveReservedUnits(
  tx: Tx,
  reservations: ReservationRow[],
  how: { stockSign: number; kind: MovementKind; reason: string | null; actor: string },
) {
  if (reservations.length === 0) return;
  const moves: StockChange[] = reservations.map((r) => ({
    sku: r.sku,
    location: r.location,
    stockDelta: how.stockSign * r.quantity,
    reservedDelta: -r.quantity,
    kind: how.kind,
    orderId: r.orderId,
    reservationId: r.reservationId,
    reason: how.reason,
  }));
  await applyStockChanges(tx, [...moves, ...(await unheldUnits(tx, reservations, how.stockSign < 0))], how.actor, { locked: true });
}

/**
 * A counter changed outside stockctl can hold fewer reserved units than the reservations
 * moved off it (`verify` names such a SKU): releasing them takes reserved_stock down to 0,
 * not through its CHECK, with a `repair` ledger row for the units it no longer held, so that
 * such an order can still be cancelled or expired. A sale also needs its units on hand: if
 * they are gone, it is refused. Locks the rows (canonical order) for the change that follows.
 */
async function unheldUnits(tx: Tx, reservations: ReservationRow[], sale: boolean): Promise<StockChange[]> {
  const moving = new Map<string, { sku: string; location: string; units: number; orders: Set<string> }>();
  for (const r of reservations) {
    const key = `${r.sku}\u0000${r.location}`;
    const m = moving.get(key) ?? { sku: r.sku, location: r.location, units: 0, orders: new Set<string>() };
    m.units += r.quantity;
    m.orders.add(r.orderId);
    moving.set(key, m);
  }
  const repairs: StockChange[] = [];
  for (const row of await lockLevels(tx, [...moving.values()])) {
    const { units, orders } = moving.get(`${row.sku}\u0000${row.location}`)!;
    if (sale && row.stockQuantity < units) {
      const where = (await severalLocations(tx)) ? `${row.sku} at ${row.location}` : row.sku;
      throw new RefusedError(
        `Cannot sell ${units} unit(s) of ${where}: only ${row.stockQuantity} on hand, fewer than its active reservations hold (its stock was changed outside stockctl); put the units back on hand, or cancel the order.`,
        'reservations_exceed_on_hand',
        { sku: row.sku, location: row.location, stock_quantity: row.stockQuantity, requested: units },
      );
    }
    if (row.reservedStock >= units) continue;
    repairs.push({
      sku: row.sku,
      location: row.location,
      stockDelta: 0,
      reservedDelta: units - row.reservedStock,
      kind: 'repair',
      orderId: orders.size === 1 ? [...orders][0] : null,
      reason: `reserved_stock held ${row.reservedStock} of the ${units} unit(s) released (changed outside stockctl)`,
    });
  }
  return repairs;
}

export type ExpiryTarget = { orderIds: string[] } | { due: { limit: number; skus?: string[] } };

export interface ExpiredOrders {
  orderIds: string[];
  released: ReservationRow[];
  units: number;
}

/**
 * Expire pending orders whose window has passed: order cancelled with "Payment timeout",
 * reservations expired, units released. Due orders are claimed with SKIP LOCKED so that
 * several sweeps (and a sweep racing a pay or a cancel) never take the same order; the
 * status and expiry are re-checked in the UPDATE itself, because a pay may have won the
 * row between our snapshot and our lock.
 */
export async function expireOrders(tx: Tx, target: ExpiryTarget, actor: string): Promise<ExpiredOrders> {
  const which =
    'orderIds' in target
      ? sql`order_id = ANY(${array(target.orderIds)}::uuid[])`
      : target.due.skus
        ? sql`order_id IN (SELECT r.order_id FROM stock_reservations r
                            WHERE r.status = 'active' AND r.sku = ANY(${array(target.due.skus)}::text[]))`
        : sql`TRUE`;
  const limit = 'orderIds' in target ? target.orderIds.length : target.due.limit;
  if (limit === 0) return { orderIds: [], released: [], units: 0 };
  const expired = await rows<{ orderId: string }>(
    tx,
    // MATERIALIZED: as a plain subquery the claim may be re-run per outer row, and each
    // re-run skips the rows already taken, so LIMIT would not bound the batch.
    sql`WITH due AS MATERIALIZED (
          SELECT order_id FROM orders
           WHERE status = 'pending' AND payment_expires_at < now() AND ${which}
           ORDER BY payment_expires_at
           LIMIT ${limit}
           FOR UPDATE SKIP LOCKED
        )
        UPDATE orders o
           SET status = 'cancelled', payment_status = 'expired', cancelled_at = now(),
               cancel_reason = ${TIMEOUT_NOTE}, cancelled_by = ${actor},
               admin_notes = concat_ws(E'\n', o.admin_notes, ${TIMEOUT_NOTE}::text), updated_at = now()
          FROM due
         WHERE o.order_id = due.order_id AND o.status = 'pending' AND o.payment_expires_at < now()
     RETURNING o.order_id AS "orderId"`,
  );
  const orderIds = expired.map((e) => e.orderId);
  const released = await releaseReservations(tx, orderIds, {
    status: 'expired',
    kind: 'expire',
    reason: TIMEOUT_NOTE,
    actor,
  });
  return { orderIds, released, units: released.reduce((n, r) => n + r.quantity, 0) };
}
