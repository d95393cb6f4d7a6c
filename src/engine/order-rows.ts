/**
 * Order rows as reserve, pay, cancel, extend and the read-only views find them: by id,
 * ref or id prefix, optionally locked. Taking the order lock first is what makes pay,
 * cancel and sweep racing for one order end with exactly one winner.
 */
import { sql, type SQL } from 'drizzle-orm';
import { rows, type Tx } from '../db/query.js';
import { InvalidInputError, NotFoundError } from '../errors.js';
import { isUuid, quote, uuidPrefixRange } from './input.js';

export interface OrderRow {
  orderId: string;
  ref: string | null;
  customerId: string | null;
  status: string;
  paymentStatus: string;
  paymentExpiresAt: string | null;
  windowPassed: boolean;
  paidAt: string | null;
  cancelledAt: string | null;
  cancelReason: string | null;
  cancelledBy: string | null;
  total: number;
  reserveAttempts: number;
  strategy: string | null;
  paymentMethod: string | null;
  paymentWindowSeconds: number | null;
  priority: string | null;
  /** The location the order was pinned to, and the split policy it was reserved under. */
  location: string | null;
  splitPolicy: string | null;
}

/** The OrderRow columns. */
export const ORDER_COLUMNS = sql.raw(`order_id AS "orderId", ref, customer_id AS "customerId", status,
  payment_status AS "paymentStatus", payment_expires_at AS "paymentExpiresAt",
  coalesce(payment_expires_at <= now(), false) AS "windowPassed", paid_at AS "paidAt",
  cancelled_at AS "cancelledAt", cancel_reason AS "cancelReason", cancelled_by AS "cancelledBy",
  total::float8 AS total, reserve_attempts AS "reserveAttempts", strategy,
  payment_method AS "paymentMethod", payment_window_seconds AS "paymentWindowSeconds", priority,
  location, split_policy AS "splitPolicy"`);

// A whole id matches one order by id and perhaps another by ref: the id wins.
const orderByKey = (key: string) =>
  isUuid(key) ? sql`(order_id = ${key}::uuid OR ref = ${key}) ORDER BY order_id = ${key}::uuid DESC LIMIT 1` : sql`ref = ${key}`;

/**
 * Find an order by id, ref, or a unique id prefix of at least 8 hex digits (an exact id
 * wins over a ref, and either over a prefix; new refs never look like a prefix, see
 * parseRef); with `lock`, hold its row until the transaction ends.
 */
export async function findOrder(tx: Tx, key: string, opts: { lock?: boolean } = {}): Promise<OrderRow> {
  const select = (where: SQL) =>
    rows<OrderRow>(tx, sql`SELECT ${ORDER_COLUMNS} FROM orders WHERE ${where} ${opts.lock ? sql`FOR UPDATE` : sql``}`);
  const [order] = await select(orderByKey(key));
  if (order) return order;
  const byPrefix = await orderIdByPrefix(tx, key);
  if (byPrefix) {
    const [order] = await select(sql`order_id = ${byPrefix}::uuid`);
    if (order) return order;
  }
  throw orderNotFound(key);
}

/** The order under this ref, if any (no lock). */
export async function findOrderByRef(tx: Tx, ref: string): Promise<OrderRow | undefined> {
  const [order] = await rows<OrderRow>(tx, sql`SELECT ${ORDER_COLUMNS} FROM orders WHERE ref = ${ref}`);
  return order;
}

/** The one order whose id starts with `key` (8+ hex digits); several is an error naming them. */
export async function orderIdByPrefix(tx: Tx, key: string): Promise<string | undefined> {
  const range = isUuid(key) ? undefined : uuidPrefixRange(key);
  if (!range) return undefined;
  const matches = await rows<{ orderId: string }>(
    tx,
    sql`SELECT order_id AS "orderId" FROM orders
         WHERE order_id BETWEEN ${range.low}::uuid AND ${range.high}::uuid ORDER BY order_id LIMIT 4`,
  );
  if (matches.length > 1) {
    const shown = matches.slice(0, 3).map((m) => m.orderId);
    throw new InvalidInputError(
      `Order id prefix ${quote(key)} matches several orders (${shown.join(', ')}${matches.length > 3 ? ', …' : ''}); give more of the id.`,
      'order_ambiguous',
      { order: key, matches: shown },
    );
  }
  return matches[0]?.orderId;
}

export const orderNotFound = (key: string) => new NotFoundError(`No order has id or ref ${quote(key)}.`, 'order_not_found', { order: key });

/** Units in these reservations or lines. */
export const sumUnits = (rs: { quantity: number }[]) => rs.reduce((n, r) => n + r.quantity, 0);
