/**
 * Cancel by hand (phase 2b) and extend: both lock the order first, as pay and the sweep
 * do. Cancel works in batches, one transaction each, so that a file of thousands of
 * orders takes a few set-based statements per thousand.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { array, execute, rows, transaction, type Tx } from '../db/query.js';
import { RefusedError, StockctlError } from '../errors.js';
import { isUuid } from './input.js';
import { findOrder, ORDER_COLUMNS, orderIdByPrefix, orderNotFound, type OrderRow } from './order-rows.js';
import { releaseReservations, restockSoldUnits } from './release.js';
import { withConflictRetry } from './retry.js';
import { formatWindow } from './windows.js';

export interface CancelInput {
  order: string;
  reason?: string;
  restock?: boolean;
  dryRun?: boolean;
  actor: string;
}

export interface CancelResult {
  order_id: string;
  ref: string | null;
  /** cancelled | already_cancelled | would_cancel | restocked | would_restock */
  outcome: string;
  previous_status: string;
  released_units: number;
  restocked_units: number;
}

export interface CancelManyInput extends Omit<CancelInput, 'order'> {
  /** Order ids or refs, in the order they are reported. */
  orders: string[];
  /** Orders per transaction (default 1000). */
  batchSize?: number;
  /** Stop between batches: the orders not reached yet are left alone and not reported. */
  signal?: AbortSignal;
  onProgress?: (progress: { done: number; total: number }) => void;
}

/** One named order's outcome: its result, or the domain error that refused it. */
export type CancelReport = { order: string; result: CancelResult } | { order: string; error: StockctlError };

export interface CancelManyResult {
  reports: CancelReport[];
  interrupted: boolean;
}

export const CANCEL_BATCH_SIZE = 1000;

/** Cancel by hand: release a pending order's stock; a paid one only with restock. */
export async function cancelOrder(db: Db, input: CancelInput): Promise<CancelResult> {
  const { reports } = await cancelOrders(db, { ...input, orders: [input.order] });
  const [report] = reports;
  if ('error' in report) throw report.error;
  return report.result;
}

/**
 * Cancel many orders, a batch per transaction: the batch's ids and refs resolved in one
 * query, its orders locked in one statement, their stock released and their rows updated
 * in a few set-based statements. Each order is reported as if cancelled alone.
 */
export async function cancelOrders(db: Db, input: CancelManyInput): Promise<CancelManyResult> {
  const batchSize = input.batchSize ?? CANCEL_BATCH_SIZE;
  const reports: CancelReport[] = [];
  for (let start = 0; start < input.orders.length; start += batchSize) {
    if (input.signal?.aborted) return { reports, interrupted: true };
    const keys = input.orders.slice(start, start + batchSize);
    reports.push(...(await withConflictRetry(() => transaction(db, (tx) => cancelBatch(tx, keys, input)))));
    input.onProgress?.({ done: reports.length, total: input.orders.length });
  }
  return { reports, interrupted: false };
}

type CancelAction = 'release' | 'restock' | 'none';

async function cancelBatch(tx: Tx, keys: string[], input: CancelManyInput): Promise<CancelReport[]> {
  const resolved = await rows<{ key: string; orderId: string | null }>(
    tx,
    sql`SELECT k.key, coalesce((SELECT o.order_id FROM orders o WHERE o.order_id = k.id),
                               (SELECT o.order_id FROM orders o WHERE o.ref = k.key)) AS "orderId"
          FROM jsonb_to_recordset(${JSON.stringify(keys.map((key) => ({ key, id: isUuid(key) ? key : null })))}::jsonb)
               AS k(key text, id uuid)`,
  );
  // Neither an id nor a ref: perhaps an id prefix (rare in bulk, so one query each).
  const unresolved = new Map<string, StockctlError>();
  for (const r of resolved) {
    if (r.orderId) continue;
    try {
      r.orderId = (await orderIdByPrefix(tx, r.key)) ?? null;
    } catch (err) {
      if (!(err instanceof StockctlError)) throw err;
      unresolved.set(r.key, err);
    }
  }
  const orderIdOf = new Map(resolved.map((r) => [r.key, r.orderId]));
  const ids = [...new Set(resolved.flatMap((r) => (r.orderId ? [r.orderId] : [])))];
  // Orders first, as pay and the sweep do, and in one canonical order (by id), so that
  // two batches sharing orders queue instead of deadlocking. The rows read are the ones
  // left by whoever held the lock before us.
  const locked =
    ids.length === 0
      ? []
      : await rows<OrderRow>(
          tx,
          sql`SELECT ${ORDER_COLUMNS} FROM orders WHERE order_id = ANY(${array(ids)}::uuid[])
               ORDER BY order_id ${input.dryRun ? sql`` : sql`FOR UPDATE`}`,
        );
  const orders = new Map(locked.map((o) => [o.orderId, o]));
  const actionOf = (o: OrderRow): CancelAction =>
    o.status === 'pending' ? 'release' : o.status === 'paid' && input.restock ? 'restock' : 'none';
  const toRelease = locked.filter((o) => actionOf(o) === 'release').map((o) => o.orderId);
  const toRestock = locked.filter((o) => actionOf(o) === 'restock').map((o) => o.orderId);

  const units = new Map<string, number>();
  const count = (rs: { orderId: string; quantity: number }[]) => {
    for (const r of rs) units.set(r.orderId, (units.get(r.orderId) ?? 0) + r.quantity);
  };
  if (input.dryRun) {
    count(
      await rows<{ orderId: string; quantity: number }>(
        tx,
        sql`SELECT order_id AS "orderId", sum(quantity)::int AS quantity FROM stock_reservations
             WHERE order_id = ANY(${array([...toRelease, ...toRestock])}::uuid[])
               AND status = CASE WHEN order_id = ANY(${array(toRelease)}::uuid[]) THEN 'active' ELSE 'converted' END
             GROUP BY order_id`,
      ),
    );
  } else {
    count(
      await releaseReservations(tx, toRelease, {
        status: 'cancelled',
        kind: 'release',
        reason: input.reason ?? 'cancelled by hand',
        actor: input.actor,
      }),
    );
    count(await restockSoldUnits(tx, toRestock, input.reason ?? 'restocked on cancel', input.actor));
    await markCancelled(tx, toRelease, input, 'void');
    await markCancelled(tx, toRestock, input, 'refunded');
  }

  // Report in the order given. An order named twice (by id and by ref) is reported the
  // second time as a lone cancel would then find it: already cancelled.
  const seen = new Set<string>();
  return keys.map((key): CancelReport => {
    const orderId = orderIdOf.get(key);
    const order = orderId ? orders.get(orderId) : undefined;
    if (!order) return { order: key, error: unresolved.get(key) ?? orderNotFound(key) };
    const again = seen.has(order.orderId) && !input.dryRun;
    seen.add(order.orderId);
    const action = again ? 'none' : actionOf(order);
    const previousStatus = again && actionOf(order) !== 'none' ? 'cancelled' : order.status;
    const base = { order_id: order.orderId, ref: order.ref, previous_status: previousStatus, released_units: 0, restocked_units: 0 };
    const held = units.get(order.orderId) ?? 0;
    if (action === 'release') {
      return { order: key, result: { ...base, outcome: input.dryRun ? 'would_cancel' : 'cancelled', released_units: held } };
    }
    if (action === 'restock') {
      return { order: key, result: { ...base, outcome: input.dryRun ? 'would_restock' : 'restocked', restocked_units: held } };
    }
    if (previousStatus === 'cancelled') return { order: key, result: { ...base, outcome: 'already_cancelled' } };
    return {
      order: key,
      error: notCancellable(order),
    };
  });
}

/** A paid order is cancelled only with a restock; a fulfilled one not at all. */
function notCancellable(order: OrderRow): RefusedError {
  if (order.status === 'paid') {
    return new RefusedError(`Order ${order.orderId} is paid.`, 'order_paid', { order_id: order.orderId }).withRemedy('restock');
  }
  return new RefusedError(`Order ${order.orderId} is ${order.status}; it cannot be cancelled.`, 'order_paid', { order_id: order.orderId });
}

async function markCancelled(tx: Tx, orderIds: string[], input: { reason?: string; actor: string }, paymentStatus: 'void' | 'refunded') {
  if (orderIds.length === 0) return;
  await execute(
    tx,
    sql`UPDATE orders SET status = 'cancelled', payment_status = ${paymentStatus}, cancelled_at = now(),
               cancel_reason = ${input.reason ?? null}, cancelled_by = ${input.actor}, updated_at = now()
         WHERE order_id = ANY(${array(orderIds)}::uuid[])`,
  );
}

export interface ExtendResult {
  order_id: string;
  ref: string | null;
  payment_expires_at: string;
  reservations_extended: number;
}

/** Give a pending order more time: its window and its active reservations move together. */
export async function extendOrder(db: Db, input: { order: string; ttlSeconds: number; actor: string }): Promise<ExtendResult> {
  return withConflictRetry(() =>
    transaction(db, async (tx) => {
      const order = await findOrder(tx, input.order, { lock: true });
      if (order.status !== 'pending') {
        throw new RefusedError(`Order ${order.orderId} is ${order.status}; only pending orders can be extended.`, 'order_state', {
          order_id: order.orderId,
        });
      }
      if (order.windowPassed) {
        throw new RefusedError(
          `Order ${order.orderId} already missed its payment window; it can no longer be extended.`,
          'payment_window_expired',
          { order_id: order.orderId },
        );
      }
      // Extending gives more time: a window that already runs longer is left as it is.
      const [updated] = await rows<{ expiresAt: string }>(
        tx,
        sql`UPDATE orders SET payment_expires_at = now() + make_interval(secs => ${input.ttlSeconds}), updated_at = now(),
                   admin_notes = concat_ws(E'\n', admin_notes, ${`Extended by ${input.actor}`}::text)
             WHERE order_id = ${order.orderId} AND payment_expires_at <= now() + make_interval(secs => ${input.ttlSeconds})
         RETURNING payment_expires_at AS "expiresAt"`,
      );
      if (!updated) {
        throw new RefusedError(
          `Order ${order.orderId} already has until ${new Date(order.paymentExpiresAt!).toISOString()} to pay, more than the ${formatWindow(input.ttlSeconds)} asked for; extend only gives more time.`,
          'window_not_extended',
          { order_id: order.orderId, payment_expires_at: new Date(order.paymentExpiresAt!).toISOString() },
        );
      }
      const moved = await rows<{ id: string }>(
        tx,
        sql`UPDATE stock_reservations SET expires_at = ${updated.expiresAt}::timestamptz, updated_at = now()
             WHERE order_id = ${order.orderId} AND status = 'active' RETURNING reservation_id AS id`,
      );
      return {
        order_id: order.orderId,
        ref: order.ref,
        payment_expires_at: new Date(updated.expiresAt).toISOString(),
        reservations_extended: moved.length,
      };
    }),
  );
}

