/** Read-only views of orders for support staff: lists and the full story of one order. */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { ORDER_STATUSES } from '../db/schema.js';
import { InvalidInputError } from '../errors.js';
import { findOrder } from './order-rows.js';
import { hexToUuid, quote } from './input.js';
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

/**
 * Keyset paging: the orders listed after a place in the list (newest first, ties by id
 * ascending), the place being the sort values of the last order shown. No row is looked
 * up, so the next page is right even when that order has been deleted since.
 */
const afterPlace = (place: ListPlace) =>
  sql`AND (created_at < ${place.createdAt}::timestamptz OR (created_at = ${place.createdAt}::timestamptz AND order_id > ${place.orderId}::uuid))`;

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
  const page = await rows<OrderSummary & { cursor_at: string }>(
    db,
    // created_at to the microsecond (JS dates keep only milliseconds), in UTC whatever the session's zone.
    sql`SELECT ${summaryColumns()}, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at
          FROM orders
         WHERE true ${input.status !== undefined ? sql`AND status = ${input.status}` : sql``}
               ${input.customerId !== undefined ? sql`AND customer_id = ${input.customerId}` : sql``}
               ${after !== undefined ? afterPlace(after) : sql``}
         ORDER BY created_at DESC, order_id
         LIMIT ${limit + 1}`,
  );
  const orders = page.slice(0, limit).map(({ cursor_at: _, ...order }) => order);
  const last = page.length > limit ? page[limit - 1] : undefined;
  return { orders, next_cursor: last ? encodeCursor({ createdAt: last.cursor_at, orderId: last.order_id }) : null };
}

/** A place in the orders list: the sort values of the last order of a page. */
export interface ListPlace {
  /** `created_at` in UTC to the microsecond, as PostgreSQL keeps it: `2024-05-01T12:00:00.123456Z`. */
  createdAt: string;
  orderId: string;
}

const CURSOR_BYTES = 24;
/** Earlier builds' cursor: the bare id of the last order (16 bytes), which gave an empty page once that order was gone. */
const ORDER_ID_CURSOR_BYTES = 16;
const MICROS_PATTERN = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})(\d{3})Z$/;

/**
 * Opaque cursor, base64url of 24 bytes: `created_at` as microseconds since the Unix epoch
 * (int64, big-endian), then the order id. Exact to the microsecond and free of time zones.
 */
export function encodeCursor(place: ListPlace): string {
  const [, millisText, micros] = MICROS_PATTERN.exec(place.createdAt)!;
  const bytes = Buffer.alloc(CURSOR_BYTES);
  bytes.writeBigInt64BE(BigInt(Date.parse(`${millisText}Z`)) * 1000n + BigInt(micros));
  Buffer.from(place.orderId.replace(/-/g, ''), 'hex').copy(bytes, 8);
  return bytes.toString('base64url');
}

export function decodeCursor(cursor: string): ListPlace {
  const bytes = Buffer.from(cursor, 'base64url');
  // Buffer.from skips what is not base64url: only a cursor that encodes back to itself is one.
  const canonical = bytes.toString('base64url') === cursor;
  if (canonical && bytes.length === ORDER_ID_CURSOR_BYTES) {
    throw new InvalidInputError(
      'This cursor comes from an older stockctl, whose cursors named an order rather than a place in the list; list again from the first page.',
      'invalid_cursor',
    );
  }
  const invalid = () => new InvalidInputError('Invalid cursor: pass the next_cursor of the previous page unchanged.', 'invalid_cursor');
  if (!canonical || bytes.length !== CURSOR_BYTES) throw invalid();
  const micros = bytes.readBigInt64BE(0);
  const millis = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
  const date = new Date(Number(millis));
  // Within the years 1 to 9999, where toISOString has the form PostgreSQL reads back.
  if (Number.isNaN(date.getTime()) || date.getUTCFullYear() < 1 || date.getUTCFullYear() > 9999) throw invalid();
  const createdAt = `${date.toISOString().slice(0, -1)}${String(micros - millis * 1000n).padStart(3, '0')}Z`;
  return { createdAt, orderId: hexToUuid(bytes.subarray(8).toString('hex')) };
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
  /** Each line with where its units are held by its latest reserve (a late payment may have reserved them again). */
  items: { sku: string; name: string; unit_price: number; quantity: number; line_total: number; allocations: { location: string; quantity: number; reservation_id: string }[] }[];
  reservations: {
    reservation_id: string;
    sku: string;
    location: string;
    quantity: number;
    status: string;
    reserved_at: string;
    expires_at: string;
    released_at: string | null;
  }[];
  movements: {
    movement_id: number;
    sku: string;
    location: string;
    kind: string;
    stock_delta: number;
    reserved_delta: number;
    actor: string;
    reason: string | null;
    created_at: string;
  }[];
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
    sql`SELECT i.sku, i.name, i.unit_price, i.quantity, i.line_total::float8 AS line_total,
               coalesce((SELECT json_agg(json_build_object('location', r.location, 'quantity', r.quantity,
                                                           'reservation_id', r.reservation_id) ORDER BY r.location)
                           FROM stock_reservations r
                          WHERE r.order_item_id = i.order_item_id
                            AND r.reserved_at = (SELECT max(x.reserved_at) FROM stock_reservations x WHERE x.order_item_id = i.order_item_id)),
                        '[]'::json) AS allocations
          FROM order_items i WHERE i.order_id = ${orderId} ORDER BY i.sku`,
  );
  order.reservations = await rows(
    db,
    sql`SELECT reservation_id, sku, location, quantity, status, ${iso('reserved_at')} AS reserved_at, ${iso('expires_at')} AS expires_at,
               ${iso('released_at')} AS released_at
          FROM stock_reservations WHERE order_id = ${orderId} ORDER BY reserved_at, sku, location`,
  );
  order.movements = await rows(
    db,
    sql`SELECT movement_id::float8 AS movement_id, sku, location, kind, stock_delta, reserved_delta, actor, reason, ${iso('created_at')} AS created_at
          FROM stock_movements WHERE order_id = ${orderId} ORDER BY movement_id`,
  );
  return order;
}
