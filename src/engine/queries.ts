/** Read-only views of orders for support staff: lists and the full story of one order. */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { ORDER_STATUSES } from '../db/schema.js';
import { InvalidInputError } from '../errors.js';
import { findOrder } from './order-rows.js';
import { hexToUuid, isUuid, quote } from './input.js';
import { iso, rows } from '../db/query.js';

export interface OrderSummary {
  order_id: string;
  ref: string | null;
  customer_id: string | null;
  status: string;
  payment_status: string;
  total: number;
  item_count: number;
  created_at: string;
  payment_expires_at: string | null;
  seconds_left: number | null;
}

/** The OrderSummary columns, shared by the list and the full view of one order. */
const summaryColumns = () => sql`order_id, ref, customer_id, status, payment_status, total::float8 AS total, item_count,
               ${iso('created_at')} AS created_at, ${iso('payment_expires_at')} AS payment_expires_at,
               CASE WHEN status = 'pending' THEN floor(extract(epoch FROM payment_expires_at - now()))::int END AS seconds_left`;

/** Keyset paging: the orders listed after this one (newest first, ties by id). */
const afterOrder = (orderId: string) =>
  sql`AND EXISTS (SELECT 1 FROM orders c WHERE c.order_id = ${orderId}::uuid
                    AND (orders.created_at < c.created_at OR (orders.created_at = c.created_at AND orders.order_id > c.order_id)))`;

export interface OrderPage {
  orders: OrderSummary[];
  /** Where the next page starts (`--cursor`, `?cursor=`); null on the last page. */
  next_cursor: string | null;
}

/**
 * One page of orders, newest first: never silently cut, since `next_cursor` says whether
 * more match. The caller parses its filters (parseCustomerId refuses a blank customer).
 */
export async function listOrders(
  db: Db,
  input: { status?: string; customerId?: string; limit?: number; cursor?: string },
): Promise<OrderPage> {
  if (input.status !== undefined && !(ORDER_STATUSES as readonly string[]).includes(input.status)) {
    throw new InvalidInputError(`Invalid status ${quote(input.status)}: use one of ${ORDER_STATUSES.join(', ')}.`);
  }
  const limit = input.limit ?? 20;
  const after = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
  const page = await rows<OrderSummary>(
    db,
    sql`SELECT ${summaryColumns()}
          FROM orders
         WHERE true ${input.status !== undefined ? sql`AND status = ${input.status}` : sql``}
               ${input.customerId !== undefined ? sql`AND customer_id = ${input.customerId}` : sql``}
               ${after !== undefined ? afterOrder(after) : sql``}
         ORDER BY created_at DESC, order_id
         LIMIT ${limit + 1}`,
  );
  const orders = page.slice(0, limit);
  return { orders, next_cursor: page.length > limit ? encodeCursor(orders[orders.length - 1].order_id) : null };
}

/** Opaque cursor: the last order id of a page, base64url. */
const encodeCursor = (orderId: string) => Buffer.from(orderId.replace(/-/g, ''), 'hex').toString('base64url');

function decodeCursor(cursor: string): string {
  const hex = Buffer.from(cursor, 'base64url').toString('hex');
  const id = hexToUuid(hex);
  if (!isUuid(id)) throw new InvalidInputError('Invalid cursor: pass the next_cursor of the previous page unchanged.', 'invalid_cursor');
  return id;
}

export interface OrderDetail extends OrderSummary {
  paid_at: string | null;
  payment_ref: string | null;
  cancelled_at: string | null;
  cancel_reason: string | null;
  cancelled_by: string | null;
  admin_notes: string | null;
  reserve_attempts: number;
  strategy: string | null;
  created_by: string | null;
  /** How the customer pays, and the window (seconds) and priority tier the order was given. */
  payment_method: string | null;
  payment_window_seconds: number | null;
  priority: string | null;
  items: { sku: string; name: string; unit_price: number; quantity: number; line_total: number }[];
  reservations: { reservation_id: string; sku: string; quantity: number; status: string; reserved_at: string; expires_at: string; released_at: string | null }[];
  movements: { movement_id: number; sku: string; kind: string; stock_delta: number; reserved_delta: number; actor: string; reason: string | null; created_at: string }[];
}

export async function showOrder(db: Db, key: string): Promise<OrderDetail> {
  const { orderId } = await findOrder(db, key);
  const [order] = await rows<OrderDetail>(
    db,
    sql`SELECT ${summaryColumns()},
               ${iso('paid_at')} AS paid_at, payment_ref, ${iso('cancelled_at')} AS cancelled_at, cancel_reason,
               cancelled_by, admin_notes, reserve_attempts, strategy, created_by,
               payment_method, payment_window_seconds, priority
          FROM orders WHERE order_id = ${orderId}`,
  );
  order.items = await rows(
    db,
    sql`SELECT sku, name, unit_price, quantity, line_total::float8 AS line_total FROM order_items WHERE order_id = ${orderId} ORDER BY sku`,
  );
  order.reservations = await rows(
    db,
    sql`SELECT reservation_id, sku, quantity, status, ${iso('reserved_at')} AS reserved_at, ${iso('expires_at')} AS expires_at,
               ${iso('released_at')} AS released_at
          FROM stock_reservations WHERE order_id = ${orderId} ORDER BY reserved_at, sku`,
  );
  order.movements = await rows(
    db,
    sql`SELECT movement_id::float8 AS movement_id, sku, kind, stock_delta, reserved_delta, actor, reason, ${iso('created_at')} AS created_at
          FROM stock_movements WHERE order_id = ${orderId} ORDER BY movement_id`,
  );
  return order;
}
