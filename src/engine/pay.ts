/**
 * Pay (phase 2a): lock the order, convert its reservations to sales. A late payment is
 * refused unless the caller allows it, and then goes through only if the stock is there.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { execute, rows, transaction, type Tx } from '../db/query.js';
import { InsufficientStockError, RefusedError } from '../errors.js';
import { quote } from './input.js';
import { findOrder, sumUnits, type OrderRow } from './order-rows.js';
import { convertReservations, expireOrders } from './release.js';
import { withConflictRetry } from './retry.js';
import { allocate, DEFAULT_SPLIT_POLICY } from './allocate.js';
import { applyStockChanges, readLevels, type StockChange } from './stock.js';

export interface PayInput {
  order: string;
  paymentRef?: string;
  allowLate?: boolean;
  actor: string;
}

/** What a paid order is: paid, or a fulfilment step since. */
export type PaidOrderStatus = 'paid' | 'processing' | 'shipped' | 'delivered';

export interface PayResult {
  order_id: string;
  ref: string | null;
  /** `paid`, or (a replay) the fulfilment step the order has reached since. */
  status: PaidOrderStatus;
  paid_at: string;
  payment_ref: string | null;
  replay: boolean;
  late: boolean;
  units_sold: number;
}

/**
 * Pay: lock the order, convert its reservations to sales. A pay after the window expires
 * the order on the spot, then refuses; with allowLate it sells if it can.
 */
export async function payOrder(db: Db, input: PayInput): Promise<PayResult> {
  const outcome = await withConflictRetry(() => transaction(db, (tx) => payLockedOrder(tx, input)));
  // Refused after the transaction, not inside it: the order's expiry must commit.
  if ('missedWindow' in outcome) throw windowMissed(outcome.missedWindow);
  return outcome;
}

async function payLockedOrder(tx: Tx, input: PayInput): Promise<PayResult | { missedWindow: OrderRow }> {
  const order = await findOrder(tx, input.order, { lock: true });
  const result = (fields: { paidAt: string; paymentRef: string | null; replay?: boolean; late?: boolean; units?: number; status?: PaidOrderStatus }): PayResult => ({
    order_id: order.orderId,
    ref: order.ref,
    status: fields.status ?? 'paid',
    paid_at: new Date(fields.paidAt).toISOString(),
    payment_ref: fields.paymentRef,
    replay: fields.replay ?? false,
    late: fields.late ?? false,
    units_sold: fields.units ?? 0,
  });
  if (order.status === 'paid' || order.paymentStatus === 'paid') {
    const [paid] = await rows<{ paidAt: string; paymentRef: string | null }>(
      tx,
      sql`SELECT paid_at AS "paidAt", payment_ref AS "paymentRef" FROM orders WHERE order_id = ${order.orderId}`,
    );
    // The same payment again is a no-op; another one must not be dropped in silence.
    if (input.paymentRef !== undefined && input.paymentRef !== paid.paymentRef) {
      throw new RefusedError(
        `Order ${order.orderId} is already paid${paid.paymentRef === null ? ' without a payment ref' : ` with payment ref ${quote(paid.paymentRef)}`}, not ${quote(input.paymentRef)}; a second payment is not recorded (refund it, or send the first payment ref again).`,
        'payment_ref_conflict',
        { order_id: order.orderId, ...(paid.paymentRef === null ? {} : { payment_ref: paid.paymentRef }) },
      );
    }
    return result({ ...paid, replay: true, status: order.status as PaidOrderStatus });
  }
  const expiredUnpaid = order.status === 'cancelled' && order.paymentStatus === 'expired';
  let late = false;
  let units: number;
  if (order.status === 'pending' && !order.windowPassed) {
    units = sumUnits(await convertReservations(tx, order.orderId, input.actor, input.paymentRef ?? null));
  } else if (order.status === 'pending' && input.allowLate) {
    // Unswept but late: its units are still held, so the sale can go through.
    late = true;
    units = sumUnits(await convertReservations(tx, order.orderId, input.actor, 'late payment'));
  } else if (order.status === 'pending') {
    await expireOrders(tx, { orderIds: [order.orderId] }, input.actor);
    return { missedWindow: order };
  } else if (expiredUnpaid && input.allowLate) {
    late = true;
    units = await resellExpiredOrder(tx, order.orderId, input.actor);
  } else if (order.status === 'cancelled') {
    const why = expiredUnpaid ? 'expired unpaid' : `was cancelled${order.cancelReason ? ` (${order.cancelReason})` : ''}`;
    const refusal = new RefusedError(`Order ${order.orderId} ${why}; it cannot be paid.`, 'order_cancelled', { order_id: order.orderId });
    throw expiredUnpaid ? refusal.withRemedy('allow_late') : refusal;
  } else {
    throw new RefusedError(`Order ${order.orderId} is ${order.status}; it cannot be paid.`, 'order_state', { order_id: order.orderId });
  }
  const [paid] = await rows<{ paidAt: string }>(
    tx,
    sql`UPDATE orders SET status = 'paid', payment_status = 'paid', paid_at = now(), payment_expires_at = NULL,
               payment_ref = ${input.paymentRef ?? null}, cancelled_at = NULL, cancel_reason = NULL,
               cancelled_by = NULL, updated_at = now(),
               admin_notes = CASE WHEN ${late} THEN concat_ws(E'\n', admin_notes, 'Late payment accepted') ELSE admin_notes END
         WHERE order_id = ${order.orderId} RETURNING paid_at AS "paidAt"`,
  );
  return result({ paidAt: paid.paidAt, paymentRef: input.paymentRef ?? null, late, units });
}

const windowMissed = (order: OrderRow) =>
  new RefusedError(
    `Order ${order.orderId} missed its payment window (expired at ${new Date(order.paymentExpiresAt!).toISOString()}); its stock was released.`,
    'payment_window_expired',
    { order_id: order.orderId },
  ).withRemedy('allow_late');

/**
 * A late payment on an already expired order: sell its lines again if stock allows (from
 * where reserve would take them now, over levels locked in the canonical order), else exit 3.
 */
async function resellExpiredOrder(tx: Tx, orderId: string, actor: string): Promise<number> {
  const items = await rows<{ orderItemId: string; sku: string; quantity: number; productId: string; variantId: string | null }>(
    tx,
    sql`SELECT order_item_id AS "orderItemId", sku, quantity, product_id AS "productId", variant_id AS "variantId"
          FROM order_items WHERE order_id = ${orderId} ORDER BY sku`,
  );
  const found = allocate(items, await readLevels(tx, items.map((i) => i.sku), { lock: true, selling: true }), DEFAULT_SPLIT_POLICY);
  if ('short' in found) throw new InsufficientStockError(found.short);
  const itemOf = new Map(items.map((i) => [i.sku, i]));
  const sold = found.allocations.map((a) => ({ ...a, item: itemOf.get(a.sku)!, reservationId: randomUUID() }));
  await execute(
    tx,
    sql`INSERT INTO stock_reservations (reservation_id, order_id, order_item_id, product_id, variant_id, sku, location, quantity, expires_at, status)
        SELECT x.reservation_id, ${orderId}::uuid, x.order_item_id, x.product_id, x.variant_id, x.sku, x.location, x.quantity, now(), 'converted'
          FROM jsonb_to_recordset(${JSON.stringify(
            sold.map((s) => ({
              reservation_id: s.reservationId,
              order_item_id: s.item.orderItemId,
              product_id: s.item.productId,
              variant_id: s.item.variantId,
              sku: s.sku,
              location: s.location,
              quantity: s.quantity,
            })),
          )}::jsonb) AS x(reservation_id uuid, order_item_id uuid, product_id uuid, variant_id uuid, sku text, location text, quantity int)`,
  );
  const sale: StockChange[] = sold.map((s) => ({
    sku: s.sku,
    location: s.location,
    stockDelta: -s.quantity,
    reservedDelta: 0,
    kind: 'sale',
    orderId,
    reservationId: s.reservationId,
    reason: 'late payment',
  }));
  // The levels are locked and covered the sale when allocated: it goes through whole.
  await applyStockChanges(tx, sale, actor, { guard: true, locked: true });
  return sumUnits(items);
}
