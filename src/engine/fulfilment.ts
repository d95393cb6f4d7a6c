/**
 * Fulfilment after payment: paid → processing → shipped → delivered, one step at a
 * time, each step recorded with its actor and time in order_status_history.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { FULFILMENT_STATUSES } from '../db/schema.js';
import { InvalidInputError, RefusedError } from '../errors.js';
import { quote } from './input.js';
import { findOrder } from './order-rows.js';
import { showOrder, type OrderDetail } from './queries.js';
import { withConflictRetry } from './retry.js';
import { iso, rows, transaction } from '../db/query.js';

export type FulfilmentStatus = (typeof FULFILMENT_STATUSES)[number];

/** The one status each fulfilment status may be reached from. */
const PREVIOUS: Record<FulfilmentStatus, string> = { processing: 'paid', shipped: 'processing', delivered: 'shipped' };

export function parseFulfilmentStatus(raw: string): FulfilmentStatus {
  if (!(FULFILMENT_STATUSES as readonly string[]).includes(raw)) {
    throw new InvalidInputError(`Invalid status ${quote(raw)}: use one of ${FULFILMENT_STATUSES.join(', ')}.`);
  }
  return raw as FulfilmentStatus;
}

export interface StatusChange {
  order_id: string;
  ref: string | null;
  previous_status: string;
  status: FulfilmentStatus;
  changed_at: string;
  actor: string;
  /** True when the order already had this status: nothing changed (a retried request). */
  replay: boolean;
}

export interface StatusHistoryEntry {
  from_status: string;
  to_status: string;
  actor: string;
  at: string;
}

/**
 * Move an order one fulfilment step on. Setting the status it already has is a replay
 * (success, nothing written), so a retried request is harmless; any other jump is refused.
 */
export async function setOrderStatus(db: Db, input: { order: string; status: FulfilmentStatus; actor: string }): Promise<StatusChange> {
  return withConflictRetry(() =>
    transaction(db, async (tx) => {
      const order = await findOrder(tx, input.order, { lock: true });
      const base = { order_id: order.orderId, ref: order.ref, status: input.status };
      if (order.status === input.status) {
        const [last] = await rows<{ at: string; actor: string }>(
          tx,
          sql`SELECT ${iso('created_at')} AS at, actor FROM order_status_history
               WHERE order_id = ${order.orderId} AND to_status = ${input.status} ORDER BY history_id DESC LIMIT 1`,
        );
        return { ...base, previous_status: PREVIOUS[input.status], changed_at: last?.at ?? '', actor: last?.actor ?? '', replay: true };
      }
      const from = PREVIOUS[input.status];
      if (order.status !== from) {
        throw new RefusedError(
          `Order ${order.orderId} is ${order.status}; it can become ${input.status} only from ${from} (paid → processing → shipped → delivered).`,
          'invalid_transition',
          { order_id: order.orderId, from: order.status, to: input.status },
        );
      }
      const [changed] = await rows<{ at: string }>(
        tx,
        sql`WITH o AS (
              UPDATE orders SET status = ${input.status}, updated_at = now() WHERE order_id = ${order.orderId} RETURNING order_id
            )
            INSERT INTO order_status_history (order_id, from_status, to_status, actor)
            SELECT order_id, ${from}, ${input.status}, ${input.actor} FROM o
            RETURNING ${iso('created_at')} AS at`,
      );
      return { ...base, previous_status: from, changed_at: changed.at, actor: input.actor, replay: false };
    }),
  );
}

export async function statusHistory(db: Db, orderId: string): Promise<StatusHistoryEntry[]> {
  return rows<StatusHistoryEntry>(
    db,
    sql`SELECT from_status, to_status, actor, ${iso('created_at')} AS at
          FROM order_status_history WHERE order_id = ${orderId} ORDER BY history_id`,
  );
}

export interface OrderWithHistory extends OrderDetail {
  status_history: StatusHistoryEntry[];
}

/** `orders show`: the order's full story, fulfilment steps included. */
export async function showOrderWithHistory(db: Db, key: string): Promise<OrderWithHistory> {
  const order = await showOrder(db, key);
  return { ...order, status_history: await statusHistory(db, order.order_id) };
}
